//! `LocalCluster`: store members as `shoal server` child processes on loopback, for `shoal up`
//! and for tests that kill, pause, restart, wipe and add members the way an operator would.
//!
//! Each member is its own process, so its faults are real ones: SIGKILL loses whatever was
//! not yet fsynced, SIGSTOP freezes a member with its timers and connections mid-flight. The
//! members share one PKI directory, filled before the first launch so that members starting
//! at once never race to write the CA; each has its own data directory and log file
//! (`<dir>/<name>/`, `<dir>/<name>.log`).
//!
//! Every wait is bounded by a named timeout (below, and in `admin`), and a member that fails
//! to come up is reported with the tail of its log. `admin` holds what the harness asks the
//! members over etcd's API; `ports` finds free ports.

mod admin;
mod agents;
mod ports;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use shoal_pki::{ClusterCa, TlsFiles};
use tokio::process::{Child, Command};
use tokio::time::Instant;

pub use self::admin::{CATCH_UP_TIMEOUT, CONNECT_TIMEOUT, READY_TIMEOUT, RPC_TIMEOUT};
pub use self::agents::{AGENT_LINK_ID_BASE, Agent};
use self::ports::free_port;

/// How long a launched member gets to accept client connections.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a member gets to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a killed process gets to be reaped; SIGKILL cannot be caught, so this is ample.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Launches before giving up when a member finds its port taken. Founding members get fresh
/// ports for each attempt; a restarted member keeps its own (its peer URL is in the
/// membership), so it waits `PORT_RETRY_PAUSE` for the port to be released.
const LAUNCH_ATTEMPTS: u32 = 3;
const PORT_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// The most members a cluster may have, added members included; Raft clusters beyond 7
/// voters only get slower.
pub const MAX_MEMBERS: usize = 9;
/// The seed of the agent links' fault plan: their random decisions replay from it.
const AGENT_LINK_SEED: u64 = 1;
/// Lines of a member's log quoted when it fails.
const LOG_TAIL_LINES: usize = 40;

/// Where members listen.
#[derive(Clone, Copy, Debug)]
pub enum Ports {
    /// Free ports found at launch, below the kernel's ephemeral range: outgoing connections
    /// never take a port there, so a dialer retrying a stopped member's port can neither grab
    /// it nor connect to itself through it. For new clusters only: a member's peer URL is part
    /// of the membership, so a cluster founded on dynamic ports cannot be started again.
    Dynamic,
    /// Member `i` (from 0) listens for clients on `base + 10·i` and for peers on the next port.
    Base(u16),
}

#[derive(Clone, Debug)]
pub struct LocalClusterConfig {
    /// The `shoal` executable (`env!("CARGO_BIN_EXE_shoal")` in integration tests).
    pub exe: PathBuf,
    /// Holds `pki/`, each member's data directory and each member's log.
    pub dir: PathBuf,
    pub cluster_token: String,
    pub ports: Ports,
    /// Extra `shoal server` flags for every member, e.g. `--snapshot-every-entries 100`.
    pub server_args: Vec<String>,
    /// Extra environment for every member, e.g. `SHOAL_LOG` to log more.
    pub server_env: Vec<(String, String)>,
}

impl LocalClusterConfig {
    pub fn new(exe: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        LocalClusterConfig {
            exe: exe.into(),
            dir: dir.into(),
            cluster_token: "shoal".into(),
            ports: Ports::Dynamic,
            server_args: Vec::new(),
            server_env: Vec::new(),
        }
    }
}

/// Where one member lives. Fixed for the member's life: a restart or a re-add after a wipe
/// keeps its name, ports and paths.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("https://{}", self.client_addr)
    }

    pub fn peer_url(&self) -> String {
        format!("https://{}", self.peer_addr)
    }

    /// The Kubernetes API of this member.
    pub fn api_url(&self) -> String {
        format!("https://{}", self.api_addr)
    }
}

/// Whether a member's process runs. A paused process still exists but answers nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Never started, or killed, stopped or exited since.
    Down,
    Running,
    Paused,
}

/// A cluster of `shoal server` processes. Dropping it kills every process it started.
pub struct LocalCluster {
    config: LocalClusterConfig,
    pki_dir: PathBuf,
    ca: ClusterCa,
    admin: TlsFiles,
    slots: Vec<Slot>,
    agents: Vec<agents::AgentSlot>,
    /// The fault plan of the links between agents and servers, for agents started through a
    /// forwarder (`start_agent_through_link`).
    agent_link_faults: shoal_chaos::Faults,
    /// Pods of agent `i` get addresses from `127.<this>.<i + 1>.0/24`: random for clusters on
    /// dynamic ports, so that clusters of concurrent tests do not hand out the same addresses.
    pod_network_octet: u8,
}

struct Slot {
    member: Member,
    /// `--initial-cluster-state`: `new` for founders, `existing` for members that join.
    cluster_state: &'static str,
    initial_cluster: String,
    child: Option<Child>,
    paused: bool,
    /// The length of the log when the current process started: its own lines follow.
    log_offset: u64,
}

/// Why a launched member did not come up.
enum LaunchFailure {
    /// Another process holds one of its ports; another attempt may succeed.
    PortInUse(anyhow::Error),
    Failed(anyhow::Error),
}

impl LocalCluster {
    /// Creates the cluster's directory and its PKI (the CA and the admin's client
    /// certificate), reusing them if they exist. Starts nothing.
    pub fn new(config: LocalClusterConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.dir).with_context(|| format!("creating {}", config.dir.display()))?;
        let pki_dir = config.dir.join("pki");
        let ca = crate::certs::ensure_ca(&pki_dir, &config.cluster_token)?;
        let admin = crate::certs::ensure_admin_cert(&ca, &pki_dir)?;
        crate::certs::ensure_kubelet_client_cert(&ca, &pki_dir)?;
        // Created here, before any member starts, so concurrent first starts cannot race.
        crate::certs::ensure_admin_token(&pki_dir)?;
        shoal_apiserver::secret_box::SecretBox::load_or_generate(
            &pki_dir.join(crate::certs::ENCRYPTION_KEY_FILE),
        )?;
        let pod_network_octet = match config.ports {
            // Above 127.96.0.0/16, the default service range, and the tests' own ranges below.
            Ports::Dynamic => rand::random_range(100..=250),
            Ports::Base(_) => 1,
        };
        Ok(LocalCluster {
            config,
            pki_dir,
            ca,
            admin,
            slots: Vec::new(),
            agents: Vec::new(),
            agent_link_faults: shoal_chaos::Faults::new(AGENT_LINK_SEED),
            pod_network_octet,
        })
    }

    /// Founds a cluster of `members` members named `s1`, `s2`, … and waits until each accepts
    /// client connections. `wait_ready` then waits for a leader.
    pub async fn start(&mut self, members: usize) -> anyhow::Result<()> {
        ensure!(self.slots.is_empty(), "the cluster was already started");
        ensure!((1..=MAX_MEMBERS).contains(&members), "a cluster has 1 to {MAX_MEMBERS} members");
        let mut attempt = 1;
        loop {
            self.plan_founders(members)?;
            for i in 0..members {
                self.launch(i)?;
            }
            let mut failure = None;
            for i in 0..members {
                if let Err(error) = self.wait_listening_once(i).await {
                    failure = Some(error);
                    break;
                }
            }
            match failure {
                None => return Ok(()),
                Some(LaunchFailure::PortInUse(error))
                    if matches!(self.config.ports, Ports::Dynamic) && attempt < LAUNCH_ATTEMPTS =>
                {
                    tracing::warn!(attempt, %error, "a member's port was taken; founding again on fresh ports");
                    self.discard_founders().await?;
                    attempt += 1;
                }
                Some(LaunchFailure::PortInUse(error) | LaunchFailure::Failed(error)) => return Err(error),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn member(&self, i: usize) -> &Member {
        &self.slot(i).member
    }

    pub fn state(&self, i: usize) -> ProcessState {
        let slot = self.slot(i);
        match (&slot.child, slot.paused) {
            (None, _) => ProcessState::Down,
            (Some(_), false) => ProcessState::Running,
            (Some(_), true) => ProcessState::Paused,
        }
    }

    /// The process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.slot(i).child.as_ref().and_then(Child::id)
    }

    /// Indices of the members whose process runs and is not paused.
    pub fn running(&self) -> Vec<usize> {
        (0..self.len()).filter(|i| self.state(*i) == ProcessState::Running).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    pub fn pki_dir(&self) -> &Path {
        &self.pki_dir
    }

    /// The admin's client certificate, which the members accept for every request.
    /// Writes `<dir>/kubeconfig`, pointing kubectl at member `i`'s API as the admin.
    pub fn write_kubeconfig(&self, i: usize) -> anyhow::Result<PathBuf> {
        let path = self.config.dir.join("kubeconfig");
        crate::kubeconfig::write(&path, &self.member(i).api_url(), &self.admin)?;
        Ok(path)
    }

    pub fn admin_tls(&self) -> &TlsFiles {
        &self.admin
    }

    /// etcdctl's connection flags for the running members: `--endpoints=…` and the admin's
    /// certificate. Add `ETCDCTL_API=3` to its environment.
    pub fn etcdctl_args(&self) -> Vec<String> {
        let endpoints = self.running().iter().map(|i| self.member(*i).client_url()).collect::<Vec<_>>();
        self.etcdctl_args_for(&endpoints)
    }

    /// etcdctl's connection flags for member `i` alone.
    pub fn etcdctl_args_of(&self, i: usize) -> Vec<String> {
        self.etcdctl_args_for(&[self.member(i).client_url()])
    }

    fn etcdctl_args_for(&self, endpoints: &[String]) -> Vec<String> {
        vec![
            format!("--endpoints={}", endpoints.join(",")),
            format!("--cacert={}", self.admin.ca.display()),
            format!("--cert={}", self.admin.cert.display()),
            format!("--key={}", self.admin.key.display()),
        ]
    }

    /// SIGKILL: the member stops at once, losing whatever it had not made durable.
    pub async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let name = self.member(i).name.clone();
        let slot = self.slot_mut(i);
        let mut child = slot.child.take().with_context(|| format!("member {name} is not running"))?;
        slot.paused = false;
        child.start_kill().with_context(|| format!("killing member {name}"))?;
        tokio::time::timeout(REAP_TIMEOUT, child.wait())
            .await
            .with_context(|| format!("member {name} still exists {REAP_TIMEOUT:?} after SIGKILL"))?
            .with_context(|| format!("reaping member {name}"))?;
        Ok(())
    }

    /// SIGTERM: the member shuts down cleanly; killed if it has not exited after `STOP_TIMEOUT`.
    pub async fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal_stop(i).await?;
        self.await_stopped(i, Instant::now() + STOP_TIMEOUT).await
    }

    /// Kills every agent and pod, then SIGTERM to every member at once and waits for all of
    /// them (`STOP_TIMEOUT` in all).
    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        self.kill_agents_and_pods();
        let live = (0..self.len()).filter(|i| self.state(*i) != ProcessState::Down).collect::<Vec<_>>();
        for i in &live {
            self.signal_stop(*i).await?;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for i in live {
            self.await_stopped(i, deadline).await?;
        }
        Ok(())
    }

    async fn signal_stop(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "TERM").await?;
        // A stopped process acts on SIGTERM only once it runs again.
        if self.slot(i).paused {
            self.signal(i, "CONT").await?;
            self.slot_mut(i).paused = false;
        }
        Ok(())
    }

    async fn await_stopped(&mut self, i: usize, deadline: Instant) -> anyhow::Result<()> {
        let name = self.member(i).name.clone();
        let Some(child) = self.slot_mut(i).child.as_mut() else { return Ok(()) };
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => {
                status.with_context(|| format!("reaping member {name}"))?;
                self.slot_mut(i).child = None;
                Ok(())
            }
            Err(_elapsed) => {
                tracing::warn!(member = %name, "member ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
                self.kill(i).await
            }
        }
    }

    /// SIGSTOP: the process freezes (timers, connections and all) until `resume`.
    pub async fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        ensure!(self.state(i) == ProcessState::Running, "member {} is not running", self.member(i).name);
        self.signal(i, "STOP").await?;
        self.slot_mut(i).paused = true;
        Ok(())
    }

    /// SIGCONT: a paused member goes on where it stopped.
    pub async fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        ensure!(self.state(i) == ProcessState::Paused, "member {} is not paused", self.member(i).name);
        self.signal(i, "CONT").await?;
        self.slot_mut(i).paused = false;
        Ok(())
    }

    /// Signals through kill(1): the workspace forbids `unsafe`, which `libc::kill` needs.
    async fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let name = &self.member(i).name;
        let pid = self.slot(i).child.as_ref().and_then(Child::id);
        let pid = pid.with_context(|| format!("member {name} is not running"))?;
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .await
            .context("running kill(1)")?;
        ensure!(status.success(), "kill -s {signal} {pid} (member {name}) failed: {status}");
        Ok(())
    }

    /// Starts a member that is down again, on its data directory, and waits until it accepts
    /// client connections. A running member is stopped first.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.state(i) != ProcessState::Down {
            self.stop(i).await?;
        }
        self.launch_and_wait(i).await
    }

    /// Deletes a stopped member's data directory: its next start is a first start.
    pub fn wipe(&mut self, i: usize) -> anyhow::Result<()> {
        let member = self.member(i);
        ensure!(self.state(i) == ProcessState::Down, "member {} must be down to be wiped", member.name);
        match std::fs::remove_dir_all(&member.data_dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("removing {}", member.data_dir.display()))
            }
            _ => Ok(()),
        }
    }

    /// Reserves ports, paths and a certificate for a new member `name` without telling the
    /// cluster. Then add it (`member_add`, or etcdctl) and `join` it.
    pub fn plan_member(&mut self, name: &str) -> anyhow::Result<usize> {
        ensure!(self.len() < MAX_MEMBERS, "a cluster has at most {MAX_MEMBERS} members");
        ensure!(self.slots.iter().all(|slot| slot.member.name != name), "there is already a member {name}");
        let i = self.len();
        let member = self.member_plan(i, name)?;
        crate::certs::ensure_member_cert(&self.ca, &self.pki_dir, name, &[])?;
        self.slots.push(Slot::new(member, "existing", String::new()));
        Ok(i)
    }

    /// Starts member `i`, planned with `plan_member` and added to the membership, so that it
    /// joins the running cluster; waits until it accepts client connections.
    pub async fn join(&mut self, i: usize) -> anyhow::Result<()> {
        ensure!(self.state(i) == ProcessState::Down, "member {} is already running", self.member(i).name);
        let mut initial_cluster = self
            .running()
            .into_iter()
            .filter(|j| *j != i)
            .map(|j| format!("{}={}", self.member(j).name, self.member(j).peer_url()))
            .collect::<Vec<_>>();
        initial_cluster.push(format!("{}={}", self.member(i).name, self.member(i).peer_url()));
        let slot = self.slot_mut(i);
        slot.cluster_state = "existing";
        slot.initial_cluster = initial_cluster.join(",");
        self.launch_and_wait(i).await
    }

    /// The last lines member `i` logged, for error messages.
    pub fn log_tail(&self, i: usize) -> String {
        let member = self.member(i);
        let log = std::fs::read_to_string(&member.log).unwrap_or_default();
        let lines = log.lines().collect::<Vec<_>>();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", member.log.display())
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.slots.len(), "member index {i} out of range (cluster of {})", self.slots.len());
        &self.slots[i]
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        assert!(i < self.slots.len(), "member index {i} out of range (cluster of {})", self.slots.len());
        &mut self.slots[i]
    }

    fn plan_founders(&mut self, members: usize) -> anyhow::Result<()> {
        let plans = (0..members)
            .map(|i| self.member_plan(i, &format!("s{}", i + 1)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let initial_cluster = plans
            .iter()
            .map(|member| format!("{}={}", member.name, member.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for member in &plans {
            crate::certs::ensure_member_cert(&self.ca, &self.pki_dir, &member.name, &[])?;
        }
        self.slots =
            plans.into_iter().map(|member| Slot::new(member, "new", initial_cluster.clone())).collect();
        Ok(())
    }

    fn member_plan(&self, i: usize, name: &str) -> anyhow::Result<Member> {
        let (client_port, peer_port, api_port) = match self.config.ports {
            Ports::Dynamic => (free_port()?, free_port()?, free_port()?),
            Ports::Base(base) => {
                let offset = u16::try_from(10 * i).ok();
                let client = offset.and_then(|offset| base.checked_add(offset));
                let ports =
                    client.and_then(|client| Some((client, client.checked_add(1)?, client.checked_add(2)?)));
                ports.with_context(|| format!("member {name}'s ports would pass 65535 (base port {base})"))?
            }
        };
        Ok(Member {
            name: name.to_owned(),
            client_addr: SocketAddr::from(([127, 0, 0, 1], client_port)),
            peer_addr: SocketAddr::from(([127, 0, 0, 1], peer_port)),
            api_addr: SocketAddr::from(([127, 0, 0, 1], api_port)),
            data_dir: self.config.dir.join(name),
            log: self.config.dir.join(format!("{name}.log")),
        })
    }

    /// Kills the founders of a failed attempt and deletes what they wrote: their membership
    /// names the old ports.
    async fn discard_founders(&mut self) -> anyhow::Result<()> {
        for i in 0..self.len() {
            if self.state(i) != ProcessState::Down {
                self.kill(i).await?;
            }
            self.wipe(i)?;
        }
        self.slots.clear();
        Ok(())
    }

    fn launch(&mut self, i: usize) -> anyhow::Result<()> {
        let slot = self.slot(i);
        let member = &slot.member;
        ensure!(slot.child.is_none(), "member {} is already running", member.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .with_context(|| format!("opening {}", member.log.display()))?;
        let log_offset = log.metadata().map_or(0, |metadata| metadata.len());
        let child = Command::new(&self.config.exe)
            .arg("server")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .arg("--pki-dir")
            .arg(&self.pki_dir)
            .args(["--listen-client", &member.client_addr.to_string()])
            .args(["--listen-peer", &member.peer_addr.to_string()])
            .args(["--listen-api", &member.api_addr.to_string()])
            .args(["--initial-cluster", &slot.initial_cluster])
            .args(["--initial-cluster-state", slot.cluster_state])
            .args(["--cluster-token", &self.config.cluster_token])
            .args(&self.config.server_args)
            .envs(self.config.server_env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting member {} ({})", member.name, self.config.exe.display()))?;
        let slot = self.slot_mut(i);
        slot.child = Some(child);
        slot.paused = false;
        slot.log_offset = log_offset;
        Ok(())
    }

    async fn launch_and_wait(&mut self, i: usize) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            self.launch(i)?;
            match self.wait_listening_once(i).await {
                Ok(()) => return Ok(()),
                Err(LaunchFailure::PortInUse(error)) if attempt < LAUNCH_ATTEMPTS => {
                    tracing::warn!(attempt, %error, "a member's port was taken; trying again");
                    tokio::time::sleep(PORT_RETRY_PAUSE).await;
                    attempt += 1;
                }
                Err(LaunchFailure::PortInUse(error) | LaunchFailure::Failed(error)) => return Err(error),
            }
        }
    }

    /// Waits until member `i` accepts client connections, or its process exits, or
    /// `STARTUP_TIMEOUT` passes.
    async fn wait_listening_once(&mut self, i: usize) -> Result<(), LaunchFailure> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = self.member(i).client_addr;
        loop {
            let listening = tokio::net::TcpStream::connect(addr).await.is_ok();
            let child = self.slot_mut(i).child.as_mut().expect("wait_listening_once follows launch");
            let exited = child.try_wait().map_err(|error| LaunchFailure::Failed(error.into()))?;
            if let Some(status) = exited {
                self.slot_mut(i).child = None;
                let name = &self.member(i).name;
                let error = anyhow::anyhow!("member {name} exited at start: {status}\n{}", self.log_tail(i));
                return Err(if self.process_log(i).contains("cannot listen on") {
                    LaunchFailure::PortInUse(error)
                } else {
                    LaunchFailure::Failed(error)
                });
            }
            if listening {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let name = &self.member(i).name;
                let error =
                    anyhow::anyhow!("member {name} did not listen on {addr} within {STARTUP_TIMEOUT:?}");
                return Err(LaunchFailure::Failed(error.context(self.log_tail(i))));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// What member `i`'s current (or last) process logged, without earlier runs' lines.
    pub fn process_log(&self, i: usize) -> String {
        let slot = self.slot(i);
        let log = std::fs::read(&slot.member.log).unwrap_or_default();
        let offset = usize::try_from(slot.log_offset).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(&log[offset..]).into_owned()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.kill_agents_and_pods();
        for slot in &mut self.slots {
            if let Some(child) = slot.child.as_mut() {
                // SIGKILL works on paused processes too; `kill_on_drop` reaps them.
                let _ = child.start_kill();
            }
        }
    }
}

impl Slot {
    fn new(member: Member, cluster_state: &'static str, initial_cluster: String) -> Self {
        Slot { member, cluster_state, initial_cluster, child: None, paused: false, log_offset: 0 }
    }
}
