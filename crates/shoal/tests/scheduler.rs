//! The scheduler end to end: a 3-server cluster with two small agents (2 CPUs, 2 GiB, 20 pods
//! each) and bare pods without `spec.nodeName`, created through kube-rs. The leading server's
//! scheduler binds them, the agents run them, and a pod that fits nowhere stays Pending with
//! kube-scheduler's message.

mod common;

use std::collections::BTreeMap;

use common::wait_until;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Small nodes, so that a pod asking for 3 CPUs fits neither.
const AGENT_ARGS: [&str; 6] = ["--cpus", "2", "--memory-mib", "2048", "--max-pods", "20"];
const AGENTS: [&str; 2] = ["a1", "a2"];

/// One cluster of this suite at a time (see tests/agent.rs: several at once on a 2-core
/// machine can starve a Raft election).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster_with_agents() -> (common::TestCluster, Client, tokio::sync::MutexGuard<'static, ()>) {
    let turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &[]).await;
    for (i, name) in AGENTS.iter().enumerate() {
        cluster.start_agent(name, i, &AGENT_ARGS).await.expect("starting an agent");
    }
    let client = cluster.admin_client(0).await.expect("admin client");
    let nodes: Api<Node> = Api::all(client.clone());
    for name in AGENTS {
        wait_until(&format!("node {name} Ready"), || async {
            let node = nodes.get_opt(name).await.ok().flatten()?;
            let conditions = node.status?.conditions?;
            conditions
                .iter()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True")
                .then_some(())
        })
        .await;
    }
    (cluster, client, turn)
}

/// A pod without a node that sleeps, with `extra` fields merged into its spec and metadata.
fn pod(name: &str, metadata: serde_json::Value, spec: serde_json::Value) -> Pod {
    let mut object = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{ "name": "main", "image": "host", "command": ["/bin/sh", "-c", "sleep 3600"] }],
        },
    });
    for (section, extra) in [("metadata", metadata), ("spec", spec)] {
        if let serde_json::Value::Object(fields) = extra {
            for (key, value) in fields {
                object[section][key] = value;
            }
        }
    }
    serde_json::from_value(object).expect("a valid pod")
}

async fn create(pods: &Api<Pod>, pod: Pod) {
    pods.create(&PostParams::default(), &pod).await.expect("creating the pod");
}

/// The node `name` is bound to, once it is.
async fn wait_bound(pods: &Api<Pod>, name: &str) -> String {
    wait_until(&format!("pod {name} bound"), || async {
        pods.get_opt(name).await.ok().flatten()?.spec?.node_name
    })
    .await
}

fn pod_scheduled(pod: &Pod) -> Option<(String, String, String)> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let condition = conditions.iter().find(|condition| condition.type_ == "PodScheduled")?;
    Some((condition.status.clone(), condition.reason.clone()?, condition.message.clone()?))
}

/// The message of `name`'s PodScheduled=False/Unschedulable condition once it has one.
async fn wait_unschedulable(pods: &Api<Pod>, name: &str) -> String {
    wait_until(&format!("pod {name} unschedulable"), || async {
        let (status, reason, message) = pod_scheduled(&pods.get_opt(name).await.ok().flatten()?)?;
        (status == "False" && reason == "Unschedulable").then_some(message)
    })
    .await
}

/// Waits until an event about pod `name` with `reason` is listed; returns its message.
async fn wait_event(client: &Client, name: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_until(&format!("{reason} event for {name}"), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|event| {
            let about = event.involved_object.name.as_deref() == Some(name);
            let source = event.source.as_ref().and_then(|source| source.component.as_deref());
            (about && event.reason.as_deref() == Some(reason) && source == Some("default-scheduler"))
                .then(|| event.message.unwrap_or_default())
        })
    })
    .await
}

// Bare pods get a node and run; nodeSelector picks the node; a cordoned node takes no new pods
// (first shown by a pod pinned to it, whose message names both reasons); the replicas of one
// owner spread over the two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_placed_and_run() {
    let (_cluster, client, _turn) = cluster_with_agents().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    for name in ["free-1", "free-2"] {
        create(&pods, pod(name, json!({}), json!({}))).await;
    }
    for name in ["free-1", "free-2"] {
        let node = wait_bound(&pods, name).await;
        assert!(AGENTS.contains(&node.as_str()), "{name} is on {node}");
        wait_until(&format!("pod {name} Running"), || async {
            let status = pods.get_opt(name).await.ok().flatten()?.status?;
            (status.phase.as_deref() == Some("Running")).then_some(())
        })
        .await;
        let message = wait_event(&client, name, "Scheduled").await;
        assert_eq!(message, format!("Successfully assigned default/{name} to {node}"));
    }

    let pinned = json!({ "nodeSelector": { "kubernetes.io/hostname": "a2" } });
    create(&pods, pod("pinned", json!({}), pinned)).await;
    assert_eq!(wait_bound(&pods, "pinned").await, "a2");

    // Replicas of one owner (a ConfigMap stands in for a controller) spread: two on each node.
    let owners: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = owners
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"}})).expect("a ConfigMap"),
        )
        .await
        .expect("creating the owner");
    let reference = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "web",
        "uid": owner.metadata.uid.expect("a uid"), "controller": true,
    }]);
    let replicas = ["web-1", "web-2", "web-3", "web-4"];
    for name in replicas {
        create(&pods, pod(name, json!({ "ownerReferences": reference }), json!({}))).await;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for name in replicas {
        *per_node.entry(wait_bound(&pods, name).await).or_default() += 1;
    }
    assert_eq!(per_node, BTreeMap::from([("a1".to_owned(), 2), ("a2".to_owned(), 2)]));

    // Cordon a1. Once a pod pinned to a1 reports the cordon, the scheduler has seen it, and
    // every new pod goes to a2.
    let nodes: Api<Node> = Api::all(client.clone());
    let cordon = json!({ "spec": { "unschedulable": true } });
    nodes.patch("a1", &PatchParams::default(), &Patch::Merge(&cordon)).await.expect("cordoning a1");
    let to_a1 = json!({ "nodeSelector": { "kubernetes.io/hostname": "a1" } });
    create(&pods, pod("pinned-to-cordoned", json!({}), to_a1)).await;
    assert_eq!(
        wait_unschedulable(&pods, "pinned-to-cordoned").await,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) were unschedulable."
    );
    for name in ["after-cordon-1", "after-cordon-2", "after-cordon-3"] {
        create(&pods, pod(name, json!({}), json!({}))).await;
    }
    for name in ["after-cordon-1", "after-cordon-2", "after-cordon-3"] {
        assert_eq!(wait_bound(&pods, name).await, "a2", "{name} went to the cordoned node");
    }

    // Uncordoned, a1 takes the pod that waited for it.
    let uncordon = json!({ "spec": { "unschedulable": null } });
    nodes.patch("a1", &PatchParams::default(), &Patch::Merge(&uncordon)).await.expect("uncordoning a1");
    assert_eq!(wait_bound(&pods, "pinned-to-cordoned").await, "a1");
}

// A pod asking for more CPU than any node has stays Pending and unbound, with PodScheduled
// False, reason Unschedulable and kube-scheduler's message, and a FailedScheduling event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfit_pod_stays_pending_with_the_reason() {
    let (_cluster, client, _turn) = cluster_with_agents().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let big = json!({ "containers": [{
        "name": "main", "image": "host", "command": ["/bin/sh", "-c", "sleep 3600"],
        "resources": { "requests": { "cpu": "3" } },
    }] });
    create(&pods, pod("big", json!({}), big)).await;
    let expected = "0/2 nodes are available: 2 Insufficient cpu.";
    assert_eq!(wait_unschedulable(&pods, "big").await, expected);
    assert_eq!(wait_event(&client, "big", "FailedScheduling").await, expected);
    let pod = pods.get("big").await.expect("reading the pod");
    assert_eq!(pod.spec.and_then(|spec| spec.node_name), None);
    assert_eq!(pod.status.and_then(|status| status.phase).as_deref(), Some("Pending"));
}

// The path of `shoal bench scheduler`, small: servers without the node lifecycle controller,
// 20 hollow nodes (Node objects that report Ready, with no agent behind them) and 100 bare pods
// created by 8 concurrent writers. Every pod gets bound, on a hollow node, no node past its
// allocatable CPU, memory or pod count, and the pods spread: every node takes some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_take_every_pod_within_allocatable() {
    use shoal::bench::scheduler::{
        NODE_CPU, NODE_MEMORY, NODE_PODS, POD_CPU, POD_MEMORY, SERVER_ARGS, bench_pod, create_hollow_nodes,
        hollow_node_name,
    };
    const NODES: usize = 20;
    const PODS: usize = 100;
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = common::start_cluster(3, &SERVER_ARGS).await;
    let mut clients = Vec::new();
    for i in 0..cluster.len() {
        clients.push(cluster.admin_client(i).await.expect("admin client"));
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(clients[0].clone());
    wait_until("the default namespace", || async { namespaces.get_opt("default").await.ok().flatten() })
        .await;
    create_hollow_nodes(&clients, NODES, 8).await.expect("creating the hollow nodes");
    for i in 0..PODS {
        let pods: Api<Pod> = Api::namespaced(clients[i % clients.len()].clone(), "default");
        create(&pods, bench_pod(&format!("bench-{i}"))).await;
    }

    let pods: Api<Pod> = Api::namespaced(clients[0].clone(), "default");
    let placed = wait_until("every pod bound", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let nodes: Vec<String> = list.items.into_iter().filter_map(|pod| pod.spec?.node_name).collect();
        (nodes.len() == PODS).then_some(nodes)
    })
    .await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for node in placed {
        *per_node.entry(node).or_default() += 1;
    }
    let hollow: Vec<String> = (0..NODES).map(hollow_node_name).collect();
    assert_eq!(
        per_node.keys().cloned().collect::<Vec<_>>(),
        hollow,
        "every pod on a hollow node, every node used"
    );
    let quantity = |text: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(text.to_owned());
    let millis = |text: &str| shoal_scheduler::quantity::millis(&quantity(text)).expect("a quantity");
    let bytes = |text: &str| shoal_scheduler::quantity::units(&quantity(text)).expect("a quantity");
    for (node, count) in per_node {
        let count = i64::try_from(count).expect("a small count");
        assert!(count <= bytes(NODE_PODS), "{node} holds {count} pods");
        assert!(count * millis(POD_CPU) <= millis(NODE_CPU), "{node}: {count} pods' CPU");
        assert!(count * bytes(POD_MEMORY) <= bytes(NODE_MEMORY), "{node}: {count} pods' memory");
    }
}
