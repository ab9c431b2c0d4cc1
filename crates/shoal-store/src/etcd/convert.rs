//! Conversions between etcd's v3 wire messages and shoal's request types.
//!
//! Requests convert fallibly: a client can send anything, and each malformed request is
//! refused as etcd's gRPC layer refuses it, with `InvalidArgument` and etcd's own message
//! (etcd clients recognise errors by their message text). What etcd's `RangeRequest` asks for
//! beyond shoal's (sorting, revision filters, serializable reads) comes back beside the
//! converted request as `RangeOptions`, and the response conversion applies it, so that
//! sorting and filtering stay out of the replicated state machine.

use std::cmp::Ordering;

use bytes::Bytes;

use super::proto::etcdserverpb as pb;
use super::proto::mvccpb;
use crate::mvcc::{Event, EventKind, KeyValue, Revision};
use crate::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyRange, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

pub use pb::range_request::{SortOrder, SortTarget};

/// The most entries a transaction may hold in any one of its compare, success and failure
/// lists; a nested transaction gets what its parent left. This is etcd's default
/// `--max-txn-ops`: clients are written against it, and it bounds the work one request can
/// put into the Raft log.
pub const TXN_OPERATIONS_MAX: usize = 128;

/// Why an etcd request could not become a shoal request. The messages are etcd's where etcd
/// has one, because clients map errors back to types by their text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A transaction operation holding no request. etcd gives this (odd) message for it.
    #[error("etcdserver: key not found")]
    RequestOpEmpty,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: invalid sort option")]
    UnknownSortOrder { value: i32 },
    #[error("etcdserver: invalid sort option")]
    UnknownSortTarget { value: i32 },
    #[error("etcdserver: too many operations in txn request")]
    TooManyTxnOperations { operations: usize, allowed: usize },
    #[error("etcdserver: unknown compare result {value}")]
    UnknownCompareResult { value: i32 },
    #[error("etcdserver: unknown compare target {value}")]
    UnknownCompareTarget { value: i32 },
    #[error("etcdserver: compare on {target} has no operand")]
    CompareOperandMissing { target: &'static str },
    #[error("etcdserver: compare on {target} has a {operand} operand")]
    CompareOperandMismatch { target: &'static str, operand: &'static str },
    #[error("etcdserver: unknown event type {value}")]
    UnknownEventType { value: i32 },
}

impl From<ConvertError> for tonic::Status {
    fn from(error: ConvertError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

/// What an etcd `RangeRequest` asks for that shoal's `RangeRequest` does not model. The
/// caller serves the converted request, then `range_response_to_proto` applies these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeOptions {
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    /// The client accepts a member-local (possibly stale) read; the caller decides how to
    /// serve it, the conversion only reports it.
    pub serializable: bool,
    /// Lower and upper bounds on the keys' revisions, each inclusive; 0 means unbounded.
    pub min_mod_revision: Revision,
    pub max_mod_revision: Revision,
    pub min_create_revision: Revision,
    pub max_create_revision: Revision,
    /// The client's `limit` when the store is asked for the whole range so that the filters
    /// and the sort see every key (as etcd does); 0 when the store applies the limit itself.
    deferred_limit: i64,
    /// The client's `keys_only` when a sort by value needs the values from the store.
    deferred_keys_only: bool,
}

/// What the `RangeRequest`s inside a transaction asked for beyond shoal's, in the shape of the
/// transaction, so that `txn_response_to_proto` can finish each range response. The default
/// (empty) value stands for "no options anywhere".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnOptions {
    pub success: Vec<OpOptions>,
    pub failure: Vec<OpOptions>,
}

/// The options of one operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOptions {
    Range(RangeOptions),
    Txn(TxnOptions),
    /// A put or a delete: nothing beyond shoal's request.
    Write,
}

impl RangeOptions {
    /// Drops the key-values outside the revision bounds, as etcd's `min_mod_revision`,
    /// `max_mod_revision`, `min_create_revision` and `max_create_revision` ask.
    pub fn retain_revisions(&self, kvs: &mut Vec<mvccpb::KeyValue>) {
        let within = |value: Revision, min: Revision, max: Revision| {
            (min == 0 || value >= min) && (max == 0 || value <= max)
        };
        kvs.retain(|kv| {
            within(kv.mod_revision, self.min_mod_revision, self.max_mod_revision)
                && within(kv.create_revision, self.min_create_revision, self.max_create_revision)
        });
    }

    /// Orders key-values that arrive in ascending key order (the store's order) as etcd does.
    /// The sort is stable, so keys that tie on the target stay in key order: etcd leaves
    /// their order unspecified, shoal makes it deterministic.
    pub fn sort(&self, kvs: &mut [mvccpb::KeyValue]) {
        let target = self.sort_target;
        match self.effective_sort_order() {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by(|a, b| compare_by(target, a, b)),
            SortOrder::Descend => kvs.sort_by(|a, b| compare_by(target, b, a)),
        }
    }

    /// etcd's normalisation: no order on a target other than the key means ascending, and
    /// ascending by key is the order the store already returns.
    fn effective_sort_order(&self) -> SortOrder {
        match (self.sort_order, self.sort_target) {
            (SortOrder::None | SortOrder::Ascend, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (order, _) => order,
        }
    }

    /// Whether the filters or the sort must see every key of the range before `limit` cuts.
    fn needs_whole_range(&self) -> bool {
        let filters = [
            self.min_mod_revision,
            self.max_mod_revision,
            self.min_create_revision,
            self.max_create_revision,
        ];
        self.effective_sort_order() != SortOrder::None || filters.iter().any(|bound| *bound != 0)
    }
}

/// Converts a range read. The returned request is the one to serve: when sorting or filtering
/// needs every key of the range, its `limit` (and, for a sort by value, its `keys_only`) are
/// moved into the options and applied by `range_response_to_proto`.
pub fn range_request_from_proto(
    request: pb::RangeRequest,
) -> Result<(RangeRequest, RangeOptions), ConvertError> {
    if request.key.is_empty() {
        return Err(ConvertError::EmptyKey);
    }
    let sort_order = SortOrder::try_from(request.sort_order)
        .map_err(|_| ConvertError::UnknownSortOrder { value: request.sort_order })?;
    let sort_target = SortTarget::try_from(request.sort_target)
        .map_err(|_| ConvertError::UnknownSortTarget { value: request.sort_target })?;
    let mut options = RangeOptions {
        sort_order,
        sort_target,
        serializable: request.serializable,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
        deferred_limit: 0,
        deferred_keys_only: false,
    };
    let mut limit = request.limit;
    let mut keys_only = request.keys_only;
    if options.needs_whole_range() {
        options.deferred_limit = std::mem::take(&mut limit);
        if options.effective_sort_order() != SortOrder::None && sort_target == SortTarget::Value {
            options.deferred_keys_only = std::mem::take(&mut keys_only);
        }
    }
    let range = KeyRange { key: request.key, range_end: request.range_end };
    let converted =
        RangeRequest { range, limit, revision: request.revision, keys_only, count_only: request.count_only };
    Ok((converted, options))
}

pub fn put_request_from_proto(request: pb::PutRequest) -> Result<PutRequest, ConvertError> {
    if request.key.is_empty() {
        return Err(ConvertError::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(ConvertError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(ConvertError::LeaseProvided);
    }
    Ok(PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    })
}

pub fn delete_range_request_from_proto(
    request: pb::DeleteRangeRequest,
) -> Result<DeleteRangeRequest, ConvertError> {
    if request.key.is_empty() {
        return Err(ConvertError::EmptyKey);
    }
    let range = KeyRange { key: request.key, range_end: request.range_end };
    Ok(DeleteRangeRequest { range, prev_kv: request.prev_kv })
}

/// Converts a transaction and, nested in it, every compare and operation, checking them in
/// etcd's order: the operation count, the compares, then the success and failure operations.
pub fn txn_request_from_proto(request: pb::TxnRequest) -> Result<(TxnRequest, TxnOptions), ConvertError> {
    txn_from_proto(request, TXN_OPERATIONS_MAX)
}

/// Converts one guard of a transaction. etcd compares a missing or mismatched operand as
/// zero; every etcd client sets the operand that matches the target, so shoal refuses
/// anything else rather than guess.
pub fn compare_from_proto(compare: pb::Compare) -> Result<Compare, ConvertError> {
    use pb::compare::{CompareResult as WireResult, CompareTarget as WireTarget, TargetUnion};

    if compare.key.is_empty() {
        return Err(ConvertError::EmptyKey);
    }
    let result = match WireResult::try_from(compare.result) {
        Ok(WireResult::Equal) => CompareResult::Equal,
        Ok(WireResult::Greater) => CompareResult::Greater,
        Ok(WireResult::Less) => CompareResult::Less,
        Ok(WireResult::NotEqual) => CompareResult::NotEqual,
        Err(_) => return Err(ConvertError::UnknownCompareResult { value: compare.result }),
    };
    let declared = WireTarget::try_from(compare.target)
        .map_err(|_| ConvertError::UnknownCompareTarget { value: compare.target })?;
    let operand =
        compare.target_union.ok_or(ConvertError::CompareOperandMissing { target: declared.as_str_name() })?;
    let target = match (declared, operand) {
        (WireTarget::Version, TargetUnion::Version(version)) => CompareTarget::Version(version),
        (WireTarget::Create, TargetUnion::CreateRevision(revision)) => {
            CompareTarget::CreateRevision(revision)
        }
        (WireTarget::Mod, TargetUnion::ModRevision(revision)) => CompareTarget::ModRevision(revision),
        (WireTarget::Value, TargetUnion::Value(value)) => CompareTarget::Value(value),
        (WireTarget::Lease, TargetUnion::Lease(lease)) => CompareTarget::Lease(lease),
        (declared, operand) => {
            return Err(ConvertError::CompareOperandMismatch {
                target: declared.as_str_name(),
                operand: operand_name(&operand),
            });
        }
    };
    let range = KeyRange { key: compare.key, range_end: compare.range_end };
    Ok(Compare { range, result, target })
}

/// Finishes a range read served from `range_request_from_proto`'s request: filters, sorts,
/// then applies the limit and `keys_only` if they were deferred. `count` stays the store's
/// count of the whole range, before the filters, as in etcd.
pub fn range_response_to_proto(
    response: RangeResponse,
    options: &RangeOptions,
    header: pb::ResponseHeader,
) -> pb::RangeResponse {
    let mut kvs: Vec<mvccpb::KeyValue> = response.kvs.into_iter().map(key_value_to_proto).collect();
    let mut more = response.more;
    options.retain_revisions(&mut kvs);
    options.sort(&mut kvs);
    if let Ok(limit) = usize::try_from(options.deferred_limit)
        && limit > 0
        && kvs.len() > limit
    {
        kvs.truncate(limit);
        more = true;
    }
    if options.deferred_keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    pb::RangeResponse { header: Some(header), kvs, more, count: response.count }
}

pub fn put_response_to_proto(response: PutResponse, header: pb::ResponseHeader) -> pb::PutResponse {
    pb::PutResponse { header: Some(header), prev_kv: response.prev_kv.map(key_value_to_proto) }
}

pub fn delete_range_response_to_proto(
    response: DeleteRangeResponse,
    header: pb::ResponseHeader,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(header),
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(key_value_to_proto).collect(),
    }
}

/// Converts a transaction's outcome, finishing each nested range with its options. Nested
/// responses carry a header holding only the revision, as etcd's do; shoal does not track a
/// revision per operation, so it is the transaction's.
pub fn txn_response_to_proto(
    response: TxnResponse,
    options: &TxnOptions,
    header: pb::ResponseHeader,
) -> pb::TxnResponse {
    let branch = if response.succeeded { &options.success } else { &options.failure };
    let responses = response
        .responses
        .into_iter()
        .enumerate()
        .map(|(index, op)| response_op_to_proto(op, branch.get(index), header.revision))
        .collect();
    pb::TxnResponse { header: Some(header), succeeded: response.succeeded, responses }
}

pub fn key_value_to_proto(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn key_value_from_proto(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// Converts a watch event. `prev_kv` is sent as the event holds it: a watcher that did not
/// ask for previous values should get events with `prev_kv` cleared before this.
pub fn event_to_proto(event: Event) -> mvccpb::Event {
    let event_type = match event.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: event_type.into(),
        kv: Some(key_value_to_proto(event.kv)),
        prev_kv: event.prev_kv.map(key_value_to_proto),
    }
}

/// Converts a watch event received from an etcd server (for shoal's own clients and tests).
/// A missing `kv` reads as an empty one, as proto3 reads any absent message.
pub fn event_from_proto(event: mvccpb::Event) -> Result<Event, ConvertError> {
    let kind = match mvccpb::event::EventType::try_from(event.r#type) {
        Ok(mvccpb::event::EventType::Put) => EventKind::Put,
        Ok(mvccpb::event::EventType::Delete) => EventKind::Delete,
        Err(_) => return Err(ConvertError::UnknownEventType { value: event.r#type }),
    };
    Ok(Event {
        kind,
        kv: key_value_from_proto(event.kv.unwrap_or_default()),
        prev_kv: event.prev_kv.map(key_value_from_proto),
    })
}

/// `allowed` is how many entries each list of this transaction may hold (etcd's budget: a
/// nested transaction gets what its parent's longest list left).
fn txn_from_proto(request: pb::TxnRequest, allowed: usize) -> Result<(TxnRequest, TxnOptions), ConvertError> {
    let operations = request.compare.len().max(request.success.len()).max(request.failure.len());
    if operations > allowed {
        return Err(ConvertError::TooManyTxnOperations { operations, allowed });
    }
    let nested_allowed = allowed - operations;
    let compare = request.compare.into_iter().map(compare_from_proto).collect::<Result<_, _>>()?;
    let (success, success_options) = request_ops_from_proto(request.success, nested_allowed)?;
    let (failure, failure_options) = request_ops_from_proto(request.failure, nested_allowed)?;
    let options = TxnOptions { success: success_options, failure: failure_options };
    Ok((TxnRequest { compare, success, failure }, options))
}

fn request_ops_from_proto(
    ops: Vec<pb::RequestOp>,
    nested_allowed: usize,
) -> Result<(Vec<RequestOp>, Vec<OpOptions>), ConvertError> {
    ops.into_iter().map(|op| request_op_from_proto(op, nested_allowed)).collect()
}

fn request_op_from_proto(
    op: pb::RequestOp,
    nested_allowed: usize,
) -> Result<(RequestOp, OpOptions), ConvertError> {
    use pb::request_op::Request;

    match op.request.ok_or(ConvertError::RequestOpEmpty)? {
        Request::RequestRange(range) => {
            let (range, options) = range_request_from_proto(range)?;
            Ok((RequestOp::Range(range), OpOptions::Range(options)))
        }
        Request::RequestPut(put) => Ok((RequestOp::Put(put_request_from_proto(put)?), OpOptions::Write)),
        Request::RequestDeleteRange(delete) => {
            let delete = delete_range_request_from_proto(delete)?;
            Ok((RequestOp::DeleteRange(delete), OpOptions::Write))
        }
        Request::RequestTxn(txn) => {
            let (txn, options) = txn_from_proto(txn, nested_allowed)?;
            Ok((RequestOp::Txn(txn), OpOptions::Txn(options)))
        }
    }
}

/// `options` is `None` only when the caller has no options for this transaction at all.
fn response_op_to_proto(op: ResponseOp, options: Option<&OpOptions>, revision: Revision) -> pb::ResponseOp {
    use pb::response_op::Response;

    let header = pb::ResponseHeader { revision, ..Default::default() };
    let response = match (op, options) {
        (ResponseOp::Range(range), None) => {
            Response::ResponseRange(range_response_to_proto(range, &RangeOptions::default(), header))
        }
        (ResponseOp::Range(range), Some(OpOptions::Range(options))) => {
            Response::ResponseRange(range_response_to_proto(range, options, header))
        }
        (ResponseOp::Put(put), None | Some(OpOptions::Write)) => {
            Response::ResponsePut(put_response_to_proto(put, header))
        }
        (ResponseOp::DeleteRange(delete), None | Some(OpOptions::Write)) => {
            Response::ResponseDeleteRange(delete_range_response_to_proto(delete, header))
        }
        (ResponseOp::Txn(txn), None) => {
            Response::ResponseTxn(txn_response_to_proto(txn, &TxnOptions::default(), header))
        }
        (ResponseOp::Txn(txn), Some(OpOptions::Txn(options))) => {
            Response::ResponseTxn(txn_response_to_proto(txn, options, header))
        }
        (op, Some(options)) => {
            panic!("a transaction's response {op:?} does not match its request's options {options:?}")
        }
    };
    pb::ResponseOp { response: Some(response) }
}

fn compare_by(target: SortTarget, a: &mvccpb::KeyValue, b: &mvccpb::KeyValue) -> Ordering {
    match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    }
}

/// The proto field name of a compare operand, for error messages.
fn operand_name(operand: &pb::compare::TargetUnion) -> &'static str {
    use pb::compare::TargetUnion;

    match operand {
        TargetUnion::Version(_) => "version",
        TargetUnion::CreateRevision(_) => "create_revision",
        TargetUnion::ModRevision(_) => "mod_revision",
        TargetUnion::Value(_) => "value",
        TargetUnion::Lease(_) => "lease",
    }
}

#[cfg(test)]
mod tests {
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
        RangeOptions {
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Version,
            ..Default::default()
        }
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
        check(
            pb::RangeRequest { max_mod_revision: 8, keys_only: true, ..all() },
            &[("b", ""), ("c", "")],
            false,
        );
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
        check(
            wire_compare(WireTarget::Lease.into(), Some(TargetUnion::Lease(4))),
            Ok(CompareTarget::Lease(4)),
        );

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
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestRange(sorted_range)),
            }],
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
            pb::TxnRequest { success: puts(TXN_OPERATIONS_MAX + 1), ..Default::default() },
            ConvertError::TooManyTxnOperations {
                operations: TXN_OPERATIONS_MAX + 1,
                allowed: TXN_OPERATIONS_MAX,
            },
        );
        let mut success = puts(99);
        success.push(nested(TXN_OPERATIONS_MAX - 100 + 1));
        check(
            pb::TxnRequest { success, ..Default::default() },
            ConvertError::TooManyTxnOperations { operations: 29, allowed: 28 },
        );
        let mut success = puts(99);
        success.push(nested(TXN_OPERATIONS_MAX - 100));
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
}
