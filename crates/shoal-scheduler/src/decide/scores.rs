//! The scores of the nodes that passed the filters, each normalized to 0..=100 over those
//! nodes and weighted as kube-scheduler's default plugins are.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use super::{Direction, placed_pods, pod_affinity_terms, term_selects, topology_value};
use crate::cluster::{Cluster, NodeInfo, controller_uid, pod_requests};
use crate::selectors;

/// The highest score of one kind.
pub const SCORE_MAX: i64 = 100;
/// NodeResourcesFit (least allocated).
const WEIGHT_LEAST_ALLOCATED: i64 = 1;
/// NodeResourcesBalancedAllocation.
const WEIGHT_BALANCED_ALLOCATION: i64 = 1;
/// Spreading the pods of one owner (kube-scheduler's PodTopologySpread system defaults).
const WEIGHT_OWNER_SPREAD: i64 = 2;
/// NodeAffinity (preferred terms).
const WEIGHT_NODE_AFFINITY: i64 = 2;
/// InterPodAffinity (preferred terms).
const WEIGHT_POD_AFFINITY: i64 = 2;
/// TaintToleration (PreferNoSchedule taints).
const WEIGHT_TAINTS: i64 = 3;

/// The weighted total of every score for each of `feasible`, in the same order.
pub fn totals(cluster: &Cluster, feasible: &[&NodeInfo], pod: &Pod) -> Vec<i64> {
    let wanted = pod_requests(pod, true);
    let least_allocated =
        feasible.iter().map(|node| least_allocated(node, wanted.cpu_millis, wanted.memory_bytes));
    let balanced =
        feasible.iter().map(|node| balanced_allocation(node, wanted.cpu_millis, wanted.memory_bytes));
    let spread = owner_spread(feasible, pod);
    let node_affinity =
        normalize_to_max(feasible.iter().map(|node| preferred_node_affinity(node, pod)).collect());
    let pod_affinity = normalize_min_max(preferred_pod_affinity(cluster, feasible, pod));
    let tolerations = prefer_no_schedule_tolerations(pod);
    let taints = reverse_normalize(
        feasible.iter().map(|node| prefer_no_schedule_taints(node, &tolerations)).collect(),
    );
    let mut totals: Vec<i64> = least_allocated
        .zip(balanced)
        .map(|(least, balanced)| WEIGHT_LEAST_ALLOCATED * least + WEIGHT_BALANCED_ALLOCATION * balanced)
        .collect();
    for (weight, scores) in [
        (WEIGHT_OWNER_SPREAD, spread),
        (WEIGHT_NODE_AFFINITY, node_affinity),
        (WEIGHT_POD_AFFINITY, pod_affinity),
        (WEIGHT_TAINTS, taints),
    ] {
        for (total, score) in totals.iter_mut().zip(scores) {
            *total += weight * score;
        }
    }
    totals
}

/// The share of CPU and of memory left free with the pod placed, averaged: emptier nodes
/// score higher.
fn least_allocated(node: &NodeInfo, cpu_millis: i64, memory_bytes: i64) -> i64 {
    let free = |allocatable: i64, requested: i64| {
        if allocatable <= 0 || requested > allocatable {
            0
        } else {
            // Below SCORE_MAX, so the narrowing cannot lose anything.
            (i128::from(allocatable - requested) * i128::from(SCORE_MAX) / i128::from(allocatable)) as i64
        }
    };
    let requested = node.requested_for_scoring;
    let cpu = free(node.allocatable.cpu_millis, requested.cpu_millis.saturating_add(cpu_millis));
    let memory = free(node.allocatable.memory_bytes, requested.memory_bytes.saturating_add(memory_bytes));
    (cpu + memory) / 2
}

/// How close the CPU and memory shares in use are with the pod placed: a node whose CPU is
/// full and memory empty scores lowest (kube-scheduler's standard deviation of two shares).
fn balanced_allocation(node: &NodeInfo, cpu_millis: i64, memory_bytes: i64) -> i64 {
    let share = |requested: i64, allocatable: i64| {
        if allocatable <= 0 { 1.0 } else { (requested as f64 / allocatable as f64).min(1.0) }
    };
    let requested = node.requested_for_scoring;
    let cpu = share(requested.cpu_millis.saturating_add(cpu_millis), node.allocatable.cpu_millis);
    let memory = share(requested.memory_bytes.saturating_add(memory_bytes), node.allocatable.memory_bytes);
    let deviation = (cpu - memory).abs() / 2.0;
    ((1.0 - deviation) * SCORE_MAX as f64) as i64
}

/// Fewer pods of the pod's controlling owner on a node score higher; a pod without a
/// controller scores the same everywhere.
fn owner_spread(feasible: &[&NodeInfo], pod: &Pod) -> Vec<i64> {
    let Some(owner) = controller_uid(pod) else { return vec![SCORE_MAX; feasible.len()] };
    let counts = feasible.iter().map(|node| node.pods_per_owner.get(owner).copied().unwrap_or(0) as i64);
    reverse_normalize(counts.collect())
}

/// The sum of the weights of the preferred node-affinity terms the node matches.
fn preferred_node_affinity(node: &NodeInfo, pod: &Pod) -> i64 {
    let terms = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.affinity.as_ref())
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|node_affinity| {
            node_affinity.preferred_during_scheduling_ignored_during_execution.as_ref()
        });
    terms
        .into_iter()
        .flatten()
        .filter(|term| term.weight != 0 && selectors::node_matches_term(&node.node, &term.preference))
        .map(|term| i64::from(term.weight))
        .sum()
}

/// For each node, the weight of each preferred affinity term times the selected pods in the
/// node's domain, less the same for preferred anti-affinity terms. (kube-scheduler also counts
/// existing pods' preferences towards the incoming pod; shoal does not yet.)
fn preferred_pod_affinity(cluster: &Cluster, feasible: &[&NodeInfo], pod: &Pod) -> Vec<i64> {
    let (_, attract) = pod_affinity_terms(pod, Direction::Toward);
    let (_, repel) = pod_affinity_terms(pod, Direction::Away);
    let mut scores = vec![0; feasible.len()];
    if attract.is_empty() && repel.is_empty() {
        return scores;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let weighted = attract.iter().map(|term| (term, 1)).chain(repel.iter().map(|term| (term, -1)));
    for (weighted_term, sign) in weighted {
        let term = &weighted_term.pod_affinity_term;
        let mut per_domain: HashMap<&str, i64> = HashMap::new();
        for (node, candidate) in placed_pods(cluster) {
            if let Some(domain) = topology_value(node, &term.topology_key)
                && term_selects(term, namespace, candidate)
            {
                *per_domain.entry(domain).or_default() += 1;
            }
        }
        for (score, node) in scores.iter_mut().zip(feasible) {
            let selected = topology_value(node, &term.topology_key)
                .and_then(|domain| per_domain.get(domain))
                .copied()
                .unwrap_or(0);
            *score += sign * i64::from(weighted_term.weight) * selected;
        }
    }
    scores
}

/// The pod's tolerations that apply to PreferNoSchedule taints (those for that effect or for
/// every effect).
fn prefer_no_schedule_tolerations(pod: &Pod) -> Vec<Toleration> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.tolerations.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|toleration| matches!(toleration.effect.as_deref(), None | Some("" | "PreferNoSchedule")))
        .cloned()
        .collect()
}

/// The node's PreferNoSchedule taints that `tolerations` do not tolerate.
fn prefer_no_schedule_taints(node: &NodeInfo, tolerations: &[Toleration]) -> i64 {
    let untolerated =
        |taint: &Taint| taint.effect == "PreferNoSchedule" && !selectors::tolerated(tolerations, taint);
    node.taints.iter().filter(|taint| untolerated(taint)).count() as i64
}

/// Scales raw scores so that the highest is `SCORE_MAX` (all 0 stay 0).
fn normalize_to_max(raw: Vec<i64>) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        return vec![0; raw.len()];
    }
    raw.into_iter().map(|score| score.max(0) * SCORE_MAX / max).collect()
}

/// Scales raw counts so that the lowest count scores highest: `SCORE_MAX` for none, 0 for the
/// highest (all `SCORE_MAX` when every count is 0).
fn reverse_normalize(raw: Vec<i64>) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        return vec![SCORE_MAX; raw.len()];
    }
    raw.into_iter().map(|count| SCORE_MAX - count * SCORE_MAX / max).collect()
}

/// Scales raw scores (which may be negative) onto 0..=`SCORE_MAX` between their lowest and
/// highest (all 0 when they are equal).
fn normalize_min_max(raw: Vec<i64>) -> Vec<i64> {
    let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
    if max == min {
        return vec![0; raw.len()];
    }
    raw.into_iter().map(|score| (score - min) * SCORE_MAX / (max - min)).collect()
}
