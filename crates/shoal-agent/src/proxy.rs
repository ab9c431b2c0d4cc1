//! The node's service proxy: what it listens on and where each connection goes.
//!
//! With the process runtime, pods share the host's network and have loopback addresses, and
//! so do Service ClusterIPs (127.96.0.0/16). By default the proxy is therefore a userspace TCP
//! proxy, like kube-proxy's old userspace mode, which needs no privileges: for each TCP port
//! of each Service it listens on `<clusterIP>:<port>` (and on `<node ip>:<nodePort>` for
//! NodePort and LoadBalancer Services) and splices every accepted connection to one ready
//! endpoint ([`runtime`]). With [`ProxyMode::Nftables`] the same table becomes nf_tables rules
//! instead, and the kernel rewrites each connection's destination ([`nftables`]).
//!
//! This module is the pure part: [`Table::compute`] turns a snapshot of Services and
//! EndpointSlices into the table of listeners and their routes, [`diff`] says which listeners
//! to open and close between two tables, and [`Balancer`] picks an endpoint for a connection
//! (round-robin, or sticky per client IP for `sessionAffinity: ClientIP`). The runtime
//! (`proxy/runtime.rs`) holds the sockets.
//!
//! Endpoints, as kube-proxy reads them: a slice belongs to the Service its
//! `kubernetes.io/service-name` label names; the port number of an endpoint is the slice's
//! port whose name is the Service port's name (the endpoints controller resolved numeric and
//! named targetPorts per pod into it), so a named targetPort may map to different numbers on
//! different pods. Only endpoints whose `ready` condition is true or unset get traffic.
//! Terminating endpoints are never used, even when no ready ones are left (kube-proxy then
//! falls back to serving terminating ones; shoal keeps it simple and refuses the connection).
//!
//! Not proxied: headless Services (no ClusterIP), ExternalName Services, UDP and SCTP ports
//! (only TCP is spliced), FQDN slices, and the cluster DNS Service (the agent serves DNS on its
//! address itself).

pub mod nftables;
pub mod runtime;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// How long a client IP sticks to its endpoint when the Service does not say
/// (Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`, 3 hours).
pub const AFFINITY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10_800);
/// Client IPs remembered per Service port for session affinity at most: beyond it the least
/// recently seen client is forgotten, so a scan from many addresses cannot grow the table.
pub const AFFINITY_ENTRIES_MAX: usize = 4096;

/// How the proxy moves a connection to its endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// The agent accepts each connection and splices it to an endpoint ([`runtime`]): works
    /// without privileges, and retries a refused connect on another endpoint.
    #[default]
    Userspace,
    /// The kernel rewrites each new connection's destination to an endpoint ([`nftables`]):
    /// no byte passes through the agent; needs `CAP_NET_ADMIN` and the `nft` command.
    Nftables,
}

/// One port of one Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub service: String,
    /// The Service port's name; empty for the single unnamed port.
    pub port: String,
}

/// Where one Service port's connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub service: ServicePortName,
    /// The ready endpoints, each with its resolved target port, sorted and without repeats.
    pub endpoints: Vec<SocketAddr>,
    /// How long a client stays with its endpoint under `sessionAffinity: ClientIP`; `None`
    /// for no affinity.
    pub affinity: Option<Duration>,
}

/// One Service port: its listen addresses and its route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub listen: Vec<SocketAddr>,
    pub route: Route,
}

/// Every proxied Service port of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub entries: BTreeMap<ServicePortName, Entry>,
}

/// What the node adds to a snapshot.
#[derive(Clone, Copy, Debug)]
pub struct NodeAddresses {
    /// The address NodePorts are opened on (the agent's `--node-ip`).
    pub node_ip: IpAddr,
    /// The address this agent's own DNS server answers on (`shoal agent --cluster-dns`, the
    /// kube-dns Service's ClusterIP): the proxy leaves it alone. `None` without a DNS server.
    pub cluster_dns: Option<IpAddr>,
}

impl Table {
    /// The table for a snapshot of Services and EndpointSlices.
    pub fn compute<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node: NodeAddresses,
    ) -> Table {
        let mut slices_by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let labels = slice.metadata.labels.as_ref();
            let Some(service) = labels.and_then(|labels| labels.get(SERVICE_NAME_LABEL)) else { continue };
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            slices_by_service.entry((namespace, service.as_str())).or_default().push(slice);
        }
        let mut entries = BTreeMap::new();
        for service in services {
            let Some(cluster_ip) = proxied_cluster_ip(service, node.cluster_dns) else { continue };
            let namespace = service.metadata.namespace.clone().unwrap_or_default();
            let name = service.metadata.name.clone().unwrap_or_default();
            let spec = service.spec.as_ref().expect("a service with a ClusterIP has a spec");
            let affinity = affinity_timeout(service);
            let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
            let slices = slices_by_service.get(&(namespace.as_str(), name.as_str()));
            for port in spec.ports.iter().flatten().filter(|port| is_tcp(port.protocol.as_deref())) {
                let Ok(number) = u16::try_from(port.port) else { continue };
                let key = ServicePortName {
                    namespace: namespace.clone(),
                    service: name.clone(),
                    port: port.name.clone().unwrap_or_default(),
                };
                let mut listen = vec![SocketAddr::new(cluster_ip, number)];
                let node_port = port.node_port.filter(|_| node_ports).map(u16::try_from);
                if let Some(Ok(node_port)) = node_port {
                    listen.push(SocketAddr::new(node.node_ip, node_port));
                }
                let endpoints = ready_endpoints(slices.map(Vec::as_slice).unwrap_or_default(), port);
                let route = Route { service: key.clone(), endpoints, affinity };
                entries.insert(key, Entry { listen, route });
            }
        }
        Table { entries }
    }

    /// The route of each listen address. Two Service ports never share one in a valid cluster;
    /// should they, the first in the table's order keeps it.
    pub fn by_listen_address(&self) -> BTreeMap<SocketAddr, Route> {
        let mut routes = BTreeMap::new();
        for entry in self.entries.values() {
            for address in &entry.listen {
                routes.entry(*address).or_insert_with(|| entry.route.clone());
            }
        }
        routes
    }
}

/// The ClusterIP the proxy listens on, or `None` for a Service it leaves alone.
fn proxied_cluster_ip(service: &Service, cluster_dns: Option<IpAddr>) -> Option<IpAddr> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    // "None" (headless) and any other malformed address do not parse.
    let ip: IpAddr = spec.cluster_ip.as_deref()?.parse().ok()?;
    (Some(ip) != cluster_dns).then_some(ip)
}

fn is_tcp(protocol: Option<&str>) -> bool {
    protocol.is_none_or(|protocol| protocol == "TCP")
}

fn affinity_timeout(service: &Service) -> Option<Duration> {
    let spec = service.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let seconds = spec
        .session_affinity_config
        .as_ref()
        .and_then(|config| config.client_ip.as_ref())
        .and_then(|client_ip| client_ip.timeout_seconds)
        .and_then(|seconds| u64::try_from(seconds).ok())
        .filter(|seconds| *seconds > 0);
    Some(seconds.map_or(AFFINITY_TIMEOUT_DEFAULT, Duration::from_secs))
}

/// The ready endpoints of one Service port across its slices.
fn ready_endpoints(slices: &[&EndpointSlice], port: &ServicePort) -> Vec<SocketAddr> {
    let port_name = port.name.as_deref().unwrap_or_default();
    let mut endpoints = BTreeSet::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let number = slice
            .ports
            .iter()
            .flatten()
            .filter(|slice_port| is_tcp(slice_port.protocol.as_deref()))
            .find(|slice_port| slice_port.name.as_deref().unwrap_or_default() == port_name)
            .and_then(|slice_port| slice_port.port)
            .and_then(|number| u16::try_from(number).ok())
            .filter(|number| *number != 0);
        let Some(number) = number else { continue };
        for endpoint in &slice.endpoints {
            // Unset means ready, as kube-proxy reads it.
            let ready = endpoint.conditions.as_ref().and_then(|conditions| conditions.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            let addresses = endpoint.addresses.iter().filter_map(|address| address.parse::<IpAddr>().ok());
            endpoints.extend(addresses.map(|ip| SocketAddr::new(ip, number)));
        }
    }
    endpoints.into_iter().collect()
}

/// Which listeners change between two tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerDiff {
    /// Addresses to start listening on, with their routes.
    pub open: BTreeMap<SocketAddr, Route>,
    /// Addresses to stop listening on.
    pub close: BTreeSet<SocketAddr>,
    /// Addresses listened on already whose route changed.
    pub update: BTreeMap<SocketAddr, Route>,
}

/// The listener changes that take `old` to `new`.
pub fn diff(old: &BTreeMap<SocketAddr, Route>, new: &BTreeMap<SocketAddr, Route>) -> ListenerDiff {
    let mut changes = ListenerDiff::default();
    for (address, route) in new {
        match old.get(address) {
            None => {
                changes.open.insert(*address, route.clone());
            }
            Some(previous) if previous != route => {
                changes.update.insert(*address, route.clone());
            }
            Some(_) => {}
        }
    }
    changes.close = old.keys().filter(|address| !new.contains_key(address)).copied().collect();
    changes
}

/// Picks endpoints for one Service port's connections.
#[derive(Debug, Default)]
pub struct Balancer {
    /// The round-robin position.
    next: usize,
    /// Under session affinity, each client's endpoint and when the client was last seen.
    affinity: HashMap<IpAddr, Sticky>,
}

#[derive(Clone, Copy, Debug)]
struct Sticky {
    endpoint: SocketAddr,
    seen: Instant,
}

impl Balancer {
    /// The endpoint for a connection from `client`, skipping the endpoints in `failed` (which
    /// refused this connection already); `None` when no endpoint is left.
    ///
    /// Under session affinity a client keeps its endpoint while that stays ready, has not
    /// failed, and the client came back within the timeout; otherwise the next endpoint in
    /// round-robin order is taken (and remembered for the client).
    pub fn pick(
        &mut self,
        route: &Route,
        client: IpAddr,
        failed: &[SocketAddr],
        now: Instant,
    ) -> Option<SocketAddr> {
        let usable = |endpoint: &SocketAddr| !failed.contains(endpoint);
        if let Some(timeout) = route.affinity
            && let Some(sticky) = self.affinity.get_mut(&client)
            && now.saturating_duration_since(sticky.seen) < timeout
            && usable(&sticky.endpoint)
            && route.endpoints.binary_search(&sticky.endpoint).is_ok()
        {
            sticky.seen = now;
            return Some(sticky.endpoint);
        }
        let candidates: Vec<SocketAddr> = route.endpoints.iter().copied().filter(usable).collect();
        if candidates.is_empty() {
            return None;
        }
        let endpoint = candidates[self.next % candidates.len()];
        self.next = self.next.wrapping_add(1);
        if let Some(timeout) = route.affinity {
            self.remember(client, endpoint, now, timeout);
        }
        Some(endpoint)
    }

    /// How many clients are remembered for session affinity.
    pub fn affinity_entries(&self) -> usize {
        self.affinity.len()
    }

    fn remember(&mut self, client: IpAddr, endpoint: SocketAddr, now: Instant, timeout: Duration) {
        if !self.affinity.contains_key(&client) && self.affinity.len() >= AFFINITY_ENTRIES_MAX {
            self.affinity.retain(|_, sticky| now.saturating_duration_since(sticky.seen) < timeout);
            if self.affinity.len() >= AFFINITY_ENTRIES_MAX {
                let oldest = self.affinity.iter().min_by_key(|(_, sticky)| sticky.seen).map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    self.affinity.remove(&oldest);
                }
            }
        }
        self.affinity.insert(client, Sticky { endpoint, seen: now });
        assert!(self.affinity.len() <= AFFINITY_ENTRIES_MAX);
    }
}
