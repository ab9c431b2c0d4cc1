//! Worker nodes of a `LocalCluster`: `shoal agent` child processes that join with a join
//! token, like agents on other machines, each with its own data directory, log, kubelet port
//! and pod CIDR.
//!
//! An agent may reach its server through a fault-injecting forwarder
//! (`start_agent_through_link`), whose plan the cluster holds (`agent_link_faults`): links
//! are numbered as the plan's members, [`AGENT_LINK_ID_BASE`] plus the agent's index on the
//! agent's side and 1 plus the member's index on the server's, so a test cuts agents off
//! from the control plane with `FaultPlan::partition` and heals them with `heal`.
//!
//! An agent that stops leaves its pods running (that is what lets a restarted agent adopt
//! them); tearing the whole cluster down kills the pods too, so nothing outlives it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::process::{Child, Command};

use shoal_chaos::{Faults, Link};

use crate::link_forwarder::LinkForwarder;

use super::{LocalCluster, Ports, REAP_TIMEOUT, free_port};

/// Whether a process exists and is not a zombie (a zombie starts nothing).
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()))
        .is_some_and(|state| state != 'Z')
}

/// How long a join token minted for a local agent stays valid.
const JOIN_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Agent `i`'s side of its link in `agent_link_faults` is this plus `i`; server `j`'s is `1 + j`.
pub const AGENT_LINK_ID_BASE: u64 = 1000;
/// The kubelet port of agent `i` in a cluster on fixed ports is this plus `i`.
const KUBELET_BASE_PORT: u16 = 10250;

/// One agent of the cluster.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub kubelet_addr: SocketAddr,
    pub pod_cidr: String,
    /// Extra `shoal agent` arguments it was started with.
    pub args: Vec<String>,
}

impl Agent {
    /// Where its process runtime keeps pods.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }
}

pub(super) struct AgentSlot {
    pub(super) agent: Agent,
    pub(super) child: Option<Child>,
    /// The forwarder it reaches its server through, if it was started through one.
    pub(super) forwarder: Option<LinkForwarder>,
}

impl LocalCluster {
    /// Starts a new agent named `name` that joins through member `server`'s API with a fresh
    /// join token; returns its index. It registers its Node in the background.
    pub async fn start_agent(&mut self, name: &str, server: usize, args: &[&str]) -> anyhow::Result<usize> {
        self.add_agent(name, server, args, false).await
    }

    /// `start_agent`, with the agent's every connection to its server passing a fault-injecting
    /// forwarder driven by `agent_link_faults` (the link [`LocalCluster::agent_link`]). The
    /// server's connections to the agent's kubelet port (logs, exec) do not pass it.
    pub async fn start_agent_through_link(
        &mut self,
        name: &str,
        server: usize,
        args: &[&str],
    ) -> anyhow::Result<usize> {
        self.add_agent(name, server, args, true).await
    }

    async fn add_agent(
        &mut self,
        name: &str,
        server: usize,
        args: &[&str],
        through_link: bool,
    ) -> anyhow::Result<usize> {
        ensure!(!self.agents.iter().any(|slot| slot.agent.name == name), "agent {name} exists already");
        let index = self.agents.len();
        let kubelet_port = match self.config.ports {
            Ports::Dynamic => free_port()?,
            Ports::Base(_) => KUBELET_BASE_PORT + u16::try_from(index).context("too many agents")?,
        };
        let agent = Agent {
            name: name.to_owned(),
            data_dir: self.config.dir.join(format!("agent-{name}")),
            log: self.config.dir.join(format!("agent-{name}.log")),
            kubelet_addr: SocketAddr::from(([127, 0, 0, 1], kubelet_port)),
            pod_cidr: format!("127.{}.{}.0/24", self.pod_network_octet, index + 1),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        let client = self.admin_client(server).await?;
        let token =
            crate::token::create_join_token(&client, JOIN_TOKEN_TTL, &format!("shoal up agent {name}"))
                .await
                .context("minting a join token")?;
        let forwarder = if through_link {
            let link = Link::new(AGENT_LINK_ID_BASE + index as u64, server as u64 + 1);
            let upstream = self.member(server).api_addr;
            let forwarder = LinkForwarder::start(upstream, link, self.agent_link_faults.clone())
                .await
                .context("starting the agent's link forwarder")?;
            Some(forwarder)
        } else {
            None
        };
        self.agents.push(AgentSlot { agent, child: None, forwarder });
        self.launch_agent(index, server, Some(&token))?;
        Ok(index)
    }

    pub fn agent(&self, i: usize) -> &Agent {
        &self.agents[i].agent
    }

    /// The process id of agent `i`, while it runs.
    pub fn agent_pid(&self, i: usize) -> Option<u32> {
        self.agents[i].child.as_ref().and_then(Child::id)
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// The fault plan of every agent's link (for agents started through one).
    pub fn agent_link_faults(&self) -> &Faults {
        &self.agent_link_faults
    }

    /// Agent `i`'s forwarder, if it was started through a link.
    pub fn agent_link(&self, i: usize) -> Option<&LinkForwarder> {
        self.agents[i].forwarder.as_ref()
    }

    /// Partitions agent `i`'s link both ways, or heals it: its bytes are held, not lost.
    pub fn cut_off_agent(&self, i: usize, cut: bool) -> anyhow::Result<()> {
        let link = self.agent_link(i).context("the agent was not started through a link")?.link();
        self.agent_link_faults.update_plan(|plan| {
            if cut {
                plan.partition(link.from, link.to);
            } else {
                plan.heal_link(link.from, link.to);
            }
        })?;
        Ok(())
    }

    /// SIGKILL to agent `i`: its pods keep running.
    pub async fn kill_agent(&mut self, i: usize) -> anyhow::Result<()> {
        let name = self.agents[i].agent.name.clone();
        let mut child =
            self.agents[i].child.take().with_context(|| format!("agent {name} is not running"))?;
        child.start_kill().with_context(|| format!("killing agent {name}"))?;
        tokio::time::timeout(REAP_TIMEOUT, child.wait())
            .await
            .with_context(|| format!("agent {name} still exists after SIGKILL"))??;
        Ok(())
    }

    /// The cluster DNS address its agents share: the default kube-dns address for a cluster on
    /// fixed ports (`shoal up`), one of its own for clusters on dynamic ports, so that the agents
    /// of concurrent test clusters do not share one address (SO_REUSEPORT would spread each
    /// cluster's queries over all of them). `127.<octet>.0.0/24` is no agent's pod range.
    pub fn cluster_dns(&self) -> std::net::IpAddr {
        match self.config.ports {
            Ports::Dynamic => std::net::Ipv4Addr::new(127, self.pod_network_octet, 0, 10).into(),
            Ports::Base(_) => std::net::Ipv4Addr::new(127, 96, 0, 10).into(),
        }
    }

    /// Starts agent `i` again (it already has its node credential), through member `server`
    /// (through its forwarder, whose server is fixed, if it has one).
    pub fn restart_agent(&mut self, i: usize, server: usize) -> anyhow::Result<()> {
        ensure!(self.agents[i].child.is_none(), "agent {} is running", self.agents[i].agent.name);
        self.launch_agent(i, server, None)
    }

    fn launch_agent(&mut self, i: usize, server: usize, token: Option<&str>) -> anyhow::Result<()> {
        let agent = self.agents[i].agent.clone();
        let server_url = match &self.agents[i].forwarder {
            Some(forwarder) => format!("https://{}", forwarder.local_addr()),
            None => self.member(server).api_url(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&agent.log)
            .with_context(|| format!("opening {}", agent.log.display()))?;
        let mut command = Command::new(&self.config.exe);
        command
            .arg("agent")
            .args(["--server", &server_url])
            .arg("--ca-cert")
            .arg(self.pki_dir.join("ca.crt"))
            .args(["--name", &agent.name])
            .arg("--data-dir")
            .arg(&agent.data_dir)
            .args(["--kubelet-listen", &agent.kubelet_addr.to_string()])
            .args(["--pod-cidr", &agent.pod_cidr])
            .args(&agent.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if !agent.args.iter().any(|arg| arg == "--cluster-dns") {
            command.args(["--cluster-dns", &self.cluster_dns().to_string()]);
        }
        if let Some(token) = token {
            command.env("SHOAL_JOIN_TOKEN", token);
        }
        let child = command.spawn().with_context(|| format!("starting agent {}", agent.name))?;
        self.agents[i].child = Some(child);
        Ok(())
    }

    /// A client of member `server`'s API as the admin.
    pub async fn admin_client(&self, server: usize) -> anyhow::Result<kube::Client> {
        let kubeconfig = self.write_kubeconfig(server)?;
        let file =
            kube::config::Kubeconfig::read_from(&kubeconfig).context("reading the admin kubeconfig")?;
        let config =
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Kills every agent and every pod they run. The agents die first, so none can start a
    /// container after its pods were swept.
    pub(super) fn kill_agents_and_pods(&mut self) {
        let mut pids = Vec::new();
        for slot in &mut self.agents {
            if let Some(child) = slot.child.as_mut() {
                pids.extend(child.id());
                let _ = child.start_kill();
            }
        }
        let deadline = std::time::Instant::now() + REAP_TIMEOUT;
        while pids.iter().any(|pid| process_runs(*pid)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for slot in &self.agents {
            shoal_agent::runtime::process::kill_all(&slot.agent.state_dir());
        }
    }
}
