//! The agent's top level: registers the Node, keeps its Lease and status, and runs one
//! [`PodWorker`] per pod bound to the node, fed by a watch on `spec.nodeName`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::dns::ReflectedCluster;
use crate::dns::server::DnsServerConfig;
use crate::events::Recorder;
use crate::lease::{self, LeaseTiming};
use crate::lifecycle::BackoffPolicy;
use crate::node::{self, Capacity, NodeIdentity, Pressure};
use crate::pod_worker::{NodeContext, PodWorker};
use crate::proxy::runtime::ProxyConfig;
use crate::runtime::Runtime;

/// How often the node's conditions are observed.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// Grace given to the containers of a pod that vanished while the agent was away.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// Registration is retried this often until the API answers.
const REGISTER_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub identity: NodeIdentity,
    pub capacity: Capacity,
    pub lease: LeaseTiming,
    pub backoff: BackoffPolicy,
    /// Where pods write (its free space is the node's DiskPressure).
    pub state_dir: PathBuf,
    /// `<scheme>://` of container ids in pod statuses.
    pub runtime_scheme: &'static str,
    /// The cluster DNS this agent serves; `None` serves none.
    pub cluster_dns: Option<DnsServerConfig>,
    /// The service proxy's settings; `None` runs no proxy.
    pub proxy: Option<ProxyConfig>,
}

/// The port resolvers reach a nameserver on: resolv.conf cannot name another, so pods get the
/// cluster DNS as their resolver only when it listens here.
const DNS_PORT: u16 = 53;

/// Runs the agent until the task is dropped.
pub async fn run<R: Runtime>(config: AgentConfig, client: Client, runtime: Arc<R>) {
    let node_name = config.identity.name.clone();
    // Notified on every change of the node's Service and EndpointSlice caches.
    let caches_changed = Arc::new(Notify::new());
    let (services, services_writer) = reflector::store();
    let changed = caches_changed.clone();
    let _stop_services =
        AbortOnDrop(tokio::spawn(reflect(Api::all(client.clone()), services_writer, move || {
            changed.notify_one();
        })));
    let (endpoint_slices, endpoint_slices_writer) = reflector::store();
    let slices_generation = Arc::new(AtomicU64::new(0));
    let (changed, generation) = (caches_changed.clone(), slices_generation.clone());
    let _stop_endpoint_slices =
        AbortOnDrop(tokio::spawn(reflect(Api::all(client.clone()), endpoint_slices_writer, move || {
            generation.fetch_add(1, Ordering::Release);
            changed.notify_one();
        })));
    let cluster = ReflectedCluster::new(services.clone(), endpoint_slices.clone(), slices_generation);
    let dns_server = match &config.cluster_dns {
        Some(dns) => serve_dns(dns, cluster).await,
        None => None,
    };
    let pods_dns = dns_server.as_ref().map(|server| server.addr).filter(|addr| addr.port() == DNS_PORT);
    let _stop_proxy = config.proxy.map(|proxy| {
        let run =
            crate::proxy::runtime::run(proxy, services.clone(), endpoint_slices.clone(), caches_changed);
        AbortOnDrop(tokio::spawn(run))
    });
    let context = Arc::new(NodeContext {
        runtime: runtime.clone(),
        client: client.clone(),
        node_name: node_name.clone(),
        host_ip: config.identity.internal_ip.clone(),
        events: Recorder::start(client.clone(), node_name.clone()),
        backoff: config.backoff,
        runtime_scheme: config.runtime_scheme,
        allocatable: config.capacity.resources(),
        services,
        cluster_dns: pods_dns.map(|addr| addr.ip()),
        endpoint_slices,
    });
    let heartbeat = tokio::spawn(keep_node(config.clone(), client.clone()));
    let _stop_heartbeat = AbortOnDrop(heartbeat);
    run_pods(context).await;
}

/// Starts the cluster DNS server; a failure (port 53 without root, say) leaves the agent
/// running without it.
async fn serve_dns(
    config: &DnsServerConfig,
    cluster: ReflectedCluster,
) -> Option<crate::dns::server::DnsServer> {
    match crate::dns::server::start(config.clone(), cluster).await {
        Ok(server) => {
            tracing::info!(listen = %server.addr, upstream = ?config.upstream, "serving cluster DNS");
            Some(server)
        }
        Err(error) => {
            tracing::warn!(
                listen = %config.listen, %error,
                "cannot serve cluster DNS here (port 53 needs root, or --dns-port another port); \
                 the agent runs on without it and pods keep the host's resolver"
            );
            None
        }
    }
}

/// Keeps one of the node's caches of every object of a kind up to date (Services for pods'
/// service-link variables and the proxy, EndpointSlices for the proxy and DNS), calling
/// `changed` after every change the cache took.
async fn reflect<K>(api: Api<K>, writer: Writer<K>, changed: impl Fn())
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let objects = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let stream = reflector::reflector(writer, objects);
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(_)) => changed(),
            Ok(None) => return,
            // The watcher backs off and retries by itself; the cache keeps its last state.
            Err(error) => tracing::debug!(%error, kind = %K::kind(&Default::default()), "watching"),
        }
    }
}

/// Registers the node, then renews its lease and reports its status forever.
async fn keep_node(config: AgentConfig, client: Client) {
    let identity = &config.identity;
    let mut conditions = node::conditions(Pressure::observe(&config.state_dir), &[], now());
    let mut status = node::status(identity, &config.capacity, conditions.clone());
    let node_object = node::node_object(identity, status.clone());
    let uid = loop {
        match node::register(&client, &node_object).await {
            Ok(uid) => break uid,
            Err(error) => {
                tracing::warn!(node = identity.name, %error, "registering the node; retrying");
                tokio::time::sleep(REGISTER_RETRY).await;
            }
        }
    };
    tracing::info!(node = identity.name, "registered");
    let _lease = AbortOnDrop(tokio::spawn(lease::renew_forever(
        client.clone(),
        identity.name.clone(),
        uid,
        config.lease,
    )));
    let mut reported_at = Instant::now();
    let mut ticks = tokio::time::interval(STATUS_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        conditions = node::conditions(Pressure::observe(&config.state_dir), &conditions, now());
        let next = node::status(identity, &config.capacity, conditions.clone());
        if !node::changed(&status, &next)
            && reported_at.elapsed() < node::STATUS_REPORT_MAX_INTERVAL
            && !node::overwritten(&client, &identity.name, &next).await
        {
            continue;
        }
        match node::report(&client, &identity.name, &next).await {
            Ok(()) => {
                status = next;
                reported_at = Instant::now();
            }
            Err(error) => tracing::debug!(node = identity.name, %error, "reporting the node status"),
        }
    }
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}

/// A pod worker and the channel that feeds it the pod's latest spec.
struct Worker {
    desired: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Watches the pods bound to this node and keeps one worker per pod.
async fn run_pods<R: Runtime>(context: Arc<NodeContext<R>>) {
    let pods: Api<Pod> = Api::all(context.client.clone());
    let selector = format!("spec.nodeName={}", context.node_name);
    let stream = watcher::watcher(pods, watcher::Config::default().fields(&selector)).default_backoff();
    futures::pin_mut!(stream);
    let mut workers: HashMap<String, Worker> = HashMap::new();
    // Pods of the listing in progress; at its end, pods not in it are gone.
    let mut listing: Option<HashSet<String>> = None;
    let mut swept = false;
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(error) => {
                // The watcher backs off and retries by itself; pods keep running meanwhile.
                tracing::debug!(%error, "watching pods");
                continue;
            }
        };
        workers.retain(|_, worker| !worker.task.is_finished());
        match event {
            Event::Init => listing = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let Some(uids) = listing.as_mut() {
                    uids.insert(uid_of(&pod));
                }
                dispatch(&context, &mut workers, pod);
            }
            Event::InitDone => {
                let listed = listing.take().unwrap_or_default();
                for (uid, worker) in &workers {
                    if !listed.contains(uid) {
                        let _ = worker.desired.send(None);
                    }
                }
                if !swept {
                    // Only now is it known which pods exist: what the runtime holds beyond them
                    // belongs to pods deleted while the agent was away.
                    swept = true;
                    tokio::spawn(sweep_orphans(context.clone(), listed));
                }
            }
            Event::Apply(pod) => dispatch(&context, &mut workers, pod),
            Event::Delete(pod) => {
                if let Some(worker) = workers.get(&uid_of(&pod)) {
                    let _ = worker.desired.send(None);
                }
            }
        }
    }
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn dispatch<R: Runtime>(context: &Arc<NodeContext<R>>, workers: &mut HashMap<String, Worker>, pod: Pod) {
    let uid = uid_of(&pod);
    if let Some(worker) = workers.get(&uid) {
        let _ = worker.desired.send(Some(pod));
        return;
    }
    let (desired, receiver) = watch::channel(Some(pod));
    let task = tokio::spawn(PodWorker::new(context.clone(), receiver).run());
    workers.insert(uid, Worker { desired, task });
}

/// Stops and removes what the runtime holds for pods that no longer exist.
async fn sweep_orphans<R: Runtime>(context: Arc<NodeContext<R>>, existing: HashSet<String>) {
    let runtime = &context.runtime;
    let Ok(containers) = runtime.list_containers().await else { return };
    let mut orphans: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for info in containers.into_iter().filter(|info| !existing.contains(&info.pod_uid)) {
        orphans.entry(info.pod_uid.clone()).or_default().push(info.id);
    }
    let sandboxes = runtime.list_sandboxes().await.unwrap_or_default();
    for sandbox in sandboxes.iter().filter(|sandbox| !existing.contains(&sandbox.config.pod_uid)) {
        orphans.entry(sandbox.config.pod_uid.clone()).or_default();
    }
    for (uid, ids) in orphans {
        tracing::info!(pod_uid = uid, "removing the containers of a pod that no longer exists");
        for id in ids {
            let _ = runtime.stop_container(&id, ORPHAN_GRACE).await;
            let _ = runtime.remove_container(&id).await;
        }
        let _ = runtime.remove_sandbox(&uid).await;
    }
}

/// Aborts a task when dropped, so the agent's background tasks end with it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
