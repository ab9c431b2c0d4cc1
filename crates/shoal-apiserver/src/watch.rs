//! Watch: a chunked stream of `{"type": …, "object": …}` lines read from the store's change log.
//!
//! A watch from resourceVersion `r` sends every change after `r`, in revision order, with no
//! gaps: it reads the store's log from `r + 1` whenever the store moves on, as the etcd watch
//! does. Without a resourceVersion (or with "0") it first sends the current objects as ADDED.
//! Selectors are applied to both sides of a change, so an object that stops matching is seen
//! as DELETED and one that starts matching as ADDED. A revision the store has compacted ends
//! the stream with an ERROR event carrying 410 Expired, which clients answer with a re-list.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use rand::Rng as _;
use serde_json::{Value, json};
use shoal_store::mvcc::{Event, EventKind, KeyValue, MvccError, Revision};
use shoal_store::request::KeyRange;
use tokio::sync::mpsc;

use crate::api::{Api, Call, JSON, METADATA_CONTENT_TYPE, Reply, Shape, TABLE_CONTENT_TYPE};
use crate::error::ApiError;
use crate::objects::{
    ListRequest, META_V1, ObjectStore, PARTIAL_METADATA_KIND, RawObject, ReadAt, partial_metadata,
};
use crate::read::{self, Filter};
use crate::resource::ResourceType;

/// Encoded events buffered per watch before the reader waits for the client.
const WATCH_BUFFER_EVENTS: usize = 256;
/// Store events read per pass over the change log.
const EVENTS_PER_READ: usize = 500;
/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);
/// A watch without timeoutSeconds ends after a random time in [30, 60) minutes, as in
/// Kubernetes, so reconnects of many clients spread out.
const DEFAULT_TIMEOUT_MIN: Duration = Duration::from_secs(30 * 60);

pub async fn watch(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let resource = target.resource;
    let mut filter = Filter::from_query(resource, &call.query)?;
    if let Some(name) = target.name {
        filter = filter.with_name(name);
    }
    let permit = api.watch_slots.clone().try_acquire_owned().map_err(|_| ApiError::TooManyRequests {
        message: format!("this server already serves {} watches", crate::api::WATCHES_MAX),
    })?;
    let shape = call.shape();
    let (sender, receiver) = mpsc::channel::<Bytes>(WATCH_BUFFER_EVENTS);
    let initial = match call.query.resource_version.as_deref() {
        None | Some("0") => {
            let read = if call.query.resource_version.is_some() { ReadAt::Any } else { ReadAt::Latest };
            Some(read)
        }
        Some(_) => None,
    };
    let start = match initial {
        Some(read) => {
            let matches = |object: &Value| filter.matches(object);
            let list = ListRequest {
                resource,
                namespace: target.namespace,
                read,
                limit: None,
                continue_token: None,
                filter: &matches,
            };
            let page = api.objects.list(&list).await?;
            for object in page.items {
                let line = encode_event(resource, "ADDED", object, shape, &call.query);
                // The buffer may be smaller than the initial list: send them as the client reads.
                if sender.send(line).await.is_err() {
                    break;
                }
            }
            page.revision
        }
        None => read::read_at(&call.query, false).map(|_| ()).and_then(|()| parse_revision(call))?,
    };
    let timeout = match call.query.timeout_seconds {
        Some(seconds) => Duration::from_secs(seconds),
        None => {
            DEFAULT_TIMEOUT_MIN
                + Duration::from_secs(rand::rng().random_range(0..DEFAULT_TIMEOUT_MIN.as_secs()))
        }
    };
    let watcher = Watcher {
        objects: api.objects.clone(),
        resource,
        range: KeyRange::prefix(ObjectStore::collection_prefix(resource, target.namespace)),
        filter,
        shape,
        query: call.query.clone(),
        bookmarks: call.query.allow_watch_bookmarks,
        sender,
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(timeout, watcher.run(start + 1)).await;
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (Ok::<_, std::convert::Infallible>(Frame::data(line)), receiver))
    });
    let body = http_body_util::StreamBody::new(stream.boxed()).boxed_unsync();
    let content_type = match shape {
        Shape::Objects => JSON,
        Shape::Table => TABLE_CONTENT_TYPE,
        Shape::Metadata => METADATA_CONTENT_TYPE,
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .expect("a response with valid headers builds");
    Ok(Reply::Raw(response))
}

fn parse_revision(call: &Call<'_>) -> Result<Revision, ApiError> {
    let text = call.query.resource_version.as_deref().unwrap_or("0");
    text.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version {text:?}")))
}

struct Watcher {
    objects: ObjectStore,
    resource: &'static ResourceType,
    range: KeyRange,
    filter: Filter,
    shape: Shape,
    query: crate::api::Query,
    bookmarks: bool,
    sender: mpsc::Sender<Bytes>,
}

impl Watcher {
    /// Sends every change from revision `next` on until the client goes away.
    async fn run(self, mut next: Revision) {
        let shared = self.objects.store().shared().clone();
        let mut applied = shared.revision.subscribe();
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        bookmark.reset();
        loop {
            applied.borrow_and_update();
            let read = {
                let machine = shared.machine.read().expect("state machine lock poisoned");
                let mvcc = machine.mvcc();
                mvcc.events(next, &self.range, EVENTS_PER_READ).map(|batch| (batch, mvcc.current_revision()))
            };
            let (batch, current) = match read {
                Ok(read) => read,
                Err(MvccError::Compacted { compact_revision }) => {
                    let _ = self.sender.send(expired(next - 1, compact_revision)).await;
                    return;
                }
                Err(error) => panic!("reading the change log from {next} failed: {error}"),
            };
            for event in batch.events {
                let Some(line) = self.encode(event) else { continue };
                if self.sender.send(line).await.is_err() {
                    return;
                }
            }
            next = batch.next_revision;
            if next <= current {
                continue;
            }
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = bookmark.tick(), if self.bookmarks => {
                    let line = bookmark_line(self.resource, self.shape, next - 1);
                    if self.sender.send(line).await.is_err() {
                        return;
                    }
                }
                () = self.sender.closed() => return,
            }
        }
    }

    /// The line for one store event, or `None` if the client's selectors see no change.
    ///
    /// Selectors need the objects parsed, to tell ADDED, MODIFIED and DELETED apart, and a
    /// Table needs its rows built; otherwise the line carries the stored JSON as it is, with
    /// its resourceVersion spliced in (`decode_raw`), so that a watcher pays a copy per event
    /// rather than a serialization. A watch without selectors (a controller's, the
    /// scheduler's) parses nothing at all, and neither does one that selects by name alone
    /// (`kubectl get <kind> <name> -w`, `kubectl wait`): the name is in the key.
    fn encode(&self, event: Event) -> Option<Bytes> {
        let by_name = if self.shape == Shape::Table { None } else { self.filter.by_name_only() };
        let kind = if let Some(name) = by_name {
            if name.is_some_and(|name| key_name(&event.kv.key) != name.as_bytes()) {
                return None;
            }
            match (&event.kind, &event.prev_kv) {
                (EventKind::Put, Some(_)) => "MODIFIED",
                (EventKind::Put, None) => "ADDED",
                (EventKind::Delete, _) => "DELETED",
            }
        } else {
            let (kind, object) = self.select(&event)?;
            if self.shape == Shape::Table {
                return Some(encode_event(self.resource, kind, object, self.shape, &self.query));
            }
            kind
        };
        let kv = match event.kind {
            EventKind::Put => event.kv,
            // The object as it was, at the revision of its deletion.
            EventKind::Delete => KeyValue { mod_revision: event.kv.mod_revision, ..event.prev_kv? },
        };
        match self.objects.decode_raw(self.resource, &kv) {
            Ok(object) if self.shape == Shape::Metadata => Some(raw_line(kind, &object.partial_metadata())),
            Ok(object) => Some(raw_line(kind, &object)),
            Err(error) => {
                tracing::error!(%error, "a watched object cannot be decoded; skipping it");
                None
            }
        }
    }

    /// What the client's selectors see of a change: ADDED, MODIFIED or DELETED and the object
    /// (for a deletion, as it was then), or `None` if they see no change.
    fn select(&self, event: &Event) -> Option<(&'static str, Value)> {
        let decode = |kv| match self.objects.decode(self.resource, kv) {
            Ok(stored) => Some(stored.object),
            Err(error) => {
                tracing::error!(%error, "a watched object cannot be decoded; skipping it");
                None
            }
        };
        let before = event.prev_kv.as_ref().and_then(decode).filter(|object| self.filter.matches(object));
        match event.kind {
            EventKind::Put => {
                let after = decode(&event.kv)?;
                match (before.is_some(), self.filter.matches(&after)) {
                    (false, true) => Some(("ADDED", after)),
                    (true, true) => Some(("MODIFIED", after)),
                    (true, false) => Some(("DELETED", after)),
                    (false, false) => None,
                }
            }
            EventKind::Delete => {
                let object = crate::objects::with_resource_version(before?, event.kv.mod_revision);
                Some(("DELETED", object))
            }
        }
    }
}

/// The name in an object's key: its last segment (names hold no `/`).
fn key_name(key: &[u8]) -> &[u8] {
    key.rsplit(|byte| *byte == b'/').next().unwrap_or(key)
}

/// `{"type": kind, "object": object}` and a newline, around an object already encoded.
fn raw_line(kind: &str, object: &RawObject) -> Bytes {
    let mut line = Vec::with_capacity(object.encoded_len() + kind.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    object.write_to(&mut line);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn encode_event(
    resource: &ResourceType,
    kind: &str,
    object: Value,
    shape: Shape,
    query: &crate::api::Query,
) -> Bytes {
    let object = match shape {
        Shape::Objects => object,
        Shape::Table => {
            let mut table = read::table(resource, std::slice::from_ref(&object), query);
            table["metadata"] =
                json!({"resourceVersion": crate::meta::metadata_str(&object, "resourceVersion")});
            table
        }
        Shape::Metadata => partial_metadata(&object),
    };
    line(&json!({"type": kind, "object": object}))
}

fn bookmark_line(resource: &ResourceType, shape: Shape, revision: Revision) -> Bytes {
    let (kind, api_version) = match shape {
        Shape::Metadata => (PARTIAL_METADATA_KIND.to_owned(), META_V1.to_owned()),
        Shape::Objects | Shape::Table => (resource.kind.to_owned(), resource.api_version()),
    };
    line(&json!({
        "type": "BOOKMARK",
        "object": {
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": revision.to_string()},
        },
    }))
}

fn expired(requested: Revision, compact_revision: Revision) -> Bytes {
    let error =
        ApiError::Expired { message: format!("too old resource version: {requested} ({compact_revision})") };
    line(&json!({"type": "ERROR", "object": error.status()}))
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("JSON values serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_key_s_last_segment() {
        assert_eq!(key_name(b"/registry/core/configmaps/default/web"), b"web");
        assert_eq!(key_name(b"/registry/core/namespaces/kube-system"), b"kube-system");
    }

    // A line built around encoded bytes is the line the parsing path builds.
    #[test]
    fn a_raw_line_reads_as_the_parsed_one() {
        let object = json!({"kind": "Pod", "metadata": {"resourceVersion": "7", "name": "a\"b"}});
        let raw = raw_line("MODIFIED", &RawObject::serialized(&object));
        assert!(raw.ends_with(b"\n"));
        let parsed: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(parsed, json!({"type": "MODIFIED", "object": object}));
    }
}
