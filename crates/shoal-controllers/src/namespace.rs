//! Namespace deletion: empties a terminating namespace, then lets the server delete it.
//!
//! A deleted Namespace keeps existing, phase Terminating, while `spec.finalizers` holds
//! `kubernetes`. For each such namespace [`decide`] looks at what every namespaced kind still
//! has in it: kinds with objects not yet being deleted get a deletecollection (Background,
//! so that each object's dependents go their own way through the garbage collector), and once
//! no kind has anything left the namespace is finalized: `PUT .../finalize` without
//! `kubernetes`, after which the server deletes it.
//!
//! Pods bound to a node are deleted gracefully: they get a deletionTimestamp (now plus their
//! grace period) and stay until their node's agent has stopped them, or for ever when no
//! agent runs there. So that a namespace never hangs on them, pods whose deletionTimestamp
//! has passed are force-deleted (gracePeriodSeconds 0). This stands in for node lifecycle
//! (issue 5), which is to delete the pods of nodes that are gone.
//!
//! The contents are read by live lists, not from a cache: finalizing on a stale view would
//! leave objects behind in a namespace that no longer exists.

mod runtime;
#[cfg(test)]
mod tests;

use k8s_openapi::jiff::Timestamp;

use crate::kinds::GroupKind;

pub use runtime::run;

/// The `spec.finalizers` entry that stands for this controller's work.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// A namespace as the controller sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    pub name: String,
    pub resource_version: String,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `spec.finalizers`.
    pub finalizers: Vec<String>,
}

impl Namespace {
    /// Whether the namespace waits for this controller to empty it.
    pub fn is_terminating(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|finalizer| finalizer == KUBERNETES_FINALIZER)
    }
}

/// What one namespaced kind still has in the namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    pub group_kind: GroupKind,
    /// The objects listed (one page of them).
    pub objects: Vec<ContentObject>,
    /// Whether the list had more objects than `objects`.
    pub more: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContentObject {
    pub name: String,
    pub uid: String,
    pub deletion_timestamp: Option<Timestamp>,
    pub finalizers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delete every object of the kind in the namespace, with propagationPolicy Background.
    DeleteCollection { group_kind: GroupKind },
    /// Delete a pod past its deletion deadline with gracePeriodSeconds 0, if it still has `uid`.
    ForceDeletePod { name: String, uid: String },
    /// Replace `spec.finalizers` with `finalizers`, if the namespace is still at
    /// `resource_version`.
    Finalize { resource_version: String, finalizers: Vec<String> },
}

/// The writes that bring a terminating `namespace` closer to its end, given `contents` (one
/// entry per namespaced kind, every kind present) and the time `now`.
pub fn decide(namespace: &Namespace, contents: &[Content], now: Timestamp) -> Vec<Action> {
    if !namespace.is_terminating() {
        return Vec::new();
    }
    if contents.iter().all(|content| content.objects.is_empty() && !content.more) {
        let finalizers = namespace
            .finalizers
            .iter()
            .filter(|finalizer| *finalizer != KUBERNETES_FINALIZER)
            .cloned()
            .collect();
        return vec![Action::Finalize { resource_version: namespace.resource_version.clone(), finalizers }];
    }
    let mut actions = Vec::new();
    for content in contents {
        if content.more || content.objects.iter().any(|object| object.deletion_timestamp.is_none()) {
            actions.push(Action::DeleteCollection { group_kind: content.group_kind.clone() });
        }
    }
    for content in contents.iter().filter(|content| content.group_kind.is_pod()) {
        // A pod that still has finalizers would not go away by being force-deleted: the
        // server only marks it, and whoever owns the finalizer has to act first.
        let overdue = content.objects.iter().filter(|pod| {
            pod.finalizers.is_empty() && pod.deletion_timestamp.is_some_and(|deadline| deadline <= now)
        });
        actions.extend(
            overdue.map(|pod| Action::ForceDeletePod { name: pod.name.clone(), uid: pod.uid.clone() }),
        );
    }
    actions
}
