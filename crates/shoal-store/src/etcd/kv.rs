//! etcd's `KV` service: range, put, delete-range, txn and compact.

use prost::Message;
use tonic::{Request, Response, Status};

use crate::command::{Operation, Outcome};
use crate::etcd::convert;
use crate::etcd::proto::etcdserverpb as pb;
use crate::etcd::status::{header, read_status, write_status};
use crate::limits::MAX_REQUEST_BYTES;
use crate::store::{Consistency, Store};

pub struct KvService {
    store: Store,
}

impl KvService {
    pub fn new(store: Store) -> Self {
        KvService { store }
    }
}

/// Refuses a request over etcd's size limit with etcd's own error, which its clients know.
/// (gRPC refuses anything far larger before it is even decoded.)
fn checked<T: Message>(request: Request<T>) -> Result<T, Status> {
    let request = request.into_inner();
    if request.encoded_len() > MAX_REQUEST_BYTES {
        return Err(Status::invalid_argument("etcdserver: request is too large"));
    }
    Ok(request)
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let (range, options) = convert::range_request_from_proto(checked(request)?)?;
        let consistency =
            if options.serializable { Consistency::Serializable } else { Consistency::Linearizable };
        let (response, revision) = self.store.range(&range, consistency).await.map_err(read_status)?;
        let header = header(&self.store, revision);
        Ok(Response::new(convert::range_response_to_proto(response, &options, header)))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let put = convert::put_request_from_proto(checked(request)?)?;
        let written = self.store.write(Operation::Put(put)).await.map_err(write_status)?;
        let header = header(&self.store, written.revision);
        match written.outcome {
            Ok(Outcome::Put(response)) => Ok(Response::new(convert::put_response_to_proto(response, header))),
            other => panic!("put answered with {other:?}"),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let delete = convert::delete_range_request_from_proto(checked(request)?)?;
        let written = self.store.write(Operation::DeleteRange(delete)).await.map_err(write_status)?;
        let header = header(&self.store, written.revision);
        match written.outcome {
            Ok(Outcome::DeleteRange(response)) => {
                Ok(Response::new(convert::delete_range_response_to_proto(response, header)))
            }
            other => panic!("delete answered with {other:?}"),
        }
    }

    /// A transaction that only reads is a linearizable read (read index, no log entry); one
    /// that writes goes through the log.
    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let (txn, options) = convert::txn_request_from_proto(checked(request)?)?;
        if let Some((response, revision)) = self.store.read_txn(&txn).await.map_err(read_status)? {
            let header = header(&self.store, revision);
            return Ok(Response::new(convert::txn_response_to_proto(response, &options, header)));
        }
        let written = self.store.write(Operation::Txn(txn)).await.map_err(write_status)?;
        let header = header(&self.store, written.revision);
        match written.outcome {
            Ok(Outcome::Txn(response)) => {
                Ok(Response::new(convert::txn_response_to_proto(response, &options, header)))
            }
            other => panic!("txn answered with {other:?}"),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let revision = request.into_inner().revision;
        let written = self.store.write(Operation::Compact { revision }).await.map_err(write_status)?;
        Ok(Response::new(pb::CompactionResponse { header: Some(header(&self.store, written.revision)) }))
    }
}
