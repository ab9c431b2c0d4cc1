//! The elector's effects: reading, taking and renewing the Lease through the API, and running
//! the leader's work for as long as a term lasts.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

use super::{ElectionConfig, LEASE_NAMESPACE, Seen, Step, Term, decide, still_leading};
use crate::is_status;

/// Campaigns for the role in `config` as `identity` (this server's name) and, in each term won,
/// runs `work(term)` until the term ends; then campaigns again. Never returns.
///
/// A term ends when the leader fails to renew within the renew deadline or finds the Lease
/// taken, and `work`'s future is then dropped at once, which stops its watches and requests.
/// Writes already sent are refused by the API server's fence (see the module's doc). If
/// `work` returns by itself, the term is given up (the Lease released) and a new campaign
/// starts.
pub async fn lead<W, F>(client: Client, config: ElectionConfig, identity: &str, mut work: W) -> !
where
    W: FnMut(Term) -> F,
    F: Future<Output = ()>,
{
    if let Err(problem) = config.check() {
        panic!("leader election for {}: {problem}", config.lease_name);
    }
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let elector = Elector { leases, config, epoch: Instant::now() };
    loop {
        let term = Term {
            namespace: LEASE_NAMESPACE.into(),
            lease: elector.config.lease_name.clone(),
            holder: format!("{identity}_{}", uuid::Uuid::new_v4().simple()),
        };
        let (renewed_at, written) = elector.campaign(&term.holder).await;
        tracing::info!(lease = %term.lease, holder = %term.holder, "leading");
        tokio::select! {
            () = work(term.clone()) => {
                tracing::warn!(lease = %term.lease, "the leader's work ended; giving the lease up");
                elector.release(&term.holder).await;
            }
            () = elector.keep(&term.holder, renewed_at, written) => {
                tracing::warn!(lease = %term.lease, holder = %term.holder, "no longer leading");
            }
        }
    }
}

/// The longest a Lease read or write may take. A write that times out may still have
/// happened; the next read tells.
const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(5);

struct Elector {
    leases: Api<Lease>,
    config: ElectionConfig,
    /// The origin of the monotonic times the pure decision works with.
    epoch: Instant,
}

impl Elector {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Reads the Lease; `Err` when it could not be read (the caller tries again later).
    async fn read(&self) -> Result<Option<Lease>, ()> {
        let timeout = self.config.retry_period.max(Duration::from_millis(500)).min(REQUEST_TIMEOUT_MAX);
        match tokio::time::timeout(timeout, self.leases.get_opt(&self.config.lease_name)).await {
            Ok(Ok(lease)) => Ok(lease),
            Ok(Err(error)) => {
                tracing::debug!(lease = %self.config.lease_name, %error, "cannot read the lease");
                Err(())
            }
            Err(_elapsed) => Err(()),
        }
    }

    /// Waits until it holds the Lease as `holder`; returns when the acquiring write was sent,
    /// and the Lease as written.
    async fn campaign(&self, holder: &str) -> (Duration, Lease) {
        let mut seen: Option<Seen> = None;
        let mut changed_at = self.now();
        let mut ticks = tokio::time::interval(self.config.retry_period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Ok(lease) = self.read().await else { continue };
            let now = self.now();
            let current = lease.as_ref().map(seen_of);
            if current != seen {
                seen = current;
                changed_at = now;
            }
            if decide(seen.as_ref(), changed_at, now, holder, &self.config) != Step::Acquire {
                continue;
            }
            let sent_at = self.now();
            if let Some(written) = self.write(lease, holder, true).await {
                return (sent_at, written);
            }
        }
    }

    /// Renews the Lease as `holder` until a renewal fails for longer than the renew deadline
    /// or the Lease names someone else; then returns.
    ///
    /// A renewal is one conditional write over the Lease as this leader last wrote it: no read
    /// first, which under a flood of writes would wait for this member to apply everything
    /// before it (a linearizable read) and leave the write less of the renew deadline. Only
    /// after a failed write (409: someone else wrote; or no verdict) is the Lease read again.
    async fn keep(&self, holder: &str, mut renewed_at: Duration, written: Lease) {
        let mut ticks = tokio::time::interval(self.config.retry_period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the Lease was just written
        let mut last_written = Some(written);
        loop {
            let deadline = self.epoch + renewed_at + self.config.renew_deadline;
            let renewal = async {
                ticks.tick().await;
                let sent_at = self.now();
                let lease = match last_written.take() {
                    Some(lease) => lease,
                    None => {
                        let Ok(lease) = self.read().await else { return Renewal::Failed };
                        let Some(lease) = lease else { return Renewal::Lost };
                        if lease.spec.as_ref().and_then(|spec| spec.holder_identity.as_deref())
                            != Some(holder)
                        {
                            return Renewal::Lost;
                        }
                        lease
                    }
                };
                match self.write(Some(lease), holder, false).await {
                    Some(written) => {
                        last_written = Some(written);
                        Renewal::Renewed(sent_at)
                    }
                    None => Renewal::Failed,
                }
            };
            match tokio::time::timeout_at(deadline, renewal).await {
                Ok(Renewal::Renewed(sent_at)) => renewed_at = sent_at,
                Ok(Renewal::Failed) if still_leading(renewed_at, self.now(), &self.config) => {}
                Ok(Renewal::Failed) | Err(_) => {
                    tracing::warn!(lease = %self.config.lease_name, "could not renew within the renew deadline");
                    return;
                }
                Ok(Renewal::Lost) => {
                    tracing::warn!(lease = %self.config.lease_name, "the lease was taken by another holder");
                    return;
                }
            }
        }
    }

    /// Writes the Lease naming `holder`, created if `current` is `None`, conditional on the
    /// resourceVersion read. `acquire` also sets the acquire time and counts the transition.
    /// The Lease as stored, if the write is known to have happened.
    async fn write(&self, current: Option<Lease>, holder: &str, acquire: bool) -> Option<Lease> {
        let now = MicroTime(jiff::Timestamp::now());
        let exists = current.is_some();
        let mut lease = current.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.config.lease_name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if acquire {
            let previous = spec.holder_identity.as_deref().unwrap_or("");
            if exists && !previous.is_empty() && previous != holder {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.holder_identity = Some(holder.into());
            spec.acquire_time = Some(now.clone());
        }
        spec.renew_time = Some(now);
        // Whole seconds on the wire (the field is an integer); candidates use their own
        // configured duration, which may be finer.
        let seconds = self.config.lease_duration.as_secs_f64().ceil() as i32;
        spec.lease_duration_seconds = Some(seconds.max(1));
        let params = PostParams::default();
        let request = async {
            if exists {
                self.leases.replace(&self.config.lease_name, &params, &lease).await
            } else {
                self.leases.create(&params, &lease).await
            }
        };
        match tokio::time::timeout(self.config.renew_deadline.min(REQUEST_TIMEOUT_MAX), request).await {
            Ok(Ok(written)) => Some(written),
            Ok(Err(error)) => {
                if !is_status(&error, 409) {
                    tracing::debug!(lease = %self.config.lease_name, %error, "cannot write the lease");
                }
                None
            }
            Err(_elapsed) => None,
        }
    }

    /// Gives the Lease up, so that another server can take it at once rather than after the
    /// lease duration. Best effort.
    async fn release(&self, holder: &str) {
        let Ok(Some(mut lease)) = self.read().await else { return };
        let Some(spec) = lease.spec.as_mut().filter(|spec| spec.holder_identity.as_deref() == Some(holder))
        else {
            return;
        };
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        let params = PostParams::default();
        let request = self.leases.replace(&self.config.lease_name, &params, &lease);
        let _ = tokio::time::timeout(REQUEST_TIMEOUT_MAX, request).await;
    }
}

enum Renewal {
    Renewed(Duration),
    Failed,
    Lost,
}

fn seen_of(lease: &Lease) -> Seen {
    Seen {
        holder: lease.spec.as_ref().and_then(|spec| spec.holder_identity.clone()).unwrap_or_default(),
        resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
    }
}
