//! One pod's worker: drives the pod's containers towards what [`lifecycle::plan`] says, and
//! reports the pod's status and events. Level-triggered: whatever woke it (a new spec, a
//! container exit, a probe verdict, a back-off ending), it looks at everything again.
//!
//! A worker adopts the containers the runtime already holds for its pod (the agent
//! restarted), so a healthy pod is never restarted by an agent restart. When the API is
//! unreachable it keeps running the pod from the last spec it saw, and retries its reports.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, LifecycleHandler, ObjectReference, Pod, PodStatus, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::events::{EventType, Recorder};
use crate::lifecycle::{self, Action, BackoffPolicy, ContainerRecord, KillReason, Records, Run};
use crate::pod_env::{self, ConfigSource, PodFacts};
use crate::pod_status::{StatusFacts, pod_status};
use crate::probe::{self, ProbeKind, ProbeVerdict};
use crate::runtime::{ContainerConfig, ContainerId, Exit, Mount, Runtime, Sandbox, SandboxConfig};
use crate::volumes::{self, PreparedVolume};

/// Container exits and probe verdicts queued for a worker; senders wait when it is full.
const WORKER_QUEUE_MAX: usize = 64;
/// How soon a failed step (sandbox, volumes, a status report) is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// How often configMap, secret and downwardAPI volumes are refreshed from the API.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);
/// How long one API call of a worker may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pod's start waits for the node's Service cache to list for the first time
/// before it asks the API itself.
const SERVICES_SYNC_WAIT: Duration = Duration::from_secs(2);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const GRACE_PERIOD_DEFAULT: Duration = Duration::from_secs(30);
/// How long a postStart hook may run (kubelet bounds it by the pod's grace period).
const POST_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Container runs kept per container name: the current one and the one before (`--previous`).
const RUNS_KEPT: u32 = 2;

/// What every worker of one node shares.
pub struct NodeContext<R> {
    pub runtime: Arc<R>,
    pub client: Client,
    pub node_name: String,
    pub host_ip: String,
    pub events: Recorder,
    pub backoff: BackoffPolicy,
    /// `<scheme>://` of the container ids in pod statuses.
    pub runtime_scheme: &'static str,
    /// The node's allocatable resources: a container's limits where it sets none.
    pub allocatable: BTreeMap<String, Quantity>,
    /// Every Service, as the node's watch last saw them (for service-link variables).
    pub services: reflector::Store<Service>,
    /// The cluster DNS address pods get as their resolver, when the node serves it on port 53.
    pub cluster_dns: Option<std::net::IpAddr>,
    /// Every EndpointSlice, as the node's watch last saw them (for the proxy and DNS).
    pub endpoint_slices: reflector::Store<EndpointSlice>,
}

/// The owned values [`PodFacts`] borrows.
struct Facts {
    pod_ip: String,
    pod_ips: Vec<String>,
    host_ips: Vec<String>,
    service_account: String,
}

/// A container run that exited, for its worker.
struct Exited {
    name: String,
    id: ContainerId,
    exit: Exit,
}

/// The ConfigMaps, Secrets and Services of a pod's namespace that its containers refer to.
#[derive(Debug, Default, Clone)]
struct ConfigObjects {
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    services: Vec<Service>,
}

impl ConfigSource for ConfigObjects {
    fn config_map(&self, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(name)
    }

    fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }
}

pub struct PodWorker<R: Runtime> {
    node: Arc<NodeContext<R>>,
    desired: watch::Receiver<Option<Pod>>,
    pod: Pod,
    /// The API object is gone: stop everything, nothing to report to.
    gone: bool,
    sandbox: Option<Sandbox>,
    records: Records,
    probes: HashMap<String, Vec<JoinHandle<()>>>,
    exits: mpsc::Sender<Exited>,
    exit_inbox: mpsc::Receiver<Exited>,
    verdicts: mpsc::Sender<ProbeVerdict>,
    verdict_inbox: mpsc::Receiver<ProbeVerdict>,
    reported: Option<PodStatus>,
    start_time: SystemTime,
    config: Option<ConfigObjects>,
    volumes: Vec<PreparedVolume>,
    volumes_refreshed: Option<Instant>,
    retry_at: Option<Instant>,
}

impl<R: Runtime> PodWorker<R> {
    /// A worker for the pod `desired` holds now; `None` in `desired` later means the pod's API
    /// object is gone.
    pub fn new(node: Arc<NodeContext<R>>, desired: watch::Receiver<Option<Pod>>) -> Self {
        let pod = desired.borrow().clone().expect("a worker starts for a pod that exists");
        let (exits, exit_inbox) = mpsc::channel(WORKER_QUEUE_MAX);
        let (verdicts, verdict_inbox) = mpsc::channel(WORKER_QUEUE_MAX);
        Self {
            node,
            desired,
            pod,
            gone: false,
            sandbox: None,
            records: Records::new(),
            probes: HashMap::new(),
            exits,
            exit_inbox,
            verdicts,
            verdict_inbox,
            reported: None,
            start_time: SystemTime::now(),
            config: None,
            volumes: Vec::new(),
            volumes_refreshed: None,
            retry_at: None,
        }
    }

    fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn reference(&self, container: Option<&str>) -> ObjectReference {
        let init = self.init_container_names().iter().any(|name| Some(name.as_str()) == container);
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: self.pod.metadata.name.clone(),
            namespace: self.pod.metadata.namespace.clone(),
            uid: self.pod.metadata.uid.clone(),
            resource_version: self.pod.metadata.resource_version.clone(),
            field_path: container.map(|name| {
                if init {
                    format!("spec.initContainers{{{name}}}")
                } else {
                    format!("spec.containers{{{name}}}")
                }
            }),
        }
    }

    fn event(
        &self,
        container: Option<&str>,
        event_type: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.node.events.record(&self.reference(container), event_type, reason, message);
    }

    fn init_container_names(&self) -> Vec<String> {
        let spec = self.pod.spec.as_ref();
        spec.and_then(|spec| spec.init_containers.as_ref())
            .map(|containers| containers.iter().map(|container| container.name.clone()).collect())
            .unwrap_or_default()
    }

    fn container_spec(&self, name: &str) -> Option<&Container> {
        let spec = self.pod.spec.as_ref()?;
        spec.init_containers.iter().flatten().chain(&spec.containers).find(|container| container.name == name)
    }

    fn deleting(&self) -> bool {
        self.gone || self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Runs until the pod is deleted and cleaned up, or the agent drops the pod's channel.
    pub async fn run(mut self) {
        self.adopt().await;
        loop {
            let now = Instant::now();
            self.retry_at = None;
            if !self.deleting() {
                self.prepare(now).await;
            }
            let mut plan = lifecycle::plan(&self.effective_pod(), &self.records, now);
            if self.sandbox.is_none() && !self.deleting() {
                // Nothing can start without a sandbox; `prepare` scheduled a retry.
                plan.actions.retain(|action| !matches!(action, Action::Start { .. }));
            }
            self.act(&plan.actions).await;
            if !plan.actions.is_empty() {
                // Acting changed what there is; plan again before reporting.
                continue;
            }
            if plan.finished && self.deleting() {
                if self.clean_up().await {
                    return;
                }
            } else {
                if plan.finished {
                    self.stop_probes_all();
                }
                self.report(&plan).await;
            }
            let wake = [plan.wake_at, self.retry_at, self.next_volume_refresh()].into_iter().flatten().min();
            for name in &plan.backing_off {
                let delay = self.records.get(name).map_or(Duration::ZERO, |record| record.restart_delay);
                self.event(
                    Some(name),
                    EventType::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {name} in pod {}_{}({}), waiting {}s",
                        self.name(),
                        self.namespace(),
                        self.uid(),
                        delay.as_secs()
                    ),
                );
            }
            if !self.wait(wake).await {
                return;
            }
        }
    }

    /// The pod as the plan should see it: a pod whose object is gone is being deleted.
    fn effective_pod(&self) -> Pod {
        let mut pod = self.pod.clone();
        if self.gone && pod.metadata.deletion_timestamp.is_none() {
            pod.metadata.deletion_timestamp = Some(crate::pod_status::time(SystemTime::now()));
        }
        pod
    }

    /// Waits for something to happen; false if the agent dropped the pod's channel.
    async fn wait(&mut self, wake: Option<Instant>) -> bool {
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = self.desired.changed() => {
                if changed.is_err() {
                    return false;
                }
                match self.desired.borrow_and_update().clone() {
                    Some(pod) => self.pod = pod,
                    None => self.gone = true,
                }
            }
            Some(exited) = self.exit_inbox.recv() => self.apply_exit(exited),
            Some(verdict) = self.verdict_inbox.recv() => self.apply_verdict(verdict),
            () = sleep => {}
        }
        // Take in everything else already queued before planning.
        while let Ok(exited) = self.exit_inbox.try_recv() {
            self.apply_exit(exited);
        }
        while let Ok(verdict) = self.verdict_inbox.try_recv() {
            self.apply_verdict(verdict);
        }
        true
    }

    fn apply_exit(&mut self, Exited { name, id, exit }: Exited) {
        let Some(record) = self.records.get_mut(&name) else { return };
        if matches!(&record.run, Some(Run::Running { id: current, .. }) if *current == id) {
            record.exited(exit, Instant::now(), &self.node.backoff);
            self.stop_probes(&name);
        }
    }

    fn apply_verdict(&mut self, verdict: ProbeVerdict) {
        let Some(record) = self.records.get_mut(&verdict.container) else { return };
        if !matches!(&record.run, Some(Run::Running { id, .. }) if *id == verdict.id) {
            return;
        }
        match (verdict.kind, verdict.passing) {
            (ProbeKind::Readiness, ready) => record.ready = ready,
            (ProbeKind::Startup, true) => {
                record.started = true;
                let name = verdict.container.clone();
                self.start_probes(&name, &[ProbeKind::Liveness, ProbeKind::Readiness]);
            }
            (ProbeKind::Startup, false) => record.kill_requested = Some(KillReason::StartupFailed),
            (ProbeKind::Liveness, true) => {}
            (ProbeKind::Liveness, false) => record.kill_requested = Some(KillReason::LivenessFailed),
        }
        if !verdict.passing {
            self.event(
                Some(&verdict.container),
                EventType::Warning,
                "Unhealthy",
                format!("{} probe failed: {}", verdict.kind.title(), verdict.message),
            );
        }
    }

    /// Takes over the containers the runtime already runs for this pod.
    async fn adopt(&mut self) {
        let uid = self.uid().to_owned();
        let Ok(containers) = self.node.runtime.list_pod_containers(&uid).await else { return };
        let mut by_name: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for info in containers {
            by_name.entry(info.name.clone()).or_default().push(info);
        }
        if by_name.is_empty() {
            return;
        }
        self.sandbox = self
            .node
            .runtime
            .run_sandbox(&self.sandbox_config())
            .await
            .inspect_err(|error| tracing::warn!(pod = self.name(), %error, "re-adopting the sandbox"))
            .ok();
        let reported = self.pod.status.clone().unwrap_or_default();
        let previously = reported
            .container_statuses
            .iter()
            .flatten()
            .chain(reported.init_container_statuses.iter().flatten())
            .map(|status| (status.name.clone(), status.clone()))
            .collect::<HashMap<_, _>>();
        let now = Instant::now();
        for (name, mut runs) in by_name {
            runs.sort_by_key(|info| info.attempt);
            let latest = runs.pop().expect("grouped runs are not empty");
            let mut record = ContainerRecord {
                attempts: latest.attempt + 1,
                previous_exit: runs.last().and_then(|info| match &info.state {
                    crate::runtime::ContainerState::Exited(exit) => Some(exit.clone()),
                    crate::runtime::ContainerState::Running { .. } => None,
                }),
                ..ContainerRecord::default()
            };
            match latest.state {
                crate::runtime::ContainerState::Running { started_at } => {
                    record.run = Some(Run::Running { id: latest.id.clone(), since: now });
                    record.started_at = Some(started_at);
                    // Keep what was last reported for this very run, so adoption is not a blip.
                    let same_run = previously.get(&name).filter(|status| {
                        status.container_id.as_deref().is_some_and(|id| id.ends_with(latest.id.as_str()))
                    });
                    record.ready = same_run.is_some_and(|status| status.ready);
                    record.started = same_run.is_some_and(|status| status.started == Some(true));
                    self.watch_exit(&name, latest.id.clone());
                }
                crate::runtime::ContainerState::Exited(exit) => {
                    record.run = Some(Run::Exited { id: latest.id.clone(), exit, at: now });
                }
            }
            let running = record.is_running();
            let started = record.started;
            self.records.insert(name.clone(), record);
            if running {
                let kinds: &[ProbeKind] = if started || !self.has_probe(&name, ProbeKind::Startup) {
                    &[ProbeKind::Liveness, ProbeKind::Readiness]
                } else {
                    &[ProbeKind::Startup]
                };
                self.start_probes(&name, kinds);
                self.settle_without_probes(&name);
            }
            tracing::info!(pod = self.name(), container = name, attempt = latest.attempt, "re-adopted");
        }
    }

    fn sandbox_config(&self) -> SandboxConfig {
        SandboxConfig {
            pod_uid: self.uid().to_owned(),
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
            dns: crate::dns::pod_dns_config(&self.pod, self.node.cluster_dns),
        }
    }

    /// Sandbox and volumes, before anything can start.
    async fn prepare(&mut self, now: Instant) {
        if self.sandbox.is_none() {
            match self.node.runtime.run_sandbox(&self.sandbox_config()).await {
                Ok(sandbox) => self.sandbox = Some(sandbox),
                Err(error) => {
                    self.event(None, EventType::Warning, "FailedCreatePodSandBox", error.to_string());
                    self.retry_at = Some(now + RETRY_DELAY);
                    return;
                }
            }
        }
        if self.volumes_refreshed.is_none_or(|at| now.duration_since(at) >= VOLUME_REFRESH) {
            self.refresh_config().await;
            self.refresh_volumes(now);
        }
    }

    fn next_volume_refresh(&self) -> Option<Instant> {
        let spec = self.pod.spec.as_ref()?;
        let refreshing = spec.volumes.iter().flatten().any(|volume| {
            volume.config_map.is_some() || volume.secret.is_some() || volume.downward_api.is_some()
        });
        (refreshing && !self.deleting())
            .then(|| self.volumes_refreshed.map(|at| at + VOLUME_REFRESH))
            .flatten()
    }

    fn owned_facts(&self) -> Facts {
        let pod_ip = self.sandbox.as_ref().map(|sandbox| sandbox.ip.to_string()).unwrap_or_default();
        Facts {
            pod_ips: if pod_ip.is_empty() { vec![] } else { vec![pod_ip.clone()] },
            pod_ip,
            host_ips: vec![self.node.host_ip.clone()],
            service_account: self
                .pod
                .spec
                .as_ref()
                .and_then(|spec| spec.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        }
    }

    fn facts<'a>(&'a self, owned: &'a Facts, config: &'a ConfigObjects) -> PodFacts<'a> {
        PodFacts {
            pod_ip: &owned.pod_ip,
            pod_ips: &owned.pod_ips,
            host_ip: &self.node.host_ip,
            host_ips: &owned.host_ips,
            node_name: &self.node.node_name,
            service_account: &owned.service_account,
            allocatable: &self.node.allocatable,
            services: &config.services,
        }
    }

    fn refresh_volumes(&mut self, now: Instant) {
        let Some(sandbox) = &self.sandbox else { return };
        let source = self.config.clone().unwrap_or_default();
        let owned = self.owned_facts();
        let facts = self.facts(&owned, &source);
        match volumes::prepare_volumes(&self.pod, &source, &sandbox.dir, &facts) {
            Ok(prepared) => {
                self.volumes = prepared;
                self.volumes_refreshed = Some(now);
            }
            Err(error) => {
                self.event(None, EventType::Warning, "FailedMount", error.to_string());
                self.retry_at = Some(now + RETRY_DELAY);
            }
        }
    }
}

impl<R: Runtime> PodWorker<R> {
    /// Fetches the ConfigMaps, Secrets and Services the pod refers to. On failure the last
    /// fetched objects stay in use: a running pod does not notice an API outage.
    async fn refresh_config(&mut self) {
        let namespace = self.namespace().to_owned();
        let (config_maps, secrets) = referenced_objects(&self.pod);
        let client = &self.node.client;
        let fetched = async {
            let mut objects = ConfigObjects::default();
            let config_map_api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            for name in config_maps {
                if let Some(object) = config_map_api.get_opt(&name).await? {
                    objects.config_maps.insert(name, object);
                }
            }
            let secret_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            for name in secrets {
                if let Some(object) = secret_api.get_opt(&name).await? {
                    objects.secrets.insert(name, object);
                }
            }
            objects.services = self.services_of(&namespace).await?;
            Ok::<_, kube::Error>(objects)
        };
        match tokio::time::timeout(API_TIMEOUT, fetched).await {
            Ok(Ok(objects)) => self.config = Some(objects),
            Ok(Err(error)) => tracing::debug!(pod = self.name(), %error, "fetching the pod's config objects"),
            Err(_) => tracing::debug!(pod = self.name(), "fetching the pod's config objects timed out"),
        }
    }

    /// The Services a pod of `namespace` may be linked to: those of its namespace and
    /// `default`'s, from the node's cache once it has listed them (a fresh agent waits a
    /// moment for that, as kubelet does), from the API otherwise.
    async fn services_of(&self, namespace: &str) -> Result<Vec<Service>, kube::Error> {
        let cache = &self.node.services;
        if tokio::time::timeout(SERVICES_SYNC_WAIT, cache.wait_until_ready())
            .await
            .is_ok_and(|ready| ready.is_ok())
        {
            let wanted = |service: &&Arc<Service>| {
                let of = service.metadata.namespace.as_deref();
                of == Some(namespace) || of == Some(pod_env::MASTER_SERVICE_NAMESPACE)
            };
            return Ok(cache.state().iter().filter(wanted).map(|service| Service::clone(service)).collect());
        }
        let services: Api<Service> = Api::namespaced(self.node.client.clone(), namespace);
        Ok(services.list(&ListParams::default()).await?.items)
    }

    /// Does what the plan says: starts one after another, kills all at once.
    async fn act(&mut self, actions: &[Action]) {
        let now = Instant::now();
        let kills: Vec<(String, KillReason)> = actions
            .iter()
            .filter_map(|action| match action {
                Action::Kill { name, reason } => Some((name.clone(), *reason)),
                Action::Start { .. } => None,
            })
            .collect();
        let stopped =
            futures::future::join_all(kills.iter().map(|(name, reason)| self.stop(name, *reason))).await;
        for (name, result) in kills.iter().map(|(name, _)| name).zip(stopped) {
            match result {
                Some(Ok(exit)) => {
                    if let Some(record) = self.records.get_mut(name) {
                        record.exited(exit, Instant::now(), &self.node.backoff);
                    }
                    self.stop_probes(name);
                }
                Some(Err(error)) => {
                    self.event(Some(name), EventType::Warning, "FailedKillContainer", error.to_string());
                    self.retry_at = Some(now + RETRY_DELAY);
                }
                None => {}
            }
        }
        for action in actions {
            if let Action::Start { name, .. } = action {
                self.start(name, now).await;
            }
        }
    }

    async fn start(&mut self, name: &str, now: Instant) {
        let Some(container) = self.container_spec(name).cloned() else { return };
        let Some(sandbox) = self.sandbox.clone() else { return };
        let attempt = self.records.get(name).map_or(0, |record| record.attempts);
        let config = match self.container_config(&container, attempt) {
            Ok(config) => config,
            Err(message) => {
                self.event(Some(name), EventType::Warning, "Failed", format!("Error: {message}"));
                self.not_created(name, "CreateContainerConfigError", message, now);
                return;
            }
        };
        let image = container.image.clone().unwrap_or_default();
        self.event(
            Some(name),
            EventType::Normal,
            "Pulled",
            format!("Container image {image:?} already present on machine"),
        );
        match self.node.runtime.start_container(&sandbox, &config).await {
            Ok(id) => {
                self.event(Some(name), EventType::Normal, "Created", format!("Created container: {name}"));
                self.event(Some(name), EventType::Normal, "Started", format!("Started container {name}"));
                self.records.entry(name.to_owned()).or_default().started_run(
                    id.clone(),
                    now,
                    SystemTime::now(),
                );
                self.watch_exit(name, id.clone());
                let kinds: &[ProbeKind] = if self.has_probe(name, ProbeKind::Startup) {
                    &[ProbeKind::Startup]
                } else {
                    &[ProbeKind::Liveness, ProbeKind::Readiness]
                };
                self.start_probes(name, kinds);
                self.settle_without_probes(name);
                self.forget_old_runs(name, attempt).await;
                self.post_start(name, &container, &id).await;
            }
            Err(error) => {
                self.event(Some(name), EventType::Warning, "Failed", format!("Error: {error}"));
                self.not_created(name, "CreateContainerError", error.to_string(), now);
            }
        }
    }

    /// Records that a container could not be created, to be tried again after a back-off.
    fn not_created(&mut self, name: &str, reason: &str, message: String, now: Instant) {
        let record = self.records.entry(name.to_owned()).or_default();
        record.waiting = Some((reason.to_owned(), message));
        let delay = record.backoff_delay.max(RETRY_DELAY);
        record.not_before = Some(now + delay);
        record.backoff_delay = (delay * 2).min(self.node.backoff.max);
    }

    /// Removes the run before the ones kept, with its log.
    async fn forget_old_runs(&self, name: &str, attempt: u32) {
        if let Some(old) = attempt.checked_sub(RUNS_KEPT) {
            let id = ContainerId::new(self.uid(), name, old);
            let _ = self.node.runtime.remove_container(&id).await;
        }
    }

    /// What the runtime needs to start `container`, or why it cannot be started.
    fn container_config(&self, container: &Container, attempt: u32) -> Result<ContainerConfig, String> {
        let config = self.config.as_ref().ok_or_else(|| {
            "the pod's ConfigMaps, Secrets and Services could not be read from the API yet".to_owned()
        })?;
        let owned = self.owned_facts();
        let facts = self.facts(&owned, config);
        let env = pod_env::container_env(&self.pod, container, &facts, config)
            .map_err(|error| error.to_string())?;
        for skipped in &env.skipped {
            self.event(
                Some(&container.name),
                EventType::Warning,
                pod_env::INVALID_VARIABLE_NAMES_REASON,
                skipped.event_message(),
            );
        }
        let mut variables = env.variables;
        for (key, value) in [("POD_IP", owned.pod_ip.clone()), ("HOSTNAME", self.name().to_owned())] {
            if !variables.iter().any(|(defined, _)| defined == key) {
                variables.push((key.to_owned(), value));
            }
        }
        let argv = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .map(|argument| pod_env::expand(argument, &variables))
            .collect();
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let volume = self.volumes.iter().find(|volume| volume.name == mount.name).ok_or_else(|| {
                format!("volume {:?} is not prepared (see the pod's FailedMount events)", mount.name)
            })?;
            let mut host_path = volume.host_path.clone();
            if let Some(sub_path) = mount.sub_path.as_deref().filter(|path| !path.is_empty()) {
                if sub_path.starts_with('/') || sub_path.split('/').any(|part| part == "..") {
                    return Err(format!("subPath {sub_path:?} must be a relative path without '..'"));
                }
                host_path = host_path.join(sub_path);
            }
            mounts.push(Mount {
                host_path,
                container_path: mount.mount_path.clone(),
                read_only: mount.read_only.unwrap_or(false) || volume.read_only,
            });
        }
        Ok(ContainerConfig {
            name: container.name.clone(),
            attempt,
            image: container.image.clone().unwrap_or_default(),
            argv,
            env: variables,
            working_dir: container.working_dir.clone(),
            mounts,
        })
    }

    /// Stops a running container: its preStop hook, then SIGTERM and SIGKILL within the grace
    /// period. `None` if it is not running.
    async fn stop(
        &self,
        name: &str,
        reason: KillReason,
    ) -> Option<Result<Exit, crate::runtime::RuntimeError>> {
        let Some(Run::Running { id, .. }) = self.records.get(name).and_then(|record| record.run.clone())
        else {
            return None;
        };
        let container = self.container_spec(name).cloned().unwrap_or_default();
        let grace = self.grace_period(&container, reason);
        let message = match reason {
            KillReason::PodDeleted => format!("Stopping container {name}"),
            KillReason::LivenessFailed => {
                format!("Container {name} failed liveness probe, will be restarted")
            }
            KillReason::StartupFailed => format!("Container {name} failed startup probe, will be restarted"),
            KillReason::PostStartHookFailed => {
                format!("FailedPostStartHook: container {name} will be restarted")
            }
        };
        self.event(Some(name), EventType::Normal, "Killing", message);
        let deadline = Instant::now() + grace;
        let pre_stop = container.lifecycle.as_ref().and_then(|lifecycle| lifecycle.pre_stop.clone());
        if let Some(hook) = pre_stop
            && !grace.is_zero()
            && let Err(message) = self.run_hook(&hook, &container, &id, grace).await
        {
            self.event(
                Some(name),
                EventType::Warning,
                "FailedPreStopHook",
                format!("PreStopHook failed: {message}"),
            );
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        Some(self.node.runtime.stop_container(&id, remaining).await)
    }

    fn grace_period(&self, container: &Container, reason: KillReason) -> Duration {
        let spec_seconds = self.pod.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds);
        let probe_seconds = match reason {
            KillReason::LivenessFailed => container.liveness_probe.as_ref(),
            KillReason::StartupFailed => container.startup_probe.as_ref(),
            KillReason::PodDeleted | KillReason::PostStartHookFailed => None,
        }
        .and_then(|probe| probe.termination_grace_period_seconds);
        let deletion_seconds = self.pod.metadata.deletion_grace_period_seconds;
        let seconds = match reason {
            KillReason::PodDeleted => deletion_seconds.or(spec_seconds),
            _ => probe_seconds.or(spec_seconds),
        };
        seconds.map_or(GRACE_PERIOD_DEFAULT, |seconds| Duration::from_secs(seconds.max(0) as u64))
    }

    /// Runs the container's postStart hook, as kubelet does before it counts the container
    /// started; a failed hook has the container killed (and restarted as its policy says).
    async fn post_start(&mut self, name: &str, container: &Container, id: &ContainerId) {
        let Some(hook) = container.lifecycle.as_ref().and_then(|lifecycle| lifecycle.post_start.clone())
        else {
            return;
        };
        if let Err(message) = self.run_hook(&hook, container, id, POST_START_TIMEOUT).await {
            let message = format!("PostStartHook failed: {message}");
            self.event(Some(name), EventType::Warning, "FailedPostStartHook", message);
            if let Some(record) = self.records.get_mut(name) {
                record.kill_requested = Some(KillReason::PostStartHookFailed);
            }
        }
    }

    /// Runs a lifecycle hook (exec, httpGet, tcpSocket or sleep) within `timeout`.
    async fn run_hook(
        &self,
        hook: &LifecycleHandler,
        container: &Container,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<(), String> {
        if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
            return Ok(());
        }
        let as_probe = k8s_openapi::api::core::v1::Probe {
            exec: hook.exec.clone(),
            http_get: hook.http_get.clone(),
            tcp_socket: hook.tcp_socket.clone(),
            ..Default::default()
        };
        let pod_ip = self.pod_ip();
        match probe::probe_once(&as_probe, container, id, pod_ip, timeout, self.node.runtime.as_ref()).await {
            probe::Outcome::Success => Ok(()),
            probe::Outcome::Failure(message) => Err(message),
        }
    }

    fn pod_ip(&self) -> IpAddr {
        self.sandbox.as_ref().map_or(IpAddr::from([127, 0, 0, 1]), |sandbox| IpAddr::V4(sandbox.ip))
    }

    fn watch_exit(&self, name: &str, id: ContainerId) {
        let runtime = self.node.runtime.clone();
        let exits = self.exits.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            match runtime.wait_container(&id).await {
                Ok(exit) => {
                    let _ = exits.send(Exited { name, id, exit }).await;
                }
                Err(error) => tracing::warn!(container = %id, %error, "cannot wait for the container"),
            }
        });
    }

    fn has_probe(&self, name: &str, kind: ProbeKind) -> bool {
        self.container_spec(name).is_some_and(|container| probe_of(container, kind).is_some())
    }

    fn start_probes(&mut self, name: &str, kinds: &[ProbeKind]) {
        let Some(container) = self.container_spec(name).cloned() else { return };
        let Some(Run::Running { id, .. }) = self.records.get(name).and_then(|record| record.run.clone())
        else {
            return;
        };
        let pod_ip = self.pod_ip();
        for kind in kinds {
            let Some(spec) = probe_of(&container, *kind).cloned() else { continue };
            let prober = tokio::spawn(probe::run(
                *kind,
                spec,
                container.clone(),
                id.clone(),
                pod_ip,
                self.node.runtime.clone(),
                self.verdicts.clone(),
            ));
            self.probes.entry(name.to_owned()).or_default().push(prober);
        }
    }

    /// A container without a readiness probe is ready once it runs; without a startup probe it
    /// has started once it runs.
    fn settle_without_probes(&mut self, name: &str) {
        let ready_without = !self.has_probe(name, ProbeKind::Readiness);
        let started_without = !self.has_probe(name, ProbeKind::Startup);
        if let Some(record) = self.records.get_mut(name) {
            record.ready |= ready_without;
            record.started |= started_without;
        }
    }

    fn stop_probes(&mut self, name: &str) {
        for task in self.probes.remove(name).into_iter().flatten() {
            task.abort();
        }
    }

    fn stop_probes_all(&mut self) {
        let names: Vec<String> = self.probes.keys().cloned().collect();
        for name in names {
            self.stop_probes(&name);
        }
    }

    /// Sends the pod's status if it changed since the last report.
    async fn report(&mut self, plan: &lifecycle::Plan) {
        if self.gone {
            return;
        }
        let mut basis = self.pod.clone();
        if let Some(reported) = &self.reported {
            basis.status = Some(reported.clone());
        }
        let facts = StatusFacts {
            plan,
            pod_ip: self.sandbox.as_ref().map(|sandbox| sandbox.ip),
            host_ip: &self.node.host_ip,
            start_time: self.start_time,
            now: SystemTime::now(),
            runtime_scheme: self.node.runtime_scheme,
        };
        let status = pod_status(&basis, &self.records, &facts);
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.node.client.clone(), self.namespace());
        let patch = serde_json::json!({ "status": status });
        let params = PatchParams::default();
        let patch = Patch::Strategic(&patch);
        match tokio::time::timeout(API_TIMEOUT, pods.patch_status(self.name(), &params, &patch)).await {
            Ok(Ok(_)) => self.reported = Some(status),
            Ok(Err(kube::Error::Api(response))) if response.code == 404 => self.gone = true,
            Ok(Err(error)) => {
                tracing::debug!(pod = self.name(), %error, "reporting the pod's status");
                self.retry_at = Some(Instant::now() + RETRY_DELAY);
            }
            Err(_) => self.retry_at = Some(Instant::now() + RETRY_DELAY),
        }
    }

    /// Removes what the pod left on the node and, once its containers are gone, its API
    /// object. True when done.
    async fn clean_up(&mut self) -> bool {
        self.stop_probes_all();
        let uid = self.uid().to_owned();
        if let Ok(containers) = self.node.runtime.list_pod_containers(&uid).await {
            for info in &containers {
                let _ = self.node.runtime.remove_container(&info.id).await;
            }
        }
        if let Err(error) = self.node.runtime.remove_sandbox(&uid).await {
            tracing::warn!(pod = self.name(), %error, "removing the sandbox");
        }
        if self.gone {
            return true;
        }
        let pods: Api<Pod> = Api::namespaced(self.node.client.clone(), self.namespace());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        match tokio::time::timeout(API_TIMEOUT, pods.delete(self.name(), &params)).await {
            Ok(Ok(_)) => true,
            Ok(Err(kube::Error::Api(response))) if response.code == 404 || response.code == 409 => true,
            _ => {
                self.retry_at = Some(Instant::now() + RETRY_DELAY);
                false
            }
        }
    }
}

fn probe_of(container: &Container, kind: ProbeKind) -> Option<&k8s_openapi::api::core::v1::Probe> {
    match kind {
        ProbeKind::Startup => container.startup_probe.as_ref(),
        ProbeKind::Liveness => container.liveness_probe.as_ref(),
        ProbeKind::Readiness => container.readiness_probe.as_ref(),
    }
}

/// The names of the ConfigMaps and Secrets a pod refers to (environment and volumes).
fn referenced_objects(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    let Some(spec) = &pod.spec else { return (config_maps, secrets) };
    for container in spec.init_containers.iter().flatten().chain(&spec.containers) {
        for source in container.env_from.iter().flatten() {
            config_maps.extend(source.config_map_ref.as_ref().map(|reference| reference.name.clone()));
            secrets.extend(source.secret_ref.as_ref().map(|reference| reference.name.clone()));
        }
        for variable in container.env.iter().flatten() {
            let Some(from) = &variable.value_from else { continue };
            config_maps.extend(from.config_map_key_ref.as_ref().map(|reference| reference.name.clone()));
            secrets.extend(from.secret_key_ref.as_ref().map(|reference| reference.name.clone()));
        }
    }
    for volume in spec.volumes.iter().flatten() {
        config_maps.extend(volume.config_map.as_ref().map(|source| source.name.clone()));
        secrets.extend(volume.secret.as_ref().and_then(|source| source.secret_name.clone()));
        for projection in volume.projected.iter().flat_map(|projected| projected.sources.iter().flatten()) {
            config_maps.extend(projection.config_map.as_ref().map(|source| source.name.clone()));
            secrets.extend(projection.secret.as_ref().map(|source| source.name.clone()));
        }
    }
    config_maps.sort();
    config_maps.dedup();
    secrets.sort();
    secrets.dedup();
    (config_maps, secrets)
}
