//! One atomic write: the changes of a put, a delete or a transaction, all at one revision.
//!
//! Changes go straight into the key histories at the next revision, so that later operations of
//! the same transaction (ranges, nested compares) see them, while reads at earlier revisions do
//! not. If an operation fails, the writer takes every change out again: each change pushed
//! exactly one version, so undoing is popping. Nobody else observes the store meanwhile, since
//! the writer holds it mutably.

use std::cmp::Ordering;

use bytes::Bytes;

use super::{Event, EventKind, KeyValue, KeyVersion, Mvcc, MvccError, Revision, latest_live};
use crate::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

pub(super) struct Writer<'a> {
    store: &'a mut Mvcc,
    /// The revision this write takes if it changes anything.
    revision: Revision,
    /// The changes so far, in operation order. Also the undo log.
    events: Vec<Event>,
}

impl<'a> Writer<'a> {
    /// Runs `apply` as one write: commits all its changes at the next revision, or none of them
    /// if it fails. A write that changes nothing takes no revision.
    pub(super) fn run<T>(
        store: &'a mut Mvcc,
        apply: impl FnOnce(&mut Writer<'a>) -> Result<T, MvccError>,
    ) -> Result<(T, Vec<Event>), MvccError> {
        let revision = store.current_revision + 1;
        let mut writer = Writer { store, revision, events: Vec::new() };
        match apply(&mut writer) {
            Ok(response) => Ok((response, writer.commit())),
            Err(error) => {
                writer.roll_back();
                Err(error)
            }
        }
    }

    pub(super) fn put(&mut self, request: &PutRequest) -> Result<PutResponse, MvccError> {
        if request.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        let prev = self.store.latest_live(&request.key).cloned();
        // What the store keeps gets memory of its own: a request's key and value may be views
        // into a transport buffer many times their size (tonic decodes `bytes` fields without
        // copying), which every version kept would otherwise keep alive whole.
        let value = || Bytes::copy_from_slice(&request.value);
        let kv = match &prev {
            None if request.ignore_value || request.ignore_lease => {
                return Err(MvccError::KeyNotFound);
            }
            None => KeyValue {
                key: Bytes::copy_from_slice(&request.key),
                value: value(),
                create_revision: self.revision,
                mod_revision: self.revision,
                version: 1,
                lease: request.lease,
            },
            Some(prev) => KeyValue {
                key: prev.key.clone(),
                value: if request.ignore_value { prev.value.clone() } else { value() },
                create_revision: prev.create_revision,
                mod_revision: self.revision,
                version: prev.version + 1,
                lease: if request.ignore_lease { prev.lease } else { request.lease },
            },
        };
        let response = PutResponse { prev_kv: prev.clone().filter(|_| request.prev_kv) };
        self.record(Event { kind: EventKind::Put, kv, prev_kv: prev });
        Ok(response)
    }

    pub(super) fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let histories = self.store.histories_in(&request.range);
        let deleted: Vec<KeyValue> = histories.filter_map(latest_live).cloned().collect();
        for prev in &deleted {
            // etcd's delete event names the key and the deleting revision, nothing else.
            let kv = KeyValue { key: prev.key.clone(), mod_revision: self.revision, ..KeyValue::default() };
            self.record(Event { kind: EventKind::Delete, kv, prev_kv: Some(prev.clone()) });
        }
        Ok(DeleteRangeResponse {
            deleted: i64::try_from(deleted.len()).expect("a key count fits in i64"),
            prev_kvs: if request.prev_kv { deleted } else { Vec::new() },
        })
    }

    /// Evaluates the compares against the state so far (earlier changes of an enclosing
    /// transaction included) and runs the chosen branch. The caller has checked the request for
    /// duplicate writes.
    pub(super) fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let succeeded = request.compare.iter().all(|compare| compare_holds(self.store, compare));
        let ops = if succeeded { &request.success } else { &request.failure };
        let responses = ops.iter().map(|op| self.apply(op)).collect::<Result<Vec<_>, _>>()?;
        Ok(TxnResponse { succeeded, responses })
    }

    fn apply(&mut self, op: &RequestOp) -> Result<ResponseOp, MvccError> {
        Ok(match op {
            RequestOp::Range(request) => {
                ResponseOp::Range(self.store.range_at(request, self.visible_revision())?)
            }
            RequestOp::Put(request) => ResponseOp::Put(self.put(request)?),
            RequestOp::DeleteRange(request) => ResponseOp::DeleteRange(self.delete_range(request)?),
            RequestOp::Txn(request) => ResponseOp::Txn(self.txn(request)?),
        })
    }

    /// The newest revision a read inside this write may name: its own once it changed something
    /// (as etcd's write transactions do).
    fn visible_revision(&self) -> Revision {
        if self.events.is_empty() { self.store.current_revision } else { self.revision }
    }

    fn record(&mut self, event: Event) {
        let version = match event.kind {
            EventKind::Put => KeyVersion::Live(event.kv.clone()),
            EventKind::Delete => KeyVersion::Tombstone(self.revision),
        };
        let history = self.store.keys.entry(event.kv.key.clone()).or_default();
        // The transaction check rules out two changes of one key in one write; two versions at
        // one revision would make reads at that revision ambiguous.
        let previous_revision = history.last().map_or(0, KeyVersion::mod_revision);
        assert!(previous_revision < self.revision, "a key changed twice in one revision");
        history.push(version);
        match (event.kind, &event.prev_kv) {
            (EventKind::Put, None) => self.store.live_key_count += 1,
            (EventKind::Put, Some(_)) => {}
            (EventKind::Delete, _) => self.store.live_key_count -= 1,
        }
        self.events.push(event);
    }

    fn commit(self) -> Vec<Event> {
        if !self.events.is_empty() {
            self.store.current_revision = self.revision;
            self.store.log.insert(self.revision, self.events.clone());
        }
        self.events
    }

    fn roll_back(self) {
        for event in self.events.iter().rev() {
            let key = &event.kv.key;
            let history = self.store.keys.get_mut(key).expect("a recorded change has a history");
            let undone = history.pop().expect("a recorded change has a version");
            assert_eq!(undone.mod_revision(), self.revision);
            if history.is_empty() {
                self.store.keys.remove(key);
            }
            match (event.kind, &event.prev_kv) {
                (EventKind::Put, None) => self.store.live_key_count -= 1,
                (EventKind::Put, Some(_)) => {}
                (EventKind::Delete, _) => self.store.live_key_count += 1,
            }
        }
    }
}

/// Whether the latest state satisfies `compare`, with etcd v3.4's rules: over a range, every
/// present key must satisfy it; if no key is present, a zeroed `KeyValue` stands in, except that
/// a value compare then fails (a missing value is not the empty value).
pub(super) fn compare_holds(store: &Mvcc, compare: &Compare) -> bool {
    let mut present = store.histories_in(&compare.range).filter_map(latest_live).peekable();
    if present.peek().is_none() {
        let is_value = matches!(compare.target, CompareTarget::Value(_));
        return !is_value && compare_key_value(compare, &KeyValue::default());
    }
    present.all(|kv| compare_key_value(compare, kv))
}

fn compare_key_value(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering: Ordering = match &compare.target {
        CompareTarget::Version(version) => kv.version.cmp(version),
        CompareTarget::CreateRevision(revision) => kv.create_revision.cmp(revision),
        CompareTarget::ModRevision(revision) => kv.mod_revision.cmp(revision),
        CompareTarget::Value(value) => kv.value.cmp(value),
        CompareTarget::Lease(lease) => kv.lease.cmp(lease),
    };
    match compare.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}
