//! The invariants a simulated run checks: some after every step, the rest once it has healed.
//!
//! Throughout the run, the [`Observer`] samples every running member's Raft metrics and checks:
//! - Election Safety, as openraft 0.9 provides it: a leader is identified by (term, node id),
//!   and several may share a term, ordered by node id (the workspace Cargo.toml says why shoal
//!   keeps that mode). Raft's guarantee then is that each member's vote, the leader id it
//!   granted or holds, only moves forward, even across restarts: a member that voted twice for
//!   one leader id could let two leaders claim it. So every member's vote must never decrease;
//! - State Machine Safety: an index, once applied anywhere, always holds the same log id, over
//!   every member's applied and snapshot log ids and, whenever a member is stopped, its whole
//!   durable log up to its committed index;
//! - that no member's Raft has stopped with a fatal error.
//!
//! After the heal, [`check_converged`] checks that every member holds the same state, and
//! [`check_durability`] that every acknowledged write is in it and no failed write is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::executor::block_on;
use openraft::RaftLogReader;
use openraft::storage::RaftLogStorage;
use shoal_store::mvcc::EventKind;
use shoal_store::raft::{LogId, Vote};
use shoal_store::request::KeyRange;
use shoal_store::storage::{Blocking, StorageOptions};
use shoal_store::store::Store;

use crate::history::{Answer, Record, Request};

/// A broken invariant, with what shows it.
#[derive(Clone, Debug)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// Invariants checked at every step, with what has been seen so far.
#[derive(Debug, Default)]
pub struct Observer {
    /// member → the latest vote it was seen holding, and when.
    votes: BTreeMap<String, Sighting<Vote>>,
    /// log index → the log id some member had applied (or stored as committed) there.
    applied: BTreeMap<u64, Sighting<LogId>>,
}

#[derive(Clone, Debug)]
struct Sighting<T> {
    value: T,
    by: String,
    at: Duration,
}

impl Observer {
    /// Checks one member's Raft metrics against everything seen before.
    pub fn sample(&mut self, now: Duration, name: &str, store: &Store) -> Result<(), Violation> {
        let metrics = store.raft().metrics();
        let metrics = metrics.borrow();
        if let Err(fatal) = &metrics.running_state {
            return Err(violation(
                "raft keeps running",
                format!("{name}'s raft stopped at {now:?}: {fatal}"),
            ));
        }
        self.record_vote(name, metrics.vote, now)?;
        if let Some(applied) = metrics.last_applied {
            self.record_applied(applied, name, now)?;
        }
        if let Some(snapshot) = metrics.snapshot {
            self.record_applied(snapshot, name, now)?;
        }
        Ok(())
    }

    /// Checks the durable log of a stopped member, up to its committed index: every entry there
    /// is committed, so it must agree with whatever any member applied at its index.
    pub fn read_log(&mut self, now: Duration, name: &str, data_dir: &Path) -> Result<(), Violation> {
        let options = StorageOptions { blocking: Blocking::Inline };
        let path = data_dir.join("store.redb");
        if !path.exists() {
            return Ok(());
        }
        let (mut log, _state_machine) = shoal_store::storage::open_with(&path, options)
            .unwrap_or_else(|error| panic!("{name}'s storage does not open after a stop: {error}"));
        // Inline storage completes every call without waiting, so no runtime is needed.
        let state = block_on(log.get_log_state()).expect("the log state is readable");
        let Some(committed) = block_on(log.read_committed()).expect("the committed log id is readable")
        else {
            return Ok(());
        };
        let first = state.last_purged_log_id.map_or(0, |purged| purged.index + 1);
        let entries =
            block_on(log.try_get_log_entries(first..=committed.index)).expect("the log is readable");
        let source = format!("{name}'s durable log");
        for entry in entries {
            self.record_applied(entry.log_id, &source, now)?;
        }
        self.record_applied(committed, &source, now)
    }

    /// `member` held `vote` at `at`.
    pub fn record_vote(&mut self, member: &str, vote: Vote, at: Duration) -> Result<(), Violation> {
        // Votes of openraft's leader ids are totally ordered.
        if let Some(seen) = self.votes.get(member)
            && vote < seen.value
        {
            return Err(violation(
                "a member's vote never goes backwards",
                format!("{member} held vote {} at {:?}, then {vote} at {at:?}", seen.value, seen.at),
            ));
        }
        self.votes.insert(member.to_owned(), Sighting { value: vote, by: member.to_owned(), at });
        Ok(())
    }

    /// `by` had applied (or stored as committed) `log_id` at `at`.
    pub fn record_applied(&mut self, log_id: LogId, by: &str, at: Duration) -> Result<(), Violation> {
        let seen = self.applied.entry(log_id.index).or_insert_with(|| Sighting {
            value: log_id,
            by: by.to_owned(),
            at,
        });
        if seen.value != log_id {
            return Err(violation(
                "committed entries never change",
                format!(
                    "index {}: {} had {} at {:?}, {by} had {log_id} at {at:?}",
                    log_id.index, seen.by, seen.value, seen.at
                ),
            ));
        }
        Ok(())
    }

    /// The highest term any member reached, and how many indexes were seen applied.
    pub fn counts(&self) -> (u64, usize) {
        let term = self.votes.values().map(|seen| seen.value.leader_id().term).max().unwrap_or(0);
        (term, self.applied.len())
    }
}

/// Every member has applied the same entries and holds byte-for-byte the same state.
pub fn check_converged(members: &[(String, Store)]) -> Result<(), Violation> {
    let states: Vec<(&str, Vec<u8>, String)> = members
        .iter()
        .map(|(name, store)| {
            let machine = store.shared().machine.read().expect("state machine lock poisoned");
            let summary = format!(
                "applied {:?}, revision {}, {} keys",
                machine.last_applied(),
                machine.mvcc().current_revision(),
                machine.mvcc().key_count()
            );
            (name.as_str(), machine.to_snapshot(), summary)
        })
        .collect();
    let (first_name, first_state, first_summary) = &states[0];
    for (name, state, summary) in &states[1..] {
        if state != first_state {
            return Err(violation(
                "all members converge to the same state",
                format!("{first_name}: {first_summary}; {name}: {summary}"),
            ));
        }
    }
    Ok(())
}

/// Every write a client saw succeed is in the store's change log, and no write a client was told
/// certainly failed is. Values are unique per request, so a value names the request that wrote it.
pub fn check_durability(store: &Store, records: &[Record]) -> Result<(), Violation> {
    let machine = store.shared().machine.read().expect("state machine lock poisoned");
    let mvcc = machine.mvcc();
    assert_eq!(mvcc.compact_revision(), 0, "a run writes too little to be compacted");
    let everything = KeyRange { key: Bytes::from_static(b"\0"), range_end: Bytes::from_static(b"\0") };
    let events = mvcc.events(1, &everything, usize::MAX).expect("nothing is compacted").events;
    let written: BTreeSet<(Bytes, Bytes)> = events
        .into_iter()
        .filter(|event| event.kind == EventKind::Put)
        .map(|event| (event.kv.key, event.kv.value))
        .collect();
    for record in records {
        let (key, value) = match &record.request {
            Request::Put { key, value } | Request::CompareAndSet { key, new: value, .. } => (key, value),
            Request::Get { .. } | Request::Delete { .. } => continue,
        };
        let answer = record.completion.as_ref().map(|(_, answer)| answer);
        let must_be_present = matches!(answer, Some(Answer::Done | Answer::Swapped(true)));
        let must_be_absent = matches!(answer, Some(Answer::Failed | Answer::Swapped(false)));
        let present = written.contains(&(key.clone(), value.clone()));
        if must_be_present && !present {
            return Err(violation(
                "every acknowledged write survives",
                format!("{key:?} := {value:?} was acknowledged ({record:?}) but is not in the store"),
            ));
        }
        if must_be_absent && present {
            return Err(violation(
                "a write reported as failed never takes effect",
                format!("{key:?} := {value:?} was reported failed ({record:?}) but is in the store"),
            ));
        }
    }
    Ok(())
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant \"{}\" broken: {}", self.invariant, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 0), index)
    }

    // A vote may move to a later term, to a higher node id in its term, or become committed;
    // a member going back to an earlier vote breaks Election Safety. Members are independent.
    #[test]
    fn votes_only_move_forward() {
        let mut observer = Observer::default();
        let at = Duration::ZERO;
        assert!(observer.record_vote("m1", Vote::new(1, 7), at).is_ok());
        assert!(observer.record_vote("m1", Vote::new(1, 8), at).is_ok());
        assert!(observer.record_vote("m1", Vote::new_committed(1, 8), at).is_ok());
        assert!(observer.record_vote("m2", Vote::new(1, 7), at).is_ok());
        assert!(observer.record_vote("m1", Vote::new(2, 7), at).is_ok());
        let violation = observer.record_vote("m1", Vote::new_committed(1, 8), at).unwrap_err();
        assert_eq!(violation.invariant, "a member's vote never goes backwards");
        assert_eq!(observer.counts().0, 2);
    }

    // An index applied again with the same log id is fine; with another term it breaks State
    // Machine Safety.
    #[test]
    fn applied_entries_never_change() {
        let mut observer = Observer::default();
        let at = Duration::ZERO;
        assert!(observer.record_applied(log_id(1, 5), "m1", at).is_ok());
        assert!(observer.record_applied(log_id(1, 5), "m2's durable log", at).is_ok());
        assert!(observer.record_applied(log_id(2, 6), "m2", at).is_ok());
        let violation = observer.record_applied(log_id(2, 5), "m3", at).unwrap_err();
        assert_eq!(violation.invariant, "committed entries never change");
        assert_eq!(observer.counts(), (0, 2));
    }
}
