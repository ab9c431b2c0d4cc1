//! etcd's v3 gRPC API over shoal's store, so that etcd clients (`etcdctl` included) can use it.
//!
//! `proto` holds the code generated from etcd's own protos and `convert` translates between
//! those wire messages and shoal's request types; the gRPC services live in their own modules
//! beside them.

pub mod cluster;
pub mod convert;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod proto;
pub mod status;
pub mod watch;

use tonic::transport::Server;
use tonic::transport::server::Router;

use crate::limits::MAX_REQUEST_BYTES;
use crate::store::Store;
use proto::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};

/// The largest message gRPC decodes at all. Between `MAX_REQUEST_BYTES` and this, the KV
/// service refuses with etcd's "request is too large"; beyond it gRPC refuses before decoding.
const DECODE_LIMIT_BYTES: usize = 2 * MAX_REQUEST_BYTES;

/// etcd's five services on one server.
pub fn services(mut server: Server, store: Store) -> Router {
    let limit = DECODE_LIMIT_BYTES;
    server
        .add_service(KvServer::new(kv::KvService::new(store.clone())).max_decoding_message_size(limit))
        .add_service(
            WatchServer::new(watch::WatchService::new(store.clone())).max_decoding_message_size(limit),
        )
        .add_service(
            LeaseServer::new(lease::LeaseService::new(store.clone())).max_decoding_message_size(limit),
        )
        .add_service(
            ClusterServer::new(cluster::ClusterService::new(store.clone())).max_decoding_message_size(limit),
        )
        .add_service(
            MaintenanceServer::new(maintenance::MaintenanceService::new(store))
                .max_decoding_message_size(limit),
        )
}
