//! The revisioned multi-version key-value store: etcd's MVCC data model, pure and in memory.
//!
//! Every write (a put, a delete of at least one key, a transaction with writes) advances one
//! global revision; all the changes of one write share it. Every key keeps its history of
//! revisions until compaction, so ranges can be read at any revision not yet compacted and
//! watchers can replay the change log from any such revision. Nothing here does I/O or reads a
//! clock: the Raft state machine drives it and persists its snapshots.

mod txn_check;
mod write;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::request::{
    DeleteRangeRequest, DeleteRangeResponse, KeyRange, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use write::Writer;

/// The store's logical clock. Starts at 1 (as etcd's does) and grows by one per write.
pub type Revision = i64;

/// One version of one key, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// Number of puts since the key was (re)created; 1 after the first put.
    pub version: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of one key. For a delete, `kv` holds the key and the deleting revision in
/// `mod_revision`, all other fields zero (as etcd sends it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The key's version before this change, if the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// Why an operation on the MVCC store failed. Each failure is deterministic: every replica
/// applying the same operation to the same state fails the same way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted (compact revision {compact_revision})")]
    Compacted { compact_revision: Revision },
    #[error("mvcc: required revision {requested} is a future revision (current revision {current})")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKeyInTxn,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
}

/// Whether every operation of both branches, recursively, is a range.
pub fn txn_only_reads(request: &TxnRequest) -> bool {
    request.success.iter().chain(&request.failure).all(|op| match op {
        RequestOp::Range(_) => true,
        RequestOp::Txn(nested) => txn_only_reads(nested),
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
    })
}

/// The events of consecutive revisions, as a watcher consumes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventBatch {
    /// Events in revision order, and in operation order within a revision.
    pub events: Vec<Event>,
    /// One past the last revision scanned: where the next call should start.
    pub next_revision: Revision,
}

/// The store: every key's history and the change log, each kept from the compact revision on.
///
/// Architecture invariant: histories and log are two views of the same writes. Each event of
/// revision `r` pushed exactly one version with `mod_revision == r` onto its key's history, and
/// every revision from 2 (or the compact revision) to the current one has a log entry, since a
/// write that changes nothing takes no revision. Compaction may drop a tombstone at the compact
/// revision while keeping its event: no read needs the tombstone, but a watcher needs the event.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mvcc {
    current_revision: Revision,
    compact_revision: Revision,
    /// Every key's versions in revision order, deletions included as tombstones. A key with no
    /// version left is removed from the map.
    keys: BTreeMap<Bytes, Vec<KeyVersion>>,
    /// The events of each revision, for watchers. Keyed by revision so that a caught-up watcher
    /// finds out there is nothing new in O(log n).
    log: BTreeMap<Revision, Vec<Event>>,
    /// How many keys are live at the current revision, so that `key_count` need not scan.
    live_key_count: usize,
}

/// One entry of a key's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum KeyVersion {
    Live(KeyValue),
    /// The key was deleted at this revision.
    Tombstone(Revision),
}

// Written out rather than derived because an empty store is at revision 1 (as etcd's is), not 0.
impl Default for Mvcc {
    fn default() -> Self {
        Mvcc {
            current_revision: 1,
            compact_revision: 0,
            keys: BTreeMap::new(),
            log: BTreeMap::new(),
            live_key_count: 0,
        }
    }
}

impl Mvcc {
    pub fn new() -> Self {
        Self::default()
    }

    /// The revision of the last write; 1 for an empty store.
    pub fn current_revision(&self) -> Revision {
        self.current_revision
    }

    /// The oldest revision still readable; 0 until the first compaction.
    pub fn compact_revision(&self) -> Revision {
        self.compact_revision
    }

    /// The number of live keys at the current revision.
    pub fn key_count(&self) -> usize {
        self.live_key_count
    }

    /// Reads the keys of `request.range` at `request.revision` (the current one if `<= 0`).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.range_at(request, self.current_revision)
    }

    pub fn put(&mut self, request: &PutRequest) -> Result<(PutResponse, Vec<Event>), MvccError> {
        Writer::run(self, |writer| writer.put(request))
    }

    /// Deletes every live key of the range. Deleting nothing takes no revision.
    pub fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Vec<Event>), MvccError> {
        Writer::run(self, |writer| writer.delete_range(request))
    }

    /// Runs a transaction as one write: all its changes share one revision, or, if any of its
    /// operations fails, none is applied.
    pub fn txn(&mut self, request: &TxnRequest) -> Result<(TxnResponse, Vec<Event>), MvccError> {
        txn_check::check_no_duplicate_writes(request)?;
        Writer::run(self, |writer| writer.txn(request))
    }

    /// Answers a transaction that only reads (ranges in every branch, nested ones included)
    /// from the current state without making it a write; `None` if it writes anything.
    pub fn read_txn(&self, request: &TxnRequest) -> Result<Option<TxnResponse>, MvccError> {
        if !txn_only_reads(request) {
            return Ok(None);
        }
        self.evaluate_read_txn(request).map(Some)
    }

    fn evaluate_read_txn(&self, request: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let succeeded = request.compare.iter().all(|compare| write::compare_holds(self, compare));
        let ops = if succeeded { &request.success } else { &request.failure };
        let responses = ops
            .iter()
            .map(|op| match op {
                RequestOp::Range(range) => self.range(range).map(ResponseOp::Range),
                RequestOp::Txn(nested) => self.evaluate_read_txn(nested).map(ResponseOp::Txn),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => unreachable!("checked to only read"),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TxnResponse { succeeded, responses })
    }

    /// Forgets history below `revision`: reads at `revision` or later answer as before, reads
    /// and watches from earlier revisions fail with `Compacted`.
    pub fn compact(&mut self, revision: Revision) -> Result<(), MvccError> {
        if revision <= self.compact_revision {
            return Err(MvccError::Compacted { compact_revision: self.compact_revision });
        }
        if revision > self.current_revision {
            return Err(MvccError::FutureRevision { requested: revision, current: self.current_revision });
        }
        self.keys.retain(|_, history| {
            drop_versions_before(history, revision);
            !history.is_empty()
        });
        self.log = self.log.split_off(&revision);
        self.compact_revision = revision;
        Ok(())
    }

    /// The change log from revision `from` (at least 1) on, restricted to keys in `filter`.
    ///
    /// Stops after the first revision at which `max_events` events are collected, but never
    /// splits a revision, so a batch may hold more; at least one revision is scanned if there is
    /// one, so a watcher always makes progress. `next_revision` is where the next call starts.
    pub fn events(
        &self,
        from: Revision,
        filter: &KeyRange,
        max_events: usize,
    ) -> Result<EventBatch, MvccError> {
        let from = from.max(1);
        if from < self.compact_revision {
            return Err(MvccError::Compacted { compact_revision: self.compact_revision });
        }
        let mut batch = EventBatch { events: Vec::new(), next_revision: from.max(self.current_revision + 1) };
        for (&revision, events) in self.log.range(from..) {
            let matching = events.iter().filter(|event| filter.contains(&event.kv.key));
            batch.events.extend(matching.cloned());
            if batch.events.len() >= max_events {
                batch.next_revision = revision + 1;
                break;
            }
        }
        Ok(batch)
    }

    /// `range`, with `current` as the newest readable revision: inside a write that has already
    /// changed something, that is the write's own, still uncommitted revision.
    fn range_at(&self, request: &RangeRequest, current: Revision) -> Result<RangeResponse, MvccError> {
        let revision = self.readable_revision(request.revision, current)?;
        // A negative limit means no limit, as in etcd.
        let limit = usize::try_from(request.limit).ok().filter(|&limit| limit > 0);
        let limit = limit.unwrap_or(usize::MAX);
        let mut response = RangeResponse::default();
        let mut count: usize = 0;
        for kv in self.live_at(&request.range, revision) {
            count += 1;
            if request.count_only {
                continue;
            }
            if response.kvs.len() == limit {
                response.more = true;
                continue;
            }
            let mut kv = kv.clone();
            if request.keys_only {
                kv.value = Bytes::new();
            }
            response.kvs.push(kv);
        }
        response.count = i64::try_from(count).expect("a key count fits in i64");
        Ok(response)
    }

    fn readable_revision(&self, requested: Revision, current: Revision) -> Result<Revision, MvccError> {
        if requested <= 0 {
            return Ok(current);
        }
        if requested < self.compact_revision {
            return Err(MvccError::Compacted { compact_revision: self.compact_revision });
        }
        if requested > current {
            return Err(MvccError::FutureRevision { requested, current });
        }
        Ok(requested)
    }

    /// The live keys of `range` at `revision`, in key order.
    fn live_at<'a>(
        &'a self,
        range: &'a KeyRange,
        revision: Revision,
    ) -> impl Iterator<Item = &'a KeyValue> + 'a {
        self.histories_in(range).filter_map(move |history| version_at(history, revision))
    }

    /// The histories of the keys in `range`, in key order, live or not.
    fn histories_in<'a>(&'a self, range: &'a KeyRange) -> impl Iterator<Item = &'a [KeyVersion]> + 'a {
        let bounds = key_bounds(range);
        let entries = bounds.into_iter().flat_map(|bounds| self.keys.range::<[u8], _>(bounds));
        entries.map(|(_, history)| history.as_slice())
    }

    /// The newest version of `key`, including changes of a write in progress.
    fn latest_live(&self, key: &[u8]) -> Option<&KeyValue> {
        self.keys.get(key).and_then(|history| latest_live(history))
    }
}

impl KeyVersion {
    fn mod_revision(&self) -> Revision {
        match self {
            KeyVersion::Live(kv) => kv.mod_revision,
            KeyVersion::Tombstone(revision) => *revision,
        }
    }

    fn live(&self) -> Option<&KeyValue> {
        match self {
            KeyVersion::Live(kv) => Some(kv),
            KeyVersion::Tombstone(_) => None,
        }
    }
}

/// The key's version at `revision`: its newest one not after it, unless that is a deletion.
fn version_at(history: &[KeyVersion], revision: Revision) -> Option<&KeyValue> {
    let not_after = history.partition_point(|version| version.mod_revision() <= revision);
    history[..not_after].last().and_then(KeyVersion::live)
}

fn latest_live(history: &[KeyVersion]) -> Option<&KeyValue> {
    history.last().and_then(KeyVersion::live)
}

/// Drops the versions no read at `revision` or later can see: all before the version current at
/// `revision`, and that one too if it is a deletion.
fn drop_versions_before(history: &mut Vec<KeyVersion>, revision: Revision) {
    let not_after = history.partition_point(|version| version.mod_revision() <= revision);
    let keep_from = match not_after.checked_sub(1) {
        Some(current) if history[current].live().is_some() => current,
        _ => not_after,
    };
    history.drain(..keep_from);
}

/// Start and end bounds of a lookup in the key map.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The map bounds selecting exactly the keys `range.contains`; `None` if it selects none (a
/// reversed interval, which `BTreeMap::range` would panic on).
fn key_bounds(range: &KeyRange) -> Option<KeyBounds<'_>> {
    let key: &[u8] = &range.key;
    let range_end: &[u8] = &range.range_end;
    if range_end.is_empty() {
        return Some((Bound::Included(key), Bound::Included(key)));
    }
    // Only the empty key sorts before "\0", and no key is empty, so "\0" as start is the same as
    // no start bound.
    let start = if key == b"\0" { Bound::Unbounded } else { Bound::Included(key) };
    if range_end == b"\0" {
        return Some((start, Bound::Unbounded));
    }
    if key >= range_end {
        return None;
    }
    Some((start, Bound::Excluded(range_end)))
}
