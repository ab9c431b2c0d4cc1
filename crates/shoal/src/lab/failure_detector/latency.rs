//! The lab's heartbeat sender as data: when each heartbeat leaves and when it arrives, under
//! one of three latency models, drawn from a seeded generator so that a run is repeatable.
//!
//! The sender means to beat every [`HEARTBEAT_INTERVAL`] (an agent renewing its node Lease).
//! - `constant`: every heartbeat takes [`CONSTANT_LATENCY`]; intervals are exact.
//! - `jitter`: latency is normal around [`JITTER_MEAN`] with deviation [`JITTER_STD_DEV`]
//!   (cut to [`LATENCY_MIN`]..[`LATENCY_MAX`]): a busy network or API server.
//! - `heavy-tail`: small jitter, and now and then ([`PAUSE_PROBABILITY`] per heartbeat) the
//!   sender stops for a Pareto-distributed pause of half a second and up (a stop-the-world
//!   collection, swapping, a stalled disk), after which it carries on: the heartbeat due
//!   leaves late and the next ones follow a whole interval after it.
//!
//! [`LinkLatency`] applies the same models to a link rather than to a heartbeat sender: the
//! delay of each chunk a fault-injecting forwarder carries (`crate::link_forwarder`), pauses
//! included, as a pure function of the time the chunk enters the link.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How often the sender means to beat: as shoal's agents renew their Lease.
pub const HEARTBEAT_INTERVAL: Duration = shoal_controllers::failure_detector::AGENT_HEARTBEAT_INTERVAL;
/// The latency of every heartbeat of the `constant` model.
pub const CONSTANT_LATENCY: Duration = Duration::from_millis(20);
/// The mean latency of the `jitter` model.
pub const JITTER_MEAN: Duration = Duration::from_millis(100);
/// The standard deviation of the `jitter` model's latency.
pub const JITTER_STD_DEV: Duration = Duration::from_millis(100);
/// The mean latency of the `heavy-tail` model between pauses.
pub const HEAVY_TAIL_JITTER_MEAN: Duration = Duration::from_millis(20);
/// The standard deviation of the `heavy-tail` model's latency between pauses.
pub const HEAVY_TAIL_JITTER_STD_DEV: Duration = Duration::from_millis(10);
/// The chance that the `heavy-tail` sender pauses before a heartbeat: one pause every
/// [`PAUSE_EVERY_MEAN`] on average.
pub const PAUSE_PROBABILITY: f64 = HEARTBEAT_INTERVAL.as_secs_f64() / PAUSE_EVERY_MEAN.as_secs_f64();
/// The shortest pause (the Pareto distribution's scale).
pub const PAUSE_MIN: Duration = Duration::from_millis(500);
/// The Pareto distribution's shape: P(pause > x) = (PAUSE_MIN / x)^1.5, so a third of the
/// pauses exceed 1 s, one in eight exceeds 2 s, one in 32 exceeds 5 s.
pub const PAUSE_SHAPE: f64 = 1.5;
/// Pauses are cut at this length: longer than that, a sender is as good as dead.
pub const PAUSE_MAX: Duration = Duration::from_secs(30);
/// No heartbeat is faster than this.
pub const LATENCY_MIN: Duration = Duration::from_millis(1);
/// No heartbeat is slower than this (pauses delay sending, not delivery): heartbeats sent
/// before a crash all arrive within this long after it.
pub const LATENCY_MAX: Duration = Duration::from_secs(2);

/// Which latency the sender's heartbeats meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum LatencyKind {
    Constant,
    Jitter,
    HeavyTail,
}

impl LatencyKind {
    pub const ALL: [LatencyKind; 3] = [LatencyKind::Constant, LatencyKind::Jitter, LatencyKind::HeavyTail];

    pub fn name(self) -> &'static str {
        match self {
            LatencyKind::Constant => "constant",
            LatencyKind::Jitter => "jitter",
            LatencyKind::HeavyTail => "heavy-tail",
        }
    }
}

/// One heartbeat: when the sender sent it and when the detector received it, both since the
/// sender's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub sent: Duration,
    pub arrived: Duration,
}

/// Every heartbeat the sender sends before `length`, ordered by arrival (latency can reorder
/// them). The same kind and seed give the same heartbeats.
pub fn heartbeats(kind: LatencyKind, seed: u64, length: Duration) -> Vec<Heartbeat> {
    let mut random = StdRng::seed_from_u64(seed);
    let mut heartbeats = Vec::with_capacity((length.as_secs() + 1) as usize);
    let mut sent = Duration::ZERO;
    while sent < length {
        if kind == LatencyKind::HeavyTail && random.random_bool(PAUSE_PROBABILITY) {
            sent += pause(&mut random);
        }
        let latency = match kind {
            LatencyKind::Constant => CONSTANT_LATENCY,
            LatencyKind::Jitter => normal(&mut random, JITTER_MEAN, JITTER_STD_DEV),
            LatencyKind::HeavyTail => normal(&mut random, HEAVY_TAIL_JITTER_MEAN, HEAVY_TAIL_JITTER_STD_DEV),
        };
        heartbeats.push(Heartbeat { sent, arrived: sent + latency.clamp(LATENCY_MIN, LATENCY_MAX) });
        sent += HEARTBEAT_INTERVAL;
    }
    heartbeats.sort_by_key(|heartbeat| heartbeat.arrived);
    heartbeats
}

/// A latency drawn from a normal distribution (Box–Muller), cut to the model's bounds.
fn normal(random: &mut StdRng, mean: Duration, std_dev: Duration) -> Duration {
    // 1 - u is in (0, 1], so the logarithm is finite.
    let u1: f64 = 1.0 - random.random::<f64>();
    let u2: f64 = random.random();
    let standard = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let seconds = mean.as_secs_f64() + standard * std_dev.as_secs_f64();
    Duration::from_secs_f64(seconds.clamp(LATENCY_MIN.as_secs_f64(), LATENCY_MAX.as_secs_f64()))
}

/// A pause drawn from the Pareto distribution (by inverting its CDF), cut at [`PAUSE_MAX`].
fn pause(random: &mut StdRng) -> Duration {
    let u: f64 = 1.0 - random.random::<f64>();
    let seconds = PAUSE_MIN.as_secs_f64() / u.powf(1.0 / PAUSE_SHAPE);
    Duration::from_secs_f64(seconds.min(PAUSE_MAX.as_secs_f64()))
}

/// The mean time between two pauses of the `heavy-tail` model, for the lab's sender and for a
/// link alike: one every ten minutes, whatever the traffic.
pub const PAUSE_EVERY_MEAN: Duration = Duration::from_secs(600);

/// The most pauses a [`LinkLatency`] remembers for its report; a run long enough to have more
/// keeps counting them but lists only the first.
pub const PAUSES_RECORDED_MAX: usize = 10_000;

/// A link under one of the lab's latency models, in time passed in (never read from a clock):
/// every chunk gets the model's latency, and under `heavy-tail` the link stalls now and then
/// for a Pareto pause ([`PAUSE_MIN`] and up, shape [`PAUSE_SHAPE`]): a chunk that enters during
/// a pause leaves after its end. Pauses start at exponentially distributed intervals, so a
/// link carrying many messages a second pauses no more often than one carrying one.
#[derive(Clone, Debug)]
pub struct LinkLatency {
    kind: LatencyKind,
    random: StdRng,
    pause_every_mean: Duration,
    /// The current or next pause (heavy-tail only).
    pause: Option<std::ops::Range<Duration>>,
    /// Lengths of the pauses begun so far, the first [`PAUSES_RECORDED_MAX`] of them.
    pauses: Vec<Duration>,
    /// Whether `pause` has begun and is in `pauses` already.
    pause_recorded: bool,
}

impl LinkLatency {
    /// A link under `kind` from `start` on, pausing every `pause_every_mean` on average
    /// ([`PAUSE_EVERY_MEAN`] is the lab's), drawn from `seed`.
    pub fn new(kind: LatencyKind, seed: u64, pause_every_mean: Duration, start: Duration) -> Self {
        let mut link = LinkLatency {
            kind,
            random: StdRng::seed_from_u64(seed),
            pause_every_mean,
            pause: None,
            pauses: Vec::new(),
            pause_recorded: false,
        };
        if kind == LatencyKind::HeavyTail && !pause_every_mean.is_zero() {
            link.pause = Some(link.next_pause(start));
        }
        link
    }

    /// How long a chunk that enters the link at `at` takes to leave it. `at` never goes back.
    pub fn delay(&mut self, at: Duration) -> Duration {
        let latency = match self.kind {
            LatencyKind::Constant => CONSTANT_LATENCY,
            LatencyKind::Jitter => normal(&mut self.random, JITTER_MEAN, JITTER_STD_DEV),
            LatencyKind::HeavyTail => {
                normal(&mut self.random, HEAVY_TAIL_JITTER_MEAN, HEAVY_TAIL_JITTER_STD_DEV)
            }
        };
        while let Some(pause) = self.pause.clone() {
            if at < pause.start {
                break;
            }
            if !self.pause_recorded {
                self.pause_recorded = true;
                if self.pauses.len() < PAUSES_RECORDED_MAX {
                    self.pauses.push(pause.end - pause.start);
                }
            }
            if at < pause.end {
                return pause.end - at + latency;
            }
            self.pause = Some(self.next_pause(pause.end));
            self.pause_recorded = false;
        }
        latency
    }

    /// The lengths of the pauses begun by the last [`LinkLatency::delay`], in order.
    pub fn pauses(&self) -> &[Duration] {
        &self.pauses
    }

    /// The pause after one that ended at `after`: an exponential wait, then a Pareto length.
    fn next_pause(&mut self, after: Duration) -> std::ops::Range<Duration> {
        let u: f64 = 1.0 - self.random.random::<f64>();
        let start = after + self.pause_every_mean.mul_f64(-u.ln());
        self.pause_recorded = false;
        start..start + pause(&mut self.random)
    }
}
