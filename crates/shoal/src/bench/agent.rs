//! `shoal bench agent`: how soon a node agent runs a pod, and how little memory it needs.
//!
//! A fresh cluster of 3 servers and 1 agent on loopback, the agent on member 0's API, the
//! bench creating pods through member 1 and watching them through member 2.
//!
//! Start latency is Kubernetes' pod-startup SLI without the scheduler (there is none: pods are
//! created bound, with `spec.nodeName`): a watch on the bench's pods opens first; pods running
//! `sleep` are then created at a steady rate, with a bounded number not yet running; a pod's
//! latency runs from the acknowledgement of its create to the first watch event showing it
//! Running (and, separately, Ready). The node keeps at most `--pods-running` of them: beyond
//! that, each new pod's create comes with the deletion of the oldest, as in a rolling update
//! (the node advertises room for 110 pods, and its pod CIDR has 253 addresses).
//!
//! Where a pod's start time goes is read, for the pods still on the node at the end, from the
//! files the process runtime writes at each step (the sandbox, the container's spec, the
//! shim's record of the container's start), against the bench's own clock.
//!
//! Memory is read from /proc when the first `--pods-running` pods all run, creation paused: the
//! agent's own RSS apart from its shims' and their containers', which are separate processes.

pub(super) mod processes;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use clap::Args;
use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use kube::{Api, Client};
use shoal_agent::runtime::process::{ShimState, read_json};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use self::processes::{CpuUse, Memory, ProcessMemory, load_average, memory, mib};
use crate::local_cluster::{LocalCluster, LocalClusterConfig};

#[derive(Args, Clone, Debug)]
pub struct BenchAgentArgs {
    /// Pods created in all; each is one start-latency sample.
    #[arg(long, default_value_t = 500)]
    pub pods: usize,
    /// Pods created per second.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// Pods created but not yet seen Running and Ready at most; creation waits beyond it.
    #[arg(long, default_value_t = 50)]
    pub in_flight: usize,
    /// Pods kept on the node at most (the oldest is deleted beyond it); memory is read when
    /// this many first run.
    #[arg(long, default_value_t = 100)]
    pub pods_running: usize,
    /// Scratch directory for the cluster (wiped first).
    #[arg(long, default_value = "/var/tmp/shoal-bench-agent")]
    pub dir: PathBuf,
    /// Also write each pod's times to this CSV file (milliseconds from the first create).
    #[arg(long)]
    pub samples: Option<PathBuf>,
}

/// The agent's node name.
const NODE: &str = "a1";
/// The bench's pods' one container.
const CONTAINER: &str = "sleep";
/// The label that marks the bench's pods, which its watch selects.
const POD_LABEL: (&str, &str) = ("shoal-bench", "agent");
/// How long the agent gets to register its node and report it Ready.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a created pod may take to be seen Running and Ready before the bench fails.
const POD_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one create or delete may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the watch gets to list before the first create.
const WATCH_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before memory is read, so that the last pods' start is over.
const MEMORY_SETTLE: Duration = Duration::from_secs(2);
/// Sightings the watch task may queue ahead of the bench loop; it waits beyond that.
const SIGHTINGS_QUEUED_MAX: usize = 1024;
/// How often the bench loop checks for pods that take too long and for a dead watch.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A pod CIDR of /24 has 253 pod addresses; deleted pods hold theirs until their cleanup, so
/// the pods kept running stay well below.
const PODS_RUNNING_MAX: usize = 200;

pub async fn run(args: BenchAgentArgs) -> anyhow::Result<()> {
    ensure!(args.pods > 0, "--pods must be positive");
    ensure!(args.rate > 0, "--rate must be positive");
    ensure!(args.in_flight > 0, "--in-flight must be positive");
    ensure!(
        (1..=PODS_RUNNING_MAX).contains(&args.pods_running),
        "--pods-running must be between 1 and {PODS_RUNNING_MAX} (the agent's pod CIDR is a /24)"
    );
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let mut cluster = LocalCluster::new(LocalClusterConfig::new(&exe, &args.dir))?;
    cluster.start(3).await?;
    cluster.wait_ready().await?;
    let creator = cluster.admin_client(1).await?;
    let observer = cluster.admin_client(2).await?;
    super::api::wait_for_namespace(&creator).await?;
    cluster.start_agent(NODE, 0, &[]).await?;
    wait_node_ready(&creator).await?;
    let agent_pid = cluster.agent_pid(0).context("the agent is not running")?;
    tokio::time::sleep(MEMORY_SETTLE).await;
    let idle = ProcessMemory::of(agent_pid).context("reading the idle agent's memory")?;

    let cpu_before = CpuUse::read(&cluster, agent_pid);
    let load_before = load_average();
    let run = start_pods(&args, creator, observer, || memory(&cluster, agent_pid)).await?;
    let report = Report {
        cpu: CpuUse::read(&cluster, agent_pid).since(&cpu_before),
        load: (load_before, load_average()),
        stages: start_stages(&cluster.agent(0).state_dir(), &run.pods),
        idle,
        peak: ProcessMemory::of(agent_pid).context("reading the agent's memory")?,
        run,
    };
    if let Some(path) = &args.samples {
        write_samples(path, &report.run).with_context(|| format!("writing {}", path.display()))?;
    }
    print_table(&args, &report);
    cluster.stop_all().await
}

/// When one pod's create was sent and acknowledged, and when the watch first showed it
/// Running and Ready.
#[derive(Clone, Debug, Default)]
struct PodTimes {
    uid: Option<String>,
    sent: Option<Instant>,
    acked: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
    deleted: bool,
}

impl PodTimes {
    fn started(&self) -> bool {
        self.running.is_some() && self.ready.is_some()
    }
}

/// What the watch saw.
enum Sighting {
    /// The initial listing is over: creates may begin.
    Synced,
    Running(usize, Instant),
    Ready(usize, Instant),
}

/// What a create or delete task did.
enum Done {
    Created { index: usize, uid: Option<String>, acked: Instant },
    Deleted,
}

/// The start-latency run's figures and the memory read in its middle.
struct Run {
    started: Instant,
    pods: Vec<PodTimes>,
    seconds: f64,
    memory: Memory,
}

/// Everything the bench prints.
struct Report {
    run: Run,
    stages: Vec<(&'static str, Quantiles)>,
    /// The agent before the first pod, and its peak after the last.
    idle: ProcessMemory,
    peak: ProcessMemory,
    /// CPU time spent during the run.
    cpu: CpuUse,
    /// The machine's 1-minute load average before and after the run: other work shares it.
    load: (f64, f64),
}

/// Creates the pods at the configured pace, deleting the oldest beyond `--pods-running`, and
/// calls `read_memory` once, when the first `--pods-running` pods all run.
async fn start_pods(
    args: &BenchAgentArgs,
    creator: Client,
    observer: Client,
    read_memory: impl Fn() -> anyhow::Result<Memory>,
) -> anyhow::Result<Run> {
    let (sightings, mut seen) = mpsc::channel(SIGHTINGS_QUEUED_MAX);
    let mut watch = tokio::spawn(watch_pods(Api::namespaced(observer, "default"), sightings));
    let _stop_watch = AbortOnDrop(watch.abort_handle());
    match tokio::time::timeout(WATCH_SYNC_TIMEOUT, seen.recv()).await {
        Ok(Some(Sighting::Synced)) => {}
        Ok(Some(_)) => unreachable!("the watch reports pods only after its listing"),
        Ok(None) => return Err(watch_failure(&mut watch).await),
        Err(_) => anyhow::bail!("the watch did not list within {WATCH_SYNC_TIMEOUT:?}"),
    }

    let api: Api<Pod> = Api::namespaced(creator, "default");
    let interval = Duration::from_secs(1) / args.rate;
    let memory_at = args.pods_running.min(args.pods);
    let mut pods: Vec<PodTimes> = vec![PodTimes::default(); args.pods];
    let mut memory = None;
    let mut next = 0;
    let mut tasks: JoinSet<anyhow::Result<Done>> = JoinSet::new();
    let mut checks = tokio::time::interval(CHECK_INTERVAL);
    let start = Instant::now();
    let mut due = start;
    while !pods.iter().all(PodTimes::started) {
        if memory.is_none() && pods[..memory_at].iter().all(PodTimes::started) {
            tokio::time::sleep(MEMORY_SETTLE).await;
            memory = Some(read_memory()?);
            due = Instant::now();
        }
        let starting = pods[..next].iter().filter(|pod| !pod.started()).count();
        // The pod that makes room for the next one must have started before it is deleted.
        let room = next < args.pods_running || pods[next - args.pods_running].started();
        let may_create =
            next < args.pods && starting < args.in_flight && room && (next < memory_at || memory.is_some());
        tokio::select! {
            () = tokio::time::sleep_until(due), if may_create => {
                if next >= args.pods_running {
                    let oldest = next - args.pods_running;
                    pods[oldest].deleted = true;
                    tasks.spawn(delete_pod(api.clone(), oldest));
                }
                pods[next].sent = Some(Instant::now());
                tasks.spawn(create_pod(api.clone(), next));
                next += 1;
                // A steady pace: after a stall the next create waits a whole interval again.
                let now = Instant::now();
                due = if now > due + interval { now + interval } else { due + interval };
            }
            Some(joined) = tasks.join_next() => {
                if let Done::Created { index, uid, acked } = joined.context("a create or delete task")?? {
                    pods[index].acked = Some(acked);
                    pods[index].uid = uid;
                }
            }
            sighting = seen.recv() => match sighting {
                None => return Err(watch_failure(&mut watch).await),
                Some(Sighting::Synced) => {}
                Some(Sighting::Running(index, at)) if index < pods.len() => {
                    pods[index].running.get_or_insert(at);
                }
                Some(Sighting::Ready(index, at)) if index < pods.len() => {
                    pods[index].ready.get_or_insert(at);
                }
                Some(Sighting::Running(..) | Sighting::Ready(..)) => {}
            },
            _ = checks.tick() => check_progress(&pods)?,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let memory = match memory {
        Some(memory) => memory,
        None => read_memory()?,
    };
    Ok(Run { started: start, pods, seconds, memory })
}

/// Why the watch task ended (it runs until aborted otherwise).
async fn watch_failure(watch: &mut JoinHandle<anyhow::Result<()>>) -> anyhow::Error {
    match watch.await {
        Ok(Ok(())) => anyhow::anyhow!("the pod watch ended"),
        Ok(Err(error)) => error.context("watching the pods"),
        Err(error) => anyhow::Error::new(error).context("the pod watch task"),
    }
}

/// Fails the run if a pod has taken too long to start.
fn check_progress(pods: &[PodTimes]) -> anyhow::Result<()> {
    for (index, pod) in pods.iter().enumerate() {
        let late = pod.sent.is_some_and(|sent| sent.elapsed() > POD_START_TIMEOUT);
        ensure!(
            pod.started() || !late,
            "pod {} was not seen Running and Ready within {POD_START_TIMEOUT:?} of its create \
             (acknowledged: {}, Running: {}, Ready: {})",
            pod_name(index),
            pod.acked.is_some(),
            pod.running.is_some(),
            pod.ready.is_some()
        );
    }
    Ok(())
}

fn pod_name(index: usize) -> String {
    format!("bench-{index}")
}

fn pod_index(name: &str) -> Option<usize> {
    name.strip_prefix("bench-")?.parse().ok()
}

async fn create_pod(api: Api<Pod>, index: usize) -> anyhow::Result<Done> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": pod_name(index), "labels": { POD_LABEL.0: POD_LABEL.1 } },
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": CONTAINER,
                "image": "host",
                "command": ["/bin/sh", "-c", "exec sleep 100000"],
            }],
        },
    }))?;
    let created = tokio::time::timeout(REQUEST_TIMEOUT, api.create(&PostParams::default(), &pod))
        .await
        .with_context(|| format!("creating pod {} timed out", pod_name(index)))?
        .with_context(|| format!("creating pod {}", pod_name(index)))?;
    Ok(Done::Created { index, uid: created.metadata.uid, acked: Instant::now() })
}

async fn delete_pod(api: Api<Pod>, index: usize) -> anyhow::Result<Done> {
    tokio::time::timeout(REQUEST_TIMEOUT, api.delete(&pod_name(index), &DeleteParams::default()))
        .await
        .with_context(|| format!("deleting pod {} timed out", pod_name(index)))?
        .with_context(|| format!("deleting pod {}", pod_name(index)))?;
    Ok(Done::Deleted)
}

/// Watches the bench's pods and reports, for each, every event that shows it Running or
/// Ready, with the time it arrived; the bench keeps the first of each.
async fn watch_pods(api: Api<Pod>, sightings: mpsc::Sender<Sighting>) -> anyhow::Result<()> {
    let selector = format!("{}={}", POD_LABEL.0, POD_LABEL.1);
    let stream = watcher::watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    futures::pin_mut!(stream);
    // Only the first sighting of each counts: later ones need not cross the channel.
    let mut running = HashSet::new();
    let mut ready = HashSet::new();
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
        let Some(index) = pod.metadata.name.as_deref().and_then(pod_index) else { continue };
        let status = pod.status.as_ref();
        if status.and_then(|status| status.phase.as_deref()) == Some("Running") && running.insert(index) {
            sightings.send(Sighting::Running(index, at)).await?;
        }
        let is_ready = status
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|condition| condition.type_ == "Ready"))
            .is_some_and(|condition| condition.status == "True");
        if is_ready && ready.insert(index) {
            sightings.send(Sighting::Ready(index, at)).await?;
        }
    }
    anyhow::bail!("the pod watch ended")
}

/// The steps of a pod's start, in order, and the file that marks the end of each.
const START_STEPS: [&str; 4] = [
    "create acknowledged → sandbox on disk (the agent's watch, its worker's start)",
    "sandbox → container spec on disk (the pod's config objects read from the API)",
    "container spec → container process spawned (the shim's start)",
    "container spawned → Running seen by the watch (status patch, the watch)",
];

/// How long each of `START_STEPS` took, over the pods still on the node, by the times of the
/// process runtime's files: `pods/<uid>/sandbox.json`, the container's `spec.json` (written
/// just before its shim starts) and the shim's `state.json` (`started_at`: just before it
/// spawns the container's process). Read only. File times have the kernel's tick resolution
/// (4 ms at 250 Hz), so the steps between two files are multiples of it.
fn start_stages(state_dir: &Path, pods: &[PodTimes]) -> Vec<(&'static str, Quantiles)> {
    let (now, wall_now) = (Instant::now(), SystemTime::now());
    // The files' times are on the wall clock; the bench's on the monotonic one.
    let wall = |instant: Instant| wall_now - now.duration_since(instant);
    let modified = |path: &Path| std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok();
    let mut steps: [Vec<Duration>; 4] = Default::default();
    for pod in pods.iter().filter(|pod| !pod.deleted) {
        let (Some(uid), Some(acked), Some(running)) = (&pod.uid, pod.acked, pod.running) else { continue };
        let pod_dir = state_dir.join("pods").join(uid);
        let container_dir = pod_dir.join("containers").join(format!("{CONTAINER}.0"));
        let Some(sandbox) = modified(&pod_dir.join("sandbox.json")) else { continue };
        let Some(spec) = modified(&container_dir.join("spec.json")) else { continue };
        let Some(state) = read_json::<ShimState>(&container_dir.join("state.json")) else { continue };
        let marks = [wall(acked), sandbox, spec, state.started_at, wall(running)];
        for (step, pair) in steps.iter_mut().zip(marks.windows(2)) {
            step.push(pair[1].duration_since(pair[0]).unwrap_or_default());
        }
    }
    START_STEPS.into_iter().zip(steps.map(Quantiles::of)).collect()
}

async fn wait_node_ready(client: &Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + NODE_READY_TIMEOUT;
    loop {
        let node = nodes.get_opt(NODE).await.ok().flatten();
        let conditions = node.and_then(|node| node.status?.conditions).unwrap_or_default();
        if conditions.iter().any(|condition| condition.type_ == "Ready" && condition.status == "True") {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "node {NODE} was not Ready within {NODE_READY_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Aborts a task when dropped, so that an early return leaves no watch behind.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Quantiles of a set of durations, in milliseconds.
struct Quantiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    count: usize,
}

impl Quantiles {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |quantile: f64| {
            let Some(last) = samples.len().checked_sub(1) else { return 0.0 };
            let index = (last as f64 * quantile).round() as usize;
            samples[index].as_secs_f64() * 1000.0
        };
        Self { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0), count: samples.len() }
    }

    fn row(&self) -> String {
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} pods)",
            self.p50, self.p90, self.p99, self.max, self.count
        )
    }
}

/// The latencies from each pod's create acknowledgement to `milestone`, over `pods`.
fn latencies(pods: &[PodTimes], milestone: impl Fn(&PodTimes) -> Option<Instant>) -> Quantiles {
    Quantiles::of(
        pods.iter().filter_map(|pod| Some(milestone(pod)?.saturating_duration_since(pod.acked?))).collect(),
    )
}

fn print_table(args: &BenchAgentArgs, report: &Report) {
    let Report { run, stages, idle, peak, cpu, load } = report;
    let pods = &run.pods;
    let first = args.pods_running.min(pods.len());
    let requests = Quantiles::of(
        pods.iter().filter_map(|pod| Some(pod.acked?.saturating_duration_since(pod.sent?))).collect(),
    );
    let mut rows: Vec<(String, String)> = vec![
        ("create → Running seen by the watch".into(), latencies(pods, |pod| pod.running).row()),
        ("create → Ready seen by the watch".into(), latencies(pods, |pod| pod.ready).row()),
        (
            format!("create → Running, the first {first} pods (no deletions alongside)"),
            latencies(&pods[..first], |pod| pod.running).row(),
        ),
    ];
    if pods.len() > first {
        rows.push((
            "create → Running, the other pods (each create deletes the oldest)".into(),
            latencies(&pods[first..], |pod| pod.running).row(),
        ));
    }
    for (step, quantiles) in stages {
        rows.push((format!("stage, pods still on the node at the end: {step}"), quantiles.row()));
    }
    rows.extend([
        ("create request, sent → acknowledged".into(), requests.row()),
        (
            "pods created per second (achieved, memory pause included)".into(),
            format!("{:.1} (offered {})", pods.len() as f64 / run.seconds, args.rate),
        ),
        (
            format!("CPU time during the run ({:.1} s on 2 cores)", run.seconds),
            format!(
                "agent {:.2} s ({:.1} ms per pod), its shims and containers {:.2} s, servers {}, \
                 this bench {:.2} s",
                cpu.agent.as_secs_f64(),
                cpu.agent.as_secs_f64() * 1000.0 / pods.len() as f64,
                cpu.agent_children.as_secs_f64(),
                cpu.servers
                    .iter()
                    .map(|time| format!("{:.2} s", time.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(", "),
                cpu.bench.as_secs_f64()
            ),
        ),
        ("machine load average, before → after the run".into(), format!("{:.2} → {:.2}", load.0, load.1)),
        ("agent RSS, no pods".into(), idle.row()),
    ]);
    let memory = &run.memory;
    let total = |processes: &[ProcessMemory], field: fn(&ProcessMemory) -> u64| {
        mib(processes.iter().map(field).sum())
    };
    rows.extend([
        (format!("agent RSS, {first} pods running (pods excluded)"), memory.agent.row()),
        (
            format!("their {} shims, total", memory.shims.len()),
            format!(
                "RSS {:.2} MiB, PSS {:.2} MiB",
                total(&memory.shims, |m| m.rss_kib),
                total(&memory.shims, |m| m.pss_kib)
            ),
        ),
        (
            format!("their {} container processes, total", memory.containers.len()),
            format!(
                "RSS {:.2} MiB, PSS {:.2} MiB",
                total(&memory.containers, |m| m.rss_kib),
                total(&memory.containers, |m| m.pss_kib)
            ),
        ),
        (
            "servers' RSS, each".into(),
            memory
                .servers
                .iter()
                .map(|m| format!("{:.2} MiB", mib(m.rss_kib)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            format!("agent peak RSS (VmHWM) after all {} pods", pods.len()),
            format!("{:.2} MiB", mib(peak.peak_kib)),
        ),
    ]);
    println!("| figure | shoal |\n|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
}

/// Writes one line per pod: its index and, in milliseconds from the run's start, when its create
/// was sent and acknowledged and when the watch showed it Running and Ready (empty if never).
fn write_samples(path: &Path, run: &Run) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let at = |instant: Option<Instant>| {
        instant
            .map(|instant| {
                format!("{:.1}", instant.saturating_duration_since(run.started).as_secs_f64() * 1000.0)
            })
            .unwrap_or_default()
    };
    let mut csv = String::from("pod,sent_ms,acked_ms,running_ms,ready_ms\n");
    for (index, pod) in run.pods.iter().enumerate() {
        let _ =
            writeln!(csv, "{index},{},{},{},{}", at(pod.sent), at(pod.acked), at(pod.running), at(pod.ready));
    }
    std::fs::write(path, csv)
}
