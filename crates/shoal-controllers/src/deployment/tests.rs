//! The Deployment controller's decisions, pass by pass, on small sets of ReplicaSets: what a
//! rollout creates and scales, in which order, with which annotations, events and status.

use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::template::{POD_TEMPLATE_HASH_LABEL, template_hash};
use super::*;
use crate::ownership::controller_reference;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("a valid time")
}

fn app_labels() -> BTreeMap<String, String> {
    [("app".to_owned(), "web".to_owned())].into()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(app_labels()), ..ObjectMeta::default() }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

/// Deployment `web` (uid `d`, generation 1) of `replicas` pods of `image`, RollingUpdate with
/// maxSurge 1 and maxUnavailable 1.
fn deployment(replicas: i32, image: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(app_labels()), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            template: template(image),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn recreate(mut deployment: Deployment) -> Deployment {
    deployment.spec.as_mut().expect("spec").strategy =
        Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
    deployment
}

/// The ReplicaSet of `image`'s template, owned by `web`, at `revision`, with `replicas` all
/// available (`available` of them), created at `at(created)`, sized for `desired`.
fn replica_set(image: &str, revision: i64, replicas: i32, available: i32, created: i64) -> ReplicaSet {
    let mut template = template(image);
    let hash = template_hash(&template, None);
    template
        .metadata
        .as_mut()
        .expect("metadata")
        .labels
        .as_mut()
        .expect("labels")
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let annotations: BTreeMap<String, String> = [
        (REVISION_ANNOTATION.to_owned(), revision.to_string()),
        (DESIRED_REPLICAS_ANNOTATION.to_owned(), "3".to_owned()),
        (MAX_REPLICAS_ANNOTATION.to_owned(), "4".to_owned()),
    ]
    .into();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("web-{hash}")),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{image}")),
            resource_version: Some("7".into()),
            generation: Some(1),
            annotations: Some(annotations),
            labels: template.metadata.as_ref().and_then(|metadata| metadata.labels.clone()),
            owner_references: Some(vec![controller_reference(
                "apps/v1",
                "Deployment",
                &deployment(3, image).metadata,
            )]),
            creation_timestamp: Some(Time(at(created))),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: None,
            selector: LabelSelector {
                match_labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..LabelSelector::default()
            },
            template: Some(template),
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            observed_generation: Some(1),
            ..ReplicaSetStatus::default()
        }),
    }
}

fn sized_for(mut replica_set: ReplicaSet, desired: i32, max: i32) -> ReplicaSet {
    let annotations = replica_set.metadata.annotations.as_mut().expect("annotations");
    annotations.insert(DESIRED_REPLICAS_ANNOTATION.into(), desired.to_string());
    annotations.insert(MAX_REPLICAS_ANNOTATION.into(), max.to_string());
    replica_set
}

/// The ReplicaSet writes of a decision: (name, replicas, event) per create or update.
fn scaled(decision: &Decision) -> Vec<(String, i32, Option<String>)> {
    decision
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::Create { replica_set, event } | Write::Update { replica_set, event } => Some((
                replica_set.metadata.name.clone().unwrap_or_default(),
                replicas_of(replica_set),
                event.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn status_of(decision: &Decision) -> DeploymentStatus {
    decision
        .writes
        .iter()
        .find_map(|write| match write {
            Write::Status(status) => Some(status.clone()),
            _ => None,
        })
        .expect("a status write")
}

fn reason(status: &DeploymentStatus, type_: &str) -> Option<String> {
    condition(status, type_).and_then(|condition| condition.reason.clone())
}

fn name(image: &str) -> String {
    format!("web-{}", template_hash(&template(image), None))
}

// maxSurge rounds up and maxUnavailable down; both zero would stall, so one may be unavailable.
#[test]
fn surge_rounds_up_and_unavailability_down() {
    let mut percent = deployment(3, "v1");
    percent.spec.as_mut().expect("spec").strategy.as_mut().expect("strategy").rolling_update = None;
    assert_eq!(surge_and_unavailable(&percent), (1, 0), "25% of 3");
    percent.spec.as_mut().expect("spec").replicas = Some(10);
    assert_eq!(surge_and_unavailable(&percent), (3, 2), "25% of 10");
    let mut zero = deployment(3, "v1");
    zero.spec.as_mut().expect("spec").strategy.as_mut().expect("strategy").rolling_update =
        Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::String("0%".into())),
        });
    assert_eq!(surge_and_unavailable(&zero), (0, 1));
    assert_eq!(
        (max_surge(&recreate(deployment(3, "v1"))), max_unavailable(&recreate(deployment(3, "v1")))),
        (0, 0)
    );
}

// A new Deployment gets a ReplicaSet named and selected by its template hash, owned by it, at
// revision 1 with the replica annotations, scaled to spec.replicas at once (nothing else runs);
// the Deployment gets revision 1 and the NewReplicaSetCreated condition.
#[test]
fn a_new_deployment_creates_its_first_replica_set() {
    let decision = decide(&deployment(3, "v1"), &[], &[], at(0));
    let Write::Create { replica_set, event } = &decision.writes[0] else { panic!("{:?}", decision.writes) };
    let hash = template_hash(&template("v1"), None);
    assert_eq!(replica_set.metadata.name.as_deref(), Some(name("v1").as_str()));
    let labels = replica_set
        .spec
        .as_ref()
        .and_then(|spec| spec.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert_eq!(labels.get(POD_TEMPLATE_HASH_LABEL), Some(&hash));
    let selector = &replica_set.spec.as_ref().expect("spec").selector;
    assert_eq!(
        selector.match_labels.as_ref().and_then(|labels| labels.get(POD_TEMPLATE_HASH_LABEL)),
        Some(&hash)
    );
    let owner = &replica_set.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller, owner.block_owner_deletion),
        ("d", Some(true), Some(true))
    );
    assert_eq!(replicas_of(replica_set), 3);
    assert_eq!(annotation(replica_set, REVISION_ANNOTATION), Some("1"));
    assert_eq!(annotation(replica_set, DESIRED_REPLICAS_ANNOTATION), Some("3"));
    assert_eq!(annotation(replica_set, MAX_REPLICAS_ANNOTATION), Some("4"));
    assert_eq!(event.as_deref(), Some(format!("Scaled up replica set {} from 0 to 3", name("v1")).as_str()));
    assert_eq!(decision.writes[1], Write::Revision("1".into()));
    let status = status_of(&decision);
    assert_eq!(reason(&status, PROGRESSING).as_deref(), Some("NewReplicaSetCreated"));
    assert_eq!(reason(&status, AVAILABLE).as_deref(), Some("MinimumReplicasUnavailable"));
    assert_eq!(status.observed_generation, Some(1));
}

// A changed template rolls out pass by pass within the budget: the new ReplicaSet starts at
// the surge (1), old pods go while replicas - maxUnavailable stay available, and each scaling
// is a ScalingReplicaSet event.
#[test]
fn a_rolling_update_keeps_to_surge_and_unavailability() {
    let old = replica_set("v1", 1, 3, 3, 0);
    let first = decide(&deployment(3, "v2"), std::slice::from_ref(&old), &[], at(10));
    // As upstream, the same pass may also take one old pod away: 4 pods, 3 available, 2 needed.
    assert_eq!(
        scaled(&first),
        [
            (name("v2"), 1, Some(format!("Scaled up replica set {} from 0 to 1", name("v2")))),
            (name("v1"), 2, Some(format!("Scaled down replica set {} from 3 to 2", name("v1")))),
        ]
    );
    assert!(first.writes.contains(&Write::Revision("2".into())));
    let Write::Create { replica_set: new, .. } = &first.writes[0] else { panic!() };
    assert_eq!(annotation(new, REVISION_ANNOTATION), Some("2"));
    // The new pod is not available yet: 4 pods, 3 available, 2 must stay: one old may go.
    let new = replica_set("v2", 2, 1, 0, 10);
    let second = decide(&deployment(3, "v2"), &[old.clone(), new.clone()], &[], at(11));
    assert_eq!(
        scaled(&second),
        [(name("v1"), 2, Some(format!("Scaled down replica set {} from 3 to 2", name("v1"))))]
    );
    // Old at 2 (available), new at 1 unavailable: 3 pods, the new one may grow to 2.
    let old = replica_set("v1", 1, 2, 2, 0);
    let third = decide(&deployment(3, "v2"), &[old.clone(), new], &[], at(12));
    assert_eq!(
        scaled(&third),
        [(name("v2"), 2, Some(format!("Scaled up replica set {} from 1 to 2", name("v2"))))]
    );
    // Old at 2, new at 2 with none available: 2 available, nothing may go or come.
    let waiting = decide(&deployment(3, "v2"), &[old, replica_set("v2", 2, 2, 0, 10)], &[], at(13));
    assert_eq!(scaled(&waiting), []);
    let status = status_of(&waiting);
    assert_eq!(
        (status.replicas, status.updated_replicas, status.available_replicas, status.unavailable_replicas),
        (Some(4), Some(2), Some(2), Some(2))
    );
}

// Old pods that are not available are scaled away first, even beyond what the available
// budget alone would allow.
#[test]
fn unhealthy_old_pods_go_first() {
    let old = replica_set("v1", 1, 3, 1, 0);
    let new = replica_set("v2", 2, 1, 1, 10);
    let decision = decide(&deployment(3, "v2"), &[old, new], &[], at(20));
    assert_eq!(scaled(&decision)[0].1, 1, "the two unavailable old pods go");
}

// A finished rollout reports NewReplicaSetAvailable and Available, and then deletes the old
// scaled-down ReplicaSets beyond revisionHistoryLimit, lowest revision first.
#[test]
fn a_complete_rollout_cleans_up_old_revisions() {
    let mut deployment = deployment(3, "v4");
    deployment.spec.as_mut().expect("spec").revision_history_limit = Some(1);
    let sets = [
        replica_set("v1", 1, 0, 0, 0),
        replica_set("v2", 2, 0, 0, 1),
        replica_set("v3", 3, 0, 0, 2),
        replica_set("v4", 4, 3, 3, 3),
    ];
    let first = decide(&deployment, &sets, &[], at(30));
    let status = status_of(&first);
    assert_eq!(reason(&status, PROGRESSING).as_deref(), Some("NewReplicaSetAvailable"));
    assert_eq!(reason(&status, AVAILABLE).as_deref(), Some("MinimumReplicasAvailable"));
    deployment.status = Some(status);
    deployment.metadata.annotations = Some([(REVISION_ANNOTATION.to_owned(), "4".to_owned())].into());
    let second = decide(&deployment, &sets, &[], at(31));
    let deleted: Vec<String> = second
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::Delete(replica_set) => replica_set.metadata.name.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [name("v1"), name("v2")]);
}

// Undo: the Deployment's template is an old ReplicaSet's again, so that one becomes the new
// ReplicaSet under the next revision, remembering its earlier one; no ReplicaSet is created.
#[test]
fn rolling_back_revives_the_old_replica_set_under_a_new_revision() {
    let sets = [replica_set("v1", 1, 0, 0, 0), replica_set("v2", 2, 3, 3, 1)];
    let decision = decide(&deployment(3, "v1"), &sets, &[], at(40));
    let Write::Update { replica_set, .. } = &decision.writes[0] else { panic!("{:?}", decision.writes) };
    assert_eq!(replica_set.metadata.name.as_deref(), Some(name("v1").as_str()));
    assert_eq!(annotation(replica_set, REVISION_ANNOTATION), Some("3"));
    assert_eq!(annotation(replica_set, REVISION_HISTORY_ANNOTATION), Some("1"));
    assert_eq!(replicas_of(replica_set), 1, "scaled up within the surge in the same pass");
    assert!(decision.writes.contains(&Write::Revision("3".into())));
    assert!(!decision.writes.iter().any(|write| matches!(write, Write::Create { .. })));
}

// Scaling mid-rollout shares the new pods in proportion to the ReplicaSets' sizes (upstream's
// documented example: 10 → 15 with maxSurge 3 while 8 old and 5 new: 3 more old, 2 more new).
#[test]
fn scaling_mid_rollout_is_proportional() {
    let mut deployment = deployment(15, "v2");
    deployment.spec.as_mut().expect("spec").strategy.as_mut().expect("strategy").rolling_update =
        Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(3)),
            max_unavailable: Some(IntOrString::Int(2)),
        });
    let old = sized_for(replica_set("v1", 1, 8, 8, 0), 10, 13);
    let new = sized_for(replica_set("v2", 2, 5, 0, 10), 10, 13);
    let decision = decide(&deployment, &[old, new], &[], at(50));
    let mut sizes: Vec<(String, i32)> =
        scaled(&decision).into_iter().map(|(name, replicas, _)| (name, replicas)).collect();
    sizes.sort();
    let mut expected = vec![(name("v1"), 11), (name("v2"), 7)];
    expected.sort();
    assert_eq!(sizes, expected);
}

// A paused Deployment with a new template creates nothing and says DeploymentPaused; resumed,
// it says DeploymentResumed and rolls out.
#[test]
fn a_paused_deployment_waits() {
    let mut paused = deployment(3, "v2");
    paused.spec.as_mut().expect("spec").paused = Some(true);
    let sets = [replica_set("v1", 1, 3, 3, 0)];
    let decision = decide(&paused, &sets, &[], at(60));
    assert_eq!(scaled(&decision), []);
    let status = status_of(&decision);
    let progressing = condition(&status, PROGRESSING).expect("Progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("Unknown", Some("DeploymentPaused"))
    );
    let mut resumed = deployment(3, "v2");
    resumed.status = Some(status);
    let decision = decide(&resumed, &sets, &[], at(61));
    assert!(matches!(decision.writes[0], Write::Create { .. }));
    let status = status_of(&decision);
    assert_eq!(reason(&status, PROGRESSING).as_deref(), Some("NewReplicaSetCreated"));
}

// Recreate scales every old ReplicaSet to zero, waits while their pods still run, then creates
// the new one at full size.
#[test]
fn recreate_empties_before_it_creates() {
    let deployment = recreate(deployment(3, "v2"));
    let running = replica_set("v1", 1, 3, 3, 0);
    let first = decide(&deployment, &[running], &[], at(70));
    assert_eq!(
        scaled(&first),
        [(name("v1"), 0, Some(format!("Scaled down replica set {} from 3 to 0", name("v1"))))]
    );
    let mut emptied = replica_set("v1", 1, 0, 0, 0);
    let old_pod = Pod {
        metadata: ObjectMeta {
            owner_references: Some(vec![controller_reference("apps/v1", "ReplicaSet", &emptied.metadata)]),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus { phase: Some("Running".into()), ..PodStatus::default() }),
    };
    let waiting = decide(&deployment, std::slice::from_ref(&emptied), &[old_pod], at(71));
    assert_eq!(scaled(&waiting), []);
    emptied.status.as_mut().expect("status").replicas = 0;
    let creating = decide(&deployment, &[emptied], &[], at(72));
    assert_eq!(
        scaled(&creating),
        [(name("v2"), 3, Some(format!("Scaled up replica set {} from 0 to 3", name("v2"))))]
    );
}

// A rollout that makes no progress for progressDeadlineSeconds is ProgressDeadlineExceeded; the
// pass says when to look again before that.
#[test]
fn a_stuck_rollout_passes_its_deadline() {
    let mut deployment = deployment(3, "v2");
    deployment.spec.as_mut().expect("spec").progress_deadline_seconds = Some(60);
    let sets = [replica_set("v1", 1, 2, 2, 0), replica_set("v2", 2, 2, 0, 10)];
    let first = decide(&deployment, &sets, &[], at(100));
    let status = status_of(&first);
    assert_eq!(
        reason(&status, PROGRESSING).as_deref(),
        Some("ReplicaSetUpdated"),
        "more updated pods than the empty status"
    );
    assert_eq!(first.requeue_after, Some(Duration::from_secs(60)));
    deployment.status = Some(status);
    deployment.metadata.annotations = Some([(REVISION_ANNOTATION.to_owned(), "2".to_owned())].into());
    let later = decide(&deployment, &sets, &[], at(161));
    let status = status_of(&later);
    let progressing = condition(&status, PROGRESSING).expect("Progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
}

// collisionCount changes the hash, hence the new ReplicaSet's name; a matching orphan
// ReplicaSet is adopted and one that no longer matches is released.
#[test]
fn collisions_and_claims() {
    let mut collided = deployment(3, "v1");
    collided.status = Some(DeploymentStatus { collision_count: Some(1), ..DeploymentStatus::default() });
    let Write::Create { replica_set: created, .. } = &decide(&collided, &[], &[], at(0)).writes[0] else {
        panic!()
    };
    assert_eq!(
        created.metadata.name.as_deref(),
        Some(format!("web-{}", template_hash(&template("v1"), Some(1))).as_str())
    );
    let mut orphan = replica_set("v1", 1, 3, 3, 0);
    orphan.metadata.owner_references = None;
    let mut stray = replica_set("v0", 1, 0, 0, 0);
    stray.metadata.labels = Some([("app".to_owned(), "other".to_owned())].into());
    let decision = decide(&deployment(3, "v1"), &[orphan.clone(), stray.clone()], &[], at(0));
    assert_eq!(decision.writes[0], Write::Adopt(orphan));
    assert_eq!(decision.writes[1], Write::Release(stray));
    assert!(
        !decision.writes.iter().any(|write| matches!(write, Write::Create { .. })),
        "the adopted one is the new one"
    );
}

// `kubectl scale` with one active ReplicaSet resizes it at once (not through a rollout) and
// records the new size it was made for.
#[test]
fn scaling_resizes_the_one_active_replica_set() {
    let sets = [replica_set("v1", 1, 3, 3, 0)];
    let decision = decide(&deployment(5, "v1"), &sets, &[], at(80));
    let Some(Write::Update { replica_set, event }) =
        decision.writes.iter().find(|write| matches!(write, Write::Update { .. }))
    else {
        panic!("{:?}", decision.writes)
    };
    assert_eq!(replicas_of(replica_set), 5);
    assert_eq!(event.as_deref(), Some(format!("Scaled up replica set {} from 3 to 5", name("v1")).as_str()));
    assert_eq!(annotation(replica_set, DESIRED_REPLICAS_ANNOTATION), Some("5"));
    assert_eq!(annotation(replica_set, MAX_REPLICAS_ANNOTATION), Some("6"));
}

// minReadySeconds and the Deployment's own annotations (but not kubectl's or the controller's)
// follow onto the new ReplicaSet.
#[test]
fn the_new_replica_set_follows_min_ready_seconds_and_annotations() {
    let mut deployment = deployment(3, "v1");
    deployment.spec.as_mut().expect("spec").min_ready_seconds = Some(5);
    deployment.metadata.annotations = Some(
        [
            ("kubernetes.io/change-cause".to_owned(), "first".to_owned()),
            ("kubectl.kubernetes.io/last-applied-configuration".to_owned(), "{}".to_owned()),
        ]
        .into(),
    );
    let decision = decide(&deployment, &[replica_set("v1", 1, 3, 3, 0)], &[], at(90));
    let Some(Write::Update { replica_set, event }) =
        decision.writes.iter().find(|write| matches!(write, Write::Update { .. }))
    else {
        panic!("{:?}", decision.writes)
    };
    assert_eq!(replica_set.spec.as_ref().and_then(|spec| spec.min_ready_seconds), Some(5));
    assert_eq!(annotation(replica_set, "kubernetes.io/change-cause"), Some("first"));
    assert_eq!(annotation(replica_set, "kubectl.kubernetes.io/last-applied-configuration"), None);
    assert_eq!(annotation(replica_set, REVISION_ANNOTATION), Some("1"), "its revision stays");
    assert_eq!(*event, None, "not scaled");
}
