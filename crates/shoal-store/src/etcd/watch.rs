//! etcd's `Watch` service: ordered, gap-free change streams from any uncompacted revision.
//!
//! Watchers pull. Each watch remembers the next revision it owes its client and reads the
//! change log from there whenever the applied revision moves; it never holds events of its
//! own. A slow client therefore costs nothing but its place in the log: its watcher waits on
//! the bounded response channel and resumes where it stopped, so no event is lost or
//! duplicated, and a watch whose place was compacted away is cancelled with the compact
//! revision, as etcd does.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::etcd::convert::event_to_proto;
use crate::etcd::proto::etcdserverpb::{self as pb, watch_request::RequestUnion};
use crate::etcd::status::header;
use crate::limits::{MAX_EVENTS_PER_WATCH_RESPONSE, MAX_WATCH_STREAMS, MAX_WATCHES_PER_STREAM};
use crate::mvcc::{EventKind, MvccError, Revision};
use crate::request::KeyRange;
use crate::store::Store;

/// Responses buffered per stream; a client that reads slower than this makes its watchers wait.
const WATCH_RESPONSE_BUFFER: usize = 64;

/// How often an idle watch that asked for progress notifications gets one. etcd's default is
/// ten minutes; shoal's clients (the API server's bookmarks) want to hear sooner.
pub const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(10);

/// The watch id etcd uses for answers that concern the whole stream.
const STREAM_WATCH_ID: i64 = -1;

pub struct WatchService {
    store: Store,
    streams: Arc<Semaphore>,
}

impl WatchService {
    pub fn new(store: Store) -> Self {
        WatchService { store, streams: Arc::new(Semaphore::new(MAX_WATCH_STREAMS)) }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;
type Responses = mpsc::Sender<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!("shoal: too many watch streams (limit {MAX_WATCH_STREAMS})"))
        })?;
        let (sender, receiver) = mpsc::channel(WATCH_RESPONSE_BUFFER);
        let stream =
            StreamState { store: self.store.clone(), responses: sender, watches: HashMap::new(), next_id: 0 };
        let requests = request.into_inner();
        tokio::spawn(async move {
            stream.serve(requests).await;
            drop(permit);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

struct StreamState {
    store: Store,
    responses: Responses,
    watches: HashMap<i64, ActiveWatch>,
    next_id: i64,
}

struct ActiveWatch {
    task: JoinHandle<()>,
    /// The next revision this watch owes its client: everything below has been sent.
    next_revision: Arc<AtomicI64>,
    /// Fired once the "created" answer is queued, so the watcher's events follow it.
    start_signal: Option<tokio::sync::oneshot::Sender<()>>,
}

impl StreamState {
    async fn serve(mut self, mut requests: Streaming<pb::WatchRequest>) {
        while let Some(Ok(request)) = requests.next().await {
            let answer = match request.request_union {
                Some(RequestUnion::CreateRequest(create)) => Ok(self.create(create)),
                Some(RequestUnion::CancelRequest(cancel)) => Ok(self.cancel(cancel.watch_id)),
                Some(RequestUnion::ProgressRequest(_)) => Ok(self.progress()),
                None => Err(Status::invalid_argument("etcdserver: watch request without a request")),
            };
            if self.responses.send(answer).await.is_err() {
                break;
            }
            for watch in self.watches.values_mut() {
                if let Some(start) = watch.start_signal.take() {
                    let _ = start.send(());
                }
            }
        }
        for (_, watch) in self.watches.drain() {
            watch.task.abort();
        }
    }

    fn response(&self, watch_id: i64, revision: Revision) -> pb::WatchResponse {
        pb::WatchResponse { header: Some(header(&self.store, revision)), watch_id, ..Default::default() }
    }

    /// Answers "created" (or "created and cancelled" when refused). The answer is queued by the
    /// caller before the new watcher can queue any event: the watcher starts only after it.
    fn create(&mut self, create: pb::WatchCreateRequest) -> pb::WatchResponse {
        let current = self.store.revision();
        let id = if create.watch_id != 0 { create.watch_id } else { self.allocate_id() };
        if self.watches.contains_key(&id) || self.watches.len() >= MAX_WATCHES_PER_STREAM {
            let reason = if self.watches.contains_key(&id) {
                "etcdserver: duplicate watch id".to_string()
            } else {
                format!("shoal: too many watches on one stream (limit {MAX_WATCHES_PER_STREAM})")
            };
            return pb::WatchResponse {
                created: true,
                canceled: true,
                cancel_reason: reason,
                ..self.response(id, current)
            };
        }
        let start = if create.start_revision > 0 { create.start_revision } else { current + 1 };
        let next_revision = Arc::new(AtomicI64::new(start));
        let watcher = Watcher {
            id,
            store: self.store.clone(),
            range: KeyRange { key: create.key, range_end: create.range_end },
            prev_kv: create.prev_kv,
            skip_puts: create.filters.contains(&(pb::watch_create_request::FilterType::Noput as i32)),
            skip_deletes: create.filters.contains(&(pb::watch_create_request::FilterType::Nodelete as i32)),
            progress_notify: create.progress_notify,
            next_revision: next_revision.clone(),
            responses: self.responses.clone(),
        };
        let (start_signal, started) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if started.await.is_ok() {
                watcher.run().await;
            }
        });
        self.watches.insert(id, ActiveWatch { task, next_revision, start_signal: Some(start_signal) });
        pb::WatchResponse { created: true, ..self.response(id, current) }
    }

    fn allocate_id(&mut self) -> i64 {
        while self.watches.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn cancel(&mut self, watch_id: i64) -> pb::WatchResponse {
        if let Some(watch) = self.watches.remove(&watch_id) {
            watch.task.abort();
        }
        pb::WatchResponse { canceled: true, ..self.response(watch_id, self.store.revision()) }
    }

    /// Every event up to the returned header revision has been sent on this stream.
    fn progress(&self) -> pb::WatchResponse {
        let current = self.store.revision();
        let sent_through = self
            .watches
            .values()
            .map(|watch| watch.next_revision.load(Ordering::Acquire) - 1)
            .min()
            .unwrap_or(current)
            .min(current);
        self.response(STREAM_WATCH_ID, sent_through)
    }
}

/// One watch: reads the change log from its next revision whenever the store moves on.
struct Watcher {
    id: i64,
    store: Store,
    range: KeyRange,
    prev_kv: bool,
    skip_puts: bool,
    skip_deletes: bool,
    progress_notify: bool,
    next_revision: Arc<AtomicI64>,
    responses: Responses,
}

impl Watcher {
    async fn run(self) {
        let mut applied = self.store.shared().revision.subscribe();
        let mut progress = tokio::time::interval(PROGRESS_NOTIFY_INTERVAL);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        progress.reset();
        let mut sent_since_tick = false;
        loop {
            applied.borrow_and_update();
            let next = self.next_revision.load(Ordering::Acquire);
            let read = {
                let machine = self.store.shared().machine.read().expect("state machine lock poisoned");
                let mvcc = machine.mvcc();
                mvcc.events(next, &self.range, MAX_EVENTS_PER_WATCH_RESPONSE)
                    .map(|batch| (batch, mvcc.current_revision()))
            };
            let (batch, current) = match read {
                Ok(read) => read,
                Err(MvccError::Compacted { compact_revision }) => {
                    let _ = self.responses.send(Ok(self.compacted(compact_revision))).await;
                    return;
                }
                Err(error) => panic!("reading the change log from {next} failed: {error}"),
            };
            let events: Vec<_> = batch
                .events
                .into_iter()
                .filter(|event| self.wanted(event.kind))
                .map(|mut event| {
                    if !self.prev_kv {
                        event.prev_kv = None;
                    }
                    event_to_proto(event)
                })
                .collect();
            if !events.is_empty() {
                let response = pb::WatchResponse { events, ..self.response(current) };
                if self.responses.send(Ok(response)).await.is_err() {
                    return;
                }
                sent_since_tick = true;
            }
            self.next_revision.store(batch.next_revision, Ordering::Release);
            if batch.next_revision <= current {
                continue; // more history to catch up on
            }
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = progress.tick(), if self.progress_notify => {
                    if !sent_since_tick {
                        // Caught up and idle: everything through `current` has been sent.
                        if self.responses.send(Ok(self.response(current))).await.is_err() {
                            return;
                        }
                    }
                    sent_since_tick = false;
                }
            }
        }
    }

    fn wanted(&self, kind: EventKind) -> bool {
        match kind {
            EventKind::Put => !self.skip_puts,
            EventKind::Delete => !self.skip_deletes,
        }
    }

    fn response(&self, revision: Revision) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(header(&self.store, revision)),
            watch_id: self.id,
            ..Default::default()
        }
    }

    fn compacted(&self, compact_revision: Revision) -> pb::WatchResponse {
        pb::WatchResponse {
            canceled: true,
            compact_revision,
            cancel_reason: format!(
                "etcdserver: mvcc: required revision has been compacted (compact revision {compact_revision})"
            ),
            ..self.response(self.store.revision())
        }
    }
}
