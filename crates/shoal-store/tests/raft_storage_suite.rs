//! The redb storage against openraft's storage conformance suite, and across reopening.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder, StorageIOError,
};
use shoal_store::command::{Batch, Command, Operation};
use shoal_store::raft::{Entry, LogId, Member, StorageError, TypeConfig, Vote};
use shoal_store::request::PutRequest;
use shoal_store::state_machine::StateMachine;
use shoal_store::storage::{self, LogStore, StateMachineStore};
use tempfile::TempDir;

const DB_FILE: &str = "store.redb";

/// openraft's `StorageError` is large; boxed, it keeps clippy's `result_large_err` quiet.
type TestResult = Result<(), Box<StorageError>>;

/// Opens the storage in a fresh temporary directory, which lives as long as the test's guard.
struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().map_err(|error| StorageIOError::write(&error))?;
        let (log, state_machine) =
            storage::open(&dir.path().join(DB_FILE)).map_err(|error| StorageIOError::write(&error))?;
        Ok((dir, log, state_machine))
    }
}

// Runs every check of openraft's suite (log reads, truncate, purge, vote, committed re-apply,
// snapshot build and transfer), each on a fresh database file.
#[test]
fn conforms_to_openraft_suite() -> TestResult {
    Ok(Suite::test_all(TempStoreBuilder)?)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn put(index: u64, key: &'static str, value: &'static str) -> Entry {
    let operation = Operation::Put(PutRequest {
        key: Bytes::from_static(key.as_bytes()),
        value: Bytes::from_static(value.as_bytes()),
        ..PutRequest::default()
    });
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(Batch { commands: vec![Command { client: None, operation }] }),
    }
}

fn membership(index: u64) -> Entry {
    let nodes = BTreeMap::from([(1, Member { name: "a".into(), ..Member::default() })]);
    let config = Membership::new(vec![BTreeSet::from([1])], nodes);
    Entry { log_id: log_id(1, index), payload: EntryPayload::Membership(config) }
}

fn open(dir: &TempDir) -> (LogStore, StateMachineStore) {
    storage::open(&dir.path().join(DB_FILE)).expect("the store database opens")
}

// Writes log entries, a vote, a committed log id and a snapshot, drops every handle (which
// releases redb's file lock, as a process exit would), reopens the file and reads each back.
// Then openraft's start-up reads must see: the snapshot in the state machine, and the
// committed entries after it still in the log for re-applying.
#[tokio::test]
async fn log_vote_committed_and_snapshot_survive_reopening() -> TestResult {
    let dir = TempDir::new().expect("a temporary directory");
    let entries = vec![membership(1), put(2, "a", "1"), put(3, "b", "2"), put(4, "c", "3")];
    let vote = Vote::new(3, 1);
    let snapshot_meta = {
        let (mut log, mut state_machine) = open(&dir);
        log.blocking_append(entries.clone()).await?;
        log.save_vote(&vote).await?;
        state_machine.apply(entries[..2].to_vec()).await?;
        let snapshot = state_machine.get_snapshot_builder().await.build_snapshot().await?;
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 2)));
        state_machine.apply(entries[2..].to_vec()).await?;
        log.save_committed(Some(log_id(1, 4))).await?;
        // An fsynced write after the lazily saved committed id makes that id durable too.
        log.save_vote(&vote).await?;
        snapshot.meta
    };

    let (mut log, mut state_machine) = open(&dir);
    assert_eq!(log.read_vote().await?, Some(vote));
    assert_eq!(log.read_committed().await?, Some(log_id(1, 4)));
    assert_eq!(log.try_get_log_entries(..).await?, entries);
    let log_state = log.get_log_state().await?;
    assert_eq!(log_state.last_log_id, Some(log_id(1, 4)));
    assert_eq!(log_state.last_purged_log_id, None);
    let current = state_machine.get_current_snapshot().await?.expect("the snapshot is stored");
    assert_eq!(current.meta, snapshot_meta);
    let (applied, applied_membership) = state_machine.applied_state().await?;
    assert_eq!(applied, Some(log_id(1, 2)));
    assert_eq!(applied_membership.log_id(), &Some(log_id(1, 1)));
    assert_eq!(*state_machine.shared().applied_index.borrow(), 2);
    Ok(())
}

// Truncation and purge are durable and keep the log without holes: after reopening, the
// purged prefix and the truncated suffix are gone and the last purged log id is remembered.
#[tokio::test]
async fn truncate_and_purge_survive_reopening() -> TestResult {
    let dir = TempDir::new().expect("a temporary directory");
    let entries = (1..=6).map(|index| put(index, "k", "v")).collect::<Vec<_>>();
    {
        let (mut log, _) = open(&dir);
        log.blocking_append(entries.clone()).await?;
        log.truncate(log_id(1, 5)).await?;
        log.purge(log_id(1, 2)).await?;
    }

    let (mut log, _) = open(&dir);
    assert_eq!(log.try_get_log_entries(..).await?, entries[2..4]);
    let log_state = log.get_log_state().await?;
    assert_eq!(log_state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(log_state.last_log_id, Some(log_id(1, 4)));
    Ok(())
}

// Installs a snapshot produced by another replica's state machine, reopens the file, and
// checks that the reloaded state machine encodes to exactly the installed bytes, and that the
// shared revision and applied index were published from it.
#[tokio::test]
async fn installed_snapshot_is_the_state_after_reopening() -> TestResult {
    let dir = TempDir::new().expect("a temporary directory");
    let mut leader = StateMachine::default();
    for entry in [membership(1), put(2, "a", "1"), put(3, "a", "2"), put(4, "b", "3")] {
        leader.apply(&entry);
    }
    let data = leader.to_snapshot();
    let meta = openraft::SnapshotMeta {
        last_log_id: leader.last_applied(),
        last_membership: leader.membership().clone(),
        snapshot_id: "1-4-7".into(),
    };
    {
        let (_, mut state_machine) = open(&dir);
        let mut received = state_machine.begin_receiving_snapshot().await?;
        received.extend_from_slice(&data);
        state_machine.install_snapshot(&meta, received).await?;
        let shared = state_machine.shared();
        assert_eq!(*shared.revision.borrow(), leader.mvcc().current_revision());
        assert_eq!(*shared.applied_index.borrow(), 4);
    }

    let (_, mut state_machine) = open(&dir);
    let shared = state_machine.shared();
    assert_eq!(shared.machine.read().expect("not poisoned").to_snapshot(), data);
    assert_eq!(*shared.revision.borrow(), leader.mvcc().current_revision());
    assert_eq!(*shared.applied_index.borrow(), 4);
    let current = state_machine.get_current_snapshot().await?.expect("the snapshot is stored");
    assert_eq!(current.meta, meta);
    assert_eq!(*current.snapshot, data);
    Ok(())
}

// A snapshot that does not decode is refused with a storage error, not a panic, and leaves
// the state machine and the stored snapshot as they were.
#[tokio::test]
async fn undecodable_snapshot_is_a_storage_error() -> TestResult {
    let dir = TempDir::new().expect("a temporary directory");
    let (_, mut state_machine) = open(&dir);
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(log_id(1, 4)),
        last_membership: Default::default(),
        snapshot_id: "1-4-1".into(),
    };
    let result = state_machine.install_snapshot(&meta, Box::new(vec![0xff; 16])).await;
    assert!(result.is_err(), "garbage installed: {result:?}");
    assert_eq!(state_machine.applied_state().await?.0, None);
    assert!(state_machine.get_current_snapshot().await?.is_none());
    Ok(())
}
