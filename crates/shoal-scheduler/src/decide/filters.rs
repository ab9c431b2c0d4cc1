//! The filters, in kube-scheduler's order, each with kube-scheduler's reason strings.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Taint, Toleration};

use super::{Direction, TAINT_UNSCHEDULABLE, placed_pods, pod_affinity_terms, term_selects, topology_value};
use crate::cluster::{Cluster, HostPort, NodeInfo, Resources, host_ports, pod_requests};
use crate::selectors;

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// What the filters need of one pod, worked out once per decision rather than per node.
pub struct PodFilter<'a> {
    pod: &'a Pod,
    tolerations: &'a [Toleration],
    requests: Resources,
    host_ports: Vec<HostPort>,
    affinity: PodAffinityContext,
}

impl<'a> PodFilter<'a> {
    pub fn new(cluster: &Cluster, pod: &'a Pod) -> Self {
        PodFilter {
            pod,
            tolerations: pod.spec.as_ref().and_then(|spec| spec.tolerations.as_deref()).unwrap_or_default(),
            requests: pod_requests(pod, false),
            host_ports: host_ports(pod),
            affinity: PodAffinityContext::new(cluster, pod),
        }
    }

    /// Why the pod cannot go to `node`, from the first filter that rules it out; Ok if none
    /// does.
    pub fn check(&self, node: &NodeInfo) -> Result<(), Vec<String>> {
        if node.node.spec.as_ref().and_then(|spec| spec.unschedulable) == Some(true) {
            let cordon = Taint {
                key: TAINT_UNSCHEDULABLE.to_owned(),
                effect: "NoSchedule".to_owned(),
                ..Taint::default()
            };
            if !selectors::tolerated(self.tolerations, &cordon) {
                return Err(vec![REASON_UNSCHEDULABLE.to_owned()]);
            }
        }
        if let Some(taint) = untolerated_taint(node, self.tolerations) {
            let value = taint.value.as_deref().unwrap_or_default();
            return Err(vec![format!("node(s) had untolerated taint {{{}: {value}}}", taint.key)]);
        }
        if !matches_node_selection(node, self.pod) {
            return Err(vec![REASON_NODE_AFFINITY.to_owned()]);
        }
        let wanted_ports = &self.host_ports;
        if wanted_ports.iter().any(|wanted| node.host_ports.iter().any(|held| held.conflicts_with(wanted))) {
            return Err(vec![REASON_PORTS.to_owned()]);
        }
        let short = insufficient_resources(node, self.requests);
        if !short.is_empty() {
            return Err(short);
        }
        self.affinity.check(node).map_err(|reason| vec![reason.to_owned()])
    }
}

/// The first of the node's taints with effect NoSchedule or NoExecute that no toleration of
/// the pod tolerates (kube-scheduler's `FindMatchingUntoleratedTaint`).
fn untolerated_taint<'a>(node: &'a NodeInfo, tolerations: &[Toleration]) -> Option<&'a Taint> {
    node.taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !selectors::tolerated(tolerations, taint)
    })
}

/// nodeSelector (every pair) and required node affinity (any term).
fn matches_node_selection(node: &NodeInfo, pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return true };
    let labels = node.node.metadata.labels.as_ref();
    let selector = spec.node_selector.iter().flatten();
    if !selector.into_iter().all(|(key, value)| labels.and_then(|labels| labels.get(key)) == Some(value)) {
        return false;
    }
    let required =
        spec.affinity.as_ref().and_then(|affinity| affinity.node_affinity.as_ref()).and_then(
            |node_affinity| node_affinity.required_during_scheduling_ignored_during_execution.as_ref(),
        );
    required
        .is_none_or(|required| selectors::node_matches_any_term(&node.node, &required.node_selector_terms))
}

/// "Too many pods" and "Insufficient <resource>" for each resource the pod requests more of
/// than the node has left. A resource the pod does not request is not checked, as in
/// kube-scheduler, so a pod without requests fits a node whose CPU is all requested.
fn insufficient_resources(node: &NodeInfo, wanted: Resources) -> Vec<String> {
    let (allocatable, requested) = (node.allocatable, node.requested);
    let mut short = Vec::new();
    if requested.pods.saturating_add(1) > allocatable.pods {
        short.push(REASON_TOO_MANY_PODS.to_owned());
    }
    if wanted.cpu_millis > 0
        && wanted.cpu_millis > allocatable.cpu_millis.saturating_sub(requested.cpu_millis)
    {
        short.push("Insufficient cpu".to_owned());
    }
    if wanted.memory_bytes > 0
        && wanted.memory_bytes > allocatable.memory_bytes.saturating_sub(requested.memory_bytes)
    {
        short.push("Insufficient memory".to_owned());
    }
    short
}

/// What the pod-affinity filter needs, worked out once per decision: for each required term
/// of the pod, the topology domains holding pods it selects, and the domains other pods'
/// required anti-affinity closes to this pod.
pub struct PodAffinityContext {
    /// Required affinity: topology key, domains with selected pods, and whether the pod may
    /// go to any domain of the key (no pod anywhere is selected, but the pod selects itself:
    /// the first of a group that wants to be together).
    affinity: Vec<(String, HashSet<String>, bool)>,
    /// Required anti-affinity: topology key and the domains with selected pods.
    anti_affinity: Vec<(String, HashSet<String>)>,
    /// Per topology key, the domains where an existing pod's required anti-affinity selects
    /// this pod.
    closed_by_existing: HashMap<String, HashSet<String>>,
}

impl PodAffinityContext {
    pub fn new(cluster: &Cluster, pod: &Pod) -> Self {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let (affinity_terms, _) = pod_affinity_terms(pod, Direction::Toward);
        let (anti_affinity_terms, _) = pod_affinity_terms(pod, Direction::Away);
        let domains = |term: &PodAffinityTerm| -> HashSet<String> {
            placed_pods(cluster)
                .filter(|(_, candidate)| term_selects(term, namespace, candidate))
                .filter_map(|(node, _)| topology_value(node, &term.topology_key).map(str::to_owned))
                .collect()
        };
        let affinity = affinity_terms
            .iter()
            .map(|term| {
                let found = domains(term);
                let first_of_group = found.is_empty() && term_selects(term, namespace, pod);
                (term.topology_key.clone(), found, first_of_group)
            })
            .collect();
        let anti_affinity =
            anti_affinity_terms.iter().map(|term| (term.topology_key.clone(), domains(term))).collect();
        let mut closed_by_existing: HashMap<String, HashSet<String>> = HashMap::new();
        for (node, existing) in cluster.anti_affinity_pods() {
            let (terms, _) = pod_affinity_terms(existing, Direction::Away);
            let existing_namespace = existing.metadata.namespace.as_deref().unwrap_or_default();
            for term in terms {
                if term_selects(term, existing_namespace, pod)
                    && let Some(domain) = topology_value(node, &term.topology_key)
                {
                    closed_by_existing
                        .entry(term.topology_key.clone())
                        .or_default()
                        .insert(domain.to_owned());
                }
            }
        }
        PodAffinityContext { affinity, anti_affinity, closed_by_existing }
    }

    /// The reason `node` fails the pod-affinity filter, checked in kube-scheduler's order.
    fn check(&self, node: &NodeInfo) -> Result<(), &'static str> {
        let satisfied = self.affinity.iter().all(|(key, domains, first_of_group)| {
            topology_value(node, key).is_some_and(|domain| *first_of_group || domains.contains(domain))
        });
        if !satisfied {
            return Err(REASON_POD_AFFINITY);
        }
        let excluded = |key: &String, domains: &HashSet<String>| {
            topology_value(node, key).is_some_and(|domain| domains.contains(domain))
        };
        if self.anti_affinity.iter().any(|(key, domains)| excluded(key, domains)) {
            return Err(REASON_POD_ANTI_AFFINITY);
        }
        if self.closed_by_existing.iter().any(|(key, domains)| excluded(key, domains)) {
            return Err(REASON_EXISTING_ANTI_AFFINITY);
        }
        Ok(())
    }
}
