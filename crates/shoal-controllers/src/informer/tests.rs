use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};

use super::{Informer, Update};

fn pod(name: &str, resource_version: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            resource_version: Some(resource_version.to_owned()),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    }
}

/// A compact form of an update: what happened, to which object at which version, and whether
/// the cache knew the object before.
fn describe(update: &Update<Pod>) -> String {
    let object = |pod: &Arc<Pod>| {
        format!(
            "{}@{}",
            pod.metadata.name.as_deref().unwrap(),
            pod.metadata.resource_version.as_deref().unwrap()
        )
    };
    let event = match &update.event {
        Event::Apply(pod) => format!("apply {}", object(pod)),
        Event::Delete(pod) => format!("delete {}", object(pod)),
        Event::InitApply(pod) => format!("init-apply {}", object(pod)),
        Event::Init => "init".to_owned(),
        Event::InitDone => "init-done".to_owned(),
    };
    format!("{event} cached={}", update.was_cached)
}

fn events(events: Vec<Event<Pod>>) -> impl futures::Stream<Item = watcher::Result<Event<Pod>>> {
    futures::stream::iter(events.into_iter().map(Ok))
}

// A relist and three changes reach both subscribers in the watch's order, each marked with
// whether the cache held the object before; the cache ends with the latest versions, and an
// applied object reaches subscribers as the very `Arc` the cache holds.
#[tokio::test]
async fn every_subscriber_sees_every_update_in_order_after_the_cache() {
    let mut informer = Informer::<Pod>::default();
    let store = informer.store();
    let first = informer.subscribe();
    let second = informer.subscribe();
    let watch = events(vec![
        Event::Init,
        Event::InitApply(pod("a", "1")),
        Event::InitDone,
        Event::Apply(pod("b", "2")),
        Event::Apply(pod("a", "3")),
        Event::Delete(pod("b", "4")),
    ]);
    informer.run(watch).await;

    let first: Vec<Update<Pod>> = first.collect().await;
    let second: Vec<Update<Pod>> = second.collect().await;
    let expected = [
        "init cached=false",
        "init-apply a@1 cached=false",
        "init-done cached=false",
        "apply b@2 cached=false",
        "apply a@3 cached=true",
        "delete b@4 cached=true",
    ];
    assert_eq!(first.iter().map(describe).collect::<Vec<_>>(), expected);
    assert_eq!(second.iter().map(describe).collect::<Vec<_>>(), expected);

    let cached = store.get(&ObjectRef::new("a").within("default")).expect("a is cached");
    assert_eq!(cached.metadata.resource_version.as_deref(), Some("3"));
    assert!(store.get(&ObjectRef::new("b").within("default")).is_none());
    // Subscribers share the cache's object rather than copies of it.
    let Event::Apply(handed) = &first[4].event else { panic!("the fifth update applies a") };
    assert!(Arc::ptr_eq(handed, &cached));
    let Event::Apply(handed) = &second[4].event else { panic!("the fifth update applies a") };
    assert!(Arc::ptr_eq(handed, &cached));
}

// A subscriber dropped before the watch starts does not stop the others' updates.
#[tokio::test]
async fn a_dropped_subscriber_leaves_the_others_served() {
    let mut informer = Informer::<Pod>::default();
    let kept = informer.subscribe();
    drop(informer.subscribe());
    informer.run(events(vec![Event::Apply(pod("a", "1")), Event::Apply(pod("a", "2"))])).await;
    let kept: Vec<String> = kept.map(|update| describe(&update)).collect().await;
    assert_eq!(kept, ["apply a@1 cached=false", "apply a@2 cached=true"]);
}

// With nobody left to hand updates to, the informer stops even though its watch never ends.
#[tokio::test]
async fn the_informer_stops_once_every_subscriber_is_gone() {
    let mut informer = Informer::<Pod>::default();
    drop(informer.subscribe());
    // A watch that never ends: only the missing subscribers can end the run.
    let endless = futures::stream::repeat_with(|| Ok(Event::Apply(pod("a", "1"))));
    tokio::time::timeout(std::time::Duration::from_secs(10), informer.run(endless))
        .await
        .expect("the informer stops when nobody listens");
}
