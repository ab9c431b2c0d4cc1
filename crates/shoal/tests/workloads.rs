//! Deployments and ReplicaSets end to end: a 3-server cluster, one agent running the pods
//! (bound by `nodeName` in the template, the scheduler being absent), and the real `kubectl`
//! driving rollouts the way users do: `rollout status`, `set image`, `rollout history`,
//! `rollout undo`, `pause`/`resume`, `restart`, `scale`, deleting pods and the Deployment;
//! and through kube-rs, a bare ReplicaSet claiming pods and a Recreate rollout.
//!
//! Without kubectl on `PATH` the kubectl test prints why it skips, unless
//! `SHOAL_REQUIRE_TOOLS=1`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

/// How long any one expected state may take to appear on a busy 2-core machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One cluster of this suite at a time, as in the agent suite.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The Deployment the tests roll: 3 replicas on node a1, a readiness probe that passes after
/// a second, at most one pod unavailable and one extra during a rollout.
const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    kubernetes.io/change-cause: first
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      nodeName: a1
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: host
        command: ["/bin/sh", "-c", "exec sleep 100000"]
        readinessProbe:
          exec: {command: ["/bin/sh", "-c", "true"]}
          initialDelaySeconds: 1
          periodSeconds: 1
"#;

// A Deployment rolls out and `rollout status` returns; `set image` rolls a new ReplicaSet out
// while a watch of the pods checks that ready pods never drop below replicas - maxUnavailable;
// `rollout history` lists the revisions and `rollout undo` brings the first template back as a
// new revision of its old ReplicaSet; a paused Deployment makes no new ReplicaSet until
// resumed; `rollout restart` and `scale` roll and resize; a deleted pod is replaced; deleting
// the Deployment removes its ReplicaSets and pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rollouts_with_kubectl() {
    let Some(exe) = common::tool_or_skip(
        "kubectl",
        "https://kubernetes.io/docs/tasks/tools/",
        "deployment_rollouts_with_kubectl",
    ) else {
        return;
    };
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &[]).await;
    cluster.start_agent("a1", 0, &[]).await.expect("starting the agent");
    let client = cluster.admin_client(0).await.expect("admin client");
    wait_node_ready(&client, "a1").await;
    let kubectl = common::Kubectl::new(&exe, &cluster);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    kubectl.ok(&["apply", "-f", "-"], Some(DEPLOYMENT)).await;
    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=120s"], None).await;
    assert!(status.contains("deployment \"web\" successfully rolled out"), "{status}");
    let first = only_active_replica_set(&replica_sets).await;
    assert_eq!(annotation(&first, "deployment.kubernetes.io/revision"), Some("1"));
    assert_eq!(ready_pods(&pods).await, 3);

    // The rolling update, watched: ready pods that are not being deleted, after every event.
    let low_water = Arc::new(Mutex::new(usize::MAX));
    let (listed, first_list) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(record_ready_minimum(pods.clone(), low_water.clone(), listed));
    first_list.await.expect("the watch lists the pods before the rollout starts");
    kubectl.ok(&["set", "image", "deployment/web", "main=host:v2"], None).await;
    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=120s"], None).await;
    assert!(status.contains("successfully rolled out"), "{status}");
    watch.abort();
    let lowest = *low_water.lock().expect("low water");
    assert!(lowest >= 2, "ready pods dropped to {lowest}, below 3 - maxUnavailable");
    let second = only_active_replica_set(&replica_sets).await;
    assert_ne!(second.metadata.name, first.metadata.name);
    assert_eq!(annotation(&second, "deployment.kubernetes.io/revision"), Some("2"));
    let deployment = deployments.get("web").await.expect("the deployment");
    let events =
        kubectl.ok(&["get", "events", "--field-selector", "involvedObject.kind=Deployment"], None).await;
    assert!(events.contains("ScalingReplicaSet"), "{events}");
    assert_eq!(
        deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .map(String::as_str),
        Some("2")
    );

    let history = kubectl.ok(&["rollout", "history", "deployment/web"], None).await;
    let revisions: Vec<&str> =
        history.lines().skip(2).filter_map(|line| line.split_whitespace().next()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    kubectl.ok(&["rollout", "undo", "deployment/web"], None).await;
    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=120s"], None).await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let undone = only_active_replica_set(&replica_sets).await;
    assert_eq!(undone.metadata.name, first.metadata.name, "undo reuses the first ReplicaSet");
    assert_eq!(annotation(&undone, "deployment.kubernetes.io/revision"), Some("3"));
    assert_eq!(annotation(&undone, "deployment.kubernetes.io/revision-history"), Some("1"));

    // Paused: a new template is recorded but not rolled out.
    kubectl.ok(&["rollout", "pause", "deployment/web"], None).await;
    kubectl.ok(&["set", "image", "deployment/web", "main=host:v3"], None).await;
    wait_until("the paused deployment observed", || async {
        let deployment = deployments.get("web").await.ok()?;
        let status = deployment.status?;
        let observed = status.observed_generation? >= deployment.metadata.generation?;
        let paused = status.conditions?.iter().any(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        (observed && paused).then_some(())
    })
    .await;
    assert_eq!(replica_sets.list(&ListParams::default()).await.expect("replica sets").items.len(), 2);
    kubectl.ok(&["rollout", "resume", "deployment/web"], None).await;
    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=120s"], None).await;
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(replica_sets.list(&ListParams::default()).await.expect("replica sets").items.len(), 3);

    let before_restart = only_active_replica_set(&replica_sets).await;
    kubectl.ok(&["rollout", "restart", "deployment/web"], None).await;
    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=120s"], None).await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let restarted = only_active_replica_set(&replica_sets).await;
    assert_ne!(restarted.metadata.name, before_restart.metadata.name);

    kubectl.ok(&["scale", "deployment/web", "--replicas=5"], None).await;
    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=120s"], None).await;
    assert!(status.contains("successfully rolled out"), "{status}");
    wait_until("5 ready pods", || async { (ready_pods(&pods).await == 5).then_some(()) }).await;

    // A deleted pod is replaced by a new one.
    let victim = active_pod_names(&pods).await.into_iter().next().expect("a pod");
    kubectl.ok(&["delete", "pod", &victim, "--wait=false"], None).await;
    wait_until("the deleted pod replaced", || async {
        let names = active_pod_names(&pods).await;
        (names.len() == 5 && !names.contains(&victim) && ready_pods(&pods).await == 5).then_some(())
    })
    .await;

    kubectl.ok(&["delete", "deployment", "web"], None).await;
    wait_until("the replica sets and pods gone", || async {
        let sets = replica_sets.list(&ListParams::default()).await.ok()?.items.len();
        let left = pods.list(&ListParams::default()).await.ok()?.items.len();
        (sets == 0 && left == 0).then_some(())
    })
    .await;
}

// A bare ReplicaSet adopts a matching orphan pod and counts it, releases a pod relabelled out
// of its selector and replaces it; a Recreate Deployment's update has no pod of the new
// template exist while one of the old one does (checked by a watch of the pods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sets_claim_pods_and_recreate_never_overlaps() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &[]).await;
    cluster.start_agent("a1", 0, &[]).await.expect("starting the agent");
    let client = cluster.admin_client(0).await.expect("admin client");
    wait_node_ready(&client, "a1").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let container =
        json!([{ "name": "main", "image": "host", "command": ["/bin/sh", "-c", "exec sleep 100000"] }]);
    let pod_spec = json!({ "nodeName": "a1", "terminationGracePeriodSeconds": 1, "containers": container });

    let orphan: Pod = serde_json::from_value(json!({
        "metadata": { "name": "orphan", "labels": { "app": "solo" } }, "spec": pod_spec,
    }))
    .expect("a pod");
    pods.create(&PostParams::default(), &orphan).await.expect("creating the orphan");
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "solo" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "solo" } },
            "template": { "metadata": { "labels": { "app": "solo" } }, "spec": pod_spec },
        },
    }))
    .expect("a replica set");
    let created = replica_sets.create(&PostParams::default(), &replica_set).await.expect("creating it");
    let uid = created.metadata.uid.clone().expect("a uid");
    let solo = ListParams::default().labels("app=solo");
    wait_until("the orphan adopted and one pod added, both ready", || async {
        let adopted = pods.get("orphan").await.ok()?;
        let owner =
            adopted.metadata.owner_references?.into_iter().find(|owner| owner.controller == Some(true))?;
        let status = replica_sets.get("solo").await.ok()?.status?;
        let count = pods.list(&solo).await.ok()?.items.len();
        (owner.uid == uid
            && owner.block_owner_deletion == Some(true)
            && count == 2
            && status.ready_replicas == Some(2))
        .then_some(())
    })
    .await;
    let relabel = json!({ "metadata": { "labels": { "app": "elsewhere" } } });
    pods.patch("orphan", &PatchParams::default(), &Patch::Merge(&relabel)).await.expect("relabelling");
    wait_until("the relabelled pod released and replaced", || async {
        let released = pods.get("orphan").await.ok()?;
        let count = pods.list(&solo).await.ok()?.items.len();
        (released.metadata.owner_references.unwrap_or_default().is_empty() && count == 2).then_some(())
    })
    .await;

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "batch" },
        "spec": {
            "replicas": 2,
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": { "app": "batch" } },
            "template": { "metadata": { "labels": { "app": "batch" } }, "spec": pod_spec },
        },
    }))
    .expect("a deployment");
    deployments.create(&PostParams::default(), &deployment).await.expect("creating the deployment");
    wait_rolled_out(&deployments, "batch").await;
    let templates = Arc::new(Mutex::new(Templates::default()));
    let (listed, first_list) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(record_template_overlap(pods.clone(), templates.clone(), listed));
    first_list.await.expect("the watch lists the pods before the template changes");
    let change = json!({ "spec": { "template": { "metadata": { "annotations": { "version": "2" } } } } });
    deployments.patch("batch", &PatchParams::default(), &Patch::Merge(&change)).await.expect("changing it");
    wait_until("a second replica set", || async {
        let list = replica_sets.list(&ListParams::default().labels("app=batch")).await.ok()?;
        (list.items.len() == 2).then_some(())
    })
    .await;
    wait_rolled_out(&deployments, "batch").await;
    watch.abort();
    let templates = templates.lock().expect("templates");
    assert_eq!(templates.seen.len(), 2, "the watch saw the pods of both templates: {templates:?}");
    assert_eq!(templates.overlap, None, "pods of two templates existed at once");
}

/// Waits until the Deployment's status says its rollout is complete, as `rollout status` does.
async fn wait_rolled_out(deployments: &Api<Deployment>, name: &str) {
    wait_until("the rollout complete", || async {
        let deployment = deployments.get(name).await.ok()?;
        let wanted = deployment.spec.as_ref()?.replicas?;
        let status = deployment.status?;
        let done = status.observed_generation? >= deployment.metadata.generation?
            && status.updated_replicas == Some(wanted)
            && status.replicas == Some(wanted)
            && status.available_replicas == Some(wanted);
        done.then_some(())
    })
    .await;
}

/// Told once a recorder's watch has listed the pods for the first time.
type Listed = tokio::sync::oneshot::Sender<()>;

/// What the watch of a Recreate rollout saw.
#[derive(Debug, Default)]
struct Templates {
    /// Every pod-template-hash seen.
    seen: std::collections::BTreeSet<String>,
    /// The hashes of the first moment that pods of two templates existed at once.
    overlap: Option<(String, String)>,
}

/// Records in `templates` the templates of the pods labelled app=batch, and whether pods of two
/// of them ever exist at once (terminating ones included).
async fn record_template_overlap(pods: Api<Pod>, templates: Arc<Mutex<Templates>>, listed: Listed) {
    let mut listed = Some(listed);
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut listing = false;
    let config = watcher::Config::default().labels("app=batch");
    let mut events = std::pin::pin!(watcher(pods, config));
    let hash =
        |pod: &Pod| pod.metadata.labels.as_ref().and_then(|labels| labels.get("pod-template-hash").cloned());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => {
                listing = true;
                hashes.clear();
            }
            Ok(watcher::Event::InitDone) => {
                listing = false;
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
            }
            Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => {
                let hash = hash(&pod).unwrap_or_default();
                templates.lock().expect("templates").seen.insert(hash.clone());
                hashes.insert(pod.metadata.name.clone().unwrap_or_default(), hash);
            }
            Ok(watcher::Event::Delete(pod)) => {
                hashes.remove(pod.metadata.name.as_deref().unwrap_or_default());
            }
            Err(_) => continue,
        }
        let distinct: std::collections::BTreeSet<&String> = hashes.values().collect();
        if !listing && distinct.len() > 1 {
            let mut two = distinct.into_iter();
            let pair = (two.next().cloned().unwrap_or_default(), two.next().cloned().unwrap_or_default());
            templates.lock().expect("templates").overlap.get_or_insert(pair);
        }
    }
}

/// Keeps `low_water` at the fewest ready, not-terminating pods seen after any pod event.
async fn record_ready_minimum(pods: Api<Pod>, low_water: Arc<Mutex<usize>>, listed: Listed) {
    let mut listed = Some(listed);
    let mut ready: BTreeMap<String, bool> = BTreeMap::new();
    // A (re)list is counted once complete: halfway through it only some pods are known.
    let mut listing = false;
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()));
    while let Some(event) = events.next().await {
        let ready_now = |pod: &Pod| is_ready(pod) && pod.metadata.deletion_timestamp.is_none();
        match event {
            Ok(watcher::Event::Init) => {
                listing = true;
                ready.clear();
            }
            Ok(watcher::Event::InitApply(pod)) => {
                ready.insert(pod.metadata.name.clone().unwrap_or_default(), ready_now(&pod));
            }
            Ok(watcher::Event::InitDone) => {
                listing = false;
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
            }
            Ok(watcher::Event::Apply(pod)) => {
                ready.insert(pod.metadata.name.clone().unwrap_or_default(), ready_now(&pod));
            }
            Ok(watcher::Event::Delete(pod)) => {
                ready.remove(pod.metadata.name.as_deref().unwrap_or_default());
            }
            Err(_) => continue,
        }
        if listing {
            continue;
        }
        let count = ready.values().filter(|ready| **ready).count();
        let mut lowest = low_water.lock().expect("low water");
        *lowest = (*lowest).min(count);
    }
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.into_iter().flatten().any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

async fn ready_pods(pods: &Api<Pod>) -> usize {
    let list = pods.list(&ListParams::default()).await.expect("listing pods");
    list.items.iter().filter(|pod| is_ready(pod) && pod.metadata.deletion_timestamp.is_none()).count()
}

async fn active_pod_names(pods: &Api<Pod>) -> Vec<String> {
    let list = pods.list(&ListParams::default()).await.expect("listing pods");
    list.items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| pod.metadata.name)
        .collect()
}

/// The one ReplicaSet with replicas, once the others are scaled to zero.
async fn only_active_replica_set(replica_sets: &Api<ReplicaSet>) -> ReplicaSet {
    wait_until("one active replica set", || async {
        let list = replica_sets.list(&ListParams::default()).await.ok()?;
        let mut active: Vec<ReplicaSet> = list
            .items
            .into_iter()
            .filter(|rs| rs.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(0) > 0)
            .collect();
        (active.len() == 1).then(|| active.remove(0))
    })
    .await
}

fn annotation<'a>(replica_set: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    replica_set.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

async fn wait_node_ready(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_until("the node Ready", || async {
        let node = nodes.get_opt(name).await.ok().flatten()?;
        let ready = node.status?.conditions?.into_iter().find(|condition| condition.type_ == "Ready")?;
        (ready.status == "True").then_some(())
    })
    .await;
}

/// Polls `check` until it returns `Some`, failing the test after `SETTLE_TIMEOUT`.
async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    common::wait_until_within(what, SETTLE_TIMEOUT, check).await
}
