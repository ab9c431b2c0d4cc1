//! The fault plan of shoal's fault-injecting peer transport: what happens to each message.
//!
//! All traffic between store members passes through one transport, which asks
//! [`Faults::decide`] before sending each message whether to drop, delay or duplicate it.
//! This crate makes that decision and nothing else: no networking, no clocks. The decision
//! itself is a pure function ([`decide`]) of a [`FaultPlan`] and a seeded random stream, so
//! a run replays from its seed.

mod faults;
mod link_faults;
mod plan;
mod verdict;

pub use faults::{Counters, Faults, LinkCounters, MAX_TRACKED_LINKS};
pub use link_faults::{JitterDistribution, LinkFaults, LinkFaultsError, MAX_INJECTED_DELAY_MS};
pub use plan::{FaultPlan, Link, LinkParseError, MAX_CLUSTER_MEMBERS, MAX_PLAN_LINKS, PlanError};
pub use verdict::{Verdict, decide};
