//! `kubectl top` end to end: a one-server cluster and a `shoal agent` running two pods, one
//! spinning a CPU and one asleep; the API server's `metrics.k8s.io` read through kube-rs and
//! through the real kubectl.
//!
//! CPU figures depend on the machine's load, so the checks compare the pods with each other
//! (the busy one uses more) and never expect a number.
//!
//! Without kubectl on `PATH` the kubectl test prints why it skips, unless
//! `SHOAL_REQUIRE_TOOLS=1` (set in CI), which turns the missing tool into a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long any one expected state may take to appear on a busy 2-core machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one kubectl command may run.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A cluster whose node `a1` is Ready and runs `busy` (label `role=busy`) and `idle`
/// (`role=idle`), both Running.
async fn cluster_with_busy_and_idle_pods() -> (common::TestCluster, Client) {
    let mut cluster = common::start_cluster(1, &[]).await;
    cluster.start_agent("a1", 0, &[]).await.expect("starting the agent");
    let client = cluster.admin_client(0).await.expect("admin client");
    let nodes: Api<Node> = Api::all(client.clone());
    wait_until("node a1 Ready", || async {
        let node = nodes.get_opt("a1").await.map_err(|error| error.to_string())?;
        let conditions = node.and_then(|node| node.status?.conditions).unwrap_or_default();
        let ready =
            conditions.iter().any(|condition| condition.type_ == "Ready" && condition.status == "True");
        if ready { Ok(()) } else { Err(format!("conditions {conditions:?}")) }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, script) in [("busy", "while :; do :; done"), ("idle", "sleep 3600")] {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"role": name}},
            "spec": {
                "nodeName": "a1",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "host", "command": ["/bin/sh", "-c", script]}],
            },
        }))
        .expect("a valid pod");
        pods.create(&PostParams::default(), &pod).await.expect("creating the pod");
    }
    for name in ["busy", "idle"] {
        wait_until(&format!("pod {name} Running"), || async {
            let pod = pods.get_opt(name).await.map_err(|error| error.to_string())?;
            let phase = pod.and_then(|pod| pod.status?.phase);
            if phase.as_deref() == Some("Running") { Ok(()) } else { Err(format!("phase {phase:?}")) }
        })
        .await;
    }
    (cluster, client)
}

/// Polls `check` until it returns `Ok`, failing the test after `SETTLE_TIMEOUT` with what it
/// saw last (its `Err`).
async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last saw {seen}"
            ),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn get_json(client: &Client, path: &str) -> Result<Value, kube::Error> {
    let request = http::Request::get(path).body(Vec::new()).expect("a valid request");
    client.request::<Value>(request).await
}

/// A quantity of CPU in nanocores: `12345n`, `250m` or `2`.
fn nanocores(quantity: &Value) -> u64 {
    let text = quantity.as_str().unwrap_or_else(|| panic!("a CPU quantity, not {quantity}"));
    let number =
        |digits: &str| digits.parse::<u64>().unwrap_or_else(|_| panic!("a CPU quantity, not {text}"));
    match (text.strip_suffix('n'), text.strip_suffix('m')) {
        (Some(nano), _) => number(nano),
        (_, Some(milli)) => number(milli) * 1_000_000,
        _ => number(text) * 1_000_000_000,
    }
}

/// The CPU of each pod of a PodMetricsList, by name (the sum over its containers).
fn pod_cpu(list: &Value) -> Vec<(String, u64)> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let cpu = item["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| nanocores(&c["usage"]["cpu"]))
                .sum();
            (item["metadata"]["name"].as_str().unwrap_or_default().to_owned(), cpu)
        })
        .collect()
}

fn cpu_of(cpus: &[(String, u64)], name: &str) -> Option<u64> {
    cpus.iter().find(|(pod, _)| pod == name).map(|(_, cpu)| *cpu)
}

// PodMetrics report the busy pod's CPU clearly above the idle one's (listed in the
// namespace; then in all namespaces, by label and by name, each with its window, timestamp,
// container and memory), and NodeMetrics list the node and get it by name, with CPU and
// memory; a pod that does not exist is 404 as with metrics-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_node_metrics_through_the_api() {
    let (_cluster, client) = cluster_with_busy_and_idle_pods().await;
    let namespaced = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods";
    // Both pods listed with the busy one ahead by at least a tenth of a CPU: the busy pod
    // spins a whole CPU when it runs, though the machine may be shared.
    let cpus = wait_until("the busy pod's CPU clearly above the idle one's", || async {
        let answer = get_json(&client, namespaced).await.map_err(|error| error.to_string())?;
        let cpus = pod_cpu(&answer);
        match (cpu_of(&cpus, "busy"), cpu_of(&cpus, "idle")) {
            (Some(busy), Some(idle)) if busy > idle + 100_000_000 => Ok(cpus),
            _ => Err(answer.to_string()),
        }
    })
    .await;
    assert_eq!(cpus.len(), 2, "{cpus:?}");

    let all =
        get_json(&client, "/apis/metrics.k8s.io/v1beta1/pods").await.expect("PodMetrics of every namespace");
    assert_eq!(all["kind"], "PodMetricsList");
    let names: Vec<String> = pod_cpu(&all).into_iter().map(|(name, _)| name).collect();
    assert!(names.contains(&"busy".to_owned()) && names.contains(&"idle".to_owned()), "{all}");
    let selected =
        get_json(&client, &format!("{namespaced}?labelSelector=role%3Dbusy")).await.expect("by label");
    assert_eq!(
        pod_cpu(&selected).into_iter().map(|(name, _)| name).collect::<Vec<_>>(),
        ["busy"],
        "{selected}"
    );

    let busy = get_json(&client, &format!("{namespaced}/busy")).await.expect("the busy pod's PodMetrics");
    assert_eq!(
        (busy["kind"].as_str(), busy["apiVersion"].as_str()),
        (Some("PodMetrics"), Some("metrics.k8s.io/v1beta1"))
    );
    assert_eq!(busy["metadata"]["labels"]["role"], "busy");
    assert_eq!(busy["containers"][0]["name"], "main", "{busy}");
    let memory = busy["containers"][0]["usage"]["memory"].as_str().expect("memory");
    assert!(memory.ends_with("Ki") && memory != "0Ki", "{busy}");
    let window = busy["window"].as_str().expect("a window");
    assert!(window.ends_with('s'), "{busy}");
    assert!(busy["timestamp"].as_str().is_some_and(|time| time.ends_with('Z')), "{busy}");
    let missing = get_json(&client, &format!("{namespaced}/nope")).await.expect_err("no such pod");
    assert!(matches!(&missing, kube::Error::Api(status) if status.code == 404), "{missing:?}");

    let nodes = get_json(&client, "/apis/metrics.k8s.io/v1beta1/nodes").await.expect("NodeMetrics");
    assert_eq!(nodes["kind"], "NodeMetricsList");
    let items = nodes["items"].as_array().expect("items");
    assert_eq!(items.iter().map(|item| item["metadata"]["name"].as_str()).collect::<Vec<_>>(), [Some("a1")]);
    let node = get_json(&client, "/apis/metrics.k8s.io/v1beta1/nodes/a1").await.expect("a1's NodeMetrics");
    assert!(nanocores(&node["usage"]["cpu"]) > 0, "the busy pod runs on the node: {node}");
    assert!(node["usage"]["memory"].as_str().is_some_and(|memory| memory.ends_with("Ki")), "{node}");
}

// `kubectl top nodes`, `kubectl top pods` and `kubectl top pod busy --containers` print
// their tables from shoal's metrics, the busy pod above the idle one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top() {
    let Some(exe) = common::tool_or_skip("kubectl", "https://kubernetes.io/docs/tasks/tools/", "kubectl_top")
    else {
        return;
    };
    let (cluster, _client) = cluster_with_busy_and_idle_pods().await;
    let kubectl = Kubectl::new(&exe, &cluster.write_kubeconfig(0).expect("writing the kubeconfig"));

    let nodes = kubectl.ok(&["top", "nodes"]).await;
    let rows = table(&nodes);
    assert_eq!(rows[0], ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"], "{nodes}");
    assert_eq!(rows.len(), 2, "{nodes}");
    assert_eq!(rows[1][0], "a1", "{nodes}");

    let pods = wait_until("kubectl top pods showing busy above idle", || async {
        let pods = kubectl.output(&["top", "pods"]).await?;
        let rows = table(&pods);
        let cpu = |name: &str| rows.iter().find(|row| row[0] == name).and_then(|row| millicores(&row[1]));
        match (cpu("busy"), cpu("idle")) {
            (Some(busy), Some(idle)) if busy > idle + 100 => Ok(pods),
            _ => Err(pods),
        }
    })
    .await;
    assert_eq!(table(&pods)[0], ["NAME", "CPU(cores)", "MEMORY(bytes)"], "{pods}");

    let containers = kubectl.ok(&["top", "pod", "busy", "--containers"]).await;
    let rows = table(&containers);
    assert_eq!(rows[0], ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"], "{containers}");
    assert_eq!(rows.len(), 2, "{containers}");
    assert_eq!((rows[1][0].as_str(), rows[1][1].as_str()), ("busy", "main"), "{containers}");
}

/// kubectl as the admin, with a discovery cache of its own.
struct Kubectl {
    exe: PathBuf,
    kubeconfig: PathBuf,
    /// Holds `cache/`; deleted with the handle.
    home: TempDir,
}

impl Kubectl {
    fn new(exe: &Path, kubeconfig: &Path) -> Self {
        let home =
            tempfile::Builder::new().prefix("shoal-kubectl-").tempdir().expect("a temporary directory");
        Self { exe: exe.to_owned(), kubeconfig: kubeconfig.to_owned(), home }
    }

    /// Standard output of a run that succeeded, or a sentence saying how it failed.
    async fn output(&self, args: &[&str]) -> Result<String, String> {
        let child = tokio::process::Command::new(&self.exe)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.home.path().join("cache").display()))
            .args(args)
            // The dispatcher reads the kubeconfig to ask the server its version.
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting kubectl");
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} still runs after {KUBECTL_TIMEOUT:?}"))
            .expect("waiting for kubectl");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!("`kubectl {}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr)))
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        self.output(args).await.unwrap_or_else(|message| panic!("{message}"))
    }
}

/// A printed table's rows (the header first), cells split on runs of spaces.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// kubectl top's CPU cell, `123m`, in millicores.
fn millicores(cell: &str) -> Option<u64> {
    cell.strip_suffix('m')?.parse().ok()
}
