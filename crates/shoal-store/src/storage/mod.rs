//! The durable storage openraft drives: the Raft log, the vote and the snapshot in one redb file.
//!
//! One `redb::Database` holds every table, shared by the [`LogStore`] and the
//! [`StateMachineStore`] through an `Arc`. The state machine itself lives in memory; its durable
//! form is the latest snapshot plus the log after it, which openraft re-applies on start.
//!
//! Tables (all values postcard-encoded):
//!
//! | table           | key            | value                                         |
//! |-----------------|----------------|-----------------------------------------------|
//! | `raft_log`      | log index      | `Entry`                                       |
//! | `raft_log_meta` | `vote`         | `Vote`                                        |
//! |                 | `committed`    | `Option<LogId>`                               |
//! |                 | `last_purged`  | `LogId`                                       |
//! | `raft_snapshot` | `meta`         | `SnapshotMeta`                                |
//! |                 | `data`         | `StateMachine::to_snapshot` bytes              |
//! |                 | `builds`       | `u64`: snapshots built here, for unique ids   |
//!
//! Architecture invariant: a write that openraft is told is durable (an append's callback, a
//! saved vote, a built or installed snapshot) was committed with `Durability::Immediate`, i.e.
//! fsynced. Only the committed log id is written lazily; see `LogStore::save_committed`.

mod log;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use redb::{Database, ReadableDatabase, TableDefinition};

pub use self::log::{LogReader, LogStore};
pub use self::state::{SharedState, SnapshotBuilder, StateMachineStore};
use crate::raft::{MemberId, StorageError};
use crate::state_machine::SnapshotDecodeError;

/// Log index → `Entry`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// The log's few single values, under the keys below.
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_log_meta");
const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const LAST_PURGED_KEY: &str = "last_purged";
/// The current snapshot, under the keys below; meta and data are always written together.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const SNAPSHOT_META_KEY: &str = "meta";
const SNAPSHOT_DATA_KEY: &str = "data";
const SNAPSHOT_BUILDS_KEY: &str = "builds";

/// Why the storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageOpenError {
    #[error("cannot open the store database {path}")]
    OpenDatabase {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("cannot create the store database's tables")]
    CreateTables {
        #[source]
        source: redb::Error,
    },
    #[error("cannot read the stored snapshot")]
    ReadSnapshot {
        #[source]
        source: redb::Error,
    },
    #[error("the stored snapshot's metadata is undecodable")]
    DecodeSnapshotMeta {
        #[source]
        source: postcard::Error,
    },
    #[error("the stored snapshot is undecodable")]
    DecodeSnapshot {
        #[source]
        source: SnapshotDecodeError,
    },
}

/// How the storage is run. `Default` is what production uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageOptions {
    pub blocking: Blocking,
}

/// Where the storage's blocking work (redb transactions, fsync) runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Blocking {
    /// On tokio's blocking pool, so that an fsync does not stall the async threads.
    #[default]
    Pool,
    /// On the calling task's thread. For the deterministic simulation only: its single-threaded
    /// runtimes must not hand work to other threads, whose timing no seed controls. It also lets
    /// the storage be used without a runtime (a checker reading a stopped member's log).
    Inline,
}

/// Opens (creating if absent) the storage in the database file at `path`, and loads the stored
/// snapshot, if any, into the state machine.
///
/// The file is locked while any of the returned stores, their log readers or snapshot builders
/// live: a second `open` of the same path fails until they are all dropped.
pub fn open(path: &Path) -> Result<(LogStore, StateMachineStore), StorageOpenError> {
    open_with(path, StorageOptions::default())
}

/// `open`, run as `options` say.
pub fn open_with(
    path: &Path,
    options: StorageOptions,
) -> Result<(LogStore, StateMachineStore), StorageOpenError> {
    let database = Database::create(path)
        .map_err(|source| StorageOpenError::OpenDatabase { path: path.to_owned(), source })?;
    create_tables(&database).map_err(|source| StorageOpenError::CreateTables { source })?;
    let db = Arc::new(Db { database, path: path.to_owned(), blocking: options.blocking });
    let state_machine = StateMachineStore::load(db.clone())?;
    Ok((LogStore::new(db), state_machine))
}

/// Creates every table up front, so that read transactions never meet a missing table.
fn create_tables(database: &Database) -> Result<(), redb::Error> {
    let txn = database.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(LOG_META)?;
    txn.open_table(SNAPSHOT)?;
    txn.commit()?;
    Ok(())
}

/// The database file both stores share.
struct Db {
    database: Database,
    path: PathBuf,
    blocking: Blocking,
}

impl Db {
    /// The size of the database file: what etcd's status reports as `dbSize`.
    fn size_bytes(&self) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    /// Reads the value at `key` of a `&str`-keyed table.
    fn read_value<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, DbError> {
        let txn = self.database.begin_read()?;
        let table = txn.open_table(table)?;
        let value = table.get(key)?;
        Ok(value.map(|value| postcard::from_bytes(value.value())).transpose()?)
    }
}

/// Why a storage operation failed, before openraft learns of it as a [`StorageError`].
#[derive(Debug, thiserror::Error)]
enum DbError {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error("stored record is undecodable")]
    Decode(#[from] postcard::Error),
}

/// redb has one error type per kind of call; each becomes `redb::Error`, so `?` works on all.
macro_rules! db_error_from_redb {
    ($($redb_error:ty),*) => {$(
        impl From<$redb_error> for DbError {
            fn from(error: $redb_error) -> Self {
                Self::Redb(error.into())
            }
        }
    )*};
}
db_error_from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Turns a failed storage operation into openraft's `StorageError`, naming what was being done
/// to what, e.g. `storage_error(ErrorSubject::Logs, ErrorVerb::Write)`.
fn storage_error(subject: ErrorSubject<MemberId>, verb: ErrorVerb) -> impl FnOnce(DbError) -> StorageError {
    move |error| StorageIOError::new(subject, verb, AnyError::new(&error)).into()
}

/// Encodes a value for a table. Encoding into memory fails only on types postcard cannot
/// represent, which would be a programming error caught by the first test that stores one.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("storage records are postcard-encodable")
}

/// Runs blocking redb work (transactions, fsync) where `blocking` says: on tokio's blocking
/// pool, or inline.
///
/// A durable commit waits for fsync, which takes milliseconds; on an async worker thread that
/// would stall every other task scheduled there (heartbeats, client requests). `spawn_blocking`
/// rather than `block_in_place`, because the latter panics on a current-thread runtime.
/// A panic in `work` is re-raised here, as if `work` had run inline.
async fn run_blocking<T, F>(blocking: Blocking, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if blocking == Blocking::Inline {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(error) => panic!("storage task did not run to completion: {error}"),
        },
    }
}
