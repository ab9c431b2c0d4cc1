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
    let mut cluster = common::start_cluster(3, &[]).await;
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
    let mut cluster = common::start_cluster(3, &[]).await;
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

// A Deployment's replicas on a node that dies are replaced on the other node: the node
// lifecycle controller evicts them once their toleration runs out, their ReplicaSet creates
// replacements, the scheduler keeps them off the tainted node, and the other agent runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_dead_node_are_replaced_on_another() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &[]).await;
    let agents = [
        cluster.start_agent("a1", 0, &[]).await.expect("starting agent a1"),
        cluster.start_agent("a2", 1, &[]).await.expect("starting agent a2"),
    ];
    let client = cluster.admin_client(2).await.expect("admin client");
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_ready(&nodes, "a1").await;
    wait_ready(&nodes, "a2").await;
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 4,
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
    .expect("a valid deployment");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment).await.expect("creating the deployment");
    // Running replicas that are not being deleted, by node.
    let running_on = |node: &'static str| {
        let pods = pods.clone();
        async move {
            let list = pods.list(&kube::api::ListParams::default().labels("app=web")).await.ok()?;
            let count = list
                .items
                .iter()
                .filter(|pod| pod.metadata.deletion_timestamp.is_none())
                .filter(|pod| pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) == Some(node))
                .filter(|pod| {
                    pod.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Running")
                })
                .count();
            Some(count)
        }
    };
    wait_until("4 replicas Running, spread over both nodes", || async {
        let (on_a1, on_a2) = (running_on("a1").await?, running_on("a2").await?);
        (on_a1 + on_a2 == 4 && on_a1 > 0 && on_a2 > 0).then_some(())
    })
    .await;

    cluster.kill_agent(agents[0]).await.expect("killing agent a1");
    let killed = Instant::now();
    wait_until("4 replicas Running on a2", || async { (running_on("a2").await? == 4).then_some(()) }).await;
    eprintln!("kill -9 of a node to all its replicas Running elsewhere: {:?}", killed.elapsed());
    assert_eq!(running_on("a1").await, Some(0), "nothing may be placed on the dead node");
}
