//! shoal's replicated store: an etcd-compatible, Raft-replicated, revisioned key-value store.
//!
//! Layers, bottom up: `mvcc` (the pure revisioned key-value data model), `state_machine` (what
//! one committed Raft entry does), `storage` (the Raft log and snapshots on redb), `raft` and
//! `raft_network` (openraft, bound to shoal's types and transport), `store` (a running member:
//! writes, reads, leases, membership), and `etcd` (etcd's v3 gRPC API over a `Store`).

pub mod command;
pub mod etcd;
pub mod forward;
pub mod lessor;
pub mod limits;
pub mod mvcc;
pub mod network;
pub mod peer_service;
pub mod proposer;
pub mod raft;
pub mod raft_network;
pub mod request;
pub mod server;
pub mod state_machine;
pub mod storage;
pub mod store;
pub mod transport;

/// The generated gRPC code of the member-to-member transport (`proto/shoal/peer.proto`).
#[allow(clippy::all, clippy::pedantic)]
pub mod peer_proto {
    tonic::include_proto!("shoal.peer");
}
