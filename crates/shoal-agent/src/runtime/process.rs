//! The `process` runtime, the embedded default: each container is a plain child process in its
//! own process group, no root needed.
//!
//! Each container runs under a *shim* (`shoal shim <dir>`, see [`shim`]), a small process that
//! owns the container's pipes, writes its log, forwards stop signals, and records its exit. The
//! shim, not the agent, is the container's parent, so containers outlive an agent restart and
//! a new agent re-adopts them from the state on disk.
//!
//! What "container" means without isolation, the node-local rules:
//! - **Image.** The host is the image: `command` and `args` are run as given, the program found
//!   through the container's `PATH` (the agent's, if the pod sets none). A pod without
//!   `command` runs `<image dir>/<image name>/entrypoint` if the node has one (the image name
//!   is the reference's last path component, tag and digest dropped), and otherwise fails
//!   with a clear error.
//! - **Filesystem.** Each run gets a root directory `<state>/pods/<uid>/containers/<name>.<n>/root`;
//!   an absolute `workingDir` and each volume's `mountPath` are taken relative to it (volumes
//!   appear there as symlinks, and `readOnly` is not enforced). The default working directory
//!   is that root, `HOME` too unless the pod sets it.
//! - **Network.** The pod's IP is a loopback address from the node's pod CIDR (127.0.0.0/8 is
//!   all routed to `lo`), given to the containers as `POD_IP`; a program that binds that
//!   address does not collide with another pod's on the same port, one that binds 0.0.0.0 does.
//! - **DNS.** Run as root, the runtime gives a pod with a resolver of its own (the cluster DNS,
//!   see [`crate::dns::pod_dns_config`]) that resolver: each container's shim enters a mount
//!   namespace of its own and bind-mounts the pod's `resolv.conf` over `/etc/resolv.conf`.
//!   Without root, and for commands run by `exec` (probes, `kubectl exec`), the node's
//!   resolv.conf stays.
//! - **Limits.** No cgroup limits: resources requests and limits are accounted, not enforced.
//!
//! State layout under the runtime's directory:
//! `pods/<uid>/sandbox.json`, `pods/<uid>/containers/<name>.<attempt>/{spec,state,exit}.json`
//! and `logs/<namespace>_<name>_<uid>/<container>/<attempt>.log` (kubelet's /var/log/pods).

pub mod shim;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::AsyncBufReadExt as _;
use tokio::io::unix::AsyncFd;

use super::log_file::LogLimits;
use super::{
    ContainerConfig, ContainerId, ContainerInfo, ContainerState, ContainerStats, EXEC_OUTPUT_BYTES_MAX,
    ExecInput, ExecOptions, ExecOutput, ExecOutputStream, ExecProcess, Exit, Resize, Runtime, RuntimeError,
    Sandbox, SandboxConfig,
};

/// How long a shim may take to start its container before the start is reported failed.
const SHIM_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a container may take to die after SIGKILL before stopping it is reported failed.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod's resolver configuration in its sandbox directory, when it has one of its own.
const RESOLV_CONF: &str = "resolv.conf";

/// Whether the shims may make mounts: bind-mounting needs root (CAP_SYS_ADMIN, strictly).
fn may_mount() -> bool {
    rustix::process::geteuid().is_root()
}

/// An IPv4 network, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// The addresses pods may get: all but the network, the first (the node's) and broadcast.
    fn pod_addresses(self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.network);
        let size = 1u64 << (32 - u32::from(self.prefix));
        (2..size.saturating_sub(1)).map(move |offset| Ipv4Addr::from(base + offset as u32))
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not an IPv4 CIDR like 127.1.0.0/24");
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{text:?}: the prefix must be between /8 and /30"));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(Self { network: Ipv4Addr::from(u32::from(address) & mask), prefix })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[derive(Debug, Clone)]
pub struct ProcessRuntimeConfig {
    /// Where sandboxes, container state and logs live.
    pub state_dir: PathBuf,
    /// The shim's program and leading arguments; the container directory is appended.
    pub shim: Vec<String>,
    pub pod_cidr: Ipv4Cidr,
    pub log_limits: LogLimits,
    /// Where image entrypoints are looked up (see the module documentation).
    pub image_dir: Option<PathBuf>,
}

pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    /// Serializes address allocation.
    sandboxes: tokio::sync::Mutex<()>,
    /// Shims this instance spawned, kept to reap them once they exit.
    children: Mutex<HashMap<ContainerId, tokio::process::Child>>,
    /// Containers whose start has not returned. Until their shim writes `state.json` they
    /// look like containers whose shim died, so listings leave them out.
    starting: Mutex<HashSet<ContainerId>>,
}

/// Marks a container as starting until dropped.
struct Starting<'a> {
    starting: &'a Mutex<HashSet<ContainerId>>,
    id: ContainerId,
}

impl<'a> Starting<'a> {
    fn new(starting: &'a Mutex<HashSet<ContainerId>>, id: &ContainerId) -> Self {
        starting.lock().expect("starting lock").insert(id.clone());
        Self { starting, id: id.clone() }
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.starting.lock().expect("starting lock").remove(&self.id);
    }
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime").field("config", &self.config).finish_non_exhaustive()
    }
}

/// What the shim runs, written by the agent to `spec.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShimSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub log_path: PathBuf,
    pub log_limits: LogLimits,
    /// A resolv.conf the shim bind-mounts over `/etc/resolv.conf` in a mount namespace of the
    /// container's own (see [`shim`]); `None` leaves the node's.
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
}

/// What the shim records once the container runs, in `state.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShimState {
    pub shim_pid: i32,
    /// The shim's start time in clock ticks since boot, to tell it from a later process that
    /// got the same pid.
    pub shim_start_ticks: u64,
    /// The container's main process, leader of its process group.
    pub pid: i32,
    pub started_at: SystemTime,
}

impl ShimSpec {
    /// `program args` as the container runs: its environment and working directory only, stdin
    /// closed, output piped, in a process group of its own.
    pub fn command(&self, program: &str, args: &[String]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .current_dir(&self.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        command
    }
}

impl ProcessRuntime {
    pub fn new(config: ProcessRuntimeConfig) -> Result<Self, RuntimeError> {
        assert!(!config.shim.is_empty(), "the shim command names a program");
        for dir in [config.state_dir.join("pods"), config.state_dir.join("logs")] {
            create_dir(&dir)?;
        }
        Ok(Self {
            config,
            sandboxes: tokio::sync::Mutex::new(()),
            children: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashSet::new()),
        })
    }

    fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.config.state_dir.join("pods").join(pod_uid)
    }

    fn container_dir(&self, id: &ContainerId) -> PathBuf {
        let (pod_uid, name, attempt) = id.parts().expect("container ids are made by ContainerId::new");
        self.pod_dir(pod_uid).join("containers").join(format!("{name}.{attempt}"))
    }

    fn logs_dir(&self, pod: &SandboxConfig) -> PathBuf {
        self.config.state_dir.join("logs").join(format!("{}_{}_{}", pod.namespace, pod.name, pod.pod_uid))
    }

    /// The program the container runs, by the image rule of the module documentation.
    fn argv(&self, config: &ContainerConfig) -> Result<Vec<String>, RuntimeError> {
        if !config.argv.is_empty() {
            return Ok(config.argv.clone());
        }
        let image = image_name(&config.image);
        let entrypoint = self.config.image_dir.as_ref().map(|dir| dir.join(image).join("entrypoint"));
        match entrypoint {
            Some(entrypoint) if entrypoint.is_file() => Ok(vec![entrypoint.display().to_string()]),
            _ => Err(RuntimeError::InvalidContainer {
                message: format!(
                    "the process runtime runs a container's command, and container {:?} has none \
                     (no entrypoint for image {:?} on this node)",
                    config.name, config.image
                ),
            }),
        }
    }

    /// Reads a container's recorded exit, if it has one.
    fn recorded_exit(&self, id: &ContainerId) -> Option<Exit> {
        read_json(&self.container_dir(id).join("exit.json"))
    }

    /// The container's shim as a pidfd, if that very shim still runs.
    fn shim_pidfd(&self, id: &ContainerId) -> Option<(ShimState, std::os::fd::OwnedFd)> {
        let state: ShimState = read_json(&self.container_dir(id).join("state.json"))?;
        let pid = Pid::from_raw(state.shim_pid)?;
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()?;
        // Opened first, checked second: if the start time matches now, the pidfd is that shim's.
        (process_start_ticks(state.shim_pid) == Some(state.shim_start_ticks)).then_some((state, pidfd))
    }

    /// Records that a container's shim died without recording the exit, killing what is left
    /// of the container.
    fn record_lost_shim(&self, id: &ContainerId) -> Exit {
        let state: Option<ShimState> = read_json(&self.container_dir(id).join("state.json"));
        if let Some(group) = state.as_ref().and_then(|state| Pid::from_raw(state.pid)) {
            // The group's leader was the shim's child; with the shim gone, anything left is an
            // orphan of the container.
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
        }
        let exit = Exit {
            started_at: state.map(|state| state.started_at),
            finished_at: SystemTime::now(),
            exit_code: 128 + 9,
            signal: None,
            reason: Some("Error".into()),
            message: Some("the container's runtime shim ended without recording its exit".into()),
        };
        // Best effort: if this fails the next look reaches the same verdict.
        let _ = write_json(&self.container_dir(id).join("exit.json"), &exit);
        exit
    }

    fn reap(&self, id: &ContainerId) {
        let child = self.children.lock().expect("children lock").remove(id);
        if let Some(mut child) = child {
            let _ = child.try_wait();
        }
    }

    /// The containers of one pod, bar those still starting (see `Starting`).
    fn pod_containers(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut containers = Vec::new();
        for entry in read_dir_names(&self.pod_dir(pod_uid).join("containers"))? {
            let Some((name, attempt)) = entry.rsplit_once('.') else { continue };
            let Ok(attempt) = attempt.parse() else { continue };
            let id = ContainerId::new(pod_uid, name, attempt);
            if self.starting.lock().expect("starting lock").contains(&id) {
                continue;
            }
            let state = self.state_of(&id);
            containers.push(ContainerInfo {
                id,
                pod_uid: pod_uid.to_owned(),
                name: name.to_owned(),
                attempt,
                state,
            });
        }
        Ok(containers)
    }

    fn state_of(&self, id: &ContainerId) -> ContainerState {
        if let Some(exit) = self.recorded_exit(id) {
            return ContainerState::Exited(exit);
        }
        match self.shim_pidfd(id) {
            Some((state, _)) => ContainerState::Running { started_at: state.started_at },
            None => match self.recorded_exit(id) {
                // It exited between the two looks.
                Some(exit) => ContainerState::Exited(exit),
                None => ContainerState::Exited(self.record_lost_shim(id)),
            },
        }
    }
}

impl Runtime for ProcessRuntime {
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let _allocating = self.sandboxes.lock().await;
        let dir = self.pod_dir(&config.pod_uid);
        if let Some(sandbox) = read_json::<Sandbox>(&dir.join("sandbox.json")) {
            return Ok(sandbox);
        }
        let taken: Vec<Ipv4Addr> = self.list_sandboxes().await?.iter().map(|sandbox| sandbox.ip).collect();
        let ip = self
            .config
            .pod_cidr
            .pod_addresses()
            .find(|ip| !taken.contains(ip))
            .ok_or_else(|| RuntimeError::AddressesExhausted { cidr: self.config.pod_cidr.to_string() })?;
        create_dir(&dir.join("containers"))?;
        create_dir(&self.logs_dir(config))?;
        if let Some(dns) = config.dns.as_ref().filter(|_| may_mount()) {
            let path = dir.join(RESOLV_CONF);
            std::fs::write(&path, dns.resolv_conf()).map_err(|source| RuntimeError::Io {
                action: "writing",
                path,
                source,
            })?;
        }
        let sandbox = Sandbox { config: config.clone(), ip, dir: dir.clone() };
        write_json(&dir.join("sandbox.json"), &sandbox)?;
        Ok(sandbox)
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let dir = self.pod_dir(pod_uid);
        let Some(sandbox) = read_json::<Sandbox>(&dir.join("sandbox.json")) else {
            return Ok(());
        };
        remove_dir(&self.logs_dir(&sandbox.config))?;
        remove_dir(&dir)
    }

    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>, RuntimeError> {
        let pods = self.config.state_dir.join("pods");
        Ok(read_dir_names(&pods)?
            .into_iter()
            .filter_map(|uid| read_json::<Sandbox>(&pods.join(uid).join("sandbox.json")))
            .collect())
    }

    async fn start_container(
        &self,
        sandbox: &Sandbox,
        config: &ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        let id = ContainerId::new(&sandbox.config.pod_uid, &config.name, config.attempt);
        let argv = self.argv(config)?;
        let dir = self.container_dir(&id);
        if dir.exists() {
            return Err(RuntimeError::InvalidContainer { message: format!("container {id} already exists") });
        }
        let _starting = Starting::new(&self.starting, &id);
        let started = match self.prepare_container(sandbox, config, argv, &dir) {
            Ok(()) => self.spawn_shim(&id, &dir).await,
            Err(error) => Err(error),
        };
        if let Err(error) = started {
            // Nothing runs from it: clear it, so that the next attempt is not "already exists".
            let _ = std::fs::remove_dir_all(&dir);
            return Err(error);
        }
        Ok(id)
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<Exit, RuntimeError> {
        if let Some(exit) = self.recorded_exit(id) {
            return Ok(exit);
        }
        let Some((_, pidfd)) = self.shim_pidfd(id) else {
            return Ok(match self.recorded_exit(id) {
                Some(exit) => exit,
                None => self.record_lost_shim(id),
            });
        };
        // The shim forwards SIGTERM to the container's group and turns SIGUSR1 into SIGKILL.
        if !grace.is_zero() {
            let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::TERM);
            if let Ok(exit) = tokio::time::timeout(grace, self.wait_container(id)).await {
                return exit;
            }
        }
        let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::USR1);
        match tokio::time::timeout(KILL_TIMEOUT, self.wait_container(id)).await {
            Ok(exit) => exit,
            Err(_) => Err(RuntimeError::Io {
                action: "waiting for the killed container",
                path: self.container_dir(id),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            }),
        }
    }

    async fn wait_container(&self, id: &ContainerId) -> Result<Exit, RuntimeError> {
        if !self.container_dir(id).exists() {
            return Err(RuntimeError::NoContainer { id: id.clone() });
        }
        if let Some((_, pidfd)) = self.shim_pidfd(id) {
            // Deprecated because a registered fd could be closed behind tokio's back; this one is
            // an OwnedFd that the AsyncFd owns until it is dropped.
            #[allow(deprecated)]
            let pidfd = AsyncFd::new(pidfd).map_err(|source| RuntimeError::Io {
                action: "watching the shim of",
                path: self.container_dir(id),
                source,
            })?;
            // A pidfd becomes readable when its process exits.
            let _ = pidfd.readable().await;
            self.reap(id);
        }
        Ok(match self.recorded_exit(id) {
            Some(exit) => exit,
            None => self.record_lost_shim(id),
        })
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        if let ContainerState::Running { .. } = self.state_of(id) {
            return Err(RuntimeError::InvalidContainer {
                message: format!("container {id} is still running"),
            });
        }
        self.reap(id);
        if let Some(spec) = read_json::<ShimSpec>(&self.container_dir(id).join("spec.json")) {
            for file in super::log_file::log_files(&spec.log_path) {
                let _ = std::fs::remove_file(file);
            }
        }
        remove_dir(&self.container_dir(id))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut containers = Vec::new();
        for pod_uid in read_dir_names(&self.config.state_dir.join("pods"))? {
            containers.extend(self.pod_containers(&pod_uid)?);
        }
        Ok(containers)
    }

    async fn list_pod_containers(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.pod_containers(pod_uid)
    }

    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let (_, program, mut command) = self.exec_command(id, argv)?;
        command.kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                let output = format!("exec: {program:?}: {error}").into_bytes();
                return Ok(ExecOutput {
                    exit_code: Some(126 + i32::from(error.kind() == std::io::ErrorKind::NotFound)),
                    output,
                });
            }
        };
        let group = child.id().and_then(|pid| Pid::from_raw(pid as i32));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let collect = async {
            let mut output = Vec::new();
            let (out, err) = tokio::join!(read_bounded(stdout), read_bounded(stderr));
            output.extend(out);
            output.extend(err);
            output.truncate(EXEC_OUTPUT_BYTES_MAX);
            let status = child.wait().await;
            (output, status)
        };
        match tokio::time::timeout(timeout, collect).await {
            Ok((output, status)) => {
                let exit_code = status.ok().map(|status| exit_code_of(status).0);
                Ok(ExecOutput { exit_code, output })
            }
            Err(_) => {
                if let Some(group) = group {
                    let _ = rustix::process::kill_process_group(group, Signal::KILL);
                }
                Ok(ExecOutput { exit_code: None, output: Vec::new() })
            }
        }
    }

    async fn exec_interactive(
        &self,
        id: &ContainerId,
        argv: &[String],
        options: ExecOptions,
    ) -> Result<ExecProcess, RuntimeError> {
        let (dir, program, mut command) = self.exec_command(id, argv)?;
        let io_error = |action: &'static str| {
            let path = dir.clone();
            move |source| RuntimeError::Io { action, path, source }
        };
        let mut terminal = None;
        if options.tty {
            let (master, slave) = open_pty().map_err(io_error("opening a terminal for an exec in"))?;
            let clone = |file: &std::fs::File| {
                file.try_clone().map_err(io_error("opening a terminal for an exec in"))
            };
            command.stdin(clone(&slave)?).stdout(clone(&slave)?).stderr(slave);
            terminal = Some(master);
        } else if options.stdin {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => RuntimeError::InvalidContainer {
                message: format!("exec: {program:?}: executable file not found in $PATH"),
            },
            _ => RuntimeError::InvalidContainer { message: format!("exec: {program:?}: {source}") },
        })?;
        let group = child.id().and_then(|pid| Pid::from_raw(pid as i32));
        let kill = Box::new(move || {
            if let Some(group) = group {
                let _ = rustix::process::kill_process_group(group, Signal::KILL);
            }
        });
        let (stdin, stdout, stderr, resize): (
            Option<ExecInput>,
            ExecOutputStream,
            Option<ExecOutputStream>,
            Option<Resize>,
        ) = match terminal {
            Some(master) => {
                let clone = || master.try_clone().map_err(io_error("sharing the terminal of an exec in"));
                let (reader, writer, sizer) = (clone()?, clone()?, master);
                let resize = move |columns: u16, rows: u16| {
                    let size = rustix::termios::Winsize {
                        ws_row: rows,
                        ws_col: columns,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    let _ = rustix::termios::tcsetwinsize(&sizer, size);
                };
                let stdin: Option<ExecInput> =
                    options.stdin.then(|| Box::new(tokio::fs::File::from_std(writer)) as _);
                (stdin, Box::new(tokio::fs::File::from_std(reader)), None, Some(Box::new(resize)))
            }
            None => (
                child.stdin.take().map(|stdin| Box::new(stdin) as _),
                Box::new(child.stdout.take().expect("piped")),
                child.stderr.take().map(|stderr| Box::new(stderr) as _),
                None,
            ),
        };
        let exit = Box::pin(async move { child.wait().await.ok().and_then(|status| status.code()) });
        Ok(ExecProcess { stdin, stdout, stderr, resize, exit, kill })
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
        let state: ShimState = read_json(&self.container_dir(id).join("state.json"))
            .ok_or_else(|| RuntimeError::NoContainer { id: id.clone() })?;
        Ok(group_stats(state.pid))
    }

    fn log_path(&self, pod: &SandboxConfig, container: &str, attempt: u32) -> PathBuf {
        self.logs_dir(pod).join(container).join(format!("{attempt}.log"))
    }
}

impl ProcessRuntime {
    /// `argv` as a command of the container `id`: its directory, the program, the command.
    fn exec_command<'a>(
        &self,
        id: &ContainerId,
        argv: &'a [String],
    ) -> Result<(PathBuf, &'a str, tokio::process::Command), RuntimeError> {
        let dir = self.container_dir(id);
        let spec: ShimSpec =
            read_json(&dir.join("spec.json")).ok_or_else(|| RuntimeError::NoContainer { id: id.clone() })?;
        let Some((program, args)) = argv.split_first() else {
            return Err(RuntimeError::InvalidContainer { message: "exec needs a command".into() });
        };
        let command = spec.command(program, args);
        Ok((dir, program, command))
    }

    /// Starts the container's shim and waits until it reports the container started (or not).
    /// Lays out a new container's directory: its root, the volumes linked where they are
    /// mounted, its working directory, and the shim's spec.
    fn prepare_container(
        &self,
        sandbox: &Sandbox,
        config: &ContainerConfig,
        argv: Vec<String>,
        dir: &Path,
    ) -> Result<(), RuntimeError> {
        let root = dir.join("root");
        create_dir(&root)?;
        // Volumes first: a working directory inside a volume, or equal to one, is then the
        // volume's directory rather than an empty one in its way.
        for mount in &config.mounts {
            let link = root.join(mount.container_path.trim_start_matches('/'));
            if let Some(parent) = link.parent() {
                create_dir(parent)?;
            }
            std::os::unix::fs::symlink(&mount.host_path, &link).map_err(|source| RuntimeError::Io {
                action: "linking a volume at",
                path: link.clone(),
                source,
            })?;
        }
        let working_dir = match &config.working_dir {
            Some(path) => root.join(path.trim_start_matches('/')),
            None => root.clone(),
        };
        create_dir(&working_dir)?;
        let spec = ShimSpec {
            argv,
            env: container_env(config, &root),
            working_dir,
            log_path: self.log_path(&sandbox.config, &config.name, config.attempt),
            log_limits: self.config.log_limits,
            resolv_conf: Some(sandbox.dir.join(RESOLV_CONF)).filter(|path| path.is_file()),
        };
        write_json(&dir.join("spec.json"), &spec)
    }

    async fn spawn_shim(&self, id: &ContainerId, dir: &Path) -> Result<(), RuntimeError> {
        let shim_log = std::fs::File::create(dir.join("shim.log")).map_err(|source| RuntimeError::Io {
            action: "creating",
            path: dir.join("shim.log"),
            source,
        })?;
        let mut command = tokio::process::Command::new(&self.config.shim[0]);
        command
            .args(&self.config.shim[1..])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            // Its own group: a signal to the agent's group (a terminal's Ctrl-C) leaves pods be.
            .process_group(0);
        let mut child = command.spawn().map_err(|source| RuntimeError::Io {
            action: "starting the shim for",
            path: dir.to_owned(),
            source,
        })?;
        let stdout = child.stdout.take().expect("piped");
        self.children.lock().expect("children lock").insert(id.clone(), child);
        // The shim writes one line once `state.json` or `exit.json` is in place.
        let mut ready = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        let started = tokio::time::timeout(SHIM_START_TIMEOUT, reader.read_line(&mut ready)).await;
        if !matches!(started, Ok(Ok(1..))) {
            tracing::warn!(container = %id, "the shim did not report its container started");
        }
        Ok(())
    }
}

/// SIGKILLs every container a process runtime over `state_dir` runs, and their shims, without
/// recording anything: for tearing down a whole local cluster, not for stopping pods. Shims are
/// found by their command line, so even one that had not yet written its state is found.
pub fn kill_all(state_dir: &Path) {
    let pods = state_dir.join("pods");
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    let pids: Vec<i32> =
        entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse().ok()).collect();
    let shims: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).filter(|arg| !arg.is_empty()).collect();
            args.len() >= 3
                && args[args.len() - 2] == b"shim"
                && Path::new(std::ffi::OsStr::from_bytes(args[args.len() - 1])).starts_with(&pods)
        })
        .collect();
    for shim in shims {
        // The shim's children lead the containers' process groups.
        for child in pids.iter().filter(|pid| parent_of(**pid) == Some(shim)) {
            if let Some(group) = Pid::from_raw(*child) {
                let _ = rustix::process::kill_process_group(group, Signal::KILL);
            }
        }
        if let Some(shim) = Pid::from_raw(shim) {
            let _ = rustix::process::kill_process(shim, Signal::KILL);
        }
    }
}

/// A process's parent (field 4 of /proc/<pid>/stat).
fn parent_of(pid: i32) -> Option<i32> {
    proc_stat_fields(pid)?.get(1)?.parse().ok()
}

/// The environment a container gets: its own, plus `PATH` and `HOME` where it sets none.
fn container_env(config: &ContainerConfig, root: &Path) -> Vec<(String, String)> {
    let mut env = config.env.clone();
    let has = |name: &str| config.env.iter().any(|(key, _)| key == name);
    if !has("PATH") {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        env.push(("PATH".into(), path));
    }
    if !has("HOME") {
        env.push(("HOME".into(), root.display().to_string()));
    }
    env
}

/// `registry.example/team/web:1.2@sha256:…` → `web`.
fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// A new pseudo-terminal: the master side, and the slave side opened for a command. The
/// command gets no controlling terminal (that needs `setsid` and `TIOCSCTTY` between fork and
/// exec, which safe Rust cannot do), so shells run without job control.
fn open_pty() -> std::io::Result<(std::fs::File, std::fs::File)> {
    use rustix::pty::OpenptFlags;
    use std::os::unix::fs::OpenOptionsExt as _;
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(std::ffi::OsStr::from_bytes(name.as_bytes()))?;
    Ok((std::fs::File::from(master), slave))
}

/// An exit status as Kubernetes reports it: the code, or 128 + the signal, and the signal.
pub fn exit_code_of(status: std::process::ExitStatus) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(signal)) => (128 + signal, Some(signal)),
        (None, None) => (-1, None),
    }
}

async fn read_bounded(mut reader: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read @ 1..) = reader.read(&mut buffer).await {
        let room = EXEC_OUTPUT_BYTES_MAX.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..read.min(room)]);
    }
    kept
}

/// A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat).
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    proc_stat_fields(pid)?.get(19)?.parse().ok()
}

/// The fields of /proc/<pid>/stat after the command name: field 3 (state) is index 0.
fn proc_stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; it ends at the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU time and resident memory of every process in a process group.
fn group_stats(group: i32) -> ContainerStats {
    let ticks_per_second = rustix::param::clock_ticks_per_second().max(1);
    let page_bytes = rustix::param::page_size() as u64;
    let mut stats = ContainerStats::default();
    let Ok(entries) = std::fs::read_dir("/proc") else { return stats };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let Some(fields) = proc_stat_fields(pid) else { continue };
        // Index 2 is the process group, 11 and 12 user and system time, 21 resident pages.
        if fields.get(2).and_then(|pgrp| pgrp.parse::<i32>().ok()) != Some(group) {
            continue;
        }
        let number =
            |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
        stats.cpu_usage_ns += (number(11) + number(12)) * 1_000_000_000 / ticks_per_second;
        stats.memory_bytes += number(21) * page_bytes;
    }
    stats
}

fn create_dir(path: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(path).map_err(|source| RuntimeError::Io {
        action: "creating",
        path: path.to_owned(),
        source,
    })
}

fn remove_dir(path: &Path) -> Result<(), RuntimeError> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(RuntimeError::Io { action: "removing", path: path.to_owned(), source: error })
        }
        _ => Ok(()),
    }
}

fn read_dir_names(path: &Path) -> Result<Vec<String>, RuntimeError> {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            Ok(entries.flatten().filter_map(|entry| entry.file_name().into_string().ok()).collect())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(RuntimeError::Io { action: "listing", path: path.to_owned(), source }),
    }
}

/// Reads a JSON state file; a missing or torn file reads as absent.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes a JSON state file atomically: readers see the old file or the new, never a part.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let temporary = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(value).expect("state serializes");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|source| RuntimeError::Io { action: "writing", path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pod CIDRs parse, normalize to their network, and hand out neither the network, the node's
    // first address nor broadcast.
    #[test]
    fn pod_cidr() {
        let cidr: Ipv4Cidr = "127.1.0.9/29".parse().unwrap();
        assert_eq!(cidr.to_string(), "127.1.0.8/29");
        let addresses: Vec<String> = cidr.pod_addresses().map(|ip| ip.to_string()).collect();
        assert_eq!(addresses, ["127.1.0.10", "127.1.0.11", "127.1.0.12", "127.1.0.13", "127.1.0.14"]);
        assert!("127.1.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("127.1.0.0/31".parse::<Ipv4Cidr>().is_err());
        assert!("::1/64".parse::<Ipv4Cidr>().is_err());
    }

    // Image references reduce to the name the image directory is keyed by.
    #[test]
    fn image_names() {
        for (image, name) in [
            ("web", "web"),
            ("web:1.2", "web"),
            ("registry.example:5000/team/web:1.2", "web"),
            ("team/web@sha256:abc", "web"),
        ] {
            assert_eq!(image_name(image), name, "{image}");
        }
    }

    // Our own start time is readable and stable; a pid that does not exist has none.
    #[test]
    fn start_ticks() {
        let me = std::process::id() as i32;
        assert!(process_start_ticks(me).is_some());
        assert_eq!(process_start_ticks(me), process_start_ticks(me));
        assert_eq!(process_start_ticks(i32::MAX), None);
    }
}
