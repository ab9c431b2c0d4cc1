//! What every write passes through before the store: decoding through the kind's type (with
//! the request's field validation), the fields only the server sets, defaulting, and
//! validation. Pure functions of the request and the stored object.

use http::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use crate::api::Call;
use crate::error::ApiError;
use crate::meta;
use crate::resource::ResourceType;
use crate::{defaults, validation};

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request (kubectl's default).
    Strict,
    /// Accept it, and say so in a `Warning` header.
    Warn,
    /// Drop them silently.
    Ignore,
}

impl FieldValidation {
    pub fn from_call(call: &Call<'_>) -> Result<Self, ApiError> {
        match call.query.field_validation.as_deref() {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", not {other:?}"
            ))),
        }
    }
}

/// The request body as a JSON object.
pub fn body_object(call: &Call<'_>) -> Result<Value, ApiError> {
    let content_type = call.header(CONTENT_TYPE);
    if content_type.starts_with(crate::protobuf::MEDIA_TYPE) {
        return crate::protobuf::decode(call.target.resource, &call.body);
    }
    parse_object(&call.body)
}

/// Parses a JSON object body; anything else is a clear 400.
pub fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the request body is not valid JSON: {error}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(value)
}

/// Fills in `apiVersion` and `kind` when absent and refuses a body of another type.
pub fn check_type(resource: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => object["apiVersion"] = Value::String(api_version.clone()),
        Some(given) if given == api_version => {}
        Some(given) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({given}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match object.get("kind").and_then(Value::as_str) {
        None | Some("") => object["kind"] = Value::String(resource.kind.to_owned()),
        Some(given) if given == resource.kind => {}
        Some(given) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({given}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    Ok(())
}

/// Puts the object in the request's namespace (or none, for cluster-scoped kinds).
pub fn check_namespace(
    resource: &ResourceType,
    object: &mut Value,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    let metadata = meta::metadata_mut(object);
    if !resource.namespaced {
        metadata.remove("namespace");
        return Ok(());
    }
    let Some(namespace) = namespace else {
        return Err(ApiError::bad_request(
            "a namespaced object must be written under /namespaces/<namespace>/",
        ));
    };
    match metadata.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
            Ok(())
        }
        Some(given) if given == namespace => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// Decodes through the kind's type: unknown fields are refused, reported or dropped as
/// `validation` says; fields of the wrong type are a 400 as in Kubernetes.
pub fn normalize(
    resource: &ResourceType,
    object: Value,
    validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let cannot_handle = |detail: String| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}",
            kind = resource.kind,
            version = resource.version
        ))
    };
    let normalized = (resource.codec.normalize)(object).map_err(|error| cannot_handle(error.to_string()))?;
    let unknown: Vec<String> = normalized
        .unknown_fields
        .iter()
        .map(|path| format!("unknown field \"{}\"", path.trim_start_matches('.')))
        .collect();
    match validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            return Err(cannot_handle(format!("strict decoding error: {}", unknown.join(", "))));
        }
        FieldValidation::Warn => warnings.extend(unknown),
        FieldValidation::Strict | FieldValidation::Ignore => {}
    }
    Ok(normalized.object)
}

/// The fields a client may not set on create: identity, timestamps, the initial status.
pub fn prepare_create(resource: &ResourceType, object: &mut Value) {
    let has_spec = object.get("spec").is_some();
    let metadata = meta::metadata_mut(object);
    metadata.insert("uid".into(), Value::String(meta::new_uid()));
    metadata.insert("creationTimestamp".into(), Value::String(meta::now_rfc3339()));
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        metadata.remove(field);
    }
    if has_spec {
        metadata.insert("generation".into(), json!(1));
    } else {
        metadata.remove("generation");
    }
    match resource.kind {
        "Pod" => object["status"] = json!({"phase": "Pending"}),
        "Deployment" | "ReplicaSet" | "HorizontalPodAutoscaler" => {
            if let Some(object) = object.as_object_mut() {
                object.remove("status");
            }
        }
        "Service" => object["status"] = json!({"loadBalancer": {}}),
        "Namespace" => {
            object["status"] = json!({"phase": "Active"});
            object["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        _ => {}
    }
}

/// What create sets once the object is defaulted: a pod's QoS class.
pub fn finish_create(resource: &ResourceType, object: &mut Value) {
    if resource.kind == "Pod" && resource.group.is_empty() {
        let class = qos_class(object.get("spec").unwrap_or(&Value::Null));
        object["status"]["qosClass"] = json!(class);
    }
}

/// How long, by default, a pod stays bound to a node that is unreachable or not ready before
/// the node lifecycle controller evicts it: the `tolerationSeconds` of the tolerations every
/// pod gets at create. Kubernetes waits 300 s; shoal, which finds dead nodes in seconds, wants
/// their pods running elsewhere in seconds too. `shoal server --default-toleration-seconds`
/// sets it.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 1;

/// The taints the default tolerations are for.
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Kubernetes' DefaultTolerationSeconds admission: a pod created without a NoExecute toleration
/// of the not-ready or unreachable taint gets one (operator Exists) for `seconds`. A toleration
/// with an empty key or effect counts, since it tolerates those taints too.
pub fn default_tolerations(resource: &ResourceType, object: &mut Value, seconds: i64) {
    if resource.kind != "Pod" || !resource.group.is_empty() {
        return;
    }
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    // A malformed list is left for validation to report.
    let Some(tolerations) = tolerations.as_array_mut() else { return };
    let tolerates = |tolerations: &[Value], taint: &str| {
        tolerations.iter().any(|toleration| {
            let field = |name: &str| toleration.get(name).and_then(Value::as_str).unwrap_or("");
            (field("key") == taint || field("key").is_empty())
                && (field("effect") == "NoExecute" || field("effect").is_empty())
        })
    };
    for taint in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        if !tolerates(tolerations, taint) {
            tolerations.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }));
        }
    }
}

/// Kubernetes' QoS class of a pod spec: BestEffort without any CPU or memory request or
/// limit; Guaranteed when every container limits both and requests what it limits;
/// Burstable otherwise. Quantities compare as written (`1` and `1000m` differ).
pub fn qos_class(spec: &Value) -> &'static str {
    const RESOURCES: [&str; 2] = ["cpu", "memory"];
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|field| spec.get(*field).and_then(Value::as_array))
        .flatten();
    let (mut any, mut guaranteed) = (false, true);
    for container in containers {
        let requests = container.pointer("/resources/requests");
        let limits = container.pointer("/resources/limits");
        for resource in RESOURCES {
            let request = requests.and_then(|r| r.get(resource));
            let limit = limits.and_then(|l| l.get(resource));
            any |= request.is_some() || limit.is_some();
            guaranteed &= limit.is_some() && request.is_none_or(|request| Some(request) == limit);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Carries over what a client may not change on update, and what the subresource being
/// written leaves alone: the main resource keeps the stored status, `status` keeps the rest.
pub fn prepare_update(resource: &ResourceType, new: &mut Value, old: &Value, subresource: Option<&str>) {
    if subresource == Some("status") {
        let status = new.get("status").cloned();
        let managed_fields = new.pointer("/metadata/managedFields").cloned();
        *new = old.clone();
        if let Some(managed_fields) = managed_fields {
            meta::metadata_mut(new).insert("managedFields".into(), managed_fields);
        }
        match status {
            Some(status) => new["status"] = status,
            None => {
                if let Some(object) = new.as_object_mut() {
                    object.remove("status");
                }
            }
        }
        return;
    }
    if subresource == Some("finalize") {
        // Only spec.finalizers changes: what the namespace controller says it has finished.
        let finalizers = new.pointer("/spec/finalizers").cloned().unwrap_or_else(|| json!([]));
        let managed_fields = new.pointer("/metadata/managedFields").cloned();
        *new = old.clone();
        new["spec"]["finalizers"] = finalizers;
        if let Some(managed_fields) = managed_fields {
            meta::metadata_mut(new).insert("managedFields".into(), managed_fields);
        }
        return;
    }
    let has_status_subresource = resource.has_subresource("status");
    if has_status_subresource {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(object) = new.as_object_mut() {
                    object.remove("status");
                }
            }
        }
    }
    let old_metadata = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let metadata = meta::metadata_mut(new);
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]
    {
        carry(metadata, &old_metadata, field);
    }
    if resource.kind == "Namespace" {
        new["spec"] = old.get("spec").cloned().unwrap_or(Value::Null);
    }
    if new.get("spec").is_some() && new.get("spec") != old.get("spec") {
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        meta::metadata_mut(new).insert("generation".into(), json!(generation + 1));
    }
}

fn carry(metadata: &mut Map<String, Value>, old: &Map<String, Value>, field: &str) {
    match old.get(field) {
        Some(value) => metadata.insert(field.into(), value.clone()),
        None => metadata.remove(field),
    };
}

/// Defaults, then validates; a 422 Invalid lists every cause.
pub fn default_and_validate(
    resource: &ResourceType,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    defaults::apply(resource.kind, object);
    let causes = validation::validate(resource.kind, object, old, resource.namespaced);
    if causes.is_empty() {
        return Ok(());
    }
    let name = meta::name(object).to_owned();
    Err(ApiError::Invalid {
        message: validation::invalid_message(resource.kind, resource.group, &name, &causes),
        causes,
        name,
        group: resource.group.to_owned(),
        kind: resource.kind.to_owned(),
    })
}

/// Gives an object with `generateName` and no name its generated name.
pub fn generate_name(object: &mut Value) {
    let metadata = meta::metadata_mut(object);
    let has_name = metadata.get("name").and_then(Value::as_str).is_some_and(|name| !name.is_empty());
    let prefix = metadata.get("generateName").and_then(Value::as_str).map(str::to_owned);
    if let (false, Some(prefix)) = (has_name, prefix) {
        metadata.insert("name".into(), Value::String(format!("{prefix}{}", meta::generated_suffix())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every created pod tolerates not-ready and unreachable for the default time, unless it
    // says otherwise: its own toleration of a taint (or of every key, or every effect) stands.
    #[test]
    fn default_tolerations_fill_in_what_is_missing() {
        let pods = crate::resource::RESOURCES.iter().find(|r| r.kind == "Pod" && r.group.is_empty()).unwrap();
        let check = |spec: Value, expected: Value| {
            let mut pod = json!({ "spec": spec });
            default_tolerations(pods, &mut pod, 7);
            assert_eq!(pod["spec"]["tolerations"], expected, "{spec}");
        };
        let default = |taint: &str| json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7});
        check(json!({}), json!([default(NOT_READY_TAINT), default(UNREACHABLE_TAINT)]));
        check(json!({"tolerations": null}), json!([default(NOT_READY_TAINT), default(UNREACHABLE_TAINT)]));
        let own = json!({"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute"});
        check(json!({"tolerations": [own]}), json!([own, default(NOT_READY_TAINT)]));
        let any_effect = json!({"key": NOT_READY_TAINT, "operator": "Exists", "tolerationSeconds": 60});
        check(json!({"tolerations": [any_effect]}), json!([any_effect, default(UNREACHABLE_TAINT)]));
        let everything = json!({"operator": "Exists"});
        check(json!({"tolerations": [everything]}), json!([everything]));
        let no_schedule = json!({"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoSchedule"});
        check(
            json!({"tolerations": [no_schedule]}),
            json!([no_schedule, default(NOT_READY_TAINT), default(UNREACHABLE_TAINT)]),
        );
        check(json!({"tolerations": "bad"}), json!("bad"));
        let mut deployment = json!({"spec": {}});
        let deployments = crate::resource::RESOURCES.iter().find(|r| r.kind == "Deployment").unwrap();
        default_tolerations(deployments, &mut deployment, 7);
        assert_eq!(deployment, json!({"spec": {}}));
    }

    // The QoS class follows Kubernetes' rules over all containers.
    #[test]
    fn qos_classes() {
        let check = |spec: Value, expected: &str| assert_eq!(qos_class(&spec), expected, "{spec}");
        check(json!({"containers": [{"name": "c"}]}), "BestEffort");
        let both = json!({"cpu": "1", "memory": "1Gi"});
        check(json!({"containers": [{"resources": {"limits": both, "requests": both}}]}), "Guaranteed");
        check(json!({"containers": [{"resources": {"limits": both}}]}), "Guaranteed");
        check(json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}), "Burstable");
        check(json!({"containers": [{"resources": {"limits": both}}, {"name": "bare"}]}), "Burstable");
        check(json!({"containers": [{"resources": {"limits": {"cpu": "1"}}}]}), "Burstable");
    }
}
