//! Runs shoal's controllers on the one server that leads the store's Raft group.
//!
//! The controllers are API clients like any other: they reach this server's own API over
//! loopback with their own certificate. Only the Raft leader runs them, and it stops them as
//! soon as it learns it lost leadership. Every controller write is conditional on the
//! resourceVersion it read, so a deposed leader that has not noticed yet can lose races but
//! cannot overwrite newer state. (Lease-based election with fencing replaces this gate when
//! the scheduler arrives.)

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use shoal_store::store::Store;

/// Pause before retrying after the controllers' client could not be built.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Runs the controllers whenever this member leads; never returns.
pub async fn run_while_leading(store: Store, kubeconfig: PathBuf) {
    let id = store.id();
    let mut metrics = store.raft().metrics();
    loop {
        if metrics.wait_for(|m| m.current_leader == Some(id)).await.is_err() {
            return; // Raft stopped
        }
        let client = match client(&kubeconfig).await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "cannot build the controllers' API client; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        tracing::info!("leading: controllers started");
        let lost = metrics.wait_for(|m| m.current_leader != Some(id));
        tokio::select! {
            () = shoal_controllers::run(client) => tracing::error!("the controllers stopped"),
            _ = lost => tracing::info!("no longer leading: controllers stopped"),
        }
    }
}

async fn client(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let file =
        kube::config::Kubeconfig::read_from(kubeconfig).context("reading the controllers' kubeconfig")?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(file, &options).await?;
    Ok(kube::Client::try_from(config)?)
}
