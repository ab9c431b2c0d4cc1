//! The resource types the API serves: names, scope, verbs, and how each is decoded.
//!
//! One static table, `RESOURCES`, drives discovery, routing, OpenAPI and storage keys, so a
//! resource exists everywhere or nowhere. Per-kind behaviour that needs the Rust type (strict
//! decoding, strategic merge, the OpenAPI schema) is captured as plain function pointers
//! instantiated for the k8s-openapi type when the table is built.

use std::fmt::Write as _;

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::authorization::v1 as authorization;
use k8s_openapi::api::autoscaling::v2 as autoscaling;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::policy::v1 as policy;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::managed_fields;
use crate::metrics::types as metrics;
use crate::strategic_merge::{self, PatchError};

/// The verbs of an ordinary stored resource.
pub const STORED_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// One served resource type.
#[derive(Debug)]
pub struct ResourceType {
    /// The API group, empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment: `pods`, `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Where its objects come from.
    pub source: Source,
    pub codec: Codec,
}

/// Where a type's objects come from; only `Store` types have storage keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The replicated store, through `ObjectStore`: every verb of [`STORED_VERBS`].
    Store,
    /// Computed from the request's body and answered, never kept (SelfSubjectAccessReview).
    Review,
    /// Measured on the nodes by their agents, read-only (`metrics.k8s.io`, see `metrics`).
    Metrics,
}

/// The verbs of the `metrics.k8s.io` kinds, as metrics-server serves them.
pub const METRICS_VERBS: &[&str] = &["get", "list"];

/// A subresource such as `pods/status`, as discovery lists it.
#[derive(Debug)]
pub struct Subresource {
    pub name: &'static str,
    /// The kind its requests and responses carry, with its group and version.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// The per-kind functions that need the k8s-openapi type.
#[derive(Clone, Copy)]
pub struct Codec {
    /// Decodes the object through its Rust type, returning the normalized JSON (unknown fields
    /// dropped) and the paths of the unknown fields, `.spec.replicaz` style.
    pub normalize: fn(Value) -> Result<Normalized, serde_json::Error>,
    pub strategic_merge: fn(&Value, &Value) -> Result<Value, PatchError>,
    /// Server-side apply (see `managed_fields::apply`).
    pub apply: fn(&managed_fields::Apply<'_>) -> Result<Value, managed_fields::ApplyError>,
    /// Records a non-apply write in managedFields (see `managed_fields::record_update`).
    pub record_update: fn(Option<&Value>, &mut Value, &str, &str, &str, Option<&str>),
    /// Adds the kind's schema (and the schemas it refers to) to a generator.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Codec")
    }
}

/// An object after decoding through its type.
#[derive(Debug)]
pub struct Normalized {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

/// Each type is one static entry: identity is the entry.
impl PartialEq for ResourceType {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group: how errors name the resource.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.to_owned() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// `Deployment.apps`, or `Pod`: how validation errors name the kind.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() { self.kind.to_owned() } else { format!("{}.{}", self.kind, self.group) }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|subresource| subresource.name == name)
    }
}

/// Finds a served resource by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
}

/// Finds a served resource by its kind's group and name.
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|rt| rt.group == group && rt.kind == kind)
}

/// The group versions served, in discovery order: core first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut seen: Vec<(&'static str, &'static str)> = Vec::new();
    for rt in RESOURCES {
        if !seen.contains(&(rt.group, rt.version)) {
            seen.push((rt.group, rt.version));
        }
    }
    seen
}

const fn codec<K>() -> Codec
where
    K: DeserializeOwned + Serialize + schemars::JsonSchema,
{
    Codec {
        normalize: normalize::<K>,
        strategic_merge: strategic_merge::apply::<K>,
        apply: managed_fields::apply::<K>,
        record_update: managed_fields::record_update::<K>,
        schema: schema::<K>,
    }
}

fn normalize<K: DeserializeOwned + Serialize>(object: Value) -> Result<Normalized, serde_json::Error> {
    let mut unknown_fields = Vec::new();
    let typed: K = serde_ignored::deserialize(object, |path| unknown_fields.push(field_path(&path)))?;
    let object = serde_json::to_value(&typed)?;
    Ok(Normalized { object, unknown_fields })
}

fn schema<K: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<K>()
}

/// Kubernetes' notation for a field path: `.spec.containers[0].imagePullPolicyy`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => {
            let mut text = field_path(parent);
            let _ = write!(text, "[{index}]");
            text
        }
        Path::Map { parent, key } => format!("{}.{key}", field_path(parent)),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            field_path(parent)
        }
    }
}

const STATUS: Subresource =
    Subresource { name: "status", group: "", version: "", kind: "", verbs: &["get", "patch", "update"] };

const fn status_of(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource { name: "status", group, version, kind, verbs: STATUS.verbs }
}

const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: &["get", "patch", "update"],
    }
}

macro_rules! resource {
    ($ty:ty, $group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr,
     namespaced: $namespaced:expr, short: $short:expr, categories: $categories:expr,
     subresources: $subresources:expr) => {
        ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            categories: $categories,
            namespaced: $namespaced,
            verbs: STORED_VERBS,
            subresources: $subresources,
            source: Source::Store,
            codec: codec::<$ty>(),
        }
    };
}

/// Every resource type the API serves.
pub static RESOURCES: &[ResourceType] = &[
    resource!(core::Namespace, "", "v1", "Namespace", "namespaces", "namespace",
        namespaced: false, short: &["ns"], categories: &[],
        subresources: &[status_of("", "v1", "Namespace"),
            Subresource { name: "finalize", group: "", version: "v1", kind: "Namespace", verbs: &["update"] }]),
    resource!(core::Node, "", "v1", "Node", "nodes", "node",
        namespaced: false, short: &["no"], categories: &[],
        subresources: &[status_of("", "v1", "Node")]),
    resource!(core::Pod, "", "v1", "Pod", "pods", "pod",
    namespaced: true, short: &["po"], categories: &["all"],
    subresources: &[
        Subresource { name: "binding", group: "", version: "v1", kind: "Binding", verbs: &["create"] },
        Subresource { name: "eviction", group: "policy", version: "v1", kind: "Eviction", verbs: &["create"] },
        Subresource { name: "exec", group: "", version: "v1", kind: "PodExecOptions", verbs: &["create", "get"] },
        Subresource { name: "log", group: "", version: "v1", kind: "Pod", verbs: &["get"] },
        status_of("", "v1", "Pod"),
    ]),
    resource!(core::Service, "", "v1", "Service", "services", "service",
        namespaced: true, short: &["svc"], categories: &["all"],
        subresources: &[status_of("", "v1", "Service")]),
    resource!(core::Endpoints, "", "v1", "Endpoints", "endpoints", "endpoints",
        namespaced: true, short: &["ep"], categories: &[], subresources: &[]),
    resource!(core::ConfigMap, "", "v1", "ConfigMap", "configmaps", "configmap",
        namespaced: true, short: &["cm"], categories: &[], subresources: &[]),
    resource!(core::Secret, "", "v1", "Secret", "secrets", "secret",
        namespaced: true, short: &[], categories: &[], subresources: &[]),
    resource!(core::ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount",
        namespaced: true, short: &["sa"], categories: &[], subresources: &[]),
    resource!(core::Event, "", "v1", "Event", "events", "event",
        namespaced: true, short: &["ev"], categories: &[], subresources: &[]),
    resource!(apps::Deployment, "apps", "v1", "Deployment", "deployments", "deployment",
        namespaced: true, short: &["deploy"], categories: &["all"],
        subresources: &[scale(), status_of("apps", "v1", "Deployment")]),
    resource!(apps::ReplicaSet, "apps", "v1", "ReplicaSet", "replicasets", "replicaset",
        namespaced: true, short: &["rs"], categories: &["all"],
        subresources: &[scale(), status_of("apps", "v1", "ReplicaSet")]),
    resource!(coordination::Lease, "coordination.k8s.io", "v1", "Lease", "leases", "lease",
        namespaced: true, short: &[], categories: &[], subresources: &[]),
    resource!(discovery::EndpointSlice, "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice",
        namespaced: true, short: &[], categories: &[], subresources: &[]),
    resource!(autoscaling::HorizontalPodAutoscaler, "autoscaling", "v2", "HorizontalPodAutoscaler",
        "horizontalpodautoscalers", "horizontalpodautoscaler",
        namespaced: true, short: &["hpa"], categories: &["all"],
        subresources: &[status_of("autoscaling", "v2", "HorizontalPodAutoscaler")]),
    ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        short_names: &[],
        categories: &[],
        namespaced: false,
        verbs: &["create"],
        subresources: &[],
        source: Source::Review,
        codec: codec::<authorization::SelfSubjectAccessReview>(),
    },
    ResourceType {
        group: metrics::GROUP,
        version: metrics::VERSION,
        kind: "NodeMetrics",
        plural: "nodes",
        singular: "nodemetrics",
        short_names: &[],
        categories: &[],
        namespaced: false,
        verbs: METRICS_VERBS,
        subresources: &[],
        source: Source::Metrics,
        codec: codec::<metrics::NodeMetrics>(),
    },
    ResourceType {
        group: metrics::GROUP,
        version: metrics::VERSION,
        kind: "PodMetrics",
        plural: "pods",
        singular: "podmetrics",
        short_names: &[],
        categories: &[],
        namespaced: true,
        verbs: METRICS_VERBS,
        subresources: &[],
        source: Source::Metrics,
        codec: codec::<metrics::PodMetrics>(),
    },
];

/// The Eviction kind, posted to `pods/eviction`.
pub static EVICTION: Codec = codec::<policy::Eviction>();
/// The Binding kind, posted to `pods/binding`.
pub static BINDING: Codec = codec::<core::Binding>();

#[cfg(test)]
mod tests {
    use super::*;

    // Every (group, version, plural) and every (group, kind) names exactly one type, and every
    // short name is unique: discovery and routing rely on both.
    #[test]
    fn names_are_unique() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{}",
                    a.plural
                );
                assert!(!(a.group == b.group && a.kind == b.kind), "{}", a.kind);
                for short in a.short_names {
                    assert!(!b.short_names.contains(short), "{short}");
                }
            }
        }
    }

    // Strict decoding reports unknown fields in Kubernetes' path notation and drops them.
    #[test]
    fn normalize_reports_unknown_fields() {
        let object = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicaz": 3, "selector": {}, "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}}
        });
        let rt = find("apps", "v1", "deployments").expect("deployments are served");
        let normalized = (rt.codec.normalize)(object).expect("decodes");
        assert_eq!(normalized.unknown_fields, [".spec.replicaz", ".spec.template.spec.containers[0].imagee"]);
        assert!(normalized.object["spec"].get("replicaz").is_none());
    }
}
