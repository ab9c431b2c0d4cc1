//! Node lifecycle: tells dead nodes from live ones by their Lease renewals, marks the dead
//! ones (conditions Unknown, `unreachable` taints), and evicts the pods of NoExecute-tainted
//! nodes once their tolerations run out.
//!
//! Kubernetes splits this between the node lifecycle controller (health, conditions, taints)
//! and the taint eviction controller (pods); here both are one [`NodeLifecycle`], a pure state
//! machine: the runtime (`node_lifecycle/runtime.rs`) feeds it the Lease renewals it observes
//! ([`NodeLifecycle::observe_lease`]) and, every pass, the Nodes and Pods of its caches
//! ([`NodeLifecycle::pass`]), and carries out the [`Plan`] it gets back.
//!
//! **Heartbeats.** An agent renews its Lease in `kube-node-lease` twice a second. Each observed
//! change of `spec.renewTime` is one heartbeat, timed by the controller's own monotonic clock
//! when it saw the change: the renew time itself comes from another machine's clock and is
//! only compared for equality. Each node has its own [`Detector`]. A renewal after a silence
//! the detector had judged a failure starts a fresh detector, so that the outage does not
//! enter the window as a sample of the node's normal jitter.
//!
//! **Health.** A node is *alive* unless its detector suspects it; a node the controller has
//! not heard from since it started (it may have just become leader, with no history) is
//! *starting* for [`NodeLifecycleConfig::startup_grace`] from when it first saw the node, and
//! suspected after that: Kubernetes' nodeStartupGracePeriod. A starting node is left exactly as
//! it is, taints, conditions and pods alike, since nothing is known about it yet.
//!
//! **Rules**, per node:
//! 1. Suspected: its Ready, MemoryPressure, DiskPressure and PIDPressure conditions become
//!    Unknown (reason `NodeStatusUnknown`, as Kubernetes writes them) and it gets
//!    `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints.
//! 2. Alive and reporting Ready=False: `node.kubernetes.io/not-ready` NoSchedule and NoExecute.
//! 3. Alive otherwise: neither taint. Its conditions are the agent's to rewrite.
//! 4. A NoExecute taint carries `timeAdded`; one without it (an administrator's) gets it.
//! 5. Adding a NoExecute taint takes a token from a bucket ([`EvictionRate`]): the number of
//!    nodes whose pods start being evicted is rate-limited, as Kubernetes limits its tainting
//!    queue. A node that finds the bucket empty gets the NoSchedule taint alone until a later
//!    pass finds a token.
//! 6. Full disruption: when more than [`NodeLifecycleConfig::unhealthy_fraction`] of the nodes
//!    are suspected at once, the controller is probably the one cut off. Then suspicion adds no
//!    NoExecute taint, removes those it added (their clocks restart when it ends, as
//!    Kubernetes' "master disruption mode" does), and no pod is evicted at all. Nodes that
//!    will be suspected within [`NodeLifecycleConfig::disruption_lookahead`] count as suspected
//!    here: nodes cut off at the same moment are not suspected in the same pass, since their
//!    last renewals were up to a renewal interval apart, and the first of them would otherwise
//!    be judged alone and tainted.
//! 7. Eviction, as Kubernetes' taint manager: a pod on a node with a NoExecute taint (stored,
//!    and kept by this pass) that it does not tolerate is deleted at once; one that tolerates
//!    every such taint is deleted when the shortest `tolerationSeconds` of the tolerations used
//!    (the first matching one per taint) has passed since that taint's `timeAdded`. Pods being
//!    deleted already and pods that have finished (Succeeded, Failed) are left alone.
//!
//! The plan's writes are conditional: node updates on the resourceVersion seen, deletions on
//! the pod's uid. A deletion is an ordinary graceful DELETE: the pod's agent, when it comes
//! back, stops it; an agent that never does leaves it Terminating, which its owners' controllers
//! do not count as running.

mod runtime;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::failure_detector::{AGENT_HEARTBEAT_INTERVAL, Detector, DetectorConfig};

pub use runtime::run;

/// Where agents keep their heartbeat Leases, one per node, named like the node.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint of a node the controller has stopped hearing from.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose agent reports Ready=False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";
/// The conditions a suspected node's agent can no longer vouch for.
pub const AGENT_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// Kubernetes' reason and message for a condition of a node gone silent.
pub const REASON_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_STATUS_UNKNOWN: &str = "Kubelet stopped posting node status.";
/// Kubernetes' reason and message for a condition the agent never posted.
pub const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
pub const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// How the controller judges nodes and paces evictions.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLifecycleConfig {
    /// The failure detector each node's heartbeats feed.
    pub detector: DetectorConfig,
    /// How long a node the controller has not heard from since it started is left alone
    /// before it is suspected. Ten seconds: ten of the agents' one-second renewals, and the
    /// `leaseDurationSeconds` they vouch for.
    pub startup_grace: Duration,
    pub eviction_rate: EvictionRate,
    /// Above this fraction of nodes suspected at once, nothing is evicted (rule 6). 0.55, as
    /// Kubernetes' `--unhealthy-zone-threshold`.
    pub unhealthy_fraction: f64,
    /// For that fraction, a node the detector will suspect within this long if it stays silent
    /// counts as suspected already (rule 6). Two of the agents' default renewal intervals
    /// (1 s), bounded on both sides:
    /// - above by the silence of a living node: the default detector suspects after about
    ///   1.8 s of silence, so a node counts after 0.8 s, that is a half-second renewal more
    ///   than 0.3 s late (counting it errs toward evicting nothing);
    /// - below by the spread of the last renewals of nodes cut off together (up to one
    ///   interval) plus a pass. Agents renewing every second
    ///   (`--lease-renew-interval-ms 1000`) spread wider than that, and nodes cut off together
    ///   may then again be judged one by one.
    pub disruption_lookahead: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self {
            detector: DetectorConfig::default(),
            startup_grace: Duration::from_secs(10),
            eviction_rate: EvictionRate::default(),
            unhealthy_fraction: 0.55,
            disruption_lookahead: AGENT_HEARTBEAT_INTERVAL * 2,
        }
    }
}

/// How many nodes per second may start having their pods evicted (get a NoExecute taint).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvictionRate {
    /// Tokens added per second; 0 stops new NoExecute taints altogether.
    pub nodes_per_second: f64,
    /// The most tokens saved up, and the bucket's content at start.
    pub burst: u32,
}

impl Default for EvictionRate {
    /// One node per second, one at a time: a node dying alone loses no time, a rack going down
    /// is spread over as many seconds as it had nodes. (Kubernetes: 0.1 per second.)
    fn default() -> Self {
        Self { nodes_per_second: 1.0, burst: 1 }
    }
}

/// The controller's memory between passes: heartbeats, when it first saw each node, the
/// eviction bucket and whether it is in full disruption.
#[derive(Debug)]
pub struct NodeLifecycle {
    config: NodeLifecycleConfig,
    /// Per Lease (named like its node): the last renew time seen and its detector.
    leases: BTreeMap<String, LeaseState>,
    /// When each node present at the last pass was first seen.
    first_seen: BTreeMap<String, Duration>,
    bucket: TokenBucket,
    full_disruption: bool,
}

#[derive(Debug)]
struct LeaseState {
    renew_time: Option<MicroTime>,
    detector: Detector,
}

/// What one pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub node_updates: Vec<NodeUpdate>,
    pub evictions: Vec<Eviction>,
    /// Set when the pass entered or left full disruption, to be logged once.
    pub disruption_change: Option<DisruptionChange>,
}

/// New conditions and taints for one node, conditioned on the resourceVersion decided on.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeUpdate {
    pub name: String,
    pub resource_version: String,
    /// The whole new `status.conditions`, when it changes.
    pub conditions: Option<Vec<NodeCondition>>,
    /// The whole new `spec.taints`, when it changes.
    pub taints: Option<Vec<Taint>>,
}

/// A pod to delete, conditioned on its uid.
#[derive(Clone, Debug, PartialEq)]
pub struct Eviction {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    /// The key of the taint that evicts it.
    pub taint: String,
    /// Whether it had a toleration that ran out (rather than none).
    pub toleration_expired: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisruptionChange {
    Entered { suspected: usize, nodes: usize },
    Left { suspected: usize, nodes: usize },
}

/// How the controller sees one node in a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Alive,
    Suspected,
    /// Not heard from since the controller started, within the startup grace.
    Starting,
}

impl NodeLifecycle {
    pub fn new(config: NodeLifecycleConfig) -> Self {
        let bucket = TokenBucket::new(config.eviction_rate);
        Self { config, leases: BTreeMap::new(), first_seen: BTreeMap::new(), bucket, full_disruption: false }
    }

    /// Records a Lease as a watch delivered it at `at`. A changed renew time is a heartbeat;
    /// the first sight of a Lease in a listing (`listed`) is not, since it may be hours old,
    /// but a Lease seen first in a watch event was just created or renewed.
    pub fn observe_lease(&mut self, lease: &Lease, at: Duration, listed: bool) {
        let Some(name) = lease.metadata.name.as_deref() else { return };
        let renew_time = lease.spec.as_ref().and_then(|spec| spec.renew_time.clone());
        let detector_config = &self.config.detector;
        let state = self.leases.entry(name.to_owned()).or_insert_with(|| LeaseState {
            renew_time: if listed { renew_time.clone() } else { None },
            detector: Detector::new(detector_config.clone()),
        });
        if renew_time.is_none() || state.renew_time == renew_time {
            return;
        }
        state.renew_time = renew_time;
        if state.detector.suspects(at) {
            state.detector = Detector::new(detector_config.clone());
        }
        state.detector.heartbeat(at);
    }

    /// Forgets a deleted Lease: its node, if it still exists, is heard from no more.
    pub fn forget_lease(&mut self, name: &str) {
        self.leases.remove(name);
    }

    /// Decides what to write at `now` (the monotonic time heartbeats are measured in) and
    /// `wall` (for the timestamps written: condition transitions, taints' timeAdded).
    pub fn pass(&mut self, now: Duration, wall: Timestamp, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> Plan {
        let names: BTreeSet<&str> = nodes.iter().filter_map(|node| node.metadata.name.as_deref()).collect();
        self.first_seen.retain(|name, _| names.contains(name.as_str()));
        for name in &names {
            self.first_seen.entry((*name).to_owned()).or_insert(now);
        }
        let mut nodes: Vec<(&str, &Node)> =
            nodes.iter().filter_map(|node| Some((node.metadata.name.as_deref()?, node.as_ref()))).collect();
        nodes.sort_by_key(|(name, _)| *name);
        let health: Vec<Health> = nodes.iter().map(|(name, _)| self.health(name, now)).collect();
        let suspected = nodes
            .iter()
            .zip(&health)
            .filter(|((name, _), health)| **health == Health::Suspected || self.suspected_soon(name, now))
            .count();
        let disruption_change = self.update_disruption(suspected, nodes.len());
        let mut pods_by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
        for pod in pods {
            if let Some(node) = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) {
                pods_by_node.entry(node).or_default().push(pod);
            }
        }
        let mut plan = Plan { disruption_change, ..Plan::default() };
        for ((name, node), health) in nodes.into_iter().zip(health) {
            if health == Health::Starting {
                continue;
            }
            let (update, taints) = self.decide_node(name, node, health, now, wall);
            if !self.full_disruption {
                let stored = stored_taints(node);
                let evicting: Vec<&Taint> = taints
                    .iter()
                    .filter(|taint| {
                        taint.effect == EFFECT_NO_EXECUTE && stored.iter().any(|s| same(s, taint))
                    })
                    .collect();
                let pods = pods_by_node.get(name).map_or(&[][..], Vec::as_slice);
                plan.evictions.extend(evictions(name, pods, &evicting, wall));
            }
            plan.node_updates.extend(update);
        }
        plan
    }

    fn health(&self, node: &str, now: Duration) -> Health {
        let heard = self.leases.get(node).filter(|lease| lease.detector.last_heartbeat().is_some());
        match heard {
            Some(lease) if lease.detector.suspects(now) => Health::Suspected,
            Some(_) => Health::Alive,
            None => {
                let first_seen = self.first_seen.get(node).copied().unwrap_or(now);
                if now.saturating_sub(first_seen) >= self.config.startup_grace {
                    Health::Suspected
                } else {
                    Health::Starting
                }
            }
        }
    }

    /// Whether the detector will suspect `node` within the disruption lookahead if it stays
    /// silent.
    fn suspected_soon(&self, node: &str, now: Duration) -> bool {
        let horizon = now.saturating_add(self.config.disruption_lookahead);
        self.leases.get(node).is_some_and(|lease| lease.detector.suspects(horizon))
    }

    fn update_disruption(&mut self, suspected: usize, nodes: usize) -> Option<DisruptionChange> {
        let disrupted = nodes > 0 && suspected as f64 > self.config.unhealthy_fraction * nodes as f64;
        if disrupted == self.full_disruption {
            return None;
        }
        self.full_disruption = disrupted;
        Some(if disrupted {
            DisruptionChange::Entered { suspected, nodes }
        } else {
            DisruptionChange::Left { suspected, nodes }
        })
    }

    /// The update one node needs (if any), and its taints once the update is made.
    fn decide_node(
        &mut self,
        name: &str,
        node: &Node,
        health: Health,
        now: Duration,
        wall: Timestamp,
    ) -> (Option<NodeUpdate>, Vec<Taint>) {
        let conditions = (health == Health::Suspected).then(|| unknown_conditions(node, wall)).flatten();
        let stored = stored_taints(node);
        let wanted_key = match health {
            Health::Suspected => Some(TAINT_UNREACHABLE),
            _ if ready_status(node) == Some("False") => Some(TAINT_NOT_READY),
            _ => None,
        };
        let mut no_execute = wanted_key.is_some();
        if self.full_disruption && wanted_key == Some(TAINT_UNREACHABLE) {
            no_execute = false;
        }
        let has_no_execute = |key: &str| stored.iter().any(|t| t.key == key && t.effect == EFFECT_NO_EXECUTE);
        if let Some(key) = wanted_key
            && no_execute
            && !has_no_execute(key)
        {
            no_execute = self.bucket.try_take(now);
        }
        let taints = reconcile_taints(&stored, wanted_key, no_execute, wall);
        let taints_changed = taints != stored;
        let update = (conditions.is_some() || taints_changed).then(|| NodeUpdate {
            name: name.to_owned(),
            resource_version: node.metadata.resource_version.clone().unwrap_or_default(),
            conditions,
            taints: taints_changed.then(|| taints.clone()),
        });
        (update, taints)
    }
}

/// A node's `spec.taints`.
fn stored_taints(node: &Node) -> Vec<Taint> {
    node.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default()
}

/// The status of the node's Ready condition, if it has one.
fn ready_status(node: &Node) -> Option<&str> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|condition| condition.type_ == "Ready").map(|condition| condition.status.as_str())
}

/// The node's conditions with the agent's four turned Unknown (and added when missing);
/// None when they all are Unknown already.
fn unknown_conditions(node: &Node, wall: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions =
        node.status.as_ref().and_then(|status| status.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    for kind in AGENT_CONDITIONS {
        match conditions.iter_mut().find(|condition| condition.type_ == kind) {
            Some(condition) if condition.status == "Unknown" => {}
            Some(condition) => {
                condition.status = "Unknown".into();
                condition.reason = Some(REASON_STATUS_UNKNOWN.into());
                condition.message = Some(MESSAGE_STATUS_UNKNOWN.into());
                condition.last_transition_time = Some(Time(wall));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some(REASON_NEVER_UPDATED.into()),
                    message: Some(MESSAGE_NEVER_UPDATED.into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(wall)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// `stored` with the controller's taints as wanted: `wanted_key` NoSchedule, and NoExecute if
/// `no_execute`; the other controller key gone; every NoExecute taint with a timeAdded. Taints
/// kept keep their place and their timeAdded; new ones go last.
fn reconcile_taints(
    stored: &[Taint],
    wanted_key: Option<&str>,
    no_execute: bool,
    wall: Timestamp,
) -> Vec<Taint> {
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    if let Some(key) = wanted_key {
        wanted.push((key, EFFECT_NO_SCHEDULE));
        if no_execute {
            wanted.push((key, EFFECT_NO_EXECUTE));
        }
    }
    let ours = |taint: &Taint| taint.key == TAINT_UNREACHABLE || taint.key == TAINT_NOT_READY;
    let mut taints: Vec<Taint> = stored
        .iter()
        .filter(|taint| !ours(taint) || wanted.contains(&(taint.key.as_str(), taint.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|taint| taint.key == key && taint.effect == effect) {
            taints.push(Taint { key: key.into(), effect: effect.into(), value: None, time_added: None });
        }
    }
    for taint in &mut taints {
        if taint.effect == EFFECT_NO_EXECUTE && taint.time_added.is_none() {
            taint.time_added = Some(Time(wall));
        }
    }
    taints
}

/// Whether two taints are the same taint (key, value, effect) and `stored` has the time it
/// was added: eviction clocks run only from a timeAdded that is stored.
fn same(stored: &Taint, taint: &Taint) -> bool {
    stored.key == taint.key
        && stored.effect == taint.effect
        && stored.value == taint.value
        && stored.time_added.is_some()
        && stored.time_added == taint.time_added
}

/// The pods of `node` that `taints` (NoExecute, each with its timeAdded) evict at `wall`.
fn evictions(node: &str, pods: &[&Pod], taints: &[&Taint], wall: Timestamp) -> Vec<Eviction> {
    if taints.is_empty() {
        return Vec::new();
    }
    let mut evictions: Vec<Eviction> = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|pod| {
            let (taint, toleration_expired) = evicting_taint(pod, taints, wall)?;
            Some(Eviction {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone()?,
                uid: pod.metadata.uid.clone()?,
                node: node.to_owned(),
                taint: taint.key.clone(),
                toleration_expired,
            })
        })
        .collect();
    evictions.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    evictions
}

/// The taint that evicts `pod` at `wall`, and whether through an expired toleration; None
/// while it tolerates them all.
fn evicting_taint<'a>(pod: &Pod, taints: &[&'a Taint], wall: Timestamp) -> Option<(&'a Taint, bool)> {
    let tolerations = pod.spec.as_ref().and_then(|spec| spec.tolerations.as_deref()).unwrap_or(&[]);
    let mut earliest: Option<(Timestamp, &Taint)> = None;
    for taint in taints {
        let Some(toleration) = tolerations.iter().find(|toleration| tolerates(toleration, taint)) else {
            return Some((taint, false));
        };
        let Some(seconds) = toleration.toleration_seconds else { continue };
        let added = taint.time_added.as_ref().expect("evicting taints have a timeAdded").0;
        // Zero and negative seconds evict at once, as in Kubernetes.
        let deadline = added.saturating_add(SignedDuration::from_secs(seconds.max(0))).unwrap_or(added);
        if earliest.is_none_or(|(earliest, _)| deadline < earliest) {
            earliest = Some((deadline, taint));
        }
    }
    let (deadline, taint) = earliest?;
    (deadline <= wall).then_some((taint, true))
}

/// Whether `toleration` tolerates `taint`, by Kubernetes' rules: an empty effect matches every
/// effect, an empty key (with Exists) every key; Exists matches any value, Equal (or no
/// operator) the same value. Other operators match nothing here.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// A token bucket over injected time: `rate` tokens a second, at most `burst` saved. Tokens are
/// counted in billionths, so that refills over passes add up exactly to the time elapsed.
#[derive(Clone, Debug)]
struct TokenBucket {
    rate: EvictionRate,
    nano_tokens: u128,
    refilled_at: Option<Duration>,
}

/// One token, in the bucket's unit.
const NANO_TOKENS_PER_TOKEN: u128 = 1_000_000_000;

impl TokenBucket {
    fn new(rate: EvictionRate) -> Self {
        Self { rate, nano_tokens: Self::capacity(rate), refilled_at: None }
    }

    fn capacity(rate: EvictionRate) -> u128 {
        u128::from(rate.burst) * NANO_TOKENS_PER_TOKEN
    }

    /// Takes a token at `now` if there is one.
    fn try_take(&mut self, now: Duration) -> bool {
        let rate =
            if self.rate.nodes_per_second.is_finite() { self.rate.nodes_per_second.max(0.0) } else { 0.0 };
        if let Some(before) = self.refilled_at {
            // A float to integer cast saturates: an absurd rate fills the bucket, no more.
            let added = (now.saturating_sub(before).as_nanos() as f64 * rate) as u128;
            self.nano_tokens = self.nano_tokens.saturating_add(added).min(Self::capacity(self.rate));
        }
        self.refilled_at = Some(now);
        if self.nano_tokens >= NANO_TOKENS_PER_TOKEN {
            self.nano_tokens -= NANO_TOKENS_PER_TOKEN;
            true
        } else {
            false
        }
    }
}
