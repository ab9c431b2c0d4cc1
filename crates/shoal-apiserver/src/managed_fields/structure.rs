//! How server-side apply sees each field of the Kubernetes types: which lists are maps keyed by
//! some of their elements' fields, which are sets, which structs and maps are atomic, and which
//! fields a Go object always has.
//!
//! Upstream reads the first three from the OpenAPI extensions `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type` (generated from the `+listType`,
//! `+listMapKey`, `+structType` and `+mapType` tags of k8s.io/api), falling back to the
//! `patchStrategy`/`patchMergeKey` tags, and lists and fields without any are atomic lists and
//! granular structs and maps. k8s-openapi's schemas carry none of these, so the tables below
//! keep them, by schema definition and field, as the tags of k8s.io/api and k8s.io/apimachinery
//! give them for every GA type k8s-openapi 0.29 has for Kubernetes 1.33 (and kube-aggregator's
//! APIService). A list's map keys differ from its strategic-merge key where upstream says so:
//! container ports are keyed by port and protocol, not port alone.

/// The relationship of a list's elements; lists not in [`LIST_TYPES`] are atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListType {
    /// `listType=map`: elements are identified by these fields; a missing key field takes the
    /// default if it has one, or is left out of the key.
    Map(&'static [MapKey]),
    /// `listType=set`: scalar elements identified by their value.
    Set,
}

/// A key field of a list map, with the default upstream gives it when an element omits it.
pub(super) type MapKey = (&'static str, Option<&'static str>);

const NAME: &[MapKey] = &[("name", None)];
/// `imagePullSecrets` elements default their name to the empty string (`+default=""`).
const NAME_DEFAULT_EMPTY: &[MapKey] = &[("name", Some(""))];
const TYPE: &[MapKey] = &[("type", None)];
const UID: &[MapKey] = &[("uid", None)];
const IP: &[MapKey] = &[("ip", None)];
const MOUNT_PATH: &[MapKey] = &[("mountPath", None)];
const DEVICE_PATH: &[MapKey] = &[("devicePath", None)];
const RESOURCE_ID: &[MapKey] = &[("resourceID", None)];
const CONTAINER_PORT: &[MapKey] = &[("containerPort", None), ("protocol", Some("TCP"))];
const SERVICE_PORT: &[MapKey] = &[("port", None), ("protocol", Some("TCP"))];
const TOPOLOGY_SPREAD: &[MapKey] = &[("topologyKey", None), ("whenUnsatisfiable", None)];

/// The lists that are not atomic, as (schema definition, field, list type).
pub(super) const LIST_TYPES: &[(&str, &str, ListType)] = {
    use ListType::{Map, Set};
    &[
        ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", Map(NAME)),
        ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", Map(NAME)),
        (
            "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec",
            "validationActions",
            Set,
        ),
        ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", Map(NAME)),
        ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", Map(NAME)),
        ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", Map(NAME)),
        ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", Map(NAME)),
        ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", Set),
        ("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", Set),
        ("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", Set),
        ("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.core.v1.ResourceRequirements", "claims", Map(NAME)),
        ("io.k8s.api.core.v1.Container", "ports", Map(CONTAINER_PORT)),
        ("io.k8s.api.core.v1.Container", "env", Map(NAME)),
        ("io.k8s.api.core.v1.Container", "volumeMounts", Map(MOUNT_PATH)),
        ("io.k8s.api.core.v1.Container", "volumeDevices", Map(DEVICE_PATH)),
        ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", Map(MOUNT_PATH)),
        ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", Map(NAME)),
        ("io.k8s.api.core.v1.ResourceStatus", "resources", Map(RESOURCE_ID)),
        ("io.k8s.api.core.v1.PodSpec", "volumes", Map(NAME)),
        ("io.k8s.api.core.v1.PodSpec", "initContainers", Map(NAME)),
        ("io.k8s.api.core.v1.PodSpec", "containers", Map(NAME)),
        ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", Map(NAME)),
        ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", Map(NAME_DEFAULT_EMPTY)),
        ("io.k8s.api.core.v1.PodSpec", "hostAliases", Map(IP)),
        ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", Map(TOPOLOGY_SPREAD)),
        ("io.k8s.api.core.v1.PodSpec", "schedulingGates", Map(NAME)),
        ("io.k8s.api.core.v1.PodSpec", "resourceClaims", Map(NAME)),
        ("io.k8s.api.core.v1.EphemeralContainer", "ports", Map(CONTAINER_PORT)),
        ("io.k8s.api.core.v1.EphemeralContainer", "env", Map(NAME)),
        ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", Map(MOUNT_PATH)),
        ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", Map(DEVICE_PATH)),
        ("io.k8s.api.core.v1.PodStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.core.v1.PodStatus", "podIPs", Map(IP)),
        ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", Map(NAME)),
        ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.core.v1.ServiceStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.core.v1.ServiceSpec", "ports", Map(SERVICE_PORT)),
        ("io.k8s.api.core.v1.ServiceAccount", "secrets", Map(NAME)),
        ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", Set),
        ("io.k8s.api.core.v1.NodeStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.core.v1.NodeStatus", "addresses", Map(TYPE)),
        ("io.k8s.api.core.v1.NamespaceStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.core.v1.ComponentStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.discovery.v1.Endpoint", "addresses", Set),
        ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "verbs", Set),
        ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "apiGroups", Set),
        ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "resources", Set),
        ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "namespaces", Set),
        ("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "verbs", Set),
        ("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "nonResourceURLs", Set),
        ("io.k8s.api.flowcontrol.v1.FlowSchemaStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.networking.v1.ServiceCIDRStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", Map(TYPE)),
        ("io.k8s.api.storage.v1.CSIDriverSpec", "volumeLifecycleModes", Set),
        ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", Map(NAME)),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", Map(UID)),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", Set),
        ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", "conditions", Map(TYPE)),
    ]
};

/// The structs whose every value is replaced whole (`+structType=atomic`).
pub(super) const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.api.admissionregistration.v1.ParamKind",
    "io.k8s.api.admissionregistration.v1.Variable",
    "io.k8s.api.admissionregistration.v1.ParamRef",
    "io.k8s.api.admissionregistration.v1.MatchResources",
    "io.k8s.api.admissionregistration.v1.NamedRuleWithOperations",
    "io.k8s.api.autoscaling.v1.CrossVersionObjectReference",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.discovery.v1.EndpointPort",
    "io.k8s.api.networking.v1.ServiceBackendPort",
    "io.k8s.api.rbac.v1.Subject",
    "io.k8s.api.rbac.v1.RoleRef",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
];

/// Fields whose map is replaced whole (`+mapType=atomic`), as (schema definition, field).
pub(super) const ATOMIC_MAP_FIELDS: &[(&str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector"),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "selector"),
    ("io.k8s.api.core.v1.ServiceSpec", "selector"),
    ("io.k8s.api.node.v1.Scheduling", "nodeSelector"),
];

/// Fields of an atomic struct type that are granular all the same (`+structType=granular`).
pub(super) const GRANULAR_STRUCT_FIELDS: &[(&str, &str)] =
    &[("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef")];

/// Optional fields that a Go object has all the same, because their type is a struct rather
/// than a pointer to one. Together with required fields and every `metadata`, `spec` and
/// `status` struct, they are what an object decoded into Go always carries, which decides
/// whether an update *adds* such a struct (and so owns it as a whole) or only fields inside it.
pub(super) const OPTIONAL_VALUE_STRUCTS: &[(&str, &str)] = &[
    ("io.k8s.api.apps.v1.StatefulSetSpec", "updateStrategy"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy"),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "template"),
    ("io.k8s.api.authentication.v1.TokenReviewStatus", "user"),
    ("io.k8s.api.authentication.v1.SelfSubjectReviewStatus", "userInfo"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "resources"),
    ("io.k8s.api.core.v1.Container", "resources"),
    ("io.k8s.api.core.v1.ContainerStatus", "state"),
    ("io.k8s.api.core.v1.ContainerStatus", "lastState"),
    ("io.k8s.api.core.v1.EphemeralContainer", "resources"),
    ("io.k8s.api.core.v1.PodTemplate", "template"),
    ("io.k8s.api.core.v1.ServiceStatus", "loadBalancer"),
    ("io.k8s.api.core.v1.NodeDaemonEndpoints", "kubeletEndpoint"),
    ("io.k8s.api.core.v1.NodeStatus", "daemonEndpoints"),
    ("io.k8s.api.core.v1.NodeStatus", "nodeInfo"),
    ("io.k8s.api.core.v1.Event", "source"),
    ("io.k8s.api.discovery.v1.Endpoint", "conditions"),
    ("io.k8s.api.events.v1.Event", "deprecatedSource"),
    ("io.k8s.api.flowcontrol.v1.LimitedPriorityLevelConfiguration", "limitResponse"),
    ("io.k8s.api.networking.v1.IngressStatus", "loadBalancer"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "preferredVersion"),
];

#[cfg(test)]
mod tests {
    use k8s_openapi::api::admissionregistration::v1 as admissionregistration;
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::authentication::v1 as authentication;
    use k8s_openapi::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling};
    use k8s_openapi::api::batch::v1 as batch;
    use k8s_openapi::api::certificates::v1 as certificates;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::discovery::v1 as discovery;
    use k8s_openapi::api::events::v1 as events;
    use k8s_openapi::api::flowcontrol::v1 as flowcontrol;
    use k8s_openapi::api::networking::v1 as networking;
    use k8s_openapi::api::node::v1 as node;
    use k8s_openapi::api::policy::v1 as policy;
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::api::storage::v1 as storage;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
    use serde_json::Value;

    use super::*;
    use crate::schema::{Node, Schemas};

    /// The schemas of enough types that every definition the tables name is generated.
    fn all_schemas() -> Schemas {
        let _ = (
            Schemas::of::<admissionregistration::ValidatingAdmissionPolicy>(),
            Schemas::of::<admissionregistration::ValidatingAdmissionPolicyBinding>(),
            Schemas::of::<admissionregistration::ValidatingWebhookConfiguration>(),
            Schemas::of::<admissionregistration::MutatingWebhookConfiguration>(),
            Schemas::of::<apps::StatefulSet>(),
            Schemas::of::<apps::Deployment>(),
            Schemas::of::<apps::DaemonSet>(),
            Schemas::of::<apps::ReplicaSet>(),
            Schemas::of::<authentication::TokenReview>(),
            Schemas::of::<authentication::SelfSubjectReview>(),
            Schemas::of::<autoscaling_v1::HorizontalPodAutoscaler>(),
            Schemas::of::<autoscaling::HorizontalPodAutoscaler>(),
            Schemas::of::<batch::Job>(),
            Schemas::of::<certificates::CertificateSigningRequest>(),
            Schemas::of::<core::Pod>(),
            Schemas::of::<core::PodTemplate>(),
            Schemas::of::<core::PersistentVolume>(),
            Schemas::of::<core::PersistentVolumeClaim>(),
            Schemas::of::<core::ReplicationController>(),
            Schemas::of::<core::Service>(),
            Schemas::of::<core::ServiceAccount>(),
            Schemas::of::<core::Node>(),
            Schemas::of::<core::Namespace>(),
            Schemas::of::<core::ComponentStatus>(),
            Schemas::of::<core::Endpoints>(),
            Schemas::of::<core::Event>(),
            Schemas::of::<core::ResourceQuota>(),
            Schemas::of::<discovery::EndpointSlice>(),
            Schemas::of::<events::Event>(),
            Schemas::of::<flowcontrol::FlowSchema>(),
            Schemas::of::<flowcontrol::PriorityLevelConfiguration>(),
            Schemas::of::<networking::Ingress>(),
            Schemas::of::<networking::ServiceCIDR>(),
            Schemas::of::<node::RuntimeClass>(),
            Schemas::of::<policy::PodDisruptionBudget>(),
            Schemas::of::<rbac::RoleBinding>(),
            Schemas::of::<storage::CSIDriver>(),
            Schemas::of::<storage::CSINode>(),
            Schemas::of::<storage::StorageClass>(),
            Schemas::of::<meta::APIGroup>(),
        );
        // The last type's snapshot holds the definitions of every type generated before it.
        Schemas::of::<apiregistration::APIService>()
    }

    /// The field `field` of definition `definition`, which must exist.
    #[track_caller]
    fn field<'s>(schemas: &'s Schemas, definition: &str, field: &str) -> Node<'s> {
        let Some((name, Value::Object(schema))) = schemas.definitions.get_key_value(definition) else {
            panic!("no definition {definition}");
        };
        let node = Node { definition: Some(name), schema: Some(schema) };
        schemas.property(node, field).unwrap_or_else(|| panic!("{definition} has no field {field}"))
    }

    #[test]
    fn tables_name_real_fields() {
        // Every row must name a field of k8s-openapi's schemas with the shape its row says, or
        // the row would silently never apply.
        let schemas = all_schemas();
        for (definition, name, list_type) in LIST_TYPES {
            let list = field(&schemas, definition, name);
            assert_eq!(list.type_name(), Some("array"), "{definition}.{name}");
            let items = schemas.items(list);
            match list_type {
                ListType::Map(keys) => {
                    for (key, _) in *keys {
                        assert!(
                            schemas.property(items, key).is_some(),
                            "{definition}.{name} elements lack {key}"
                        );
                    }
                }
                ListType::Set => assert_ne!(items.type_name(), Some("object"), "{definition}.{name}"),
            }
        }
        for definition in ATOMIC_STRUCTS {
            let schema = schemas.definitions.get(*definition);
            assert!(schema.is_some_and(|schema| schema.get("properties").is_some()), "{definition}");
        }
        for (definition, name) in ATOMIC_MAP_FIELDS {
            assert!(schemas.values(field(&schemas, definition, name)).is_some(), "{definition}.{name}");
        }
        for (definition, name) in GRANULAR_STRUCT_FIELDS.iter().chain(OPTIONAL_VALUE_STRUCTS) {
            let node = field(&schemas, definition, name);
            assert!(node.has_properties(), "{definition}.{name} is not a struct");
        }
    }
}
