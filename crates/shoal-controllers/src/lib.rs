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
//! `informer` is the one watch and cache of pods that replicaset, deployment and endpoints
//! share. `kinds` finds the kinds the first two work over by API discovery. `failure_detector`
//! holds the pure detectors (fixed timeout, phi accrual) that judge a node's Lease renewals.
//! `selection` reads kube-controller-manager's `--controllers` list: which of them run.

pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod failure_detector;
pub mod gc;
pub mod hpa;
pub mod informer;
pub mod kinds;
pub mod leader_election;
pub mod namespace;
pub mod node_lifecycle;
pub mod ownership;
pub mod quantity;
pub mod replicaset;
pub mod selection;

use std::time::Duration;

use futures::FutureExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
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

/// Drops an object's managedFields as its watch decodes it. No controller reads them from the
/// objects this is used on, yet they are much of a pod's decoded size (nested JSON maps) and
/// every reflector would clone and keep them.
pub fn drop_managed_fields<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// The controllers' settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub hpa: hpa::Config,
    /// Which controllers run (`shoal server --controllers`); all by default.
    pub controllers: selection::Selection,
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
    let selection = config.controllers;
    let on = |name: &str| selection.enabled(name);
    tracing::info!(kinds = kinds.len(), controllers = %selection, "controllers starting");
    let mut pods = informer::Informer::<Pod>::default();
    let gc = on("garbagecollector")
        .then(|| gc::run(client.clone(), &kinds).instrument(tracing::info_span!("garbage_collector")));
    let namespace = on("namespace").then(|| {
        namespace::run(client.clone(), &kinds).instrument(tracing::info_span!("namespace_controller"))
    });
    let (recorders, events) = events::channel();
    // Boxed here, where their lifetimes are concrete: proving the spawned whole `Send`
    // otherwise trips over closures in their streams (rust-lang/rust#102211).
    let replica_sets = on("replicaset").then(|| {
        let recorder = recorders.recorder(replicaset::COMPONENT);
        replicaset::run(client.clone(), recorder, pods.store(), pods.subscribe())
            .instrument(tracing::info_span!("replicaset_controller"))
            .boxed()
    });
    let deployments = on("deployment").then(|| {
        let recorder = recorders.recorder(deployment::COMPONENT);
        deployment::run(client.clone(), recorder, pods.store(), pods.subscribe())
            .instrument(tracing::info_span!("deployment_controller"))
            .boxed()
    });
    drop(recorders);
    // One controller writes both Endpoints and EndpointSlices.
    let endpoints = (on("endpoint") || on("endpointslice")).then(|| {
        endpoints::run(client.clone(), pods.store(), pods.subscribe())
            .instrument(tracing::info_span!("endpoints_controller"))
            .boxed()
    });
    let hpa = on("horizontalpodautoscaling").then(|| {
        hpa::run(client.clone(), &kinds, config.hpa)
            .instrument(tracing::info_span!("horizontal_pod_autoscaler"))
            .boxed()
    });
    let node_lifecycle = on("nodelifecycle").then(|| {
        node_lifecycle::run(client.clone(), node_lifecycle::NodeLifecycleConfig::default())
            .instrument(tracing::info_span!("node_lifecycle"))
            .boxed()
    });
    // The one watch of pods the controllers above subscribed to, if any did.
    let pod_watch = pods.has_subscribers().then(|| {
        let events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(drop_managed_fields);
        pods.run(events).instrument(tracing::info_span!("pod_informer")).boxed()
    });
    let events = events::send_events(client, events);
    futures::join!(
        run_if(gc),
        run_if(namespace),
        run_if(replica_sets),
        run_if(deployments),
        run_if(endpoints),
        run_if(hpa),
        run_if(node_lifecycle),
        run_if(pod_watch),
        events
    );
}

/// Runs `controller` if it is turned on.
async fn run_if(controller: Option<impl std::future::Future<Output = ()>>) {
    if let Some(controller) = controller {
        controller.await;
    }
}

/// Whether `error` is the API's answer with HTTP status `code`.
fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}
