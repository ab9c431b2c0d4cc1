//! `shoal bench api`: the Kubernetes API of a 3-server cluster on loopback, through kube-rs.
//!
//! Measures create, update, get, list and watch latency (p50/p99) and throughput; mutating
//! latency at a fixed offered rate (open loop: each request's latency counts from when it was
//! due, so a stall is not hidden by the requests it delays); the time to list 10,000 pods;
//! and the delay until each of 1,000 watchers sees a write. There is no anchor to run beside
//! it on this machine (no kube-apiserver); the figures are compared with the targets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use tokio::time::Instant;

use super::workload::Latency;
use crate::local_cluster::{LocalCluster, LocalClusterConfig};

#[derive(Args, Clone, Debug)]
pub struct BenchApiArgs {
    /// Samples of each sequential latency run.
    #[arg(long, default_value_t = 500)]
    pub samples: usize,
    /// The offered rate of the fixed-rate mutating run, in writes per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Length of the fixed-rate and throughput runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Pods in the list run.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Lists of the list run, each way (a p99 of fewer than 100 is the slowest one).
    #[arg(long, default_value_t = 100)]
    pub list_samples: usize,
    /// Watchers of the fan-out run.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Scratch directory for the cluster (wiped first).
    #[arg(long, default_value = "/var/tmp/shoal-bench-api")]
    pub dir: PathBuf,
}

/// Concurrent writers of the throughput run.
const THROUGHPUT_CLIENTS: usize = 64;
/// How many requests the fixed-rate run lets be in flight before it counts as overloaded.
const FIXED_RATE_IN_FLIGHT_MAX: usize = 4096;

pub async fn run(args: BenchApiArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let mut cluster = LocalCluster::new(LocalClusterConfig::new(&exe, &args.dir))?;
    cluster.start(3).await?;
    cluster.wait_ready().await?;
    let clients = connect_all(&cluster).await?;
    wait_for_namespace(&clients[0]).await?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let latency_row = |rows: &mut Vec<(String, String)>, name: &str, latency: Latency| {
        rows.push((
            name.to_owned(),
            format!("p50 {:.2} ms, p99 {:.2} ms", ms(latency.p50_us), ms(latency.p99_us)),
        ));
    };

    let configmaps: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "default");
    latency_row(
        &mut rows,
        "create (sequential)",
        timed(args.samples, |i| create_configmap(&configmaps, format!("seq-{i}"))).await?,
    );
    latency_row(
        &mut rows,
        "update (sequential)",
        timed(args.samples, |i| update_configmap(&configmaps, format!("seq-{i}"))).await?,
    );
    latency_row(
        &mut rows,
        "get (sequential)",
        timed(args.samples, |i| get_configmap(&configmaps, format!("seq-{i}"))).await?,
    );
    latency_row(&mut rows, "list 500 configmaps", timed(20, |_| list_all(&configmaps)).await?);

    let (fixed, achieved) = fixed_rate(&clients, args.rate, Duration::from_secs(args.seconds)).await?;
    latency_row(
        &mut rows,
        &format!("create at {} writes/s offered ({achieved:.0}/s achieved)", args.rate),
        fixed,
    );
    let throughput = throughput(&clients, Duration::from_secs(args.seconds)).await?;
    rows.push((
        format!("create throughput, {THROUGHPUT_CLIENTS} clients"),
        format!("{throughput:.0} writes/s"),
    ));

    fill_pods(&clients, args.pods).await?;
    let pods: Api<Pod> = Api::namespaced(clients[0].clone(), "default");
    let samples = args.list_samples;
    let raw = timed(samples, |_| list_bytes(&clients[0], "/api/v1/namespaces/default/pods")).await?;
    latency_row(&mut rows, &format!("list {} pods, bytes received ({samples} lists)", args.pods), raw);
    latency_row(
        &mut rows,
        &format!("list {} pods, decoded by kube-rs ({samples} lists)", args.pods),
        timed(samples, |_| list_all(&pods)).await?,
    );

    let fan_out = watch_fan_out(&clients, args.watchers, 20).await?;
    latency_row(&mut rows, &format!("write to event, {} watchers", args.watchers), fan_out);

    println!("| figure | shoal |\n|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
    cluster.stop_all().await
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// One client per server, from kubeconfigs written for each.
async fn connect_all(cluster: &LocalCluster) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::new();
    for i in 0..cluster.len() {
        let path = cluster.write_kubeconfig(i)?;
        let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await?;
        clients.push(Client::try_from(config)?);
    }
    Ok(clients)
}

pub(super) async fn wait_for_namespace(client: &Client) -> anyhow::Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while namespaces.get_opt("default").await.ok().flatten().is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the default namespace never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn configmap(name: String) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(name), ..Default::default() },
        data: Some([("payload".to_owned(), "x".repeat(100))].into()),
        ..Default::default()
    }
}

async fn create_configmap(api: &Api<ConfigMap>, name: String) -> anyhow::Result<()> {
    api.create(&PostParams::default(), &configmap(name)).await?;
    Ok(())
}

async fn update_configmap(api: &Api<ConfigMap>, name: String) -> anyhow::Result<()> {
    let mut object = api.get(&name).await?;
    object.data = Some([("payload".to_owned(), "y".repeat(100))].into());
    api.replace(&name, &PostParams::default(), &object).await?;
    Ok(())
}

async fn get_configmap(api: &Api<ConfigMap>, name: String) -> anyhow::Result<()> {
    api.get(&name).await?;
    Ok(())
}

async fn list_all<K>(api: &Api<K>) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default()).await?;
    Ok(())
}

/// Fetches a list's body without decoding it: the server's and the wire's share of a list.
async fn list_bytes(client: &Client, path: &str) -> anyhow::Result<()> {
    let request = http::Request::get(path).body(Vec::new())?;
    let body = client.request_text(request).await?;
    anyhow::ensure!(body.starts_with('{'), "the list is not a JSON object");
    Ok(())
}

/// Runs `operation(i)` for i in 0..count, one at a time, and returns the latencies.
async fn timed<F, Fut>(count: usize, operation: F) -> anyhow::Result<Latency>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let start = Instant::now();
        operation(i).await?;
        samples.push(start.elapsed());
    }
    Ok(Latency::of(samples))
}

/// Creates at `rate` per second for `length`, round-robin over the servers, each request
/// issued when due whatever the others are doing; latency counts from the due time.
async fn fixed_rate(clients: &[Client], rate: u64, length: Duration) -> anyhow::Result<(Latency, f64)> {
    let total = usize::try_from(rate.saturating_mul(length.as_secs())).unwrap_or(usize::MAX);
    let interval = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
    let start = Instant::now();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(FIXED_RATE_IN_FLIGHT_MAX));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let permit =
            in_flight.clone().try_acquire_owned().context("the fixed-rate run fell too far behind")?;
        let api: Api<ConfigMap> = Api::namespaced(clients[i % clients.len()].clone(), "default");
        tasks.spawn(async move {
            let _permit = permit;
            create_configmap(&api, format!("rate-{i}")).await.map(|()| due.elapsed())
        });
    }
    let mut samples = Vec::with_capacity(total);
    while let Some(joined) = tasks.join_next().await {
        samples.push(joined??);
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    Ok((Latency::of(samples), achieved))
}

/// Writes per second with `THROUGHPUT_CLIENTS` closed-loop writers.
async fn throughput(clients: &[Client], length: Duration) -> anyhow::Result<f64> {
    let stop = Instant::now() + length;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..THROUGHPUT_CLIENTS {
        let api: Api<ConfigMap> = Api::namespaced(clients[writer % clients.len()].clone(), "default");
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < stop {
                create_configmap(&api, format!("tp-{writer}-{done}")).await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined??;
    }
    Ok(total as f64 / length.as_secs_f64())
}

/// Node names the list run's pods are bound to.
const FILL_NODES: usize = 100;

/// Creates `count` pods with 64 concurrent writers, each already bound to one of
/// `FILL_NODES` nodes (that do not exist: no agent runs them), as the pods of a settled
/// cluster are. Unbound, they would keep the scheduler writing a PodScheduled=False status and
/// an event for each, for seconds after the last create, and the lists would measure that.
async fn fill_pods(clients: &[Client], count: usize) -> anyhow::Result<()> {
    futures::stream::iter(0..count)
        .map(|i| {
            let api: Api<Pod> = Api::namespaced(clients[i % clients.len()].clone(), "default");
            async move {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench"}},
                    "spec": {
                        "nodeName": format!("bench-node-{}", i % FILL_NODES),
                        "containers": [{"name": "c", "image": "registry.example/app:1", "command": ["sleep", "3600"]}],
                    },
                }))?;
                api.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(THROUGHPUT_CLIENTS)
        .try_collect::<()>()
        .await
}

/// Starts `watchers` watches of one ConfigMap spread over the servers, then updates it
/// `writes` times; each watcher's delay from the write's start to its event is one sample.
async fn watch_fan_out(clients: &[Client], watchers: usize, writes: usize) -> anyhow::Result<Latency> {
    let writer: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "default");
    let created = writer.create(&PostParams::default(), &configmap("fan-out".into())).await?;
    let from = created.metadata.resource_version.clone().unwrap_or_default();
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut tasks = tokio::task::JoinSet::new();
    for watcher in 0..watchers {
        let api: Api<ConfigMap> = Api::namespaced(clients[watcher % clients.len()].clone(), "default");
        let (events, from) = (events.clone(), from.clone());
        tasks.spawn(async move {
            let params = WatchParams::default().fields("metadata.name=fan-out").timeout(290);
            let mut stream = api.watch(&params, &from).await?.boxed();
            while let Some(event) = stream.try_next().await? {
                if let WatchEvent::Modified(object) = event {
                    let _ =
                        events.send((object.metadata.resource_version.unwrap_or_default(), Instant::now()));
                }
            }
            anyhow::Ok(())
        });
    }
    drop(events);
    // Let every watch reach its server before the first write.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut samples = Vec::with_capacity(watchers * writes);
    for write in 0..writes {
        let mut object = writer.get("fan-out").await?;
        object.data = Some([("write".to_owned(), write.to_string())].into());
        let started = Instant::now();
        let updated = writer.replace("fan-out", &PostParams::default(), &object).await?;
        let version = updated.metadata.resource_version.unwrap_or_default();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen < watchers {
            let (event_version, at) = tokio::time::timeout_at(deadline, received.recv())
                .await
                .context("watchers missed an event for 30 s")?
                .context("every watcher stopped")?;
            if event_version == version {
                samples.push(at.duration_since(started));
                seen += 1;
            }
        }
    }
    tasks.abort_all();
    Ok(Latency::of(samples))
}
