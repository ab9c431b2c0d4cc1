//! The scheduler's snapshot of the cluster: every node with what its pods request, the ports
//! they hold and the pods themselves, built from the watched nodes and pods plus the pods this
//! scheduler has bound but not yet seen back (assumed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
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
    /// The sum of the requests of the node's non-terminal pods.
    pub requested: Resources,
    /// The same with `*_SCORING_DEFAULT` for containers that request nothing.
    pub requested_for_scoring: Resources,
    /// The host ports the node's pods hold.
    pub host_ports: Vec<HostPort>,
    pub pods: Vec<Arc<Pod>>,
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

/// The scheduler's view of the cluster, nodes ordered by name.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// The pods with required pod anti-affinity, with the index of their node: every
    /// decision checks them, and they are few, so they are kept apart from the rest.
    pub anti_affinity_pods: Vec<(usize, Arc<Pod>)>,
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
        let mut nodes: Vec<NodeInfo> = nodes.into_iter().filter_map(NodeInfo::new).collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        let index = nodes.iter().enumerate().map(|(i, node)| (node.name.clone(), i)).collect();
        let mut cluster = Cluster { nodes, index, anti_affinity_pods: Vec::new() };
        let mut seen = HashSet::new();
        for pod in pods {
            let Some(node) = pod.spec.as_ref().and_then(|spec| spec.node_name.clone()) else { continue };
            if let Some(uid) = pod.metadata.uid.clone() {
                seen.insert(uid);
            }
            cluster.assume(pod, &node);
        }
        for (pod, node) in assumed {
            if pod.metadata.uid.as_ref().is_none_or(|uid| !seen.contains(uid)) {
                cluster.assume(pod, &node);
            }
        }
        cluster
    }

    /// Counts `pod` on `node` from now on (the scheduler just chose it); a terminal pod or an
    /// unknown node changes nothing.
    pub fn assume(&mut self, pod: Arc<Pod>, node: &str) {
        if is_terminal(&pod) {
            return;
        }
        let Some(&i) = self.index.get(node) else { return };
        let info = &mut self.nodes[i];
        info.requested.add(pod_requests(&pod, false));
        info.requested_for_scoring.add(pod_requests(&pod, true));
        info.host_ports.extend(host_ports(&pod));
        if let Some(owner) = controller_uid(&pod) {
            *info.pods_per_owner.entry(owner.to_owned()).or_default() += 1;
        }
        let anti_affinity = pod.spec.as_ref().and_then(|spec| spec.affinity.as_ref()).and_then(|affinity| {
            affinity.pod_anti_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()
        });
        if anti_affinity.is_some_and(|terms| !terms.is_empty()) {
            self.anti_affinity_pods.push((i, pod.clone()));
        }
        info.pods.push(pod);
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
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
            node,
            name,
            allocatable,
            requested: Resources::default(),
            requested_for_scoring: Resources::default(),
            host_ports: Vec::new(),
            pods: Vec::new(),
            pods_per_owner: HashMap::new(),
        })
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
