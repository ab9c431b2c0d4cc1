//! Cluster DNS, the records of Kubernetes' DNS specification (schema 1.1.0) answered from the
//! agent's caches of Services and EndpointSlices, as CoreDNS's kubernetes plugin answers them.
//!
//! [`resolve`] is the whole decision: a query name and type against a [`ClusterView`] give an
//! [`Resolution`]; it does no I/O, so every record shape is tested without a network.
//! [`server`] carries it over UDP and TCP and forwards names outside the cluster domain.
//!
//! The records, under the zone `cluster.local`:
//! - `<service>.<ns>.svc`: A/AAAA of the ClusterIPs; for a headless Service, of its ready
//!   endpoints (NXDOMAIN while it has none, as the specification says); for an ExternalName
//!   Service, a CNAME to that name.
//! - `<hostname>.<service>.<ns>.svc`: A/AAAA of a headless Service's ready endpoint, named by
//!   its `hostname` or else by its address with dashes (`127-1-0-5`), as CoreDNS names them.
//! - `_<port>._<proto>.<service>.<ns>.svc`: SRV for each named port, targeting the Service
//!   (or each ready endpoint of a headless one), with the targets' addresses as additionals.
//! - `<a>-<b>-<c>-<d>.<ns>.pod`: A of that address (deprecated, still required).
//! - `dns-version`: TXT with the schema version; the zone's apex: SOA.
//! - PTR in `in-addr.arpa`/`ip6.arpa` for ClusterIPs and headless endpoints.
//!
//! Names in the zone that exist but hold no record of the asked type, such as
//! `<ns>.svc.cluster.local` or an AAAA query for an IPv4 Service, answer NOERROR with no records
//! (NODATA); other names in the zone answer NXDOMAIN. Both carry the zone's SOA, so resolvers
//! cache the negative answer for [`RECORD_TTL_SECONDS`] only. Until the agent's caches have
//! listed once, names in the zone get SERVFAIL: an empty cache must not deny that a name exists.

pub mod server;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::runtime::DnsConfig;

/// The cluster domain, Kubernetes' default.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The time to live of every record and of negative answers: short, so that a resolver's cache
/// follows endpoint changes within seconds (CoreDNS's kubernetes plugin defaults to 5 s too).
pub const RECORD_TTL_SECONDS: u32 = 5;
/// The version of Kubernetes' DNS schema these records follow, served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// Nameservers a resolv.conf holds at most: glibc reads no more (MAXNS), and kubelet keeps 3.
pub const POD_NAMESERVERS_MAX: usize = 3;
/// Search domains a pod's resolv.conf holds at most, as kubelet allows.
pub const POD_SEARCHES_MAX: usize = 32;
/// The label of the EndpointSlices of a Service, naming it.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the resolver reads: the Services and EndpointSlices of the whole cluster.
pub trait ClusterView {
    /// Whether the view holds the cluster's state yet; until then every name of the zone is
    /// answered SERVFAIL rather than a wrong NXDOMAIN.
    fn synced(&self) -> bool {
        true
    }
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>>;
    fn services(&self) -> Vec<Arc<Service>>;
    /// The EndpointSlices of the Service `namespace/name`.
    fn endpoint_slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>>;
}

/// EndpointSlices by the Service their `kubernetes.io/service-name` label names, so that a
/// headless answer reads its Service's slices rather than every slice of the cluster.
#[derive(Debug, Default)]
pub struct SlicesByService(HashMap<String, HashMap<String, Vec<Arc<EndpointSlice>>>>);

impl SlicesByService {
    pub fn new(slices: impl IntoIterator<Item = Arc<EndpointSlice>>) -> Self {
        let mut index: HashMap<String, HashMap<String, Vec<Arc<EndpointSlice>>>> = HashMap::new();
        for slice in slices {
            let labels = slice.metadata.labels.as_ref();
            let Some(service) = labels.and_then(|labels| labels.get(SERVICE_NAME_LABEL)).cloned() else {
                continue;
            };
            let namespace = slice.metadata.namespace.clone().unwrap_or_default();
            index.entry(namespace).or_default().entry(service).or_default().push(slice);
        }
        Self(index)
    }

    pub fn of(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        self.0.get(namespace).and_then(|services| services.get(service)).cloned().unwrap_or_default()
    }
}

/// The agent's caches, kept by its reflectors.
#[derive(Clone)]
pub struct ReflectedCluster {
    pub services: Store<Service>,
    pub endpoint_slices: Store<EndpointSlice>,
    synced: Arc<AtomicBool>,
    /// Moved by the slices' reflector after each change it made to `endpoint_slices`.
    slices_generation: Arc<AtomicU64>,
    /// The index of `endpoint_slices` and the generation it was built at; built again by the
    /// first question after a change.
    slices_index: Arc<Mutex<Option<BuiltIndex>>>,
}

/// An index of the slices, and the generation of the cache it was built from.
type BuiltIndex = (u64, Arc<SlicesByService>);

impl ReflectedCluster {
    /// A view of the two caches, synced once both have listed for the first time;
    /// `slices_generation` must move after every change to `endpoint_slices`.
    pub fn new(
        services: Store<Service>,
        endpoint_slices: Store<EndpointSlice>,
        slices_generation: Arc<AtomicU64>,
    ) -> Self {
        let view = Self {
            services: services.clone(),
            endpoint_slices: endpoint_slices.clone(),
            synced: Arc::new(AtomicBool::new(false)),
            slices_generation,
            slices_index: Arc::new(Mutex::new(None)),
        };
        let flag = view.synced.clone();
        // Ends with the agent: the stores' writers are dropped with their reflectors.
        tokio::spawn(async move {
            if services.wait_until_ready().await.is_ok() && endpoint_slices.wait_until_ready().await.is_ok() {
                flag.store(true, Ordering::Release);
            }
        });
        view
    }
}

impl ClusterView for ReflectedCluster {
    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    fn services(&self) -> Vec<Arc<Service>> {
        self.services.state()
    }

    fn endpoint_slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        // Read before the store: a change landing meanwhile is in the index built below but
        // leaves it marked older, so the next question builds it again.
        let generation = self.slices_generation.load(Ordering::Acquire);
        let index = {
            let mut cached = self.slices_index.lock().expect("slice index lock");
            match cached.as_ref() {
                Some((built_at, index)) if *built_at == generation => index.clone(),
                _ => {
                    let index = Arc::new(SlicesByService::new(self.endpoint_slices.state()));
                    *cached = Some((generation, index.clone()));
                    index
                }
            }
        };
        index.of(namespace, service)
    }
}

/// The outcome of one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The name is in the cluster's zones: this is the answer to send.
    Authoritative(Answer),
    /// The name is not the cluster's: another resolver has to answer it.
    Elsewhere,
}

/// An authoritative answer: NOERROR with records (none is NODATA) or NXDOMAIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The zone's SOA on a negative answer, for negative caching (RFC 2308).
    pub authorities: Vec<Record>,
}

/// The resolver a pod gets by its `dnsPolicy` and `dnsConfig`, as kubelet decides it:
/// `ClusterFirst` (the default) gets the cluster DNS `cluster_dns`, with its namespace's search
/// domains and `ndots:5`, unless the pod is on the host's network; `Default` keeps the node's
/// resolver (`None`); `None` takes `dnsConfig` alone. Without a cluster DNS, `ClusterFirst`
/// falls back to the node's resolver, as kubelet does.
pub fn pod_dns_config(pod: &Pod, cluster_dns: Option<IpAddr>) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let mut config = match (policy, cluster_dns) {
        ("None", _) => DnsConfig::default(),
        ("ClusterFirstWithHostNet", Some(server)) => cluster_first(pod, server),
        ("ClusterFirst", Some(server)) if !host_network => cluster_first(pod, server),
        _ => return None,
    };
    if let Some(extra) = &spec.dns_config {
        config.servers.extend(extra.nameservers.iter().flatten().cloned());
        config.searches.extend(extra.searches.iter().flatten().cloned());
        for option in extra.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else { continue };
            // A pod's option replaces the cluster's of the same name (`ndots`, say).
            config.options.retain(|existing| existing.split(':').next() != Some(name));
            config.options.push(match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.to_owned(),
            });
        }
    }
    dedup_in_order(&mut config.servers);
    dedup_in_order(&mut config.searches);
    config.servers.truncate(POD_NAMESERVERS_MAX);
    config.searches.truncate(POD_SEARCHES_MAX);
    Some(config)
}

fn cluster_first(pod: &Pod, server: IpAddr) -> DnsConfig {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    DnsConfig {
        servers: vec![server.to_string()],
        searches: vec![
            format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
            format!("svc.{CLUSTER_DOMAIN}"),
            CLUSTER_DOMAIN.to_owned(),
        ],
        options: vec!["ndots:5".to_owned()],
    }
}

fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

/// Answers `query_type` for `name` from `cluster`, for the zone `zone` (`cluster.local.`).
pub fn resolve(name: &Name, query_type: RecordType, cluster: &impl ClusterView, zone: &Name) -> Resolution {
    let lowered = name.to_lowercase();
    if zone.zone_of(&lowered) {
        if !cluster.synced() {
            let mut answer = Answer::negative(ResponseCode::ServFail, zone);
            answer.authorities.clear();
            return Resolution::Authoritative(answer);
        }
        let relative = relative_labels(&lowered, zone);
        let labels: Vec<&str> = relative.iter().map(String::as_str).collect();
        let found = lookup(&labels, cluster, zone);
        return Resolution::Authoritative(found.answer(name, query_type, zone));
    }
    if query_type == RecordType::PTR
        && let Some(ip) = reverse_address(&lowered)
    {
        let targets = reverse_lookup(ip, cluster, zone);
        if !targets.is_empty() {
            let answers = targets.into_iter().map(|target| record(name, RData::PTR(PTR(target)))).collect();
            return Resolution::Authoritative(Answer::records(answers, Vec::new()));
        }
    }
    Resolution::Elsewhere
}

/// What a name in the zone holds, before the query type picks from it.
enum Found {
    NoSuchName,
    /// The name exists (it is the zone's apex, or an ancestor of names that hold records).
    Empty,
    Apex,
    Addresses(Vec<IpAddr>),
    Alias(Name),
    Text(String),
    Services {
        records: Vec<SRV>,
        additionals: Vec<Record>,
    },
}

impl Found {
    fn answer(self, name: &Name, query_type: RecordType, zone: &Name) -> Answer {
        let any = query_type == RecordType::ANY;
        let answers: Vec<Record> = match self {
            Found::NoSuchName => return Answer::negative(ResponseCode::NXDomain, zone),
            Found::Empty => Vec::new(),
            Found::Apex => {
                let wanted = any || query_type == RecordType::SOA;
                wanted.then(|| soa(zone)).into_iter().collect()
            }
            Found::Addresses(addresses) => {
                addresses.into_iter().filter_map(|ip| address_record(name, ip, query_type)).collect()
            }
            // A CNAME answers every type: the client follows it.
            Found::Alias(target) => vec![record(name, RData::CNAME(CNAME(target)))],
            Found::Text(text) => {
                let wanted = any || query_type == RecordType::TXT;
                wanted.then(|| record(name, RData::TXT(TXT::new(vec![text])))).into_iter().collect()
            }
            Found::Services { records, additionals } => {
                if !(any || query_type == RecordType::SRV) {
                    return Answer::negative(ResponseCode::NoError, zone);
                }
                let answers = records.into_iter().map(|srv| record(name, RData::SRV(srv))).collect();
                return Answer::records(answers, additionals);
            }
        };
        if answers.is_empty() {
            return Answer::negative(ResponseCode::NoError, zone);
        }
        Answer::records(answers, Vec::new())
    }
}

impl Answer {
    fn records(answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        Self { code: ResponseCode::NoError, answers, additionals, authorities: Vec::new() }
    }

    fn negative(code: ResponseCode, zone: &Name) -> Self {
        Self { code, answers: Vec::new(), additionals: Vec::new(), authorities: vec![soa(zone)] }
    }
}

/// What `labels` (the name below the zone, innermost first) holds.
fn lookup(labels: &[&str], cluster: &impl ClusterView, zone: &Name) -> Found {
    match labels {
        [] => Found::Apex,
        ["dns-version"] => Found::Text(SCHEMA_VERSION.to_owned()),
        ["svc"] | ["pod"] => Found::Empty,
        [namespace, "svc"] => {
            let exists = cluster.services().iter().any(|service| namespace_of(service) == *namespace);
            if exists { Found::Empty } else { Found::NoSuchName }
        }
        [dashed, _namespace, "pod"] => match undash(dashed) {
            Some(ip) => Found::Addresses(vec![ip]),
            None => Found::NoSuchName,
        },
        [name, namespace, "svc"] => match cluster.service(namespace, name) {
            Some(service) => service_records(&service, cluster),
            None => Found::NoSuchName,
        },
        [protocol, name, namespace, "svc"] if protocol.starts_with('_') => {
            let Some(service) = cluster.service(namespace, name) else { return Found::NoSuchName };
            let has_ports = named_ports(&service).iter().any(|port| port.protocol_label == *protocol);
            if has_ports { Found::Empty } else { Found::NoSuchName }
        }
        [endpoint, name, namespace, "svc"] => {
            let Some(service) = cluster.service(namespace, name) else { return Found::NoSuchName };
            if !is_headless(&service) {
                return Found::NoSuchName;
            }
            let addresses: Vec<IpAddr> = ready_endpoints(&service, cluster)
                .into_iter()
                .filter(|ready| ready.hostname == *endpoint)
                .map(|ready| ready.ip)
                .collect();
            if addresses.is_empty() { Found::NoSuchName } else { Found::Addresses(addresses) }
        }
        [port, protocol, name, namespace, "svc"] if port.starts_with('_') && protocol.starts_with('_') => {
            let Some(service) = cluster.service(namespace, name) else { return Found::NoSuchName };
            let wanted = PortKey { name_label: (*port).to_owned(), protocol_label: (*protocol).to_owned() };
            service_ports(&service, &wanted, cluster, zone)
        }
        _ => Found::NoSuchName,
    }
}

/// The records of `<service>.<ns>.svc.<zone>`.
fn service_records(service: &Service, cluster: &impl ClusterView) -> Found {
    let spec = service.spec.as_ref();
    if spec.and_then(|spec| spec.type_.as_deref()) == Some("ExternalName") {
        let external = spec.and_then(|spec| spec.external_name.as_deref()).unwrap_or_default();
        return match Name::from_ascii(external.trim_end_matches('.')) {
            Ok(mut target) if !external.is_empty() => {
                target.set_fqdn(true);
                Found::Alias(target)
            }
            _ => Found::Empty,
        };
    }
    if is_headless(service) {
        let addresses: Vec<IpAddr> = ready_endpoints(service, cluster).iter().map(|ready| ready.ip).collect();
        let unique: BTreeSet<IpAddr> = addresses.into_iter().collect();
        return if unique.is_empty() {
            Found::NoSuchName
        } else {
            Found::Addresses(unique.into_iter().collect())
        };
    }
    Found::Addresses(cluster_ips(service))
}

/// SRV records of one named port: to the Service, or to each ready endpoint of a headless one.
fn service_ports(service: &Service, wanted: &PortKey, cluster: &impl ClusterView, zone: &Name) -> Found {
    let Some(port) = named_ports(service).into_iter().find(|port| port.key() == *wanted) else {
        return Found::NoSuchName;
    };
    let service_name = service_domain(service, zone);
    if !is_headless(service) {
        let ips = cluster_ips(service);
        let additionals =
            ips.iter().filter_map(|ip| address_record(&service_name, *ip, RecordType::ANY)).collect();
        let records = vec![SRV::new(0, 100, port.number, service_name)];
        return Found::Services { records, additionals };
    }
    let endpoints: Vec<ReadyEndpoint> = ready_endpoints(service, cluster)
        .into_iter()
        .filter(|ready| ready.ports.contains_key(wanted))
        .collect();
    if endpoints.is_empty() {
        return Found::NoSuchName;
    }
    // Equal shares of 100, as CoreDNS weighs the endpoints of one port.
    let weight = (100 / endpoints.len()).max(1) as u16;
    let mut records = Vec::new();
    let mut additionals = Vec::new();
    for ready in endpoints {
        let Ok(target) = service_name.prepend_label(ready.hostname.as_str()) else { continue };
        if let Some(address) = address_record(&target, ready.ip, RecordType::ANY) {
            additionals.push(address);
        }
        records.push(SRV::new(0, weight, ready.ports[wanted], target));
    }
    Found::Services { records, additionals }
}

/// Names that point back at `ip`: Services with it as ClusterIP, headless endpoints with it.
fn reverse_lookup(ip: IpAddr, cluster: &impl ClusterView, zone: &Name) -> Vec<Name> {
    let mut targets = Vec::new();
    for service in cluster.services() {
        if is_headless(&service) {
            for ready in ready_endpoints(&service, cluster).into_iter().filter(|ready| ready.ip == ip) {
                if let Ok(target) = service_domain(&service, zone).prepend_label(ready.hostname.as_str()) {
                    targets.push(target);
                }
            }
        } else if cluster_ips(&service).contains(&ip) {
            targets.push(service_domain(&service, zone));
        }
    }
    targets.sort();
    targets.dedup();
    targets
}

/// A named port of a Service, by the labels of its SRV name.
struct NamedPort {
    name_label: String,
    protocol_label: String,
    number: u16,
}

impl NamedPort {
    fn key(&self) -> PortKey {
        PortKey { name_label: self.name_label.clone(), protocol_label: self.protocol_label.clone() }
    }
}

/// `_<port>` and `_<proto>`, lowercase, as they appear in an SRV name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name_label: String,
    protocol_label: String,
}

impl PortKey {
    fn new(name: &str, protocol: Option<&str>) -> Self {
        Self {
            name_label: format!("_{}", name.to_lowercase()),
            protocol_label: format!("_{}", protocol.unwrap_or("TCP").to_lowercase()),
        }
    }
}

fn named_ports(service: &Service) -> Vec<NamedPort> {
    let ports = service.spec.as_ref().and_then(|spec| spec.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|port| {
            let name = port.name.as_deref().filter(|name| !name.is_empty())?;
            let key = PortKey::new(name, port.protocol.as_deref());
            let number = u16::try_from(port.port).ok()?;
            Some(NamedPort { name_label: key.name_label, protocol_label: key.protocol_label, number })
        })
        .collect()
}

/// A ready endpoint of a Service: its address, its name under the Service, its named ports.
struct ReadyEndpoint {
    ip: IpAddr,
    hostname: String,
    ports: std::collections::BTreeMap<PortKey, u16>,
}

/// The ready endpoints of `service` from its EndpointSlices, each address once. With
/// `publishNotReadyAddresses` every endpoint counts as ready, as the specification's
/// "tolerate unready endpoints" says.
fn ready_endpoints(service: &Service, cluster: &impl ClusterView) -> Vec<ReadyEndpoint> {
    let namespace = namespace_of(service);
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let publish_not_ready =
        service.spec.as_ref().and_then(|spec| spec.publish_not_ready_addresses).unwrap_or(false);
    let mut seen = BTreeSet::new();
    let mut endpoints = Vec::new();
    for slice in cluster.endpoint_slices_of(namespace, name) {
        if slice.address_type == "FQDN" {
            continue;
        }
        let ports: std::collections::BTreeMap<PortKey, u16> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                let name = port.name.as_deref().filter(|name| !name.is_empty())?;
                let number = u16::try_from(port.port?).ok()?;
                Some((PortKey::new(name, port.protocol.as_deref()), number))
            })
            .collect();
        for endpoint in &slice.endpoints {
            // A missing condition means ready, as the EndpointSlice API documents.
            let ready = endpoint.conditions.as_ref().and_then(|conditions| conditions.ready).unwrap_or(true);
            if !(ready || publish_not_ready) {
                continue;
            }
            for ip in endpoint.addresses.iter().filter_map(|address| address.parse::<IpAddr>().ok()) {
                if !seen.insert(ip) {
                    continue;
                }
                let hostname = match endpoint.hostname.as_deref().filter(|hostname| !hostname.is_empty()) {
                    Some(hostname) => hostname.to_lowercase(),
                    None => dashed(ip),
                };
                endpoints.push(ReadyEndpoint { ip, hostname, ports: ports.clone() });
            }
        }
    }
    endpoints
}

fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref()) == Some("None")
}

/// The Service's ClusterIPs (none before one is allocated).
fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let listed = spec.cluster_ips.iter().flatten().map(String::as_str);
    let ips: BTreeSet<IpAddr> =
        listed.chain(spec.cluster_ip.as_deref()).filter_map(|ip| ip.parse().ok()).collect();
    ips.into_iter().collect()
}

fn namespace_of(service: &Service) -> &str {
    service.metadata.namespace.as_deref().unwrap_or("default")
}

/// `<service>.<ns>.svc.<zone>`.
fn service_domain(service: &Service, zone: &Name) -> Name {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let relative = format!("{name}.{}.svc", namespace_of(service));
    Name::from_ascii(&relative)
        .and_then(|relative| relative.append_domain(zone))
        .expect("Service names and namespaces are DNS labels")
}

/// The labels of `name` below `zone`, innermost first, as text.
fn relative_labels(name: &Name, zone: &Name) -> Vec<String> {
    let below = usize::from(name.num_labels() - zone.num_labels());
    name.iter().take(below).map(|label| String::from_utf8_lossy(label).into_owned()).collect()
}

/// An address as one DNS label: `127-1-0-5`, or the IPv6 address with `-` for `:`.
fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string().replace('.', "-"),
        IpAddr::V6(ip) => ip.to_string().replace(':', "-"),
    }
}

/// The address of a pod record's label, `127-1-0-5`.
fn undash(label: &str) -> Option<IpAddr> {
    label.replace('-', ".").parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The address a full `in-addr.arpa.` or `ip6.arpa.` name stands for.
fn reverse_address(name: &Name) -> Option<IpAddr> {
    let network = name.parse_arpa_name().ok()?;
    let full = match network.addr() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (network.prefix_len() == full).then(|| network.addr())
}

/// An A or AAAA record of `ip`, if the query type asks for its family.
fn address_record(name: &Name, ip: IpAddr, query_type: RecordType) -> Option<Record> {
    let any = query_type == RecordType::ANY;
    match ip {
        IpAddr::V4(ip) if any || query_type == RecordType::A => Some(record(name, RData::A(A(ip)))),
        IpAddr::V6(ip) if any || query_type == RecordType::AAAA => Some(record(name, RData::AAAA(AAAA(ip)))),
        _ => None,
    }
}

fn record(name: &Name, data: RData) -> Record {
    Record::from_rdata(name.clone(), RECORD_TTL_SECONDS, data)
}

/// The zone's SOA; its minimum, the negative-caching time, is the records' TTL.
fn soa(zone: &Name) -> Record {
    let server = Name::from_ascii("ns.dns").and_then(|name| name.append_domain(zone)).expect("a valid name");
    let mailbox =
        Name::from_ascii("hostmaster").and_then(|name| name.append_domain(zone)).expect("a valid name");
    let ttl = RECORD_TTL_SECONDS as i32;
    let data = SOA::new(server, mailbox, 1, ttl, ttl, ttl, RECORD_TTL_SECONDS);
    Record::from_rdata(zone.clone(), RECORD_TTL_SECONDS, RData::SOA(data))
}

/// The zone `cluster.local.` as a name.
pub fn cluster_zone() -> Name {
    let mut zone = Name::from_ascii(CLUSTER_DOMAIN).expect("the cluster domain is a valid name");
    zone.set_fqdn(true);
    zone
}
