//! The `shoal` binary: one executable for every role. Wiring only; the work lives in the crates.

use clap::{Parser, Subcommand};
use shoal::{agent, bench, faults, lab, server, token, up};

#[derive(Parser)]
#[command(name = "shoal", version, about = "A Kubernetes-style container orchestrator in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane member: the Raft-replicated store (etcd's v3 API) and the Kubernetes API.
    Server(Box<server::ServerArgs>),
    /// Run a worker node: join a cluster and run the pods bound to this node.
    Agent(Box<agent::AgentArgs>),
    /// Run a whole local cluster on this machine (3 servers and 2 agents on loopback).
    Up(up::UpArgs),
    /// Read or change the fault plan of a running member's peer transport.
    Faults(faults::FaultsArgs),
    /// The process runtime's per-container shim (started by `shoal agent`, not by people).
    #[command(hide = true)]
    Shim { container_dir: std::path::PathBuf },
    /// Bootstrap tokens, with which new nodes join the cluster.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Measure shoal beside its anchors.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Exercises that measure a design choice of shoal.
    #[command(subcommand)]
    Lab(LabCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bootstrap token and print the `shoal agent` line that joins a node with it.
    Create(token::TokenCreateArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The store against etcd 3.4: latency, throughput, watch latency, failover, memory.
    Store(bench::BenchStoreArgs),
    /// The Kubernetes API of a 3-server cluster: latency, throughput, list size, watch fan-out.
    Api(bench::api::BenchApiArgs),
    /// A node agent under 3 servers: pod start latency through a watch, the agent's memory.
    Agent(bench::agent::BenchAgentArgs),
    /// Kill the server leading the controllers and the scheduler: how soon another acts.
    ControllerFailover(bench::controller_failover::BenchControllerFailoverArgs),
    /// Kill a node under a Deployment: the time until its replicas run elsewhere, by phase;
    /// then the lab's latency on every agent's link, counting false evictions.
    NodeLoss(bench::node_loss::BenchNodeLossArgs),
    /// The scheduler of a 3-server cluster on hollow nodes: pods bound per second, backlog.
    Scheduler(bench::scheduler::BenchSchedulerArgs),
    /// The service proxy in-process against a direct connection: added latency, throughput.
    Proxy(bench::proxy::BenchProxyArgs),
    /// The agent's cluster DNS server in-process against dnsmasq: queries per second, latency.
    Dns(bench::dns::BenchDnsArgs),
}

#[derive(Subcommand)]
enum LabCommand {
    /// Fixed timeouts and phi accrual against injected latency: detection time after a crash
    /// and false suspicions per hour, in virtual time, then a real run with a killed sender.
    FailureDetector(lab::failure_detector::FailureDetectorArgs),
    /// The failure-detector lab's heartbeat sender (started by the lab, not by people).
    #[command(hide = true)]
    FailureDetectorSender(lab::failure_detector::SenderArgs),
}

/// glibc's malloc and free took a quarter of the leading server's CPU under load, most of it
/// building and dropping JSON values (BENCHMARKS.md, the scheduler's profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Members of `shoal up` and of tests log to files, which colour codes would clutter.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Shim { container_dir } = &cli.command {
        // Before any runtime starts: the shim builds its own single-threaded one.
        std::process::exit(shoal_agent::runtime::process::shim::main(container_dir));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(*args).await,
            Command::Agent(args) => agent::run(*args).await,
            Command::Up(args) => up::run(args).await,
            Command::Faults(args) => faults::run(args).await,
            Command::Shim { .. } => unreachable!("the shim ran above"),
            Command::Token(TokenCommand::Create(args)) => token::run_create(args).await,
            Command::Bench(BenchCommand::Store(args)) => bench::run(args).await,
            Command::Bench(BenchCommand::Api(args)) => bench::api::run(args).await,
            Command::Bench(BenchCommand::Agent(args)) => bench::agent::run(args).await,
            Command::Bench(BenchCommand::ControllerFailover(args)) => {
                bench::controller_failover::run(args).await
            }
            Command::Bench(BenchCommand::NodeLoss(args)) => bench::node_loss::run(args).await,
            Command::Bench(BenchCommand::Scheduler(args)) => bench::scheduler::run(args).await,
            Command::Bench(BenchCommand::Proxy(args)) => bench::proxy::run(args).await,
            Command::Bench(BenchCommand::Dns(args)) => bench::dns::run(args).await,
            Command::Lab(LabCommand::FailureDetector(args)) => lab::failure_detector::run(args).await,
            Command::Lab(LabCommand::FailureDetectorSender(args)) => {
                lab::failure_detector::run_sender(args).await
            }
        }
    });
    // Tasks still blocked in a system call (an fsync, say) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
