//! Events about pods and the node (core/v1 Event, as `kubectl describe` and `kubectl get
//! events` show them), sent in the background so a slow or absent API never holds up a pod.
//!
//! Like kubelet's event correlator, a repeat of the same event for the same object within
//! [`REPEAT_WINDOW`] bumps the first one's `count` and `lastTimestamp` instead of adding another.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::mpsc;

/// Events waiting to be sent; more are dropped (and counted in the log) while the API is away.
pub const EVENTS_QUEUED_MAX: usize = 1_024;
/// Repeats within this window are folded into one event.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(600);
/// Distinct recent events remembered for folding.
const REMEMBERED_MAX: usize = 4_096;
/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// One thing that happened to an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub object: ObjectReference,
    pub event_type: EventType,
    pub reason: String,
    pub message: String,
}

/// A handle that queues events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Occurrence>,
}

impl Recorder {
    /// Starts the sender for events the agent of `node` reports.
    pub fn start(client: Client, node: String) -> Self {
        let (queue, pending) = mpsc::channel(EVENTS_QUEUED_MAX);
        tokio::spawn(send_all(client, node, pending));
        Self { queue }
    }

    /// A recorder whose events go nowhere (tests of components that emit events).
    pub fn discard() -> Self {
        let (queue, mut pending) = mpsc::channel::<Occurrence>(EVENTS_QUEUED_MAX);
        tokio::spawn(async move { while pending.recv().await.is_some() {} });
        Self { queue }
    }

    pub fn record(
        &self,
        object: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let occurrence =
            Occurrence { object: object.clone(), event_type, reason: reason.into(), message: message.into() };
        if self.queue.try_send(occurrence).is_err() {
            tracing::debug!(reason, "event queue full or closed; event dropped");
        }
    }
}

/// The key repeats are folded by.
type Key = (String, String, String, String);

async fn send_all(client: Client, node: String, mut pending: mpsc::Receiver<Occurrence>) {
    let mut sent: HashMap<Key, (String, i32, Instant)> = HashMap::new();
    while let Some(occurrence) = pending.recv().await {
        let namespace = occurrence.object.namespace.clone().unwrap_or_else(|| "default".into());
        let key = (
            occurrence.object.uid.clone().unwrap_or_default(),
            occurrence.object.field_path.clone().unwrap_or_default(),
            occurrence.reason.clone(),
            occurrence.message.clone(),
        );
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let now = jiff::Timestamp::now();
        let repeat = sent.get(&key).filter(|(_, _, at)| at.elapsed() < REPEAT_WINDOW).cloned();
        let result = match repeat {
            Some((name, count, _)) => {
                let patch = serde_json::json!({
                    "count": count + 1,
                    "lastTimestamp": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
                });
                let params = PatchParams::default();
                let patch = Patch::Merge(&patch);
                match tokio::time::timeout(SEND_TIMEOUT, events.patch(&name, &params, &patch)).await {
                    Ok(Ok(_)) => Ok((name, count + 1)),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("timed out".into()),
                }
            }
            None => {
                let event = new_event(&occurrence, &namespace, &node, now);
                let name = event.metadata.name.clone().unwrap_or_default();
                match tokio::time::timeout(SEND_TIMEOUT, events.create(&PostParams::default(), &event)).await
                {
                    Ok(Ok(_)) => Ok((name, 1)),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("timed out".into()),
                }
            }
        };
        match result {
            Ok((name, count)) => {
                if sent.len() >= REMEMBERED_MAX {
                    sent.retain(|_, (_, _, at)| at.elapsed() < REPEAT_WINDOW);
                    if sent.len() >= REMEMBERED_MAX {
                        sent.clear();
                    }
                }
                sent.insert(key, (name, count, Instant::now()));
            }
            Err(error) => tracing::debug!(reason = occurrence.reason, %error, "sending an event failed"),
        }
    }
}

fn new_event(occurrence: &Occurrence, namespace: &str, node: &str, now: jiff::Timestamp) -> Event {
    let object_name = occurrence.object.name.clone().unwrap_or_default();
    let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
    Event {
        metadata: ObjectMeta {
            // Kubernetes' naming: the object's name and a hex timestamp.
            name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        involved_object: occurrence.object.clone(),
        reason: Some(occurrence.reason.clone()),
        message: Some(occurrence.message.clone()),
        type_: Some(match occurrence.event_type {
            EventType::Normal => "Normal".into(),
            EventType::Warning => "Warning".into(),
        }),
        source: Some(EventSource { component: Some("kubelet".into()), host: Some(node.into()) }),
        first_timestamp: Some(time.clone()),
        last_timestamp: Some(time),
        event_time: None::<MicroTime>,
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.into()),
        ..Event::default()
    }
}
