//! The namespace controller's effects: a watch of namespaces, live lists of a terminating
//! namespace's contents, and the writes `decide` asks for.
//!
//! Everything runs inside the future `run` returns, without spawned tasks, so dropping it
//! stops the work at once.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
use kube::discovery::verbs;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::watch;

use super::{Action, Content, ContentObject, Namespace, decide};
use crate::kinds::ServedKind;
use crate::{REQUEST_TIMEOUT, RESYNC_INTERVAL, is_status};

/// How soon a namespace that is not finished yet is looked at again: its contents going away
/// are not events this controller watches.
const REQUEUE_DELAY: Duration = Duration::from_secs(2);
const _: () = assert!(REQUEUE_DELAY.as_millis() < RESYNC_INTERVAL.as_millis());
/// The objects of one kind listed per look at a namespace. Deletion goes by deletecollection,
/// so the list only has to say whether anything is left, and which pods are overdue.
const CONTENT_LIST_LIMIT: u32 = 500;
/// Terminating namespaces worked on at once.
const NAMESPACES_IN_FLIGHT_MAX: usize = 4;
/// Pod force-deletions in flight at once, per namespace.
const FORCE_DELETES_IN_FLIGHT_MAX: usize = 8;

/// Runs namespace deletion, emptying namespaces of the namespaced `kinds` that can be listed,
/// until the future is dropped.
pub async fn run(client: Client, kinds: &[ServedKind]) {
    let content_kinds: Vec<ServedKind> =
        kinds.iter().filter(|kind| kind.namespaced && kind.supports(verbs::LIST)).cloned().collect();
    let terminating = Mutex::new(Terminating::default());
    let (changed, changes) = watch::channel(());
    let watch = watch_namespaces(client.clone(), &terminating, &changed);
    let passes = run_passes(&client, &content_kinds, &terminating, changes);
    futures::future::join(watch, passes).await;
}

/// The namespaces waiting for this controller, as the watch last reported them.
#[derive(Default)]
struct Terminating {
    namespaces: BTreeMap<String, core::Namespace>,
    /// The terminating namespaces of a list in progress, swapped in when it completes.
    relisting: Option<BTreeMap<String, core::Namespace>>,
}

impl Terminating {
    /// Applies one watch event; returns whether the set of terminating namespaces changed.
    fn apply(&mut self, event: watcher::Event<core::Namespace>) -> bool {
        let terminating =
            |namespace: &core::Namespace| summary(namespace).is_some_and(|n| n.is_terminating());
        match event {
            watcher::Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(namespace) => {
                if let Some(relisting) = self.relisting.as_mut()
                    && terminating(&namespace)
                {
                    relisting.insert(namespace.metadata.name.clone().unwrap_or_default(), namespace);
                }
                false
            }
            watcher::Event::InitDone => {
                self.namespaces = self.relisting.take().unwrap_or_default();
                true
            }
            watcher::Event::Apply(namespace) => {
                let name = namespace.metadata.name.clone().unwrap_or_default();
                if terminating(&namespace) {
                    self.namespaces.insert(name, namespace);
                    true
                } else {
                    self.namespaces.remove(&name).is_some()
                }
            }
            watcher::Event::Delete(namespace) => {
                self.namespaces.remove(namespace.metadata.name.as_deref().unwrap_or_default()).is_some()
            }
        }
    }
}

async fn watch_namespaces(client: Client, terminating: &Mutex<Terminating>, changed: &watch::Sender<()>) {
    let api = Api::<core::Namespace>::all(client);
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if terminating.lock().expect("namespaces lock").apply(event) {
                    changed.send_replace(());
                }
            }
            Err(error) => tracing::warn!(%error, "namespace controller watch failed"),
        }
    }
}

async fn run_passes(
    client: &Client,
    kinds: &[ServedKind],
    terminating: &Mutex<Terminating>,
    mut changes: watch::Receiver<()>,
) {
    let mut unfinished = false;
    loop {
        let wait = if unfinished { REQUEUE_DELAY } else { RESYNC_INTERVAL };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
        changes.borrow_and_update();
        let namespaces: Vec<core::Namespace> =
            terminating.lock().expect("namespaces lock").namespaces.values().cloned().collect();
        // Owned items: a closure over borrowed ones makes the future not provably `Send`.
        let finished: Vec<bool> = futures::stream::iter(namespaces)
            .map(|namespace| async move { sync_namespace(client, kinds, &namespace).await })
            .buffer_unordered(NAMESPACES_IN_FLIGHT_MAX)
            .collect()
            .await;
        unfinished = finished.contains(&false);
    }
}

/// Takes one terminating namespace a step further; returns whether it has been finalized.
async fn sync_namespace(client: &Client, kinds: &[ServedKind], namespace_object: &core::Namespace) -> bool {
    let Some(namespace) = summary(namespace_object) else { return true };
    let name = namespace.name.as_str();
    let mut contents = Vec::with_capacity(kinds.len());
    for kind in kinds {
        match list_content(client, kind, name).await {
            Ok(content) => contents.push(content),
            Err(error) => {
                tracing::warn!(namespace = name, kind = %kind.group_kind, %error, "cannot list a namespace's content");
                return false;
            }
        }
    }
    let actions = decide(&namespace, &contents, Timestamp::now());
    let mut finished = false;
    let mut force_deletes = Vec::new();
    for action in &actions {
        match action {
            Action::DeleteCollection { group_kind } => {
                let kind = kinds.iter().find(|kind| kind.group_kind == *group_kind).expect("listed kinds");
                delete_collection(client, kind, name).await;
            }
            Action::ForceDeletePod { name: pod, uid } => force_deletes.push((pod.clone(), uid.clone())),
            Action::Finalize { resource_version, finalizers } => {
                finished = finalize(client, namespace_object, resource_version, finalizers).await;
            }
        }
    }
    let pods = kinds.iter().find(|kind| kind.group_kind.is_pod());
    if let Some(pods) = pods.filter(|_| !force_deletes.is_empty()) {
        futures::stream::iter(force_deletes)
            .map(|(pod, uid)| async move { force_delete(client, pods, name, &pod, &uid).await })
            .buffer_unordered(FORCE_DELETES_IN_FLIGHT_MAX)
            .collect::<()>()
            .await;
    }
    finished
}

#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error("listing timed out")]
    TimedOut,
    #[error("listing failed")]
    Failed(#[source] kube::Error),
}

async fn list_content(client: &Client, kind: &ServedKind, namespace: &str) -> Result<Content, ListError> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &kind.resource);
    let params = ListParams::default().limit(CONTENT_LIST_LIMIT);
    let list = tokio::time::timeout(REQUEST_TIMEOUT, api.list(&params))
        .await
        .map_err(|_elapsed| ListError::TimedOut)?
        .map_err(ListError::Failed)?;
    let more = list.metadata.continue_.as_deref().is_some_and(|token| !token.is_empty());
    let objects = list
        .items
        .into_iter()
        .map(|object| ContentObject {
            name: object.metadata.name.unwrap_or_default(),
            uid: object.metadata.uid.unwrap_or_default(),
            deletion_timestamp: object.metadata.deletion_timestamp.map(|time| time.0),
            finalizers: object.metadata.finalizers.unwrap_or_default(),
        })
        .collect();
    Ok(Content { group_kind: kind.group_kind.clone(), objects, more })
}

async fn delete_collection(client: &Client, kind: &ServedKind, namespace: &str) {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &kind.resource);
    let (params, all) = (DeleteParams::background(), ListParams::default());
    let request = api.delete_collection(&params, &all);
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(_)) => {
            tracing::info!(namespace, kind = %kind.group_kind, "namespace controller deleted a collection")
        }
        Ok(Err(error)) => {
            tracing::warn!(namespace, kind = %kind.group_kind, %error, "deletecollection failed")
        }
        Err(_elapsed) => tracing::warn!(namespace, kind = %kind.group_kind, "deletecollection timed out"),
    }
}

async fn force_delete(client: &Client, pods: &ServedKind, namespace: &str, pod: &str, uid: &str) {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &pods.resource);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid.to_owned()), resource_version: None }),
        ..DeleteParams::background()
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, api.delete(pod, &params)).await {
        Ok(Ok(_)) => tracing::info!(namespace, pod, "namespace controller force-deleted an overdue pod"),
        Ok(Err(error)) if is_status(&error, 404) || is_status(&error, 409) => {}
        Ok(Err(error)) => tracing::warn!(namespace, pod, %error, "force-deleting a pod failed"),
        Err(_elapsed) => tracing::warn!(namespace, pod, "force-deleting a pod timed out"),
    }
}

/// PUTs `namespace/finalize` with `finalizers`; returns whether the server took it.
async fn finalize(
    client: &Client,
    namespace: &core::Namespace,
    resource_version: &str,
    finalizers: &[String],
) -> bool {
    let name = namespace.metadata.name.as_deref().unwrap_or_default();
    let mut body = namespace.clone();
    body.metadata.resource_version = Some(resource_version.to_owned());
    body.spec.get_or_insert_with(Default::default).finalizers = Some(finalizers.to_vec());
    let api = Api::<core::Namespace>::all(client.clone());
    let params = PostParams::default();
    let request = api.replace_subresource("finalize", name, &params, &body);
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(_)) => {
            tracing::info!(namespace = name, "namespace controller finalized a namespace");
            true
        }
        Ok(Err(error)) if is_status(&error, 404) => true,
        // Changed since the watch reported it: the change is an event, hence another pass.
        Ok(Err(error)) if is_status(&error, 409) => false,
        Ok(Err(error)) => {
            tracing::warn!(namespace = name, %error, "finalizing a namespace failed");
            false
        }
        Err(_elapsed) => {
            tracing::warn!(namespace = name, "finalizing a namespace timed out");
            false
        }
    }
}

/// The controller's view of a namespace; None for one without a name.
fn summary(namespace: &core::Namespace) -> Option<Namespace> {
    Some(Namespace {
        name: namespace.metadata.name.clone()?,
        resource_version: namespace.metadata.resource_version.clone().unwrap_or_default(),
        deleting: namespace.metadata.deletion_timestamp.is_some(),
        finalizers: namespace.spec.as_ref().and_then(|spec| spec.finalizers.clone()).unwrap_or_default(),
    })
}
