//! The `metrics.k8s.io/v1beta1` kinds, which k8s-openapi does not have: minimal serde types
//! with metrics-server's JSON (`k8s.io/metrics/pkg/apis/metrics/v1beta1`), and their
//! construction from a stored object and its usage.
//!
//! Quantities are written as metrics-server writes them: CPU in nanocores (`"12345n"`), memory
//! in KiB (`"2048Ki"`). `window` is a Go duration (`"1.002s"`), as `metav1.Duration` parses.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::usage::{NodeUsage, PodUsage, Usage};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// The resource usage of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics")]
pub struct NodeMetrics {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    /// The end of the interval the usage was measured over, `[timestamp − window, timestamp]`.
    pub timestamp: Time,
    pub window: String,
    /// `cpu` (a rate) and `memory` (the working set).
    pub usage: BTreeMap<String, Quantity>,
}

/// The resource usage of a pod's containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics")]
pub struct PodMetrics {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub timestamp: Time,
    pub window: String,
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics")]
pub struct ContainerMetrics {
    pub name: String,
    pub usage: BTreeMap<String, Quantity>,
}

/// `NodeMetricsList` or `PodMetricsList`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsList<T> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ListMeta,
    pub items: Vec<T>,
}

impl NodeMetrics {
    /// The metrics of the stored Node `node`, labelled like it, created `now`.
    pub fn new(node: &Value, usage: &NodeUsage, now: Timestamp) -> Self {
        Self {
            api_version: API_VERSION.into(),
            kind: "NodeMetrics".into(),
            metadata: metadata(node, false, now),
            timestamp: Time(usage.timestamp),
            window: go_duration(usage.window),
            usage: quantities(&usage.usage),
        }
    }
}

impl PodMetrics {
    /// The metrics of the stored Pod `pod`, labelled like it, created `now`.
    pub fn new(pod: &Value, usage: &PodUsage, now: Timestamp) -> Self {
        Self {
            api_version: API_VERSION.into(),
            kind: "PodMetrics".into(),
            metadata: metadata(pod, true, now),
            timestamp: Time(usage.timestamp),
            window: go_duration(usage.window),
            containers: usage
                .containers
                .iter()
                .map(|(name, usage)| ContainerMetrics { name: name.clone(), usage: quantities(usage) })
                .collect(),
        }
    }
}

impl<T> MetricsList<T> {
    pub fn new(kind: &'static str, items: Vec<T>) -> Self {
        Self { api_version: API_VERSION, kind, metadata: ListMeta::default(), items }
    }
}

/// The name, namespace and labels of `object`; the metrics themselves are created `now`, as
/// metrics-server's are.
fn metadata(object: &Value, namespaced: bool, now: Timestamp) -> ObjectMeta {
    let labels: Option<BTreeMap<String, String>> =
        object.pointer("/metadata/labels").cloned().and_then(|labels| serde_json::from_value(labels).ok());
    ObjectMeta {
        name: Some(crate::meta::name(object).to_owned()),
        namespace: namespaced.then(|| crate::meta::namespace(object).to_owned()),
        labels: labels.filter(|labels| !labels.is_empty()),
        creation_timestamp: Some(Time(now)),
        ..ObjectMeta::default()
    }
}

fn quantities(usage: &Usage) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(format!("{}n", usage.cpu_nanocores))),
        ("memory".to_owned(), Quantity(format!("{}Ki", usage.memory_bytes / 1024))),
    ])
}

/// A duration as Go's `time.ParseDuration` reads it, to the millisecond: `1.5s`, `20.064s`.
pub fn go_duration(duration: SignedDuration) -> String {
    let millis = duration.as_millis().max(0);
    let (seconds, fraction) = (millis / 1000, millis % 1000);
    if fraction == 0 {
        return format!("{seconds}s");
    }
    let fraction = format!("{fraction:03}");
    format!("{seconds}.{}s", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("a valid time")
    }

    // Windows print as Go durations kubectl can parse.
    #[test]
    fn windows_are_go_durations() {
        for (millis, expected) in
            [(1500, "1.5s"), (1000, "1s"), (20_064, "20.064s"), (750, "0.75s"), (0, "0s")]
        {
            assert_eq!(go_duration(SignedDuration::from_millis(millis)), expected);
        }
        assert_eq!(go_duration(SignedDuration::from_millis(-5)), "0s");
    }

    // NodeMetrics and PodMetrics have metrics-server's JSON: the object's name, namespace and
    // labels, creation now, the window's end as timestamp, CPU in nanocores, memory in KiB.
    #[test]
    fn response_shapes() {
        let usage = Usage { cpu_nanocores: 12_345, memory_bytes: 2 << 20 };
        let node = json!({"metadata": {"name": "a1", "labels": {"kubernetes.io/os": "linux"}, "uid": "x"}});
        let node_usage = NodeUsage { usage, timestamp: at(100), window: SignedDuration::from_millis(1500) };
        assert_eq!(
            serde_json::to_value(NodeMetrics::new(&node, &node_usage, at(200))).expect("serializes"),
            json!({
                "apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics",
                "metadata": {"name": "a1", "labels": {"kubernetes.io/os": "linux"}, "creationTimestamp": "1970-01-01T00:03:20Z"},
                "timestamp": "1970-01-01T00:01:40Z", "window": "1.5s",
                "usage": {"cpu": "12345n", "memory": "2048Ki"},
            })
        );
        let pod = json!({"metadata": {"name": "web", "namespace": "team"}});
        let pod_usage = PodUsage {
            containers: vec![
                ("c".into(), usage),
                ("side".into(), Usage { cpu_nanocores: 0, memory_bytes: 1023 }),
            ],
            timestamp: at(100),
            window: SignedDuration::from_secs(2),
        };
        let list = MetricsList::new("PodMetricsList", vec![PodMetrics::new(&pod, &pod_usage, at(200))]);
        assert_eq!(
            serde_json::to_value(list).expect("serializes"),
            json!({
                "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetricsList", "metadata": {},
                "items": [{
                    "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
                    "metadata": {"name": "web", "namespace": "team", "creationTimestamp": "1970-01-01T00:03:20Z"},
                    "timestamp": "1970-01-01T00:01:40Z", "window": "2s",
                    "containers": [
                        {"name": "c", "usage": {"cpu": "12345n", "memory": "2048Ki"}},
                        {"name": "side", "usage": {"cpu": "0n", "memory": "0Ki"}},
                    ],
                }],
            })
        );
    }
}
