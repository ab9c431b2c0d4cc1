//! The Table columns and cells `kubectl get` prints, computed as kube-apiserver computes them.
//!
//! kubectl asks for `as=Table;g=meta.k8s.io;v=v1` and prints what the server sends, so these
//! rows are the user's view of the cluster. Upstream builds them in
//! `pkg/printers/internalversion/printers.go` (Kubernetes 1.33); this module follows that logic
//! kind by kind, reading the stored JSON instead of Go structs. Three rules hold throughout:
//!
//! - The server always builds the wide row (upstream's printer `TableConvertor` passes
//!   `Wide: true`); kubectl hides the priority-1 columns itself unless `-o wide`. So `cells`
//!   returns one cell per column of `columns`, wide ones included.
//! - Objects are read as stored, that is after defaulting. A field missing anyway prints as
//!   upstream's zero value would (`""`, `0`, `<none>`, `<unknown>` for a time).
//! - Nothing here panics on odd JSON: indexing a `serde_json::Value` yields `Null` for a missing
//!   field or a value of another shape, and every reader below falls back from `Null`.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// One column of a kubectl Table (meta.k8s.io/v1 TableColumnDefinition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The OpenAPI type of the column: "string", "integer", "number", "boolean" or "date".
    /// Upstream declares some counting columns "string" yet fills them with integers; both
    /// are kept as upstream has them.
    pub type_: &'static str,
    /// "name" for the column holding the object's name, else "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: shown only by `kubectl get -o wide`.
    pub priority: i32,
}

/// The columns for a kind (by its Kind name: "Pod", "Node", ...). Kinds without a printer get
/// kube-apiserver's default table: Name and "Created At".
pub fn columns(kind: &str) -> &'static [Column] {
    printer(kind).columns
}

/// The cells of one object's row, in column order, wide columns included. `object` is the
/// object's JSON as stored; `now` is the time ages are computed against.
pub fn cells(kind: &str, object: &Value, now: Timestamp) -> Vec<Value> {
    (printer(kind).cells)(object, now)
}

/// kube's `duration.HumanDuration`: about two significant figures, "119s", "9m59s", "179m",
/// "7h59m", "47h", "7d23h", "729d", "7y364d", "8y". Minus two seconds or less means the clocks
/// disagree and prints "<invalid>"; a smaller negative skew prints "0s".
pub fn human_duration(elapsed: SignedDuration) -> String {
    // Each `as_*` truncates toward zero, like Go's integer conversions upstream.
    let seconds = elapsed.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = elapsed.as_mins();
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = elapsed.as_hours();
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return with_remainder(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

fn with_remainder(whole: i64, whole_unit: &str, remainder: i64, remainder_unit: &str) -> String {
    if remainder == 0 {
        format!("{whole}{whole_unit}")
    } else {
        format!("{whole}{whole_unit}{remainder}{remainder_unit}")
    }
}

/// A kind's columns and the function filling them, kept side by side so neither exists alone.
struct Printer {
    kind: &'static str,
    columns: &'static [Column],
    cells: fn(&Value, Timestamp) -> Vec<Value>,
}

static PRINTERS: &[Printer] = &[
    Printer { kind: "Pod", columns: POD_COLUMNS, cells: pod_cells },
    Printer { kind: "Node", columns: NODE_COLUMNS, cells: node_cells },
    Printer { kind: "Namespace", columns: NAMESPACE_COLUMNS, cells: namespace_cells },
    Printer { kind: "Service", columns: SERVICE_COLUMNS, cells: service_cells },
    Printer { kind: "Endpoints", columns: ENDPOINTS_COLUMNS, cells: endpoints_cells },
    Printer { kind: "EndpointSlice", columns: ENDPOINT_SLICE_COLUMNS, cells: endpoint_slice_cells },
    Printer { kind: "ConfigMap", columns: CONFIG_MAP_COLUMNS, cells: config_map_cells },
    Printer { kind: "Secret", columns: SECRET_COLUMNS, cells: secret_cells },
    Printer { kind: "ServiceAccount", columns: SERVICE_ACCOUNT_COLUMNS, cells: service_account_cells },
    Printer { kind: "Event", columns: EVENT_COLUMNS, cells: event_cells },
    Printer { kind: "Deployment", columns: DEPLOYMENT_COLUMNS, cells: deployment_cells },
    Printer { kind: "ReplicaSet", columns: REPLICA_SET_COLUMNS, cells: replica_set_cells },
    Printer { kind: "Lease", columns: LEASE_COLUMNS, cells: lease_cells },
    Printer { kind: "HorizontalPodAutoscaler", columns: HPA_COLUMNS, cells: hpa_cells },
];

/// apiserver's `rest.DefaultTableConvertor`, used by kinds without a printer.
static DEFAULT_PRINTER: Printer = Printer { kind: "", columns: DEFAULT_COLUMNS, cells: default_cells };

fn printer(kind: &str) -> &'static Printer {
    PRINTERS.iter().find(|printer| printer.kind == kind).unwrap_or(&DEFAULT_PRINTER)
}

// Column definitions. Descriptions are upstream's own text, or else the swagger doc of the field
// upstream names, cut to its gist.

impl Column {
    const fn wide(self) -> Column {
        Column { priority: 1, ..self }
    }
}

const fn string(name: &'static str, description: &'static str) -> Column {
    Column { name, type_: "string", format: "", description, priority: 0 }
}

const fn integer(name: &'static str, description: &'static str) -> Column {
    Column { name, type_: "integer", format: "", description, priority: 0 }
}

const NAME: Column = Column { format: "name", ..string("Name", "Name must be unique within a namespace.") };
const CREATED: &str =
    "CreationTimestamp is a timestamp representing the server time when this object was created.";
const AGE: Column = string("Age", CREATED);
const CONTAINERS: Column = string("Containers", "Names of each container in the template.").wide();
const IMAGES: Column = string("Images", "Images referenced by each container in the template.").wide();

static DEFAULT_COLUMNS: &[Column] = &[NAME, Column { type_: "date", ..string("Created At", CREATED) }];

const POD_RESTARTS: &str = "The number of times the containers in this pod have been restarted and when \
                            the last container in this pod has restarted.";
static POD_COLUMNS: &[Column] = &[
    NAME,
    string("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    string("Status", "The aggregate status of the containers in this pod."),
    string("Restarts", POD_RESTARTS),
    AGE,
    string("IP", "podIP address allocated to the pod.").wide(),
    string("Node", "NodeName indicates in which node this pod is scheduled.").wide(),
    string("Nominated Node", "Set only when this pod preempts other pods on the node.").wide(),
    string("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.")
        .wide(),
];

const NODE_ADDRESSES: &str = "List of addresses reachable to the node.";
static NODE_COLUMNS: &[Column] = &[
    NAME,
    string("Status", "The status of the node"),
    string("Roles", "The roles of the node"),
    AGE,
    string("Version", "Kubelet Version reported by the node."),
    string("Internal-IP", NODE_ADDRESSES).wide(),
    string("External-IP", NODE_ADDRESSES).wide(),
    string("OS-Image", "OS Image reported by the node from /etc/os-release.").wide(),
    string("Kernel-Version", "Kernel Version reported by the node from 'uname -r'.").wide(),
    string("Container-Runtime", "ContainerRuntime Version reported by the node.").wide(),
];

static NAMESPACE_COLUMNS: &[Column] = &[NAME, string("Status", "The status of the namespace"), AGE];

static SERVICE_COLUMNS: &[Column] = &[
    NAME,
    string("Type", "type determines how the Service is exposed."),
    string("Cluster-IP", "clusterIP is the IP address of the service."),
    string("External-IP", "IP addresses for which cluster nodes also accept traffic for this service."),
    string("Port(s)", "The list of ports that are exposed by this service."),
    AGE,
    string("Selector", "Route service traffic to pods with labels matching this selector.").wide(),
];

static ENDPOINTS_COLUMNS: &[Column] =
    &[NAME, string("Endpoints", "The set of all endpoints is the union of all subsets."), AGE];

static ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    string("AddressType", "The type of address carried by this EndpointSlice."),
    string("Ports", "The network ports exposed by each endpoint in this slice."),
    string("Endpoints", "A list of unique endpoints in this slice."),
    AGE,
];

static CONFIG_MAP_COLUMNS: &[Column] = &[NAME, string("Data", "Data contains the configuration data."), AGE];

static SECRET_COLUMNS: &[Column] = &[
    NAME,
    string("Type", "Used to facilitate programmatic handling of secret data."),
    string("Data", "Data contains the secret data."),
    AGE,
];

static SERVICE_ACCOUNT_COLUMNS: &[Column] =
    &[NAME, string("Secrets", "The secrets in the namespace that pods using this account may use."), AGE];

static EVENT_COLUMNS: &[Column] = &[
    string("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    string("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    string("Reason", "The reason for the transition into the object's current status."),
    string("Object", "The object that this event is about."),
    string("Subobject", "The piece of the object this event is about, as a field path.").wide(),
    string("Source", "The component reporting this event.").wide(),
    string("Message", "A human-readable description of the status of this operation."),
    string("First Seen", "The time at which the event was first recorded.").wide(),
    string("Count", "The number of times this event has occurred.").wide(),
    NAME.wide(),
];

static DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    string("Ready", "Number of the pod with ready state"),
    string("Up-to-date", "Total number of non-terminating pods that have the desired template spec."),
    string("Available", "Total number of available non-terminating pods targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    string("Selector", "Label selector for pods.").wide(),
];

static REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    integer("Desired", "Replicas is the number of desired pods."),
    integer("Current", "The most recently observed number of non-terminating pods."),
    integer("Ready", "The number of pods targeted by this ReplicaSet with a Ready Condition."),
    AGE,
    CONTAINERS,
    IMAGES,
    string("Selector", "A label query over pods that should match the replica count.").wide(),
];

static LEASE_COLUMNS: &[Column] =
    &[NAME, string("Holder", "holderIdentity contains the identity of the holder of a current lease."), AGE];

static HPA_COLUMNS: &[Column] = &[
    NAME,
    string("Reference", "The target resource to scale."),
    string("Targets", "The metrics used to calculate the desired replica count."),
    string("MinPods", "The lower limit for the number of replicas to which the autoscaler can scale down."),
    string("MaxPods", "The upper limit for the number of replicas to which the autoscaler can scale up."),
    string("Replicas", "The current number of replicas of pods managed by this autoscaler."),
    AGE,
];

// Cells, one function per kind.

fn default_cells(object: &Value, _now: Timestamp) -> Vec<Value> {
    // Upstream formats the zero time when creationTimestamp is unset.
    let created = timestamp(&object["metadata"]["creationTimestamp"]).unwrap_or(GO_ZERO_TIME);
    vec![json!(name(object)), json!(created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())]
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = pod_summary(pod);
    let restarts = match summary.last_restart {
        Some(at) if summary.restarts != 0 => format!("{} ({} ago)", summary.restarts, since(Some(at), now)),
        _ => summary.restarts.to_string(),
    };
    let status = &pod["status"];
    // v1 `podIP` wins over `podIPs[0]`, as in upstream's v1-to-internal conversion.
    let ip = match text(&status["podIP"]) {
        "" => text(&status["podIPs"][0]["ip"]),
        ip => ip,
    };
    let gates = items(&pod["spec"]["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passed =
            gates.iter().filter(|gate| condition_status(status, text(&gate["conditionType"])) == "True");
        format!("{}/{}", passed.count(), gates.len())
    };
    vec![
        json!(name(pod)),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(summary.reason),
        json!(restarts),
        json!(age(pod, now)),
        json!(or_none(ip)),
        json!(or_none(text(&pod["spec"]["nodeName"]))),
        json!(or_none(text(&status["nominatedNodeName"]))),
        json!(readiness_gates),
    ]
}

/// What `printPod` derives from a pod's containers.
struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

fn pod_summary(pod: &Value) -> PodSummary {
    let (spec, status) = (&pod["spec"], &pod["status"]);
    let phase = text(&status["phase"]);
    let mut reason = match text(&status["reason"]) {
        "" => phase,
        reason => reason,
    };
    let gated =
        |condition: &Value| condition["type"] == "PodScheduled" && condition["reason"] == "SchedulingGated";
    if items(&status["conditions"]).iter().any(gated) {
        reason = "SchedulingGated";
    }
    let init_containers = items(&spec["initContainers"]);
    // A restartable init container is a sidecar: it counts as a container of the pod.
    let is_sidecar = |container: &Value| container["restartPolicy"] == "Always";
    let sidecars = init_containers.iter().filter(|container| is_sidecar(container)).count();
    let mut summary = PodSummary {
        ready: 0,
        total: items(&spec["containers"]).len() + sidecars,
        reason: reason.to_owned(),
        restarts: 0,
        last_restart: None,
    };
    let init = summarize_init_containers(&mut summary, init_containers, status);
    if !init.initializing || condition_status(status, "Initialized") == "True" {
        // Once the pod is initialized, only sidecar restarts count beside the app containers'.
        summary.restarts = init.sidecar_restarts;
        summary.last_restart = init.sidecar_last_restart;
        summarize_containers(&mut summary, status);
    }
    let deleting = !pod["metadata"]["deletionTimestamp"].is_null();
    if deleting && status["reason"] == "NodeLost" {
        summary.reason = "Unknown".to_owned();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        summary.reason = "Terminating".to_owned();
    }
    summary
}

/// How far a pod's init containers got.
struct InitProgress {
    initializing: bool,
    sidecar_restarts: i64,
    sidecar_last_restart: Option<Timestamp>,
}

/// Counts init container restarts and readiness of started sidecars, and sets an "Init:" reason
/// at the first init container that has not finished, which means the pod is initializing.
fn summarize_init_containers(
    summary: &mut PodSummary,
    init_containers: &[Value],
    status: &Value,
) -> InitProgress {
    let is_sidecar = |name: &str| {
        init_containers
            .iter()
            .any(|container| container["name"] == name && container["restartPolicy"] == "Always")
    };
    let mut init = InitProgress { initializing: false, sidecar_restarts: 0, sidecar_last_restart: None };
    for (index, container) in items(&status["initContainerStatuses"]).iter().enumerate() {
        let restart_count = number(&container["restartCount"]);
        let finished = timestamp(&container["lastState"]["terminated"]["finishedAt"]);
        summary.restarts += restart_count;
        latest(&mut summary.last_restart, finished);
        let sidecar = is_sidecar(text(&container["name"]));
        if sidecar {
            init.sidecar_restarts += restart_count;
            latest(&mut init.sidecar_last_restart, finished);
        }
        let (terminated, waiting) = (&container["state"]["terminated"], &container["state"]["waiting"]);
        if terminated.is_object() && number(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && container["started"] == true {
            summary.ready += usize::from(container["ready"] == true);
            continue;
        }
        init.initializing = true;
        summary.reason = if terminated.is_object() {
            format!("Init:{}", terminated_reason(terminated))
        } else if !matches!(text(&waiting["reason"]), "" | "PodInitializing") {
            format!("Init:{}", text(&waiting["reason"]))
        } else {
            format!("Init:{index}/{}", init_containers.len())
        };
        break;
    }
    init
}

/// Adds the app containers' restarts and readiness; the last container with a waiting or
/// terminated reason names the pod's status.
fn summarize_containers(summary: &mut PodSummary, status: &Value) {
    let mut has_running = false;
    for container in items(&status["containerStatuses"]).iter().rev() {
        summary.restarts += number(&container["restartCount"]);
        latest(&mut summary.last_restart, timestamp(&container["lastState"]["terminated"]["finishedAt"]));
        let state = &container["state"];
        let waiting_reason = text(&state["waiting"]["reason"]);
        if !waiting_reason.is_empty() {
            summary.reason = waiting_reason.to_owned();
        } else if state["terminated"].is_object() {
            summary.reason = terminated_reason(&state["terminated"]);
        } else if container["ready"] == true && state["running"].is_object() {
            has_running = true;
            summary.ready += 1;
        }
    }
    // A pod whose last-listed container completed while others still run is not "Completed".
    if summary.reason == "Completed" && has_running {
        let ready =
            items(&status["conditions"]).iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        summary.reason = if ready { "Running" } else { "NotReady" }.to_owned();
    }
}

fn terminated_reason(terminated: &Value) -> String {
    match (text(&terminated["reason"]), number(&terminated["signal"])) {
        ("", 0) => format!("ExitCode:{}", number(&terminated["exitCode"])),
        ("", signal) => format!("Signal:{signal}"),
        (reason, _) => reason.to_owned(),
    }
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let status = &node["status"];
    // Upstream keys conditions by type, so the last Ready condition counts.
    let ready = items(&status["conditions"]).iter().rev().find(|condition| condition["type"] == "Ready");
    let mut states = vec![match ready {
        Some(condition) if condition["status"] == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node["spec"]["unschedulable"] == true {
        states.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (key, value) in node["metadata"]["labels"].as_object().into_iter().flatten() {
        let role = match key.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => role,
            None if key == "kubernetes.io/role" => text(value),
            None => "",
        };
        if !role.is_empty() {
            roles.insert(role);
        }
    }
    let address = |kind: &str| {
        let found = items(&status["addresses"]).iter().find(|address| address["type"] == kind);
        found.map_or("<none>", |address| text(&address["address"]))
    };
    let info = &status["nodeInfo"];
    let reported = |field: &str| match text(&info[field]) {
        "" => "<unknown>",
        value => value,
    };
    vec![
        json!(name(node)),
        json!(states.join(",")),
        json!(or_none(&roles.into_iter().collect::<Vec<_>>().join(","))),
        json!(age(node, now)),
        json!(text(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(reported("osImage")),
        json!(reported("kernelVersion")),
        json!(reported("containerRuntimeVersion")),
    ]
}

fn namespace_cells(namespace: &Value, now: Timestamp) -> Vec<Value> {
    vec![json!(name(namespace)), json!(text(&namespace["status"]["phase"])), json!(age(namespace, now))]
}

fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &service["spec"];
    // `clusterIP` stands in for an empty `clusterIPs`, as defaulting would have filled it.
    let cluster_ip = match items(&spec["clusterIPs"]).first() {
        Some(ip) => text(ip),
        None => or_none(text(&spec["clusterIP"])),
    };
    let ports: Vec<String> = items(&spec["ports"])
        .iter()
        .map(|port| {
            let (service_port, protocol) = (number(&port["port"]), text(&port["protocol"]));
            match number(&port["nodePort"]) {
                node_port if node_port > 0 => format!("{service_port}:{node_port}/{protocol}"),
                _ => format!("{service_port}/{protocol}"),
            }
        })
        .collect();
    vec![
        json!(name(service)),
        json!(text(&spec["type"])),
        json!(cluster_ip),
        json!(service_external_ip(service)),
        json!(or_none(&ports.join(","))),
        json!(age(service, now)),
        json!(format_labels(&spec["selector"])),
    ]
}

fn service_external_ip(service: &Value) -> String {
    let spec = &service["spec"];
    let external_ips: Vec<&str> = items(&spec["externalIPs"]).iter().map(text).collect();
    match text(&spec["type"]) {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_owned(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            // Not clipped to 16 characters: the server always renders the wide form.
            let ingress = items(&service["status"]["loadBalancer"]["ingress"]);
            let balancer: BTreeSet<&str> = ingress
                .iter()
                .map(|ingress| match text(&ingress["ip"]) {
                    "" => text(&ingress["hostname"]),
                    ip => ip,
                })
                .filter(|address| !address.is_empty())
                .collect();
            let all: Vec<&str> = balancer.into_iter().chain(external_ips).collect();
            if all.is_empty() { "<pending>".to_owned() } else { all.join(",") }
        }
        "ExternalName" => text(&spec["externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

/// At most this many endpoints or ports are listed before "+ N more...".
const LISTED_MAX: usize = 3;

fn endpoints_cells(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    let subsets = items(&endpoints["subsets"]);
    let (mut listed, mut count) = (Vec::new(), 0);
    for subset in subsets {
        let addresses: Vec<&str> =
            items(&subset["addresses"]).iter().map(|address| text(&address["ip"])).collect();
        let ports = items(&subset["ports"]);
        // A headless service may have no ports: list bare addresses.
        if ports.is_empty() {
            count += addresses.len();
            listed.extend(addresses.iter().map(|ip| ip.to_string()));
        }
        for port in ports {
            count += addresses.len();
            let port_number = number(&port["port"]);
            // Go's net.JoinHostPort brackets IPv6 addresses.
            listed.extend(addresses.iter().map(|ip| {
                if ip.contains(':') { format!("[{ip}]:{port_number}") } else { format!("{ip}:{port_number}") }
            }));
        }
        listed.truncate(LISTED_MAX);
    }
    let formatted =
        if subsets.is_empty() { "<none>".to_owned() } else { listed_with_more(&listed, count, "") };
    vec![json!(name(endpoints)), json!(formatted), json!(age(endpoints, now))]
}

fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = items(&slice["ports"])
        .iter()
        .map(|port| match (&port["port"], &port["name"]) {
            (Value::Number(number), _) => number.to_string(),
            (_, Value::String(name)) => name.clone(),
            _ => "*".to_owned(),
        })
        .collect();
    let endpoints = items(&slice["endpoints"]);
    let addresses: Vec<String> = endpoints
        .iter()
        .flat_map(|endpoint| items(&endpoint["addresses"]))
        .map(|a| text(a).to_owned())
        .collect();
    vec![
        json!(name(slice)),
        json!(text(&slice["addressType"])),
        json!(listed_with_more(&ports, ports.len(), "<unset>")),
        json!(listed_with_more(&addresses, addresses.len(), "<unset>")),
        json!(age(slice, now)),
    ]
}

/// Joins the first `LISTED_MAX` items with ",", adding " + N more..." for the `count` not shown.
fn listed_with_more(listed: &[String], count: usize, empty: &str) -> String {
    let shown = &listed[..listed.len().min(LISTED_MAX)];
    match shown.join(",") {
        joined if count > LISTED_MAX => format!("{joined} + {} more...", count - LISTED_MAX),
        joined if joined.is_empty() => empty.to_owned(),
        joined => joined,
    }
}

fn config_map_cells(config_map: &Value, now: Timestamp) -> Vec<Value> {
    let keys = entry_count(&config_map["data"]) + entry_count(&config_map["binaryData"]);
    vec![json!(name(config_map)), json!(keys), json!(age(config_map, now))]
}

fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    let keys = entry_count(&secret["data"]);
    vec![json!(name(secret)), json!(text(&secret["type"])), json!(keys), json!(age(secret, now))]
}

fn service_account_cells(account: &Value, now: Timestamp) -> Vec<Value> {
    let secrets = items(&account["secrets"]).len();
    vec![json!(name(account)), json!(secrets), json!(age(account, now))]
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    // Events from the events.k8s.io recorder carry eventTime and series instead of the
    // first/last timestamps and count.
    let first_seen = match timestamp(&event["firstTimestamp"]) {
        Some(first) => since(Some(first), now),
        None => since(timestamp(&event["eventTime"]), now),
    };
    let mut last_seen = match timestamp(&event["lastTimestamp"]) {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let series = &event["series"];
    let count = if series.is_object() {
        last_seen = since(timestamp(&series["lastObservedTime"]), now);
        number(&series["count"])
    } else {
        // Singleton events of the new API leave the count unset.
        match number(&event["count"]) {
            0 => 1,
            count => count,
        }
    };
    let involved = &event["involvedObject"];
    let kind = text(&involved["kind"]).to_lowercase();
    let object = match text(&involved["name"]) {
        "" => kind,
        involved_name => format!("{kind}/{involved_name}"),
    };
    let component = first_non_empty(text(&event["source"]["component"]), text(&event["reportingComponent"]));
    let source = match first_non_empty(text(&event["source"]["host"]), text(&event["reportingInstance"])) {
        "" => component.to_owned(),
        instance => format!("{component}, {instance}"),
    };
    vec![
        json!(last_seen),
        json!(text(&event["type"])),
        json!(text(&event["reason"])),
        json!(object),
        json!(text(&involved["fieldPath"])),
        json!(source),
        json!(text(&event["message"]).trim()),
        json!(first_seen),
        json!(count),
        json!(name(event)),
    ]
}

fn deployment_cells(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let (spec, status) = (&deployment["spec"], &deployment["status"]);
    let (containers, images) = container_cells(&spec["template"]["spec"]);
    let selector = label_selector(&spec["selector"]).unwrap_or_else(|| "<invalid>".to_owned());
    vec![
        json!(name(deployment)),
        json!(format!("{}/{}", number(&status["readyReplicas"]), number(&spec["replicas"]))),
        json!(number(&status["updatedReplicas"])),
        json!(number(&status["availableReplicas"])),
        json!(age(deployment, now)),
        json!(containers),
        json!(images),
        json!(selector),
    ]
}

fn replica_set_cells(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let (spec, status) = (&replica_set["spec"], &replica_set["status"]);
    let (containers, images) = container_cells(&spec["template"]["spec"]);
    // Unlike the Deployment printer, upstream formats this one with `metav1.FormatLabelSelector`.
    let selector = match label_selector(&spec["selector"]) {
        None => "<error>".to_owned(),
        Some(selector) if selector.is_empty() => "<none>".to_owned(),
        Some(selector) => selector,
    };
    vec![
        json!(name(replica_set)),
        json!(number(&spec["replicas"])),
        json!(number(&status["replicas"])),
        json!(number(&status["readyReplicas"])),
        json!(age(replica_set, now)),
        json!(containers),
        json!(images),
        json!(selector),
    ]
}

/// The comma-joined names and images of a pod template's containers.
fn container_cells(pod_spec: &Value) -> (String, String) {
    let containers = items(&pod_spec["containers"]);
    let join = |field: &str| {
        containers.iter().map(|container| text(&container[field])).collect::<Vec<_>>().join(",")
    };
    (join("name"), join("image"))
}

fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![json!(name(lease)), json!(text(&lease["spec"]["holderIdentity"])), json!(age(lease, now))]
}

fn hpa_cells(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let (spec, status) = (&hpa["spec"], &hpa["status"]);
    let target = &spec["scaleTargetRef"];
    let min_pods = match spec["minReplicas"].as_i64() {
        Some(min) => min.to_string(),
        None => "<unset>".to_owned(),
    };
    vec![
        json!(name(hpa)),
        json!(format!("{}/{}", text(&target["kind"]), text(&target["name"]))),
        json!(hpa_targets(items(&spec["metrics"]), items(&status["currentMetrics"]))),
        json!(min_pods),
        json!(number(&spec["maxReplicas"])),
        json!(number(&status["currentReplicas"])),
        json!(age(hpa, now)),
    ]
}

/// At most this many HPA metrics are listed before "+ N more...".
const HPA_METRICS_LISTED_MAX: usize = 2;

/// "current/target" per metric. Upstream pairs each spec with the status at the same index,
/// whatever its metric, and so does this.
fn hpa_targets(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    let listed: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(index, spec)| hpa_target(spec, statuses.get(index).unwrap_or(&Value::Null)))
        .collect();
    let joined = listed[..listed.len().min(HPA_METRICS_LISTED_MAX)].join(", ");
    match listed.len().checked_sub(HPA_METRICS_LISTED_MAX) {
        Some(more) if more > 0 => format!("{joined} + {more} more..."),
        _ => joined,
    }
}

fn hpa_target(spec: &Value, status: &Value) -> String {
    let source = match text(&spec["type"]) {
        "External" => "external",
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        _ => return "<unknown type>".to_owned(),
    };
    let (target, current) = (&spec[source]["target"], &status[source]);
    let reported = |field: &str| {
        if current.is_object() { quantity(&current["current"][field]) } else { "<unknown>".to_owned() }
    };
    let by_average = !target["averageValue"].is_null();
    match source {
        "pods" => format!("{}/{}", reported("averageValue"), quantity(&target["averageValue"])),
        "external" | "object" if by_average => {
            let current = match &current["current"]["averageValue"] {
                Value::Null => "<unknown>".to_owned(),
                average => quantity(average),
            };
            format!("{current}/{} (avg)", quantity(&target["averageValue"]))
        }
        "external" | "object" => format!("{}/{}", reported("value"), quantity(&target["value"])),
        _ if by_average => {
            let resource = text(&spec[source]["name"]);
            format!("{resource}: {}/{}", reported("averageValue"), quantity(&target["averageValue"]))
        }
        _ => {
            let percent = |value: &Value| value.as_i64().map(|percent| format!("{percent}%"));
            let current =
                percent(&current["current"]["averageUtilization"]).unwrap_or_else(|| "<unknown>".to_owned());
            let target = percent(&target["averageUtilization"]).unwrap_or_else(|| "<auto>".to_owned());
            format!("{}: {current}/{target}", text(&spec[source]["name"]))
        }
    }
}

/// A resource.Quantity as stored. Upstream prints the canonical form, which is what an
/// apiserver stores; a nil quantity prints as Go's `<nil>`.
fn quantity(value: &Value) -> String {
    match value {
        Value::String(quantity) => quantity.clone(),
        Value::Number(number) => number.to_string(),
        _ => "<nil>".to_owned(),
    }
}

// Selectors and labels.

/// `metav1.LabelSelectorAsSelector(selector).String()`: requirements sorted by key, joined by
/// ",". `None` where upstream's conversion fails (an unknown operator, or values that do not
/// fit it). Label key and value syntax is not re-checked: validation did that on write.
fn label_selector(selector: &Value) -> Option<String> {
    let mut requirements: Vec<(&str, String)> = Vec::new();
    for (key, value) in selector["matchLabels"].as_object().into_iter().flatten() {
        requirements.push((key, format!("{key}={}", text(value))));
    }
    for expression in items(&selector["matchExpressions"]) {
        let key = text(&expression["key"]);
        let mut values: Vec<&str> = items(&expression["values"]).iter().map(text).collect();
        values.sort_unstable();
        let requirement = match (text(&expression["operator"]), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_owned(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key, requirement));
    }
    requirements.sort_by_key(|(key, _)| *key);
    Some(requirements.into_iter().map(|(_, requirement)| requirement).collect::<Vec<_>>().join(","))
}

/// `labels.FormatLabels`: "key=value" sorted by key, or "<none>".
fn format_labels(labels: &Value) -> String {
    let mut pairs: Vec<(&String, &str)> =
        labels.as_object().into_iter().flatten().map(|(key, value)| (key, text(value))).collect();
    pairs.sort_unstable();
    let formatted: Vec<String> = pairs.into_iter().map(|(key, value)| format!("{key}={value}")).collect();
    or_none(&formatted.join(",")).to_owned()
}

// Readers that never fail: a missing or mistyped field reads as Go's zero value.

/// Go's zero `time.Time`, which upstream treats as "no time".
const GO_ZERO_TIME: Timestamp = Timestamp::constant(-62_135_596_800, 0);

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn number(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn entry_count(value: &Value) -> usize {
    value.as_object().map_or(0, serde_json::Map::len)
}

fn timestamp(value: &Value) -> Option<Timestamp> {
    value.as_str()?.parse().ok().filter(|time| *time != GO_ZERO_TIME)
}

fn name(object: &Value) -> &str {
    text(&object["metadata"]["name"])
}

fn or_none(value: &str) -> &str {
    if value.is_empty() { "<none>" } else { value }
}

fn first_non_empty<'a>(first: &'a str, second: &'a str) -> &'a str {
    if first.is_empty() { second } else { first }
}

/// The status ("True", "False", "Unknown") of the first condition of this type, or "".
fn condition_status<'a>(status: &'a Value, condition_type: &str) -> &'a str {
    let conditions = items(&status["conditions"]);
    conditions.iter().find(|condition| condition["type"] == condition_type).map_or("", |c| text(&c["status"]))
}

/// Keeps the later of `latest` and `candidate`.
fn latest(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if candidate > *latest {
        *latest = candidate;
    }
}

/// upstream's `translateTimestampSince`.
fn since(time: Option<Timestamp>, now: Timestamp) -> String {
    match time {
        Some(time) => human_duration(now.duration_since(time)),
        None => "<unknown>".to_owned(),
    }
}

fn age(object: &Value, now: Timestamp) -> String {
    since(timestamp(&object["metadata"]["creationTimestamp"]), now)
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};
    use serde_json::{Value, json};

    use super::{PRINTERS, cells, columns, human_duration};

    /// The fixed "now" of every test; creation times below are one hour before it.
    const NOW: &str = "2025-06-01T12:00:00Z";
    const HOUR_AGO: &str = "2025-06-01T11:00:00Z";

    fn check(kind: &str, object: Value, expected: Value) {
        let now: Timestamp = NOW.parse().unwrap();
        let row = cells(kind, &object, now);
        assert_eq!(Value::Array(row), expected, "{kind} {object}");
    }

    /// A pod's JSON around the given spec and status, created an hour ago.
    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": HOUR_AGO}, "spec": spec, "status": status})
    }

    /// The row of a pod made by `pod` that has no IP, node or readiness gates.
    fn pod_row(ready: &str, status: &str, restarts: &str) -> Value {
        json!(["web", ready, status, restarts, "60m", "<none>", "<none>", "<none>", "<none>"])
    }

    fn running(name: &str, restarts: i64) -> Value {
        json!({"name": name, "ready": true, "restartCount": restarts, "state": {"running": {}}})
    }

    #[test]
    fn human_duration_matches_upstream_tests() {
        // The cases of apimachinery's TestHumanDuration and TestHumanDurationBoundaries.
        let (s, ms, min, h) = (
            SignedDuration::from_secs,
            SignedDuration::from_millis,
            SignedDuration::from_mins,
            SignedDuration::from_hours,
        );
        let day = |days: i64| h(24 * days);
        let cases = [
            (s(1), "1s"),
            (s(70), "70s"),
            (s(190), "3m10s"),
            (min(70), "70m"),
            (h(47), "47h"),
            (h(49), "2d1h"),
            (h(8 * 24 + 2), "8d"),
            (day(367), "367d"),
            (h(365 * 2 * 24 + 25), "2y1d"),
            (h(365 * 8 * 24 + 2), "8y"),
            (s(-2), "<invalid>"),
            (s(-2) + SignedDuration::from_nanos(1), "0s"),
            (s(0), "0s"),
            (ms(999), "0s"),
            (min(2) - ms(1), "119s"),
            (min(2), "2m"),
            (min(2) + s(1), "2m1s"),
            (min(10) - ms(1), "9m59s"),
            (min(10), "10m"),
            (min(10) + s(1), "10m"),
            (h(3) - ms(1), "179m"),
            (h(3), "3h"),
            (h(3) + min(1), "3h1m"),
            (h(8) - ms(1), "7h59m"),
            (h(8), "8h"),
            (h(8) + min(59), "8h"),
            (h(25), "25h"),
            (day(2) - ms(1), "47h"),
            (day(2), "2d"),
            (day(2) + h(1), "2d1h"),
            (day(8) - ms(1), "7d23h"),
            (day(8), "8d"),
            (day(8) + h(23), "8d"),
            (day(2 * 365) - ms(1), "729d"),
            (day(2 * 365), "2y"),
            (day(2 * 365) + h(23) + min(59), "2y"),
            (day(2 * 365 + 1) - ms(1), "2y"),
            (day(2 * 365 + 1), "2y1d"),
            (day(3 * 365), "3y"),
            (day(8 * 365) - ms(1), "7y364d"),
            (day(8 * 365), "8y"),
            (day(8 * 365 + 364), "8y"),
            (day(9 * 365), "9y"),
        ];
        for (elapsed, expected) in cases {
            assert_eq!(human_duration(elapsed), expected, "{elapsed:?}");
        }
    }

    #[test]
    fn every_printer_fills_every_column_even_for_odd_objects() {
        // Cells must line up with columns, and odd JSON (missing or mistyped fields) must
        // neither panic nor shorten the row.
        let odd_objects = [
            json!({}),
            json!(null),
            json!({"metadata": 5, "spec": [], "status": "x"}),
            json!({"spec": {"containers": "x", "ports": [1, null]}, "status": {"conditions": [null, 3]}}),
        ];
        let now: Timestamp = NOW.parse().unwrap();
        for kind in PRINTERS.iter().map(|printer| printer.kind).chain(["Widget"]) {
            for object in &odd_objects {
                assert_eq!(cells(kind, object, now).len(), columns(kind).len(), "{kind} {object}");
            }
        }
    }

    #[test]
    fn columns_follow_upstream_including_wide_ones() {
        // Pod's columns as kube-apiserver 1.33 declares them; the last four only show with -o wide.
        let pod: Vec<(&str, i32)> =
            columns("Pod").iter().map(|column| (column.name, column.priority)).collect();
        assert_eq!(
            pod,
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
        );
        assert_eq!(columns("Pod")[0].format, "name");
        let unknown: Vec<(&str, &str)> =
            columns("Widget").iter().map(|column| (column.name, column.type_)).collect();
        assert_eq!(unknown, [("Name", "string"), ("Created At", "date")]);
        let event: Vec<&str> = columns("Event").iter().filter(|c| c.priority == 0).map(|c| c.name).collect();
        assert_eq!(event, ["Last Seen", "Type", "Reason", "Object", "Message"]);
    }

    #[test]
    fn default_table_shows_name_and_creation_time() {
        // Kinds without a printer get apiserver's default table: the creation time in RFC 3339,
        // Go's zero time when unset.
        check(
            "Widget",
            json!({"metadata": {"name": "w", "creationTimestamp": HOUR_AGO}}),
            json!(["w", HOUR_AGO]),
        );
        check("Widget", json!({"metadata": {"name": "w"}}), json!(["w", "0001-01-01T00:00:00Z"]));
    }

    #[test]
    fn pod_ready_status_restarts_and_wide_cells() {
        // A running pod, then the same pod with a restart five minutes ago, podIPs only, a
        // nominated node and one of two readiness gates passed.
        let spec = json!({"nodeName": "node-a", "containers": [{"name": "app"}]});
        let status =
            json!({"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [running("app", 0)]});
        check(
            "Pod",
            pod(spec, status),
            json!(["web", "1/1", "Running", "0", "60m", "10.0.0.5", "node-a", "<none>", "<none>"]),
        );

        let spec = json!({
            "containers": [{"name": "app"}],
            "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}],
        });
        let mut app = running("app", 2);
        app["lastState"] = json!({"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:55:00Z"}});
        let status = json!({
            "phase": "Running", "podIPs": [{"ip": "fd00::5"}], "nominatedNodeName": "node-b",
            "conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}],
            "containerStatuses": [app],
        });
        check(
            "Pod",
            pod(spec, status),
            json!(["web", "1/1", "Running", "2 (5m ago)", "60m", "fd00::5", "<none>", "node-b", "1/2"]),
        );
    }

    #[test]
    fn pod_status_reasons() {
        // Each case: the container states that lead printPod to a Status, with Ready and Restarts.
        let one = json!({"containers": [{"name": "app"}]});
        let app = |state: Value| json!({"name": "app", "ready": false, "restartCount": 0, "state": state});
        let waiting = |reason: &str| app(json!({"waiting": {"reason": reason}}));
        let terminated = |state: Value| app(json!({"terminated": state}));
        let crash_looping = json!({
            "name": "app", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:58:30Z"}},
        });
        let cases = [
            (
                json!({"phase": "Pending", "containerStatuses": [waiting("ContainerCreating")]}),
                "0/1",
                "ContainerCreating",
                "0",
            ),
            (
                json!({"phase": "Running", "containerStatuses": [crash_looping]}),
                "0/1",
                "CrashLoopBackOff",
                "4 (90s ago)",
            ),
            (
                json!({
                    "phase": "Succeeded",
                    "containerStatuses": [terminated(json!({"exitCode": 0, "reason": "Completed"}))],
                }),
                "0/1",
                "Completed",
                "0",
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [terminated(json!({"exitCode": 137}))]}),
                "0/1",
                "ExitCode:137",
                "0",
            ),
            (
                json!({
                    "phase": "Failed",
                    "containerStatuses": [terminated(json!({"exitCode": 0, "signal": 9}))],
                }),
                "0/1",
                "Signal:9",
                "0",
            ),
            (
                json!({
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
                }),
                "0/1",
                "SchedulingGated",
                "0",
            ),
            (json!({"phase": "Failed", "reason": "Evicted"}), "0/1", "Evicted", "0"),
        ];
        for (status, ready, reason, restarts) in cases {
            check("Pod", pod(one.clone(), status), pod_row(ready, reason, restarts));
        }
    }

    #[test]
    fn pod_completed_container_beside_a_running_one() {
        // The first container completed and the second runs: "Running" when the pod is Ready,
        // "NotReady" otherwise, never "Completed".
        let spec = json!({"containers": [{"name": "job"}, {"name": "app"}]});
        let done = json!({
            "name": "job", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
        });
        for (pod_ready, reason) in [("True", "Running"), ("False", "NotReady")] {
            let status = json!({
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": pod_ready}],
                "containerStatuses": [done, running("app", 0)],
            });
            check("Pod", pod(spec.clone(), status), pod_row("1/2", reason, "0"));
        }
    }

    #[test]
    fn pod_init_containers() {
        // Init progress as "Init:i/n", a failed or crash-looping init container, and a started
        // sidecar (restartPolicy Always) counted as a ready container once the pod runs.
        let spec = json!({"initContainers": [{"name": "setup"}], "containers": [{"name": "app"}]});
        let setup =
            |state: Value, restarts: i64| json!({"name": "setup", "restartCount": restarts, "state": state});
        let pending_app = json!({
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "PodInitializing"}},
        });
        let cases = [
            (setup(json!({"running": {}}), 0), "Init:0/1", "0"),
            (setup(json!({"terminated": {"exitCode": 1, "reason": "Error"}}), 2), "Init:Error", "2"),
            (setup(json!({"waiting": {"reason": "CrashLoopBackOff"}}), 3), "Init:CrashLoopBackOff", "3"),
            (setup(json!({"terminated": {"exitCode": 2}}), 0), "Init:ExitCode:2", "0"),
        ];
        for (init_status, reason, restarts) in cases {
            let status = json!({
                "phase": "Pending",
                "initContainerStatuses": [init_status],
                "containerStatuses": [pending_app],
            });
            check("Pod", pod(spec.clone(), status), pod_row("0/1", reason, restarts));
        }

        let spec = json!({
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}],
        });
        let mut proxy = running("proxy", 1);
        proxy["started"] = json!(true);
        let status = json!({
            "phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [proxy], "containerStatuses": [running("app", 2)],
        });
        check("Pod", pod(spec, status), pod_row("2/2", "Running", "3"));
    }

    #[test]
    fn pod_being_deleted() {
        // A deletionTimestamp makes a live pod "Terminating", a pod on a lost node "Unknown",
        // and leaves a finished pod's status alone.
        let one = json!({"containers": [{"name": "app"}]});
        let cases = [
            (json!({"phase": "Running", "containerStatuses": [running("app", 0)]}), "1/1", "Terminating"),
            (json!({"phase": "Running", "reason": "NodeLost"}), "0/1", "Unknown"),
            (json!({"phase": "Succeeded"}), "0/1", "Succeeded"),
        ];
        for (status, ready, reason) in cases {
            let mut object = pod(one.clone(), status);
            object["metadata"]["deletionTimestamp"] = json!(NOW);
            check("Pod", object, pod_row(ready, reason, "0"));
        }
    }

    #[test]
    fn node_status_roles_and_wide_cells() {
        // Ready and cordoned with roles from both label styles; then a node with no Ready
        // condition, no roles and no reported system info.
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2025-05-30T10:00:00Z", "labels": {
                "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "worker", "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
                "addresses": [
                    {"type": "Hostname", "address": "n1"},
                    {"type": "InternalIP", "address": "10.0.0.1"},
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1.0",
                    "containerRuntimeVersion": "shoal://0.1",
                },
            },
        });
        check(
            "Node",
            node,
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,worker",
                "2d2h",
                "v1.33.0",
                "10.0.0.1",
                "<none>",
                "Debian",
                "6.1.0",
                "shoal://0.1"
            ]),
        );
        check(
            "Node",
            json!({"metadata": {"name": "n2"}}),
            json!([
                "n2",
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]),
        );
        let unknown = json!([{"type": "Ready", "status": "Unknown"}]);
        let not_ready = json!({"metadata": {"name": "n3"}, "status": {"conditions": unknown}});
        assert_eq!(cells("Node", &not_ready, NOW.parse().unwrap())[1], "NotReady");
    }

    #[test]
    fn service_types_ports_and_external_ips() {
        // One service per type: ports with and without nodePort, pending and assigned load
        // balancers, a headless service and an ExternalName.
        let metadata = json!({"name": "svc", "creationTimestamp": HOUR_AGO});
        let service =
            |spec: Value, status: Value| json!({"metadata": metadata, "spec": spec, "status": status});
        let ports =
            json!([{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]);
        let cases = [
            (
                json!({
                    "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                    "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web", "a.b": "c"},
                }),
                json!({}),
                json!(["svc", "ClusterIP", "10.96.0.10", "<none>", "80/TCP", "60m", "a.b=c,app=web"]),
            ),
            (
                json!({
                    "type": "NodePort", "clusterIPs": ["10.96.0.11"],
                    "externalIPs": ["1.2.3.4"], "ports": ports,
                }),
                json!({}),
                json!(["svc", "NodePort", "10.96.0.11", "1.2.3.4", "80:30080/TCP,53/UDP", "60m", "<none>"]),
            ),
            (
                json!({
                    "type": "LoadBalancer", "clusterIP": "10.96.0.12",
                    "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31443}],
                }),
                json!({}),
                json!(["svc", "LoadBalancer", "10.96.0.12", "<pending>", "443:31443/TCP", "60m", "<none>"]),
            ),
            (
                json!({"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]}),
                json!({"loadBalancer": {"ingress": [
                    {"hostname": "lb.example.com"}, {"ip": "5.6.7.8"}, {"ip": "5.6.7.8"},
                ]}}),
                json!([
                    "svc",
                    "LoadBalancer",
                    "<none>",
                    "5.6.7.8,lb.example.com,9.9.9.9",
                    "<none>",
                    "60m",
                    "<none>"
                ]),
            ),
            (
                json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
                json!({}),
                json!(["svc", "ClusterIP", "None", "<none>", "<none>", "60m", "<none>"]),
            ),
            (
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
                json!({}),
                json!(["svc", "ExternalName", "<none>", "db.example.com", "<none>", "60m", "<none>"]),
            ),
        ];
        for (spec, status, expected) in cases {
            check("Service", service(spec, status), expected);
        }
    }

    #[test]
    fn endpoints_list_three_addresses_then_count_the_rest() {
        // Addresses times ports, IPv6 in brackets, a headless subset without ports, and no subsets.
        let endpoints = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "10.0.0.3"}]},
        ]});
        check(
            "Endpoints",
            endpoints,
            json!(["web", "10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 2 more...", "<unknown>"]),
        );
        let headless = json!({"metadata": {"name": "db"}, "subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]});
        check("Endpoints", headless, json!(["db", "10.0.0.9", "<unknown>"]));
        check("Endpoints", json!({"metadata": {"name": "none"}}), json!(["none", "<none>", "<unknown>"]));
    }

    #[test]
    fn endpoint_slice_ports_and_addresses() {
        // Ports by number, by name when unnumbered, "*" when neither; addresses across endpoints.
        let slice = json!({
            "metadata": {"name": "web-abc", "creationTimestamp": HOUR_AGO}, "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "dns"}, {}, {"port": 9090}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}],
        });
        check(
            "EndpointSlice",
            slice,
            json!(["web-abc", "IPv4", "80,dns,* + 1 more...", "10.0.0.1,10.0.0.2,10.0.0.3", "60m"]),
        );
        check(
            "EndpointSlice",
            json!({"metadata": {"name": "empty"}, "addressType": "IPv6"}),
            json!(["empty", "IPv6", "<unset>", "<unset>", "<unknown>"]),
        );
    }

    #[test]
    fn config_objects_count_their_entries() {
        // ConfigMap counts data and binaryData keys, Secret its data keys, ServiceAccount its secrets.
        let meta = json!({"name": "c", "creationTimestamp": HOUR_AGO});
        check(
            "ConfigMap",
            json!({"metadata": meta, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
            json!(["c", 3, "60m"]),
        );
        check(
            "Secret",
            json!({"metadata": meta, "type": "Opaque", "data": {"password": "cw=="}}),
            json!(["c", "Opaque", 1, "60m"]),
        );
        check(
            "ServiceAccount",
            json!({"metadata": meta, "secrets": [{"name": "token"}]}),
            json!(["c", 1, "60m"]),
        );
        check(
            "Namespace",
            json!({"metadata": meta, "status": {"phase": "Terminating"}}),
            json!(["c", "Terminating", "60m"]),
        );
        check(
            "Lease",
            json!({"metadata": meta, "spec": {"holderIdentity": "node-a"}}),
            json!(["c", "node-a", "60m"]),
        );
        check("Lease", json!({"metadata": meta, "spec": {}}), json!(["c", "", "60m"]));
    }

    #[test]
    fn events_old_and_new_style() {
        // A kubelet event with first/last timestamps and a count; an events.k8s.io-style one
        // with eventTime, a series and reporting fields; a singleton without a count.
        let event = json!({
            "metadata": {"name": "web-1.17f"}, "type": "Warning", "reason": "BackOff",
            "message": " Back-off restarting \n",
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2025-06-01T11:00:00Z", "lastTimestamp": "2025-06-01T11:58:00Z", "count": 12,
        });
        check(
            "Event",
            event,
            json!([
                "2m",
                "Warning",
                "BackOff",
                "pod/web-1",
                "spec.containers{app}",
                "kubelet, node-a",
                "Back-off restarting",
                "60m",
                12,
                "web-1.17f"
            ]),
        );
        let series = json!({
            "metadata": {"name": "e2"}, "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Node"},
            "reportingComponent": "scheduler", "eventTime": "2025-06-01T11:30:00.123456Z",
            "series": {"count": 3, "lastObservedTime": "2025-06-01T11:59:50.000001Z"},
        });
        check(
            "Event",
            series,
            json!(["9s", "Normal", "Scheduled", "node", "", "scheduler", "", "29m", 3, "e2"]),
        );
        let singleton = json!({
            "metadata": {"name": "e3"}, "reportingInstance": "i-1", "firstTimestamp": "2025-06-01T11:59:00Z",
        });
        check("Event", singleton, json!(["60s", "", "", "", "", ", i-1", "", "60s", 1, "e3"]));
    }

    #[test]
    fn deployments_and_replica_sets() {
        // Ready as ready/desired, containers and images joined, and selectors as upstream
        // renders them: sorted by key, "<invalid>" / "<error>" for a bad operator, and an empty
        // selector shown as "" by Deployment but "<none>" by ReplicaSet.
        let template = json!({"spec": {"containers": [
            {"name": "app", "image": "nginx:1"}, {"name": "log", "image": "busybox"},
        ]}});
        let selector = json!({"matchLabels": {"tier": "web"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "zone", "operator": "DoesNotExist"},
        ]});
        let deployment = json!({"metadata": {"name": "web", "creationTimestamp": HOUR_AGO},
            "spec": {"replicas": 3, "selector": selector, "template": template},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        check(
            "Deployment",
            deployment,
            json!([
                "web",
                "2/3",
                3,
                2,
                "60m",
                "app,log",
                "nginx:1,busybox",
                "env in (dev,prod),tier=web,!zone"
            ]),
        );
        let bad = json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchExpressions": [
            {"key": "a", "operator": "Gt", "values": ["1"]},
        ]}}});
        check("Deployment", bad.clone(), json!(["bad", "0/0", 0, 0, "<unknown>", "", "", "<invalid>"]));
        check("ReplicaSet", bad, json!(["bad", 0, 0, 0, "<unknown>", "", "", "<error>"]));
        let replica_set = json!({"metadata": {"name": "web-5d4", "creationTimestamp": HOUR_AGO},
            "spec": {"replicas": 3, "selector": {}, "template": template},
            "status": {"replicas": 3, "readyReplicas": 1}});
        check(
            "ReplicaSet",
            replica_set,
            json!(["web-5d4", 3, 3, 1, "60m", "app,log", "nginx:1,busybox", "<none>"]),
        );
    }

    #[test]
    fn hpa_targets_per_metric_type() {
        // Utilization and average-value resource metrics, pods and object metrics, statuses
        // paired by index, more than two metrics summarized, and no metrics at all.
        let hpa = |metrics: Value, current: Value| {
            json!({"metadata": {"name": "web", "creationTimestamp": HOUR_AGO},
                "spec": {
                    "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                    "minReplicas": 2, "maxReplicas": 10, "metrics": metrics,
                },
                "status": {"currentReplicas": 3, "currentMetrics": current}})
        };
        let resource = |resource: Value| json!({"type": "Resource", "resource": resource});
        let cpu =
            resource(json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}));
        let memory =
            resource(json!({"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}));
        let pods = json!({"type": "Pods", "pods": {
            "metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"},
        }});
        let object = json!({"type": "Object", "object": {"target": {"type": "Value", "value": "10"}}});
        let cpu_now =
            resource(json!({"name": "cpu", "current": {"averageUtilization": 30, "averageValue": "150m"}}));
        let cases = [
            (json!([cpu]), json!([cpu_now]), "cpu: 30%/80%"),
            (json!([cpu]), json!([]), "cpu: <unknown>/80%"),
            (
                json!([memory, pods]),
                json!([resource(json!({"name": "memory", "current": {"averageValue": "200Mi"}}))]),
                "memory: 200Mi/500Mi, <unknown>/1k",
            ),
            (
                json!([object, cpu, memory]),
                json!([{"type": "Object", "object": {"current": {"value": "4"}}}]),
                "4/10, cpu: <unknown>/80% + 1 more...",
            ),
            (json!([]), json!([]), "<none>"),
        ];
        for (metrics, current, targets) in cases {
            check(
                "HorizontalPodAutoscaler",
                hpa(metrics, current),
                json!(["web", "Deployment/web", targets, "2", 10, 3, "60m"]),
            );
        }
        let unset = json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 5}});
        check("HorizontalPodAutoscaler", unset, json!(["h", "/", "<none>", "<unset>", 5, 0, "<unknown>"]));
    }

    #[test]
    fn ages_from_a_clock_ahead_of_now() {
        // A creation time a second ahead reads "0s"; two seconds ahead, "<invalid>", as upstream
        // tolerates only small clock skew.
        let created = |at: &str| json!({"metadata": {"name": "ns", "creationTimestamp": at}});
        check("Namespace", created("2025-06-01T12:00:01Z"), json!(["ns", "", "0s"]));
        check("Namespace", created("2025-06-01T12:00:02Z"), json!(["ns", "", "<invalid>"]));
    }
}
