//! The Raft log and vote, durable in redb: openraft's `RaftLogStorage`.
//!
//! Every write runs as one redb write transaction on the blocking pool. Writes that openraft
//! relies on for safety (appended entries, the vote, truncation, purge) commit with
//! `Durability::Immediate`, so they are fsynced before openraft hears they are done: that is
//! what lets a leader count this member towards a quorum.
//!
//! The last entries appended are also kept in memory (`RecentEntries`): replication and apply
//! read what was just appended, and get it from there without a database read or a hop to the
//! blocking pool. Older entries, for a follower that fell behind, come from redb.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader};
use redb::{Durability, ReadableDatabase, ReadableTable};

use super::{
    COMMITTED_KEY, Db, DbError, LAST_PURGED_KEY, LOG, LOG_META, VOTE_KEY, encode, run_blocking, storage_error,
};
use crate::raft::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The Raft log and vote of this member. openraft owns it; replication reads through
/// [`LogReader`]s.
pub struct LogStore {
    db: Arc<Db>,
    recent: Arc<Mutex<RecentEntries>>,
    /// The committed log id openraft saved last, if the database does not have it yet: the
    /// next append or vote writes it in its transaction.
    unwritten_committed: Option<Option<LogId>>,
}

/// A reader of the log, one per replication stream. Reads see every append that has returned.
#[derive(Clone)]
pub struct LogReader {
    db: Arc<Db>,
    recent: Arc<Mutex<RecentEntries>>,
}

impl LogStore {
    pub(super) fn new(db: Arc<Db>) -> Self {
        Self { db, recent: Arc::default(), unwritten_committed: None }
    }

    /// The committed log id saved since the last durable write, encoded for the next one.
    fn take_unwritten_committed(&mut self) -> Option<Vec<u8>> {
        self.unwritten_committed.take().map(|committed| encode(&committed))
    }

    /// The size of the database file, which also holds the snapshot.
    pub fn db_size_bytes(&self) -> std::io::Result<u64> {
        self.db.size_bytes()
    }
}

/// The most bytes of log entries one AppendEntries carries (at least one entry goes, however
/// large). openraft 0.9 gives an AppendEntries only the heartbeat interval (40 ms) to be sent,
/// stored and fsynced by the follower; a backlog sent whole (up to 300 entries of up to
/// `proposer::MAX_BATCH_BYTES` each) cannot make it on a busy machine, and since every retry
/// resends the same backlog, the follower would never catch up: with both followers behind,
/// the cluster stops committing.
pub const REPLICATION_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        read_entries(&self.db, &self.recent, range, usize::MAX).await
    }

    /// Replication's read: the entries from `start` up to `end` that fit in
    /// [`REPLICATION_PAYLOAD_BYTES_MAX`]; openraft sends the rest in the next round.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        read_entries(&self.db, &self.recent, start..end, REPLICATION_PAYLOAD_BYTES_MAX).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        read_entries(&self.db, &self.recent, range, usize::MAX).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        run_blocking(db.blocking, move || read_log_state(&db))
            .await
            .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { db: self.db.clone(), recent: self.recent.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let db = self.db.clone();
        let vote = encode(vote);
        let committed = self.take_unwritten_committed();
        run_blocking(db.blocking, move || {
            write(&db, Durability::Immediate, |txn| {
                let mut meta = txn.open_table(LOG_META)?;
                meta.insert(VOTE_KEY, vote.as_slice())?;
                if let Some(committed) = committed {
                    meta.insert(COMMITTED_KEY, committed.as_slice())?;
                }
                Ok(())
            })
        })
        .await
        .map_err(storage_error(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let db = self.db.clone();
        run_blocking(db.blocking, move || db.read_value(LOG_META, VOTE_KEY))
            .await
            .map_err(storage_error(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Keeps the committed log id for the next durable write (an append, a vote) to write in
    /// its transaction: no transaction of its own, and no hop to the blocking pool, since
    /// openraft awaits this before it applies each commit. Losing the latest one in a crash
    /// only means re-applying fewer entries on restart and learning the rest from the leader.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.unwritten_committed = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(committed) = self.unwritten_committed {
            return Ok(committed);
        }
        let db = self.db.clone();
        run_blocking(db.blocking, move || db.read_value::<Option<LogId>>(LOG_META, COMMITTED_KEY))
            .await
            .map(Option::flatten)
            .map_err(storage_error(ErrorSubject::Store, ErrorVerb::Read))
    }

    /// Writes the whole batch in one durable transaction (with the committed log id saved
    /// since the last durable write), and only then reports it flushed. The callback is called
    /// before returning, which the contract allows; on error it is dropped and the error,
    /// returned, stops openraft.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter().collect::<Vec<_>>();
        for pair in entries.windows(2) {
            assert_eq!(pair[0].log_id.index + 1, pair[1].log_id.index, "appended entries are consecutive");
        }
        if !entries.is_empty() {
            let encoded: Vec<(u64, Bytes)> =
                entries.iter().map(|entry| (entry.log_id.index, Bytes::from(encode(entry)))).collect();
            let db = self.db.clone();
            let written = encoded.clone();
            let committed = self.take_unwritten_committed();
            run_blocking(db.blocking, move || {
                write(&db, Durability::Immediate, |txn| {
                    let mut log = txn.open_table(LOG)?;
                    for (index, bytes) in &written {
                        log.insert(index, &bytes[..])?;
                    }
                    if let Some(committed) = committed {
                        txn.open_table(LOG_META)?.insert(COMMITTED_KEY, committed.as_slice())?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Write))?;
            self.recent.lock().expect("recent entries lock poisoned").push(encoded);
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    /// Deletes the entries at and after `log_id.index`: they conflict with the leader's log.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent.lock().expect("recent entries lock poisoned").truncate_from(log_id.index);
        let db = self.db.clone();
        run_blocking(db.blocking, move || {
            write(&db, Durability::Immediate, |txn| {
                txn.open_table(LOG)?.retain_in(log_id.index.., |_, _| false)?;
                Ok(())
            })
        })
        .await
        .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    /// Deletes the entries up to and including `log_id.index` (a snapshot holds them now) and
    /// remembers `log_id`, in one transaction, so the log never has a hole after a crash.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        run_blocking(db.blocking, move || {
            write(&db, Durability::Immediate, |txn| {
                let mut meta = txn.open_table(LOG_META)?;
                let last_purged = meta
                    .get(LAST_PURGED_KEY)?
                    .map(|value| postcard::from_bytes::<LogId>(value.value()))
                    .transpose()?;
                assert!(
                    last_purged <= Some(log_id),
                    "purge moves forward: purged up to {last_purged:?}, asked up to {log_id}"
                );
                meta.insert(LAST_PURGED_KEY, encode(&log_id).as_slice())?;
                txn.open_table(LOG)?.retain_in(..=log_id.index, |_, _| false)?;
                Ok(())
            })
        })
        .await
        .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Delete))?;
        self.recent.lock().expect("recent entries lock poisoned").purge_through(log_id.index);
        Ok(())
    }
}

/// Runs `body` in one write transaction committed with `durability`.
fn write(
    db: &Db,
    durability: Durability,
    body: impl FnOnce(&redb::WriteTransaction) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let mut txn = db.database.begin_write()?;
    txn.set_durability(durability)?;
    body(&txn)?;
    txn.commit()?;
    Ok(())
}

/// The entries in `range`, in order, stopping before the one that would take the encoded
/// total past `bytes_max` (the first entry always comes, however large): from memory if they
/// are recent, else from the database.
async fn read_entries<RB: RangeBounds<u64>>(
    db: &Arc<Db>,
    recent: &Mutex<RecentEntries>,
    range: RB,
    bytes_max: usize,
) -> Result<Vec<Entry>, StorageError> {
    // The range moves to another thread, so it is copied into owned bounds.
    let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
    let cached = recent.lock().expect("recent entries lock poisoned").read(bounds, bytes_max);
    if let Some(encoded) = cached {
        let decoded = encoded.iter().map(|bytes| postcard::from_bytes(bytes)).collect::<Result<_, _>>();
        return decoded.map_err(|error| storage_error(ErrorSubject::Logs, ErrorVerb::Read)(error.into()));
    }
    let db = db.clone();
    run_blocking(db.blocking, move || read_entries_blocking(&db, bounds, bytes_max))
        .await
        .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Read))
}

/// Entries kept in memory after their append.
const RECENT_ENTRIES_MAX: usize = 256;
/// Bytes of the entries kept in memory: a few batches of the proposer's largest.
const RECENT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The last entries of the log, consecutive, as appended: a copy of the log's tail, encoded.
/// Encoded, because a decoded entry's keys and values may share (and keep alive) the much
/// larger buffers of the requests they came in.
#[derive(Default)]
struct RecentEntries {
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl RecentEntries {
    /// Records appended entries (index, encoded), which follow the log's last entry (or
    /// replace a tail that a truncation removed).
    fn push(&mut self, appended: impl IntoIterator<Item = (u64, Bytes)>) {
        for (index, encoded) in appended {
            let follows = self.entries.back().is_none_or(|(last, _)| last + 1 == index);
            if !follows {
                self.entries.clear();
                self.bytes = 0;
            }
            self.bytes += encoded.len();
            self.entries.push_back((index, encoded));
        }
        while self.entries.len() > RECENT_ENTRIES_MAX
            || (self.bytes > RECENT_BYTES_MAX && self.entries.len() > 1)
        {
            let (_, encoded) = self.entries.pop_front().expect("more than one entry");
            self.bytes -= encoded.len();
        }
    }

    /// Forgets the entries at and after `index`.
    fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|(last, _)| *last >= index) {
            let (_, encoded) = self.entries.pop_back().expect("checked");
            self.bytes -= encoded.len();
        }
    }

    /// Forgets the entries up to and including `index`.
    fn purge_through(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(first, _)| *first <= index) {
            let (_, encoded) = self.entries.pop_front().expect("checked");
            self.bytes -= encoded.len();
        }
    }

    /// The encoded entries in `bounds` as `read_entries` returns them, if every one of them is
    /// here.
    fn read(&self, bounds: (Bound<u64>, Bound<u64>), bytes_max: usize) -> Option<Vec<Bytes>> {
        if is_empty(bounds) {
            return Some(Vec::new());
        }
        let (first, _) = self.entries.front()?;
        let (last, _) = self.entries.back()?;
        let start = match bounds.0 {
            Bound::Included(start) => start,
            Bound::Excluded(start) => start + 1,
            Bound::Unbounded => return None,
        };
        // This is the log's tail: nothing lies beyond `last`.
        let end = match bounds.1 {
            Bound::Included(end) => end.min(*last),
            Bound::Excluded(end) => (end - 1).min(*last),
            Bound::Unbounded => *last,
        };
        if start < *first {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for (_, encoded) in self.entries.iter().skip(skip).take_while(|(index, _)| *index <= end) {
            bytes = bytes.saturating_add(encoded.len());
            if bytes > bytes_max && !entries.is_empty() {
                break;
            }
            entries.push(encoded.clone());
        }
        Some(entries)
    }
}

fn read_entries_blocking(
    db: &Db,
    bounds: (Bound<u64>, Bound<u64>),
    bytes_max: usize,
) -> Result<Vec<Entry>, DbError> {
    if is_empty(bounds) {
        return Ok(Vec::new());
    }
    let txn = db.database.begin_read()?;
    let log = txn.open_table(LOG)?;
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for item in log.range::<u64>(bounds)? {
        let (_, value) = item?;
        let encoded = value.value();
        bytes = bytes.saturating_add(encoded.len());
        if bytes > bytes_max && !entries.is_empty() {
            break;
        }
        entries.push(postcard::from_bytes(encoded)?);
    }
    Ok(entries)
}

/// Whether `bounds` holds no index. redb, like `BTreeMap`, may reject a range whose start is
/// past its end, and openraft asks for empty ranges such as `3..3`.
fn is_empty(bounds: (Bound<u64>, Bound<u64>)) -> bool {
    let first = match bounds.0 {
        Bound::Included(start) => start,
        Bound::Excluded(start) => match start.checked_add(1) {
            Some(first) => first,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match bounds.1 {
        Bound::Included(end) => first > end,
        Bound::Excluded(end) => first >= end,
        Bound::Unbounded => false,
    }
}

fn read_log_state(db: &Db) -> Result<LogState<TypeConfig>, DbError> {
    let txn = db.database.begin_read()?;
    let last_purged_log_id = txn
        .open_table(LOG_META)?
        .get(LAST_PURGED_KEY)?
        .map(|value| postcard::from_bytes::<LogId>(value.value()))
        .transpose()?;
    let last_entry = txn
        .open_table(LOG)?
        .last()?
        .map(|(_, value)| postcard::from_bytes::<Entry>(value.value()))
        .transpose()?;
    // With every entry purged, the last log id is the last purged one, as the contract asks.
    let last_log_id = last_entry.map(|entry| entry.log_id).or(last_purged_log_id);
    Ok(LogState { last_purged_log_id, last_log_id })
}

#[cfg(test)]
mod tests {
    use std::ops::Bound::{Excluded, Included, Unbounded};

    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(term: u64, index: u64) -> (u64, Bytes) {
        let log_id = LogId::new(CommittedLeaderId::new(term, 1), index);
        (index, Bytes::from(encode(&Entry { log_id, payload: EntryPayload::Blank })))
    }

    fn ids(entries: Option<Vec<Bytes>>) -> Option<Vec<(u64, u64)>> {
        let decode = |bytes: &Bytes| postcard::from_bytes::<Entry>(bytes).unwrap().log_id;
        entries.map(|entries| entries.iter().map(decode).map(|id| (id.leader_id.term, id.index)).collect())
    }

    // The in-memory tail answers only for ranges it holds whole, and stays the log's tail
    // through truncation, purge and its own bounds.
    #[test]
    fn recent_entries_mirror_the_tail() {
        let mut recent = RecentEntries::default();
        assert_eq!(ids(recent.read((Included(1), Unbounded), usize::MAX)), None, "empty: ask the database");
        recent.push((5..=9).map(|index| entry(1, index)));
        assert_eq!(ids(recent.read((Included(6), Excluded(8)), usize::MAX)), Some(vec![(1, 6), (1, 7)]));
        assert_eq!(ids(recent.read((Included(8), Unbounded), usize::MAX)), Some(vec![(1, 8), (1, 9)]));
        assert_eq!(ids(recent.read((Included(9), Included(40)), usize::MAX)), Some(vec![(1, 9)]));
        assert_eq!(ids(recent.read((Included(4), Included(6)), usize::MAX)), None, "4 is not here");
        assert_eq!(ids(recent.read((Unbounded, Included(6)), usize::MAX)), None);
        assert_eq!(ids(recent.read((Included(7), Excluded(7)), usize::MAX)), Some(vec![]));
        // The byte limit cuts as the database read does, the first entry always coming.
        let size = entry(1, 5).1.len();
        assert_eq!(ids(recent.read((Included(5), Unbounded), 2 * size + 1)), Some(vec![(1, 5), (1, 6)]));
        assert_eq!(ids(recent.read((Included(5), Unbounded), 1)), Some(vec![(1, 5)]));

        // A conflicting tail is cut and replaced by the new leader's entries.
        recent.truncate_from(8);
        assert_eq!(ids(recent.read((Included(7), Unbounded), usize::MAX)), Some(vec![(1, 7)]));
        recent.push([entry(2, 8)]);
        assert_eq!(ids(recent.read((Included(7), Unbounded), usize::MAX)), Some(vec![(1, 7), (2, 8)]));

        // An append that does not follow the tail (after a truncation below it) starts afresh.
        recent.truncate_from(3);
        recent.push([entry(3, 3)]);
        assert_eq!(ids(recent.read((Included(3), Unbounded), usize::MAX)), Some(vec![(3, 3)]));
        recent.push([entry(3, 20)]);
        assert_eq!(ids(recent.read((Included(3), Unbounded), usize::MAX)), None);
        assert_eq!(ids(recent.read((Included(20), Unbounded), usize::MAX)), Some(vec![(3, 20)]));

        recent.purge_through(20);
        assert_eq!(ids(recent.read((Included(20), Unbounded), usize::MAX)), None);
        assert_eq!(recent.bytes, 0);

        // It keeps at most RECENT_ENTRIES_MAX entries, the newest.
        recent.push((100..100 + RECENT_ENTRIES_MAX as u64 + 5).map(|index| entry(4, index)));
        assert_eq!(recent.entries.len(), RECENT_ENTRIES_MAX);
        assert_eq!(ids(recent.read((Included(104), Included(104)), usize::MAX)), None);
        assert_eq!(ids(recent.read((Included(105), Included(105)), usize::MAX)), Some(vec![(4, 105)]));
        let kept: usize =
            (105..100 + RECENT_ENTRIES_MAX as u64 + 5).map(|index| entry(4, index).1.len()).sum();
        assert_eq!(recent.bytes, kept);
    }

    // Checks which index ranges hold no index, including the edges at 0 and u64::MAX that a
    // naive `start >= end` would get wrong.
    #[test]
    fn empty_ranges() {
        fn check(bounds: (Bound<u64>, Bound<u64>), expected: bool) {
            assert_eq!(is_empty(bounds), expected, "{bounds:?}");
        }
        check((Included(3), Excluded(3)), true);
        check((Included(3), Included(3)), false);
        check((Included(4), Included(3)), true);
        check((Excluded(3), Included(4)), false);
        check((Excluded(3), Excluded(4)), true);
        check((Excluded(u64::MAX), Unbounded), true);
        check((Included(u64::MAX), Unbounded), false);
        check((Unbounded, Excluded(0)), true);
        check((Unbounded, Included(0)), false);
        check((Unbounded, Unbounded), false);
    }
}
