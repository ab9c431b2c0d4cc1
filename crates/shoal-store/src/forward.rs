//! Requests only the leader can serve, as a follower forwards them.
//!
//! A client may talk to any member. Writes, linearizable-read barriers, lease keep-alives and
//! membership changes need the leader; a follower sends them over the peer transport with
//! these types and relays the answer, so the client never has to find the leader itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResponse};
use crate::raft::{Member, MemberId};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write(Command),
    /// The log index a read must wait for to be linearizable (Raft's ReadIndex).
    ReadIndex,
    LeaseKeepAlive {
        id: i64,
    },
    LeaseTimeToLive {
        id: i64,
    },
    AddLearner {
        id: MemberId,
        member: Member,
    },
    Promote {
        id: MemberId,
    },
    Remove {
        id: MemberId,
    },
    /// A member announces where clients reach it.
    PublishMember {
        id: MemberId,
        member: Member,
    },
    /// The membership as the leader sees it; a member joining an existing cluster asks this
    /// to learn its own id.
    Members,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ForwardResponse {
    Written(CommandResponse),
    ReadIndex {
        index: u64,
    },
    /// The lease's TTL after the keep-alive; `None` if the lease does not exist.
    LeaseKeepAlive {
        ttl_seconds: Option<i64>,
    },
    LeaseTimeToLive(Option<LeaseTimeToLive>),
    MembershipChanged,
    Members(MemberList),
}

pub type ForwardResult = Result<ForwardResponse, ForwardError>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLive {
    pub id: i64,
    pub granted_ttl_seconds: i64,
    pub remaining_seconds: i64,
    pub keys: Vec<bytes::Bytes>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberList {
    pub voters: BTreeMap<MemberId, Member>,
    pub learners: BTreeMap<MemberId, Member>,
}

/// Why the receiving member did not serve a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ForwardError {
    /// Not the leader (any more): the sender should retry at `leader`, if known. A write may
    /// still have been appended before leadership moved: its outcome is unknown.
    #[error("member is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<MemberId> },
    /// The leader could not reach a quorum in time.
    #[error("etcdserver: leader could not reach a quorum: {reason}")]
    NoQuorum { reason: String },
    /// A membership change was refused (unknown member, learner not caught up, …).
    #[error("{reason}")]
    Membership { reason: String },
    /// The member is shutting down.
    #[error("member is stopping")]
    Stopping,
}
