//! core/v1 Events from the controllers (`SuccessfulCreate`, `ScalingReplicaSet`, …), as
//! `kubectl describe` shows them. Best effort: events wait in a bounded queue and are dropped
//! when it is full or a send fails; a controller never waits for one.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt as _};
use tokio::sync::mpsc;

use crate::REQUEST_TIMEOUT;

/// Events waiting to be sent; more are dropped while the API is slow.
pub const EVENTS_QUEUED_MAX: usize = 512;

/// One event about `object`.
#[derive(Clone, Debug)]
struct Occurrence {
    object: ObjectReference,
    warning: bool,
    reason: String,
    message: String,
}

/// Queues events for [`send_events`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    component: &'static str,
    queue: mpsc::Sender<(&'static str, Occurrence)>,
}

/// The receiving end of every `Recorder` made by [`channel`].
pub struct Receiver(mpsc::Receiver<(&'static str, Occurrence)>);

/// A recorder factory and the receiver `send_events` drains.
pub fn channel() -> (RecorderFactory, Receiver) {
    let (queue, pending) = mpsc::channel(EVENTS_QUEUED_MAX);
    (RecorderFactory { queue }, Receiver(pending))
}

/// Makes recorders that share one queue, each naming its controller as the event source.
#[derive(Clone, Debug)]
pub struct RecorderFactory {
    queue: mpsc::Sender<(&'static str, Occurrence)>,
}

impl RecorderFactory {
    pub fn recorder(&self, component: &'static str) -> Recorder {
        Recorder { component, queue: self.queue.clone() }
    }
}

impl Recorder {
    pub fn normal<K: Resource<DynamicType = ()>>(&self, object: &K, reason: &str, message: String) {
        self.record(object, false, reason, message);
    }

    pub fn warning<K: Resource<DynamicType = ()>>(&self, object: &K, reason: &str, message: String) {
        self.record(object, true, reason, message);
    }

    fn record<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let object = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            namespace: object.namespace(),
            name: Some(object.name_any()),
            uid: object.uid(),
            resource_version: object.resource_version(),
            ..ObjectReference::default()
        };
        let occurrence = Occurrence { object, warning, reason: reason.to_owned(), message };
        if self.queue.try_send((self.component, occurrence)).is_err() {
            tracing::debug!(reason, "controller event queue full; event dropped");
        }
    }
}

/// Sends queued events until every recorder is gone or the future is dropped.
pub async fn send_events(client: Client, Receiver(mut pending): Receiver) {
    while let Some((component, occurrence)) = pending.recv().await {
        let namespace = occurrence.object.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let event = new_event(component, occurrence, &namespace, Timestamp::now());
        match tokio::time::timeout(REQUEST_TIMEOUT, events.create(&PostParams::default(), &event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "sending a controller event failed"),
            Err(_elapsed) => tracing::debug!("sending a controller event timed out"),
        }
    }
}

fn new_event(component: &str, occurrence: Occurrence, namespace: &str, now: Timestamp) -> Event {
    let object_name = occurrence.object.name.clone().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            // Kubernetes' naming: the object's name and a hex timestamp.
            name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        involved_object: occurrence.object,
        reason: Some(occurrence.reason),
        message: Some(occurrence.message),
        type_: Some(if occurrence.warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource { component: Some(component.into()), host: None }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        ..Event::default()
    }
}
