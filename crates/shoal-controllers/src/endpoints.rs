//! The endpoints controllers: a Service's Endpoints and EndpointSlices (discovery.k8s.io/v1)
//! from the pods its selector picks, as Kubernetes' endpoints and endpointslice controllers
//! write them.
//!
//! For each Service with a selector (and not of type ExternalName) [`decide`] computes what
//! both objects should hold and compares it with what exists; only a difference is written:
//! - Endpoints (named like the Service, labelled like it, plus
//!   `service.kubernetes.io/headless` for a headless one): ready pods with an IP go to
//!   `addresses`, the others to `notReadyAddresses` (all to `addresses` with
//!   `publishNotReadyAddresses`); terminating and finished pods are left out. Each address
//!   carries the pod as `targetRef` and its `nodeName`. Ports come from the Service's
//!   `targetPort`: a number as is, a name looked up in each pod's container ports, so pods
//!   that name different numbers land in different subsets. At most 1,000 addresses, as
//!   upstream truncates them (`endpoints.kubernetes.io/over-capacity: truncated`).
//! - EndpointSlices (generateName `<service>-`, controlled by the Service through an
//!   ownerReference, labelled `kubernetes.io/service-name` and
//!   `endpointslice.kubernetes.io/managed-by`): one group of slices per distinct port set, at
//!   most [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, each endpoint with the conditions
//!   `ready`, `serving` and `terminating` (terminating pods stay, not ready). Existing slices
//!   are kept and filled before new ones are made, a slice left empty is deleted (or reused
//!   for a slice that would be created), and a Service with no endpoints keeps one empty
//!   placeholder slice, as upstream's reconciler does.
//!
//! Services without a selector are left alone: their Endpoints are someone else's. Endpoints
//! this controller wrote whose Service is gone are deleted; slices go with their Service
//! through the garbage collector.
//!
//! [`TriggerTimes`] computes the `endpoints.kubernetes.io/last-change-trigger-time` annotation
//! as upstream's tracker does: the earliest change (a pod's Ready transition, the Service's
//! creation) not yet reflected in the objects.

mod runtime;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub use runtime::run;

/// The `managed-by` label value of the slices this controller owns, upstream's name for it.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming a slice's manager.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The label of Endpoints and slices of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The annotation with the time of the change the objects reflect.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// The annotation of an Endpoints object that had more addresses than it may hold.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints per EndpointSlice, upstream's default (`--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Addresses an Endpoints object holds before it is truncated, upstream's limit.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1_000;
/// The field manager this controller's writes are recorded under; Endpoints it created are
/// recognized by it when their Service is gone.
pub const FIELD_MANAGER: &str = "shoal-endpoints-controller";

/// What the controller knows about one Service when it decides on it.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub service: &'a Service,
    /// The pods of the Service's namespace; the decision applies the selector.
    pub pods: Vec<&'a Pod>,
    /// The zone (`topology.kubernetes.io/zone`, if any) of every known node.
    pub nodes: &'a BTreeMap<String, Option<String>>,
    /// The Service's Endpoints, if it exists.
    pub endpoints: Option<&'a Endpoints>,
    /// The slices labelled as this controller's for this Service, not being deleted.
    pub slices: Vec<&'a discovery::EndpointSlice>,
    /// The annotation value for objects written now (see [`TriggerTimes`]).
    pub trigger_time: Option<Timestamp>,
}

/// Where an object to delete is, and the version it was decided on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

/// A write the controller decided on. Updates carry the resourceVersion read; deletes carry
/// uid and resourceVersion preconditions.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    CreateEndpoints(Endpoints),
    UpdateEndpoints(Endpoints),
    DeleteEndpoints(Target),
    CreateSlice(discovery::EndpointSlice),
    UpdateSlice(discovery::EndpointSlice),
    DeleteSlice(Target),
}

/// The writes that make `observed.service`'s Endpoints and EndpointSlices match its pods;
/// none for a Service this controller leaves alone.
pub fn decide(observed: &Observed<'_>) -> Vec<Action> {
    let service = observed.service;
    if !is_managed(service) {
        return Vec::new();
    }
    let selected: Vec<&Pod> = observed.pods.iter().copied().filter(|pod| selects(service, pod)).collect();
    let mut actions: Vec<Action> = decide_endpoints(observed, &selected).into_iter().collect();
    actions.extend(decide_slices(observed, &selected));
    actions
}

/// The deletes of Endpoints this controller wrote whose Service no longer exists.
pub fn orphaned_endpoints(services: &[&Service], endpoints: &[&Endpoints]) -> Vec<Action> {
    let existing: std::collections::HashSet<(&str, &str)> = services
        .iter()
        .map(|service| (namespace_of(&service.metadata), name_of(&service.metadata)))
        .collect();
    endpoints
        .iter()
        .filter(|endpoints| {
            let key = (namespace_of(&endpoints.metadata), name_of(&endpoints.metadata));
            !existing.contains(&key) && written_by_this_controller(&endpoints.metadata)
        })
        .map(|endpoints| Action::DeleteEndpoints(target_of(&endpoints.metadata)))
        .collect()
}

/// Whether this controller maintains `service`'s endpoints: it has a selector and is not an
/// ExternalName. An empty selector counts as none, as it does upstream once stored.
pub fn is_managed(service: &Service) -> bool {
    let Some(spec) = service.spec.as_ref() else { return false };
    spec.type_.as_deref() != Some("ExternalName") && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

fn selects(service: &Service, pod: &Pod) -> bool {
    let selector = service.spec.as_ref().and_then(|spec| spec.selector.as_ref());
    let labels = pod.metadata.labels.as_ref();
    namespace_of(&pod.metadata) == namespace_of(&service.metadata)
        && selector.is_some_and(|selector| {
            selector.iter().all(|(key, value)| labels.and_then(|labels| labels.get(key)) == Some(value))
        })
}

fn written_by_this_controller(metadata: &ObjectMeta) -> bool {
    metadata.managed_fields.iter().flatten().any(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER))
}

// ---------------------------------------------------------------------------------------------
// Endpoints

fn decide_endpoints(observed: &Observed<'_>, pods: &[&Pod]) -> Option<Action> {
    let service = observed.service;
    let mut subsets = desired_subsets(service, pods);
    let truncated = truncate(&mut subsets);
    let labels = desired_labels(service);
    if let Some(current) = observed.endpoints {
        let current_subsets = current.subsets.clone().unwrap_or_default();
        let over_capacity = current
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|annotations| annotations.contains_key(OVER_CAPACITY_ANNOTATION));
        let current_labels = current.metadata.labels.clone().unwrap_or_default();
        if current_subsets == subsets && current_labels == labels && over_capacity == truncated {
            return None;
        }
    }
    let mut metadata = match observed.endpoints {
        Some(current) => current.metadata.clone(),
        None => ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
    };
    metadata.managed_fields = None;
    metadata.labels = Some(labels);
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    set_trigger_time(annotations, observed.trigger_time);
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.to_owned(), "truncated".to_owned());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    if annotations.is_empty() {
        metadata.annotations = None;
    }
    let endpoints = Endpoints { metadata, subsets: (!subsets.is_empty()).then_some(subsets) };
    Some(match observed.endpoints {
        Some(_) => Action::UpdateEndpoints(endpoints),
        None => Action::CreateEndpoints(endpoints),
    })
}

/// The Service's labels, with the headless label added for a Service without a cluster IP
/// (and removed otherwise).
fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

fn is_headless(service: &Service) -> bool {
    let cluster_ip = service.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref()).unwrap_or("");
    cluster_ip.is_empty() || cluster_ip == "None"
}

fn set_trigger_time(annotations: &mut BTreeMap<String, String>, trigger_time: Option<Timestamp>) {
    match trigger_time {
        // RFC 3339 in UTC with as many fractional digits as needed, as Go's RFC3339Nano.
        Some(time) => annotations.insert(TRIGGER_TIME_ANNOTATION.to_owned(), time.to_string()),
        None => annotations.remove(TRIGGER_TIME_ANNOTATION),
    };
}

/// Per port (None for a headless Service without ports), each address and whether it is
/// ready; an address not ready for a port in one subset stays not ready ("not ready trumps
/// ready", as upstream's repacking has it).
type AddressesByPort = Vec<(Option<EndpointPort>, Addresses)>;
/// Addresses by (IP, pod uid), each with whether it is ready.
type Addresses = BTreeMap<(String, String), (EndpointAddress, bool)>;
/// How ports and subsets are ordered: by name, number and protocol.
type PortOrder<'a> = (Option<&'a str>, i32, Option<&'a str>);

/// The Endpoints subsets of `service` over the pods it selects, repacked as upstream's
/// `RepackSubsets` does: ports offered by the same addresses share a subset.
fn desired_subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let spec = service.spec.as_ref().expect("a managed Service has a spec");
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let service_ports = spec.ports.as_deref().unwrap_or_default();
    let mut by_port: AddressesByPort = Vec::new();
    let mut record = |port: Option<EndpointPort>, address: &EndpointAddress, ready: bool| {
        let index = match by_port.iter().position(|(known, _)| *known == port) {
            Some(index) => index,
            None => {
                by_port.push((port, BTreeMap::new()));
                by_port.len() - 1
            }
        };
        let uid = address.target_ref.as_ref().and_then(|target| target.uid.clone()).unwrap_or_default();
        let entry = by_port[index].1.entry((address.ip.clone(), uid)).or_insert((address.clone(), ready));
        entry.1 &= ready;
    };
    for pod in pods {
        // Upstream passes publishNotReadyAddresses as "include terminating" here.
        if !should_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(address) = endpoint_address(service, pod) else { continue };
        let ready = publish_not_ready || is_pod_ready(pod);
        if service_ports.is_empty() {
            if is_headless(service) {
                record(None, &address, ready);
            }
            continue;
        }
        for service_port in service_ports {
            let Some(number) = find_port(pod, service_port) else { continue };
            record(Some(endpoint_port(service_port, number)), &address, ready);
        }
    }
    // Ports whose addresses (and readiness) are the same share one subset.
    let mut groups: Vec<(Vec<EndpointPort>, &Addresses)> = Vec::new();
    for (port, addresses) in &by_port {
        match groups.iter_mut().find(|(_, known)| *known == addresses) {
            Some((ports, _)) => ports.extend(port.clone()),
            None => groups.push((port.clone().into_iter().collect(), addresses)),
        }
    }
    let mut subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(mut ports, addresses)| {
            ports.sort_by(|a, b| port_order(a).cmp(&port_order(b)));
            let (ready, not_ready): (Vec<_>, Vec<_>) = addresses.values().partition(|(_, ready)| *ready);
            let list = |addresses: Vec<&(EndpointAddress, bool)>| {
                let list: Vec<EndpointAddress> =
                    addresses.into_iter().map(|(address, _)| address.clone()).collect();
                (!list.is_empty()).then_some(list)
            };
            EndpointSubset {
                addresses: list(ready),
                not_ready_addresses: list(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    subsets.sort_by(|a, b| subset_order(a).cmp(&subset_order(b)));
    subsets
}

fn port_order(port: &EndpointPort) -> PortOrder<'_> {
    (port.name.as_deref(), port.port, port.protocol.as_deref())
}

fn subset_order(subset: &EndpointSubset) -> (Vec<PortOrder<'_>>, Option<&str>) {
    let ports = subset.ports.iter().flatten().map(port_order).collect();
    let first = subset.addresses.iter().chain(subset.not_ready_addresses.iter()).flatten().next();
    (ports, first.map(|address| address.ip.as_str()))
}

/// Truncates `subsets` to [`MAX_ENDPOINTS_ADDRESSES`] addresses as upstream does: not-ready
/// addresses go first, then ready ones, each subset keeping its share (rounded up); returns
/// whether anything was cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|subset| count(&subset.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|subset| count(&subset.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS_ADDRESSES {
        return false;
    }
    let truncate_ready = ready > MAX_ENDPOINTS_ADDRESSES;
    let (room, total) = if truncate_ready {
        (MAX_ENDPOINTS_ADDRESSES, ready)
    } else {
        (MAX_ENDPOINTS_ADDRESSES - ready, not_ready)
    };
    let mut left = room;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let in_subset = count(list);
        let share = (in_subset * room).div_ceil(total).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
        }
        left -= count(list);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    true
}

/// Upstream's `ShouldPodBeInEndpoints`: a pod with an IP that has not finished, and, unless
/// `include_terminating`, is not being deleted.
fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    let phase = status.and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let has_ip = status.is_some_and(|status| {
        status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || status.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// Whether the pod's Ready condition is True.
fn is_pod_ready(pod: &Pod) -> bool {
    pod_ready_condition(pod).is_some_and(|condition| condition.status == "True")
}

fn pod_ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|condition| condition.type_ == "Ready")
}

/// The IP family whose addresses the Service's endpoints have: its first `ipFamilies`,
/// else that of its cluster IP, else IPv4.
fn address_family(service: &Service) -> &'static str {
    let spec = service.spec.as_ref();
    let family = spec.and_then(|spec| spec.ip_families.as_ref()?.first().cloned());
    match family.as_deref() {
        Some("IPv6") => "IPv6",
        Some(_) => "IPv4",
        None => {
            let cluster_ip = spec.and_then(|spec| spec.cluster_ip.as_deref()).unwrap_or("");
            if cluster_ip.contains(':') { "IPv6" } else { "IPv4" }
        }
    }
}

/// The pod's IP of the Service's family.
fn pod_ip(service: &Service, pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let ipv6 = address_family(service) == "IPv6";
    let listed = status.pod_ips.iter().flatten().map(|ip| ip.ip.clone());
    let primary = status.pod_ip.clone().into_iter();
    primary.chain(listed).find(|ip| !ip.is_empty() && ip.contains(':') == ipv6)
}

fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_owned()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone().filter(|name| !name.is_empty())
}

/// The pod's hostname where the Service is its subdomain (upstream's `ShouldSetHostname`).
fn hostname(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|hostname| !hostname.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.to_owned())
}

fn endpoint_address(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    Some(EndpointAddress {
        ip: pod_ip(service, pod)?,
        hostname: hostname(service, pod),
        node_name: node_name(pod),
        target_ref: Some(pod_reference(pod)),
    })
}

fn protocol(service_port: &ServicePort) -> String {
    service_port.protocol.clone().unwrap_or_else(|| "TCP".to_owned())
}

/// The pod's port for `service_port` (upstream's `FindPort`): a numeric targetPort as is
/// (the Service's port when unset), a named one looked up among the containers' ports (and
/// restartable init containers') of the same protocol.
pub fn find_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    match &service_port.target_port {
        None => Some(service_port.port),
        Some(IntOrString::Int(number)) if *number == 0 => Some(service_port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|container| container.restart_policy.as_deref() == Some("Always"));
            let protocol = protocol(service_port);
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|container| container.ports.iter().flatten())
                .find_map(|port| {
                    let port_protocol = port.protocol.as_deref().unwrap_or("TCP");
                    (port.name.as_deref() == Some(name.as_str()) && port_protocol == protocol)
                        .then_some(port.container_port)
                })
        }
    }
}

fn endpoint_port(service_port: &ServicePort, number: i32) -> EndpointPort {
    EndpointPort {
        name: service_port.name.clone().filter(|name| !name.is_empty()),
        port: number,
        protocol: Some(protocol(service_port)),
        app_protocol: service_port.app_protocol.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// EndpointSlices

/// One group of slices: the endpoints that offer the same ports.
struct PortGroup {
    ports: Vec<discovery::EndpointPort>,
    /// Desired endpoints in a stable order (by pod name), each with its identity.
    endpoints: Vec<(EndpointKey, discovery::Endpoint)>,
}

/// An endpoint's identity across versions, as upstream hashes it: its addresses, hostname
/// and pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct EndpointKey {
    addresses: Vec<String>,
    hostname: Option<String>,
    pod: Option<(Option<String>, Option<String>)>,
}

impl EndpointKey {
    fn of(endpoint: &discovery::Endpoint) -> Self {
        let mut addresses = endpoint.addresses.clone();
        addresses.sort();
        Self {
            addresses,
            hostname: endpoint.hostname.clone(),
            pod: endpoint.target_ref.as_ref().map(|target| (target.namespace.clone(), target.name.clone())),
        }
    }
}

fn decide_slices(observed: &Observed<'_>, pods: &[&Pod]) -> Vec<Action> {
    let service = observed.service;
    let address_type = if address_family(service) == "IPv6" { "IPv6" } else { "IPv4" };
    let groups = desired_port_groups(observed, pods);
    let (owned, foreign): (Vec<&discovery::EndpointSlice>, Vec<_>) = observed
        .slices
        .iter()
        .copied()
        .partition(|slice| owned_by(slice, service) && slice.address_type == address_type);
    let mut plan = SlicePlan::default();
    plan.delete.extend(foreign.into_iter().cloned());
    let mut existing_by_ports: Vec<(Vec<discovery::EndpointPort>, Vec<&discovery::EndpointSlice>)> =
        Vec::new();
    for slice in owned {
        let ports = sorted_slice_ports(slice.ports.clone().unwrap_or_default());
        match existing_by_ports.iter_mut().find(|(known, _)| *known == ports) {
            Some((_, slices)) => slices.push(slice),
            None => existing_by_ports.push((ports, vec![slice])),
        }
    }
    for group in groups {
        let existing = existing_by_ports
            .iter()
            .position(|(ports, _)| *ports == group.ports)
            .map(|index| existing_by_ports.swap_remove(index).1)
            .unwrap_or_default();
        reconcile_port_group(service, address_type, &existing, group, &mut plan);
    }
    // Port sets no longer desired.
    plan.delete.extend(existing_by_ports.into_iter().flat_map(|(_, slices)| slices.into_iter().cloned()));
    // With no endpoints at all, a Service keeps one empty placeholder slice.
    if observed.slices.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(service, address_type, Vec::new());
        if plan.delete.len() == 1 && is_same_placeholder(&plan.delete[0], &placeholder) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    plan.finish(service, observed.trigger_time)
}

#[derive(Default)]
struct SlicePlan {
    create: Vec<discovery::EndpointSlice>,
    update: Vec<discovery::EndpointSlice>,
    delete: Vec<discovery::EndpointSlice>,
}

impl SlicePlan {
    /// Turns creates into updates of slices that would be deleted, as upstream's `finalize`
    /// does, and the plan into actions.
    fn finish(mut self, service: &Service, trigger_time: Option<Timestamp>) -> Vec<Action> {
        let mut kept_deletes = Vec::new();
        for doomed in std::mem::take(&mut self.delete) {
            // Only a slice of this Service (not of an older one of the same name) and of the
            // same address type, which cannot change, is reused.
            let reusable = self.create.last().is_some_and(|slice| slice.address_type == doomed.address_type)
                && owned_by(&doomed, service);
            match self.create.pop_if(|_| reusable) {
                Some(mut slice) => {
                    slice.metadata.name = doomed.metadata.name.clone();
                    slice.metadata.generate_name = doomed.metadata.generate_name.clone();
                    slice.metadata.resource_version = doomed.metadata.resource_version.clone();
                    slice.metadata.uid = doomed.metadata.uid.clone();
                    self.update.push(slice);
                }
                None => kept_deletes.push(doomed),
            }
        }
        let mut actions = Vec::new();
        // No new slices for a Service being deleted: they would race the garbage collector.
        if service.metadata.deletion_timestamp.is_none() {
            actions.extend(self.create.into_iter().map(|mut slice| {
                set_trigger_time(slice.metadata.annotations.get_or_insert_with(BTreeMap::new), trigger_time);
                tidy_annotations(&mut slice.metadata);
                Action::CreateSlice(slice)
            }));
        }
        actions.extend(self.update.into_iter().map(|mut slice| {
            set_trigger_time(slice.metadata.annotations.get_or_insert_with(BTreeMap::new), trigger_time);
            tidy_annotations(&mut slice.metadata);
            slice.metadata.managed_fields = None;
            Action::UpdateSlice(slice)
        }));
        actions.extend(kept_deletes.into_iter().map(|slice| Action::DeleteSlice(target_of(&slice.metadata))));
        actions
    }
}

fn tidy_annotations(metadata: &mut ObjectMeta) {
    if metadata.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
        metadata.annotations = None;
    }
}

/// Upstream's `reconcileByPortMapping`: keeps desired endpoints where they are, updates those
/// that changed, removes those no longer desired, then places the rest: first in slices being
/// updated anyway (fullest first), then in the unchanged slice they fill best, then in new
/// slices.
fn reconcile_port_group(
    service: &Service,
    address_type: &str,
    existing: &[&discovery::EndpointSlice],
    group: PortGroup,
    plan: &mut SlicePlan,
) {
    let mut desired: BTreeMap<EndpointKey, discovery::Endpoint> = BTreeMap::new();
    let mut order: Vec<EndpointKey> = Vec::new();
    for (key, endpoint) in group.endpoints {
        if desired.insert(key.clone(), endpoint).is_none() {
            order.push(key);
        }
    }
    let labels = slice_labels(service);
    let mut updated: Vec<discovery::EndpointSlice> = Vec::new();
    let mut unchanged: Vec<discovery::EndpointSlice> = Vec::new();
    for slice in existing {
        let mut kept = Vec::new();
        let mut changed = false;
        for endpoint in &slice.endpoints {
            if let Some(wanted) = desired.remove(&EndpointKey::of(endpoint)) {
                changed |= wanted != *endpoint;
                kept.push(wanted);
            }
        }
        let labels_changed = slice.metadata.labels.as_ref() != Some(&labels);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                plan.delete.push((*slice).clone());
            } else {
                let mut slice = (*slice).clone();
                slice.endpoints = kept;
                slice.metadata.labels = Some(labels.clone());
                updated.push(slice);
            }
        } else if labels_changed {
            let mut slice = (*slice).clone();
            slice.metadata.labels = Some(labels.clone());
            updated.push(slice);
        } else {
            unchanged.push((*slice).clone());
        }
    }
    let mut remaining: std::collections::VecDeque<discovery::Endpoint> =
        order.into_iter().filter_map(|key| desired.remove(&key)).collect();
    updated.sort_by_key(|slice| std::cmp::Reverse(slice.endpoints.len()));
    for slice in &mut updated {
        while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
            let Some(endpoint) = remaining.pop_front() else { break };
            slice.endpoints.push(endpoint);
        }
    }
    while !remaining.is_empty() {
        let fill = (remaining.len() < MAX_ENDPOINTS_PER_SLICE)
            .then(|| slice_to_fill(&unchanged, remaining.len()))
            .flatten();
        let (mut slice, is_new) = match fill {
            Some(index) => (unchanged.swap_remove(index), false),
            None => (new_slice(service, address_type, group.ports.clone()), true),
        };
        while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
            let Some(endpoint) = remaining.pop_front() else { break };
            slice.endpoints.push(endpoint);
        }
        if is_new { plan.create.push(slice) } else { updated.push(slice) }
    }
    plan.update.extend(updated);
}

/// Upstream's `getSliceToFill`: the slice closest to full after taking `count` endpoints.
fn slice_to_fill(slices: &[discovery::EndpointSlice], count: usize) -> Option<usize> {
    slices
        .iter()
        .enumerate()
        .filter(|(_, slice)| slice.endpoints.len() + count <= MAX_ENDPOINTS_PER_SLICE)
        .min_by_key(|(_, slice)| MAX_ENDPOINTS_PER_SLICE - (slice.endpoints.len() + count))
        .map(|(index, _)| index)
}

/// The desired endpoints grouped by the ports they offer, groups in order of first
/// appearance over the pods sorted by name.
fn desired_port_groups(observed: &Observed<'_>, pods: &[&Pod]) -> Vec<PortGroup> {
    let service = observed.service;
    let spec = service.spec.as_ref().expect("a managed Service has a spec");
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut sorted: Vec<&Pod> = pods.to_vec();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut groups: Vec<PortGroup> = Vec::new();
    for pod in sorted {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = slice_ports(service, pod);
        let zone = match node_name(pod).map(|node| observed.nodes.get(&node)) {
            // A pod on a node that does not exist is left out (the pod garbage collector will
            // remove it), unless the Service publishes every address anyway.
            Some(None) if !publish_not_ready => continue,
            Some(Some(zone)) => zone.clone(),
            _ => None,
        };
        let Some(endpoint) = slice_endpoint(service, pod, zone) else { continue };
        let index = match groups.iter().position(|group| group.ports == ports) {
            Some(index) => index,
            None => {
                groups.push(PortGroup { ports, endpoints: Vec::new() });
                groups.len() - 1
            }
        };
        groups[index].endpoints.push((EndpointKey::of(&endpoint), endpoint));
    }
    groups
}

/// The slice ports of `pod` for `service` (upstream's `getEndpointPorts`), sorted.
fn slice_ports(service: &Service, pod: &Pod) -> Vec<discovery::EndpointPort> {
    let service_ports = service.spec.as_ref().and_then(|spec| spec.ports.as_deref()).unwrap_or_default();
    let ports = service_ports
        .iter()
        .filter_map(|service_port| {
            let number = find_port(pod, service_port)?;
            Some(discovery::EndpointPort {
                name: Some(service_port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(protocol(service_port)),
                app_protocol: service_port.app_protocol.clone(),
            })
        })
        .collect();
    sorted_slice_ports(ports)
}

fn sorted_slice_ports(mut ports: Vec<discovery::EndpointPort>) -> Vec<discovery::EndpointPort> {
    ports.sort_by(|a, b| {
        (a.name.as_deref(), a.port, a.protocol.as_deref()).cmp(&(
            b.name.as_deref(),
            b.port,
            b.protocol.as_deref(),
        ))
    });
    ports
}

/// Upstream's `podToEndpoint`.
fn slice_endpoint(service: &Service, pod: &Pod, zone: Option<String>) -> Option<discovery::Endpoint> {
    let publish_not_ready =
        service.spec.as_ref().and_then(|spec| spec.publish_not_ready_addresses).unwrap_or(false);
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    // A terminating pod is never ready, unless the Service publishes every address.
    let ready = publish_not_ready || (serving && !terminating);
    Some(discovery::Endpoint {
        addresses: vec![pod_ip(service, pod)?],
        conditions: Some(discovery::EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(service, pod),
        node_name: node_name(pod),
        target_ref: Some(pod_reference(pod)),
        zone,
        ..discovery::Endpoint::default()
    })
}

/// The labels of the Service's slices: its own (but for the reserved ones), the headless
/// label where it applies, the Service's name and this controller's.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(key, _)| ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.to_owned(), name_of(&service.metadata).to_owned());
    labels.insert(MANAGED_BY_LABEL.to_owned(), CONTROLLER_NAME.to_owned());
    labels
}

fn controller_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Service".to_owned(),
        name: name_of(&service.metadata).to_owned(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &discovery::EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.kind == "Service" && owner.api_version == "v1" && owner.uid == uid)
}

fn new_slice(
    service: &Service,
    address_type: &str,
    ports: Vec<discovery::EndpointPort>,
) -> discovery::EndpointSlice {
    discovery::EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", name_of(&service.metadata))),
            namespace: service.metadata.namespace.clone(),
            labels: Some(slice_labels(service)),
            owner_references: Some(vec![controller_reference(service)]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_owned(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// Whether `slice` is already the placeholder `placeholder` would be: same namespace, labels,
/// owner, address type, and no endpoints or ports.
fn is_same_placeholder(slice: &discovery::EndpointSlice, placeholder: &discovery::EndpointSlice) -> bool {
    slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && slice.metadata.owner_references == placeholder.metadata.owner_references
        && slice.address_type == placeholder.address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

// ---------------------------------------------------------------------------------------------
// Trigger times

/// What the last computation saw of one Service.
#[derive(Clone, Debug, Default)]
struct TriggerState {
    pod_trigger_times: HashMap<String, Timestamp>,
    service_trigger_time: Option<Timestamp>,
}

/// Upstream's `TriggerTimeTracker`: per Service, the trigger times seen last, to tell which
/// changed since.
#[derive(Debug, Default)]
pub struct TriggerTimes {
    services: HashMap<(String, String), TriggerState>,
}

impl TriggerTimes {
    /// The trigger time for objects written now for `service` over `pods` (those it
    /// selects): the Service's creation for a Service not seen before; otherwise the earliest
    /// of the pod Ready transitions and the Service creation that are newer than what the last
    /// computation saw, or None when nothing is. Remembers what it saw.
    pub fn compute(&mut self, service: &Service, pods: &[&Pod]) -> Option<Timestamp> {
        let key = (namespace_of(&service.metadata).to_owned(), name_of(&service.metadata).to_owned());
        let service_time = service.metadata.creation_timestamp.as_ref().map(|time| time.0);
        let pod_times: HashMap<String, Timestamp> = pods
            .iter()
            .filter_map(|pod| {
                let time = pod_ready_condition(pod)?.last_transition_time.as_ref()?.0;
                Some((name_of(&pod.metadata).to_owned(), time))
            })
            .collect();
        let new_state =
            TriggerState { pod_trigger_times: pod_times.clone(), service_trigger_time: service_time };
        let Some(state) = self.services.insert(key, new_state) else { return service_time };
        let changed_pods = pod_times
            .iter()
            .filter(|(name, time)| state.pod_trigger_times.get(*name).is_none_or(|seen| *time > seen))
            .map(|(_, time)| *time);
        let changed_service =
            service_time.filter(|time| state.service_trigger_time.is_none_or(|seen| *time > seen));
        changed_pods.chain(changed_service).min()
    }

    /// Forgets the Services not in `existing`.
    pub fn retain(&mut self, existing: &std::collections::HashSet<(String, String)>) {
        self.services.retain(|key, _| existing.contains(key));
    }
}

fn namespace_of(metadata: &ObjectMeta) -> &str {
    metadata.namespace.as_deref().unwrap_or_default()
}

fn name_of(metadata: &ObjectMeta) -> &str {
    metadata.name.as_deref().unwrap_or_default()
}

fn target_of(metadata: &ObjectMeta) -> Target {
    Target {
        namespace: namespace_of(metadata).to_owned(),
        name: name_of(metadata).to_owned(),
        uid: metadata.uid.clone().unwrap_or_default(),
        resource_version: metadata.resource_version.clone().unwrap_or_default(),
    }
}
