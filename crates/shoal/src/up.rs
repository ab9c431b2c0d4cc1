//! `shoal up`: a whole local cluster on this machine, for trying shoal and for its tour.
//!
//! Each member is its own `shoal server` process, so members can be killed, paused and
//! restarted one by one, exactly as on separate machines.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::process::{Child, Command};

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
}

fn default_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from(".shoal/up"), |home| PathBuf::from(home).join(".shoal/up"))
}

/// How long members get to come up before `shoal up` gives up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

struct MemberPlan {
    name: String,
    client_port: u16,
    peer_port: u16,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if !(1..=7).contains(&args.members) {
        bail!("--members must be between 1 and 7");
    }
    let plans: Vec<MemberPlan> = (0..args.members)
        .map(|i| MemberPlan {
            name: format!("s{}", i + 1),
            client_port: args.base_port + 10 * i,
            peer_port: args.base_port + 10 * i + 1,
        })
        .collect();
    let pki_dir = args.dir.join("pki");
    let ca = crate::certs::ensure_ca(&pki_dir, "shoal")?;
    let admin = crate::certs::ensure_admin_cert(&ca, &pki_dir)?;
    let initial_cluster = plans
        .iter()
        .map(|plan| format!("{}=https://127.0.0.1:{}", plan.name, plan.peer_port))
        .collect::<Vec<_>>()
        .join(",");

    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let mut children = Vec::new();
    for plan in &plans {
        crate::certs::ensure_member_cert(&ca, &pki_dir, &plan.name, &[])?;
        children.push(spawn_member(&exe, &args.dir, &pki_dir, plan, &initial_cluster)?);
    }
    for plan in &plans {
        wait_for_port(plan.client_port).await.with_context(|| {
            format!("member {} did not start; see {}", plan.name, args.dir.join(format!("{}.log", plan.name)).display())
        })?;
    }

    let endpoints =
        plans.iter().map(|plan| format!("https://127.0.0.1:{}", plan.client_port)).collect::<Vec<_>>().join(",");
    println!("shoal: {} store members running", plans.len());
    for plan in &plans {
        println!(
            "  {}  client https://127.0.0.1:{}  peer https://127.0.0.1:{}  log {}",
            plan.name,
            plan.client_port,
            plan.peer_port,
            args.dir.join(format!("{}.log", plan.name)).display()
        );
    }
    println!("\nendpoints: {endpoints}");
    println!("\nTry:");
    println!(
        "  etcdctl --endpoints={endpoints} --cacert={} --cert={} --key={} put hello world",
        admin.ca.display(),
        admin.cert.display(),
        admin.key.display()
    );
    println!("\nCtrl-C stops the cluster; its data stays in {}.", args.dir.display());

    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    stop(children).await;
    Ok(())
}

fn spawn_member(
    exe: &PathBuf,
    dir: &std::path::Path,
    pki_dir: &std::path::Path,
    plan: &MemberPlan,
    initial_cluster: &str,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join(format!("{}.log", plan.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let child = Command::new(exe)
        .arg("server")
        .args(["--name", &plan.name])
        .arg("--data-dir")
        .arg(dir.join(&plan.name))
        .arg("--pki-dir")
        .arg(pki_dir)
        .args(["--listen-client", &format!("127.0.0.1:{}", plan.client_port)])
        .args(["--listen-peer", &format!("127.0.0.1:{}", plan.peer_port)])
        .args(["--initial-cluster", initial_cluster])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting member {}", plan.name))?;
    Ok(child)
}

async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nothing listens on port {port} after {STARTUP_TIMEOUT:?}")
}

/// Members got the terminal's Ctrl-C too; give them a moment to stop, then make sure.
async fn stop(children: Vec<Child>) {
    for mut child in children {
        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}
