//! The workloads of `shoal bench store`, driven through etcd's v3 gRPC API so that one client
//! measures shoal and etcd alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use shoal_store::etcd::proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Connections the concurrent workloads spread their clients over, as etcd's benchmark
/// tool does with `--conns`.
pub const CONNECTIONS: usize = 8;
/// The value every put writes: small, as Kubernetes' typical objects are a few hundred bytes.
pub const VALUE_BYTES: usize = 256;
/// How long one RPC of a workload may take before it counts as failed.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Latency percentiles of one workload, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |quantile: f64| {
            let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
            u64::try_from(samples[index].as_micros()).unwrap_or(u64::MAX)
        };
        Latency { p50_us: at(0.50), p99_us: at(0.99) }
    }
}

/// Opens `count` connections, round-robin over `endpoints`.
pub async fn connect(
    endpoints: &[String],
    tls: &ClientTlsConfig,
    count: usize,
) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for i in 0..count {
        let url = &endpoints[i % endpoints.len()];
        let channel = Endpoint::from_shared(url.clone())?
            .tls_config(tls.clone())?
            .timeout(RPC_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

fn put_request(key: String) -> pb::PutRequest {
    pb::PutRequest { key: key.into(), value: Bytes::from(vec![b'v'; VALUE_BYTES]), ..Default::default() }
}

/// Sequential puts from one client: the latency of one write, without queueing.
pub async fn sequential_puts(channel: Channel, count: usize) -> anyhow::Result<Latency> {
    let mut client = pb::kv_client::KvClient::new(channel);
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        client.put(put_request(format!("bench/seq/{i}"))).await.context("sequential put")?;
        samples.push(started.elapsed());
    }
    Ok(Latency::of(samples))
}

/// What a throughput run achieved.
#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    pub ops_per_second: f64,
    pub latency: Latency,
    pub errors: u64,
}

/// Which request a throughput run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Put,
    LinearizableRange,
    SerializableRange,
}

/// `clients` concurrent clients, each sending `request` back to back for `duration`.
pub async fn throughput(
    channels: &[Channel],
    clients: usize,
    request: Request,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let (samples_sender, mut samples_receiver) = mpsc::channel::<Vec<Duration>>(clients);
    for client_index in 0..clients {
        let mut client = pb::kv_client::KvClient::new(channels[client_index % channels.len()].clone());
        let errors = errors.clone();
        let samples_sender = samples_sender.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let started = Instant::now();
                let key = format!("bench/{client_index}/{}", i % 100);
                let result = match request {
                    Request::Put => client.put(put_request(key)).await.map(drop),
                    Request::LinearizableRange | Request::SerializableRange => {
                        let serializable = request == Request::SerializableRange;
                        let range = pb::RangeRequest { key: key.into(), serializable, ..Default::default() };
                        client.range(range).await.map(drop)
                    }
                };
                match result {
                    Ok(()) => samples.push(started.elapsed()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            let _ = samples_sender.send(samples).await;
        });
    }
    drop(samples_sender);
    let started = Instant::now();
    let mut all = Vec::new();
    while let Some(samples) = samples_receiver.recv().await {
        all.extend(samples);
    }
    let elapsed = started.elapsed().max(duration);
    let ops = all.len() as f64;
    Ok(Throughput {
        ops_per_second: ops / elapsed.as_secs_f64(),
        latency: Latency::of(all),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Time from a put's start to its event arriving on a watch opened beforehand, on another
/// connection (possibly another member).
pub async fn put_to_watch(writer: Channel, watcher: Channel, count: usize) -> anyhow::Result<Latency> {
    let prefix = "bench/watch/";
    let mut watch = pb::watch_client::WatchClient::new(watcher);
    let (requests, request_stream) = mpsc::channel(1);
    let create = pb::WatchCreateRequest {
        key: prefix.into(),
        range_end: shoal_store::request::prefix_end(prefix.as_bytes()),
        ..Default::default()
    };
    requests
        .send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
        })
        .await?;
    let mut responses =
        watch.watch(tokio_stream::wrappers::ReceiverStream::new(request_stream)).await?.into_inner();
    let created = responses.message().await?.context("watch closed before it was created")?;
    if !created.created {
        bail!("the first watch response was not the creation");
    }

    let mut client = pb::kv_client::KvClient::new(writer);
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        client.put(put_request(format!("{prefix}{i}"))).await.context("put for the watch")?;
        let mut seen = false;
        while !seen {
            let response = tokio::time::timeout(RPC_TIMEOUT, responses.message())
                .await
                .context("no watch event in time")??
                .context("watch closed")?;
            seen = response.events.iter().any(|event| {
                event.kv.as_ref().is_some_and(|kv| kv.key.as_ref() == format!("{prefix}{i}").as_bytes())
            });
        }
        samples.push(started.elapsed());
    }
    drop(requests);
    Ok(Latency::of(samples))
}

/// Puts back to back through `channel` until stopped, recording when each one succeeded.
/// The longest gap between two successes around a fault is the write unavailability.
pub async fn record_successes(channel: Channel, stop_at: Instant) -> Vec<Instant> {
    let mut client = pb::kv_client::KvClient::new(channel);
    let mut successes = Vec::new();
    let mut i = 0u64;
    while Instant::now() < stop_at {
        let mut request = tonic::Request::new(put_request(format!("bench/failover/{}", i % 100)));
        request.set_timeout(Duration::from_secs(1));
        if client.put(request).await.is_ok() {
            successes.push(Instant::now());
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        i += 1;
    }
    successes
}

/// The longest gap between consecutive successes after `fault_at`, starting from the last
/// success before it.
pub fn unavailability(successes: &[Instant], fault_at: Instant) -> Option<Duration> {
    let last_before = successes.iter().rev().find(|at| **at <= fault_at)?;
    let first_after = successes.iter().find(|at| **at > fault_at)?;
    Some(first_after.duration_since(*last_before))
}
