//! The detectors on hand-made heartbeat sequences: how suspicion grows with silence, what a
//! regular sender looks like, the window, out-of-order heartbeats and numerical edges.

use proptest::prelude::*;

use super::*;

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// A phi detector without an acceptable pause, so that phi is the bare normal tail.
fn phi_detector(threshold: f64, window: usize) -> Detector {
    Detector::new(DetectorConfig::PhiAccrual(PhiConfig {
        threshold,
        window,
        acceptable_pause: Duration::ZERO,
        ..PhiConfig::default()
    }))
}

/// A detector fed `count` heartbeats, one every `interval` seconds from 0; returns it and the
/// last arrival.
fn fed(mut detector: Detector, count: u32, interval: f64) -> (Detector, Duration) {
    let mut at = Duration::ZERO;
    for beat in 0..count {
        at = secs(f64::from(beat) * interval);
        detector.heartbeat(at);
    }
    (detector, at)
}

#[test]
fn phi_grows_with_silence() {
    // After a regular second-by-second sender, phi rises strictly as the silence lengthens,
    // crosses 8 within a few seconds, and is 0 before the first heartbeat.
    assert_eq!(phi_detector(8.0, 100).suspicion(secs(10.0)), 0.0);
    let (detector, last) = fed(phi_detector(8.0, 100), 200, 1.0);
    let silences = [0.0, 0.5, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 60.0];
    let phis: Vec<f64> = silences.iter().map(|silence| detector.suspicion(last + secs(*silence))).collect();
    for pair in phis.windows(2) {
        assert!(pair[0] < pair[1], "phi must grow with silence: {phis:?}");
    }
    // At exactly the mean interval, half the heartbeats are later still: phi = log10 2.
    assert!((phis[2] - 2f64.log10()).abs() < 1e-6, "{phis:?}");
    assert!(!detector.suspects(last + secs(1.2)));
    assert!(detector.suspects(last + secs(3.0)));
}

#[test]
fn a_regular_sender_is_not_suspected() {
    // A sender every second with up to ±50 ms of jitter (a fixed pattern) over 2,000
    // heartbeats: just before each arrives, the detector does not suspect it.
    let mut detector = phi_detector(8.0, 100);
    let jitter_ms = [0, 30, -20, 50, -50, 10, -40, 20];
    for beat in 0..2000u32 {
        let at = Duration::from_millis(
            u64::from(beat) * 1000 + (100 + jitter_ms[beat as usize % jitter_ms.len()]) as u64,
        );
        assert!(!detector.suspects(at), "suspected at heartbeat {beat}, phi {}", detector.suspicion(at));
        detector.heartbeat(at);
    }
}

#[test]
fn fixed_timeout() {
    // Suspected exactly once the timeout has elapsed, never before; suspicion is the elapsed
    // fraction of the timeout; a heartbeat clears the suspicion.
    let mut detector = Detector::new(DetectorConfig::FixedTimeout { timeout: secs(3.0) });
    assert!(!detector.suspects(secs(100.0)));
    detector.heartbeat(secs(10.0));
    assert!(!detector.suspects(secs(13.0) - Duration::from_nanos(1)));
    assert!(detector.suspects(secs(13.0)));
    assert!((detector.suspicion(secs(11.5)) - 0.5).abs() < 1e-9);
    assert_eq!(detector.suspicion_deadline(), Some(secs(13.0)));
    detector.heartbeat(secs(20.0));
    assert!(!detector.suspects(secs(21.0)));
    assert_eq!(detector.last_heartbeat(), Some(secs(20.0)));
}

#[test]
fn the_window_forgets_old_intervals() {
    // With a window of 10: after 10 one-second intervals, a 5 s silence is damning; after 10
    // more five-second intervals have pushed the old ones (and the seeds) out, a 5 s
    // silence is exactly average (phi = log10 2), and the deviation is back to its floor.
    let (mut detector, mut last) = fed(phi_detector(8.0, 10), 11, 1.0);
    assert!(detector.suspects(last + secs(5.0)));
    for _ in 0..10 {
        last += secs(5.0);
        detector.heartbeat(last);
    }
    assert!((detector.suspicion(last + secs(5.0)) - 2f64.log10()).abs() < 1e-6);
    // One more interval of 1 s must evict exactly one 5 s sample: mean (9·5 + 1)/10 = 4.6 s.
    last += secs(1.0);
    detector.heartbeat(last);
    assert!((detector.intervals.mean_secs() - 4.6).abs() < 1e-9);
    assert_eq!(detector.intervals.samples.len(), 10);
}

#[test]
fn heartbeats_out_of_order_are_ignored() {
    // A heartbeat older than (or as old as) the last one changes nothing: same last
    // heartbeat, same suspicion as a detector that never saw it.
    let (mut detector, last) = fed(phi_detector(8.0, 100), 20, 1.0);
    let reference = detector.clone();
    detector.heartbeat(last - secs(0.5));
    detector.heartbeat(last);
    assert_eq!(detector.last_heartbeat(), Some(last));
    for silence in [0.5, 1.5, 3.0] {
        assert_eq!(detector.suspicion(last + secs(silence)), reference.suspicion(last + secs(silence)));
    }
}

#[test]
fn phi_stays_finite_at_the_edges() {
    // Enormous silences, a perfectly regular sender with no deviation floor, a query before
    // the last heartbeat and intervals of centuries: phi is finite, not NaN, and ordered.
    let config =
        PhiConfig { min_std_dev: Duration::ZERO, acceptable_pause: Duration::ZERO, ..PhiConfig::default() };
    let (detector, last) = fed(Detector::new(DetectorConfig::PhiAccrual(config)), 300, 1.0);
    for now in [Duration::ZERO, last, last + secs(1.0), last + secs(1.001), last + secs(1e9), Duration::MAX] {
        let phi = detector.suspicion(now);
        assert!(phi.is_finite() && phi >= 0.0, "phi {phi} at {now:?}");
    }
    assert!(detector.suspects(Duration::MAX));
    assert!(detector.suspicion(last + secs(1e9)) >= detector.suspicion(last + secs(2.0)));

    let mut centuries = phi_detector(8.0, 3);
    centuries.heartbeat(Duration::ZERO);
    centuries.heartbeat(Duration::from_secs(u64::MAX / 4));
    centuries.heartbeat(Duration::MAX);
    let phi = centuries.suspicion(Duration::MAX);
    assert!(phi.is_finite(), "{phi}");
    assert_eq!(centuries.suspicion_deadline(), None);
}

#[test]
fn the_deadline_is_when_suspicion_starts() {
    // suspicion_deadline is the first nanosecond at which `suspects` holds, for either kind.
    for config in [DetectorConfig::default(), DetectorConfig::FixedTimeout { timeout: secs(2.5) }] {
        let (detector, last) = fed(Detector::new(config), 50, 1.0);
        let deadline = detector.suspicion_deadline().expect("a deadline");
        assert!(deadline > last);
        assert!(detector.suspects(deadline));
        assert!(!detector.suspects(deadline - Duration::from_nanos(1)));
    }
    assert_eq!(Detector::new(DetectorConfig::default()).suspicion_deadline(), None);
}

#[test]
fn the_default_tolerates_a_second_of_pause() {
    // shoal's default (the lab's choice): a sender beating every half second is not suspected
    // 1.5 s after its last heartbeat (a one-second pause on top of the interval), and is 2 s
    // after it (phi 3 is about three deviations past that).
    let (detector, last) = fed(Detector::new(DetectorConfig::default()), 200, 0.5);
    assert!(!detector.suspects(last + secs(1.5)));
    assert!(detector.suspects(last + secs(2.0)));
}

#[test]
fn configurations_are_validated() {
    assert_eq!(DetectorConfig::default().validate(), Ok(()));
    let phi = |change: fn(&mut PhiConfig)| {
        let mut config = PhiConfig::default();
        change(&mut config);
        DetectorConfig::PhiAccrual(config).validate()
    };
    assert_eq!(phi(|config| config.threshold = f64::NAN).map_err(|_| ()), Err(()));
    assert_eq!(phi(|config| config.threshold = 0.0).map_err(|_| ()), Err(()));
    assert_eq!(
        phi(|config| config.window = 0),
        Err(InvalidDetectorConfig::Window { window: 0, max: WINDOW_MAX })
    );
    assert_eq!(
        phi(|config| config.first_interval = Duration::ZERO),
        Err(InvalidDetectorConfig::ZeroFirstInterval)
    );
    assert_eq!(
        DetectorConfig::FixedTimeout { timeout: Duration::ZERO }.validate(),
        Err(InvalidDetectorConfig::ZeroTimeout)
    );
}

proptest! {
    /// Whatever the heartbeats, suspicion never decreases with silence and is never NaN:
    /// the lab and the deadline search rely on it.
    #[test]
    fn suspicion_is_monotonic_in_silence(
        intervals_ms in proptest::collection::vec(1u64..20_000, 1..50),
        window in 1usize..20,
        silences_ms in proptest::collection::vec(0u64..100_000_000, 2..10),
    ) {
        let mut detector = phi_detector(8.0, window);
        let mut at = Duration::ZERO;
        detector.heartbeat(at);
        for interval in intervals_ms {
            at += Duration::from_millis(interval);
            detector.heartbeat(at);
        }
        let mut silences = silences_ms;
        silences.sort_unstable();
        let phis: Vec<f64> =
            silences.iter().map(|silence| detector.suspicion(at + Duration::from_millis(*silence))).collect();
        for pair in phis.windows(2) {
            prop_assert!(pair[0] <= pair[1], "{:?}", phis);
        }
        prop_assert!(phis.iter().all(|phi| phi.is_finite()));
    }
}
