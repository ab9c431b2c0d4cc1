//! The placement decision: filter the nodes a pod may run on, score those left, pick the best,
//! or explain, in kube-scheduler's words, why none fits. No I/O, no clock, no randomness.
//!
//! Filters run in kube-scheduler's order (unschedulable, taints, node affinity and selector,
//! host ports, resources, pod affinity), and a node is reported under the first filter it
//! fails, with every reason that filter finds (a node short of CPU and of memory counts under
//! both). Scores are kube-scheduler's default plugins, simplified, each normalized to 0..=100
//! and weighted as kube-scheduler weighs them: least allocated ×1, balanced allocation ×1,
//! spreading one owner's pods ×2, preferred node affinity ×2, preferred pod (anti-)affinity ×2,
//! PreferNoSchedule taints ×3. Ties go to the node whose name sorts first: kube-scheduler draws
//! among ties at random, but the scores already separate equal nodes once a pod is assumed on
//! one (least allocated counts even pods without requests), and a fixed order keeps decisions
//! reproducible.

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

/// Chooses a node of `cluster` for `pod`, or says why none fits.
pub fn decide(cluster: &Cluster, pod: &Pod) -> Result<Placement, Unschedulable> {
    let affinity = filters::PodAffinityContext::new(cluster, pod);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    for node in &cluster.nodes {
        match filters::check(node, pod, &affinity) {
            Ok(()) => feasible.push(node),
            Err(failed) => {
                for reason in failed {
                    *reasons.entry(reason).or_default() += 1;
                }
            }
        }
    }
    if feasible.is_empty() {
        return Err(Unschedulable { nodes: cluster.nodes.len(), reasons });
    }
    let totals = scores::totals(cluster, &feasible, pod);
    // The first node with the highest total: `feasible` is in name order.
    let mut best = 0;
    for (i, total) in totals.iter().enumerate() {
        if *total > totals[best] {
            best = i;
        }
    }
    Ok(Placement { node: feasible[best].name.clone() })
}

/// The taints a node acts as if it had: its own, plus the not-ready or unreachable taint
/// (NoSchedule) while its Ready condition is not True, as the node lifecycle controller and
/// kubelet's registration would add them.
fn effective_taints(node: &Node) -> Vec<Taint> {
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
    cluster.nodes.iter().flat_map(|node| node.pods.iter().map(move |pod| (node, pod.as_ref())))
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
