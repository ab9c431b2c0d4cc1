//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, one
//! per template (named and labelled by the template's `pod-template-hash`), and reports the
//! rollout in the Deployment's status the way `kubectl rollout status` reads it.
//!
//! As upstream's (pkg/controller/deployment), one pass over one Deployment:
//! 1. claims ReplicaSets (adopting matching orphans, releasing owned ones that do not match);
//! 2. finds the *new* ReplicaSet, the oldest whose template equals the Deployment's but for
//!    the hash label, and keeps its annotations in step: the revision
//!    (`deployment.kubernetes.io/revision`, one more than any old ReplicaSet's, with the
//!    earlier revisions of a ReplicaSet rolled back to in `revision-history`), the
//!    Deployment's own annotations, minReadySeconds; the Deployment gets the same revision;
//! 3. when paused or scaled (a ReplicaSet's `desired-replicas` differs from `spec.replicas`),
//!    only scales: the one active ReplicaSet to `spec.replicas`, or all of them in proportion
//!    to their size during a rollout (`max-replicas` says what they were sized for);
//! 4. otherwise rolls out: RollingUpdate creates the new ReplicaSet and scales it up within
//!    `spec.replicas + maxSurge` pods, and old ones down while `spec.replicas - maxUnavailable`
//!    pods stay available (unhealthy old pods go first); Recreate scales every old ReplicaSet
//!    to zero, waits until their pods are gone, then creates and scales the new one;
//! 5. once complete, deletes the oldest scaled-down ReplicaSets beyond revisionHistoryLimit;
//! 6. writes the status: replicas, updated, ready, available and unavailable counts,
//!    observedGeneration, collisionCount, and the conditions Available
//!    (MinimumReplicasAvailable / MinimumReplicasUnavailable) and Progressing
//!    (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable,
//!    ProgressDeadlineExceeded, DeploymentPaused, DeploymentResumed).
//!
//! [`decide`] is pure: it returns the writes in the order upstream makes them; the runtime
//! (`deployment/runtime.rs`) carries them out in order, each conditioned on the
//! resourceVersion read, and stops at the first that fails: the next pass decides again.

mod rollout;
mod runtime;
pub mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub use runtime::{COMPONENT, run};

/// The revision of a ReplicaSet, and of the Deployment its newest.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions of a ReplicaSet that was rolled back to, comma-separated.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `spec.replicas` when the ReplicaSet was last sized.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last sized.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The longest `revision-history` kept (upstream's default `--max-rev-history-length`… in
/// characters).
pub const REVISION_HISTORY_CHARS_MAX: usize = 2_000;
/// Annotations of the Deployment that are not copied to its ReplicaSets.
const ANNOTATIONS_NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];
/// Defaults the API server applies; the controller assumes them when a field is absent.
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// A write the controller decided on, in the order to make them.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Put the Deployment's controller reference on an orphan ReplicaSet.
    Adopt(ReplicaSet),
    /// Take the Deployment's controller reference off a ReplicaSet that no longer matches.
    Release(ReplicaSet),
    /// Create the new ReplicaSet. An existing one of that name that is not this template's is
    /// a hash collision: the runtime then raises `status.collisionCount` instead.
    Create { replica_set: ReplicaSet, event: Option<String> },
    /// Replace a ReplicaSet (spec.replicas, annotations, minReadySeconds), conditioned on its
    /// resourceVersion; `event` is the ScalingReplicaSet message when it was scaled.
    Update { replica_set: ReplicaSet, event: Option<String> },
    /// Delete an old ReplicaSet beyond the revision history, if it still has this uid and
    /// resourceVersion.
    Delete(ReplicaSet),
    /// Set the Deployment's revision annotation.
    Revision(String),
    /// Write the Deployment's status.
    Status(DeploymentStatus),
}

/// What one pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub writes: Vec<Write>,
    /// When to look again without events: when the progress deadline may pass.
    pub requeue_after: Option<Duration>,
}

/// The writes that move `deployment` on, given every ReplicaSet and pod of its namespace and
/// the time.
pub fn decide(
    deployment: &Deployment,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
    now: Timestamp,
) -> Decision {
    rollout::Pass::new(deployment, replica_sets, pods, now).run()
}

/// The Deployment's `spec.replicas` (1 when absent, as the API defaults it).
pub fn desired_replicas(deployment: &Deployment) -> i32 {
    deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1).max(0)
}

/// A ReplicaSet's `spec.replicas`.
pub fn replicas_of(replica_set: &ReplicaSet) -> i32 {
    replica_set.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1).max(0)
}

fn is_rolling_update(deployment: &Deployment) -> bool {
    let strategy = deployment.spec.as_ref().and_then(|spec| spec.strategy.as_ref());
    strategy.and_then(|strategy| strategy.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// `maxSurge` and `maxUnavailable` in pods (upstream's `ResolveFenceposts`): percentages of
/// `spec.replicas`, surge rounded up and unavailability down, 25% each by default; both zero
/// would never move, so unavailability is then 1.
pub fn surge_and_unavailable(deployment: &Deployment) -> (i32, i32) {
    let replicas = desired_replicas(deployment);
    let rolling = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.strategy.as_ref())
        .and_then(|strategy| strategy.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter), replicas, true);
    let unavailable =
        scaled(rolling.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&quarter), replicas, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

/// Pods above `spec.replicas` a rollout may run (0 for Recreate).
pub fn max_surge(deployment: &Deployment) -> i32 {
    if !is_rolling_update(deployment) {
        return 0;
    }
    surge_and_unavailable(deployment).0
}

/// Pods below `spec.replicas` a rollout may leave unavailable (0 for Recreate).
pub fn max_unavailable(deployment: &Deployment) -> i32 {
    let replicas = desired_replicas(deployment);
    if !is_rolling_update(deployment) || replicas == 0 {
        return 0;
    }
    surge_and_unavailable(deployment).1.min(replicas)
}

/// An int-or-percent of `total`; a malformed value (which validation refuses) counts as 0.
fn scaled(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(count) => (*count).max(0),
        IntOrString::String(text) => {
            let Some(percent) = text.strip_suffix('%').and_then(|number| number.parse::<i64>().ok()) else {
                return 0;
            };
            let product = percent.max(0) * i64::from(total);
            let value = if round_up { (product + 99) / 100 } else { product / 100 };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

fn revision_history_limit(deployment: &Deployment) -> i32 {
    let spec = deployment.spec.as_ref();
    spec.and_then(|spec| spec.revision_history_limit).unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
}

fn progress_deadline(deployment: &Deployment) -> Option<SignedDuration> {
    let seconds = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.progress_deadline_seconds)
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    // Upstream: MaxInt32 means no deadline.
    (seconds != i32::MAX).then(|| SignedDuration::from_secs(seconds.into()))
}

fn is_paused(deployment: &Deployment) -> bool {
    deployment.spec.as_ref().and_then(|spec| spec.paused).unwrap_or(false)
}

/// A ReplicaSet's revision annotation as a number (0 when absent or malformed).
pub fn revision_of(replica_set: &ReplicaSet) -> i64 {
    annotation(replica_set, REVISION_ANNOTATION).and_then(|revision| revision.parse().ok()).unwrap_or(0)
}

fn annotation<'a>(replica_set: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    replica_set.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn annotation_number(replica_set: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(replica_set, key)?.parse().ok()
}

fn set_annotation(annotations: &mut BTreeMap<String, String>, key: &str, value: String) -> bool {
    if annotations.get(key) == Some(&value) {
        return false;
    }
    annotations.insert(key.to_owned(), value);
    true
}

/// The condition of `type_` in `status`.
pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|condition| condition.type_ == type_)
}

/// A condition as upstream's `NewDeploymentCondition` makes it.
fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `SetDeploymentCondition`: the same status and reason change nothing; the same
/// status keeps its transition time.
fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = condition_ref(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(condition);
}

fn condition_ref<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    condition(status, type_)
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|condition| condition.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}
