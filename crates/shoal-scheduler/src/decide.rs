//! The placement decision: filter the nodes a pod may run on, score those left, pick the best,
//! or explain, in kube-scheduler's words, why none fits. No I/O, no clock, no randomness.
//!
//! Filters run in kube-scheduler's order (unschedulable, taints, node affinity and selector,
//! host ports, resources, pod affinity), and a node is reported under the first filter it
//! fails, with every reason that filter finds (a node short of CPU and of memory counts under
//! both). Scores are kube-scheduler's default plugins, simplified, each normalized to 0..=100
//! and weighted as kube-scheduler weighs them: least allocated ×1, balanced allocation ×1,
//! spreading one owner's pods ×2, preferred node affinity ×2, preferred pod (anti-)affinity ×2,
//! PreferNoSchedule taints ×3. Ties go to the first node examined, in name order from where
//! the search started: kube-scheduler draws among ties at random, but the scores already
//! separate equal nodes once a pod is assumed on one (least allocated counts even pods without
//! requests), and a fixed order keeps decisions reproducible.
//!
//! In a large cluster not every node is examined: as kube-scheduler does, the filters stop
//! once an adaptive share of the nodes has passed (`feasible_nodes_to_find`), and the next
//! pod's search starts where this one stopped, so pods spread over every node in turn.

mod filters;
mod scores;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint, WeightedPodAffinityTerm};

use crate::cluster::{Cluster, NodeInfo};
use crate::selectors;

/// The taint a cordoned node (`spec.unschedulable`) acts as if it had.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The taint a node whose Ready condition is False (or missing) acts as if it had.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint a node whose Ready condition is Unknown acts as if it had.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The topology key whose domains are single nodes.
pub const TOPOLOGY_HOSTNAME: &str = "kubernetes.io/hostname";

/// Where a pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
}

/// Why no node fits a pod: the number of nodes and, for each reason, how many nodes it ruled
/// out. `Display` words it as kube-scheduler does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for Unschedulable {
    /// "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu.": each
    /// reason after its count, the entries sorted as strings (kube-scheduler's
    /// `sortReasonsHistogram`), or kube-scheduler's words for a cluster without nodes.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return formatter.write_str("no nodes available to schedule pods");
        }
        let mut entries: Vec<String> =
            self.reasons.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
        entries.sort();
        write!(formatter, "0/{} nodes are available: {}.", self.nodes, entries.join(", "))
    }
}

/// Below this many nodes every node is examined; above, the search stops once it has found
/// this many feasible nodes at least (kube-scheduler's `minFeasibleNodesToFind`).
pub const FEASIBLE_NODES_MIN: usize = 100;
/// The share of the nodes (in percent) a search looks for in a small cluster, less one point
/// for every `NODES_PER_PERCENT_POINT` nodes (kube-scheduler's adaptive
/// `percentageOfNodesToScore`: 50 % − nodes/125).
pub const FEASIBLE_PERCENT_BASE: usize = 50;
pub const NODES_PER_PERCENT_POINT: usize = 125;
/// The smallest share (in percent) of the nodes a search looks for
/// (`minFeasibleNodesPercentageToFind`).
pub const FEASIBLE_PERCENT_MIN: usize = 5;
const _: () = assert!(FEASIBLE_PERCENT_MIN <= FEASIBLE_PERCENT_BASE);

/// A decision and where the next one's search should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub result: Result<Placement, Unschedulable>,
    /// The node after the last one this search examined, where the next search begins so that
    /// successive pods look at different nodes (kube-scheduler's `nextStartNodeIndex`).
    pub next_start: Option<String>,
}

/// How many feasible nodes a search looks for in a cluster of `nodes` before it stops
/// filtering and scores what it found: every node below `FEASIBLE_NODES_MIN`, else the
/// adaptive share of them, but never fewer than `FEASIBLE_NODES_MIN`.
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes < FEASIBLE_NODES_MIN {
        return nodes;
    }
    let percent =
        FEASIBLE_PERCENT_BASE.saturating_sub(nodes / NODES_PER_PERCENT_POINT).max(FEASIBLE_PERCENT_MIN);
    (nodes * percent / 100).max(FEASIBLE_NODES_MIN)
}

/// Chooses a node of `cluster` for `pod`, or says why none fits, searching from the first
/// node by name.
pub fn decide(cluster: &Cluster, pod: &Pod) -> Result<Placement, Unschedulable> {
    decide_from(cluster, pod, "").result
}

/// Chooses a node of `cluster` for `pod`, or says why none fits. The filters run over the
/// nodes in name order from `start`, wrapping around, until `feasible_nodes_to_find` nodes
/// pass; only those are scored. When fewer pass, every node has been examined, so the reasons
/// of an unschedulable pod always cover the whole cluster.
pub fn decide_from(cluster: &Cluster, pod: &Pod, start: &str) -> Decision {
    let filter = filters::PodFilter::new(cluster, pod);
    let wanted = feasible_nodes_to_find(cluster.node_count());
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut nodes = cluster.nodes_from(start).peekable();
    while feasible.len() < wanted
        && let Some(node) = nodes.next()
    {
        match filter.check(node) {
            Ok(()) => feasible.push(node),
            Err(failed) => {
                for reason in failed {
                    *reasons.entry(reason).or_default() += 1;
                }
            }
        }
    }
    let next_start = match nodes.peek() {
        Some(node) => Some(node.name.clone()),
        None => Some(start.to_owned()),
    };
    if feasible.is_empty() {
        let result = Err(Unschedulable { nodes: cluster.node_count(), reasons });
        return Decision { result, next_start };
    }
    // Ties go to the first node examined: in name order from `start`. (By name alone, the
    // nodes early in the alphabet would win every tie of every search that wrapped around.)
    let totals = scores::totals(cluster, &feasible, pod);
    let mut best = 0;
    for (i, total) in totals.iter().enumerate() {
        if *total > totals[best] {
            best = i;
        }
    }
    Decision { result: Ok(Placement { node: feasible[best].name.clone() }), next_start }
}

/// The taints a node acts as if it had: its own, plus the not-ready or unreachable taint
/// (NoSchedule) while its Ready condition is not True, as the node lifecycle controller and
/// kubelet's registration would add them.
pub(crate) fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|condition| condition.type_ == "Ready"))
        .map(|condition| condition.status.as_str());
    let implied = match ready {
        Some("True") => None,
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => Some(TAINT_NOT_READY),
    };
    if let Some(key) = implied
        && !taints.iter().any(|taint| taint.key == key && taint.effect == "NoSchedule")
    {
        taints.push(Taint { key: key.to_owned(), effect: "NoSchedule".to_owned(), ..Taint::default() });
    }
    taints
}

/// The node's domain for `key`: its label's value, or for `kubernetes.io/hostname` its name
/// when the label is missing. None when the node is in no domain of `key`.
fn topology_value<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a str> {
    let label = node.node.metadata.labels.as_ref().and_then(|labels| labels.get(key));
    match label {
        Some(value) => Some(value),
        None if key == TOPOLOGY_HOSTNAME => Some(&node.name),
        None => None,
    }
}

/// Whether `term`, written in a pod of `owner_namespace`, selects `candidate`: the candidate is
/// in one of the term's namespaces (its list, all of them for an empty namespaceSelector, or
/// else the owner's own) and its labels match the term's selector (none matches nothing).
/// A non-empty namespaceSelector selects no namespace here: namespaces' labels are not in the
/// snapshot.
fn term_selects(term: &PodAffinityTerm, owner_namespace: &str, candidate: &Pod) -> bool {
    let namespace = candidate.metadata.namespace.as_deref().unwrap_or_default();
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let all_namespaces = term.namespace_selector.as_ref().is_some_and(|selector| {
        selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
    });
    let in_namespace = all_namespaces
        || listed.iter().any(|listed| listed == namespace)
        || (listed.is_empty() && term.namespace_selector.is_none() && namespace == owner_namespace);
    in_namespace
        && term
            .label_selector
            .as_ref()
            .is_some_and(|selector| selectors::labels_match(selector, candidate.metadata.labels.as_ref()))
}

/// Every pod of `cluster` with the node it is on.
fn placed_pods(cluster: &Cluster) -> impl Iterator<Item = (&NodeInfo, &Pod)> {
    cluster.nodes().flat_map(|node| node.pods.values().map(move |pod| (node, pod.as_ref())))
}

/// Pod affinity (towards the pods a term selects) or anti-affinity (away from them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Toward,
    Away,
}

/// `pod`'s required and preferred pod-affinity terms of one direction.
fn pod_affinity_terms(pod: &Pod, direction: Direction) -> (&[PodAffinityTerm], &[WeightedPodAffinityTerm]) {
    let affinity = pod.spec.as_ref().and_then(|spec| spec.affinity.as_ref());
    let terms = match direction {
        Direction::Toward => affinity.and_then(|affinity| affinity.pod_affinity.as_ref()).map(|terms| {
            (
                terms.required_during_scheduling_ignored_during_execution.as_deref(),
                terms.preferred_during_scheduling_ignored_during_execution.as_deref(),
            )
        }),
        Direction::Away => affinity.and_then(|affinity| affinity.pod_anti_affinity.as_ref()).map(|terms| {
            (
                terms.required_during_scheduling_ignored_during_execution.as_deref(),
                terms.preferred_during_scheduling_ignored_during_execution.as_deref(),
            )
        }),
    };
    let (required, preferred) = terms.unwrap_or_default();
    (required.unwrap_or_default(), preferred.unwrap_or_default())
}
