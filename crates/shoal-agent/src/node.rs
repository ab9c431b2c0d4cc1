//! The agent's Node: what it registers (capacity, allocatable, addresses, node info, pod CIDR)
//! and the conditions it keeps current (Ready, MemoryPressure, DiskPressure, PIDPressure).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::runtime::process::Ipv4Cidr;

/// Kubernetes' default maximum of pods per node.
pub const PODS_MAX_DEFAULT: u32 = 110;
/// Memory below which the node reports MemoryPressure (kubelet's default hard eviction
/// threshold `memory.available<100Mi`).
const MEMORY_AVAILABLE_MIN_BYTES: u64 = 100 << 20;
/// Free disk below which the node reports DiskPressure (`nodefs.available<10%`).
const DISK_AVAILABLE_MIN_PERCENT: u64 = 10;
/// Free process ids below which the node reports PIDPressure.
const PIDS_AVAILABLE_MIN_PERCENT: u64 = 10;

/// What the node offers pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

impl Capacity {
    /// This machine's CPUs and memory, and Kubernetes' default pod count.
    pub fn measure() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |count| count.get() as u64);
        let memory_bytes = meminfo("MemTotal").unwrap_or(0);
        Self { cpu_millis: cpus * 1000, memory_bytes, pods: PODS_MAX_DEFAULT }
    }

    pub fn resources(&self) -> BTreeMap<String, Quantity> {
        let cpu = if self.cpu_millis.is_multiple_of(1000) {
            (self.cpu_millis / 1000).to_string()
        } else {
            format!("{}m", self.cpu_millis)
        };
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu)),
            ("memory".to_owned(), Quantity(format!("{}Ki", self.memory_bytes / 1024))),
            ("pods".to_owned(), Quantity(self.pods.to_string())),
        ])
    }
}

/// Who the node is.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub internal_ip: String,
    pub hostname: String,
    pub pod_cidr: Ipv4Cidr,
    pub kubelet_port: u16,
    pub runtime_version: String,
    pub labels: BTreeMap<String, String>,
}

/// The node's resource pressures, as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pids: bool,
}

impl Pressure {
    /// Observes this machine; `state_dir` is the filesystem pods write to.
    pub fn observe(state_dir: &Path) -> Self {
        let memory = meminfo("MemAvailable").is_some_and(|available| available < MEMORY_AVAILABLE_MIN_BYTES);
        let disk = rustix::fs::statvfs(state_dir).is_ok_and(|stats| {
            stats.f_blocks > 0 && stats.f_bavail * 100 / stats.f_blocks < DISK_AVAILABLE_MIN_PERCENT
        });
        let pids = pid_usage().is_some_and(|(used, max)| {
            max > 0 && (max - used.min(max)) * 100 / max < PIDS_AVAILABLE_MIN_PERCENT
        });
        Self { memory, disk, pids }
    }
}

/// The conditions for `pressure`, keeping each unchanged condition's transition time.
pub fn conditions(pressure: Pressure, previous: &[NodeCondition], now: Time) -> Vec<NodeCondition> {
    let condition = |kind: &str, status: bool, reason: &str, message: &str| {
        let status = if status { "True" } else { "False" };
        let earlier = previous.iter().find(|old| old.type_ == kind && old.status == status);
        NodeCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(
                earlier.and_then(|old| old.last_transition_time.clone()).unwrap_or(now.clone()),
            ),
        }
    };
    vec![
        if pressure.memory {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if pressure.disk {
            condition("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure")
        } else {
            condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
        },
        if pressure.pids {
            condition(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available")
        },
        condition("Ready", true, "KubeletReady", "kubelet is posting ready status"),
    ]
}

/// The node's status, conditions aside.
pub fn status(identity: &NodeIdentity, capacity: &Capacity, conditions: Vec<NodeCondition>) -> NodeStatus {
    let uname = rustix::system::uname();
    let text = |bytes: &std::ffi::CStr| bytes.to_string_lossy().into_owned();
    NodeStatus {
        capacity: Some(capacity.resources()),
        allocatable: Some(capacity.resources()),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: identity.internal_ip.clone() },
            NodeAddress { type_: "Hostname".into(), address: identity.hostname.clone() },
        ]),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(identity.kubelet_port) }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .into(),
            container_runtime_version: identity.runtime_version.clone(),
            kernel_version: text(uname.release()),
            kube_proxy_version: String::new(),
            kubelet_version: concat!("v1.33.0-shoal.", env!("CARGO_PKG_VERSION")).into(),
            machine_id: std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim().into(),
            operating_system: std::env::consts::OS.into(),
            os_image: os_image(),
            system_uuid: String::new(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// The Node object to create at registration.
pub fn node_object(identity: &NodeIdentity, status: NodeStatus) -> Node {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), identity.name.clone()),
        ("kubernetes.io/os".to_owned(), std::env::consts::OS.to_owned()),
        (
            "kubernetes.io/arch".to_owned(),
            status.node_info.as_ref().map(|info| info.architecture.clone()).unwrap_or_default(),
        ),
    ]);
    labels.extend(identity.labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(identity.name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(identity.pod_cidr.to_string()),
            pod_cidrs: Some(vec![identity.pod_cidr.to_string()]),
            ..NodeSpec::default()
        }),
        status: Some(status),
    }
}

/// Creates the Node, or brings an existing one's status up to date. Returns the Node's uid.
pub async fn register(client: &Client, node: &Node) -> Result<String, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    let stored = match nodes.create(&PostParams::default(), node).await {
        Ok(created) => created,
        Err(kube::Error::Api(response)) if response.code == 409 => {
            let patch = serde_json::json!({ "status": node.status });
            nodes.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await?
        }
        Err(error) => return Err(error),
    };
    // A Node created without its status (the API ignores status on create) gets it now.
    if stored.status.as_ref().and_then(|status| status.conditions.as_ref()).is_none() {
        let patch = serde_json::json!({ "status": node.status });
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    }
    Ok(stored.metadata.uid.unwrap_or_default())
}

/// Sends the node's status.
pub async fn report(client: &Client, name: &str, status: &NodeStatus) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": status });
    nodes.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await.map(|_| ())
}

/// Whether the stored Node's conditions say something else than `ours`: the node lifecycle
/// controller marks the conditions of a node it stopped hearing from Unknown, and a node that
/// is alive after all must say so again without waiting for its own conditions to change. A
/// failed read is no reason to write.
pub async fn overwritten(client: &Client, name: &str, ours: &NodeStatus) -> bool {
    let nodes: Api<Node> = Api::all(client.clone());
    match tokio::time::timeout(STATUS_READ_TIMEOUT, nodes.get_opt(name)).await {
        Ok(Ok(Some(stored))) => conditions_differ(stored.status.as_ref(), ours),
        _ => false,
    }
}

/// How long the read of the stored Node may take; the next status tick tries again.
const STATUS_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `stored` lacks one of `ours` conditions or has it with another status.
fn conditions_differ(stored: Option<&NodeStatus>, ours: &NodeStatus) -> bool {
    let stored = stored.and_then(|status| status.conditions.as_deref()).unwrap_or(&[]);
    ours.conditions.iter().flatten().any(|condition| {
        !stored.iter().any(|other| other.type_ == condition.type_ && other.status == condition.status)
    })
}

/// Whether two statuses differ in more than their heartbeat times.
pub fn changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let without_heartbeats = |status: &NodeStatus| {
        let mut status = status.clone();
        for condition in status.conditions.iter_mut().flatten() {
            condition.last_heartbeat_time = None;
        }
        status
    };
    without_heartbeats(old) != without_heartbeats(new)
}

/// How often an unchanged status is sent anyway (kubelet's nodeStatusReportFrequency).
pub const STATUS_REPORT_MAX_INTERVAL: Duration = Duration::from_secs(60);

fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.split(':').next() == Some(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn pid_usage() -> Option<(u64, u64)> {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok()?.trim().parse().ok()?;
    let used = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        })
        .count() as u64;
    Some((used, max))
}

fn os_image() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|name| name.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    // Conditions follow the pressures with kubelet's reasons; an unchanged condition keeps its
    // transition time while its heartbeat moves, a changed one transitions now.
    #[test]
    fn condition_transitions() {
        let first = conditions(Pressure::default(), &[], at(10));
        let kinds: Vec<(&str, &str)> =
            first.iter().map(|condition| (condition.type_.as_str(), condition.status.as_str())).collect();
        assert_eq!(
            kinds,
            [
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
                ("Ready", "True")
            ]
        );
        let second = conditions(Pressure { memory: true, ..Pressure::default() }, &first, at(20));
        let memory = &second[0];
        assert_eq!(
            (memory.status.as_str(), memory.reason.as_deref()),
            ("True", Some("KubeletHasInsufficientMemory"))
        );
        assert_eq!(memory.last_transition_time, Some(at(20)));
        let ready = &second[3];
        assert_eq!(ready.last_transition_time, Some(at(10)));
        assert_eq!(ready.last_heartbeat_time, Some(at(20)));
    }

    // A status the controller marked Unknown (or one missing a condition) is told apart from
    // one that says what the agent says.
    #[test]
    fn overwritten_conditions_are_noticed() {
        let ours = NodeStatus {
            conditions: Some(conditions(Pressure::default(), &[], at(10))),
            ..NodeStatus::default()
        };
        let mut stored = ours.clone();
        for condition in stored.conditions.iter_mut().flatten() {
            condition.last_heartbeat_time = Some(at(5));
        }
        assert!(!conditions_differ(Some(&stored), &ours));
        stored.conditions.as_mut().unwrap()[3].status = "Unknown".into();
        assert!(conditions_differ(Some(&stored), &ours));
        stored.conditions.as_mut().unwrap().pop();
        assert!(conditions_differ(Some(&stored), &ours));
        assert!(conditions_differ(None, &ours));
    }

    // Status changes are told apart from heartbeats.
    #[test]
    fn heartbeats_are_not_changes() {
        let identity = NodeIdentity {
            name: "n1".into(),
            internal_ip: "127.0.0.1".into(),
            hostname: "n1".into(),
            pod_cidr: "127.1.0.0/24".parse().unwrap(),
            kubelet_port: 10250,
            runtime_version: "process://0.1.0".into(),
            labels: BTreeMap::new(),
        };
        let capacity = Capacity { cpu_millis: 2000, memory_bytes: 1 << 30, pods: 110 };
        let old = status(&identity, &capacity, conditions(Pressure::default(), &[], at(10)));
        let beat = status(
            &identity,
            &capacity,
            conditions(Pressure::default(), old.conditions.as_ref().unwrap(), at(20)),
        );
        assert!(!changed(&old, &beat));
        let pressed = status(
            &identity,
            &capacity,
            conditions(Pressure { disk: true, ..Pressure::default() }, &[], at(20)),
        );
        assert!(changed(&old, &pressed));
        assert_eq!(capacity.resources()["memory"], Quantity("1048576Ki".into()));
        assert_eq!(Capacity { cpu_millis: 1500, ..capacity }.resources()["cpu"], Quantity("1500m".into()));
    }
}
