//! `shoal up`: a whole local cluster on this machine, for trying shoal and for its tour.
//!
//! Each member is its own `shoal server` process and each worker its own `shoal agent` (see
//! `LocalCluster`), so they can be killed, paused and restarted one by one, exactly as on
//! separate machines.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum as _};

use crate::agent::ProxyModeArg;
use crate::local_cluster::{LocalCluster, LocalClusterConfig, Ports};

#[derive(Args, Clone, Debug)]
pub struct UpArgs {
    /// Where the cluster keeps its data, logs and certificates.
    #[arg(long, default_value_os_t = default_dir())]
    pub dir: PathBuf,
    /// Number of store members (3 or 5 keep a majority through 1 or 2 failures).
    #[arg(long, default_value_t = 3)]
    pub members: u16,
    /// Member i listens for clients on base-port + 10·i and for peers on the next port.
    #[arg(long, default_value_t = 2379)]
    pub base_port: u16,
    /// Number of worker nodes (`shoal agent` processes named a1, a2, …).
    #[arg(long, default_value_t = 2)]
    pub agents: u16,
    /// How every agent's service proxy moves connections (`shoal agent --proxy-mode`):
    /// `nftables` needs root and the nft command.
    #[arg(long, value_enum, default_value_t = ProxyModeArg::Userspace)]
    pub proxy_mode: ProxyModeArg,
}

/// Where `shoal up` keeps a cluster unless told otherwise: `~/.shoal/up`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from(".shoal/up"), |home| PathBuf::from(home).join(".shoal/up"))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if !(1..=7).contains(&args.members) {
        bail!("--members must be between 1 and 7");
    }
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let mut config = LocalClusterConfig::new(exe, &args.dir);
    config.ports = Ports::Base(args.base_port);
    let mut cluster = LocalCluster::new(config)?;
    cluster.start(usize::from(args.members)).await?;
    cluster.wait_ready().await?;
    let mode = args.proxy_mode.to_possible_value().expect("every mode has a name");
    let agent_args = ["--proxy-mode", mode.get_name()];
    for i in 0..usize::from(args.agents) {
        // Each agent joins through a different server, as agents spread over a real cluster do.
        cluster.start_agent(&format!("a{}", i + 1), i % cluster.len(), &agent_args).await?;
    }

    let members = (0..cluster.len()).map(|i| cluster.member(i)).collect::<Vec<_>>();
    let endpoints = members.iter().map(|member| member.client_url()).collect::<Vec<_>>().join(",");
    println!("shoal: {} store members running", members.len());
    for member in &members {
        println!(
            "  {}  api {}  client {}  peer {}  log {}",
            member.name,
            member.api_url(),
            member.client_url(),
            member.peer_url(),
            member.log.display()
        );
    }
    for i in 0..cluster.agent_count() {
        let agent = cluster.agent(i);
        println!(
            "  agent {}  kubelet {}  pods {}  log {}",
            agent.name,
            agent.kubelet_addr,
            agent.pod_cidr,
            agent.log.display()
        );
    }
    println!("\nendpoints: {endpoints}");
    let kubeconfig = cluster.write_kubeconfig(0)?;
    println!("\nKubernetes API: {} (kubeconfig {})", members[0].api_url(), kubeconfig.display());
    println!("\nTry:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes");
    let admin = cluster.admin_tls();
    println!(
        "  etcdctl --endpoints={endpoints} --cacert={} --cert={} --key={} put hello world",
        admin.ca.display(),
        admin.cert.display(),
        admin.key.display()
    );
    println!(
        "\nCtrl-C (or SIGTERM) stops the cluster and its pods; its data stays in {}.",
        args.dir.display()
    );

    // SIGTERM (a supervisor, `timeout`, `kill`) stops it as cleanly as Ctrl-C: servers, agents
    // and every pod they run, which would otherwise outlive it holding their addresses.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    let stopped = cluster.stop_all().await;
    if args.proxy_mode == ProxyModeArg::Nftables {
        // The agents leave the kernel table for the pods that outlive them; none does here.
        shoal_agent::proxy::nftables::remove().await.context("removing the proxy's nftables table")?;
    }
    stopped
}
