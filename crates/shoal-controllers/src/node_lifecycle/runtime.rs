//! The node lifecycle controller's effects: a watch on the node Leases that times each renewal
//! as it arrives, caches of Nodes and Pods, a pass every [`PASS_INTERVAL`], and the writes
//! each pass decides.
//!
//! The Lease watch runs apart from the passes, so that heartbeats are timed when they arrive
//! even while a pass waits on a slow write: a late-timed heartbeat would look like silence.
//! Everything runs inside the future `run` returns, without spawned tasks, so dropping it (the
//! server losing leadership) stops the watches and the writes in flight at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    DisruptionChange, Eviction, NODE_LEASE_NAMESPACE, NodeLifecycle, NodeLifecycleConfig, NodeUpdate, Plan,
};
use crate::{REQUEST_TIMEOUT, drop_managed_fields, is_status};

/// How often the controller looks at every node. Detection is no finer than this, and a pass
/// is cheap (memory only) unless it writes.
pub const PASS_INTERVAL: Duration = Duration::from_millis(250);
/// How long a write that got no visible effect (failed, or not yet seen by the caches) is not
/// repeated, so that a lagging cache does not turn every pass into the same write.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// The writes one pass carries out; the rest are decided again by the next pass.
const WRITES_PER_PASS_MAX: usize = 1_000;
/// Requests (node patches, pod deletions) in flight at once.
const REQUESTS_IN_FLIGHT_MAX: usize = 8;
const _: () = assert!(PASS_INTERVAL.as_millis() < RETRY_DELAY.as_millis());
/// The field manager the controller's patches are recorded under.
const FIELD_MANAGER: &str = "shoal-node-lifecycle";

/// Runs the node lifecycle controller until the future is dropped.
pub async fn run(client: Client, config: NodeLifecycleConfig) {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let node_watch = keep_cache(
        "nodes",
        reflector::reflector(
            node_writer,
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .modify(drop_managed_fields),
        ),
    );
    let pod_watch = keep_cache(
        "pods",
        reflector::reflector(
            pod_writer,
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .modify(drop_managed_fields),
        ),
    );
    let start = Instant::now();
    let controller = Mutex::new(Shared { lifecycle: NodeLifecycle::new(config), leases_listed: false });
    let lease_watch = watch_leases(client.clone(), start, &controller);
    let passes = run_passes(&client, start, &controller, &nodes, &pods);
    futures::future::join4(node_watch, pod_watch, lease_watch, passes).await;
}

/// The state the Lease watch and the passes share.
struct Shared {
    lifecycle: NodeLifecycle,
    /// Whether the Lease watch has listed once: before that, silence means nothing.
    leases_listed: bool,
}

/// Drives a reflector, which keeps its cache, logging the errors its watch meets (it retries
/// by itself, with back-off).
async fn keep_cache<K>(kind: &str, events: impl futures::Stream<Item = watcher::Result<watcher::Event<K>>>) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        if let Err(error) = event {
            tracing::warn!(kind, %error, "node lifecycle watch failed");
        }
    }
}

/// Feeds every Lease renewal to the controller, timed when it arrives.
async fn watch_leases(client: Client, start: Instant, controller: &Mutex<Shared>) {
    let api = Api::<Lease>::namespaced(client, NODE_LEASE_NAMESPACE);
    let events = watcher(api, watcher::Config::default()).default_backoff().modify(drop_managed_fields);
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let at = start.elapsed();
        let mut shared = controller.lock().expect("controller lock");
        match event {
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitApply(lease)) => shared.lifecycle.observe_lease(&lease, at, true),
            Ok(watcher::Event::InitDone) => shared.leases_listed = true,
            Ok(watcher::Event::Apply(lease)) => shared.lifecycle.observe_lease(&lease, at, false),
            Ok(watcher::Event::Delete(lease)) => {
                if let Some(name) = lease.metadata.name.as_deref() {
                    shared.lifecycle.forget_lease(name);
                }
            }
            Err(error) => tracing::warn!(%error, "node lifecycle watch of the node leases failed"),
        }
    }
}

async fn run_passes(
    client: &Client,
    start: Instant,
    controller: &Mutex<Shared>,
    nodes: &Store<Node>,
    pods: &Store<Pod>,
) {
    if nodes.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
        return;
    }
    let mut recent = RecentWrites::default();
    let mut ticks = tokio::time::interval(PASS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let plan = {
            let mut shared = controller.lock().expect("controller lock");
            if !shared.leases_listed {
                continue;
            }
            shared.lifecycle.pass(start.elapsed(), Timestamp::now(), &nodes.state(), &pods.state())
        };
        log_disruption(plan.disruption_change);
        execute(client, plan, &mut recent).await;
    }
}

fn log_disruption(change: Option<DisruptionChange>) {
    match change {
        None => {}
        Some(DisruptionChange::Entered { suspected, nodes }) => tracing::warn!(
            suspected,
            nodes,
            "most nodes look unreachable at once: the control plane is probably the one cut off; \
             evictions stop until nodes come back"
        ),
        Some(DisruptionChange::Left { suspected, nodes }) => {
            tracing::info!(suspected, nodes, "nodes are back; evictions resume")
        }
    }
}

/// The writes attempted lately, so that a write whose effect the caches do not show yet is
/// not repeated at every pass.
#[derive(Default)]
struct RecentWrites {
    /// Per node: the resourceVersion last written against, and when.
    nodes: HashMap<String, (String, Instant)>,
    /// Per pod uid: when its deletion was asked for.
    pods: HashMap<String, Instant>,
}

impl RecentWrites {
    fn forget_old(&mut self, now: Instant) {
        self.nodes.retain(|_, (_, at)| now.duration_since(*at) < RETRY_DELAY);
        self.pods.retain(|_, at| now.duration_since(*at) < RETRY_DELAY);
    }
}

async fn execute(client: &Client, plan: Plan, recent: &mut RecentWrites) {
    let now = Instant::now();
    recent.forget_old(now);
    let updates: Vec<NodeUpdate> = plan
        .node_updates
        .into_iter()
        .filter(|update| {
            recent.nodes.get(&update.name).is_none_or(|(version, _)| *version != update.resource_version)
        })
        .take(WRITES_PER_PASS_MAX)
        .collect();
    let evictions: Vec<Eviction> = plan
        .evictions
        .into_iter()
        .filter(|eviction| !recent.pods.contains_key(&eviction.uid))
        .take(WRITES_PER_PASS_MAX.saturating_sub(updates.len()))
        .collect();
    for update in &updates {
        recent.nodes.insert(update.name.clone(), (update.resource_version.clone(), now));
    }
    for eviction in &evictions {
        recent.pods.insert(eviction.uid.clone(), now);
    }
    // The streams run over owned items: closures over borrowed ones make the future not
    // provably `Send` (rust-lang/rust#102211), and the server spawns it.
    let node_writes =
        futures::stream::iter(updates).map(|update| async move { update_node(client, &update).await });
    futures::stream::StreamExt::buffer_unordered(node_writes, REQUESTS_IN_FLIGHT_MAX).collect::<()>().await;
    let deletions =
        futures::stream::iter(evictions).map(|eviction| async move { evict(client, &eviction).await });
    futures::stream::StreamExt::buffer_unordered(deletions, REQUESTS_IN_FLIGHT_MAX).collect::<()>().await;
}

/// Writes the node's conditions, then its taints, each conditioned on the resourceVersion it
/// was decided on (the taints on the one the conditions' write returned: that write changed the
/// status only, so the spec the taints were computed from is still the stored one).
async fn update_node(client: &Client, update: &NodeUpdate) {
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    let mut resource_version = update.resource_version.clone();
    if let Some(conditions) = &update.conditions {
        let patch = Patch::Merge(conditions_patch(&resource_version, conditions));
        let request = nodes.patch_status(&update.name, &params, &patch);
        match outcome(&update.name, "conditions", tokio::time::timeout(REQUEST_TIMEOUT, request).await) {
            Some(node) => {
                tracing::info!(node = update.name, "node lifecycle marked the node's conditions Unknown");
                resource_version = node.metadata.resource_version.unwrap_or_default();
            }
            None => return,
        }
    }
    if let Some(taints) = &update.taints {
        let patch = Patch::Merge(taints_patch(&resource_version, taints));
        let request = nodes.patch(&update.name, &params, &patch);
        if outcome(&update.name, "taints", tokio::time::timeout(REQUEST_TIMEOUT, request).await).is_some() {
            let taints: Vec<String> =
                taints.iter().map(|taint| format!("{}:{}", taint.key, taint.effect)).collect();
            tracing::info!(node = update.name, ?taints, "node lifecycle set the node's taints");
        }
    }
}

/// The written node, or None after logging why not.
fn outcome(
    node: &str,
    what: &str,
    result: Result<Result<Node, kube::Error>, tokio::time::error::Elapsed>,
) -> Option<Node> {
    match result {
        Ok(Ok(written)) => Some(written),
        Ok(Err(error)) if is_status(&error, 404) => None,
        // Changed since the cache saw it: the change is a watch event, and a later pass
        // decides again on what it shows.
        Ok(Err(error)) if is_status(&error, 409) => {
            tracing::debug!(node, what, "node lifecycle lost a race");
            None
        }
        Ok(Err(error)) => {
            tracing::warn!(node, what, %error, "node lifecycle write failed");
            None
        }
        Err(_elapsed) => {
            tracing::warn!(node, what, "node lifecycle write timed out");
            None
        }
    }
}

async fn evict(client: &Client, eviction: &Eviction) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &eviction.namespace);
    let params = delete_params(eviction);
    let request = pods.delete(&eviction.name, &params);
    let (namespace, pod, node, taint) =
        (&eviction.namespace, &eviction.name, &eviction.node, &eviction.taint);
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(_)) => tracing::info!(
            namespace,
            pod,
            node,
            taint,
            toleration_expired = eviction.toleration_expired,
            "node lifecycle evicted a pod"
        ),
        // Gone already, or another pod under the same name now.
        Ok(Err(error)) if is_status(&error, 404) || is_status(&error, 409) => {}
        Ok(Err(error)) => tracing::warn!(namespace, pod, %error, "node lifecycle eviction failed"),
        Err(_elapsed) => tracing::warn!(namespace, pod, "node lifecycle eviction timed out"),
    }
}

/// A graceful delete of exactly the pod decided on (by uid): its agent stops it when it can.
fn delete_params(eviction: &Eviction) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions { uid: Some(eviction.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    }
}

/// A merge patch of the node's status replacing its conditions, conditioned on
/// `resource_version`.
fn conditions_patch(resource_version: &str, conditions: &[NodeCondition]) -> Value {
    json!({ "metadata": { "resourceVersion": resource_version }, "status": { "conditions": conditions } })
}

/// A merge patch replacing the node's taints, conditioned on `resource_version`; no taints is
/// null, which removes the field.
fn taints_patch(resource_version: &str, taints: &[Taint]) -> Value {
    let taints = if taints.is_empty() { Value::Null } else { json!(taints) };
    json!({ "metadata": { "resourceVersion": resource_version }, "spec": { "taints": taints } })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Compiled, not run: the server spawns the controllers, so `run` must be `Send` (closures
    // returning futures over borrowed data break that, rust-lang/rust#102211).
    #[allow(dead_code, reason = "a compile-time check")]
    fn run_is_send(client: Client) {
        drop(tokio::spawn(run(client, NodeLifecycleConfig::default())));
    }

    // Node writes name the resourceVersion they were decided on and replace the whole list;
    // an emptied taint list removes the field.
    #[test]
    fn patches_are_conditional() {
        let taint = Taint { key: "k".into(), effect: "NoSchedule".into(), ..Taint::default() };
        assert_eq!(
            taints_patch("7", &[taint]),
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})
        );
        assert_eq!(
            taints_patch("7", &[]),
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"taints": null}})
        );
        let condition =
            NodeCondition { type_: "Ready".into(), status: "Unknown".into(), ..NodeCondition::default() };
        assert_eq!(
            conditions_patch("8", &[condition]),
            json!({"metadata": {"resourceVersion": "8"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
        );
    }

    // A deletion is conditioned on the uid only: the pod's status moves all the time, and it
    // is still the same pod.
    #[test]
    fn evictions_are_conditional_on_the_uid() {
        let eviction = Eviction {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            node: "n1".into(),
            taint: super::super::TAINT_UNREACHABLE.into(),
            toleration_expired: true,
        };
        let params = delete_params(&eviction);
        let preconditions = params.preconditions.expect("preconditions");
        assert_eq!(preconditions.uid.as_deref(), Some("u1"));
        assert_eq!(preconditions.resource_version, None);
        assert_eq!(params.grace_period_seconds, None);
    }
}
