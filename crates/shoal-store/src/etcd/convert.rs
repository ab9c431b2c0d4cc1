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
use crate::limits::MAX_TXN_OPS;
use crate::mvcc::{Event, EventKind, KeyValue, Revision};
use crate::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyRange, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

pub use pb::range_request::{SortOrder, SortTarget};

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
    /// etcd reads the whole range only for an explicit order or a filter, so a sort target
    /// without an order there sorts just the first `limit` keys; shoal sorts the whole range,
    /// which is what such a request asks for.
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
/// As in etcd, `MAX_TXN_OPS` bounds the longest of the three lists, and a nested transaction
/// gets what its parent's longest list left.
pub fn txn_request_from_proto(request: pb::TxnRequest) -> Result<(TxnRequest, TxnOptions), ConvertError> {
    txn_from_proto(request, MAX_TXN_OPS)
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
mod tests;
