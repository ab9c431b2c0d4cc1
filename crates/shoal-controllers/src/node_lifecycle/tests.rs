//! The node lifecycle rules on small clusters, pass by pass, with injected time: a fixed
//! 3 s timeout detector (so that suspicion falls at a known moment), a 10 s startup grace,
//! one eviction token a second.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(3);

fn config() -> NodeLifecycleConfig {
    NodeLifecycleConfig {
        detector: DetectorConfig::FixedTimeout { timeout: TIMEOUT },
        startup_grace: Duration::from_secs(10),
        eviction_rate: EvictionRate { nodes_per_second: 1.0, burst: 1 },
        unhealthy_fraction: 0.55,
        disruption_lookahead: Duration::from_millis(400),
    }
}

fn at(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// The wall clock at monotonic time `seconds` (the tests keep the two in step).
fn wall(seconds: f64) -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap() + SignedDuration::from_secs_f64(seconds)
}

fn lease(node: &str, renewed: f64) -> Lease {
    Lease {
        metadata: ObjectMeta { name: Some(node.into()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec { renew_time: Some(MicroTime(wall(renewed))), ..LeaseSpec::default() }),
    }
}

/// `node`'s agent renews its lease at `seconds`, and the controller sees it then.
fn beat(lifecycle: &mut NodeLifecycle, node: &str, seconds: f64) {
    lifecycle.observe_lease(&lease(node, seconds), at(seconds), false);
}

fn condition(kind: &str, status: &str) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some("KubeletSays".into()),
        message: Some("as the agent wrote it".into()),
        last_heartbeat_time: Some(Time(wall(-1.0))),
        last_transition_time: Some(Time(wall(-100.0))),
    }
}

/// A node whose agent reported Ready=`ready` and no pressure.
fn node(name: &str, ready: &str) -> Node {
    let mut conditions: Vec<NodeCondition> = ["MemoryPressure", "DiskPressure", "PIDPressure"]
        .iter()
        .map(|kind| condition(kind, "False"))
        .collect();
    conditions.push(condition("Ready", ready));
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some("5".into()),
            creation_timestamp: Some(Time(wall(-1000.0))),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus { conditions: Some(conditions), ..NodeStatus::default() }),
    }
}

fn taint(key: &str, effect: &str, added: Option<f64>) -> Taint {
    Taint { key: key.into(), effect: effect.into(), value: None, time_added: added.map(|s| Time(wall(s))) }
}

fn with_taints(mut node: Node, taints: Vec<Taint>) -> Node {
    node.spec.as_mut().unwrap().taints = Some(taints);
    node
}

/// The unreachable pair as the controller adds it at `seconds`.
fn unreachable(seconds: f64) -> Vec<Taint> {
    vec![
        taint(TAINT_UNREACHABLE, EFFECT_NO_SCHEDULE, None),
        taint(TAINT_UNREACHABLE, EFFECT_NO_EXECUTE, Some(seconds)),
    ]
}

fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(EFFECT_NO_EXECUTE.into()),
        toleration_seconds: seconds,
        value: None,
    }
}

fn pod(name: &str, node: &str, tolerations: Vec<Toleration>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            tolerations: Some(tolerations),
            ..PodSpec::default()
        }),
        status: Some(PodStatus { phase: Some("Running".into()), ..PodStatus::default() }),
    }
}

fn arcs<T>(items: &[T]) -> Vec<Arc<T>>
where
    T: Clone,
{
    items.iter().cloned().map(Arc::new).collect()
}

fn pass(lifecycle: &mut NodeLifecycle, seconds: f64, nodes: &[Node], pods: &[Pod]) -> Plan {
    lifecycle.pass(at(seconds), wall(seconds), &arcs(nodes), &arcs(pods))
}

/// The update of `name` in `plan`.
fn update_of<'a>(plan: &'a Plan, name: &str) -> Option<&'a NodeUpdate> {
    plan.node_updates.iter().find(|update| update.name == name)
}

fn evicted(plan: &Plan) -> Vec<&str> {
    plan.evictions.iter().map(|eviction| eviction.name.as_str()).collect()
}

/// A controller that has heard `nodes` beat every second from 0 to `last` inclusive.
fn heard(nodes: &[&str], last: u32) -> NodeLifecycle {
    let mut lifecycle = NodeLifecycle::new(config());
    for second in 0..=last {
        for node in nodes {
            beat(&mut lifecycle, node, f64::from(second));
        }
    }
    lifecycle
}

// A node that falls silent is suspected once the detector says so, not before: its four agent
// conditions turn Unknown with Kubernetes' reason and message (heartbeat time kept, transition
// now), and it gets the unreachable NoSchedule and NoExecute taints, the latter with timeAdded.
#[test]
fn silent_node_is_marked_unreachable() {
    let mut lifecycle = heard(&["n1", "n2", "n3"], 10);
    for second in 11..=14 {
        beat(&mut lifecycle, "n2", f64::from(second));
        beat(&mut lifecycle, "n3", f64::from(second));
    }
    let nodes = [node("n1", "True"), node("n2", "True"), node("n3", "True")];
    assert_eq!(pass(&mut lifecycle, 12.9, &nodes, &[]), Plan::default(), "within the timeout");
    let plan = pass(&mut lifecycle, 13.0, &nodes, &[]);
    assert_eq!(plan.node_updates.len(), 1, "{plan:?}");
    let update = update_of(&plan, "n1").expect("n1 updated");
    assert_eq!(update.resource_version, "5");
    assert_eq!(update.taints.as_deref(), Some(&unreachable(13.0)[..]));
    let conditions = update.conditions.as_ref().expect("conditions");
    assert_eq!(conditions.len(), 4);
    for condition in conditions {
        assert_eq!(condition.status, "Unknown", "{}", condition.type_);
        assert_eq!(condition.reason.as_deref(), Some(REASON_STATUS_UNKNOWN));
        assert_eq!(condition.message.as_deref(), Some(MESSAGE_STATUS_UNKNOWN));
        assert_eq!(condition.last_heartbeat_time, Some(Time(wall(-1.0))));
        assert_eq!(condition.last_transition_time, Some(Time(wall(13.0))));
    }
    // Once written, nothing more is to be done.
    let mut marked = with_taints(node("n1", "Unknown"), unreachable(13.0));
    marked.status.as_mut().unwrap().conditions = Some(conditions.clone());
    let nodes = [marked, node("n2", "True"), node("n3", "True")];
    assert_eq!(pass(&mut lifecycle, 14.0, &nodes, &[]), Plan::default());
}

// A node missing some conditions gets them, Unknown, with the "never updated" reason and its
// creation as their heartbeat time; other conditions of the node are kept as they are.
#[test]
fn missing_conditions_are_added_unknown() {
    let mut lifecycle = heard(&["n1", "n2"], 10);
    beat(&mut lifecycle, "n2", 11.0);
    beat(&mut lifecycle, "n2", 12.0);
    let mut bare = node("n1", "True");
    bare.status.as_mut().unwrap().conditions = Some(vec![condition("NetworkUnavailable", "False")]);
    let plan = pass(&mut lifecycle, 13.0, &[bare, node("n2", "True")], &[]);
    let conditions = update_of(&plan, "n1").unwrap().conditions.clone().unwrap();
    let summary: Vec<(&str, &str, &str)> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        summary,
        [
            ("NetworkUnavailable", "False", "KubeletSays"),
            ("Ready", "Unknown", REASON_NEVER_UPDATED),
            ("MemoryPressure", "Unknown", REASON_NEVER_UPDATED),
            ("DiskPressure", "Unknown", REASON_NEVER_UPDATED),
            ("PIDPressure", "Unknown", REASON_NEVER_UPDATED),
        ]
    );
    assert_eq!(conditions[1].message.as_deref(), Some(MESSAGE_NEVER_UPDATED));
    assert_eq!(conditions[1].last_heartbeat_time, Some(Time(wall(-1000.0))));
}

// When heartbeats return, the unreachable taints go and other taints stay; the conditions are
// left for the agent to rewrite. A renewal after an outage starts a fresh detector, so the
// node is not suspected again at once.
#[test]
fn recovered_node_loses_its_unreachable_taints() {
    let mut lifecycle = heard(&["n1", "n2"], 10);
    for second in 11..=30 {
        beat(&mut lifecycle, "n2", f64::from(second));
    }
    let dedicated = Taint {
        key: "dedicated".into(),
        effect: EFFECT_NO_SCHEDULE.into(),
        value: Some("db".into()),
        time_added: None,
    };
    let mut taints = vec![dedicated.clone()];
    taints.extend(unreachable(13.0));
    let tainted = with_taints(node("n1", "Unknown"), taints);
    beat(&mut lifecycle, "n1", 30.0);
    let plan = pass(&mut lifecycle, 30.1, &[tainted.clone(), node("n2", "True")], &[]);
    let update = update_of(&plan, "n1").expect("n1 updated");
    assert_eq!(update.taints.as_deref(), Some(&[dedicated][..]));
    assert_eq!(update.conditions, None);
    beat(&mut lifecycle, "n2", 31.0);
    beat(&mut lifecycle, "n1", 31.0);
    let plan = pass(&mut lifecycle, 32.0, &[node("n1", "True"), node("n2", "True")], &[]);
    assert_eq!(plan, Plan::default());
}

// A node whose agent reports Ready=False gets the not-ready pair instead; one that reports
// Ready=True again loses it.
#[test]
fn not_ready_node_is_tainted_not_ready() {
    let mut lifecycle = heard(&["n1", "n2"], 10);
    let plan = pass(&mut lifecycle, 10.5, &[node("n1", "False"), node("n2", "True")], &[]);
    let update = update_of(&plan, "n1").expect("n1 updated");
    assert_eq!(update.conditions, None);
    assert_eq!(
        update.taints.as_deref(),
        Some(
            &[
                taint(TAINT_NOT_READY, EFFECT_NO_SCHEDULE, None),
                taint(TAINT_NOT_READY, EFFECT_NO_EXECUTE, Some(10.5))
            ][..]
        )
    );
    assert_eq!(plan.node_updates.len(), 1);
    let tainted = with_taints(node("n1", "True"), update.taints.clone().unwrap());
    let plan = pass(&mut lifecycle, 10.6, &[tainted, node("n2", "True")], &[]);
    assert_eq!(update_of(&plan, "n1").unwrap().taints.as_deref(), Some(&[][..]));
}

// A node the controller has never heard from since it started (it may have just become leader)
// is left alone, even with taints a previous leader set, for the startup grace; after that,
// silence makes it suspected. A lease's first sight in a listing is no heartbeat (it may be
// old), its next renewal is; a lease first seen in a watch event is one.
#[test]
fn unknown_nodes_get_a_startup_grace() {
    let mut lifecycle = NodeLifecycle::new(config());
    lifecycle.observe_lease(&lease("listed", -500.0), at(0.0), true);
    lifecycle.observe_lease(&lease("renewing", -1.0), at(0.0), true);
    let nodes = [
        with_taints(node("listed", "True"), unreachable(-400.0)),
        node("renewing", "True"),
        node("created", "True"),
        node("silent", "True"),
    ];
    let pods = [pod("on-listed", "listed", Vec::new())];
    assert_eq!(pass(&mut lifecycle, 0.0, &nodes, &pods), Plan::default());
    lifecycle.observe_lease(&lease("renewing", 0.5), at(0.5), false);
    lifecycle.observe_lease(&lease("created", 0.5), at(0.5), false);
    for second in 1..10 {
        beat(&mut lifecycle, "renewing", f64::from(second));
        beat(&mut lifecycle, "created", f64::from(second));
        assert_eq!(pass(&mut lifecycle, f64::from(second), &nodes, &pods), Plan::default(), "at {second} s");
    }
    beat(&mut lifecycle, "renewing", 10.0);
    beat(&mut lifecycle, "created", 10.0);
    let plan = pass(&mut lifecycle, 10.0, &nodes, &pods);
    let updated: Vec<&str> = plan.node_updates.iter().map(|update| update.name.as_str()).collect();
    assert_eq!(updated, ["listed", "silent"]);
    assert_eq!(update_of(&plan, "listed").unwrap().taints, None, "the previous leader's taints are kept");
    assert_eq!(evicted(&plan), ["on-listed"], "and evict from now on");
}

// Eviction as Kubernetes' taint manager does it: a pod that does not tolerate a stored NoExecute
// taint goes at once; one that tolerates it for N seconds goes N seconds after the taint's
// timeAdded; one that tolerates it for ever stays; pods being deleted or finished are left
// alone, and so are pods of healthy nodes.
#[test]
fn tolerations_time_evictions() {
    let mut lifecycle = heard(&["n1", "n2"], 10);
    for second in 11..=30 {
        beat(&mut lifecycle, "n2", f64::from(second));
    }
    let mut deleting = pod("deleting", "n1", Vec::new());
    deleting.metadata.deletion_timestamp = Some(Time(wall(12.0)));
    let mut finished = pod("finished", "n1", Vec::new());
    finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let pods = [
        pod("intolerant", "n1", Vec::new()),
        pod("five", "n1", vec![toleration(TAINT_UNREACHABLE, Some(5))]),
        pod("forever", "n1", vec![toleration(TAINT_UNREACHABLE, None)]),
        pod("wrong-key", "n1", vec![toleration(TAINT_NOT_READY, Some(100))]),
        deleting,
        finished,
        pod("elsewhere", "n2", Vec::new()),
    ];
    // The pass that decides the taint evicts nobody: its timeAdded is not stored yet.
    let plan = pass(&mut lifecycle, 13.0, &[node("n1", "True"), node("n2", "True")], &pods);
    assert!(plan.evictions.is_empty(), "{plan:?}");
    let tainted = with_taints(node("n1", "Unknown"), unreachable(13.0));
    let nodes = [tainted, node("n2", "True")];
    let plan = pass(&mut lifecycle, 13.5, &nodes, &pods);
    assert_eq!(evicted(&plan), ["intolerant", "wrong-key"]);
    assert_eq!(plan.evictions[0].taint, TAINT_UNREACHABLE);
    assert_eq!(plan.evictions[0].uid, "uid-intolerant");
    assert!(!plan.evictions[0].toleration_expired);
    let still_there = &pods[1..3];
    assert!(pass(&mut lifecycle, 17.9, &nodes, still_there).evictions.is_empty());
    let plan = pass(&mut lifecycle, 18.0, &nodes, still_there);
    assert_eq!(evicted(&plan), ["five"]);
    assert!(plan.evictions[0].toleration_expired);
    assert!(pass(&mut lifecycle, 25.0, &nodes, &pods[2..3]).evictions.is_empty());
}

// With several NoExecute taints, a pod goes when the first of its tolerations runs out, each
// counted from its own taint's timeAdded; the first matching toleration of a taint is the one
// used, as in Kubernetes. An administrator's NoExecute taint without timeAdded gets one, and
// evicts only once that is stored.
#[test]
fn several_taints_and_administrator_taints() {
    let mut lifecycle = heard(&["n1", "n2"], 10);
    beat(&mut lifecycle, "n1", 11.0);
    beat(&mut lifecycle, "n2", 11.0);
    let maintenance = |added: Option<f64>| Taint {
        key: "maintenance".into(),
        effect: EFFECT_NO_EXECUTE.into(),
        value: Some("yes".into()),
        time_added: added.map(|s| Time(wall(s))),
    };
    let pods = [pod(
        "both",
        "n1",
        vec![
            toleration("maintenance", Some(30)),
            toleration("maintenance", Some(1)),
            toleration(TAINT_NOT_READY, Some(20)),
        ],
    )];
    let plan = pass(
        &mut lifecycle,
        11.5,
        &[with_taints(node("n1", "True"), vec![maintenance(None)]), node("n2", "True")],
        &pods,
    );
    assert_eq!(update_of(&plan, "n1").unwrap().taints.as_deref(), Some(&[maintenance(Some(11.5))][..]));
    assert!(plan.evictions.is_empty());
    let mut taints = vec![maintenance(Some(11.5))];
    taints.extend([
        taint(TAINT_NOT_READY, EFFECT_NO_SCHEDULE, None),
        taint(TAINT_NOT_READY, EFFECT_NO_EXECUTE, Some(12.0)),
    ]);
    let nodes = [with_taints(node("n1", "False"), taints), node("n2", "True")];
    beat(&mut lifecycle, "n1", 12.0);
    beat(&mut lifecycle, "n2", 12.0);
    assert!(pass(&mut lifecycle, 12.5, &nodes, &pods).evictions.is_empty());
    beat(&mut lifecycle, "n1", 13.0);
    beat(&mut lifecycle, "n2", 13.0);
    assert!(pass(&mut lifecycle, 13.0, &nodes, &pods).evictions.is_empty());
    for second in 14..=32 {
        beat(&mut lifecycle, "n1", f64::from(second));
        beat(&mut lifecycle, "n2", f64::from(second));
    }
    assert!(pass(&mut lifecycle, 31.9, &nodes, &pods).evictions.is_empty());
    let plan = pass(&mut lifecycle, 32.0, &nodes, &pods);
    assert_eq!(evicted(&plan), ["both"]);
    assert_eq!(plan.evictions[0].taint, TAINT_NOT_READY);
}

// Adding NoExecute taints is rate-limited: of three nodes dying at once (in a cluster of ten)
// one gets its NoExecute taint at once, the others NoSchedule alone, then one a second.
#[test]
fn evictions_are_rate_limited() {
    let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut lifecycle = heard(&all, 10);
    for second in 11..=20 {
        for name in &all[3..] {
            beat(&mut lifecycle, name, f64::from(second));
        }
    }
    let mut nodes: Vec<Node> = all.iter().map(|name| node(name, "True")).collect();
    let no_execute = |plan: &Plan| -> Vec<String> {
        plan.node_updates
            .iter()
            .filter(|update| update.taints.iter().flatten().any(|taint| taint.effect == EFFECT_NO_EXECUTE))
            .map(|update| update.name.clone())
            .collect()
    };
    let plan = pass(&mut lifecycle, 13.0, &nodes, &[]);
    assert_eq!(plan.node_updates.len(), 3);
    assert_eq!(no_execute(&plan), ["n0"]);
    assert_eq!(update_of(&plan, "n1").unwrap().taints.as_deref(), Some(&unreachable(13.0)[..1]));
    nodes[0] = with_taints(node("n0", "Unknown"), unreachable(13.0));
    nodes[1] = with_taints(node("n1", "Unknown"), unreachable(13.0)[..1].to_vec());
    nodes[2] = with_taints(node("n2", "Unknown"), unreachable(13.0)[..1].to_vec());
    assert!(no_execute(&pass(&mut lifecycle, 13.9, &nodes, &[])).is_empty());
    assert_eq!(no_execute(&pass(&mut lifecycle, 14.0, &nodes, &[])), ["n1"]);
    nodes[1] = with_taints(node("n1", "Unknown"), unreachable(14.0));
    assert!(no_execute(&pass(&mut lifecycle, 14.5, &nodes, &[])).is_empty());
    assert_eq!(no_execute(&pass(&mut lifecycle, 15.0, &nodes, &[])), ["n2"]);
}

// When more than 55 % of the nodes look unreachable at once, the controller takes itself to be
// cut off: it says so once, still marks the nodes (conditions, NoSchedule), but adds no
// NoExecute taint, removes the unreachable ones it had added, and evicts nothing, not even for
// other taints. When nodes come back it says so, and dead nodes get NoExecute taints anew.
#[test]
fn full_disruption_stops_evictions() {
    let mut lifecycle = heard(&["n1", "n2", "n3", "n4", "n5"], 10);
    for second in 11..=14 {
        beat(&mut lifecycle, "n4", f64::from(second));
        beat(&mut lifecycle, "n5", f64::from(second));
    }
    let pods = [pod("p1", "n1", Vec::new()), pod("p5", "n5", Vec::new())];
    let maintenance = Taint {
        key: "m".into(),
        effect: EFFECT_NO_EXECUTE.into(),
        value: None,
        time_added: Some(Time(wall(0.0))),
    };
    let nodes = [
        with_taints(node("n1", "Unknown"), unreachable(9.0)),
        node("n2", "True"),
        node("n3", "True"),
        node("n4", "True"),
        with_taints(node("n5", "True"), vec![maintenance]),
    ];
    // Two of five suspected (40 %): ordinary marking and eviction.
    beat(&mut lifecycle, "n2", 11.0);
    let plan = pass(&mut lifecycle, 13.5, &nodes, &pods);
    assert_eq!(plan.disruption_change, None);
    assert_eq!(evicted(&plan), ["p1", "p5"]);
    // Three of five (60 %).
    let plan = pass(&mut lifecycle, 14.0, &nodes, &pods);
    assert_eq!(plan.disruption_change, Some(DisruptionChange::Entered { suspected: 3, nodes: 5 }));
    assert!(plan.evictions.is_empty(), "{plan:?}");
    assert_eq!(update_of(&plan, "n1").unwrap().taints.as_deref(), Some(&unreachable(9.0)[..1]));
    for name in ["n2", "n3"] {
        let update = update_of(&plan, name).unwrap();
        assert_eq!(update.taints.as_deref(), Some(&unreachable(14.0)[..1]), "{name}");
        assert!(update.conditions.is_some());
    }
    let plan = pass(&mut lifecycle, 15.0, &nodes, &pods);
    assert_eq!(plan.disruption_change, None, "said once");
    assert!(plan.evictions.is_empty());
    // n2 and n3 come back: one of five.
    for second in 16..=17 {
        for name in ["n2", "n3", "n4", "n5"] {
            beat(&mut lifecycle, name, f64::from(second));
        }
    }
    let mut nodes = nodes;
    nodes[0] = with_taints(node("n1", "Unknown"), unreachable(9.0)[..1].to_vec());
    let plan = pass(&mut lifecycle, 17.0, &nodes, &pods);
    assert_eq!(plan.disruption_change, Some(DisruptionChange::Left { suspected: 1, nodes: 5 }));
    assert_eq!(update_of(&plan, "n1").unwrap().taints.as_deref(), Some(&unreachable(17.0)[..]));
    assert_eq!(evicted(&plan), ["p5"], "p1 waits for the new taint to be stored");
}

/// How late each renewal of the nodes below arrives, in turn: agents are not punctual.
const LATENESS: [f64; 5] = [0.0, 0.1, 0.2, 0.05, 0.15];

/// Renewals of n1, n2 and n3, out of step (phases 0, 0.4 and 0.45 s), every half second and up
/// to 0.2 s late, until 14 s; those in `silent` are cut off at 10 s, n1 0.4 s before the others
/// last renewed. Sorted by time.
fn renewals(silent: &[&str]) -> Vec<(f64, &'static str)> {
    let mut renewals = Vec::new();
    for (name, phase) in [("n1", 0.0), ("n2", 0.4), ("n3", 0.45)] {
        for k in 0..28 {
            let due = phase + f64::from(k) * 0.5;
            if silent.contains(&name) && due >= 10.0 {
                break;
            }
            renewals.push((due + LATENESS[k as usize % LATENESS.len()], name));
        }
    }
    renewals.sort_by(|a, b| a.0.total_cmp(&b.0));
    renewals
}

/// Passes every quarter second from 0 to 14 s over the nodes renewing as `renewals` says, each
/// renewal seen once its time has come; every node stored Ready and untainted with a pod on
/// it. Returns what would evict (a NoExecute taint added, a pod evicted) from 10 s on, and the
/// disruption changes said.
fn passes(config: NodeLifecycleConfig, renewals: &[(f64, &str)]) -> (Vec<String>, Vec<DisruptionChange>) {
    let names = ["n1", "n2", "n3"];
    let nodes: Vec<Node> = names.iter().map(|name| node(name, "True")).collect();
    let pods: Vec<Pod> = names.iter().map(|name| pod(&format!("on-{name}"), name, Vec::new())).collect();
    let mut lifecycle = NodeLifecycle::new(config);
    let (mut evicting, mut changes) = (Vec::new(), Vec::new());
    let mut fed = 0;
    for quarter in 0..=56 {
        let now = f64::from(quarter) * 0.25;
        while let Some((at, name)) = renewals.get(fed).filter(|(at, _)| *at <= now) {
            beat(&mut lifecycle, name, *at);
            fed += 1;
        }
        let plan = pass(&mut lifecycle, now, &nodes, &pods);
        if now < 10.0 {
            continue;
        }
        for update in &plan.node_updates {
            let taints = update.taints.as_deref().unwrap_or_default();
            if taints.iter().any(|taint| taint.effect == EFFECT_NO_EXECUTE) {
                evicting.push(format!("{} NoExecute at {now}", update.name));
            }
        }
        evicting.extend(plan.evictions.iter().map(|eviction| format!("{} evicted at {now}", eviction.name)));
        changes.extend(plan.disruption_change);
    }
    (evicting, changes)
}

// Nodes cut off at the same moment are suspected up to a renewal interval apart. The first of
// them must not be judged alone: counting the nodes about to be suspected, the controller
// enters full disruption by its first suspicion and adds no NoExecute taint to anyone. Without
// the lookahead, the first would be tainted (and its pods evicted a second later).
#[test]
fn nodes_cut_off_together_enter_full_disruption_by_the_first_suspicion() {
    let cut_off = renewals(&["n1", "n2", "n3"]);
    let (evicting, changes) = passes(NodeLifecycleConfig::default(), &cut_off);
    assert_eq!(evicting, Vec::<String>::new());
    assert!(matches!(changes[..], [DisruptionChange::Entered { .. }]), "{changes:?}");

    let blind =
        NodeLifecycleConfig { disruption_lookahead: Duration::ZERO, ..NodeLifecycleConfig::default() };
    let (evicting, changes) = passes(blind, &cut_off);
    assert!(
        evicting.first().is_some_and(|first| first.starts_with("n1 NoExecute")),
        "{evicting:?} {changes:?}"
    );
}

// The lookahead never counts a node that renews, even late: one node dying among two that
// renew up to 0.2 s late is tainted at its first suspicion, and no disruption is said. A
// lookahead as long as a late renewal's silence would count the living nodes too, and spare
// the dead one: the bound the default keeps below.
#[test]
fn a_node_dying_alone_is_tainted_despite_the_lookahead() {
    let one_dies = renewals(&["n1"]);
    let (evicting, changes) = passes(NodeLifecycleConfig::default(), &one_dies);
    assert_eq!(changes, []);
    assert!(evicting.first().is_some_and(|first| first.starts_with("n1 NoExecute")), "{evicting:?}");
    assert!(evicting.iter().all(|entry| entry.starts_with("n1")), "{evicting:?}");

    let too_long = NodeLifecycleConfig {
        disruption_lookahead: Duration::from_millis(1500),
        ..NodeLifecycleConfig::default()
    };
    let (_, changes) = passes(too_long, &one_dies);
    assert!(!changes.is_empty(), "living nodes counted toward disruption");
}

// A one-node cluster whose node dies is in full disruption: its pods are never all evicted.
#[test]
fn a_whole_cluster_is_never_evicted() {
    let mut lifecycle = heard(&["only"], 10);
    let nodes = [node("only", "True")];
    let plan = pass(&mut lifecycle, 20.0, &nodes, &[pod("p", "only", Vec::new())]);
    assert_eq!(plan.disruption_change, Some(DisruptionChange::Entered { suspected: 1, nodes: 1 }));
    let update = update_of(&plan, "only").unwrap();
    assert_eq!(update.taints.as_deref(), Some(&unreachable(20.0)[..1]));
    assert!(plan.evictions.is_empty());
}

// A deleted lease leaves its node unheard: suspected once the startup grace (counted from when
// the node was first seen) is over.
#[test]
fn deleted_lease_means_silence() {
    let mut lifecycle = heard(&["n1", "n2", "n3"], 10);
    let nodes = [node("n1", "True"), node("n2", "True"), node("n3", "True")];
    assert_eq!(pass(&mut lifecycle, 10.0, &nodes, &[]), Plan::default());
    lifecycle.forget_lease("n1");
    for second in 11..=20 {
        beat(&mut lifecycle, "n2", f64::from(second));
        beat(&mut lifecycle, "n3", f64::from(second));
    }
    assert_eq!(pass(&mut lifecycle, 19.9, &nodes, &[]), Plan::default());
    let plan = pass(&mut lifecycle, 20.0, &nodes, &[]);
    assert_eq!(plan.node_updates.len(), 1);
    assert!(update_of(&plan, "n1").is_some());
}

// Kubernetes' toleration matching: effect, key, operator and value.
#[test]
fn toleration_matching() {
    let taint = Taint {
        key: "k".into(),
        effect: EFFECT_NO_EXECUTE.into(),
        value: Some("v".into()),
        time_added: None,
    };
    let check = |key: &str, operator: &str, value: &str, effect: &str, expected: bool| {
        let toleration = Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!operator.is_empty()).then(|| operator.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        };
        assert_eq!(tolerates(&toleration, &taint), expected, "{toleration:?}");
    };
    check("k", "Exists", "", "NoExecute", true);
    check("k", "Exists", "", "", true);
    check("", "Exists", "", "", true);
    check("k", "Exists", "", "NoSchedule", false);
    check("other", "Exists", "", "", false);
    check("k", "Equal", "v", "", true);
    check("k", "", "v", "NoExecute", true);
    check("k", "Equal", "w", "", false);
    check("k", "Equal", "", "", false);
    check("k", "Gt", "v", "", false);
}

// The bucket refills at its rate up to its burst, and a zero rate never refills.
#[test]
fn token_bucket() {
    let mut bucket = TokenBucket::new(EvictionRate { nodes_per_second: 2.0, burst: 2 });
    assert!(bucket.try_take(at(0.0)));
    assert!(bucket.try_take(at(0.0)));
    assert!(!bucket.try_take(at(0.2)));
    assert!(bucket.try_take(at(0.5)));
    assert!(!bucket.try_take(at(0.5)));
    assert!(bucket.try_take(at(100.0)));
    assert!(bucket.try_take(at(100.0)));
    assert!(!bucket.try_take(at(100.0)));
    let mut stopped = TokenBucket::new(EvictionRate { nodes_per_second: 0.0, burst: 1 });
    assert!(stopped.try_take(at(0.0)));
    assert!(!stopped.try_take(at(1000.0)));
}

// A renewal after an outage starts a fresh phi detector: the outage is not a sample of the
// node's jitter, so the next silence of a few seconds is suspected as quickly as before it.
#[test]
fn outage_is_not_a_sample() {
    let phi = crate::failure_detector::PhiConfig::default();
    let mut lifecycle =
        NodeLifecycle::new(NodeLifecycleConfig { detector: DetectorConfig::PhiAccrual(phi), ..config() });
    for second in (0..=10).chain(30..=35) {
        beat(&mut lifecycle, "n1", f64::from(second));
    }
    assert_eq!(lifecycle.health("n1", at(35.5)), Health::Alive);
    assert_eq!(lifecycle.health("n1", at(40.0)), Health::Suspected);
}
