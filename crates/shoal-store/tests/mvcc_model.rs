//! Property test: the MVCC store against a deliberately simple model of it.
//!
//! The model keeps a full copy of the key-value map for every revision, and knows nothing of
//! histories, tombstones or change logs. Random sequences of puts, deletes (single keys and
//! ranges over a five-key alphabet, so that writes collide), transactions with compares, and
//! compactions run against both. After every step the test checks that:
//! - the step answered as the model did (responses and errors alike);
//! - every range at every revision reads as the model's copy for that revision, and reads below
//!   the compact revision or above the current one fail as they should;
//! - the change log replayed from the compact revision is the difference between consecutive
//!   copies (puts and deletes with their previous versions), whether read at once, one revision
//!   at a time, or through a key filter.
//!
//! The seed is fixed and failures are not persisted, so every run checks the same cases.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use shoal_store::mvcc::{Event, EventKind, KeyValue, Mvcc, MvccError, Revision};
use shoal_store::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyRange, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];
const VALUES: [&str; 3] = ["", "x", "y"];

/// The map of live keys at one revision.
type State = BTreeMap<Bytes, KeyValue>;

#[derive(Clone, Debug)]
enum Step {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    /// Compact at `selector % (current revision + 2)`: sometimes compacted, sometimes future.
    Compact {
        selector: u16,
    },
}

/// The store as a list of full states: `states[i]` is the state at revision `i + 1`.
struct Model {
    states: Vec<State>,
    compact_revision: Revision,
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5_40a1),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model(steps in prop::collection::vec(step(), 1..32)) {
        // Runs the steps on the store and the model side by side, checking all reads and the
        // whole change log after each step, and a snapshot round trip at the end.
        let mut store = Mvcc::new();
        let mut model = Model { states: vec![State::new()], compact_revision: 0 };
        for step in &steps {
            apply_step(&mut store, &mut model, step);
            check_counters(&store, &model);
            check_ranges(&store, &model);
            check_events(&store, &model);
        }
        check_snapshot(&store);
    }
}

// ---- generators ----

fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(KEYS.as_slice()).prop_map(|text| Bytes::from_static(text.as_bytes()))
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(VALUES.as_slice()).prop_map(|text| Bytes::from_static(text.as_bytes()))
}

/// Single keys, intervals (reversed and empty ones included), open-ended ranges and prefixes.
fn key_range() -> impl Strategy<Value = KeyRange> {
    prop_oneof![
        3 => key().prop_map(|key| KeyRange { key, range_end: Bytes::new() }),
        2 => (key(), key()).prop_map(|(key, range_end)| KeyRange { key, range_end }),
        1 => key().prop_map(|key| KeyRange { key, range_end: Bytes::from_static(b"\0") }),
        1 => Just(KeyRange { key: Bytes::from_static(b"\0"), range_end: Bytes::from_static(b"\0") }),
        1 => key().prop_map(KeyRange::prefix),
    ]
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    let flags = (any::<bool>(), prop::bool::weighted(0.15), prop::bool::weighted(0.15));
    (key(), value(), 0..3i64, flags).prop_map(|(key, value, lease, (prev_kv, ignore_value, ignore_lease))| {
        PutRequest { key, value, lease, prev_kv, ignore_value, ignore_lease }
    })
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (key_range(), any::<bool>()).prop_map(|(range, prev_kv)| DeleteRangeRequest { range, prev_kv })
}

/// Ranges inside a transaction read its own state so far (revision 0).
fn range_request() -> impl Strategy<Value = RangeRequest> {
    (key_range(), 0..3i64, any::<bool>(), prop::bool::weighted(0.2)).prop_map(
        |(range, limit, keys_only, count_only)| RangeRequest {
            range,
            limit,
            revision: 0,
            keys_only,
            count_only,
        },
    )
}

fn compare() -> impl Strategy<Value = Compare> {
    let result = prop::sample::select(vec![
        CompareResult::Equal,
        CompareResult::NotEqual,
        CompareResult::Greater,
        CompareResult::Less,
    ]);
    let target = prop_oneof![
        (0..4i64).prop_map(CompareTarget::Version),
        (0..12i64).prop_map(CompareTarget::CreateRevision),
        (0..12i64).prop_map(CompareTarget::ModRevision),
        value().prop_map(CompareTarget::Value),
        (0..3i64).prop_map(CompareTarget::Lease),
    ];
    (key_range(), result, target).prop_map(|(range, result, target)| Compare { range, result, target })
}

fn request_op() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        3 => put_request().prop_map(RequestOp::Put),
        2 => delete_request().prop_map(RequestOp::DeleteRange),
        1 => range_request().prop_map(RequestOp::Range),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let ops = |max| prop::collection::vec(request_op(), 0..max);
    let txn = (prop::collection::vec(compare(), 0..3), ops(4), ops(3))
        .prop_map(|(compare, success, failure)| TxnRequest { compare, success, failure });
    prop_oneof![
        4 => put_request().prop_map(Step::Put),
        2 => delete_request().prop_map(Step::DeleteRange),
        3 => txn.prop_map(Step::Txn),
        1 => any::<u16>().prop_map(|selector| Step::Compact { selector }),
    ]
}

// ---- running a step on both ----

fn apply_step(store: &mut Mvcc, model: &mut Model, step: &Step) {
    let current = store.current_revision();
    let (changed, events) = match step {
        Step::Put(request) => {
            let expected = model.write(|state, revision| model_put(state, revision, request));
            compare_write(store.put(request), expected, step)
        }
        Step::DeleteRange(request) => {
            let expected = model.write(|state, revision| Ok(model_delete(state, revision, request)));
            compare_write(store.delete_range(request), expected, step)
        }
        Step::Txn(request) => {
            let expected = model.write(|state, revision| model_txn(state, revision, request));
            compare_write(store.txn(request), expected, step)
        }
        Step::Compact { selector } => {
            let revision = Revision::from(*selector) % (current + 2);
            assert_eq!(store.compact(revision), model.compact(revision), "{step:?}");
            (false, Vec::new())
        }
    };
    // A write that changed something returns the events the log holds for its revision.
    let expected_revision = if changed { current + 1 } else { current };
    assert_eq!(store.current_revision(), expected_revision, "{step:?}");
    if changed {
        let logged = store.events(expected_revision, &all_keys(), usize::MAX).unwrap();
        assert_eq!(logged.events, events, "{step:?}");
    } else {
        assert!(events.is_empty(), "{step:?}");
    }
}

/// Asserts the store answered a write as the model did; returns whether the model's write
/// changed something, and the events the store returned.
fn compare_write<T: PartialEq + std::fmt::Debug>(
    actual: Result<(T, Vec<Event>), MvccError>,
    expected: Result<(T, bool), MvccError>,
    step: &Step,
) -> (bool, Vec<Event>) {
    match (actual, expected) {
        (Ok((response, events)), Ok((expected, changed))) => {
            assert_eq!(response, expected, "{step:?}");
            (changed, events)
        }
        (actual, expected) => {
            let actual = actual.map(|(response, _)| response);
            assert_eq!(actual, expected.map(|(response, _)| response), "{step:?}");
            (false, Vec::new())
        }
    }
}

// ---- the model ----

impl Model {
    fn current_revision(&self) -> Revision {
        Revision::try_from(self.states.len()).unwrap()
    }

    fn state_at(&self, revision: Revision) -> &State {
        &self.states[usize::try_from(revision - 1).unwrap()]
    }

    /// Runs `apply` on a copy of the current state at the next revision; keeps the copy as the
    /// next state if `apply` succeeded and wrote something.
    fn write<T>(
        &mut self,
        apply: impl FnOnce(&mut State, Revision) -> Result<(T, bool), MvccError>,
    ) -> Result<(T, bool), MvccError> {
        let mut next = self.states.last().unwrap().clone();
        let (response, changed) = apply(&mut next, self.current_revision() + 1)?;
        if changed {
            self.states.push(next);
        }
        Ok((response, changed))
    }

    fn compact(&mut self, revision: Revision) -> Result<(), MvccError> {
        if revision <= self.compact_revision {
            return Err(MvccError::Compacted { compact_revision: self.compact_revision });
        }
        let current = self.current_revision();
        if revision > current {
            return Err(MvccError::FutureRevision { requested: revision, current });
        }
        self.compact_revision = revision;
        Ok(())
    }

    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let current = self.current_revision();
        let revision = if request.revision <= 0 { current } else { request.revision };
        if revision < self.compact_revision {
            return Err(MvccError::Compacted { compact_revision: self.compact_revision });
        }
        if revision > current {
            return Err(MvccError::FutureRevision { requested: revision, current });
        }
        Ok(model_range(self.state_at(revision), request))
    }

    /// The change log as differences between consecutive states, from revision `from` on.
    fn events(&self, from: Revision) -> Vec<Event> {
        let first = from.max(2);
        let revisions = first..=self.current_revision();
        let diffs =
            revisions.map(|revision| diff(self.state_at(revision - 1), self.state_at(revision), revision));
        diffs.flatten().collect()
    }
}

fn model_put(
    state: &mut State,
    revision: Revision,
    request: &PutRequest,
) -> Result<(PutResponse, bool), MvccError> {
    let prev = state.get(&request.key).cloned();
    let kv = match &prev {
        None if request.ignore_value || request.ignore_lease => {
            return Err(MvccError::KeyNotFound);
        }
        None => KeyValue {
            key: request.key.clone(),
            value: request.value.clone(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: request.lease,
        },
        Some(prev) => KeyValue {
            value: if request.ignore_value { prev.value.clone() } else { request.value.clone() },
            mod_revision: revision,
            version: prev.version + 1,
            lease: if request.ignore_lease { prev.lease } else { request.lease },
            ..prev.clone()
        },
    };
    state.insert(request.key.clone(), kv);
    Ok((PutResponse { prev_kv: prev.filter(|_| request.prev_kv) }, true))
}

fn model_delete(
    state: &mut State,
    _revision: Revision,
    request: &DeleteRangeRequest,
) -> (DeleteRangeResponse, bool) {
    let deleted: Vec<KeyValue> =
        state.values().filter(|kv| request.range.contains(&kv.key)).cloned().collect();
    state.retain(|key, _| !request.range.contains(key));
    let count = i64::try_from(deleted.len()).unwrap();
    let prev_kvs = if request.prev_kv { deleted } else { Vec::new() };
    (DeleteRangeResponse { deleted: count, prev_kvs }, count > 0)
}

fn model_range(state: &State, request: &RangeRequest) -> RangeResponse {
    let matching: Vec<&KeyValue> = state.values().filter(|kv| request.range.contains(&kv.key)).collect();
    let limit = if request.limit > 0 { usize::try_from(request.limit).unwrap() } else { usize::MAX };
    let count = i64::try_from(matching.len()).unwrap();
    if request.count_only {
        return RangeResponse { kvs: Vec::new(), more: false, count };
    }
    let more = matching.len() > limit;
    let kvs = matching.into_iter().take(limit).map(|kv| KeyValue {
        value: if request.keys_only { Bytes::new() } else { kv.value.clone() },
        ..kv.clone()
    });
    RangeResponse { kvs: kvs.collect(), more, count }
}

/// A flat transaction (the generator makes no nested ones): check for duplicate writes in
/// either branch, evaluate the compares on the state before it, run the chosen branch.
fn model_txn(
    state: &mut State,
    revision: Revision,
    request: &TxnRequest,
) -> Result<(TxnResponse, bool), MvccError> {
    if has_duplicate_write(&request.success) || has_duplicate_write(&request.failure) {
        return Err(MvccError::DuplicateKeyInTxn);
    }
    let succeeded = request.compare.iter().all(|compare| model_compare(state, compare));
    let ops = if succeeded { &request.success } else { &request.failure };
    let mut changed = false;
    let mut responses = Vec::new();
    for op in ops {
        responses.push(match op {
            RequestOp::Range(range) => ResponseOp::Range(model_range(state, range)),
            RequestOp::Put(put) => {
                let (response, _) = model_put(state, revision, put)?;
                changed = true;
                ResponseOp::Put(response)
            }
            RequestOp::DeleteRange(delete) => {
                let (response, deleted) = model_delete(state, revision, delete);
                changed |= deleted;
                ResponseOp::DeleteRange(response)
            }
            RequestOp::Txn(_) => unreachable!("the generator makes no nested transactions"),
        });
    }
    Ok((TxnResponse { succeeded, responses }, changed))
}

fn has_duplicate_write(ops: &[RequestOp]) -> bool {
    let puts: Vec<&Bytes> = ops
        .iter()
        .filter_map(|op| if let RequestOp::Put(put) = op { Some(&put.key) } else { None })
        .collect();
    let deletes: Vec<&KeyRange> = ops
        .iter()
        .filter_map(|op| if let RequestOp::DeleteRange(delete) = op { Some(&delete.range) } else { None })
        .collect();
    let distinct: BTreeSet<&Bytes> = puts.iter().copied().collect();
    distinct.len() < puts.len() || puts.iter().any(|key| deletes.iter().any(|range| range.contains(key)))
}

/// etcd's compare: over the present keys of the range, all must hold; with none present, a
/// zeroed KeyValue stands in, but a value compare fails.
fn model_compare(state: &State, compare: &Compare) -> bool {
    let present: Vec<&KeyValue> = state.values().filter(|kv| compare.range.contains(&kv.key)).collect();
    if present.is_empty() {
        if matches!(compare.target, CompareTarget::Value(_)) {
            return false;
        }
        return compare_one(&KeyValue::default(), compare);
    }
    present.into_iter().all(|kv| compare_one(kv, compare))
}

fn compare_one(kv: &KeyValue, compare: &Compare) -> bool {
    let ordering = match &compare.target {
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

/// The events that turn `before` into `after`, in key order.
fn diff(before: &State, after: &State, revision: Revision) -> Vec<Event> {
    let keys: BTreeSet<&Bytes> = before.keys().chain(after.keys()).collect();
    let changes = keys.into_iter().filter_map(|key| match (before.get(key), after.get(key)) {
        (prev, Some(kv)) if prev != Some(kv) => {
            Some(Event { kind: EventKind::Put, kv: kv.clone(), prev_kv: prev.cloned() })
        }
        (Some(prev), None) => Some(Event {
            kind: EventKind::Delete,
            kv: KeyValue { key: key.clone(), mod_revision: revision, ..KeyValue::default() },
            prev_kv: Some(prev.clone()),
        }),
        _ => None,
    });
    changes.collect()
}

// ---- checks ----

fn all_keys() -> KeyRange {
    KeyRange { key: Bytes::from_static(b"\0"), range_end: Bytes::from_static(b"\0") }
}

fn check_counters(store: &Mvcc, model: &Model) {
    assert_eq!(store.current_revision(), model.current_revision());
    assert_eq!(store.compact_revision(), model.compact_revision);
    assert_eq!(store.key_count(), model.states.last().unwrap().len());
}

/// Every range of a fixed set, at every revision from 0 to one past the current one.
fn check_ranges(store: &Mvcc, model: &Model) {
    let mut ranges = vec![all_keys(), range("b", "d"), range("c", "\0"), range("d", "b")];
    ranges.extend(KEYS.iter().map(|key| KeyRange::key(Bytes::from_static(key.as_bytes()))));
    for revision in 0..=model.current_revision() + 1 {
        for range in &ranges {
            let request = RangeRequest { range: range.clone(), revision, ..RangeRequest::default() };
            assert_eq!(store.range(&request), model.range(&request), "{request:?}");
        }
        let limited = RangeRequest { range: all_keys(), revision, limit: 2, ..Default::default() };
        assert_eq!(store.range(&limited), model.range(&limited), "{limited:?}");
    }
}

fn range(key: &'static str, range_end: &'static str) -> KeyRange {
    KeyRange { key: Bytes::from_static(key.as_bytes()), range_end: Bytes::from_static(range_end.as_bytes()) }
}

/// The log from the oldest readable revision equals the model's diffs (events within one
/// revision compared in key order: op order is the unit tests' business), read at once, one
/// revision per call, and through a one-key filter; the revision before it is compacted.
fn check_events(store: &Mvcc, model: &Model) {
    let from = model.compact_revision.max(1);
    let expected = model.events(from);
    let all = store.events(from, &all_keys(), usize::MAX).unwrap();
    assert_eq!(in_key_order(all.events.clone()), expected);
    assert_eq!(all.next_revision, model.current_revision() + 1);

    let mut stepped = Vec::new();
    let mut next = from;
    while next <= model.current_revision() {
        let batch = store.events(next, &all_keys(), 1).unwrap();
        let revisions: BTreeSet<Revision> = batch.events.iter().map(|e| e.kv.mod_revision).collect();
        assert!(revisions.len() <= 1, "a batch of max 1 event spans one revision: {batch:?}");
        assert!(batch.next_revision > next);
        next = batch.next_revision;
        stepped.extend(batch.events);
    }
    assert_eq!(stepped, all.events);

    let filter = KeyRange::key(Bytes::from_static(b"c"));
    let filtered = store.events(from, &filter, usize::MAX).unwrap().events;
    let expected_filtered: Vec<Event> = all.events.into_iter().filter(|event| event.kv.key == "c").collect();
    assert_eq!(filtered, expected_filtered);

    if model.compact_revision > 1 {
        let compacted = MvccError::Compacted { compact_revision: model.compact_revision };
        assert_eq!(store.events(from - 1, &all_keys(), 1), Err(compacted));
    }
}

/// Sorts each revision's events by key; revisions keep their order.
fn in_key_order(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| (a.kv.mod_revision, &a.kv.key).cmp(&(b.kv.mod_revision, &b.kv.key)));
    events
}

/// A postcard snapshot restores a store that reads, replays and re-serializes the same.
fn check_snapshot(store: &Mvcc) {
    let encoded = postcard::to_allocvec(store).unwrap();
    let restored: Mvcc = postcard::from_bytes(&encoded).unwrap();
    assert_eq!(postcard::to_allocvec(&restored).unwrap(), encoded);
    let request = RangeRequest { range: all_keys(), ..RangeRequest::default() };
    assert_eq!(restored.range(&request), store.range(&request));
    let from = store.compact_revision();
    assert_eq!(restored.events(from, &all_keys(), 64), store.events(from, &all_keys(), 64));
}
