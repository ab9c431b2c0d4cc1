//! The verdict on one message: a pure function of the plan and the random draws.

use std::time::Duration;

use rand::RngCore;

use crate::link_faults::{JitterDistribution, LinkFaults};
use crate::plan::FaultPlan;

/// What the transport does with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the message is sent at all; `false` means it is lost.
    pub deliver: bool,
    /// How long to hold the message before sending it.
    pub delay: Duration,
    /// Whether to send a second copy as well.
    pub duplicate: bool,
    /// Whether `delay` includes a reorder delay, so that later messages overtake this one.
    pub reordered: bool,
}

impl Verdict {
    /// The message is lost.
    pub const DROP: Verdict =
        Verdict { deliver: false, delay: Duration::ZERO, duplicate: false, reordered: false };
}

/// Decides the fate of one message on the link `from -> to`: a partitioned link drops it,
/// any other samples the link's faults. `plan` is expected to be valid.
///
/// Every call takes the same random draws in the same order, whatever the plan says, so
/// changing one setting, or partitioning a link and healing it, leaves the decisions for
/// the other settings and for later messages exactly as they would have been.
pub fn decide<R: RngCore + ?Sized>(plan: &FaultPlan, from: u64, to: u64, rng: &mut R) -> Verdict {
    let draws = Draws::take(rng);
    if plan.is_partitioned(from, to) {
        return Verdict::DROP;
    }
    sample(plan.link_faults(from, to), &draws)
}

/// The random numbers one decision uses, drawn up front in a fixed order.
struct Draws {
    drop: u64,
    jitter: [u64; 3],
    reorder: u64,
    reorder_delay: u64,
    duplicate: u64,
}

impl Draws {
    fn take<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        Draws {
            drop: rng.next_u64(),
            jitter: [rng.next_u64(), rng.next_u64(), rng.next_u64()],
            reorder: rng.next_u64(),
            reorder_delay: rng.next_u64(),
            duplicate: rng.next_u64(),
        }
    }
}

fn sample(faults: &LinkFaults, draws: &Draws) -> Verdict {
    if chance(draws.drop, faults.drop_probability) {
        return Verdict::DROP;
    }
    let jitter_ms = match faults.jitter_distribution {
        JitterDistribution::Uniform => pick(draws.jitter[0], faults.jitter_ms),
        JitterDistribution::Bell => {
            draws.jitter.iter().map(|&raw| pick(raw, faults.jitter_ms)).sum::<u64>() / 3
        }
    };
    let reordered = chance(draws.reorder, faults.reorder_probability);
    let reorder_delay_ms = if reordered {
        1 + pick(draws.reorder_delay, faults.reorder_delay_max_ms.saturating_sub(1))
    } else {
        0
    };
    let delay_ms = faults.delay_ms.saturating_add(jitter_ms).saturating_add(reorder_delay_ms);
    Verdict {
        deliver: true,
        delay: Duration::from_millis(delay_ms),
        duplicate: chance(draws.duplicate, faults.duplicate_probability),
        reordered,
    }
}

/// True with probability `probability`: the draw's top 53 bits as a fraction in `[0, 1)`.
fn chance(raw: u64, probability: f64) -> bool {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    ((raw >> 11) as f64 * SCALE) < probability
}

/// A value in `[0, max]`, by multiply-and-shift: one draw, never a retry, with a bias below
/// `max / 2^64` that no test or lab can see.
fn pick(raw: u64, max: u64) -> u64 {
    ((u128::from(raw) * (u128::from(max) + 1)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_and_pick_respect_their_bounds() {
        // Probability 0 never fires and 1 always does; picks stay within [0, max] at the
        // extremes of the raw draw.
        for raw in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(!chance(raw, 0.0));
            assert!(chance(raw, 1.0));
            assert_eq!(pick(raw, 0), 0);
            assert!(pick(raw, 10) <= 10);
        }
        assert_eq!(pick(u64::MAX, 10), 10);
        assert_eq!(pick(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn sample_stays_within_the_configured_delays() {
        // Over many fixed draws, a message that is not reordered is delayed by [delay,
        // delay + jitter], and a reordered one by 1 to reorder_delay_max_ms more.
        let faults = LinkFaults {
            delay_ms: 10,
            jitter_ms: 5,
            jitter_distribution: JitterDistribution::Bell,
            reorder_probability: 0.5,
            reorder_delay_max_ms: 100,
            ..LinkFaults::default()
        };
        let mut raw = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..1_000 {
            let mut next = || {
                raw = raw.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                raw
            };
            let draws = Draws {
                drop: next(),
                jitter: [next(), next(), next()],
                reorder: next(),
                reorder_delay: next(),
                duplicate: next(),
            };
            let verdict = sample(&faults, &draws);
            assert!(verdict.deliver);
            let delay_ms = verdict.delay.as_millis() as u64;
            if verdict.reordered {
                assert!((11..=115).contains(&delay_ms), "{verdict:?}");
            } else {
                assert!((10..=15).contains(&delay_ms), "{verdict:?}");
            }
        }
    }
}
