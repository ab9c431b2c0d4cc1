//! The shim that stands between the agent and one container of the process runtime
//! (`shoal shim <container dir>`), as containerd-shim does for containerd.
//!
//! It starts the container's program in a new process group, writes `state.json`, prints one
//! line to its stdout (the agent's signal that the start is settled), copies the container's
//! stdout and stderr into the CRI log, and when the program exits kills the rest of its group
//! and writes `exit.json`. SIGTERM to the shim is forwarded to the group; SIGUSR1 becomes
//! SIGKILL to the group. Because the shim is the container's parent and reaps it only after it
//! exits, it never signals a recycled process id.
//!
//! Given a `resolv_conf` in its spec, the shim first enters a mount namespace of its own, makes
//! every mount in it private (so nothing done in it reaches the node) and bind-mounts that file
//! over `/etc/resolv.conf`: the container, its child, sees the pod's resolver and the node's
//! other processes do not. This runs before the shim starts any thread, as unsharing the mount
//! namespace requires.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt as _, AsyncRead};
use tokio::signal::unix::{SignalKind, signal};

use super::{ShimSpec, ShimState, exit_code_of, process_start_ticks, read_json, write_json};
use crate::runtime::Exit;
use crate::runtime::log_file::{LINE_BYTES_MAX, LogWriter, Stream};

/// How long the log copiers may drain the pipes after the container's group was killed; a
/// process that left the group may hold them open forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the shim for the container in `dir`; returns the shim's exit code.
pub fn main(dir: &Path) -> i32 {
    let spec: Option<ShimSpec> = read_json(&dir.join("spec.json"));
    if let Some(resolv_conf) = spec.and_then(|spec| spec.resolv_conf) {
        // The container still runs, with the node's resolver: a pod that cannot resolve cluster
        // names is easier to diagnose than one that never starts; the reason is in the log.
        if let Err(error) = mount_resolv_conf(&resolv_conf) {
            eprintln!("shim: giving the container {}: {error}; it keeps the node's", resolv_conf.display());
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shim: starting its runtime: {error}");
            return 1;
        }
    };
    match runtime.block_on(run(dir)) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("shim: {message}");
            1
        }
    }
}

async fn run(dir: &Path) -> Result<(), String> {
    let spec: ShimSpec = read_json(&dir.join("spec.json")).ok_or("no readable spec.json")?;
    // Installed before the container starts, so a stop request is never missed.
    let mut terminate = signal(SignalKind::terminate()).map_err(|error| error.to_string())?;
    let mut kill = signal(SignalKind::user_defined1()).map_err(|error| error.to_string())?;
    if let Some(parent) = spec.log_path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| format!("creating {}: {error}", parent.display()))?;
    }
    let log = LogWriter::open(&spec.log_path, spec.log_limits)
        .map_err(|error| format!("opening {}: {error}", spec.log_path.display()))?;
    let log = Arc::new(Mutex::new(log));

    let (program, args) = spec.argv.split_first().ok_or("spec.json has no program")?;
    let mut command = spec.command(program, args);
    let started_at = SystemTime::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let exit = start_error(program, &error, started_at);
            write_json(&dir.join("exit.json"), &exit).map_err(|error| error.to_string())?;
            report_ready();
            return Ok(());
        }
    };
    let pid = child.id().expect("a running child has a pid") as i32;
    let group = Pid::from_raw(pid).expect("a child's pid is positive");
    let shim_pid = std::process::id() as i32;
    let state = ShimState {
        shim_pid,
        shim_start_ticks: process_start_ticks(shim_pid).ok_or("reading the shim's own start time")?,
        pid,
        started_at,
    };
    write_json(&dir.join("state.json"), &state).map_err(|error| error.to_string())?;
    report_ready();

    let stdout = tokio::spawn(copy_lines(child.stdout.take().expect("piped"), Stream::Stdout, log.clone()));
    let stderr = tokio::spawn(copy_lines(child.stderr.take().expect("piped"), Stream::Stderr, log));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = terminate.recv() => { let _ = rustix::process::kill_process_group(group, Signal::TERM); }
            _ = kill.recv() => { let _ = rustix::process::kill_process_group(group, Signal::KILL); }
        }
    };
    let finished_at = SystemTime::now();
    // The container is its main process: what it leaves behind dies with it.
    let _ = rustix::process::kill_process_group(group, Signal::KILL);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let _ = stdout.await;
        let _ = stderr.await;
    })
    .await;
    let exit = match status {
        Ok(status) => {
            let (exit_code, signal) = exit_code_of(status);
            Exit {
                started_at: Some(started_at),
                finished_at,
                exit_code,
                signal,
                reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
                message: None,
            }
        }
        Err(error) => Exit {
            started_at: Some(started_at),
            finished_at,
            exit_code: 128 + 9,
            signal: None,
            reason: Some("Error".into()),
            message: Some(format!("waiting for the container: {error}")),
        },
    };
    write_json(&dir.join("exit.json"), &exit).map_err(|error| error.to_string())
}

/// Bind-mounts `resolv_conf` over `/etc/resolv.conf` in a new, private mount namespace.
fn mount_resolv_conf(resolv_conf: &Path) -> std::io::Result<()> {
    use rustix::mount::MountPropagationFlags;
    // `unshare` is deprecated for `unshare_unsafe`, whose hazard is CLONE_FILES (threads that
    // shared a file table no longer do); unsharing only the mount namespace, from the shim's
    // single thread, has no such hazard, and the workspace forbids `unsafe`.
    #[allow(deprecated)]
    rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNS)?;
    rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)?;
    rustix::mount::mount_bind(resolv_conf, "/etc/resolv.conf")?;
    Ok(())
}

/// Tells the agent, waiting on our stdout, that the start is settled.
fn report_ready() {
    let mut stdout = std::io::stdout();
    // The agent may have gone; the container runs on regardless.
    let _ = stdout.write_all(b"ready\n").and_then(|()| stdout.flush());
}

/// How a program that could not be executed is reported, in containerd's words.
fn start_error(program: &str, error: &std::io::Error, now: SystemTime) -> Exit {
    let message = if error.kind() == std::io::ErrorKind::NotFound && !program.contains('/') {
        format!("exec: {program:?}: executable file not found in $PATH")
    } else {
        format!("exec: {program:?}: {error}")
    };
    Exit {
        started_at: None,
        finished_at: now,
        exit_code: 128,
        signal: None,
        reason: Some("StartError".into()),
        message: Some(message),
    }
}

/// Copies a pipe into the log line by line, splitting lines longer than [`LINE_BYTES_MAX`].
async fn copy_lines(pipe: impl AsyncRead + Unpin, stream: Stream, log: Arc<Mutex<LogWriter>>) {
    let mut reader = tokio::io::BufReader::with_capacity(LINE_BYTES_MAX, pipe);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buffer = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buffer) => buffer,
        };
        let room = LINE_BYTES_MAX - line.len();
        let (taken, complete) = match buffer.iter().take(room).position(|byte| *byte == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (buffer.len().min(room), false),
        };
        line.extend_from_slice(&buffer[..taken]);
        reader.consume(taken);
        if complete {
            line.pop();
            write_line(&log, stream, false, &line);
            line.clear();
        } else if line.len() == LINE_BYTES_MAX {
            write_line(&log, stream, true, &line);
            line.clear();
        }
    }
    if !line.is_empty() {
        write_line(&log, stream, false, &line);
    }
}

fn write_line(log: &Mutex<LogWriter>, stream: Stream, partial: bool, content: &[u8]) {
    let mut log = log.lock().expect("log lock");
    if let Err(error) = log.write(stream, SystemTime::now(), partial, content) {
        eprintln!("shim: writing the log: {error}");
    }
}
