//! shoal's node agent, its kubelet: registers a Node, renews the node's Lease, and runs the
//! pods bound to it through a [`runtime::Runtime`].

pub mod lifecycle;
pub mod pod_env;
pub mod probe;
pub mod runtime;
