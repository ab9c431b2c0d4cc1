//! shoal's controllers: level-triggered reconcilers that are clients of the Kubernetes API.
//!
//! Each controller is a pure decision over a snapshot (`gc::decide`, `namespace::decide`) and
//! a thin runtime that builds the snapshot from the API and carries the decision out:
//! - `gc`: the garbage collector (ownerReferences, the `orphan` and `foregroundDeletion`
//!   finalizers);
//! - `namespace`: namespace deletion (emptying a terminating namespace, then finalizing it);
//! - `endpoints`: Endpoints and EndpointSlices of Services with a selector;
//! - `hpa`: the horizontal pod autoscaler (autoscaling/v2 over the metrics API);
//! - `node_lifecycle`: conditions and taints of unreachable or not-ready nodes, and eviction of
//!   the pods of NoExecute-tainted nodes once their tolerations run out;
//! - `replicaset` and `deployment`: the workload controllers behind `kubectl rollout`.
//!
//! `kinds` finds the kinds the first two work over by API discovery. `failure_detector` holds
//! the pure detectors (fixed timeout, phi accrual) that judge a node's Lease renewals.

pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod failure_detector;
pub mod gc;
pub mod hpa;
pub mod kinds;
pub mod leader_election;
pub mod namespace;
pub mod node_lifecycle;
pub mod ownership;
pub mod quantity;
pub mod replicaset;

use std::time::Duration;

use futures::FutureExt as _;
use tracing::Instrument as _;

/// How often a controller re-examines everything even without events.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
/// How long one request of a controller may take before it gives up on it; the next pass
/// (or the next attempt) tries again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long discovery (a request per API group) may take at start before it is retried.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between two failed discoveries at start.
pub const DISCOVERY_RETRY_DELAY: Duration = Duration::from_secs(2);

/// The controllers' settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub hpa: hpa::Config,
}

/// Runs every controller against `client` until the future is dropped.
///
/// Nothing is spawned: dropping the future (the server losing leadership) stops every watch
/// and every request in flight.
pub async fn run(client: kube::Client, config: Config) {
    let kinds = loop {
        match tokio::time::timeout(DISCOVERY_TIMEOUT, kinds::discover(&client)).await {
            Ok(Ok(kinds)) => break kinds,
            Ok(Err(error)) => tracing::warn!(%error, "controllers cannot discover the served kinds yet"),
            Err(_elapsed) => tracing::warn!("controllers' discovery of the served kinds timed out"),
        }
        tokio::time::sleep(DISCOVERY_RETRY_DELAY).await;
    };
    tracing::info!(kinds = kinds.len(), "controllers starting");
    let gc = gc::run(client.clone(), &kinds).instrument(tracing::info_span!("garbage_collector"));
    let namespace =
        namespace::run(client.clone(), &kinds).instrument(tracing::info_span!("namespace_controller"));
    let (recorders, events) = events::channel();
    // Boxed here, where their lifetimes are concrete: proving the spawned whole `Send`
    // otherwise trips over closures in their streams (rust-lang/rust#102211).
    let replica_sets = replicaset::run(client.clone(), recorders.recorder(replicaset::COMPONENT))
        .instrument(tracing::info_span!("replicaset_controller"))
        .boxed();
    let deployments = deployment::run(client.clone(), recorders.recorder(deployment::COMPONENT))
        .instrument(tracing::info_span!("deployment_controller"))
        .boxed();
    drop(recorders);
    let endpoints =
        endpoints::run(client.clone()).instrument(tracing::info_span!("endpoints_controller")).boxed();
    let hpa = hpa::run(client.clone(), &kinds, config.hpa)
        .instrument(tracing::info_span!("horizontal_pod_autoscaler"))
        .boxed();
    let node_lifecycle = node_lifecycle::run(client.clone(), node_lifecycle::NodeLifecycleConfig::default())
        .instrument(tracing::info_span!("node_lifecycle"))
        .boxed();
    let events = events::send_events(client, events);
    futures::join!(gc, namespace, replica_sets, deployments, endpoints, hpa, node_lifecycle, events);
}

/// Whether `error` is the API's answer with HTTP status `code`.
fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}
