//! The endpoints controllers' effects: watch caches of Services, Endpoints, EndpointSlices
//! and Nodes (pods come from the controllers' shared informer), passes over the namespaces
//! that changed (debounced, and over everything on a resync timer), and the writes `decide`
//! asks for.
//!
//! A slice this controller has just written may not be in its cache yet; deciding on that
//! Service before the cache catches up would create a second slice for the same endpoints.
//! So the runtime remembers what each write returned (upstream's `EndpointSliceTracker`) and
//! skips a Service whose slices in the cache are older, until the watch delivers them or
//! [`EXPECTATION_TIMEOUT`] passes.
//!
//! Everything runs inside the future `run` returns, without spawned tasks.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Resource, ResourceExt as _};
use tokio::sync::watch;

use super::{
    Action, CONTROLLER_NAME, FIELD_MANAGER, MANAGED_BY_LABEL, Observed, SERVICE_NAME_LABEL, Target,
    TriggerTimes, decide, is_managed, orphaned_endpoints,
};
use crate::informer::Update;
use crate::{REQUEST_TIMEOUT, RESYNC_INTERVAL, drop_managed_fields, is_status};

/// How long a pass waits after a change for more, so that a burst of pod events costs one
/// pass.
const PASS_DEBOUNCE: Duration = Duration::from_millis(100);
const _: () = assert!(PASS_DEBOUNCE.as_millis() < RESYNC_INTERVAL.as_millis());
/// Writes in flight at once.
const WRITES_IN_FLIGHT_MAX: usize = 8;
/// The writes one pass carries out; the rest are decided again by the next pass.
const ACTIONS_PER_PASS_MAX: usize = 1_000;
/// How long a slice write is waited for in the cache before the Service is decided on
/// anyway (the slice may have been changed or deleted by someone else meanwhile).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(10);
/// The node label with the node's zone.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Runs the endpoints and endpointslice controllers until the future is dropped, over the
/// shared cache of pods and its updates.
pub async fn run(client: Client, pods: Store<Pod>, pod_updates: impl Stream<Item = Update<Pod>>) {
    let (services, services_writer) = reflector::store::<Service>();
    let (endpoints, endpoints_writer) = reflector::store::<Endpoints>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let state = Mutex::new(State::default());
    let (changed, changes) = watch::channel(());
    let watches = futures::future::join5(
        watch_kind(events(&client).modify(drop_managed_fields), services_writer, &state, &changed),
        watch_pods(pod_updates, &state, &changed),
        // This controller tells its own Endpoints and slices by their managedFields.
        watch_kind(events(&client), endpoints_writer, &state, &changed),
        watch_kind(events(&client), slices_writer, &state, &changed),
        watch_nodes(Api::all(client.clone()), &state, &changed),
    );
    let caches = Caches { services, pods, endpoints, slices };
    let passes = run_passes(&client, &caches, &state, changes);
    futures::future::join(watches, passes).await;
}

struct Caches {
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
}

/// What the watches and the passes share.
#[derive(Default)]
struct State {
    /// Namespaces to look at in the next pass.
    dirty: BTreeSet<String>,
    /// Every namespace is to be looked at (a relist, a node change, the resync).
    all_dirty: bool,
    /// The zone of every node, and whether the nodes have been listed.
    nodes: BTreeMap<String, Option<String>>,
    nodes_listed: bool,
    nodes_relisting: Option<BTreeMap<String, Option<String>>>,
}

impl State {
    fn mark(&mut self, namespace: Option<String>) {
        match namespace {
            Some(namespace) => {
                self.dirty.insert(namespace);
            }
            None => self.all_dirty = true,
        }
    }
}

/// The watch of every object of kind `K`, retried with back-off.
fn events<K>(client: &Client) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + use<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    watcher(Api::all(client.clone()), watcher::Config::default()).default_backoff()
}

/// Keeps one kind's cache (through the reflector) from `events` and marks the namespaces that
/// change.
async fn watch_kind<K>(
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>>,
    writer: reflector::store::Writer<K>,
    state: &Mutex<State>,
    changed: &watch::Sender<()>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = reflector::reflector(writer, events);
    let mut events = std::pin::pin!(stream);
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => mark_changed::<K>(&event, state, changed),
            Err(error) => tracing::warn!(%kind, %error, "endpoints controller watch failed"),
        }
    }
}

/// Marks the namespaces whose pods change, from the shared informer's updates.
async fn watch_pods(
    updates: impl Stream<Item = Update<Pod>>,
    state: &Mutex<State>,
    changed: &watch::Sender<()>,
) {
    let mut updates = std::pin::pin!(updates);
    while let Some(update) = updates.next().await {
        mark_changed::<Pod>(&update.event, state, changed);
    }
}

/// Marks the namespace `event` changes (every namespace after a relist) for the next pass.
fn mark_changed<K: Resource>(
    event: &watcher::Event<impl Borrow<K>>,
    state: &Mutex<State>,
    changed: &watch::Sender<()>,
) {
    let namespace = match event {
        watcher::Event::Apply(object) | watcher::Event::Delete(object) => object.borrow().namespace(),
        watcher::Event::InitDone => None,
        watcher::Event::Init | watcher::Event::InitApply(_) => return,
    };
    state.lock().expect("state lock").mark(namespace);
    changed.send_replace(());
}

/// Keeps the nodes' zones; a node appearing, going or changing zone affects every Service.
async fn watch_nodes(api: Api<Node>, state: &Mutex<State>, changed: &watch::Sender<()>) {
    let zone = |node: &Node| node.labels().get(ZONE_LABEL).cloned();
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let mut state = state.lock().expect("state lock");
        let changes = match event {
            Ok(watcher::Event::Init) => {
                state.nodes_relisting = Some(BTreeMap::new());
                false
            }
            Ok(watcher::Event::InitApply(node)) => {
                if let Some(relisting) = state.nodes_relisting.as_mut() {
                    relisting.insert(node.name_any(), zone(&node));
                }
                false
            }
            Ok(watcher::Event::InitDone) => {
                state.nodes = state.nodes_relisting.take().unwrap_or_default();
                state.nodes_listed = true;
                true
            }
            Ok(watcher::Event::Apply(node)) => {
                state.nodes.insert(node.name_any(), zone(&node)) != Some(zone(&node))
            }
            Ok(watcher::Event::Delete(node)) => state.nodes.remove(&node.name_any()).is_some(),
            Err(error) => {
                tracing::warn!(%error, "endpoints controller node watch failed");
                false
            }
        };
        if changes {
            state.all_dirty = true;
            drop(state);
            changed.send_replace(());
        }
    }
}

/// A write whose result the slice cache has to show before its Service is decided on again.
#[derive(Debug)]
enum Expectation {
    /// The slice at this resourceVersion or a later one.
    Present { name: String, resource_version: u64 },
    /// The slice gone.
    Absent { name: String },
}

type ServiceKey = (String, String);

async fn run_passes(
    client: &Client,
    caches: &Caches,
    state: &Mutex<State>,
    mut changes: watch::Receiver<()>,
) {
    for ready in [
        caches.services.wait_until_ready().await,
        caches.pods.wait_until_ready().await,
        caches.endpoints.wait_until_ready().await,
        caches.slices.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    let mut trigger_times = TriggerTimes::default();
    let mut expectations: HashMap<ServiceKey, (Instant, Vec<Expectation>)> = HashMap::new();
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(RESYNC_INTERVAL) => state.lock().expect("state lock").all_dirty = true,
            }
        }
        tokio::time::sleep(PASS_DEBOUNCE).await;
        changes.borrow_and_update();
        let (namespaces, nodes) = {
            let mut state = state.lock().expect("state lock");
            if !state.nodes_listed {
                more = false;
                continue;
            }
            let all = std::mem::take(&mut state.all_dirty);
            let dirty = std::mem::take(&mut state.dirty);
            (if all { None } else { Some(dirty) }, state.nodes.clone())
        };
        let view = View::new(caches, namespaces.as_ref());
        expectations.retain(|key, (since, pending)| {
            if view.looks_at(&key.0) {
                pending.retain(|expectation| !view.satisfies(key, expectation));
            }
            !pending.is_empty() && since.elapsed() < EXPECTATION_TIMEOUT
        });
        let mut actions = Vec::new();
        for service in &view.services {
            let key = (service.namespace().unwrap_or_default(), service.name_any());
            if !is_managed(service) || expectations.contains_key(&key) {
                continue;
            }
            let pods = view.pods_of(&key.0);
            let selected: Vec<&Pod> =
                pods.iter().copied().filter(|pod| super::selects(service, pod)).collect();
            let observed = Observed {
                service,
                pods,
                nodes: &nodes,
                endpoints: view.endpoints.get(&key).map(Arc::as_ref),
                slices: view
                    .slices
                    .get(&key)
                    .map(|slices| slices.iter().map(Arc::as_ref).collect())
                    .unwrap_or_default(),
                trigger_time: trigger_times.compute(service, &selected),
            };
            actions.extend(decide(&observed).into_iter().map(|action| (key.clone(), action)));
        }
        let services: Vec<&Service> = view.services.iter().map(Arc::as_ref).collect();
        let endpoints: Vec<&Endpoints> = view.endpoints.values().map(Arc::as_ref).collect();
        actions.extend(orphaned_endpoints(&services, &endpoints).into_iter().map(|action| {
            let Action::DeleteEndpoints(target) = &action else { unreachable!("only deletes") };
            ((target.namespace.clone(), target.name.clone()), action)
        }));
        if namespaces.is_none() {
            let existing: HashSet<ServiceKey> =
                view.services.iter().map(|s| (s.namespace().unwrap_or_default(), s.name_any())).collect();
            trigger_times.retain(&existing);
        }
        drop(view);
        more = actions.len() > ACTIONS_PER_PASS_MAX;
        if more {
            // The rest is decided again by the next pass, which looks at everything.
            actions.truncate(ACTIONS_PER_PASS_MAX);
            state.lock().expect("state lock").all_dirty = true;
        }
        let written: Vec<(ServiceKey, Option<Expectation>)> = futures::stream::iter(actions)
            .map(|(key, action)| async move { (key, write(client, &action).await) })
            .buffer_unordered(WRITES_IN_FLIGHT_MAX)
            .collect()
            .await;
        for (key, expectation) in written {
            if let Some(expectation) = expectation {
                let entry = expectations.entry(key).or_insert_with(|| (Instant::now(), Vec::new()));
                entry.1.push(expectation);
            }
        }
    }
}

/// The caches' contents for one pass, restricted to the namespaces it looks at.
struct View {
    services: Vec<Arc<Service>>,
    pods: HashMap<String, Vec<Arc<Pod>>>,
    endpoints: HashMap<ServiceKey, Arc<Endpoints>>,
    /// This controller's slices of each Service (by their service-name label), not being
    /// deleted.
    slices: HashMap<ServiceKey, Vec<Arc<EndpointSlice>>>,
    /// Every slice of the namespaces looked at, by name, to check expectations.
    slices_by_name: HashMap<(String, String), Arc<EndpointSlice>>,
    /// The namespaces looked at; None for all.
    namespaces: Option<BTreeSet<String>>,
}

impl View {
    fn new(caches: &Caches, namespaces: Option<&BTreeSet<String>>) -> Self {
        let wanted = |namespace: Option<String>| {
            namespaces.is_none_or(|namespaces| namespaces.contains(namespace.as_deref().unwrap_or_default()))
        };
        let services: Vec<Arc<Service>> =
            caches.services.state().into_iter().filter(|service| wanted(service.namespace())).collect();
        // Pods matter only where a Service selects: a namespace of bare pods (or a cluster of
        // them) costs a pass no walk over its pods.
        let selecting: HashSet<&str> = services
            .iter()
            .filter(|service| is_managed(service))
            .map(|service| service.metadata.namespace.as_deref().unwrap_or_default())
            .collect();
        let mut pods: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        if !selecting.is_empty() {
            for pod in caches.pods.state() {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                if selecting.contains(namespace) {
                    pods.entry(namespace.to_owned()).or_default().push(pod);
                }
            }
        }
        let endpoints = caches
            .endpoints
            .state()
            .into_iter()
            .filter(|endpoints| wanted(endpoints.namespace()))
            .map(|endpoints| ((endpoints.namespace().unwrap_or_default(), endpoints.name_any()), endpoints))
            .collect();
        let mut slices: HashMap<ServiceKey, Vec<Arc<EndpointSlice>>> = HashMap::new();
        let mut slices_by_name = HashMap::new();
        for slice in caches.slices.state().into_iter().filter(|slice| wanted(slice.namespace())) {
            let namespace = slice.namespace().unwrap_or_default();
            slices_by_name.insert((namespace.clone(), slice.name_any()), slice.clone());
            let labels = slice.labels();
            let ours = labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME);
            if let (true, Some(service), None) =
                (ours, labels.get(SERVICE_NAME_LABEL), slice.metadata.deletion_timestamp.as_ref())
            {
                slices.entry((namespace, service.clone())).or_default().push(slice.clone());
            }
        }
        Self { services, pods, endpoints, slices, slices_by_name, namespaces: namespaces.cloned() }
    }

    fn pods_of(&self, namespace: &str) -> Vec<&Pod> {
        self.pods.get(namespace).map(|pods| pods.iter().map(Arc::as_ref).collect()).unwrap_or_default()
    }

    fn looks_at(&self, namespace: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|namespaces| namespaces.contains(namespace))
    }

    /// Whether the cache shows the result of the write `expectation` stands for.
    fn satisfies(&self, (namespace, _): &ServiceKey, expectation: &Expectation) -> bool {
        match expectation {
            Expectation::Present { name, resource_version } => {
                let Some(slice) = self.slices_by_name.get(&(namespace.clone(), name.clone())) else {
                    return false;
                };
                let seen = slice.resource_version().and_then(|version| version.parse::<u64>().ok());
                seen.is_none_or(|seen| seen >= *resource_version)
            }
            Expectation::Absent { name } => {
                !self.slices_by_name.contains_key(&(namespace.clone(), name.clone()))
            }
        }
    }
}

/// Carries out one action; returns what the slice cache has to show afterwards.
async fn write(client: &Client, action: &Action) -> Option<Expectation> {
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
    let (what, namespace, name) = describe(action);
    let request = async {
        match action {
            Action::CreateEndpoints(endpoints) => {
                api::<Endpoints>(client, &namespace).create(&params, endpoints).await.map(|_| None)
            }
            Action::UpdateEndpoints(endpoints) => {
                api::<Endpoints>(client, &namespace).replace(&name, &params, endpoints).await.map(|_| None)
            }
            Action::DeleteEndpoints(target) => {
                api::<Endpoints>(client, &namespace).delete(&name, &delete_params(target)).await.map(|_| None)
            }
            Action::CreateSlice(slice) => {
                let created = api::<EndpointSlice>(client, &namespace).create(&params, slice).await?;
                Ok(present(&created))
            }
            Action::UpdateSlice(slice) => {
                let updated = api::<EndpointSlice>(client, &namespace).replace(&name, &params, slice).await?;
                Ok(present(&updated))
            }
            Action::DeleteSlice(target) => {
                api::<EndpointSlice>(client, &namespace).delete(&name, &delete_params(target)).await?;
                Ok(Some(Expectation::Absent { name: name.clone() }))
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(expectation)) => {
            tracing::debug!(what, namespace, name, "endpoints controller wrote");
            expectation
        }
        // Gone already, or changed since the cache saw it: the change is a watch event, hence
        // another pass.
        Ok(Err(error)) if is_status(&error, 404) || is_status(&error, 409) => {
            tracing::debug!(what, namespace, name, %error, "endpoints controller lost a race");
            None
        }
        Ok(Err(error)) => {
            tracing::warn!(what, namespace, name, %error, "endpoints controller write failed");
            None
        }
        Err(_elapsed) => {
            tracing::warn!(what, namespace, name, "endpoints controller write timed out");
            None
        }
    }
}

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(client.clone(), namespace)
}

fn present(slice: &EndpointSlice) -> Option<Expectation> {
    let resource_version = slice.resource_version()?.parse().ok()?;
    Some(Expectation::Present { name: slice.name_any(), resource_version })
}

fn delete_params(target: &Target) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(target.uid.clone()),
            resource_version: Some(target.resource_version.clone()),
        }),
        ..DeleteParams::default()
    }
}

/// What an action writes, for logs: a verb and kind, the namespace and the name.
fn describe(action: &Action) -> (&'static str, String, String) {
    let of = |metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        (metadata.namespace.clone().unwrap_or_default(), metadata.name.clone().unwrap_or_default())
    };
    let ((namespace, name), what) = match action {
        Action::CreateEndpoints(endpoints) => (of(&endpoints.metadata), "create endpoints"),
        Action::UpdateEndpoints(endpoints) => (of(&endpoints.metadata), "update endpoints"),
        Action::DeleteEndpoints(target) => {
            ((target.namespace.clone(), target.name.clone()), "delete endpoints")
        }
        Action::CreateSlice(slice) => {
            let (namespace, _) = of(&slice.metadata);
            ((namespace, slice.metadata.generate_name.clone().unwrap_or_default()), "create endpointslice")
        }
        Action::UpdateSlice(slice) => (of(&slice.metadata), "update endpointslice"),
        Action::DeleteSlice(target) => {
            ((target.namespace.clone(), target.name.clone()), "delete endpointslice")
        }
    };
    (what, namespace, name)
}
