//! The ReplicaSet controller's decisions on small sets of pods: counting, claiming, creating,
//! deleting in upstream's order, expectations, and the status it reports.

use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::*;
use crate::ownership::controller_reference;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("a valid time")
}

fn labels(app: &str) -> Option<std::collections::BTreeMap<String, String>> {
    Some([("app".to_owned(), app.to_owned())].into())
}

/// A ReplicaSet `web` (uid `rs`) selecting `app=web`, generation 2.
fn replica_set(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("rs".into()),
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: labels("web"), ..LabelSelector::default() },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: labels("web"), ..ObjectMeta::default() }),
                spec: Some(PodSpec::default()),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn owner() -> OwnerReference {
    controller_reference("apps/v1", "ReplicaSet", &replica_set(1).metadata)
}

/// A Running, Ready pod of the ReplicaSet on node `n1`, created at `at(created)`, Ready since
/// `at(created + 1)`.
fn pod(name: &str, created: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            labels: labels("web"),
            owner_references: Some(vec![owner()]),
            creation_timestamp: Some(Time(at(created))),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec { node_name: Some("n1".into()), ..PodSpec::default() }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(created + 1))),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn with_phase(mut pod: Pod, phase: &str) -> Pod {
    pod.status.as_mut().expect("status").phase = Some(phase.into());
    pod
}

fn unready(mut pod: Pod) -> Pod {
    pod.status.as_mut().expect("status").conditions.as_mut().expect("conditions")[0].status = "False".into();
    pod
}

fn on_node(mut pod: Pod, node: &str) -> Pod {
    pod.spec.as_mut().expect("spec").node_name = (!node.is_empty()).then(|| node.to_owned());
    pod
}

fn deleting(mut pod: Pod) -> Pod {
    pod.metadata.deletion_timestamp = Some(Time(at(0)));
    pod
}

fn names(pods: &[PodRef]) -> Vec<&str> {
    pods.iter().map(|pod| pod.name.as_str()).collect()
}

// Missing pods are created (at most BURST_REPLICAS in one pass); surplus ones deleted; an
// exact count does nothing.
#[test]
fn creates_the_missing_and_deletes_the_surplus() {
    let pods = [pod("a", 0), pod("b", 1)];
    assert_eq!(decide(&replica_set(5), &pods, true), Plan { create: 3, ..Plan::default() });
    assert_eq!(decide(&replica_set(2), &pods, true), Plan::default());
    let plan = decide(&replica_set(1), &pods, true);
    assert_eq!((plan.create, names(&plan.delete)), (0, vec!["b"]));
    assert_eq!(decide(&replica_set(10_000), &[], true).create, BURST_REPLICAS);
}

// Pods being deleted, Succeeded or Failed do not count, so they are replaced.
#[test]
fn only_active_pods_count() {
    let pods = [
        pod("a", 0),
        deleting(pod("b", 1)),
        with_phase(pod("c", 2), "Succeeded"),
        with_phase(pod("d", 3), "Failed"),
    ];
    assert_eq!(decide(&replica_set(3), &pods, true).create, 2);
    let (status, _) = status(&replica_set(3), &pods, None, at(100));
    assert_eq!(status.replicas, 1);
}

// A matching orphan is adopted and counts; an owned pod that no longer matches is released and
// does not count; another controller's pod is left alone.
#[test]
fn claims_orphans_and_releases_strays() {
    let mut orphan = pod("orphan", 0);
    orphan.metadata.owner_references = None;
    let mut stray = pod("stray", 1);
    stray.metadata.labels = labels("db");
    let mut foreign = pod("foreign", 2);
    foreign.metadata.owner_references = Some(vec![OwnerReference { uid: "other".into(), ..owner() }]);
    let plan = decide(&replica_set(2), &[orphan, stray, foreign], true);
    assert_eq!(names(&plan.adopt), ["orphan"]);
    assert_eq!(names(&plan.release), ["stray"]);
    assert_eq!(plan.create, 1);
}

// While the last pass's creates or deletes are unseen, only claiming happens; once seen, or
// after EXPECTATIONS_TIMEOUT, the ReplicaSet acts again. A ReplicaSet being deleted never
// creates or deletes.
#[test]
fn expectations_hold_the_replica_set_back() {
    assert_eq!(decide(&replica_set(3), &[], false), Plan::default());
    let mut expected = Expectations::new(2, ["uid-a".to_owned()].into(), at(0));
    assert!(!expected.satisfied(at(10)));
    expected.creation_observed();
    expected.creations_lowered(5);
    assert!(!expected.satisfied(at(10)));
    expected.deletion_observed("uid-a");
    assert!(expected.satisfied(at(10)));
    let stale = Expectations::new(1, BTreeSet::new(), at(0));
    assert!(!stale.satisfied(at(300)));
    assert!(stale.satisfied(at(301)));
    let mut going = replica_set(3);
    going.metadata.deletion_timestamp = Some(Time(at(0)));
    assert_eq!(decide(&going, &[], true), Plan::default());
}

// Creates go in batches of 1, 2, 4, … and the rest.
#[test]
fn slow_start_doubles_batches() {
    assert_eq!(slow_start_batches(0), Vec::<usize>::new());
    assert_eq!(slow_start_batches(1), [1]);
    assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
    assert_eq!(slow_start_batches(15), [1, 2, 4, 8]);
}

// Each of upstream's deletion preferences, one pair at a time: the first pod of each pair is
// the one deleted first.
#[test]
fn deletion_prefers_the_least_valuable_pods() {
    let mut costly = pod("costly", 0);
    costly.metadata.annotations = Some([(DELETION_COST_ANNOTATION.to_owned(), "10".to_owned())].into());
    let mut restarted = pod("restarted", 0);
    restarted.status.as_mut().expect("status").container_statuses =
        Some(vec![ContainerStatus { restart_count: 4, ..ContainerStatus::default() }]);
    let mut ready_later = pod("ready-later", 0);
    ready_later.status.as_mut().expect("status").conditions.as_mut().expect("conditions")[0]
        .last_transition_time = Some(Time(at(50)));
    let pairs: [(Pod, Pod); 7] = [
        (on_node(pod("unassigned", 0), ""), pod("assigned", 0)),
        (with_phase(pod("pending", 0), "Pending"), with_phase(pod("unknown", 0), "Unknown")),
        (with_phase(pod("unknown", 0), "Unknown"), pod("running", 0)),
        (unready(pod("unready", 0)), pod("ready", 0)),
        (pod("cheap", 0), costly),
        (ready_later, pod("ready-earlier", 0)),
        (restarted, pod("steady", 0)),
    ];
    for (first, second) in pairs {
        for pods in [[&first, &second], [&second, &first]] {
            let order: Vec<&str> = deletion_order(&pods)
                .iter()
                .map(|pod| pod.metadata.name.as_deref().unwrap_or_default())
                .collect();
            assert_eq!(order[0], first.metadata.name.as_deref().unwrap_or_default(), "{order:?}");
        }
    }
    // Newer before older, all else equal (same readiness time).
    let mut newer = pod("newer", 5);
    newer.status = pod("older", 0).status;
    let older = pod("older", 0);
    assert_eq!(deletion_order(&[&older, &newer])[0].metadata.name.as_deref(), Some("newer"));
    // Pods doubled up on a node go before a pod alone on its node.
    let (alone, crowded_a, crowded_b) =
        (on_node(pod("alone", 0), "n2"), pod("crowded-a", 0), pod("crowded-b", 0));
    let order = deletion_order(&[&alone, &crowded_a, &crowded_b]);
    assert_eq!(order[2].metadata.name.as_deref(), Some("alone"));
}

// The status counts active owned pods, those carrying the template's labels, the Ready ones
// and those Ready for minReadySeconds, says when the next becomes available, and records the
// generation it saw.
#[test]
fn status_counts_ready_and_available_pods() {
    let mut replica_set = replica_set(4);
    replica_set.spec.as_mut().expect("spec").min_ready_seconds = Some(10);
    let mut partly_labeled = pod("partly", 0);
    partly_labeled.metadata.labels.as_mut().expect("labels").insert("extra".into(), "x".into());
    replica_set.spec.as_mut().expect("spec").template.as_mut().expect("template").metadata =
        Some(ObjectMeta {
            labels: Some([("app".into(), "web".into()), ("extra".into(), "x".into())].into()),
            ..ObjectMeta::default()
        });
    let pods = [partly_labeled, pod("young", 15), unready(pod("unready", 0)), pod("old", 0)];
    let (status, requeue) = status(&replica_set, &pods, None, at(20));
    assert_eq!(status.replicas, 4);
    assert_eq!(status.fully_labeled_replicas, Some(1));
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.available_replicas, Some(2), "young has been Ready 4 s of 10");
    assert_eq!(requeue, Some(Duration::from_secs(6)));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.conditions, None);
}

// A failed create sets ReplicaFailure (keeping its first transition time while it lasts);
// a pass without failure removes it.
#[test]
fn replica_failure_condition_follows_the_last_pass() {
    let failure = ReplicaFailure { reason: "FailedCreate".into(), message: "quota".into() };
    let (failed, _) = status(&replica_set(1), &[], Some(&failure), at(5));
    let condition = failed.conditions.clone().expect("conditions").remove(0);
    assert_eq!((condition.type_.as_str(), condition.status.as_str()), (REPLICA_FAILURE, "True"));
    assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
    let mut still = replica_set(1);
    still.status = Some(failed.clone());
    let (again, _) = status(&still, &[], Some(&failure), at(9));
    assert_eq!(again.conditions, failed.conditions);
    let (recovered, _) = status(&still, &[], None, at(9));
    assert_eq!(recovered.conditions, None);
}
