//! Leader election through a coordination.k8s.io Lease, as client-go's leaderelection does it,
//! with fencing.
//!
//! Every server campaigns for each role (`kube-scheduler`, `kube-controller-manager`): the
//! Lease's `spec.holderIdentity` names the leader, which renews `spec.renewTime` every
//! `retry_period`. A candidate takes the Lease once it has seen no change to it for
//! `lease_duration` by its own clock; it never trusts another machine's timestamps. The
//! leader gives up when it has not renewed within `renew_deadline` of its last successful
//! renewal's start, which is shorter than `lease_duration`, so it normally stops before anyone
//! can take over.
//!
//! Timing alone cannot make that safe (a leader paused mid-write wakes up still "leading"), so
//! each term has its own holder identity and the leader's writes carry it as a fence
//! (`Term::holder`, sent in the API server's `Shoal-Fence` header): the API server refuses a
//! write from a holder the Lease no longer names, atomically with the write itself.
//!
//! This module is the pure decision; `runtime` talks to the API.

pub mod runtime;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use runtime::lead;

/// The namespace of the control plane's Leases.
pub const LEASE_NAMESPACE: &str = "kube-system";

/// How one role is elected.
#[derive(Clone, Debug, PartialEq)]
pub struct ElectionConfig {
    /// The Lease's name, which is also the role's name (`kube-scheduler`).
    pub lease_name: String,
    /// How long a Lease stays unchanged before a candidate may take it. shoal's default,
    /// 1.5 s, lets a new leader act within 2 s of the old one's death (Kubernetes: 15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates look at the Lease.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// shoal's defaults for the role named `lease_name`.
    pub fn new(lease_name: impl Into<String>) -> Self {
        Self {
            lease_name: lease_name.into(),
            lease_duration: Duration::from_millis(1500),
            renew_deadline: Duration::from_millis(1000),
            retry_period: Duration::from_millis(250),
        }
    }

    /// Whether the timings can work: a leader must give up before a candidate may take over,
    /// and get several renewals in before it must give up.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.saturating_mul(2) > self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be at most half the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// The Lease as a candidate last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `spec.holderIdentity`; empty when the Lease was released.
    pub holder: String,
    /// The Lease's resourceVersion: any change, a renewal included, changes it.
    pub resource_version: String,
}

/// What a candidate or leader should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the Lease, or take it over, naming itself.
    Acquire,
    /// Renew its own Lease.
    Renew,
    /// Someone else holds a live Lease: look again after the retry period.
    Wait,
}

/// The next step for `me`, given the Lease (`None`: it does not exist), when it was last seen
/// to change (`changed_at`), and the time now, both on this process's monotonic clock.
pub fn decide(
    lease: Option<&Seen>,
    changed_at: Duration,
    now: Duration,
    me: &str,
    config: &ElectionConfig,
) -> Step {
    let Some(lease) = lease else { return Step::Acquire };
    if lease.holder == me {
        Step::Renew
    } else if lease.holder.is_empty() || now.saturating_sub(changed_at) >= config.lease_duration {
        Step::Acquire
    } else {
        Step::Wait
    }
}

/// Whether a leader whose last successful renewal was sent at `renewed_at` may still act.
pub fn still_leading(renewed_at: Duration, now: Duration, config: &ElectionConfig) -> bool {
    now.saturating_sub(renewed_at) < config.renew_deadline
}

/// One term of leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// The Lease's namespace and name.
    pub namespace: String,
    pub lease: String,
    /// The identity this term holds the Lease under: unique to the term, so that it fences
    /// the writes of every earlier term, this process's own included.
    pub holder: String,
}
