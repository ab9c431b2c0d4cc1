//! Unit tests of the MVCC store: one small, table-driven test per rule of its contract.

use bytes::Bytes;

use super::{Event, EventKind, KeyValue, Mvcc, MvccError, Revision};
use crate::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyRange, PutRequest, RangeRequest,
    RangeResponse, RequestOp, ResponseOp, TxnRequest,
};

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn key_range(key: &str, range_end: &str) -> KeyRange {
    KeyRange { key: bytes(key), range_end: bytes(range_end) }
}

fn all_keys() -> KeyRange {
    key_range("\0", "\0")
}

fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest { key: bytes(key), value: bytes(value), ..PutRequest::default() }
}

fn delete_request(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest { range: key_range(key, range_end), prev_kv: false }
}

fn read_all_at(revision: Revision) -> RangeRequest {
    RangeRequest { range: all_keys(), revision, ..RangeRequest::default() }
}

fn put_op(key: &str) -> RequestOp {
    RequestOp::Put(put_request(key, "v"))
}

fn delete_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp::DeleteRange(delete_request(key, range_end))
}

fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp::Txn(TxnRequest { compare: Vec::new(), success, failure })
}

/// A store after putting each `(key, value)` in order, one revision each.
fn store_with(puts: &[(&str, &str)]) -> Mvcc {
    let mut store = Mvcc::new();
    for (key, value) in puts {
        store.put(&put_request(key, value)).unwrap();
    }
    store
}

fn text(data: &[u8]) -> String {
    String::from_utf8(data.to_vec()).unwrap()
}

fn pairs(response: &RangeResponse) -> Vec<(String, String)> {
    response.kvs.iter().map(|kv| (text(&kv.key), text(&kv.value))).collect()
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response.kvs.iter().map(|kv| text(&kv.key)).collect()
}

/// Events as `(kind, key, revision)`, the part most checks care about.
fn summary(events: &[Event]) -> Vec<(EventKind, String, Revision)> {
    events.iter().map(|event| (event.kind, text(&event.kv.key), event.kv.mod_revision)).collect()
}

fn history_revisions(store: &Mvcc, key: &str) -> Vec<Revision> {
    let history = store.keys.get(key.as_bytes()).map(Vec::as_slice).unwrap_or_default();
    history.iter().map(|version| version.mod_revision()).collect()
}

#[test]
fn empty_store_is_at_revision_one() {
    // An empty store reads as etcd's: revision 1, nothing compacted, no keys; 2 is the future.
    let store = Mvcc::new();
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.compact_revision(), 0);
    assert_eq!(store.key_count(), 0);
    assert_eq!(store.range(&read_all_at(1)), Ok(RangeResponse::default()));
    let future = MvccError::FutureRevision { requested: 2, current: 1 };
    assert_eq!(store.range(&read_all_at(2)), Err(future));
}

#[test]
fn range_selects_keys_as_etcd() {
    // Each case reads one (key, range_end) from a fixed set of keys and lists what it selects:
    // single keys, intervals, the "\0" conventions, reversed and empty intervals.
    // `KeyRange::contains` must select the same keys as the store's map lookup.
    let stored = ["\0z", "a", "ab", "b", "c"];
    let store = store_with(&stored.map(|key| (key, "v")));
    let check = |range: KeyRange, expected: &[&str]| {
        let request = RangeRequest { range: range.clone(), ..RangeRequest::default() };
        assert_eq!(keys(&store.range(&request).unwrap()), expected, "{range:?}");
        let contained: Vec<&str> = stored.into_iter().filter(|key| range.contains(key.as_bytes())).collect();
        assert_eq!(contained, expected, "contains {range:?}");
    };
    check(key_range("a", ""), &["a"]);
    check(key_range("aa", ""), &[]);
    check(key_range("a", "b"), &["a", "ab"]);
    check(key_range("a", "c"), &["a", "ab", "b"]);
    check(key_range("ab", "\0"), &["ab", "b", "c"]);
    check(key_range("\0", "\0"), &["\0z", "a", "ab", "b", "c"]);
    check(key_range("\0", "b"), &["\0z", "a", "ab"]);
    check(key_range("b", "a"), &[]);
    check(key_range("b", "b"), &[]);
    check(KeyRange::prefix("a"), &["a", "ab"]);
}

#[test]
fn range_applies_limit_and_projections() {
    // Each case sets limit, keys_only and count_only over three keys and lists the keys returned,
    // `more` and `count`: count is the total whatever the limit; count_only returns no keys.
    let store = store_with(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let check = |limit: i64, keys_only: bool, count_only: bool, expected: &[&str], more: bool| {
        let request = RangeRequest { range: all_keys(), limit, keys_only, count_only, revision: 0 };
        let response = store.range(&request).unwrap();
        let case = format!("limit {limit} keys_only {keys_only} count_only {count_only}");
        assert_eq!(keys(&response), expected, "{case}");
        assert_eq!((response.more, response.count), (more, 3), "{case}");
        let values_empty = response.kvs.iter().all(|kv| kv.value.is_empty());
        assert_eq!(values_empty, keys_only || count_only, "{case}");
        assert!(response.kvs.iter().all(|kv| kv.version == 1), "{case}");
    };
    check(0, false, false, &["a", "b", "c"], false);
    check(1, false, false, &["a"], true);
    check(2, false, false, &["a", "b"], true);
    check(3, false, false, &["a", "b", "c"], false);
    check(5, false, false, &["a", "b", "c"], false);
    check(-1, false, false, &["a", "b", "c"], false);
    check(2, true, false, &["a", "b"], true);
    check(0, true, false, &["a", "b", "c"], false);
    check(1, false, true, &[], false);
}

#[test]
fn range_reads_past_revisions() {
    // Builds a short history and reads all keys at each revision, before and after it: every
    // past state is readable, revision <= 0 means the current one, later ones are the future.
    let mut store = store_with(&[("a", "1"), ("b", "1"), ("a", "2")]);
    store.delete_range(&delete_request("a", "")).unwrap();
    store.put(&put_request("a", "3")).unwrap();
    let check = |revision: Revision, expected: &[(&str, &str)]| {
        let response = store.range(&read_all_at(revision)).unwrap();
        let expected: Vec<(String, String)> =
            expected.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        assert_eq!(pairs(&response), expected, "revision {revision}");
    };
    check(1, &[]);
    check(2, &[("a", "1")]);
    check(3, &[("a", "1"), ("b", "1")]);
    check(4, &[("a", "2"), ("b", "1")]);
    check(5, &[("b", "1")]);
    check(6, &[("a", "3"), ("b", "1")]);
    check(0, &[("a", "3"), ("b", "1")]);
    check(-3, &[("a", "3"), ("b", "1")]);
    let future = MvccError::FutureRevision { requested: 7, current: 6 };
    assert_eq!(store.range(&read_all_at(7)), Err(future));
}

#[test]
fn put_tracks_versions_and_leases() {
    // Each step writes key "a" and states the version it must then have: create_revision is
    // the put that (re)created the key, version counts puts since, ignore_* keep value or lease.
    let mut store = Mvcc::new();
    let check = |store: &mut Mvcc, request: PutRequest, expected: KeyValue| {
        let (_, events) = store.put(&request).unwrap();
        assert_eq!(store.current_revision(), expected.mod_revision);
        let read = store.range(&RangeRequest { range: KeyRange::key("a"), ..Default::default() });
        assert_eq!(read.unwrap().kvs, std::slice::from_ref(&expected));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kv, expected);
    };
    let kv = |value: &str, create_revision, mod_revision, version, lease| KeyValue {
        key: bytes("a"),
        value: bytes(value),
        create_revision,
        mod_revision,
        version,
        lease,
    };
    let put = |value: &str, lease: i64| PutRequest { lease, ..put_request("a", value) };
    check(&mut store, put("1", 7), kv("1", 2, 2, 1, 7));
    check(&mut store, put("2", 0), kv("2", 2, 3, 2, 0));
    check(&mut store, PutRequest { ignore_value: true, ..put("", 5) }, kv("2", 2, 4, 3, 5));
    check(&mut store, PutRequest { ignore_lease: true, ..put("3", 0) }, kv("3", 2, 5, 4, 5));
    store.delete_range(&delete_request("a", "")).unwrap();
    check(&mut store, put("4", 0), kv("4", 7, 7, 1, 0));
}

#[test]
fn put_rejects_what_etcd_rejects() {
    // Each case is a put that must fail and leave the store untouched: an empty key, or
    // ignore_value / ignore_lease on a key that does not exist or was deleted.
    let mut store = store_with(&[("gone", "1")]);
    store.delete_range(&delete_request("gone", "")).unwrap();
    let mut check = |request: PutRequest, expected: MvccError| {
        assert_eq!(store.put(&request), Err(expected));
        assert_eq!(store.current_revision(), 3);
        assert_eq!(store.key_count(), 0);
        assert_eq!(store.range(&read_all_at(0)).unwrap().count, 0);
    };
    check(put_request("", "v"), MvccError::EmptyKey);
    check(PutRequest { ignore_value: true, ..put_request("new", "") }, MvccError::KeyNotFound);
    check(PutRequest { ignore_lease: true, ..put_request("new", "v") }, MvccError::KeyNotFound);
    check(PutRequest { ignore_value: true, ..put_request("gone", "") }, MvccError::KeyNotFound);
}

#[test]
fn put_returns_prev_kv_only_when_asked_but_events_always_carry_it() {
    // Overwrites a key with and without prev_kv: the response has it only when asked, the event
    // always; the first put of a key has no previous version at all.
    let mut store = Mvcc::new();
    let (response, events) = store.put(&put_request("a", "1")).unwrap();
    assert_eq!((response.prev_kv, &events[0].prev_kv), (None, &None));
    let first = store.range(&read_all_at(0)).unwrap().kvs[0].clone();
    let (response, events) = store.put(&put_request("a", "2")).unwrap();
    assert_eq!((response.prev_kv, &events[0].prev_kv), (None, &Some(first)));
    let second = store.range(&read_all_at(0)).unwrap().kvs[0].clone();
    let asking = PutRequest { prev_kv: true, ..put_request("a", "3") };
    let (response, events) = store.put(&asking).unwrap();
    assert_eq!(response.prev_kv.as_ref(), Some(&second));
    assert_eq!(events[0].prev_kv, Some(second));
}

#[test]
fn delete_range_takes_one_revision_and_only_if_it_deletes() {
    // Deletes a range of two keys: one revision, events in key order shaped as etcd's (key and
    // revision only, prev_kv the deleted version); then deleting nothing takes no revision.
    let mut store = store_with(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let before = store.range(&read_all_at(0)).unwrap().kvs;
    let request = DeleteRangeRequest { range: key_range("a", "c"), prev_kv: true };
    let (response, events) = store.delete_range(&request).unwrap();
    assert_eq!((response.deleted, &response.prev_kvs), (2, &before[..2].to_vec()));
    assert_eq!(store.current_revision(), 5);
    assert_eq!(store.key_count(), 1);
    let expected: Vec<Event> = before[..2]
        .iter()
        .map(|prev| Event {
            kind: EventKind::Delete,
            kv: KeyValue { key: prev.key.clone(), mod_revision: 5, ..KeyValue::default() },
            prev_kv: Some(prev.clone()),
        })
        .collect();
    assert_eq!(events, expected);

    for (key, range_end) in [("a", ""), ("a", "c"), ("x", "\0"), ("c", "a")] {
        let (response, events) = store.delete_range(&delete_request(key, range_end)).unwrap();
        assert_eq!((response.deleted, events.len()), (0, 0), "{key:?}..{range_end:?}");
        assert_eq!(store.current_revision(), 5);
    }
    let (response, _) = store.delete_range(&delete_request("c", "")).unwrap();
    assert_eq!((response.deleted, response.prev_kvs.len()), (1, 0));
}

#[test]
fn txn_compares_as_etcd() {
    // Each case is one compare against a fixed store, with whether it holds. A missing key
    // compares as a zeroed KeyValue, except that a value compare on it fails; over a range, every
    // present key must hold. A txn without operations writes nothing, so takes no revision.
    let mut store = store_with(&[("a", "1"), ("a", "2")]);
    store.put(&PutRequest { lease: 9, ..put_request("b", "x") }).unwrap();
    // a: create 2, mod 3, version 2, value "2"; b: create 4, mod 4, version 1, lease 9.
    let mut check = |range: KeyRange, result: CompareResult, target: CompareTarget, holds| {
        let case = format!("{range:?} {result:?} {target:?}");
        let compare = vec![Compare { range, result, target }];
        let (response, events) = store.txn(&TxnRequest { compare, ..Default::default() }).unwrap();
        assert_eq!(response.succeeded, holds, "{case}");
        assert!(events.is_empty());
        assert_eq!(store.current_revision(), 4);
    };
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{CreateRevision, Lease, ModRevision, Value, Version};
    let one = KeyRange::key;
    check(one("a"), Equal, Version(2), true);
    check(one("a"), Greater, Version(1), true);
    check(one("a"), Less, Version(2), false);
    check(one("a"), Equal, CreateRevision(2), true);
    check(one("a"), NotEqual, ModRevision(3), false);
    check(one("a"), Equal, Value(bytes("2")), true);
    check(one("a"), Greater, Value(bytes("10")), true);
    check(one("b"), Equal, Lease(9), true);
    check(one("z"), Equal, Version(0), true);
    check(one("z"), Equal, CreateRevision(0), true);
    check(one("z"), Less, ModRevision(1), true);
    check(one("z"), Equal, Lease(0), true);
    check(one("z"), Equal, Value(bytes("")), false);
    check(one("z"), NotEqual, Value(bytes("x")), false);
    check(key_range("a", "c"), Greater, ModRevision(2), true);
    check(key_range("a", "c"), Greater, ModRevision(3), false);
    check(key_range("a", "\0"), Equal, Version(2), false);
    check(key_range("a", "z"), NotEqual, Value(bytes("2")), false);
    check(key_range("x", "z"), Equal, Version(0), true);
    check(key_range("x", "z"), NotEqual, Value(bytes("")), false);
}

#[test]
fn txn_runs_one_branch_in_one_revision() {
    // Runs the success branch (puts, a delete and reads): all changes share one revision, events
    // come in operation order, and reads see earlier writes of the transaction. Then the failure
    // branch, and a branch of reads only, which takes no revision.
    let mut store = store_with(&[("c", "1")]);
    let read_pending = RequestOp::Range(read_all_at(3));
    let compare = vec![Compare {
        range: KeyRange::key("c"),
        result: CompareResult::Equal,
        target: CompareTarget::Version(1),
    }];
    let success = vec![put_op("b"), put_op("a"), delete_op("c", ""), read_pending];
    let request = TxnRequest { compare, success, failure: vec![put_op("f")] };
    let (response, events) = store.txn(&request).unwrap();
    assert!(response.succeeded);
    let expected = [(EventKind::Put, "b"), (EventKind::Put, "a"), (EventKind::Delete, "c")];
    assert_eq!(summary(&events), expected.map(|(kind, key)| (kind, key.to_string(), 3)));
    let Some(ResponseOp::Range(read)) = response.responses.last() else { panic!("{response:?}") };
    assert_eq!(keys(read), ["a", "b"]);
    assert!(read.kvs.iter().all(|kv| kv.mod_revision == 3));
    assert_eq!((store.current_revision(), store.key_count()), (3, 2));

    let (response, events) = store.txn(&request).unwrap();
    assert!(!response.succeeded);
    assert_eq!(summary(&events), [(EventKind::Put, "f".to_string(), 4)]);

    let reads_only = TxnRequest { success: vec![RequestOp::Range(read_all_at(0))], ..TxnRequest::default() };
    let (response, events) = store.txn(&reads_only).unwrap();
    assert_eq!((response.succeeded, events.len(), store.current_revision()), (true, 0, 4));
    let too_new = TxnRequest { success: vec![RequestOp::Range(read_all_at(5))], ..reads_only };
    let future = MvccError::FutureRevision { requested: 5, current: 4 };
    assert_eq!(store.txn(&too_new), Err(future));
}

#[test]
fn txn_rejects_duplicate_writes_in_a_branch() {
    // Each case is a branch with whether it writes a key twice: two puts, or a put under a
    // delete, in any order and at any nesting depth; the two branches of one nested txn exclude
    // each other. Each runs as the chosen success branch, then as the failure branch that is not
    // chosen, which etcd checks all the same. Rejected txns apply nothing.
    let mut store = store_with(&[("a", "1")]);
    let mut check = |ops: Vec<RequestOp>, duplicate: bool| {
        let case = format!("{ops:?}");
        for (success, failure) in [(ops.clone(), Vec::new()), (Vec::new(), ops)] {
            let request = TxnRequest { compare: Vec::new(), success, failure };
            let before = store.current_revision();
            let result = store.txn(&request).err();
            assert_eq!(result, duplicate.then_some(MvccError::DuplicateKeyInTxn), "{case}");
            if duplicate {
                assert_eq!(store.current_revision(), before, "{case}");
            }
        }
    };
    check(vec![put_op("a"), put_op("a")], true);
    check(vec![put_op("a"), put_op("b")], false);
    check(vec![delete_op("a", "c"), put_op("b")], true);
    check(vec![put_op("b"), delete_op("a", "c")], true);
    check(vec![delete_op("a", "\0"), put_op("z")], true);
    check(vec![delete_op("a", "b"), put_op("b")], false);
    check(vec![put_op("a"), delete_op("a", ""), delete_op("a", "")], true);
    check(vec![delete_op("a", ""), delete_op("a", "b"), put_op("b")], false);
    check(vec![put_op("a"), nested(vec![put_op("a")], vec![])], true);
    check(vec![nested(vec![], vec![delete_op("a", "")]), put_op("a")], true);
    check(vec![nested(vec![put_op("a")], vec![put_op("a")])], false);
    check(vec![nested(vec![delete_op("a", "")], vec![put_op("a")])], false);
    check(vec![nested(vec![put_op("a")], vec![]), nested(vec![], vec![put_op("a")])], true);
    check(vec![nested(vec![put_op("a")], vec![]), nested(vec![delete_op("a", "")], vec![])], true);
    check(vec![nested(vec![nested(vec![put_op("a"), put_op("a")], vec![])], vec![])], true);
}

#[test]
fn nested_txn_sees_earlier_writes_and_shares_the_revision() {
    // A put, then a nested txn whose compare holds only if it sees that put: the nested success
    // branch runs, and both writes share one revision.
    let mut store = Mvcc::new();
    let compare = vec![Compare {
        range: KeyRange::key("a"),
        result: CompareResult::Equal,
        target: CompareTarget::Version(1),
    }];
    let inner = TxnRequest {
        compare,
        success: vec![RequestOp::Put(put_request("b", "seen"))],
        failure: vec![RequestOp::Put(put_request("b", "unseen"))],
    };
    let outer = TxnRequest { success: vec![put_op("a"), RequestOp::Txn(inner)], ..TxnRequest::default() };
    let (response, events) = store.txn(&outer).unwrap();
    let Some(ResponseOp::Txn(inner_response)) = response.responses.last() else { panic!() };
    assert!(inner_response.succeeded);
    assert_eq!(summary(&events), [(EventKind::Put, "a".into(), 2), (EventKind::Put, "b".into(), 2)]);
    let read = store.range(&read_all_at(2)).unwrap();
    assert_eq!(pairs(&read)[1], ("b".to_string(), "seen".to_string()));
}

#[test]
fn failed_txn_applies_nothing() {
    // Each case is a txn whose last operation fails after earlier ones wrote: the store must be
    // exactly as before (reads, key count, change log), and the next write takes the next revision.
    let mut store = store_with(&[("x", "1")]);
    let mut check = |failing: RequestOp, expected: MvccError| {
        let success = vec![put_op("a"), delete_op("x", ""), failing];
        let request = TxnRequest { success, ..TxnRequest::default() };
        assert_eq!(store.txn(&request), Err(expected));
        assert_eq!(store.current_revision(), 2);
        assert_eq!(store.key_count(), 1);
        assert_eq!(keys(&store.range(&read_all_at(0)).unwrap()), ["x"]);
        assert_eq!(history_revisions(&store, "a"), [0; 0]);
        assert_eq!(history_revisions(&store, "x"), [2]);
        assert_eq!(store.events(1, &all_keys(), usize::MAX).unwrap().events.len(), 1);
    };
    let ignoring = PutRequest { ignore_value: true, ..put_request("missing", "") };
    check(RequestOp::Put(ignoring), MvccError::KeyNotFound);
    check(RequestOp::Put(put_request("", "v")), MvccError::EmptyKey);
    let future = MvccError::FutureRevision { requested: 4, current: 3 };
    check(RequestOp::Range(read_all_at(4)), future);
    let (_, events) = store.put(&put_request("b", "1")).unwrap();
    assert_eq!(summary(&events), [(EventKind::Put, "b".into(), 3)]);
}

#[test]
fn compaction_keeps_reads_from_the_compact_revision() {
    // Builds a history, compacts it twice, and checks the boundaries each time: reads at and
    // after the compact revision answer as before, earlier ones fail; each key keeps only its
    // version current at the compact revision (if live) and later ones; the log starts there.
    let mut store = store_with(&[("a", "1"), ("b", "1")]);
    store.delete_range(&delete_request("b", "")).unwrap();
    store.put(&put_request("a", "2")).unwrap();
    store.put(&put_request("c", "1")).unwrap();
    let before: Vec<_> = (1..=6).map(|revision| store.range(&read_all_at(revision))).collect();
    let mut check = |compact_revision: Revision, histories: [&[Revision]; 3]| {
        store.compact(compact_revision).unwrap();
        assert_eq!(store.compact_revision(), compact_revision);
        let compacted = MvccError::Compacted { compact_revision };
        for revision in 1..=6 {
            let read = store.range(&read_all_at(revision));
            let expected = if revision < compact_revision {
                Err(compacted.clone())
            } else {
                before[revision as usize - 1].clone()
            };
            assert_eq!(read, expected, "revision {revision} after compacting at {compact_revision}");
        }
        for (key, expected) in ["a", "b", "c"].into_iter().zip(histories) {
            assert_eq!(history_revisions(&store, key), expected, "{key}");
        }
        assert_eq!(store.events(compact_revision - 1, &all_keys(), 9), Err(compacted.clone()));
        let replay = store.events(compact_revision, &all_keys(), usize::MAX).unwrap();
        assert_eq!(replay.events[0].kv.mod_revision, compact_revision);
        assert_eq!(store.compact(compact_revision), Err(compacted));
        assert_eq!(store.key_count(), 2);
    };
    check(4, [&[2, 5], &[], &[6]]);
    check(6, [&[5], &[], &[6]]);
    assert_eq!(store.compact(7), Err(MvccError::FutureRevision { requested: 7, current: 6 }));
}

#[test]
fn events_replay_the_log_in_batches() {
    // Each case reads the change log from a revision, through a filter, with a batch size, and
    // lists the events (kind, key, revision) and where the next read starts. Batches never split
    // a revision; a caught-up reader gets nothing and the revision after the current one.
    let mut store = store_with(&[("a", "1"), ("b", "1")]);
    store.txn(&TxnRequest { success: vec![put_op("c"), put_op("d")], ..Default::default() }).unwrap();
    store.delete_range(&delete_request("a", "\0")).unwrap();
    let check = |from: Revision,
                 filter: KeyRange,
                 max: usize,
                 expected: &[(EventKind, &str, Revision)],
                 next: Revision| {
        let batch = store.events(from, &filter, max).unwrap();
        let expected: Vec<_> =
            expected.iter().map(|(kind, key, revision)| (*kind, key.to_string(), *revision)).collect();
        assert_eq!(summary(&batch.events), expected, "from {from} {filter:?} max {max}");
        assert_eq!(batch.next_revision, next, "from {from} {filter:?} max {max}");
    };
    use EventKind::{Delete, Put};
    let deletes = [(Delete, "a", 5), (Delete, "b", 5), (Delete, "c", 5), (Delete, "d", 5)];
    check(-1, all_keys(), 1, &[(Put, "a", 2)], 3);
    check(3, all_keys(), 1, &[(Put, "b", 3)], 4);
    check(4, all_keys(), 1, &[(Put, "c", 4), (Put, "d", 4)], 5);
    check(5, all_keys(), 1, &deletes, 6);
    check(2, all_keys(), 2, &[(Put, "a", 2), (Put, "b", 3)], 4);
    check(
        4,
        all_keys(),
        usize::MAX,
        &[(Put, "c", 4), (Put, "d", 4), deletes[0], deletes[1], deletes[2], deletes[3]],
        6,
    );
    check(1, KeyRange::key("c"), 1, &[(Put, "c", 4)], 5);
    check(5, KeyRange::key("c"), 1, &[(Delete, "c", 5)], 6);
    check(1, KeyRange::key("z"), 1, &[], 6);
    check(6, all_keys(), 1, &[], 6);
    check(9, all_keys(), 1, &[], 9);
}

#[test]
fn snapshot_round_trips_through_postcard() {
    // Serializes a store with history, tombstones and a compaction with postcard (the Raft
    // snapshot format) and checks the copy reads, replays and re-serializes the same.
    let mut store = store_with(&[("a", "1"), ("b", "1"), ("a", "2")]);
    store.delete_range(&delete_request("b", "")).unwrap();
    store.compact(3).unwrap();
    let encoded = postcard::to_allocvec(&store).unwrap();
    let copy: Mvcc = postcard::from_bytes(&encoded).unwrap();
    assert_eq!(postcard::to_allocvec(&copy).unwrap(), encoded);
    for revision in 1..=6 {
        assert_eq!(copy.range(&read_all_at(revision)), store.range(&read_all_at(revision)));
    }
    assert_eq!(copy.events(3, &all_keys(), 100), store.events(3, &all_keys(), 100));
    let counters = |store: &Mvcc| (store.current_revision(), store.compact_revision(), store.key_count());
    assert_eq!(counters(&copy), counters(&store));
}

// A transaction that only reads is answered without a write: the same response the write
// path gives, no new revision; one that writes anywhere, nested included, is not.
#[test]
fn read_only_transactions_are_answered_as_reads() {
    let mut store = store_with(&[("a", "1"), ("b", "2")]);
    let read_a =
        RequestOp::Range(RangeRequest { range: KeyRange::key(bytes("a")), ..RangeRequest::default() });
    let compare = Compare {
        range: KeyRange::key(bytes("a")),
        result: CompareResult::Equal,
        target: CompareTarget::Value(bytes("1")),
    };
    let reads = TxnRequest {
        compare: vec![compare.clone()],
        success: vec![read_a.clone(), nested(vec![read_a.clone()], vec![])],
        failure: vec![],
    };
    let revision = store.current_revision();
    let answered = store.read_txn(&reads).expect("reads").expect("only reads");
    assert!(answered.succeeded);
    assert_eq!(store.current_revision(), revision);
    let (written, events) = store.txn(&reads).expect("the write path answers the same");
    assert_eq!(answered, written);
    assert!(events.is_empty());
    let writes_when_nested = TxnRequest {
        compare: vec![compare],
        success: vec![nested(vec![], vec![put_op("c")])],
        failure: vec![],
    };
    assert_eq!(store.read_txn(&writes_when_nested).expect("no error"), None);
}

// A put whose key and value are views into a larger buffer (as tonic decodes them) stores
// copies: the versions the store keeps must not keep the whole buffer alive.
#[test]
fn stored_versions_do_not_share_the_request_buffer() {
    let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
    let inside = |data: &Bytes| buffer.as_ptr_range().contains(&data.as_ptr());
    let mut store = Mvcc::new();
    for value_end in [10, 20] {
        let request = PutRequest {
            key: buffer.slice(0..3),
            value: buffer.slice(3..value_end),
            ..PutRequest::default()
        };
        store.put(&request).unwrap();
        let response = store.range(&read_all_at(0)).unwrap();
        let [kv] = &response.kvs[..] else { panic!("one key: {response:?}") };
        assert_eq!((kv.key.len(), kv.value.len()), (3, value_end - 3));
        assert!(!inside(&kv.key) && !inside(&kv.value), "the stored key or value is a view into the request");
    }
}
