//! etcd's `Maintenance` service: endpoint status, and the calls etcdctl makes around it.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::etcd::proto::etcdserverpb as pb;
use crate::etcd::status::header;
use crate::store::Store;

/// The etcd API version shoal speaks; etcd clients read it from `endpoint status`.
pub const ETCD_API_VERSION: &str = "3.4.0";

pub struct MaintenanceService {
    store: Store,
}

impl MaintenanceService {
    pub fn new(store: Store) -> Self {
        MaintenanceService { store }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    /// shoal raises no alarms: it has no space quota yet.
    async fn alarm(
        &self,
        _request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        let header = Some(header(&self.store, self.store.revision()));
        Ok(Response::new(pb::AlarmResponse { header, alarms: vec![] }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.store.status();
        let db_size = i64::try_from(status.db_size_bytes).unwrap_or(i64::MAX);
        Ok(Response::new(pb::StatusResponse {
            header: Some(header(&self.store, status.revision)),
            version: ETCD_API_VERSION.into(),
            db_size,
            leader: status.leader.unwrap_or(0),
            raft_index: status.last_log_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: vec![],
            db_size_in_use: db_size,
            is_learner: status.is_learner,
            storage_version: String::new(),
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    /// redb reuses freed pages by itself; there is nothing to defragment.
    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        let header = Some(header(&self.store, self.store.revision()));
        Ok(Response::new(pb::DefragmentResponse { header }))
    }

    async fn hash(&self, _request: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        Err(Status::unimplemented("shoal: hash is not supported"))
    }

    async fn hash_kv(
        &self,
        _request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Err(Status::unimplemented("shoal: hashkv is not supported"))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        Err(Status::unimplemented("shoal: snapshot download is not supported; the store snapshots itself"))
    }

    async fn move_leader(
        &self,
        _request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(Status::unimplemented("shoal: move-leader is not supported"))
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Status::unimplemented("shoal: downgrade is not supported"))
    }
}
