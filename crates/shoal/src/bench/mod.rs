//! `shoal bench store`: one workload, one client, against shoal and against etcd, in one run.
//!
//! Both clusters run on loopback with mutual TLS from the same CA and fsync on, started
//! fresh for each cluster size; the client is the same tonic etcd client for both. The
//! output is a Markdown table of shoal, etcd and their ratio, ready for BENCHMARKS.md.

pub mod agent;
pub mod api;
pub mod controller_failover;
pub mod dns;
pub mod etcd;
pub mod node_loss;
pub mod proxy;
pub mod scheduler;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use shoal_store::etcd::proto::etcdserverpb as pb;
use tokio::time::Instant;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::local_cluster::{LocalCluster, LocalClusterConfig};
use workload::{Latency, Request};

#[derive(Args, Clone, Debug)]
pub struct BenchStoreArgs {
    /// Cluster sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub members: Vec<usize>,
    /// Length of each throughput run.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Puts of the sequential-latency and watch-latency runs.
    #[arg(long, default_value_t = 1000)]
    pub latency_samples: usize,
    /// Kill-the-leader trials of the failover run (3+ members only).
    #[arg(long, default_value_t = 5)]
    pub failover_trials: usize,
    /// The anchor's executable.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Scratch directory for both clusters' data (wiped first).
    #[arg(long, default_value = "/var/tmp/shoal-bench")]
    pub dir: PathBuf,
}

/// One measured figure of both systems.
struct Row {
    name: String,
    members: usize,
    shoal: f64,
    etcd: f64,
    unit: &'static str,
    /// Whether a larger figure is better (throughput) or worse (latency, memory).
    higher_is_better: bool,
}

pub async fn run(args: BenchStoreArgs) -> anyhow::Result<()> {
    if !args.etcd.exists() {
        bail!("{} not found: install Debian's etcd-server, or pass --etcd", args.etcd.display());
    }
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let mut rows = Vec::new();
    for &members in &args.members {
        let shoal_dir = args.dir.join(format!("shoal-{members}"));
        let mut shoal = LocalCluster::new(LocalClusterConfig::new(&exe, &shoal_dir))?;
        shoal.start(members).await?;
        shoal.wait_ready().await?;
        let mut shoal_target = Target::Shoal(Box::new(shoal));
        let shoal_figures = measure(&mut shoal_target, &args).await.context("measuring shoal")?;
        drop(shoal_target);

        let etcd_dir = args.dir.join(format!("etcd-{members}"));
        std::fs::create_dir_all(&etcd_dir)?;
        let etcd =
            etcd::EtcdCluster::start(&args.etcd, &etcd_dir, &shoal_dir.join("pki"), members, 42379).await?;
        let mut etcd_target = Target::Etcd(etcd, shoal_dir.join("pki"));
        wait_leader(&etcd_target).await?;
        let etcd_figures = measure(&mut etcd_target, &args).await.context("measuring etcd")?;
        drop(etcd_target);

        for (shoal, etcd) in shoal_figures.into_iter().zip(etcd_figures) {
            rows.push(Row {
                name: shoal.name,
                members,
                shoal: shoal.value,
                etcd: etcd.value,
                unit: shoal.unit,
                higher_is_better: shoal.higher_is_better,
            });
        }
    }
    print_table(&rows);
    Ok(())
}

struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    higher_is_better: bool,
}

fn figure(name: impl Into<String>, value: f64, unit: &'static str, higher_is_better: bool) -> Figure {
    Figure { name: name.into(), value, unit, higher_is_better }
}

enum Target {
    Shoal(Box<LocalCluster>),
    Etcd(etcd::EtcdCluster, PathBuf),
}

impl Target {
    fn len(&self) -> usize {
        match self {
            Target::Shoal(cluster) => cluster.len(),
            Target::Etcd(cluster, _) => cluster.members.len(),
        }
    }

    fn endpoint(&self, i: usize) -> String {
        match self {
            Target::Shoal(cluster) => cluster.member(i).client_url(),
            Target::Etcd(cluster, _) => cluster.members[i].client_url(),
        }
    }

    fn pid(&self, i: usize) -> Option<u32> {
        match self {
            Target::Shoal(cluster) => cluster.pid(i),
            Target::Etcd(cluster, _) => cluster.members[i].pid(),
        }
    }

    fn tls(&self) -> anyhow::Result<ClientTlsConfig> {
        let pki = match self {
            Target::Shoal(cluster) => cluster.pki_dir().to_owned(),
            Target::Etcd(_, pki) => pki.clone(),
        };
        let files = shoal_store::server::TlsFiles {
            ca: pki.join("ca.crt"),
            cert: pki.join("admin.crt"),
            key: pki.join("admin.key"),
        };
        Ok(shoal_store::server::peer_client_tls(&files)?)
    }

    async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        match self {
            Target::Shoal(cluster) => cluster.kill(i).await,
            Target::Etcd(cluster, _) => cluster.kill(i).await,
        }
    }

    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        match self {
            Target::Shoal(cluster) => cluster.restart(i).await,
            Target::Etcd(cluster, _) => cluster.restart(i).await,
        }
    }

    /// The index of the member every running member names as leader, if they agree.
    async fn leader(&self) -> anyhow::Result<Option<usize>> {
        let tls = self.tls()?;
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for i in 0..self.len() {
            let channel = workload::connect(&[self.endpoint(i)], &tls, 1).await?.remove(0);
            let status = pb::maintenance_client::MaintenanceClient::new(channel)
                .status(pb::StatusRequest {})
                .await?
                .into_inner();
            ids.push(status.header.map_or(0, |h| h.member_id));
            leaders.push(status.leader);
        }
        let agreed = leaders.first().copied().filter(|l| *l != 0 && leaders.iter().all(|x| x == l));
        Ok(agreed.and_then(|leader| ids.iter().position(|id| *id == leader)))
    }
}

async fn wait_leader(target: &Target) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(leader)) = target.leader().await {
            return Ok(leader);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no leader within 30 s")
}

/// Resident set size of a process, from /proc.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The largest RSS among the members.
fn max_rss_mib(target: &Target) -> f64 {
    (0..target.len()).filter_map(|i| target.pid(i).and_then(rss_mib)).fold(0.0, f64::max)
}

async fn measure(target: &mut Target, args: &BenchStoreArgs) -> anyhow::Result<Vec<Figure>> {
    let tls = target.tls()?;
    let endpoints: Vec<String> = (0..target.len()).map(|i| target.endpoint(i)).collect();
    let duration = Duration::from_secs(args.seconds);
    let mut figures = Vec::new();

    tokio::time::sleep(Duration::from_secs(2)).await;
    figures.push(figure("member RSS, idle", max_rss_mib(target), "MiB", false));

    let leader = wait_leader(target).await?;
    let leader_channel = workload::connect(&[endpoints[leader].clone()], &tls, 1).await?.remove(0);
    let sequential = workload::sequential_puts(leader_channel.clone(), args.latency_samples).await?;
    figures.push(figure("sequential put latency p50", ms(sequential.p50_us), "ms", false));
    figures.push(figure("sequential put latency p99", ms(sequential.p99_us), "ms", false));

    let channels = workload::connect(&endpoints, &tls, workload::CONNECTIONS).await?;
    for clients in [16, 256] {
        let sampler = sample_rss_midway(target, duration);
        let result = workload::throughput(&channels, clients, Request::Put, duration).await?;
        let rss = sampler.await.context("sampling RSS")?;
        figures.push(figure(
            format!("put throughput, {clients} clients"),
            result.ops_per_second,
            "ops/s",
            true,
        ));
        figures.push(figure(
            format!("put latency p99, {clients} clients"),
            ms(result.latency.p99_us),
            "ms",
            false,
        ));
        if clients == 256 {
            figures.push(figure("member RSS, 256 clients putting", rss, "MiB", false));
        }
    }
    for (name, request) in
        [("linearizable", Request::LinearizableRange), ("serializable", Request::SerializableRange)]
    {
        let result = workload::throughput(&channels, 64, request, duration).await?;
        figures.push(figure(
            format!("{name} range throughput, 64 clients"),
            result.ops_per_second,
            "ops/s",
            true,
        ));
    }

    let watcher = workload::connect(&[endpoints[endpoints.len() - 1].clone()], &tls, 1).await?.remove(0);
    let watch: Latency =
        workload::put_to_watch(leader_channel, watcher, args.latency_samples.min(500)).await?;
    figures.push(figure("put-to-watch latency p50", ms(watch.p50_us), "ms", false));
    figures.push(figure("put-to-watch latency p99", ms(watch.p99_us), "ms", false));

    if target.len() >= 3 {
        let median = failover(target, &tls, args.failover_trials).await?;
        figures.push(figure(
            format!("write unavailability after kill -9 of the leader (median of {})", args.failover_trials),
            median.as_secs_f64() * 1000.0,
            "ms",
            false,
        ));
    }
    Ok(figures)
}

/// Samples the members' RSS halfway through a run of `duration`.
fn sample_rss_midway(target: &Target, duration: Duration) -> tokio::task::JoinHandle<f64> {
    let pids: Vec<u32> = (0..target.len()).filter_map(|i| target.pid(i)).collect();
    tokio::spawn(async move {
        tokio::time::sleep(duration / 2).await;
        pids.into_iter().filter_map(rss_mib).fold(0.0, f64::max)
    })
}

/// Kills the leader while a client writes through a follower; the gap between the last write
/// before and the first after is the unavailability. Median over `trials`.
///
/// The leader is confirmed just before the kill: leadership can move during the second of
/// writes before it (the member restarted by the previous trial may call an election), and
/// killing a member that no longer leads measures no outage. Such an attempt is dropped.
async fn failover(target: &mut Target, tls: &ClientTlsConfig, trials: usize) -> anyhow::Result<Duration> {
    const ATTEMPTS_PER_TRIAL: usize = 5;
    let mut gaps = Vec::new();
    let mut attempts = 0;
    while gaps.len() < trials {
        attempts += 1;
        anyhow::ensure!(attempts <= trials * ATTEMPTS_PER_TRIAL, "leadership kept moving before the kill");
        let leader = wait_leader(target).await?;
        let follower = (leader + 1) % target.len();
        let channel: Channel = workload::connect(&[target.endpoint(follower)], tls, 1).await?.remove(0);
        let stop_at = Instant::now() + Duration::from_secs(6);
        let recorder = tokio::spawn(workload::record_successes(channel, stop_at));
        tokio::time::sleep(Duration::from_secs(1)).await;
        if target.leader().await.ok().flatten() != Some(leader) {
            recorder.abort();
            tracing::info!(was = leader, "leadership moved before the kill; trial dropped");
            continue;
        }
        let fault_at = Instant::now();
        target.kill(leader).await?;
        let successes = recorder.await?;
        let gap =
            workload::unavailability(&successes, fault_at).context("no write succeeded after the kill")?;
        gaps.push(gap);
        target.restart(leader).await?;
        let new_leader = wait_leader(target).await?;
        tracing::info!(killed = leader, through = follower, ?gap, new_leader, "failover trial");
    }
    gaps.sort_unstable();
    Ok(gaps[gaps.len() / 2])
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn print_table(rows: &[Row]) {
    println!("| figure | members | shoal | etcd 3.4 | shoal / etcd |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        let ratio = if row.etcd > 0.0 { row.shoal / row.etcd } else { f64::NAN };
        let better = if (ratio >= 1.0) == row.higher_is_better { "" } else { " (worse)" };
        println!(
            "| {} | {} | {:.2} {} | {:.2} {} | {:.2}×{} |",
            row.name, row.members, row.shoal, row.unit, row.etcd, row.unit, ratio, better
        );
    }
}
