//! Tests of the etcd wire conversions.

use prost::Message;
use tonic::Code;

use super::*;

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn wire_kv(
    key: &str,
    value: &str,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: bytes(key),
        value: bytes(value),
        create_revision,
        mod_revision,
        version,
        lease: 0,
    }
}

fn keys(kvs: &[mvccpb::KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| std::str::from_utf8(&kv.key).unwrap()).collect()
}

/// Three keys whose every sort target orders them differently.
fn fixture() -> Vec<mvccpb::KeyValue> {
    vec![wire_kv("a", "z", 5, 9, 3), wire_kv("b", "x", 2, 8, 1), wire_kv("c", "y", 7, 7, 2)]
}

fn wire_range(key: &str) -> pb::RangeRequest {
    pb::RangeRequest { key: bytes(key), ..Default::default() }
}

fn wire_put(key: &str, value: &str) -> pb::RequestOp {
    let put = pb::PutRequest { key: bytes(key), value: bytes(value), ..Default::default() };
    pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) }
}

fn wire_compare(target: i32, operand: Option<pb::compare::TargetUnion>) -> pb::Compare {
    pb::Compare { result: 0, target, key: bytes("k"), range_end: Bytes::new(), target_union: operand }
}

/// Serves a converted range over `fixture()` as the store does: ascending keys, `limit`,
/// `keys_only`, and `count` over the whole range.
fn serve(request: &RangeRequest) -> RangeResponse {
    let all: Vec<KeyValue> = fixture().into_iter().map(key_value_from_proto).collect();
    let count = all.len() as i64;
    let limit = if request.limit > 0 { request.limit as usize } else { all.len() };
    let more = all.len() > limit;
    let mut kvs: Vec<KeyValue> = all.into_iter().take(limit).collect();
    if request.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value = Bytes::new());
    }
    RangeResponse { kvs, more, count }
}

fn header(revision: Revision) -> pb::ResponseHeader {
    pb::ResponseHeader { cluster_id: 1, member_id: 2, revision, raft_term: 3 }
}

// Checks that tonic generated etcd's service names, so that the gRPC paths are etcd's
// (`/etcdserverpb.KV/Range`, ...) and etcd clients reach shoal's services.
#[test]
fn generated_services_carry_etcds_names() {
    use pb::*;
    use tonic::server::NamedService;

    let names = [
        (kv_server::SERVICE_NAME, "etcdserverpb.KV"),
        (watch_server::SERVICE_NAME, "etcdserverpb.Watch"),
        (lease_server::SERVICE_NAME, "etcdserverpb.Lease"),
        (cluster_server::SERVICE_NAME, "etcdserverpb.Cluster"),
        (maintenance_server::SERVICE_NAME, "etcdserverpb.Maintenance"),
        (auth_server::SERVICE_NAME, "etcdserverpb.Auth"),
    ];
    for (generated, etcd) in names {
        assert_eq!(generated, etcd);
    }
    assert_eq!(<kv_server::KvServer<()> as NamedService>::NAME, "etcdserverpb.KV");
}

// Decodes bytes written by hand from etcd's field numbers, as an etcd client would send
// them, and checks they land in the fields of the same names: a wrong number in the
// protos would decode into the wrong field or be skipped as unknown.
#[test]
fn wire_bytes_decode_with_etcds_field_numbers() {
    let range = pb::RangeRequest::decode(
        &[0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 1, 0x28, 2, 0x30, 3, 0x40, 1, 0x50, 4, 0x68, 6][..],
    )
    .unwrap();
    let expected = pb::RangeRequest {
        key: bytes("a"),
        range_end: bytes("b"),
        limit: 1,
        sort_order: SortOrder::Descend.into(),
        sort_target: SortTarget::Mod.into(),
        keys_only: true,
        min_mod_revision: 4,
        max_create_revision: 6,
        ..Default::default()
    };
    assert_eq!(range, expected);

    // `range_end` of a compare is field 64: its tag needs two varint bytes.
    let compare =
        pb::Compare::decode(&[0x08, 3, 0x10, 3, 0x1a, 1, b'k', 0x3a, 1, b'v', 0x82, 0x04, 1, b'z'][..])
            .unwrap();
    let expected = pb::Compare {
        result: pb::compare::CompareResult::NotEqual.into(),
        target: pb::compare::CompareTarget::Value.into(),
        key: bytes("k"),
        range_end: bytes("z"),
        target_union: Some(pb::compare::TargetUnion::Value(bytes("v"))),
    };
    assert_eq!(compare, expected);

    let op = pb::RequestOp::decode(&[0x12, 8, 0x0a, 1, b'k', 0x12, 1, b'v', 0x20, 1][..]).unwrap();
    let put = pb::PutRequest { key: bytes("k"), value: bytes("v"), prev_kv: true, ..Default::default() };
    assert_eq!(op.request, Some(pb::request_op::Request::RequestPut(put)));

    let kv =
        mvccpb::KeyValue::decode(&[0x0a, 1, b'k', 0x10, 2, 0x18, 3, 0x20, 4, 0x2a, 1, b'v', 0x30, 5][..])
            .unwrap();
    let expected = mvccpb::KeyValue {
        key: bytes("k"),
        create_revision: 2,
        mod_revision: 3,
        version: 4,
        value: bytes("v"),
        lease: 5,
    };
    assert_eq!(kv, expected);
}

// Checks each range request against the store request and options it becomes, and that
// a limit (and keys_only, for a sort by value) moves to the options exactly when the
// store must return the whole range.
#[test]
fn range_requests_convert() {
    fn check(request: pb::RangeRequest, expected: Result<(RangeRequest, RangeOptions), ConvertError>) {
        assert_eq!(range_request_from_proto(request), expected);
    }
    let store_request = |limit: i64, keys_only: bool| RangeRequest {
        range: KeyRange { key: bytes("a"), range_end: bytes("b") },
        limit,
        revision: 7,
        keys_only,
        count_only: false,
    };
    let request = |limit: i64, keys_only: bool| pb::RangeRequest {
        range_end: bytes("b"),
        limit,
        revision: 7,
        keys_only,
        ..wire_range("a")
    };

    check(request(5, true), Ok((store_request(5, true), RangeOptions::default())));
    let ascend_by_key = pb::RangeRequest { sort_order: SortOrder::Ascend.into(), ..request(5, false) };
    let options = RangeOptions { sort_order: SortOrder::Ascend, ..Default::default() };
    check(ascend_by_key, Ok((store_request(5, false), options)));
    let by_mod = pb::RangeRequest {
        sort_order: SortOrder::Descend.into(),
        sort_target: SortTarget::Mod.into(),
        ..request(2, true)
    };
    let options = RangeOptions {
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Mod,
        deferred_limit: 2,
        ..Default::default()
    };
    check(by_mod, Ok((store_request(0, true), options)));
    let by_value = pb::RangeRequest { sort_target: SortTarget::Value.into(), ..request(1, true) };
    let options = RangeOptions {
        sort_target: SortTarget::Value,
        deferred_limit: 1,
        deferred_keys_only: true,
        ..Default::default()
    };
    check(by_value, Ok((store_request(0, false), options)));
    let filtered = pb::RangeRequest { min_mod_revision: 4, serializable: true, ..request(3, true) };
    let options =
        RangeOptions { min_mod_revision: 4, serializable: true, deferred_limit: 3, ..Default::default() };
    check(filtered, Ok((store_request(0, true), options)));

    check(wire_range(""), Err(ConvertError::EmptyKey));
    check(
        pb::RangeRequest { sort_order: 7, ..wire_range("a") },
        Err(ConvertError::UnknownSortOrder { value: 7 }),
    );
    check(
        pb::RangeRequest { sort_target: 9, ..wire_range("a") },
        Err(ConvertError::UnknownSortTarget { value: 9 }),
    );
}

// Checks every order on every target, including etcd's defaults: no order on a target
// other than the key means ascending, and ties keep key order.
#[test]
fn sort_orders_key_values_as_etcd() {
    fn check(sort_order: SortOrder, sort_target: SortTarget, expected: [&str; 3]) {
        let options = RangeOptions { sort_order, sort_target, ..Default::default() };
        let mut kvs = fixture();
        options.sort(&mut kvs);
        assert_eq!(keys(&kvs), expected, "{sort_order:?} by {sort_target:?}");
    }
    check(SortOrder::None, SortTarget::Key, ["a", "b", "c"]);
    check(SortOrder::Ascend, SortTarget::Key, ["a", "b", "c"]);
    check(SortOrder::Descend, SortTarget::Key, ["c", "b", "a"]);
    check(SortOrder::None, SortTarget::Version, ["b", "c", "a"]);
    check(SortOrder::Descend, SortTarget::Version, ["a", "c", "b"]);
    check(SortOrder::Ascend, SortTarget::Create, ["b", "a", "c"]);
    check(SortOrder::Descend, SortTarget::Create, ["c", "a", "b"]);
    check(SortOrder::Ascend, SortTarget::Mod, ["c", "b", "a"]);
    check(SortOrder::Descend, SortTarget::Mod, ["a", "b", "c"]);
    check(SortOrder::Ascend, SortTarget::Value, ["b", "c", "a"]);
    check(SortOrder::Descend, SortTarget::Value, ["a", "c", "b"]);

    let mut ties = vec![wire_kv("a", "", 1, 1, 1), wire_kv("b", "", 1, 1, 1)];
    RangeOptions { sort_order: SortOrder::Descend, sort_target: SortTarget::Version, ..Default::default() }
        .sort(&mut ties);
    assert_eq!(keys(&ties), ["a", "b"]);
}

// Checks each revision bound alone, inclusive, against the fixture's revisions.
#[test]
fn revision_filters_keep_keys_within_bounds() {
    fn check(options: RangeOptions, expected: &[&str]) {
        let mut kvs = fixture();
        options.retain_revisions(&mut kvs);
        assert_eq!(keys(&kvs), expected, "{options:?}");
    }
    check(RangeOptions::default(), &["a", "b", "c"]);
    check(RangeOptions { min_mod_revision: 8, ..Default::default() }, &["a", "b"]);
    check(RangeOptions { max_mod_revision: 8, ..Default::default() }, &["b", "c"]);
    check(RangeOptions { min_create_revision: 5, ..Default::default() }, &["a", "c"]);
    check(RangeOptions { max_create_revision: 2, ..Default::default() }, &["b"]);
    check(RangeOptions { min_mod_revision: 8, max_create_revision: 4, ..Default::default() }, &["b"]);
}

// Runs range requests through conversion, a store stand-in and the response conversion,
// checking the keys, values, `more` and `count` a client gets.
#[test]
fn range_responses_apply_sort_filters_and_deferred_limit() {
    fn check(request: pb::RangeRequest, expected_kvs: &[(&str, &str)], more: bool) {
        let (store_request, options) = range_request_from_proto(request).unwrap();
        let response = range_response_to_proto(serve(&store_request), &options, header(9));
        let kvs: Vec<(&str, &str)> = response
            .kvs
            .iter()
            .map(|kv| (std::str::from_utf8(&kv.key).unwrap(), std::str::from_utf8(&kv.value).unwrap()))
            .collect();
        assert_eq!(kvs, expected_kvs);
        assert_eq!(response.more, more);
        // etcd counts the whole range, before the revision filters.
        assert_eq!(response.count, 3);
        assert_eq!(response.header, Some(header(9)));
    }
    let all = || pb::RangeRequest { range_end: bytes("\0"), ..wire_range("a") };

    check(pb::RangeRequest { limit: 2, ..all() }, &[("a", "z"), ("b", "x")], true);
    let by_mod = pb::RangeRequest {
        limit: 2,
        sort_order: SortOrder::Descend.into(),
        sort_target: SortTarget::Mod.into(),
        ..all()
    };
    check(by_mod, &[("a", "z"), ("b", "x")], true);
    let by_create = pb::RangeRequest { limit: 2, sort_target: SortTarget::Create.into(), ..all() };
    check(by_create, &[("b", "x"), ("a", "z")], true);
    let by_value =
        pb::RangeRequest { limit: 1, keys_only: true, sort_target: SortTarget::Value.into(), ..all() };
    check(by_value, &[("b", "")], true);
    check(pb::RangeRequest { min_mod_revision: 8, limit: 2, ..all() }, &[("a", "z"), ("b", "x")], false);
    check(pb::RangeRequest { max_mod_revision: 8, keys_only: true, ..all() }, &[("b", ""), ("c", "")], false);
}

// Checks the validation etcd's gRPC layer does on puts and deletes, and that every
// conversion error reaches the client as InvalidArgument with etcd's message.
#[test]
fn writes_convert_and_malformed_writes_are_invalid_arguments() {
    let put = pb::PutRequest {
        key: bytes("k"),
        value: bytes("v"),
        lease: 7,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: false,
    };
    let expected = PutRequest {
        key: bytes("k"),
        value: bytes("v"),
        lease: 7,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: false,
    };
    assert_eq!(put_request_from_proto(put.clone()), Ok(expected));
    let delete = pb::DeleteRangeRequest { key: bytes("a"), range_end: bytes("b"), prev_kv: true };
    let expected =
        DeleteRangeRequest { range: KeyRange { key: bytes("a"), range_end: bytes("b") }, prev_kv: true };
    assert_eq!(delete_range_request_from_proto(delete), Ok(expected));

    let failures = [
        (
            put_request_from_proto(pb::PutRequest { key: Bytes::new(), ..put.clone() }).unwrap_err(),
            "etcdserver: key is not provided",
        ),
        (
            put_request_from_proto(pb::PutRequest { ignore_value: true, ..put.clone() }).unwrap_err(),
            "etcdserver: value is provided",
        ),
        (
            put_request_from_proto(pb::PutRequest { ignore_lease: true, ..put.clone() }).unwrap_err(),
            "etcdserver: lease is provided",
        ),
        (
            delete_range_request_from_proto(pb::DeleteRangeRequest::default()).unwrap_err(),
            "etcdserver: key is not provided",
        ),
        (
            range_request_from_proto(pb::RangeRequest { sort_order: 3, ..wire_range("a") }).unwrap_err(),
            "etcdserver: invalid sort option",
        ),
    ];
    for (error, message) in failures {
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }
}

// Checks each compare target with its operand, and each malformed compare.
#[test]
fn compares_convert_and_malformed_compares_are_refused() {
    use pb::compare::{CompareTarget as WireTarget, TargetUnion};

    fn check(compare: pb::Compare, expected: Result<CompareTarget, ConvertError>) {
        let converted = compare_from_proto(compare).map(|compare| compare.target);
        assert_eq!(converted, expected);
    }
    check(
        wire_compare(WireTarget::Version.into(), Some(TargetUnion::Version(1))),
        Ok(CompareTarget::Version(1)),
    );
    check(
        wire_compare(WireTarget::Create.into(), Some(TargetUnion::CreateRevision(2))),
        Ok(CompareTarget::CreateRevision(2)),
    );
    check(
        wire_compare(WireTarget::Mod.into(), Some(TargetUnion::ModRevision(3))),
        Ok(CompareTarget::ModRevision(3)),
    );
    check(
        wire_compare(WireTarget::Value.into(), Some(TargetUnion::Value(bytes("v")))),
        Ok(CompareTarget::Value(bytes("v"))),
    );
    check(wire_compare(WireTarget::Lease.into(), Some(TargetUnion::Lease(4))), Ok(CompareTarget::Lease(4)));

    check(
        wire_compare(WireTarget::Mod.into(), None),
        Err(ConvertError::CompareOperandMissing { target: "MOD" }),
    );
    check(
        wire_compare(WireTarget::Version.into(), Some(TargetUnion::Value(bytes("v")))),
        Err(ConvertError::CompareOperandMismatch { target: "VERSION", operand: "value" }),
    );
    check(
        wire_compare(8, Some(TargetUnion::Version(1))),
        Err(ConvertError::UnknownCompareTarget { value: 8 }),
    );
    let unknown_result = pb::Compare { result: 5, ..wire_compare(0, Some(TargetUnion::Version(1))) };
    check(unknown_result, Err(ConvertError::UnknownCompareResult { value: 5 }));
    let no_key = pb::Compare { key: Bytes::new(), ..wire_compare(0, Some(TargetUnion::Version(1))) };
    check(no_key, Err(ConvertError::EmptyKey));

    let compare = pb::Compare {
        result: pb::compare::CompareResult::Less.into(),
        range_end: bytes("z"),
        ..wire_compare(WireTarget::Version.into(), Some(TargetUnion::Version(1)))
    };
    let expected = Compare {
        range: KeyRange { key: bytes("k"), range_end: bytes("z") },
        result: CompareResult::Less,
        target: CompareTarget::Version(1),
    };
    assert_eq!(compare_from_proto(compare), Ok(expected));
}

// Converts a transaction nesting another one, checking the shoal request and the options
// tree that keeps the nested range's sort.
#[test]
fn nested_transactions_convert_with_their_range_options() {
    let sorted_range = pb::RangeRequest { sort_order: SortOrder::Descend.into(), ..wire_range("r") };
    let inner = pb::TxnRequest {
        compare: vec![],
        success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(sorted_range)) }],
        failure: vec![],
    };
    let outer = pb::TxnRequest {
        compare: vec![wire_compare(0, Some(pb::compare::TargetUnion::Version(0)))],
        success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestTxn(inner)) }],
        failure: vec![wire_put("k", "v")],
    };

    let (txn, options) = txn_request_from_proto(outer).unwrap();

    let compare = Compare {
        range: KeyRange::key(bytes("k")),
        result: CompareResult::Equal,
        target: CompareTarget::Version(0),
    };
    let range = RangeRequest { range: KeyRange::key(bytes("r")), ..Default::default() };
    let inner = TxnRequest { compare: vec![], success: vec![RequestOp::Range(range)], failure: vec![] };
    let put = PutRequest { key: bytes("k"), value: bytes("v"), ..Default::default() };
    let expected = TxnRequest {
        compare: vec![compare],
        success: vec![RequestOp::Txn(inner)],
        failure: vec![RequestOp::Put(put)],
    };
    assert_eq!(txn, expected);
    let range_options = RangeOptions { sort_order: SortOrder::Descend, ..Default::default() };
    let inner_options = TxnOptions { success: vec![OpOptions::Range(range_options)], failure: vec![] };
    let expected =
        TxnOptions { success: vec![OpOptions::Txn(inner_options)], failure: vec![OpOptions::Write] };
    assert_eq!(options, expected);
}

// Checks the refusals of malformed transactions: an empty operation, one too many
// operations, and a nested transaction over what its parent left.
#[test]
fn malformed_transactions_are_refused() {
    fn check(txn: pb::TxnRequest, expected: ConvertError) {
        assert_eq!(txn_request_from_proto(txn), Err(expected));
    }
    let puts = |count: usize| (0..count).map(|i| wire_put(&format!("k{i}"), "v")).collect::<Vec<_>>();
    let nested = |inner_puts: usize| pb::RequestOp {
        request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
            success: puts(inner_puts),
            ..Default::default()
        })),
    };

    check(
        pb::TxnRequest { failure: vec![pb::RequestOp::default()], ..Default::default() },
        ConvertError::RequestOpEmpty,
    );
    check(
        pb::TxnRequest { success: puts(MAX_TXN_OPS + 1), ..Default::default() },
        ConvertError::TooManyTxnOperations { operations: MAX_TXN_OPS + 1, allowed: MAX_TXN_OPS },
    );
    let mut success = puts(99);
    success.push(nested(MAX_TXN_OPS - 100 + 1));
    check(
        pb::TxnRequest { success, ..Default::default() },
        ConvertError::TooManyTxnOperations { operations: MAX_TXN_OPS - 99, allowed: MAX_TXN_OPS - 100 },
    );
    let mut success = puts(99);
    success.push(nested(MAX_TXN_OPS - 100));
    assert!(txn_request_from_proto(pb::TxnRequest { success, ..Default::default() }).is_ok());
    let status = tonic::Status::from(ConvertError::RequestOpEmpty);
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "etcdserver: key not found"));
}

// Converts a transaction's outcome on each branch: the nested range is finished with its
// own options, and nested headers carry only the revision.
#[test]
fn txn_responses_finish_nested_ranges() {
    let options = TxnOptions {
        success: vec![OpOptions::Range(RangeOptions {
            sort_order: SortOrder::Descend,
            ..Default::default()
        })],
        failure: vec![OpOptions::Write],
    };
    let range = RangeResponse {
        kvs: fixture().into_iter().map(key_value_from_proto).collect(),
        more: false,
        count: 3,
    };
    let succeeded = TxnResponse { succeeded: true, responses: vec![ResponseOp::Range(range)] };

    let response = txn_response_to_proto(succeeded, &options, header(9));

    assert!(response.succeeded);
    assert_eq!(response.header, Some(header(9)));
    let Some(pb::response_op::Response::ResponseRange(range)) = &response.responses[0].response else {
        panic!("expected a range response, got {:?}", response.responses);
    };
    assert_eq!(keys(&range.kvs), ["c", "b", "a"]);
    assert_eq!(range.header, Some(pb::ResponseHeader { revision: 9, ..Default::default() }));

    let prev_kv = key_value_from_proto(wire_kv("k", "old", 2, 3, 1));
    let put = PutResponse { prev_kv: Some(prev_kv.clone()) };
    let failed = TxnResponse { succeeded: false, responses: vec![ResponseOp::Put(put)] };
    let response = txn_response_to_proto(failed, &options, header(9));
    let expected = pb::ResponseOp {
        response: Some(pb::response_op::Response::ResponsePut(pb::PutResponse {
            header: Some(pb::ResponseHeader { revision: 9, ..Default::default() }),
            prev_kv: Some(key_value_to_proto(prev_kv)),
        })),
    };
    assert!(!response.succeeded);
    assert_eq!(response.responses, [expected]);
}

#[test]
#[should_panic(expected = "does not match its request's options")]
fn txn_response_not_matching_its_options_is_a_bug() {
    let options = TxnOptions { success: vec![OpOptions::Write], failure: vec![] };
    let response =
        TxnResponse { succeeded: true, responses: vec![ResponseOp::Range(RangeResponse::default())] };
    txn_response_to_proto(response, &options, header(1));
}

// Checks that put and delete responses keep their previous key-values.
#[test]
fn write_responses_carry_previous_key_values() {
    let prev_kv = key_value_from_proto(wire_kv("k", "old", 2, 3, 1));
    let put = put_response_to_proto(PutResponse { prev_kv: Some(prev_kv.clone()) }, header(4));
    assert_eq!(
        put,
        pb::PutResponse { header: Some(header(4)), prev_kv: Some(key_value_to_proto(prev_kv.clone())) }
    );

    let delete = DeleteRangeResponse { deleted: 1, prev_kvs: vec![prev_kv.clone()] };
    let expected = pb::DeleteRangeResponse {
        header: Some(header(4)),
        deleted: 1,
        prev_kvs: vec![key_value_to_proto(prev_kv)],
    };
    assert_eq!(delete_range_response_to_proto(delete, header(4)), expected);
}

// Round-trips key-values and events through etcd's messages, and refuses an event type
// etcd does not have.
#[test]
fn key_values_and_events_round_trip() {
    let kv = KeyValue {
        key: bytes("k"),
        value: bytes("v"),
        create_revision: 2,
        mod_revision: 5,
        version: 3,
        lease: 7,
    };
    assert_eq!(key_value_from_proto(key_value_to_proto(kv.clone())), kv);

    let put = Event { kind: EventKind::Put, kv: kv.clone(), prev_kv: Some(kv.clone()) };
    let deleted = KeyValue { key: bytes("k"), mod_revision: 6, ..Default::default() };
    let delete = Event { kind: EventKind::Delete, kv: deleted, prev_kv: None };
    for event in [put, delete] {
        assert_eq!(event_from_proto(event_to_proto(event.clone())), Ok(event));
    }
    let wire = event_to_proto(Event { kind: EventKind::Delete, kv, prev_kv: None });
    assert_eq!(wire.r#type, 1, "etcd's DELETE");

    let unknown = mvccpb::Event { r#type: 2, ..Default::default() };
    assert_eq!(event_from_proto(unknown), Err(ConvertError::UnknownEventType { value: 2 }));
}
