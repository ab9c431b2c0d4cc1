//! Usage from two of a node's summaries, as metrics-server computes it: CPU as the growth of a
//! cumulative counter over the time between two samples (a rate, in nanocores), memory as the
//! later sample's working set.
//!
//! Which two samples: [`record`] keeps per node a `History` of the latest summary and an
//! earlier one, and compares each new summary with the latest one if that is at least
//! [`WINDOW_MIN`] older, else with the earlier one. Under frequent requests the window thus
//! stays between `WINDOW_MIN` and twice that; a comparison over more than [`WINDOW_MAX`] is not
//! made (the caller samples again instead). All times are the agent's own, taken where it
//! read the counters, so the API server's clock and the network's delays do not enter a rate.
//!
//! The summaries are the agent's `GET /stats/summary` documents (kubelet's Summary API field
//! names; the agent's `stats` module writes them). Pure: no I/O, no clock.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

/// The shortest window a rate is computed over: the counters advance in clock ticks of 10 ms,
/// which must stay a small part of the window.
pub const WINDOW_MIN: SignedDuration = SignedDuration::from_millis(750);
/// The longest: a rate over a longer past would describe what pods did minutes ago.
pub const WINDOW_MAX: SignedDuration = SignedDuration::from_secs(60);
const _: () = assert!(WINDOW_MIN.as_millis() < WINDOW_MAX.as_millis());

/// An agent's `GET /stats/summary`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Summary {
    pub node: NodeStats,
    #[serde(default)]
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeStats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

/// Cumulative CPU time at `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Timestamp,
    pub usage_core_nano_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Timestamp,
    pub working_set_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    #[serde(default)]
    pub containers: Vec<ContainerStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub start_time: Timestamp,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

impl Summary {
    /// When the node was sampled.
    pub fn time(&self) -> Timestamp {
        self.node.cpu.time
    }

    fn pod(&self, uid: &str) -> Option<&PodStats> {
        self.pods.iter().find(|pod| pod.pod_ref.uid == uid)
    }
}

/// The summaries of one node kept for later rates: the latest, and one at least
/// [`WINDOW_MIN`] older than it.
#[derive(Debug, Clone)]
pub struct History {
    earlier: Option<Arc<Summary>>,
    latest: Arc<Summary>,
}

/// What a node or a container used: CPU as a rate, memory at the window's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

/// A node's usage over `[timestamp − window, timestamp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeUsage {
    pub usage: Usage,
    pub timestamp: Timestamp,
    pub window: SignedDuration,
}

/// A pod's containers' usage over `[timestamp − window, timestamp]`, containers in the
/// summary's (name) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub containers: Vec<(String, Usage)>,
    pub timestamp: Timestamp,
    pub window: SignedDuration,
}

/// Adds `sample` to a node's `history`: returns the history to keep and the earlier summary
/// to compare `sample` with, if one fits (see the module documentation).
pub fn record(history: Option<&History>, sample: Arc<Summary>) -> (History, Option<Arc<Summary>>) {
    let fresh = |sample: Arc<Summary>| (History { earlier: None, latest: sample }, None);
    let Some(history) = history else { return fresh(sample) };
    let since_latest = sample.time().duration_since(history.latest.time());
    if since_latest.is_negative() {
        // The agent's clock went back (or a concurrent request recorded a newer sample):
        // start over rather than compute a rate over a window that is not one.
        return fresh(sample);
    }
    let (kept, baseline) = if since_latest >= WINDOW_MIN {
        (
            History { earlier: Some(history.latest.clone()), latest: sample.clone() },
            Some(history.latest.clone()),
        )
    } else {
        // Too close to the latest to replace it: replacing would let the earlier summary
        // age forever under frequent requests.
        (history.clone(), history.earlier.clone())
    };
    let baseline = baseline.filter(|baseline| sample.time().duration_since(baseline.time()) <= WINDOW_MAX);
    match baseline {
        Some(baseline) => (kept, Some(baseline)),
        None if since_latest >= WINDOW_MIN => fresh(sample),
        None => (kept, None),
    }
}

/// The CPU rate between two readings of one counter, in nanocores (nanoseconds of CPU per
/// second); `None` if time did not advance or the counter went back (a restart).
pub fn cpu_nanocores(older: &CpuStats, newer: &CpuStats) -> Option<u64> {
    let window_ns =
        u128::try_from(newer.time.duration_since(older.time).as_nanos()).ok().filter(|ns| *ns > 0)?;
    let used_ns = newer.usage_core_nano_seconds.checked_sub(older.usage_core_nano_seconds)?;
    u64::try_from(u128::from(used_ns) * 1_000_000_000 / window_ns).ok()
}

/// The node's usage between `baseline` and `latest`.
pub fn node_usage(baseline: &Summary, latest: &Summary) -> Option<NodeUsage> {
    let cpu_nanocores = cpu_nanocores(&baseline.node.cpu, &latest.node.cpu)?;
    let memory_bytes = latest.node.memory.working_set_bytes;
    Some(NodeUsage {
        usage: Usage { cpu_nanocores, memory_bytes },
        timestamp: latest.node.cpu.time,
        window: latest.node.cpu.time.duration_since(baseline.node.cpu.time),
    })
}

/// The usage of the pod `uid` between `baseline` and `latest`, or `None` unless every one of
/// its running containers has a rate, as metrics-server leaves out pods it knows only in part.
///
/// A container is compared with its reading in `baseline` if that is the same run (same start
/// time). A container started after `baseline` was taken had used nothing then, so its whole
/// counter is usage within the window. Any other container (one that `baseline` missed though
/// it ran) has no rate.
pub fn pod_usage(baseline: &Summary, latest: &Summary, uid: &str) -> Option<PodUsage> {
    let now = latest.pod(uid)?;
    let before = baseline.pod(uid);
    let mut containers = Vec::with_capacity(now.containers.len());
    let (mut start, mut end) = (latest.time(), baseline.time());
    for container in &now.containers {
        let same_run = before
            .and_then(|pod| pod.containers.iter().find(|old| old.name == container.name))
            .filter(|old| old.start_time == container.start_time)
            .map(|old| old.cpu);
        let started_since = (container.start_time > baseline.time())
            .then_some(CpuStats { time: baseline.time(), usage_core_nano_seconds: 0 });
        let older = same_run.or(started_since)?;
        let cpu_nanocores = cpu_nanocores(&older, &container.cpu)?;
        containers.push((
            container.name.clone(),
            Usage { cpu_nanocores, memory_bytes: container.memory.working_set_bytes },
        ));
        start = start.min(older.time);
        end = end.max(container.cpu.time);
    }
    if containers.is_empty() {
        return None;
    }
    Some(PodUsage { containers, timestamp: end, window: end.duration_since(start) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time `ms` milliseconds after an arbitrary origin.
    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms).expect("a valid time")
    }

    fn cpu(ms: i64, usage_ms: u64) -> CpuStats {
        CpuStats { time: at(ms), usage_core_nano_seconds: usage_ms * 1_000_000 }
    }

    fn container(name: &str, started_ms: i64, time_ms: i64, usage_ms: u64) -> ContainerStats {
        ContainerStats {
            name: name.into(),
            start_time: at(started_ms),
            cpu: cpu(time_ms, usage_ms),
            memory: MemoryStats { time: at(time_ms), working_set_bytes: 1 << 20 },
        }
    }

    fn summary(time_ms: i64, node_usage_ms: u64, pods: &[(&str, Vec<ContainerStats>)]) -> Summary {
        Summary {
            node: NodeStats {
                cpu: cpu(time_ms, node_usage_ms),
                memory: MemoryStats { time: at(time_ms), working_set_bytes: 3 << 30 },
            },
            pods: pods
                .iter()
                .map(|(uid, containers)| PodStats {
                    pod_ref: PodReference {
                        name: format!("pod-{uid}"),
                        namespace: "default".into(),
                        uid: (*uid).into(),
                    },
                    containers: containers.clone(),
                })
                .collect(),
        }
    }

    // A rate is CPU time over wall time; time standing still or a counter going back (the
    // container restarted) gives none.
    #[test]
    fn cpu_rate() {
        assert_eq!(cpu_nanocores(&cpu(0, 100), &cpu(1500, 850)), Some(500_000_000));
        assert_eq!(cpu_nanocores(&cpu(0, 0), &cpu(1000, 2000)), Some(2_000_000_000));
        assert_eq!(cpu_nanocores(&cpu(0, 100), &cpu(1000, 100)), Some(0));
        assert_eq!(cpu_nanocores(&cpu(0, 100), &cpu(1000, 50)), None);
        assert_eq!(cpu_nanocores(&cpu(1000, 100), &cpu(1000, 200)), None);
        assert_eq!(cpu_nanocores(&cpu(1000, 100), &cpu(0, 200)), None);
    }

    // Samples recorded one after another, at these times (ms), are compared with the sample
    // taken at the expected time: none for the first, none while nothing is WINDOW_MIN older,
    // then the latest if it is old enough, else the earlier one; none over a window longer
    // than WINDOW_MAX, nor when the clock goes back, each starting over.
    #[test]
    fn baseline_choice() {
        let steps: &[(i64, Option<i64>)] = &[
            (0, None),
            (300, None),
            (1000, Some(0)),
            (1500, Some(0)),
            (2000, Some(1000)),
            (2500, Some(1000)),
            (2900, Some(2000)),
            (70_000, None),
            (70_400, None),
            (71_000, Some(70_000)),
            (69_000, None),
            (69_800, Some(69_000)),
        ];
        let mut history = None;
        for (time, expected) in steps {
            let (next, baseline) = record(history.as_ref(), Arc::new(summary(*time, 0, &[])));
            assert_eq!(baseline.map(|summary| summary.time()), expected.map(at), "sample at {time} ms");
            history = Some(next);
        }
    }

    // The node's rate and window come from its own counter; memory is the later working set.
    #[test]
    fn node_usage_over_window() {
        let usage = node_usage(&summary(0, 1000, &[]), &summary(2000, 4000, &[])).expect("a rate");
        assert_eq!(
            usage,
            NodeUsage {
                usage: Usage { cpu_nanocores: 1_500_000_000, memory_bytes: 3 << 30 },
                timestamp: at(2000),
                window: SignedDuration::from_secs(2),
            }
        );
    }

    // A pod's containers are compared run with run; a container started after the baseline
    // counts from zero at the baseline's time; the pod is left out if a container has no
    // rate (it ran unseen by the baseline, or its counter went back), or if it is unknown.
    #[test]
    fn pod_usage_per_container() {
        let baseline = summary(
            0,
            0,
            &[
                ("busy", vec![container("c", -5000, 10, 100)]),
                ("restarted", vec![container("c", -5000, 10, 900)]),
            ],
        );
        let latest = summary(
            1000,
            0,
            &[
                ("busy", vec![container("c", -5000, 1010, 1100), container("side", 500, 1020, 255)]),
                ("restarted", vec![container("c", 400, 1010, 300)]),
                ("unseen", vec![container("c", -100, 1010, 300)]),
            ],
        );
        let busy = pod_usage(&baseline, &latest, "busy").expect("busy has a rate");
        assert_eq!(
            busy.containers,
            [
                ("c".to_owned(), Usage { cpu_nanocores: 1_000_000_000, memory_bytes: 1 << 20 }),
                ("side".to_owned(), Usage { cpu_nanocores: 250_000_000, memory_bytes: 1 << 20 }),
            ]
        );
        assert_eq!((busy.timestamp, busy.window), (at(1020), SignedDuration::from_millis(1020)));
        let restarted =
            pod_usage(&baseline, &latest, "restarted").expect("a restarted container counts from zero");
        assert_eq!(restarted.containers[0].1.cpu_nanocores, 297_029_702);
        assert_eq!(pod_usage(&baseline, &latest, "unseen"), None);
        assert_eq!(pod_usage(&baseline, &latest, "nope"), None);
        let went_back = summary(1000, 0, &[("busy", vec![container("c", -5000, 1010, 50)])]);
        assert_eq!(pod_usage(&baseline, &went_back, "busy"), None);
    }

    // The agent's document decodes, times with their nanoseconds.
    #[test]
    fn summary_decodes() {
        let text = r#"{"node": {"cpu": {"time": "2023-11-14T22:13:20.123456789Z", "usageCoreNanoSeconds": 5},
            "memory": {"time": "2023-11-14T22:13:20Z", "workingSetBytes": 7}},
            "pods": [{"podRef": {"name": "p", "namespace": "default", "uid": "u"},
                      "containers": [{"name": "c", "startTime": "2023-11-14T22:00:00Z",
                                      "cpu": {"time": "2023-11-14T22:13:20Z", "usageCoreNanoSeconds": 3},
                                      "memory": {"time": "2023-11-14T22:13:20Z", "workingSetBytes": 4}}]}]}"#;
        let summary: Summary = serde_json::from_str(text).expect("decodes");
        assert_eq!(summary.time(), Timestamp::from_nanosecond(1_700_000_000_123_456_789).expect("a time"));
        assert_eq!(summary.pods[0].containers[0].cpu.usage_core_nano_seconds, 3);
    }
}
