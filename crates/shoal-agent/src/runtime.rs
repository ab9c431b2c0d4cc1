//! The contract between the agent and whatever runs containers, modelled on Kubernetes' CRI:
//! a pod is a *sandbox* (its IP, its directory) holding *containers* (one process tree each).
//!
//! The agent decides (which container to start, when to stop one); a runtime only does what
//! it is told and reports what it observes. Every runtime runs the suite in [`conformance`].
//!
//! # To ensure correctness, a runtime must
//! - give each live sandbox an IP no other live sandbox of this runtime has;
//! - start a container's process with exactly the given program, arguments, environment and
//!   working directory, stdin closed, and its stdout and stderr appended to
//!   [`Runtime::log_path`] in the CRI log format ([`log_file`]);
//! - treat a container as one process tree: stopping it signals every process of the tree, and
//!   when its main process exits the rest of the tree is killed;
//! - on [`Runtime::stop_container`], send SIGTERM, wait up to the grace period, then SIGKILL,
//!   and return only once the container has exited;
//! - record every exit (code, or the signal that ended it, and the time) durably, so that an
//!   exit is reported even if it happened while the agent was not running;
//! - keep containers running when the agent exits, and report them from
//!   [`Runtime::list_containers`] to a new instance over the same state, which can then stop
//!   and wait for them as if it had started them (re-adoption);
//! - never report `Running` for a container whose process has exited;
//! - not list a container whose [`Runtime::start_container`] has not returned, rather than
//!   report it as exited while it starts (other pods' workers list containers meanwhile).

pub mod conformance;
pub mod log_file;
pub mod process;

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Identifies a container within one runtime: `<pod uid>/<container name>.<attempt>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    pub fn new(pod_uid: &str, name: &str, attempt: u32) -> Self {
        Self(format!("{pod_uid}/{name}.{attempt}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pod uid, the container name and the attempt, if the id is well formed.
    pub fn parts(&self) -> Option<(&str, &str, u32)> {
        let (pod_uid, rest) = self.0.split_once('/')?;
        let (name, attempt) = rest.rsplit_once('.')?;
        Some((pod_uid, name, attempt.parse().ok()?))
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a sandbox needs: who the pod is, and how its containers resolve names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's resolver; `None` keeps the node's. A runtime that cannot give the pod a
    /// resolver of its own (the process runtime without root) leaves the node's in place.
    #[serde(default)]
    pub dns: Option<DnsConfig>,
}

/// A pod's resolver, as CRI's DNSConfig: what its containers' `/etc/resolv.conf` says.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    /// The resolv.conf text.
    pub fn resolv_conf(&self) -> String {
        let mut text = String::new();
        for server in &self.servers {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// A sandbox the runtime holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sandbox {
    pub config: SandboxConfig,
    pub ip: Ipv4Addr,
    /// A directory private to the pod, for its volumes.
    pub dir: PathBuf,
}

/// A filesystem path of the node exposed to a container at `container_path`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// One run of one container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    pub name: String,
    /// 0 for the first run of this container in this pod, then one more per restart.
    pub attempt: u32,
    pub image: String,
    /// The program and its arguments (Kubernetes' `command` then `args`, expanded). Empty means
    /// the image's entrypoint, where the runtime has such a thing.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
}

/// What a runtime observes of a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContainerState {
    Running { started_at: SystemTime },
    Exited(Exit),
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    /// When it started, if it ever did.
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
    /// The exit code as Kubernetes reports it: the process's code, or 128 + the signal.
    pub exit_code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Why, in Kubernetes' words, when it is not a plain exit: `StartError`, `OOMKilled`, `Error`.
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// A container the runtime holds, as [`Runtime::list_containers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: ContainerId,
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
}

/// The result of a command run in a container (probes, hooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` if the command did not finish within its timeout (it was killed).
    pub exit_code: Option<i32>,
    /// The combined output, at most [`EXEC_OUTPUT_BYTES_MAX`] bytes of it.
    pub output: Vec<u8>,
}

/// Output of an exec kept for the caller (a probe's message); the rest is discarded.
pub const EXEC_OUTPUT_BYTES_MAX: usize = 10 * 1024;

/// A stream an exec'd command reads from.
pub type ExecInput = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
/// A stream an exec'd command writes to.
pub type ExecOutputStream = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
/// Sets a terminal's size: columns, rows.
pub type Resize = Box<dyn Fn(u16, u16) + Send + Sync>;

/// An interactive command in a container (`kubectl exec`): its streams, and its end.
pub struct ExecProcess {
    /// Present when stdin was asked for; dropping it closes the command's stdin.
    pub stdin: Option<ExecInput>,
    /// Standard output, or the terminal's output (stdout and stderr merged) with a TTY.
    pub stdout: ExecOutputStream,
    /// Standard error; `None` with a TTY.
    pub stderr: Option<ExecOutputStream>,
    /// Sets the terminal's size; `None` without a TTY.
    pub resize: Option<Resize>,
    /// Resolves to the exit code (`None` if the command was killed by a signal).
    pub exit: std::pin::Pin<Box<dyn Future<Output = Option<i32>> + Send>>,
    /// Kills the command; for a client that went away.
    pub kill: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess").field("tty", &self.resize.is_some()).finish_non_exhaustive()
    }
}

/// How an interactive command is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecOptions {
    pub stdin: bool,
    pub tty: bool,
}

/// CPU and memory of one container, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContainerStats {
    /// CPU time used since the container started, user and system, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Resident memory of its processes, in bytes.
    pub memory_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container cannot be created as specified; not worth retrying unchanged.
    #[error("{message}")]
    InvalidContainer { message: String },
    #[error("no container {id}")]
    NoContainer { id: ContainerId },
    #[error("no sandbox for pod {pod_uid}")]
    NoSandbox { pod_uid: String },
    #[error("the pod CIDR {cidr} has no free address")]
    AddressesExhausted { cidr: String },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs pods' containers. See the module documentation for the contract.
pub trait Runtime: Send + Sync + 'static {
    /// Creates the pod's sandbox, or returns the one it already has.
    fn run_sandbox(
        &self,
        config: &SandboxConfig,
    ) -> impl Future<Output = Result<Sandbox, RuntimeError>> + Send;

    /// Removes a sandbox whose containers have all been stopped, with their state and logs.
    fn remove_sandbox(&self, pod_uid: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Every sandbox the runtime holds.
    fn list_sandboxes(&self) -> impl Future<Output = Result<Vec<Sandbox>, RuntimeError>> + Send;

    /// Starts a container in the sandbox; returns once its process runs (or failed to start:
    /// then the container exists and is `Exited` with reason `StartError`).
    fn start_container(
        &self,
        sandbox: &Sandbox,
        config: &ContainerConfig,
    ) -> impl Future<Output = Result<ContainerId, RuntimeError>> + Send;

    /// SIGTERM, then SIGKILL after `grace`; returns how the container ended.
    fn stop_container(
        &self,
        id: &ContainerId,
        grace: Duration,
    ) -> impl Future<Output = Result<Exit, RuntimeError>> + Send;

    /// Resolves when the container has exited.
    fn wait_container(&self, id: &ContainerId) -> impl Future<Output = Result<Exit, RuntimeError>> + Send;

    /// Forgets an exited container and its log.
    fn remove_container(&self, id: &ContainerId) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Every container the runtime holds, running or exited.
    fn list_containers(&self) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;

    /// The containers of one pod, running or exited: what `list_containers` lists for it,
    /// without the cost of looking at every other pod's.
    fn list_pod_containers(
        &self,
        pod_uid: &str,
    ) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;

    /// Runs `argv` as the container would run it (its environment and working directory),
    /// killing it after `timeout`.
    fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecOutput, RuntimeError>> + Send;

    /// Starts `argv` as the container would run it, with its streams handed to the caller.
    fn exec_interactive(
        &self,
        id: &ContainerId,
        argv: &[String],
        options: ExecOptions,
    ) -> impl Future<Output = Result<ExecProcess, RuntimeError>> + Send;

    /// CPU and memory of a running container.
    fn container_stats(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<ContainerStats, RuntimeError>> + Send;

    /// Where the container's output goes (it may not exist yet).
    fn log_path(&self, pod: &SandboxConfig, container: &str, attempt: u32) -> PathBuf;
}
