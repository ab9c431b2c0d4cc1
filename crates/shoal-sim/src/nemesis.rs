//! The faults of a simulated run, drawn from its seed: partitions, lossy links, crashes and
//! restarts, latency changes; and the heal that undoes them all.
//!
//! Partitions are turmoil `hold`s between two groups of hosts (or the leader and the rest), so
//! connections stall and resume as TCP's would. Message loss, delay, duplication, reordering
//! and one-way partitions come from shoal's own fault plan, which every member's peer transport
//! obeys per request, as in a chaos lab. At most one partition and one plan are active at a time;
//! crashes add up to a minority of the members.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal_chaos::{FaultPlan, JitterDistribution, LinkFaults};

use crate::cluster::Cluster;

/// Longest calm between two fault actions.
const ACTION_GAP_MAX: Duration = Duration::from_millis(1_200);
/// Longest a partition or a fault plan lasts, and a crashed member stays down.
const FAULT_DURATION_MAX: Duration = Duration::from_millis(3_000);

/// What the nemesis did, for the run's trace.
pub type Action = String;

pub struct Nemesis {
    rng: ChaCha8Rng,
    next_action_at: Duration,
    /// The active partition: the two groups, and when it heals.
    partition: Option<(Vec<usize>, Vec<usize>, Duration)>,
    /// When the active fault plan is cleared.
    plan_until: Option<Duration>,
    /// Crashed members and when each restarts.
    restarts: BTreeMap<usize, Duration>,
    base_latency: Duration,
    /// Counts of what was done, for the run's summary.
    pub stats: NemesisStats,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct NemesisStats {
    pub partitions: u32,
    pub plans: u32,
    pub crashes: u32,
    pub latency_changes: u32,
}

/// What happened to a member, which the run must react to.
pub enum Event {
    Crashed(usize),
}

impl Nemesis {
    pub fn new(seed: u64, start_at: Duration, base_latency: Duration) -> Nemesis {
        Nemesis {
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_action_at: start_at,
            partition: None,
            plan_until: None,
            restarts: BTreeMap::new(),
            base_latency,
            stats: NemesisStats::default(),
        }
    }

    /// Ends the faults that are due, and starts a new one when it is time.
    pub fn tick(&mut self, now: Duration, cluster: &mut Cluster, trace: &mut Vec<Action>) -> Vec<Event> {
        if let Some((a, b, until)) = &self.partition
            && *until <= now
        {
            cluster.release(a, b);
            trace.push(format!("{now:?} heal partition {} | {}", names(cluster, a), names(cluster, b)));
            self.partition = None;
        }
        if self.plan_until.is_some_and(|until| until <= now) {
            cluster.set_plan(FaultPlan::default());
            trace.push(format!("{now:?} clear fault plan"));
            self.plan_until = None;
        }
        let due: Vec<usize> = self.restarts.iter().filter(|(_, at)| **at <= now).map(|(m, _)| *m).collect();
        for member in due {
            self.restarts.remove(&member);
            cluster.restart(member);
            trace.push(format!("{now:?} restart {}", cluster.members()[member].name));
        }
        if now < self.next_action_at {
            return vec![];
        }
        self.next_action_at = now + self.rng.random_range(Duration::from_millis(50)..=ACTION_GAP_MAX);
        let until = now + self.rng.random_range(Duration::from_millis(100)..=FAULT_DURATION_MAX);
        match self.rng.random_range(0..10) {
            0..3 => self.partition(now, until, cluster, trace),
            3..6 => self.fault_plan(now, until, cluster, trace),
            6..9 => return self.crash(now, until, cluster, trace),
            _ => {
                let latency = self.rng.random_range(Duration::from_millis(1)..=Duration::from_millis(60));
                cluster.set_max_latency(latency);
                self.stats.latency_changes += 1;
                trace.push(format!("{now:?} network latency up to {latency:?}"));
            }
        }
        vec![]
    }

    /// Undoes every fault: partitions healed, the plan cleared, latency back to normal, every
    /// crashed member restarted.
    pub fn heal(&mut self, now: Duration, cluster: &mut Cluster, trace: &mut Vec<Action>) {
        if let Some((a, b, _)) = self.partition.take() {
            cluster.release(&a, &b);
        }
        self.plan_until = None;
        cluster.set_plan(FaultPlan::default());
        cluster.set_max_latency(self.base_latency);
        for member in std::mem::take(&mut self.restarts).into_keys() {
            cluster.restart(member);
        }
        self.next_action_at = Duration::MAX;
        trace.push(format!("{now:?} heal everything"));
    }

    /// Splits the members in two, or cuts the leader off from the rest.
    fn partition(&mut self, now: Duration, until: Duration, cluster: &mut Cluster, trace: &mut Vec<Action>) {
        if self.partition.is_some() {
            return;
        }
        let count = cluster.members().len();
        let leader = (0..count).find(|&member| {
            cluster.handle(member).is_some_and(|handle| handle.store.leader() == Some(handle.store.id()))
        });
        let side: Vec<usize> = match leader {
            Some(leader) if self.rng.random_bool(0.5) => vec![leader],
            _ => {
                let size = self.rng.random_range(1..=count / 2);
                rand::seq::index::sample(&mut self.rng, count, size).into_vec()
            }
        };
        let rest: Vec<usize> = (0..count).filter(|member| !side.contains(member)).collect();
        cluster.hold(&side, &rest);
        trace.push(format!(
            "{now:?} partition {} | {} until {until:?}",
            names(cluster, &side),
            names(cluster, &rest)
        ));
        self.stats.partitions += 1;
        self.partition = Some((side, rest, until));
    }

    /// Gives every peer link random loss, delay, duplication and reordering, and sometimes a
    /// one-way partition.
    fn fault_plan(&mut self, now: Duration, until: Duration, cluster: &mut Cluster, trace: &mut Vec<Action>) {
        if self.plan_until.is_some() {
            return;
        }
        let rng = &mut self.rng;
        let reorder_probability = rng.random_range(0.0..0.2);
        let faults = LinkFaults {
            drop_probability: rng.random_range(0.0..0.3),
            delay_ms: rng.random_range(0..20),
            jitter_ms: rng.random_range(0..30),
            jitter_distribution: if rng.random_bool(0.5) {
                JitterDistribution::Uniform
            } else {
                JitterDistribution::Bell
            },
            duplicate_probability: rng.random_range(0.0..0.2),
            reorder_probability,
            reorder_delay_max_ms: rng.random_range(1..100),
        };
        let mut plan = FaultPlan::default();
        plan.set_default(faults);
        let count = cluster.members().len();
        let mut one_way = String::new();
        if self.rng.random_bool(0.3) {
            let from = self.rng.random_range(0..count);
            let to = (from + self.rng.random_range(1..count)) % count;
            plan.partition_one_way(cluster.members()[from].id, cluster.members()[to].id);
            one_way =
                format!(", no messages {} -> {}", cluster.members()[from].name, cluster.members()[to].name);
        }
        trace.push(format!("{now:?} fault plan {:?}{one_way} until {until:?}", plan.default_faults()));
        cluster.set_plan(plan);
        self.stats.plans += 1;
        self.plan_until = Some(until);
    }

    /// Crashes a running member, keeping at least a majority up.
    fn crash(
        &mut self,
        now: Duration,
        until: Duration,
        cluster: &mut Cluster,
        trace: &mut Vec<Action>,
    ) -> Vec<Event> {
        let count = cluster.members().len();
        let minority = (count - 1) / 2;
        if self.restarts.len() >= minority {
            return vec![];
        }
        let running: Vec<usize> = (0..count).filter(|&member| cluster.members()[member].running).collect();
        let member = running[self.rng.random_range(0..running.len())];
        cluster.crash(member);
        self.restarts.insert(member, until);
        self.stats.crashes += 1;
        trace.push(format!("{now:?} crash {} until {until:?}", cluster.members()[member].name));
        vec![Event::Crashed(member)]
    }
}

fn names(cluster: &Cluster, members: &[usize]) -> String {
    let names: Vec<&str> = members.iter().map(|&member| cluster.members()[member].name.as_str()).collect();
    names.join(",")
}
