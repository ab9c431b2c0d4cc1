//! shoal's node agent, its kubelet: registers a Node, renews the node's Lease, and runs the
//! pods bound to it through a [`runtime::Runtime`].

pub mod agent;
pub mod dns;
pub mod events;
pub mod exec;
pub mod kubelet_server;
pub mod lease;
pub mod lifecycle;
pub mod logs;
pub mod node;
pub mod pod_env;
pub mod pod_status;
pub mod pod_worker;
pub mod probe;
pub mod proxy;
pub mod runtime;
pub mod stats;
pub mod volumes;
