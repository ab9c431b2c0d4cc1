//! The Service address allocator end to end: a 3-server cluster with a small service range,
//! Services created concurrently through all three servers, read back through kube-rs.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use common::wait_until;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// 64 addresses: the network, the broadcast address and `.1` (kept for `kubernetes`) are never
/// handed out and `.10` is the cluster DNS Service's, which leaves 60 for these tests.
const RANGE: &str = "127.97.0.0/26";
const FREE_ADDRESSES: usize = 60;
/// More creates than free addresses, all at once.
const CONCURRENT_CREATES: usize = 70;

fn service(name: &str, node_port: bool) -> Service {
    let kind = if node_port { "NodePort" } else { "ClusterIP" };
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"type": kind, "selector": {"app": name}, "ports": [{"name": "a", "port": 8080}, {"name": "b", "port": 8081}]},
    }))
    .expect("a valid Service")
}

fn cluster_ip(service: &Service) -> Ipv4Addr {
    let spec = service.spec.as_ref().expect("spec");
    spec.cluster_ip.as_deref().expect("a ClusterIP").parse().expect("an IPv4 address")
}

fn node_ports(service: &Service) -> Vec<i32> {
    let ports = service.spec.as_ref().and_then(|spec| spec.ports.as_ref());
    ports.into_iter().flatten().filter_map(|port| port.node_port).collect()
}

/// Creates a Service; `Err` carries the Status message of a refusal.
async fn create(client: &Client, service: &Service) -> Result<Service, String> {
    match Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), service).await
    {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) => Err(format!("{} {}", status.code, status.message)),
        Err(error) => panic!("creating a Service: {error}"),
    }
}

/// Every Service in the cluster (the DNS Service included), as (namespace/name, ClusterIP,
/// node ports).
async fn all_services(client: &Client) -> Vec<Service> {
    let list = Api::<Service>::all(client.clone()).list(&ListParams::default()).await.expect("listing");
    list.items
}

/// No address and no node port is held by two Services; every address is in the range.
fn assert_no_double_allocation(services: &[Service]) {
    let range_start = u32::from(Ipv4Addr::new(127, 97, 0, 0));
    let (mut addresses, mut ports) = (HashSet::new(), HashSet::new());
    for service in services {
        let address = cluster_ip(service);
        assert!(
            (range_start..range_start + 64).contains(&u32::from(address)),
            "{address} is outside {RANGE}"
        );
        assert!(addresses.insert(address), "{address} is held twice");
        for port in node_ports(service) {
            assert!(ports.insert(port), "node port {port} is held twice");
        }
    }
}

// Concurrent creates through three servers never share an address or a node port; the range
// fills up to its last free address (no create is refused while one is free, once the race
// is over), then a create is refused with Kubernetes' "range is full"; a deleted Service's
// address is handed out again. The cluster DNS Service holds `.10` from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_share_an_address_and_fill_the_range() {
    let cluster = common::start_cluster(3, &["--service-cidr", RANGE]).await;
    let clients: Vec<Client> = futures::future::join_all((0..3).map(|i| cluster.admin_client(i)))
        .await
        .into_iter()
        .map(|client| client.expect("admin client"))
        .collect();
    let dns = wait_until("the cluster DNS Service", || async {
        Api::<Service>::namespaced(clients[0].clone(), "kube-system").get_opt("kube-dns").await.ok().flatten()
    })
    .await;
    assert_eq!(cluster_ip(&dns), Ipv4Addr::new(127, 97, 0, 10));

    let creates = (0..CONCURRENT_CREATES).map(|i| {
        let client = clients[i % clients.len()].clone();
        async move { create(&client, &service(&format!("s{i}"), i % 2 == 0)).await }
    });
    let outcomes = futures::future::join_all(creates).await;
    for refusal in outcomes.iter().filter_map(|outcome| outcome.as_ref().err()) {
        assert!(
            refusal.starts_with("500 ")
                && (refusal.contains("range is full") || refusal.contains("concurrent creates")),
            "unexpected refusal: {refusal}"
        );
    }
    let created = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    eprintln!("{created} of {CONCURRENT_CREATES} concurrent creates got one of {FREE_ADDRESSES} addresses");
    assert!(created > 0 && created <= FREE_ADDRESSES, "{created} creates succeeded");
    assert_no_double_allocation(&all_services(&clients[0]).await);

    // Fill what the race left free, one at a time: exactly the free addresses remain.
    for i in 0..FREE_ADDRESSES - created {
        let name = format!("fill{i}");
        create(&clients[i % 3], &service(&name, false)).await.expect("a free address remains");
    }
    let refusal = create(&clients[1], &service("one-too-many", false)).await.expect_err("the range is full");
    assert!(refusal.contains("failed to allocate a serviceIP: range is full"), "{refusal}");
    let services = all_services(&clients[2]).await;
    assert_eq!(services.len(), FREE_ADDRESSES + 1, "the user's Services and kube-dns");
    assert_no_double_allocation(&services);

    // A deleted Service gives its address back.
    let default_services = Api::<Service>::namespaced(clients[0].clone(), "default");
    let victim = services.iter().find(|s| s.metadata.namespace.as_deref() == Some("default")).expect("one");
    let victim_name = victim.metadata.name.clone().expect("named");
    default_services.delete(&victim_name, &DeleteParams::default()).await.expect("deleting");
    wait_until("the Service to be gone", || async {
        default_services.get_opt(&victim_name).await.ok().filter(Option::is_none).map(|_| ())
    })
    .await;
    let reborn = create(&clients[2], &service("reborn", false)).await.expect("the freed address");
    assert_eq!(cluster_ip(&reborn), cluster_ip(victim));
}
