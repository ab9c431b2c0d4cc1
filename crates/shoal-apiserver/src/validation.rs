//! (being written) Kubernetes validation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;

/// Every problem with `object`.
pub fn validate(
    _kind: &str,
    _object: &serde_json::Value,
    _old: Option<&serde_json::Value>,
    _namespaced: bool,
) -> Vec<StatusCause> {
    Vec::new()
}

/// The message of a 422 Status.
pub fn invalid_message(kind: &str, group: &str, name: &str, causes: &[StatusCause]) -> String {
    let _ = (group, causes);
    format!("{kind} \"{name}\" is invalid")
}
