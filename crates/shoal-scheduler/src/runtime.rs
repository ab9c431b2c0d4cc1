//! The scheduler's effects: watch caches of pods and nodes, the scheduling queue, and the
//! writes each decision needs (a binding, or a PodScheduled=False condition), with events.
//!
//! The watches keep the `Cluster` up to date event by event; the scheduling loop decides a
//! batch of pods at a time on it and hands the bindings to a binder that keeps up to
//! `BINDS_IN_FLIGHT_MAX` of them in flight, so that deciding goes on while binds wait for the
//! store, and the store can batch many binds into one Raft entry.
//!
//! Everything runs inside the future `run` returns, without spawned tasks, so dropping it
//! (the server losing leadership) stops the watches and the writes in flight at once.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Binding, Event, EventSource, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use crate::SCHEDULER_NAME;
use crate::cluster::{Cluster, is_terminal, pod_id};
use crate::decide::{Unschedulable, decide_from};
use crate::queue::{PodKey, SchedulingQueue};

/// The pods one pass decides on before it binds them: each pass builds the cluster snapshot
/// once, and the pods of a pass are placed one after another on it.
const PODS_PER_PASS_MAX: usize = 256;
/// How often every unscheduled pod is offered to the queue again, even without events (a pod
/// dropped by a full queue, or one whose last event was missed, is tried again).
const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
/// How long one request may take before the scheduler gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests (bindings, condition patches) in flight at once. Each binding waits for a Raft
/// commit (a quorum's fsync): with few in flight the scheduler waits on the disk; with many,
/// the store commits them together.
const BINDS_IN_FLIGHT_MAX: usize = 128;
/// Decided pods waiting for the binder; deciding pauses beyond it.
const OUTCOMES_QUEUED_MAX: usize = 2 * PODS_PER_PASS_MAX;
/// How long a pod the scheduler bound counts as placed without the watch showing it bound;
/// past that the watch is taken as the truth (a binding whose answer was lost, a pod gone).
const ASSUMED_TTL: Duration = Duration::from_secs(30);
/// Events waiting to be sent; more are dropped while the API is slow or away.
const EVENTS_QUEUED_MAX: usize = 1_024;
const _: () = assert!(PODS_PER_PASS_MAX <= crate::queue::QUEUED_PODS_MAX);
const _: () = assert!(BINDS_IN_FLIGHT_MAX <= OUTCOMES_QUEUED_MAX);
const _: () = assert!(REQUEST_TIMEOUT.as_secs() < ASSUMED_TTL.as_secs());

/// Runs the scheduler against `client` until the future is dropped.
pub async fn run(client: Client) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let (events, pending_events) = mpsc::channel(EVENTS_QUEUED_MAX);
    let shared = Shared { state: Mutex::new(State::default()), wake: Notify::new() };
    let caches = Caches { pods: pods.clone(), nodes: nodes.clone() };
    let scheduler = Scheduler { client: client.clone(), pods, nodes, shared: &shared, events };
    tracing::info!("scheduler starting");
    futures::future::join4(
        watch_pods(client.clone(), pod_writer, &shared, caches.clone()),
        watch_nodes(client.clone(), node_writer, &shared, caches),
        scheduler.run(),
        send_events(client, pending_events),
    )
    .await;
}

/// What the watches and the scheduling loop share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when the queue may have a pod ready.
    wake: Notify,
}

#[derive(Default)]
struct State {
    queue: SchedulingQueue,
    /// The nodes and the pods counted on them, assumed ones included.
    cluster: Cluster,
    /// Where the next decision's search over the nodes starts.
    next_start: String,
    /// Pods bound by this scheduler that the watch has not shown bound yet, by `pod_id`.
    assumed: HashMap<String, Assumed>,
    /// When each assumption was made, oldest first, so that expiring them costs a pass only
    /// the expired ones. An entry whose pod was seen bound (or assumed again) meanwhile is
    /// skipped when it comes up.
    assumed_since: VecDeque<(Instant, String)>,
    /// A digest of what scheduling reads of each node, to tell a change that may let pods fit
    /// (labels, taints, cordon, allocatable, readiness) from a heartbeat.
    node_digests: HashMap<String, u64>,
}

struct Assumed {
    pod: Arc<Pod>,
    node: String,
    since: Instant,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("scheduler state lock")
    }

    /// Builds the cluster again from the watch caches, once a watch has listed everything
    /// (at start, and after a watch restarted: what was deleted meanwhile sent no event).
    fn rebuild_cluster(&self, caches: &Caches) {
        let mut state = self.state();
        let assumed = state.assumed.values().map(|assumed| (assumed.pod.clone(), assumed.node.clone()));
        let cluster = Cluster::new(caches.nodes.state(), caches.pods.state(), assumed.collect::<Vec<_>>());
        state.cluster = cluster;
        state.queue.move_forward();
    }
}

/// The watch caches, for rebuilding the cluster.
#[derive(Clone)]
struct Caches {
    pods: Store<Pod>,
    nodes: Store<Node>,
}

async fn watch_pods(client: Client, writer: reflector::store::Writer<Pod>, shared: &Shared, caches: Caches) {
    let stream = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(|pod| pod.managed_fields_mut().clear())
        .reflect(writer);
    let mut events = std::pin::pin!(stream);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) => pod_changed(shared, pod, true),
            // Counted when the listing is complete: the cluster is rebuilt from the cache.
            Ok(watcher::Event::InitApply(pod)) => pod_changed(shared, pod, false),
            Ok(watcher::Event::Delete(pod)) => pod_deleted(shared, &pod),
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitDone) => {
                shared.rebuild_cluster(&caches);
                shared.wake.notify_one();
            }
            Err(error) => tracing::warn!(%error, "scheduler's pod watch failed"),
        }
    }
}

/// Queues a pod that waits for a node, and counts the pod on its node (when `count`).
fn pod_changed(shared: &Shared, pod: Pod, count: bool) {
    let pod = Arc::new(pod);
    let mut state = shared.state();
    let bound = pod.spec.as_ref().is_some_and(|spec| spec.node_name.is_some());
    if bound {
        state.assumed.remove(&pod_id(&pod));
    }
    if count {
        state.cluster.observe_pod(pod.clone());
    }
    let key = pod_key(&pod);
    if is_ours_to_schedule(&pod) {
        if !state.queue.add(key) {
            tracing::warn!(pod = %pod.name_any(), "scheduling queue full; the pod waits for the resync");
        }
        drop(state);
        shared.wake.notify_one();
        return;
    }
    state.queue.forget(&key);
    // A finished pod frees its requests.
    if bound && is_terminal(&pod) {
        state.queue.move_forward();
        drop(state);
        shared.wake.notify_one();
    }
}

fn pod_deleted(shared: &Shared, pod: &Pod) {
    let mut state = shared.state();
    state.queue.forget(&pod_key(pod));
    let id = pod_id(pod);
    state.assumed.remove(&id);
    state.cluster.remove_pod(&id);
    // A pod gone frees its node's resources and ports, and may lift an anti-affinity.
    state.queue.move_forward();
    drop(state);
    shared.wake.notify_one();
}

async fn watch_nodes(
    client: Client,
    writer: reflector::store::Writer<Node>,
    shared: &Shared,
    caches: Caches,
) {
    let stream = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(|node| node.managed_fields_mut().clear())
        .reflect(writer);
    let mut events = std::pin::pin!(stream);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                let digest = node_digest(&node);
                let mut state = shared.state();
                let previous = state.node_digests.insert(node.name_any(), digest);
                if previous != Some(digest) {
                    // A heartbeat changes nothing the decisions read: the node is not rebuilt.
                    state.cluster.set_node(Arc::new(node));
                    state.queue.move_forward();
                    drop(state);
                    shared.wake.notify_one();
                }
            }
            Ok(watcher::Event::Delete(node)) => {
                let mut state = shared.state();
                state.node_digests.remove(&node.name_any());
                state.cluster.remove_node(&node.name_any());
            }
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitDone) => {
                shared.rebuild_cluster(&caches);
                shared.wake.notify_one();
            }
            Err(error) => tracing::warn!(%error, "scheduler's node watch failed"),
        }
    }
}

/// A digest of what scheduling reads of `node`.
fn node_digest(node: &Node) -> u64 {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    let ready = status
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|condition| condition.type_ == "Ready"))
        .map(|condition| condition.status.clone());
    let read = json!([
        node.metadata.labels,
        spec.and_then(|spec| spec.taints.as_ref()),
        spec.and_then(|spec| spec.unschedulable),
        status.and_then(|status| status.allocatable.as_ref()),
        ready,
    ]);
    let mut hasher = DefaultHasher::new();
    read.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Whether `pod` waits for this scheduler: no node yet, asking for this scheduler (or none),
/// not being deleted.
fn is_ours_to_schedule(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    spec.node_name.as_deref().is_none_or(str::is_empty)
        && spec.scheduler_name.as_deref().is_none_or(|name| name.is_empty() || name == SCHEDULER_NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

fn pod_key(pod: &Pod) -> PodKey {
    (pod.namespace().unwrap_or_default(), pod.name_any())
}

/// The scheduling loop and what it needs.
struct Scheduler<'a> {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    shared: &'a Shared,
    events: mpsc::Sender<Event>,
}

/// What became of one pod of a pass.
enum Outcome {
    Bound { pod: Arc<Pod>, node: String },
    Unschedulable { pod: Arc<Pod>, reason: Unschedulable },
}

impl Scheduler<'_> {
    async fn run(self) {
        // Deciding before both caches are full would overcommit nodes whose pods are unlisted.
        if self.pods.wait_until_ready().await.is_err() || self.nodes.wait_until_ready().await.is_err() {
            return;
        }
        let (decided, to_carry_out) = mpsc::channel(OUTCOMES_QUEUED_MAX);
        futures::future::join(self.decide_loop(decided), self.carry_out_all(to_carry_out)).await;
    }

    /// Decides a batch of ready pods at a time and hands the outcomes on; waits while the
    /// binder is `OUTCOMES_QUEUED_MAX` behind.
    async fn decide_loop(&self, decided: mpsc::Sender<Outcome>) {
        let mut last_resync = Instant::now();
        loop {
            if last_resync.elapsed() >= RESYNC_INTERVAL {
                self.resync();
                last_resync = Instant::now();
            }
            let (batch, next_due) = {
                let mut state = self.shared.state();
                (state.queue.pop_ready(Instant::now(), PODS_PER_PASS_MAX), state.queue.next_due())
            };
            if batch.is_empty() {
                let resync_at = last_resync + RESYNC_INTERVAL;
                let until = next_due.map_or(resync_at, |due| due.min(resync_at));
                tokio::select! {
                    () = self.shared.wake.notified() => {}
                    () = tokio::time::sleep_until(until.into()) => {}
                }
                continue;
            }
            for outcome in self.decide_pass(batch) {
                if decided.send(outcome).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Carries decisions out, up to `BINDS_IN_FLIGHT_MAX` at once.
    async fn carry_out_all(&self, mut to_carry_out: mpsc::Receiver<Outcome>) {
        futures::stream::poll_fn(|context| to_carry_out.poll_recv(context))
            .for_each_concurrent(BINDS_IN_FLIGHT_MAX, |outcome| self.carry_out(outcome))
            .await;
    }

    /// Offers every unscheduled pod to the queue again.
    fn resync(&self) {
        let waiting = self.pods.state_filter(is_ours_to_schedule);
        let mut state = self.shared.state();
        for pod in waiting {
            state.queue.add(pod_key(&pod));
        }
    }

    /// Decides on each pod of `batch` in turn, each placed pod counting for the next.
    fn decide_pass(&self, batch: Vec<PodKey>) -> Vec<Outcome> {
        let now = Instant::now();
        let mut guard = self.shared.state();
        let state = &mut *guard;
        // Past their time, assumptions give way to what the watch shows.
        while let Some((since, _)) = state.assumed_since.front()
            && now.duration_since(*since) >= ASSUMED_TTL
        {
            let (since, id) = state.assumed_since.pop_front().expect("a front entry");
            if state.assumed.get(&id).is_some_and(|assumed| assumed.since == since) {
                state.assumed.remove(&id);
                state.cluster.forget_assumed(&id);
            }
        }
        let mut outcomes = Vec::new();
        for key in batch {
            let current = self.pods.get(&ObjectRef::new(&key.1).within(&key.0));
            // A pod bound in an earlier pass but not yet seen bound is not decided again: a
            // second binding would only conflict, and would move its assumed node meanwhile.
            let assumed = |pod: &Pod| state.assumed.contains_key(&pod_id(pod));
            let Some(pod) = current.filter(|pod| is_ours_to_schedule(pod) && !assumed(pod)) else {
                state.queue.forget(&key);
                continue;
            };
            let decision = decide_from(&state.cluster, &pod, &state.next_start);
            if let Some(next_start) = decision.next_start {
                state.next_start = next_start;
            }
            match decision.result {
                Ok(placement) => {
                    state.cluster.assume(pod.clone(), &placement.node);
                    let assumed = Assumed { pod: pod.clone(), node: placement.node.clone(), since: now };
                    state.assumed.insert(pod_id(&pod), assumed);
                    state.assumed_since.push_back((now, pod_id(&pod)));
                    outcomes.push(Outcome::Bound { pod, node: placement.node });
                }
                Err(reason) => {
                    state.queue.back_off(key, now);
                    outcomes.push(Outcome::Unschedulable { pod, reason });
                }
            }
        }
        outcomes
    }

    async fn carry_out(&self, outcome: Outcome) {
        match outcome {
            Outcome::Bound { pod, node } => self.bind(&pod, &node).await,
            Outcome::Unschedulable { pod, reason } => self.report_unschedulable(&pod, &reason).await,
        }
    }

    /// Binds `pod` to `node`; on any failure the assumption is dropped and the pod retried
    /// after its back-off (a 409 means it was bound or changed meanwhile: the next try sees).
    async fn bind(&self, pod: &Pod, node: &str) {
        let (namespace, name) = pod_key(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Node".to_owned()),
                name: Some(node.to_owned()),
                ..ObjectReference::default()
            },
        };
        let params = PostParams::default();
        let request = api.create_subresource::<_, serde_json::Value>("binding", &name, &params, &binding);
        let failure = match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(Ok(_)) => {
                tracing::debug!(pod = %format!("{namespace}/{name}"), node, "scheduler bound a pod");
                self.shared.state().queue.forget(&(namespace.clone(), name.clone()));
                let message = format!("Successfully assigned {namespace}/{name} to {node}");
                self.record(pod, "Normal", "Scheduled", message);
                return;
            }
            Ok(Err(error)) if is_status(&error, 404) => None,
            Ok(Err(error)) if is_status(&error, 409) => {
                tracing::debug!(pod = %name, %error, "binding conflicted; the pod is tried again");
                Some(())
            }
            Ok(Err(error)) => {
                tracing::warn!(pod = %name, node, %error, "binding failed");
                Some(())
            }
            Err(_elapsed) => {
                tracing::warn!(pod = %name, node, "binding timed out");
                Some(())
            }
        };
        let mut state = self.shared.state();
        let id = pod_id(pod);
        state.assumed.remove(&id);
        state.cluster.forget_assumed(&id);
        let key = (namespace, name);
        match failure {
            Some(()) => state.queue.back_off(key, Instant::now()),
            None => state.queue.forget(&key),
        }
    }

    /// Sets PodScheduled=False (reason Unschedulable) with the message, conditional on the
    /// resourceVersion decided on, and records FailedScheduling; nothing when the pod already
    /// says exactly that.
    async fn report_unschedulable(&self, pod: &Pod, reason: &Unschedulable) {
        let message = reason.to_string();
        let conditions = pod.status.as_ref().and_then(|status| status.conditions.clone()).unwrap_or_default();
        let previous = conditions.iter().find(|condition| condition.type_ == "PodScheduled");
        if previous.is_some_and(|condition| {
            condition.status == "False"
                && condition.reason.as_deref() == Some("Unschedulable")
                && condition.message.as_deref() == Some(&message)
        }) {
            return;
        }
        let (namespace, name) = pod_key(pod);
        tracing::debug!(pod = %format!("{namespace}/{name}"), %message, "pod is unschedulable");
        let patch = unschedulable_patch(pod, &conditions, &message, Time(jiff::Timestamp::now()));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let request = api.patch_status(&name, &params, &patch);
        match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(Ok(_)) => {}
            // Changed or gone since: the next try reads it again.
            Ok(Err(error)) if is_status(&error, 409) || is_status(&error, 404) => {}
            Ok(Err(error)) => tracing::warn!(pod = %name, %error, "setting PodScheduled failed"),
            Err(_elapsed) => tracing::warn!(pod = %name, "setting PodScheduled timed out"),
        }
        self.record(pod, "Warning", "FailedScheduling", message);
    }

    /// Queues an event about `pod`; dropped if the queue is full.
    fn record(&self, pod: &Pod, event_type: &str, reason: &str, message: String) {
        let event = pod_event(pod, event_type, reason, message, jiff::Timestamp::now());
        if self.events.try_send(event).is_err() {
            tracing::debug!(reason, "scheduler's event queue full; event dropped");
        }
    }
}

/// A merge patch of `pod`'s status that replaces its PodScheduled condition with
/// False/Unschedulable and `message`, keeping the other conditions; conditional on the
/// resourceVersion read. The transition time moves only if the status changes.
fn unschedulable_patch(
    pod: &Pod,
    conditions: &[PodCondition],
    message: &str,
    now: Time,
) -> serde_json::Value {
    let previous = conditions.iter().find(|condition| condition.type_ == "PodScheduled");
    let transition = previous
        .filter(|condition| condition.status == "False")
        .and_then(|condition| condition.last_transition_time.clone())
        .unwrap_or(now);
    let mut updated: Vec<PodCondition> =
        conditions.iter().filter(|condition| condition.type_ != "PodScheduled").cloned().collect();
    updated.push(PodCondition {
        type_: "PodScheduled".to_owned(),
        status: "False".to_owned(),
        reason: Some("Unschedulable".to_owned()),
        message: Some(message.to_owned()),
        last_transition_time: Some(transition),
        ..PodCondition::default()
    });
    json!({
        "metadata": { "resourceVersion": pod.metadata.resource_version },
        "status": { "conditions": updated },
    })
}

/// A core/v1 Event about `pod` from the scheduler, named as Kubernetes names events.
fn pod_event(pod: &Pod, event_type: &str, reason: &str, message: String, now: jiff::Timestamp) -> Event {
    let (namespace, name) = pod_key(pod);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            namespace: Some(namespace),
            name: Some(name),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some(event_type.to_owned()),
        source: Some(EventSource { component: Some(SCHEDULER_NAME.to_owned()), host: None }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some(SCHEDULER_NAME.to_owned()),
        reporting_instance: Some(SCHEDULER_NAME.to_owned()),
        ..Event::default()
    }
}

/// Sends queued events one at a time; a failed send is logged and dropped.
async fn send_events(client: Client, mut pending: mpsc::Receiver<Event>) {
    while let Some(event) = pending.recv().await {
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        match tokio::time::timeout(REQUEST_TIMEOUT, api.create(&PostParams::default(), &event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "sending a scheduler event failed"),
            Err(_elapsed) => tracing::debug!("sending a scheduler event timed out"),
        }
    }
}

/// Whether `error` is the API's answer with HTTP status `code`.
fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value, metadata: serde_json::Value) -> Pod {
        let mut object =
            json!({"metadata": {"name": "p", "namespace": "default", "resourceVersion": "7"}, "spec": spec});
        if let serde_json::Value::Object(extra) = metadata {
            for (key, value) in extra {
                object["metadata"][key] = value;
            }
        }
        serde_json::from_value(object).expect("a valid pod")
    }

    // Only pods without a node, for this scheduler, not being deleted, are queued.
    #[test]
    fn which_pods_are_ours() {
        let containers = json!([{"name": "c", "image": "x"}]);
        assert!(is_ours_to_schedule(&pod(json!({"containers": containers}), json!({}))));
        assert!(is_ours_to_schedule(&pod(
            json!({"containers": containers, "schedulerName": "default-scheduler"}),
            json!({})
        )));
        assert!(!is_ours_to_schedule(&pod(
            json!({"containers": containers, "schedulerName": "other"}),
            json!({})
        )));
        assert!(!is_ours_to_schedule(&pod(json!({"containers": containers, "nodeName": "n1"}), json!({}))));
        let deleting = json!({"deletionTimestamp": "2026-01-01T00:00:00Z"});
        assert!(!is_ours_to_schedule(&pod(json!({"containers": containers}), deleting)));
    }

    // A heartbeat (a new lastHeartbeatTime) is no change to scheduling; a cordon, a label or
    // readiness is.
    #[test]
    fn node_digest_sees_what_scheduling_reads() {
        let node = |unschedulable: bool, heartbeat: &str, ready: &str, zone: &str| -> Node {
            serde_json::from_value(json!({
                "metadata": {"name": "n1", "labels": {"zone": zone}},
                "spec": {"unschedulable": unschedulable},
                "status": {"allocatable": {"cpu": "2"}, "conditions": [
                    {"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat}]},
            }))
            .expect("a valid node")
        };
        let base = node_digest(&node(false, "2026-01-01T00:00:00Z", "True", "a"));
        assert_eq!(node_digest(&node(false, "2026-01-01T00:00:10Z", "True", "a")), base);
        assert_ne!(node_digest(&node(true, "2026-01-01T00:00:00Z", "True", "a")), base);
        assert_ne!(node_digest(&node(false, "2026-01-01T00:00:00Z", "False", "a")), base);
        assert_ne!(node_digest(&node(false, "2026-01-01T00:00:00Z", "True", "b")), base);
    }

    // The condition patch keeps other conditions, names the resourceVersion decided on, and
    // keeps the transition time of a condition that was False already.
    #[test]
    fn unschedulable_patch_replaces_only_pod_scheduled() {
        let earlier = Time("2026-01-01T00:00:00Z".parse().expect("a timestamp"));
        let now = Time("2026-01-02T00:00:00Z".parse().expect("a timestamp"));
        let other = PodCondition { type_: "Custom".into(), status: "True".into(), ..PodCondition::default() };
        let old = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            last_transition_time: Some(earlier),
            ..PodCondition::default()
        };
        let patch =
            unschedulable_patch(&pod(json!({"containers": []}), json!({})), &[other, old], "0/1 nodes", now);
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let conditions = patch["status"]["conditions"].as_array().expect("conditions");
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0]["type"], "Custom");
        assert_eq!(
            conditions[1],
            json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                   "message": "0/1 nodes", "lastTransitionTime": "2026-01-01T00:00:00Z"})
        );
    }
}
