//! Defaulting: the fields kube-apiserver fills in on create and update, before validation.
//!
//! Follows upstream 1.33's `SetDefaults_*` functions (pkg/apis/core/v1, apps/v1, autoscaling/v2
//! and discovery/v1 `defaults.go`, with their generated `+default` markers) and the few registry
//! steps whose result a client sees as a default: a Secret's `stringData` folded into `data` (a
//! conversion upstream) and a Service's `clusterIPs` and IP family fields (its strategy and IP
//! allocator, for a single-stack IPv4 cluster). Admission plugins (service account token volume,
//! default tolerations, priority) are not defaulting and are not here.
//!
//! It works on the JSON itself. Go cannot tell an empty string or a zero from an absent field, so
//! neither does this where upstream's field is a plain value; where it is a pointer only an absent
//! (or null) field is defaulted. A field of the wrong JSON type is left alone for validation to
//! report, and nothing here panics.

use k8s_openapi::ByteString;
use serde_json::{Map, Value, json};

type Object = Map<String, Value>;

/// Where a container's termination message is read from unless it says otherwise.
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The file mode (0644) of secret, configMap, downwardAPI and projected volume files.
const VOLUME_FILE_MODE: i64 = 0o644;
/// A projected service account token lives an hour unless the pod asks otherwise.
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// ClientIP session affinity sticks for 3 hours unless the Service says otherwise.
const CLIENT_IP_AFFINITY_SECONDS: i64 = 10800;
/// The CPU utilization an HPA without metrics aims for.
const HPA_CPU_UTILIZATION: i64 = 80;

/// Fills in the defaults kube-apiserver sets on create and update of an object of `kind`.
///
/// Call it before [`crate::validation::validate`]. Kinds without visible defaults (ConfigMap,
/// ServiceAccount, Event, Lease) and unknown kinds are left as they are.
pub fn apply(kind: &str, object: &mut Value) {
    let Some(object) = object.as_object_mut() else { return };
    match kind {
        "Pod" => pod(object),
        "Deployment" => deployment(object),
        "ReplicaSet" => replica_set(object),
        "Service" => service(object),
        "Endpoints" => endpoints(object),
        "EndpointSlice" => endpoint_slice(object),
        "Secret" => secret(object),
        "Namespace" => namespace(object),
        "Node" => node(object),
        "HorizontalPodAutoscaler" => horizontal_pod_autoscaler(object),
        _ => {}
    }
}

fn pod(pod: &mut Object) {
    let Some(spec) = child_object(pod, "spec") else { return };
    pod_spec(spec);
    // SetDefaults_Pod: only a Pod, not a template, gets these (upstream issue 69445).
    for key in ["containers", "initContainers"] {
        for container in objects_in(spec, key) {
            requests_from_limits(container);
        }
    }
    default_value(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for container in objects_in(spec, key) {
                for port in objects_in(container, "ports") {
                    if is_zero(port.get("hostPort"))
                        && let Some(container_port) = port.get("containerPort").cloned()
                    {
                        port.insert("hostPort".into(), container_port);
                    }
                }
            }
        }
    }
}

/// SetDefaults_PodSpec and the defaults of everything inside a pod spec, for pods and templates.
fn pod_spec(spec: &mut Object) {
    default_string(spec, "dnsPolicy", "ClusterFirst");
    default_string(spec, "restartPolicy", "Always");
    default_value(spec, "securityContext", json!({}));
    default_value(spec, "terminationGracePeriodSeconds", json!(30));
    default_string(spec, "schedulerName", "default-scheduler");
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for container in objects_in(spec, key) {
            container_defaults(container);
        }
    }
    for volume in objects_in(spec, "volumes") {
        volume_defaults(volume);
    }
}

fn container_defaults(container: &mut Object) {
    if is_empty_string(container.get("imagePullPolicy")) {
        let image = container.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image) == "latest" { "Always" } else { "IfNotPresent" };
        container.insert("imagePullPolicy".into(), json!(policy));
    }
    default_string(container, "terminationMessagePath", TERMINATION_MESSAGE_PATH);
    default_string(container, "terminationMessagePolicy", "File");
    for port in objects_in(container, "ports") {
        default_string(port, "protocol", "TCP");
    }
    for env in objects_in(container, "env") {
        if let Some(field_ref) =
            existing_object(env, "valueFrom").and_then(|from| existing_object(from, "fieldRef"))
        {
            default_string(field_ref, "apiVersion", "v1");
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = existing_object(container, key) {
            probe_defaults(probe);
        }
    }
    if let Some(lifecycle) = existing_object(container, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(handler) = existing_object(lifecycle, key) {
                handler_defaults(handler);
            }
        }
    }
}

fn probe_defaults(probe: &mut Object) {
    default_number(probe, "timeoutSeconds", 1);
    default_number(probe, "periodSeconds", 10);
    default_number(probe, "successThreshold", 1);
    default_number(probe, "failureThreshold", 3);
    handler_defaults(probe);
}

fn handler_defaults(handler: &mut Object) {
    if let Some(http_get) = existing_object(handler, "httpGet") {
        default_string(http_get, "path", "/");
        default_string(http_get, "scheme", "HTTP");
    }
    if let Some(grpc) = existing_object(handler, "grpc") {
        default_value(grpc, "service", json!(""));
    }
}

/// The tag kubelet would pull for `image`: "latest" when it names neither a tag nor a digest,
/// "" when it names only a digest or does not parse (then the pull policy is IfNotPresent).
fn image_tag(image: &str) -> &str {
    let valid = !image.is_empty() && !image.contains(char::is_whitespace);
    if !valid {
        return "";
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_segment_start = name.rfind('/').map_or(0, |slash| slash + 1);
    match name[last_segment_start..].rfind(':') {
        Some(colon) => &name[last_segment_start + colon + 1..],
        None if digest.is_some() => "",
        None => "latest",
    }
}

/// The keys of a volume that name its source; upstream defaults a sourceless volume to emptyDir.
const VOLUME_SOURCES: [&str; 30] = [
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

fn volume_defaults(volume: &mut Object) {
    if VOLUME_SOURCES.iter().all(|key| is_unset(volume.get(*key))) {
        volume.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = existing_object(volume, key) {
            default_value(source, "defaultMode", json!(VOLUME_FILE_MODE));
        }
    }
    if let Some(downward_api) = existing_object(volume, "downwardAPI") {
        downward_api_items(downward_api);
    }
    if let Some(projected) = existing_object(volume, "projected") {
        for source in objects_in(projected, "sources") {
            if let Some(downward_api) = existing_object(source, "downwardAPI") {
                downward_api_items(downward_api);
            }
            if let Some(token) = existing_object(source, "serviceAccountToken") {
                default_value(token, "expirationSeconds", json!(TOKEN_EXPIRATION_SECONDS));
            }
        }
    }
    if let Some(host_path) = existing_object(volume, "hostPath") {
        default_value(host_path, "type", json!(""));
    }
    if let Some(iscsi) = existing_object(volume, "iscsi") {
        default_string(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = existing_object(volume, "rbd") {
        default_string(rbd, "pool", "rbd");
        default_string(rbd, "user", "admin");
        default_string(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(azure_disk) = existing_object(volume, "azureDisk") {
        default_value(azure_disk, "cachingMode", json!("ReadWrite"));
        default_value(azure_disk, "fsType", json!("ext4"));
        default_value(azure_disk, "readOnly", json!(false));
        default_value(azure_disk, "kind", json!("Shared"));
    }
    if let Some(scale_io) = existing_object(volume, "scaleIO") {
        default_string(scale_io, "storageMode", "ThinProvisioned");
        default_string(scale_io, "fsType", "xfs");
    }
    if let Some(claim_spec) = existing_object(volume, "ephemeral")
        .and_then(|ephemeral| existing_object(ephemeral, "volumeClaimTemplate"))
        .and_then(|template| existing_object(template, "spec"))
    {
        default_value(claim_spec, "volumeMode", json!("Filesystem"));
    }
}

fn downward_api_items(downward_api: &mut Object) {
    for item in objects_in(downward_api, "items") {
        if let Some(field_ref) = existing_object(item, "fieldRef") {
            default_string(field_ref, "apiVersion", "v1");
        }
    }
}

/// A container's requests default to its limits, resource by resource.
fn requests_from_limits(container: &mut Object) {
    let Some(resources) = existing_object(container, "resources") else { return };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else { return };
    let Some(requests) = child_object(resources, "requests") else { return };
    for (name, quantity) in limits {
        requests.entry(name).or_insert(quantity);
    }
}

fn deployment(deployment: &mut Object) {
    let Some(spec) = child_object(deployment, "spec") else { return };
    default_value(spec, "replicas", json!(1));
    if let Some(strategy) = child_object(spec, "strategy") {
        default_string(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling_update) = child_object(strategy, "rollingUpdate")
        {
            default_value(rolling_update, "maxUnavailable", json!("25%"));
            default_value(rolling_update, "maxSurge", json!("25%"));
        }
    }
    default_value(spec, "revisionHistoryLimit", json!(10));
    default_value(spec, "progressDeadlineSeconds", json!(600));
    template_defaults(spec);
}

fn replica_set(replica_set: &mut Object) {
    let Some(spec) = child_object(replica_set, "spec") else { return };
    default_value(spec, "replicas", json!(1));
    template_defaults(spec);
}

fn template_defaults(spec: &mut Object) {
    if let Some(pod_spec_object) =
        child_object(spec, "template").and_then(|template| child_object(template, "spec"))
    {
        pod_spec(pod_spec_object);
    }
}

fn service(service: &mut Object) {
    let Some(spec) = child_object(service, "spec") else { return };
    default_string(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|config| config.get("clientIP"))
                .and_then(|client_ip| client_ip.get("timeoutSeconds"))
                .is_some_and(|timeout| !timeout.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": CLIENT_IP_AFFINITY_SECONDS}}),
                );
            }
        }
        _ => {}
    }
    default_string(spec, "type", "ClusterIP");
    for port in objects_in(spec, "ports") {
        default_string(port, "protocol", "TCP");
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(number)) => number.as_i64() == Some(0),
            Some(Value::String(name)) => name.is_empty(),
            Some(_) => false,
        };
        if target_unset && let Some(number) = port.get("port").filter(|port| port.is_i64()).cloned() {
            port.insert("targetPort".into(), number);
        }
    }
    let service_type = spec.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let has_external_ips =
        spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_string(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default_value(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        default_value(spec, "allocateLoadBalancerNodePorts", json!(true));
        if let Some(ingresses) = existing_object(service, "status")
            .and_then(|status| existing_object(status, "loadBalancer"))
            .map(|load_balancer| objects_in(load_balancer, "ingress"))
        {
            for ingress in ingresses {
                if !is_empty_string(ingress.get("ip")) {
                    default_value(ingress, "ipMode", json!("VIP"));
                }
            }
        }
    }
    if let Some(spec) = existing_object(service, "spec") {
        service_ip_families(spec, &service_type);
    }
}

/// The registry's part of a Service's defaults: `clusterIPs` from `clusterIP` (for clients that
/// know only the singular field) and the IP family policy and families kube-apiserver infers for
/// a single-stack IPv4 cluster. ExternalName services have none of these.
fn service_ip_families(spec: &mut Object, service_type: &str) {
    if service_type == "ExternalName" {
        return;
    }
    let cluster_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let cluster_ips_unset =
        spec.get("clusterIPs").is_none_or(|ips| ips.as_array().is_some_and(Vec::is_empty));
    if !cluster_ip.is_empty() && cluster_ips_unset {
        spec.insert("clusterIPs".into(), json!([cluster_ip]));
    }
    let headless_without_selector =
        cluster_ip == "None" && spec.get("selector").and_then(Value::as_object).is_none_or(Map::is_empty);
    let policy = if headless_without_selector { "RequireDualStack" } else { "SingleStack" };
    default_value(spec, "ipFamilyPolicy", json!(policy));
    let families_unset =
        spec.get("ipFamilies").is_none_or(|families| families.as_array().is_some_and(Vec::is_empty));
    if !families_unset {
        return;
    }
    let families = if headless_without_selector {
        if spec.get("ipFamilyPolicy").and_then(Value::as_str) == Some("SingleStack") {
            json!(["IPv4"])
        } else {
            json!(["IPv4", "IPv6"])
        }
    } else {
        let ips = spec.get("clusterIPs").and_then(Value::as_array).cloned().unwrap_or_default();
        let inferred: Vec<Value> = ips
            .iter()
            .filter_map(Value::as_str)
            .take_while(|ip| *ip != "None")
            .map(|ip| json!(if ip.contains(':') { "IPv6" } else { "IPv4" }))
            .collect();
        if inferred.is_empty() { json!(["IPv4"]) } else { Value::Array(inferred) }
    };
    spec.insert("ipFamilies".into(), families);
}

fn endpoints(endpoints: &mut Object) {
    for subset in objects_in(endpoints, "subsets") {
        for port in objects_in(subset, "ports") {
            default_string(port, "protocol", "TCP");
        }
    }
}

fn endpoint_slice(slice: &mut Object) {
    for port in objects_in(slice, "ports") {
        default_value(port, "name", json!(""));
        default_value(port, "protocol", json!("TCP"));
    }
}

fn secret(secret: &mut Object) {
    default_string(secret, "type", "Opaque");
    // Upstream's conversion folds `stringData` into `data`, its values winning; the stored and
    // returned Secret has only `data`. Values of the wrong type are left for validation.
    let Some(string_data) = secret.get("stringData").and_then(Value::as_object).cloned() else { return };
    if !string_data.values().all(Value::is_string) {
        return;
    }
    let Some(data) = child_object(secret, "data") else { return };
    for (key, value) in string_data {
        let bytes = value.as_str().unwrap_or("").as_bytes().to_vec();
        let Ok(encoded) = serde_json::to_value(ByteString(bytes)) else { continue };
        data.insert(key, encoded);
    }
    secret.remove("stringData");
}

fn namespace(namespace: &mut Object) {
    let name =
        namespace.get("metadata").and_then(|meta| meta.get("name")).and_then(Value::as_str).unwrap_or("");
    if !name.is_empty() {
        let name = name.to_string();
        if let Some(labels) =
            child_object(namespace, "metadata").and_then(|meta| child_object(meta, "labels"))
        {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(status) = child_object(namespace, "status") {
        default_string(status, "phase", "Active");
    }
}

fn node(node: &mut Object) {
    let Some(status) = existing_object(node, "status") else { return };
    if is_unset(status.get("allocatable"))
        && let Some(capacity) = status.get("capacity").filter(|capacity| capacity.is_object()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

fn horizontal_pod_autoscaler(autoscaler: &mut Object) {
    let Some(spec) = child_object(autoscaler, "spec") else { return };
    default_value(spec, "minReplicas", json!(1));
    let metrics_unset =
        spec.get("metrics").is_none_or(|metrics| metrics.as_array().is_some_and(Vec::is_empty));
    if metrics_unset {
        spec.insert(
            "metrics".into(),
            json!([{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": HPA_CPU_UTILIZATION}},
            }]),
        );
    }
    // A behavior, once given, is filled in rule by rule from the scaling upstream always had.
    let Some(behavior) = existing_object(spec, "behavior") else { return };
    let scale_up = json!({
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    });
    let scale_down = json!({
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    });
    for (key, defaults) in [("scaleUp", scale_up), ("scaleDown", scale_down)] {
        let rules = scaling_rules(defaults, behavior.get(key));
        behavior.insert(key.into(), rules);
    }
}

/// Upstream's copyHPAScalingRules: the fields `given` sets, over `defaults`.
fn scaling_rules(mut defaults: Value, given: Option<&Value>) -> Value {
    let (Some(rules), Some(given)) = (defaults.as_object_mut(), given.and_then(Value::as_object)) else {
        return defaults;
    };
    for key in ["selectPolicy", "stabilizationWindowSeconds", "policies", "tolerance"] {
        if let Some(value) = given.get(key).filter(|value| !value.is_null()) {
            rules.insert(key.into(), value.clone());
        }
    }
    defaults
}

fn is_unset(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

fn is_empty_string(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.is_empty(),
        Some(_) => false,
    }
}

fn is_zero(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Number(number)) => number.as_f64() == Some(0.0),
        Some(_) => false,
    }
}

/// Go's `if x == "" { x = default }` for a plain string field.
fn default_string(object: &mut Object, key: &str, default: &str) {
    if is_empty_string(object.get(key)) {
        object.insert(key.into(), json!(default));
    }
}

/// Go's `if x == nil { x = default }` for a pointer field.
fn default_value(object: &mut Object, key: &str, default: Value) {
    if is_unset(object.get(key)) {
        object.insert(key.into(), default);
    }
}

/// Go's `if x == 0 { x = default }` for a plain integer field.
fn default_number(object: &mut Object, key: &str, default: i64) {
    if is_zero(object.get(key)) {
        object.insert(key.into(), json!(default));
    }
}

/// The object at `key`, created empty when absent or null; `None` when `key` holds another type.
fn child_object<'a>(object: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    let slot = object.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The object at `key`, if there is one.
fn existing_object<'a>(object: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    object.get_mut(key).and_then(Value::as_object_mut)
}

/// The objects in the array at `key`; other elements are skipped.
fn objects_in<'a>(object: &'a mut Object, key: &str) -> impl Iterator<Item = &'a mut Object> {
    object.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defaults `input` as a `kind` and compares the result with `expected`.
    fn check(kind: &str, input: Value, expected: Value) {
        let mut object = input;
        apply(kind, &mut object);
        assert_eq!(object, expected, "{kind}: got {}", serde_json::to_string_pretty(&object).unwrap());
    }

    /// The defaults of a container with only a name and image, as upstream's TestSetDefaultPod*.
    fn defaulted_container(name: &str, image: &str, pull_policy: &str) -> Value {
        json!({
            "name": name, "image": image, "imagePullPolicy": pull_policy,
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        })
    }

    fn defaulted_pod_spec(containers: Value) -> Value {
        json!({
            "containers": containers, "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "securityContext": {}, "terminationGracePeriodSeconds": 30,
        })
    }

    #[test]
    fn bare_pod_gets_what_kube_apiserver_returns() {
        // A pod naming one container gets the pod spec, pod and container defaults, and the
        // pull policy follows the image tag.
        let mut spec = defaulted_pod_spec(json!([defaulted_container("web", "nginx", "Always")]));
        spec["enableServiceLinks"] = json!(true);
        check(
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}),
            json!({"metadata": {"name": "p"}, "spec": spec}),
        );
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        // Always for :latest or no tag, IfNotPresent for any other tag, a digest or a bad name.
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:1.25", "IfNotPresent"),
            ("nginx:1.25", "IfNotPresent"),
            ("nginx@sha256:abc", "IfNotPresent"),
            ("nginx:latest@sha256:abc", "Always"),
            ("", "IfNotPresent"),
        ] {
            let mut pod = json!({"spec": {"containers": [{"name": "c", "image": image}]}});
            apply("Pod", &mut pod);
            assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], json!(policy), "{image}");
        }
    }

    #[test]
    fn pod_ports_probes_env_volumes_and_resources() {
        // Nested defaults: port protocol, probe thresholds and handler, fieldRef apiVersion,
        // volume modes, sourceless volume, requests from limits (pod only).
        let mut pod = json!({"spec": {
            "containers": [{
                "name": "c", "image": "i:1",
                "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"grpc": {"port": 9000}, "periodSeconds": 5},
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
            }],
            "volumes": [{"name": "scratch"}, {"name": "s", "secret": {"secretName": "x"}}, {"name": "h", "hostPath": {"path": "/x"}}],
        }});
        apply("Pod", &mut pod);
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["ports"][0]["protocol"], json!("TCP"));
        assert_eq!(
            container["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(container["readinessProbe"]["grpc"]["service"], json!(""));
        assert_eq!(container["readinessProbe"]["periodSeconds"], json!(5));
        assert_eq!(container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], json!("v1"));
        assert_eq!(container["resources"]["requests"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(pod["spec"]["volumes"][0], json!({"name": "scratch", "emptyDir": {}}));
        assert_eq!(pod["spec"]["volumes"][1]["secret"]["defaultMode"], json!(420));
        assert_eq!(pod["spec"]["volumes"][2]["hostPath"]["type"], json!(""));
    }

    #[test]
    fn host_network_pod_gets_host_ports() {
        // With hostNetwork every container port is also a host port.
        let mut pod = json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 53}]}]}});
        apply("Pod", &mut pod);
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], json!(53));
    }

    #[test]
    fn bare_deployment_gets_what_kube_apiserver_returns() {
        // Replicas, strategy, history and deadline, and the template's pod spec defaults — but
        // not the pod-only enableServiceLinks.
        let template_spec =
            defaulted_pod_spec(json!([defaulted_container("web", "nginx:1.25", "IfNotPresent")]));
        check(
            "Deployment",
            json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}),
            json!({"spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": template_spec},
            }}),
        );
    }

    #[test]
    fn recreate_deployment_keeps_its_strategy_and_replicas_zero_stays() {
        // Explicit values win: Recreate gets no rollingUpdate, replicas 0 is kept.
        let mut deployment = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}});
        apply("Deployment", &mut deployment);
        assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(deployment["spec"]["replicas"], json!(0));
    }

    #[test]
    fn bare_service_gets_what_kube_apiserver_returns() {
        // Type, affinity, traffic policies, port protocol and target, and the IP family fields
        // a single-stack IPv4 cluster fills in.
        check(
            "Service",
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            json!({"spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
                "ipFamilies": ["IPv4"],
            }}),
        );
    }

    #[test]
    fn service_variants() {
        // NodePort gets an external traffic policy; ClientIP affinity its timeout; a headless
        // service without selector is dual-stack; clusterIPs follows clusterIP; ExternalName has
        // no IP fields.
        let mut node_port = json!({"spec": {"type": "NodePort", "sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": "http"}]}});
        apply("Service", &mut node_port);
        assert_eq!(node_port["spec"]["externalTrafficPolicy"], json!("Cluster"));
        assert_eq!(
            node_port["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        assert_eq!(node_port["spec"]["ports"][0]["targetPort"], json!("http"));

        let mut headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
        apply("Service", &mut headless);
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], json!("RequireDualStack"));
        assert_eq!(headless["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));

        let mut v6 =
            json!({"spec": {"clusterIP": "fd00::10", "selector": {"a": "b"}, "ports": [{"port": 80}]}});
        apply("Service", &mut v6);
        assert_eq!(v6["spec"]["ipFamilies"], json!(["IPv6"]));

        let mut external = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        apply("Service", &mut external);
        assert_eq!(external["spec"].get("ipFamilyPolicy"), None);
        assert_eq!(external["spec"].get("internalTrafficPolicy"), None);

        let mut load_balancer = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
        apply("Service", &mut load_balancer);
        assert_eq!(load_balancer["spec"]["allocateLoadBalancerNodePorts"], json!(true));
        assert_eq!(load_balancer["status"]["loadBalancer"]["ingress"][0]["ipMode"], json!("VIP"));
    }

    #[test]
    fn small_kinds() {
        // One line each: ReplicaSet, Secret (with stringData), Namespace, Node, Endpoints,
        // EndpointSlice, and a kind without defaults.
        check(
            "ReplicaSet",
            json!({"spec": {}}),
            json!({"spec": {"replicas": 1, "template": {"spec": {
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30}}}}),
        );
        check(
            "Secret",
            json!({"stringData": {"user": "admin"}, "data": {"pass": "c2VjcmV0"}}),
            json!({"type": "Opaque", "data": {"user": "YWRtaW4=", "pass": "c2VjcmV0"}}),
        );
        check(
            "Namespace",
            json!({"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "wrong"}}}),
            json!({"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}}, "status": {"phase": "Active"}}),
        );
        check(
            "Node",
            json!({"status": {"capacity": {"cpu": "2"}}}),
            json!({"status": {"capacity": {"cpu": "2"}, "allocatable": {"cpu": "2"}}}),
        );
        check(
            "Endpoints",
            json!({"subsets": [{"ports": [{"port": 80}]}]}),
            json!({"subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}),
        );
        check(
            "EndpointSlice",
            json!({"ports": [{"port": 80}]}),
            json!({"ports": [{"port": 80, "name": "", "protocol": "TCP"}]}),
        );
        check("ConfigMap", json!({"data": {"a": "b"}}), json!({"data": {"a": "b"}}));
    }

    #[test]
    fn horizontal_pod_autoscaler_defaults() {
        // minReplicas and the CPU metric; a behavior with one rule gets the other rule and the
        // missing fields of the given one from upstream's defaults.
        check(
            "HorizontalPodAutoscaler",
            json!({"spec": {"maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
            json!({"spec": {
                "maxReplicas": 5,
                "minReplicas": 1,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                        {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                },
            }}),
        );
    }

    #[test]
    fn odd_input_never_panics_and_is_left_alone() {
        // Wrong JSON types anywhere are left for validation; defaulting still fills what it can.
        let odd = [
            json!(null),
            json!([1, 2]),
            json!("pod"),
            json!({"spec": []}),
            json!({"spec": {"containers": {"name": "c"}, "volumes": [1, null, "x"]}}),
            json!({"spec": {"containers": [null, 3, {"image": 7, "ports": "80", "livenessProbe": []}]}}),
            json!({"spec": {"template": [], "strategy": "fast", "replicas": "one"}}),
            json!({"spec": {"ports": [{"port": "eighty"}], "type": 3, "selector": []}, "status": 1}),
            json!({"metadata": {"name": 5}, "stringData": {"a": 1}, "status": []}),
            json!({"metadata": [], "spec": {"behavior": {"scaleUp": "fast"}, "metrics": {}}}),
        ];
        for kind in [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "Service",
            "Secret",
            "Namespace",
            "Node",
            "HorizontalPodAutoscaler",
            "Endpoints",
            "EndpointSlice",
        ] {
            for input in &odd {
                let mut object = input.clone();
                apply(kind, &mut object);
            }
        }
        let mut pod = json!({"spec": {"containers": [null, {"image": 7, "ports": "80"}]}});
        apply("Pod", &mut pod);
        assert_eq!(pod["spec"]["containers"][0], Value::Null);
        assert_eq!(pod["spec"]["containers"][1]["image"], json!(7));
        assert_eq!(pod["spec"]["containers"][1]["ports"], json!("80"));
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], json!("IfNotPresent"));
        let mut secret = json!({"stringData": {"a": 1}});
        apply("Secret", &mut secret);
        assert_eq!(secret["stringData"], json!({"a": 1}));
    }
}
