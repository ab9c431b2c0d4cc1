//! The node's heartbeat: its Lease in `kube-node-lease`, renewed on an interval, from which
//! the control plane tells a live node from a dead one.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::{Api, Client};

pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// How the lease is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How often the lease is renewed.
    pub renew_interval: Duration,
    /// How long a renewal vouches for the node (`leaseDurationSeconds`).
    pub duration: Duration,
}

/// How often an agent renews its Lease unless told otherwise: twice a second, so that the
/// control plane finds a dead node within about 1.5 s (Kubernetes renews every 10 s and
/// waits 40 s). Each renewal is one write through Raft: a cluster of hundreds of nodes should
/// renew less often (`shoal agent --lease-renew-interval-ms`).
pub const RENEW_INTERVAL_DEFAULT: Duration = Duration::from_millis(500);

impl Default for LeaseTiming {
    /// Renew every [`RENEW_INTERVAL_DEFAULT`], vouch for ten seconds.
    fn default() -> Self {
        Self { renew_interval: RENEW_INTERVAL_DEFAULT, duration: Duration::from_secs(10) }
    }
}

/// Renews the node's lease forever; failures are logged and retried at the next tick, so an
/// API outage only delays heartbeats.
pub async fn renew_forever(client: Client, node: String, node_uid: String, timing: LeaseTiming) {
    let leases: Api<Lease> = Api::namespaced(client, NODE_LEASE_NAMESPACE);
    let mut ticks = tokio::time::interval(timing.renew_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    // The lease as last stored: renewing it needs no read unless someone else changed it.
    let mut current: Option<Lease> = None;
    loop {
        ticks.tick().await;
        let timeout = timing.renew_interval.max(Duration::from_secs(1)) * 5;
        let renewal = tokio::time::timeout(timeout, renew(&leases, &node, &node_uid, timing, &mut current));
        match renewal.await {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!(node, "renewing the node lease again");
                }
                failing = false;
            }
            Ok(Err(error)) => {
                if !failing {
                    tracing::warn!(node, %error, "renewing the node lease failed; retrying");
                }
                failing = true;
            }
            Err(_) => failing = true,
        }
    }
}

async fn renew(
    leases: &Api<Lease>,
    node: &str,
    node_uid: &str,
    timing: LeaseTiming,
    current: &mut Option<Lease>,
) -> Result<(), kube::Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(node.to_owned()),
        lease_duration_seconds: Some(timing.duration.as_secs().max(1) as i32),
        renew_time: Some(now),
        ..LeaseSpec::default()
    };
    let stored = match current.take() {
        Some(lease) => Some(lease),
        None => leases.get_opt(node).await?,
    };
    match stored {
        Some(mut lease) => {
            lease.spec = Some(spec);
            // On a conflict `current` stays empty, so the next renewal reads the lease afresh.
            *current = Some(leases.replace(node, &PostParams::default(), &lease).await?);
            Ok(())
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_owned()),
                    namespace: Some(NODE_LEASE_NAMESPACE.to_owned()),
                    // Deleted with its Node, as Kubernetes does.
                    owner_references: (!node_uid.is_empty()).then(|| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: node.to_owned(),
                            uid: node_uid.to_owned(),
                            ..OwnerReference::default()
                        }]
                    }),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            *current = Some(leases.create(&PostParams::default(), &lease).await?);
            Ok(())
        }
    }
}
