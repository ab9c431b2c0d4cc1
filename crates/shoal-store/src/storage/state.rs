//! The state machine as openraft drives it: applied in memory, snapshotted durably to redb.
//!
//! The [`StateMachine`] lives in memory behind a lock that readers (the etcd API, watchers)
//! share through [`SharedState`]. Its durable form is the latest snapshot in redb plus the Raft
//! log after it: on open the snapshot is loaded and openraft re-applies the committed rest. So
//! `apply` writes nothing to disk, while every snapshot, built or installed, is fsynced before
//! openraft learns of it (openraft purges the log up to a snapshot it believes durable).

use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use redb::{Durability, ReadableDatabase, ReadableTable};
use tokio::sync::watch;

use super::{
    Db, DbError, SNAPSHOT, SNAPSHOT_BUILDS_KEY, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY, StorageOpenError,
    encode, run_blocking, storage_error,
};
use crate::command::BatchResponse;
use crate::raft::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state_machine::StateMachine;

/// The applied state as the rest of the member sees it.
pub struct SharedState {
    /// The applied state; readers (the etcd API, watchers) take the read lock briefly.
    pub machine: RwLock<StateMachine>,
    /// The MVCC revision after the latest apply batch; watchers and readers wait on it.
    pub revision: watch::Sender<i64>,
    /// The last applied log index after the latest apply batch.
    pub applied_index: watch::Sender<u64>,
}

/// openraft's handle on the state machine and its snapshots.
pub struct StateMachineStore {
    db: Arc<Db>,
    shared: Arc<SharedState>,
}

/// Builds a snapshot of the state machine as it is when `build_snapshot` runs.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    shared: Arc<SharedState>,
}

/// A panic while the machine was write-locked may have left it half-applied; going on would
/// serve, and snapshot, a state no other replica has.
const POISONED: &str = "the state machine lock is poisoned: a panic interrupted an apply";

impl SharedState {
    fn new(machine: StateMachine) -> Self {
        let (revision, applied_index) = progress(&machine);
        Self {
            machine: RwLock::new(machine),
            revision: watch::Sender::new(revision),
            applied_index: watch::Sender::new(applied_index),
        }
    }

    fn publish(&self, (revision, applied_index): (i64, u64)) {
        self.revision.send_replace(revision);
        self.applied_index.send_replace(applied_index);
    }
}

/// The values `SharedState`'s watches publish for `machine`. Index 0 stands for "nothing
/// applied" too; entry 0 is openraft's initial membership, which no reader waits for.
fn progress(machine: &StateMachine) -> (i64, u64) {
    (machine.mvcc().current_revision(), machine.last_applied().map_or(0, |log_id| log_id.index))
}

impl StateMachineStore {
    /// Loads the stored snapshot, if any, into a fresh state machine.
    pub(super) fn load(db: Arc<Db>) -> Result<Self, StorageOpenError> {
        let stored = read_snapshot(&db).map_err(|error| match error {
            DbError::Redb(source) => StorageOpenError::ReadSnapshot { source },
            DbError::Decode(source) => StorageOpenError::DecodeSnapshotMeta { source },
        })?;
        let machine = match stored {
            None => StateMachine::default(),
            Some((meta, data)) => {
                let machine = StateMachine::from_snapshot(&data)
                    .map_err(|source| StorageOpenError::DecodeSnapshot { source })?;
                assert_eq!(machine.last_applied(), meta.last_log_id, "a stored snapshot matches its meta");
                machine
            }
        };
        Ok(Self { db, shared: Arc::new(SharedState::new(machine)) })
    }

    /// The applied state, for the parts of the member that read it.
    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    /// The size of the database file, which also holds the Raft log.
    pub fn db_size_bytes(&self) -> std::io::Result<u64> {
        self.db.size_bytes()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let machine = self.shared.machine.read().expect(POISONED);
        Ok((machine.last_applied(), machine.membership().clone()))
    }

    /// Applies the batch under one write-lock acquisition, then publishes the new revision and
    /// index once. Applying is in-memory work bounded by openraft's batch size, so it runs on
    /// the async thread rather than paying for a hop to the blocking pool.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut machine = self.shared.machine.write().expect(POISONED);
        let responses = entries.into_iter().map(|entry| machine.apply(&entry)).collect::<Vec<_>>();
        let progress = progress(&machine);
        drop(machine);
        if !responses.is_empty() {
            self.shared.publish(progress);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), shared: self.shared.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, StorageError> {
        Ok(Box::default())
    }

    /// Decodes the snapshot, stores it durably, and only then replaces the machine, so that a
    /// crash in between restarts from the new snapshot rather than from a state never stored.
    /// Decoding is CPU work proportional to the store's size, so it too runs off the async
    /// threads.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let db = self.db.clone();
        let meta = meta.clone();
        // The error is boxed only to keep the closure's result small (clippy's
        // `result_large_err`).
        let machine = run_blocking(db.blocking, move || -> Result<StateMachine, Box<StorageError>> {
            let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
            let machine = StateMachine::from_snapshot(&snapshot).map_err(|error| {
                StorageError::from(StorageIOError::new(subject(), ErrorVerb::Read, AnyError::new(&error)))
            })?;
            if machine.last_applied() != meta.last_log_id {
                let error = AnyError::error(format!(
                    "snapshot data is applied up to {:?}, its meta says {:?}",
                    machine.last_applied(),
                    meta.last_log_id
                ));
                return Err(Box::new(StorageIOError::new(subject(), ErrorVerb::Read, error).into()));
            }
            store_snapshot(&db, meta.clone(), &snapshot, Origin::Installed)
                .map_err(storage_error(subject(), ErrorVerb::Write))?;
            Ok(machine)
        })
        .await
        .map_err(|error| *error)?;
        let progress = progress(&machine);
        *self.shared.machine.write().expect(POISONED) = machine;
        self.shared.publish(progress);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.db.clone();
        let stored = run_blocking(db.blocking, move || read_snapshot(&db))
            .await
            .map_err(storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(data) }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Serializes the machine under the read lock (a consistent cut; applies wait meanwhile),
    /// then stores it durably under a fresh id before returning it.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db.clone();
        let shared = self.shared.clone();
        run_blocking(db.blocking, move || {
            let (data, last_log_id, last_membership) = {
                let machine = shared.machine.read().expect(POISONED);
                (machine.to_snapshot(), machine.last_applied(), machine.membership().clone())
            };
            let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id: String::new() };
            let meta = store_snapshot(&db, meta, &data, Origin::Built)?;
            Ok(Snapshot { meta, snapshot: Box::new(data) })
        })
        .await
        .map_err(storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write))
    }
}

/// Where a snapshot being stored comes from.
enum Origin {
    /// Built here: it gets a fresh id.
    Built,
    /// Received from the leader, under the leader's id.
    Installed,
}

/// Stores a snapshot durably as the current one, unless the current one is newer: a snapshot
/// built from an older state may finish after a newer one was installed. Returns the meta as
/// stored, with its id.
///
/// A built snapshot is named `{term}-{index}-{builds}`, the count of builds being kept in the
/// same transaction so that ids stay unique across restarts.
fn store_snapshot(
    db: &Db,
    mut meta: SnapshotMeta,
    data: &[u8],
    origin: Origin,
) -> Result<SnapshotMeta, DbError> {
    let mut txn = db.database.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut table = txn.open_table(SNAPSHOT)?;
        if let Origin::Built = origin {
            let builds = match table.get(SNAPSHOT_BUILDS_KEY)? {
                Some(value) => postcard::from_bytes::<u64>(value.value())? + 1,
                None => 1,
            };
            table.insert(SNAPSHOT_BUILDS_KEY, encode(&builds).as_slice())?;
            let (term, index) = meta.last_log_id.map_or((0, 0), |id| (id.leader_id.term, id.index));
            meta.snapshot_id = format!("{term}-{index}-{builds}");
        }
        let current_last_log_id = match table.get(SNAPSHOT_META_KEY)? {
            Some(value) => postcard::from_bytes::<SnapshotMeta>(value.value())?.last_log_id,
            None => None,
        };
        if current_last_log_id <= meta.last_log_id {
            table.insert(SNAPSHOT_META_KEY, encode(&meta).as_slice())?;
            table.insert(SNAPSHOT_DATA_KEY, data)?;
        }
    }
    txn.commit()?;
    Ok(meta)
}

/// The current snapshot's meta and data, read in one transaction so they match.
fn read_snapshot(db: &Db) -> Result<Option<(SnapshotMeta, Vec<u8>)>, DbError> {
    let txn = db.database.begin_read()?;
    let table = txn.open_table(SNAPSHOT)?;
    let Some(meta) = table.get(SNAPSHOT_META_KEY)? else {
        return Ok(None);
    };
    let meta = postcard::from_bytes::<SnapshotMeta>(meta.value())?;
    let data = table.get(SNAPSHOT_DATA_KEY)?.expect("a stored snapshot's data is stored with its meta");
    Ok(Some((meta, data.value().to_vec())))
}
