//! etcd's `Lease` service: grant, revoke, keep-alive, time-to-live and the lease list.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::etcd::proto::etcdserverpb as pb;
use crate::etcd::status::{admin_status, header, write_status};
use crate::store::Store;

/// Keep-alive answers buffered per stream before the reader stops reading requests.
const KEEP_ALIVE_BUFFER: usize = 16;

pub struct LeaseService {
    store: Store,
}

impl LeaseService {
    pub fn new(store: Store) -> Self {
        LeaseService { store }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let request = request.into_inner();
        if request.id < 0 {
            return Err(Status::invalid_argument("etcdserver: lease id must be positive"));
        }
        let (id, ttl, revision) =
            self.store.lease_grant(request.id, request.ttl).await.map_err(write_status)?;
        let header = Some(header(&self.store, revision));
        Ok(Response::new(pb::LeaseGrantResponse { header, id, ttl, error: String::new() }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let revision = self.store.lease_revoke(request.into_inner().id).await.map_err(write_status)?;
        Ok(Response::new(pb::LeaseRevokeResponse { header: Some(header(&self.store, revision)) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let store = self.store.clone();
        tokio::spawn(async move {
            while let Some(Ok(request)) = requests.next().await {
                let answer = match store.lease_keep_alive(request.id).await {
                    Ok(ttl) => Ok(pb::LeaseKeepAliveResponse {
                        header: Some(header(&store, store.revision())),
                        id: request.id,
                        // etcd answers a keep-alive of an unknown lease with TTL 0.
                        ttl: ttl.unwrap_or(0),
                    }),
                    Err(error) => Err(admin_status(error)),
                };
                if sender.send(answer).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let answer = self.store.lease_time_to_live(request.id).await.map_err(admin_status)?;
        let header = Some(header(&self.store, self.store.revision()));
        let response = match answer {
            // etcd answers an unknown lease with TTL -1, which etcdctl prints as expired.
            None => {
                pb::LeaseTimeToLiveResponse { header, id: request.id, ttl: -1, granted_ttl: 0, keys: vec![] }
            }
            Some(lease) => pb::LeaseTimeToLiveResponse {
                header,
                id: lease.id,
                ttl: lease.remaining_seconds,
                granted_ttl: lease.granted_ttl_seconds,
                keys: if request.keys { lease.keys } else { vec![] },
            },
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let leases = {
            let machine = self.store.shared().machine.read().expect("state machine lock poisoned");
            machine.leases().keys().map(|id| pb::LeaseStatus { id: *id }).collect()
        };
        let header = Some(header(&self.store, self.store.revision()));
        Ok(Response::new(pb::LeaseLeasesResponse { header, leases }))
    }
}
