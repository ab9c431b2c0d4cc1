//! The lab's real run: a sender process beats over loopback UDP with the injected latency
//! and is killed with SIGKILL at a known moment; every swept detector hears the real
//! datagrams, and the run compares the detection time it sees with the one the virtual
//! replay predicts for the very same heartbeats.
//!
//! The sender (`shoal lab failure-detector-sender`, hidden) follows the seeded schedule of
//! `latency::heartbeats` and sends each datagram at its arrival time, so latency is injected
//! at the source: a datagram not yet sent when the sender is killed is lost, and the
//! prediction counts exactly the heartbeats due before the kill. Both processes agree on the
//! schedule's start through the wall clock (a start a little in the future); after that each
//! keeps to its monotonic clock.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use shoal_controllers::failure_detector::Detector;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::latency::{self, LatencyKind};
use super::{FailureDetectorArgs, Setting};

/// How long after its spawn the sender's schedule starts: time for the process to come up.
pub const SENDER_STARTUP: Duration = Duration::from_millis(500);
/// The sender stops by itself this long after its run should have ended, should the lab be
/// gone without killing it.
pub const SENDER_GRACE: Duration = Duration::from_secs(5);

/// The hidden sender subcommand's flags.
#[derive(Args, Clone, Debug)]
pub struct SenderArgs {
    /// The loopback UDP port the heartbeats go to.
    #[arg(long)]
    pub port: u16,
    #[arg(long)]
    pub seed: u64,
    #[arg(long, value_enum)]
    pub latency: LatencyKind,
    /// The schedule's start, in nanoseconds since the Unix epoch.
    #[arg(long)]
    pub start_unix_nanos: u128,
    /// The schedule's length.
    #[arg(long)]
    pub seconds: u64,
}

/// The sender: one datagram (its sequence number) per heartbeat of the schedule, each at its
/// arrival time, until the schedule ends or the process is killed.
pub async fn run_sender(args: SenderArgs) -> anyhow::Result<()> {
    let seconds = args.seconds.min(super::REAL_SECONDS_MAX);
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let destination = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let start = instant_of_unix_nanos(args.start_unix_nanos);
    let deadline = start + Duration::from_secs(seconds) + SENDER_GRACE;
    for (sequence, heartbeat) in
        latency::heartbeats(args.latency, args.seed, Duration::from_secs(seconds)).iter().enumerate()
    {
        let due = start + heartbeat.arrived;
        if due > deadline {
            break;
        }
        tokio::time::sleep_until(due).await;
        // A lost datagram is a lost heartbeat, which is what detectors are for.
        let _ = socket.send_to(&(sequence as u64).to_be_bytes(), destination).await;
    }
    Ok(())
}

/// The monotonic instant of a wall-clock moment (now, if it has passed).
fn instant_of_unix_nanos(unix_nanos: u128) -> Instant {
    let now_unix_nanos =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_nanos()).unwrap_or(0);
    let ahead = u64::try_from(unix_nanos.saturating_sub(now_unix_nanos)).unwrap_or(u64::MAX);
    Instant::now() + Duration::from_nanos(ahead).min(SENDER_STARTUP * 10)
}

/// One setting's detector in the real run.
struct Watch {
    setting: Setting,
    detector: Detector,
    false_suspicions: u64,
    detected: Option<Duration>,
}

/// Spawns the sender, listens until the run's end, kills the sender halfway, and prints each
/// setting's real detection time beside the virtual prediction.
pub async fn run(args: &FailureDetectorArgs, settings: &[Setting]) -> anyhow::Result<()> {
    let length = Duration::from_secs(args.real_seconds);
    let crash = length / 2;
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let port = socket.local_addr()?.port();
    let start_unix_nanos = (SystemTime::now().duration_since(UNIX_EPOCH)? + SENDER_STARTUP).as_nanos();
    let start = Instant::now() + SENDER_STARTUP;
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let mut sender = tokio::process::Command::new(exe)
        .args(["lab", "failure-detector-sender", "--port", &port.to_string()])
        .args(["--seed", &args.seed.to_string(), "--latency", args.real_latency.name()])
        .args([
            "--start-unix-nanos",
            &start_unix_nanos.to_string(),
            "--seconds",
            &args.real_seconds.to_string(),
        ])
        .kill_on_drop(true)
        .spawn()
        .context("starting the heartbeat sender")?;
    println!(
        "\nReal run: a `shoal` sender process beats over loopback UDP for {} s ({} latency, seed {}) \
         and is killed with SIGKILL {} s in.",
        args.real_seconds,
        args.real_latency.name(),
        args.seed,
        crash.as_secs_f64()
    );

    let mut watches: Vec<Watch> = settings
        .iter()
        .map(|setting| Watch {
            setting: setting.clone(),
            detector: Detector::new(setting.config.clone()),
            false_suspicions: 0,
            detected: None,
        })
        .collect();
    let mut killed_at: Option<Duration> = None;
    let mut heartbeats_heard = 0u64;
    let mut buffer = [0u8; 64];
    let since_start = || Instant::now().saturating_duration_since(start);
    loop {
        let now = since_start();
        if killed_at.is_none() && now >= crash {
            sender.start_kill().context("killing the sender")?;
            killed_at = Some(since_start());
            let _ = sender.wait().await;
        }
        if let Some(killed_at) = killed_at {
            let now = since_start();
            for watch in watches.iter_mut().filter(|watch| watch.detected.is_none()) {
                if watch.detector.suspects(now) {
                    watch.detected = Some(now.saturating_sub(killed_at));
                }
            }
        }
        if now >= length || watches.iter().all(|watch| watch.detected.is_some()) {
            break;
        }
        // Wake at the next thing to do: the kill, the earliest suspicion, or the end.
        let mut wake = if killed_at.is_none() { crash } else { length };
        if killed_at.is_some() {
            for watch in watches.iter().filter(|watch| watch.detected.is_none()) {
                if let Some(deadline) = watch.detector.suspicion_deadline() {
                    wake = wake.min(deadline);
                }
            }
        }
        if let Ok(received) = tokio::time::timeout_at(start + wake, socket.recv_from(&mut buffer)).await {
            received.context("receiving heartbeats")?;
            let arrived = since_start();
            heartbeats_heard += 1;
            for watch in &mut watches {
                let before = watch.detector.last_heartbeat();
                if killed_at.is_none()
                    && before.is_some_and(|last| arrived > last)
                    && watch.detector.suspects(arrived)
                {
                    watch.false_suspicions += 1;
                }
                watch.detector.heartbeat(arrived);
            }
        }
    }
    let killed_at = killed_at.unwrap_or(crash);
    print!("{}", report(args, &watches, killed_at, heartbeats_heard));
    Ok(())
}

/// The real run's table: real detection time, and the prediction from the same schedule.
fn report(
    args: &FailureDetectorArgs,
    watches: &[Watch],
    killed_at: Duration,
    heartbeats_heard: u64,
) -> String {
    let schedule = latency::heartbeats(args.real_latency, args.seed, Duration::from_secs(args.real_seconds));
    let mut text = format!(
        "{heartbeats_heard} heartbeats heard; killed at {:.3} s.\n{:<15} {:>7} {:>12} {:>12} {:>11}\n",
        killed_at.as_secs_f64(),
        "detector",
        "setting",
        "real detect",
        "virtual",
        "false susp"
    );
    for watch in watches {
        // The virtual replay of the same heartbeats: those due before the kill.
        let mut predicted = Detector::new(watch.setting.config.clone());
        for heartbeat in schedule.iter().take_while(|heartbeat| heartbeat.arrived < killed_at) {
            predicted.heartbeat(heartbeat.arrived);
        }
        let predicted = predicted.suspicion_deadline().map(|deadline| deadline.saturating_sub(killed_at));
        let _ = writeln!(
            text,
            "{:<15} {:>7} {:>12} {:>12} {:>11}",
            watch.setting.curve,
            watch.setting.label,
            seconds_or_dash(watch.detected),
            seconds_or_dash(predicted),
            watch.false_suspicions
        );
    }
    let _ = writeln!(text, "(-: not suspected before the run's end)");
    text
}

fn seconds_or_dash(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_owned(), |duration| format!("{:.3}s", duration.as_secs_f64()))
}
