//! Placement decisions on small clusters written as data: nodes and pods as JSON, and the
//! node chosen or the exact message kube-scheduler would give.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::*;
use crate::cluster::pod_id;

/// A Ready node offering `cpu` and `memory` for 110 pods, with `extra` merged into it
/// (`{"metadata": {"labels": …}, "spec": {"taints": …}}`).
fn node(name: &str, cpu: &str, memory: &str, extra: Value) -> Arc<Node> {
    let mut node = json!({
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
        "spec": {},
        "status": {
            "allocatable": { "cpu": cpu, "memory": memory, "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    });
    merge(&mut node, extra);
    Arc::new(serde_json::from_value(node).expect("a valid node"))
}

/// A pod in `default` with one container requesting `cpu` and `memory` (None: nothing), with
/// `extra` merged into it.
fn pod(name: &str, requests: Option<(&str, &str)>, extra: Value) -> Pod {
    let resources = match requests {
        Some((cpu, memory)) => json!({ "requests": { "cpu": cpu, "memory": memory } }),
        None => json!({}),
    };
    let mut pod = json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
        "spec": { "containers": [{ "name": "main", "image": "x", "resources": resources }] },
    });
    merge(&mut pod, extra);
    serde_json::from_value(pod).expect("a valid pod")
}

/// `pod` bound to `node`.
fn on(node: &str, pod: Pod) -> Arc<Pod> {
    let mut pod = pod;
    pod.spec.as_mut().expect("spec").node_name = Some(node.to_owned());
    Arc::new(pod)
}

fn merge(target: &mut Value, extra: Value) {
    match (target, extra) {
        (Value::Object(target), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, extra) => *target = extra,
    }
}

fn cluster(nodes: Vec<Arc<Node>>, pods: Vec<Arc<Pod>>) -> Cluster {
    Cluster::new(nodes, pods, [])
}

/// Checks that `pod` goes to `expected` on `cluster`.
fn check_placed(cluster: &Cluster, pod: &Pod, expected: &str) {
    match decide(cluster, pod) {
        Ok(placement) => assert_eq!(placement.node, expected),
        Err(unschedulable) => panic!("expected {expected}, got: {unschedulable}"),
    }
}

/// Checks that `pod` fits nowhere on `cluster`, with kube-scheduler's `message`.
fn check_unschedulable(cluster: &Cluster, pod: &Pod, message: &str) {
    match decide(cluster, pod) {
        Ok(placement) => panic!("expected no fit, got {}", placement.node),
        Err(unschedulable) => assert_eq!(unschedulable.to_string(), message),
    }
}

fn three_nodes() -> Vec<Arc<Node>> {
    ["n1", "n2", "n3"].into_iter().map(|name| node(name, "2", "4Gi", json!({}))).collect()
}

// Requests are counted against allocatable less what the node's pods request; each node short
// of something counts under every resource it lacks, and terminal pods free their share.
#[test]
fn resources_are_checked_against_what_is_left() {
    let nodes = three_nodes();
    check_unschedulable(
        &cluster(nodes.clone(), vec![]),
        &pod("big", Some(("3", "1Gi")), json!({})),
        "0/3 nodes are available: 3 Insufficient cpu.",
    );
    let pods = vec![
        on("n1", pod("a", Some(("1500m", "1Gi")), json!({}))),
        on("n2", pod("b", Some(("100m", "3Gi")), json!({}))),
        on("n3", pod("c", Some(("1500m", "3500Mi")), json!({}))),
        // Finished: frees what it asked for.
        on("n2", pod("done", Some(("2", "1Gi")), json!({"status": {"phase": "Succeeded"}}))),
    ];
    let state = cluster(nodes.clone(), pods);
    check_unschedulable(
        &state,
        &pod("p", Some(("1", "2Gi")), json!({})),
        "0/3 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.",
    );
    check_placed(&state, &pod("p", Some(("500m", "512Mi")), json!({})), "n2");
    // A pod that requests nothing fits a node whose CPU is all requested.
    check_placed(
        &cluster(vec![nodes[0].clone()], vec![on("n1", pod("full", Some(("2", "0")), json!({})))]),
        &pod("free", None, json!({})),
        "n1",
    );
}

// The pod count is a resource: a full node says "Too many pods".
#[test]
fn a_full_node_has_too_many_pods() {
    let small = node("n1", "2", "4Gi", json!({"status": {"allocatable": {"pods": "1"}}}));
    let state = cluster(vec![small], vec![on("n1", pod("a", None, json!({})))]);
    check_unschedulable(&state, &pod("p", None, json!({})), "0/1 nodes are available: 1 Too many pods.");
}

// Init containers run one at a time before the containers: a pod needs the larger of their
// peak and the containers' sum, and sidecars (restartable init containers) add to both.
#[test]
fn init_containers_count_as_kubernetes_counts_them() {
    let requests = |cpu: &str| json!({ "requests": { "cpu": cpu } });
    let with_init = pod(
        "p",
        Some(("500m", "0")),
        json!({"spec": {
            "containers": [
                { "name": "a", "image": "x", "resources": requests("500m") },
                { "name": "b", "image": "x", "resources": requests("500m") },
            ],
            "initContainers": [
                { "name": "init-big", "image": "x", "resources": requests("1500m") },
                { "name": "init-small", "image": "x", "resources": requests("200m") },
            ],
        }}),
    );
    assert_eq!(crate::cluster::pod_requests(&with_init, false).cpu_millis, 1500);
    let with_sidecar = pod(
        "q",
        None,
        json!({"spec": {
            "containers": [{ "name": "a", "image": "x", "resources": requests("1") }],
            "initContainers": [
                { "name": "sidecar", "image": "x", "restartPolicy": "Always", "resources": requests("300m") },
                { "name": "init", "image": "x", "resources": requests("1") },
            ],
            "overhead": { "cpu": "100m" },
        }}),
    );
    assert_eq!(crate::cluster::pod_requests(&with_sidecar, false).cpu_millis, 1400);
    let nodes = vec![node("n1", "1", "4Gi", json!({})), node("n2", "1500m", "4Gi", json!({}))];
    check_placed(&cluster(nodes, vec![]), &with_init, "n2");
}

// nodeSelector needs every pair; required node affinity needs any term, each of whose
// expressions holds; matchFields selects by name.
#[test]
fn node_selector_and_required_node_affinity() {
    let labelled =
        |name: &str, labels: Value| node(name, "2", "4Gi", json!({"metadata": {"labels": labels}}));
    let nodes = vec![
        labelled("n1", json!({"disk": "ssd", "gen": "3"})),
        labelled("n2", json!({"disk": "hdd", "gen": "5"})),
        labelled("n3", json!({"gen": "7", "gpu": "yes"})),
    ];
    let state = cluster(nodes, vec![]);
    check_placed(&state, &pod("p", None, json!({"spec": {"nodeSelector": {"disk": "hdd"}}})), "n2");
    check_unschedulable(
        &state,
        &pod("p", None, json!({"spec": {"nodeSelector": {"disk": "nvme"}}})),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
    );
    let affinity = |terms: Value| {
        json!({"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": terms }}}}})
    };
    let expression = |key: &str, operator: &str, values: Value| json!({"key": key, "operator": operator, "values": values});
    let cases = [
        (
            json!([{"matchExpressions": [expression("gen", "Gt", json!(["4"])), expression("gpu", "DoesNotExist", json!(null))]}]),
            Some("n2"),
        ),
        (json!([{"matchExpressions": [expression("gen", "Lt", json!(["4"]))]}]), Some("n1")),
        (json!([{"matchExpressions": [expression("disk", "NotIn", json!(["ssd", "hdd"]))]}]), Some("n3")),
        (
            json!([{"matchExpressions": [expression("disk", "Exists", json!(null)), expression("disk", "In", json!(["hdd"]))]}]),
            Some("n2"),
        ),
        (json!([{"matchFields": [expression("metadata.name", "In", json!(["n3"]))]}]), Some("n3")),
        // Terms are ORed: the first matches nothing, the second n1.
        (
            json!([{"matchExpressions": [expression("gen", "In", json!(["9"]))]},
                {"matchFields": [expression("metadata.name", "NotIn", json!(["n2", "n3"]))]}]),
            Some("n1"),
        ),
        // An empty term matches nothing; so does a Gt on a label that is no number.
        (json!([{}]), None),
        (json!([{"matchExpressions": [expression("disk", "Gt", json!(["1"]))]}]), None),
    ];
    for (terms, expected) in cases {
        let candidate = pod("p", None, affinity(terms.clone()));
        match expected {
            Some(node) => check_placed(&state, &candidate, node),
            None => check_unschedulable(
                &state,
                &candidate,
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
            ),
        }
    }
}

// NoSchedule and NoExecute taints keep pods off unless tolerated (Equal compares values,
// Exists does not, an empty key with Exists tolerates everything); the message names the
// first untolerated taint.
#[test]
fn taints_and_tolerations() {
    let tainted = |name: &str, taints: Value| node(name, "2", "4Gi", json!({"spec": {"taints": taints}}));
    let nodes = vec![
        tainted("n1", json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])),
        tainted("n2", json!([{"key": "maintenance", "effect": "NoExecute"}])),
    ];
    let state = cluster(nodes, vec![]);
    check_unschedulable(
        &state,
        &pod("p", None, json!({})),
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) had untolerated taint {maintenance: }.",
    );
    let tolerating = |tolerations: Value| pod("p", None, json!({"spec": {"tolerations": tolerations}}));
    check_placed(
        &state,
        &tolerating(json!([{"key": "dedicated", "operator": "Equal", "value": "db"}])),
        "n1",
    );
    check_placed(
        &state,
        &tolerating(json!([{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}])),
        "n2",
    );
    check_placed(&state, &tolerating(json!([{"operator": "Exists"}])), "n1");
    check_unschedulable(
        &state,
        &tolerating(json!([
            {"key": "dedicated", "operator": "Equal", "value": "web"},
            {"key": "maintenance", "operator": "Exists", "effect": "NoSchedule"}])),
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) had untolerated taint {maintenance: }.",
    );
}

// PreferNoSchedule never filters, but a node without it wins; a toleration removes the
// penalty.
#[test]
fn prefer_no_schedule_only_lowers_the_score() {
    let nodes = vec![
        node("n1", "2", "4Gi", json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}})),
        node("n2", "2", "4Gi", json!({})),
    ];
    let state = cluster(nodes.clone(), vec![]);
    check_placed(&state, &pod("p", None, json!({})), "n2");
    check_placed(&cluster(vec![nodes[0].clone()], vec![]), &pod("p", None, json!({})), "n1");
    // Tolerated, the taint costs nothing, and the name order breaks the tie.
    let tolerating =
        pod("p", None, json!({"spec": {"tolerations": [{"key": "spot", "operator": "Exists"}]}}));
    check_placed(&state, &tolerating, "n1");
}

// A cordoned node takes no pods but those tolerating node.kubernetes.io/unschedulable; a node
// that is not Ready acts as if tainted not-ready (or unreachable when its state is Unknown).
#[test]
fn cordoned_and_unready_nodes() {
    let ready = |status: &str| json!({"status": {"conditions": [{"type": "Ready", "status": status}]}});
    let nodes = vec![
        node("n1", "2", "4Gi", json!({"spec": {"unschedulable": true}})),
        node("n2", "2", "4Gi", ready("False")),
        node("n3", "2", "4Gi", ready("Unknown")),
    ];
    let state = cluster(nodes, vec![]);
    check_unschedulable(
        &state,
        &pod("p", None, json!({})),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
         1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable.",
    );
    let tolerating = |key: &str| {
        pod(
            "p",
            None,
            json!({"spec": {"tolerations": [
        {"key": key, "operator": "Exists", "effect": "NoSchedule"}]}}),
        )
    };
    check_placed(&state, &tolerating(TAINT_UNSCHEDULABLE), "n1");
    check_placed(&state, &tolerating(TAINT_NOT_READY), "n2");
    check_placed(&state, &tolerating(TAINT_UNREACHABLE), "n3");
    // A NoExecute toleration (what admission gives every pod) does not tolerate NoSchedule.
    let no_execute = pod(
        "p",
        None,
        json!({"spec": {"tolerations": [
        {"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}}),
    );
    assert!(decide(&state, &no_execute).is_err());
}

// A host port is taken when the same port and protocol are held on the same address or on
// every address.
#[test]
fn host_ports_conflict() {
    let with_port = |name: &str, port: Value| {
        pod(
            name,
            None,
            json!({"spec": {"containers": [
        {"name": "main", "image": "x", "ports": [port]}]}}),
        )
    };
    let nodes = vec![node("n1", "2", "4Gi", json!({})), node("n2", "2", "4Gi", json!({}))];
    let pods = vec![
        on("n1", with_port("a", json!({"containerPort": 80, "hostPort": 8080}))),
        on("n2", with_port("b", json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}))),
    ];
    let state = cluster(nodes, pods);
    check_unschedulable(
        &state,
        &with_port("p", json!({"containerPort": 80, "hostPort": 8080})),
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.",
    );
    check_placed(
        &state,
        &with_port("p", json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"})),
        "n2",
    );
    check_placed(
        &state,
        &with_port("p", json!({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"})),
        "n1",
    );
    check_placed(&state, &with_port("p", json!({"containerPort": 80, "hostPort": 9090})), "n1");
}

// Required anti-affinity by hostname keeps a pod off nodes holding pods it selects (in its own
// namespace unless it names others); an existing pod's anti-affinity keeps the pods it selects
// away from it; required affinity needs a selected pod in the domain, except for the first of
// a group.
#[test]
fn required_pod_affinity_and_anti_affinity() {
    let nodes = vec![
        node("n1", "2", "4Gi", json!({})),
        node("n2", "2", "4Gi", json!({})),
        node("n3", "2", "4Gi", json!({})),
    ];
    let labelled = |name: &str, namespace: &str, app: &str| {
        pod(name, None, json!({"metadata": {"namespace": namespace, "labels": {"app": app}}}))
    };
    let term = |app: &str, namespaces: Value| {
        json!({"labelSelector": {"matchLabels": {"app": app}},
        "topologyKey": TOPOLOGY_HOSTNAME, "namespaces": namespaces})
    };
    let pods =
        vec![on("n1", labelled("web-1", "default", "web")), on("n2", labelled("web-2", "other", "web"))];
    let state = cluster(nodes.clone(), pods);
    let anti = |term: Value| {
        pod(
            "p",
            None,
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}}),
        )
    };
    // Own namespace only: n2's pod is in another, so n2 is open.
    let two_nodes = cluster(
        nodes[..2].to_vec(),
        vec![on("n1", labelled("web-1", "default", "web")), on("n2", labelled("web-2", "other", "web"))],
    );
    check_placed(&two_nodes, &anti(term("web", json!(null))), "n2");
    check_placed(&state, &anti(term("web", json!(["default", "other"]))), "n3");
    let full = cluster(
        nodes.clone(),
        vec![
            on("n1", labelled("web-1", "default", "web")),
            on("n2", labelled("web-2", "default", "web")),
            on("n3", labelled("web-3", "default", "web")),
        ],
    );
    check_unschedulable(
        &full,
        &anti(term("web", json!(null))),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.",
    );
    // An existing pod on n1 repels pods labelled app=web.
    let mut guard = labelled("guard", "default", "db");
    guard.spec.as_mut().expect("spec").affinity = serde_json::from_value(json!({"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term("web", json!(null))]}}))
    .expect("affinity");
    let guarded = cluster(vec![nodes[0].clone()], vec![on("n1", guard)]);
    check_unschedulable(
        &guarded,
        &labelled("web-4", "default", "web"),
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules.",
    );
    // Required affinity: to n1, where a web pod of its namespace runs.
    let with = |app: &str| {
        pod(
            "p",
            None,
            json!({"metadata": {"labels": {"app": "cache"}}, "spec": {"affinity": {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(app, json!(null))]}}}}),
        )
    };
    check_placed(&state, &with("web"), "n1");
    check_unschedulable(
        &state,
        &with("db"),
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules.",
    );
    // The first cache pod selects itself: it may go anywhere, so to the emptiest node.
    check_placed(&state, &with("cache"), "n3");
}

// Among nodes that fit: the emptier node wins; replicas of one owner spread; preferred node
// affinity and preferred pod affinity pull, preferred anti-affinity pushes.
#[test]
fn scores_pick_the_best_node() {
    let nodes = vec![node("n1", "4", "8Gi", json!({})), node("n2", "4", "8Gi", json!({}))];
    let busy = cluster(nodes.clone(), vec![on("n1", pod("a", Some(("2", "4Gi")), json!({})))]);
    check_placed(&busy, &pod("p", Some(("100m", "100Mi")), json!({})), "n2");
    // Balanced: on n1 CPU is used and memory free; a memory-heavy pod balances it there, even
    // though n2 has more CPU left.
    let skewed = cluster(
        nodes.clone(),
        vec![
            on("n1", pod("cpu-heavy", Some(("3", "0")), json!({}))),
            on("n2", pod("both", Some(("2", "4Gi")), json!({}))),
        ],
    );
    check_placed(&skewed, &pod("p", Some(("100m", "3Gi")), json!({})), "n1");
    // Spreading: the owner's replica on n2 sends the next one to n1, although n1 is busier.
    let owned = |name: &str| {
        pod(
            name,
            Some(("100m", "100Mi")),
            json!({"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-1", "controller": true}]}}),
        )
    };
    let spread = cluster(
        nodes.clone(),
        vec![on("n1", pod("other", Some(("500m", "512Mi")), json!({}))), on("n2", owned("web-1"))],
    );
    check_placed(&spread, &owned("web-2"), "n1");
    // Preferred node affinity outweighs a small difference in load.
    let labelled = vec![
        node("n1", "4", "8Gi", json!({"metadata": {"labels": {"zone": "a"}}})),
        node("n2", "4", "8Gi", json!({"metadata": {"labels": {"zone": "b"}}})),
    ];
    let preferring = pod(
        "p",
        None,
        json!({"spec": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}}}),
    );
    check_placed(
        &cluster(labelled, vec![on("n2", pod("a", Some(("500m", "1Gi")), json!({})))]),
        &preferring,
        "n2",
    );
    // Preferred pod affinity and anti-affinity by hostname.
    let cache = on("n2", pod("cache", Some(("1", "1Gi")), json!({"metadata": {"labels": {"app": "cache"}}})));
    let preferred = |kind: &str| {
        pod(
            "p",
            None,
            json!({"spec": {"affinity": {kind: {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": TOPOLOGY_HOSTNAME}}]}}}}),
        )
    };
    let state = cluster(nodes.clone(), vec![cache]);
    check_placed(&state, &preferred("podAffinity"), "n2");
    check_placed(&state, &preferred("podAntiAffinity"), "n1");
}

// Assumed pods count like bound ones: replicas placed one after another in a pass spread, an
// assumed pod the watch already shows bound is counted once, and a full node stays full.
#[test]
fn assumed_pods_count() {
    let nodes = vec![node("n1", "1", "4Gi", json!({})), node("n2", "1", "4Gi", json!({}))];
    let mut state = cluster(nodes.clone(), vec![]);
    let mut placed = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let candidate = pod(name, Some(("400m", "0")), json!({}));
        let placement = decide(&state, &candidate).expect("fits");
        state.assume(Arc::new(candidate), &placement.node);
        placed.push(placement.node);
    }
    assert_eq!(placed, ["n1", "n2", "n1", "n2"]);
    check_unschedulable(
        &state,
        &pod("e", Some(("400m", "0")), json!({})),
        "0/2 nodes are available: 2 Insufficient cpu.",
    );
    let seen = on("n1", pod("a", Some(("600m", "0")), json!({})));
    let both = Cluster::new(nodes, vec![seen.clone()], [(seen, "n1".to_owned())]);
    assert_eq!(both.node("n1").expect("n1").requested.cpu_millis, 600);
}

// Reasons are sorted as strings, count first, as kube-scheduler sorts them; an empty cluster
// says so.
#[test]
fn messages_are_worded_as_kube_scheduler_words_them() {
    let message = |nodes: usize, reasons: &[(&str, usize)]| {
        Unschedulable {
            nodes,
            reasons: reasons.iter().map(|(reason, count)| ((*reason).to_owned(), *count)).collect(),
        }
        .to_string()
    };
    assert_eq!(message(3, &[("Insufficient cpu", 3)]), "0/3 nodes are available: 3 Insufficient cpu.");
    assert_eq!(
        message(3, &[("Insufficient memory", 2), ("node(s) didn't match Pod's node affinity/selector", 1)]),
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient memory."
    );
    assert_eq!(
        message(12, &[("Too many pods", 2), ("Insufficient cpu", 10)]),
        "0/12 nodes are available: 10 Insufficient cpu, 2 Too many pods."
    );
    assert_eq!(message(0, &[]), "no nodes available to schedule pods");
    check_unschedulable(
        &Cluster::default(),
        &pod("p", None, json!({})),
        "no nodes available to schedule pods",
    );
}

/// `count` empty nodes named `n000`, `n001`, …
fn many_nodes(count: usize) -> Vec<Arc<Node>> {
    (0..count).map(|i| node(&format!("n{i:03}"), "8", "32Gi", json!({}))).collect()
}

// The share of nodes a search looks for is kube-scheduler's adaptive one: every node below
// 100, else 50 % less a point per 125 nodes, at least 5 % and at least 100 nodes.
#[test]
fn the_search_looks_for_an_adaptive_share_of_the_nodes() {
    let cases = [(0, 0), (1, 1), (99, 99), (100, 100), (200, 100), (300, 144), (1000, 420), (5000, 500)];
    for (nodes, expected) in cases {
        assert_eq!(feasible_nodes_to_find(nodes), expected, "{nodes} nodes");
    }
    assert_eq!(feasible_nodes_to_find(6000), 300, "5 % at least");
    assert_eq!(feasible_nodes_to_find(100_000), 5000);
}

// On 300 nodes a search stops after the 144 feasible nodes it looks for and the next one
// starts after them, wrapping around; when fewer nodes fit, every node is examined, so a pod
// that fits one far node finds it and an unfit pod's reasons cover the whole cluster.
#[test]
fn a_search_stops_at_its_share_and_the_next_one_goes_on_from_there() {
    let state = cluster(many_nodes(300), vec![]);
    let small = pod("p", Some(("100m", "128Mi")), json!({}));
    let first = decide_from(&state, &small, "");
    assert_eq!(first.result, Ok(Placement { node: "n000".into() }));
    assert_eq!(first.next_start.as_deref(), Some("n144"));
    let second = decide_from(&state, &small, "n144");
    assert_eq!(second.result, Ok(Placement { node: "n144".into() }));
    assert_eq!(second.next_start.as_deref(), Some("n288"));
    // From n288: n288..n299, then n000..n131 — ties go to the first examined.
    let third = decide_from(&state, &small, "n288");
    assert_eq!(third.result, Ok(Placement { node: "n288".into() }));
    assert_eq!(third.next_start.as_deref(), Some("n132"));

    let far = pod("far", None, json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "n250"}}}));
    assert_eq!(decide_from(&state, &far, "n000").result, Ok(Placement { node: "n250".into() }));
    let big = pod("big", Some(("9", "1Gi")), json!({}));
    let unfit = decide_from(&state, &big, "n100");
    assert_eq!(
        unfit.result.expect_err("fits nowhere").to_string(),
        "0/300 nodes are available: 300 Insufficient cpu."
    );
}

// Pods placed one after another with the search going round spread over every node: 600 pods
// on 300 nodes, each node gets two.
#[test]
fn sampled_searches_spread_pods_over_every_node() {
    let mut state = cluster(many_nodes(300), vec![]);
    let mut start = String::new();
    for i in 0..600 {
        let candidate = pod(&format!("p{i}"), Some(("100m", "128Mi")), json!({}));
        let decision = decide_from(&state, &candidate, &start);
        start = decision.next_start.expect("a next start");
        let placement = decision.result.expect("fits");
        state.assume(Arc::new(candidate), &placement.node);
    }
    let counts: Vec<i64> = state.nodes().map(|node| node.requested.pods).collect();
    assert_eq!(counts.iter().min(), Some(&2), "{counts:?}");
    assert_eq!(counts.iter().max(), Some(&2), "{counts:?}");
}

// The cluster kept change by change holds what one built from scratch would: a pod seen before
// its node counts once the node comes; a node removed keeps its pods for its return; a deleted
// or finished pod frees its share; a pod the watch shows unbound keeps the node this scheduler
// assumed; forgetting an assumption leaves a pod the watch shows bound counted.
#[test]
fn the_cluster_follows_changes_one_at_a_time() {
    let requested = |state: &Cluster, name: &str| state.node(name).map(|node| node.requested);
    let mut state = Cluster::default();
    state.observe_pod(on("n1", pod("early", Some(("1", "1Gi")), json!({}))));
    assert_eq!(requested(&state, "n1"), None);
    let n1 = node("n1", "4", "8Gi", json!({}));
    state.set_node(n1.clone());
    assert_eq!(requested(&state, "n1").map(|r| (r.cpu_millis, r.pods)), Some((1000, 1)));
    state.observe_pod(on("n1", pod("second", Some(("500m", "0")), json!({}))));
    state.remove_node("n1");
    state.set_node(n1.clone());
    assert_eq!(requested(&state, "n1").map(|r| (r.cpu_millis, r.pods)), Some((1500, 2)));
    // A relabelled node keeps its pods.
    state.set_node(node("n1", "4", "8Gi", json!({"metadata": {"labels": {"zone": "a"}}})));
    assert_eq!(requested(&state, "n1").map(|r| r.cpu_millis), Some(1500));
    state
        .observe_pod(on("n1", pod("second", Some(("500m", "0")), json!({"status": {"phase": "Succeeded"}}))));
    assert_eq!(requested(&state, "n1").map(|r| (r.cpu_millis, r.pods)), Some((1000, 1)));

    let pending = pod("assumed", Some(("2", "0")), json!({}));
    state.assume(Arc::new(pending.clone()), "n1");
    state.observe_pod(Arc::new(pending.clone()));
    assert_eq!(requested(&state, "n1").map(|r| r.cpu_millis), Some(3000), "the assumption stays");
    state.forget_assumed(&pod_id(&pending));
    assert_eq!(requested(&state, "n1").map(|r| r.cpu_millis), Some(1000));
    state.assume(Arc::new(pending.clone()), "n1");
    state.observe_pod(on("n1", pending.clone()));
    state.forget_assumed(&pod_id(&pending));
    assert_eq!(requested(&state, "n1").map(|r| r.cpu_millis), Some(3000), "seen bound: counted");

    let early = on("n1", pod("early", Some(("1", "1Gi")), json!({})));
    state.remove_pod(&pod_id(&early));
    let rebuilt = Cluster::new([n1], [on("n1", pending)], []);
    assert_eq!(requested(&state, "n1"), requested(&rebuilt, "n1"));
}
