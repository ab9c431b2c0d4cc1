//! A store cluster inside a turmoil simulation: one host per member, each running the real
//! `shoal_store::server::start` over the simulated network, with its data on tmpfs.
//!
//! A host's software publishes a [`Handle`] on its running member, through which the harness
//! samples Raft's metrics, sets the member's fault plan and hands it client requests. Crashing a
//! host drops its whole runtime, and with it every task and the database; restarting it runs
//! `start` again on the same data directory, as a restarted process would.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shoal_chaos::FaultPlan;
use shoal_store::network::Network;
use shoal_store::raft::MemberId;
use shoal_store::server::{ClusterState, RaftTiming, ServerConfig, founding_member_id};
use shoal_store::storage::{Blocking, StorageOptions};
use shoal_store::store::Store;
use tokio::sync::mpsc;
use turmoil::Sim;

use crate::history::{self, Recorder, RequestId};
use crate::net::TurmoilNetwork;

/// The cluster token every simulated cluster uses; member ids derive from it.
pub const CLUSTER_TOKEN: &str = "sim";
const PEER_PORT: u16 = 2380;
const CLIENT_PORT: u16 = 2379;
/// Requests queued for a member at most: each client has one in flight, plus the read-back.
const QUEUED_REQUESTS_MAX: usize = 64;

/// How a simulated cluster is built.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub seed: u64,
    pub members: usize,
    pub raft_timing: RaftTiming,
    /// The simulated network's latency per message, at most.
    pub max_latency: Duration,
    /// How often members snapshot their state and purge their logs.
    pub snapshot_every_entries: u64,
}

/// A running simulation of one cluster.
pub struct Cluster {
    sim: Sim<'static>,
    members: Vec<Member>,
    /// The fault plan every running member's transport has; members restarted get it too.
    plan: FaultPlan,
    /// Pairs of members whose messages are held, smaller index first.
    held: BTreeSet<(usize, usize)>,
    /// Where the members' data directories live; removed when the cluster is dropped.
    _data: tempfile::TempDir,
}

/// One member: its host and what the harness knows of it.
pub struct Member {
    pub name: String,
    pub id: MemberId,
    pub data_dir: PathBuf,
    /// Whether its host runs (it may still be starting and have no handle yet).
    pub running: bool,
    slot: Rc<RefCell<Option<Handle>>>,
    /// Whether the running incarnation has been given the current fault plan.
    plan_applied: bool,
}

/// What a running member publishes to the harness.
#[derive(Clone)]
pub struct Handle {
    pub store: Store,
    requests: mpsc::Sender<RequestId>,
}

impl Cluster {
    pub fn new(config: &ClusterConfig, recorder: &Recorder) -> Cluster {
        let data = data_root();
        let mut sim = turmoil::Builder::new()
            .rng_seed(config.seed)
            .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .max_message_latency(config.max_latency)
            // Segments held by a partition are delivered in a burst when it heals: room for them,
            // rather than resets for overflowing socket buffers.
            .tcp_capacity(1 << 16)
            .build();
        let names: Vec<String> = (1..=config.members).map(|index| format!("m{index}")).collect();
        let initial_cluster: BTreeMap<String, String> =
            names.iter().map(|name| (name.clone(), peer_url(name))).collect();
        let mut members = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let data_dir = data.path().join(name);
            let mut server = ServerConfig::new(name, &data_dir);
            server.cluster_token = CLUSTER_TOKEN.into();
            server.listen_peer = ([0, 0, 0, 0], PEER_PORT).into();
            server.listen_client = ([0, 0, 0, 0], CLIENT_PORT).into();
            server.advertise_peer_url = peer_url(name);
            server.advertise_client_url = format!("http://{name}:{CLIENT_PORT}");
            server.initial_cluster = initial_cluster.clone();
            server.initial_cluster_state = ClusterState::New;
            server.tls = None;
            server.fault_seed = mix(config.seed, index as u64, u64::MAX);
            server.raft_timing = config.raft_timing;
            server.snapshot_every_entries = config.snapshot_every_entries;
            server.network = Network::Injected(Arc::new(TurmoilNetwork));
            server.storage = StorageOptions { blocking: Blocking::Inline };
            let slot = Rc::new(RefCell::new(None));
            add_host(&mut sim, server, config.seed, index, slot.clone(), recorder.clone());
            let id = founding_member_id(CLUSTER_TOKEN, name);
            members.push(Member {
                name: name.clone(),
                id,
                data_dir,
                running: true,
                slot,
                plan_applied: false,
            });
        }
        Cluster { sim, members, plan: FaultPlan::default(), held: BTreeSet::new(), _data: data }
    }

    /// Advances the simulation by one tick (a millisecond): the network, then every host.
    pub fn step(&mut self) -> Result<(), String> {
        self.sim.step().map_err(|error| format!("a host failed: {error}"))?;
        self.apply_plan_to_new_members();
        Ok(())
    }

    pub fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member_index(&self, id: MemberId) -> Option<usize> {
        self.members.iter().position(|member| member.id == id)
    }

    /// The member's handle, if it runs and has started.
    pub fn handle(&self, member: usize) -> Option<Handle> {
        self.members[member].slot.borrow().clone()
    }

    /// Stops the member's host at once, as a machine stops: every task and connection of it is
    /// dropped, and nothing more leaves it.
    pub fn crash(&mut self, member: usize) {
        let name = self.members[member].name.clone();
        // The handle must go before the runtime: nothing of the member may outlive it.
        self.members[member].slot.borrow_mut().take();
        // Dropping the runtime closes the member's sockets in the order of tokio's task ids, a
        // process-wide counter, so the resets they would send could reach peers in an order that
        // depends on what ran before in the process. A crashed machine sends nothing anyway.
        let others: Vec<String> = self.other_names(member);
        for other in &others {
            self.sim.partition_oneway(name.as_str(), other.as_str());
        }
        self.sim.crash(name.as_str());
        for other in &others {
            self.sim.repair_oneway(name.as_str(), other.as_str());
        }
        // turmoil's one-way repair leaves a held link half-open: hold it again.
        for &(a, b) in self.held.iter().filter(|(a, b)| *a == member || *b == member) {
            self.sim.hold(self.members[a].name.as_str(), self.members[b].name.as_str());
        }
        self.members[member].running = false;
    }

    fn other_names(&self, member: usize) -> Vec<String> {
        let others = self.members.iter().enumerate().filter(|(index, _)| *index != member);
        others.map(|(_, other)| other.name.clone()).collect()
    }

    /// Starts a crashed member again on its data directory.
    pub fn restart(&mut self, member: usize) {
        assert!(!self.members[member].running, "{} is running", self.members[member].name);
        self.members[member].plan_applied = false;
        self.sim.bounce(self.members[member].name.as_str());
        self.members[member].running = true;
    }

    /// Holds every message between the two groups until `release`; connections survive, as
    /// TCP's would through a partition shorter than its retransmission timeout.
    pub fn hold(&mut self, a: &[usize], b: &[usize]) {
        for (x, y) in pairs(a, b) {
            self.sim.hold(self.members[x].name.as_str(), self.members[y].name.as_str());
            self.held.insert((x.min(y), x.max(y)));
        }
    }

    pub fn release(&mut self, a: &[usize], b: &[usize]) {
        for (x, y) in pairs(a, b) {
            self.sim.release(self.members[x].name.as_str(), self.members[y].name.as_str());
            self.held.remove(&(x.min(y), x.max(y)));
        }
    }

    pub fn set_max_latency(&self, latency: Duration) {
        self.sim.set_max_message_latency(latency);
    }

    /// Gives every member's transport `plan` (members restarted later get it when they start).
    pub fn set_plan(&mut self, plan: FaultPlan) {
        self.plan = plan;
        for member in &mut self.members {
            member.plan_applied = false;
        }
        self.apply_plan_to_new_members();
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Hands `request` (already recorded as `id`) to the member, which runs it as a client would.
    /// Returns false if the member has no handle, or too many requests queued.
    pub fn submit(&self, member: usize, id: RequestId) -> bool {
        match self.handle(member) {
            Some(handle) => handle.requests.try_send(id).is_ok(),
            None => false,
        }
    }

    fn apply_plan_to_new_members(&mut self) {
        for member in &mut self.members {
            if member.plan_applied {
                continue;
            }
            if let Some(handle) = member.slot.borrow().as_ref() {
                handle
                    .store
                    .transport()
                    .faults()
                    .set_plan(self.plan.clone())
                    .expect("the harness builds valid plans");
                member.plan_applied = true;
            }
        }
    }

    /// Stops every host, so their databases can be opened by the checker.
    pub fn crash_all(&mut self) {
        for member in 0..self.members.len() {
            if self.members[member].running {
                self.crash(member);
            }
        }
    }
}

fn add_host(
    sim: &mut Sim<'static>,
    server: ServerConfig,
    seed: u64,
    index: usize,
    slot: Rc<RefCell<Option<Handle>>>,
    recorder: Recorder,
) {
    let incarnation = Cell::new(0);
    let name = server.name.clone();
    sim.host(name.as_str(), move || {
        let mut server = server.clone();
        server.random_seed = Some(mix(seed, index as u64, incarnation.get()));
        incarnation.set(incarnation.get() + 1);
        run_member(server, slot.clone(), recorder.clone())
    });
}

/// A member's host software: the store member, plus the clients that talk to it.
async fn run_member(
    server: ServerConfig,
    slot: Rc<RefCell<Option<Handle>>>,
    recorder: Recorder,
) -> turmoil::Result {
    let running = shoal_store::server::start(server).await?;
    let (requests, mut incoming) = mpsc::channel(QUEUED_REQUESTS_MAX);
    *slot.borrow_mut() = Some(Handle { store: running.store.clone(), requests });
    while let Some(id) = incoming.recv().await {
        let store = running.store.clone();
        let recorder = recorder.clone();
        tokio::task::spawn_local(async move {
            let request = recorder.request(id);
            recorder.invoked(id, now_ns());
            let answer = history::execute(&store, &request).await;
            recorder.completed(id, now_ns(), answer);
        });
    }
    // The harness dropped the handle: the host is being crashed.
    Ok(())
}

/// The simulation's clock, as the calling host sees it.
fn now_ns() -> u64 {
    let elapsed = turmoil::sim_elapsed().expect("called on a simulated host");
    u64::try_from(elapsed.as_nanos()).expect("a run lasts less than 584 years")
}

fn peer_url(name: &str) -> String {
    format!("http://{name}:{PEER_PORT}")
}

fn pairs<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = (usize, usize)> + 'a {
    a.iter().flat_map(move |&x| b.iter().filter(move |&&y| y != x).map(move |&y| (x, y)))
}

/// A seed for one purpose of one member, derived from the run's seed (SplitMix64's finalizer).
pub fn mix(seed: u64, member: u64, purpose: u64) -> u64 {
    let mut z = seed ^ member.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ purpose.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Data directories go to tmpfs when there is one, so that fsync costs nothing.
fn data_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("shoal-sim-");
    let dir = if shm.is_dir() { builder.tempdir_in(shm) } else { builder.tempdir() };
    dir.expect("a temporary directory for the members' data")
}
