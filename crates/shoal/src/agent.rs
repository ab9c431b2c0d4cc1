//! `shoal agent`: a worker node. Joins the cluster with a join token (once; the node
//! credential it obtains is kept in the data directory), then runs the node agent with the
//! process runtime and serves the kubelet port.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use shoal_agent::agent::AgentConfig;
use shoal_agent::dns::server::{DnsServerConfig, upstream_from_resolv_conf};
use shoal_agent::lease::{LeaseTiming, RENEW_INTERVAL_DEFAULT};
use shoal_agent::lifecycle::BackoffPolicy;
use shoal_agent::node::{Capacity, NodeIdentity};
use shoal_agent::proxy::runtime::ProxyConfig;
use shoal_agent::proxy::{NodeAddresses, ProxyMode};
use shoal_agent::runtime::log_file::LogLimits;
use shoal_agent::runtime::process::{Ipv4Cidr, ProcessRuntime, ProcessRuntimeConfig};
use shoal_controllers::failure_detector::AGENT_HEARTBEAT_INTERVAL;

use crate::join::{self, CaTrust};

// The control plane's failure detector is tuned for the interval agents renew at by default.
const _: () = assert!(RENEW_INTERVAL_DEFAULT.as_millis() == AGENT_HEARTBEAT_INTERVAL.as_millis());

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The API server to join, `https://host:port`.
    #[arg(long)]
    pub server: String,
    /// A join token from `shoal token create`; needed only until the node has its credential.
    #[arg(long, env = "SHOAL_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster CA's certificate file, to trust the server.
    #[arg(long, conflicts_with = "ca_cert_hash")]
    pub ca_cert: Option<PathBuf>,
    /// The cluster CA's hash, `sha256:<hex>`, as `shoal token create` prints it.
    #[arg(long)]
    pub ca_cert_hash: Option<String>,
    /// The node's name; defaults to the host name.
    #[arg(long)]
    pub name: Option<String>,
    /// Where the agent keeps its credential, pods' state and logs.
    #[arg(long, default_value = "/var/lib/shoal/agent")]
    pub data_dir: PathBuf,
    /// The address other machines reach this node at (its InternalIP).
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: IpAddr,
    /// The kubelet port's listen address; the API server proxies logs through it.
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub kubelet_listen: SocketAddr,
    /// Pods get addresses from this range (loopback by default: 127.0.0.0/8 is all local).
    #[arg(long, default_value = "127.1.0.0/24")]
    pub pod_cidr: Ipv4Cidr,
    /// CPUs offered to pods; measured when unset.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory offered to pods in MiB; measured when unset.
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Pods the node runs at most.
    #[arg(long, default_value_t = shoal_agent::node::PODS_MAX_DEFAULT)]
    pub max_pods: u32,
    /// How often the node's Lease is renewed, in milliseconds.
    #[arg(long, default_value_t = RENEW_INTERVAL_DEFAULT.as_millis() as u64)]
    pub lease_renew_interval_ms: u64,
    /// How long one renewal vouches for the node, in seconds.
    #[arg(long, default_value_t = 10)]
    pub lease_duration_seconds: u64,
    /// The first restart back-off after a crash, in milliseconds (Kubernetes: 10 s).
    #[arg(long, default_value_t = 10_000)]
    pub restart_backoff_initial_ms: u64,
    /// The longest restart back-off, in milliseconds (Kubernetes: 300 s).
    #[arg(long, default_value_t = 300_000)]
    pub restart_backoff_max_ms: u64,
    /// Where the process runtime finds image entrypoints (`<dir>/<image>/entrypoint`).
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
    /// The cluster DNS address the agent serves (kube-dns's ClusterIP in Kubernetes terms). All
    /// agents of a machine share it; pods get it as their resolver when it listens on port 53.
    #[arg(long, default_value = "127.96.0.10")]
    pub cluster_dns: IpAddr,
    /// The cluster DNS port; port 53 needs root (without it the agent warns and runs without
    /// DNS). Another port serves DNS to clients that name the port, but not to pods.
    #[arg(long, default_value_t = 53)]
    pub dns_port: u16,
    /// Runs the service proxy: listens on every Service's ClusterIP ports (and NodePorts on
    /// the node IP) and forwards connections to ready endpoints. `--proxy=false` turns it off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub proxy: bool,
    /// Runs no service proxy (the same as `--proxy=false`).
    #[arg(long)]
    pub no_proxy: bool,
    /// How the proxy moves connections: `userspace` accepts each and splices it to an
    /// endpoint (no privileges needed; a refused connect is retried on another endpoint);
    /// `nftables` has the kernel rewrite each new connection's destination (no byte passes
    /// through the agent; needs root and the nft command). See ARCHITECTURE.md.
    #[arg(long, value_enum, default_value_t = ProxyModeArg::Userspace)]
    pub proxy_mode: ProxyModeArg,
}

/// `--proxy-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyModeArg {
    Userspace,
    Nftables,
}

impl From<ProxyModeArg> for ProxyMode {
    fn from(mode: ProxyModeArg) -> ProxyMode {
        match mode {
            ProxyModeArg::Userspace => ProxyMode::Userspace,
            ProxyModeArg::Nftables => ProxyMode::Nftables,
        }
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.proxy_mode == ProxyModeArg::Nftables && args.proxy && !args.no_proxy {
        // Said once at start rather than retried forever: without root or the nft command the
        // kernel path cannot work at all.
        shoal_agent::proxy::nftables::existing()
            .await
            .context("--proxy-mode nftables cannot read the kernel's nftables table")?;
    }
    let name = match &args.name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name; pass --name")?
            .trim()
            .to_lowercase(),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let credential_dir = args.data_dir.join("pki");
    let ca = match (&args.ca_cert, &args.ca_cert_hash) {
        (Some(file), _) => CaTrust::File(file.clone()),
        (None, Some(hash)) => CaTrust::Hash(hash.clone()),
        (None, None) => CaTrust::File(credential_dir.join("ca.crt")),
    };
    let addresses = vec![args.node_ip.to_string(), args.kubelet_listen.ip().to_string(), name.clone()];
    let credential = join::obtain_node_credential(
        &args.server,
        args.token.as_deref().unwrap_or_default(),
        ca,
        &name,
        &addresses,
        &credential_dir,
    )
    .await
    .context("obtaining the node's credential")?;
    let client = kube::Client::try_from(join::node_client_config(&args.server, &credential)?)?;

    let state_dir = args.data_dir.join("state");
    let shim = vec![
        std::env::current_exe().context("locating the shoal binary for the shim")?.display().to_string(),
        "shim".to_owned(),
    ];
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        state_dir: state_dir.clone(),
        shim,
        pod_cidr: args.pod_cidr,
        log_limits: LogLimits::default(),
        image_dir: args.image_dir.clone(),
    })?);
    let kubelet = shoal_agent::kubelet_server::start(args.kubelet_listen, &credential, runtime.clone())
        .await
        .context("starting the kubelet port")?;
    let measured = Capacity::measure();
    let capacity = Capacity {
        cpu_millis: args.cpus.map_or(measured.cpu_millis, |cpus| (cpus * 1000.0).round() as u64),
        memory_bytes: args.memory_mib.map_or(measured.memory_bytes, |mib| mib << 20),
        pods: args.max_pods,
    };
    let config = AgentConfig {
        identity: NodeIdentity {
            name: name.clone(),
            internal_ip: args.node_ip.to_string(),
            hostname: name.clone(),
            pod_cidr: args.pod_cidr,
            kubelet_port: kubelet.addr.port(),
            runtime_version: concat!("shoal-process://", env!("CARGO_PKG_VERSION")).to_owned(),
            labels: Default::default(),
        },
        capacity,
        lease: LeaseTiming {
            renew_interval: Duration::from_millis(args.lease_renew_interval_ms.max(100)),
            duration: Duration::from_secs(args.lease_duration_seconds.max(1)),
        },
        backoff: BackoffPolicy {
            initial: Duration::from_millis(args.restart_backoff_initial_ms),
            max: Duration::from_millis(args.restart_backoff_max_ms.max(args.restart_backoff_initial_ms)),
            ..BackoffPolicy::default()
        },
        state_dir,
        runtime_scheme: "shoal-process",
        cluster_dns: Some(DnsServerConfig {
            listen: SocketAddr::new(args.cluster_dns, args.dns_port),
            upstream: host_upstream(args.cluster_dns),
        }),
        proxy: (args.proxy && !args.no_proxy).then_some(ProxyConfig {
            node: NodeAddresses { node_ip: args.node_ip, cluster_dns: Some(args.cluster_dns) },
            connections_max: shoal_agent::proxy::runtime::CONNECTIONS_MAX,
            mode: args.proxy_mode.into(),
        }),
    };
    tracing::info!(node = name, server = args.server, kubelet = %kubelet.addr, "agent running");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        () = shoal_agent::agent::run(config, client, runtime) => anyhow::bail!("the agent stopped"),
        _ = async { tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = terminate.recv() => {} } } => {
            // Pods keep running: a restarted agent re-adopts them.
            tracing::info!("agent stopping; its pods keep running");
            Ok(())
        }
    }
}

/// The host's resolver, which the cluster DNS forwards other names to: the first nameserver of
/// /etc/resolv.conf that is not the cluster DNS itself.
fn host_upstream(cluster_dns: IpAddr) -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstream = upstream_from_resolv_conf(&text, cluster_dns);
    if upstream.is_none() {
        tracing::info!(
            "no nameserver in /etc/resolv.conf: the cluster DNS refuses names outside the cluster"
        );
    }
    upstream
}
