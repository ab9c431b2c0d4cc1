//! The fault plan: default faults for every link, overrides per directed link, partitions.
//!
//! A plan is plain data, so it can be set at runtime over the admin RPC and printed by the
//! CLI. It is checked as a whole by [`FaultPlan::validate`], which [`crate::Faults`] calls
//! before using it: a plan that arrived over the wire is checked the same way as one built
//! in code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::link_faults::{LinkFaults, LinkFaultsError};

/// The most members a store cluster has; the limits below are sized from it.
pub const MAX_CLUSTER_MEMBERS: usize = 7;

/// The most link overrides, and separately the most partitioned links, in one plan.
///
/// A full cluster has 42 directed links; the rest is room for members replaced during a run.
pub const MAX_PLAN_LINKS: usize = 256;

const _: () = assert!(MAX_PLAN_LINKS >= MAX_CLUSTER_MEMBERS * (MAX_CLUSTER_MEMBERS - 1));

/// A directed link between two store members, written `from->to` (so it can be a JSON key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Link {
    pub from: u64,
    pub to: u64,
}

/// Why a plan was rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("the default link faults are invalid")]
    Default(#[source] LinkFaultsError),
    #[error("the faults of link {link} are invalid")]
    Link {
        link: Link,
        #[source]
        source: LinkFaultsError,
    },
    #[error("link {link} connects a member to itself")]
    SelfLink { link: Link },
    #[error("the plan overrides {count} links, above the limit of {max}")]
    TooManyOverrides { count: usize, max: usize },
    #[error("the plan partitions {count} links, above the limit of {max}")]
    TooManyPartitions { count: usize, max: usize },
}

/// A [`Link`] written other than as `from->to`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("link {text:?} is not of the form `from->to` with numeric member ids")]
pub struct LinkParseError {
    pub text: String,
}

/// Which faults apply to which link. `Default` is a healthy network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultPlan {
    /// The faults of every link without an override.
    default: LinkFaults,
    /// Faults for particular directed links, replacing `default` there.
    links: BTreeMap<Link, LinkFaults>,
    /// Directed links on which every message is dropped, whatever their faults.
    partitions: BTreeSet<Link>,
}

impl Link {
    pub fn new(from: u64, to: u64) -> Self {
        Link { from, to }
    }

    /// The same link in the other direction.
    pub fn reversed(self) -> Self {
        Link { from: self.to, to: self.from }
    }
}

impl FaultPlan {
    /// Sets the faults of every link that has no override of its own.
    pub fn set_default(&mut self, faults: LinkFaults) {
        self.default = faults;
    }

    /// Sets the faults of the directed link `from -> to`, replacing the default there.
    pub fn set_link(&mut self, from: u64, to: u64, faults: LinkFaults) {
        self.links.insert(Link::new(from, to), faults);
    }

    /// Returns the link `from -> to` to the default faults.
    pub fn clear_link(&mut self, from: u64, to: u64) {
        self.links.remove(&Link::new(from, to));
    }

    /// Drops every message from `from` to `to`; the other direction is untouched.
    pub fn partition_one_way(&mut self, from: u64, to: u64) {
        self.partitions.insert(Link::new(from, to));
    }

    /// Drops every message between `a` and `b`, both ways.
    pub fn partition(&mut self, a: u64, b: u64) {
        self.partition_one_way(a, b);
        self.partition_one_way(b, a);
    }

    /// Cuts `member` off from each of `others`, both ways. `member` itself may appear among
    /// `others` (pass the whole membership) and is skipped.
    pub fn isolate(&mut self, member: u64, others: impl IntoIterator<Item = u64>) {
        for other in others {
            if other != member {
                self.partition(member, other);
            }
        }
    }

    /// Removes every partition. Link faults stay; `FaultPlan::default()` clears everything.
    pub fn heal(&mut self) {
        self.partitions.clear();
    }

    /// Removes the partitions between `a` and `b`, both ways; other partitions stay.
    pub fn heal_link(&mut self, a: u64, b: u64) {
        self.partitions.remove(&Link::new(a, b));
        self.partitions.remove(&Link::new(b, a));
    }

    /// The faults that apply to the link `from -> to`.
    pub fn link_faults(&self, from: u64, to: u64) -> &LinkFaults {
        self.links.get(&Link::new(from, to)).unwrap_or(&self.default)
    }

    /// Whether every message from `from` to `to` is dropped.
    pub fn is_partitioned(&self, from: u64, to: u64) -> bool {
        self.partitions.contains(&Link::new(from, to))
    }

    pub fn default_faults(&self) -> &LinkFaults {
        &self.default
    }

    /// The links with faults of their own, in order.
    pub fn overrides(&self) -> impl Iterator<Item = (Link, &LinkFaults)> {
        self.links.iter().map(|(link, faults)| (*link, faults))
    }

    /// The partitioned directed links, in order.
    pub fn partitions(&self) -> impl Iterator<Item = Link> + '_ {
        self.partitions.iter().copied()
    }

    /// Checks every link's faults, that no link leads from a member to itself, and the limits.
    pub fn validate(&self) -> Result<(), PlanError> {
        self.default.validate().map_err(PlanError::Default)?;
        if self.links.len() > MAX_PLAN_LINKS {
            return Err(PlanError::TooManyOverrides { count: self.links.len(), max: MAX_PLAN_LINKS });
        }
        if self.partitions.len() > MAX_PLAN_LINKS {
            return Err(PlanError::TooManyPartitions { count: self.partitions.len(), max: MAX_PLAN_LINKS });
        }
        for (&link, faults) in &self.links {
            check_not_self_link(link)?;
            faults.validate().map_err(|source| PlanError::Link { link, source })?;
        }
        for &link in &self.partitions {
            check_not_self_link(link)?;
        }
        Ok(())
    }
}

fn check_not_self_link(link: Link) -> Result<(), PlanError> {
    if link.from == link.to { Err(PlanError::SelfLink { link }) } else { Ok(()) }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

impl FromStr for Link {
    type Err = LinkParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || LinkParseError { text: text.to_owned() };
        let (from, to) = text.split_once("->").ok_or_else(error)?;
        let from = from.trim().parse().map_err(|_| error())?;
        let to = to.trim().parse().map_err(|_| error())?;
        Ok(Link { from, to })
    }
}

impl From<Link> for String {
    fn from(link: Link) -> Self {
        link.to_string()
    }
}

impl TryFrom<String> for Link {
    type Error = LinkParseError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_directed() {
        // One-way partitions block one direction only; `partition` and `isolate` block both,
        // and `isolate` skips the member itself.
        let mut plan = FaultPlan::default();
        plan.partition_one_way(1, 2);
        assert!(plan.is_partitioned(1, 2));
        assert!(!plan.is_partitioned(2, 1));

        plan.partition(2, 3);
        assert!(plan.is_partitioned(2, 3) && plan.is_partitioned(3, 2));

        plan.heal();
        plan.isolate(1, [1, 2, 3]);
        let expected = [(1, 2), (1, 3), (2, 1), (3, 1)].map(|(from, to)| Link::new(from, to));
        assert_eq!(plan.partitions().collect::<Vec<_>>(), expected);
        assert_eq!(plan.validate(), Ok(()));

        // `heal_link` removes both directions of one pair and nothing else.
        plan.heal_link(2, 1);
        let expected = [(1, 3), (3, 1)].map(|(from, to)| Link::new(from, to));
        assert_eq!(plan.partitions().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn overrides_replace_the_default_on_their_link_only() {
        // An override applies to its directed link; the reverse link keeps the default.
        let mut plan = FaultPlan::default();
        plan.set_default(LinkFaults { delay_ms: 5, ..LinkFaults::default() });
        plan.set_link(1, 2, LinkFaults { drop_probability: 1.0, ..LinkFaults::default() });
        assert_eq!(plan.link_faults(1, 2).drop_probability, 1.0);
        assert_eq!(plan.link_faults(2, 1).delay_ms, 5);
        plan.clear_link(1, 2);
        assert_eq!(plan.link_faults(1, 2).delay_ms, 5);
    }

    #[test]
    fn validate_rejects_bad_plans() {
        // Invalid faults are reported with the link they are on; self links and oversized
        // plans are rejected.
        let invalid = LinkFaults { drop_probability: 2.0, ..LinkFaults::default() };
        let cause = LinkFaultsError::ProbabilityOutOfRange { field: "drop_probability", value: 2.0 };

        let mut plan = FaultPlan::default();
        plan.set_default(invalid.clone());
        assert_eq!(plan.validate(), Err(PlanError::Default(cause.clone())));

        let mut plan = FaultPlan::default();
        plan.set_link(1, 2, invalid);
        assert_eq!(plan.validate(), Err(PlanError::Link { link: Link::new(1, 2), source: cause }));

        let mut plan = FaultPlan::default();
        plan.partition_one_way(4, 4);
        assert_eq!(plan.validate(), Err(PlanError::SelfLink { link: Link::new(4, 4) }));

        let mut plan = FaultPlan::default();
        plan.isolate(0, 1..=MAX_PLAN_LINKS as u64);
        assert_eq!(
            plan.validate(),
            Err(PlanError::TooManyPartitions { count: 2 * MAX_PLAN_LINKS, max: MAX_PLAN_LINKS })
        );
    }

    #[test]
    fn plan_round_trips_through_json() {
        // The admin RPC and the CLI carry plans as JSON, links written `from->to`.
        let mut plan = FaultPlan::default();
        plan.set_default(LinkFaults { jitter_ms: 3, ..LinkFaults::default() });
        plan.set_link(1, 2, LinkFaults { duplicate_probability: 0.5, ..LinkFaults::default() });
        plan.partition_one_way(3, 1);

        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains(r#""1->2":{"#), "{json}");
        assert!(json.contains(r#""partitions":["3->1"]"#), "{json}");
        assert_eq!(serde_json::from_str::<FaultPlan>(&json).unwrap(), plan);

        assert_eq!(serde_json::from_str::<FaultPlan>("{}").unwrap(), FaultPlan::default());
        assert!(serde_json::from_str::<FaultPlan>(r#"{"partitions":["1-2"]}"#).is_err());
    }

    #[test]
    fn link_parses_its_display_form() {
        // `from->to` parses back; anything else is an error.
        assert_eq!("12->7".parse(), Ok(Link::new(12, 7)));
        assert_eq!(Link::new(12, 7).to_string(), "12->7");
        assert!("12-7".parse::<Link>().is_err());
        assert!("a->7".parse::<Link>().is_err());
    }
}
