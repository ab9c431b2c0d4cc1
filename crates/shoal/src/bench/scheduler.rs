//! `shoal bench scheduler`: how many pods per second the scheduler places, on hollow nodes.
//!
//! A fresh cluster of 3 servers on loopback, started with `--controllers=*,-nodelifecycle`:
//! hollow nodes renew no Lease, and kube-scheduler's scheduler_perf runs no node lifecycle
//! controller either. The bench is the hollow nodes itself, as kwok is: one process that
//! creates `--nodes` Node objects reporting Ready with room for 8 CPUs, 32 GiB and 110 pods,
//! and runs nothing for their pods. With `--run-pods` it also marks each bound pod Running (a
//! status write per pod, as a kubelet would make); the throughput figure is without it, as
//! scheduler_perf measures scheduling only.
//!
//! Then `--pods` bare pods (one pause-like container asking for 100m CPU and 128 MiB, owned by
//! nothing: scheduler_perf's SchedulingBasic) are created by `--clients` concurrent writers
//! spread over the three servers, while a watch through one server records when each pod is
//! first seen with `spec.nodeName`. Figures: creates per second, binds per second (overall, and
//! per second of the run as scheduler_perf's SchedulingThroughput samples them), the time from
//! the first create to the last bind, the create-to-bound latency, the backlog (created, not
//! yet seen bound) over time, and the CPU time of each server and of the bench.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Args;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::agent::processes::{cpu_times, load_average};
use crate::local_cluster::{LocalCluster, LocalClusterConfig};

#[derive(Args, Clone, Debug)]
pub struct BenchSchedulerArgs {
    /// Hollow nodes created before the pods.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Pods created, each to be scheduled once.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent writers creating the nodes and the pods, spread over the servers.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Also mark each bound pod Running, as a kubelet would (a status write per pod).
    #[arg(long)]
    pub run_pods: bool,
    /// Give up when no pod has been seen bound for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub stall_seconds: u64,
    /// Scratch directory for the cluster (wiped first).
    #[arg(long, default_value = "/var/tmp/shoal-bench-scheduler")]
    pub dir: PathBuf,
}

/// The servers' flags: no node lifecycle controller, whose failure detector would mark every
/// hollow node (which renews no Lease) Unknown and taint it.
pub const SERVER_ARGS: [&str; 2] = ["--controllers", "*,-nodelifecycle"];
/// The label on the bench's pods, which its watch selects.
pub const POD_LABEL: (&str, &str) = ("shoal-bench", "scheduler");
/// A hollow node's allocatable CPU, memory and pod count.
pub const NODE_CPU: &str = "8";
pub const NODE_MEMORY: &str = "32Gi";
pub const NODE_PODS: &str = "110";
/// What each pod asks for.
pub const POD_CPU: &str = "100m";
pub const POD_MEMORY: &str = "128Mi";
/// How long one create or status write may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the cluster gets to elect a scheduler and list the nodes before the first pod:
/// pods created before the scheduler's cache holds every node would be placed on fewer nodes.
const SCHEDULER_SETTLE: Duration = Duration::from_secs(3);
/// How often the backlog is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Bound pods waiting for their Running write (with `--run-pods`); the watch waits beyond it.
const RUN_QUEUED_MAX: usize = 4096;
/// Running writes in flight at once (with `--run-pods`).
const RUN_WRITES_IN_FLIGHT_MAX: usize = 64;
/// Sightings the watch may queue ahead of the bench loop.
const SIGHTINGS_QUEUED_MAX: usize = 8192;
/// How long the pod watch gets to list before the first create.
const WATCH_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: BenchSchedulerArgs) -> anyhow::Result<()> {
    ensure!(
        args.nodes > 0 && args.pods > 0 && args.clients > 0,
        "--nodes, --pods and --clients must be positive"
    );
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let mut config = LocalClusterConfig::new(&exe, &args.dir);
    config.server_args = SERVER_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
    let mut cluster = LocalCluster::new(config)?;
    cluster.start(3).await?;
    cluster.wait_ready().await?;
    let mut clients = Vec::new();
    for i in 0..cluster.len() {
        clients.push(cluster.admin_client(i).await?);
    }
    super::api::wait_for_namespace(&clients[0]).await?;

    let nodes_started = Instant::now();
    create_hollow_nodes(&clients, args.nodes, args.clients).await?;
    let nodes_seconds = nodes_started.elapsed().as_secs_f64();
    tokio::time::sleep(SCHEDULER_SETTLE).await;
    let leader = scheduler_leader(&clients[0], &cluster).await;

    let cpu_before = cpu_snapshot(&cluster);
    let load_before = load_average();
    let observer = clients[clients.len() - 1].clone();
    let outcome = schedule_pods(&args, &clients, observer).await?;
    let cpu = cpu_snapshot(&cluster)
        .into_iter()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let report =
        Report { nodes_seconds, leader, cpu: cpu.collect(), load: (load_before, load_average()), outcome };
    print_report(&args, &report);
    cluster.stop_all().await
}

/// A Ready hollow node's Node object, status included.
pub fn hollow_node(name: &str) -> Node {
    let resources = json!({ "cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": NODE_PODS });
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "hollow",
        } },
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "hollow node (shoal bench scheduler)",
                "lastHeartbeatTime": jiff::Timestamp::now().to_string(),
                "lastTransitionTime": jiff::Timestamp::now().to_string(),
            }],
        },
    }))
    .expect("a valid node")
}

pub fn hollow_node_name(index: usize) -> String {
    format!("hollow-{index:05}")
}

/// Creates `count` hollow nodes, `concurrency` at a time over `clients`: each is created and
/// then given its status (the API ignores status on create, as Kubernetes' does).
pub async fn create_hollow_nodes(clients: &[Client], count: usize, concurrency: usize) -> anyhow::Result<()> {
    futures::stream::iter(0..count)
        .map(|index| {
            let nodes: Api<Node> = Api::all(clients[index % clients.len()].clone());
            async move {
                let name = hollow_node_name(index);
                let node = hollow_node(&name);
                let params = PostParams::default();
                let request = nodes.create(&params, &node);
                tokio::time::timeout(REQUEST_TIMEOUT, request)
                    .await
                    .with_context(|| format!("creating node {name} timed out"))?
                    .with_context(|| format!("creating node {name}"))?;
                let patch = json!({ "status": node.status });
                let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
                let request = nodes.patch_status(&name, &params, &patch);
                tokio::time::timeout(REQUEST_TIMEOUT, request)
                    .await
                    .with_context(|| format!("reporting node {name} Ready timed out"))?
                    .with_context(|| format!("reporting node {name} Ready"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

/// A bare pod of the bench: one pause-like container with small requests.
pub fn bench_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { POD_LABEL.0: POD_LABEL.1 } },
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "pause",
                "image": "registry.k8s.io/pause:3.10",
                "resources": { "requests": { "cpu": POD_CPU, "memory": POD_MEMORY } },
            }],
        },
    }))
    .expect("a valid pod")
}

fn pod_name(index: usize) -> String {
    format!("sched-{index}")
}

fn pod_index(name: &str) -> Option<usize> {
    name.strip_prefix("sched-")?.parse().ok()
}

/// The member whose scheduler holds the `kube-scheduler` Lease, if one does.
async fn scheduler_leader(client: &Client, cluster: &LocalCluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = leases.get_opt("kube-scheduler").await.ok()??.spec?.holder_identity?;
    (0..cluster.len())
        .map(|i| cluster.member(i).name.clone())
        .find(|name| holder.starts_with(&format!("{name}_")))
}

/// CPU time so far of each server and, last, of the bench.
fn cpu_snapshot(cluster: &LocalCluster) -> Vec<Duration> {
    let own = |pid: Option<u32>| pid.and_then(cpu_times).map_or(Duration::ZERO, |(own, _)| own);
    let mut times: Vec<Duration> = (0..cluster.len()).map(|i| own(cluster.pid(i))).collect();
    times.push(own(Some(std::process::id())));
    times
}

/// When each pod's create was acknowledged and when it was first seen bound, and where.
#[derive(Clone, Debug, Default)]
struct PodTimes {
    acked: Option<Instant>,
    bound: Option<Instant>,
    node: Option<String>,
}

/// One backlog sample: seconds since the first create, pods created (acknowledged) and pods
/// seen bound by then.
#[derive(Clone, Copy, Debug)]
struct Sample {
    seconds: f64,
    created: usize,
    bound: usize,
}

/// What the pod run measured.
struct Outcome {
    pods: Vec<PodTimes>,
    started: Instant,
    samples: Vec<Sample>,
    /// Why the run ended before every pod was bound, if it did.
    stalled: Option<String>,
}

struct Report {
    nodes_seconds: f64,
    leader: Option<String>,
    /// CPU time of each server during the pod run, then the bench's.
    cpu: Vec<Duration>,
    load: (f64, f64),
    outcome: Outcome,
}

/// What the watch saw: the pod `index` first seen bound to a node.
enum Sighting {
    Synced,
    Bound(usize, String, Instant),
}

/// Creates the pods and watches them bound; ends when all are, or when none has been bound
/// for `--stall-seconds`.
async fn schedule_pods(
    args: &BenchSchedulerArgs,
    clients: &[Client],
    observer: Client,
) -> anyhow::Result<Outcome> {
    let (sightings, mut seen) = mpsc::channel(SIGHTINGS_QUEUED_MAX);
    let (to_run, run_queue) = mpsc::channel(RUN_QUEUED_MAX);
    let watch_api: Api<Pod> = Api::namespaced(observer.clone(), "default");
    let watch = tokio::spawn(watch_bound(watch_api, sightings, args.run_pods.then_some(to_run)));
    let _stop_watch = AbortOnDrop(watch.abort_handle());
    let runner = tokio::spawn(mark_running(Api::namespaced(observer, "default"), run_queue));
    let _stop_runner = AbortOnDrop(runner.abort_handle());
    match tokio::time::timeout(WATCH_SYNC_TIMEOUT, seen.recv()).await {
        Ok(Some(Sighting::Synced)) => {}
        _ => anyhow::bail!("the pod watch did not list within {WATCH_SYNC_TIMEOUT:?}"),
    }

    let started = Instant::now();
    let acks = Arc::new(std::sync::Mutex::new(vec![None; args.pods]));
    let created = Arc::new(AtomicUsize::new(0));
    let creator = {
        let (clients, acks, created) = (clients.to_vec(), acks.clone(), created.clone());
        let (count, concurrency) = (args.pods, args.clients);
        tokio::spawn(async move { create_pods(&clients, count, concurrency, &acks, &created).await })
    };
    let _stop_creator = AbortOnDrop(creator.abort_handle());

    let mut pods = vec![PodTimes::default(); args.pods];
    let mut bound = 0;
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    let stall = Duration::from_secs(args.stall_seconds);
    let mut last_progress = Instant::now();
    let mut stalled = None;
    let mut creator = Some(creator);
    while bound < args.pods {
        tokio::select! {
            sighting = seen.recv() => match sighting {
                Some(Sighting::Bound(index, node, at)) if index < pods.len() && pods[index].bound.is_none() => {
                    pods[index].bound = Some(at);
                    pods[index].node = Some(node);
                    bound += 1;
                    last_progress = at;
                }
                Some(_) => {}
                None => anyhow::bail!("the pod watch ended"),
            },
            joined = async { creator.as_mut().expect("polled only while running").await }, if creator.is_some() => {
                creator = None;
                joined.context("the create task")??;
            }
            _ = ticks.tick() => {
                let sample = Sample {
                    seconds: started.elapsed().as_secs_f64(),
                    created: created.load(Ordering::Relaxed),
                    bound,
                };
                samples.push(sample);
                if last_progress.elapsed() > stall {
                    stalled = Some(format!(
                        "no pod seen bound for {} s: {} of {} created, {bound} bound",
                        stall.as_secs(), sample.created, args.pods
                    ));
                    break;
                }
            }
        }
    }
    samples.push(Sample {
        seconds: started.elapsed().as_secs_f64(),
        created: created.load(Ordering::Relaxed),
        bound,
    });
    let acks = acks.lock().expect("acks lock").clone();
    for (pod, acked) in pods.iter_mut().zip(acks) {
        pod.acked = acked;
    }
    Ok(Outcome { pods, started, samples, stalled })
}

/// Creates `count` pods, `concurrency` at a time, round-robin over `clients`.
async fn create_pods(
    clients: &[Client],
    count: usize,
    concurrency: usize,
    acks: &std::sync::Mutex<Vec<Option<Instant>>>,
    created: &AtomicUsize,
) -> anyhow::Result<()> {
    futures::stream::iter(0..count)
        .map(|index| {
            let pods: Api<Pod> = Api::namespaced(clients[index % clients.len()].clone(), "default");
            async move {
                let name = pod_name(index);
                let (params, pod) = (PostParams::default(), bench_pod(&name));
                let request = pods.create(&params, &pod);
                tokio::time::timeout(REQUEST_TIMEOUT, request)
                    .await
                    .with_context(|| format!("creating pod {name} timed out"))?
                    .with_context(|| format!("creating pod {name}"))?;
                acks.lock().expect("acks lock")[index] = Some(Instant::now());
                created.fetch_add(1, Ordering::Relaxed);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

/// Watches the bench's pods and reports each one's first sighting with a node; with
/// `to_run`, hands it to the Running writer too.
async fn watch_bound(
    api: Api<Pod>,
    sightings: mpsc::Sender<Sighting>,
    to_run: Option<mpsc::Sender<String>>,
) -> anyhow::Result<()> {
    let selector = format!("{}={}", POD_LABEL.0, POD_LABEL.1);
    let stream = watcher::watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    futures::pin_mut!(stream);
    let mut seen_bound = std::collections::HashSet::new();
    while let Some(event) = stream.try_next().await? {
        let at = Instant::now();
        let pod = match event {
            watcher::Event::InitDone => {
                sightings.send(Sighting::Synced).await?;
                continue;
            }
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => pod,
            watcher::Event::Init | watcher::Event::Delete(_) => continue,
        };
        let Some(name) = pod.metadata.name.as_deref() else { continue };
        let Some(index) = pod_index(name) else { continue };
        let Some(node) = pod.spec.as_ref().and_then(|spec| spec.node_name.clone()) else { continue };
        if seen_bound.insert(index) {
            sightings.send(Sighting::Bound(index, node, at)).await?;
            if let Some(to_run) = &to_run {
                to_run.send(name.to_owned()).await?;
            }
        }
    }
    anyhow::bail!("the pod watch ended")
}

/// Marks the pods it is handed Running and Ready, as a kubelet that started them would.
async fn mark_running(api: Api<Pod>, queue: mpsc::Receiver<String>) {
    tokio_stream_of(queue)
        .for_each_concurrent(RUN_WRITES_IN_FLIGHT_MAX, |name| {
            let api = api.clone();
            async move {
                let now = jiff::Timestamp::now().to_string();
                let status = json!({ "status": {
                    "phase": "Running",
                    "startTime": now,
                    "conditions": [
                        { "type": "Initialized", "status": "True", "lastTransitionTime": now },
                        { "type": "ContainersReady", "status": "True", "lastTransitionTime": now },
                        { "type": "Ready", "status": "True", "lastTransitionTime": now },
                    ],
                } });
                let (params, patch) = (PatchParams::default(), Patch::Strategic(&status));
                let request = api.patch_status(&name, &params, &patch);
                match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(pod = %name, %error, "marking a pod Running failed"),
                    Err(_elapsed) => tracing::warn!(pod = %name, "marking a pod Running timed out"),
                }
            }
        })
        .await;
}

/// The receiver as a stream.
fn tokio_stream_of<T>(mut receiver: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context))
}

/// Aborts a task when dropped, so that an early return leaves none behind.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Quantile `quantile` of sorted `values`.
fn quantile(sorted: &[f64], quantile: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else { return f64::NAN };
    sorted[(last as f64 * quantile).round() as usize]
}

/// kube-scheduler's CI floors (scheduler_perf, SchedulingBasic) for 1,000 nodes / 10,000 pods
/// and 5,000 nodes / 50,000 pods, and the target, in pods per second.
const FLOOR_1000_NODES: f64 = 680.0;
const FLOOR_5000_NODES: f64 = 810.0;
const TARGET: f64 = 5000.0;

fn print_report(args: &BenchSchedulerArgs, report: &Report) {
    let outcome = &report.outcome;
    let pods = &outcome.pods;
    let since_start = |at: Instant| at.saturating_duration_since(outcome.started).as_secs_f64();
    let bound: Vec<&PodTimes> = pods.iter().filter(|pod| pod.bound.is_some()).collect();
    let last_ack = pods.iter().filter_map(|pod| pod.acked).max().map(since_start).unwrap_or(f64::NAN);
    let last_bind = bound.iter().filter_map(|pod| pod.bound).max().map(since_start).unwrap_or(f64::NAN);
    let first_bind = bound.iter().filter_map(|pod| pod.bound).min().map(since_start).unwrap_or(f64::NAN);
    let created = pods.iter().filter(|pod| pod.acked.is_some()).count();
    let bind_rate = bound.len() as f64 / last_bind;
    // scheduler_perf's SchedulingThroughput: pods bound in each second of the run.
    let mut per_second: Vec<f64> =
        outcome.samples.windows(2).map(|pair| (pair[1].bound - pair[0].bound) as f64).collect();
    let busy = outcome.samples.iter().position(|sample| sample.bound > 0).unwrap_or(0);
    per_second = per_second.split_off(busy.saturating_sub(1).min(per_second.len()));
    while per_second.last() == Some(&0.0) {
        per_second.pop();
    }
    let average = per_second.iter().sum::<f64>() / per_second.len().max(1) as f64;
    let mut sorted = per_second.clone();
    sorted.sort_by(f64::total_cmp);
    let mut latencies: Vec<f64> = pods
        .iter()
        .filter_map(|pod| Some(pod.bound?.saturating_duration_since(pod.acked?).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in &bound {
        *per_node.entry(pod.node.as_deref().unwrap_or_default()).or_default() += 1;
    }
    let most = per_node.values().copied().max().unwrap_or(0);
    let fewest = if per_node.len() < args.nodes { 0 } else { per_node.values().copied().min().unwrap_or(0) };
    let floor = if args.nodes >= 5000 { FLOOR_5000_NODES } else { FLOOR_1000_NODES };
    let cpu: Vec<String> = report.cpu.iter().map(|time| format!("{:.1} s", time.as_secs_f64())).collect();
    let (servers_cpu, bench_cpu) = cpu.split_at(cpu.len() - 1);
    let rows: Vec<(String, String)> = vec![
        (
            "shape".into(),
            format!("{} hollow nodes, {} pods, {} writers", args.nodes, args.pods, args.clients),
        ),
        ("hollow nodes created and Ready".into(), format!("{:.1} s", report.nodes_seconds)),
        (
            "scheduler's server (kube-scheduler Lease)".into(),
            report.leader.clone().unwrap_or_else(|| "unknown".into()),
        ),
        (
            "pods created".into(),
            format!("{created} in {last_ack:.2} s: {:.0} pods/s", created as f64 / last_ack),
        ),
        (
            "pods bound".into(),
            format!("{} in {last_bind:.2} s from the first create: {bind_rate:.0} pods/s", bound.len()),
        ),
        (
            "binds per second of the run (scheduler_perf's SchedulingThroughput)".into(),
            format!(
                "average {average:.0}, p50 {:.0}, p90 {:.0}, max {:.0}",
                quantile(&sorted, 0.5),
                quantile(&sorted, 0.9),
                quantile(&sorted, 1.0)
            ),
        ),
        ("first create → first bind seen".into(), format!("{:.0} ms", first_bind * 1000.0)),
        ("first create → last bind seen".into(), format!("{last_bind:.2} s")),
        (
            "create acknowledged → bound seen, per pod".into(),
            format!(
                "p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                quantile(&latencies, 0.5),
                quantile(&latencies, 0.9),
                quantile(&latencies, 0.99),
                quantile(&latencies, 1.0)
            ),
        ),
        ("pods per node (fewest, most)".into(), format!("{fewest}, {most}")),
        (
            "bind rate against the target (5,000 pods/s) and kube-scheduler's CI floor".into(),
            format!("{:.2}× target, {:.2}× floor ({floor:.0} pods/s)", bind_rate / TARGET, bind_rate / floor),
        ),
        (
            "CPU time during the pod run (2 cores)".into(),
            format!("servers {}, this bench {}", servers_cpu.join(", "), bench_cpu.join("")),
        ),
        (
            "machine load average, before → after".into(),
            format!("{:.2} → {:.2}", report.load.0, report.load.1),
        ),
    ];
    println!("| figure | shoal |\n|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
    if let Some(stalled) = &outcome.stalled {
        println!("\nThe run stopped early: {stalled}.");
    }
    println!("\n| seconds | created | bound | backlog |\n|---:|---:|---:|---:|");
    // At most about 40 rows: every n-th sample, and the last.
    let stride = outcome.samples.len().div_ceil(40).max(1);
    let last = outcome.samples.len().saturating_sub(1);
    for (i, sample) in outcome.samples.iter().enumerate() {
        if i % stride == 0 || i == last {
            let backlog = sample.created.saturating_sub(sample.bound);
            println!("| {:.1} | {} | {} | {backlog} |", sample.seconds, sample.created, sample.bound);
        }
    }
}
