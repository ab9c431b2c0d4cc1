//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into the
//! JSON the rest of the server handles.
//!
//! kubectl's typed clientset sends its bodies as protobuf (`create configmap|secret|namespace|
//! serviceaccount|deployment`, `create token`, `auth can-i`, drain's pod DELETE), and a 415 does
//! not make it retry with JSON, so these kinds have to be read. A body is the 4 bytes `k8s\0`
//! and a `runtime.Unknown` envelope whose `raw` field holds the object's message. The `wire`
//! structs mirror the field numbers of upstream `generated.proto` (kubernetes/api,
//! kubernetes/apimachinery); each converts into its k8s-openapi type, whose serde form is the
//! JSON shape the server works with.
//!
//! Go's encoder writes every non-pointer field, so empty strings, zeros, `false` and empty
//! structs arrive where kubectl's JSON would have left them out (`omitempty`). The conversions
//! drop them again with `omit_empty`, and keep presence only where the Go field is a pointer.
//!
//! Fields that are not modelled fall in two groups. Server-owned ones (status, managedFields,
//! selfLink) are skipped, as the server would overwrite them anyway. Pod template fields that
//! carry meaning (volumes, probes, affinity, …) are kept as opaque bytes, so that a body using
//! them is refused with 415 instead of being stored without them.
//!
//! The file is long because it is mostly a table of wire messages, each next to its conversion.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::authentication::v1 as authentication;
use k8s_openapi::api::authorization::v1 as authorization;
use k8s_openapi::api::autoscaling::v2 as autoscaling;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource as quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr;
use prost::Message;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::resource::ResourceType;

/// The media type of these bodies, as the envelope's `contentType` may repeat it.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Decodes a `application/vnd.kubernetes.protobuf` body into the object's JSON (apiVersion and
/// kind included, k8s-openapi's JSON shape: e.g. Secret data as base64 strings, quantities as
/// strings, IntOrString as number or string).
///
/// The envelope's type must be `resource`'s kind or the kind of one of its subresources (a
/// TokenRequest is posted to `serviceaccounts/token`); a blank apiVersion or kind is taken from
/// `resource`, as upstream does. Malformed bytes and a type mismatch give 400; a kind or a field
/// this module does not decode gives 415, naming JSON as the accepted media type.
pub fn decode(resource: &ResourceType, body: &[u8]) -> Result<Value, ApiError> {
    let envelope = open(body)?;
    let (api_version, kind) = object_type(resource, &envelope)?;
    let raw = envelope.raw.as_slice();
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => to_json(core::ConfigMap::from(parse::<wire::ConfigMap>(&kind, raw)?)),
        ("v1", "Secret") => to_json(core::Secret::from(parse::<wire::Secret>(&kind, raw)?)),
        ("v1", "Namespace") => to_json(core::Namespace::from(parse::<wire::Namespace>(&kind, raw)?)),
        ("v1", "ServiceAccount") => {
            to_json(core::ServiceAccount::from(parse::<wire::ServiceAccount>(&kind, raw)?))
        }
        ("apps/v1", "Deployment") => {
            let deployment = parse::<wire::Deployment>(&kind, raw)?;
            if let Some(field) = deployment.unsupported_field() {
                tracing::info!(%field, "refused a protobuf Deployment using a field shoal does not decode");
                return Err(unsupported());
            }
            to_json(apps::Deployment::from(deployment))
        }
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            let autoscaler = parse::<wire::HorizontalPodAutoscaler>(&kind, raw)?;
            if let Some(field) = autoscaler.unsupported_field() {
                tracing::info!(%field, "refused a protobuf HorizontalPodAutoscaler using a field shoal does not decode");
                return Err(unsupported());
            }
            to_json(autoscaling::HorizontalPodAutoscaler::from(autoscaler))
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => to_json(
            authorization::SelfSubjectAccessReview::from(parse::<wire::SelfSubjectAccessReview>(&kind, raw)?),
        ),
        ("authentication.k8s.io/v1", "TokenRequest") => {
            to_json(authentication::TokenRequest::from(parse::<wire::TokenRequest>(&kind, raw)?))
        }
        _ => Err(unsupported()),
    }
}

/// Decodes a protobuf DELETE body into DeleteOptions JSON. Every group version registers
/// DeleteOptions, so any apiVersion is accepted and kept; the kind must be DeleteOptions.
pub fn decode_delete_options(body: &[u8]) -> Result<Value, ApiError> {
    const KIND: &str = "DeleteOptions";
    let envelope = open(body)?;
    if !envelope.kind.is_empty() && envelope.kind != KIND {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({}) does not match the expected kind ({KIND})",
            envelope.kind
        )));
    }
    let mut options = meta::DeleteOptions::from(parse::<wire::DeleteOptions>(KIND, &envelope.raw)?);
    options.api_version = omit_empty(Some(envelope.api_version));
    options.kind = Some(KIND.to_owned());
    to_json(options)
}

/// The 4 bytes before every Kubernetes protobuf message: `k8s` and a NUL.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Go's JSON writes times as RFC 3339 in whole seconds, in the years 0001 to 9999.
const TIME_SECONDS_MIN: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
const TIME_SECONDS_MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

/// An opened `runtime.Unknown`: the object's declared type and its message bytes.
struct Envelope {
    api_version: String,
    kind: String,
    raw: Vec<u8>,
}

fn open(body: &[u8]) -> Result<Envelope, ApiError> {
    let Some(message) = body.strip_prefix(MAGIC) else {
        return Err(ApiError::bad_request("a protobuf body must start with the 4 bytes \"k8s\\0\""));
    };
    let unknown = wire::Unknown::decode(message).map_err(|error| {
        ApiError::bad_request(format!(
            "the protobuf envelope (runtime.Unknown) could not be decoded: {error}"
        ))
    })?;
    // Upstream only ever writes an empty contentEncoding; anything else would need undoing first.
    if !unknown.content_encoding.unwrap_or_default().is_empty() {
        return Err(unsupported());
    }
    if !matches!(unknown.content_type.as_deref(), None | Some("") | Some(MEDIA_TYPE)) {
        return Err(unsupported());
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    Ok(Envelope {
        api_version: type_meta.api_version.unwrap_or_default(),
        kind: type_meta.kind.unwrap_or_default(),
        raw: unknown.raw.unwrap_or_default(),
    })
}

/// The envelope's apiVersion and kind, blanks filled in from `resource`, if `resource` takes
/// that type itself or through a subresource.
fn object_type(resource: &ResourceType, envelope: &Envelope) -> Result<(String, String), ApiError> {
    let expected_api_version = resource.api_version();
    let api_version = if envelope.api_version.is_empty() {
        expected_api_version.clone()
    } else {
        envelope.api_version.clone()
    };
    let kind = if envelope.kind.is_empty() { resource.kind.to_owned() } else { envelope.kind.clone() };
    let is_subresource_type = resource.subresources.iter().any(|subresource| {
        !subresource.kind.is_empty()
            && subresource.kind == kind
            && group_version(subresource.group, subresource.version) == api_version
    });
    if is_subresource_type || (kind == resource.kind && api_version == expected_api_version) {
        return Ok((api_version, kind));
    }
    let message = if kind == resource.kind {
        format!(
            "the API version in the data ({api_version}) does not match the expected API version \
             ({expected_api_version})"
        )
    } else {
        format!("the kind in the data ({kind}) does not match the expected kind ({})", resource.kind)
    };
    Err(ApiError::bad_request(message))
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") }
}

fn parse<M: Message + Default>(kind: &str, raw: &[u8]) -> Result<M, ApiError> {
    M::decode(raw).map_err(|error| {
        ApiError::bad_request(format!(
            "the protobuf {kind} in the request body could not be decoded: {error}"
        ))
    })
}

fn to_json(object: impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(object).map_err(|error| {
        ApiError::internal(format!("a decoded protobuf object did not serialize to JSON: {error}"))
    })
}

fn unsupported() -> ApiError {
    ApiError::UnsupportedMediaType { accepted: "application/json".into() }
}

/// Go's `omitempty`: the zero value (empty string, 0, false, empty struct) is absent.
fn omit_empty<T: Default + PartialEq>(value: Option<T>) -> Option<T> {
    value.filter(|value| *value != T::default())
}

/// A repeated field; an empty one is absent, as `omitempty` writes it.
fn list<W, K: From<W>>(items: Vec<W>) -> Option<Vec<K>> {
    (!items.is_empty()).then(|| items.into_iter().map(K::from).collect())
}

/// A map field; an empty one is absent, as `omitempty` writes it.
fn map<W, K>(entries: BTreeMap<String, W>, convert: impl Fn(W) -> K) -> Option<BTreeMap<String, K>> {
    (!entries.is_empty()).then(|| entries.into_iter().map(|(key, value)| (key, convert(value))).collect())
}

/// A `metav1.Time`. An empty message is Go's zero time, which JSON writes as null. Every time
/// kubectl sends is server-owned (creation, deletion), so one that JSON cannot write is dropped
/// rather than refused; nanoseconds are dropped as Go's JSON does.
fn time(value: Option<wire::Time>) -> Option<meta::Time> {
    let value = value?;
    if value.seconds.is_none() && value.nanos.is_none() {
        return None;
    }
    let seconds = value.seconds.unwrap_or_default();
    if !(TIME_SECONDS_MIN..=TIME_SECONDS_MAX).contains(&seconds) {
        return None;
    }
    k8s_openapi::jiff::Timestamp::from_second(seconds).ok().map(meta::Time)
}

/// The wire messages, each followed by its conversion to the k8s-openapi type. Fields kept as
/// `Opaque` are not decoded; their presence refuses the body (see `unsupported_field`).
mod wire {
    use super::*;

    /// The bytes of a message field this module does not decode.
    type Opaque = Vec<u8>;

    // k8s.io/apimachinery/pkg/runtime/generated.proto

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Unknown {
        #[prost(message, optional, tag = "1")]
        pub type_meta: Option<TypeMeta>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub raw: Option<Vec<u8>>,
        #[prost(string, optional, tag = "3")]
        pub content_encoding: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub content_type: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeMeta {
        #[prost(string, optional, tag = "1")]
        pub api_version: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub kind: Option<String>,
    }

    // k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto, api/resource, util/intstr

    /// Not modelled: 4 selfLink, 17 managedFields (server-owned).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ObjectMeta {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub generate_name: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub namespace: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub uid: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub resource_version: Option<String>,
        #[prost(int64, optional, tag = "7")]
        pub generation: Option<i64>,
        #[prost(message, optional, tag = "8")]
        pub creation_timestamp: Option<Time>,
        #[prost(message, optional, tag = "9")]
        pub deletion_timestamp: Option<Time>,
        #[prost(int64, optional, tag = "10")]
        pub deletion_grace_period_seconds: Option<i64>,
        #[prost(btree_map = "string, string", tag = "11")]
        pub labels: BTreeMap<String, String>,
        #[prost(btree_map = "string, string", tag = "12")]
        pub annotations: BTreeMap<String, String>,
        #[prost(message, repeated, tag = "13")]
        pub owner_references: Vec<OwnerReference>,
        #[prost(string, repeated, tag = "14")]
        pub finalizers: Vec<String>,
    }

    impl From<ObjectMeta> for meta::ObjectMeta {
        fn from(message: ObjectMeta) -> Self {
            meta::ObjectMeta {
                name: omit_empty(message.name),
                generate_name: omit_empty(message.generate_name),
                namespace: omit_empty(message.namespace),
                uid: omit_empty(message.uid),
                resource_version: omit_empty(message.resource_version),
                generation: omit_empty(message.generation),
                creation_timestamp: time(message.creation_timestamp),
                deletion_timestamp: time(message.deletion_timestamp),
                deletion_grace_period_seconds: message.deletion_grace_period_seconds,
                labels: map(message.labels, String::from),
                annotations: map(message.annotations, String::from),
                owner_references: list(message.owner_references),
                finalizers: list(message.finalizers),
                managed_fields: None,
                self_link: None,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Time {
        #[prost(int64, optional, tag = "1")]
        pub seconds: Option<i64>,
        #[prost(int32, optional, tag = "2")]
        pub nanos: Option<i32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OwnerReference {
        #[prost(string, optional, tag = "5")]
        pub api_version: Option<String>,
        #[prost(string, optional, tag = "1")]
        pub kind: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub uid: Option<String>,
        #[prost(bool, optional, tag = "6")]
        pub controller: Option<bool>,
        #[prost(bool, optional, tag = "7")]
        pub block_owner_deletion: Option<bool>,
    }

    impl From<OwnerReference> for meta::OwnerReference {
        fn from(message: OwnerReference) -> Self {
            meta::OwnerReference {
                api_version: message.api_version.unwrap_or_default(),
                kind: message.kind.unwrap_or_default(),
                name: message.name.unwrap_or_default(),
                uid: message.uid.unwrap_or_default(),
                controller: message.controller,
                block_owner_deletion: message.block_owner_deletion,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelSelector {
        #[prost(btree_map = "string, string", tag = "1")]
        pub match_labels: BTreeMap<String, String>,
        #[prost(message, repeated, tag = "2")]
        pub match_expressions: Vec<LabelSelectorRequirement>,
    }

    impl From<LabelSelector> for meta::LabelSelector {
        fn from(message: LabelSelector) -> Self {
            meta::LabelSelector {
                match_labels: map(message.match_labels, String::from),
                match_expressions: list(message.match_expressions),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelSelectorRequirement {
        #[prost(string, optional, tag = "1")]
        pub key: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub operator: Option<String>,
        #[prost(string, repeated, tag = "3")]
        pub values: Vec<String>,
    }

    impl From<LabelSelectorRequirement> for meta::LabelSelectorRequirement {
        fn from(message: LabelSelectorRequirement) -> Self {
            meta::LabelSelectorRequirement {
                key: message.key.unwrap_or_default(),
                operator: message.operator.unwrap_or_default(),
                values: list(message.values),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteOptions {
        #[prost(int64, optional, tag = "1")]
        pub grace_period_seconds: Option<i64>,
        #[prost(message, optional, tag = "2")]
        pub preconditions: Option<Preconditions>,
        #[prost(bool, optional, tag = "3")]
        pub orphan_dependents: Option<bool>,
        #[prost(string, optional, tag = "4")]
        pub propagation_policy: Option<String>,
        #[prost(string, repeated, tag = "5")]
        pub dry_run: Vec<String>,
        #[prost(bool, optional, tag = "6")]
        pub ignore_store_read_error_with_cluster_breaking_potential: Option<bool>,
    }

    impl From<DeleteOptions> for meta::DeleteOptions {
        fn from(message: DeleteOptions) -> Self {
            meta::DeleteOptions {
                api_version: None,
                kind: None,
                grace_period_seconds: message.grace_period_seconds,
                preconditions: message.preconditions.map(Into::into),
                orphan_dependents: message.orphan_dependents,
                propagation_policy: message.propagation_policy,
                dry_run: list(message.dry_run),
                ignore_store_read_error_with_cluster_breaking_potential: message
                    .ignore_store_read_error_with_cluster_breaking_potential,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Preconditions {
        #[prost(string, optional, tag = "1")]
        pub uid: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub resource_version: Option<String>,
    }

    impl From<Preconditions> for meta::Preconditions {
        fn from(message: Preconditions) -> Self {
            meta::Preconditions { uid: message.uid, resource_version: message.resource_version }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Quantity {
        #[prost(string, optional, tag = "1")]
        pub string: Option<String>,
    }

    impl From<Quantity> for quantity::Quantity {
        fn from(message: Quantity) -> Self {
            quantity::Quantity(message.string.unwrap_or_default())
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IntOrString {
        #[prost(int64, optional, tag = "1")]
        pub type_: Option<i64>,
        #[prost(int32, optional, tag = "2")]
        pub int_val: Option<i32>,
        #[prost(string, optional, tag = "3")]
        pub str_val: Option<String>,
    }

    impl From<IntOrString> for intstr::IntOrString {
        fn from(message: IntOrString) -> Self {
            // Type 1 is a string, 0 an integer; no Go client can write another type.
            match message.type_ {
                Some(1) => intstr::IntOrString::String(message.str_val.unwrap_or_default()),
                _ => intstr::IntOrString::Int(message.int_val.unwrap_or_default()),
            }
        }
    }

    // k8s.io/api/core/v1/generated.proto

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ConfigMap {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(btree_map = "string, string", tag = "2")]
        pub data: BTreeMap<String, String>,
        #[prost(btree_map = "string, bytes", tag = "3")]
        pub binary_data: BTreeMap<String, Vec<u8>>,
        #[prost(bool, optional, tag = "4")]
        pub immutable: Option<bool>,
    }

    impl From<ConfigMap> for core::ConfigMap {
        fn from(message: ConfigMap) -> Self {
            core::ConfigMap {
                metadata: message.metadata.map(Into::into).unwrap_or_default(),
                data: map(message.data, String::from),
                binary_data: map(message.binary_data, ByteString),
                immutable: message.immutable,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Secret {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(btree_map = "string, bytes", tag = "2")]
        pub data: BTreeMap<String, Vec<u8>>,
        #[prost(string, optional, tag = "3")]
        pub type_: Option<String>,
        #[prost(btree_map = "string, string", tag = "4")]
        pub string_data: BTreeMap<String, String>,
        #[prost(bool, optional, tag = "5")]
        pub immutable: Option<bool>,
    }

    impl From<Secret> for core::Secret {
        fn from(message: Secret) -> Self {
            core::Secret {
                metadata: message.metadata.map(Into::into).unwrap_or_default(),
                data: map(message.data, ByteString),
                type_: omit_empty(message.type_),
                string_data: map(message.string_data, String::from),
                immutable: message.immutable,
            }
        }
    }

    /// Not modelled: 3 status (server-owned).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Namespace {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(message, optional, tag = "2")]
        pub spec: Option<NamespaceSpec>,
    }

    impl From<Namespace> for core::Namespace {
        fn from(message: Namespace) -> Self {
            core::Namespace {
                metadata: message.metadata.map(Into::into).unwrap_or_default(),
                spec: omit_empty(
                    message.spec.map(|spec| core::NamespaceSpec { finalizers: list(spec.finalizers) }),
                ),
                status: None,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamespaceSpec {
        #[prost(string, repeated, tag = "1")]
        pub finalizers: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServiceAccount {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(message, repeated, tag = "2")]
        pub secrets: Vec<ObjectReference>,
        #[prost(message, repeated, tag = "3")]
        pub image_pull_secrets: Vec<LocalObjectReference>,
        #[prost(bool, optional, tag = "4")]
        pub automount_service_account_token: Option<bool>,
    }

    impl From<ServiceAccount> for core::ServiceAccount {
        fn from(message: ServiceAccount) -> Self {
            core::ServiceAccount {
                metadata: message.metadata.map(Into::into).unwrap_or_default(),
                secrets: list(message.secrets),
                image_pull_secrets: list(message.image_pull_secrets),
                automount_service_account_token: message.automount_service_account_token,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ObjectReference {
        #[prost(string, optional, tag = "1")]
        pub kind: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub namespace: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub uid: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub api_version: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub resource_version: Option<String>,
        #[prost(string, optional, tag = "7")]
        pub field_path: Option<String>,
    }

    impl From<ObjectReference> for core::ObjectReference {
        fn from(message: ObjectReference) -> Self {
            core::ObjectReference {
                kind: omit_empty(message.kind),
                namespace: omit_empty(message.namespace),
                name: omit_empty(message.name),
                uid: omit_empty(message.uid),
                api_version: omit_empty(message.api_version),
                resource_version: omit_empty(message.resource_version),
                field_path: omit_empty(message.field_path),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LocalObjectReference {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
    }

    impl From<LocalObjectReference> for core::LocalObjectReference {
        fn from(message: LocalObjectReference) -> Self {
            core::LocalObjectReference { name: message.name.unwrap_or_default() }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodTemplateSpec {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(message, optional, tag = "2")]
        pub spec: Option<PodSpec>,
    }

    impl From<PodTemplateSpec> for core::PodTemplateSpec {
        fn from(message: PodTemplateSpec) -> Self {
            core::PodTemplateSpec {
                metadata: omit_empty(message.metadata.map(Into::into)),
                spec: omit_empty(message.spec.map(Into::into)),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSpec {
        #[prost(bytes = "vec", repeated, tag = "1")]
        pub volumes: Vec<Opaque>,
        #[prost(message, repeated, tag = "20")]
        pub init_containers: Vec<Container>,
        #[prost(message, repeated, tag = "2")]
        pub containers: Vec<Container>,
        #[prost(bytes = "vec", repeated, tag = "34")]
        pub ephemeral_containers: Vec<Opaque>,
        #[prost(string, optional, tag = "3")]
        pub restart_policy: Option<String>,
        #[prost(int64, optional, tag = "4")]
        pub termination_grace_period_seconds: Option<i64>,
        #[prost(int64, optional, tag = "5")]
        pub active_deadline_seconds: Option<i64>,
        #[prost(string, optional, tag = "6")]
        pub dns_policy: Option<String>,
        #[prost(btree_map = "string, string", tag = "7")]
        pub node_selector: BTreeMap<String, String>,
        #[prost(string, optional, tag = "8")]
        pub service_account_name: Option<String>,
        #[prost(string, optional, tag = "9")]
        pub service_account: Option<String>,
        #[prost(bool, optional, tag = "21")]
        pub automount_service_account_token: Option<bool>,
        #[prost(string, optional, tag = "10")]
        pub node_name: Option<String>,
        #[prost(bool, optional, tag = "11")]
        pub host_network: Option<bool>,
        #[prost(bool, optional, tag = "12")]
        pub host_pid: Option<bool>,
        #[prost(bool, optional, tag = "13")]
        pub host_ipc: Option<bool>,
        #[prost(bool, optional, tag = "27")]
        pub share_process_namespace: Option<bool>,
        #[prost(message, optional, tag = "14")]
        pub security_context: Option<PodSecurityContext>,
        #[prost(message, repeated, tag = "15")]
        pub image_pull_secrets: Vec<LocalObjectReference>,
        #[prost(string, optional, tag = "16")]
        pub hostname: Option<String>,
        #[prost(string, optional, tag = "17")]
        pub subdomain: Option<String>,
        #[prost(bytes = "vec", optional, tag = "18")]
        pub affinity: Option<Opaque>,
        #[prost(string, optional, tag = "19")]
        pub scheduler_name: Option<String>,
        #[prost(message, repeated, tag = "22")]
        pub tolerations: Vec<Toleration>,
        #[prost(bytes = "vec", repeated, tag = "23")]
        pub host_aliases: Vec<Opaque>,
        #[prost(string, optional, tag = "24")]
        pub priority_class_name: Option<String>,
        #[prost(int32, optional, tag = "25")]
        pub priority: Option<i32>,
        #[prost(bytes = "vec", optional, tag = "26")]
        pub dns_config: Option<Opaque>,
        #[prost(bytes = "vec", repeated, tag = "28")]
        pub readiness_gates: Vec<Opaque>,
        #[prost(string, optional, tag = "29")]
        pub runtime_class_name: Option<String>,
        #[prost(bool, optional, tag = "30")]
        pub enable_service_links: Option<bool>,
        #[prost(string, optional, tag = "31")]
        pub preemption_policy: Option<String>,
        #[prost(bytes = "vec", repeated, tag = "32")]
        pub overhead: Vec<Opaque>,
        #[prost(bytes = "vec", repeated, tag = "33")]
        pub topology_spread_constraints: Vec<Opaque>,
        #[prost(bool, optional, tag = "35")]
        pub set_hostname_as_fqdn: Option<bool>,
        #[prost(message, optional, tag = "36")]
        pub os: Option<PodOs>,
        #[prost(bool, optional, tag = "37")]
        pub host_users: Option<bool>,
        #[prost(bytes = "vec", repeated, tag = "38")]
        pub scheduling_gates: Vec<Opaque>,
        #[prost(bytes = "vec", repeated, tag = "39")]
        pub resource_claims: Vec<Opaque>,
        #[prost(message, optional, tag = "40")]
        pub resources: Option<ResourceRequirements>,
    }

    impl PodSpec {
        /// The JSON name of the first field present that this module does not decode.
        fn unsupported_field(&self) -> Option<&'static str> {
            [
                ("volumes", !self.volumes.is_empty()),
                ("ephemeralContainers", !self.ephemeral_containers.is_empty()),
                ("affinity", self.affinity.is_some()),
                ("hostAliases", !self.host_aliases.is_empty()),
                ("dnsConfig", self.dns_config.is_some()),
                ("readinessGates", !self.readiness_gates.is_empty()),
                ("overhead", !self.overhead.is_empty()),
                ("topologySpreadConstraints", !self.topology_spread_constraints.is_empty()),
                ("schedulingGates", !self.scheduling_gates.is_empty()),
                ("resourceClaims", !self.resource_claims.is_empty()),
            ]
            .into_iter()
            .find_map(|(field, present)| present.then_some(field))
        }
    }

    impl From<PodSpec> for core::PodSpec {
        fn from(message: PodSpec) -> Self {
            core::PodSpec {
                init_containers: list(message.init_containers),
                containers: message.containers.into_iter().map(Into::into).collect(),
                restart_policy: omit_empty(message.restart_policy),
                termination_grace_period_seconds: message.termination_grace_period_seconds,
                active_deadline_seconds: message.active_deadline_seconds,
                dns_policy: omit_empty(message.dns_policy),
                node_selector: map(message.node_selector, String::from),
                service_account_name: omit_empty(message.service_account_name),
                service_account: omit_empty(message.service_account),
                automount_service_account_token: message.automount_service_account_token,
                node_name: omit_empty(message.node_name),
                host_network: omit_empty(message.host_network),
                host_pid: omit_empty(message.host_pid),
                host_ipc: omit_empty(message.host_ipc),
                share_process_namespace: message.share_process_namespace,
                security_context: message.security_context.map(Into::into),
                image_pull_secrets: list(message.image_pull_secrets),
                hostname: omit_empty(message.hostname),
                subdomain: omit_empty(message.subdomain),
                scheduler_name: omit_empty(message.scheduler_name),
                tolerations: list(message.tolerations),
                priority_class_name: omit_empty(message.priority_class_name),
                priority: message.priority,
                runtime_class_name: message.runtime_class_name,
                enable_service_links: message.enable_service_links,
                preemption_policy: message.preemption_policy,
                set_hostname_as_fqdn: message.set_hostname_as_fqdn,
                os: message.os.map(|os| core::PodOS { name: os.name.unwrap_or_default() }),
                host_users: message.host_users,
                resources: message.resources.map(Into::into),
                // Refused by `unsupported_field` when present.
                ..core::PodSpec::default()
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodOs {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Container {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub image: Option<String>,
        #[prost(string, repeated, tag = "3")]
        pub command: Vec<String>,
        #[prost(string, repeated, tag = "4")]
        pub args: Vec<String>,
        #[prost(string, optional, tag = "5")]
        pub working_dir: Option<String>,
        #[prost(message, repeated, tag = "6")]
        pub ports: Vec<ContainerPort>,
        #[prost(bytes = "vec", repeated, tag = "19")]
        pub env_from: Vec<Opaque>,
        #[prost(message, repeated, tag = "7")]
        pub env: Vec<EnvVar>,
        #[prost(message, optional, tag = "8")]
        pub resources: Option<ResourceRequirements>,
        #[prost(bytes = "vec", repeated, tag = "23")]
        pub resize_policy: Vec<Opaque>,
        #[prost(string, optional, tag = "24")]
        pub restart_policy: Option<String>,
        #[prost(bytes = "vec", repeated, tag = "9")]
        pub volume_mounts: Vec<Opaque>,
        #[prost(bytes = "vec", repeated, tag = "21")]
        pub volume_devices: Vec<Opaque>,
        #[prost(bytes = "vec", optional, tag = "10")]
        pub liveness_probe: Option<Opaque>,
        #[prost(bytes = "vec", optional, tag = "11")]
        pub readiness_probe: Option<Opaque>,
        #[prost(bytes = "vec", optional, tag = "22")]
        pub startup_probe: Option<Opaque>,
        #[prost(bytes = "vec", optional, tag = "12")]
        pub lifecycle: Option<Opaque>,
        #[prost(string, optional, tag = "13")]
        pub termination_message_path: Option<String>,
        #[prost(string, optional, tag = "20")]
        pub termination_message_policy: Option<String>,
        #[prost(string, optional, tag = "14")]
        pub image_pull_policy: Option<String>,
        #[prost(message, optional, tag = "15")]
        pub security_context: Option<SecurityContext>,
        #[prost(bool, optional, tag = "16")]
        pub stdin: Option<bool>,
        #[prost(bool, optional, tag = "17")]
        pub stdin_once: Option<bool>,
        #[prost(bool, optional, tag = "18")]
        pub tty: Option<bool>,
    }

    impl Container {
        /// The JSON name of the first field present that this module does not decode.
        fn unsupported_field(&self) -> Option<&'static str> {
            [
                ("envFrom", !self.env_from.is_empty()),
                ("env[].valueFrom", self.env.iter().any(|variable| variable.value_from.is_some())),
                ("resizePolicy", !self.resize_policy.is_empty()),
                ("volumeMounts", !self.volume_mounts.is_empty()),
                ("volumeDevices", !self.volume_devices.is_empty()),
                ("livenessProbe", self.liveness_probe.is_some()),
                ("readinessProbe", self.readiness_probe.is_some()),
                ("startupProbe", self.startup_probe.is_some()),
                ("lifecycle", self.lifecycle.is_some()),
            ]
            .into_iter()
            .find_map(|(field, present)| present.then_some(field))
        }
    }

    impl From<Container> for core::Container {
        fn from(message: Container) -> Self {
            core::Container {
                name: message.name.unwrap_or_default(),
                image: omit_empty(message.image),
                command: list(message.command),
                args: list(message.args),
                working_dir: omit_empty(message.working_dir),
                ports: list(message.ports),
                env: list(message.env),
                resources: omit_empty(message.resources.map(Into::into)),
                restart_policy: message.restart_policy,
                termination_message_path: omit_empty(message.termination_message_path),
                termination_message_policy: omit_empty(message.termination_message_policy),
                image_pull_policy: omit_empty(message.image_pull_policy),
                security_context: message.security_context.map(Into::into),
                stdin: omit_empty(message.stdin),
                stdin_once: omit_empty(message.stdin_once),
                tty: omit_empty(message.tty),
                // Refused by `unsupported_field` when present.
                ..core::Container::default()
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerPort {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(int32, optional, tag = "2")]
        pub host_port: Option<i32>,
        #[prost(int32, optional, tag = "3")]
        pub container_port: Option<i32>,
        #[prost(string, optional, tag = "4")]
        pub protocol: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub host_ip: Option<String>,
    }

    impl From<ContainerPort> for core::ContainerPort {
        fn from(message: ContainerPort) -> Self {
            core::ContainerPort {
                name: omit_empty(message.name),
                host_port: omit_empty(message.host_port),
                container_port: message.container_port.unwrap_or_default(),
                protocol: omit_empty(message.protocol),
                host_ip: omit_empty(message.host_ip),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EnvVar {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
        #[prost(bytes = "vec", optional, tag = "3")]
        pub value_from: Option<Opaque>,
    }

    impl From<EnvVar> for core::EnvVar {
        fn from(message: EnvVar) -> Self {
            core::EnvVar {
                name: message.name.unwrap_or_default(),
                value: omit_empty(message.value),
                // Refused by `Container::unsupported_field` when present.
                value_from: None,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceRequirements {
        #[prost(btree_map = "string, message", tag = "1")]
        pub limits: BTreeMap<String, Quantity>,
        #[prost(btree_map = "string, message", tag = "2")]
        pub requests: BTreeMap<String, Quantity>,
        #[prost(message, repeated, tag = "3")]
        pub claims: Vec<ResourceClaim>,
    }

    impl From<ResourceRequirements> for core::ResourceRequirements {
        fn from(message: ResourceRequirements) -> Self {
            core::ResourceRequirements {
                limits: map(message.limits, quantity::Quantity::from),
                requests: map(message.requests, quantity::Quantity::from),
                claims: list(message.claims),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceClaim {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub request: Option<String>,
    }

    impl From<ResourceClaim> for core::ResourceClaim {
        fn from(message: ResourceClaim) -> Self {
            core::ResourceClaim {
                name: message.name.unwrap_or_default(),
                request: omit_empty(message.request),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSecurityContext {
        #[prost(message, optional, tag = "1")]
        pub se_linux_options: Option<SeLinuxOptions>,
        #[prost(message, optional, tag = "8")]
        pub windows_options: Option<WindowsSecurityContextOptions>,
        #[prost(int64, optional, tag = "2")]
        pub run_as_user: Option<i64>,
        #[prost(int64, optional, tag = "6")]
        pub run_as_group: Option<i64>,
        #[prost(bool, optional, tag = "3")]
        pub run_as_non_root: Option<bool>,
        #[prost(int64, repeated, packed = "false", tag = "4")]
        pub supplemental_groups: Vec<i64>,
        #[prost(string, optional, tag = "12")]
        pub supplemental_groups_policy: Option<String>,
        #[prost(int64, optional, tag = "5")]
        pub fs_group: Option<i64>,
        #[prost(message, repeated, tag = "7")]
        pub sysctls: Vec<Sysctl>,
        #[prost(string, optional, tag = "9")]
        pub fs_group_change_policy: Option<String>,
        #[prost(message, optional, tag = "10")]
        pub seccomp_profile: Option<Profile>,
        #[prost(message, optional, tag = "11")]
        pub app_armor_profile: Option<Profile>,
        #[prost(string, optional, tag = "13")]
        pub se_linux_change_policy: Option<String>,
    }

    impl From<PodSecurityContext> for core::PodSecurityContext {
        fn from(message: PodSecurityContext) -> Self {
            core::PodSecurityContext {
                se_linux_options: message.se_linux_options.map(Into::into),
                windows_options: message.windows_options.map(Into::into),
                run_as_user: message.run_as_user,
                run_as_group: message.run_as_group,
                run_as_non_root: message.run_as_non_root,
                supplemental_groups: list(message.supplemental_groups),
                supplemental_groups_policy: message.supplemental_groups_policy,
                fs_group: message.fs_group,
                sysctls: list(message.sysctls),
                fs_group_change_policy: message.fs_group_change_policy,
                seccomp_profile: message.seccomp_profile.map(Into::into),
                app_armor_profile: message.app_armor_profile.map(Into::into),
                se_linux_change_policy: message.se_linux_change_policy,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SecurityContext {
        #[prost(message, optional, tag = "1")]
        pub capabilities: Option<Capabilities>,
        #[prost(bool, optional, tag = "2")]
        pub privileged: Option<bool>,
        #[prost(message, optional, tag = "3")]
        pub se_linux_options: Option<SeLinuxOptions>,
        #[prost(message, optional, tag = "10")]
        pub windows_options: Option<WindowsSecurityContextOptions>,
        #[prost(int64, optional, tag = "4")]
        pub run_as_user: Option<i64>,
        #[prost(int64, optional, tag = "8")]
        pub run_as_group: Option<i64>,
        #[prost(bool, optional, tag = "5")]
        pub run_as_non_root: Option<bool>,
        #[prost(bool, optional, tag = "6")]
        pub read_only_root_filesystem: Option<bool>,
        #[prost(bool, optional, tag = "7")]
        pub allow_privilege_escalation: Option<bool>,
        #[prost(string, optional, tag = "9")]
        pub proc_mount: Option<String>,
        #[prost(message, optional, tag = "11")]
        pub seccomp_profile: Option<Profile>,
        #[prost(message, optional, tag = "12")]
        pub app_armor_profile: Option<Profile>,
    }

    impl From<SecurityContext> for core::SecurityContext {
        fn from(message: SecurityContext) -> Self {
            core::SecurityContext {
                capabilities: message.capabilities.map(|capabilities| core::Capabilities {
                    add: list(capabilities.add),
                    drop: list(capabilities.drop),
                }),
                privileged: message.privileged,
                se_linux_options: message.se_linux_options.map(Into::into),
                windows_options: message.windows_options.map(Into::into),
                run_as_user: message.run_as_user,
                run_as_group: message.run_as_group,
                run_as_non_root: message.run_as_non_root,
                read_only_root_filesystem: message.read_only_root_filesystem,
                allow_privilege_escalation: message.allow_privilege_escalation,
                proc_mount: message.proc_mount,
                seccomp_profile: message.seccomp_profile.map(Into::into),
                app_armor_profile: message.app_armor_profile.map(Into::into),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Capabilities {
        #[prost(string, repeated, tag = "1")]
        pub add: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub drop: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SeLinuxOptions {
        #[prost(string, optional, tag = "1")]
        pub user: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub role: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub type_: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub level: Option<String>,
    }

    impl From<SeLinuxOptions> for core::SELinuxOptions {
        fn from(message: SeLinuxOptions) -> Self {
            core::SELinuxOptions {
                user: omit_empty(message.user),
                role: omit_empty(message.role),
                type_: omit_empty(message.type_),
                level: omit_empty(message.level),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WindowsSecurityContextOptions {
        #[prost(string, optional, tag = "1")]
        pub gmsa_credential_spec_name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub gmsa_credential_spec: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub run_as_user_name: Option<String>,
        #[prost(bool, optional, tag = "4")]
        pub host_process: Option<bool>,
    }

    impl From<WindowsSecurityContextOptions> for core::WindowsSecurityContextOptions {
        fn from(message: WindowsSecurityContextOptions) -> Self {
            core::WindowsSecurityContextOptions {
                gmsa_credential_spec_name: message.gmsa_credential_spec_name,
                gmsa_credential_spec: message.gmsa_credential_spec,
                run_as_user_name: message.run_as_user_name,
                host_process: message.host_process,
            }
        }
    }

    /// SeccompProfile and AppArmorProfile: the same two fields under the same numbers.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(string, optional, tag = "1")]
        pub type_: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub localhost_profile: Option<String>,
    }

    impl From<Profile> for core::SeccompProfile {
        fn from(message: Profile) -> Self {
            core::SeccompProfile {
                type_: message.type_.unwrap_or_default(),
                localhost_profile: message.localhost_profile,
            }
        }
    }

    impl From<Profile> for core::AppArmorProfile {
        fn from(message: Profile) -> Self {
            core::AppArmorProfile {
                type_: message.type_.unwrap_or_default(),
                localhost_profile: message.localhost_profile,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sysctl {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    impl From<Sysctl> for core::Sysctl {
        fn from(message: Sysctl) -> Self {
            core::Sysctl { name: message.name.unwrap_or_default(), value: message.value.unwrap_or_default() }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Toleration {
        #[prost(string, optional, tag = "1")]
        pub key: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub operator: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub value: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub effect: Option<String>,
        #[prost(int64, optional, tag = "5")]
        pub toleration_seconds: Option<i64>,
    }

    impl From<Toleration> for core::Toleration {
        fn from(message: Toleration) -> Self {
            core::Toleration {
                key: omit_empty(message.key),
                operator: omit_empty(message.operator),
                value: omit_empty(message.value),
                effect: omit_empty(message.effect),
                toleration_seconds: message.toleration_seconds,
            }
        }
    }

    // k8s.io/api/autoscaling/v2/generated.proto (what `kubectl autoscale` sends)

    /// Not modelled: 3 status (server-owned).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HorizontalPodAutoscaler {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(message, optional, tag = "2")]
        pub spec: Option<HorizontalPodAutoscalerSpec>,
    }

    impl HorizontalPodAutoscaler {
        /// The path of the first field present that this module does not decode.
        pub fn unsupported_field(&self) -> Option<String> {
            let spec = self.spec.as_ref()?;
            if spec.behavior.is_some() {
                return Some("spec.behavior".into());
            }
            spec.metrics.iter().find_map(|metric| {
                let field = [
                    ("object", metric.object.is_some()),
                    ("pods", metric.pods.is_some()),
                    ("external", metric.external.is_some()),
                    ("containerResource", metric.container_resource.is_some()),
                ]
                .into_iter()
                .find_map(|(field, present)| present.then_some(field))?;
                Some(format!("spec.metrics[].{field}"))
            })
        }
    }

    impl From<HorizontalPodAutoscaler> for autoscaling::HorizontalPodAutoscaler {
        fn from(message: HorizontalPodAutoscaler) -> Self {
            autoscaling::HorizontalPodAutoscaler {
                metadata: message.metadata.map(Into::into).unwrap_or_default(),
                spec: message.spec.map(Into::into),
                status: None,
            }
        }
    }

    /// Not modelled (refused when present): 5 behavior.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HorizontalPodAutoscalerSpec {
        #[prost(message, optional, tag = "1")]
        pub scale_target_ref: Option<CrossVersionObjectReference>,
        #[prost(int32, optional, tag = "2")]
        pub min_replicas: Option<i32>,
        #[prost(int32, optional, tag = "3")]
        pub max_replicas: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        pub metrics: Vec<MetricSpec>,
        #[prost(bytes = "vec", optional, tag = "5")]
        pub behavior: Option<Opaque>,
    }

    impl From<HorizontalPodAutoscalerSpec> for autoscaling::HorizontalPodAutoscalerSpec {
        fn from(message: HorizontalPodAutoscalerSpec) -> Self {
            let metrics: Vec<autoscaling::MetricSpec> = message.metrics.into_iter().map(Into::into).collect();
            autoscaling::HorizontalPodAutoscalerSpec {
                scale_target_ref: message.scale_target_ref.map(Into::into).unwrap_or_default(),
                min_replicas: message.min_replicas,
                max_replicas: message.max_replicas.unwrap_or_default(),
                metrics: (!metrics.is_empty()).then_some(metrics),
                behavior: None,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CrossVersionObjectReference {
        #[prost(string, optional, tag = "1")]
        pub kind: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub api_version: Option<String>,
    }

    impl From<CrossVersionObjectReference> for autoscaling::CrossVersionObjectReference {
        fn from(message: CrossVersionObjectReference) -> Self {
            autoscaling::CrossVersionObjectReference {
                kind: message.kind.unwrap_or_default(),
                name: message.name.unwrap_or_default(),
                api_version: omit_empty(message.api_version),
            }
        }
    }

    /// Not modelled (refused when present): 2 object, 3 pods, 5 external, 7 containerResource.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricSpec {
        #[prost(string, optional, tag = "1")]
        pub type_: Option<String>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub object: Option<Opaque>,
        #[prost(bytes = "vec", optional, tag = "3")]
        pub pods: Option<Opaque>,
        #[prost(message, optional, tag = "4")]
        pub resource: Option<ResourceMetricSource>,
        #[prost(bytes = "vec", optional, tag = "5")]
        pub external: Option<Opaque>,
        #[prost(bytes = "vec", optional, tag = "7")]
        pub container_resource: Option<Opaque>,
    }

    impl From<MetricSpec> for autoscaling::MetricSpec {
        fn from(message: MetricSpec) -> Self {
            autoscaling::MetricSpec {
                type_: message.type_.unwrap_or_default(),
                resource: message.resource.map(|resource| autoscaling::ResourceMetricSource {
                    name: resource.name.unwrap_or_default(),
                    target: resource.target.map(Into::into).unwrap_or_default(),
                }),
                ..autoscaling::MetricSpec::default()
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetricSource {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, optional, tag = "2")]
        pub target: Option<MetricTarget>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricTarget {
        #[prost(string, optional, tag = "1")]
        pub type_: Option<String>,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Quantity>,
        #[prost(message, optional, tag = "3")]
        pub average_value: Option<Quantity>,
        #[prost(int32, optional, tag = "4")]
        pub average_utilization: Option<i32>,
    }

    impl From<MetricTarget> for autoscaling::MetricTarget {
        fn from(message: MetricTarget) -> Self {
            autoscaling::MetricTarget {
                type_: message.type_.unwrap_or_default(),
                value: message.value.map(Into::into),
                average_value: message.average_value.map(Into::into),
                average_utilization: message.average_utilization,
            }
        }
    }

    // k8s.io/api/apps/v1/generated.proto

    /// Not modelled: 3 status (server-owned).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Deployment {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(message, optional, tag = "2")]
        pub spec: Option<DeploymentSpec>,
    }

    impl Deployment {
        /// The path of the first field present that this module does not decode.
        pub fn unsupported_field(&self) -> Option<String> {
            let pod = self.spec.as_ref()?.template.as_ref()?.spec.as_ref()?;
            if let Some(field) = pod.unsupported_field() {
                return Some(format!("spec.template.spec.{field}"));
            }
            let containers = [("initContainers", &pod.init_containers), ("containers", &pod.containers)];
            containers.into_iter().find_map(|(list, containers)| {
                let field = containers.iter().find_map(Container::unsupported_field)?;
                Some(format!("spec.template.spec.{list}[].{field}"))
            })
        }
    }

    impl From<Deployment> for apps::Deployment {
        fn from(message: Deployment) -> Self {
            apps::Deployment {
                metadata: message.metadata.map(Into::into).unwrap_or_default(),
                spec: message.spec.map(Into::into),
                status: None,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeploymentSpec {
        #[prost(int32, optional, tag = "1")]
        pub replicas: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub selector: Option<LabelSelector>,
        #[prost(message, optional, tag = "3")]
        pub template: Option<PodTemplateSpec>,
        #[prost(message, optional, tag = "4")]
        pub strategy: Option<DeploymentStrategy>,
        #[prost(int32, optional, tag = "5")]
        pub min_ready_seconds: Option<i32>,
        #[prost(int32, optional, tag = "6")]
        pub revision_history_limit: Option<i32>,
        #[prost(bool, optional, tag = "7")]
        pub paused: Option<bool>,
        #[prost(int32, optional, tag = "9")]
        pub progress_deadline_seconds: Option<i32>,
    }

    impl From<DeploymentSpec> for apps::DeploymentSpec {
        fn from(message: DeploymentSpec) -> Self {
            apps::DeploymentSpec {
                replicas: message.replicas,
                selector: message.selector.map(Into::into).unwrap_or_default(),
                template: message.template.map(Into::into).unwrap_or_default(),
                strategy: omit_empty(message.strategy.map(Into::into)),
                min_ready_seconds: omit_empty(message.min_ready_seconds),
                revision_history_limit: message.revision_history_limit,
                paused: omit_empty(message.paused),
                progress_deadline_seconds: message.progress_deadline_seconds,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeploymentStrategy {
        #[prost(string, optional, tag = "1")]
        pub type_: Option<String>,
        #[prost(message, optional, tag = "2")]
        pub rolling_update: Option<RollingUpdateDeployment>,
    }

    impl From<DeploymentStrategy> for apps::DeploymentStrategy {
        fn from(message: DeploymentStrategy) -> Self {
            apps::DeploymentStrategy {
                type_: omit_empty(message.type_),
                rolling_update: message.rolling_update.map(|rolling_update| apps::RollingUpdateDeployment {
                    max_unavailable: rolling_update.max_unavailable.map(Into::into),
                    max_surge: rolling_update.max_surge.map(Into::into),
                }),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RollingUpdateDeployment {
        #[prost(message, optional, tag = "1")]
        pub max_unavailable: Option<IntOrString>,
        #[prost(message, optional, tag = "2")]
        pub max_surge: Option<IntOrString>,
    }

    // k8s.io/api/authorization/v1/generated.proto

    /// Not modelled: 3 status (computed by the server).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SelfSubjectAccessReview {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(message, optional, tag = "2")]
        pub spec: Option<SelfSubjectAccessReviewSpec>,
    }

    impl From<SelfSubjectAccessReview> for authorization::SelfSubjectAccessReview {
        fn from(message: SelfSubjectAccessReview) -> Self {
            let spec = message.spec.unwrap_or_default();
            authorization::SelfSubjectAccessReview {
                metadata: message.metadata.map(Into::into).unwrap_or_default(),
                spec: authorization::SelfSubjectAccessReviewSpec {
                    resource_attributes: spec.resource_attributes.map(Into::into),
                    non_resource_attributes: spec.non_resource_attributes.map(|attributes| {
                        authorization::NonResourceAttributes {
                            path: omit_empty(attributes.path),
                            verb: omit_empty(attributes.verb),
                        }
                    }),
                },
                status: None,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SelfSubjectAccessReviewSpec {
        #[prost(message, optional, tag = "1")]
        pub resource_attributes: Option<ResourceAttributes>,
        #[prost(message, optional, tag = "2")]
        pub non_resource_attributes: Option<NonResourceAttributes>,
    }

    /// Not modelled: 8 fieldSelector, 9 labelSelector (kubectl auth can-i sends neither).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceAttributes {
        #[prost(string, optional, tag = "1")]
        pub namespace: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub verb: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub group: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub version: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub resource: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub subresource: Option<String>,
        #[prost(string, optional, tag = "7")]
        pub name: Option<String>,
    }

    impl From<ResourceAttributes> for authorization::ResourceAttributes {
        fn from(message: ResourceAttributes) -> Self {
            authorization::ResourceAttributes {
                namespace: omit_empty(message.namespace),
                verb: omit_empty(message.verb),
                group: omit_empty(message.group),
                version: omit_empty(message.version),
                resource: omit_empty(message.resource),
                subresource: omit_empty(message.subresource),
                name: omit_empty(message.name),
                field_selector: None,
                label_selector: None,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NonResourceAttributes {
        #[prost(string, optional, tag = "1")]
        pub path: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub verb: Option<String>,
    }

    // k8s.io/api/authentication/v1/generated.proto

    /// Not modelled: 3 status (computed by the server).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TokenRequest {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(message, optional, tag = "2")]
        pub spec: Option<TokenRequestSpec>,
    }

    impl From<TokenRequest> for authentication::TokenRequest {
        fn from(message: TokenRequest) -> Self {
            let spec = message.spec.unwrap_or_default();
            authentication::TokenRequest {
                metadata: message.metadata.map(Into::into).unwrap_or_default(),
                spec: authentication::TokenRequestSpec {
                    audiences: spec.audiences,
                    expiration_seconds: spec.expiration_seconds,
                    bound_object_ref: spec.bound_object_ref.map(|reference| {
                        authentication::BoundObjectReference {
                            kind: omit_empty(reference.kind),
                            api_version: omit_empty(reference.api_version),
                            name: omit_empty(reference.name),
                            uid: omit_empty(reference.uid),
                        }
                    }),
                },
                status: None,
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TokenRequestSpec {
        #[prost(string, repeated, tag = "1")]
        pub audiences: Vec<String>,
        #[prost(int64, optional, tag = "4")]
        pub expiration_seconds: Option<i64>,
        #[prost(message, optional, tag = "3")]
        pub bound_object_ref: Option<BoundObjectReference>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BoundObjectReference {
        #[prost(string, optional, tag = "1")]
        pub kind: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub api_version: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub uid: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::{self, Subresource};

    /// `kubectl create configmap cfg --from-literal=a=1 --from-literal=b=2`, as captured.
    const KUBECTL_CONFIGMAP: &str = "6b3873000a0f0a0276311209436f6e6669674d617012250a130a0363666712001a0022002a00\
                                     32003800420012060a016112013112060a01621201321a002200";

    /// The pod DELETE body of `kubectl drain` when eviction is not advertised, as captured.
    const KUBECTL_DELETE_OPTIONS: &str = "6b3873000a130a027631120d44656c6574654f7074696f6e7312001a002200";

    /// Compares a decode result with the expected JSON, or with an HTTP code and a fragment of
    /// the error message.
    fn check(actual: Result<Value, ApiError>, expected: Result<Value, (u16, &str)>) {
        let actual = actual.map_err(|error| (error.code().as_u16(), error.to_string()));
        match (actual, expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(actual, expected),
            (Err((code, message)), Err((expected_code, fragment))) => {
                assert_eq!(code, expected_code, "{message}");
                assert!(message.contains(fragment), "{message:?} does not contain {fragment:?}");
            }
            (actual, expected) => panic!("decoded to {actual:?}, expected {expected:?}"),
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        assert!(text.len().is_multiple_of(2));
        (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap()).collect()
    }

    /// A body framed as Go frames it: the magic, then an envelope around `object`.
    fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
        let envelope = wire::Unknown {
            type_meta: Some(wire::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(object.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC.as_slice(), &envelope.encode_to_vec()].concat()
    }

    fn served(group: &str, plural: &str) -> &'static ResourceType {
        resource::find(group, "v1", plural).unwrap()
    }

    /// ObjectMeta as Go writes it for `name`: every non-pointer field present, empty.
    fn go_metadata(name: &str) -> Option<wire::ObjectMeta> {
        Some(wire::ObjectMeta {
            name: Some(name.into()),
            generate_name: Some(String::new()),
            namespace: Some(String::new()),
            uid: Some(String::new()),
            resource_version: Some(String::new()),
            generation: Some(0),
            creation_timestamp: Some(wire::Time::default()),
            ..Default::default()
        })
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn kubectl_bodies() {
        // The captured kubectl bytes decode to what kubectl would have sent as JSON: Go's
        // empty strings, zero generation and zero creationTimestamp are gone.
        check(
            decode(served("", "configmaps"), &hex(KUBECTL_CONFIGMAP)),
            Ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                "data": {"a": "1", "b": "2"}})),
        );
        check(
            decode_delete_options(&hex(KUBECTL_DELETE_OPTIONS)),
            Ok(json!({"apiVersion": "v1", "kind": "DeleteOptions"})),
        );
    }

    #[test]
    fn delete_options() {
        // Every DeleteOptions field is a Go pointer, so a zero grace period and `false` stay.
        let options = wire::DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Some(wire::Preconditions { uid: Some("u-1".into()), resource_version: None }),
            orphan_dependents: Some(false),
            propagation_policy: Some("Foreground".into()),
            dry_run: vec!["All".into()],
            ignore_store_read_error_with_cluster_breaking_potential: None,
        };
        check(
            decode_delete_options(&body("apps/v1", "DeleteOptions", &options)),
            Ok(json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": "u-1"}, "orphanDependents": false,
                "propagationPolicy": "Foreground", "dryRun": ["All"]})),
        );
        check(
            decode_delete_options(&body("v1", "ConfigMap", &options)),
            Err((400, "the kind in the data (ConfigMap) does not match the expected kind (DeleteOptions)")),
        );
    }

    #[test]
    fn core_kinds() {
        // Secret data bytes become base64 and the empty type is dropped (the server defaults
        // Opaque); a Namespace's creationTimestamp becomes RFC 3339 and its empty status goes;
        // a ServiceAccount keeps `automountServiceAccountToken: false`, a Go pointer.
        let secret = wire::Secret {
            metadata: go_metadata("s"),
            data: [("key".to_string(), vec![0, 255, b'a'])].into(),
            type_: Some(String::new()),
            string_data: labels(&[("plain", "text")]),
            immutable: None,
        };
        check(
            decode(served("", "secrets"), &body("v1", "Secret", &secret)),
            Ok(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"key": "AP9h"}, "stringData": {"plain": "text"}})),
        );
        let namespace = wire::Namespace {
            metadata: Some(wire::ObjectMeta {
                labels: labels(&[("team", "a")]),
                creation_timestamp: Some(wire::Time { seconds: Some(1_700_000_000), nanos: Some(5) }),
                ..go_metadata("prod").unwrap()
            }),
            spec: Some(wire::NamespaceSpec { finalizers: vec!["kubernetes".into()] }),
        };
        check(
            decode(served("", "namespaces"), &body("v1", "Namespace", &namespace)),
            Ok(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "prod", "labels": {"team": "a"},
                    "creationTimestamp": "2023-11-14T22:13:20Z"},
                "spec": {"finalizers": ["kubernetes"]}})),
        );
        let service_account = wire::ServiceAccount {
            metadata: go_metadata("robot"),
            secrets: vec![wire::ObjectReference {
                name: Some("token".into()),
                kind: Some(String::new()),
                ..Default::default()
            }],
            image_pull_secrets: vec![wire::LocalObjectReference { name: Some("registry".into()) }],
            automount_service_account_token: Some(false),
        };
        check(
            decode(served("", "serviceaccounts"), &body("v1", "ServiceAccount", &service_account)),
            Ok(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"},
                "secrets": [{"name": "token"}], "imagePullSecrets": [{"name": "registry"}],
                "automountServiceAccountToken": false})),
        );
    }

    #[test]
    fn deployment() {
        // What `kubectl create deployment web --image=nginx --port=80 --replicas=2 -- cmd args`
        // sends, plus resources and a rolling update: Go's empty strings, `false`s and empty
        // strategy are dropped, quantities become strings, IntOrString a number or a string,
        // and replicas stays as sent.
        let web = labels(&[("app", "web")]);
        let container = wire::Container {
            name: Some("nginx".into()),
            image: Some("nginx".into()),
            command: vec!["cmd".into(), "args".into()],
            working_dir: Some(String::new()),
            ports: vec![wire::ContainerPort {
                name: Some(String::new()),
                host_port: Some(0),
                container_port: Some(80),
                protocol: Some(String::new()),
                host_ip: Some(String::new()),
            }],
            env: vec![wire::EnvVar {
                name: Some("MODE".into()),
                value: Some("fast".into()),
                value_from: None,
            }],
            resources: Some(wire::ResourceRequirements {
                limits: [("cpu".to_string(), wire::Quantity { string: Some("500m".into()) })].into(),
                ..Default::default()
            }),
            termination_message_path: Some(String::new()),
            termination_message_policy: Some(String::new()),
            image_pull_policy: Some(String::new()),
            stdin: Some(false),
            stdin_once: Some(false),
            tty: Some(false),
            ..Default::default()
        };
        let pod = wire::PodSpec {
            containers: vec![container],
            restart_policy: Some(String::new()),
            dns_policy: Some(String::new()),
            service_account_name: Some(String::new()),
            host_network: Some(false),
            scheduler_name: Some(String::new()),
            security_context: Some(wire::PodSecurityContext {
                run_as_non_root: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let deployment = wire::Deployment {
            metadata: Some(wire::ObjectMeta { labels: web.clone(), ..go_metadata("web").unwrap() }),
            spec: Some(wire::DeploymentSpec {
                replicas: Some(2),
                selector: Some(wire::LabelSelector { match_labels: web.clone(), match_expressions: vec![] }),
                template: Some(wire::PodTemplateSpec {
                    metadata: Some(wire::ObjectMeta { labels: web, ..Default::default() }),
                    spec: Some(pod),
                }),
                strategy: Some(wire::DeploymentStrategy {
                    type_: Some(String::new()),
                    rolling_update: Some(wire::RollingUpdateDeployment {
                        max_unavailable: Some(wire::IntOrString {
                            type_: Some(0),
                            int_val: Some(0),
                            str_val: None,
                        }),
                        max_surge: Some(wire::IntOrString {
                            type_: Some(1),
                            int_val: Some(0),
                            str_val: Some("25%".into()),
                        }),
                    }),
                }),
                min_ready_seconds: Some(0),
                paused: Some(false),
                ..Default::default()
            }),
        };
        check(
            decode(
                resource::find("apps", "v1", "deployments").unwrap(),
                &body("apps/v1", "Deployment", &deployment),
            ),
            Ok(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{"name": "nginx", "image": "nginx", "command": ["cmd", "args"],
                            "ports": [{"containerPort": 80}], "env": [{"name": "MODE", "value": "fast"}],
                            "resources": {"limits": {"cpu": "500m"}}}],
                        "securityContext": {"runAsNonRoot": true}
                    }
                },
                "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}
            }})),
        );
    }

    #[test]
    fn horizontal_pod_autoscaler() {
        // What `kubectl autoscale deployment web --cpu-percent=50 --min=2 --max=6` sends.
        let autoscaler = |metric: wire::MetricSpec| wire::HorizontalPodAutoscaler {
            metadata: go_metadata("web"),
            spec: Some(wire::HorizontalPodAutoscalerSpec {
                scale_target_ref: Some(wire::CrossVersionObjectReference {
                    kind: Some("Deployment".into()),
                    name: Some("web".into()),
                    api_version: Some("apps/v1".into()),
                }),
                min_replicas: Some(2),
                max_replicas: Some(6),
                metrics: vec![metric],
                behavior: None,
            }),
        };
        let cpu = wire::MetricSpec {
            type_: Some("Resource".into()),
            resource: Some(wire::ResourceMetricSource {
                name: Some("cpu".into()),
                target: Some(wire::MetricTarget {
                    type_: Some("Utilization".into()),
                    average_utilization: Some(50),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let autoscalers = resource::find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        check(
            decode(autoscalers, &body("autoscaling/v2", "HorizontalPodAutoscaler", &autoscaler(cpu))),
            Ok(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                "minReplicas": 2,
                "maxReplicas": 6,
                "metrics": [{"type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
            }})),
        );
        // A metric source this module does not decode is refused, not stored without it.
        let pods =
            wire::MetricSpec { type_: Some("Pods".into()), pods: Some(vec![10, 0]), ..Default::default() };
        check(
            decode(autoscalers, &body("autoscaling/v2", "HorizontalPodAutoscaler", &autoscaler(pods))),
            Err((415, "application/json")),
        );
    }

    #[test]
    fn reviews() {
        // `kubectl auth can-i get pods` drops its empty attributes; `kubectl create token`
        // posts a TokenRequest to serviceaccounts/token, accepted through the subresource.
        let review = wire::SelfSubjectAccessReview {
            metadata: Some(wire::ObjectMeta::default()),
            spec: Some(wire::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(wire::ResourceAttributes {
                    namespace: Some("default".into()),
                    verb: Some("get".into()),
                    group: Some(String::new()),
                    version: Some(String::new()),
                    resource: Some("pods".into()),
                    subresource: Some(String::new()),
                    name: Some(String::new()),
                }),
                non_resource_attributes: None,
            }),
        };
        check(
            decode(
                resource::find("authorization.k8s.io", "v1", "selfsubjectaccessreviews").unwrap(),
                &body("authorization.k8s.io/v1", "SelfSubjectAccessReview", &review),
            ),
            Ok(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "metadata": {}, "spec": {"resourceAttributes":
                    {"namespace": "default", "verb": "get", "resource": "pods"}}})),
        );
        let service_accounts = ResourceType {
            subresources: &[Subresource {
                name: "token",
                group: "authentication.k8s.io",
                version: "v1",
                kind: "TokenRequest",
                verbs: &["create"],
            }],
            ..*served("", "serviceaccounts")
        };
        let token_request = wire::TokenRequest {
            metadata: go_metadata("default"),
            spec: Some(wire::TokenRequestSpec {
                audiences: vec!["https://kubernetes.default.svc".into()],
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            }),
        };
        check(
            decode(&service_accounts, &body("authentication.k8s.io/v1", "TokenRequest", &token_request)),
            Ok(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"name": "default"},
                "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}})),
        );
    }

    #[test]
    fn refused_bodies() {
        // Broken bytes and a type that is not the resource's give 400; kinds and pod template
        // fields this module does not decode give 415, naming JSON.
        let configmaps = served("", "configmaps");
        let configmap = hex(KUBECTL_CONFIGMAP);
        let invalid_utf8 = wire::Unknown {
            type_meta: Some(wire::TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
            }),
            raw: Some(vec![0x12, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, 0xff]),
            ..Default::default()
        };
        let with_volume = wire::Deployment {
            spec: Some(wire::DeploymentSpec {
                template: Some(wire::PodTemplateSpec {
                    spec: Some(wire::PodSpec { volumes: vec![vec![0x0a, 0x01, b'v']], ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let with_probe = wire::Container { liveness_probe: Some(vec![]), ..Default::default() };
        let probed = wire::Deployment {
            spec: Some(wire::DeploymentSpec {
                template: Some(wire::PodTemplateSpec {
                    spec: Some(wire::PodSpec { containers: vec![with_probe], ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let deployments = resource::find("apps", "v1", "deployments").unwrap();
        let cases: &[(&ResourceType, Vec<u8>, (u16, &str))] = &[
            (configmaps, b"{\"kind\":\"ConfigMap\"}".to_vec(), (400, "must start with the 4 bytes")),
            (configmaps, [b"k9s\0".as_slice(), &configmap[4..]].concat(), (400, "must start with")),
            (configmaps, configmap[..30].to_vec(), (400, "envelope")),
            (configmaps, hex("6b387300080a"), (400, "envelope")),
            (configmaps, hex("6b3873000a0208011200"), (400, "envelope")),
            (configmaps, [MAGIC.as_slice(), &invalid_utf8.encode_to_vec()].concat(), (400, "ConfigMap")),
            (
                served("", "secrets"),
                configmap.clone(),
                (400, "the kind in the data (ConfigMap) does not match"),
            ),
            (deployments, body("apps/v2", "Deployment", &wire::Deployment::default()), (400, "API version")),
            (served("", "pods"), body("v1", "Pod", &wire::PodSpec::default()), (415, "application/json")),
            (deployments, body("apps/v1", "Deployment", &with_volume), (415, "application/json")),
            (deployments, body("apps/v1", "Deployment", &probed), (415, "application/json")),
        ];
        for (resource, body, expected) in cases {
            check(decode(resource, body), Err(*expected));
        }
        let encoded = wire::Unknown { content_encoding: Some("gzip".into()), ..Default::default() };
        check(decode(configmaps, &[MAGIC.as_slice(), &encoded.encode_to_vec()].concat()), Err((415, "")));
    }

    #[test]
    fn truncations_never_panic() {
        // Every prefix of the kubectl bytes decodes or fails cleanly. A prefix that ends between
        // envelope fields is a valid envelope: without an object (after the magic, after
        // typeMeta) it is an empty ConfigMap, after `raw` the whole one. Every other cut fails.
        let configmap = hex(KUBECTL_CONFIGMAP);
        let raw_end = configmap.len() - 4;
        let empty = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
        for length in 0..configmap.len() {
            let result = decode(served("", "configmaps"), &configmap[..length]);
            match length {
                4 | 21 => check(result, Ok(empty.clone())),
                _ if length == raw_end || length == raw_end + 2 => assert!(result.is_ok()),
                _ => assert!(result.is_err(), "a {length}-byte prefix decoded"),
            }
            let _ = decode_delete_options(&configmap[..length]);
        }
    }
}
