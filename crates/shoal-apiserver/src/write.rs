//! The writing verbs: create, update, patch, delete, deletecollection, and the binding,
//! eviction and scale subresources.
//!
//! Every change is a compare-and-swap on the object's revision: an update or patch reads the
//! object, computes the new one, and writes it only if the object is still at the revision
//! read. A patch without a resourceVersion of its own retries on a lost race, as kube-apiserver
//! does; an update that names a stale resourceVersion gets 409 Conflict.

use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};
use shoal_store::mvcc::Revision;

use crate::admit::{self, FieldValidation};
use crate::api::{Api, Call, Reply};
use crate::error::{ApiError, success_status};
use crate::meta;
use crate::objects::{ReadAt, Stored, not_found};
use crate::resource::{self, ResourceType};

/// How often a patch, a status change or a delete is tried when it keeps losing races with
/// other writers: each round lets at least one writer through, so this many writers at once
/// to one object all get theirs applied.
const PATCH_ATTEMPTS_MAX: usize = 16;
/// The grace period of a pod deleted without one.
const POD_GRACE_PERIOD_SECONDS_DEFAULT: i64 = 30;

pub async fn create(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let resource = call.target.resource;
    let mut object = admit::body_object(call)?;
    admit::check_type(resource, &mut object)?;
    admit::check_namespace(resource, &mut object, call.target.namespace)?;
    admit::generate_name(&mut object);
    create_checked(api, call, object, Ownership::Update).await
}

/// The common end of create and of server-side apply creating: decoding, server-set fields,
/// defaults, validation, ownership, the namespace check, then the store (201).
async fn create_checked(
    api: &Api,
    call: &Call<'_>,
    object: Value,
    ownership: Ownership,
) -> Result<Reply, ApiError> {
    let resource = call.target.resource;
    let mut warnings = Vec::new();
    let validation = FieldValidation::from_call(call)?;
    let mut object = admit::normalize(resource, object, validation, &mut warnings)?;
    admit::prepare_create(resource, &mut object);
    admit::default_tolerations(resource, &mut object, api.default_toleration_seconds);
    admit::default_and_validate(resource, &mut object, None)?;
    admit::finish_create(resource, &mut object);
    if ownership == Ownership::Update {
        let manager = field_manager(call)?;
        let (api_version, now) = (resource.api_version(), meta::now_rfc3339());
        (resource.codec.record_update)(None, &mut object, &manager, &api_version, &now, None);
    }
    if resource.namespaced {
        check_namespace_open(api, meta::namespace(&object)).await?;
    }
    if call.query.dry_run {
        return Ok(with_warnings(Reply::with_code(StatusCode::CREATED, object), warnings));
    }
    let name = meta::name(&object).to_owned();
    let stored = store_new(api, resource, call.target.namespace, &name, object).await?;
    Ok(with_warnings(Reply::with_code(StatusCode::CREATED, stored.object), warnings))
}

pub async fn update(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let resource = target.resource;
    let name = target.name.expect("update has a name");
    let mut warnings = Vec::new();
    let mut object = admit::body_object(call)?;
    admit::check_type(resource, &mut object)?;
    admit::check_namespace(resource, &mut object, target.namespace)?;
    check_name(&object, name)?;
    let validation = FieldValidation::from_call(call)?;
    let object = admit::normalize(resource, object, validation, &mut warnings)?;
    let precondition = meta::metadata_str(&object, "resourceVersion").to_owned();
    let (object, precondition) = (&object, &precondition);
    let stored = retry_raced(resource, name, |_round| async move {
        let current = read_current(api, resource, target.namespace, name).await?;
        if !precondition.is_empty() && *precondition != current.revision.to_string() {
            return Err(crate::objects::conflict(resource, name));
        }
        // An update without a resourceVersion is unconditional, as in Kubernetes: it is
        // written over whatever another writer saved in between.
        raced(save(api, call, current, object.clone(), Ownership::Update).await)
    })
    .await?;
    Ok(with_warnings(Reply::ok(stored.object), warnings))
}

/// Kubernetes' GuaranteedUpdate: runs `attempt` (a read, checks, a compare-and-swap) again
/// while its write loses races with other writers (`Ok(None)`, see [`raced`]), at most
/// `PATCH_ATTEMPTS_MAX` times; each round lets at least one writer through. An error is final.
/// `attempt` is given the round, from 0.
async fn retry_raced<T, F>(
    resource: &ResourceType,
    name: &str,
    mut attempt: impl FnMut(usize) -> F,
) -> Result<T, ApiError>
where
    F: Future<Output = Result<Option<T>, ApiError>>,
{
    for round in 0..PATCH_ATTEMPTS_MAX {
        if let Some(done) = attempt(round).await? {
            return Ok(done);
        }
    }
    Err(crate::objects::conflict(resource, name))
}

/// A compare-and-swap's outcome for [`retry_raced`]: a Conflict (the object moved since it
/// was read) is a race to run again, not an error.
fn raced<T>(outcome: Result<T, ApiError>) -> Result<Option<T>, ApiError> {
    match outcome {
        Err(ApiError::Conflict { .. }) => Ok(None),
        outcome => outcome.map(Some),
    }
}

pub async fn patch(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let resource = target.resource;
    let name = target.name.expect("patch has a name");
    let content_type = call.header(CONTENT_TYPE).split(';').next().unwrap_or("").trim().to_owned();
    let kind = PatchKind::from_content_type(&content_type)?;
    let validation = FieldValidation::from_call(call)?;
    let patch: Value = serde_json::from_slice(&call.body)
        .map_err(|error| ApiError::bad_request(format!("the patch is not valid JSON: {error}")))?;
    let patch = &patch;
    let outcome = retry_raced(resource, name, |_round| async move {
        let current = match api.objects.get(resource, target.namespace, name, ReadAt::Latest).await? {
            Some(current) => current,
            None if kind == PatchKind::Apply => {
                return apply_create(api, call, patch.clone()).await.map(Patched::Created).map(Some);
            }
            None => return Err(not_found(resource, name)),
        };
        let (patched, ownership) = match kind {
            PatchKind::Apply => (server_side_apply(call, Some(&current.object), patch)?, Ownership::Recorded),
            _ => (kind.apply(resource, &current.object, patch)?, Ownership::Update),
        };
        let precondition = meta::metadata_str(&patched, "resourceVersion").to_owned();
        if !precondition.is_empty() && precondition != current.revision.to_string() {
            return Err(crate::objects::conflict(resource, name));
        }
        let mut patched = patched;
        admit::check_type(resource, &mut patched)?;
        admit::check_namespace(resource, &mut patched, target.namespace)?;
        let mut warnings = Vec::new();
        let patched = admit::normalize(resource, patched, validation, &mut warnings)?;
        // The next round reads the object again and re-checks a precondition the patch named,
        // so only a patch without one is applied again, to the newer object, as in Kubernetes.
        let saved = raced(save(api, call, current, patched, ownership).await)?;
        Ok(saved.map(|stored| Patched::Saved(stored, warnings)))
    })
    .await?;
    match outcome {
        Patched::Saved(stored, warnings) => Ok(with_warnings(Reply::ok(stored.object), warnings)),
        Patched::Created(reply) => Ok(reply),
    }
}

/// What a patch did: changed the object (with the warnings of its last round), or
/// (server-side apply) created it.
enum Patched {
    Saved(Stored, Vec<String>),
    Created(Reply),
}

/// Whether a write still has to record its manager's fields in managedFields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// An update: the manager takes the fields it changed.
    Update,
    /// Server-side apply has already recorded ownership.
    Recorded,
}

/// The longest fieldManager accepted, as in Kubernetes.
const FIELD_MANAGER_BYTES_MAX: usize = 128;

/// The manager a write is recorded under: `fieldManager`, else the User-Agent's program name.
fn field_manager(call: &Call<'_>) -> Result<String, ApiError> {
    let manager = match call.query.field_manager.as_deref() {
        Some(manager) => manager.to_owned(),
        None => {
            let agent = call.header(http::header::USER_AGENT);
            let program = agent.split('/').next().unwrap_or("").trim();
            if program.is_empty() { "unknown".to_owned() } else { program.to_owned() }
        }
    };
    if manager.len() > FIELD_MANAGER_BYTES_MAX || manager.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "fieldManager must be at most {FIELD_MANAGER_BYTES_MAX} printable characters"
        )));
    }
    Ok(manager)
}

/// Runs server-side apply of `applied` over `current` (absent when creating).
fn server_side_apply(call: &Call<'_>, current: Option<&Value>, applied: &Value) -> Result<Value, ApiError> {
    let resource = call.target.resource;
    let Some(manager) = call.query.field_manager.as_deref().filter(|manager| !manager.is_empty()) else {
        return Err(ApiError::bad_request(
            "PATCH, fieldManager: Required value: is required for apply patch",
        ));
    };
    field_manager(call)?;
    if !applied.is_object() {
        return Err(ApiError::bad_request("an applied configuration must be a JSON object"));
    }
    let (api_version, now) = (resource.api_version(), meta::now_rfc3339());
    let request = crate::managed_fields::Apply {
        current,
        applied,
        manager,
        force: call.query.force,
        api_version: &api_version,
        now: &now,
        subresource: call.target.subresource,
    };
    (resource.codec.apply)(&request).map_err(|error| match error {
        crate::managed_fields::ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
            message: crate::managed_fields::conflict_message(&conflicts),
            causes: conflicts
                .iter()
                .map(|conflict| k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause {
                    reason: Some("FieldManagerConflict".into()),
                    message: Some(conflict.to_string()),
                    field: Some(conflict.field.clone()),
                })
                .collect(),
            name: call.target.name.unwrap_or_default().to_owned(),
            group: resource.group.to_owned(),
            kind: resource.plural.to_owned(),
        },
        crate::managed_fields::ApplyError::Invalid(message) => ApiError::bad_request(message),
    })
}

/// The patch formats of `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    StrategicMerge,
    /// Server-side apply.
    Apply,
}

impl PatchKind {
    fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        match content_type {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            _ => Err(ApiError::UnsupportedMediaType {
                accepted: "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml".into(),
            }),
        }
    }

    fn apply(self, resource: &ResourceType, current: &Value, patch: &Value) -> Result<Value, ApiError> {
        let invalid =
            |detail: String| ApiError::bad_request(format!("the patch cannot be applied: {detail}"));
        match self {
            Self::Json => {
                let operations: json_patch::Patch =
                    serde_json::from_value(patch.clone()).map_err(|error| invalid(error.to_string()))?;
                let mut patched = current.clone();
                json_patch::patch(&mut patched, &operations).map_err(|error| invalid(error.to_string()))?;
                Ok(patched)
            }
            Self::Merge => {
                if !patch.is_object() {
                    return Err(invalid("a merge patch must be a JSON object".into()));
                }
                let mut patched = current.clone();
                json_patch::merge(&mut patched, patch);
                Ok(patched)
            }
            Self::StrategicMerge | Self::Apply => {
                (resource.codec.strategic_merge)(current, patch).map_err(|error| invalid(error.to_string()))
            }
        }
    }
}

/// Server-side apply of an object that does not exist yet: a create (201).
async fn apply_create(api: &Api, call: &Call<'_>, applied: Value) -> Result<Reply, ApiError> {
    let resource = call.target.resource;
    let mut object = server_side_apply(call, None, &applied)?;
    admit::check_type(resource, &mut object)?;
    admit::check_namespace(resource, &mut object, call.target.namespace)?;
    check_name(&object, call.target.name.expect("apply has a name"))?;
    create_checked(api, call, object, Ownership::Recorded).await
}

/// The object's name must be the one in the URL.
fn check_name(object: &Value, name: &str) -> Result<(), ApiError> {
    let body_name = meta::name(object);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

/// Stores a new object, allocating a Service's ClusterIP and NodePorts in the same
/// transaction; a random choice that lost a race is drawn again.
async fn store_new(
    api: &Api,
    resource: &'static ResourceType,
    namespace: Option<&str>,
    name: &str,
    object: Value,
) -> Result<Stored, ApiError> {
    if !is_core_service(resource) {
        return api.objects.create(resource, namespace, name, object).await;
    }
    let mut taken = crate::allocator::Taken::new();
    for _ in 0..crate::allocator::ALLOCATION_ATTEMPTS_MAX {
        let mut candidate = object.clone();
        let claims = crate::allocator::assign(&mut candidate, api.service_cidr, &object, &taken)?;
        match api.objects.create_claiming(resource, namespace, name, candidate, &claims).await? {
            Ok(stored) => return Ok(stored),
            Err(taken) if crate::allocator::claims_of(&object).contains(&taken) => {
                return Err(crate::allocator::already_allocated(&object, &taken));
            }
            // Another create holds the address or port chosen: choose again knowing them all.
            Err(_choice_taken) => taken = api.objects.allocator_claims().await?,
        }
    }
    Err(ApiError::internal(
        "failed to allocate a service IP or node port: concurrent creates kept taking the free ones",
    ))
}

fn is_core_service(resource: &ResourceType) -> bool {
    resource.kind == "Service" && resource.group.is_empty()
}

/// The allocator keys a stored object holds, released when it is deleted.
fn claims_to_release(resource: &ResourceType, object: &Value) -> Vec<String> {
    if is_core_service(resource) { crate::allocator::claims_of(object) } else { Vec::new() }
}

/// Writes `new` over `current` (the common end of update and patch): server-owned fields,
/// defaults, validation, finalizer-driven deletion, then a compare-and-swap.
async fn save(
    api: &Api,
    call: &Call<'_>,
    current: Stored,
    mut new: Value,
    ownership: Ownership,
) -> Result<Stored, ApiError> {
    let resource = call.target.resource;
    let name = call.target.name.expect("save has a name");
    admit::prepare_update(resource, &mut new, &current.object, call.target.subresource);
    admit::default_and_validate(resource, &mut new, Some(&current.object))?;
    if ownership == Ownership::Update {
        let manager = field_manager(call)?;
        let (api_version, now) = (resource.api_version(), meta::now_rfc3339());
        let subresource = call.target.subresource;
        (resource.codec.record_update)(
            Some(&current.object),
            &mut new,
            &manager,
            &api_version,
            &now,
            subresource,
        );
    }
    let mut unchanged = new.clone();
    if let Some(metadata) = unchanged.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), Value::String(current.revision.to_string()));
    }
    if unchanged == current.object || call.query.dry_run {
        return Ok(Stored {
            object: if call.query.dry_run { new } else { current.object },
            revision: current.revision,
        });
    }
    if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() && !meta::has_spec_finalizers(&new) {
        let release = claims_to_release(resource, &current.object);
        let revision =
            api.objects.delete(resource, call.target.namespace, name, current.revision, &release).await?;
        return Ok(Stored { object: crate::objects::with_resource_version(new, revision), revision });
    }
    api.objects.update(resource, call.target.namespace, name, new, current.revision).await
}

pub async fn delete(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let name = target.name.expect("delete has a name");
    let options = DeleteOptions::from_call(call)?;
    let current = read_current(api, target.resource, target.namespace, name).await?;
    let object =
        delete_retrying(api, target.resource, target.namespace, current, &options, call.query.dry_run)
            .await?;
    Ok(Reply::ok(object))
}

/// Deletes (or marks for deletion) `current`, reading it again and retrying when another
/// writer changed it meanwhile, as Kubernetes' storage does: a client that set no
/// resourceVersion precondition asked for the object gone, not for the version it last saw.
async fn delete_retrying(
    api: &Api,
    resource: &'static ResourceType,
    namespace: Option<&str>,
    mut current: Stored,
    options: &DeleteOptions,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let name = meta::name(&current.object).to_owned();
    for _ in 1..PATCH_ATTEMPTS_MAX {
        let uid_still_matches = options
            .precondition_uid
            .as_deref()
            .is_none_or(|uid| uid == meta::metadata_str(&current.object, "uid"));
        let retry_on_conflict = options.precondition_resource_version.is_none() && uid_still_matches;
        match delete_object(api, resource, namespace, current, options, dry_run).await {
            Err(ApiError::Conflict { .. }) if retry_on_conflict => {
                current = read_current(api, resource, namespace, &name).await?;
            }
            outcome => return outcome,
        }
    }
    delete_object(api, resource, namespace, current, options, dry_run).await
}

pub async fn delete_collection(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let options = DeleteOptions::from_call(call)?;
    let filter = crate::read::Filter::from_query(target.resource, &call.query)?;
    let matches = |object: &Value| filter.matches(object);
    let request = crate::objects::ListRequest {
        resource: target.resource,
        namespace: target.namespace,
        read: ReadAt::Latest,
        limit: None,
        continue_token: None,
        filter: &matches,
    };
    let page = api.objects.list(&request).await?;
    let mut deleted = Vec::new();
    for object in page.items {
        let revision = meta::metadata_str(&object, "resourceVersion").parse().unwrap_or(0);
        let namespace = Some(meta::namespace(&object).to_owned()).filter(|ns| !ns.is_empty());
        let current = Stored { object, revision };
        match delete_retrying(
            api,
            target.resource,
            namespace.as_deref(),
            current,
            &options,
            call.query.dry_run,
        )
        .await
        {
            Ok(object) => deleted.push(object),
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Reply::ok(json!({
        "kind": format!("{}List", target.resource.kind),
        "apiVersion": target.resource.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    })))
}

/// What a DELETE asks for, from its body (a `DeleteOptions`) and query.
#[derive(Debug, Default)]
pub struct DeleteOptions {
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

impl DeleteOptions {
    fn from_call(call: &Call<'_>) -> Result<Self, ApiError> {
        let mut options = DeleteOptions {
            propagation_policy: call.query.propagation_policy.clone(),
            grace_period_seconds: call.query.grace_period_seconds,
            ..DeleteOptions::default()
        };
        if call.body.is_empty() {
            return Ok(options);
        }
        let body = if call.header(CONTENT_TYPE).starts_with(crate::protobuf::MEDIA_TYPE) {
            crate::protobuf::decode_delete_options(&call.body)?
        } else {
            admit::parse_object(&call.body)?
        };
        options.merge_body(&body)?;
        Ok(options)
    }

    pub fn merge_body(&mut self, body: &Value) -> Result<(), ApiError> {
        if let Some(policy) = body.get("propagationPolicy").and_then(Value::as_str) {
            self.propagation_policy = Some(policy.to_owned());
        }
        if let Some(orphan) = body.get("orphanDependents").and_then(Value::as_bool) {
            self.propagation_policy = Some(if orphan { "Orphan" } else { "Background" }.to_owned());
        }
        if let Some(grace) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
            self.grace_period_seconds = Some(grace);
        }
        self.precondition_uid = body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned);
        self.precondition_resource_version =
            body.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_owned);
        match self.propagation_policy.as_deref() {
            None | Some("Background" | "Foreground" | "Orphan") => Ok(()),
            Some(other) => Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground or Orphan"
            ))),
        }
    }
}

/// Deletes one object as `options` say: at once, or by marking it (finalizers, a pod's grace
/// period) for whoever finishes the deletion. Returns the object as last seen.
pub async fn delete_object(
    api: &Api,
    resource: &'static ResourceType,
    namespace: Option<&str>,
    current: Stored,
    options: &DeleteOptions,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let name = meta::name(&current.object).to_owned();
    if let Some(uid) = &options.precondition_uid
        && uid != meta::metadata_str(&current.object, "uid")
    {
        return Err(ApiError::Conflict {
            resource: resource.qualified_plural(),
            name,
            group: resource.group.to_owned(),
            kind: resource.plural.to_owned(),
        });
    }
    if let Some(rv) = &options.precondition_resource_version
        && *rv != current.revision.to_string()
    {
        return Err(crate::objects::conflict(resource, &name));
    }
    let mut marked = current.object.clone();
    let mut finalizers = meta::finalizers(&marked);
    let policy_finalizer = match options.propagation_policy.as_deref() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    };
    if let Some(finalizer) = policy_finalizer
        && !meta::is_deleting(&marked)
        && !finalizers.iter().any(|f| f == finalizer)
    {
        finalizers.push(finalizer.to_owned());
    }
    let grace = pod_grace_period(resource, &marked, options);
    if finalizers.is_empty() && grace == 0 && !meta::has_spec_finalizers(&marked) {
        if dry_run {
            return Ok(current.object);
        }
        let release = claims_to_release(resource, &current.object);
        let revision = api.objects.delete(resource, namespace, &name, current.revision, &release).await?;
        return Ok(crate::objects::with_resource_version(current.object, revision));
    }
    if meta::is_deleting(&marked) && meta::finalizers(&marked) == finalizers {
        return Ok(current.object);
    }
    let now = jiff::Timestamp::now();
    let deletion = now.checked_add(jiff::SignedDuration::from_secs(grace)).unwrap_or(now);
    let metadata = meta::metadata_mut(&mut marked);
    metadata.insert("finalizers".into(), json!(finalizers));
    if !metadata.contains_key("deletionTimestamp") {
        metadata.insert("deletionTimestamp".into(), json!(meta::timestamp_rfc3339(deletion)));
        metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
    }
    if finalizers.is_empty() {
        metadata.remove("finalizers");
    }
    if resource.kind == "Namespace" {
        marked["status"] = json!({"phase": "Terminating"});
    }
    if dry_run {
        return Ok(marked);
    }
    let stored = api.objects.update(resource, namespace, &name, marked, current.revision).await?;
    Ok(stored.object)
}

/// How long a pod is given to stop: 0 (delete at once) for pods no node runs.
fn pod_grace_period(resource: &ResourceType, object: &Value, options: &DeleteOptions) -> i64 {
    if resource.kind != "Pod" || !resource.group.is_empty() {
        return 0;
    }
    let bound = object.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|node| !node.is_empty());
    let finished =
        matches!(object.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
    if !bound || finished {
        return 0;
    }
    let from_spec = object.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64);
    options.grace_period_seconds.or(from_spec).unwrap_or(POD_GRACE_PERIOD_SECONDS_DEFAULT).max(0)
}

/// `pods/binding`: assigns an unscheduled pod to a node, once.
pub async fn bind(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let name = target.name.expect("binding has a pod name");
    let body = admit::parse_object(&call.body)?;
    let binding = (resource::BINDING.normalize)(body)
        .map_err(|error| ApiError::bad_request(format!("the Binding cannot be decoded: {error}")))?
        .object;
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::bad_request("a Binding needs target.name (the node)"));
    }
    let resource = target.resource;
    // The first round reads this member's copy of the pod, sparing a quorum round per bind:
    // the compare-and-swap below refuses a stale copy, and a refusal read from one is
    // confirmed by a linearizable read before it is answered. A dry run, which writes
    // nothing to catch a stale copy, reads linearizably from the start.
    retry_raced(resource, name, |round| async move {
        let read = if round == 0 && !call.query.dry_run { ReadAt::Any } else { ReadAt::Latest };
        let current =
            match bindable(resource, name, api.objects.get(resource, target.namespace, name, read).await?) {
                Ok(current) => current,
                Err(_) if read == ReadAt::Any => return Ok(None),
                Err(refusal) => return Err(refusal),
            };
        let Stored { object: mut bound, revision } = current;
        bound["spec"]["nodeName"] = json!(node);
        set_condition(
            &mut bound,
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}),
        );
        if call.query.dry_run {
            return Ok(Some(()));
        }
        // Another writer (a label, the pod's status) saved in between, or this member's copy
        // was stale: the newer pod is checked and bound instead, as Kubernetes' binding does;
        // a pod another scheduler bound meanwhile fails the check above.
        Ok(raced(api.objects.update(resource, target.namespace, name, bound, revision).await)?.map(drop))
    })
    .await?;
    Ok(Reply::with_code(StatusCode::CREATED, success_status(None)))
}

/// The pod read, if it can be bound: it exists, has no node yet and is not being deleted.
fn bindable(resource: &ResourceType, name: &str, pod: Option<Stored>) -> Result<Stored, ApiError> {
    let pod = pod.ok_or_else(|| not_found(resource, name))?;
    let conflict = |why: String| ApiError::Conflict {
        resource: resource.qualified_plural(),
        name: format!("{name}\": {why}"),
        group: String::new(),
        kind: resource.plural.to_owned(),
    };
    if let Some(assigned) =
        pod.object.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
    {
        return Err(conflict(format!("pod {name} is already assigned to node \"{assigned}")));
    }
    if meta::is_deleting(&pod.object) {
        return Err(conflict(format!("pod {name} is being deleted, cannot be assigned to a host")));
    }
    Ok(pod)
}

/// Replaces or adds the status condition of the same type.
fn set_condition(object: &mut Value, condition: Value) {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    let conditions = &mut object["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("conditions was just made an array");
    list.retain(|existing| existing.get("type") != condition.get("type"));
    list.push(condition);
}

/// `pods/eviction`: a deletion that disruption budgets may refuse (none are served yet).
pub async fn evict(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let name = target.name.expect("eviction has a pod name");
    let body = admit::parse_object(&call.body)?;
    let eviction = (resource::EVICTION.normalize)(body)
        .map_err(|error| ApiError::bad_request(format!("the Eviction cannot be decoded: {error}")))?
        .object;
    if !meta::name(&eviction).is_empty() && meta::name(&eviction) != name {
        return Err(ApiError::bad_request("the name of the Eviction does not match the pod in the URL"));
    }
    let mut options = DeleteOptions::default();
    if let Some(delete_options) = eviction.get("deleteOptions") {
        options.merge_body(delete_options)?;
    }
    let current = read_current(api, target.resource, target.namespace, name).await?;
    delete_object(api, target.resource, target.namespace, current, &options, call.query.dry_run).await?;
    Ok(Reply::with_code(StatusCode::CREATED, success_status(None)))
}

pub async fn get_scale(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let name = target.name.expect("scale has a name");
    let current = read_current(api, target.resource, target.namespace, name).await?;
    Ok(Reply::ok(scale_of(&current.object)))
}

pub async fn update_scale(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let scale = admit::parse_object(&call.body)?;
    change_scale(api, call, |_| Ok(scale.clone())).await
}

pub async fn patch_scale(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let content_type = call.header(CONTENT_TYPE).split(';').next().unwrap_or("").trim().to_owned();
    let kind = PatchKind::from_content_type(&content_type)?;
    let patch: Value = serde_json::from_slice(&call.body)
        .map_err(|error| ApiError::bad_request(format!("the patch is not valid JSON: {error}")))?;
    change_scale(api, call, |scale| match kind {
        PatchKind::Json | PatchKind::Merge => kind.apply(call.target.resource, scale, &patch),
        PatchKind::StrategicMerge | PatchKind::Apply => {
            let mut patched = scale.clone();
            json_patch::merge(&mut patched, &patch);
            Ok(patched)
        }
    })
    .await
}

/// Reads the object, computes the new Scale from the current one, and writes its replicas.
async fn change_scale(
    api: &Api,
    call: &Call<'_>,
    change: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Reply, ApiError> {
    let target = &call.target;
    let name = target.name.expect("scale has a name");
    let change = &change;
    let stored = retry_raced(target.resource, name, |_round| async move {
        let current = read_current(api, target.resource, target.namespace, name).await?;
        let scale = change(&scale_of(&current.object))?;
        let precondition = meta::metadata_str(&scale, "resourceVersion").to_owned();
        if !precondition.is_empty() && precondition != current.revision.to_string() {
            return Err(crate::objects::conflict(target.resource, name));
        }
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::bad_request("a Scale needs spec.replicas as an integer"))?;
        let mut object = current.object.clone();
        object["spec"]["replicas"] = json!(replicas);
        // As in `patch`: the next round re-checks a precondition the Scale named.
        raced(save_scaled(api, call, current, object).await)
    })
    .await?;
    Ok(Reply::ok(scale_of(&stored.object)))
}

async fn save_scaled(
    api: &Api,
    call: &Call<'_>,
    current: Stored,
    mut object: Value,
) -> Result<Stored, ApiError> {
    let resource = call.target.resource;
    admit::prepare_update(resource, &mut object, &current.object, None);
    admit::default_and_validate(resource, &mut object, Some(&current.object))?;
    if call.query.dry_run {
        return Ok(Stored { object, revision: current.revision });
    }
    let name = call.target.name.expect("scale has a name");
    api.objects.update(resource, call.target.namespace, name, object, current.revision).await
}

/// The autoscaling/v1 Scale of a Deployment or ReplicaSet.
fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector")
        .and_then(|selector| serde_json::from_value(selector.clone()).ok())
        .and_then(|selector| crate::selectors::LabelSelector::from_api(&selector).ok())
        .map(|selector| selector.to_string())
        .unwrap_or_default();
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let keep = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"];
    let metadata: serde_json::Map<String, Value> = metadata
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| keep.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

async fn read_current(
    api: &Api,
    resource: &'static ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Stored, ApiError> {
    api.objects.get(resource, namespace, name, ReadAt::Latest).await?.ok_or_else(|| not_found(resource, name))
}

/// A namespaced object may be created only in a namespace that exists and is not being deleted.
async fn check_namespace_open(api: &Api, namespace: &str) -> Result<(), ApiError> {
    let namespaces = resource::find("", "v1", "namespaces").expect("namespaces are served");
    let mut stored = api.objects.get(namespaces, None, namespace, ReadAt::Any).await?;
    if stored.is_none() {
        // This member may not have applied a namespace created a moment ago.
        stored = api.objects.get(namespaces, None, namespace, ReadAt::Latest).await?;
    }
    let namespace_object = stored.ok_or_else(|| not_found(namespaces, namespace))?;
    if meta::is_deleting(&namespace_object.object) {
        return Err(ApiError::Forbidden {
            message: format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        });
    }
    Ok(())
}

/// Creates a namespace if it does not exist (the system namespaces at start).
pub async fn ensure_namespace(api: &Api, name: &str) -> Result<(), ApiError> {
    let namespaces = resource::find("", "v1", "namespaces").expect("namespaces are served");
    if api.objects.get(namespaces, None, name, ReadAt::Latest).await?.is_some() {
        return Ok(());
    }
    let mut object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    admit::prepare_create(namespaces, &mut object);
    admit::default_and_validate(namespaces, &mut object, None)?;
    match api.objects.create(namespaces, None, name, object).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// `kube-system/kube-dns`: the address every node's agent answers DNS queries on. It has no
/// selector (no pods serve it; each agent does, on the Service's address) and exists so that
/// `kubectl get services -A` shows the cluster DNS, pods' `KUBE_DNS_SERVICE_*` variables
/// name it, and the allocator never hands its address to another Service.
pub fn dns_service(range: crate::allocator::ServiceCidr) -> Value {
    let address = range.host(crate::allocator::DNS_SERVICE_HOST).to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true"},
        },
        "spec": {
            "clusterIP": address,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    })
}

/// Creates a Service shoal itself needs unless it exists, claiming its address as a user's
/// create would.
pub async fn ensure_service(api: &Api, mut object: Value) -> Result<(), ApiError> {
    let services = resource::find("", "v1", "services").expect("services are served");
    let (namespace, name) = (meta::namespace(&object).to_owned(), meta::name(&object).to_owned());
    if api.objects.get(services, Some(&namespace), &name, ReadAt::Latest).await?.is_some() {
        return Ok(());
    }
    admit::prepare_create(services, &mut object);
    admit::default_and_validate(services, &mut object, None)?;
    match store_new(api, services, Some(&namespace), &name, object).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

fn with_warnings(reply: Reply, extra: Vec<String>) -> Reply {
    match reply {
        Reply::Json { code, body, content_type, mut warnings } => {
            warnings.extend(extra);
            Reply::Json { code, body, content_type, warnings }
        }
        raw @ Reply::Raw(_) => raw,
    }
}

/// The revision an object was read at, from its resourceVersion.
pub fn revision_of(object: &Value) -> Revision {
    meta::metadata_str(object, "resourceVersion").parse().unwrap_or(0)
}
