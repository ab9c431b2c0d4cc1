//! The autoscaler's effects: a watch cache of HPAs; every sync period (and at once for a new
//! or changed HPA) a read of each one's target scale, pods and pod metrics, the decision, the
//! scale write, the events and the status write.
//!
//! The scale write carries the resourceVersion of the Scale read, and the status write that of
//! the HPA read: a 409 leaves the work to the next pass. Everything runs inside the future
//! `run` returns, without spawned tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec};
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use serde_json::Value;
use tokio::sync::watch;

use super::{Config, History, Observed, PodUsage, Scale, decide};
use crate::kinds::{GroupKind, ServedKind};
use crate::{REQUEST_TIMEOUT, RESYNC_INTERVAL, quantity};

/// HPAs synced at once.
const SYNCS_IN_FLIGHT_MAX: usize = 4;
/// A warning event repeated within this long is not sent again (upstream's recorder folds
/// repeats into a count instead).
const WARNING_REPEAT_INTERVAL: Duration = Duration::from_secs(300);
/// Distinct warnings remembered per HPA for that.
const WARNINGS_REMEMBERED_MAX: usize = 32;
/// The component events are reported by, upstream's.
const COMPONENT: &str = "horizontal-pod-autoscaler";
/// The field manager of the autoscaler's writes.
const FIELD_MANAGER: &str = "shoal-horizontal-pod-autoscaler";

/// Runs the autoscaler over the HPAs of every namespace until the future is dropped; `kinds`
/// resolve scale targets.
pub async fn run(client: Client, kinds: &[ServedKind], config: Config) {
    let (store, writer) = reflector::store::<HorizontalPodAutoscaler>();
    let (changed, changes) = watch::channel(());
    let watch = async {
        let api = Api::<HorizontalPodAutoscaler>::all(client.clone());
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
        let mut events = std::pin::pin!(stream);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => {
                    changed.send_replace(());
                }
                Err(error) => tracing::warn!(%error, "autoscaler watch failed"),
            }
        }
    };
    let syncs = run_syncs(&client, kinds, &store, changes, &config);
    futures::future::join(watch, syncs).await;
}

/// What the runtime keeps per HPA between passes.
#[derive(Default)]
struct Tracked {
    last_sync: Option<Instant>,
    /// The spec the last pass saw: a changed spec is synced at once.
    spec: Option<HorizontalPodAutoscalerSpec>,
    history: History,
    warnings_sent: BTreeMap<(String, String), Instant>,
}

async fn run_syncs(
    client: &Client,
    kinds: &[ServedKind],
    store: &Store<HorizontalPodAutoscaler>,
    mut changes: watch::Receiver<()>,
    config: &Config,
) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let hpas = store.state();
        let uid = |hpa: &HorizontalPodAutoscaler| hpa.uid().unwrap_or_default();
        let existing: std::collections::HashSet<String> = hpas.iter().map(|hpa| uid(hpa)).collect();
        tracked.retain(|key, _| existing.contains(key));
        let due: Vec<Arc<HorizontalPodAutoscaler>> = hpas
            .into_iter()
            .filter(|hpa| match tracked.get(&uid(hpa)) {
                None => true,
                Some(seen) => {
                    seen.spec != hpa.spec
                        || seen.last_sync.is_none_or(|last| last.elapsed() >= config.sync_period)
                }
            })
            .collect();
        let due: Vec<(Arc<HorizontalPodAutoscaler>, Tracked)> = due
            .into_iter()
            .map(|hpa| {
                let seen = tracked.remove(&uid(&hpa)).unwrap_or_default();
                (hpa, seen)
            })
            .collect();
        let synced: Vec<(String, Tracked)> = futures::stream::iter(due)
            .map(|(hpa, mut seen)| async move {
                sync(client, kinds, &hpa, &mut seen, config).await;
                seen.last_sync = Some(Instant::now());
                seen.spec = hpa.spec.clone();
                (hpa.uid().unwrap_or_default(), seen)
            })
            .buffer_unordered(SYNCS_IN_FLIGHT_MAX)
            .collect()
            .await;
        tracked.extend(synced);
        let next = tracked
            .values()
            .filter_map(|seen| seen.last_sync)
            .map(|last| last + config.sync_period)
            .min()
            .unwrap_or_else(|| Instant::now() + RESYNC_INTERVAL);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

/// One pass over one HPA.
async fn sync(
    client: &Client,
    kinds: &[ServedKind],
    hpa: &HorizontalPodAutoscaler,
    tracked: &mut Tracked,
    config: &Config,
) {
    let namespace = hpa.namespace().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let target = &spec.scale_target_ref;
    let scale_api =
        scale_api(client, kinds, &namespace, target.api_version.as_deref().unwrap_or(""), &target.kind);
    let scale = match &scale_api {
        Ok(api) => timed(api.get_scale(&target.name)).await,
        Err(error) => Err(error.clone()),
    };
    let observed_scale = scale.as_ref().map_err(Clone::clone).map(|scale| Scale {
        replicas: scale.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(0),
        selector: scale.status.as_ref().and_then(|status| status.selector.clone()).unwrap_or_default(),
    });
    let (pods, metrics) = match &observed_scale {
        Ok(scale) if !scale.selector.is_empty() => {
            futures::future::join(
                list_pods(client, &namespace, &scale.selector),
                list_metrics(client, &namespace, &scale.selector),
            )
            .await
        }
        _ => (Err("not read".to_owned()), Err("not read".to_owned())),
    };
    let observed = Observed { scale: observed_scale, pods, metrics };
    let mut plan = decide(hpa, &observed, &mut tracked.history, config, Timestamp::now());
    if let (Some(rescale), Ok(api), Ok(scale)) = (&plan.rescale, &scale_api, &scale) {
        let mut body = scale.clone();
        body.spec.get_or_insert_with(Default::default).replicas = Some(rescale.to);
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        match timed(api.replace_scale(&target.name, &params, &body)).await {
            Ok(_) => {
                tracing::info!(
                    namespace,
                    hpa = hpa.name_any(),
                    from = rescale.from,
                    to = rescale.to,
                    "rescaled"
                );
                plan.rescale_succeeded(&mut tracked.history, hpa);
            }
            Err(error) => plan.rescale_failed(&error),
        }
    }
    for event in &plan.events {
        if event.warning && !first_in_a_while(&mut tracked.warnings_sent, event) {
            continue;
        }
        send_event(client, hpa, event).await;
    }
    if hpa.status.as_ref() != Some(&plan.status) {
        let mut body = hpa.clone();
        body.status = Some(plan.status);
        body.metadata.managed_fields = None;
        let api = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &namespace);
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        if let Err(error) = timed(api.replace_status(&hpa.name_any(), &params, &body)).await {
            // A conflict is a newer HPA, which the next pass reads.
            tracing::debug!(namespace, hpa = hpa.name_any(), error, "autoscaler status not written");
        }
    }
}

/// A request with the controllers' timeout, its error as a message.
async fn timed<T>(request: impl std::future::Future<Output = Result<T, kube::Error>>) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(kube::Error::Api(status))) => Err(status.message.clone()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_elapsed) => Err(format!("the request timed out after {REQUEST_TIMEOUT:?}")),
    }
}

/// The scale subresource of the kind a scaleTargetRef names, or upstream's error.
fn scale_api(
    client: &Client,
    kinds: &[ServedKind],
    namespace: &str,
    api_version: &str,
    kind: &str,
) -> Result<Api<DynamicObject>, String> {
    let group_kind = GroupKind::from_api_version(api_version, kind);
    let served = kinds.iter().find(|served| served.group_kind == group_kind).ok_or_else(|| {
        format!("unable to determine resource for scale target reference: no matches for kind {kind:?} in group {:?}", group_kind.group)
    })?;
    Ok(Api::namespaced_with(client.clone(), namespace, &served.resource))
}

async fn list_pods(client: &Client, namespace: &str, selector: &str) -> Result<Vec<Pod>, String> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    timed(api.list(&ListParams::default().labels(selector))).await.map(|list| list.items)
}

async fn list_metrics(client: &Client, namespace: &str, selector: &str) -> Result<Vec<PodUsage>, String> {
    let resource = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource);
    let list = timed(api.list(&ListParams::default().labels(selector))).await?;
    Ok(list.items.iter().filter_map(pod_usage).collect())
}

/// A PodMetrics item as the decision reads it; None for one it cannot read.
pub(super) fn pod_usage(item: &DynamicObject) -> Option<PodUsage> {
    let timestamp: Timestamp = item.data.get("timestamp")?.as_str()?.parse().ok()?;
    let window = go_duration(item.data.get("window")?.as_str()?)?;
    let mut containers = BTreeMap::new();
    for container in item.data.get("containers")?.as_array()? {
        let usage: BTreeMap<String, i64> = container
            .get("usage")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(resource, value)| Some((resource.clone(), quantity::milli_value(value.as_str()?)?)))
            .collect();
        containers.insert(container.get("name")?.as_str()?.to_owned(), usage);
    }
    Some(PodUsage { pod: item.name_any(), timestamp, window, containers })
}

/// A Go duration (`1.002s`, `1m30s`, `500ms`), as metav1.Duration writes one.
pub(super) fn go_duration(text: &str) -> Option<SignedDuration> {
    if text == "0" {
        return Some(SignedDuration::ZERO);
    }
    let mut rest = text;
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_end);
        let number: f64 = number.parse().ok()?;
        let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * seconds;
        rest = tail;
    }
    SignedDuration::try_from_secs_f64(total).ok()
}

/// Whether `event` was not sent within [`WARNING_REPEAT_INTERVAL`]; remembers it.
fn first_in_a_while(sent: &mut BTreeMap<(String, String), Instant>, event: &super::Event) -> bool {
    let key = (event.reason.clone(), event.message.clone());
    if sent.get(&key).is_some_and(|at| at.elapsed() < WARNING_REPEAT_INTERVAL) {
        return false;
    }
    if sent.len() >= WARNINGS_REMEMBERED_MAX {
        let oldest = sent.iter().min_by_key(|(_, at)| **at).map(|(key, _)| key.clone());
        sent.remove(&oldest.expect("a full map"));
    }
    sent.insert(key, Instant::now());
    true
}

/// Creates a core/v1 Event about `hpa`, as upstream's recorder does; failures are logged.
async fn send_event(client: &Client, hpa: &HorizontalPodAutoscaler, event: &super::Event) {
    let now = Timestamp::now();
    let namespace = hpa.namespace().unwrap_or_default();
    let body = CoreEvent {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", hpa.name_any(), now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("autoscaling/v2".to_owned()),
            kind: Some("HorizontalPodAutoscaler".to_owned()),
            name: Some(hpa.name_any()),
            namespace: Some(namespace.clone()),
            uid: hpa.uid(),
            resource_version: hpa.resource_version(),
            ..ObjectReference::default()
        },
        reason: Some(event.reason.clone()),
        message: Some(event.message.clone()),
        type_: Some(if event.warning { "Warning" } else { "Normal" }.to_owned()),
        source: Some(EventSource { component: Some(COMPONENT.to_owned()), host: None }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: None::<MicroTime>,
        count: Some(1),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(COMPONENT.to_owned()),
        ..CoreEvent::default()
    };
    let api = Api::<CoreEvent>::namespaced(client.clone(), &namespace);
    if let Err(error) = timed(api.create(&PostParams::default(), &body)).await {
        tracing::warn!(
            namespace,
            hpa = hpa.name_any(),
            reason = event.reason,
            error,
            "autoscaler event not sent"
        );
    }
}
