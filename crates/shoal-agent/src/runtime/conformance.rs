//! The conformance suite every [`Runtime`] runs: the contract of the `runtime` module, checked.
//!
//! A runtime's test calls [`run_all`] with a function that makes a runtime over one state
//! directory (called again to check that a new instance re-adopts what the first started).
//! The containers are `/bin/sh` scripts, so any Linux machine can run the suite.

use std::collections::HashSet;
use std::time::Duration;

use super::log_file::{LogFilter, read_lines};
use super::{ContainerConfig, ContainerState, Exit, Runtime, Sandbox, SandboxConfig};

/// Runs every check of the suite, each with sandboxes of its own.
pub async fn run_all<R: Runtime>(make: impl Fn() -> R) {
    let runtime = make();
    exit_codes_and_logs(&runtime).await;
    environment_and_working_dir(&runtime).await;
    start_errors(&runtime).await;
    graceful_stop(&runtime).await;
    stop_kills_the_whole_tree(&runtime).await;
    distinct_sandbox_addresses(&runtime).await;
    exec_in_container(&runtime).await;
    interactive_exec(&runtime).await;
    listing_while_starting(&runtime).await;
    readoption(&runtime, make()).await;
}

fn sandbox_config(name: &str) -> SandboxConfig {
    SandboxConfig {
        pod_uid: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        dns: None,
    }
}

fn shell(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        attempt: 0,
        image: "host".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![],
        working_dir: None,
        mounts: vec![],
    }
}

async fn sandbox<R: Runtime>(runtime: &R, name: &str) -> Sandbox {
    runtime.run_sandbox(&sandbox_config(name)).await.expect("sandbox starts")
}

async fn wait<R: Runtime>(runtime: &R, id: &super::ContainerId) -> Exit {
    tokio::time::timeout(Duration::from_secs(30), runtime.wait_container(id))
        .await
        .expect("the container exits within 30 s")
        .expect("waiting succeeds")
}

fn log_text<R: Runtime>(runtime: &R, sandbox: &Sandbox, container: &str) -> String {
    let path = runtime.log_path(&sandbox.config, container, 0);
    let lines = read_lines(&path, LogFilter::default()).expect("the log reads");
    let mut out = Vec::new();
    lines.iter().for_each(|line| line.render(false, &mut out));
    String::from_utf8(out).expect("utf-8 output")
}

/// A container's exit code is reported, and its stdout and stderr are both in its log.
pub async fn exit_codes_and_logs<R: Runtime>(runtime: &R) {
    let sandbox = sandbox(runtime, "logs").await;
    let id = runtime
        .start_container(&sandbox, &shell("main", "echo out; echo err >&2; exit 3"))
        .await
        .expect("starts");
    let exit = wait(runtime, &id).await;
    assert_eq!(exit.exit_code, 3);
    assert_eq!(exit.signal, None);
    assert!(exit.started_at.is_some());
    let log = log_text(runtime, &sandbox, "main");
    assert!(log.contains("out\n") && log.contains("err\n"), "log: {log:?}");
    let listed = runtime.list_containers().await.expect("lists");
    assert!(listed.iter().any(|info| info.id == id && matches!(info.state, ContainerState::Exited(_))));
    let of_pod: Vec<_> = listed.into_iter().filter(|info| info.pod_uid == sandbox.config.pod_uid).collect();
    let listed_for_pod = runtime.list_pod_containers(&sandbox.config.pod_uid).await.expect("lists the pod's");
    assert_eq!(listed_for_pod, of_pod, "a pod's listing is its part of the whole");
    assert!(runtime.list_pod_containers("no-such-pod").await.expect("lists").is_empty());
    runtime.remove_container(&id).await.expect("removes");
    assert!(!runtime.list_containers().await.expect("lists").iter().any(|info| info.id == id));
    assert_eq!(log_text(runtime, &sandbox, "main"), "", "the log went with its container");
    runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

/// The container sees exactly its environment (plus PATH and HOME defaults) and working dir.
pub async fn environment_and_working_dir<R: Runtime>(runtime: &R) {
    let sandbox = sandbox(runtime, "env").await;
    // A variable of the agent's own environment, which must not reach the container.
    let agent_only = std::env::vars()
        .map(|(name, _)| name)
        .find(|name| !["PATH", "HOME", "GREETING"].contains(&name.as_str()))
        .unwrap_or_else(|| "SHOAL_CONFORMANCE_UNSET".into());
    let script = format!("echo \"$GREETING\" \"$(basename \"$(pwd)\")\"; test -z \"${{{agent_only}:-}}\"");
    let mut config = shell("main", &script);
    config.env = vec![("GREETING".into(), "hello there".into())];
    config.working_dir = Some("/app/work".into());
    let id = runtime.start_container(&sandbox, &config).await.expect("starts");
    let exit = wait(runtime, &id).await;
    assert_eq!(exit.exit_code, 0, "the agent's environment leaked into the container");
    assert_eq!(log_text(runtime, &sandbox, "main"), "hello there work\n");
    runtime.remove_container(&id).await.expect("removes");

    // A working directory that is a volume's mount path is the volume, files and all.
    let volume = std::env::temp_dir().join(format!("shoal-conformance-volume-{}", std::process::id()));
    std::fs::create_dir_all(&volume).expect("creating the volume's directory");
    std::fs::write(volume.join("code.txt"), "from the volume\n").expect("writing into the volume");
    let mut config = shell("in-volume", "cat code.txt");
    config.working_dir = Some("/code".into());
    config.mounts =
        vec![super::Mount { host_path: volume.clone(), container_path: "/code".into(), read_only: false }];
    let id = runtime.start_container(&sandbox, &config).await.expect("starts in its volume");
    assert_eq!(wait(runtime, &id).await.exit_code, 0);
    assert_eq!(log_text(runtime, &sandbox, "in-volume"), "from the volume\n");
    runtime.remove_container(&id).await.expect("removes");
    let _ = std::fs::remove_dir_all(&volume);
    runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

/// A program that does not exist is a start error with exit code 128, not a crash; a
/// container without a command is refused when the runtime has no entrypoint for its image.
pub async fn start_errors<R: Runtime>(runtime: &R) {
    let sandbox = sandbox(runtime, "start-errors").await;
    let mut missing = shell("missing", "");
    missing.argv = vec!["shoal-no-such-program".into()];
    let id = runtime.start_container(&sandbox, &missing).await.expect("a start error is reported as an exit");
    let exit = wait(runtime, &id).await;
    assert_eq!(exit.exit_code, 128);
    assert_eq!(exit.reason.as_deref(), Some("StartError"));
    assert!(exit.message.as_deref().unwrap_or_default().contains("shoal-no-such-program"));
    let mut no_command = shell("no-command", "");
    no_command.argv = vec![];
    no_command.image = "shoal-conformance-no-such-image".into();
    let refused = runtime.start_container(&sandbox, &no_command).await;
    assert!(matches!(refused, Err(super::RuntimeError::InvalidContainer { .. })), "{refused:?}");
    runtime.remove_container(&id).await.expect("removes");
    runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

/// SIGTERM comes first and a container that honours it ends by it; one that ignores it is
/// killed once the grace period is over, not before.
pub async fn graceful_stop<R: Runtime>(runtime: &R) {
    let sandbox = sandbox(runtime, "stop").await;
    let polite = runtime
        .start_container(
            &sandbox,
            &shell("polite", "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done"),
        )
        .await
        .expect("starts");
    let stubborn = runtime
        .start_container(
            &sandbox,
            &shell("stubborn", "trap '' TERM; echo ready; while :; do sleep 0.05; done"),
        )
        .await
        .expect("starts");
    // Each shell says ready once its trap is installed.
    wait_for_log(runtime, &sandbox, "polite", "ready").await;
    wait_for_log(runtime, &sandbox, "stubborn", "ready").await;
    let exit = runtime.stop_container(&polite, Duration::from_secs(20)).await.expect("stops");
    assert_eq!(exit.exit_code, 7, "the TERM trap ran: {exit:?}");
    assert!(log_text(runtime, &sandbox, "polite").contains("bye"));
    let grace = Duration::from_millis(600);
    let asked = std::time::Instant::now();
    let exit = runtime.stop_container(&stubborn, grace).await.expect("stops");
    assert!(asked.elapsed() >= grace, "killed before its grace period ended");
    assert_eq!(exit.exit_code, 137, "{exit:?}");
    assert_eq!(exit.signal, Some(9));
    for id in [polite, stubborn] {
        runtime.remove_container(&id).await.expect("removes");
    }
    runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

/// Stopping a container ends every process it started, and so does its main process exiting.
pub async fn stop_kills_the_whole_tree<R: Runtime>(runtime: &R) {
    let sandbox = sandbox(runtime, "tree").await;
    let id = runtime
        .start_container(&sandbox, &shell("main", "sleep 1000 & echo child=$!; wait"))
        .await
        .expect("starts");
    wait_for_log(runtime, &sandbox, "main", "child=").await;
    let main_child = child_pid(runtime, &sandbox, "main");
    runtime.stop_container(&id, Duration::from_secs(5)).await.expect("stops");
    assert!(!process_alive(main_child), "the container's child {main_child} outlived it");

    let leaver = runtime
        .start_container(&sandbox, &shell("leaver", "sleep 1000 & echo child=$!"))
        .await
        .expect("starts");
    wait(runtime, &leaver).await;
    let leaver_child = child_pid(runtime, &sandbox, "leaver");
    assert!(!process_alive(leaver_child), "a background process outlived its container's main process");
    for id in [id, leaver] {
        runtime.remove_container(&id).await.expect("removes");
    }
    runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

/// Live sandboxes get distinct addresses; a removed sandbox's address may be reused, and
/// asking again for a live sandbox returns the same one.
pub async fn distinct_sandbox_addresses<R: Runtime>(runtime: &R) {
    let mut sandboxes = Vec::new();
    for index in 0..5 {
        sandboxes.push(sandbox(runtime, &format!("ip-{index}")).await);
    }
    let addresses: HashSet<_> = sandboxes.iter().map(|sandbox| sandbox.ip).collect();
    assert_eq!(addresses.len(), sandboxes.len(), "two sandboxes share an address");
    let again = sandbox(runtime, "ip-0").await;
    assert_eq!(again, sandboxes[0]);
    for sandbox in &sandboxes {
        runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes");
    }
    assert!(
        runtime
            .list_sandboxes()
            .await
            .expect("lists")
            .iter()
            .all(|sandbox| !sandbox.config.name.starts_with("ip-"))
    );
}

/// exec runs in the container's environment and reports its code; a command that outlives its
/// timeout is killed and reported as unfinished.
pub async fn exec_in_container<R: Runtime>(runtime: &R) {
    let sandbox = sandbox(runtime, "exec").await;
    let mut config = shell("main", "while :; do sleep 0.05; done");
    config.env = vec![("GREETING".into(), "hi".into())];
    let id = runtime.start_container(&sandbox, &config).await.expect("starts");
    let argv = |script: &str| vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    let output =
        runtime.exec(&id, &argv("echo $GREETING; exit 4"), Duration::from_secs(10)).await.expect("execs");
    assert_eq!(output.exit_code, Some(4));
    assert_eq!(output.output, b"hi\n");
    let slow = runtime.exec(&id, &argv("sleep 30"), Duration::from_millis(200)).await.expect("execs");
    assert_eq!(slow.exit_code, None);
    runtime.stop_container(&id, Duration::ZERO).await.expect("stops");
    runtime.remove_container(&id).await.expect("removes");
    runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

/// An interactive exec streams stdin to the command and its stdout and stderr back, and reports
/// its exit code; with a TTY the command's output comes from a terminal.
pub async fn interactive_exec<R: Runtime>(runtime: &R) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sandbox = sandbox(runtime, "interactive").await;
    let id = runtime
        .start_container(&sandbox, &shell("main", "while :; do sleep 0.05; done"))
        .await
        .expect("starts");
    let argv = |script: &str| vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    let options = super::ExecOptions { stdin: true, tty: false };
    let mut process =
        runtime.exec_interactive(&id, &argv("cat; echo oops >&2; exit 3"), options).await.expect("execs");
    let mut stdin = process.stdin.take().expect("stdin was asked for");
    stdin.write_all(b"hello\n").await.expect("writes");
    drop(stdin);
    let mut stdout = String::new();
    process.stdout.read_to_string(&mut stdout).await.expect("reads stdout");
    let mut stderr = String::new();
    process
        .stderr
        .take()
        .expect("stderr without a tty")
        .read_to_string(&mut stderr)
        .await
        .expect("reads stderr");
    assert_eq!((stdout.as_str(), stderr.as_str()), ("hello\n", "oops\n"));
    assert_eq!(process.exit.await, Some(3));

    let options = super::ExecOptions { stdin: true, tty: true };
    let mut process =
        runtime.exec_interactive(&id, &argv("tty; exit 0"), options).await.expect("execs with a tty");
    let resize = process.resize.as_ref().expect("a terminal can be resized");
    resize(120, 40);
    let exit = tokio::time::timeout(Duration::from_secs(30), &mut process.exit).await.expect("ends");
    assert_eq!(exit, Some(0));
    let mut output = Vec::new();
    let mut buffer = [0u8; 256];
    // A terminal's master reads an error, not end-of-file, once the command is gone.
    while let Ok(Ok(read @ 1..)) =
        tokio::time::timeout(Duration::from_secs(5), process.stdout.read(&mut buffer)).await
    {
        output.extend_from_slice(&buffer[..read]);
    }
    let output = String::from_utf8_lossy(&output);
    assert!(output.contains("/dev/pts/"), "tty printed {output:?}");
    let missing = runtime.exec_interactive(&id, &["shoal-no-such-program".to_string()], options).await;
    assert!(matches!(missing, Err(super::RuntimeError::InvalidContainer { .. })), "{missing:?}");
    runtime.stop_container(&id, Duration::ZERO).await.expect("stops");
    runtime.remove_container(&id).await.expect("removes");
    runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

/// A second runtime instance over the same state (the agent restarted) lists the running
/// container, can stop it and wait for it, and sees an exit that happened while nobody watched.
pub async fn readoption<R: Runtime>(first: &R, second: R) {
    let sandbox = sandbox(first, "adopt").await;
    let long = first
        .start_container(&sandbox, &shell("long", "trap 'exit 0' TERM; while :; do sleep 0.05; done"))
        .await
        .expect("starts");
    let short = first.start_container(&sandbox, &shell("short", "sleep 0.3; exit 5")).await.expect("starts");
    let listed = second.list_containers().await.expect("lists");
    let long_state = listed.iter().find(|info| info.id == long).map(|info| info.state.clone());
    assert!(matches!(long_state, Some(ContainerState::Running { .. })), "{long_state:?}");
    assert_eq!(
        second.list_sandboxes().await.expect("lists").iter().filter(|s| s.config == sandbox.config).count(),
        1
    );
    let exit = wait(&second, &short).await;
    assert_eq!(exit.exit_code, 5);
    let exit = second.stop_container(&long, Duration::from_secs(10)).await.expect("stops");
    assert_eq!(exit.exit_code, 0);
    for id in [long, short] {
        second.remove_container(&id).await.expect("removes");
    }
    second.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

/// Listing containers while one starts (as other pods' workers do) never reports it exited:
/// it is not listed until its start returns, then it runs.
pub async fn listing_while_starting<R: Runtime>(runtime: &R) {
    let sandbox = sandbox(runtime, "concurrent").await;
    let started = std::sync::atomic::AtomicBool::new(false);
    let start = async {
        let id = runtime.start_container(&sandbox, &shell("main", "sleep 30")).await.expect("starts");
        started.store(true, std::sync::atomic::Ordering::SeqCst);
        id
    };
    let list = async {
        let mut seen = Vec::new();
        while !started.load(std::sync::atomic::Ordering::SeqCst) {
            let listed = runtime.list_containers().await.expect("lists");
            seen.extend(listed.into_iter().filter(|info| info.pod_uid == sandbox.config.pod_uid));
            tokio::task::yield_now().await;
        }
        seen
    };
    let (id, seen) = tokio::join!(start, list);
    let exited = seen.iter().find(|info| !matches!(info.state, ContainerState::Running { .. }));
    assert!(exited.is_none(), "listed as exited while it started: {exited:?}");
    let listed = runtime.list_containers().await.expect("lists");
    let info = listed.iter().find(|info| info.id == id).expect("listed once started");
    assert!(matches!(info.state, ContainerState::Running { .. }), "{info:?}");
    runtime.stop_container(&id, Duration::from_secs(1)).await.expect("stops");
    runtime.remove_container(&id).await.expect("removes");
    runtime.remove_sandbox(&sandbox.config.pod_uid).await.expect("removes the sandbox");
}

async fn wait_for_log<R: Runtime>(runtime: &R, sandbox: &Sandbox, container: &str, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !log_text(runtime, sandbox, container).contains(text) {
        assert!(tokio::time::Instant::now() < deadline, "{container} never logged {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid a container script logged as `child=<pid>`.
fn child_pid<R: Runtime>(runtime: &R, sandbox: &Sandbox, container: &str) -> i32 {
    let log = log_text(runtime, sandbox, container);
    log.lines()
        .find_map(|line| line.strip_prefix("child=")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{container} logged no child pid: {log:?}"))
}

/// Whether a process exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next()));
        let alive = matches!(state, Some(Some(state)) if state != 'Z');
        // A killed process takes a moment to be gone; only one that stays counts as alive.
        if !alive || std::time::Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
