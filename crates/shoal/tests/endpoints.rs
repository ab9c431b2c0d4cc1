//! The endpoints controllers and the horizontal pod autoscaler end to end: a 3-server cluster
//! and one agent running pods bound to it by `spec.nodeName`, read and written through
//! kube-rs.
//!
//! The endpoints test runs HTTP servers (`python3 -m http.server`) as pods; without python3
//! on `PATH` it prints why it skips, unless `SHOAL_REQUIRE_TOOLS=1` (set in CI).

mod common;

use common::wait_until;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{AttachParams, DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// The autoscaler's sync period in these tests, instead of 15 s.
const HPA_SYNC_PERIOD_MS: &str = "2000";

/// One cluster of this suite at a time (see tests/agent.rs: several at once on a 2-core
/// machine can starve a Raft election).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster_with_agent() -> (common::TestCluster, Client, tokio::sync::MutexGuard<'static, ()>) {
    let turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster =
        common::start_cluster(3, &["--horizontal-pod-autoscaler-sync-period-ms", HPA_SYNC_PERIOD_MS]).await;
    cluster.start_agent("a1", 0, &[]).await.expect("starting the agent");
    let client = cluster.admin_client(0).await.expect("admin client");
    common::wait_node_ready(&client, "a1").await;
    (cluster, client, turn)
}

fn object<T: k8s_openapi::serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// A pod on a1 labelled `app=web` serving its working directory over HTTP on its own address,
/// port 8080 (named `http`), ready while the file `ready` is there.
fn web_pod(name: &str, python: &str) -> Pod {
    let script = format!("touch ready && exec {python} -m http.server 8080 --bind \"$POD_IP\"");
    object(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "nodeName": "a1",
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": "host", "command": ["/bin/sh", "-c", script],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
            }],
        },
    }))
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone().filter(|ip| !ip.is_empty())
}

/// The Endpoints' addresses as (ip, ready, port) triples, sorted.
fn endpoints_addresses(endpoints: &Endpoints) -> Vec<(String, bool, i32)> {
    let mut all = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let port = subset.ports.iter().flatten().next().map_or(0, |port| port.port);
        all.extend(subset.addresses.iter().flatten().map(|address| (address.ip.clone(), true, port)));
        all.extend(
            subset.not_ready_addresses.iter().flatten().map(|address| (address.ip.clone(), false, port)),
        );
    }
    all.sort();
    all
}

/// The endpoints of the Service's slices as (ip, ready, port) triples, sorted.
async fn slice_endpoints(slices: &Api<EndpointSlice>) -> Option<Vec<(String, bool, i32)>> {
    let params = ListParams::default().labels("kubernetes.io/service-name=web");
    let list = slices.list(&params).await.ok()?;
    let mut all = Vec::new();
    for slice in &list.items {
        let port = slice.ports.iter().flatten().next().and_then(|port| port.port).unwrap_or(0);
        for endpoint in &slice.endpoints {
            let ready = endpoint.conditions.as_ref().and_then(|conditions| conditions.ready).unwrap_or(false);
            all.extend(endpoint.addresses.iter().map(|address| (address.clone(), ready, port)));
        }
    }
    all.sort();
    Some(all)
}

/// Waits until both the Endpoints `web` and its slices hold `expected`.
async fn wait_addresses(
    endpoints: &Api<Endpoints>,
    slices: &Api<EndpointSlice>,
    what: &str,
    expected: &[(String, bool, i32)],
) {
    wait_until(&format!("Endpoints: {what}"), || async {
        let found = endpoints.get_opt("web").await.ok().flatten()?;
        (endpoints_addresses(&found) == expected).then_some(())
    })
    .await;
    wait_until(&format!("EndpointSlices: {what}"), || async {
        (slice_endpoints(slices).await? == expected).then_some(())
    })
    .await;
}

// A Service with a named targetPort selecting two HTTP-serving pods gets Endpoints and an
// EndpointSlice with both addresses and the resolved port (8080); a pod whose readiness file
// is removed (through exec) moves to notReadyAddresses and ready=false; a deleted pod leaves
// both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pods_and_readiness() {
    let Some(python) =
        common::tool_or_skip("python3", "apt-get install python3", "endpoints_follow_pods_and_readiness")
    else {
        return;
    };
    let python = python.display().to_string();
    let (_cluster, client, _turn) = cluster_with_agent().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["web-1", "web-2"] {
        pods.create(&PostParams::default(), &web_pod(name, &python)).await.expect("creating a pod");
    }
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = object(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }));
    services.create(&PostParams::default(), &service).await.expect("creating the service");
    let mut ips = Vec::new();
    for name in ["web-1", "web-2"] {
        let ip = wait_until(&format!("{name} ready with an IP"), || async {
            let pod = pods.get_opt(name).await.ok().flatten()?;
            let ready = pod
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then(|| pod_ip(&pod)).flatten()
        })
        .await;
        ips.push(ip);
    }
    let (first, second) = (ips[0].clone(), ips[1].clone());

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let mut both_ready = vec![(first.clone(), true, 8080), (second.clone(), true, 8080)];
    both_ready.sort();
    wait_addresses(&endpoints, &slices, "both pods ready on 8080", &both_ready).await;
    let found = endpoints.get("web").await.expect("the Endpoints");
    let address = &found.subsets.as_ref().unwrap()[0].addresses.as_ref().unwrap()[0];
    assert_eq!(address.node_name.as_deref(), Some("a1"));
    assert_eq!(address.target_ref.as_ref().and_then(|target| target.kind.as_deref()), Some("Pod"));
    assert_eq!(found.metadata.labels.unwrap_or_default().get("tier").map(String::as_str), Some("front"));
    let slice =
        &slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items[0];
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    let owner = &slice.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Service", "web", Some(true)));

    // The second pod's readiness file goes: its probe gets a 404.
    let mut remove = pods
        .exec("web-2", ["/bin/sh", "-c", "rm ready"], &AttachParams::default().stderr(false))
        .await
        .expect("exec into web-2");
    let status = remove.take_status().expect("the exec's status").await.expect("an exit status");
    assert_eq!(status.status.as_deref(), Some("Success"), "rm ready: {status:?}");
    let mut one_unready = vec![(first.clone(), true, 8080), (second.clone(), false, 8080)];
    one_unready.sort();
    wait_addresses(&endpoints, &slices, "web-2 not ready", &one_unready).await;

    pods.delete("web-1", &DeleteParams::default()).await.expect("deleting web-1");
    let only_second = vec![(second.clone(), false, 8080)];
    wait_addresses(&endpoints, &slices, "web-1 gone", &only_second).await;
}

// A pod spinning a CPU against a 100m request, selected by a Deployment's selector, and an
// HPA on that Deployment targeting 50 % cpu: the HPA raises the Deployment's spec.replicas
// through its scale subresource (to maxReplicas, 3), reports the usage in its status (what
// `kubectl get hpa` shows as TARGETS) and says why in a SuccessfulRescale event. No Deployment
// controller is needed: the API serves /scale on the stored Deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_deployment_on_cpu() {
    let (_cluster, client, _turn) = cluster_with_agent().await;
    let container = |script: &str| {
        json!({"name": "main", "image": "host", "command": ["/bin/sh", "-c", script],
               "resources": {"requests": {"cpu": "100m"}}})
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let busy: Pod = object(json!({
        "metadata": {"name": "load-busy", "labels": {"app": "load"}},
        "spec": {"nodeName": "a1", "terminationGracePeriodSeconds": 1, "containers": [container("while :; do :; done")]},
    }));
    pods.create(&PostParams::default(), &busy).await.expect("creating the busy pod");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = object(json!({
        "metadata": {"name": "load"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "load"}},
            "template": {"metadata": {"labels": {"app": "load"}},
                         "spec": {"nodeName": "a1", "terminationGracePeriodSeconds": 1,
                                  "containers": [container("sleep 3600")]}},
        },
    }));
    deployments.create(&PostParams::default(), &deployment).await.expect("creating the deployment");
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa: HorizontalPodAutoscaler = object(json!({
        "metadata": {"name": "load"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "load"},
            "minReplicas": 1, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
        },
    }));
    hpas.create(&PostParams::default(), &hpa).await.expect("creating the HPA");

    wait_until("the Deployment scaled to 3", || async {
        let replicas = deployments.get_opt("load").await.ok().flatten()?.spec?.replicas?;
        (replicas == 3).then_some(())
    })
    .await;
    // A sample whose window began before the pod was ready is set aside, as upstream does, so
    // a pass may report no usage; the next one does.
    let (status, utilization) = wait_until("the HPA's status with the cpu utilization", || async {
        let status = hpas.get_opt("load").await.ok().flatten()?.status?;
        let metric = status.current_metrics.as_ref()?.first()?.resource.as_ref()?;
        let utilization = metric.current.average_utilization?;
        Some((status, utilization))
    })
    .await;
    assert!(utilization > 55, "a spinning pod uses more than its 100m request: {utilization}%");
    let able = status.conditions.iter().flatten().find(|condition| condition.type_ == "AbleToScale");
    assert_eq!(able.map(|condition| condition.status.as_str()), Some("True"));

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_until("the SuccessfulRescale event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|event| {
                event.involved_object.name.as_deref() == Some("load")
                    && event.reason.as_deref() == Some("SuccessfulRescale")
                    && event.message.as_deref()
                        == Some("New size: 3; reason: cpu resource utilization (percentage of request) above target")
            })
            .then_some(())
    })
    .await;

    // The Table `kubectl get hpa` prints: TARGETS as "cpu: <current>%/50%".
    let targets = wait_until("TARGETS with the cpu utilization", || async {
        let request = http::Request::get("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers")
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .expect("a valid request");
        let table: Value = client.request(request).await.ok()?;
        let targets = table["rows"][0]["cells"][2].as_str()?.to_owned();
        (!targets.contains("<unknown>")).then_some(targets)
    })
    .await;
    let percent = targets
        .strip_prefix("cpu: ")
        .and_then(|rest| rest.strip_suffix("%/50%"))
        .and_then(|current| current.parse::<u32>().ok());
    assert!(percent.is_some_and(|percent| percent > 55), "TARGETS {targets}");
}
