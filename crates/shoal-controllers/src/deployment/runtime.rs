//! The Deployment controller's effects: watches of Deployments and ReplicaSets into caches,
//! pods from the controllers' shared informer, one reconcile per Deployment key at a time
//! (kube-runtime's `applier`), and the writes `decide` returns, in order, stopping at the first
//! that fails.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use serde_json::json;

use super::template::equal_ignoring_hash;
use super::{Write, decide};
use crate::events::Recorder;
use crate::informer::Update;
use crate::ownership::{controller_of, controller_reference, selector_matches};
use crate::replicaset::runtime::set_owner;
use crate::{REQUEST_TIMEOUT, RESYNC_INTERVAL, is_status};

/// Deployments reconciled at once.
const RECONCILES_IN_FLIGHT_MAX: u16 = 4;
/// How soon a Deployment whose pass failed is looked at again.
const RETRY_DELAY: Duration = Duration::from_secs(2);
const _: () = assert!(RETRY_DELAY.as_millis() < RESYNC_INTERVAL.as_millis());
/// The field manager the controller's writes are recorded under.
const FIELD_MANAGER: &str = "shoal-deployment-controller";
/// The event source.
pub const COMPONENT: &str = "deployment-controller";

type Key = ObjectRef<Deployment>;

struct Context {
    client: Client,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    events: Recorder,
}

/// Why a pass stopped before its last write.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("a write of the deployment controller failed")]
    Write(#[source] kube::Error),
    #[error("a write of the deployment controller timed out")]
    TimedOut,
    #[error("the new replica set's name is taken by another template")]
    Collision,
    #[error("a write lost a race and waits for the next pass")]
    Conflict,
}

/// Runs the Deployment controller until the future is dropped, over the shared cache of pods
/// and its updates.
pub async fn run(
    client: Client,
    events: Recorder,
    pods: Store<Pod>,
    pod_updates: impl Stream<Item = Update<Pod>> + Send,
) {
    let (deployments, deployment_writer) = reflector::store::<Deployment>();
    let (replica_sets, replica_set_writer) = reflector::store::<ReplicaSet>();
    let context = Arc::new(Context {
        client: client.clone(),
        replica_sets: replica_sets.clone(),
        pods: pods.clone(),
        events,
    });
    let deployment_events = reflector::reflector(
        deployment_writer,
        watcher(Api::<Deployment>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .applied_objects()
    .map_ok(|deployment| ObjectRef::from_obj(&deployment));
    let replica_set_events = {
        let deployments = deployments.clone();
        reflector::reflector(
            replica_set_writer,
            watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .touched_objects()
        .map_ok(move |replica_set| {
            futures::stream::iter(owners_of(&deployments, &replica_set).into_iter().map(Ok))
        })
        .try_flatten()
    };
    // Recreate waits for the old pods to be gone, so a pod's deletion concerns its Deployment.
    let pod_events = {
        let replica_sets = replica_sets.clone();
        pod_updates
            .map(move |update| {
                let keys: Vec<Key> = match update.event {
                    watcher::Event::Delete(pod) => {
                        deployment_of_pod(&replica_sets, &pod).into_iter().collect()
                    }
                    _ => Vec::new(),
                };
                futures::stream::iter(keys.into_iter().map(Ok::<_, watcher::Error>))
            })
            .flatten()
    };
    // No resync stream: every pass asks to be run again within RESYNC_INTERVAL.
    let queue =
        futures::stream::select(futures::stream::select(deployment_events, replica_set_events), pod_events);
    let config = controller::Config::default().concurrency(RECONCILES_IN_FLIGHT_MAX);
    controller::applier(
        |deployment, context| Box::pin(reconcile(deployment, context)),
        |_deployment, error, _context| {
            tracing::debug!(%error, "deployment pass stopped early");
            Action::requeue(RETRY_DELAY)
        },
        context,
        deployments,
        queue,
        config,
    )
    .for_each(|result| async move {
        match result {
            Ok(_)
            | Err(controller::Error::ObjectNotFound(_))
            | Err(controller::Error::ReconcilerFailed(Error::Conflict, _)) => {}
            Err(error) => tracing::warn!(%error, "deployment controller"),
        }
    })
    .await;
}

/// The Deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// Deployment of its namespace whose selector matches it.
fn owners_of(deployments: &Store<Deployment>, replica_set: &ReplicaSet) -> Vec<Key> {
    let namespace = replica_set.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&replica_set.metadata) {
        return if owner.kind == "Deployment" {
            vec![ObjectRef::new(&owner.name).within(&namespace)]
        } else {
            Vec::new()
        };
    }
    deployments
        .state()
        .iter()
        .filter(|deployment| deployment.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|deployment| {
            deployment
                .spec
                .as_ref()
                .is_some_and(|spec| selector_matches(&spec.selector, replica_set.labels()))
        })
        .map(|deployment| ObjectRef::from_obj(&**deployment))
        .collect()
}

/// The Deployment that owns the ReplicaSet that owns `pod`.
fn deployment_of_pod(replica_sets: &Store<ReplicaSet>, pod: &Pod) -> Option<Key> {
    let namespace = pod.namespace().unwrap_or_default();
    let owner = controller_of(&pod.metadata).filter(|owner| owner.kind == "ReplicaSet")?;
    let replica_set = replica_sets.get(&ObjectRef::new(&owner.name).within(&namespace))?;
    let deployment = controller_of(&replica_set.metadata).filter(|owner| owner.kind == "Deployment")?;
    Some(ObjectRef::new(&deployment.name).within(&namespace))
}

async fn reconcile(deployment: Arc<Deployment>, context: Arc<Context>) -> Result<Action, Error> {
    // Before the first lists complete every Deployment would look new. The writers live as
    // long as the controller, so this only waits.
    let _ = context.replica_sets.wait_until_ready().await;
    let _ = context.pods.wait_until_ready().await;
    let namespace = deployment.namespace().unwrap_or_default();
    let in_namespace = |namespace_of: Option<&str>| namespace_of == Some(namespace.as_str());
    let replica_sets: Vec<ReplicaSet> = context
        .replica_sets
        .state()
        .iter()
        .filter(|rs| in_namespace(rs.metadata.namespace.as_deref()))
        .map(|rs| (**rs).clone())
        .collect();
    let recreate = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.strategy.as_ref())
        .and_then(|strategy| strategy.type_.as_deref())
        == Some("Recreate");
    // Only Recreate looks at pods.
    let pods: Vec<Pod> = if recreate {
        context
            .pods
            .state()
            .iter()
            .filter(|pod| in_namespace(pod.metadata.namespace.as_deref()))
            .map(|p| (**p).clone())
            .collect()
    } else {
        Vec::new()
    };
    let decision = decide(&deployment, &replica_sets, &pods, Timestamp::now());
    let mut writer = Writer { context: &context, deployment: (*deployment).clone() };
    for write in decision.writes {
        writer.write(write).await.map_err(|error| match error {
            Error::Write(error) if is_status(&error, 409) => Error::Conflict,
            error => error,
        })?;
    }
    Ok(Action::requeue(decision.requeue_after.map_or(RESYNC_INTERVAL, |wait| wait.min(RESYNC_INTERVAL))))
}

/// Carries out one pass's writes; the Deployment's resourceVersion moves on with each write
/// of its own, so that the next is conditioned on what this pass wrote.
struct Writer<'a> {
    context: &'a Context,
    deployment: Deployment,
}

impl Writer<'_> {
    async fn write(&mut self, write: Write) -> Result<(), Error> {
        let namespace = self.deployment.namespace().unwrap_or_default();
        let client = self.context.client.clone();
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
        let deployments: Api<Deployment> = Api::namespaced(client, &namespace);
        match write {
            Write::Adopt(replica_set) => {
                let live = bounded(deployments.get_opt(&self.deployment.name_any())).await?;
                let adoptable = live.is_some_and(|live| {
                    live.metadata.uid == self.deployment.metadata.uid
                        && live.metadata.deletion_timestamp.is_none()
                });
                if adoptable {
                    let reference = controller_reference("apps/v1", "Deployment", &self.deployment.metadata);
                    set_owner(&replica_sets, &replica_set, Some(reference)).await;
                }
            }
            Write::Release(replica_set) => set_owner(&replica_sets, &replica_set, None).await,
            Write::Create { replica_set, event } => self.create(&replica_sets, replica_set, event).await?,
            Write::Update { replica_set, event } => {
                let params =
                    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
                bounded(replica_sets.replace(&replica_set.name_any(), &params, &replica_set)).await?;
                if let Some(message) = event {
                    self.context.events.normal(&self.deployment, "ScalingReplicaSet", message);
                }
            }
            Write::Delete(replica_set) => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: replica_set.metadata.uid.clone(),
                        resource_version: replica_set.metadata.resource_version.clone(),
                    }),
                    ..DeleteParams::background()
                };
                match bounded(replica_sets.delete(&replica_set.name_any(), &params)).await {
                    Ok(_) => tracing::info!(replica_set = replica_set.name_any(), "deleted an old revision"),
                    Err(Error::Write(error)) if is_status(&error, 404) => {}
                    Err(error) => return Err(error),
                }
            }
            Write::Revision(revision) => {
                let body = json!({ "metadata": {
                    "resourceVersion": self.deployment.metadata.resource_version,
                    "annotations": { super::REVISION_ANNOTATION: revision },
                }});
                let params =
                    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
                let patch = Patch::Merge(&body);
                let written =
                    bounded(deployments.patch(&self.deployment.name_any(), &params, &patch)).await?;
                self.deployment.metadata.resource_version = written.metadata.resource_version;
            }
            Write::Status(status) => self.write_status(&deployments, status).await?,
        }
        Ok(())
    }

    async fn create(
        &mut self,
        replica_sets: &Api<ReplicaSet>,
        replica_set: ReplicaSet,
        event: Option<String>,
    ) -> Result<(), Error> {
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
        match bounded(replica_sets.create(&params, &replica_set)).await {
            Ok(_) => {
                if let Some(message) = event {
                    self.context.events.normal(&self.deployment, "ScalingReplicaSet", message);
                }
                Ok(())
            }
            Err(Error::Write(error)) if is_status(&error, 409) => {
                // A stale cache, or a hash collision: the existing one is this template's only
                // if this Deployment controls it and the templates agree.
                let existing = bounded(replica_sets.get_opt(&replica_set.name_any())).await?;
                let template =
                    self.deployment.spec.as_ref().map(|spec| spec.template.clone()).unwrap_or_default();
                let ours = existing.is_some_and(|existing| {
                    controller_of(&existing.metadata)
                        .is_some_and(|owner| Some(&owner.uid) == self.deployment.metadata.uid.as_ref())
                        && existing
                            .spec
                            .and_then(|spec| spec.template)
                            .is_some_and(|t| equal_ignoring_hash(&t, &template))
                });
                if ours {
                    return Ok(());
                }
                let deployments: Api<Deployment> = Api::namespaced(
                    self.context.client.clone(),
                    &self.deployment.namespace().unwrap_or_default(),
                );
                let mut status = self.deployment.status.clone().unwrap_or_default();
                status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
                self.write_status(&deployments, status).await?;
                Err(Error::Collision)
            }
            Err(error) => {
                let name = replica_set.name_any();
                self.context.events.warning(
                    &self.deployment,
                    "FailedCreate",
                    format!("Failed to create new replica set {name:?}: {error}"),
                );
                Err(error)
            }
        }
    }

    async fn write_status(
        &mut self,
        deployments: &Api<Deployment>,
        status: DeploymentStatus,
    ) -> Result<(), Error> {
        let mut body = self.deployment.clone();
        body.status = Some(status);
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
        let written =
            bounded(deployments.replace_status(&self.deployment.name_any(), &params, &body)).await?;
        self.deployment.metadata.resource_version = written.metadata.resource_version;
        self.deployment.status = written.status;
        Ok(())
    }
}

/// A request with the controllers' timeout; a 409 (a lost race) is told apart, since the
/// change that caused it brings another pass.
async fn bounded<T>(request: impl std::future::Future<Output = Result<T, kube::Error>>) -> Result<T, Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Error::Write(error)),
        Err(_elapsed) => Err(Error::TimedOut),
    }
}
