//! The node agent end to end: a 3-server cluster and `shoal agent` processes that join with a
//! join token, run pods bound to them (by `spec.nodeName`, the scheduler being absent) with
//! the process runtime, and report through the Kubernetes API as a kubelet would.

mod common;

use std::time::Duration;

use common::wait_until;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Fast restarts, so crash loops show within a test's patience.
const AGENT_ARGS: [&str; 4] = ["--restart-backoff-initial-ms", "200", "--restart-backoff-max-ms", "1000"];

/// One cluster of this suite at a time: four clusters of 3 servers and an agent each, started
/// at once on a 2-core CI machine that also compiles, can starve a Raft election past its
/// deadline.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster_with_agent() -> (common::TestCluster, Client, tokio::sync::MutexGuard<'static, ()>) {
    let turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = common::start_cluster(3, &[]).await;
    cluster.start_agent("a1", 0, &AGENT_ARGS).await.expect("starting the agent");
    let client = cluster.admin_client(0).await.expect("admin client");
    common::wait_node_ready(&client, "a1").await;
    (cluster, client, turn)
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = json!("a1");
    spec["terminationGracePeriodSeconds"] =
        spec.get("terminationGracePeriodSeconds").cloned().unwrap_or(json!(2));
    serde_json::from_value(
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name }, "spec": spec }),
    )
    .expect("a valid pod")
}

fn shell(name: &str, script: &str) -> serde_json::Value {
    json!({ "name": name, "image": "host", "command": ["/bin/sh", "-c", script] })
}

async fn create(pods: &Api<Pod>, pod: Pod) {
    pods.create(&PostParams::default(), &pod).await.expect("creating the pod");
}

async fn wait_pod<T>(pods: &Api<Pod>, name: &str, what: &str, check: impl Fn(&Pod) -> Option<T>) -> T {
    wait_until(&format!("pod {name}: {what}"), || async { check(&pods.get_opt(name).await.ok().flatten()?) })
        .await
}

fn container_status(pod: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|status| status.name == name)
        .cloned()
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

async fn events_of(client: &Client, pod: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.expect("listing events");
    list.items
        .into_iter()
        .filter(|event| event.involved_object.name.as_deref() == Some(pod))
        .map(|event| (event.reason.unwrap_or_default(), event.message.unwrap_or_default()))
        .collect()
}

// A node joins with a join token, registers with capacity and conditions, and heartbeats
// through its Lease; pods bound to it run with their environment (ConfigMap keys, POD_IP),
// init containers run in order before the main one, and a pod that runs to completion is
// Succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_joins_and_runs_pods() {
    let (_cluster, client, _turn) = cluster_with_agent().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get("a1").await.expect("node a1");
    let status = node.status.expect("node status");
    for resource in ["cpu", "memory", "pods"] {
        assert!(
            status.capacity.as_ref().is_some_and(|capacity| capacity.contains_key(resource)),
            "{resource}"
        );
        assert!(status.allocatable.as_ref().is_some_and(|allocatable| allocatable.contains_key(resource)));
    }
    let kinds: Vec<String> = status.conditions.unwrap_or_default().into_iter().map(|c| c.type_).collect();
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = leases
        .get("a1")
        .await
        .expect("the node lease")
        .spec
        .and_then(|spec| spec.renew_time)
        .expect("renewed");
    wait_until("the lease renewed again", || async {
        let renewed = leases.get("a1").await.ok()?.spec?.renew_time?;
        (renewed.0 > first.0).then_some(())
    })
    .await;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let config_map: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "settings" }, "data": { "greeting": "hello" } }),
    )
    .unwrap();
    config_maps.create(&PostParams::default(), &config_map).await.expect("config map");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut main = shell("main", "echo \"$GREETING from $POD_IP\"; cat work/order; sleep 1000");
    main["env"] = json!([{ "name": "GREETING", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "greeting" } } }]);
    main["volumeMounts"] = json!([{ "name": "work", "mountPath": "/work" }]);
    let mut first_init = shell("first", "echo first >> work/order");
    first_init["volumeMounts"] = main["volumeMounts"].clone();
    let mut second_init = shell("second", "echo second >> work/order");
    second_init["volumeMounts"] = main["volumeMounts"].clone();
    create(
        &pods,
        pod(
            "web",
            json!({
                "initContainers": [first_init, second_init],
                "containers": [main],
                "volumes": [{ "name": "work", "emptyDir": {} }],
            }),
        ),
    )
    .await;
    let running = wait_pod(&pods, "web", "Running and Ready", |pod| {
        (phase(pod) == Some("Running") && condition(pod, "Ready").as_deref() == Some("True"))
            .then(|| pod.clone())
    })
    .await;
    let pod_ip = running.status.as_ref().and_then(|status| status.pod_ip.clone()).expect("a pod IP");
    assert!(pod_ip.starts_with("127."), "a loopback pod IP: {pod_ip}");
    // The log, through the API server's proxy to the agent: the ConfigMap's value, the pod's
    // own address, and the init containers' lines in their order.
    let log = wait_until("the main container's log", || async {
        let log = pods.logs("web", &LogParams::default()).await.ok()?;
        log.contains("second").then_some(log)
    })
    .await;
    assert_eq!(log, format!("hello from {pod_ip}\nfirst\nsecond\n"));
    let tail =
        pods.logs("web", &LogParams { tail_lines: Some(1), ..LogParams::default() }).await.expect("tail");
    assert_eq!(tail, "second\n");
    for init in ["first", "second"] {
        let status = container_status(&running, init).expect("init status");
        let terminated =
            status.state.and_then(|state| state.terminated).expect("init containers ran to the end");
        assert_eq!(terminated.exit_code, 0);
    }

    create(&pods, pod("once", json!({ "restartPolicy": "Never", "containers": [shell("main", "exit 0")] })))
        .await;
    wait_pod(&pods, "once", "Succeeded", |pod| (phase(pod) == Some("Succeeded")).then_some(())).await;
    create(&pods, pod("fails", json!({ "restartPolicy": "Never", "containers": [shell("main", "exit 4")] })))
        .await;
    let failed =
        wait_pod(&pods, "fails", "Failed", |pod| (phase(pod) == Some("Failed")).then(|| pod.clone())).await;
    let exit = container_status(&failed, "main").and_then(|s| s.state?.terminated).expect("terminated");
    assert_eq!(exit.exit_code, 4);

    // A configMap volume follows its ConfigMap.
    let mut reader = shell("main", "sleep 1000");
    reader["volumeMounts"] = json!([{ "name": "settings", "mountPath": "/etc/settings" }]);
    let volumes = json!([{ "name": "settings", "configMap": { "name": "settings" } }]);
    create(&pods, pod("reader", json!({ "containers": [reader], "volumes": volumes }))).await;
    wait_pod(&pods, "reader", "Running", |pod| (phase(pod) == Some("Running")).then_some(())).await;
    let read = |script: &'static str| {
        let pods = pods.clone();
        async move {
            let command = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
            let mut attached =
                pods.exec("reader", command, &kube::api::AttachParams::default().stderr(false)).await.ok()?;
            let mut stdout = attached.stdout()?;
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text).await.ok()?;
            Some(text)
        }
    };
    assert_eq!(read("cat etc/settings/greeting").await.as_deref(), Some("hello"));
    let patch = json!({ "data": { "greeting": "bonjour" } });
    config_maps
        .patch("settings", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("patch");
    wait_until("the volume's file updated", || async {
        (read("cat etc/settings/greeting").await.as_deref() == Some("bonjour")).then_some(())
    })
    .await;

    wait_until("web's Pulled, Created and Started events", || async {
        let events = events_of(&client, "web").await;
        ["Pulled", "Created", "Started"]
            .iter()
            .all(|reason| events.iter().any(|(r, _)| r == reason))
            .then_some(())
    })
    .await;
}

// Crashes restart with back-off and count; a failing liveness probe restarts its container;
// a failing readiness probe keeps the pod unready without restarting it; a missing program and
// a missing ConfigMap are reported in the container's state and in events, not by a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_restarts_probes_and_bad_specs() {
    let (_cluster, client, _turn) = cluster_with_agent().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create(&pods, pod("crash", json!({ "containers": [shell("main", "echo crashing; exit 3")] }))).await;
    let mut liveness = shell("main", "sleep 1000");
    liveness["livenessProbe"] = json!({ "exec": { "command": ["/bin/sh", "-c", "exit 1"] }, "periodSeconds": 1, "failureThreshold": 1 });
    create(&pods, pod("unhealthy", json!({ "containers": [liveness] }))).await;
    let mut readiness = shell("main", "sleep 1000");
    readiness["readinessProbe"] =
        json!({ "exec": { "command": ["/bin/sh", "-c", "test -f ready"] }, "periodSeconds": 1 });
    create(&pods, pod("unready", json!({ "containers": [readiness] }))).await;
    let mut missing = shell("main", "");
    missing["command"] = json!(["shoal-no-such-program"]);
    create(&pods, pod("missing-program", json!({ "containers": [missing] }))).await;
    let mut config = shell("main", "sleep 1000");
    config["envFrom"] = json!([{ "configMapRef": { "name": "nope" } }]);
    create(&pods, pod("missing-config", json!({ "containers": [config] }))).await;

    let crashed = wait_pod(&pods, "crash", "restarted twice", |pod| {
        container_status(pod, "main").filter(|status| status.restart_count >= 2)
    })
    .await;
    let last = crashed.last_state.and_then(|state| state.terminated).expect("the last run's end");
    assert_eq!(last.exit_code, 3);
    wait_pod(&pods, "crash", "CrashLoopBackOff", |pod| {
        let waiting = container_status(pod, "main")?.state?.waiting?;
        (waiting.reason.as_deref() == Some("CrashLoopBackOff")).then_some(())
    })
    .await;

    wait_pod(&pods, "unhealthy", "restarted by its liveness probe", |pod| {
        container_status(pod, "main").filter(|status| status.restart_count >= 1)
    })
    .await;
    // Events are sent in the background, so they may trail the status.
    wait_until("the liveness events", || async {
        let events = events_of(&client, "unhealthy").await;
        let unhealthy = events
            .iter()
            .any(|(reason, message)| reason == "Unhealthy" && message.starts_with("Liveness probe failed"));
        let killing = events
            .iter()
            .any(|(reason, message)| reason == "Killing" && message.contains("failed liveness probe"));
        (unhealthy && killing).then_some(())
    })
    .await;

    let unready =
        wait_pod(&pods, "unready", "running", |pod| (phase(pod) == Some("Running")).then(|| pod.clone()))
            .await;
    assert_eq!(condition(&unready, "Ready").as_deref(), Some("False"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = pods.get("unready").await.expect("pod");
    let status = container_status(&still, "main").expect("status");
    assert_eq!((status.ready, status.restart_count), (false, 0), "unready, never restarted");

    let start_error = wait_pod(&pods, "missing-program", "a start error", |pod| {
        let status = container_status(pod, "main")?;
        let state =
            status.last_state.and_then(|s| s.terminated).or(status.state.and_then(|s| s.terminated))?;
        (state.reason.as_deref() == Some("StartError")).then_some(state)
    })
    .await;
    assert_eq!(start_error.exit_code, 128);
    assert!(start_error.message.unwrap_or_default().contains("shoal-no-such-program"));

    let waiting = wait_pod(&pods, "missing-config", "a config error", |pod| {
        container_status(pod, "main")?.state?.waiting
    })
    .await;
    assert_eq!(waiting.reason.as_deref(), Some("CreateContainerConfigError"));
    assert_eq!(waiting.message.as_deref(), Some("configmap \"nope\" not found"));
}

// Deleting a pod stops its containers gracefully, SIGTERM first and SIGKILL once the grace
// period is over, and only then removes the pod object; postStart and preStop hooks run
// (they leave marks in a hostPath volume), and a failing postStart hook restarts its
// container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_deletion_and_hooks() {
    let (_cluster, client, _turn) = cluster_with_agent().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let marks = tempfile::tempdir().expect("a directory for the hooks' marks");
    let mut hooked = shell("main", "sleep 1000");
    hooked["volumeMounts"] = json!([{ "name": "marks", "mountPath": "/marks" }]);
    hooked["lifecycle"] = json!({
        "postStart": { "exec": { "command": ["/bin/sh", "-c", "echo started > marks/post-start"] } },
        "preStop": { "exec": { "command": ["/bin/sh", "-c", "echo stopping > marks/pre-stop"] } },
    });
    let volumes = json!([{ "name": "marks", "hostPath": { "path": marks.path(), "type": "Directory" } }]);
    create(&pods, pod("hooked", json!({ "containers": [hooked], "volumes": volumes }))).await;
    let mut failing = shell("main", "sleep 1000");
    failing["lifecycle"] = json!({ "postStart": { "exec": { "command": ["/bin/sh", "-c", "exit 1"] } } });
    create(&pods, pod("bad-hook", json!({ "containers": [failing] }))).await;
    wait_pod(&pods, "hooked", "Running", |pod| (phase(pod) == Some("Running")).then_some(())).await;
    assert_eq!(std::fs::read_to_string(marks.path().join("post-start")).ok().as_deref(), Some("started\n"));
    pods.delete("hooked", &DeleteParams::default()).await.expect("delete");
    wait_until("hooked gone", || async { pods.get_opt("hooked").await.ok()?.is_none().then_some(()) }).await;
    assert_eq!(std::fs::read_to_string(marks.path().join("pre-stop")).ok().as_deref(), Some("stopping\n"));
    wait_pod(&pods, "bad-hook", "restarted after its postStart hook failed", |pod| {
        container_status(pod, "main").filter(|status| status.restart_count >= 1)
    })
    .await;
    wait_until("the FailedPostStartHook event", || async {
        let events = events_of(&client, "bad-hook").await;
        events.iter().any(|(reason, _)| reason == "FailedPostStartHook").then_some(())
    })
    .await;

    let stubborn = shell("main", "trap '' TERM; while :; do sleep 0.1; done");
    create(&pods, pod("stubborn", json!({ "terminationGracePeriodSeconds": 3, "containers": [stubborn] })))
        .await;
    wait_pod(&pods, "stubborn", "Running", |pod| (phase(pod) == Some("Running")).then_some(())).await;
    let asked = tokio::time::Instant::now();
    pods.delete("stubborn", &DeleteParams::default()).await.expect("delete");
    let marked = pods.get("stubborn").await.expect("still there while it stops");
    assert!(marked.metadata.deletion_timestamp.is_some());
    wait_until("the pod object gone", || async {
        pods.get_opt("stubborn").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(asked.elapsed() >= Duration::from_secs(3), "the grace period was honoured");
}

// An agent killed with SIGKILL leaves its pods running; restarted, it adopts them without a
// restart (same container, same start time, restart count 0). An API outage (every server
// down) leaves pods untouched, and the agent reconciles once the API returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_stability_and_readoption() {
    let (mut cluster, client, _turn) = cluster_with_agent().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create(&pods, pod("steady", json!({ "containers": [shell("main", "sleep 1000")] }))).await;
    let before = wait_pod(&pods, "steady", "Running", |pod| {
        (phase(pod) == Some("Running")).then(|| container_status(pod, "main")).flatten()
    })
    .await;

    cluster.kill_agent(0).await.expect("kill the agent");
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart_agent(0, 1).expect("restart the agent");
    create(&pods, pod("after-restart", json!({ "containers": [shell("main", "sleep 1000")] }))).await;
    wait_pod(&pods, "after-restart", "Running", |pod| (phase(pod) == Some("Running")).then_some(())).await;
    let after = container_status(&pods.get("steady").await.expect("pod"), "main").expect("status");
    assert_eq!(after.container_id, before.container_id, "the same container, adopted");
    assert_eq!(after.restart_count, 0);

    let outage = Duration::from_secs(30);
    for server in 0..3 {
        cluster.stop(server).await.expect("stopping a server");
    }
    tokio::time::sleep(outage).await;
    for server in 0..3 {
        cluster.restart(server).await.expect("starting a server again");
    }
    cluster.wait_ready().await.expect("a leader again");
    let client = cluster.admin_client(0).await.expect("admin client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    create(&pods, pod("after-outage", json!({ "containers": [shell("main", "sleep 1000")] }))).await;
    wait_pod(&pods, "after-outage", "Running", |pod| (phase(pod) == Some("Running")).then_some(())).await;
    let survived = container_status(&pods.get("steady").await.expect("pod"), "main").expect("status");
    assert_eq!(survived.container_id, before.container_id, "the outage restarted nothing");
    assert_eq!(survived.restart_count, 0);
}
