//! Cluster DNS end to end: agents of a one-server cluster serve the cluster's zone from their
//! caches of Services and EndpointSlices, queried here over UDP and TCP with hickory-proto.
//!
//! The agents serve DNS on a free port, which needs no root. Whether pods get the cluster DNS
//! as their resolver is checked only as root (the process runtime bind-mounts the pod's
//! resolv.conf, and resolv.conf cannot name a port other than 53); otherwise that test says
//! why it skips, unless `SHOAL_REQUIRE_ROOT_TESTS=1`, which turns the skip into a failure.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::wait_until;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{LogParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One cluster of this suite at a time (see tests/agent.rs).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long one DNS exchange may take before the poll tries again.
const EXCHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn object<T: k8s_openapi::serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// A port free for both UDP and TCP on `ip` now.
fn free_dns_port(ip: IpAddr) -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind((ip, 0)).expect("binding a loopback UDP port");
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// The answer of the DNS server at `server` to `name`/`query_type`, over TCP or UDP; `None` if
/// none came in time.
async fn ask(server: SocketAddr, name: &str, query_type: RecordType, tcp: bool) -> Option<Message> {
    let mut query = Message::query();
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), query_type));
    let bytes = query.to_vec().unwrap();
    let exchange = async {
        let answer = if tcp {
            let mut stream = tokio::net::TcpStream::connect(server).await.ok()?;
            stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.ok()?;
            stream.write_all(&bytes).await.ok()?;
            let mut length = [0u8; 2];
            stream.read_exact(&mut length).await.ok()?;
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut answer).await.ok()?;
            answer
        } else {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
            socket.send_to(&bytes, server).await.ok()?;
            let mut answer = vec![0u8; 65_535];
            let length = socket.recv(&mut answer).await.ok()?;
            answer.truncate(length);
            answer
        };
        Message::from_vec(&answer).ok()
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.ok().flatten()
}

/// The answer's records as `TYPE data` lines, sorted (the TTL and owner left out).
fn records(answer: &Message) -> Vec<String> {
    let mut lines: Vec<String> = answer
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::SRV(srv) => format!("SRV {} {}", srv.port, srv.target),
            data => format!("{} {data}", record.record_type()),
        })
        .collect();
    lines.sort();
    lines
}

/// Polls until `name`/`query_type` is answered with `expected` lines (NOERROR).
async fn wait_records(
    server: SocketAddr,
    name: &str,
    query_type: RecordType,
    tcp: bool,
    expected: &[String],
) {
    wait_until(&format!("{name} {query_type} to be {expected:?}"), || async {
        let answer = ask(server, name, query_type, tcp).await?;
        (answer.metadata.response_code == ResponseCode::NoError && records(&answer) == expected).then_some(())
    })
    .await;
}

/// A pod on a1 that sleeps, labelled `app=<app>`, named by `hostname` under the Service
/// `subdomain`.
fn sleeping_pod(name: &str, app: &str, subdomain: &str) -> Pod {
    object(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "nodeName": "a1",
            "hostname": name,
            "subdomain": subdomain,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "host", "command": ["sleep", "3600"]}],
        },
    }))
}

// Two agents share one DNS address on a free port. A ClusterIP Service answers its ClusterIP
// (over UDP and TCP) and an SRV record for its named port; a headless Service answers its ready
// pod's address, under the Service's name and under the pod's hostname, and an SRV record
// naming that pod; a name that does not exist is NXDOMAIN and one of another namespace too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_answer_cluster_dns() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(1, &[]).await;
    let dns_ip = cluster.cluster_dns();
    let port = free_dns_port(dns_ip).to_string();
    cluster.start_agent("a1", 0, &["--dns-port", &port]).await.expect("starting agent a1");
    cluster.start_agent("a2", 0, &["--dns-port", &port]).await.expect("starting agent a2");
    let client = cluster.admin_client(0).await.expect("admin client");
    common::wait_node_ready(&client, "a1").await;
    let server = SocketAddr::new(dns_ip, port.parse().unwrap());

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web: Service = object(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }));
    let web = services.create(&PostParams::default(), &web).await.expect("creating web");
    let cluster_ip = web.spec.and_then(|spec| spec.cluster_ip).expect("a ClusterIP");
    let db: Service = object(json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]},
    }));
    services.create(&PostParams::default(), &db).await.expect("creating db");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &sleeping_pod("db-0", "db", "db")).await.expect("creating db-0");

    let web_a = [format!("A {cluster_ip}")];
    wait_records(server, "web.default.svc.cluster.local.", RecordType::A, false, &web_a).await;
    wait_records(server, "web.default.svc.cluster.local.", RecordType::A, true, &web_a).await;
    let web_srv = ["SRV 80 web.default.svc.cluster.local.".to_owned()];
    wait_records(server, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV, false, &web_srv).await;

    let pod_ip = wait_until("db-0's address", || async {
        let pod = pods.get("db-0").await.ok()?;
        pod.status?.pod_ip.filter(|ip| !ip.is_empty())
    })
    .await;
    let db_a = [format!("A {pod_ip}")];
    wait_records(server, "db.default.svc.cluster.local.", RecordType::A, false, &db_a).await;
    wait_records(server, "db-0.db.default.svc.cluster.local.", RecordType::A, true, &db_a).await;
    let db_srv = ["SRV 5432 db-0.db.default.svc.cluster.local.".to_owned()];
    wait_records(server, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV, false, &db_srv).await;

    for name in ["nope.default.svc.cluster.local.", "web.kube-system.svc.cluster.local."] {
        let answer = ask(server, name, RecordType::A, false).await.expect("an answer");
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "{name}: {answer:?}");
    }
}

/// Whether this process runs as root, or `None` after saying why `test` skips.
fn root_or_skip(test: &str) -> Option<()> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|effective| effective == "0"))
        .unwrap_or(false);
    if !root {
        let reason = "a pod's own resolv.conf is a bind mount, which needs root";
        assert!(std::env::var("SHOAL_REQUIRE_ROOT_TESTS").as_deref() != Ok("1"), "{test}: {reason}");
        eprintln!("skipping {test}: {reason}");
        return None;
    }
    Some(())
}

// As root, with the cluster DNS on port 53: a pod's /etc/resolv.conf names the cluster DNS
// with its namespace's search domains, and the pod resolves a Service by its short name and
// by its full name through the C library (getent), as any program in it would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_services_through_their_resolv_conf() {
    let test = "pods_resolve_services_through_their_resolv_conf";
    if root_or_skip(test).is_none()
        || common::tool_or_skip("getent", "apt-get install libc-bin", test).is_none()
    {
        return;
    }
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(1, &[]).await;
    let dns_ip = cluster.cluster_dns();
    cluster.start_agent("a1", 0, &[]).await.expect("starting agent a1");
    let client = cluster.admin_client(0).await.expect("admin client");
    common::wait_node_ready(&client, "a1").await;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web: Service = object(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }));
    let web = services.create(&PostParams::default(), &web).await.expect("creating web");
    let cluster_ip = web.spec.and_then(|spec| spec.cluster_ip).expect("a ClusterIP");
    // Until the agent's cache has the Service, the lookup fails: the pod tries again.
    let script = "cat /etc/resolv.conf; \
                  until getent hosts web; do sleep 0.2; done; \
                  getent hosts web.default.svc.cluster.local; sleep 3600";
    let pod: Pod = object(json!({
        "metadata": {"name": "client"},
        "spec": {
            "nodeName": "a1",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "host", "command": ["/bin/sh", "-c", script]}],
        },
    }));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod).await.expect("creating the client pod");
    let log = wait_until("the client pod to resolve web twice", || async {
        let log = pods.logs("client", &LogParams::default()).await.ok()?;
        (log.matches(&cluster_ip).count() >= 2).then_some(log)
    })
    .await;
    assert!(log.contains(&format!("nameserver {dns_ip}")), "{log}");
    assert!(log.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{log}");
}

/// Clients of the two-tier app's load, each sending one request at a time: at most this many
/// requests are in flight when a backend pod dies.
const CLIENTS: usize = 4;
/// How long the load runs; a backend pod is deleted a third of the way in.
const LOAD: std::time::Duration = std::time::Duration::from_secs(9);
/// How long one request through the frontend may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

// The README's two-tier app (examples/two-tier.yaml), applied with the real kubectl on two
// nodes: the frontend's pods reach the backend by the Service's short DNS name, through their
// resolv.conf, the cluster DNS and a node's proxy. Under a load of requests on the frontend's
// ClusterIP, deleting a backend pod fails at most the requests then in flight, and the app
// goes on answering from the other backend pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_tier_app_keeps_serving_while_a_backend_pod_dies() {
    let test = "a_two_tier_app_keeps_serving_while_a_backend_pod_dies";
    if root_or_skip(test).is_none()
        || common::tool_or_skip("python3", "apt-get install python3", test).is_none()
    {
        return;
    }
    let Some(kubectl) = common::tool_or_skip("kubectl", "https://kubernetes.io/docs/tasks/tools/", test)
    else {
        return;
    };
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // The agents serve DNS on port 53 of the cluster's own DNS address, as root.
    let mut cluster = common::start_cluster(3, &[]).await;
    cluster.start_agent("a1", 0, &[]).await.expect("starting agent a1");
    cluster.start_agent("a2", 1, &[]).await.expect("starting agent a2");
    let client = cluster.admin_client(2).await.expect("admin client");
    common::wait_node_ready(&client, "a1").await;
    common::wait_node_ready(&client, "a2").await;

    let kubectl = common::Kubectl::new(&kubectl, &cluster);
    let manifest = include_str!("../../../examples/two-tier.yaml");
    kubectl.ok(&["apply", "-f", "-"], Some(manifest)).await;
    for deployment in ["deployment/backend", "deployment/frontend"] {
        kubectl.ok(&["rollout", "status", deployment, "--timeout=120s"], None).await;
    }
    let ip = kubectl.ok(&["get", "service", "frontend", "-o", "jsonpath={.spec.clusterIP}"], None).await;
    let frontend = SocketAddr::new(ip.trim().parse().expect("a ClusterIP"), 8080);
    let first = wait_until("the frontend to answer from the backend", || async {
        common::http_get(frontend, "/", REQUEST_TIMEOUT)
            .await
            .ok()
            .filter(|body| body.contains("served by backend-"))
    })
    .await;
    eprintln!("the frontend answers: {first}");

    let started = tokio::time::Instant::now();
    let loads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while started.elapsed() < LOAD {
                    let outcome = common::http_get(frontend, "/", REQUEST_TIMEOUT).await;
                    outcomes.push((started.elapsed(), outcome));
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(LOAD / 3).await;
    let victim = kubectl
        .ok(&["get", "pods", "-l", "app=backend", "-o", "jsonpath={.items[0].metadata.name}"], None)
        .await;
    kubectl.ok(&["delete", "pod", victim.trim(), "--wait=false"], None).await;
    // Stored by now; a slow kubectl must not eat into the time the endpoints get to follow.
    let deleted_at = started.elapsed();
    let mut outcomes = Vec::new();
    for load in loads {
        outcomes.extend(load.await.expect("a load task"));
    }
    let failures: Vec<_> = outcomes.iter().filter(|(_, outcome)| outcome.is_err()).collect();
    let served_after = outcomes
        .iter()
        .filter(|(at, outcome)| {
            *at > deleted_at && outcome.as_ref().is_ok_and(|body| body.contains("served by backend-"))
        })
        .count();
    eprintln!(
        "{} requests, {} failed ({failures:?}), {served_after} answered after {victim} was deleted",
        outcomes.len(),
        failures.len()
    );
    assert!(failures.len() <= CLIENTS, "more failures than requests in flight: {failures:?}");
    assert!(served_after > 0, "the app stopped answering when {victim} was deleted");
    // Endpoints follow a pod's deletion within a second; three leave room for a busy machine.
    let from_victim_later: Vec<_> = outcomes
        .iter()
        .filter(|(at, outcome)| {
            *at > deleted_at + std::time::Duration::from_secs(3)
                && outcome.as_ref().is_ok_and(|body| body.contains(victim.trim()))
        })
        .collect();
    assert!(from_victim_later.is_empty(), "the deleted {victim} still served: {from_victim_later:?}");
}
