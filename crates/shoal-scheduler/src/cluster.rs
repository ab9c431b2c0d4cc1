//! The scheduler's view of the cluster: every node with what its pods request, the ports they
//! hold and the pods themselves, from the watched nodes and pods plus the pods this scheduler
//! has bound but not yet seen back (assumed). It is kept up to date change by change, as
//! kube-scheduler's cache is, so that what a decision reads of a node is a sum kept ready.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// What scoring counts for a container that requests no CPU: kube-scheduler's
/// `DefaultMilliCPURequest`, so that pods without requests still spread.
pub const CPU_MILLIS_SCORING_DEFAULT: i64 = 100;
/// What scoring counts for a container that requests no memory (kube-scheduler's
/// `DefaultMemoryRequest`, 200 MiB).
pub const MEMORY_BYTES_SCORING_DEFAULT: i64 = 200 << 20;

/// The resources the scheduler accounts for. Other resources (ephemeral storage, extended
/// resources) are not checked: shoal's agents do not report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, other: Resources) {
        self.cpu_millis = self.cpu_millis.saturating_add(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.pods = self.pods.saturating_add(other.pods);
    }

    /// Undoes `add` (sums saturate, so a sum at the limit only comes back towards it).
    fn subtract(&mut self, other: Resources) {
        self.cpu_millis = self.cpu_millis.saturating_sub(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_sub(other.memory_bytes);
        self.pods = self.pods.saturating_sub(other.pods);
    }

    fn max(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            pods: self.pods.max(other.pods),
        }
    }
}

/// One node and what is placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    /// `status.allocatable`: CPU, memory and the pod count; a missing entry offers nothing.
    pub allocatable: Resources,
    /// The taints the node acts as if it had (`decide::effective_taints`), worked out when the
    /// node changes rather than for every pod.
    pub taints: Vec<Taint>,
    /// The sum of the requests of the node's non-terminal pods.
    pub requested: Resources,
    /// The same with `*_SCORING_DEFAULT` for containers that request nothing.
    pub requested_for_scoring: Resources,
    /// The host ports the node's pods hold.
    pub host_ports: Vec<HostPort>,
    /// The node's pods, by `pod_id`.
    pub pods: HashMap<String, Arc<Pod>>,
    /// How many of the node's pods each controlling owner (by uid) has.
    pub pods_per_owner: HashMap<String, usize>,
}

/// A host port a container asks for; an empty `host_ip` means every address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be bound: same port and protocol, and the same
    /// address or either one on every address (0.0.0.0 or empty).
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || wildcard(&self.ip) || wildcard(&other.ip))
    }
}

/// The scheduler's view of the cluster, nodes ordered by name, kept up to date one change at a
/// time: a node or pod changed adjusts only its own node's sums, so a decision never walks
/// every pod.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    nodes: BTreeMap<String, NodeInfo>,
    /// Every pod counted, by `pod_id`: on a known node (in its `NodeInfo`) or waiting for its
    /// node to be seen.
    placed: HashMap<String, Placed>,
    /// The pods counted on nodes not known (yet), by node name, so that a node arriving after
    /// its pods finds them without a walk over every pod.
    awaiting_node: HashMap<String, HashSet<String>>,
    /// The pods with required pod anti-affinity, by `pod_id`, with their node: every decision
    /// checks them, and they are few, so they are kept apart from the rest.
    anti_affinity_pods: HashMap<String, (String, Arc<Pod>)>,
}

/// A counted pod: where, what it adds to its node, and whether only this scheduler says so.
#[derive(Debug, Clone)]
struct Placed {
    node: String,
    pod: Arc<Pod>,
    share: Share,
    /// Bound by this scheduler, not yet seen bound by the watch.
    assumed: bool,
}

/// What one pod adds to its node's sums.
#[derive(Debug, Clone)]
struct Share {
    requested: Resources,
    requested_for_scoring: Resources,
    host_ports: Vec<HostPort>,
    owner: Option<String>,
}

impl Share {
    fn of(pod: &Pod) -> Self {
        Share {
            requested: pod_requests(pod, false),
            requested_for_scoring: pod_requests(pod, true),
            host_ports: host_ports(pod),
            owner: controller_uid(pod).map(str::to_owned),
        }
    }
}

impl Cluster {
    /// The cluster of `nodes` with `pods` (as watched) on them, plus `assumed` pods (bound by
    /// this scheduler to the node named, not yet seen bound by the watch). Pods that are not
    /// bound, are terminal (Succeeded or Failed) or are on unknown nodes are left out; an
    /// assumed pod the watch already shows bound counts once.
    pub fn new(
        nodes: impl IntoIterator<Item = Arc<Node>>,
        pods: impl IntoIterator<Item = Arc<Pod>>,
        assumed: impl IntoIterator<Item = (Arc<Pod>, String)>,
    ) -> Self {
        let mut cluster = Cluster::default();
        for node in nodes {
            cluster.set_node(node);
        }
        for pod in pods {
            cluster.observe_pod(pod);
        }
        for (pod, node) in assumed {
            cluster.assume(pod, &node);
        }
        cluster
    }

    /// Adds `node`, or takes its new labels, taints, allocatable and conditions, keeping the
    /// pods counted on it. A node without a name (the server never sends one) is ignored.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let Some(mut info) = NodeInfo::new(node) else { return };
        if let Some(old) = self.nodes.remove(&info.name) {
            info.requested = old.requested;
            info.requested_for_scoring = old.requested_for_scoring;
            info.host_ports = old.host_ports;
            info.pods = old.pods;
            info.pods_per_owner = old.pods_per_owner;
        } else {
            for id in self.awaiting_node.remove(&info.name).unwrap_or_default() {
                let placed = &self.placed[&id];
                info.add(id, &placed.pod, &placed.share);
            }
        }
        self.nodes.insert(info.name.clone(), info);
    }

    /// Forgets the node `name`; its pods stay counted, waiting for it to come back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(info) = self.nodes.remove(name) else { return };
        self.awaiting_node.entry(name.to_owned()).or_default().extend(info.pods.into_keys());
    }

    /// Takes a pod as the watch shows it: counted on its node while bound and not terminal (in
    /// place of what this scheduler assumed), not counted once terminal. A pod the watch
    /// shows unbound keeps the node this scheduler assumed for it: its binding may be on its
    /// way.
    pub fn observe_pod(&mut self, pod: Arc<Pod>) {
        let id = pod_id(&pod);
        if is_terminal(&pod) {
            self.remove_pod(&id);
            return;
        }
        let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone()).filter(|node| !node.is_empty());
        match node {
            Some(node) => self.place(id, pod, node, false),
            None if self.placed.get(&id).is_some_and(|placed| placed.assumed) => {}
            None => self.remove_pod(&id),
        }
    }

    /// Counts `pod` on `node` from now on (the scheduler just chose it); a terminal pod or a
    /// pod the watch already shows bound changes nothing.
    pub fn assume(&mut self, pod: Arc<Pod>, node: &str) {
        let id = pod_id(&pod);
        if is_terminal(&pod) || self.placed.get(&id).is_some_and(|placed| !placed.assumed) {
            return;
        }
        self.place(id, pod, node.to_owned(), true);
    }

    /// Stops counting the pod `id` if it is counted only because this scheduler assumed it (a
    /// binding that failed or was never confirmed).
    pub fn forget_assumed(&mut self, id: &str) {
        if self.placed.get(id).is_some_and(|placed| placed.assumed) {
            self.remove_pod(id);
        }
    }

    /// Stops counting the pod `id` (it is gone).
    pub fn remove_pod(&mut self, id: &str) {
        let Some(placed) = self.placed.remove(id) else { return };
        self.anti_affinity_pods.remove(id);
        match self.nodes.get_mut(&placed.node) {
            Some(info) => info.subtract(id, &placed.share),
            None => {
                if let Some(waiting) = self.awaiting_node.get_mut(&placed.node) {
                    waiting.remove(id);
                    if waiting.is_empty() {
                        self.awaiting_node.remove(&placed.node);
                    }
                }
            }
        }
    }

    fn place(&mut self, id: String, pod: Arc<Pod>, node: String, assumed: bool) {
        self.remove_pod(&id);
        let share = Share::of(&pod);
        match self.nodes.get_mut(&node) {
            Some(info) => info.add(id.clone(), &pod, &share),
            None => {
                self.awaiting_node.entry(node.clone()).or_default().insert(id.clone());
            }
        }
        let anti_affinity = pod.spec.as_ref().and_then(|spec| spec.affinity.as_ref()).and_then(|affinity| {
            affinity.pod_anti_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()
        });
        if anti_affinity.is_some_and(|terms| !terms.is_empty()) {
            self.anti_affinity_pods.insert(id.clone(), (node.clone(), pod.clone()));
        }
        self.placed.insert(id, Placed { node, pod, share, assumed });
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    /// Every node, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// Every node once, in name order from `start` (the first node at or after that name),
    /// wrapping around to the first.
    pub fn nodes_from<'a>(&'a self, start: &str) -> impl Iterator<Item = &'a NodeInfo> + 'a {
        let from = (Bound::Included(start), Bound::Unbounded);
        let before = (Bound::Unbounded, Bound::Excluded(start));
        self.nodes.range::<str, _>(from).chain(self.nodes.range::<str, _>(before)).map(|(_, info)| info)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The pods with required pod anti-affinity on known nodes, with their node.
    pub fn anti_affinity_pods(&self) -> impl Iterator<Item = (&NodeInfo, &Pod)> {
        self.anti_affinity_pods.values().filter_map(|(node, pod)| Some((self.nodes.get(node)?, pod.as_ref())))
    }
}

/// How the cluster tells pods apart: the uid, or for a pod without one (never from the
/// server) its namespace and name.
pub fn pod_id(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

impl NodeInfo {
    /// None for a node without a name, which the server never sends.
    fn new(node: Arc<Node>) -> Option<Self> {
        let name = node.metadata.name.clone()?;
        let allocatable = node.status.as_ref().and_then(|status| status.allocatable.as_ref());
        let read = |resource: &str, parse: fn(&Quantity) -> Option<i64>| {
            allocatable.and_then(|allocatable| allocatable.get(resource)).and_then(parse).unwrap_or(0)
        };
        let allocatable = Resources {
            cpu_millis: read("cpu", quantity::millis),
            memory_bytes: read("memory", quantity::units),
            pods: read("pods", quantity::units),
        };
        Some(NodeInfo {
            taints: crate::decide::effective_taints(&node),
            node,
            name,
            allocatable,
            requested: Resources::default(),
            requested_for_scoring: Resources::default(),
            host_ports: Vec::new(),
            pods: HashMap::new(),
            pods_per_owner: HashMap::new(),
        })
    }

    fn add(&mut self, id: String, pod: &Arc<Pod>, share: &Share) {
        self.requested.add(share.requested);
        self.requested_for_scoring.add(share.requested_for_scoring);
        self.host_ports.extend(share.host_ports.iter().cloned());
        if let Some(owner) = &share.owner {
            *self.pods_per_owner.entry(owner.clone()).or_default() += 1;
        }
        self.pods.insert(id, pod.clone());
    }

    fn subtract(&mut self, id: &str, share: &Share) {
        self.requested.subtract(share.requested);
        self.requested_for_scoring.subtract(share.requested_for_scoring);
        for port in &share.host_ports {
            if let Some(i) = self.host_ports.iter().position(|held| held == port) {
                self.host_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &share.owner
            && let Some(count) = self.pods_per_owner.get_mut(owner)
        {
            *count -= 1;
            if *count == 0 {
                self.pods_per_owner.remove(owner);
            }
        }
        self.pods.remove(id);
    }
}

/// The uid of `pod`'s controlling owner (the ownerReference with `controller: true`).
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    let references = pod.metadata.owner_references.as_deref().unwrap_or_default();
    references
        .iter()
        .find(|reference| reference.controller == Some(true))
        .map(|reference| reference.uid.as_str())
}

/// Whether `pod` has finished for good: its resources are free again.
pub fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// What `pod` requests, as Kubernetes counts it: the larger of its containers' sum (with its
/// sidecars, init containers that keep running) and what its init phase needs at its peak
/// (each init container beside the sidecars started before it), plus the pod's overhead.
/// `for_scoring` counts containers that request no CPU or memory at the scoring defaults.
pub fn pod_requests(pod: &Pod, for_scoring: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources { pods: 1, ..Resources::default() } };
    let mut containers = Resources::default();
    for container in &spec.containers {
        containers.add(container_requests(container, for_scoring));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let requests = container_requests(container, for_scoring);
        if container.restart_policy.as_deref() == Some("Always") {
            sidecars.add(requests);
            init_peak = init_peak.max(sidecars);
        } else {
            let mut peak = sidecars;
            peak.add(requests);
            init_peak = init_peak.max(peak);
        }
    }
    containers.add(sidecars);
    let mut total = containers.max(init_peak);
    total.add(requests_of(spec.overhead.as_ref(), false));
    total.pods = 1;
    total
}

fn container_requests(container: &Container, for_scoring: bool) -> Resources {
    let requests = container.resources.as_ref().and_then(|resources| resources.requests.as_ref());
    requests_of(requests, for_scoring)
}

fn requests_of(requests: Option<&BTreeMap<String, Quantity>>, for_scoring: bool) -> Resources {
    let read = |resource: &str, parse: fn(&Quantity) -> Option<i64>| {
        requests.and_then(|requests| requests.get(resource)).and_then(parse)
    };
    let cpu = read("cpu", quantity::millis);
    let memory = read("memory", quantity::units);
    Resources {
        cpu_millis: cpu.unwrap_or(if for_scoring { CPU_MILLIS_SCORING_DEFAULT } else { 0 }),
        memory_bytes: memory.unwrap_or(if for_scoring { MEMORY_BYTES_SCORING_DEFAULT } else { 0 }),
        pods: 0,
    }
}

/// The host ports `pod`'s containers (and init containers) ask for.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else { return Vec::new() };
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    containers
        .flat_map(|container| container.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = port.host_port.filter(|&port| port > 0)?;
            Some(HostPort {
                ip: port.host_ip.clone().unwrap_or_default(),
                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                port: host_port,
            })
        })
        .collect()
}
