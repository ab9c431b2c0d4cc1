//! What the Raft log carries: the writes a client proposed, and what applying them returned.

use serde::{Deserialize, Serialize};

use crate::mvcc::{MvccError, Revision};
use crate::request::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, TxnRequest, TxnResponse,
};

/// Identifies one write of one client, so that a write retried after an unknown outcome is
/// applied at most once (Raft dissertation §6.3). The state machine remembers the responses of
/// each client's writes from `first_incomplete` on and answers a repeat from that memory; the
/// client raises `first_incomplete` as its writes complete, which lets the state machine forget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSequence {
    pub client_id: u64,
    pub sequence: u64,
    /// The lowest sequence of this client whose response it has not yet received.
    pub first_incomplete: u64,
}

/// What one Raft entry carries: the writes the leader gathered while its previous entries were
/// being made durable (group commit). They apply in order, each with its own revision, exactly
/// as if each had had an entry of its own; they only share the entry's fsync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub commands: Vec<Command>,
}

/// What applying one entry produced: one response per command of its batch, in order. Blank
/// and membership entries produce none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub responses: Vec<CommandResponse>,
}

/// One replicated write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub client: Option<ClientSequence>,
    pub operation: Operation,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    /// Discard history below this revision.
    Compact {
        revision: Revision,
    },
    /// Create a lease; the proposer chose the id, so that every replica agrees on it.
    LeaseGrant {
        id: i64,
        ttl_seconds: i64,
    },
    /// Delete a lease and every key attached to it (explicitly, or because it expired).
    LeaseRevoke {
        id: i64,
    },
}

/// What applying one `Command` produced. `revision` is the store's revision after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    pub revision: Revision,
    pub outcome: Result<Outcome, CommandError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compacted,
    LeaseGranted { id: i64, ttl_seconds: i64 },
    LeaseRevoked,
}

/// Why a replicated write was rejected when applied. Rejections are deterministic: every
/// replica rejects the same command the same way, and nothing of it is applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound { id: i64 },
    #[error("etcdserver: lease already exists")]
    LeaseExists { id: i64 },
    #[error("etcdserver: too many leases (limit {limit})")]
    TooManyLeases { limit: usize },
    #[error("shoal: sequence {sequence} of client {client_id} was already answered and forgotten")]
    StaleSequence { client_id: u64, sequence: u64 },
}
