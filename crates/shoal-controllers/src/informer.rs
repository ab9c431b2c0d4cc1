//! A shared informer: one watch and one cache of a kind for every controller that reads it, as
//! client-go's `SharedInformerFactory` gives kube-controller-manager.
//!
//! Each controller used to watch pods itself. On a busy cluster every pod event was then
//! decoded, cloned into a cache and kept once per controller; now it is decoded and cached once
//! and handed to every subscriber as one `Arc` (the cache's own for an applied object).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::mpsc;

/// Updates queued for one subscriber; the informer waits for a subscriber that falls this far
/// behind, as a watch waits for a reader that does not read.
pub const UPDATES_QUEUED_MAX: usize = 1024;

/// One watch event as a subscriber sees it, after the cache has taken it.
#[derive(Debug)]
pub struct Update<K> {
    pub event: watcher::Event<Arc<K>>,
    /// Whether the cache held the object before this event: false for an object it first sees.
    pub was_cached: bool,
}

/// The cache of one kind and the subscribers to its watch. Subscribe first, then [`run`] it.
///
/// [`run`]: Informer::run
pub struct Informer<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    subscribers: Vec<mpsc::Sender<Update<K>>>,
}

impl<K> Default for Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Informer { store, writer, subscribers: Vec::new() }
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// The shared cache, filled as [`run`](Informer::run) goes.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every update from now on, in the watch's order. A subscriber that is dropped stops
    /// receiving; the others go on.
    pub fn subscribe(&mut self) -> impl Stream<Item = Update<K>> + Send + use<K> {
        let (sender, mut receiver) = mpsc::channel(UPDATES_QUEUED_MAX);
        self.subscribers.push(sender);
        futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
    }

    /// Whether anyone subscribed; an informer without subscribers has nothing to run for.
    pub fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Applies `events` to the cache and hands each to every subscriber, until `events` ends or
    /// every subscriber is gone. A watch error is logged; the watch retries by itself.
    pub async fn run(mut self, events: impl Stream<Item = watcher::Result<watcher::Event<K>>>) {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%kind, %error, "shared watch failed");
                    continue;
                }
            };
            let update = self.take(event);
            if !self.hand_out(update).await {
                return;
            }
        }
    }

    /// Applies `event` to the cache and turns it into an update that shares the cache's object.
    fn take(&mut self, event: watcher::Event<K>) -> Update<K> {
        let key = |object: &K| ObjectRef::from_obj(object);
        let cached = |object: &K| self.store.get(&key(object));
        let was_cached = match &event {
            watcher::Event::Apply(object)
            | watcher::Event::Delete(object)
            | watcher::Event::InitApply(object) => cached(object).is_some(),
            watcher::Event::Init | watcher::Event::InitDone => false,
        };
        self.writer.apply_watcher_event(&event);
        let event = match event {
            watcher::Event::Apply(object) => {
                watcher::Event::Apply(cached(&object).unwrap_or_else(|| Arc::new(object)))
            }
            watcher::Event::Delete(object) => watcher::Event::Delete(Arc::new(object)),
            watcher::Event::InitApply(object) => watcher::Event::InitApply(Arc::new(object)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitDone => watcher::Event::InitDone,
        };
        Update { event, was_cached }
    }

    /// Sends `update` to every subscriber still there; false once none is.
    async fn hand_out(&mut self, update: Update<K>) -> bool {
        let mut gone = Vec::new();
        for (index, subscriber) in self.subscribers.iter().enumerate() {
            let copy = Update { event: update.event.clone(), was_cached: update.was_cached };
            if subscriber.send(copy).await.is_err() {
                gone.push(index);
            }
        }
        for index in gone.into_iter().rev() {
            self.subscribers.swap_remove(index);
        }
        !self.subscribers.is_empty()
    }
}

#[cfg(test)]
mod tests;
