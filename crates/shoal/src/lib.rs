//! The `shoal` binary's subcommands as a library, so integration tests (and `shoal up`) can
//! drive whole clusters of `shoal server` processes through `local_cluster::LocalCluster`.

pub mod agent;
pub mod bench;
pub mod certs;
pub mod controller_manager;
pub mod faults;
pub mod join;
pub mod kubeconfig;
pub mod lab;
pub mod link_forwarder;
pub mod local_cluster;
pub mod server;
pub mod token;
pub mod up;
