//! `shoal bench proxy`: the service proxy's throughput and added latency against a direct
//! connection to the same backend, in one run.
//!
//! No cluster: the bench drives the agent's proxy in-process with a fixed table, one listen
//! address (a loopback ClusterIP) routed to one echo server on loopback. `--mode userspace`
//! (the default) runs the proxy runtime ([`Proxy`]): the clients, the proxy and the echo server
//! share this process's tokio runtime, so the figures are those of a proxy on a machine busy
//! with its own clients. `--mode nftables` writes the kernel table instead
//! ([`nftables::write`]), in a network namespace of the bench's own (it needs root and the nft
//! command), and the kernel rewrites each connection. Each workload runs first directly
//! against the echo server, then through the proxy:
//! - latency on one kept-open connection: `--message-bytes` out, the same back, sequentially;
//! - latency of a fresh connection per exchange (connect, one exchange, close), where the
//!   proxy adds its own connect to the endpoint;
//! - throughput: `--connections` connections each streaming 64 KiB writes for `--seconds`
//!   while reading the echo back; bytes echoed per second. The time is cut into `--rounds`
//!   rounds that alternate direct and proxied runs, and the medians are compared, so that a
//!   neighbour's burst on a noisy machine weighs on both sides.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use shoal_agent::proxy::nftables;
use shoal_agent::proxy::runtime::{CONNECTIONS_MAX, Proxy};
use shoal_agent::proxy::{Entry, Route, ServicePortName, Table};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::workload::Latency;
use crate::agent::ProxyModeArg;

#[derive(Args, Clone, Debug)]
pub struct BenchProxyArgs {
    /// Exchanges of each latency run.
    #[arg(long, default_value_t = 5000)]
    pub latency_samples: usize,
    /// Bytes of one exchange of the latency runs.
    #[arg(long, default_value_t = 64)]
    pub message_bytes: usize,
    /// Connections of the throughput runs.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Length of the throughput runs on each side (direct, proxied), in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rounds the throughput runs are cut into, each a direct run then a proxied one.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// The proxy path measured (`shoal agent --proxy-mode`).
    #[arg(long, value_enum, default_value_t = ProxyModeArg::Userspace)]
    pub mode: ProxyModeArg,
}

/// The loopback ClusterIP the bench's proxy listens on (port chosen free at start).
const LISTEN_IP: Ipv4Addr = Ipv4Addr::new(127, 96, 255, 254);
/// The size of one write of the throughput runs.
const CHUNK_BYTES: usize = 64 * 1024;

pub async fn run(args: BenchProxyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.message_bytes > 0 && args.connections > 0, "nothing to measure");
    if args.mode == ProxyModeArg::Userspace {
        return measure(args).await;
    }
    // The bench's kernel table lives and dies with a network namespace of its own, on a thread
    // of its own whose runtime has as many workers as this one.
    let in_namespace = move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(measure(args))
    };
    tokio::task::spawn_blocking(move || nftables::in_private_network(in_namespace))
        .await?
        .context("a network namespace for the bench (it needs root)")?
}

/// Sets up the proxy path of `args.mode` and runs the workloads directly and through it.
async fn measure(args: BenchProxyArgs) -> anyhow::Result<()> {
    let backend = echo_server().await?;
    let listen = {
        let probe = std::net::TcpListener::bind((LISTEN_IP, 0)).context("finding a free port on loopback")?;
        probe.local_addr()?
    };
    let service = ServicePortName { namespace: "bench".into(), service: "echo".into(), port: String::new() };
    let route = Route { service: service.clone(), endpoints: vec![backend], affinity: None };
    // Held until the workloads are done: dropping it closes its listener.
    let _userspace = match args.mode {
        ProxyModeArg::Userspace => {
            let mut proxy = Proxy::new(CONNECTIONS_MAX);
            proxy.apply([(listen, route)].into());
            anyhow::ensure!(!proxy.has_unbound(), "the proxy could not listen on {listen}");
            Some(proxy)
        }
        ProxyModeArg::Nftables => {
            let table = Table { entries: [(service, Entry { listen: vec![listen], route })].into() };
            nftables::write(&table).await.context("writing the kernel table")?;
            None
        }
    };

    println!("| workload ({:?} proxy) | direct | through the proxy | difference |", args.mode);
    println!("|---|---|---|---|");
    let (direct, proxied) =
        (kept_open_latency(backend, &args).await?, kept_open_latency(listen, &args).await?);
    print_latency("kept-open connection", direct, proxied);
    let (direct, proxied) =
        (fresh_connection_latency(backend, &args).await?, fresh_connection_latency(listen, &args).await?);
    print_latency("new connection per exchange", direct, proxied);
    let round = Duration::from_secs(args.seconds) / args.rounds.max(1);
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        direct.push(throughput(backend, args.connections, round).await?);
        proxied.push(throughput(listen, args.connections, round).await?);
    }
    let losses: Vec<f64> =
        direct.iter().zip(&proxied).map(|(direct, proxied)| loss(*direct, *proxied)).collect();
    let (direct, proxied) = (median(direct), median(proxied));
    let (least, most) =
        losses.iter().fold((f64::MAX, f64::MIN), |(least, most), loss| (least.min(*loss), most.max(*loss)));
    println!(
        "| throughput, {} connections, median of {} rounds | {direct:.0} MiB/s | {proxied:.0} MiB/s | {:+.1} % loss (rounds {least:+.1} to {most:+.1} %) |",
        args.connections,
        losses.len(),
        loss(direct, proxied),
    );
    Ok(())
}

fn print_latency(name: &str, direct: Latency, proxied: Latency) {
    let added = |direct: u64, proxied: u64| i128::from(proxied) - i128::from(direct);
    println!(
        "| {name}, p50 | {} µs | {} µs | {:+} µs |",
        direct.p50_us,
        proxied.p50_us,
        added(direct.p50_us, proxied.p50_us)
    );
    println!(
        "| {name}, p99 | {} µs | {} µs | {:+} µs |",
        direct.p99_us,
        proxied.p99_us,
        added(direct.p99_us, proxied.p99_us)
    );
}

/// A server that echoes every connection until its end of stream.
async fn echo_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the echo server")?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
            });
        }
    });
    Ok(address)
}

async fn connect(address: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One exchange: the message out, the same number of bytes back.
async fn exchange(stream: &mut TcpStream, message: &mut [u8]) -> anyhow::Result<()> {
    stream.write_all(message).await?;
    stream.read_exact(message).await?;
    Ok(())
}

async fn kept_open_latency(address: SocketAddr, args: &BenchProxyArgs) -> anyhow::Result<Latency> {
    let mut stream = connect(address).await?;
    let mut message = vec![7u8; args.message_bytes];
    let mut samples = Vec::with_capacity(args.latency_samples);
    for _ in 0..args.latency_samples {
        let start = Instant::now();
        exchange(&mut stream, &mut message).await?;
        samples.push(start.elapsed());
    }
    Ok(Latency::of(samples))
}

async fn fresh_connection_latency(address: SocketAddr, args: &BenchProxyArgs) -> anyhow::Result<Latency> {
    let mut message = vec![7u8; args.message_bytes];
    let mut samples = Vec::with_capacity(args.latency_samples);
    for _ in 0..args.latency_samples {
        let start = Instant::now();
        let mut stream = connect(address).await?;
        exchange(&mut stream, &mut message).await?;
        samples.push(start.elapsed());
    }
    Ok(Latency::of(samples))
}

/// The share of `direct` throughput lost through the proxy, in percent.
fn loss(direct: f64, proxied: f64) -> f64 {
    100.0 * (1.0 - proxied / direct)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// MiB per second echoed back over `connections` connections streaming for `length`.
async fn throughput(address: SocketAddr, connections: usize, length: Duration) -> anyhow::Result<f64> {
    let echoed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (reader, mut writer) = connect(address).await?.into_split();
        let stop_writing = stop.clone();
        tasks.spawn(async move {
            let chunk = vec![7u8; CHUNK_BYTES];
            while !stop_writing.load(Ordering::Relaxed) {
                writer.write_all(&chunk).await?;
            }
            writer.shutdown().await
        });
        let echoed = echoed.clone();
        tasks.spawn(async move {
            let mut reader = reader;
            let mut buffer = vec![0u8; CHUNK_BYTES];
            loop {
                match reader.read(&mut buffer).await? {
                    0 => return Ok(()),
                    read => echoed.fetch_add(read as u64, Ordering::Relaxed),
                };
            }
        });
    }
    let (start, before) = (Instant::now(), echoed.load(Ordering::Relaxed));
    tokio::time::sleep(length).await;
    let bytes = echoed.load(Ordering::Relaxed) - before;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    while let Some(result) = tasks.join_next().await {
        result.context("a throughput task")?.context("a throughput connection")?;
    }
    Ok(bytes as f64 / elapsed.as_secs_f64() / f64::from(1u32 << 20))
}
