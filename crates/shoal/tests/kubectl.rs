//! The real `kubectl` against a 3-member cluster of `shoal server` processes: discovery, `get`
//! of every served kind in every output format, watches, every way of creating, applying,
//! patching and deleting objects, authorization, and the errors kubectl users meet, each
//! checked against what kubectl prints when it talks to Kubernetes' own API server.
//!
//! The `kubectl` on `PATH` may be a dispatcher that runs `kubectl.1.<minor>` for the minor
//! version the server reports. Every `Kubectl` handle has its own `--cache-dir`, so discovery
//! cached in one test never answers for another. No agent runs pods and no controller runs
//! yet, so the tests check what the API stores and leave out what controllers would add.
//!
//! Without kubectl on `PATH` each test prints why it skips, unless `SHOAL_REQUIRE_TOOLS=1`
//! (set in CI), which turns the missing tool into a failure.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use shoal::local_cluster::LocalCluster;
use shoal_pki::{ClusterCa, IssueRequest, Usage};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use common::start_cluster;

/// How long one kubectl command may run; its own requests time out after 32 s.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a background `kubectl get -w` gets to print the lines expected of it.
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the garbage collector gets to bring owners and dependents to their end state.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// kube-apiserver's limit on a request body, which shoal shares.
const REQUEST_BODY_BYTES_MAX: usize = 3 << 20;

/// What kubectl prints when the server says 401, before the reason in parentheses.
const LOGGED_OUT: &str = "error: You must be logged in to the server (";

// ---------------------------------------------------------------------------------------
// discovery and get

// Asks for the version and the API resources, then creates one object of every served kind
// (in `default`, and the namespaced ones again in `team`) and reads each back every way
// `kubectl get` offers: -o wide (header and cells as Kubernetes' printers make them), -o json,
// -o yaml, -A, -l, --field-selector on metadata and on the kind's own fields, and describe.
// The per-kind checks are collected so that one run reports every kind that is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_discovery_and_get_of_every_kind() {
    let Some(exe) = kubectl_or_skip("version_discovery_and_get_of_every_kind") else { return };
    let cluster = start_cluster(3, &[]).await;
    let kubectl = Kubectl::admin(&exe, &cluster, 1);

    let version = kubectl.json(&["version"]).await;
    let server = &version["serverVersion"];
    assert_eq!((server["major"].as_str(), server["minor"].as_str()), (Some("1"), Some("33")), "{version}");
    assert!(server["gitVersion"].as_str().is_some_and(|v| v.starts_with("v1.33.")), "{version}");
    assert_eq!(
        version["clientVersion"]["minor"], server["minor"],
        "the dispatcher runs the kubectl of the server's minor version: {version}"
    );
    let plain = kubectl.ok(&["version"]).await;
    assert!(plain.contains("\nServer Version: v1.33."), "{plain}");

    check_api_resources(&kubectl).await;

    let created = kubectl.create(&every_kind_manifests()).await;
    assert_eq!(lines(&created), every_kind_created());
    // Events name the pod they are about by uid, so they come once the pods exist.
    let mut events = Vec::new();
    for namespace in ["default", "team"] {
        let pod = kubectl.json(&["get", "pod", "web", "-n", namespace]).await;
        events.push(event_manifest(namespace, &pod));
    }
    assert_eq!(lines(&kubectl.create(&events).await), ["event/web.1 created", "event/web.1 created"]);

    let mut problems = Vec::new();
    for case in every_kind() {
        problems.extend(kind_problems(&kubectl, &case).await);
    }
    let all = kubectl.ok(&["get", "all", "-l", "app=web", "-o", "name"]).await;
    for name in ["pod/web", "service/web", "deployment.apps/web", "replicaset.apps/web-1"] {
        if !lines(&all).contains(&name) {
            problems.push(format!("`get all -l app=web -o name` does not list {name}:\n{all}"));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n\n{}", problems.len(), problems.join("\n\n"));
}

/// `api-resources` lists every served kind with its short names, group version, scope, verbs
/// and the `all` category where Kubernetes has it.
async fn check_api_resources(kubectl: &Kubectl) {
    let table = Table::parse(&kubectl.ok(&["api-resources", "-o", "wide"]).await);
    assert_eq!(
        table.header,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND", "VERBS", "CATEGORIES"],
        "{table:?}"
    );
    let expected = [
        ("configmaps", "cm", "v1", "true", "ConfigMap", ""),
        ("endpoints", "ep", "v1", "true", "Endpoints", ""),
        ("events", "ev", "v1", "true", "Event", ""),
        ("namespaces", "ns", "v1", "false", "Namespace", ""),
        ("nodes", "no", "v1", "false", "Node", ""),
        ("pods", "po", "v1", "true", "Pod", "all"),
        ("secrets", "", "v1", "true", "Secret", ""),
        ("serviceaccounts", "sa", "v1", "true", "ServiceAccount", ""),
        ("services", "svc", "v1", "true", "Service", "all"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment", "all"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet", "all"),
        ("horizontalpodautoscalers", "hpa", "autoscaling/v2", "true", "HorizontalPodAutoscaler", "all"),
        ("leases", "", "coordination.k8s.io/v1", "true", "Lease", ""),
        ("endpointslices", "", "discovery.k8s.io/v1", "true", "EndpointSlice", ""),
    ];
    for (name, short_names, api_version, namespaced, kind, categories) in expected {
        let row = table.row_named(name).unwrap_or_else(|| panic!("api-resources lacks {name}: {table:?}"));
        assert_eq!(
            [&row[1], &row[2], &row[3], &row[4], &row[6]],
            [short_names, api_version, namespaced, kind, categories],
            "{name}"
        );
        let verbs = row[5].split(',').collect::<Vec<_>>();
        for verb in ["create", "delete", "get", "list", "patch", "update", "watch"] {
            assert!(verbs.contains(&verb), "{name} lacks the verb {verb}: {verbs:?}");
        }
    }
    let review = table.row_named("selfsubjectaccessreviews").expect("selfsubjectaccessreviews is served");
    assert_eq!([&review[2], &review[5]], ["authorization.k8s.io/v1", "create"]);
}

/// One served kind and the object of it that `every_kind_manifests` creates.
struct KindCase {
    /// What `kubectl get` is given.
    resource: &'static str,
    kind: &'static str,
    api_version: &'static str,
    /// The object's name, the same in `default` and `team` for namespaced kinds.
    name: &'static str,
    namespaced: bool,
    /// A field selector on the kind's own fields that the object matches, and one it does not.
    field_selectors: Option<(&'static str, &'static str)>,
    /// `kubectl get -o wide`: the header, and the object's cells, each separated by ` | `.
    /// `<age>` stands for any age, `<ip>` for any IPv4 address, `<any>` for a status that a
    /// controller may change.
    wide_header: &'static str,
    wide_row: &'static str,
    /// `kubectl describe`: fields (`Name:  value` lines; a trailing `*` matches any rest) and
    /// text that must appear.
    describe_fields: &'static [(&'static str, &'static str)],
    describe_text: &'static [&'static str],
}

/// Every kind that `get` must serve, as `every_kind_manifests` creates them.
#[rustfmt::skip]
fn every_kind() -> Vec<KindCase> {
    vec![
        KindCase {
            resource: "namespaces", kind: "Namespace", api_version: "v1", name: "team", namespaced: false,
            field_selectors: Some(("status.phase=Active", "status.phase=Terminating")),
            wide_header: "NAME | STATUS | AGE",
            wide_row: "team | Active | <age>",
            describe_fields: &[("Name", "team"), ("Status", "Active")],
            describe_text: &[],
        },
        KindCase {
            resource: "nodes", kind: "Node", api_version: "v1", name: "n1", namespaced: false,
            field_selectors: Some(("spec.unschedulable=false", "spec.unschedulable=true")),
            wide_header: "NAME | STATUS | ROLES | AGE | VERSION | INTERNAL-IP | EXTERNAL-IP | OS-IMAGE | \
                          KERNEL-VERSION | CONTAINER-RUNTIME",
            wide_row: "n1 | <any> | <none> | <age> | v1.33.0 | 10.0.0.1 | <none> | Debian | 6.1 | \
                       shoal://0.1",
            describe_fields: &[
                ("Name", "n1"), ("InternalIP", "10.0.0.1"), ("Kernel Version", "6.1"),
                ("Container Runtime Version", "shoal://0.1"),
            ],
            describe_text: &["Non-terminated Pods:"],
        },
        KindCase {
            resource: "pods", kind: "Pod", api_version: "v1", name: "web", namespaced: true,
            field_selectors: Some(("spec.nodeName=n1", "spec.nodeName=n2")),
            wide_header: "NAME | READY | STATUS | RESTARTS | AGE | IP | NODE | NOMINATED NODE | \
                          READINESS GATES",
            wide_row: "web | 0/1 | Pending | 0 | <age> | <none> | n1 | <none> | <none>",
            describe_fields: &[
                ("Name", "web"), ("Namespace", "default"), ("Node", "n1/"), ("Image", "nginx:1"),
            ],
            describe_text: &["Testing", "made by the test"],
        },
        KindCase {
            resource: "services", kind: "Service", api_version: "v1", name: "web", namespaced: true,
            field_selectors: None,
            wide_header: "NAME | TYPE | CLUSTER-IP | EXTERNAL-IP | PORT(S) | AGE | SELECTOR",
            wide_row: "web | ClusterIP | <ip> | <none> | 80/TCP | <age> | <none>",
            describe_fields: &[
                ("Name", "web"), ("Selector", "<none>"), ("Type", "ClusterIP"), ("TargetPort", "8080/TCP"),
                ("Endpoints", "10.1.0.5:8080"),
            ],
            describe_text: &[],
        },
        KindCase {
            resource: "endpoints", kind: "Endpoints", api_version: "v1", name: "web-ep", namespaced: true,
            field_selectors: None,
            wide_header: "NAME | ENDPOINTS | AGE",
            wide_row: "web-ep | 10.1.0.5:8080 | <age>",
            describe_fields: &[("Name", "web-ep"), ("Addresses", "10.1.0.5")],
            describe_text: &[],
        },
        KindCase {
            resource: "configmaps", kind: "ConfigMap", api_version: "v1", name: "web", namespaced: true,
            field_selectors: None,
            wide_header: "NAME | DATA | AGE",
            wide_row: "web | 1 | <age>",
            describe_fields: &[("Name", "web")],
            describe_text: &["k:\n----\nv\n"],
        },
        KindCase {
            resource: "secrets", kind: "Secret", api_version: "v1", name: "web", namespaced: true,
            field_selectors: Some(("type=Opaque", "type=kubernetes.io/tls")),
            wide_header: "NAME | TYPE | DATA | AGE",
            wide_row: "web | Opaque | 1 | <age>",
            describe_fields: &[("Name", "web"), ("Type", "Opaque"), ("password", "7 bytes")],
            describe_text: &[],
        },
        KindCase {
            resource: "serviceaccounts", kind: "ServiceAccount", api_version: "v1", name: "web",
            namespaced: true,
            field_selectors: None,
            wide_header: "NAME | SECRETS | AGE",
            wide_row: "web | 0 | <age>",
            describe_fields: &[("Name", "web")],
            describe_text: &[],
        },
        KindCase {
            resource: "events", kind: "Event", api_version: "v1", name: "web.1", namespaced: true,
            field_selectors: Some((
                "involvedObject.kind=Pod,involvedObject.name=web", "involvedObject.name=other",
            )),
            wide_header: "LAST SEEN | TYPE | REASON | OBJECT | SUBOBJECT | SOURCE | MESSAGE | FIRST SEEN | \
                          COUNT | NAME",
            wide_row: "<age> | Normal | Testing | pod/web |  | kubectl-test | made by the test | <age> | 1 | \
                       web.1",
            describe_fields: &[("Name", "web.1"), ("Reason", "Testing"), ("Message", "made by the test")],
            describe_text: &[],
        },
        KindCase {
            resource: "deployments", kind: "Deployment", api_version: "apps/v1", name: "web",
            namespaced: true,
            field_selectors: None,
            wide_header: "NAME | READY | UP-TO-DATE | AVAILABLE | AGE | CONTAINERS | IMAGES | SELECTOR",
            wide_row: "web | <any> | <any> | <any> | <age> | c | nginx:1 | run=web",
            describe_fields: &[
                ("Name", "web"), ("Selector", "run=web"), ("Replicas", "2 desired | *"),
                ("StrategyType", "RollingUpdate"), ("Image", "nginx:1"),
            ],
            describe_text: &[],
        },
        KindCase {
            resource: "replicasets", kind: "ReplicaSet", api_version: "apps/v1", name: "web-1",
            namespaced: true,
            // Kubernetes 1.33 offers ReplicaSets no field selector but metadata's.
            field_selectors: Some(("metadata.name=web-1", "metadata.name=other")),
            wide_header: "NAME | DESIRED | CURRENT | READY | AGE | CONTAINERS | IMAGES | SELECTOR",
            wide_row: "web-1 | 0 | 0 | 0 | <age> | c | nginx:1 | rs=web-1",
            describe_fields: &[
                ("Name", "web-1"), ("Selector", "rs=web-1"), ("Replicas", "0 current / 0 desired"),
            ],
            describe_text: &[],
        },
        KindCase {
            resource: "leases", kind: "Lease", api_version: "coordination.k8s.io/v1", name: "web",
            namespaced: true,
            field_selectors: None,
            wide_header: "NAME | HOLDER | AGE",
            wide_row: "web | web-0 | <age>",
            describe_fields: &[("Name", "web"), ("Holder Identity", "web-0")],
            describe_text: &[],
        },
        KindCase {
            resource: "endpointslices", kind: "EndpointSlice", api_version: "discovery.k8s.io/v1",
            name: "web-abc", namespaced: true,
            field_selectors: None,
            wide_header: "NAME | ADDRESSTYPE | PORTS | ENDPOINTS | AGE",
            wide_row: "web-abc | IPv4 | 8080 | 10.1.0.5 | <age>",
            describe_fields: &[("Name", "web-abc"), ("AddressType", "IPv4")],
            describe_text: &["10.1.0.5"],
        },
        KindCase {
            resource: "hpa", kind: "HorizontalPodAutoscaler", api_version: "autoscaling/v2", name: "web",
            namespaced: true,
            field_selectors: None,
            wide_header: "NAME | REFERENCE | TARGETS | MINPODS | MAXPODS | REPLICAS | AGE",
            wide_row: "web | Deployment/web | cpu: <unknown>/80% | 1 | 4 | <any> | <age>",
            describe_fields: &[
                ("Name", "web"), ("Reference", "Deployment/web"), ("Min replicas", "1"),
                ("Max replicas", "4"),
            ],
            describe_text: &[],
        },
    ]
}

/// What `kubectl create` prints for `every_kind_manifests`: the namespace and the node, then
/// the same objects in `default` and in `team`.
fn every_kind_created() -> Vec<&'static str> {
    let namespaced = [
        "pod/web created",
        "service/web created",
        "endpoints/web-ep created",
        "configmap/web created",
        "secret/web created",
        "serviceaccount/web created",
        "deployment.apps/web created",
        "replicaset.apps/web-1 created",
        "lease.coordination.k8s.io/web created",
        "endpointslice.discovery.k8s.io/web-abc created",
        "horizontalpodautoscaler.autoscaling/web created",
    ];
    [&["namespace/team created", "node/n1 created"][..], &namespaced, &namespaced].concat()
}

/// The namespace `team`, the node `n1`, and one object of every namespaced kind but Event in
/// `default` and in `team`, each labelled `app=web`. They are chosen so that no controller
/// will add anything `-l app=web` selects or change what the tests read: the Deployment's
/// pods would be labelled `run=web`, the Service has no selector (so no controller writes its
/// endpoints) and the hand-made Endpoints are not named after it (so nothing mirrors them).
fn every_kind_manifests() -> Vec<Value> {
    let mut manifests = vec![
        json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"app": "web"}}
        }),
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "labels": {"app": "web", "kubernetes.io/hostname": "n1"}},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "nodeInfo": {
                    "kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1",
                    "containerRuntimeVersion": "shoal://0.1"
                }
            }
        }),
    ];
    for namespace in ["default", "team"] {
        let metadata = |name: &str| json!({"name": name, "namespace": namespace, "labels": {"app": "web"}});
        let template = |labels: Value| {
            let containers = json!([{"name": "c", "image": "nginx:1"}]);
            json!({"metadata": {"labels": labels}, "spec": {"containers": containers}})
        };
        manifests.extend([
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": metadata("web"),
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx:1"}]}
            }),
            json!({
                "apiVersion": "v1", "kind": "Service", "metadata": metadata("web"),
                "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
            }),
            json!({
                "apiVersion": "v1", "kind": "Endpoints", "metadata": metadata("web-ep"),
                "subsets": [{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 8080, "protocol": "TCP"}]}]
            }),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("web"), "data": {"k": "v"}}),
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": metadata("web"),
                "stringData": {"password": "hunter2"}
            }),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata("web")}),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata("web"),
                "spec": {
                    "replicas": 2, "selector": {"matchLabels": {"run": "web"}},
                    "template": template(json!({"run": "web"}))
                }
            }),
            json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata("web-1"),
                "spec": {
                    "replicas": 0, "selector": {"matchLabels": {"rs": "web-1"}},
                    "template": template(json!({"rs": "web-1"}))
                }
            }),
            json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata("web"),
                "spec": {"holderIdentity": "web-0", "leaseDurationSeconds": 15}
            }),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": "web-abc", "namespace": namespace,
                    "labels": {"app": "web", "kubernetes.io/service-name": "web"}
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.1.0.5"]}],
                "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]
            }),
            json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": metadata("web"),
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1, "maxReplicas": 4,
                    "metrics": [{
                        "type": "Resource",
                        "resource": {
                            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}
                        }
                    }]
                }
            }),
        ]);
    }
    manifests
}

/// A core/v1 Event about `pod`, as a component would record it.
fn event_manifest(namespace: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": namespace, "labels": {"app": "web"}},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": namespace,
            "uid": pod["metadata"]["uid"]
        },
        "reason": "Testing", "message": "made by the test", "type": "Normal", "count": 1,
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
        "source": {"component": "kubectl-test"}
    })
}

/// Everything that is wrong with how kubectl shows `case`'s object, one sentence each.
async fn kind_problems(kubectl: &Kubectl, case: &KindCase) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(wide_problems(kubectl, case).await);
    problems.extend(json_and_yaml_problems(kubectl, case).await);
    problems.extend(selection_problems(kubectl, case).await);
    problems.extend(describe_problems(kubectl, case).await);
    problems.into_iter().map(|problem| format!("{}: {problem}", case.resource)).collect()
}

/// `get -o wide`, selected by label: the header and the one row, as Kubernetes' printers make them.
async fn wide_problems(kubectl: &Kubectl, case: &KindCase) -> Vec<String> {
    let out = match kubectl.output(&["get", case.resource, "-l", "app=web", "-o", "wide"]).await {
        Ok(out) => out,
        Err(error) => return vec![error],
    };
    let table = Table::parse(&out);
    let (header, row) = (cells(case.wide_header), cells(case.wide_row));
    if table.header != header {
        vec![format!("-o wide header {:?}, expected {header:?}", table.header)]
    } else if table.rows.len() != 1 || !cells_match(&row, &table.rows[0]) {
        vec![format!("-o wide rows {:?}, expected one like {row:?}", table.rows)]
    } else {
        Vec::new()
    }
}

/// `get -o json` of the object, and `get -o yaml` of the labelled list.
async fn json_and_yaml_problems(kubectl: &Kubectl, case: &KindCase) -> Vec<String> {
    let mut problems = Vec::new();
    match kubectl.output(&["get", case.resource, case.name, "-o", "json"]).await {
        Ok(out) => {
            let object: Value = serde_json::from_str(&out).unwrap_or_default();
            let metadata = &object["metadata"];
            let namespace = if case.namespaced { json!("default") } else { Value::Null };
            let looks_right = object["kind"] == case.kind
                && object["apiVersion"] == case.api_version
                && metadata["name"] == case.name
                && metadata["namespace"] == namespace
                && metadata["labels"]["app"] == "web"
                && [&metadata["uid"], &metadata["resourceVersion"], &metadata["creationTimestamp"]]
                    .iter()
                    .all(|field| field.as_str().is_some_and(|text| !text.is_empty()));
            if !looks_right {
                problems.push(format!("-o json lacks kind, apiVersion or metadata:\n{out}"));
            }
            if case.kind == "Secret" && object["data"]["password"] != "aHVudGVyMg==" {
                problems.push(format!("stringData is not stored as base64 data:\n{out}"));
            }
        }
        Err(error) => problems.push(error),
    }
    match kubectl.output(&["get", case.resource, "-l", "app=web", "-o", "yaml"]).await {
        Ok(out) => {
            // The item's fields are sorted, so apiVersion comes first only for most kinds.
            let item_has = |field: String| {
                out.contains(&format!("- {field}\n")) || out.contains(&format!("\n  {field}\n"))
            };
            if !(out.contains("\nkind: List\n")
                && out.contains(&format!("\n    name: {}\n", case.name))
                && item_has(format!("apiVersion: {}", case.api_version))
                && item_has(format!("kind: {}", case.kind)))
            {
                problems.push(format!("-o yaml is not a List holding the {}:\n{out}", case.kind));
            }
        }
        Err(error) => problems.push(error),
    }
    problems
}

/// `get` across namespaces with label and field selectors, on metadata and on the kind's own
/// fields: each shows the object in exactly the namespaces it should.
async fn selection_problems(kubectl: &Kubectl, case: &KindCase) -> Vec<String> {
    let (everywhere, namespaces): (&[&str], &[&str]) =
        if case.namespaced { (&["-A"], &["default", "team"]) } else { (&[], &[""]) };
    let by_name = format!("metadata.name={}", case.name);
    let mut selections = vec![(vec!["-l", "app=web"], namespaces)];
    selections.push((vec!["--field-selector", by_name.as_str()], namespaces));
    if case.namespaced {
        selections.push((vec!["-l", "app=web", "--field-selector", "metadata.namespace=team"], &["team"]));
    }
    if let Some((matching, other)) = case.field_selectors {
        selections.push((vec!["-l", "app=web", "--field-selector", matching], namespaces));
        selections.push((vec!["-l", "app=web", "--field-selector", other], &[]));
    }
    let mut problems = Vec::new();
    for (selection, expected_namespaces) in selections {
        let args = [&["get", case.resource][..], everywhere, &selection].concat();
        match kubectl.output(&args).await {
            Ok(out) => {
                let table = Table::parse(&out);
                let names = table.column("NAME");
                let namespaces =
                    if case.namespaced { table.column("NAMESPACE") } else { vec![""; names.len()] };
                if namespaces != expected_namespaces || names.iter().any(|name| *name != case.name) {
                    problems.push(format!(
                        "`kubectl {}` shows {names:?} in {namespaces:?}:\n{out}",
                        args.join(" ")
                    ));
                }
            }
            Err(error) => problems.push(error),
        }
    }
    problems
}

/// `describe`: the expected fields and text, and never a secret's value.
async fn describe_problems(kubectl: &Kubectl, case: &KindCase) -> Vec<String> {
    let out = match kubectl.output(&["describe", case.resource, case.name]).await {
        Ok(out) => out,
        Err(error) => return vec![error],
    };
    let mut problems = Vec::new();
    for (field, expected) in case.describe_fields {
        let value = describe_field(&out, field);
        let matches = match expected.strip_suffix('*') {
            Some(prefix) => value.is_some_and(|value| value.starts_with(prefix)),
            None => value == Some(*expected),
        };
        if !matches {
            problems.push(format!("describe shows {field}: {value:?}, expected {expected:?}:\n{out}"));
        }
    }
    for text in case.describe_text {
        if !out.contains(text) {
            problems.push(format!("describe lacks {text:?}:\n{out}"));
        }
    }
    if out.contains("hunter2") {
        problems.push(format!("describe prints the secret's value:\n{out}"));
    }
    problems
}

// ---------------------------------------------------------------------------------------
// pods and watch

// Creates a pod with spec.nodeName unset and one bound to a node through spec.nodeName, and
// checks what the API stores for each (phase, node, defaults, QoS class) and how `get` shows
// and selects them; meanwhile `kubectl get pods -w` runs on another member and must print a
// line when a pod is created and another when it is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_stored_as_sent_and_watched() {
    let Some(exe) = kubectl_or_skip("pods_are_stored_as_sent_and_watched") else { return };
    let cluster = start_cluster(3, &[]).await;
    let kubectl = Kubectl::admin(&exe, &cluster, 0);
    let watcher = Kubectl::admin(&exe, &cluster, 2);

    let pod = |name: &str, image: &str, node: Option<&str>| {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "shell"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        pod
    };
    let created =
        kubectl.create(&[pod("unbound", "busybox", None), pod("bound", "busybox:1.36", Some("n1"))]).await;
    assert_eq!(lines(&created), ["pod/unbound created", "pod/bound created"]);

    // The watch shows both pods first (listed, or as events if member 2 listed before it had
    // them); the pod created after that can only reach it as an event.
    let mut watch = watcher.spawn(&["get", "pods", "-w"]);
    let header = watch.line_where(|line| line.starts_with("NAME ")).await;
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    watch.line_where(|line| first_word(line) == "bound").await;
    watch.line_where(|line| first_word(line) == "unbound").await;
    assert_eq!(lines(&kubectl.create(&[pod("watched", "busybox", None)]).await), ["pod/watched created"]);
    let added = watch.line_where(|line| first_word(line) == "watched").await;
    assert_eq!(added.split_whitespace().take(4).collect::<Vec<_>>(), ["watched", "0/1", "Pending", "0"]);
    // A pod on no node has nothing to stop, so it is deleted at once.
    assert_eq!(kubectl.ok(&["delete", "pod", "watched"]).await, "pod \"watched\" deleted\n");
    watch.line_where(|line| first_word(line) == "watched").await;
    watch.kill().await;

    let unbound = kubectl.json(&["get", "pod", "unbound"]).await;
    let bound = kubectl.json(&["get", "pod", "bound"]).await;
    assert_eq!(unbound["spec"]["nodeName"], Value::Null, "{unbound}");
    assert_eq!(bound["spec"]["nodeName"], "n1", "{bound}");
    for (pod, pull_policy) in [(&unbound, "Always"), (&bound, "IfNotPresent")] {
        assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
        let spec = &pod["spec"];
        assert_eq!(
            [&spec["restartPolicy"], &spec["dnsPolicy"], &spec["schedulerName"]],
            ["Always", "ClusterFirst", "default-scheduler"],
            "{pod}"
        );
        assert_eq!(spec["terminationGracePeriodSeconds"], 30, "{pod}");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], pull_policy, "{pod}");
        assert_eq!(spec["containers"][0]["terminationMessagePolicy"], "File", "{pod}");
    }

    let wide = Table::parse(&kubectl.ok(&["get", "pods", "-o", "wide"]).await);
    assert_eq!(wide.column("NAME"), ["bound", "unbound"]);
    assert_eq!(wide.column("NODE"), ["n1", "<none>"]);
    assert_eq!(wide.column("STATUS"), ["Pending", "Pending"]);
    for (selector, expected) in [
        ("spec.nodeName=n1", &["pod/bound"][..]),
        ("spec.nodeName=", &["pod/unbound"]),
        ("spec.nodeName!=n1", &["pod/unbound"]),
        ("status.phase=Pending", &["pod/bound", "pod/unbound"]),
        ("status.phase!=Pending", &[]),
        ("metadata.name=bound,spec.nodeName=n1", &["pod/bound"]),
    ] {
        let selected = kubectl.ok(&["get", "pods", "--field-selector", selector, "-o", "name"]).await;
        assert_eq!(lines(&selected), expected, "--field-selector {selector}");
    }

    // Kubernetes computes the QoS class when it stores a pod: no requests, so BestEffort.
    for pod in [&unbound, &bound] {
        assert_eq!(pod["status"]["qosClass"], "BestEffort", "{pod}");
    }
}

// ---------------------------------------------------------------------------------------
// create, apply, diff

// Creates objects every way kubectl can: `create -f` (and again, which is AlreadyExists), the
// generators that send protobuf bodies (configmap, secret generic, namespace, serviceaccount,
// deployment), then takes a Deployment through client-side apply (created, unchanged,
// configured), `diff` (exit 0 when the same, 1 with the difference when not) and server-side
// apply, ending with a second field manager whose apply conflicts unless forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_apply_and_diff() {
    let Some(exe) = kubectl_or_skip("create_apply_and_diff") else { return };
    let cluster = start_cluster(3, &[]).await;
    let kubectl = Kubectl::admin(&exe, &cluster, 2);

    let made =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made"}, "data": {"a": "1"}});
    assert_eq!(kubectl.create(std::slice::from_ref(&made)).await, "configmap/made created\n");
    let error = kubectl.fails_with_stdin(&["create", "-f", "-"], &stream(&[made])).await;
    assert_eq!(
        error,
        "Error from server (AlreadyExists): error when creating \"STDIN\": configmaps \"made\" already \
         exists\n"
    );

    check_generators(&kubectl).await;

    let deployment = |replicas: u32| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas, "selector": {"matchLabels": {"run": "web"}},
                "template": {
                    "metadata": {"labels": {"run": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
                }
            }
        })
    };
    let v1 = stream(&[deployment(2)]);
    let v2 = stream(&[deployment(3)]);
    let apply = ["apply", "-f", "-"];
    assert_eq!(kubectl.ok_with_stdin(&apply, &v1).await, "deployment.apps/web created\n");
    let applied = kubectl.json(&["get", "deployment", "web"]).await;
    let last_applied = applied["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_else(|| panic!("no last-applied-configuration annotation: {applied}"));
    let last_applied: Value = serde_json::from_str(last_applied).expect("the annotation is JSON");
    assert_eq!(last_applied["spec"]["replicas"], 2);
    assert_eq!(kubectl.ok_with_stdin(&apply, &v1).await, "deployment.apps/web unchanged\n");

    let diff = ["diff", "-f", "-"];
    let same = kubectl.run(&diff, Some(&v1)).await;
    assert_eq!((same.code, same.stdout.as_str()), (Some(0), ""), "diff of what is applied: {same:?}");
    let different = kubectl.run(&diff, Some(&v2)).await;
    assert_eq!(different.code, Some(1), "diff exits 1 when there is a difference: {different:?}");
    assert!(different.stdout.contains("\n-  replicas: 2\n"), "{different:?}");
    assert!(different.stdout.contains("\n+  replicas: 3\n"), "{different:?}");
    assert_eq!(
        kubectl.json(&["get", "deployment", "web"]).await["spec"]["replicas"],
        2,
        "diff changes nothing"
    );

    assert_eq!(kubectl.ok_with_stdin(&apply, &v2).await, "deployment.apps/web configured\n");
    assert_eq!(kubectl.json(&["get", "deployment", "web"]).await["spec"]["replicas"], 3);

    let server_side = ["apply", "--server-side", "-f", "-"];
    assert_eq!(kubectl.ok_with_stdin(&server_side, &v2).await, "deployment.apps/web serverside-applied\n");
    let v3 = stream(&[deployment(4)]);
    let other = ["apply", "--server-side", "--field-manager=other", "-f", "-"];
    let conflict = kubectl.fails_with_stdin(&other, &v3).await;
    assert!(
        conflict
            .starts_with("error: Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas\n"),
        "{conflict}"
    );
    assert_eq!(kubectl.json(&["get", "deployment", "web"]).await["spec"]["replicas"], 3);
    let forced = [&other[..], &["--force-conflicts"]].concat();
    assert_eq!(kubectl.ok_with_stdin(&forced, &v3).await, "deployment.apps/web serverside-applied\n");
    let taken = kubectl.json(&["get", "deployment", "web", "--show-managed-fields"]).await;
    assert_eq!(taken["spec"]["replicas"], 4);
    let managers = taken["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let other_entry = managers.iter().find(|entry| entry["manager"] == "other");
    let other_entry = other_entry.unwrap_or_else(|| panic!("no managedFields entry for `other`: {taken}"));
    assert_eq!(other_entry["operation"], "Apply");
    assert!(other_entry["fieldsV1"]["f:spec"]["f:replicas"].is_object(), "{other_entry}");
}

/// The `kubectl create <generator>` commands, which send protobuf bodies.
async fn check_generators(kubectl: &Kubectl) {
    let literals = ["--from-literal=a=1", "--from-literal=b=2"];
    let created = kubectl.ok(&[&["create", "configmap", "cfg"][..], &literals].concat()).await;
    assert_eq!(created, "configmap/cfg created\n");
    assert_eq!(kubectl.json(&["get", "configmap", "cfg"]).await["data"], json!({"a": "1", "b": "2"}));
    let error = kubectl.fails(&["create", "configmap", "cfg", "--from-literal=a=1"]).await;
    assert_eq!(error, "error: failed to create configmap: configmaps \"cfg\" already exists\n");

    let created = kubectl.ok(&["create", "secret", "generic", "sec", "--from-literal=password=s3cret"]).await;
    assert_eq!(created, "secret/sec created\n");
    let secret = kubectl.json(&["get", "secret", "sec"]).await;
    assert_eq!((&secret["type"], &secret["data"]), (&json!("Opaque"), &json!({"password": "czNjcmV0"})));

    assert_eq!(kubectl.ok(&["create", "namespace", "team"]).await, "namespace/team created\n");
    let namespace = kubectl.json(&["get", "namespace", "team"]).await;
    assert_eq!(namespace["status"]["phase"], "Active", "{namespace}");
    let created = kubectl.ok(&["create", "configmap", "cfg", "-n", "team", "--from-literal=x=y"]).await;
    assert_eq!(created, "configmap/cfg created\n");
    assert_eq!(kubectl.json(&["get", "configmap", "cfg", "-n", "team"]).await["data"], json!({"x": "y"}));
    let error =
        kubectl.fails(&["create", "secret", "generic", "sec", "-n", "nowhere", "--from-literal=a=b"]).await;
    assert_eq!(error, "error: failed to create secret namespaces \"nowhere\" not found\n");

    assert_eq!(kubectl.ok(&["create", "serviceaccount", "robot"]).await, "serviceaccount/robot created\n");
    let created = kubectl.ok(&["create", "deployment", "generated", "--image=nginx:1", "--replicas=0"]).await;
    assert_eq!(created, "deployment.apps/generated created\n");
    let generated = kubectl.json(&["get", "deployment", "generated"]).await;
    assert_eq!(generated["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1", "{generated}");
    assert_eq!(generated["spec"]["selector"]["matchLabels"], json!({"app": "generated"}), "{generated}");
}

// ---------------------------------------------------------------------------------------
// changing objects

// Changes a Deployment every way kubectl offers: patch with --type=json, --type=merge and the
// default strategic merge (a new container goes first, as upstream orders it; a patch that
// changes nothing says so), label and annotate (refusing to overwrite without --overwrite),
// scale (with its --current-replicas precondition), set image, and replace, which fails with
// a Conflict when it carries an old resourceVersion. The generation counts spec changes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_label_annotate_scale_set_image_and_replace() {
    let Some(exe) = kubectl_or_skip("patch_label_annotate_scale_set_image_and_replace") else { return };
    let cluster = start_cluster(3, &[]).await;
    let kubectl = Kubectl::admin(&exe, &cluster, 1);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": {"run": "web"}},
            "template": {
                "metadata": {"labels": {"run": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
            }
        }
    });
    assert_eq!(kubectl.create(&[deployment]).await, "deployment.apps/web created\n");
    let get = || async { kubectl.json(&["get", "deployment", "web"]).await };
    assert_eq!(get().await["metadata"]["generation"], 1);

    let patch = |kind: &'static str, body: &'static str| {
        let kubectl = &kubectl;
        let kind = format!("--type={kind}");
        async move { kubectl.ok(&["patch", "deployment", "web", &kind, "-p", body]).await }
    };
    let patched = "deployment.apps/web patched\n";
    assert_eq!(patch("json", r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#).await, patched);
    let web = get().await;
    assert_eq!((&web["spec"]["replicas"], &web["metadata"]["generation"]), (&json!(3), &json!(2)));
    assert_eq!(patch("merge", r#"{"metadata":{"labels":{"team":"blue"}}}"#).await, patched);
    let web = get().await;
    assert_eq!(web["metadata"]["labels"], json!({"app": "web", "team": "blue"}));
    assert_eq!(web["metadata"]["generation"], 2, "labels are not spec");
    assert_eq!(
        patch("merge", r#"{"metadata":{"labels":{"team":"blue"}}}"#).await,
        "deployment.apps/web patched (no change)\n",
        "a patch that changes nothing leaves the object (and its resourceVersion) alone"
    );
    let side = r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"side:1"}]}}}}"#;
    assert_eq!(patch("strategic", side).await, patched);
    let web = get().await;
    assert_eq!(containers(&web), [("side", "side:1"), ("c", "nginx:1")]);
    assert_eq!(web["metadata"]["generation"], 3);

    assert_eq!(
        kubectl.ok(&["label", "deployment", "web", "tier=front"]).await,
        "deployment.apps/web labeled\n"
    );
    let error = kubectl.fails(&["label", "deployment", "web", "tier=back"]).await;
    assert_eq!(error, "error: 'tier' already has a value (front), and --overwrite is false\n");
    let relabelled = kubectl.ok(&["label", "deployment", "web", "tier=back", "--overwrite"]).await;
    assert_eq!(relabelled, "deployment.apps/web labeled\n");
    assert_eq!(get().await["metadata"]["labels"]["tier"], "back");
    assert_eq!(kubectl.ok(&["label", "deployment", "web", "tier-"]).await, "deployment.apps/web unlabeled\n");
    let annotated = kubectl.ok(&["annotate", "deployment", "web", "note=hello"]).await;
    assert_eq!(annotated, "deployment.apps/web annotated\n");
    let web = get().await;
    assert_eq!(web["metadata"]["labels"], json!({"app": "web", "team": "blue"}));
    assert_eq!(web["metadata"]["annotations"]["note"], "hello");
    assert_eq!(web["metadata"]["generation"], 3, "labels and annotations are not spec");

    assert_eq!(
        kubectl.ok(&["scale", "deployment", "web", "--replicas=5"]).await,
        "deployment.apps/web scaled\n"
    );
    let web = get().await;
    assert_eq!((&web["spec"]["replicas"], &web["metadata"]["generation"]), (&json!(5), &json!(4)));
    let error = kubectl.fails(&["scale", "deployment", "web", "--current-replicas=4", "--replicas=6"]).await;
    assert_eq!(error, "error: Expected replicas to be 4, was 5\n");

    let updated = kubectl.ok(&["set", "image", "deployment/web", "c=nginx:2"]).await;
    assert_eq!(updated, "deployment.apps/web image updated\n");
    let web = get().await;
    assert_eq!(containers(&web), [("side", "side:1"), ("c", "nginx:2")]);
    assert_eq!(web["metadata"]["generation"], 5);
    let error = kubectl.fails(&["set", "image", "deployment/web", "nope=nginx:2"]).await;
    assert_eq!(error, "error: unable to find container named \"nope\"\n");

    let stale = kubectl.ok(&["get", "deployment", "web", "-o", "json"]).await;
    kubectl.ok(&["annotate", "deployment", "web", "later=yes"]).await;
    let error = kubectl.fails_with_stdin(&["replace", "-f", "-"], &stale).await;
    assert_eq!(
        error,
        "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on \
         deployments.apps \"web\": the object has been modified; please apply your changes to the latest \
         version and try again\n"
    );
    let mut fresh = get().await;
    fresh["spec"]["replicas"] = json!(1);
    let replaced = kubectl.ok_with_stdin(&["replace", "-f", "-"], &stream(&[fresh])).await;
    assert_eq!(replaced, "deployment.apps/web replaced\n");
    let web = get().await;
    assert_eq!((&web["spec"]["replicas"], &web["metadata"]["generation"]), (&json!(1), &json!(6)));

    let error = kubectl.fails(&["patch", "deployment", "nope", "--type=merge", "-p", "{}"]).await;
    assert_eq!(error, "Error from server (NotFound): deployments.apps \"nope\" not found\n");
}

/// The containers of a Deployment's pod template: (name, image), in order.
fn containers(deployment: &Value) -> Vec<(&str, &str)> {
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array();
    fn text(value: &Value) -> &str {
        value.as_str().unwrap_or("")
    }
    containers.into_iter().flatten().map(|c| (text(&c["name"]), text(&c["image"]))).collect()
}

// ---------------------------------------------------------------------------------------
// delete and garbage collection

// Builds three trees of ConfigMaps (owner ← child ← grandchild, linked by ownerReferences
// with blockOwnerDeletion) and deletes each owner with one --cascade policy, then polls until
// the end state Kubernetes' garbage collector reaches: background deletes the owner at once
// and its dependents after; foreground keeps the owner until its dependents are gone (never
// the other way round); orphan deletes the owner and leaves the child without ownerReferences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cascades_background_foreground_and_orphan() {
    let Some(exe) = kubectl_or_skip("delete_cascades_background_foreground_and_orphan") else { return };
    let cluster = start_cluster(3, &[]).await;
    let kubectl = Kubectl::admin(&exe, &cluster, 0);
    for policy in ["background", "foreground", "orphan"] {
        let owner = kubectl.create_json(&tree_node(policy, "owner", None)).await;
        let child = kubectl.create_json(&tree_node(policy, "child", Some(&owner))).await;
        kubectl.create_json(&tree_node(policy, "grandchild", Some(&child))).await;
    }
    assert_eq!(tree(&kubectl).await.len(), 9);

    let deleted = kubectl.ok(&["delete", "configmap", "background-owner", "--cascade=background"]).await;
    assert_eq!(deleted, "configmap \"background-owner\" deleted\n");
    assert!(!tree(&kubectl).await.contains_key("background-owner"), "background deletes the owner at once");
    for policy in ["foreground", "orphan"] {
        let owner = format!("{policy}-owner");
        let cascade = format!("--cascade={policy}");
        let deleted = kubectl.ok(&["delete", "configmap", &owner, &cascade, "--wait=false"]).await;
        assert_eq!(deleted, format!("configmap \"{owner}\" deleted\n"));
    }

    let end_state = BTreeMap::from([
        ("orphan-child".to_owned(), vec![]),
        ("orphan-grandchild".to_owned(), vec!["orphan-child".to_owned()]),
    ]);
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let state = tree(&kubectl).await;
        let has = |name: &str| state.contains_key(name);
        assert!(!has("background-owner"), "{state:?}");
        assert!(
            (has("foreground-owner") || !has("foreground-child"))
                && (has("foreground-child") || !has("foreground-grandchild")),
            "foreground deletion removes dependents before their owner: {state:?}"
        );
        assert!(has("orphan-child") && has("orphan-grandchild"), "orphan deletes no dependent: {state:?}");
        if state == end_state {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {CONVERGE_TIMEOUT:?} the ConfigMaps and their owners are {state:?}, expected \
             {end_state:?}: the garbage collector has not deleted the dependents (background, \
             foreground) or removed the ownerReferences (orphan). Full state:\n{}",
            kubectl.ok(&["get", "configmaps", "-l", "tree", "-o", "json"]).await
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A ConfigMap `<policy>-<role>` labelled `tree=<policy>`, owned by `owner` if given.
fn tree_node(policy: &str, role: &str, owner: Option<&Value>) -> Value {
    let mut node = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{policy}-{role}"), "labels": {"tree": policy}}
    });
    if let Some(owner) = owner {
        node["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "blockOwnerDeletion": true
        }]);
    }
    node
}

/// The ConfigMaps of the trees, each with the names of its owners.
async fn tree(kubectl: &Kubectl) -> BTreeMap<String, Vec<String>> {
    let list = kubectl.json(&["get", "configmaps", "-l", "tree"]).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|item| {
            let owners = item["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
            let owners = owners.iter().map(|owner| owner["name"].as_str().unwrap_or("").to_owned()).collect();
            (item["metadata"]["name"].as_str().unwrap_or("").to_owned(), owners)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// authentication and authorization

// Checks who may do what: the admin (client certificate in system:masters) may do anything; a
// user whose certificate puts it in shoal:viewers may list pods but not create them or read
// secrets, and is refused with 403 and Kubernetes' Forbidden message; the admin's bearer
// token works without a certificate; an unknown token or a user name and password (basic
// authentication, which Kubernetes dropped) is refused with 401. These stand for "no
// credential": kubectl never sends a request without one, since with none in its kubeconfig
// it prompts for a user name, and for a password it reads only from a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_allows_admins_limits_viewers_and_refuses_strangers() {
    let Some(exe) = kubectl_or_skip("auth_allows_admins_limits_viewers_and_refuses_strangers") else {
        return;
    };
    let cluster = start_cluster(3, &[]).await;
    let admin = Kubectl::admin(&exe, &cluster, 0);
    let viewer = Kubectl::user(&exe, &cluster, 1, "vera", &["shoal:viewers"]);

    assert_eq!(admin.ok(&["auth", "can-i", "create", "pods"]).await, "yes\n");
    assert_eq!(admin.ok(&["auth", "can-i", "*", "*", "--all-namespaces"]).await, "yes\n");
    assert_eq!(viewer.ok(&["auth", "can-i", "list", "pods"]).await, "yes\n");
    assert_eq!(
        viewer.ok(&["auth", "can-i", "watch", "deployments.apps", "-n", "kube-system"]).await,
        "yes\n"
    );
    for denied in [&["create", "pods"][..], &["get", "secrets"], &["delete", "namespaces"]] {
        let run = viewer.run(&[&["auth", "can-i"][..], denied].concat(), None).await;
        assert_eq!((run.code, first_word(&run.stdout)), (Some(1), "no"), "can-i {denied:?}: {run:?}");
    }

    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    let run = viewer.run(&["get", "pods"], None).await;
    assert!(run.success && run.stderr == "No resources found in default namespace.\n", "{run:?}");
    let error = viewer.fails_with_stdin(&["create", "-f", "-"], &stream(std::slice::from_ref(&pod))).await;
    assert_eq!(
        error,
        "Error from server (Forbidden): error when creating \"STDIN\": pods is forbidden: User \"vera\" \
         cannot create resource \"pods\" in API group \"\" in the namespace \"default\"\n"
    );
    let error = viewer.fails(&["get", "secrets"]).await;
    assert_eq!(
        error,
        "Error from server (Forbidden): secrets is forbidden: User \"vera\" cannot list resource \"secrets\" \
         in API group \"\" in the namespace \"default\"\n"
    );
    assert_eq!(admin.create(&[pod]).await, "pod/p created\n", "the admin may");
    assert_eq!(lines(&viewer.ok(&["get", "pods", "-o", "name"]).await), ["pod/p"]);

    let token = admin_token(&cluster);
    let with_token = Kubectl::without_certificate(&exe, &cluster, 2, &[&format!("--token={token}")]);
    assert!(lines(&with_token.ok(&["get", "namespaces", "-o", "name"]).await).contains(&"namespace/default"));
    let strangers = [
        Kubectl::without_certificate(&exe, &cluster, 2, &["--token=not-a-token"]),
        Kubectl::without_certificate(&exe, &cluster, 1, &["--username=nobody", "--password=nothing"]),
    ];
    for stranger in &strangers {
        let error = stranger.fails(&["get", "pods"]).await;
        assert!(error.lines().any(|line| line.starts_with(LOGGED_OUT)), "{error}");
        let error = stranger.fails(&["create", "configmap", "c"]).await;
        assert_eq!(error, "error: failed to create configmap: Unauthorized\n");
    }

    // The resource in Kubernetes' Forbidden message is qualified by its group.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"run": "d"}},
            "template": {
                "metadata": {"labels": {"run": "d"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}
            }
        }
    });
    let error = viewer.fails_with_stdin(&["create", "-f", "-"], &stream(&[deployment])).await;
    assert_eq!(
        error,
        "Error from server (Forbidden): error when creating \"STDIN\": deployments.apps is forbidden: User \
         \"vera\" cannot create resource \"deployments\" in API group \"apps\" in the namespace \"default\"\n"
    );
}

/// The admin's bearer token, from the token file every member reads.
fn admin_token(cluster: &LocalCluster) -> String {
    let path = cluster.pki_dir().join("tokens.csv");
    let text = std::fs::read_to_string(&path).expect("reading the token file");
    let line = text.lines().find(|line| line.split(',').nth(1) == Some("admin")).expect("an admin token");
    line.split(',').next().expect("a token").to_owned()
}

// ---------------------------------------------------------------------------------------
// bad input

// Sends what the server must refuse and checks kubectl's message for each: an unknown field
// (strict validation refuses it, --validate=warn warns and stores without it,
// --validate=false drops it silently), a body over the request limit (413), and a Deployment
// whose container has no image (422 Invalid, naming the field). Nothing refused is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_kubernetes_messages() {
    let Some(exe) = kubectl_or_skip("bad_input_is_refused_with_kubernetes_messages") else { return };
    let cluster = start_cluster(3, &[]).await;
    let kubectl = Kubectl::admin(&exe, &cluster, 2);
    let deployment = |name: &str, spec_extra: Value, container: Value| {
        let mut spec = json!({
            "selector": {"matchLabels": {"run": name}},
            "template": {"metadata": {"labels": {"run": name}}, "spec": {"containers": [container]}}
        });
        spec.as_object_mut().expect("an object").extend(spec_extra.as_object().expect("an object").clone());
        stream(&[
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}),
        ])
    };
    let container = json!({"name": "c", "image": "nginx:1"});

    let unknown = deployment("strict", json!({"replicaz": 2}), container.clone());
    let error = kubectl.fails_with_stdin(&["create", "-f", "-"], &unknown).await;
    assert_eq!(
        error,
        "Error from server (BadRequest): error when creating \"STDIN\": Deployment in version \"v1\" \
         cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replicaz\"\n"
    );
    let error = kubectl.fails_with_stdin(&["apply", "-f", "-"], &unknown).await;
    assert!(error.contains("strict decoding error: unknown field \"spec.replicaz\""), "{error}");
    assert_not_found(&kubectl, "deployment", "strict", "deployments.apps").await;

    let warned = deployment("warned", json!({"replicaz": 2}), container.clone());
    let run = kubectl.run(&["create", "-f", "-", "--validate=warn"], Some(&warned)).await;
    assert!(run.success, "{run:?}");
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str()),
        ("deployment.apps/warned created\n", "Warning: unknown field \"spec.replicaz\"\n")
    );
    let ignored = deployment("ignored", json!({"replicaz": 2}), container.clone());
    let run = kubectl.run(&["create", "-f", "-", "--validate=false"], Some(&ignored)).await;
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str()),
        ("deployment.apps/ignored created\n", ""),
        "{run:?}"
    );
    for name in ["warned", "ignored"] {
        let stored = kubectl.json(&["get", "deployment", name]).await;
        assert_eq!(stored["spec"]["replicas"], 1, "the default, not replicaz: {stored}");
        assert!(stored["spec"].get("replicaz").is_none(), "{stored}");
    }

    let oversized = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
        "data": {"blob": "a".repeat(4 << 20)}
    });
    let error = kubectl.fails_with_stdin(&["create", "-f", "-"], &stream(&[oversized])).await;
    assert!(
        error.starts_with("Error from server (RequestEntityTooLarge): error when creating \"STDIN\": "),
        "{error}"
    );
    assert!(error.contains(&REQUEST_BODY_BYTES_MAX.to_string()), "the message names the limit: {error}");
    assert_not_found(&kubectl, "configmap", "big", "configmaps").await;

    let without_image = deployment("web", json!({}), json!({"name": "c"}));
    let error = kubectl.fails_with_stdin(&["create", "-f", "-"], &without_image).await;
    assert_eq!(
        error,
        "The Deployment \"web\" is invalid: spec.template.spec.containers[0].image: Required value\n"
    );
    assert_not_found(&kubectl, "deployment", "web", "deployments.apps").await;
}

/// `kubectl get` of an object that must not exist says NotFound.
async fn assert_not_found(kubectl: &Kubectl, resource: &str, name: &str, qualified: &str) {
    let error = kubectl.fails(&["get", resource, name]).await;
    assert_eq!(error, format!("Error from server (NotFound): {qualified} \"{name}\" not found\n"));
}

// ---------------------------------------------------------------------------------------
// helpers

/// The kubectl executable, or `None` after saying why the test skips.
fn kubectl_or_skip(test: &str) -> Option<PathBuf> {
    common::tool_or_skip("kubectl", "https://kubernetes.io/docs/tasks/tools/", test)
}

/// kubectl as one user of one member's API, with a discovery cache of its own.
struct Kubectl {
    exe: PathBuf,
    /// Holds `kubeconfig`, the user's certificate if any, and `cache/`; deleted with the handle.
    home: TempDir,
    /// Flags before every command's own (`--token=…`).
    flags: Vec<String>,
}

/// What one kubectl run printed.
#[derive(Debug)]
struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    /// The admin, through the kubeconfig the cluster writes for member `i`.
    fn admin(exe: &Path, cluster: &LocalCluster, i: usize) -> Self {
        let home = new_home();
        let written = cluster.write_kubeconfig(i).expect("writing the admin's kubeconfig");
        std::fs::copy(written, home.path().join("kubeconfig")).expect("copying the kubeconfig");
        Kubectl { exe: exe.to_owned(), home, flags: Vec::new() }
    }

    /// `user`, with a client certificate from the cluster CA naming `groups` as organizations.
    fn user(exe: &Path, cluster: &LocalCluster, i: usize, user: &str, groups: &[&str]) -> Self {
        let home = new_home();
        let ca = ClusterCa::load(cluster.pki_dir()).expect("loading the cluster CA");
        let request = IssueRequest {
            common_name: user.to_owned(),
            organizations: groups.iter().map(|group| (*group).to_owned()).collect(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage: Usage::Client,
            validity_days: 1,
        };
        ca.issue(&request).expect("issuing the certificate").save(home.path(), "user").expect("saving it");
        let (cert, key) = (home.path().join("user.crt"), home.path().join("user.key"));
        let credential =
            format!("\n    client-certificate: {}\n    client-key: {}", quoted(&cert), quoted(&key));
        write_kubeconfig(home.path(), cluster, i, &credential);
        Kubectl { exe: exe.to_owned(), home, flags: Vec::new() }
    }

    /// Someone the kubeconfig gives no credential, only the CA to trust; `flags` may add one.
    fn without_certificate(exe: &Path, cluster: &LocalCluster, i: usize, flags: &[&str]) -> Self {
        let home = new_home();
        write_kubeconfig(home.path(), cluster, i, " {}");
        Kubectl { exe: exe.to_owned(), home, flags: flags.iter().map(|flag| (*flag).to_owned()).collect() }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let kubeconfig = self.home.path().join("kubeconfig");
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.home.path().join("cache").display()))
            .args(&self.flags)
            .args(args)
            // The dispatcher reads the kubeconfig to ask the server its version.
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            let input = input.as_bytes().to_vec();
            // Written while the output is read, so neither side can block the other.
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
            });
        }
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} still runs after {KUBECTL_TIMEOUT:?}"))
            .expect("waiting for kubectl");
        Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Standard output of a run that succeeded, or a sentence saying how it failed.
    async fn output(&self, args: &[&str]) -> Result<String, String> {
        let run = self.run(args, None).await;
        if run.success {
            Ok(run.stdout)
        } else {
            Err(format!("`kubectl {}` failed: {}", args.join(" "), run.stderr))
        }
    }

    /// Standard output of a run that must succeed.
    async fn ok(&self, args: &[&str]) -> String {
        self.expect_success(args, None).await
    }

    async fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.expect_success(args, Some(stdin)).await
    }

    async fn expect_success(&self, args: &[&str], stdin: Option<&str>) -> String {
        let run = self.run(args, stdin).await;
        assert!(run.success, "kubectl {args:?} failed: {run:?}");
        run.stdout
    }

    /// Standard error of a run that must fail.
    async fn fails(&self, args: &[&str]) -> String {
        self.expect_failure(args, None).await
    }

    async fn fails_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.expect_failure(args, Some(stdin)).await
    }

    async fn expect_failure(&self, args: &[&str], stdin: Option<&str>) -> String {
        let run = self.run(args, stdin).await;
        assert!(!run.success, "kubectl {args:?} should have failed: {run:?}");
        run.stderr
    }

    /// The `-o json` answer of a run that must succeed.
    async fn json(&self, args: &[&str]) -> Value {
        let args = [args, &["-o", "json"]].concat();
        let stdout = self.ok(&args).await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|error| panic!("kubectl {args:?} printed no JSON ({error}): {stdout}"))
    }

    /// `kubectl create -f -` of `objects`: what it printed.
    async fn create(&self, objects: &[Value]) -> String {
        self.ok_with_stdin(&["create", "-f", "-"], &stream(objects)).await
    }

    /// `kubectl create -f - -o json` of one object: the object as stored.
    async fn create_json(&self, object: &Value) -> Value {
        let stdout = self
            .ok_with_stdin(&["create", "-f", "-", "-o", "json"], &stream(std::slice::from_ref(object)))
            .await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|error| panic!("create printed no JSON ({error}): {stdout}"))
    }

    /// Starts a long-running command (a watch) whose output is read line by line.
    fn spawn(&self, args: &[&str]) -> Background {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting kubectl");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Background { child, stdout, seen: Vec::new(), deadline: Instant::now() + WATCH_TIMEOUT }
    }
}

fn new_home() -> TempDir {
    tempfile::Builder::new().prefix("shoal-kubectl-").tempdir().expect("creating a temporary directory")
}

/// Writes `dir/kubeconfig` for member `i`'s API, trusting the cluster CA, with `user` as the
/// YAML of the user's credentials.
fn write_kubeconfig(dir: &Path, cluster: &LocalCluster, i: usize, user: &str) {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: shoal
  cluster:
    server: {}
    certificate-authority: {}
users:
- name: user
  user:{user}
contexts:
- name: shoal
  context:
    cluster: shoal
    user: user
    namespace: default
current-context: shoal
",
        cluster.member(i).api_url(),
        quoted(&cluster.pki_dir().join("ca.crt")),
    );
    std::fs::write(dir.join("kubeconfig"), text).expect("writing the kubeconfig");
}

/// A path as a YAML string (JSON's quoting is YAML's).
fn quoted(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("a string serializes")
}

/// A background kubectl, killed when dropped.
struct Background {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// Every line read so far, for the failure message.
    seen: Vec<String>,
    deadline: Instant,
}

impl Background {
    /// Reads lines until one satisfies `wanted`, and returns it; fails the test at
    /// `WATCH_TIMEOUT` after the start.
    async fn line_where(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = tokio::time::timeout_at(self.deadline, self.stdout.next_line()).await;
            let line = line.unwrap_or_else(|_| {
                panic!(
                    "the expected line did not come within {WATCH_TIMEOUT:?}; lines so far: {:?}",
                    self.seen
                )
            });
            let line = line.expect("reading kubectl's output");
            let line = line.unwrap_or_else(|| panic!("kubectl exited; its lines: {:?}", self.seen));
            self.seen.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("killing kubectl");
    }
}

/// Objects as kubectl reads them from a file: JSON documents (which are YAML) in one stream.
fn stream(objects: &[Value]) -> String {
    objects.iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n")
}

/// kubectl's human-readable output: a header, and rows whose cells start where their column's
/// name starts in the header (kubectl aligns columns with at least three spaces between them).
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn parse(output: &str) -> Self {
        let mut lines = output.lines().filter(|line| !line.trim().is_empty());
        let Some(header) = lines.next() else { return Table { header: Vec::new(), rows: Vec::new() } };
        let header_chars = header.chars().collect::<Vec<_>>();
        let starts = (0..header_chars.len())
            .filter(|&i| {
                header_chars[i] != ' ' && (i == 0 || (i >= 2 && header_chars[i - 2..i] == [' ', ' ']))
            })
            .collect::<Vec<_>>();
        let cells = |line: &str| {
            let chars = line.chars().collect::<Vec<_>>();
            let cell = |from: usize, to: usize| {
                let (from, to) = (from.min(chars.len()), to.min(chars.len()));
                chars[from..to].iter().collect::<String>().trim().to_owned()
            };
            let ends = starts.iter().skip(1).copied().chain([usize::MAX]);
            starts.iter().zip(ends).map(|(&from, to)| cell(from, to)).collect::<Vec<_>>()
        };
        Table { header: cells(header), rows: lines.map(cells).collect() }
    }

    /// The cells of column `name`, top to bottom.
    fn column(&self, name: &str) -> Vec<&str> {
        let Some(index) = self.header.iter().position(|column| column == name) else { return Vec::new() };
        self.rows.iter().map(|row| row[index].as_str()).collect()
    }

    /// The row whose first cell is `name`.
    fn row_named(&self, name: &str) -> Option<&Vec<String>> {
        self.rows.iter().find(|row| row[0] == name)
    }
}

/// The cells of a row written as `a | b | c`.
fn cells(row: &str) -> Vec<&str> {
    row.split('|').map(str::trim).collect()
}

/// Whether `actual` cells are the `expected` ones, where `<age>` matches any age kubectl prints
/// (`5s`, `3m2s`, `694d`), `<ip>` any IPv4 address and `<any>` anything.
fn cells_match(expected: &[&str], actual: &[String]) -> bool {
    let matches = |expected: &str, actual: &str| match expected {
        "<any>" => true,
        "<age>" => !actual.is_empty() && actual.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c)),
        "<ip>" => actual.parse::<Ipv4Addr>().is_ok(),
        _ => expected == actual,
    };
    expected.len() == actual.len() && expected.iter().zip(actual).all(|(e, a)| matches(e, a))
}

/// The value of `field` in `kubectl describe` output: the rest of the first line that, less
/// its indentation, starts with `field:`.
fn describe_field<'a>(output: &'a str, field: &str) -> Option<&'a str> {
    let prefix = format!("{field}:");
    output.lines().find_map(|line| line.trim_start().strip_prefix(prefix.as_str())).map(str::trim)
}

fn lines(output: &str) -> Vec<&str> {
    output.lines().filter(|line| !line.is_empty()).collect()
}

fn first_word(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

// Cells are cut where the header's columns start, so an empty cell and a header with a space
// in it ("LAST SEEN") come out right; the placeholders match what they stand for.
#[test]
fn table_cells_follow_the_header_columns() {
    let table = Table::parse(
        "LAST SEEN   TYPE     REASON    OBJECT     SUBOBJECT   SOURCE\n\
         5s          Normal   Testing   pod/web                kubectl-test\n",
    );
    assert_eq!(table.header, ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE"]);
    assert_eq!(table.rows, [["5s", "Normal", "Testing", "pod/web", "", "kubectl-test"]]);
    assert_eq!(table.column("OBJECT"), ["pod/web"]);
    assert!(cells_match(&["<age>", "Normal", "<any>", "pod/web", "", "kubectl-test"], &table.rows[0]));
    assert!(!cells_match(&["<ip>", "Normal", "<any>", "pod/web", "", "kubectl-test"], &table.rows[0]));
}

// `describe` indents nested fields; a field is found by its name wherever it is indented.
#[test]
fn describe_fields_are_found_at_any_indentation() {
    let output = "Name:         web\nSpec:\n  Holder Identity:  web-0\nData\n====\npassword:  7 bytes\n";
    assert_eq!(describe_field(output, "Name"), Some("web"));
    assert_eq!(describe_field(output, "Holder Identity"), Some("web-0"));
    assert_eq!(describe_field(output, "password"), Some("7 bytes"));
    assert_eq!(describe_field(output, "Spec"), Some(""));
    assert_eq!(describe_field(output, "Missing"), None);
}

// kubectl logs and exec reach a pod through the API server's proxy to its node's agent: logs
// with --tail, --timestamps, --previous and -f (which ends when the container does); exec
// with the command's output, its exit code, piped stdin, and refusals for finished pods and
// for readers, who may read logs but not run commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_through_the_agent() {
    let Some(exe) = kubectl_or_skip("logs_and_exec_through_the_agent") else {
        return;
    };
    let mut cluster = start_cluster(3, &[]).await;
    cluster
        .start_agent("a1", 0, &["--restart-backoff-initial-ms", "200", "--restart-backoff-max-ms", "1000"])
        .await
        .expect("starting an agent");
    let admin = Kubectl::admin(&exe, &cluster, 1);
    let viewer = Kubectl::user(&exe, &cluster, 2, "vera", &["shoal:viewers"]);
    let pod = |name: &str, restart_policy: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: a1\n  \
             restartPolicy: {restart_policy}\n  containers: [{{name: main, image: host, command: [sh, -c, {script:?}]}}]\n"
        )
    };
    for manifest in [
        pod("talker", "Always", "echo one; echo two; echo three; exec sleep 100000"),
        pod("restarter", "Always", "echo run $(date +%s%N); sleep 0.3; exit 1"),
        pod("finisher", "Never", "echo start; sleep 2; echo end"),
    ] {
        admin.ok_with_stdin(&["create", "-f", "-"], &manifest).await;
    }
    eventually("talker logs three lines", || async {
        admin.output(&["logs", "talker"]).await.ok().filter(|log| log == "one\ntwo\nthree\n")
    })
    .await;
    assert_eq!(admin.ok(&["logs", "talker", "--tail=1"]).await, "three\n");
    let stamped = admin.ok(&["logs", "talker", "--timestamps", "--tail=1"]).await;
    let (time, line) = stamped.trim_end().split_once(' ').expect("a timestamp and the line");
    assert!(time.parse::<jiff::Timestamp>().is_ok() && line == "three", "{stamped:?}");
    assert_eq!(viewer.ok(&["logs", "talker", "-c", "main"]).await, "one\ntwo\nthree\n");

    // -f follows until the container ends: `finisher` prints its last line after 2 s.
    eventually("finisher started", || async {
        admin.output(&["logs", "finisher"]).await.ok().filter(|log| log.starts_with("start"))
    })
    .await;
    let followed = admin.run(&["logs", "-f", "finisher"], None).await;
    assert!(followed.success, "{}", followed.stderr);
    assert_eq!(followed.stdout, "start\nend\n");
    let previous = eventually("a previous run of restarter", || async {
        admin.output(&["logs", "restarter", "--previous"]).await.ok().filter(|log| log.starts_with("run "))
    })
    .await;
    // The current run has its own log; one just started may not have printed its line yet.
    eventually("the current run of restarter's log", || async {
        admin.output(&["logs", "restarter"]).await.ok().filter(|log| log.starts_with("run "))
    })
    .await;
    assert!(previous.lines().count() == 1, "{previous:?}");

    let said = admin.ok(&["exec", "talker", "--", "sh", "-c", "echo hello from $HOSTNAME"]).await;
    assert_eq!(said, "hello from talker\n");
    let failed = admin.run(&["exec", "talker", "--", "sh", "-c", "echo oops >&2; exit 3"], None).await;
    assert_eq!(failed.code, Some(3), "{failed:?}");
    assert!(
        failed.stderr.contains("oops") && failed.stderr.contains("command terminated with exit code 3"),
        "{failed:?}"
    );
    let piped = admin.run(&["exec", "-i", "talker", "--", "tr", "a-z", "A-Z"], Some("shout\n")).await;
    assert_eq!(piped.stdout, "SHOUT\n", "{piped:?}");
    let missing = admin.run(&["exec", "talker", "--", "shoal-no-such-program"], None).await;
    assert!(!missing.success && missing.stderr.contains("executable file not found"), "{missing:?}");
    let completed = admin.run(&["exec", "finisher", "--", "true"], None).await;
    assert!(!completed.success && completed.stderr.contains("completed pod"), "{completed:?}");
    let refused = viewer.run(&["exec", "talker", "--", "true"], None).await;
    assert!(!refused.success && refused.stderr.contains("Forbidden"), "{refused:?}");
}

/// Polls `check` until it returns `Some`, failing after `CONVERGE_TIMEOUT` (agents start
/// pods within a second; the margin is for a busy machine).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT * 2;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
