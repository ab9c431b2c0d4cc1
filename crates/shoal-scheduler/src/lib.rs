//! shoal's scheduler: places pods that have no node on one, as kube-scheduler does, as a
//! client of the Kubernetes API.
//!
//! The decision is pure: `decide::decide` takes a pod and a `cluster::Cluster` (nodes, the
//! pods on them and the pods this scheduler has bound but not yet seen back) and returns a
//! node or the reasons none fits, worded as kube-scheduler words them. `runtime` is the thin
//! part that watches pods and nodes, queues pods with back-off, binds through `pods/binding`
//! and reports through pod conditions and events.

pub mod cluster;
pub mod decide;
pub mod quantity;
pub mod queue;
mod runtime;
pub mod selectors;

pub use runtime::run;

/// The name pods ask for in `spec.schedulerName` to be placed by this scheduler (the one
/// Kubernetes gives its own, so that ordinary pods need not say).
pub const SCHEDULER_NAME: &str = "default-scheduler";
