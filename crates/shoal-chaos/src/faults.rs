//! The shared fault handle the transport asks before every message: plan, RNG and counters.
//!
//! Each directed link draws from its own ChaCha8 stream, derived from the seed and the link,
//! so a link's decisions depend only on the seed and on how many messages that link has
//! carried, not on how messages on different links interleave across threads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::plan::{FaultPlan, Link, MAX_CLUSTER_MEMBERS, PlanError};
use crate::verdict::{Verdict, decide};

/// The most links that get a random stream and counters of their own.
///
/// A full cluster has 42 directed links; the rest is room for members replaced during a
/// run. Links seen after that share one overflow stream and one set of counters, so memory
/// stays bounded however many member ids a long run goes through.
pub const MAX_TRACKED_LINKS: usize = 256;

const _: () = assert!(MAX_TRACKED_LINKS >= MAX_CLUSTER_MEMBERS * (MAX_CLUSTER_MEMBERS - 1));

/// A cheap-to-clone, thread-safe handle on the current fault plan. Clones share everything.
#[derive(Clone, Debug)]
pub struct Faults {
    // A std `Mutex`, not an async one: the lock is held for a map lookup and a few RNG
    // draws, never across an `.await` or any I/O, so contention is brief and blocking a
    // runtime thread for it is cheaper than an async lock's bookkeeping (the tokio docs
    // recommend exactly this for short critical sections).
    shared: Arc<Mutex<Shared>>,
}

/// How many messages a link's verdicts delivered, dropped, delayed, duplicated, reordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCounters {
    pub delivered: u64,
    pub dropped: u64,
    /// Delivered with a non-zero delay.
    pub delayed: u64,
    /// Delivered with a second copy.
    pub duplicated: u64,
    /// Delivered with a reorder delay.
    pub reordered: u64,
}

/// The counters of every link since the handle was created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Per link, for the first [`MAX_TRACKED_LINKS`] links that carried a message.
    pub links: BTreeMap<Link, LinkCounters>,
    /// All messages on links beyond that limit.
    pub untracked: LinkCounters,
}

#[derive(Debug)]
struct Shared {
    seed: u64,
    plan: FaultPlan,
    links: BTreeMap<Link, LinkState>,
    untracked: LinkState,
}

#[derive(Debug)]
struct LinkState {
    rng: ChaCha8Rng,
    counters: LinkCounters,
}

/// Keeps the per-link streams and the overflow stream apart even if a link had the
/// overflow stream's member ids.
#[derive(Clone, Copy)]
enum Stream {
    Link = 0,
    Untracked = 1,
}

impl Faults {
    /// A handle with a fault-free plan whose random decisions replay from `seed`.
    pub fn new(seed: u64) -> Self {
        let shared = Shared {
            seed,
            plan: FaultPlan::default(),
            links: BTreeMap::new(),
            untracked: LinkState::new(seed, Link::new(0, 0), Stream::Untracked),
        };
        Faults { shared: Arc::new(Mutex::new(shared)) }
    }

    /// The seed the random decisions replay from.
    pub fn seed(&self) -> u64 {
        self.lock().seed
    }

    /// Replaces the plan, if it is valid. Random streams and counters carry on.
    pub fn set_plan(&self, plan: FaultPlan) -> Result<(), PlanError> {
        plan.validate()?;
        self.lock().plan = plan;
        Ok(())
    }

    /// Changes the current plan in place, atomically with respect to other callers, if the
    /// result is valid; otherwise the plan stays as it was. `change` runs under the lock, so
    /// it must not use this handle.
    pub fn update_plan(&self, change: impl FnOnce(&mut FaultPlan)) -> Result<(), PlanError> {
        let mut shared = self.lock();
        let mut plan = shared.plan.clone();
        change(&mut plan);
        plan.validate()?;
        shared.plan = plan;
        Ok(())
    }

    /// A copy of the current plan.
    pub fn plan(&self) -> FaultPlan {
        self.lock().plan.clone()
    }

    /// Decides the fate of one message from member `from` to member `to`, and counts it.
    pub fn decide(&self, from: u64, to: u64) -> Verdict {
        assert_ne!(from, to, "a member never sends peer messages to itself");
        let mut guard = self.lock();
        let Shared { seed, plan, links, untracked } = &mut *guard;
        let link = Link::new(from, to);
        let tracked = links.contains_key(&link) || links.len() < MAX_TRACKED_LINKS;
        let state = if tracked {
            links.entry(link).or_insert_with(|| LinkState::new(*seed, link, Stream::Link))
        } else {
            untracked
        };
        let verdict = decide(plan, from, to, &mut state.rng);
        state.counters.count(verdict);
        verdict
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let shared = self.lock();
        Counters {
            links: shared.links.iter().map(|(link, state)| (*link, state.counters)).collect(),
            untracked: shared.untracked.counters,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Only a panic inside `decide` or a plan change could poison the lock: a bug.
        self.shared.lock().expect("fault state lock poisoned")
    }
}

impl LinkState {
    fn new(seed: u64, link: Link, stream: Stream) -> Self {
        let mut key = [0u8; 32];
        key[0..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&link.from.to_le_bytes());
        key[16..24].copy_from_slice(&link.to.to_le_bytes());
        key[24] = stream as u8;
        LinkState { rng: ChaCha8Rng::from_seed(key), counters: LinkCounters::default() }
    }
}

impl LinkCounters {
    fn count(&mut self, verdict: Verdict) {
        if !verdict.deliver {
            self.dropped += 1;
            return;
        }
        self.delivered += 1;
        self.delayed += u64::from(!verdict.delay.is_zero());
        self.duplicated += u64::from(verdict.duplicate);
        self.reordered += u64::from(verdict.reordered);
    }
}
