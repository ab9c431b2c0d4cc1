//! The ReplicaSet controller: keeps `spec.replicas` pods matching a ReplicaSet's selector
//! running under its controller reference, and reports how many there are.
//!
//! As upstream's (pkg/controller/replicaset), one pass over one ReplicaSet:
//! 1. claims pods: a matching orphan is adopted, an owned pod that no longer matches is
//!    released (`ownership::claim`);
//! 2. counts the *active* owned pods: not being deleted, not Succeeded or Failed;
//! 3. unless earlier creates and deletes are still unseen by the watch (`Expectations`),
//!    creates the missing pods in slow-start batches (1, 2, 4, …, stopping at the first batch
//!    with a failure) or deletes the surplus, least valuable first (`deletion_order`);
//! 4. writes `status`: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas
//!    (Ready for minReadySeconds), observedGeneration, and the ReplicaFailure condition while
//!    creates or deletes fail.
//!
//! [`decide`] and [`status`] are pure; the runtime (`replicaset/runtime.rs`) watches
//! ReplicaSets and pods, runs one pass per ReplicaSet key at a time, and writes pods with
//! resourceVersion or uid preconditions.

pub(crate) mod runtime;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::ownership::{Claim, claim};

pub use runtime::{COMPONENT, run};

/// How long unseen creates or deletes hold a ReplicaSet back before it acts again anyway
/// (upstream's `ExpectationsTimeout`): a watch that lost an event must not stall it for ever.
pub const EXPECTATIONS_TIMEOUT: SignedDuration = SignedDuration::from_secs(5 * 60);
/// The most pods one pass creates or deletes (upstream's `BurstReplicas`); the next pass does
/// the rest.
pub const BURST_REPLICAS: usize = 500;
/// The size of the first create batch; each later batch doubles (upstream's
/// `SlowStartInitialBatchSize`), so that a template that cannot work fails once, not 500 times.
pub const SLOW_START_INITIAL_BATCH: usize = 1;
/// The annotation that makes a pod cheaper (lower) or dearer to delete.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
/// The condition type for failed pod creates or deletes.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// A pod a write is for, at the version the decision saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

/// The pod writes one pass decided on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Orphans to put the ReplicaSet's controller reference on.
    pub adopt: Vec<PodRef>,
    /// Owned pods that no longer match, to take the controller reference off.
    pub release: Vec<PodRef>,
    /// Pods to create from the template.
    pub create: usize,
    /// Pods to delete, in order.
    pub delete: Vec<PodRef>,
}

/// What failed when the last pass created or deleted pods, for the ReplicaFailure condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: String,
    pub message: String,
}

/// Creates and deletes a ReplicaSet has made and not yet seen in its pod watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectations {
    /// Creates not yet seen.
    pub creations: usize,
    /// The uids of pods deleted and not yet seen going.
    pub deletions: BTreeSet<String>,
    /// When the expectations were set.
    pub since: Timestamp,
}

impl Expectations {
    pub fn new(creations: usize, deletions: BTreeSet<String>, since: Timestamp) -> Self {
        Self { creations, deletions, since }
    }

    /// Whether the ReplicaSet may act again: everything was seen, or too long has passed.
    pub fn satisfied(&self, now: Timestamp) -> bool {
        (self.creations == 0 && self.deletions.is_empty())
            || now.duration_since(self.since) > EXPECTATIONS_TIMEOUT
    }

    /// A pod of this ReplicaSet appeared in the watch.
    pub fn creation_observed(&mut self) {
        self.creations = self.creations.saturating_sub(1);
    }

    /// Fewer creates happened than expected (skipped or failed).
    pub fn creations_lowered(&mut self, count: usize) {
        self.creations = self.creations.saturating_sub(count);
    }

    /// The pod with `uid` was seen being deleted or gone (or its delete failed).
    pub fn deletion_observed(&mut self, uid: &str) {
        self.deletions.remove(uid);
    }
}

/// The pod writes that move `replica_set` towards `spec.replicas` active pods, given every
/// pod of its namespace. With `expectations_satisfied` false only claiming happens: the
/// pods the last pass created or deleted are not all visible yet.
pub fn decide(replica_set: &ReplicaSet, pods: &[Pod], expectations_satisfied: bool) -> Plan {
    let owner_uid = replica_set.metadata.uid.as_deref().unwrap_or_default();
    let selector = selector(replica_set);
    let deleting = replica_set.metadata.deletion_timestamp.is_some();
    let mut plan = Plan::default();
    let mut owned: Vec<&Pod> = Vec::new();
    for pod in pods {
        match claim(owner_uid, &selector, deleting, &pod.metadata) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                plan.adopt.push(pod_ref(pod));
                owned.push(pod);
            }
            Claim::Release => plan.release.push(pod_ref(pod)),
            Claim::Ignore => {}
        }
    }
    let active: Vec<&Pod> = owned.into_iter().filter(|pod| is_active(pod)).collect();
    if !expectations_satisfied || deleting {
        return plan;
    }
    let wanted = usize::try_from(desired_replicas(replica_set)).unwrap_or(0);
    match active.len().cmp(&wanted) {
        Ordering::Less => plan.create = (wanted - active.len()).min(BURST_REPLICAS),
        Ordering::Greater => {
            let surplus = (active.len() - wanted).min(BURST_REPLICAS);
            plan.delete = deletion_order(&active).into_iter().take(surplus).map(pod_ref).collect();
        }
        Ordering::Equal => {}
    }
    plan
}

/// The status `replica_set` should have given every pod of its namespace, the failure of the
/// last pass's creates or deletes, and the time; and how long until a Ready pod becomes
/// available (so the runtime looks again then).
pub fn status(
    replica_set: &ReplicaSet,
    pods: &[Pod],
    failure: Option<&ReplicaFailure>,
    now: Timestamp,
) -> (ReplicaSetStatus, Option<Duration>) {
    let owner_uid = replica_set.metadata.uid.as_deref().unwrap_or_default();
    let selector = selector(replica_set);
    let deleting = replica_set.metadata.deletion_timestamp.is_some();
    let active: Vec<&Pod> = pods
        .iter()
        .filter(|pod| {
            matches!(claim(owner_uid, &selector, deleting, &pod.metadata), Claim::Owned | Claim::Adopt)
        })
        .filter(|pod| is_active(pod))
        .collect();
    let spec = replica_set.spec.as_ref();
    let min_ready =
        SignedDuration::from_secs(spec.and_then(|spec| spec.min_ready_seconds).unwrap_or(0).into());
    let template_labels = spec
        .and_then(|spec| spec.template.as_ref())
        .and_then(|template| template.metadata.as_ref())
        .and_then(|metadata| metadata.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|pod| {
            let labels = pod.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(key, value)| labels.and_then(|labels| labels.get(key)) == Some(value))
        })
        .count();
    let mut ready = 0;
    let mut available = 0;
    let mut next_available: Option<SignedDuration> = None;
    for pod in &active {
        let Some(since) = ready_since(pod) else { continue };
        ready += 1;
        let until_available = min_ready - now.duration_since(since);
        if min_ready.is_zero() || !until_available.is_positive() {
            available += 1;
        } else {
            next_available = Some(next_available.map_or(until_available, |next| next.min(until_available)));
        }
    }
    let count = |value: usize| i32::try_from(value).unwrap_or(i32::MAX);
    let old = replica_set.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|condition| condition.type_ != REPLICA_FAILURE)
        .collect();
    if let Some(failure) = failure {
        let previous = old.conditions.iter().flatten().find(|condition| condition.type_ == REPLICA_FAILURE);
        conditions.push(previous.cloned().unwrap_or_else(|| ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(failure.reason.clone()),
            message: Some(failure.message.clone()),
            last_transition_time: Some(Time(now)),
        }));
    }
    let status = ReplicaSetStatus {
        replicas: count(active.len()),
        fully_labeled_replicas: Some(count(fully_labeled)),
        ready_replicas: Some(count(ready)),
        available_replicas: Some(count(available)),
        observed_generation: replica_set.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..old
    };
    let requeue = next_available.and_then(|wait| Duration::try_from(wait).ok());
    (status, requeue)
}

/// The create batch sizes for `count` pods: 1, 2, 4, … and the rest.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = SLOW_START_INITIAL_BATCH.min(remaining);
    while size > 0 {
        batches.push(size);
        remaining -= size;
        size = (size * 2).min(remaining);
    }
    batches
}

/// `pods` in the order upstream deletes them (`ActivePodsWithRanks`): unassigned before
/// assigned; Pending, then Unknown, then Running; not ready before ready; lower
/// pod-deletion-cost first; pods sharing a node with more of these pods first; ready for a
/// shorter time first; more container restarts first; newer first.
pub fn deletion_order<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in pods {
        *per_node.entry(node_name(pod)).or_default() += 1;
    }
    let rank = |pod: &Pod| if node_name(pod).is_empty() { 0 } else { per_node[node_name(pod)] };
    let mut ordered = pods.to_vec();
    ordered.sort_by(|left, right| {
        node_name(right)
            .is_empty()
            .cmp(&node_name(left).is_empty())
            .then_with(|| phase_ordinal(left).cmp(&phase_ordinal(right)))
            .then_with(|| is_ready(left).cmp(&is_ready(right)))
            .then_with(|| deletion_cost(left).cmp(&deletion_cost(right)))
            .then_with(|| rank(right).cmp(&rank(left)))
            .then_with(|| match (ready_since(left), ready_since(right)) {
                // Later (newer) readiness first.
                (Some(left), Some(right)) => right.cmp(&left),
                _ => Ordering::Equal,
            })
            .then_with(|| restarts(right).cmp(&restarts(left)))
            .then_with(|| creation(right).cmp(&creation(left)))
    });
    ordered
}

/// Whether a pod counts towards replicas: not being deleted, not finished.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's Ready condition last turned True, if it is True (the epoch when the
/// condition has no time).
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|condition| condition.type_ == "Ready")?;
    (ready.status == "True")
        .then(|| ready.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |time| time.0))
}

/// Whether the pod has been Ready for `min_ready` at `now`.
pub fn is_available(pod: &Pod, min_ready: SignedDuration, now: Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| min_ready.is_zero() || now.duration_since(since) >= min_ready)
}

fn selector(replica_set: &ReplicaSet) -> LabelSelector {
    replica_set.spec.as_ref().map(|spec| spec.selector.clone()).unwrap_or_default()
}

/// `spec.replicas`, 1 when absent as the API defaults it.
pub fn desired_replicas(replica_set: &ReplicaSet) -> i32 {
    replica_set.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1).max(0)
}

pub fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        resource_version: pod.metadata.resource_version.clone().unwrap_or_default(),
    }
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).unwrap_or_default()
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|status| status.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    let annotations = pod.metadata.annotations.as_ref();
    annotations
        .and_then(|annotations| annotations.get(DELETION_COST_ANNOTATION))
        .and_then(|cost| cost.parse().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|status| status.container_statuses.as_ref());
    statuses.into_iter().flatten().map(|status| status.restart_count).max().unwrap_or(0)
}

/// The creation time; a pod without one sorts as the newest, as upstream's does.
fn creation(pod: &Pod) -> Timestamp {
    pod.metadata.creation_timestamp.as_ref().map_or(Timestamp::MAX, |time| time.0)
}
