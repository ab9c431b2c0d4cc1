//! The ReplicaSet controller's effects: a watch of ReplicaSets into a cache and the pods of
//! the shared informer, one reconcile per ReplicaSet key at a time (kube-runtime's
//! `applier`), and the pod and status writes `decide` and `status` ask for.
//!
//! Pods come from the controllers' shared informer (`crate::informer`), which says of each
//! event whether its cache had the pod before: a pod it did not have yet is a create observed,
//! one being deleted or gone is a delete observed (`Expectations`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use serde_json::json;

use super::{Expectations, Plan, PodRef, ReplicaFailure, decide, slow_start_batches, status};
use crate::events::Recorder;
use crate::informer::Update;
use crate::ownership::{controller_of, controller_reference, selector_matches};
use crate::{REQUEST_TIMEOUT, RESYNC_INTERVAL, is_status};

/// ReplicaSets reconciled at once.
const RECONCILES_IN_FLIGHT_MAX: u16 = 8;
/// Pod writes (adoptions, releases, deletes) in flight at once for one ReplicaSet.
const POD_WRITES_IN_FLIGHT_MAX: usize = 16;
/// How soon a ReplicaSet whose pass failed is looked at again.
const RETRY_DELAY: Duration = Duration::from_secs(2);
const _: () = assert!(RETRY_DELAY.as_millis() < RESYNC_INTERVAL.as_millis());
/// The field manager the controller's writes are recorded under.
const FIELD_MANAGER: &str = "shoal-replicaset-controller";
/// The event source.
pub const COMPONENT: &str = "replicaset-controller";

type Key = ObjectRef<ReplicaSet>;

struct Context {
    client: Client,
    pods: Store<Pod>,
    /// Per ReplicaSet, creates and deletes not yet seen; an entry goes with its ReplicaSet.
    expectations: Mutex<HashMap<Key, Expectations>>,
    events: Recorder,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("writing the status of a replica set failed")]
    Status(#[source] kube::Error),
    #[error("writing the status of a replica set timed out")]
    StatusTimedOut,
}

/// Runs the ReplicaSet controller until the future is dropped, over the shared cache of pods
/// and its updates.
pub async fn run(
    client: Client,
    events: Recorder,
    pods: Store<Pod>,
    pod_updates: impl Stream<Item = Update<Pod>> + Send,
) {
    let (replica_sets, replica_set_writer) = reflector::store::<ReplicaSet>();
    let context =
        Arc::new(Context { client: client.clone(), pods, expectations: Mutex::new(HashMap::new()), events });
    let replica_set_events = {
        let context = context.clone();
        reflector::reflector(
            replica_set_writer,
            watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .map_ok(move |event| {
            if let watcher::Event::Delete(replica_set) = &event {
                context
                    .expectations
                    .lock()
                    .expect("expectations lock")
                    .remove(&ObjectRef::from_obj(replica_set));
            }
            let keys: Vec<Key> = match event {
                watcher::Event::Apply(replica_set) | watcher::Event::InitApply(replica_set) => {
                    vec![ObjectRef::from_obj(&replica_set)]
                }
                _ => Vec::new(),
            };
            futures::stream::iter(keys.into_iter().map(Ok::<_, watcher::Error>))
        })
        .try_flatten()
    };
    let pod_events = {
        let context = context.clone();
        let replica_sets = replica_sets.clone();
        pod_updates
            .map(move |update| {
                let keys = observe_pod_update(&context, &replica_sets, &update);
                futures::stream::iter(keys.into_iter().map(Ok::<_, watcher::Error>))
            })
            .flatten()
    };
    // No resync stream: every pass asks to be run again within RESYNC_INTERVAL.
    let queue = futures::stream::select(replica_set_events, pod_events);
    let config = controller::Config::default().concurrency(RECONCILES_IN_FLIGHT_MAX);
    controller::applier(
        |replica_set, context| Box::pin(reconcile(replica_set, context)),
        |_replica_set, _error, _context| Action::requeue(RETRY_DELAY),
        context,
        replica_sets,
        queue,
        config,
    )
    .for_each(|result| async move {
        match result {
            Ok(_) | Err(controller::Error::ObjectNotFound(_)) => {}
            Err(error) => tracing::warn!(%error, "replica set controller"),
        }
    })
    .await;
}

/// Records what a pod update shows of expected creates and deletes, and returns the
/// ReplicaSets to look at: the pod's controller, or for an orphan every ReplicaSet of its
/// namespace whose selector matches it.
fn observe_pod_update(context: &Context, replica_sets: &Store<ReplicaSet>, update: &Update<Pod>) -> Vec<Key> {
    let (pod, gone) = match &update.event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => (pod, false),
        watcher::Event::Delete(pod) => (pod, true),
        watcher::Event::Init | watcher::Event::InitDone => return Vec::new(),
    };
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata).filter(|owner| owner.kind == "ReplicaSet") {
        let key = ObjectRef::new(&owner.name).within(&namespace);
        let mut expectations = context.expectations.lock().expect("expectations lock");
        if let Some(expected) = expectations.get_mut(&key) {
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            if gone || pod.metadata.deletion_timestamp.is_some() {
                expected.deletion_observed(uid);
            }
            if !gone && !update.was_cached {
                expected.creation_observed();
            }
        }
        return vec![key];
    }
    let labels = pod.labels();
    replica_sets
        .state()
        .iter()
        .filter(|replica_set| replica_set.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|replica_set| {
            replica_set.spec.as_ref().is_some_and(|spec| selector_matches(&spec.selector, labels))
        })
        .map(|replica_set| ObjectRef::from_obj(&**replica_set))
        .collect()
}

async fn reconcile(replica_set: Arc<ReplicaSet>, context: Arc<Context>) -> Result<Action, Error> {
    // Before the first pod list completes every ReplicaSet would look empty and create pods.
    // The writer lives as long as the controller, so this only waits.
    let _ = context.pods.wait_until_ready().await;
    let key = ObjectRef::from_obj(&*replica_set);
    let namespace = replica_set.namespace().unwrap_or_default();
    let now = Timestamp::now();
    let pods: Vec<Pod> = context
        .pods
        .state()
        .iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .map(|pod| (**pod).clone())
        .collect();
    let satisfied = {
        let expectations = context.expectations.lock().expect("expectations lock");
        expectations.get(&key).is_none_or(|expected| expected.satisfied(now))
    };
    let plan = decide(&replica_set, &pods, satisfied);
    let failure = execute(&context, &replica_set, &pods, &key, &plan).await;
    let (status, available_in) = status(&replica_set, &pods, failure.as_ref(), now);
    if replica_set.status.as_ref() != Some(&status) {
        write_status(&context.client, &replica_set, status).await?;
    }
    Ok(Action::requeue(available_in.map_or(RESYNC_INTERVAL, |wait| wait.min(RESYNC_INTERVAL))))
}

/// Carries out `plan`; returns what failed of its creates and deletes.
async fn execute(
    context: &Context,
    replica_set: &ReplicaSet,
    pods: &[Pod],
    key: &Key,
    plan: &Plan,
) -> Option<ReplicaFailure> {
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &replica_set.namespace().unwrap_or_default());
    let cached = |wanted: &[PodRef]| -> Vec<Pod> {
        let uids: BTreeSet<&str> = wanted.iter().map(|pod| pod.uid.as_str()).collect();
        pods.iter()
            .filter(|pod| uids.contains(pod.metadata.uid.as_deref().unwrap_or_default()))
            .cloned()
            .collect()
    };
    let mut claims: Vec<(Pod, Option<OwnerReference>)> = Vec::new();
    if !plan.adopt.is_empty() && still_adopting(&context.client, replica_set).await {
        let reference = controller_reference("apps/v1", "ReplicaSet", &replica_set.metadata);
        claims.extend(cached(&plan.adopt).into_iter().map(|pod| (pod, Some(reference.clone()))));
    }
    claims.extend(cached(&plan.release).into_iter().map(|pod| (pod, None)));
    // Owned items: closures over borrowed ones make the future not provably `Send`.
    futures::stream::iter(claims)
        .map(|(pod, reference)| {
            let api = api.clone();
            async move { set_owner(&api, &pod, reference).await }
        })
        .buffer_unordered(POD_WRITES_IN_FLIGHT_MAX)
        .collect::<()>()
        .await;
    if plan.create > 0 {
        return create_pods(context, &api, replica_set, key, plan.create).await;
    }
    if !plan.delete.is_empty() {
        return delete_pods(context, &api, replica_set, key, &plan.delete).await;
    }
    None
}

/// Whether the ReplicaSet still exists with the same uid and is not being deleted, by a live
/// read, as upstream checks before adopting: a cache may still show one that is gone.
async fn still_adopting(client: &Client, replica_set: &ReplicaSet) -> bool {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &replica_set.namespace().unwrap_or_default());
    match tokio::time::timeout(REQUEST_TIMEOUT, api.get_opt(&replica_set.name_any())).await {
        Ok(Ok(Some(live))) => {
            live.metadata.uid == replica_set.metadata.uid && live.metadata.deletion_timestamp.is_none()
        }
        _ => false,
    }
}

async fn create_pods(
    context: &Context,
    api: &Api<Pod>,
    replica_set: &ReplicaSet,
    key: &Key,
    count: usize,
) -> Option<ReplicaFailure> {
    context
        .expectations
        .lock()
        .expect("expectations lock")
        .insert(key.clone(), Expectations::new(count, BTreeSet::new(), Timestamp::now()));
    let pod = pod_from_template(replica_set);
    let mut attempted = 0;
    for batch in slow_start_batches(count) {
        attempted += batch;
        let results = futures::future::join_all((0..batch).map(|_| async {
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
            let request = api.create(&params, &pod);
            match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
                Ok(Ok(created)) => Ok(created.name_any()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_elapsed) => Err("the request timed out".to_owned()),
            }
        }))
        .await;
        let mut failed = None;
        let mut failures = 0;
        for result in results {
            match result {
                Ok(name) => {
                    context.events.normal(replica_set, "SuccessfulCreate", format!("Created pod: {name}"))
                }
                Err(message) => {
                    failures += 1;
                    context.events.warning(replica_set, "FailedCreate", format!("Error creating: {message}"));
                    failed = Some(message);
                }
            }
        }
        if let Some(message) = failed {
            // The failed creates and the batches never tried will not be observed.
            let unseen = failures + (count - attempted);
            if let Some(expected) = context.expectations.lock().expect("expectations lock").get_mut(key) {
                expected.creations_lowered(unseen);
            }
            return Some(ReplicaFailure { reason: "FailedCreate".into(), message });
        }
    }
    None
}

async fn delete_pods(
    context: &Context,
    api: &Api<Pod>,
    replica_set: &ReplicaSet,
    key: &Key,
    pods: &[PodRef],
) -> Option<ReplicaFailure> {
    let uids = pods.iter().map(|pod| pod.uid.clone()).collect();
    context
        .expectations
        .lock()
        .expect("expectations lock")
        .insert(key.clone(), Expectations::new(0, uids, Timestamp::now()));
    let failures: Vec<(String, String)> = futures::stream::iter(pods.to_vec())
        .map(|pod| async move {
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: Some(pod.uid.clone()), resource_version: None }),
                ..DeleteParams::default()
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, api.delete(&pod.name, &params)).await {
                Ok(Ok(_)) => {
                    context.events.normal(
                        replica_set,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", pod.name),
                    );
                    None
                }
                // Gone already: what the delete wanted.
                Ok(Err(error)) if is_status(&error, 404) => None,
                Ok(Err(error)) => Some((pod.uid, error.to_string())),
                Err(_elapsed) => Some((pod.uid, "the request timed out".to_owned())),
            }
        })
        .buffer_unordered(POD_WRITES_IN_FLIGHT_MAX)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let mut expectations = context.expectations.lock().expect("expectations lock");
    let expected = expectations.get_mut(key);
    let mut failure = None;
    if let Some(expected) = expected {
        for (uid, message) in failures {
            expected.deletion_observed(&uid);
            context.events.warning(replica_set, "FailedDelete", format!("Error deleting: {message}"));
            failure = Some(ReplicaFailure { reason: "FailedDelete".into(), message });
        }
    }
    failure
}

/// Sets (or, with None, removes) the controller reference of `object` (as cached),
/// conditioned on the resourceVersion the decision saw. Other owner references stay.
pub(crate) async fn set_owner<K>(api: &Api<K>, object: &K, reference: Option<OwnerReference>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.name_any();
    let pod = object;
    let mut references: Vec<OwnerReference> = pod
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|owner| owner.controller != Some(true))
        .cloned()
        .collect();
    references.extend(reference);
    let references = if references.is_empty() { serde_json::Value::Null } else { json!(references) };
    let body = json!({ "metadata": {
        "resourceVersion": pod.meta().resource_version, "uid": pod.meta().uid, "ownerReferences": references,
    }});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    match tokio::time::timeout(REQUEST_TIMEOUT, api.patch(&name, &params, &Patch::Merge(&body))).await {
        Ok(Ok(_)) => tracing::info!(name, "claimed or released an object"),
        // Gone, or changed since the decision: the change is an event, hence another pass.
        Ok(Err(error)) if is_status(&error, 404) || is_status(&error, 409) => {}
        Ok(Err(error)) => tracing::warn!(name, %error, "cannot claim or release an object"),
        Err(_elapsed) => tracing::warn!(name, "claiming or releasing an object timed out"),
    }
}

/// A pod as upstream's `GetPodFromTemplate` makes it: the template's labels, annotations and
/// spec, a generated name after the ReplicaSet's, and the controller reference.
fn pod_from_template(replica_set: &ReplicaSet) -> Pod {
    let template: PodTemplateSpec =
        replica_set.spec.as_ref().and_then(|spec| spec.template.clone()).unwrap_or_default();
    let template_metadata = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", replica_set.name_any())),
            labels: template_metadata.labels,
            annotations: template_metadata.annotations,
            finalizers: template_metadata.finalizers,
            owner_references: Some(vec![controller_reference(
                "apps/v1",
                "ReplicaSet",
                &replica_set.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// PUTs `replicasets/status`, conditioned on the resourceVersion the pass saw; a 409 leaves
/// it to the pass the change triggers.
async fn write_status(
    client: &Client,
    replica_set: &ReplicaSet,
    status: k8s_openapi::api::apps::v1::ReplicaSetStatus,
) -> Result<(), Error> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &replica_set.namespace().unwrap_or_default());
    let mut body = replica_set.clone();
    body.status = Some(status);
    body.metadata.managed_fields = None;
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    let name = replica_set.name_any();
    let request = api.replace_status(&name, &params, &body);
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if is_status(&error, 404) || is_status(&error, 409) => Ok(()),
        Ok(Err(error)) => Err(Error::Status(error)),
        Err(_elapsed) => Err(Error::StatusTimedOut),
    }
}
