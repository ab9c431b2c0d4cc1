//! Runs shoal's leader-elected roles, the controllers and the scheduler, each on one server at
//! a time.
//!
//! Every server campaigns for each role's Lease in kube-system (`shoal_controllers::
//! leader_election`); the one that holds it runs the role. The role's client reaches this
//! server's own API over loopback with its own certificate and carries the term's fence in
//! every request (the API server's `Shoal-Fence` header, `shoal_apiserver::fence`): once another
//! server has taken the Lease, no write of this term can land, even if this server was paused
//! mid-write and does not know yet that it was deposed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use shoal_apiserver::fence::{Claim, HEADER};
use shoal_controllers::leader_election::{self, ElectionConfig, Term};

/// Pause before retrying after a client could not be built.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Campaigns, as `identity`, for the two leader-elected roles, each with its own Lease as in
/// Kubernetes (so they may lead from different servers): `kube-controller-manager` runs the
/// controllers and `kube-scheduler` the scheduler. Never returns.
pub async fn run(identity: String, kubeconfig: PathBuf, config: shoal_controllers::Config) {
    let client = unfenced_client(&kubeconfig).await;
    let controllers = lead(client.clone(), "kube-controller-manager", &identity, &kubeconfig, |client| {
        shoal_controllers::run(client, config.clone())
    });
    let scheduler = lead(client, "kube-scheduler", &identity, &kubeconfig, shoal_scheduler::run);
    futures::future::join(controllers, scheduler).await;
}

/// Runs `role` with a fenced client in every term of the Lease `lease` this server wins.
async fn lead<F>(
    client: kube::Client,
    lease: &str,
    identity: &str,
    kubeconfig: &Path,
    role: impl Fn(kube::Client) -> F,
) -> !
where
    F: std::future::Future<Output = ()>,
{
    let role = &role;
    leader_election::lead(client, ElectionConfig::new(lease), identity, |term| async move {
        role(fenced_client(kubeconfig, &term).await).await;
    })
    .await
}

/// The client the election itself uses (it writes the Lease, which is not fenced).
async fn unfenced_client(kubeconfig: &Path) -> kube::Client {
    loop {
        match client(kubeconfig, None).await {
            Ok(client) => return client,
            Err(error) => tracing::warn!(%error, "cannot build the controllers' API client; retrying"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// A client whose every request carries `term`'s fence.
async fn fenced_client(kubeconfig: &Path, term: &Term) -> kube::Client {
    let claim =
        Claim { namespace: term.namespace.clone(), lease: term.lease.clone(), holder: term.holder.clone() };
    loop {
        match client(kubeconfig, Some(&claim)).await {
            Ok(client) => return client,
            Err(error) => tracing::warn!(%error, "cannot build the controllers' API client; retrying"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn client(kubeconfig: &Path, fence: Option<&Claim>) -> anyhow::Result<kube::Client> {
    let file =
        kube::config::Kubeconfig::read_from(kubeconfig).context("reading the controllers' kubeconfig")?;
    let options = kube::config::KubeConfigOptions::default();
    let mut config = kube::Config::from_custom_kubeconfig(file, &options).await?;
    if let Some(claim) = fence {
        let value = http::HeaderValue::try_from(claim.header_value()).context("the fence header")?;
        config.headers.push((http::HeaderName::from_static(HEADER), value));
    }
    Ok(kube::Client::try_from(config)?)
}
