//! Server-side apply and field ownership (`metadata.managedFields`). Being written.

use serde_json::Value;

/// One apply request.
#[derive(Debug, Clone, Copy)]
pub struct Apply<'a> {
    /// The stored object; `None` when the apply creates it.
    pub current: Option<&'a Value>,
    /// The applied configuration (the request body).
    pub applied: &'a Value,
    pub manager: &'a str,
    /// `force=true`: take ownership of conflicting fields instead of failing.
    pub force: bool,
    /// The apiVersion recorded in the managedFields entry, e.g. `apps/v1`.
    pub api_version: &'a str,
    /// The time recorded in the managedFields entry (RFC 3339).
    pub now: &'a str,
    /// `Some("status")` when applied to the status subresource.
    pub subresource: Option<&'a str>,
}

/// A field the applier does not own, set to another value by another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// The apiVersion the other manager used.
    pub api_version: String,
    /// The field, as upstream prints it: `.spec.replicas`, `.spec.template.spec.containers[name="c"].image`.
    pub field: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    #[error("{0}")]
    Invalid(String),
}

/// Applies `request.applied` over `request.current` and returns the new object with its
/// managedFields updated.
pub fn apply<K: schemars::JsonSchema>(request: &Apply<'_>) -> Result<Value, ApplyError> {
    let _ = request;
    Err(ApplyError::Invalid("server-side apply is being written".into()))
}

/// Records an update (create, PUT, non-apply PATCH) by `manager` in `new`'s managedFields.
pub fn record_update<K: schemars::JsonSchema>(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) {
    let _ = (old, new, manager, api_version, now, subresource);
}

/// Upstream's message: `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let _ = conflicts;
    String::from("Apply failed")
}
