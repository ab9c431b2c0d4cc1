//! Requests only the leader can serve, as a follower forwards them.
//!
//! A client may talk to any member. Writes, linearizable-read barriers, lease keep-alives and
//! membership changes need the leader; a follower sends them over the peer transport with
//! these types and relays the answer, so the client never has to find the leader itself.
//!
//! Writes go in batches (`WriteForwarder`): the writes that arrive while earlier ones are on
//! their way to the leader travel together in one request, as the leader's `Proposer` puts
//! them in one Raft entry. Each keeps its own client sequence and its own answer. Read
//! indexes go the same way (`ReadIndexForwarder`): one request answers every linearizable
//! reader waiting when it leaves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::command::{Command, CommandResponse};
use crate::proposer::{encoded_len, gather_batch};
use crate::raft::{Member, MemberId};
use crate::transport::{PeerRpc, PeerTransport, TransportError};

/// Forwarded writes waiting for a batch. A full queue makes writers wait.
pub const MAX_QUEUED_FORWARDS: usize = 8_192;
/// Batches of writes on their way to the leader at once. While they are, the next gathers.
pub const MAX_FORWARDS_IN_FLIGHT: usize = 4;
/// How long one forwarded request may take on the wire.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Writes to propose, each on its own; answered in order.
    Writes(Vec<Command>),
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
    /// One answer per write of `ForwardRequest::Writes`, in order.
    Written(Vec<Result<CommandResponse, ForwardError>>),
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

/// What became of one forwarded write, as far as its sender can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undelivered {
    /// It certainly reached no log.
    NotApplied,
    /// It may have reached a log, and may still commit.
    MaybeApplied,
    /// This member is shutting down.
    Stopping,
}

pub type Forwarded = Result<CommandResponse, Undelivered>;

type PendingWrite = (MemberId, String, Command, oneshot::Sender<Forwarded>);

/// Sends this member's writes to the leader in batches. Cheap to share.
#[derive(Clone)]
pub struct WriteForwarder {
    queue: mpsc::Sender<PendingWrite>,
}

impl WriteForwarder {
    /// Starts the batching task; it ends when every `WriteForwarder` handle is dropped.
    pub fn start(transport: Arc<PeerTransport>) -> WriteForwarder {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_FORWARDS);
        tokio::spawn(run_batches(transport, receiver));
        WriteForwarder { queue }
    }

    /// Forwards one write to `leader` (reached at `url`) and waits for its answer. Dropping the
    /// future abandons the wait, not the write: it may still be sent and commit.
    pub async fn forward(&self, leader: MemberId, url: String, command: Command) -> Forwarded {
        let (reply, answer) = oneshot::channel();
        self.queue.send((leader, url, command, reply)).await.map_err(|_| Undelivered::Stopping)?;
        answer.await.unwrap_or(Err(Undelivered::MaybeApplied))
    }
}

/// Readers waiting for the next read index from the leader. A full queue makes readers wait.
pub const MAX_QUEUED_READ_INDEXES: usize = 8_192;

/// A reader waiting for a read index: the leader it asks, where that leader is reached, and
/// where the index goes (`None` if the leader gave none).
type PendingRead = (MemberId, String, oneshot::Sender<Option<u64>>);

/// Asks the leader for read indexes (Raft's ReadIndex) for this member's linearizable
/// readers: one request for all the readers waiting when it leaves (up to a batch's
/// `MAX_BATCH_COMMANDS`). The leader confirms its leadership after every one of them began,
/// so the index it answers is good for each; readers that arrive while a request is out wait
/// for the next one. Cheap to share.
#[derive(Clone)]
pub struct ReadIndexForwarder {
    queue: mpsc::Sender<PendingRead>,
}

impl ReadIndexForwarder {
    /// Starts the forwarding task; it ends when every `ReadIndexForwarder` handle is dropped.
    pub fn start(transport: Arc<PeerTransport>) -> ReadIndexForwarder {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_READ_INDEXES);
        tokio::spawn(run_read_indexes(transport, receiver));
        ReadIndexForwarder { queue }
    }

    /// The index a read that begins now must wait for, from `leader` (reached at `url`);
    /// `None` if it gave none (it no longer leads, or did not answer in time).
    pub async fn read_index(&self, leader: MemberId, url: String) -> Option<u64> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((leader, url, reply)).await.ok()?;
        answer.await.ok().flatten()
    }
}

/// The item a batch turned away, if any, else the next one to arrive; `None` once every
/// sender is gone.
async fn held_or_next<T>(held: &mut Option<T>, receiver: &mut mpsc::Receiver<T>) -> Option<T> {
    match held.take() {
        Some(first) => Some(first),
        None => receiver.recv().await,
    }
}

async fn run_read_indexes(transport: Arc<PeerTransport>, mut receiver: mpsc::Receiver<PendingRead>) {
    // A reader asking another leader than the round's ends the round and starts the next.
    let mut held = None;
    loop {
        let Some(first) = held_or_next(&mut held, &mut receiver).await else { return };
        let (leader, url) = (first.0, first.1.clone());
        let waiting;
        (waiting, held) = gather_batch(first, &mut receiver, |_| 0, |pending| pending.0 == leader);
        let asked: Result<ForwardResult, _> =
            transport.call(leader, &url, PeerRpc::Forward, &ForwardRequest::ReadIndex, FORWARD_TIMEOUT).await;
        let index = match asked {
            Ok(Ok(ForwardResponse::ReadIndex { index })) => Some(index),
            Ok(Ok(other)) => {
                tracing::error!(?other, "the leader answered a read index with something else");
                None
            }
            Ok(Err(_)) | Err(_) => None,
        };
        for (_, _, reply) in waiting {
            let _ = reply.send(index);
        }
    }
}

async fn run_batches(transport: Arc<PeerTransport>, mut receiver: mpsc::Receiver<PendingWrite>) {
    let in_flight = Arc::new(Semaphore::new(MAX_FORWARDS_IN_FLIGHT));
    // A write for another leader than the batch's ends the batch and starts the next.
    let mut held = None;
    loop {
        let Some(first) = held_or_next(&mut held, &mut receiver).await else { return };
        // Waiting for a slot first lets the batch grow while earlier ones are on their way.
        let Ok(slot) = in_flight.clone().acquire_owned().await else { return };
        let (leader, url) = (first.0, first.1.clone());
        let batch;
        (batch, held) = gather_batch(
            first,
            &mut receiver,
            |pending| encoded_len(&pending.2),
            |pending| pending.0 == leader,
        );
        let transport = transport.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|(_, _, command, reply)| (command, reply)).unzip();
            let answers = send_batch(&transport, leader, &url, commands).await;
            drop(slot);
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        });
    }
}

/// Sends one batch and returns one answer per write, in order.
async fn send_batch(
    transport: &PeerTransport,
    leader: MemberId,
    url: &str,
    commands: Vec<Command>,
) -> Vec<Forwarded> {
    let count = commands.len();
    let request = ForwardRequest::Writes(commands);
    let result: Result<ForwardResult, TransportError> =
        transport.call(leader, url, PeerRpc::Forward, &request, FORWARD_TIMEOUT).await;
    let failed = match result {
        Ok(Ok(ForwardResponse::Written(answers))) if answers.len() == count => {
            // A write the leader refused (it is no longer the leader, it is stopping, it
            // timed out) may still have been appended: its outcome is unknown.
            return answers.into_iter().map(|answer| answer.map_err(|_| Undelivered::MaybeApplied)).collect();
        }
        Ok(Ok(other)) => {
            tracing::error!(?other, count, "the leader answered a batch of writes with something else");
            Undelivered::MaybeApplied
        }
        Err(TransportError::NotSent { .. }) => Undelivered::NotApplied,
        Ok(Err(_)) | Err(_) => Undelivered::MaybeApplied,
    };
    vec![Err(failed); count]
}
