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

use crate::command::{
    BatchResponse, ClientSequence, Command, CommandError, CommandResponse, Operation, Outcome,
};
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
    /// Each session's last write (by `writes_recorded`) → client: the eviction order.
    by_last_write: BTreeMap<u64, u64>,
    /// Writes recorded so far: a logical clock of client writes, equal on every replica.
    writes_recorded: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Session {
    /// Responses to the client's writes from its `first_incomplete` on, by sequence.
    responses: BTreeMap<u64, CommandResponse>,
    /// Sequences below this were dropped for the per-client limit, answered or not.
    forgotten_below: u64,
    /// When the client's latest write was recorded (`writes_recorded`); 0 for never.
    last_write: u64,
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
    pub fn apply(&mut self, entry: &Entry) -> BatchResponse {
        assert!(
            self.last_applied.is_none_or(|applied| applied.index < entry.log_id.index),
            "entry {} applied after {:?}",
            entry.log_id,
            self.last_applied
        );
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => BatchResponse::default(),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                BatchResponse::default()
            }
            EntryPayload::Normal(batch) => BatchResponse {
                responses: batch.commands.iter().map(|command| self.apply_command(command)).collect(),
            },
        }
    }

    fn apply_command(&mut self, command: &Command) -> CommandResponse {
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
                self.sessions.record(client, response.clone());
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
            Operation::Txn(txn) => {
                self.check_txn_leases(txn).and_then(|()| Ok(self.mvcc.txn(txn)?)).map(|(response, events)| {
                    self.track_lease_keys(&events);
                    Outcome::Txn(response)
                })
            }
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
            .map(|key| {
                RequestOp::DeleteRange(DeleteRangeRequest { range: KeyRange::key(key), prev_kv: false })
            })
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
        } else if client.sequence < client.first_incomplete || session.forgotten_below > client.sequence {
            SessionLookup::Forgotten
        } else {
            SessionLookup::New
        }
    }

    fn record(&mut self, client: ClientSequence, response: CommandResponse) {
        self.writes_recorded += 1;
        let now = self.writes_recorded;
        let session = self.by_client.entry(client.client_id).or_default();
        if session.last_write != 0 {
            self.by_last_write.remove(&session.last_write);
        }
        session.last_write = now;
        session.responses.insert(client.sequence, response);
        while session.responses.len() > MAX_RESPONSES_PER_CLIENT {
            let (sequence, _) = session.responses.pop_first().expect("over the limit, so not empty");
            session.forgotten_below = sequence + 1;
        }
        self.by_last_write.insert(now, client.client_id);
        while self.by_client.len() > MAX_CLIENT_SESSIONS {
            let (_, oldest) = self.by_last_write.pop_first().expect("sessions and their order agree");
            self.by_client.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;
    use crate::command::Batch;
    use crate::request::{PutRequest, RangeRequest};

    fn entry(index: u64, commands: Vec<Command>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Batch { commands }),
        }
    }

    fn put(key: &str, value: &str, lease: i64) -> Operation {
        Operation::Put(PutRequest {
            key: key.to_owned().into(),
            value: value.to_owned().into(),
            lease,
            ..Default::default()
        })
    }

    fn command(client: Option<(u64, u64, u64)>, operation: Operation) -> Command {
        let client = client.map(|(client_id, sequence, first_incomplete)| ClientSequence {
            client_id,
            sequence,
            first_incomplete,
        });
        Command { client, operation }
    }

    fn value_of(machine: &StateMachine, key: &str) -> Option<Bytes> {
        let request = RangeRequest { range: KeyRange::key(key.to_owned()), ..Default::default() };
        machine
            .mvcc()
            .range(&request)
            .expect("range at the current revision")
            .kvs
            .first()
            .map(|kv| kv.value.clone())
    }

    // The commands of one batch apply in order, each with its own revision, as if each had
    // had an entry of its own; a failing command leaves its neighbours untouched.
    #[test]
    fn a_batch_applies_each_command_with_its_own_revision() {
        let mut machine = StateMachine::default();
        let responses = machine.apply(&entry(
            1,
            vec![
                command(None, put("a", "1", 0)),
                command(None, put("b", "2", 7)),
                command(None, put("a", "3", 0)),
            ],
        ));
        let revisions: Vec<_> = responses.responses.iter().map(|r| r.revision).collect();
        assert_eq!(revisions, vec![2, 2, 3], "the unknown lease fails without advancing the revision");
        assert_eq!(responses.responses[1].outcome, Err(CommandError::LeaseNotFound { id: 7 }));
        assert_eq!(value_of(&machine, "a").as_deref(), Some(&b"3"[..]));
        assert_eq!(value_of(&machine, "b"), None);
    }

    // A retried write (same client and sequence) is answered from the session, in the same
    // batch or a later one, and applied once; an acknowledged and forgotten one is refused.
    #[test]
    fn retried_writes_apply_at_most_once() {
        let mut machine = StateMachine::default();
        let first = machine.apply(&entry(
            1,
            vec![command(Some((9, 1, 1)), put("k", "v1", 0)), command(Some((9, 1, 1)), put("k", "v1", 0))],
        ));
        assert_eq!(first.responses[0], first.responses[1]);
        assert_eq!(machine.mvcc().current_revision(), 2, "applied once");
        let retry = machine.apply(&entry(2, vec![command(Some((9, 1, 1)), put("k", "v1", 0))]));
        assert_eq!(retry.responses[0], first.responses[0]);
        assert_eq!(machine.mvcc().current_revision(), 2, "still applied once");
        // The client saw sequence 1 complete; a late duplicate of it must not apply again.
        let stale = machine.apply(&entry(3, vec![command(Some((9, 1, 2)), put("k", "v1", 0))]));
        assert!(matches!(stale.responses[0].outcome, Err(CommandError::StaleSequence { .. })));
        assert_eq!(machine.mvcc().current_revision(), 2);
    }

    // Keys put with a lease are deleted, in one revision, when the lease is revoked; a key
    // moved to another lease, or deleted, no longer belongs to the first.
    #[test]
    fn revoking_a_lease_deletes_exactly_its_keys() {
        let mut machine = StateMachine::default();
        machine.apply(&entry(
            1,
            vec![
                command(None, Operation::LeaseGrant { id: 5, ttl_seconds: 10 }),
                command(None, Operation::LeaseGrant { id: 6, ttl_seconds: 10 }),
                command(None, put("a", "1", 5)),
                command(None, put("b", "1", 5)),
                command(None, put("c", "1", 5)),
                command(None, put("b", "2", 6)),
            ],
        ));
        assert_eq!(machine.leases()[&5].keys.len(), 2);
        let before = machine.mvcc().current_revision();
        let revoked = machine.apply(&entry(2, vec![command(None, Operation::LeaseRevoke { id: 5 })]));
        assert_eq!(revoked.responses[0].outcome, Ok(Outcome::LeaseRevoked));
        assert_eq!(machine.mvcc().current_revision(), before + 1, "one revision for all the keys");
        assert_eq!((value_of(&machine, "a"), value_of(&machine, "c")), (None, None));
        assert_eq!(value_of(&machine, "b").as_deref(), Some(&b"2"[..]));
        assert!(!machine.leases().contains_key(&5));
        let again = machine.apply(&entry(3, vec![command(None, Operation::LeaseRevoke { id: 5 })]));
        assert_eq!(again.responses[0].outcome, Err(CommandError::LeaseNotFound { id: 5 }));
    }

    // A snapshot restores everything a replica needs: data, leases, sessions, applied id.
    #[test]
    fn snapshot_round_trips_the_whole_state() {
        let mut machine = StateMachine::default();
        machine.apply(&entry(
            1,
            vec![
                command(None, Operation::LeaseGrant { id: 5, ttl_seconds: 10 }),
                command(Some((1, 1, 1)), put("a", "1", 5)),
            ],
        ));
        let mut restored = StateMachine::from_snapshot(&machine.to_snapshot()).expect("decodable");
        assert_eq!(restored.last_applied(), machine.last_applied());
        assert_eq!(restored.leases(), machine.leases());
        assert_eq!(value_of(&restored, "a"), value_of(&machine, "a"));
        let retry = restored.apply(&entry(2, vec![command(Some((1, 1, 1)), put("a", "1", 5))]));
        assert_eq!(retry.responses[0].revision, 2, "answered from the session that survived the snapshot");
        assert_eq!(restored.mvcc().current_revision(), 2, "not applied again");
        assert!(StateMachine::from_snapshot(b"not a snapshot").is_err());
    }
}
