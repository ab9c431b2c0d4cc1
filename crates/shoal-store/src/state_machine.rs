//! The replicated state machine: what applying one committed Raft entry does.
//!
//! It is pure and deterministic — no clock, no randomness, no I/O — so every replica that
//! applies the same log reaches the same state. Besides the MVCC store it keeps the leases
//! (their TTLs and attached keys; when a lease expires is the leader's business, not the
//! state machine's) and the client sessions that make retried writes apply at most once.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use crate::command::{ClientSequence, Command, CommandError, CommandResponse, Operation, Outcome};
use crate::limits::{MAX_CLIENT_SESSIONS, MAX_LEASES, MAX_RESPONSES_PER_CLIENT};
use crate::mvcc::{Event, EventKind, Mvcc};
use crate::raft::{Entry, LogId, StoredMembership};
use crate::request::{DeleteRangeRequest, KeyRange, RequestOp, TxnRequest};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StateMachine {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    mvcc: Mvcc,
    leases: BTreeMap<i64, LeaseRecord>,
    sessions: ClientSessions,
}

/// A lease as every replica knows it. Its deadline lives only on the leader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub ttl_seconds: i64,
    pub keys: BTreeSet<Bytes>,
}

/// The last write of each recent client, with its response, for answering retries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ClientSessions {
    by_client: BTreeMap<u64, Session>,
    /// Log index of each session's last write → client: the eviction order.
    by_last_index: BTreeMap<u64, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Session {
    /// Responses to the client's writes from its `first_incomplete` on, by sequence.
    responses: BTreeMap<u64, CommandResponse>,
    /// Sequences below this were dropped for the per-client limit, answered or not.
    forgotten_below: u64,
    /// Log index of the client's latest write; 0 for none.
    last_index: u64,
}

/// The snapshot could not be decoded: it was not produced by this version of shoal.
#[derive(Debug, thiserror::Error)]
#[error("state machine snapshot is undecodable")]
pub struct SnapshotDecodeError(#[source] postcard::Error);

impl StateMachine {
    pub fn last_applied(&self) -> Option<LogId> {
        self.last_applied
    }

    pub fn membership(&self) -> &StoredMembership {
        &self.membership
    }

    pub fn mvcc(&self) -> &Mvcc {
        &self.mvcc
    }

    pub fn leases(&self) -> &BTreeMap<i64, LeaseRecord> {
        &self.leases
    }

    /// Applies one committed entry. Entries must come in log order, each exactly once.
    pub fn apply(&mut self, entry: &Entry) -> CommandResponse {
        assert!(
            self.last_applied.is_none_or(|applied| applied.index < entry.log_id.index),
            "entry {} applied after {:?}",
            entry.log_id,
            self.last_applied
        );
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => self.internal_response(),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                self.internal_response()
            }
            EntryPayload::Normal(command) => self.apply_command(entry.log_id.index, command),
        }
    }

    fn internal_response(&self) -> CommandResponse {
        CommandResponse { revision: self.mvcc.current_revision(), outcome: Ok(Outcome::Internal) }
    }

    fn apply_command(&mut self, index: u64, command: &Command) -> CommandResponse {
        let Some(client) = command.client else {
            return self.apply_operation(&command.operation);
        };
        match self.sessions.lookup(client) {
            SessionLookup::Answered(response) => response,
            SessionLookup::Forgotten => CommandResponse {
                revision: self.mvcc.current_revision(),
                outcome: Err(CommandError::StaleSequence {
                    client_id: client.client_id,
                    sequence: client.sequence,
                }),
            },
            SessionLookup::New => {
                let response = self.apply_operation(&command.operation);
                self.sessions.record(client, index, response.clone());
                response
            }
        }
    }

    fn apply_operation(&mut self, operation: &Operation) -> CommandResponse {
        let outcome = match operation {
            Operation::Put(put) => self
                .check_lease_exists(put.lease)
                .and_then(|()| Ok(self.mvcc.put(put)?))
                .map(|(response, events)| {
                    self.track_lease_keys(&events);
                    Outcome::Put(response)
                }),
            Operation::DeleteRange(delete) => {
                self.mvcc.delete_range(delete).map_err(CommandError::from).map(|(response, events)| {
                    self.track_lease_keys(&events);
                    Outcome::DeleteRange(response)
                })
            }
            Operation::Txn(txn) => self
                .check_txn_leases(txn)
                .and_then(|()| Ok(self.mvcc.txn(txn)?))
                .map(|(response, events)| {
                    self.track_lease_keys(&events);
                    Outcome::Txn(response)
                }),
            Operation::Compact { revision } => {
                self.mvcc.compact(*revision).map(|()| Outcome::Compacted).map_err(Into::into)
            }
            Operation::LeaseGrant { id, ttl_seconds } => self.grant_lease(*id, *ttl_seconds),
            Operation::LeaseRevoke { id } => self.revoke_lease(*id),
        };
        CommandResponse { revision: self.mvcc.current_revision(), outcome }
    }

    fn check_lease_exists(&self, lease: i64) -> Result<(), CommandError> {
        if lease == 0 || self.leases.contains_key(&lease) {
            Ok(())
        } else {
            Err(CommandError::LeaseNotFound { id: lease })
        }
    }

    /// Every put in either branch must name a live lease. etcd checks only the branch taken;
    /// checking both is stricter and needs no second evaluation of the compares.
    fn check_txn_leases(&self, txn: &TxnRequest) -> Result<(), CommandError> {
        txn.success.iter().chain(&txn.failure).try_for_each(|op| match op {
            RequestOp::Put(put) => self.check_lease_exists(put.lease),
            RequestOp::Txn(nested) => self.check_txn_leases(nested),
            RequestOp::Range(_) | RequestOp::DeleteRange(_) => Ok(()),
        })
    }

    /// Keeps each lease's key set equal to the keys attached to it.
    fn track_lease_keys(&mut self, events: &[Event]) {
        for event in events {
            if let Some(prev) = &event.prev_kv
                && prev.lease != 0
                && let Some(lease) = self.leases.get_mut(&prev.lease)
            {
                lease.keys.remove(&prev.key);
            }
            if event.kind == EventKind::Put
                && event.kv.lease != 0
                && let Some(lease) = self.leases.get_mut(&event.kv.lease)
            {
                lease.keys.insert(event.kv.key.clone());
            }
        }
    }

    fn grant_lease(&mut self, id: i64, ttl_seconds: i64) -> Result<Outcome, CommandError> {
        assert!(id > 0, "lease ids are chosen positive by the proposer");
        if self.leases.contains_key(&id) {
            return Err(CommandError::LeaseExists { id });
        }
        if self.leases.len() >= MAX_LEASES {
            return Err(CommandError::TooManyLeases { limit: MAX_LEASES });
        }
        self.leases.insert(id, LeaseRecord { ttl_seconds, keys: BTreeSet::new() });
        Ok(Outcome::LeaseGranted { id, ttl_seconds })
    }

    /// Deletes the lease's keys in one write (one revision), then the lease.
    fn revoke_lease(&mut self, id: i64) -> Result<Outcome, CommandError> {
        let lease = self.leases.remove(&id).ok_or(CommandError::LeaseNotFound { id })?;
        let deletes = lease
            .keys
            .into_iter()
            .map(|key| RequestOp::DeleteRange(DeleteRangeRequest { range: KeyRange::key(key), prev_kv: false }))
            .collect::<Vec<_>>();
        if !deletes.is_empty() {
            let txn = TxnRequest { compare: Vec::new(), success: deletes, failure: Vec::new() };
            let (_, events) = self.mvcc.txn(&txn).expect("deleting distinct existing keys cannot fail");
            self.track_lease_keys(&events);
        }
        Ok(Outcome::LeaseRevoked)
    }

    pub fn to_snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing to memory cannot fail")
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotDecodeError> {
        postcard::from_bytes(bytes).map_err(SnapshotDecodeError)
    }
}

enum SessionLookup {
    Answered(CommandResponse),
    Forgotten,
    New,
}

impl ClientSessions {
    /// Forgets what the client has acknowledged, then tells whether this write is a repeat.
    fn lookup(&mut self, client: ClientSequence) -> SessionLookup {
        let Some(session) = self.by_client.get_mut(&client.client_id) else {
            return SessionLookup::New;
        };
        session.responses = session.responses.split_off(&client.first_incomplete);
        if let Some(response) = session.responses.get(&client.sequence) {
            SessionLookup::Answered(response.clone())
        } else if client.sequence < client.first_incomplete
            || session.forgotten_below > client.sequence
        {
            SessionLookup::Forgotten
        } else {
            SessionLookup::New
        }
    }

    fn record(&mut self, client: ClientSequence, index: u64, response: CommandResponse) {
        let session = self.by_client.entry(client.client_id).or_default();
        if session.last_index != 0 {
            self.by_last_index.remove(&session.last_index);
        }
        session.last_index = index;
        session.responses.insert(client.sequence, response);
        while session.responses.len() > MAX_RESPONSES_PER_CLIENT {
            let (sequence, _) = session.responses.pop_first().expect("over the limit, so not empty");
            session.forgotten_below = sequence + 1;
        }
        self.by_last_index.insert(index, client.client_id);
        while self.by_client.len() > MAX_CLIENT_SESSIONS {
            let (_, oldest) = self.by_last_index.pop_first().expect("sessions and their index agree");
            self.by_client.remove(&oldest);
        }
    }
}
