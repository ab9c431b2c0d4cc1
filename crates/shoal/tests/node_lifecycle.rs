//! Node lifecycle end to end: a 3-server cluster whose leader runs the node lifecycle
//! controller, and `shoal agent` processes as its nodes. An agent killed with SIGKILL stops
//! renewing its Lease: its Node turns Unknown and unreachable, its pods are evicted once their
//! default toleration runs out, and the taints go when the agent comes back. kubectl cordon,
//! uncordon and drain work as against Kubernetes.
//!
//! The times from the kill to each step are printed, not asserted: they depend on the machine.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::time::Instant;

/// How long any one expected state may take to appear on a busy 2-core machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long one kubectl command may run; drain waits for pods to stop.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);
/// The toleration every pod gets by default (`shoal server --default-toleration-seconds`).
const DEFAULT_TOLERATION_SECONDS: i64 = shoal_apiserver::admit::DEFAULT_TOLERATION_SECONDS;
/// The servers' flag for shoal's default toleration, which other tests lengthen.
const DEFAULT_TOLERATION: [&str; 2] = ["--default-toleration-seconds", "1"];
const _: () = assert!(DEFAULT_TOLERATION_SECONDS == 1, "DEFAULT_TOLERATION says 1");
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// One cluster of this suite at a time, as in the agent suite: clusters started at once on a
/// 2-core CI machine can starve one another's elections and heartbeats.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls `check` until it returns `Some`, failing the test after `SETTLE_TIMEOUT`.
async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A pod bound to `node` (no scheduler runs) that sleeps, stopping within 2 s.
fn sleeper(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 2,
            "containers": [{ "name": "sleep", "image": "host", "command": ["/bin/sleep", "3600"] }],
        },
    }))
    .expect("a valid pod")
}

fn ready_status(node: &Node) -> Option<String> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|condition| condition.type_ == "Ready").map(|condition| condition.status.clone())
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default()
}

async fn wait_ready(nodes: &Api<Node>, name: &str) {
    wait_until(&format!("node {name} Ready"), || async {
        let node = nodes.get_opt(name).await.ok().flatten()?;
        (ready_status(&node).as_deref() == Some("True")).then_some(())
    })
    .await;
}

async fn wait_running(pods: &Api<Pod>, name: &str) {
    wait_until(&format!("pod {name} Running"), || async {
        let pod = pods.get_opt(name).await.ok().flatten()?;
        (pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
}

// SIGKILL one of two agents. Its Node turns Ready=Unknown (with the other agent conditions)
// and gets the unreachable NoSchedule and NoExecute taints; its pod, which got the default
// unreachable toleration at create, is deleted (gracefully: it stays, Terminating, since no
// agent is there to stop it) no sooner than that toleration after the taint's timeAdded. The
// other node stays Ready and keeps its pod. The agent restarted: the taints go, the node is
// Ready again, and the agent finishes the deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_node_is_tainted_and_its_pods_evicted() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &DEFAULT_TOLERATION).await;
    let doomed_agent = cluster.start_agent("a1", 0, &[]).await.expect("starting agent a1");
    cluster.start_agent("a2", 1, &[]).await.expect("starting agent a2");
    let client = cluster.admin_client(2).await.expect("admin client");
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_ready(&nodes, "a1").await;
    wait_ready(&nodes, "a2").await;
    for (name, node) in [("doomed", "a1"), ("steady", "a2")] {
        pods.create(&PostParams::default(), &sleeper(name, node)).await.expect("creating a pod");
    }
    wait_running(&pods, "doomed").await;
    wait_running(&pods, "steady").await;
    let doomed = pods.get("doomed").await.expect("the doomed pod");
    let toleration = doomed
        .spec
        .as_ref()
        .and_then(|spec| spec.tolerations.as_ref())
        .and_then(|tolerations| tolerations.iter().find(|t| t.key.as_deref() == Some(UNREACHABLE)))
        .expect("the default unreachable toleration");
    assert_eq!(toleration.toleration_seconds, Some(DEFAULT_TOLERATION_SECONDS));

    cluster.kill_agent(doomed_agent).await.expect("killing agent a1");
    let killed = Instant::now();
    let unknown = wait_until("node a1 Ready=Unknown", || async {
        let node = nodes.get_opt("a1").await.ok().flatten()?;
        (ready_status(&node).as_deref() == Some("Unknown")).then_some(node)
    })
    .await;
    eprintln!("kill -9 to Ready=Unknown: {:?}", killed.elapsed());
    let conditions = unknown.status.and_then(|status| status.conditions).unwrap_or_default();
    for condition in &conditions {
        assert_eq!(condition.status, "Unknown", "{condition:?}");
        assert_eq!(condition.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(condition.message.as_deref(), Some("Kubelet stopped posting node status."));
    }
    // The taints are the Node's spec, the conditions its status: two writes, in either order.
    let no_execute = wait_until("node a1 tainted unreachable:NoSchedule and NoExecute", || async {
        let node = nodes.get_opt("a1").await.ok().flatten()?;
        let taints = taints(&node);
        taints.iter().find(|t| t.key == UNREACHABLE && t.effect == "NoSchedule")?;
        taints.into_iter().find(|t| t.key == UNREACHABLE && t.effect == "NoExecute")
    })
    .await;
    eprintln!("kill -9 to the NoExecute taint: {:?}", killed.elapsed());
    let deletion = wait_until("pod doomed deleted", || async {
        pods.get_opt("doomed").await.ok().flatten()?.metadata.deletion_timestamp
    })
    .await;
    eprintln!("kill -9 to the pod's deletion: {:?}", killed.elapsed());
    // The deletion asked for the pod's 2 s grace; both times are whole seconds.
    let asked = deletion.0 - k8s_openapi::jiff::SignedDuration::from_secs(2);
    let tolerated_until = no_execute.time_added.expect("timeAdded").0
        + k8s_openapi::jiff::SignedDuration::from_secs(DEFAULT_TOLERATION_SECONDS);
    assert!(asked >= tolerated_until, "deleted at {asked}, tolerated until {tolerated_until}");

    let steady_node = nodes.get("a2").await.expect("node a2");
    assert_eq!(ready_status(&steady_node).as_deref(), Some("True"));
    assert!(taints(&steady_node).is_empty(), "{:?}", taints(&steady_node));
    let steady = pods.get("steady").await.expect("pod steady");
    assert!(steady.metadata.deletion_timestamp.is_none(), "{steady:?}");
    let doomed = pods.get("doomed").await.expect("the agent's part is never forced");
    assert!(doomed.metadata.deletion_timestamp.is_some());

    cluster.restart_agent(doomed_agent, 0).expect("restarting agent a1");
    let restarted = Instant::now();
    wait_until("node a1 untainted and Ready", || async {
        let node = nodes.get_opt("a1").await.ok().flatten()?;
        (taints(&node).is_empty() && ready_status(&node).as_deref() == Some("True")).then_some(())
    })
    .await;
    eprintln!("restart to Ready without taints: {:?}", restarted.elapsed());
    wait_until("pod doomed gone", || async { pods.get_opt("doomed").await.ok()?.is_none().then_some(()) })
        .await;
}

// kubectl cordon marks the node unschedulable (and get shows it), uncordon undoes it, and
// drain cordons the node and evicts its pods through the Eviction API, waiting until the agent
// has stopped and removed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cordon_uncordon_and_drain() {
    let Some(exe) = common::tool_or_skip(
        "kubectl",
        "https://kubernetes.io/docs/tasks/tools/",
        "kubectl_cordon_uncordon_and_drain",
    ) else {
        return;
    };
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &DEFAULT_TOLERATION).await;
    cluster.start_agent("a1", 0, &[]).await.expect("starting agent a1");
    let client = cluster.admin_client(1).await.expect("admin client");
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_ready(&nodes, "a1").await;
    let home = tempfile::Builder::new().prefix("shoal-kubectl-").tempdir().expect("a temporary directory");
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::copy(cluster.write_kubeconfig(1).expect("the admin kubeconfig"), &kubeconfig)
        .expect("copying the kubeconfig");
    let kubectl = Kubectl { exe, kubeconfig, cache: home.path().join("cache") };

    assert_eq!(kubectl.ok(&["cordon", "a1"]).await, "node/a1 cordoned\n");
    let unschedulable = |node: &Node| node.spec.as_ref().and_then(|spec| spec.unschedulable).unwrap_or(false);
    assert!(unschedulable(&nodes.get("a1").await.expect("node a1")));
    let table = kubectl.ok(&["get", "node", "a1", "--no-headers"]).await;
    assert_eq!(table.split_whitespace().nth(1), Some("Ready,SchedulingDisabled"), "{table}");
    assert_eq!(kubectl.ok(&["uncordon", "a1"]).await, "node/a1 uncordoned\n");
    assert!(!unschedulable(&nodes.get("a1").await.expect("node a1")));

    for name in ["p1", "p2"] {
        pods.create(&PostParams::default(), &sleeper(name, "a1")).await.expect("creating a pod");
    }
    wait_running(&pods, "p1").await;
    wait_running(&pods, "p2").await;
    // Bare pods (no controller) need --force, as in Kubernetes; the refused drain has cordoned
    // the node already, as kubectl does.
    let refused = kubectl.run(&["drain", "a1", "--timeout=60s"]).await.expect_err("drain without --force");
    assert!(refused.contains("cannot delete Pods that declare no controller"), "{refused}");
    assert!(unschedulable(&nodes.get("a1").await.expect("node a1")));
    let drained = kubectl.ok(&["drain", "a1", "--force", "--timeout=60s"]).await;
    for line in [
        "node/a1 already cordoned",
        "evicting pod default/p1",
        "evicting pod default/p2",
        "pod/p1 evicted",
        "pod/p2 evicted",
        "node/a1 drained",
    ] {
        assert!(drained.lines().any(|printed| printed == line), "{line:?} in:\n{drained}");
    }
    assert!(pods.get_opt("p1").await.expect("reading p1").is_none());
    assert!(pods.get_opt("p2").await.expect("reading p2").is_none());
    assert!(unschedulable(&nodes.get("a1").await.expect("node a1")));
    assert_eq!(kubectl.ok(&["uncordon", "a1"]).await, "node/a1 uncordoned\n");
}

/// kubectl as the admin, with a discovery cache of its own.
struct Kubectl {
    exe: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// Standard output and error of a run that succeeded, or its standard error.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = tokio::process::Command::new(&self.exe)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.cache.display()))
            .args(args)
            // The dispatcher reads the kubeconfig to ask the server its version.
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, output)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} still runs after {KUBECTL_TIMEOUT:?}"))
            .expect("running kubectl");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() { Ok(stdout + &stderr) } else { Err(stderr) }
    }

    async fn ok(&self, args: &[&str]) -> String {
        self.run(args).await.unwrap_or_else(|stderr| panic!("kubectl {args:?} failed: {stderr}"))
    }
}

/// How the node of the first agent fails in `replicas_are_replaced_on_another_node`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum NodeFailure {
    /// SIGKILL to the agent (its pods keep running, unseen).
    Kill,
    /// Its link to the control plane partitioned both ways (the agent lives on, unheard).
    CutOff,
}

/// A Deployment named `web` of `replicas` sleeping pods labelled `app=web`.
fn web_deployment(replicas: i32) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{ "name": "sleep", "image": "host", "command": ["/bin/sleep", "3600"] }],
                },
            },
        },
    }))
    .expect("a valid deployment")
}

/// The `app=web` pods that are Running and not being deleted, by node name.
async fn running_web_pods(pods: &Api<Pod>) -> Option<std::collections::BTreeMap<String, Vec<Pod>>> {
    let list = pods.list(&kube::api::ListParams::default().labels("app=web")).await.ok()?;
    let mut by_node = std::collections::BTreeMap::<String, Vec<Pod>>::new();
    for pod in list.items {
        let running = pod.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Running");
        let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone());
        if let (true, None, Some(node)) = (running, &pod.metadata.deletion_timestamp, node) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    Some(by_node)
}

// A Deployment's replicas on a node that dies are replaced on the other node: the node
// lifecycle controller evicts them once their toleration runs out, their ReplicaSet creates
// replacements, the scheduler keeps them off the tainted node, and the other agent runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_dead_node_are_replaced_on_another() {
    replicas_are_replaced_on_another_node(NodeFailure::Kill).await;
}

// The same when the node lives on but its link to the control plane is cut (one of two nodes:
// not enough for the controller to suspect itself); healed, the agent finishes the evictions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_cut_off_node_are_replaced_on_another() {
    replicas_are_replaced_on_another_node(NodeFailure::CutOff).await;
}

async fn replicas_are_replaced_on_another_node(failure: NodeFailure) {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &DEFAULT_TOLERATION).await;
    let mut agents = Vec::new();
    for (server, name) in ["a1", "a2"].into_iter().enumerate() {
        let started = match failure {
            NodeFailure::Kill => cluster.start_agent(name, server, &[]).await,
            NodeFailure::CutOff => cluster.start_agent_through_link(name, server, &[]).await,
        };
        agents.push(started.expect("starting an agent"));
    }
    let client = cluster.admin_client(2).await.expect("admin client");
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_ready(&nodes, "a1").await;
    wait_ready(&nodes, "a2").await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &web_deployment(4)).await.expect("creating the deployment");
    let count_on = |running: &std::collections::BTreeMap<String, Vec<Pod>>, node: &str| {
        running.get(node).map_or(0, Vec::len)
    };
    wait_until("4 replicas Running, spread over both nodes", || async {
        let running = running_web_pods(&pods).await?;
        let (on_a1, on_a2) = (count_on(&running, "a1"), count_on(&running, "a2"));
        (on_a1 + on_a2 == 4 && on_a1 > 0 && on_a2 > 0).then_some(())
    })
    .await;

    match failure {
        NodeFailure::Kill => cluster.kill_agent(agents[0]).await.expect("killing agent a1"),
        NodeFailure::CutOff => cluster.cut_off_agent(agents[0], true).expect("cutting agent a1 off"),
    }
    let failed = Instant::now();
    wait_until("4 replicas Running on a2", || async {
        (count_on(&running_web_pods(&pods).await?, "a2") == 4).then_some(())
    })
    .await;
    eprintln!("{failure:?} of a node to all its replicas Running elsewhere: {:?}", failed.elapsed());
    let running = running_web_pods(&pods).await.expect("listing pods");
    assert_eq!(count_on(&running, "a1"), 0, "nothing may be placed on the lost node");

    if failure == NodeFailure::CutOff {
        cluster.cut_off_agent(agents[0], false).expect("healing agent a1's link");
        wait_ready(&nodes, "a1").await;
        wait_until("the evicted pods of a1 gone", || async {
            let list = pods.list(&kube::api::ListParams::default().labels("app=web")).await.ok()?;
            let on_a1 = list
                .items
                .iter()
                .filter(|pod| pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) == Some("a1"))
                .count();
            (on_a1 == 0 && list.items.len() == 4).then_some(())
        })
        .await;
    }
}

/// Nodes of `control_plane_cut_off_from_every_agent_evicts_nothing`.
const CUT_OFF_NODES: [&str; 3] = ["a1", "a2", "a3"];

// Cut the control plane off from every agent at once (each agent's forwarder holds its bytes
// both ways): every node turns Unknown, but with all of them suspected the node lifecycle
// controller takes itself for the one cut off and evicts nothing. A watch on the pods, opened
// before the cut, records every change; it must show no pod given a deletionTimestamp nor
// deleted over a window of the default toleration plus 5 s after the last node turned
// Unknown (the detection is already behind by then). Healed, every node is Ready again without
// taints, and the Deployment has the same pods, all Running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_cut_off_from_every_agent_evicts_nothing() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &DEFAULT_TOLERATION).await;
    let mut agents = Vec::new();
    for (server, name) in CUT_OFF_NODES.into_iter().enumerate() {
        agents.push(cluster.start_agent_through_link(name, server, &[]).await.expect("starting an agent"));
    }
    let client = cluster.admin_client(2).await.expect("admin client");
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in CUT_OFF_NODES {
        wait_ready(&nodes, name).await;
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &web_deployment(3)).await.expect("creating the deployment");
    let uids = |running: &std::collections::BTreeMap<String, Vec<Pod>>| {
        let mut uids: Vec<String> =
            running.values().flatten().filter_map(|pod| pod.metadata.uid.clone()).collect();
        uids.sort();
        uids
    };
    let before = wait_until("3 replicas Running", || async {
        let running = running_web_pods(&pods).await?;
        (running.values().map(Vec::len).sum::<usize>() == 3).then(|| uids(&running))
    })
    .await;

    let listed = pods.list(&kube::api::ListParams::default().labels("app=web")).await.expect("listing pods");
    let from = listed.metadata.resource_version.expect("a list's resourceVersion");
    let window = Duration::from_secs(DEFAULT_TOLERATION_SECONDS as u64 + 5);
    let watch =
        kube::api::WatchParams::default().labels("app=web").timeout(SETTLE_TIMEOUT.as_secs() as u32 * 3);
    let mut events = Box::pin(pods.watch(&watch, &from).await.expect("watching pods"));
    // What the watch saw that would be an eviction, and whether it still runs.
    let deletions = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = deletions.clone();
    let watching = tokio::spawn(async move {
        while let Some(event) = futures::StreamExt::next(&mut events).await {
            let deletion = match event {
                Ok(kube::api::WatchEvent::Modified(pod)) if pod.metadata.deletion_timestamp.is_some() => {
                    format!("{:?} marked for deletion", pod.metadata.name)
                }
                Ok(kube::api::WatchEvent::Deleted(pod)) => format!("{:?} deleted", pod.metadata.name),
                Ok(kube::api::WatchEvent::Error(error)) => format!("watch error {error:?}"),
                Err(error) => format!("watch failed: {error}"),
                Ok(_) => continue,
            };
            seen.lock().unwrap().push(deletion);
        }
    });

    for &agent in &agents {
        cluster.cut_off_agent(agent, true).expect("cutting an agent off");
    }
    let cut = Instant::now();
    for name in CUT_OFF_NODES {
        wait_until(&format!("node {name} Ready=Unknown"), || async {
            let node = nodes.get_opt(name).await.ok().flatten()?;
            (ready_status(&node).as_deref() == Some("Unknown")).then_some(())
        })
        .await;
    }
    eprintln!("cut-off to every node Unknown: {:?}", cut.elapsed());
    // The window itself is what is tested: a sleep, not a wait for something to happen.
    tokio::time::sleep(window).await;
    for name in CUT_OFF_NODES {
        let node = nodes.get(name).await.expect("reading a node");
        assert_eq!(ready_status(&node).as_deref(), Some("Unknown"), "{name} is still cut off");
    }

    for &agent in &agents {
        cluster.cut_off_agent(agent, false).expect("healing an agent's link");
    }
    let healed = Instant::now();
    for name in CUT_OFF_NODES {
        wait_until(&format!("node {name} Ready without taints"), || async {
            let node = nodes.get_opt(name).await.ok().flatten()?;
            (ready_status(&node).as_deref() == Some("True") && taints(&node).is_empty()).then_some(())
        })
        .await;
    }
    eprintln!("heal to every node Ready: {:?}", healed.elapsed());
    let after = running_web_pods(&pods).await.expect("listing pods");
    assert_eq!(uids(&after), before, "the same pods run, none replaced");
    assert!(!watching.is_finished(), "the watch ended early: {:?}", deletions.lock().unwrap());
    watching.abort();
    assert_eq!(*deletions.lock().unwrap(), Vec::<String>::new(), "no pod may be evicted");
}
