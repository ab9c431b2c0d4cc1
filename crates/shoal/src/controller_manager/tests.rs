//! The roles' client: a kube-rs client served by the API inside the process, with no listener.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use shoal_apiserver::api::Api;
use shoal_apiserver::auth::{TokenAuthenticator, User};
use shoal_apiserver::objects::ObjectStore;
use shoal_apiserver::secret_box::SecretBox;
use shoal_apiserver::server::LocalApi;
use shoal_controllers::leader_election::Term;
use shoal_store::server::{RunningServer, ServerConfig};

use super::{client, controllers_user};

const KEY_FILE: &str = "k AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
/// How long one step may take before the test gives up on it.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A one-member store in this process and the API over it, with the namespaces the test
/// writes to.
async fn api(dir: &std::path::Path) -> (Arc<Api>, RunningServer) {
    let config = ServerConfig::solo_on_loopback("solo", dir.join("data"));
    let server = shoal_store::server::start(config).await.expect("the store starts");
    let mut metrics = server.store.raft().metrics();
    metrics.wait_for(|metrics| metrics.current_leader.is_some()).await.expect("a leader");
    let secret_box = SecretBox::parse(KEY_FILE).expect("a key");
    let objects = ObjectStore::new(server.store.clone(), secret_box);
    let api = Arc::new(Api::new(objects, TokenAuthenticator::default(), Default::default()));
    for namespace in ["default", "kube-system"] {
        shoal_apiserver::write::ensure_namespace(&api, namespace).await.expect("a namespace");
    }
    (api, server)
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
        ..ConfigMap::default()
    }
}

fn lease(holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta { name: Some("role".to_owned()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec { holder_identity: Some(holder.to_owned()), ..LeaseSpec::default() }),
    }
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

// Through the in-process client, a create is stored (with a uid the API server gave it) and
// read back, and a watch streams: an object created after it opened reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_client_writes_reads_and_watches_in_process() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (api, _server) = api(dir.path()).await;
    let client = client(&LocalApi::new(api, controllers_user()), None);
    let config_maps = kube::Api::<ConfigMap>::namespaced(client, "default");

    let created = config_maps.create(&PostParams::default(), &config_map("a")).await.expect("a create");
    let read = config_maps.get("a").await.expect("a get");
    assert_eq!(read.metadata.uid, created.metadata.uid);
    assert!(read.metadata.uid.is_some(), "the API server gave the object a uid");

    // A watch's body streams while the watch is open: a later create reaches it.
    let mut seen = std::pin::pin!(watcher(config_maps.clone(), watcher::Config::default()).applied_objects());
    let first = tokio::time::timeout(STEP_TIMEOUT, seen.next()).await.expect("the listed object in time");
    assert_eq!(first.expect("an object").expect("no watch error").metadata.name.as_deref(), Some("a"));
    config_maps.create(&PostParams::default(), &config_map("b")).await.expect("b create");
    let next = tokio::time::timeout(STEP_TIMEOUT, seen.next()).await.expect("the new object in time");
    assert_eq!(next.expect("an object").expect("no watch error").metadata.name.as_deref(), Some("b"));
}

// A fenced client writes while its term holds the Lease; once another term holds it, its write
// is refused with 409 and nothing lands. A client acting as a user without rights gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_client_acts_as_its_user_and_under_its_fence() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (api, _server) = api(dir.path()).await;
    let unfenced = client(&LocalApi::new(api.clone(), controllers_user()), None);
    let leases = kube::Api::<Lease>::namespaced(unfenced, "kube-system");
    leases.create(&PostParams::default(), &lease("term-1")).await.expect("the Lease");

    let term =
        Term { namespace: "kube-system".to_owned(), lease: "role".to_owned(), holder: "term-1".to_owned() };
    let fenced = client(&LocalApi::new(api.clone(), controllers_user()), Some(&term));
    let config_maps = kube::Api::<ConfigMap>::namespaced(fenced, "default");
    config_maps.create(&PostParams::default(), &config_map("held")).await.expect("a write while holding");

    // Another term takes the Lease: this term's writes are refused, and nothing lands.
    let mut taken = leases.get("role").await.expect("the Lease");
    taken.spec = lease("term-2").spec;
    leases.replace("role", &PostParams::default(), &taken).await.expect("the Lease taken");
    let refused = config_maps.create(&PostParams::default(), &config_map("deposed")).await;
    assert_eq!(refused.as_ref().err().and_then(status_code), Some(409), "{refused:?}");
    assert!(config_maps.get_opt("deposed").await.expect("a read").is_none());

    // A user without rights is refused as over any connection.
    let stranger = User { name: "stranger".to_owned(), groups: Vec::new() };
    let config_maps =
        kube::Api::<ConfigMap>::namespaced(client(&LocalApi::new(api, stranger), None), "default");
    let refused = config_maps.list(&Default::default()).await;
    assert_eq!(refused.as_ref().err().and_then(status_code), Some(403), "{refused:?}");
}
