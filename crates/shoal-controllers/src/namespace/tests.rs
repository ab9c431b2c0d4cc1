//! The namespace controller's decisions over a namespace and what each kind has left in it.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

/// The time the tests decide at.
fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().expect("a timestamp")
}

fn terminating(finalizers: &[&str]) -> Namespace {
    Namespace {
        name: "team".to_owned(),
        resource_version: "7".to_owned(),
        deleting: true,
        finalizers: finalizers.iter().map(|finalizer| (*finalizer).to_owned()).collect(),
    }
}

/// What each kind has: `(kind, objects)`; an empty list for the kinds not named.
fn contents(with: &[(&str, Vec<ContentObject>)]) -> Vec<Content> {
    let all = [("", "Pod"), ("", "ConfigMap"), ("apps", "ReplicaSet")];
    all.iter()
        .map(|(group, kind)| Content {
            group_kind: GroupKind::new(group, kind),
            objects: with
                .iter()
                .find(|(named, _)| named == kind)
                .map(|(_, objects)| objects.clone())
                .unwrap_or_default(),
            more: false,
        })
        .collect()
}

fn live(name: &str) -> ContentObject {
    ContentObject {
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        deletion_timestamp: None,
        finalizers: Vec::new(),
    }
}

/// An object being deleted, its deletion deadline `seconds` from now (negative: past).
fn deleting_in(name: &str, seconds: i64) -> ContentObject {
    ContentObject { deletion_timestamp: Some(now() + SignedDuration::from_secs(seconds)), ..live(name) }
}

#[track_caller]
fn check(namespace: &Namespace, contents: &[Content], expected: &[Action]) {
    assert_eq!(decide(namespace, contents, now()), expected);
}

fn delete_collection(kind: &str) -> Action {
    let group = if kind == "ReplicaSet" { "apps" } else { "" };
    Action::DeleteCollection { group_kind: GroupKind::new(group, kind) }
}

// A terminating namespace with content gets a deletecollection for each kind that still has
// objects not being deleted, and is not finalized; an empty one is finalized, keeping any
// other spec finalizer and conditioned on the resourceVersion seen.
#[test]
fn namespace_with_content_vs_empty() {
    let namespace = terminating(&["kubernetes"]);
    let with_content =
        contents(&[("ConfigMap", vec![live("settings")]), ("ReplicaSet", vec![live("web-1")])]);
    check(&namespace, &with_content, &[delete_collection("ConfigMap"), delete_collection("ReplicaSet")]);

    check(
        &namespace,
        &contents(&[]),
        &[Action::Finalize { resource_version: "7".into(), finalizers: vec![] }],
    );
    check(
        &terminating(&["example.com/cleanup", "kubernetes"]),
        &contents(&[]),
        &[Action::Finalize { resource_version: "7".into(), finalizers: vec!["example.com/cleanup".into()] }],
    );
}

// Objects already being deleted are not deleted again, but keep the namespace from being
// finalized; a kind whose list was cut short is deleted even if the listed page is all
// terminating, since the rest may not be.
#[test]
fn terminating_content_holds_the_namespace() {
    let namespace = terminating(&["kubernetes"]);
    check(&namespace, &contents(&[("ConfigMap", vec![deleting_in("settings", 0)])]), &[]);

    let mut cut_short = contents(&[("ConfigMap", vec![deleting_in("settings", 0)])]);
    cut_short[1].more = true;
    check(&namespace, &cut_short, &[delete_collection("ConfigMap")]);
}

// Pods past their deletion deadline (deletionTimestamp) are force-deleted so that a namespace
// never hangs on a node without an agent; pods still within their grace period, and pods
// held by a finalizer, are left to their agent and their finalizer's owner.
#[test]
fn overdue_pods_are_force_deleted() {
    let namespace = terminating(&["kubernetes"]);
    let held = ContentObject { finalizers: vec!["foregroundDeletion".into()], ..deleting_in("held", -60) };
    let pods =
        vec![deleting_in("overdue", -1), deleting_in("at-deadline", 0), deleting_in("stopping", 20), held];
    check(
        &namespace,
        &contents(&[("Pod", pods)]),
        &[
            Action::ForceDeletePod { name: "overdue".into(), uid: "uid-overdue".into() },
            Action::ForceDeletePod { name: "at-deadline".into(), uid: "uid-at-deadline".into() },
        ],
    );
    // A live pod gets the deletecollection like any other object, before the force-deletions.
    let pods = vec![live("new"), deleting_in("overdue", -1)];
    check(
        &namespace,
        &contents(&[("Pod", pods)]),
        &[
            delete_collection("Pod"),
            Action::ForceDeletePod { name: "overdue".into(), uid: "uid-overdue".into() },
        ],
    );
}

// Only a namespace that is being deleted and still has the `kubernetes` finalizer is this
// controller's business.
#[test]
fn other_namespaces_are_left_alone() {
    let content = contents(&[("ConfigMap", vec![live("settings")])]);
    let active = Namespace { deleting: false, ..terminating(&["kubernetes"]) };
    check(&active, &content, &[]);
    check(&terminating(&[]), &content, &[]);
    check(&terminating(&["example.com/cleanup"]), &contents(&[]), &[]);
}
