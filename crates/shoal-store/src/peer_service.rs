//! The server side of the peer transport: what a member does with frames from its peers.

use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_chaos::FaultPlan;
use tonic::{Request, Response, Status};

use crate::forward::ForwardRequest;
use crate::peer_proto::Frame;
use crate::peer_proto::peer_server::Peer;
use crate::raft::Snapshot;
use crate::raft_network::{AppendEntriesResult, SnapshotFrame, SnapshotResult, VoteResult};
use crate::store::Store;

/// What a `Faults` frame asks: read the plan, or replace it and read the new one.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum FaultsRequest {
    Get,
    Set(FaultPlan),
}

pub type FaultsResult = Result<FaultPlan, String>;

pub struct PeerService {
    store: Store,
}

impl PeerService {
    pub fn new(store: Store) -> Self {
        PeerService { store }
    }
}

fn decode<T: DeserializeOwned>(request: Request<Frame>) -> Result<T, Status> {
    postcard::from_bytes(&request.into_inner().payload)
        .map_err(|error| Status::invalid_argument(format!("undecodable peer frame: {error}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<Frame>, Status> {
    let payload = postcard::to_allocvec(value).expect("serializing to memory cannot fail");
    Ok(Response::new(Frame { payload: payload.into() }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let result: AppendEntriesResult = self.store.raft().append_entries(decode(request)?).await;
        encode(&result)
    }

    async fn vote(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let result: VoteResult = self.store.raft().vote(decode(request)?).await;
        encode(&result)
    }

    async fn install_snapshot(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let frame: SnapshotFrame = decode(request)?;
        let snapshot = Snapshot { meta: frame.meta, snapshot: Box::new(frame.data) };
        let result: SnapshotResult = self.store.raft().install_full_snapshot(frame.vote, snapshot).await;
        encode(&result)
    }

    async fn forward(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let request: ForwardRequest = decode(request)?;
        encode(&self.store.serve_forwarded(request).await)
    }

    async fn faults(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let faults = self.store.transport().faults();
        let result: FaultsResult = match decode(request)? {
            FaultsRequest::Get => Ok(faults.plan()),
            FaultsRequest::Set(plan) => {
                faults.set_plan(plan.clone()).map(|()| plan).map_err(|e| e.to_string())
            }
        };
        encode(&result)
    }
}
