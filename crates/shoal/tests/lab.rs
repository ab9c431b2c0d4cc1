//! `shoal lab failure-detector` as a user runs it: a small sweep and a short real run with a
//! real sender process, ending by itself, with its table, CSV and PNG.

use std::process::Command;

/// Runs the lab with a tiny virtual sweep and a 6 s real run (the sender killed at 3 s), and
/// checks what it leaves: a CSV row per latency model and setting, a PNG, the chosen setting,
/// and a real detection time for the fastest settings (which suspect within a few seconds of
/// the kill whatever the machine's load: the run reports the moment it looked, however late).
#[test]
fn the_failure_detector_lab_runs_and_stops_by_itself() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["lab", "failure-detector", "--virtual-hours", "2", "--crashes", "50"])
        .args(["--timeouts", "1.5,3", "--thresholds", "3,8", "--real-seconds", "6"])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("running shoal lab failure-detector");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Virtual time: 2 h"), "{stdout}");
    assert!(stdout.contains("Chosen: "), "{stdout}");

    let csv = std::fs::read_to_string(out.path().join("sweep.csv")).expect("the CSV");
    // A header, then 3 latency models × (2 timeouts + 2 thresholds × 3 acceptable pauses).
    assert_eq!(csv.lines().count(), 1 + 3 * 8, "{csv}");
    let png = std::fs::read(out.path().join("failure-detector.png")).expect("the plot");
    assert!(png.starts_with(b"\x89PNG"));

    let real = stdout.split("Real run:").nth(1).expect("a real run");
    let fixed =
        real.lines().find(|line| line.starts_with("fixed timeout") && line.contains("1.5s")).expect("a row");
    let real_detection = fixed.split_whitespace().nth(3).expect("a real detection column");
    assert!(real_detection.ends_with('s'), "not detected: {real}");
}
