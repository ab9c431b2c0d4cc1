//! openraft's network, over the peer transport: replication, votes and snapshots.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::raft::{Member, MemberId, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::transport::{PeerRpc, PeerTransport, TransportError};

/// A snapshot as it crosses the wire, whole: snapshots are bounded by `MAX_SNAPSHOT_BYTES`.
#[derive(Serialize, Deserialize)]
pub struct SnapshotFrame {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

pub type AppendEntriesResult = Result<AppendEntriesResponse<MemberId>, RaftError<MemberId>>;
pub type VoteResult = Result<VoteResponse<MemberId>, RaftError<MemberId>>;
pub type SnapshotResult = Result<SnapshotResponse<MemberId>, Fatal<MemberId>>;

/// Hands openraft one `RaftPeer` per replication target.
#[derive(Clone)]
pub struct RaftNetworkFactoryImpl {
    pub transport: Arc<PeerTransport>,
}

pub struct RaftPeer {
    transport: Arc<PeerTransport>,
    target: MemberId,
    url: String,
}

impl RaftNetworkFactory<TypeConfig> for RaftNetworkFactoryImpl {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: MemberId, node: &Member) -> RaftPeer {
        RaftPeer { transport: self.transport.clone(), target, url: node.peer_url.clone() }
    }
}

impl RaftPeer {
    async fn call<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &self,
        rpc: PeerRpc,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        self.transport.call(self.target, &self.url, rpc, request, timeout).await
    }
}

/// Unreachable peers make openraft back off; other failures are retried on the next tick.
fn rpc_error<E: std::error::Error>(error: TransportError) -> RPCError<MemberId, Member, E> {
    match error {
        TransportError::NotSent { .. } | TransportError::Unavailable { .. } => {
            RPCError::Unreachable(Unreachable::new(&error))
        }
        TransportError::MaybeDelivered { .. } | TransportError::Undecodable { .. } => {
            RPCError::Network(NetworkError::new(&error))
        }
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<MemberId>, RPCError<MemberId, Member, RaftError<MemberId>>> {
        let result: AppendEntriesResult =
            self.call(PeerRpc::AppendEntries, &rpc, option.hard_ttl()).await.map_err(rpc_error)?;
        result.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MemberId>,
        option: RPCOption,
    ) -> Result<VoteResponse<MemberId>, RPCError<MemberId, Member, RaftError<MemberId>>> {
        let result: VoteResult =
            self.call(PeerRpc::Vote, &rpc, option.hard_ttl()).await.map_err(rpc_error)?;
        result.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<MemberId>, StreamingError<TypeConfig, Fatal<MemberId>>> {
        let frame = SnapshotFrame { vote, meta: snapshot.meta, data: *snapshot.snapshot };
        let sending = self.call::<_, SnapshotResult>(PeerRpc::InstallSnapshot, &frame, option.hard_ttl());
        let result = tokio::select! {
            result = sending => result,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let result = result.map_err(|error| match rpc_error::<Fatal<MemberId>>(error) {
            RPCError::Unreachable(unreachable) => StreamingError::Unreachable(unreachable),
            RPCError::Network(network) => StreamingError::Network(network),
            other => StreamingError::Network(NetworkError::new(&other)),
        })?;
        result.map_err(|fatal| StreamingError::RemoteError(RemoteError::new(self.target, fatal)))
    }
}
