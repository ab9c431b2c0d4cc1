//! `shoal bench node-loss`: how long a node's pods stay down after the node dies, and whether
//! a merely slow network evicts anything.
//!
//! A fresh cluster of 3 servers and `--agents` real agents (process runtime), each agent's
//! connection to its server through a fault-injecting forwarder (`link_forwarder`), and a
//! Deployment of `--replicas` sleeping pods. Each run loses the node with the most replicas
//! at a known instant (SIGKILL to its agent, or its link partitioned both ways) and follows
//! the cluster through watches on pods and nodes until every replica runs on the surviving
//! nodes; the run's phases are the loss to the node's unreachable NoExecute taint (detection
//! and the taint's write), the taint to the first eviction (the pods' toleration), and the
//! eviction to the last replacement Running (ReplicaSet, scheduler, agent). The node then
//! comes back (restarted, or healed) and the next run waits for it and for its evicted pods
//! to be gone.
//!
//! Then the false-eviction run: every link gets one of the lab's latency models
//! (`lab failure-detector`'s, pauses included) for `--jitter-seconds`, and the bench counts
//! pods evicted (none should be: every node is alive) and nodes turned Unknown (false
//! suspicions). Pauses are rare (one every ten minutes per link in the lab's model), so the
//! bench also prints how often the measured loss-to-eviction time would evict under that
//! model in the long run, from the pause distribution itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{Args, ValueEnum};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::lab::failure_detector::LatencyKind;
use crate::lab::failure_detector::latency::{self, LinkLatency};
use crate::local_cluster::{LocalCluster, LocalClusterConfig};

#[derive(Args, Clone, Debug)]
pub struct BenchNodeLossArgs {
    /// Agents, one node each; every run loses one of them.
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 8)]
    pub replicas: i32,
    /// Node losses measured.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// How a node is lost.
    #[arg(long, value_enum, default_value = "kill")]
    pub failure: Failure,
    /// Length of the false-eviction run under `--latency`, in seconds (0: none).
    #[arg(long, default_value_t = 120)]
    pub jitter_seconds: u64,
    /// The lab's latency model on every link during the false-eviction run.
    #[arg(long, value_enum, default_value = "heavy-tail")]
    pub latency: LatencyKind,
    /// Mean seconds between two pauses of the heavy-tail model on one link (600: the lab's).
    #[arg(long, default_value_t = latency::PAUSE_EVERY_MEAN.as_secs_f64())]
    pub pause_every_seconds: f64,
    /// `shoal agent --lease-renew-interval-ms` for every agent (default: the agent's own).
    #[arg(long)]
    pub lease_renew_interval_ms: Option<u64>,
    /// `shoal server --default-toleration-seconds` for every server (default: the server's).
    #[arg(long)]
    pub default_toleration_seconds: Option<i64>,
    /// Scratch directory for the cluster (wiped first).
    #[arg(long, default_value = "/var/tmp/shoal-bench-node-loss")]
    pub dir: PathBuf,
}

/// How a run loses its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Failure {
    /// SIGKILL to the node's agent; its pods run on, unseen.
    Kill,
    /// The agent's link to the control plane partitioned both ways; the agent runs on, unheard.
    Partition,
}

/// The most agents and replicas: beyond these the bench measures the machine, not shoal.
pub const AGENTS_MAX: usize = 16;
pub const REPLICAS_MAX: i32 = 100;
/// The most runs, and the longest false-eviction run.
pub const RUNS_MAX: usize = 100;
pub const JITTER_SECONDS_MAX: u64 = 3600;
/// How long any one awaited state (nodes Ready, replicas Running, a node's loss noticed and
/// its pods replaced) may take before the bench fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between two reads of the controller manager's Lease.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The Lease whose holder runs the controllers, node lifecycle among them.
const CONTROLLER_LEASE: &str = "kube-controller-manager";
/// The Deployment's name and its pods' label.
const APP: &str = "node-loss";
const UNREACHABLE: &str = shoal_controllers::node_lifecycle::TAINT_UNREACHABLE;

/// The instants of one run, from the loss of the node on.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Loss to the unreachable NoExecute taint seen by the watch.
    tainted: Duration,
    /// Loss to the first of the node's pods seen marked for deletion.
    evicted: Duration,
    /// Loss to every replica Running on the surviving nodes.
    replaced: Duration,
}

pub async fn run(args: BenchNodeLossArgs) -> anyhow::Result<()> {
    check(&args)?;
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let mut config = LocalClusterConfig::new(&exe, &args.dir);
    if let Some(seconds) = args.default_toleration_seconds {
        config.server_args = vec!["--default-toleration-seconds".into(), seconds.to_string()];
    }
    let mut cluster = LocalCluster::new(config)?;
    cluster.start(3).await?;
    cluster.wait_ready().await?;
    let agent_args: Vec<String> = args
        .lease_renew_interval_ms
        .map(|ms| vec!["--lease-renew-interval-ms".to_owned(), ms.to_string()])
        .unwrap_or_default();
    let agent_args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    let mut names = Vec::new();
    for index in 0..args.agents {
        let name = format!("n{}", index + 1);
        cluster.start_agent_through_link(&name, index % 3, &agent_args).await?;
        names.push(name);
    }
    let client = cluster.admin_client(2).await?;
    let observer = Observer::start(client.clone());
    observer.wait("every node Ready", |view| names.iter().all(|name| view.node_ready(name))).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment(args.replicas)).await?;
    println!(
        "{} agents (lease renewals every {} ms), a Deployment of {} replicas, default toleration {} s; \
         {} runs, node lost by {:?}.",
        args.agents,
        args.lease_renew_interval_ms.unwrap_or(shoal_agent::lease::RENEW_INTERVAL_DEFAULT.as_millis() as u64),
        args.replicas,
        args.default_toleration_seconds.unwrap_or(shoal_apiserver::admit::DEFAULT_TOLERATION_SECONDS),
        args.runs,
        args.failure
    );

    let mut runs = Vec::new();
    for number in 1..=args.runs {
        observer
            .wait("every replica Running, every node Ready and untainted", |view| {
                view.settled(&names, args.replicas)
            })
            .await?;
        wait_for_steady_leader(&client).await?;
        let victim = observer.view().busiest(&names).context("no node runs a replica")?;
        let index = names.iter().position(|name| *name == victim).expect("a known node");
        let lost = Instant::now();
        match args.failure {
            Failure::Kill => cluster.kill_agent(index).await?,
            Failure::Partition => cluster.cut_off_agent(index, true)?,
        }
        let run = observer.follow_loss(&victim, lost, args.replicas).await?;
        println!(
            "run {number}: lost {victim}; tainted +{:.2} s, first eviction +{:.2} s, all {} replicas \
             Running elsewhere +{:.2} s",
            run.tainted.as_secs_f64(),
            run.evicted.as_secs_f64(),
            args.replicas,
            run.replaced.as_secs_f64()
        );
        runs.push(run);
        match args.failure {
            Failure::Kill => cluster.restart_agent(index, index % 3)?,
            Failure::Partition => cluster.cut_off_agent(index, false)?,
        }
    }
    if !runs.is_empty() {
        print!("{}", summary(&runs));
    }

    if args.jitter_seconds > 0 {
        observer
            .wait("every replica Running, every node Ready and untainted", |view| {
                view.settled(&names, args.replicas)
            })
            .await?;
        false_evictions(&cluster, &observer, &names, &args, &runs).await?;
    }
    Ok(())
}

/// Waits until the controllers' leader has led for the node lifecycle controller's startup
/// grace: a new leader knows no node's heartbeat history and suspects no node before that, so
/// a run begun sooner would time the grace, not the failure detector. (On a starved machine
/// leadership can still move during a run; the run then shows it.)
async fn wait_for_steady_leader(client: &kube::Client) -> anyhow::Result<()> {
    let grace = shoal_controllers::node_lifecycle::NodeLifecycleConfig::default().startup_grace;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), shoal_controllers::leader_election::LEASE_NAMESPACE);
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let lease = leases.get_opt(CONTROLLER_LEASE).await?;
        let acquired = lease.and_then(|lease| lease.spec?.acquire_time).map(|time| time.0);
        let now = k8s_openapi::jiff::Timestamp::now();
        if acquired.is_some_and(|acquired| now.duration_since(acquired).as_secs_f64() >= grace.as_secs_f64())
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the controllers' leadership did not settle within {STEP_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn check(args: &BenchNodeLossArgs) -> anyhow::Result<()> {
    ensure!((2..=AGENTS_MAX).contains(&args.agents), "--agents must be between 2 and {AGENTS_MAX}");
    ensure!((1..=REPLICAS_MAX).contains(&args.replicas), "--replicas must be between 1 and {REPLICAS_MAX}");
    ensure!(args.runs <= RUNS_MAX, "--runs must be at most {RUNS_MAX}");
    ensure!(
        args.jitter_seconds <= JITTER_SECONDS_MAX,
        "--jitter-seconds must be at most {JITTER_SECONDS_MAX}"
    );
    ensure!(
        args.pause_every_seconds.is_finite() && args.pause_every_seconds > 0.0,
        "--pause-every-seconds must be a positive number"
    );
    Ok(())
}

/// One phase's length within a run.
type Phase = fn(&Run) -> Duration;

/// The figures over all runs: median and maximum of each phase and of the whole.
fn summary(runs: &[Run]) -> String {
    let phases: [(&str, Phase); 4] = [
        ("loss -> NoExecute taint (detection)", |run| run.tainted),
        ("taint -> first eviction (toleration)", |run| run.evicted.saturating_sub(run.tainted)),
        ("eviction -> all Running (replacement)", |run| run.replaced.saturating_sub(run.evicted)),
        ("loss -> all replicas Running elsewhere", |run| run.replaced),
    ];
    let mut text = format!("\n| phase ({} runs) | median | max |\n|---|---:|---:|\n", runs.len());
    for (name, phase) in phases {
        let mut samples: Vec<Duration> = runs.iter().map(phase).collect();
        samples.sort_unstable();
        let median = samples[(samples.len() - 1) / 2];
        let max = samples[samples.len() - 1];
        text += &format!("| {name} | {:.2} s | {:.2} s |\n", median.as_secs_f64(), max.as_secs_f64());
    }
    text
}

/// Every link under the latency model for `--jitter-seconds`; counts evictions and nodes
/// turned Unknown, and prints the pauses the links drew.
async fn false_evictions(
    cluster: &LocalCluster,
    observer: &Observer,
    names: &[String],
    args: &BenchNodeLossArgs,
    runs: &[Run],
) -> anyhow::Result<()> {
    let pause_every = Duration::from_secs_f64(args.pause_every_seconds);
    for index in 0..names.len() {
        let forwarder = cluster.agent_link(index).context("every agent has a link")?;
        forwarder.set_latency(|now| Some(LinkLatency::new(args.latency, index as u64 + 1, pause_every, now)));
    }
    let before = observer.view();
    let pods_before: BTreeSet<String> = before.pods.keys().cloned().collect();
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let mut suspicions = 0;
    let mut evicted: BTreeSet<String> = BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(args.jitter_seconds);
    let mut changes = observer.changed.clone();
    while Instant::now() < end {
        let view = observer.view();
        for name in names {
            let is_unknown = view.node_condition(name).as_deref() == Some("Unknown");
            if is_unknown && unknown.insert(name.clone()) {
                suspicions += 1;
            } else if !is_unknown {
                unknown.remove(name);
            }
        }
        for uid in &pods_before {
            let marked = view.pods.get(uid).is_none_or(|pod| pod.metadata.deletion_timestamp.is_some());
            if marked {
                evicted.insert(uid.clone());
            }
        }
        let _ = tokio::time::timeout_at(end, changes.changed()).await;
    }
    let mut pauses = Vec::new();
    for index in 0..names.len() {
        let forwarder = cluster.agent_link(index).context("every agent has a link")?;
        pauses.extend(forwarder.pauses());
        forwarder.set_latency(|_| None);
    }
    pauses.sort_unstable();
    let listed: Vec<String> = pauses.iter().map(|pause| format!("{:.2} s", pause.as_secs_f64())).collect();
    println!(
        "\nFalse-eviction run: {} links under the {} model for {} s (a pause every {} s on average per \
         link): {} pauses drawn [{}]; nodes turned Unknown: {suspicions}; pods evicted: {}.",
        names.len(),
        args.latency.name(),
        args.jitter_seconds,
        args.pause_every_seconds,
        pauses.len(),
        listed.join(", "),
        evicted.len()
    );
    if args.latency == LatencyKind::HeavyTail && !runs.is_empty() {
        let mut to_eviction: Vec<Duration> = runs.iter().map(|run| run.evicted).collect();
        to_eviction.sort_unstable();
        let silence = to_eviction[(to_eviction.len() - 1) / 2];
        println!(
            "In the long run: a pause longer than the loss-to-eviction time (median {:.2} s) evicts; \
             under this model that is {:.3} false evictions per node-hour (P(pause > {:.2} s) = {:.4}, \
             {:.1} pauses per hour).",
            silence.as_secs_f64(),
            3600.0 / args.pause_every_seconds * pause_exceeds(silence),
            silence.as_secs_f64(),
            pause_exceeds(silence),
            3600.0 / args.pause_every_seconds
        );
    }
    if !evicted.is_empty() {
        bail!("{} pods of living nodes were evicted", evicted.len());
    }
    Ok(())
}

/// The chance that a pause of the lab's heavy-tail model lasts longer than `length`.
pub fn pause_exceeds(length: Duration) -> f64 {
    if length < latency::PAUSE_MIN {
        return 1.0;
    }
    if length >= latency::PAUSE_MAX {
        return 0.0;
    }
    (latency::PAUSE_MIN.as_secs_f64() / length.as_secs_f64()).powf(latency::PAUSE_SHAPE)
}

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": APP },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": APP } },
            "template": {
                "metadata": { "labels": { "app": APP } },
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{ "name": "sleep", "image": "host", "command": ["/bin/sleep", "86400"] }],
                },
            },
        },
    }))
    .expect("a valid Deployment")
}

/// Watch caches of the bench's pods and of the nodes, and a signal at every change.
struct Observer {
    pods: Store<Pod>,
    nodes: Store<Node>,
    changed: watch::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A copy of what the caches hold, pods by uid.
struct View {
    pods: BTreeMap<String, Pod>,
    nodes: BTreeMap<String, Node>,
}

impl Observer {
    fn start(client: kube::Client) -> Observer {
        let (pods, pod_writer) = reflector::store();
        let (nodes, node_writer) = reflector::store();
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let node_api: Api<Node> = Api::all(client);
        let pod_events = reflector::reflector(
            pod_writer,
            watcher(pod_api, watcher::Config::default().labels(&format!("app={APP}"))).default_backoff(),
        )
        .map(|_| ())
        .boxed();
        let node_events = reflector::reflector(
            node_writer,
            watcher(node_api, watcher::Config::default()).default_backoff(),
        )
        .map(|_| ())
        .boxed();
        let (signal, changed) = watch::channel(());
        let task = tokio::spawn(async move {
            let mut events = futures::stream::select(pod_events, node_events);
            while events.next().await.is_some() {
                signal.send_replace(());
            }
        });
        Observer { pods, nodes, changed, task }
    }

    fn view(&self) -> View {
        View {
            pods: self
                .pods
                .state()
                .iter()
                .filter_map(|pod| Some((pod.metadata.uid.clone()?, (**pod).clone())))
                .collect(),
            nodes: self
                .nodes
                .state()
                .iter()
                .filter_map(|node| Some((node.metadata.name.clone()?, (**node).clone())))
                .collect(),
        }
    }

    /// Waits until `condition` holds, checking at every change; returns the instant it was
    /// first seen to.
    async fn wait(&self, what: &str, condition: impl Fn(&View) -> bool) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut changes = self.changed.clone();
        loop {
            if condition(&self.view()) {
                return Ok(Instant::now());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the watches ended waiting for {what}"),
                Err(_) => bail!("timed out after {STEP_TIMEOUT:?} waiting for {what}"),
            }
        }
    }

    /// The phases of one node loss that happened at `lost`.
    async fn follow_loss(&self, victim: &str, lost: Instant, replicas: i32) -> anyhow::Result<Run> {
        let tainted = self.wait("the NoExecute taint", |view| view.no_execute_unreachable(victim)).await?;
        let evicted = self
            .wait("the first eviction", |view| {
                view.pods_on(victim).any(|pod| pod.metadata.deletion_timestamp.is_some())
            })
            .await?;
        let replaced = self
            .wait("every replica Running elsewhere", |view| {
                view.running_elsewhere(victim) == usize::try_from(replicas).unwrap_or(0)
            })
            .await?;
        Ok(Run { tainted: tainted - lost, evicted: evicted - lost, replaced: replaced - lost })
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl View {
    fn node_condition(&self, name: &str) -> Option<String> {
        let conditions = self.nodes.get(name)?.status.as_ref()?.conditions.as_ref()?;
        conditions
            .iter()
            .find(|condition| condition.type_ == "Ready")
            .map(|condition| condition.status.clone())
    }

    fn node_ready(&self, name: &str) -> bool {
        self.node_condition(name).as_deref() == Some("True")
    }

    fn taints(&self, name: &str) -> Vec<k8s_openapi::api::core::v1::Taint> {
        let spec = self.nodes.get(name).and_then(|node| node.spec.as_ref());
        spec.and_then(|spec| spec.taints.clone()).unwrap_or_default()
    }

    fn no_execute_unreachable(&self, name: &str) -> bool {
        self.taints(name).iter().any(|taint| taint.key == UNREACHABLE && taint.effect == "NoExecute")
    }

    fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods
            .values()
            .filter(move |pod| pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) == Some(node))
    }

    fn running(pod: &Pod) -> bool {
        pod.metadata.deletion_timestamp.is_none()
            && pod.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Running")
    }

    /// Replicas Running, not being deleted, on a node other than `lost`.
    fn running_elsewhere(&self, lost: &str) -> usize {
        self.pods
            .values()
            .filter(|pod| Self::running(pod))
            .filter(|pod| {
                pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).is_some_and(|n| n != lost)
            })
            .count()
    }

    /// Every node Ready without taints, exactly `replicas` pods, all Running.
    fn settled(&self, names: &[String], replicas: i32) -> bool {
        let nodes_well = names.iter().all(|name| self.node_ready(name) && self.taints(name).is_empty());
        let count = usize::try_from(replicas).unwrap_or(0);
        nodes_well && self.pods.len() == count && self.pods.values().all(Self::running)
    }

    /// The node running the most replicas, ties to the first.
    fn busiest(&self, names: &[String]) -> Option<String> {
        let count = |name: &String| self.pods_on(name).filter(|pod| Self::running(pod)).count();
        let mut busiest: Option<(&String, usize)> = None;
        for name in names {
            let replicas = count(name);
            if replicas > 0 && busiest.is_none_or(|(_, most)| replicas > most) {
                busiest = Some((name, replicas));
            }
        }
        busiest.map(|(name, _)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_exceeds_follows_the_labs_pareto_tail() {
        // Every pause is at least PAUSE_MIN and at most PAUSE_MAX; in between the tail is
        // (PAUSE_MIN / x)^PAUSE_SHAPE: a third of the pauses exceed 1 s, one in eight 2 s.
        let check = |seconds: f64, expected: f64| {
            let chance = pause_exceeds(Duration::from_secs_f64(seconds));
            assert!((chance - expected).abs() < 1e-3, "P(pause > {seconds} s) = {chance}, not {expected}");
        };
        check(0.1, 1.0);
        check(0.5, 1.0);
        check(1.0, 0.354);
        check(2.0, 0.125);
        check(30.0, 0.0);
        check(100.0, 0.0);
    }
}
