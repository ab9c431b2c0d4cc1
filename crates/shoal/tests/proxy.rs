//! The service proxy end to end: a 3-server cluster and two agents (each running its proxy),
//! one HTTP-serving pod bound to each, and a NodePort Service over both, reached through its
//! ClusterIP and its NodePort from the test process as a client on the machine.
//!
//! The pods are `python3 -m http.server`; without python3 on `PATH` the test prints why it
//! skips, unless `SHOAL_REQUIRE_TOOLS=1` (set in CI).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::wait_until;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{AttachParams, DeleteParams, PostParams};
use serde_json::{Value, json};

/// How long one request through the proxy may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight at once in the load run.
const LOAD_CONCURRENCY: usize = 4;
/// Requests of the load run before the pod is deleted, and after it is gone.
const LOAD_REQUESTS_BEFORE: usize = 100;
const LOAD_REQUESTS_AFTER: usize = 100;
/// The Service's port: above 1024, so that the agents need no privilege to listen on it.
const SERVICE_PORT: u16 = 8000;

fn object<T: k8s_openapi::serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// A pod bound to `node`, labelled `app=web`, serving `/whoami` (its own name) over HTTP on its
/// own address, port 8080 (named `http`), ready while the file `ready` is there.
fn web_pod(name: &str, node: &str, python: &str) -> Pod {
    let script = format!(
        "echo {name} > whoami && touch ready && exec {python} -m http.server 8080 --bind \"$POD_IP\""
    );
    object(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": "host", "command": ["/bin/sh", "-c", script],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
            }],
        },
    }))
}

/// Asks `address` for `/whoami` over a fresh connection: the name of the pod that answered.
async fn whoami(address: SocketAddr) -> Result<String, String> {
    common::http_get(address, "/whoami", REQUEST_TIMEOUT).await
}

/// How many of `count` requests each pod answered; panics on a failed request.
async fn spread(address: SocketAddr, count: usize) -> BTreeMap<String, usize> {
    let mut answers = BTreeMap::new();
    for _ in 0..count {
        let name = whoami(address).await.unwrap_or_else(|error| panic!("a request to {address}: {error}"));
        *answers.entry(name).or_default() += 1;
    }
    answers
}

/// Whether `count` requests in a row succeed and reach every pod of `expected`.
async fn reaches_all(address: SocketAddr, count: usize, expected: &[&str]) -> Option<()> {
    let mut answered = Vec::new();
    for _ in 0..count {
        answered.push(whoami(address).await.ok()?);
    }
    expected.iter().all(|name| answered.iter().any(|answer| answer == name)).then_some(())
}

/// Waits until `count` requests in a row reach `expected` only.
async fn wait_only(address: SocketAddr, expected: &str, count: usize) {
    wait_until(&format!("{count} requests in a row to {address} answered by {expected}"), || async {
        for _ in 0..count {
            if whoami(address).await.ok()? != expected {
                return None;
            }
        }
        Some(())
    })
    .await;
}

async fn exec(pods: &Api<Pod>, pod: &str, script: &str) {
    let mut process = pods
        .exec(pod, ["/bin/sh", "-c", script], &AttachParams::default().stderr(false))
        .await
        .unwrap_or_else(|error| panic!("exec into {pod}: {error}"));
    let status = process.take_status().expect("the exec's status").await.expect("an exit status");
    assert_eq!(status.status.as_deref(), Some("Success"), "{script}: {status:?}");
}

// Two pods on two nodes behind a NodePort Service: requests to the ClusterIP and to
// 127.0.0.1:<nodePort> reach both pods; a pod whose readiness fails stops getting requests
// and gets them again once ready; while a pod is deleted under a load of requests,
// LOAD_CONCURRENCY at a time, at most the requests in flight fail, and afterwards
// only the remaining pod answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_traffic_reaches_only_ready_endpoints() {
    let Some(python) = common::tool_or_skip(
        "python3",
        "apt-get install python3",
        "service_traffic_reaches_only_ready_endpoints",
    ) else {
        return;
    };
    let python = python.display().to_string();
    let mut cluster = common::start_cluster(3, &[]).await;
    cluster.start_agent("a1", 0, &[]).await.expect("starting agent a1");
    cluster.start_agent("a2", 1, &[]).await.expect("starting agent a2");
    let client = cluster.admin_client(0).await.expect("admin client");
    common::wait_node_ready(&client, "a1").await;
    common::wait_node_ready(&client, "a2").await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node) in [("web-1", "a1"), ("web-2", "a2")] {
        pods.create(&PostParams::default(), &web_pod(name, node, &python)).await.expect("creating a pod");
    }
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = object(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]},
    }));
    let service = services.create(&PostParams::default(), &service).await.expect("creating the service");
    let spec = service.spec.expect("a spec");
    let cluster_ip = spec.cluster_ip.expect("a ClusterIP").parse().expect("an IP");
    let node_port = spec.ports.expect("ports")[0].node_port.expect("a nodePort");
    let via_cluster_ip = SocketAddr::new(cluster_ip, SERVICE_PORT);
    let via_node_port = SocketAddr::from(([127, 0, 0, 1], u16::try_from(node_port).expect("a port")));

    // Both pods answer through either address.
    for address in [via_cluster_ip, via_node_port] {
        wait_until(&format!("both pods answering through {address}"), || async {
            reaches_all(address, 10, &["web-1", "web-2"]).await
        })
        .await;
        let answers = spread(address, 20).await;
        assert_eq!(answers.keys().map(String::as_str).collect::<Vec<_>>(), ["web-1", "web-2"], "{answers:?}");
    }

    // web-2 fails its readiness probe: only web-1 answers; ready again, both do.
    exec(&pods, "web-2", "rm ready").await;
    wait_only(via_cluster_ip, "web-1", 10).await;
    assert_eq!(spread(via_cluster_ip, 20).await, BTreeMap::from([("web-1".to_owned(), 20)]));
    exec(&pods, "web-2", "touch ready").await;
    wait_until("web-2 answering again", || async {
        spread(via_cluster_ip, 10).await.get("web-2").map(|_| ())
    })
    .await;

    // web-2 is deleted under load: only requests in flight when it stops may fail.
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..LOAD_CONCURRENCY {
        let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let started = std::time::Instant::now();
                if let Err(error) = whoami(via_cluster_ip).await {
                    eprintln!("a request under load failed after {:?}: {error}", started.elapsed());
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let at_least = |count: usize| {
        let done = done.clone();
        async move {
            wait_until(&format!("{count} requests done"), || async {
                (done.load(Ordering::SeqCst) >= count).then_some(())
            })
            .await
        }
    };
    at_least(LOAD_REQUESTS_BEFORE).await;
    let deleted_at = std::time::Instant::now();
    pods.delete("web-2", &DeleteParams::default()).await.expect("deleting web-2");
    eprintln!("deleted web-2");
    wait_until("web-2 gone", || async { pods.get_opt("web-2").await.ok()?.is_none().then_some(()) }).await;
    at_least(done.load(Ordering::SeqCst) + LOAD_REQUESTS_AFTER).await;
    eprintln!("web-2 gone after {:?}", deleted_at.elapsed());
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("a load worker");
    }
    let (failed, done) = (failed.load(Ordering::SeqCst), done.load(Ordering::SeqCst));
    eprintln!("{failed} of {done} requests failed while web-2 was deleted");
    assert!(failed <= LOAD_CONCURRENCY, "{failed} requests failed, more than were in flight");
    wait_only(via_cluster_ip, "web-1", 10).await;
    wait_only(via_node_port, "web-1", 10).await;
}
