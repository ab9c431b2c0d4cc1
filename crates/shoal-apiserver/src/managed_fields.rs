//! Server-side apply and field ownership (`metadata.managedFields`), as Kubernetes 1.33 does
//! them (structured-merge-diff v4's `merge.Updater` behind
//! `k8s.io/apimachinery/pkg/util/managedfields`).
//!
//! Every write records which fields its manager set. A create, update or non-apply patch gives
//! the manager the fields that changed, in an `Update` entry per (manager, apiVersion,
//! subresource), and takes them from every other manager. An apply gives the applier exactly
//! the fields of its configuration, in its `Apply` entry; it fails on a field another manager
//! owns and the configuration changes, unless forced, and it removes the fields the applier set
//! last time and no manager owns any more. Only the main resource's fields outside `status`
//! are tracked on the main resource, and only `status` on the status subresource, as the reset
//! fields of upstream's strategies have it.
//!
//! Upstream behaviours kept: updates of an object that has no managedFields are not tracked,
//! and an apply to one first gives its fields to `before-first-apply`; at most ten `Update`
//! entries are kept, the oldest merged into `ancient-changes`; `kubectl` applying over
//! client-side apply may take the fields its last-applied annotation agrees with, and keeps
//! that annotation up to date. Left out: conversion between API versions (every manager's
//! set is read in the version the object is served in), and the scale subresource's mapping of
//! `Scale` paths (callers pass the parent object, so its `spec.replicas` is tracked directly).

mod entries;
mod field_set;
mod structure;
mod typed;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use self::entries::{
    Entry, Managed, copy_managed_fields, identifier, managed_before_update, remove_managed_fields,
};
use self::field_set::{FieldSet, PathElement, compare_values, go_json, render_path};
use self::typed::{Comparison, Ty, WalkError, Walker};
use crate::schema::Schemas;

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
///
/// Its `Display` is upstream's message for the field's `StatusCause`: `conflict with "kubectl"
/// with subresource "scale" using apps/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// The apiVersion the other manager used.
    pub api_version: String,
    /// The field, as upstream prints it: `.spec.replicas`, `.spec.template.spec.containers[name="c"].image`.
    pub field: String,
    /// How the other manager set the field; upstream names an applier without its apiVersion.
    pub operation: Operation,
    /// The subresource the other manager wrote through, e.g. `scale`.
    pub subresource: Option<String>,
}

/// The operation of a managedFields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
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
    let Value::Object(config) = request.applied else {
        return Err(ApplyError::Invalid("an applied configuration must be a JSON object".into()));
    };
    check_object_type(request, &K::schema_name())?;
    if config.get("metadata").and_then(|metadata| metadata.get("managedFields")).is_some_and(|f| !f.is_null())
    {
        return Err(ApplyError::Invalid("metadata.managedFields must be nil".into()));
    }
    let mut live = match request.current {
        Some(current @ Value::Object(_)) => current.clone(),
        Some(_) => return Err(ApplyError::Invalid("the stored object is not a JSON object".into())),
        None => Value::Object(Map::new()),
    };
    let managed = Managed::decode(&live)
        .map_err(|error| ApplyError::Invalid(format!("failed to decode managed fields: {error}")))?;
    remove_managed_fields(&mut live);
    let schemas = Schemas::of::<K>();
    let tracker = Tracker::new(&schemas, request.api_version, request.now, request.subresource);
    let config_set = tracker
        .walker
        .field_set(request.applied, tracker.root, true)
        .map_err(|error| invalid_object("failed to create typed patch object", request.applied, &error))?;
    let applying =
        Applying { live: &live, config: request.applied, config_set: &config_set, manager: request.manager };
    let (mut object, managed) = match tracker.apply(&applying, managed.clone(), request.force) {
        Err(Failure::Conflicts(conflicts)) if request.manager == KUBECTL_MANAGER => {
            tracker.apply_over_client_side_apply(&applying, managed, conflicts)?
        }
        outcome => outcome?,
    };
    if request.manager == KUBECTL_MANAGER {
        update_last_applied(&mut object, request.applied);
    }
    managed.write_into(&mut object);
    Ok(object)
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
    if !new.is_object() {
        return;
    }
    let mut managed = managed_before_update(old, new, subresource);
    remove_managed_fields(new);
    // As upstream, an object that has lost its managedFields (or never had any) is not tracked
    // again until an apply; a create is.
    let old_uid =
        old.and_then(|old| old.pointer("/metadata/uid")).and_then(Value::as_str).unwrap_or_default();
    if managed.entries.is_empty() && !old_uid.is_empty() {
        return;
    }
    let mut live = old.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    remove_managed_fields(&mut live);
    let schemas = Schemas::of::<K>();
    let tracker = Tracker::new(&schemas, api_version, now, subresource);
    match tracker.update(&live, new, &mut managed, manager) {
        Ok(()) => managed.write_into(new),
        // The object does not fit its schema (a list element without its key, say): as upstream,
        // keep the managedFields it had rather than fail the write.
        Err(_) => copy_managed_fields(old, new),
    }
}

/// Upstream's message: `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [conflict] = conflicts {
        return format!("Apply failed with 1 conflict: {conflict}: {}", conflict.field);
    }
    let mut by_manager: BTreeMap<String, (&Conflict, Vec<&str>)> = BTreeMap::new();
    for conflict in conflicts {
        let identifier = conflict.manager_identifier();
        by_manager.entry(identifier).or_insert_with(|| (conflict, Vec::new())).1.push(&conflict.field);
    }
    let mut lines = Vec::new();
    for (conflict, fields) in by_manager.values() {
        lines.push(format!("conflicts with {}:", conflict.describe_manager()));
        lines.extend(fields.iter().map(|field| format!("- {field}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

impl Conflict {
    /// Upstream's `printManager`: `"kubectl" with subresource "scale" using apps/v1`.
    fn describe_manager(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if let Some(subresource) = self.subresource.as_deref().filter(|subresource| !subresource.is_empty()) {
            text.push_str(&format!(" with subresource {subresource:?}"));
        }
        if self.operation == Operation::Update {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }

    fn manager_identifier(&self) -> String {
        identifier(&self.manager, self.operation, &self.api_version, self.subresource.as_deref())
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "conflict with {}", self.describe_manager())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// The manager whose applies take over client-side apply's fields and keep its annotation.
const KUBECTL_MANAGER: &str = "kubectl";
/// Who owns an untracked object's fields once it is first applied to.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The most bytes of annotation keys and values an object may have, as upstream validates.
const ANNOTATIONS_BYTES_MAX: usize = 256 * 1024;

/// Fields never tracked: type and identity, and what the server sets. Removed from a
/// manager's set level by level, as upstream's `stripMetaManager` does, so `metadata` itself
/// is not owned but the labels under it are.
static UNTRACKED_FIELDS: LazyLock<FieldSet> = LazyLock::new(|| {
    let mut set = FieldSet::default();
    set.insert(&[field("apiVersion")]);
    set.insert(&[field("kind")]);
    set.insert(&[field("metadata")]);
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        set.insert(&[field("metadata"), field(name)]);
    }
    set
});

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_owned())
}

/// The fields a write may own, by where it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The main resource: everything but `status`.
    Main,
    /// The status subresource: only `status`.
    Status,
    /// Another subresource (`scale`): whatever it changes.
    Other,
}

impl Scope {
    fn of(subresource: Option<&str>) -> Scope {
        match subresource {
            None => Scope::Main,
            Some("status") => Scope::Status,
            Some(_) => Scope::Other,
        }
    }

    fn filter(self, set: &FieldSet) -> FieldSet {
        let status = field("status");
        match self {
            Scope::Main => {
                let mut excluded = FieldSet::default();
                excluded.insert(std::slice::from_ref(&status));
                set.recursive_difference(&excluded)
            }
            Scope::Status => {
                let members = set.members().iter().filter(|element| **element == status).cloned().collect();
                let children =
                    set.child(&status).map(|child| (status.clone(), child.clone())).into_iter().collect();
                FieldSet::from_parts(members, children)
            }
            Scope::Other => set.clone(),
        }
    }
}

/// Why one apply attempt failed.
#[derive(Debug)]
enum Failure {
    /// Fields other managers own, by manager, in upstream's order, with their paths.
    Conflicts(Vec<(Conflict, Vec<PathElement>)>),
    Invalid(ApplyError),
}

impl From<Failure> for ApplyError {
    fn from(failure: Failure) -> ApplyError {
        match failure {
            Failure::Invalid(error) => error,
            Failure::Conflicts(conflicts) => {
                ApplyError::Conflicts(conflicts.into_iter().map(|(conflict, _)| conflict).collect())
            }
        }
    }
}

/// What an apply works on; the live object without its managedFields.
struct Applying<'a> {
    live: &'a Value,
    config: &'a Value,
    /// The fields `config` sets.
    config_set: &'a FieldSet,
    manager: &'a str,
}

/// Field ownership for one write: the walks over its type and where and when it writes.
struct Tracker<'a> {
    walker: Walker<'a>,
    root: Ty<'a>,
    scope: Scope,
    api_version: &'a str,
    now: &'a str,
    subresource: Option<&'a str>,
}

impl<'a> Tracker<'a> {
    fn new(
        schemas: &'a Schemas,
        api_version: &'a str,
        now: &'a str,
        subresource: Option<&'a str>,
    ) -> Tracker<'a> {
        let walker = Walker::new(schemas);
        let root = walker.root();
        Tracker { walker, root, scope: Scope::of(subresource), api_version, now, subresource }
    }

    fn compare(&self, lhs: &Value, rhs: &Value) -> Result<Comparison, WalkError> {
        let comparison = self.walker.compare(lhs, rhs, self.root)?;
        Ok(comparison.filtered(|set| self.scope.filter(set)))
    }

    /// Gives `manager` the fields that differ between `live` and `new` and takes them from
    /// everyone else (upstream's `Updater.Update` under `managedFieldsUpdater`).
    fn update(
        &self,
        live: &Value,
        new: &Value,
        managed: &mut Managed,
        manager: &str,
    ) -> Result<(), WalkError> {
        let comparison = self.compare(live, new)?;
        take_changes(managed, &comparison, None);
        let changed = comparison.modified.union(&comparison.added).difference(&UNTRACKED_FIELDS);
        if changed.is_empty() {
            return Ok(());
        }
        let id = identifier(manager, Operation::Update, self.api_version, self.subresource);
        let fields = match managed.entries.remove(&id) {
            Some(previous) => changed.union(&previous.fields),
            None => changed,
        };
        let entry = Entry {
            manager: manager.to_owned(),
            operation: Operation::Update,
            api_version: self.api_version.to_owned(),
            subresource: self.subresource.map(str::to_owned),
            time: Some(self.now.to_owned()),
            fields,
        };
        managed.entries.insert(id, entry);
        managed.cap_update_entries();
        Ok(())
    }

    /// One apply (upstream's `Updater.Apply`, after `skipNonAppliedManager`).
    fn apply(
        &self,
        applying: &Applying<'_>,
        mut managed: Managed,
        force: bool,
    ) -> Result<(Value, Managed), Failure> {
        let live = applying.live;
        if managed.entries.is_empty() {
            let empty = Value::Object(Map::new());
            self.update(&empty, live, &mut managed, BEFORE_FIRST_APPLY)
                .map_err(|error| self.invalid_live(live, &error))?;
        }
        let merged = self.walker.merge(Some(live), Some(applying.config), self.root, &mut Vec::new());
        let merged = merged
            .map_err(|error| self.invalid_live(live, &error))?
            .unwrap_or_else(|| Value::Object(Map::new()));
        let id = identifier(applying.manager, Operation::Apply, self.api_version, self.subresource);
        let previous = managed.entries.remove(&id);
        let entry = Entry {
            manager: applying.manager.to_owned(),
            operation: Operation::Apply,
            api_version: self.api_version.to_owned(),
            subresource: self.subresource.map(str::to_owned),
            time: previous.as_ref().and_then(|previous| previous.time.clone()),
            fields: self.scope.filter(applying.config_set),
        };
        managed.entries.insert(id.clone(), entry);
        let object = match previous.map(|previous| previous.fields).filter(|last| !last.is_empty()) {
            Some(last) => {
                self.prune(&merged, &managed, &last).map_err(|error| self.invalid_live(live, &error))?
            }
            None => merged,
        };
        let comparison = self.compare(live, &object).map_err(|error| self.invalid_live(live, &error))?;
        let conflicts = conflicts(&managed, &comparison, &id);
        if !force && !conflicts.is_empty() {
            return Err(Failure::Conflicts(conflicts));
        }
        take_changes(&mut managed, &comparison, Some(&id));
        if let Some(entry) = managed.entries.get_mut(&id) {
            entry.fields = entry.fields.difference(&UNTRACKED_FIELDS);
            if !compare_values(live, &object).is_eq() {
                entry.time = Some(self.now.to_owned());
            }
            if entry.fields.is_empty() {
                managed.entries.remove(&id);
            }
        }
        Ok((object, managed))
    }

    /// Removes from `merged` the fields the applier set last time (`last`), no longer sets, and
    /// nobody else owns (upstream's `prune`, `addBackOwnedItems` and `addBackDanglingItems`).
    fn prune(&self, merged: &Value, managed: &Managed, last: &FieldSet) -> Result<Value, WalkError> {
        let named = |set: &FieldSet| self.walker.ensure_named(set, self.root);
        let remove = |object: &Value, set: &FieldSet| {
            self.walker.remove(object, set, self.root, 0).unwrap_or_else(|| Value::Object(Map::new()))
        };
        let fields_of =
            |object: &Value| self.walker.field_set(object, self.root, false).map(|set| named(&set));
        let last = named(last);
        let pruned = remove(merged, &last);
        let owned =
            managed.entries.values().fold(FieldSet::default(), |owned, entry| owned.union(&entry.fields));
        let merged_fields = fields_of(merged)?;
        let unowned = merged_fields.difference(&fields_of(&pruned)?.union(&named(&owned)));
        let pruned = remove(merged, &unowned);
        let dropped = merged_fields.difference(&fields_of(&pruned)?).intersection(&last);
        Ok(remove(merged, &dropped))
    }

    /// Retries an apply by `kubectl` that conflicts only on fields its client-side apply
    /// annotation agrees with the object on, as forced (upstream's `lastAppliedManager`).
    fn apply_over_client_side_apply(
        &self,
        applying: &Applying<'_>,
        managed: Managed,
        conflicts: Vec<(Conflict, Vec<PathElement>)>,
    ) -> Result<(Value, Managed), ApplyError> {
        let Some(allowed) = self.agreed_with_last_applied(applying.live) else {
            return Err(Failure::Conflicts(conflicts).into());
        };
        let remaining: Vec<_> = conflicts.into_iter().filter(|(_, path)| !allowed.has(path)).collect();
        if !remaining.is_empty() {
            return Err(Failure::Conflicts(remaining).into());
        }
        Ok(self.apply(applying, managed, true)?)
    }

    /// The fields of the last-applied annotation that have the annotation's value in `live`.
    fn agreed_with_last_applied(&self, live: &Value) -> Option<FieldSet> {
        let annotation = live.get("metadata")?.get("annotations")?.get(LAST_APPLIED_ANNOTATION)?.as_str()?;
        let last_applied: Value = serde_json::from_str(annotation).ok()?;
        if last_applied.get("apiVersion").and_then(Value::as_str) != Some(self.api_version) {
            return None;
        }
        let fields = self.walker.field_set(&last_applied, self.root, true).ok()?;
        let comparison = self.walker.compare(&last_applied, live, self.root).ok()?;
        Some(
            fields
                .difference(&comparison.modified)
                .difference(&comparison.added)
                .difference(&comparison.removed),
        )
    }

    fn invalid_live(&self, live: &Value, error: &WalkError) -> Failure {
        Failure::Invalid(invalid_object("failed to create typed live object", live, error))
    }
}

/// The fields `comparison` says changed that a manager other than `except` owns, by manager
/// in upstream's order (upstream's `Updater.update` without force).
fn conflicts(managed: &Managed, comparison: &Comparison, except: &str) -> Vec<(Conflict, Vec<PathElement>)> {
    let changed = comparison.modified.union(&comparison.added);
    let mut conflicts = Vec::new();
    for (_, entry) in managed.entries.iter().filter(|(id, _)| id.as_str() != except) {
        for path in entry.fields.intersection(&changed).paths() {
            let conflict = Conflict {
                manager: entry.manager.clone(),
                api_version: entry.api_version.clone(),
                field: render_path(&path),
                operation: entry.operation,
                subresource: entry.subresource.clone(),
            };
            conflicts.push((conflict, path));
        }
    }
    conflicts
}

/// Takes the fields `comparison` says changed or were removed from every manager but `except`,
/// dropping the entries left with nothing (upstream's `Updater.update`, forced).
fn take_changes(managed: &mut Managed, comparison: &Comparison, except: Option<&str>) {
    let changed = comparison.modified.union(&comparison.added);
    for (id, entry) in managed.entries.iter_mut() {
        if Some(id.as_str()) != except {
            entry.fields = entry.fields.difference(&changed).difference(&comparison.removed);
        }
    }
    managed.entries.retain(|_, entry| !entry.fields.is_empty());
}

/// Checks the applied configuration is of the served kind and version (upstream's
/// `versionCheckManager`). `schema_name` is k8s-openapi's definition name, whose last part is
/// the kind; a type without one (`Value`) takes any kind.
fn check_object_type(request: &Apply<'_>, schema_name: &str) -> Result<(), ApplyError> {
    let text = |name: &str| request.applied.get(name).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let expected_kind = schema_name.rsplit_once('.').map(|(_, kind)| kind);
    if api_version == request.api_version && expected_kind.is_none_or(|expected| expected == kind) {
        return Ok(());
    }
    Err(ApplyError::Invalid(format!("invalid object type: {}", group_version_kind(api_version, kind))))
}

/// Go's `GroupVersionKind.String()`: `apps/v1, Kind=Deployment`, `/v1, Kind=Pod`.
fn group_version_kind(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// Upstream's message for an object that does not fit its schema:
/// `failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec: expected map, got string`.
fn invalid_object(what: &str, object: &Value, error: &WalkError) -> ApplyError {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let gvk = group_version_kind(text("/apiVersion"), text("/kind"));
    ApplyError::Invalid(format!(
        "{what} ({}/{}; {gvk}): {error}",
        text("/metadata/namespace"),
        text("/metadata/name")
    ))
}

/// Sets the last-applied annotation of an object that has one to the applied configuration,
/// so that client-side apply keeps working after server-side apply (upstream's
/// `lastAppliedUpdater`); drops it if that makes the annotations too large.
fn update_last_applied(object: &mut Value, config: &Value) {
    let has_annotation = object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|annotation| !annotation.is_empty());
    if !has_annotation {
        return;
    }
    let mut config = config.clone();
    if let Some(annotations) = config.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let last_applied = format!("{}\n", go_json(&config));
    let Some(annotations) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) else {
        return;
    };
    annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(last_applied));
    let bytes: usize =
        annotations.iter().map(|(key, value)| key.len() + value.as_str().map_or(0, str::len)).sum();
    if bytes > ANNOTATIONS_BYTES_MAX {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    use super::*;

    const NOW: &str = "2025-01-01T00:00:00Z";
    const LATER: &str = "2025-01-01T00:05:00Z";

    /// A small Deployment as a user writes it.
    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "c", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    /// `object` as kube-apiserver stores it after a create: server-set metadata and defaults.
    fn stored(mut object: Value) -> Value {
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.insert("uid".into(), json!("u-1"));
        metadata.insert("resourceVersion".into(), json!("1"));
        metadata.insert("generation".into(), json!(1));
        metadata.insert("creationTimestamp".into(), json!(NOW));
        let spec = &mut object["spec"];
        spec["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
        spec["revisionHistoryLimit"] = json!(10);
        spec["progressDeadlineSeconds"] = json!(600);
        let pod = &mut spec["template"]["spec"];
        for (field, value) in [
            ("restartPolicy", json!("Always")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("dnsPolicy", json!("ClusterFirst")),
            ("securityContext", json!({})),
            ("schedulerName", json!("default-scheduler")),
        ] {
            pod[field] = value;
        }
        for container in pod["containers"].as_array_mut().unwrap() {
            container["resources"] = json!({});
            container["terminationMessagePath"] = json!("/dev/termination-log");
            container["terminationMessagePolicy"] = json!("File");
            container["imagePullPolicy"] = json!("Always");
            for port in container["ports"].as_array_mut().into_iter().flatten() {
                port["protocol"] = json!("TCP");
            }
        }
        object["status"] = json!({});
        object
    }

    fn apply_as(
        current: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApplyError> {
        let request = Apply {
            current,
            applied: config,
            manager,
            force,
            api_version: "apps/v1",
            now: NOW,
            subresource: None,
        };
        apply::<Deployment>(&request)
    }

    /// A create through the API by `manager`, recorded as kube-apiserver records it.
    fn create_as(object: Value, manager: &str) -> Value {
        let mut object = stored(object);
        record_update::<Deployment>(None, &mut object, manager, "apps/v1", NOW, None);
        object
    }

    /// An update of `current` to `new` by `manager`, through `subresource` if any.
    fn update_as(current: &Value, mut new: Value, manager: &str, subresource: Option<&str>) -> Value {
        record_update::<Deployment>(Some(current), &mut new, manager, "apps/v1", LATER, subresource);
        new
    }

    /// The FieldsV1 of each entry, as `manager/operation[/subresource]`.
    fn ownership(object: &Value) -> BTreeMap<String, Value> {
        let entries = object.pointer("/metadata/managedFields").and_then(Value::as_array).cloned();
        let mut ownership = BTreeMap::new();
        for entry in entries.unwrap_or_default() {
            let mut name =
                format!("{}/{}", entry["manager"].as_str().unwrap(), entry["operation"].as_str().unwrap());
            if let Some(subresource) = entry.get("subresource").and_then(Value::as_str) {
                name.push('/');
                name.push_str(subresource);
            }
            ownership.insert(name, entry["fieldsV1"].clone());
        }
        ownership
    }

    fn without_managed_fields(mut object: Value) -> Value {
        remove_managed_fields(&mut object);
        object
    }

    #[track_caller]
    fn check_ownership(object: &Value, expected: &[(&str, Value)]) {
        let expected: BTreeMap<String, Value> =
            expected.iter().map(|(name, fields)| ((*name).to_owned(), fields.clone())).collect();
        assert_eq!(ownership(object), expected, "managedFields of {object:#}");
    }

    #[test]
    fn fields_v1_matches_kube_apiserver() {
        // The FieldsV1 kube-apiserver writes for a small Deployment: applied (only what the
        // configuration sets; list maps keyed as upstream, the port's protocol defaulted in
        // its key), and created with kubectl (every field the create set, defaults included;
        // "." marks what the create added whole, but not the structs a Go object always has).
        let applied = apply_as(None, &deployment(2, "nginx"), "kubectl", false).unwrap();
        let port = r#"k:{"containerPort":80,"protocol":"TCP"}"#;
        let container = r#"k:{"name":"c"}"#;
        check_ownership(
            &applied,
            &[(
                "kubectl/Apply",
                json!({"f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:replicas": {}, "f:selector": {},
                        "f:template": {"f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {"f:containers": {container: {".": {}, "f:image": {}, "f:name": {},
                                "f:ports": {port: {".": {}, "f:containerPort": {}}}}}}}}}),
            )],
        );
        let mut manifest = deployment(2, "nginx");
        manifest["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: format!("{manifest}\n")});
        let created = create_as(manifest, "kubectl-client-side-apply");
        check_ownership(
            &created,
            &[(
                "kubectl-client-side-apply/Update",
                json!({"f:metadata": {
                        "f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                        "f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {"f:progressDeadlineSeconds": {}, "f:replicas": {},
                        "f:revisionHistoryLimit": {}, "f:selector": {},
                        "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                            "f:type": {}},
                        "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                            "f:spec": {
                                "f:containers": {container: {".": {}, "f:image": {}, "f:imagePullPolicy": {},
                                    "f:name": {},
                                    "f:ports": {".": {},
                                        port: {".": {}, "f:containerPort": {}, "f:protocol": {}}},
                                    "f:resources": {}, "f:terminationMessagePath": {},
                                    "f:terminationMessagePolicy": {}}},
                                "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                                "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}}}),
            )],
        );
        // Service ports are keyed by port and protocol.
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}}});
        let request = Apply {
            current: None,
            applied: &service,
            manager: "kubectl",
            force: false,
            api_version: "v1",
            now: NOW,
            subresource: None,
        };
        let applied = apply::<Service>(&request).unwrap();
        check_ownership(
            &applied,
            &[(
                "kubectl/Apply",
                json!({"f:spec": {"f:ports": {
                        r#"k:{"port":80,"protocol":"TCP"}"#: {".": {}, "f:port": {}, "f:targetPort": {}}},
                    "f:selector": {}}}),
            )],
        );
    }

    #[test]
    fn apply_creates_with_an_apply_entry() {
        // An apply with nothing stored returns the configuration itself, with one Apply entry.
        let config = deployment(2, "nginx");
        let created = apply_as(None, &config, "kubectl", false).unwrap();
        assert_eq!(without_managed_fields(created.clone()), config);
        let entries = created["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];
        assert_eq!(
            (
                &entry["manager"],
                &entry["operation"],
                &entry["apiVersion"],
                &entry["time"],
                &entry["fieldsType"]
            ),
            (&json!("kubectl"), &json!("Apply"), &json!("apps/v1"), &json!(NOW), &json!("FieldsV1"))
        );
        assert_eq!(entry.get("subresource"), None);
    }

    #[test]
    fn reapply_without_a_field_removes_it() {
        // The applier's own fields go when it stops applying them, unless another manager
        // owns them too; fields it never owned (defaults the server set) stay.
        let mut first = deployment(2, "nginx");
        first["metadata"]["labels"]["tier"] = json!("front");
        let mut applied = apply_as(None, &first, "a1", false).unwrap();
        applied["spec"]["progressDeadlineSeconds"] = json!(600);
        let mut second = deployment(2, "nginx");
        second["spec"].as_object_mut().unwrap().remove("replicas");
        let reapplied = apply_as(Some(&applied), &second, "a1", false).unwrap();
        assert_eq!(reapplied["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(reapplied["spec"].get("replicas"), None);
        assert_eq!(reapplied["spec"]["progressDeadlineSeconds"], json!(600));
        // With a second applier owning the replicas, they stay.
        let shared = apply_as(
            Some(&applied),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 2}}),
            "a2",
            false,
        )
        .unwrap();
        let reapplied = apply_as(Some(&shared), &second, "a1", false).unwrap();
        assert_eq!(reapplied["spec"]["replicas"], json!(2));
        assert_eq!(ownership(&reapplied)["a2/Apply"], json!({"f:spec": {"f:replicas": {}}}));
    }

    /// How the object a conflicting apply meets came about.
    fn history(steps: &[(&str, &str, Option<&str>, i64, &str)]) -> Value {
        let mut object = None::<Value>;
        for &(kind, manager, subresource, replicas, image) in steps {
            let next = deployment(replicas, image);
            object = Some(match (kind, object) {
                ("create", _) => create_as(next, manager),
                ("apply", current) => apply_as(current.as_ref(), &next, manager, false).unwrap(),
                ("update", Some(current)) => {
                    let mut new = stored(next);
                    new["metadata"]["managedFields"] = current["metadata"]["managedFields"].clone();
                    update_as(&current, new, manager, subresource)
                }
                (kind, _) => panic!("unknown step {kind}"),
            });
        }
        object.unwrap()
    }

    #[test]
    fn conflicts_report_upstream_messages() {
        // A field another manager set to another value conflicts; the message names the manager
        // as upstream does: an updater with its apiVersion (and subresource), an applier without.
        let cases = [
            (
                history(&[("create", "kubectl-client-side-apply", None, 3, "nginx")]),
                "ci",
                deployment(5, "nginx"),
                r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#,
            ),
            (
                // kubectl scale, then kubectl apply --server-side of the old replica count.
                history(&[
                    ("apply", "kubectl", None, 3, "nginx"),
                    ("update", "kubectl", Some("scale"), 5, "nginx"),
                ]),
                "kubectl",
                deployment(3, "nginx"),
                r#"Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#,
            ),
            (
                history(&[("create", "m0", None, 3, "nginx"), ("update", "m1", None, 4, "nginx:2")]),
                "ci",
                deployment(5, "nginx:3"),
                "Apply failed with 2 conflicts: conflicts with \"m1\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"c\"].image",
            ),
            (
                history(&[("apply", "a1", None, 3, "nginx")]),
                "a2",
                deployment(5, "nginx"),
                r#"Apply failed with 1 conflict: conflict with "a1": .spec.replicas"#,
            ),
        ];
        for (current, manager, config, expected) in cases {
            match apply_as(Some(&current), &config, manager, false) {
                Err(error @ ApplyError::Conflicts(_)) => assert_eq!(error.to_string(), expected),
                other => panic!("expected conflicts, got {other:?}"),
            }
        }
        let current = history(&[("create", "kubectl-client-side-apply", None, 3, "nginx")]);
        let Err(ApplyError::Conflicts(conflicts)) =
            apply_as(Some(&current), &deployment(5, "nginx"), "ci", false)
        else {
            panic!("expected a conflict");
        };
        assert_eq!(
            conflicts,
            [Conflict {
                manager: "kubectl-client-side-apply".into(),
                api_version: "apps/v1".into(),
                field: ".spec.replicas".into(),
                operation: Operation::Update,
                subresource: None,
            }]
        );
        assert_eq!(conflicts[0].to_string(), r#"conflict with "kubectl-client-side-apply" using apps/v1"#);
    }

    #[test]
    fn force_takes_conflicting_fields() {
        // With force, the applier sets and owns the field; the other manager loses only it.
        let current = history(&[("create", "kubectl-client-side-apply", None, 3, "nginx")]);
        let forced = apply_as(Some(&current), &deployment(5, "nginx"), "ci", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], json!(5));
        let owners = ownership(&forced);
        assert!(owners["ci/Apply"]["f:spec"].get("f:replicas").is_some());
        let updater = &owners["kubectl-client-side-apply/Update"]["f:spec"];
        assert_eq!(updater.get("f:replicas"), None);
        assert!(updater.get("f:revisionHistoryLimit").is_some());
    }

    #[test]
    fn appliers_of_the_same_value_share_ownership() {
        // A second applier setting a field to its current value takes no conflict, and both own
        // it; the first applier dropping it leaves it to the second.
        let first = apply_as(None, &deployment(3, "nginx"), "a1", false).unwrap();
        let both = apply_as(Some(&first), &deployment(3, "nginx"), "a2", false).unwrap();
        let owners = ownership(&both);
        assert_eq!(owners["a1/Apply"], owners["a2/Apply"]);
        let mut without_replicas = deployment(3, "nginx");
        without_replicas["spec"].as_object_mut().unwrap().remove("replicas");
        let after = apply_as(Some(&both), &without_replicas, "a1", false).unwrap();
        assert_eq!(after["spec"]["replicas"], json!(3));
        assert!(ownership(&after)["a2/Apply"]["f:spec"].get("f:replicas").is_some());
    }

    #[test]
    fn kubectl_takes_over_from_client_side_apply() {
        // kubectl apply --server-side after client-side apply: the fields the last-applied
        // annotation agrees with the object on do not conflict, and the annotation follows the
        // applied configuration.
        let mut manifest = deployment(3, "nginx");
        manifest["metadata"]["annotations"] =
            json!({LAST_APPLIED_ANNOTATION: format!("{}\n", deployment(3, "nginx"))});
        let current = create_as(manifest, "kubectl-client-side-apply");
        let applied = apply_as(Some(&current), &deployment(5, "nginx"), "kubectl", false).unwrap();
        assert_eq!(applied["spec"]["replicas"], json!(5));
        let annotation = applied["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].as_str().unwrap();
        assert_eq!(annotation, format!("{}\n", deployment(5, "nginx")));
        // Another manager gets the conflict.
        assert!(matches!(
            apply_as(Some(&current), &deployment(5, "nginx"), "ci", false),
            Err(ApplyError::Conflicts(_))
        ));
    }

    #[test]
    fn record_update_moves_ownership() {
        // An update gives its manager what it changed and takes it from the others; an entry
        // left with nothing goes; an update that changes nothing leaves managedFields as they were.
        let created = create_as(deployment(2, "nginx"), "m1");
        let mut new = created.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        let updated = update_as(&created, new, "m2", None);
        let container = r#"k:{"name":"c"}"#;
        let image =
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {container: {"f:image": {}}}}}}});
        assert_eq!(ownership(&updated)["m2/Update"], image);
        assert_eq!(
            ownership(&updated)["m1/Update"]["f:spec"]["f:template"]["f:spec"]["f:containers"][container]
                .get("f:image"),
            None
        );
        let unchanged = update_as(&updated, updated.clone(), "m3", None);
        assert_eq!(unchanged, updated);
        // A manager that loses everything loses its entry.
        let mut only_image = create_as(deployment(2, "nginx"), "m1");
        only_image["metadata"]["managedFields"] = json!([{"manager": "m0", "operation": "Update",
            "apiVersion": "apps/v1", "time": NOW, "fieldsType": "FieldsV1", "fieldsV1": image}]);
        let mut new = only_image.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:3");
        check_ownership(&update_as(&only_image, new, "m2", None), &[("m2/Update", image.clone())]);
    }

    #[test]
    fn status_and_main_resource_are_tracked_apart() {
        // The main resource never owns status, the status subresource owns only status.
        let created = create_as(deployment(2, "nginx"), "m1");
        let mut new = created.clone();
        new["status"] = json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
        let via_main = update_as(&created, new.clone(), "m2", None);
        check_ownership(&via_main, &[("m1/Update", ownership(&created)["m1/Update"].clone())]);
        let via_status = update_as(&created, new, "kcm", Some("status"));
        assert_eq!(
            ownership(&via_status)["kcm/Update/status"],
            json!({"f:status": {"f:conditions": {".": {},
                    r#"k:{"type":"Available"}"#: {".": {}, "f:status": {}, "f:type": {}}},
                "f:replicas": {}}})
        );
    }

    #[test]
    fn untracked_objects_stay_untracked_until_applied() {
        // As upstream: an update of an object without managedFields records nothing, and the
        // first apply gives its existing fields to before-first-apply, which can conflict.
        let current = stored(deployment(3, "nginx"));
        let mut new = current.clone();
        new["spec"]["replicas"] = json!(4);
        assert_eq!(update_as(&current, new.clone(), "m1", None), new);
        let error = apply_as(Some(&current), &deployment(5, "nginx"), "ci", false).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#
        );
        // Clearing managedFields with [{}] stops tracking.
        let tracked = create_as(deployment(3, "nginx"), "m1");
        let mut cleared = tracked.clone();
        cleared["metadata"]["managedFields"] = json!([{}]);
        assert_eq!(update_as(&tracked, cleared, "m2", None).pointer("/metadata/managedFields"), None);
    }

    #[test]
    fn update_entries_are_capped() {
        // The eleventh updater merges the two oldest entries into ancient-changes.
        let mut object = create_as(deployment(2, "nginx"), "m0");
        for index in 1..=10 {
            let mut new = object.clone();
            new["metadata"]["labels"][format!("l{index}")] = json!("x");
            let now = format!("2025-01-01T00:{index:02}:00Z");
            record_update::<Deployment>(Some(&object), &mut new, &format!("m{index}"), "apps/v1", &now, None);
            object = new;
        }
        let owners = ownership(&object);
        assert_eq!(owners.len(), 10);
        assert!(owners.contains_key("ancient-changes/Update"));
        assert!(!owners.contains_key("m0/Update") && !owners.contains_key("m1/Update"));
        assert_eq!(owners["ancient-changes/Update"]["f:metadata"]["f:labels"]["f:l1"], json!({}));
    }

    #[test]
    fn invalid_configurations_are_rejected() {
        let object = |spec: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
        };
        let typed = "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): ";
        let containers =
            |containers: Value| object(json!({"template": {"spec": {"containers": containers}}}));
        let cases = [
            (json!([]), "an applied configuration must be a JSON object".to_owned()),
            (
                json!({"apiVersion": "apps/v2", "kind": "Deployment"}),
                "invalid object type: apps/v2, Kind=Deployment".into(),
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Pod"}),
                "invalid object type: apps/v1, Kind=Pod".into(),
            ),
            (json!({"kind": "Deployment"}), "invalid object type: /, Kind=Deployment".into()),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"managedFields": []}}),
                "metadata.managedFields must be nil".into(),
            ),
            (object(json!("big")), format!("{typed}.spec: expected map, got string")),
            (
                containers(json!({"name": "c"})),
                format!("{typed}.spec.template.spec.containers: expected list, got map"),
            ),
            (
                containers(json!([{"image": "x"}])),
                format!(
                    "{typed}.spec.template.spec.containers: element 0: associative list with keys has an element that omits all key fields [\"name\"] (and doesn't have default values for any key fields)"
                ),
            ),
            (
                containers(json!([{"name": "c"}, "c"])),
                format!(
                    "{typed}.spec.template.spec.containers: element 1: associative list with keys may not have non-map elements"
                ),
            ),
            (
                containers(json!([{"name": "c"}, {"name": "c"}])),
                format!("{typed}.spec.template.spec.containers: duplicate entries for key [name=\"c\"]"),
            ),
        ];
        for (config, expected) in cases {
            match apply_as(None, &config, "ci", false) {
                Err(ApplyError::Invalid(message)) => assert_eq!(message, expected, "applying {config}"),
                other => panic!("applying {config}: expected {expected:?}, got {other:?}"),
            }
        }
        let broken = json!({"metadata": {"managedFields": [{"manager": "m", "operation": "Patch"}]}});
        match apply_as(Some(&broken), &deployment(1, "x"), "ci", false) {
            Err(ApplyError::Invalid(message)) => {
                assert_eq!(message, "failed to decode managed fields: operation must be `Apply` or `Update`")
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// A fixed-seed linear congruential generator: deterministic, and enough to shuffle JSON.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            usize::try_from(self.0 >> 33).unwrap() % bound
        }

        fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
            words[self.below(words.len())]
        }

        fn value(&mut self, depth: usize) -> Value {
            const KEYS: &[&str] = &[
                "apiVersion",
                "kind",
                "metadata",
                "spec",
                "status",
                "template",
                "containers",
                "name",
                "image",
                "ports",
                "containerPort",
                "protocol",
                "labels",
                "finalizers",
                "managedFields",
                "replicas",
                "selector",
                "strategy",
                "rollingUpdate",
                "conditions",
                "type",
                "fieldsV1",
                "f:spec",
                ".",
            ];
            const STRINGS: &[&str] =
                &["apps/v1", "Deployment", "c", "TCP", "Apply", "Update", "FieldsV1", "k:{"];
            let kinds = if depth == 0 { 4 } else { 7 };
            match self.below(kinds) {
                0 => Value::Null,
                1 => Value::Bool(self.below(2) == 0),
                2 => json!(self.below(3)),
                3 => Value::String(self.pick(STRINGS).to_owned()),
                4 | 5 => {
                    let entries = self.below(4);
                    Value::Object(
                        (0..entries).map(|_| (self.pick(KEYS).to_owned(), self.value(depth - 1))).collect(),
                    )
                }
                _ => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
            }
        }
    }

    #[test]
    fn odd_input_never_panics() {
        // Thousands of random documents built from the vocabulary of the walks, grafted onto a
        // real deployment and as whole objects, as configurations, stored objects and updates:
        // every call returns.
        let base = apply_as(None, &deployment(1, "nginx"), "a1", false).unwrap();
        let mut rng = Lcg(11);
        for _ in 0..1500 {
            let mut config = deployment(1, "nginx");
            config["spec"]["template"]["spec"] = rng.value(4);
            config["metadata"]["labels"] = rng.value(2);
            let _ = apply_as(Some(&base), &config, "a2", rng.below(2) == 0);
            let (current, applied) = (rng.value(5), rng.value(5));
            let _ = apply_as(Some(&current), &applied, "kubectl", false);
            let _ = apply::<Value>(&Apply {
                current: Some(&current),
                applied: &applied,
                manager: "m",
                force: false,
                api_version: "v1",
                now: NOW,
                subresource: Some("status"),
            });
            let mut new = base.clone();
            new["spec"] = rng.value(4);
            new["metadata"]["managedFields"] = rng.value(3);
            record_update::<Deployment>(Some(&base), &mut new, "m", "apps/v1", NOW, None);
            let (old, mut new) = (rng.value(5), rng.value(5));
            record_update::<Deployment>(Some(&old), &mut new, "m", "apps/v1", NOW, Some("scale"));
            record_update::<Value>(None, &mut new, "m", "v1", NOW, None);
        }
    }
}
