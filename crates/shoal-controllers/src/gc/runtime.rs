//! The collector's effects: a watch cache of every kind's metadata, passes on change
//! (debounced) and on a resync timer, and the writes each pass decides.
//!
//! Everything runs inside the future `run` returns, without spawned tasks, so dropping it
//! (the server losing leadership) stops the watches and the writes in flight at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, ObjectMeta, PartialObjectMeta, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Action, Object, OwnerKey, Propagation, Scope, Snapshot, Target, decide};
use crate::kinds::{GroupKind, ServedKind};
use crate::{REQUEST_TIMEOUT, RESYNC_INTERVAL, is_status};

/// How long a pass waits after a change for more changes, so that a burst of events (a
/// ReplicaSet's pods going away) costs one pass rather than one each.
const PASS_DEBOUNCE: Duration = Duration::from_millis(200);
/// The objects a pass is sized for. A pass over more still runs, since a partial graph would
/// make owners look absent, but it logs a warning: memory and pass time grow with the count.
const OBJECTS_PER_PASS_MAX: usize = 100_000;
/// The writes one pass carries out. Any more are decided again by the next pass, which
/// follows after `PASS_DEBOUNCE`.
const ACTIONS_PER_PASS_MAX: usize = 1_000;
/// Requests (owner reads, deletes, patches) in flight at once.
const REQUESTS_IN_FLIGHT_MAX: usize = 8;
const _: () = assert!(PASS_DEBOUNCE.as_millis() < RESYNC_INTERVAL.as_millis());
const _: () = assert!(ACTIONS_PER_PASS_MAX <= OBJECTS_PER_PASS_MAX);
/// The field manager the collector's patches are recorded under.
const FIELD_MANAGER: &str = "shoal-garbage-collector";

/// Runs the garbage collector over `kinds` (those that can be listed, watched and deleted)
/// until the future is dropped.
pub async fn run(client: Client, kinds: &[ServedKind]) {
    let kinds: BTreeMap<GroupKind, ServedKind> =
        kinds.iter().map(|kind| (kind.group_kind.clone(), kind.clone())).collect();
    let cache = Arc::new(Mutex::new(Cache::new(kinds.values())));
    let (changed, changes) = watch::channel(());
    let watches = kinds.values().map(|kind| watch_kind(client.clone(), kind, &cache, &changed));
    let passes = run_passes(&client, &kinds, &cache, changes);
    futures::future::join(futures::future::join_all(watches), passes).await;
}

/// What the collector watches of each object: its metadata, any kind.
type Metadata = PartialObjectMeta<DynamicObject>;

/// Keeps `kind`'s part of the cache up to date, and signals every change. The collector reads
/// only metadata, so only metadata is watched (PartialObjectMetadata): the server sends, and
/// this decodes, no spec or status.
async fn watch_kind(client: Client, kind: &ServedKind, cache: &Mutex<Cache>, changed: &watch::Sender<()>) {
    let api = Api::<Metadata>::all_with(client, &kind.resource);
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let visible = cache.lock().expect("cache lock").apply(&kind.group_kind, event);
                if visible {
                    changed.send_replace(());
                }
            }
            Err(error) => tracing::warn!(kind = %kind.group_kind, %error, "garbage collector watch failed"),
        }
    }
}

async fn run_passes(
    client: &Client,
    kinds: &BTreeMap<GroupKind, ServedKind>,
    cache: &Mutex<Cache>,
    mut changes: watch::Receiver<()>,
) {
    let mut more = false;
    loop {
        if more {
            tokio::time::sleep(PASS_DEBOUNCE).await;
        } else {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::time::sleep(PASS_DEBOUNCE).await;
                }
                () = tokio::time::sleep(RESYNC_INTERVAL) => {}
            }
        }
        changes.borrow_and_update();
        // Until every kind has been listed once there is no graph to decide on; the end of the
        // last initial list signals a change.
        let Some(snapshot) = cache.lock().expect("cache lock").snapshot() else {
            more = false;
            continue;
        };
        if snapshot.objects.len() > OBJECTS_PER_PASS_MAX {
            tracing::warn!(
                objects = snapshot.objects.len(),
                max = OBJECTS_PER_PASS_MAX,
                "garbage collector pass over more objects than it is sized for"
            );
        }
        let mut actions = decide(&snapshot);
        drop(snapshot);
        more = actions.len() > ACTIONS_PER_PASS_MAX;
        if more {
            tracing::info!(
                actions = actions.len(),
                max = ACTIONS_PER_PASS_MAX,
                "garbage collector leaves writes to the next pass"
            );
            actions.truncate(ACTIONS_PER_PASS_MAX);
        }
        execute(client, kinds, actions).await;
    }
}

/// Carries out `actions`, each only if the owners it found absent are absent still.
async fn execute(client: &Client, kinds: &BTreeMap<GroupKind, ServedKind>, actions: Vec<Action>) {
    // The streams run over owned items: closures over borrowed ones make the future not
    // provably `Send` (rust-lang/rust#102211), and the server spawns it.
    let owners: BTreeSet<OwnerKey> = actions.iter().flat_map(Action::absent_owners).cloned().collect();
    let present: HashSet<OwnerKey> = futures::stream::iter(owners)
        .map(|owner| async move {
            let exists = owner_may_exist(client, kinds, &owner).await;
            (owner, exists)
        })
        .buffer_unordered(REQUESTS_IN_FLIGHT_MAX)
        .filter_map(|(owner, exists)| std::future::ready(exists.then_some(owner)))
        .collect()
        .await;
    let confirmed: Vec<Action> = actions
        .into_iter()
        .filter(|action| !action.absent_owners().iter().any(|owner| present.contains(owner)))
        .collect();
    futures::stream::iter(confirmed)
        .map(|action| async move { write(client, kinds, &action).await })
        .buffer_unordered(REQUESTS_IN_FLIGHT_MAX)
        .collect::<()>()
        .await;
}

/// Whether `owner` may exist, by a live read: true unless the server says it does not (or
/// that the name now belongs to an object with another uid).
async fn owner_may_exist(client: &Client, kinds: &BTreeMap<GroupKind, ServedKind>, owner: &OwnerKey) -> bool {
    let kind = kinds.get(&owner.group_kind).expect("an absent owner's kind resolved, so it is served");
    let api = api_for(client, kind, owner.namespace.as_deref());
    match tokio::time::timeout(REQUEST_TIMEOUT, api.get_opt(&owner.name)).await {
        Ok(Ok(None)) => false,
        Ok(Ok(Some(found))) => found.metadata.uid.as_deref() == Some(owner.uid.as_str()),
        Ok(Err(error)) => {
            tracing::warn!(owner = %owner.name, %error, "garbage collector cannot read an owner");
            true
        }
        Err(_elapsed) => true,
    }
}

async fn write(client: &Client, kinds: &BTreeMap<GroupKind, ServedKind>, action: &Action) {
    let target = action.target();
    let kind = kinds.get(&target.group_kind).expect("a target comes from a served kind's cache");
    let api = api_for(client, kind, target.namespace.as_deref());
    let request = async {
        match action {
            Action::Delete { propagation, .. } => {
                api.delete(&target.name, &delete_params(target, *propagation)).await.map(drop)
            }
            Action::Patch { owner_references, finalizers, .. } => {
                let body = merge_patch(target, owner_references.as_deref(), finalizers.as_deref());
                let params =
                    PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
                api.patch(&target.name, &params, &Patch::Merge(&body)).await.map(drop)
            }
        }
    };
    let (kind, namespace, name) =
        (&target.group_kind, target.namespace.as_deref().unwrap_or(""), &target.name);
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(())) => tracing::info!(%kind, namespace, name, %action, "garbage collector wrote"),
        // Gone already: what a delete wanted, and nothing left to patch.
        Ok(Err(error)) if is_status(&error, 404) => {}
        // Changed since the cache saw it: the change is a watch event, hence another pass.
        Ok(Err(error)) if is_status(&error, 409) => {
            tracing::debug!(%kind, namespace, name, "garbage collector lost a race")
        }
        Ok(Err(error)) => tracing::warn!(%kind, namespace, name, %error, "garbage collector write failed"),
        Err(_elapsed) => tracing::warn!(%kind, namespace, name, "garbage collector write timed out"),
    }
}

fn api_for(client: &Client, kind: &ServedKind, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &kind.resource),
        None => Api::all_with(client.clone(), &kind.resource),
    }
}

fn delete_params(target: &Target, propagation: Propagation) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(match propagation {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Orphan => PropagationPolicy::Orphan,
        }),
        preconditions: Some(Preconditions {
            resource_version: Some(target.resource_version.clone()),
            uid: Some(target.uid.clone()),
        }),
        ..DeleteParams::default()
    }
}

/// A JSON merge patch replacing the given lists, conditioned on the resourceVersion read (the
/// server answers 409 when the object has changed since). An empty list is sent as null,
/// which removes the field.
fn merge_patch(
    target: &Target,
    owner_references: Option<&[OwnerReference]>,
    finalizers: Option<&[String]>,
) -> Value {
    let list = |items: Value| if items.as_array().is_some_and(Vec::is_empty) { Value::Null } else { items };
    let mut metadata = serde_json::Map::new();
    metadata.insert("resourceVersion".into(), json!(target.resource_version));
    if let Some(references) = owner_references {
        metadata.insert("ownerReferences".into(), list(json!(references)));
    }
    if let Some(finalizers) = finalizers {
        metadata.insert("finalizers".into(), list(json!(finalizers)));
    }
    json!({ "metadata": metadata })
}

/// The metadata of every object of every watched kind, as the watches last reported it.
struct Cache {
    kinds: BTreeMap<GroupKind, KindCache>,
}

#[derive(Default)]
struct KindCache {
    scope: Option<Scope>,
    /// Whether a list has completed since the watch started: before that the kind's objects
    /// are unknown, and absent owners cannot be told from unlisted ones.
    listed: bool,
    objects: HashMap<(Option<String>, String), Object>,
    /// The objects of a list in progress, swapped in whole when it completes.
    relisting: Option<HashMap<(Option<String>, String), Object>>,
}

impl Cache {
    fn new<'a>(kinds: impl Iterator<Item = &'a ServedKind>) -> Self {
        let kinds = kinds
            .map(|kind| {
                let scope = if kind.namespaced { Scope::Namespaced } else { Scope::Cluster };
                (kind.group_kind.clone(), KindCache { scope: Some(scope), ..KindCache::default() })
            })
            .collect();
        Self { kinds }
    }

    /// Applies one watch event; returns whether the change is visible in snapshots.
    fn apply(&mut self, group_kind: &GroupKind, event: watcher::Event<Metadata>) -> bool {
        let kind = self.kinds.get_mut(group_kind).expect("events come from watched kinds");
        let summarize = |object: &Metadata| object_of(group_kind, &object.metadata);
        match event {
            watcher::Event::Init => {
                kind.relisting = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(object) => {
                if let (Some(relisting), Some(object)) = (kind.relisting.as_mut(), summarize(&object)) {
                    relisting.insert(key(&object), object);
                }
                false
            }
            watcher::Event::InitDone => {
                kind.objects = kind.relisting.take().unwrap_or_default();
                kind.listed = true;
                true
            }
            watcher::Event::Apply(object) => {
                let Some(object) = summarize(&object) else { return false };
                kind.objects.insert(key(&object), object);
                true
            }
            watcher::Event::Delete(object) => {
                let Some(object) = summarize(&object) else { return false };
                kind.objects.remove(&key(&object)).is_some()
            }
        }
    }

    /// The objects that take part in ownership, once every kind has been listed: those with
    /// ownerReferences or being deleted, and the owners they name. Any other object has no
    /// owner to lose and no dependent to wait for, so `decide` has nothing to say about it;
    /// leaving it out keeps a pass proportional to the owned objects rather than to the
    /// cluster (ten thousand bare pods and their events cost a pass nothing).
    fn snapshot(&self) -> Option<Snapshot> {
        if !self.kinds.values().all(|kind| kind.listed) {
            return None;
        }
        let kinds: BTreeMap<GroupKind, Scope> = self
            .kinds
            .iter()
            .map(|(group_kind, kind)| (group_kind.clone(), kind.scope.expect("set when created")))
            .collect();
        let takes_part = |object: &Object| object.deleting || !object.owner_references.is_empty();
        let mut objects: Vec<Object> = self
            .kinds
            .values()
            .flat_map(|kind| kind.objects.values())
            .filter(|o| takes_part(o))
            .cloned()
            .collect();
        // Owners that take no part themselves, each once: found by the dependents' references.
        let mut named: Vec<&Object> = Vec::new();
        let mut seen: HashSet<(&GroupKind, Option<&str>, &str)> = HashSet::new();
        for dependent in &objects {
            for reference in &dependent.owner_references {
                let group_kind = GroupKind::from_api_version(&reference.api_version, &reference.kind);
                let Some((group_kind, kind)) = self.kinds.get_key_value(&group_kind) else { continue };
                let namespace = match kind.scope {
                    Some(Scope::Namespaced) => dependent.namespace.clone(),
                    _ => None,
                };
                let Some(owner) = kind.objects.get(&(namespace, reference.name.clone())) else { continue };
                let key = (group_kind, owner.namespace.as_deref(), owner.name.as_str());
                if !takes_part(owner) && seen.insert(key) {
                    named.push(owner);
                }
            }
        }
        let named: Vec<Object> = named.into_iter().cloned().collect();
        objects.extend(named);
        Some(Snapshot { kinds, objects })
    }
}

fn key(object: &Object) -> (Option<String>, String) {
    (object.namespace.clone(), object.name.clone())
}

/// The collector's view of an object; None for one without a name or uid, which the server
/// never sends.
fn object_of(group_kind: &GroupKind, metadata: &ObjectMeta) -> Option<Object> {
    Some(Object {
        group_kind: group_kind.clone(),
        namespace: metadata.namespace.clone().filter(|namespace| !namespace.is_empty()),
        name: metadata.name.clone()?,
        uid: metadata.uid.clone()?,
        resource_version: metadata.resource_version.clone().unwrap_or_default(),
        owner_references: metadata.owner_references.clone().unwrap_or_default(),
        finalizers: metadata.finalizers.clone().unwrap_or_default(),
        deleting: metadata.deletion_timestamp.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            group_kind: GroupKind::new("apps", "ReplicaSet"),
            namespace: Some("default".into()),
            name: "web-1".into(),
            uid: "uid-rs".into(),
            resource_version: "42".into(),
        }
    }

    // A patch names the resourceVersion it was decided on, replaces only the lists it is
    // given, and sends an emptied list as null so that the field goes away.
    #[test]
    fn merge_patch_is_conditional_and_removes_empty_lists() {
        let reference = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        };
        assert_eq!(
            merge_patch(&target(), Some(&[reference]), None),
            json!({"metadata": {"resourceVersion": "42", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u"}
            ]}})
        );
        assert_eq!(
            merge_patch(&target(), None, Some(&[])),
            json!({"metadata": {"resourceVersion": "42", "finalizers": null}})
        );
    }

    // A delete carries the uid and resourceVersion it was decided on as preconditions.
    #[test]
    fn deletes_are_conditional() {
        let params = delete_params(&target(), Propagation::Foreground);
        let preconditions = params.preconditions.expect("preconditions");
        assert_eq!(preconditions.resource_version.as_deref(), Some("42"));
        assert_eq!(preconditions.uid.as_deref(), Some("uid-rs"));
        assert!(matches!(params.propagation_policy, Some(PropagationPolicy::Foreground)));
    }

    fn served(group: &str, kind: &str, plural: &str, namespaced: bool) -> ServedKind {
        let gvk = kube::api::GroupVersionKind::gvk(group, "v1", kind);
        ServedKind {
            group_kind: GroupKind::new(group, kind),
            resource: kube::api::ApiResource::from_gvk_with_plural(&gvk, plural),
            namespaced,
            verbs: vec!["list".into(), "watch".into(), "delete".into()],
        }
    }

    fn object(name: &str, metadata: Value) -> Metadata {
        let mut object: Metadata = serde_json::from_value(json!({"metadata": metadata})).expect("metadata");
        object.metadata.name = Some(name.into());
        object.metadata.namespace = Some("default".into());
        object.metadata.uid = Some(format!("uid-{name}"));
        object
    }

    // A pass sees the owned objects, those being deleted and the owners named, and nothing
    // of the objects that take no part in ownership however many there are.
    #[test]
    fn a_snapshot_holds_only_the_objects_that_take_part_in_ownership() {
        let (pods, sets) =
            (served("", "Pod", "pods", true), served("apps", "ReplicaSet", "replicasets", true));
        let mut cache = Cache::new([&pods, &sets].into_iter());
        let owned_by = |name: &str| json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": format!("uid-{name}")}]});
        let listed = [
            (&pods, object("bare", json!({}))),
            (&pods, object("owned", owned_by("web"))),
            (&pods, object("orphaned", owned_by("gone"))),
            (&pods, object("leaving", json!({"deletionTimestamp": "2026-11-26T00:00:00Z"}))),
            (&sets, object("web", json!({}))),
            (&sets, object("unrelated", json!({}))),
        ];
        for kind in [&pods, &sets] {
            cache.apply(&kind.group_kind, watcher::Event::Init);
        }
        for (kind, object) in listed {
            cache.apply(&kind.group_kind, watcher::Event::InitApply(object));
        }
        assert!(cache.snapshot().is_none(), "no snapshot before every kind is listed");
        for kind in [&pods, &sets] {
            cache.apply(&kind.group_kind, watcher::Event::InitDone);
        }
        let snapshot = cache.snapshot().expect("every kind listed");
        let mut names: Vec<&str> = snapshot.objects.iter().map(|object| object.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["leaving", "orphaned", "owned", "web"]);
        assert_eq!(snapshot.kinds.len(), 2);
    }
}
