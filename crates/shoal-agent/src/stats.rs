//! The node's and its pods' CPU and memory, served on the kubelet port at `GET /stats/summary`
//! for the API server's `metrics.k8s.io` (`kubectl top`).
//!
//! The document is a subset of kubelet's Summary API (`stats/v1alpha1`), in its field names:
//!
//! ```json
//! {"node": {"cpu": {"time": "…", "usageCoreNanoSeconds": 81234000000},
//!           "memory": {"time": "…", "workingSetBytes": 2147483648}},
//!  "pods": [{"podRef": {"name": "web", "namespace": "default", "uid": "…"},
//!            "containers": [{"name": "c", "startTime": "…",
//!                            "cpu": {"time": "…", "usageCoreNanoSeconds": 1200000000},
//!                            "memory": {"time": "…", "workingSetBytes": 3145728}}]}]}
//! ```
//!
//! The node's CPU is the non-idle time of all CPUs since boot (/proc/stat), its working set
//! `MemTotal − MemAvailable` (/proc/meminfo). A pod is listed when it has running containers,
//! each with its cumulative CPU time and resident memory as the runtime measures them
//! ([`Runtime::container_stats`]). Every figure carries the time it was read at, with
//! nanoseconds. The counters are cumulative: a rate needs two summaries, which is the API
//! server's business (its `metrics` module reads this document with types of its own).

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::runtime::{self, ContainerInfo, ContainerState, Runtime, RuntimeError, Sandbox};

/// What `GET /stats/summary` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

/// CPU time used so far, at `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Timestamp,
    pub usage_core_nano_seconds: u64,
}

/// Memory in use at `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Timestamp,
    pub working_set_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub containers: Vec<ContainerUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// One running container. `start_time` tells a restarted container (whose CPU counter began
/// again from zero) from the one measured before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUsage {
    pub name: String,
    pub start_time: Timestamp,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

/// One running container and what the runtime measured of it, at `time`.
#[derive(Debug, Clone)]
pub struct Measured {
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub start_time: Timestamp,
    pub stats: runtime::ContainerStats,
    pub time: Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("reading {path}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not have the expected format")]
    Malformed { path: &'static str },
    #[error("listing the runtime's pods")]
    Runtime(#[source] RuntimeError),
}

const PROC_STAT: &str = "/proc/stat";
const PROC_MEMINFO: &str = "/proc/meminfo";

/// Measures the node and every running container now.
pub async fn collect<R: Runtime>(runtime: &R) -> Result<Summary, StatsError> {
    let ticks_per_second = rustix::param::clock_ticks_per_second();
    let stat = read(PROC_STAT)?;
    let cpu = CpuStats {
        time: Timestamp::now(),
        usage_core_nano_seconds: node_cpu_ns(&stat, ticks_per_second)
            .ok_or(StatsError::Malformed { path: PROC_STAT })?,
    };
    let meminfo = read(PROC_MEMINFO)?;
    let memory = MemoryStats {
        time: Timestamp::now(),
        working_set_bytes: working_set_bytes(&meminfo).ok_or(StatsError::Malformed { path: PROC_MEMINFO })?,
    };
    let sandboxes = runtime.list_sandboxes().await.map_err(StatsError::Runtime)?;
    let containers = runtime.list_containers().await.map_err(StatsError::Runtime)?;
    let mut measured = Vec::new();
    for info in containers {
        let ContainerState::Running { started_at } = info.state else { continue };
        // A container that exited since it was listed has nothing to report.
        let Ok(stats) = runtime.container_stats(&info.id).await else { continue };
        measured.push(measure(info, started_at, stats, Timestamp::now()));
    }
    Ok(Summary { node: NodeStats { cpu, memory }, pods: pods(&sandboxes, measured) })
}

/// `GET /stats/summary`: the summary as JSON, or 500 with the reason.
pub async fn summary_response<R: Runtime>(runtime: &R) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    let (status, content_type, body) = match collect(runtime).await {
        Ok(summary) => {
            let body = serde_json::to_vec(&summary).expect("a summary serializes");
            (StatusCode::OK, "application/json", body)
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "collecting node and pod stats");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{}\n", error_chain(&error)).into_bytes(),
            )
        }
    };
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(http_body_util::Full::new(Bytes::from(body)).boxed_unsync())
        .expect("a valid response")
}

/// The pods of `sandboxes` that have measured containers, in namespace and name order, each
/// with its containers in name order. Of two runs of one container (a restart seen mid-way)
/// the later attempt counts.
pub fn pods(sandboxes: &[Sandbox], measured: Vec<Measured>) -> Vec<PodStats> {
    let mut by_pod: BTreeMap<String, BTreeMap<String, Measured>> = BTreeMap::new();
    for container in measured {
        let runs = by_pod.entry(container.pod_uid.clone()).or_default();
        let later = runs.get(&container.name).is_none_or(|known| known.attempt < container.attempt);
        if later {
            runs.insert(container.name.clone(), container);
        }
    }
    let mut pods: Vec<PodStats> = sandboxes
        .iter()
        .filter_map(|sandbox| {
            let containers = by_pod.remove(&sandbox.config.pod_uid)?;
            let containers = containers.into_values().map(container_usage).collect();
            let config = &sandbox.config;
            let pod_ref = PodReference {
                name: config.name.clone(),
                namespace: config.namespace.clone(),
                uid: config.pod_uid.clone(),
            };
            Some(PodStats { pod_ref, containers })
        })
        .collect();
    pods.sort_by(|a, b| {
        (&a.pod_ref.namespace, &a.pod_ref.name).cmp(&(&b.pod_ref.namespace, &b.pod_ref.name))
    });
    pods
}

/// The non-idle CPU time of all CPUs, in nanoseconds, from /proc/stat's `cpu` line: user,
/// nice, system, irq, softirq and steal (guest time is part of user already), in clock ticks.
pub fn node_cpu_ns(proc_stat: &str, ticks_per_second: u64) -> Option<u64> {
    let line = proc_stat.lines().find(|line| line.split_whitespace().next() == Some("cpu"))?;
    let ticks: Vec<u64> =
        line.split_whitespace().skip(1).map(|field| field.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = ticks[..] else { return None };
    let busy = user + nice + system + irq + softirq + steal;
    let ns = u128::from(busy) * 1_000_000_000 / u128::from(ticks_per_second.max(1));
    u64::try_from(ns).ok()
}

/// `MemTotal − MemAvailable` from /proc/meminfo, in bytes: what kubelet calls the node's
/// working set, less the page cache the kernel can reclaim.
pub fn working_set_bytes(meminfo: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|line| line.split(':').next() == Some(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    };
    Some(field("MemTotal")?.saturating_sub(field("MemAvailable")?))
}

fn measure(
    info: ContainerInfo,
    started_at: std::time::SystemTime,
    stats: runtime::ContainerStats,
    time: Timestamp,
) -> Measured {
    Measured {
        pod_uid: info.pod_uid,
        name: info.name,
        attempt: info.attempt,
        start_time: Timestamp::try_from(started_at).unwrap_or(Timestamp::UNIX_EPOCH),
        stats,
        time,
    }
}

fn container_usage(measured: Measured) -> ContainerUsage {
    ContainerUsage {
        name: measured.name,
        start_time: measured.start_time,
        cpu: CpuStats { time: measured.time, usage_core_nano_seconds: measured.stats.cpu_usage_ns },
        memory: MemoryStats { time: measured.time, working_set_bytes: measured.stats.memory_bytes },
    }
}

fn read(path: &'static str) -> Result<String, StatsError> {
    std::fs::read_to_string(path).map_err(|source| StatsError::Read { path, source })
}

/// An error and its causes, `: `-separated, for a log line or a response body.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::runtime::{ContainerId, SandboxConfig};

    /// A pod as listed: (namespace, name, [(container, CPU ns)]).
    type Listed<'a> = (&'a str, &'a str, Vec<(&'a str, u64)>);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("a valid time")
    }

    fn sandbox(namespace: &str, name: &str, uid: &str) -> Sandbox {
        Sandbox {
            config: SandboxConfig {
                pod_uid: uid.into(),
                namespace: namespace.into(),
                name: name.into(),
                dns: None,
            },
            ip: Ipv4Addr::LOCALHOST,
            dir: "/nonexistent".into(),
        }
    }

    fn measured(pod_uid: &str, name: &str, attempt: u32, cpu_usage_ns: u64) -> Measured {
        let info = ContainerInfo {
            id: ContainerId::new(pod_uid, name, attempt),
            pod_uid: pod_uid.into(),
            name: name.into(),
            attempt,
            state: ContainerState::Running { started_at: std::time::UNIX_EPOCH },
        };
        let stats = runtime::ContainerStats { cpu_usage_ns, memory_bytes: 4096 };
        measure(
            info,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(attempt)),
            stats,
            at(100),
        )
    }

    // The node's CPU is the non-idle ticks of the `cpu` line converted at the tick rate; idle
    // and iowait do not count, and a line of the wrong shape gives nothing.
    #[test]
    fn node_cpu_from_proc_stat() {
        let stat = "cpu  100 20 30 5000 70 1 2 3 0 0\ncpu0 50 10 15 2500 35 0 1 1 0 0\nintr 1 2 3\n";
        assert_eq!(node_cpu_ns(stat, 100), Some((100 + 20 + 30 + 1 + 2 + 3) * 10_000_000));
        assert_eq!(node_cpu_ns("cpu  1 2 3\n", 100), None);
        assert_eq!(node_cpu_ns("cpu0 1 2 3 4 5 6 7 8\n", 100), None);
        assert_eq!(node_cpu_ns("cpu  1 x 3 4 5 6 7 8\n", 100), None);
    }

    // The working set is total less available memory, in bytes; a missing field gives nothing.
    #[test]
    fn working_set_from_meminfo() {
        let meminfo = "MemTotal:       16000 kB\nMemFree:  1000 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(working_set_bytes(meminfo), Some(10_000 * 1024));
        assert_eq!(working_set_bytes("MemTotal:       16000 kB\n"), None);
    }

    // Containers are grouped under their pod's name and namespace, pods and containers in name
    // order; a pod without running containers and a container without a sandbox are left out;
    // of two attempts of one container the later one is reported.
    #[test]
    fn pods_group_running_containers() {
        let sandboxes =
            [sandbox("team", "b", "u-b"), sandbox("default", "z", "u-z"), sandbox("default", "idle", "u-i")];
        let containers = vec![
            measured("u-b", "web", 0, 5),
            measured("u-z", "side", 0, 7),
            measured("u-z", "main", 2, 30),
            measured("u-z", "main", 1, 20),
            measured("u-gone", "orphan", 0, 1),
        ];
        let pods = pods(&sandboxes, containers);
        let names: Vec<Listed<'_>> = pods
            .iter()
            .map(|pod| {
                let containers =
                    pod.containers.iter().map(|c| (c.name.as_str(), c.cpu.usage_core_nano_seconds)).collect();
                (pod.pod_ref.namespace.as_str(), pod.pod_ref.name.as_str(), containers)
            })
            .collect();
        assert_eq!(
            names,
            [("default", "z", vec![("main", 30), ("side", 7)]), ("team", "b", vec![("web", 5)])]
        );
        let main = &pods[0].containers[0];
        assert_eq!(main.start_time, at(2));
        assert_eq!(
            (main.cpu.time, main.memory.time, main.memory.working_set_bytes),
            (at(100), at(100), 4096)
        );
    }

    // The document uses kubelet's field names, and times keep their nanoseconds (a rate over
    // a one-second window needs them).
    #[test]
    fn summary_json_shape() {
        let time = Timestamp::from_nanosecond(1_700_000_000_123_456_789).expect("a valid time");
        let summary = Summary {
            node: NodeStats {
                cpu: CpuStats { time, usage_core_nano_seconds: 1 },
                memory: MemoryStats { time, working_set_bytes: 2 },
            },
            pods: pods(&[sandbox("default", "p", "u")], vec![measured("u", "c", 0, 3)]),
        };
        let json = serde_json::to_value(&summary).expect("serializes");
        assert_eq!(json["node"]["cpu"]["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(json["node"]["cpu"]["usageCoreNanoSeconds"], 1);
        assert_eq!(json["node"]["memory"]["workingSetBytes"], 2);
        assert_eq!(
            json["pods"][0]["podRef"],
            serde_json::json!({"name": "p", "namespace": "default", "uid": "u"})
        );
        assert_eq!(json["pods"][0]["containers"][0]["startTime"], "1970-01-01T00:00:00Z");
        assert_eq!(json["pods"][0]["containers"][0]["cpu"]["usageCoreNanoSeconds"], 3);
        let back: Summary = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, summary);
    }
}
