//! `shoal faults`: read or change a running member's fault plan.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use shoal_chaos::FaultPlan;
use shoal_store::peer_service::{FaultsRequest, FaultsResult};
use shoal_store::server::{TlsFiles, peer_client_tls};
use shoal_store::transport::{NOT_A_MEMBER, PeerRpc, PeerTransport};

#[derive(Args, Clone, Debug)]
pub struct FaultsArgs {
    /// The member's peer URL (https://host:port).
    #[arg(long)]
    pub peer: String,
    /// Directory with ca.crt and admin.crt/.key; omit with --insecure-plaintext.
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    #[arg(long)]
    pub insecure_plaintext: bool,
    #[command(subcommand)]
    pub action: FaultsAction,
}

#[derive(Subcommand, Clone, Debug)]
pub enum FaultsAction {
    /// Print the current plan as JSON.
    Get,
    /// Replace the plan with the JSON in FILE (`-` for standard input).
    Set { file: PathBuf },
    /// Remove every fault.
    Heal,
}

pub async fn run(args: FaultsArgs) -> anyhow::Result<()> {
    let tls = match (&args.pki_dir, args.insecure_plaintext) {
        (_, true) => None,
        (Some(dir), false) => Some(peer_client_tls(&TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("admin.crt"),
            key: dir.join("admin.key"),
        })?),
        (None, false) => bail!("--pki-dir is required unless --insecure-plaintext"),
    };
    let request = match &args.action {
        FaultsAction::Get => FaultsRequest::Get,
        FaultsAction::Heal => FaultsRequest::Set(FaultPlan::default()),
        FaultsAction::Set { file } => {
            let json = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
            };
            FaultsRequest::Set(serde_json::from_str(&json).context("parsing the fault plan")?)
        }
    };
    // The CLI is not a member: its own link is never faulty.
    let transport = PeerTransport::new(NOT_A_MEMBER, shoal_chaos::Faults::new(0), tls);
    let result: FaultsResult = transport
        .call(NOT_A_MEMBER, &args.peer, PeerRpc::Faults, &request, Duration::from_secs(5))
        .await
        .context("contacting the member")?;
    let plan = result.map_err(|reason| anyhow::anyhow!("the member refused the plan: {reason}"))?;
    println!("{}", serde_json::to_string_pretty(&plan)?);
    Ok(())
}
