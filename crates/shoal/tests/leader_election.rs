//! Leader election of the controller manager through a Lease, with fencing, against a
//! 3-server cluster: a new leader takes over when the old one's server dies, and a deposed
//! leader's writes are refused by the API server.

mod common;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use shoal::local_cluster::LocalCluster;
use shoal_apiserver::fence::{Claim, HEADER};
use tokio::time::Instant;

/// How long any one expected state may take to appear on a busy 2-core machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const LEASE: &str = "kube-controller-manager";

/// One cluster of this suite at a time (see tests/agent.rs).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The Lease's holder identity once it has one.
async fn holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt(LEASE).await.ok()??;
    lease.spec?.holder_identity.filter(|holder| !holder.is_empty())
}

/// The index of the member whose server holds under `holder` (`<member name>_<term>`).
fn member_of(cluster: &LocalCluster, holder: &str) -> usize {
    (0..cluster.len())
        .find(|&i| holder.starts_with(&format!("{}_", cluster.member(i).name)))
        .unwrap_or_else(|| panic!("no member holds the lease as {holder:?}"))
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `SETTLE_TIMEOUT`.
async fn wait_until<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of member `i` whose requests carry `claim` as their fence.
async fn fenced_client(cluster: &LocalCluster, i: usize, claim: &Claim) -> Client {
    let kubeconfig = cluster.write_kubeconfig(i).expect("kubeconfig");
    let file = kube::config::Kubeconfig::read_from(&kubeconfig).expect("reading the kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kube config");
    config.headers.push((
        http::HeaderName::from_static(HEADER),
        http::HeaderValue::try_from(claim.header_value()).expect("header value"),
    ));
    Client::try_from(config).expect("client")
}

/// A 3-server cluster (this suite's turn to run one), its controller-manager Lease's first
/// holder, and the index of the holder's server.
async fn cluster_with_leader() -> (tokio::sync::MutexGuard<'static, ()>, common::TestCluster, String, usize) {
    let turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = common::start_cluster(3, &[]).await;
    let client = cluster.admin_client(0).await.expect("admin client");
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let first = wait_until("a controller-manager leader", || holder(&leases)).await;
    let leader = member_of(&cluster, &first);
    (turn, cluster, first, leader)
}

fn claim(holder: &str) -> Claim {
    Claim { namespace: "kube-system".into(), lease: LEASE.into(), holder: holder.into() }
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("config map")
}

#[tokio::test]
async fn another_server_leads_the_controllers_soon_after_the_leaders_server_dies() {
    let (_turn, mut cluster, first, leader) = cluster_with_leader().await;

    let killed_at = Instant::now();
    cluster.kill(leader).await.expect("killing the leader's server");
    let survivor = (leader + 1) % cluster.len();
    let client = cluster.admin_client(survivor).await.expect("admin client");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let second = wait_until("a new controller-manager leader", || async {
        holder(&leases).await.filter(|holder| *holder != first)
    })
    .await;
    println!(
        "a new controller-manager leader holds the lease {:?} after the old one's server died",
        killed_at.elapsed()
    );
    assert_ne!(member_of(&cluster, &second), leader, "the dead server cannot lead");

    // The new leader acts: the namespace controller empties and finalizes a deleted namespace.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "doomed" } })).expect("namespace");
    namespaces.create(&PostParams::default(), &namespace).await.expect("creating a namespace");
    let in_it: Api<ConfigMap> = Api::namespaced(client, "doomed");
    in_it.create(&PostParams::default(), &config_map("c")).await.expect("creating a config map");
    namespaces.delete("doomed", &DeleteParams::default()).await.expect("deleting the namespace");
    wait_until("the deleted namespace to be finalized by the new leader", || async {
        matches!(namespaces.get_opt("doomed").await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deposed_leaders_writes_are_refused() {
    let (_turn, mut cluster, first, leader) = cluster_with_leader().await;
    let other = (leader + 1) % cluster.len();

    // The holder's writes pass the fence, however often it renews meanwhile.
    let current = Api::<ConfigMap>::default_namespaced(fenced_client(&cluster, other, &claim(&first)).await);
    for i in 0..20 {
        current
            .create(&PostParams::default(), &config_map(&format!("by-leader-{i}")))
            .await
            .expect("a fenced write of the holder");
    }

    // The leader's server is paused (a long GC pause, a stopped VM): another server takes over.
    cluster.pause(leader).await.expect("pausing the leader's server");
    let client = cluster.admin_client(other).await.expect("admin client");
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let second = wait_until("a new controller-manager leader", || async {
        holder(&leases).await.filter(|holder| *holder != first)
    })
    .await;
    cluster.resume(leader).await.expect("resuming the old leader's server");

    // Whatever the old leader still believes, its term's writes are refused, through any server.
    for i in 0..cluster.len() {
        let deposed = Api::<ConfigMap>::default_namespaced(fenced_client(&cluster, i, &claim(&first)).await);
        let error = deposed
            .create(&PostParams::default(), &config_map(&format!("by-deposed-{i}")))
            .await
            .expect_err("a deposed leader's write must be refused");
        let kube::Error::Api(status) = error else { panic!("expected a Status, got {error}") };
        assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"), "{}", status.message);
        assert!(status.message.contains("deposed"), "{}", status.message);
        // Reads are not fenced.
        deposed.get("by-leader-0").await.expect("a deposed leader may still read");
    }
    let successor =
        Api::<ConfigMap>::default_namespaced(fenced_client(&cluster, leader, &claim(&second)).await);
    successor
        .create(&PostParams::default(), &config_map("by-successor"))
        .await
        .expect("the new holder writes");
}
