//! The faults injected on one directed link: drop, delay with jitter, duplicate, reorder.

use serde::{Deserialize, Serialize};

/// The longest any message may be held back, in total (base delay, jitter and reorder delay).
///
/// A minute is far past every Raft timeout, so a longer delay would behave like a drop while
/// still pinning the message in the transport's memory; use `drop_probability` instead.
pub const MAX_INJECTED_DELAY_MS: u64 = 60_000;

/// What happens to messages on one directed link. `Default` injects no fault at all.
///
/// Every field has a default, so a plan sent as JSON names only the faults it wants
/// (`{"drop_probability": 0.1}`); unknown fields are rejected so a typo is not silently a
/// fault-free link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkFaults {
    /// The chance that a message is lost, in `[0, 1]`.
    pub drop_probability: f64,
    /// The delay every delivered message gets before any jitter.
    pub delay_ms: u64,
    /// The largest extra delay added to `delay_ms`, drawn from `[0, jitter_ms]`.
    pub jitter_ms: u64,
    /// The shape of the jitter over `[0, jitter_ms]`.
    pub jitter_distribution: JitterDistribution,
    /// The chance that a delivered message is delivered twice, in `[0, 1]`.
    pub duplicate_probability: f64,
    /// The chance that a delivered message is held back so later messages overtake it, in
    /// `[0, 1]`.
    pub reorder_probability: f64,
    /// The largest extra delay of a reordered message, drawn from `[1, reorder_delay_max_ms]`.
    pub reorder_delay_max_ms: u64,
}

/// How the jitter is spread over `[0, jitter_ms]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterDistribution {
    /// Every value equally likely.
    #[default]
    Uniform,
    /// Bell-shaped around `jitter_ms / 2`: the mean of three uniform draws (Irwin–Hall), a
    /// cheap stand-in for a normal distribution that never leaves the range.
    Bell,
}

/// Why a [`LinkFaults`] was rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LinkFaultsError {
    #[error("{field} is {value}, outside [0, 1]")]
    ProbabilityOutOfRange { field: &'static str, value: f64 },
    #[error("a message could be delayed by up to {worst_case_ms} ms, above the limit of {max_ms} ms")]
    DelayTooLong { worst_case_ms: u64, max_ms: u64 },
    #[error(
        "reorder_probability is {reorder_probability} but reorder_delay_max_ms is 0, so no message could be overtaken"
    )]
    ReorderWithoutDelay { reorder_probability: f64 },
}

impl LinkFaults {
    /// Checks that every probability is in `[0, 1]` and the worst-case delay is within
    /// [`MAX_INJECTED_DELAY_MS`].
    pub fn validate(&self) -> Result<(), LinkFaultsError> {
        let probabilities = [
            ("drop_probability", self.drop_probability),
            ("duplicate_probability", self.duplicate_probability),
            ("reorder_probability", self.reorder_probability),
        ];
        for (field, value) in probabilities {
            // `contains` is false for NaN too.
            if !(0.0..=1.0).contains(&value) {
                return Err(LinkFaultsError::ProbabilityOutOfRange { field, value });
            }
        }
        let worst_case_ms = self.worst_case_delay_ms();
        if worst_case_ms > MAX_INJECTED_DELAY_MS {
            return Err(LinkFaultsError::DelayTooLong { worst_case_ms, max_ms: MAX_INJECTED_DELAY_MS });
        }
        if self.reorder_probability > 0.0 && self.reorder_delay_max_ms == 0 {
            return Err(LinkFaultsError::ReorderWithoutDelay {
                reorder_probability: self.reorder_probability,
            });
        }
        Ok(())
    }

    /// The longest this link can hold a message back.
    pub fn worst_case_delay_ms(&self) -> u64 {
        self.delay_ms.saturating_add(self.jitter_ms).saturating_add(self.reorder_delay_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(faults: LinkFaults, expected: Result<(), LinkFaultsError>) {
        assert_eq!(faults.validate(), expected, "{faults:?}");
    }

    #[test]
    fn validate_accepts_defaults_and_limits() {
        // The fault-free default and settings exactly at every limit are valid.
        check(LinkFaults::default(), Ok(()));
        check(
            LinkFaults {
                drop_probability: 1.0,
                duplicate_probability: 1.0,
                reorder_probability: 1.0,
                delay_ms: MAX_INJECTED_DELAY_MS - 2,
                jitter_ms: 1,
                reorder_delay_max_ms: 1,
                jitter_distribution: JitterDistribution::Bell,
            },
            Ok(()),
        );
    }

    #[test]
    fn validate_rejects_out_of_range_settings() {
        // Each invalid setting on its own is rejected with an error naming it.
        check(
            LinkFaults { drop_probability: 1.5, ..LinkFaults::default() },
            Err(LinkFaultsError::ProbabilityOutOfRange { field: "drop_probability", value: 1.5 }),
        );
        check(
            LinkFaults { duplicate_probability: -0.1, ..LinkFaults::default() },
            Err(LinkFaultsError::ProbabilityOutOfRange { field: "duplicate_probability", value: -0.1 }),
        );
        let nan = LinkFaults { reorder_probability: f64::NAN, ..LinkFaults::default() };
        assert!(matches!(
            nan.validate(),
            Err(LinkFaultsError::ProbabilityOutOfRange { field: "reorder_probability", .. })
        ));
        check(
            LinkFaults { delay_ms: MAX_INJECTED_DELAY_MS, jitter_ms: 1, ..LinkFaults::default() },
            Err(LinkFaultsError::DelayTooLong {
                worst_case_ms: MAX_INJECTED_DELAY_MS + 1,
                max_ms: MAX_INJECTED_DELAY_MS,
            }),
        );
        check(
            LinkFaults { delay_ms: u64::MAX, jitter_ms: u64::MAX, ..LinkFaults::default() },
            Err(LinkFaultsError::DelayTooLong { worst_case_ms: u64::MAX, max_ms: MAX_INJECTED_DELAY_MS }),
        );
        check(
            LinkFaults { reorder_probability: 0.5, ..LinkFaults::default() },
            Err(LinkFaultsError::ReorderWithoutDelay { reorder_probability: 0.5 }),
        );
    }

    #[test]
    fn json_names_only_the_faults_it_wants() {
        // A partial JSON object fills the rest with defaults; a misspelt field is an error.
        let faults: LinkFaults =
            serde_json::from_str(r#"{"drop_probability": 0.25, "jitter_distribution": "bell"}"#).unwrap();
        assert_eq!(
            faults,
            LinkFaults {
                drop_probability: 0.25,
                jitter_distribution: JitterDistribution::Bell,
                ..LinkFaults::default()
            }
        );
        assert!(serde_json::from_str::<LinkFaults>(r#"{"drop_probabilty": 0.25}"#).is_err());
    }
}
