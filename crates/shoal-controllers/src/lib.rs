//! shoal's controllers: level-triggered reconcilers that are clients of the Kubernetes API.
//!
//! Being written: the garbage collector (`gc`) and namespace deletion (`namespace`).

use std::time::Duration;

/// Runs every controller against `client` until the future is dropped.
pub async fn run(client: kube::Client) {
    let _ = client;
    std::future::pending::<()>().await;
}

/// How often a controller re-examines everything even without events.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
