//! shoal's binding of openraft: the type configuration and the Raft settings.
//!
//! Everything openraft-specific that other modules need is named here, so that the rest of the
//! store speaks of `Raft`, `LogId` and `Membership` without naming openraft's generics.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResponse};

/// A store member's id, as etcd's member id: unique for the life of the cluster.
pub type MemberId = u64;

/// What the cluster knows of a member besides its id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// Where other members reach its Raft transport (https://host:port).
    pub peer_url: String,
    /// Where clients reach its etcd API (https://host:port); empty until it has started.
    pub client_url: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.peer_url)
    }
}

openraft::declare_raft_types!(
    /// The types openraft runs shoal's store with.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = MemberId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Vec<u8>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<MemberId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<MemberId>;
pub type StoredMembership = openraft::StoredMembership<MemberId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<MemberId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<MemberId>;
