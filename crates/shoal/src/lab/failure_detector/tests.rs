//! A tiny sweep and the relations its figures must keep whatever the models' numbers: a
//! longer timeout or a higher threshold never detects faster nor suspects more often, runs
//! are repeatable, and the latency models look as their documentation says.

use std::time::Duration;

use super::latency::{self, LatencyKind};
use super::*;

fn tiny_sweep(seed: u64) -> Vec<Outcome> {
    let mut settings: Vec<Setting> =
        [1.5, 2.0, 3.0, 5.0, 10.0].into_iter().map(Setting::fixed_timeout).collect();
    for pause in [Duration::ZERO, Duration::from_secs(1)] {
        settings.extend(
            [1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 16.0].into_iter().map(|threshold| Setting::phi(threshold, pause)),
        );
    }
    sweep(&SweepConfig { seed, virtual_hours: 20.0, crashes: 300, settings })
}

const CURVES: [&str; 3] = ["fixed timeout", "phi accrual", "phi, pause 1s"];

fn of<'a>(outcomes: &'a [Outcome], kind: LatencyKind, curve: &str) -> Vec<&'a Outcome> {
    outcomes.iter().filter(|outcome| outcome.latency == kind && outcome.setting.curve == curve).collect()
}

#[test]
fn stricter_settings_are_slower_and_quieter() {
    // Within one latency model and one detector kind (settings in increasing order), the
    // detection median, p99 and maximum never decrease, and false suspicions never increase:
    // every setting hears the same heartbeats and the same crashes.
    let outcomes = tiny_sweep(7);
    assert_eq!(outcomes.len(), 3 * 19);
    for kind in LatencyKind::ALL {
        for curve in CURVES {
            let outcomes_of_curve = of(&outcomes, kind, curve);
            assert!(!outcomes_of_curve.is_empty(), "{curve}");
            for pair in outcomes_of_curve.windows(2) {
                let (looser, stricter) = (pair[0], pair[1]);
                let context = format!("{kind:?} {} -> {}", looser.setting.label, stricter.setting.label);
                assert!(looser.detection_median <= stricter.detection_median, "{context}");
                assert!(looser.detection_p99 <= stricter.detection_p99, "{context}");
                assert!(looser.detection_max <= stricter.detection_max, "{context}");
                assert!(looser.false_suspicions >= stricter.false_suspicions, "{context}");
            }
        }
    }
}

#[test]
fn figures_match_the_models() {
    // Constant latency L: a fixed timeout T detects between T - 1 s + L and T + L after the
    // crash (the last heartbeat left up to a second before it), never suspects a living sender, and
    // neither does phi from threshold 3 up. Heavy tail: a 1.5 s timeout trips on pauses.
    let outcomes = tiny_sweep(3);
    for outcome in of(&outcomes, LatencyKind::Constant, "fixed timeout") {
        let DetectorConfig::FixedTimeout { timeout } = outcome.setting.config else { unreachable!() };
        let latency = latency::CONSTANT_LATENCY;
        assert!(outcome.detection_median > timeout + latency - Duration::from_secs(1), "{outcome:?}");
        assert!(outcome.detection_max <= timeout + latency, "{outcome:?}");
        assert_eq!(outcome.false_suspicions, 0, "{outcome:?}");
    }
    for outcome in of(&outcomes, LatencyKind::Constant, "phi accrual") {
        let DetectorConfig::PhiAccrual(phi) = &outcome.setting.config else { unreachable!() };
        if phi.threshold >= 3.0 {
            assert_eq!(outcome.false_suspicions, 0, "{outcome:?}");
        }
        assert_eq!(outcome.undetected, 0);
    }
    let heavy_tail_short = &of(&outcomes, LatencyKind::HeavyTail, "fixed timeout")[0];
    assert!(heavy_tail_short.false_suspicions > 0, "{heavy_tail_short:?}");
}

#[test]
fn the_same_seed_gives_the_same_figures() {
    assert_eq!(tiny_sweep(11), tiny_sweep(11));
    assert_ne!(tiny_sweep(11), tiny_sweep(12));
}

#[test]
fn the_choice_respects_the_budget() {
    // The chosen setting is a heavy-tail outcome within the budget, and no other such outcome
    // has fewer false suspicions; an impossible budget chooses nothing.
    let outcomes = tiny_sweep(5);
    let budget = Duration::from_secs(3);
    let chosen = choose(&outcomes, budget).expect("a setting within 3 s");
    assert_eq!(chosen.latency, LatencyKind::HeavyTail);
    assert!(chosen.detection_p99 <= budget);
    for outcome in outcomes.iter().filter(|outcome| outcome.latency == LatencyKind::HeavyTail) {
        if outcome.detection_p99 <= budget {
            assert!(outcome.false_suspicions >= chosen.false_suspicions, "{outcome:?}");
        }
    }
    assert_eq!(choose(&outcomes, Duration::from_millis(10)), None);
}

#[test]
fn latency_models_keep_their_bounds() {
    // Every heartbeat arrives after it is sent, within the latency bounds, in arrival order;
    // sends are at least an interval apart; only the heavy-tail model pauses.
    let length = Duration::from_secs(20_000);
    for kind in LatencyKind::ALL {
        let heartbeats = latency::heartbeats(kind, 1, length);
        assert!(heartbeats.windows(2).all(|pair| pair[0].arrived <= pair[1].arrived));
        for heartbeat in &heartbeats {
            let latency = heartbeat.arrived - heartbeat.sent;
            assert!((latency::LATENCY_MIN..=latency::LATENCY_MAX).contains(&latency), "{kind:?} {latency:?}");
        }
        let mut sent: Vec<Duration> = heartbeats.iter().map(|heartbeat| heartbeat.sent).collect();
        sent.sort_unstable();
        let longest_gap = sent.windows(2).map(|pair| pair[1] - pair[0]).max().expect("heartbeats");
        assert!(sent.windows(2).all(|pair| pair[1] - pair[0] >= latency::HEARTBEAT_INTERVAL));
        if kind == LatencyKind::HeavyTail {
            assert!(longest_gap >= latency::HEARTBEAT_INTERVAL + latency::PAUSE_MIN, "{longest_gap:?}");
        } else {
            assert_eq!(longest_gap, latency::HEARTBEAT_INTERVAL);
        }
    }
}

#[test]
fn the_plot_is_drawn_without_system_fonts() {
    // The PNG is written with the embedded font (a missing glyph or font would fail here).
    let outcomes = tiny_sweep(2);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("plot.png");
    plot::draw(&path, &outcomes, 20.0, choose(&outcomes, Duration::from_secs(3))).expect("a plot");
    let bytes = std::fs::read(&path).expect("the plot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn a_link_pauses_as_often_as_the_lab_sender_and_holds_what_enters_a_pause() {
    // Over 100 virtual hours of a chunk every 100 ms, the heavy-tail link begins about one
    // pause per ten minutes (600 expected), each at least PAUSE_MIN long; a chunk entering a
    // pause leaves at its end, so delays never fall below the jitter nor exceed the longest
    // pause plus the latency bound. The constant model is constant; the same seed, the same
    // delays.
    let step = Duration::from_millis(100);
    let mut link =
        latency::LinkLatency::new(LatencyKind::HeavyTail, 3, latency::PAUSE_EVERY_MEAN, Duration::ZERO);
    let mut again = link.clone();
    let mut held = 0;
    for tick in 0..(100 * 3600 * 10) {
        let at = step * tick;
        let delay = link.delay(at);
        assert_eq!(delay, again.delay(at));
        assert!(
            delay >= latency::LATENCY_MIN && delay <= latency::PAUSE_MAX + latency::LATENCY_MAX,
            "{delay:?}"
        );
        held += usize::from(delay > latency::LATENCY_MAX);
    }
    let pauses = link.pauses();
    assert!((500..=700).contains(&pauses.len()), "{} pauses", pauses.len());
    assert!(pauses.iter().all(|pause| *pause >= latency::PAUSE_MIN && *pause <= latency::PAUSE_MAX));
    assert!(held > 0);
    let mut constant =
        latency::LinkLatency::new(LatencyKind::Constant, 3, latency::PAUSE_EVERY_MEAN, Duration::ZERO);
    for tick in 0..1000 {
        assert_eq!(constant.delay(step * tick), latency::CONSTANT_LATENCY);
    }
    assert!(constant.pauses().is_empty());
}
