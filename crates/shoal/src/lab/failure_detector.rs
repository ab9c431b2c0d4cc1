//! `shoal lab failure-detector`: how fast each failure detector notices a crash, and how
//! often it suspects a sender that is alive, so that shoal's default is a measured choice.
//!
//! A sender beats every half second (as agents renew their Lease) under one of three latency
//! models (`latency.rs`). Each detector setting (fixed timeouts, phi accrual thresholds) hears
//! the same heartbeats:
//! - *false suspicions*: over many hours of a living sender, how often the detector turns to
//!   suspecting it (a transition, not the time spent suspecting);
//! - *detection time*: from a crash at a known moment to the detector's suspicion, over many
//!   crashes; heartbeats sent before the crash still arrive.
//!
//! Hours of heartbeats cannot be waited for, and need not be: the detectors are pure, so the
//! sweep replays the seeded models in *virtual time* (`sweep`), in seconds. Each crash is a
//! fork of the living sender's detector at the crash moment, so that crashes do not disturb
//! the false-suspicion count. A short *real* run (`real.rs`) then shows the figures hold with
//! a real process sending real datagrams and killed with SIGKILL.
//!
//! The choice (`choose`): under the heavy-tail model, among the settings whose 99th
//! percentile of detection time is within the budget, the fewest false suspicions per hour;
//! ties go to the faster median detection.

pub mod latency;
mod plot;
mod real;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_controllers::failure_detector::{Detector, DetectorConfig, PhiConfig, SUSPICION_HORIZON};

pub use latency::LatencyKind;
pub use real::{SenderArgs, run_sender};

#[derive(Args, Clone, Debug)]
pub struct FailureDetectorArgs {
    /// Seed of the latency models and the crash moments: the same seed, the same figures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Hours of heartbeats of a living sender replayed in virtual time, per latency model.
    #[arg(long, default_value_t = 300.0)]
    pub virtual_hours: f64,
    /// Crashes per latency model, at random moments of the virtual run.
    #[arg(long, default_value_t = 2000)]
    pub crashes: usize,
    /// Fixed timeouts to measure, in seconds (40 s is Kubernetes' old node-monitor-grace-period).
    #[arg(long, value_delimiter = ',', default_value = "1,1.5,2,3,5,10,40")]
    pub timeouts: Vec<f64>,
    /// Phi accrual thresholds to measure (the other phi parameters are shoal's defaults).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,5,8,12,16")]
    pub thresholds: Vec<f64>,
    /// Phi's acceptable pauses to measure, in seconds: one curve of thresholds each.
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,1")]
    pub acceptable_pauses: Vec<f64>,
    /// The choice's budget: the 99th percentile of detection time under the heavy-tail model
    /// may not exceed this many seconds (2 s leaves a node's pods a 1 s toleration and their
    /// replacement within issue 5's 3 s from a node's death to its pods running elsewhere).
    #[arg(long, default_value_t = 2.0)]
    pub detection_budget: f64,
    /// Length of the real run with a real sender process, in seconds (0: no real run). The
    /// sender is killed halfway.
    #[arg(long, default_value_t = 20)]
    pub real_seconds: u64,
    /// The latency model of the real run's sender.
    #[arg(long, value_enum, default_value = "heavy-tail")]
    pub real_latency: LatencyKind,
    /// Directory for the CSV files and the plot.
    #[arg(long, default_value = "/var/tmp/shoal-lab-failure-detector")]
    pub out: PathBuf,
}

/// The most virtual hours a run may ask for: about 40 s of sweep on a slow machine.
pub const VIRTUAL_HOURS_MAX: f64 = 10_000.0;
/// The most crashes per latency model.
pub const CRASHES_MAX: usize = 100_000;
/// The most settings of each kind.
pub const SETTINGS_MAX: usize = 50;
/// The longest real run.
pub const REAL_SECONDS_MAX: u64 = 600;
/// The shortest real run: the sender needs a few heartbeats before its crash.
pub const REAL_SECONDS_MIN: u64 = 6;
/// Heartbeats before any measurement, so that phi's window holds real samples.
pub const WARMUP: Duration = Duration::from_secs(300);

/// One detector configuration of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// The detector kind and fixed parameters: one curve of the plot each (`fixed timeout`,
    /// `phi accrual`, `phi, pause 1s`).
    pub curve: String,
    /// What varies along the curve: `3s` for a timeout, `8` for a threshold.
    pub label: String,
    pub config: DetectorConfig,
}

impl Setting {
    pub fn fixed_timeout(seconds: f64) -> Setting {
        Setting {
            curve: "fixed timeout".to_owned(),
            label: format!("{seconds}s"),
            config: DetectorConfig::FixedTimeout { timeout: Duration::from_secs_f64(seconds) },
        }
    }

    /// Phi accrual with shoal's default parameters but `threshold` and `acceptable_pause`.
    pub fn phi(threshold: f64, acceptable_pause: Duration) -> Setting {
        let curve = if acceptable_pause.is_zero() {
            "phi accrual".to_owned()
        } else {
            format!("phi, pause {}s", acceptable_pause.as_secs_f64())
        };
        Setting {
            curve,
            label: format!("{threshold}"),
            config: DetectorConfig::PhiAccrual(PhiConfig {
                threshold,
                acceptable_pause,
                ..PhiConfig::default()
            }),
        }
    }
}

/// What one sweep replays.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    pub seed: u64,
    pub virtual_hours: f64,
    pub crashes: usize,
    pub settings: Vec<Setting>,
}

/// One setting's figures under one latency model.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub latency: LatencyKind,
    pub setting: Setting,
    pub detection_median: Duration,
    pub detection_p99: Duration,
    pub detection_max: Duration,
    /// Crashes not suspected within [`SUSPICION_HORIZON`] (counted as that long).
    pub undetected: usize,
    pub false_suspicions: u64,
    pub false_suspicions_per_hour: f64,
}

pub async fn run(args: FailureDetectorArgs) -> anyhow::Result<()> {
    let settings = settings(&args)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let config =
        SweepConfig { seed: args.seed, virtual_hours: args.virtual_hours, crashes: args.crashes, settings };
    println!(
        "Virtual time: {} h of heartbeats ({} s apart) and {} crashes per latency model, seed {}; the \
         detectors are pure, so this replays the seeded models instead of waiting.",
        args.virtual_hours,
        latency::HEARTBEAT_INTERVAL.as_secs_f64(),
        args.crashes,
        args.seed
    );
    let started = std::time::Instant::now();
    let outcomes = tokio::task::spawn_blocking(move || sweep(&config)).await?;
    println!("(swept in {:.1} s of real time)\n", started.elapsed().as_secs_f64());
    print!("{}", table(&outcomes));
    let budget = Duration::from_secs_f64(args.detection_budget);
    let chosen = choose(&outcomes, budget);
    match chosen {
        Some(chosen) => println!(
            "\nChosen: {} {} (fewest false suspicions per hour under the heavy-tail model among the \
             settings whose p99 detection time there is at most {:.1} s; ties to the faster median).",
            chosen.setting.curve,
            chosen.setting.label,
            budget.as_secs_f64()
        ),
        None => println!("\nNo setting detects within {:.1} s at the 99th percentile.", budget.as_secs_f64()),
    }
    let default = DetectorConfig::default();
    println!("shoal's default (DetectorConfig::default()): {default:?}");

    let csv_path = args.out.join("sweep.csv");
    std::fs::write(&csv_path, csv(&outcomes)).with_context(|| format!("writing {}", csv_path.display()))?;
    let png_path = args.out.join("failure-detector.png");
    plot::draw(&png_path, &outcomes, args.virtual_hours, chosen)?;
    println!("Wrote {} and {}", csv_path.display(), png_path.display());

    if args.real_seconds > 0 {
        let real_settings = swept_settings(&outcomes);
        real::run(&args, &real_settings).await?;
    }
    Ok(())
}

/// The real run measures every swept setting: they all hear the same datagrams.
fn swept_settings(outcomes: &[Outcome]) -> Vec<Setting> {
    let mut settings: Vec<Setting> = Vec::new();
    for outcome in outcomes {
        if !settings.contains(&outcome.setting) {
            settings.push(outcome.setting.clone());
        }
    }
    settings
}

/// The settings the flags ask for, after checking every bound.
fn settings(args: &FailureDetectorArgs) -> anyhow::Result<Vec<Setting>> {
    if !(args.virtual_hours > 0.0 && args.virtual_hours <= VIRTUAL_HOURS_MAX) {
        bail!("--virtual-hours must be above 0 and at most {VIRTUAL_HOURS_MAX}");
    }
    if !(1..=CRASHES_MAX).contains(&args.crashes) {
        bail!("--crashes must be between 1 and {CRASHES_MAX}");
    }
    if args.timeouts.len() > SETTINGS_MAX || args.thresholds.len() > SETTINGS_MAX {
        bail!("at most {SETTINGS_MAX} timeouts and {SETTINGS_MAX} thresholds");
    }
    if args.real_seconds != 0 && !(REAL_SECONDS_MIN..=REAL_SECONDS_MAX).contains(&args.real_seconds) {
        bail!("--real-seconds must be 0 or between {REAL_SECONDS_MIN} and {REAL_SECONDS_MAX}");
    }
    if !(args.detection_budget.is_finite() && args.detection_budget > 0.0) {
        bail!("--detection-budget must be a positive number of seconds");
    }
    let mut settings = Vec::new();
    for &seconds in &args.timeouts {
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
            bail!("a timeout must be above 0 s and at most an hour, not {seconds}");
        }
        settings.push(Setting::fixed_timeout(seconds));
    }
    if args.acceptable_pauses.len() > SETTINGS_MAX {
        bail!("at most {SETTINGS_MAX} acceptable pauses");
    }
    for &pause in &args.acceptable_pauses {
        if !(pause.is_finite() && (0.0..=3600.0).contains(&pause)) {
            bail!("an acceptable pause must be between 0 s and an hour, not {pause}");
        }
        for &threshold in &args.thresholds {
            let setting = Setting::phi(threshold, Duration::from_secs_f64(pause));
            setting.config.validate().with_context(|| format!("threshold {threshold}"))?;
            settings.push(setting);
        }
    }
    Ok(settings)
}

/// Every setting under every latency model, in virtual time.
pub fn sweep(config: &SweepConfig) -> Vec<Outcome> {
    let measured = Duration::from_secs_f64(config.virtual_hours * 3600.0);
    // Past the measured period, enough heartbeats for every crash's in-flight ones to land.
    let length = WARMUP + measured + latency::LATENCY_MAX + latency::HEARTBEAT_INTERVAL;
    let mut crash_random = StdRng::seed_from_u64(config.seed);
    let mut crashes: Vec<Duration> =
        (0..config.crashes).map(|_| WARMUP + measured.mul_f64(crash_random.random::<f64>())).collect();
    crashes.sort_unstable();
    let mut outcomes = Vec::new();
    for (index, kind) in LatencyKind::ALL.into_iter().enumerate() {
        let model_seed = config.seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let heartbeats = latency::heartbeats(kind, model_seed, length);
        for setting in &config.settings {
            let replay = replay(&setting.config, &heartbeats, &crashes, WARMUP..WARMUP + measured);
            outcomes.push(outcome(kind, setting, replay, config.virtual_hours));
        }
    }
    outcomes
}

/// What one detector made of one heartbeat sequence.
struct Replay {
    detections: Vec<Duration>,
    undetected: usize,
    false_suspicions: u64,
}

/// Feeds `heartbeats` (ordered by arrival) to a detector of `config`, counting its turns to
/// suspicion whose end falls in `measured`, and at each of `crashes` (sorted) forks it to
/// find when it would suspect a sender that crashed then.
fn replay(
    config: &DetectorConfig,
    heartbeats: &[latency::Heartbeat],
    crashes: &[Duration],
    measured: std::ops::Range<Duration>,
) -> Replay {
    let mut detector = Detector::new(config.clone());
    let mut replay =
        Replay { detections: Vec::with_capacity(crashes.len()), undetected: 0, false_suspicions: 0 };
    let mut next_crash = crashes.iter().peekable();
    for (position, heartbeat) in heartbeats.iter().enumerate() {
        while let Some(&crash) = next_crash.next_if(|crash| **crash < heartbeat.arrived) {
            let mut crashed = detector.clone();
            // Heartbeats sent before the crash and still on their way arrive all the same.
            let in_flight = heartbeats[position..]
                .iter()
                .take_while(|later| later.arrived <= crash + latency::LATENCY_MAX)
                .filter(|later| later.sent < crash);
            for later in in_flight {
                crashed.heartbeat(later.arrived);
            }
            match crashed.suspicion_deadline() {
                // Already suspected at the crash (a false suspicion in progress): detected at once.
                Some(deadline) => replay.detections.push(deadline.saturating_sub(crash)),
                None => {
                    replay.undetected += 1;
                    replay.detections.push(SUSPICION_HORIZON);
                }
            }
        }
        // Suspicion only grows with silence, so the sender was suspected at some moment of
        // this silence if and only if it is suspected when the silence ends.
        if measured.contains(&heartbeat.arrived)
            && detector.last_heartbeat().is_some_and(|last| heartbeat.arrived > last)
            && detector.suspects(heartbeat.arrived)
        {
            replay.false_suspicions += 1;
        }
        detector.heartbeat(heartbeat.arrived);
    }
    replay
}

fn outcome(latency: LatencyKind, setting: &Setting, mut replay: Replay, virtual_hours: f64) -> Outcome {
    replay.detections.sort_unstable();
    Outcome {
        latency,
        setting: setting.clone(),
        detection_median: percentile(&replay.detections, 0.5),
        detection_p99: percentile(&replay.detections, 0.99),
        detection_max: replay.detections.last().copied().unwrap_or_default(),
        undetected: replay.undetected,
        false_suspicions: replay.false_suspicions,
        false_suspicions_per_hour: replay.false_suspicions as f64 / virtual_hours,
    }
}

/// The nearest-rank percentile of sorted `values` (zero when there are none).
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The balanced setting: under the heavy-tail model, the fewest false suspicions per hour
/// among the settings whose p99 detection time is within `budget`, ties to the faster median.
pub fn choose(outcomes: &[Outcome], budget: Duration) -> Option<&Outcome> {
    outcomes
        .iter()
        .filter(|outcome| outcome.latency == LatencyKind::HeavyTail && outcome.detection_p99 <= budget)
        .min_by_key(|outcome| (outcome.false_suspicions, outcome.detection_median))
}

/// The columns of the table and of the CSV.
const COLUMNS: [&str; 9] = [
    "latency",
    "detector",
    "setting",
    "detection_median_s",
    "detection_p99_s",
    "detection_max_s",
    "undetected",
    "false_suspicions",
    "false_suspicions_per_hour",
];

/// One outcome's cells, in the order of [`COLUMNS`], seconds with `decimals` decimals.
fn cells(outcome: &Outcome, decimals: usize) -> [String; 9] {
    let seconds = |duration: Duration| format!("{:.decimals$}", duration.as_secs_f64());
    [
        outcome.latency.name().to_owned(),
        outcome.setting.curve.clone(),
        outcome.setting.label.clone(),
        seconds(outcome.detection_median),
        seconds(outcome.detection_p99),
        seconds(outcome.detection_max),
        outcome.undetected.to_string(),
        outcome.false_suspicions.to_string(),
        format!("{:.decimals$}", outcome.false_suspicions_per_hour, decimals = decimals + 1),
    ]
}

/// The figures as an aligned text table.
pub fn table(outcomes: &[Outcome]) -> String {
    const HEADERS: [&str; 9] = [
        "latency",
        "detector",
        "setting",
        "p50 (s)",
        "p99 (s)",
        "max (s)",
        "undetected",
        "false susp",
        "per hour",
    ];
    const WIDTHS: [usize; 9] = [10, 15, 7, 8, 8, 8, 10, 10, 9];
    let line = |cells: &[String]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(WIDTHS).enumerate() {
            // Names to the left, figures to the right.
            let _ = if index < 2 { write!(line, "{cell:<width$} ") } else { write!(line, "{cell:>width$} ") };
        }
        line.trim_end().to_owned() + "\n"
    };
    let mut text = line(&HEADERS.map(str::to_owned));
    for outcome in outcomes {
        text += &line(&cells(outcome, 2));
    }
    text
}

/// The figures as CSV, one row per latency model and setting.
pub fn csv(outcomes: &[Outcome]) -> String {
    let mut text = COLUMNS.join(",") + "\n";
    for outcome in outcomes {
        text += &(cells(outcome, 4).join(",") + "\n");
    }
    text
}
