//! kube-rs, the Rust Kubernetes client, against a 3-member cluster of `shoal server` processes:
//! typed CRUD, list pages, a watch by name and metadata-only reads through `kube::Api`, and
//! kube-runtime's watcher and reflector across a SIGKILL of the API server they talk to.
//!
//! Clients reach the members through `Failover`, a `tower::Service` that sends each request to
//! one member's API server and moves on to the next member when a request fails at the
//! connection level, as a client behind a load balancer sees a control plane lose a member.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use http::{Request, Response};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Resource, ResourceExt as _};
use serde_json::{Value, json};
use shoal::local_cluster::LocalCluster;
use tokio::time::Instant;

use common::start_cluster;

const NAMESPACE: &str = "default";
/// A client's deadline per request: above the server's own write deadline
/// (`shoal_store::store::WRITE_TIMEOUT`, 5 s), so the server's verdict normally comes first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// How long one write may take to be acknowledged, retries included: a killed leader's
/// successor must be elected within it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two attempts of a failed request.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long the writer gets for all its writes, and the watcher to show them afterwards.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The watched ConfigMaps: each is created, then updated once.
const WATCHED_CONFIG_MAPS: usize = 200;
/// Acknowledged writes before the watcher's server is killed: half of them.
const WRITES_BEFORE_KILL: usize = WATCHED_CONFIG_MAPS;
/// The label of the watched ConfigMaps, which the watcher selects.
const WATCHED_LABEL: (&str, &str) = ("kube-client-test", "watched");
/// Watcher errors kept for the failure message; the backoff keeps them few anyway.
const WATCH_ERRORS_KEPT_MAX: usize = 100;

// Drives `Api<ConfigMap>` and `Api<Deployment>` through the life of one object each (see
// `check_crud`): create, get, list by label (leaving out an unlabelled sibling), replace,
// replace with the stale resourceVersion (409 Conflict), a JSON merge patch, a strategic
// merge patch, delete, and 404 Not Found after. The Deployment's strategic patch names one
// of two containers: it must be merged by name, where a merge patch would replace the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud_of_config_maps_and_deployments() {
    let cluster = start_cluster(3, &[]).await;
    let client = Failover::connect(&cluster, &[0, 1, 2]).await.into_client();
    check_crud(&Api::namespaced(client.clone(), NAMESPACE), config_map_case()).await;
    check_crud(&Api::namespaced(client, NAMESPACE), deployment_case()).await;
}

// Creates 5 labelled ConfigMaps and lists them by label 2 at a time, creating a sixth after
// the first page. Checks that the pages hold 2, 2 and 1 of the 5 in name order, that all but
// the last carry a continue token, and that the pages are one snapshot: the sixth, created
// after the first page at a name past the cursor, is not listed, and every page reports the
// first page's resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_are_one_snapshot() {
    let cluster = start_cluster(3, &[]).await;
    let api =
        Api::<ConfigMap>::namespaced(Failover::connect(&cluster, &[0, 1, 2]).await.into_client(), NAMESPACE);
    let label = ("kube-client-test", "paged");
    let names = (0..6).map(|i| format!("paged-{i}")).collect::<Vec<_>>();
    for name in &names[..5] {
        api.create(&PostParams::default(), &config_map(name, &[label], &[])).await.expect("creating");
    }

    let params = ListParams::default().labels(&format!("{}={}", label.0, label.1)).limit(2);
    let mut pages = vec![api.list(&params).await.expect("listing the first page")];
    api.create(&PostParams::default(), &config_map(&names[5], &[label], &[])).await.expect("creating");
    while let Some(token) =
        pages.last().and_then(|page| page.metadata.continue_.clone()).filter(|t| !t.is_empty())
    {
        assert!(pages.len() < 5, "more pages than 5 objects need: {pages:?}");
        pages.push(api.list(&params.clone().continue_token(&token)).await.expect("listing the next page"));
    }

    let sizes = pages.iter().map(|page| page.items.len()).collect::<Vec<_>>();
    assert_eq!(sizes, [2, 2, 1], "page sizes");
    let listed =
        pages.iter().flat_map(|page| page.items.iter().map(|item| item.name_any())).collect::<Vec<_>>();
    assert_eq!(listed, names[..5], "the names across the pages");
    let snapshot = &pages[0].metadata.resource_version;
    assert!(snapshot.as_ref().is_some_and(|rv| !rv.is_empty()), "the first page has no resourceVersion");
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(&page.metadata.resource_version, snapshot, "page {i}'s resourceVersion");
    }
}

// Sends 12 merge patches at once to one ConfigMap, each adding its own data key and none
// naming a resourceVersion, spread over the three servers. Checks that every patch succeeds
// (the server applies a losing patch again to the newer object, as Kubernetes does, instead
// of answering 409) and that the object ends with all 12 keys; then that a patch naming a
// stale resourceVersion still gets 409 Conflict.
// Watches one ConfigMap by name (a `metadata.name` field selector: the watch that `kubectl
// get <kind> <name> -w` and `kubectl wait` make, which the server answers from the store key
// without parsing objects) while its siblings change around it. The watch must see exactly
// its object's changes, in order, each with the data written and a rising resourceVersion:
// an update, a second update, the deletion (with the object as it was), and its re-creation,
// which is the last write of all, so an event of a sibling would have come before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_by_name_sees_only_its_object() {
    let cluster = start_cluster(3, &[]).await;
    let api =
        Api::<ConfigMap>::namespaced(Failover::connect(&cluster, &[0, 1, 2]).await.into_client(), NAMESPACE);
    let (watched, siblings) = ("named-2", ["named-1", "named-20", "named-3"]);
    for name in siblings.iter().chain([&watched]) {
        api.create(&PostParams::default(), &config_map(name, &[], &[("step", "created")]))
            .await
            .expect("creating");
    }
    let from = api
        .list(&ListParams::default())
        .await
        .expect("listing")
        .metadata
        .resource_version
        .expect("a list rv");
    let params = kube::api::WatchParams::default().fields(&format!("metadata.name={watched}")).timeout(60);
    let mut events = api.watch(&params, &from).await.expect("watching").boxed();

    let set = |name: &'static str, step: &'static str| {
        let api = api.clone();
        async move {
            let patch = Patch::Merge(json!({"data": {"step": step}}));
            api.patch(name, &PatchParams::default(), &patch).await.expect("patching");
        }
    };
    for step in ["one", "two"] {
        for name in siblings {
            set(name, step).await;
        }
        set(watched, step).await;
    }
    for name in [siblings[1], watched, siblings[2]] {
        api.delete(name, &DeleteParams::default()).await.expect("deleting");
    }
    set(siblings[0], "three").await;
    api.create(&PostParams::default(), &config_map(watched, &[], &[("step", "again")]))
        .await
        .expect("re-creating");

    let mut seen = Vec::new();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while seen.len() < 4 {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("the watch stalled after {seen:?}"))
            .unwrap_or_else(|| panic!("the watch ended after {seen:?}"))
            .expect("a watch event");
        let (kind, object) = match event {
            kube::api::WatchEvent::Added(object) => ("ADDED", object),
            kube::api::WatchEvent::Modified(object) => ("MODIFIED", object),
            kube::api::WatchEvent::Deleted(object) => ("DELETED", object),
            other => panic!("unexpected watch event {other:?} after {seen:?}"),
        };
        let step = object.data.as_ref().and_then(|data| data.get("step")).cloned().unwrap_or_default();
        let revision: u64 = object.resource_version().expect("an rv").parse().expect("a numeric rv");
        seen.push((kind, object.name_any(), step, revision));
    }
    let described: Vec<(&str, &str, &str)> =
        seen.iter().map(|(kind, name, step, _)| (*kind, name.as_str(), step.as_str())).collect();
    assert_eq!(
        described,
        [
            ("MODIFIED", watched, "one"),
            ("MODIFIED", watched, "two"),
            ("DELETED", watched, "two"),
            ("ADDED", watched, "again"),
        ]
    );
    assert!(seen.windows(2).all(|pair| pair[0].3 < pair[1].3), "resourceVersions do not rise: {seen:?}");
}

// kube-rs's metadata reads (get, list with and without a selector, watch) ask for
// PartialObjectMetadata, as client-go's metadata informers do: each answer is that kind,
// carries the object's metadata with its resourceVersion, and nothing of its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reads_answer_partial_object_metadata() {
    let cluster = start_cluster(3, &[]).await;
    let client = Failover::connect(&cluster, &[0, 1, 2]).await.into_client();
    let api = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE);
    for name in ["meta-a", "meta-b"] {
        let labels = [("meta", "yes"), ("name", name)];
        api.create(&PostParams::default(), &config_map(name, &labels, &[("secret-ish", "data")]))
            .await
            .expect("creating");
    }
    let partial = |types: &Option<kube::api::TypeMeta>| {
        types.as_ref().is_some_and(|types| {
            types.kind == "PartialObjectMetadata" && types.api_version == "meta.k8s.io/v1"
        })
    };

    let full = api.get("meta-a").await.expect("getting");
    let meta = api.get_metadata("meta-a").await.expect("getting metadata");
    assert!(partial(&meta.types), "{meta:?}");
    assert_eq!(
        (meta.metadata.uid, meta.metadata.labels),
        (full.metadata.uid.clone(), full.metadata.labels.clone())
    );
    assert_eq!(meta.metadata.resource_version, full.metadata.resource_version);

    let mut from = String::new();
    for params in [ListParams::default(), ListParams::default().labels("meta=yes")] {
        let listed = api.list_metadata(&params).await.expect("listing metadata");
        from = listed.metadata.resource_version.clone().expect("a list rv");
        let names: BTreeSet<String> = listed.items.iter().map(|item| item.name_any()).collect();
        assert_eq!(names, BTreeSet::from(["meta-a".to_owned(), "meta-b".to_owned()]), "{params:?}");
        assert!(listed.items.iter().all(|item| partial(&item.types)), "{listed:?}");
    }
    // What goes over the wire: metadata and nothing else.
    let request = http::Request::get(format!("/api/v1/namespaces/{NAMESPACE}/configmaps"))
        .header(http::header::ACCEPT, "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
        .body(Vec::new())
        .expect("a request");
    let text = client.request_text(request).await.expect("listing raw");
    let list: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    for item in list["items"].as_array().expect("items") {
        let keys: BTreeSet<&str> = item.as_object().expect("an object").keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["apiVersion", "kind", "metadata"]), "{item}");
    }

    let params = kube::api::WatchParams::default().labels("name=meta-b").timeout(60);
    let mut events = api.watch_metadata(&params, &from).await.expect("watching metadata").boxed();
    let patch = Patch::Merge(json!({"metadata": {"labels": {"step": "patched"}}, "data": {"more": "data"}}));
    let patched = api.patch("meta-b", &PatchParams::default(), &patch).await.expect("patching");
    let event = tokio::time::timeout(SETTLE_TIMEOUT, events.next())
        .await
        .expect("a watch event in time")
        .expect("the watch goes on")
        .expect("a watch event");
    let kube::api::WatchEvent::Modified(object) = event else { panic!("expected MODIFIED, got {event:?}") };
    assert!(partial(&object.types), "{object:?}");
    assert_eq!(object.metadata.resource_version, patched.metadata.resource_version);
    assert_eq!(object.labels().get("step").map(String::as_str), Some("patched"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_without_a_resource_version_all_land() {
    const PATCHERS: usize = 12;
    let cluster = start_cluster(3, &[]).await;
    let apis = apis_through_each_server::<ConfigMap>(&cluster).await;
    let created =
        apis[0].create(&PostParams::default(), &config_map("patched", &[], &[])).await.expect("creating");

    let patches = (0..PATCHERS).map(|i| {
        let api = apis[i % apis.len()].clone();
        async move {
            let patch = Patch::Merge(json!({ "data": { format!("key-{i}"): i.to_string() } }));
            api.patch("patched", &PatchParams::default(), &patch).await
        }
    });
    let failures = futures::future::join_all(patches)
        .await
        .into_iter()
        .filter_map(Result::err)
        .map(|error| error.to_string())
        .collect::<Vec<_>>();
    assert!(failures.is_empty(), "patches without a resourceVersion failed: {failures:?}");
    let data = apis[0].get("patched").await.expect("getting").data.unwrap_or_default();
    let expected = (0..PATCHERS).map(|i| (format!("key-{i}"), i.to_string())).collect::<BTreeMap<_, _>>();
    assert_eq!(data, expected, "the data after the concurrent patches");

    let stale_version = created.resource_version().expect("created with a resourceVersion");
    let stale =
        Patch::Merge(json!({ "metadata": { "resourceVersion": stale_version }, "data": { "late": "1" } }));
    expect_status(
        apis[1].patch("patched", &PatchParams::default(), &stale).await,
        409,
        "a merge patch at a stale resourceVersion",
    );
}

// Binds 5 pods (to a node name; the cluster has no nodes, so its own scheduler leaves them
// alone) while 8 label patches per pod land at the same moment. Checks that every binding
// succeeds, as in Kubernetes, where a binding that lost a race with another writer is checked
// and applied again to the newer pod instead of answering 409, and that each pod ends bound
// with all 8 labels; then that binding a bound pod again is refused with 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_racing_other_writers_all_land() {
    const PODS: usize = 5;
    const PATCHES: usize = 8;
    let cluster = start_cluster(3, &[]).await;
    let apis = apis_through_each_server::<Pod>(&cluster).await;
    let bind = |api: Api<Pod>, name: String| async move {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
        });
        api.create_subresource::<_, Value>("binding", &name, &PostParams::default(), &binding).await
    };
    for n in 0..PODS {
        let name = format!("raced-{n}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        }))
        .expect("a pod");
        apis[0].create(&PostParams::default(), &pod).await.expect("creating a pod");
        let patches = (0..PATCHES).map(|i| {
            let (api, name) = (apis[i % apis.len()].clone(), name.clone());
            async move {
                let patch = Patch::Merge(json!({"metadata": {"labels": {format!("label-{i}"): "x"}}}));
                api.patch(&name, &PatchParams::default(), &patch).await.map(|_| ())
            }
        });
        let binding = bind(apis[n % apis.len()].clone(), name.clone());
        let (bound, patched) = futures::join!(binding, futures::future::join_all(patches));
        bound.unwrap_or_else(|error| panic!("binding {name} while it was patched: {error}"));
        assert!(patched.iter().all(Result::is_ok), "patches of {name}: {patched:?}");
        let pod = apis[1].get(&name).await.expect("getting the pod");
        assert_eq!(pod.spec.and_then(|spec| spec.node_name).as_deref(), Some("node-1"), "{name}'s node");
        assert_eq!(pod.metadata.labels.unwrap_or_default().len(), PATCHES, "{name}'s labels");
    }
    expect_status(bind(apis[2].clone(), "raced-0".into()).await, 409, "binding a bound pod again");
}

// Runs a kube-runtime watcher, under a reflector, over the labelled ConfigMaps of a namespace
// while a writer creates 200 of them and updates each once, both through `Failover` clients
// whose first server is the leader's; SIGKILLs that server once half the writes are
// acknowledged. A write that fails without a verdict is read back before it is counted or
// tried again (`write_acknowledged`). Checks that the watcher showed every acknowledged write
// exactly once and in order per object (`seen_once_violations` says precisely what that
// allows across a re-list), and that the reflector's store ends equal to the server's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_and_reflector_survive_their_server_killed() {
    // No compaction: a watcher that resumes must never be told 410 Gone and re-list, which
    // would legitimately skip writes.
    let mut cluster = start_cluster(3, &["--auto-compaction-retained", "0"]).await;
    let leader = cluster.wait_ready().await.expect("a leader");
    let order =
        std::iter::once(leader).chain((0..cluster.len()).filter(|i| *i != leader)).collect::<Vec<_>>();
    let watch_failover = Failover::connect(&cluster, &order).await;
    let write_api =
        Api::<ConfigMap>::namespaced(Failover::connect(&cluster, &order).await.into_client(), NAMESPACE);

    let watch = WatchRecord::start(Api::namespaced(watch_failover.clone().into_client(), NAMESPACE));
    let initialized = wait_until(SETTLE_TIMEOUT, || watch.seen().contains(&Seen::InitDone)).await;
    assert!(initialized, "the watcher did not finish its first list: errors {:?}", watch.errors());
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let writer = tokio::spawn(write_config_maps(write_api.clone(), acknowledged.clone()));

    let mid_stream = wait_until(LOAD_TIMEOUT, || {
        let applied = watch.seen().iter().any(|seen| matches!(seen, Seen::Apply { .. }));
        applied && acknowledged.lock().unwrap().count >= WRITES_BEFORE_KILL
    })
    .await;
    assert!(mid_stream, "{WRITES_BEFORE_KILL} writes were not acknowledged and watched in time");
    assert_eq!(watch_failover.current_member(), leader, "the watcher left its first server before the kill");
    cluster.kill(leader).await.expect("killing the watcher's server");

    tokio::time::timeout(LOAD_TIMEOUT, writer)
        .await
        .expect("the writer finishing in time")
        .expect("the writer");
    let acknowledged = acknowledged.lock().unwrap().by_name.clone();
    let all_seen = wait_until(SETTLE_TIMEOUT, || {
        let seen = watch.seen();
        let shown = shown_writes(&seen);
        acknowledged.iter().all(|(name, rvs)| rvs.iter().all(|rv| shown.contains(&(name.as_str(), *rv))))
    })
    .await;
    assert_ne!(watch_failover.current_member(), leader, "the watcher is still on the killed server");
    let violations = seen_once_violations(&acknowledged, &watch.seen());
    assert!(
        all_seen && violations.is_empty(),
        "the watcher's events do not match the acknowledged writes: {} violations, the first: {:#?}\n\
         watcher errors: {:#?}",
        violations.len(),
        &violations[..violations.len().min(20)],
        watch.errors(),
    );
    check_store_matches_server(&watch.store, &write_api).await;
}

// Checks `seen_once_violations` on hand-written event sequences: what counts as a duplicate,
// a gap or a regression, and which repeat a re-list may make.
#[test]
fn seen_once_violations_accepts_exactly_once_in_order() {
    let apply = |name: &str, rv| Seen::Apply { name: name.into(), rv };
    let listed = |name: &str, rv| Seen::InitApply { name: name.into(), rv };
    let check = |seen: &[Seen], expected_violations: usize| {
        let acknowledged = BTreeMap::from([("a".to_owned(), vec![5, 7]), ("b".to_owned(), vec![6])]);
        let violations = seen_once_violations(&acknowledged, seen);
        assert_eq!(violations.len(), expected_violations, "{seen:?}: {violations:#?}");
    };
    let start = [Seen::Init, Seen::InitDone];
    check(&[&start[..], &[apply("a", 5), apply("b", 6), apply("a", 7)]].concat(), 0);
    // A re-list that repeats what was shown is a restart, not a duplicate.
    let restart = [Seen::Init, listed("a", 5), listed("b", 6), Seen::InitDone];
    check(&[&start[..], &[apply("a", 5), apply("b", 6)], &restart, &[apply("a", 7)]].concat(), 0);
    // The same Apply twice.
    check(&[&start[..], &[apply("a", 5), apply("a", 5), apply("b", 6), apply("a", 7)]].concat(), 1);
    // A missed write, and a write shown out of order.
    check(&[&start[..], &[apply("a", 7), apply("b", 6)]].concat(), 1);
    check(&[&start[..], &[apply("a", 7), apply("a", 5), apply("b", 6)]].concat(), 1);
    // A re-list that goes back in time, or leaves out an object never deleted.
    let stale = [Seen::Init, listed("a", 5), listed("b", 6), Seen::InitDone];
    check(&[&start[..], &[apply("a", 5), apply("b", 6), apply("a", 7)], &stale].concat(), 1);
    let partial = [Seen::Init, listed("a", 7), Seen::InitDone];
    check(&[&start[..], &[apply("a", 5), apply("b", 6), apply("a", 7)], &partial].concat(), 1);
    // A write nobody acknowledged, and a delete nobody made.
    check(&[&start[..], &[apply("a", 5), apply("b", 6), apply("a", 7), apply("a", 9)]].concat(), 1);
    let delete = Seen::Delete { name: "b".into(), rv: 8 };
    check(&[&start[..], &[apply("a", 5), apply("b", 6), apply("a", 7), delete]].concat(), 1);
}

/// A `tower::Service` over one `kube::Client` per API server. Each request goes to the
/// current server; a request that fails at the connection level (refused, reset, TLS or I/O
/// error: no HTTP response) moves the list on to the next server, round the list. The failed
/// request itself is not sent again: its outcome is unknown, and only the caller knows
/// whether sending it twice is safe. HTTP error statuses are answers and move nothing.
#[derive(Clone)]
struct Failover {
    clients: Arc<[kube::Client]>,
    /// The cluster's member index of each client.
    members: Arc<[usize]>,
    /// The position in `clients` of the current server.
    current: Arc<AtomicUsize>,
}

impl Failover {
    /// Clients for the API servers of `members`, in that order; the first is current. Each is
    /// built from a kubeconfig for its member, as the admin.
    async fn connect(cluster: &LocalCluster, members: &[usize]) -> Failover {
        let mut clients = Vec::new();
        for &member in members {
            // `write_kubeconfig` writes one file for every member: load it before the next.
            let path = cluster.write_kubeconfig(member).expect("writing a kubeconfig");
            let kubeconfig = Kubeconfig::read_from(&path).expect("reading the kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("a client configuration from the kubeconfig");
            clients.push(kube::Client::try_from(config).expect("a client for the member"));
        }
        Failover { clients: clients.into(), members: members.into(), current: Arc::new(AtomicUsize::new(0)) }
    }

    fn into_client(self) -> kube::Client {
        kube::Client::new(self, NAMESPACE)
    }

    /// The cluster's member index of the current server.
    fn current_member(&self) -> usize {
        self.members[self.current.load(Ordering::SeqCst)]
    }
}

impl tower::Service<Request<Body>> for Failover {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        // Each `kube::Client` queues requests in its own buffer and is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let failover = self.clone();
        Box::pin(async move {
            let position = failover.current.load(Ordering::SeqCst);
            let response = failover.clients[position].send(request).await;
            if let Err(error) = &response
                && is_connection_error(error)
            {
                let next = (position + 1) % failover.clients.len();
                // Requests that failed on the same server together move the list on once.
                let _ = failover.current.compare_exchange(position, next, Ordering::SeqCst, Ordering::SeqCst);
            }
            response
        })
    }
}

/// Whether `error` came from the connection rather than from an HTTP answer: hyper's errors
/// (refused, reset, closed before the response) and I/O errors (TLS failures arrive as
/// these) anywhere in its chain of causes.
fn is_connection_error(error: &kube::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if error.is::<hyper::Error>() || error.is::<std::io::Error>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// One object's life through `Api<K>`, and what the object must look like along the way.
struct CrudCase<K> {
    /// Named and labelled `crud=yes`.
    object: K,
    /// The same kind without the label: a list by label must leave it out.
    unlabelled: K,
    /// The part of an object the expectations below are about.
    view: fn(&K) -> Value,
    replace: fn(&mut K),
    after_replace: Value,
    merge_patch: Value,
    after_merge: Value,
    strategic_patch: Value,
    after_strategic: Value,
}

/// See `typed_crud_of_config_maps_and_deployments`.
async fn check_crud<K>(api: &Api<K>, case: CrudCase<K>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Debug,
    K: Serialize + DeserializeOwned,
{
    let name = case.object.name_any();
    let view = case.view;
    let created = api.create(&PostParams::default(), &case.object).await.expect("creating");
    assert_eq!(view(&created), view(&case.object), "{name} as created");
    assert!(created.uid().is_some_and(|uid| !uid.is_empty()), "{name} was created without a uid");
    api.create(&PostParams::default(), &case.unlabelled).await.expect("creating the unlabelled object");

    let fetched = api.get(&name).await.expect("getting");
    assert_eq!(view(&fetched), view(&case.object), "{name} as read");
    // Controllers (the Deployment controller) may have written since the create, never before.
    let revision = |object: &K| object.resource_version().and_then(|version| version.parse::<u64>().ok());
    assert!(revision(&fetched) >= revision(&created), "{name}'s resourceVersion went back");
    let listed = api.list(&ListParams::default().labels("crud=yes")).await.expect("listing by label");
    let listed_names = listed.items.iter().map(|item| item.name_any()).collect::<Vec<_>>();
    assert_eq!(listed_names, [name.as_str()], "{name} listed by label");

    // Read-modify-replace, again if a controller wrote in between (409), as clients do.
    let mut changed = fetched;
    let mut attempts = 0;
    let replaced = loop {
        (case.replace)(&mut changed);
        match api.replace(&name, &PostParams::default(), &changed).await {
            Ok(replaced) => break replaced,
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 5 => {
                attempts += 1;
                changed = api.get(&name).await.expect("getting again");
            }
            Err(error) => panic!("replacing: {error}"),
        }
    };
    assert_eq!(view(&replaced), case.after_replace, "{name} after replace");
    assert_ne!(replaced.resource_version(), created.resource_version(), "replace kept the resourceVersion");
    // `changed` still carries the resourceVersion from before the replace.
    let stale = api.replace(&name, &PostParams::default(), &changed).await;
    expect_status(stale, 409, &format!("replacing {name} at a stale resourceVersion"));

    let merge = Patch::Merge(case.merge_patch);
    let merged = api.patch(&name, &PatchParams::default(), &merge).await.expect("merge patching");
    assert_eq!(view(&merged), case.after_merge, "{name} after a merge patch");
    let strategic = Patch::Strategic(case.strategic_patch);
    let patched = api.patch(&name, &PatchParams::default(), &strategic).await.expect("strategic patching");
    assert_eq!(view(&patched), case.after_strategic, "{name} after a strategic merge patch");
    let fetched = api.get(&name).await.expect("getting the patched object");
    assert_eq!(view(&fetched), case.after_strategic, "{name} as read after the patches");

    api.delete(&name, &DeleteParams::default()).await.expect("deleting");
    expect_status(api.get(&name).await, 404, &format!("getting {name} after deleting it"));
    let listed = api.list(&ListParams::default().labels("crud=yes")).await.expect("listing by label");
    assert!(listed.items.is_empty(), "{name} is listed after it was deleted: {listed:?}");
}

/// One namespaced `Api` per member of a 3-member cluster, each sending to that member first.
async fn apis_through_each_server<K>(cluster: &LocalCluster) -> Vec<Api<K>>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    let mut apis = Vec::new();
    for first in 0..3 {
        let order = [first, (first + 1) % 3, (first + 2) % 3];
        apis.push(Api::namespaced(Failover::connect(cluster, &order).await.into_client(), NAMESPACE));
    }
    apis
}

/// Panics unless `result` failed with an API status of `code`.
fn expect_status<T: Debug>(result: Result<T, kube::Error>, code: u16, doing: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == code => {}
        other => panic!("{doing}: expected status {code}, got {other:?}"),
    }
}

fn config_map_case() -> CrudCase<ConfigMap> {
    CrudCase {
        object: config_map("crud-config", &[("crud", "yes")], &[("a", "1"), ("b", "2")]),
        unlabelled: config_map("crud-config-unlabelled", &[], &[("a", "1")]),
        view: |config_map| json!({"labels": config_map.metadata.labels, "data": config_map.data}),
        replace: |config_map| {
            config_map.data.get_or_insert_default().insert("c".into(), "3".into());
        },
        after_replace: json!({"labels": {"crud": "yes"}, "data": {"a": "1", "b": "2", "c": "3"}}),
        merge_patch: json!({"data": {"a": null, "d": "4"}}),
        after_merge: json!({"labels": {"crud": "yes"}, "data": {"b": "2", "c": "3", "d": "4"}}),
        strategic_patch: json!({"metadata": {"labels": {"patched": "yes"}}, "data": {"e": "5"}}),
        after_strategic: json!({
            "labels": {"crud": "yes", "patched": "yes"},
            "data": {"b": "2", "c": "3", "d": "4", "e": "5"},
        }),
    }
}

fn deployment_case() -> CrudCase<Deployment> {
    let app = json!({"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]});
    let sidecar = json!({"name": "sidecar", "image": "sidecar:1"});
    let patched_app = json!({"name": "app", "image": "app:2", "env": [{"name": "A", "value": "1"}]});
    let view_of = |replicas: i32, containers: Value| json!({"replicas": replicas, "containers": containers});
    CrudCase {
        object: deployment("crud-deployment", &[("crud", "yes")]),
        unlabelled: deployment("crud-deployment-unlabelled", &[]),
        view: |deployment| {
            let spec = deployment.spec.as_ref().expect("a Deployment has a spec");
            let pod = spec.template.spec.as_ref().expect("a Deployment's template has a spec");
            let containers = pod.containers.iter().map(|container| {
                let mut view = json!({"name": container.name, "image": container.image});
                if let Some(env) = &container.env {
                    view["env"] = json!(env);
                }
                view
            });
            json!({"replicas": spec.replicas, "containers": containers.collect::<Vec<_>>()})
        },
        replace: |deployment| deployment.spec.as_mut().expect("a Deployment has a spec").replicas = Some(2),
        after_replace: view_of(2, json!([app, sidecar])),
        merge_patch: json!({"spec": {"replicas": 3}}),
        after_merge: view_of(3, json!([app, sidecar])),
        // Merged by the containers' merge key, `name`: the sidecar and the app's env stay.
        strategic_patch: json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2"},
        ]}}}}),
        after_strategic: view_of(3, json!([patched_app, sidecar])),
    }
}

fn config_map(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": BTreeMap::from_iter(labels.iter().copied())},
        "data": BTreeMap::from_iter(data.iter().copied()),
    }))
    .expect("a valid ConfigMap")
}

fn deployment(name: &str, labels: &[(&str, &str)]) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": BTreeMap::from_iter(labels.iter().copied())},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "sidecar:1"},
                ]},
            },
        },
    }))
    .expect("a valid Deployment")
}

/// What the writer got acknowledged: per ConfigMap, the resourceVersion of each write, in
/// the order written.
#[derive(Default)]
struct Acknowledged {
    by_name: BTreeMap<String, Vec<u64>>,
    count: usize,
}

/// Creates the watched ConfigMaps one by one, and updates each right after creating it.
async fn write_config_maps(api: Api<ConfigMap>, acknowledged: Arc<Mutex<Acknowledged>>) {
    let label = [WATCHED_LABEL];
    for i in 0..WATCHED_CONFIG_MAPS {
        let name = format!("watched-{i:03}");
        let created =
            write_acknowledged(&api, Write::Create(config_map(&name, &label, &[("v", "created")]))).await;
        let mut update = config_map(&name, &label, &[("v", "updated")]);
        update.metadata.resource_version = Some(created.to_string());
        let updated = write_acknowledged(&api, Write::Replace(update)).await;
        let mut acknowledged = acknowledged.lock().unwrap();
        acknowledged.by_name.insert(name, vec![created, updated]);
        acknowledged.count += 2;
    }
}

enum Write {
    Create(ConfigMap),
    /// A replace that carries the resourceVersion it expects to replace.
    Replace(ConfigMap),
}

/// Makes `write` until it is acknowledged or found applied, and returns the resourceVersion
/// it wrote. A write that ends without a verdict (connection error, timeout, 5xx) may or may
/// not have been applied: it is read back, counted if its data is there, and made again if
/// not. Sending it again is safe: a create of an existing name and a replace at a passed
/// resourceVersion both fail with 409, which then just sends us to read back again.
async fn write_acknowledged(api: &Api<ConfigMap>, write: Write) -> u64 {
    let (Write::Create(object) | Write::Replace(object)) = &write;
    let name = object.name_any();
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let mut earlier_outcome_unknown = false;
    loop {
        let send = async {
            match &write {
                Write::Create(object) => api.create(&PostParams::default(), object).await,
                Write::Replace(object) => api.replace(&name, &PostParams::default(), object).await,
            }
        };
        let error = match tokio::time::timeout(REQUEST_TIMEOUT, send).await {
            Ok(Ok(written)) => return resource_version(&written),
            Ok(Err(error)) => Some(error),
            Err(_elapsed) => None,
        };
        let outcome_unknown = error.as_ref().is_none_or(verdict_unknown);
        let code = match &error {
            Some(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        };
        let conflict = code == Some(409);
        let error =
            error.map_or_else(|| format!("no answer within {REQUEST_TIMEOUT:?}"), |error| error.to_string());
        assert!(
            outcome_unknown || (conflict && earlier_outcome_unknown) || code == Some(429),
            "writing {name} failed: {error}"
        );
        earlier_outcome_unknown |= outcome_unknown;
        assert!(
            Instant::now() < deadline,
            "writing {name} was not acknowledged within {WRITE_TIMEOUT:?}: {error}"
        );
        if outcome_unknown || conflict {
            let found = read_retrying(&format!("reading back {name}"), || api.get_opt(&name)).await;
            if let Some(found) = found.filter(|found| found.data == object.data) {
                return resource_version(&found);
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Whether the server may have applied a request that failed with `error`: the connection
/// failed, or the server failed (5xx) rather than refused.
fn verdict_unknown(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500,
        error => is_connection_error(error),
    }
}

/// Runs `read` until it answers, through failover, server errors and 429s, for at most
/// `WRITE_TIMEOUT`.
async fn read_retrying<T, F, R>(what: &str, read: F) -> T
where
    F: Fn() -> R,
    R: Future<Output = kube::Result<T>>,
{
    let deadline = Instant::now() + WRITE_TIMEOUT;
    loop {
        let error = match tokio::time::timeout(REQUEST_TIMEOUT, read()).await {
            Ok(Ok(answer)) => return answer,
            Ok(Err(error)) => {
                let retry = verdict_unknown(&error) || matches!(&error, kube::Error::Api(s) if s.code == 429);
                assert!(retry, "{what} failed: {error}");
                error.to_string()
            }
            Err(_elapsed) => format!("no answer within {REQUEST_TIMEOUT:?}"),
        };
        assert!(Instant::now() < deadline, "{what} did not succeed within {WRITE_TIMEOUT:?}: {error}");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// shoal's resourceVersions are its store's revisions, so this suite may order them, which
/// Kubernetes clients in general must not.
fn resource_version(object: &impl Resource) -> u64 {
    let rv =
        object.meta().resource_version.as_deref().expect("an object from the server has a resourceVersion");
    rv.parse().unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not a revision"))
}

/// A watcher event as recorded: which object, at which resourceVersion.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Apply { name: String, rv: u64 },
    Delete { name: String, rv: u64 },
    Init,
    InitApply { name: String, rv: u64 },
    InitDone,
}

impl Seen {
    fn of(event: &watcher::Event<ConfigMap>) -> Seen {
        match event {
            watcher::Event::Apply(object) => {
                Seen::Apply { name: object.name_any(), rv: resource_version(object) }
            }
            watcher::Event::Delete(object) => {
                Seen::Delete { name: object.name_any(), rv: resource_version(object) }
            }
            watcher::Event::Init => Seen::Init,
            watcher::Event::InitApply(object) => {
                Seen::InitApply { name: object.name_any(), rv: resource_version(object) }
            }
            watcher::Event::InitDone => Seen::InitDone,
        }
    }
}

/// A watcher over the watched ConfigMaps under a reflector, run by a task that records what
/// it shows; the task ends when this is dropped.
struct WatchRecord {
    store: Store<ConfigMap>,
    seen: Arc<Mutex<Vec<Seen>>>,
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WatchRecord {
    fn start(api: Api<ConfigMap>) -> WatchRecord {
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().labels(&format!("{}={}", WATCHED_LABEL.0, WATCHED_LABEL.1));
        let events = reflector(writer, watcher(api, config).default_backoff());
        let (seen, errors) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (seen_by_task, errors_by_task) = (seen.clone(), errors.clone());
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => seen_by_task.lock().unwrap().push(Seen::of(&event)),
                    Err(error) => {
                        let mut errors = errors_by_task.lock().unwrap();
                        if errors.len() < WATCH_ERRORS_KEPT_MAX {
                            errors.push(error.to_string());
                        }
                    }
                }
            }
        });
        WatchRecord { store, seen, errors, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

impl Drop for WatchRecord {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The writes a watcher has shown, by an Apply or a re-list's InitApply.
fn shown_writes(seen: &[Seen]) -> BTreeSet<(&str, u64)> {
    let shown = seen.iter().filter_map(|seen| match seen {
        Seen::Apply { name, rv } | Seen::InitApply { name, rv } => Some((name.as_str(), *rv)),
        _ => None,
    });
    shown.collect()
}

/// How the events a watcher showed, `seen`, fail to show each acknowledged write exactly once
/// and in order per object; empty if they do not fail. The writer only creates and updates,
/// so precisely:
/// - every Apply shows an acknowledged write, at a resourceVersion above the last one shown
///   for its object: a repeat is a duplicate, a lower one is out of order;
/// - a re-list (Init, InitApply…, InitDone) is a restart, whose InitApply may repeat the last
///   write shown for an object (that is no duplicate) or show a later acknowledged one, but
///   never an earlier one, and lists every object shown before, since none was deleted;
/// - there is no Delete, and every acknowledged write is shown, by an Apply or an InitApply.
fn seen_once_violations(acknowledged: &BTreeMap<String, Vec<u64>>, seen: &[Seen]) -> Vec<String> {
    let is_acknowledged = |name: &str, rv: u64| acknowledged.get(name).is_some_and(|rvs| rvs.contains(&rv));
    let mut violations = Vec::new();
    let mut last_shown = BTreeMap::<&str, u64>::new();
    let mut relisted: Option<BTreeSet<&str>> = None;
    for (position, event) in seen.iter().enumerate() {
        match event {
            Seen::Apply { name, rv } | Seen::InitApply { name, rv } => {
                let relist = matches!(event, Seen::InitApply { .. });
                let previous = last_shown.get(name.as_str()).copied();
                if previous.is_some_and(|previous| *rv < previous || (*rv == previous && !relist)) {
                    violations
                        .push(format!("event {position}: {event:?} after {name} was shown at {previous:?}"));
                }
                if !is_acknowledged(name, *rv) {
                    violations.push(format!("event {position}: {event:?} shows a write nobody acknowledged"));
                }
                match (&mut relisted, relist) {
                    (Some(listed), true) => {
                        listed.insert(name.as_str());
                    }
                    (None, true) => violations.push(format!("event {position}: {event:?} outside a re-list")),
                    (_, false) => {}
                }
                last_shown.insert(name.as_str(), previous.map_or(*rv, |previous| previous.max(*rv)));
            }
            Seen::Delete { .. } => {
                violations.push(format!("event {position}: {event:?}, but nothing was deleted"))
            }
            Seen::Init => relisted = Some(BTreeSet::new()),
            Seen::InitDone => match relisted.take() {
                Some(listed) => {
                    violations.extend(last_shown.keys().filter(|name| !listed.contains(*name)).map(|name| {
                        format!("event {position}: the re-list left out {name}, which was never deleted")
                    }))
                }
                None => violations.push(format!("event {position}: InitDone without Init")),
            },
        }
    }
    let shown = shown_writes(seen);
    for (name, rvs) in acknowledged {
        let missed = rvs.iter().filter(|rv| !shown.contains(&(name.as_str(), **rv)));
        violations.extend(missed.map(|rv| format!("the write of {name} at {rv} was never shown")));
    }
    violations
}

/// Waits until the reflector's store holds exactly the server's watched ConfigMaps, each as
/// the server lists it; panics with the difference after `SETTLE_TIMEOUT`.
async fn check_store_matches_server(store: &Store<ConfigMap>, api: &Api<ConfigMap>) {
    let params = ListParams::default().labels(&format!("{}={}", WATCHED_LABEL.0, WATCHED_LABEL.1));
    let listed = read_retrying("listing the watched ConfigMaps", || api.list(&params)).await;
    let server = listed.items.into_iter().map(|item| (item.name_any(), item)).collect::<BTreeMap<_, _>>();
    assert_eq!(server.len(), WATCHED_CONFIG_MAPS, "the server lists {} watched ConfigMaps", server.len());
    let cached =
        || store.state().iter().map(|item| (item.name_any(), (**item).clone())).collect::<BTreeMap<_, _>>();
    if wait_until(SETTLE_TIMEOUT, || cached() == server).await {
        return;
    }
    let cached = cached();
    let differing = server.keys().chain(cached.keys()).collect::<BTreeSet<_>>();
    let differing = differing.into_iter().filter(|name| server.get(*name) != cached.get(*name));
    let differences = differing
        .take(5)
        .map(|name| format!("{name}:\n  server: {:?}\n  store:  {:?}", server.get(name), cached.get(name)))
        .collect::<Vec<_>>();
    panic!("the reflector's store differs from the server's list, first at:\n{}", differences.join("\n"));
}

/// Polls `condition` until it holds or `timeout` passes; says whether it held.
async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
