//! Failure detectors: from the arrival times of a sender's heartbeats, how suspicious its
//! silence is now, and whether to suspect it is down.
//!
//! Two kinds, so that they can be compared (`shoal lab failure-detector` does):
//! - a fixed timeout, as Kubernetes' node-monitor-grace-period;
//! - Hayashibara et al.'s phi accrual detector ("The φ Accrual Failure Detector", 2004), as
//!   Akka and Cassandra implement it: the inter-arrival times of the last heartbeats are
//!   taken as normally distributed, and phi is -log10 of the probability that a heartbeat
//!   this late is still coming. A sender that usually beats like clockwork is suspected soon
//!   after it stops; one whose heartbeats wander is given more slack, by itself.
//!
//! Pure: nothing here reads a clock. Time is a `Duration` since an epoch the caller picks
//! (the node-lifecycle controller: a monotonic instant minus its start; the lab: virtual time).
//!
//! Numerical care: the normal distribution's tail is computed with the logistic approximation
//! Akka uses, in a form that cannot overflow to infinity or produce NaN (see [`phi`]), and the
//! window's sums are kept in integer nanoseconds, so that millions of heartbeats (the lab
//! replays hundreds of hours of them) do not accumulate rounding drift.

use std::collections::VecDeque;
use std::time::Duration;

/// How a detector decides that a heartbeat sender is down.
#[derive(Clone, Debug, PartialEq)]
pub enum DetectorConfig {
    /// Suspect once no heartbeat arrived for `timeout`.
    FixedTimeout { timeout: Duration },
    /// Hayashibara et al.'s phi accrual detector over a window of inter-arrival times
    /// (normal approximation, as Akka and Cassandra implement it).
    PhiAccrual(PhiConfig),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PhiConfig {
    /// Suspect once phi reaches this (phi = -log10 of the probability that a heartbeat this
    /// late is still coming).
    pub threshold: f64,
    /// Inter-arrival samples kept (oldest dropped).
    pub window: usize,
    /// Floor of the standard deviation, so that a very regular sender is not suspected at
    /// the first small delay.
    pub min_std_dev: Duration,
    /// Added to the mean: a pause this long is tolerated outright (GC pauses, slow disks).
    pub acceptable_pause: Duration,
    /// The interval assumed before real samples exist (seeds the window).
    pub first_interval: Duration,
}

/// How often shoal's agents renew their node Lease: the heartbeat interval the defaults
/// are tuned for.
pub const AGENT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

impl Default for PhiConfig {
    /// Akka's window (100) and deviation floor (100 ms), with the threshold and acceptable
    /// pause that `shoal lab failure-detector` chose for half-second heartbeats: under its
    /// heavy-tail model (pauses of half a second and up every ten minutes), the fewest false
    /// suspicions (1.3 an hour, against 1.9 for the best fixed timeout) among the settings
    /// that detect 99 % of crashes within 2 s (median 1.6 s); under its jitter model, none.
    /// Without the pause, every threshold up to 16 suspects most pauses (3 to 6 an hour).
    fn default() -> Self {
        PhiConfig {
            threshold: 3.0,
            window: 100,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::from_secs(1),
            first_interval: AGENT_HEARTBEAT_INTERVAL,
        }
    }
}

impl Default for DetectorConfig {
    /// shoal's default, chosen by `shoal lab failure-detector` (README, "Failure detection").
    fn default() -> Self {
        DetectorConfig::PhiAccrual(PhiConfig::default())
    }
}

/// A configuration that makes no sense, as [`DetectorConfig::validate`] finds it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvalidDetectorConfig {
    #[error("the timeout must be longer than zero")]
    ZeroTimeout,
    #[error("the phi threshold must be a positive finite number, not {threshold}")]
    Threshold { threshold: f64 },
    #[error("the window must hold between 1 and {max} samples, not {window}")]
    Window { window: usize, max: usize },
    #[error("the first interval must be longer than zero")]
    ZeroFirstInterval,
}

/// The largest window accepted: more samples than a day of one-second heartbeats adapt too
/// slowly to be useful, and the window is memory held per node.
pub const WINDOW_MAX: usize = 100_000;

/// The standard deviation never goes below this, even with `min_std_dev` zero, so that phi
/// never divides by zero.
const STD_DEV_FLOOR: Duration = Duration::from_micros(1);

/// How far past the last heartbeat [`Detector::suspicion_deadline`] looks: a detector that
/// would not suspect within this long is taken as never suspecting.
pub const SUSPICION_HORIZON: Duration = Duration::from_secs(365 * 24 * 3600);

impl DetectorConfig {
    /// Whether the configuration can be used as given. [`Detector::new`] accepts any
    /// configuration (it clamps what it must), so this is for the edges that read one from
    /// users: flags and files.
    pub fn validate(&self) -> Result<(), InvalidDetectorConfig> {
        match self {
            DetectorConfig::FixedTimeout { timeout } if timeout.is_zero() => {
                Err(InvalidDetectorConfig::ZeroTimeout)
            }
            DetectorConfig::FixedTimeout { .. } => Ok(()),
            DetectorConfig::PhiAccrual(phi) => {
                if !(phi.threshold.is_finite() && phi.threshold > 0.0) {
                    return Err(InvalidDetectorConfig::Threshold { threshold: phi.threshold });
                }
                if !(1..=WINDOW_MAX).contains(&phi.window) {
                    return Err(InvalidDetectorConfig::Window { window: phi.window, max: WINDOW_MAX });
                }
                if phi.first_interval.is_zero() {
                    return Err(InvalidDetectorConfig::ZeroFirstInterval);
                }
                Ok(())
            }
        }
    }
}

/// One sender's failure detector: feed it heartbeats, ask it about silence.
#[derive(Clone, Debug)]
pub struct Detector {
    config: DetectorConfig,
    last_heartbeat: Option<Duration>,
    intervals: Intervals,
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Self {
        let intervals = match &config {
            DetectorConfig::FixedTimeout { .. } => Intervals::new(1),
            DetectorConfig::PhiAccrual(phi) => Intervals::new(phi.window.clamp(1, WINDOW_MAX)),
        };
        Detector { config, last_heartbeat: None, intervals }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Records a heartbeat that arrived at `at` (monotonic; an earlier `at` than the last is
    /// ignored, and so is one at the same instant, which would add a zero interval).
    pub fn heartbeat(&mut self, at: Duration) {
        match self.last_heartbeat {
            None => {
                if let DetectorConfig::PhiAccrual(phi) = &self.config {
                    // As Akka: two samples around the assumed interval, a quarter of it
                    // apart either way, so that the first real silences are judged against
                    // something plausible rather than an empty window.
                    let first_interval = phi.first_interval.max(STD_DEV_FLOOR);
                    let spread = first_interval / 4;
                    self.intervals.push(first_interval - spread);
                    self.intervals.push(first_interval + spread);
                }
                self.last_heartbeat = Some(at);
            }
            Some(last) if at <= last => {}
            Some(last) => {
                if matches!(self.config, DetectorConfig::PhiAccrual(_)) {
                    self.intervals.push(at - last);
                }
                self.last_heartbeat = Some(at);
            }
        }
    }

    /// How suspicious silence is at `now`: phi for PhiAccrual; elapsed / timeout for
    /// FixedTimeout. 0 before the first heartbeat. Always finite and not negative.
    pub fn suspicion(&self, now: Duration) -> f64 {
        let Some(last) = self.last_heartbeat else {
            return 0.0;
        };
        let elapsed = now.saturating_sub(last);
        match &self.config {
            DetectorConfig::FixedTimeout { timeout } => {
                elapsed.as_secs_f64() / timeout.max(&STD_DEV_FLOOR).as_secs_f64()
            }
            DetectorConfig::PhiAccrual(phi_config) => {
                let mean = self.intervals.mean_secs() + phi_config.acceptable_pause.as_secs_f64();
                let std_dev = self
                    .intervals
                    .std_dev_secs()
                    .max(phi_config.min_std_dev.max(STD_DEV_FLOOR).as_secs_f64());
                phi(elapsed.as_secs_f64(), mean, std_dev)
            }
        }
    }

    /// Whether the sender is suspected at `now` (false before the first heartbeat).
    pub fn suspects(&self, now: Duration) -> bool {
        let Some(last) = self.last_heartbeat else {
            return false;
        };
        match &self.config {
            // Compared in integer time, so that the deadline is exact.
            DetectorConfig::FixedTimeout { timeout } => now.saturating_sub(last) >= *timeout,
            DetectorConfig::PhiAccrual(phi) => self.suspicion(now) >= phi.threshold,
        }
    }

    /// The last heartbeat's arrival, if any.
    pub fn last_heartbeat(&self) -> Option<Duration> {
        self.last_heartbeat
    }

    /// The earliest instant at which the sender is suspected if no heartbeat arrives before
    /// it: when to look again. None before the first heartbeat, and when that would be more
    /// than [`SUSPICION_HORIZON`] after the last one.
    ///
    /// Suspicion only grows with silence, so this is a binary search over `suspects`, exact
    /// to the nanosecond and consistent with it by construction.
    pub fn suspicion_deadline(&self) -> Option<Duration> {
        let last = self.last_heartbeat?;
        let mut low = last; // not suspected here (unless everything is, see below)
        let mut high = last.checked_add(SUSPICION_HORIZON)?;
        if !self.suspects(high) {
            return None;
        }
        if self.suspects(low) {
            return Some(low);
        }
        while high - low > Duration::from_nanos(1) {
            let middle = low + (high - low) / 2;
            if self.suspects(middle) {
                high = middle;
            } else {
                low = middle;
            }
        }
        Some(high)
    }
}

/// phi for a silence of `elapsed` seconds when inter-arrival times have this mean and
/// standard deviation (both in seconds, the deviation above zero).
///
/// The probability that a heartbeat comes later still is 1 - F(elapsed), with F the normal
/// CDF, which Akka approximates with a logistic curve: 1 - F = 1 / (1 + e^z) with
/// z = y (1.5976 + 0.070566 y²) and y the standardized elapsed time. Then
/// phi = -log10(1 - F) = log10(1 + e^z), a softplus, computed so that e^z never overflows:
/// for z > 0 it is z + ln(1 + e^-z). phi thus grows about linearly in z instead of becoming
/// infinite once 1 - F underflows, which keeps `suspects` monotonic and NaN out.
fn phi(elapsed: f64, mean: f64, std_dev: f64) -> f64 {
    debug_assert!(std_dev > 0.0);
    // A standardized silence beyond a million deviations is certain death either way; the
    // clamp keeps y³ finite.
    const Y_LIMIT: f64 = 1e6;
    let y = ((elapsed - mean) / std_dev).clamp(-Y_LIMIT, Y_LIMIT);
    let z = y * (1.5976 + 0.070566 * y * y);
    let softplus = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
    softplus / std::f64::consts::LN_10
}

/// Longer intervals (about 208 days) are counted as this long, so that the sum of squares of a
/// full window fits in u128 (2^17 samples of at most 2^108 each); no real detector cares.
const INTERVAL_NANOS_MAX: u64 = 1 << 54;
const _: () = assert!((WINDOW_MAX as u128) < (1 << 17));

/// The window of inter-arrival times, with running sums in integer nanoseconds.
#[derive(Clone, Debug)]
struct Intervals {
    capacity: usize,
    samples: VecDeque<u64>,
    sum: u128,
    sum_of_squares: u128,
}

impl Intervals {
    fn new(capacity: usize) -> Self {
        assert!(capacity >= 1);
        Intervals { capacity, samples: VecDeque::with_capacity(capacity), sum: 0, sum_of_squares: 0 }
    }

    fn push(&mut self, interval: Duration) {
        let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX).min(INTERVAL_NANOS_MAX);
        if self.samples.len() == self.capacity {
            let oldest = self.samples.pop_front().expect("a full window is not empty");
            self.sum -= u128::from(oldest);
            self.sum_of_squares -= u128::from(oldest) * u128::from(oldest);
        }
        self.samples.push_back(nanos);
        self.sum += u128::from(nanos);
        self.sum_of_squares += u128::from(nanos) * u128::from(nanos);
    }

    fn mean_secs(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.sum as f64 / self.samples.len() as f64 / 1e9
    }

    /// The population standard deviation, as Akka's.
    fn std_dev_secs(&self) -> f64 {
        let count = self.samples.len() as u128;
        if count == 0 {
            return 0.0;
        }
        // n·Σx² - (Σx)² is exact in integers and never negative (Cauchy–Schwarz), but may
        // exceed u128 for huge intervals: then fall back to floating point.
        let variance_times_count_squared = count
            .checked_mul(self.sum_of_squares)
            .and_then(|scaled| self.sum.checked_mul(self.sum).map(|square| scaled.saturating_sub(square)));
        let variance_nanos = match variance_times_count_squared {
            Some(scaled) => scaled as f64 / (count * count) as f64,
            None => {
                let mean = self.sum as f64 / count as f64;
                (self.sum_of_squares as f64 / count as f64 - mean * mean).max(0.0)
            }
        };
        variance_nanos.sqrt() / 1e9
    }
}

#[cfg(test)]
mod tests;
