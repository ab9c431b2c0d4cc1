//! `shoal bench controller-failover`: how soon another server's controllers and scheduler act
//! after the server leading them dies.
//!
//! A fresh cluster of 3 servers, production timings (Raft's and the leader elector's). Each
//! trial finds the server whose controller manager holds the `kube-controller-manager` Lease,
//! kills it with SIGKILL, and at once creates a ReplicaSet of one pod through a surviving
//! server. Three instants are taken from the kill, by polling through a survivor:
//! - the Lease names a holder on another server (the election is over);
//! - the ReplicaSet's pod exists (the new controller manager has started and acted);
//! - that pod has a `PodScheduled` condition (the scheduler acted: the cluster has no nodes, so
//!   it reports the pod unschedulable), counted only when the killed server also held the
//!   `kube-scheduler` Lease, since otherwise its leader never changed.
//!
//! The target is the middle one: a new leader acts within 2 s. Trials whose killed
//! server was also the Raft leader are marked, as they add a Raft election to the failover.
//! The killed server is restarted and rejoins before the next trial.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

use crate::local_cluster::{LocalCluster, LocalClusterConfig};

#[derive(Args, Clone, Debug)]
pub struct BenchControllerFailoverArgs {
    /// Kill-the-leader trials.
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Scratch directory for the cluster (wiped first).
    #[arg(long, default_value = "/var/tmp/shoal-bench-controller-failover")]
    pub dir: PathBuf,
}

/// The Leases of the two elected roles, in kube-system.
const CONTROLLER_LEASE: &str = "kube-controller-manager";
const SCHEDULER_LEASE: &str = "kube-scheduler";
/// How often the bench looks; the resolution of its figures.
const POLL: Duration = Duration::from_millis(20);
/// How long one poll's request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a trial may take before the bench gives up: far beyond any sane failover.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The label of the trial's ReplicaSet and pod.
const LABEL: &str = "shoal-bench";

/// One trial's instants, as durations since the kill.
#[derive(Clone, Debug)]
struct Trial {
    raft_leader_killed: bool,
    lease_taken: Duration,
    controllers_acted: Duration,
    /// `None` when the killed server did not lead the scheduler.
    scheduler_acted: Option<Duration>,
}

pub async fn run(args: BenchControllerFailoverArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let mut cluster = LocalCluster::new(LocalClusterConfig::new(&exe, &args.dir))?;
    cluster.start(3).await?;
    let mut trials = Vec::new();
    for number in 1..=args.trials {
        let trial = tokio::time::timeout(TRIAL_TIMEOUT, one_trial(&mut cluster, number))
            .await
            .with_context(|| format!("trial {number} took longer than {TRIAL_TIMEOUT:?}"))??;
        eprintln!(
            "trial {number}: lease {:?}, controllers {:?}, scheduler {:?}, Raft leader killed too: {}",
            trial.lease_taken, trial.controllers_acted, trial.scheduler_acted, trial.raft_leader_killed
        );
        trials.push(trial);
    }
    print_table(&trials);
    cluster.stop_all().await
}

async fn one_trial(cluster: &mut LocalCluster, number: usize) -> anyhow::Result<Trial> {
    let raft_leader = cluster.wait_ready().await?;
    let observer = cluster.admin_client(0).await?;
    let leases: Api<Lease> = Api::namespaced(observer, "kube-system");
    let controller_holder = wait_for_holder(&leases, CONTROLLER_LEASE).await?;
    let victim = member_of(cluster, &controller_holder)?;
    let scheduler_holder = wait_for_holder(&leases, SCHEDULER_LEASE).await?;
    let scheduler_killed = member_of(cluster, &scheduler_holder)? == victim;
    let survivor = (victim + 1) % cluster.len();
    let client = cluster.admin_client(survivor).await?;
    let name = format!("failover-{number}");

    let killed_at = Instant::now();
    cluster.kill(victim).await?;
    create_replica_set(&client, &name).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let selector = ListParams::default().labels(&format!("{LABEL}={name}"));
    let (mut lease_taken, mut controllers_acted, mut scheduler_acted) = (None, None, None);
    loop {
        if lease_taken.is_none()
            && let Some(holder) = read(leases.get_opt(CONTROLLER_LEASE)).await.flatten().and_then(holder_of)
            && holder != controller_holder
        {
            lease_taken = Some(killed_at.elapsed());
        }
        if let Some(list) = read(pods.list(&selector)).await
            && let Some(pod) = list.items.first()
        {
            controllers_acted.get_or_insert(killed_at.elapsed());
            if is_scheduled_or_refused(pod) {
                scheduler_acted.get_or_insert(killed_at.elapsed());
            }
        }
        if let (Some(lease_taken), Some(controllers_acted)) = (lease_taken, controllers_acted)
            && (scheduler_acted.is_some() || !scheduler_killed)
        {
            let trial = Trial {
                raft_leader_killed: victim == raft_leader,
                lease_taken,
                controllers_acted,
                scheduler_acted: scheduler_acted.filter(|_| scheduler_killed),
            };
            let replica_sets: Api<ReplicaSet> = Api::default_namespaced(client);
            replica_sets
                .delete(&name, &DeleteParams::background())
                .await
                .context("deleting the ReplicaSet")?;
            cluster.restart(victim).await?;
            return Ok(trial);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The server (member index) of a Lease holder `<server name>_<term id>`.
fn member_of(cluster: &LocalCluster, holder: &str) -> anyhow::Result<usize> {
    let server = holder.rsplit_once('_').map_or(holder, |(server, _)| server);
    (0..cluster.len())
        .find(|i| cluster.member(*i).name == server)
        .with_context(|| format!("no member is named {server} (Lease holder {holder})"))
}

fn holder_of(lease: Lease) -> Option<String> {
    lease.spec?.holder_identity.filter(|holder| !holder.is_empty())
}

async fn wait_for_holder(leases: &Api<Lease>, name: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + TRIAL_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(holder) = read(leases.get_opt(name)).await.flatten().and_then(holder_of) {
            return Ok(holder);
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("nobody holds the {name} Lease")
}

/// A request's answer, or `None` if it failed or took longer than `REQUEST_TIMEOUT` (a
/// survivor may answer 5xx while Raft elects a new leader).
async fn read<T>(request: impl Future<Output = kube::Result<T>>) -> Option<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, request).await.ok()?.ok()
}

fn is_scheduled_or_refused(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.into_iter().flatten().any(|condition| condition.type_ == "PodScheduled")
}

/// Creates the trial's ReplicaSet of one pod, retrying while the survivors elect a Raft
/// leader; a create whose outcome was unknown and did happen shows as AlreadyExists.
async fn create_replica_set(client: &Client, name: &str) -> anyhow::Result<()> {
    let replica_set: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {LABEL: name}},
            "template": {
                "metadata": {"labels": {LABEL: name}},
                "spec": {"containers": [{"name": "main", "image": "sleep", "command": ["sleep", "60"]}]},
            },
        },
    }))
    .context("the trial's ReplicaSet")?;
    let replica_sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let deadline = Instant::now() + TRIAL_TIMEOUT;
    while Instant::now() < deadline {
        match tokio::time::timeout(REQUEST_TIMEOUT, replica_sets.create(&PostParams::default(), &replica_set))
            .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => return Ok(()),
            Ok(Err(_)) | Err(_) => tokio::time::sleep(POLL).await,
        }
    }
    bail!("could not create the ReplicaSet {name}")
}

fn print_table(trials: &[Trial]) {
    type Pick = fn(&Trial) -> Option<Duration>;
    let rows: [(&str, Pick); 3] = [
        ("the Lease held by another server", |trial| Some(trial.lease_taken)),
        ("the new controller manager acting (the ReplicaSet's pod exists)", |trial| {
            Some(trial.controllers_acted)
        }),
        ("the new scheduler acting (the pod has PodScheduled)", |trial| trial.scheduler_acted),
    ];
    let subsets =
        [("all", None), ("Raft leader killed too", Some(true)), ("Raft leader survived", Some(false))];
    println!("| from the kill of the leading server to | trials | median | max |");
    println!("|---|---|---|---|");
    for (what, pick) in rows {
        for (subset, raft_leader_killed) in subsets {
            let mut values: Vec<Duration> = trials
                .iter()
                .filter(|trial| raft_leader_killed.is_none_or(|killed| trial.raft_leader_killed == killed))
                .filter_map(pick)
                .collect();
            values.sort();
            let (median, max) = match (values.get(values.len() / 2), values.last()) {
                (Some(median), Some(max)) => (millis(*median), millis(*max)),
                _ => ("—".to_owned(), "—".to_owned()),
            };
            println!("| {what} | {subset}: {} | {median} | {max} |", values.len());
        }
    }
}

fn millis(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}
