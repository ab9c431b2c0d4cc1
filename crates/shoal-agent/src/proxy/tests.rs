//! The proxy table from small snapshots of Services and EndpointSlices, the listener diff, and
//! the balancer's choices (round-robin, retries, session affinity) on an injected clock.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::*;

const NODE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The address the agent's own DNS server holds, as `shoal agent --cluster-dns` says.
const CLUSTER_DNS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 96, 0, 10));

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// Service `name` in `default` with the given spec.
fn service(name: &str, spec: Value) -> Service {
    object(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
}

/// A slice of Service `service` with `ports` (`[(name, number)]`) and `endpoints`
/// (`[(address, ready)]`, `None` for an unset condition).
fn slice(
    name: &str,
    service: &str,
    ports: &[(&str, i32)],
    endpoints: &[(&str, Option<bool>)],
) -> EndpointSlice {
    let ports: Vec<Value> = ports.iter().map(|(name, port)| json!({"name": name, "port": port})).collect();
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(address, ready)| match ready {
            Some(ready) => json!({"addresses": [address], "conditions": {"ready": ready}}),
            None => json!({"addresses": [address]}),
        })
        .collect();
    object(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {SERVICE_NAME_LABEL: service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
}

fn table(services: &[Service], slices: &[EndpointSlice]) -> Table {
    Table::compute(services, slices, NodeAddresses { node_ip: NODE_IP, cluster_dns: Some(CLUSTER_DNS) })
}

fn address(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

fn addresses(texts: &[&str]) -> Vec<SocketAddr> {
    texts.iter().map(|text| address(text)).collect()
}

fn key(service: &str, port: &str) -> ServicePortName {
    ServicePortName { namespace: "default".to_owned(), service: service.to_owned(), port: port.to_owned() }
}

/// Checks the listen addresses and endpoints of every entry of a table, by `service/port`.
fn check(table: &Table, expected: &[(&str, &[&str], &[&str])]) {
    let actual: Vec<(String, Vec<SocketAddr>, Vec<SocketAddr>)> = table
        .entries
        .iter()
        .map(|(key, entry)| {
            (format!("{}/{}", key.service, key.port), entry.listen.clone(), entry.route.endpoints.clone())
        })
        .collect();
    let expected: Vec<(String, Vec<SocketAddr>, Vec<SocketAddr>)> = expected
        .iter()
        .map(|(name, listen, endpoints)| ((*name).to_owned(), addresses(listen), addresses(endpoints)))
        .collect();
    assert_eq!(actual, expected);
}

#[test]
fn numeric_and_named_target_ports_come_from_the_slice_port_of_the_same_name() {
    // The endpoints controller resolves a named targetPort per pod: two slices of one Service
    // carry different numbers for the port `http`, and each endpoint gets its slice's number.
    let web = service(
        "web",
        json!({"clusterIP": "127.96.0.20", "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9100},
        ]}),
    );
    let slices = [
        slice("web-a", "web", &[("http", 8080), ("metrics", 9100)], &[("127.1.1.2", Some(true))]),
        slice("web-b", "web", &[("http", 8081), ("metrics", 9100)], &[("127.1.2.2", None)]),
    ];
    check(
        &table(&[web], &slices),
        &[
            ("web/http", &["127.96.0.20:80"], &["127.1.1.2:8080", "127.1.2.2:8081"]),
            ("web/metrics", &["127.96.0.20:9090"], &["127.1.1.2:9100", "127.1.2.2:9100"]),
        ],
    );
}

#[test]
fn an_unnamed_port_matches_the_unnamed_slice_port() {
    let web =
        service("web", json!({"clusterIP": "127.96.0.20", "ports": [{"port": 80, "targetPort": 8080}]}));
    let slices = [slice("web-a", "web", &[("", 8080)], &[("127.1.1.2", Some(true))])];
    check(&table(&[web], &slices), &[("web/", &["127.96.0.20:80"], &["127.1.1.2:8080"])]);
}

#[test]
fn not_ready_endpoints_and_other_services_slices_are_left_out() {
    let web = service("web", json!({"clusterIP": "127.96.0.20", "ports": [{"name": "http", "port": 80}]}));
    let slices = [
        slice(
            "web-a",
            "web",
            &[("http", 8080)],
            &[("127.1.1.2", Some(true)), ("127.1.1.3", Some(false)), ("127.1.1.4", None)],
        ),
        slice("other-a", "other", &[("http", 8080)], &[("127.1.1.9", Some(true))]),
        // The same endpoint twice (a pod moving between slices) is one endpoint.
        slice("web-b", "web", &[("http", 8080)], &[("127.1.1.2", Some(true))]),
    ];
    check(
        &table(&[web], &slices),
        &[("web/http", &["127.96.0.20:80"], &["127.1.1.2:8080", "127.1.1.4:8080"])],
    );
}

#[test]
fn a_service_without_slices_listens_with_no_endpoints() {
    // Connections are then accepted and closed, as with any Service whose pods are not ready.
    let web = service("web", json!({"clusterIP": "127.96.0.20", "ports": [{"name": "http", "port": 80}]}));
    check(&table(&[web], &[]), &[("web/http", &["127.96.0.20:80"], &[])]);
}

#[test]
fn headless_external_name_dns_and_udp_services_get_no_listener() {
    let services = [
        service("headless", json!({"clusterIP": "None", "ports": [{"port": 80}]})),
        service("external", json!({"type": "ExternalName", "externalName": "example.com"})),
        service("dns", json!({"clusterIP": "127.96.0.10", "ports": [{"name": "dns-tcp", "port": 53}]})),
        service("pending", json!({"ports": [{"port": 80}]})),
        service(
            "mixed",
            json!({"clusterIP": "127.96.0.30", "ports": [
                {"name": "udp", "port": 53, "protocol": "UDP"},
                {"name": "tcp", "port": 53, "protocol": "TCP"},
            ]}),
        ),
    ];
    let slices = [slice("headless-a", "headless", &[("", 80)], &[("127.1.1.2", Some(true))])];
    check(&table(&services, &slices), &[("mixed/tcp", &["127.96.0.30:53"], &[])]);
}

#[test]
fn the_dns_address_is_left_alone_only_when_this_agent_serves_dns_there() {
    // Another service CIDR puts kube-dns elsewhere: the agent is told where by --cluster-dns.
    let dns = service("dns", json!({"clusterIP": "10.0.0.10", "ports": [{"name": "dns-tcp", "port": 53}]}));
    let elsewhere = NodeAddresses { node_ip: NODE_IP, cluster_dns: Some("10.0.0.10".parse().unwrap()) };
    assert!(Table::compute([&dns], [], elsewhere).entries.is_empty());
    let without_dns = NodeAddresses { node_ip: NODE_IP, cluster_dns: None };
    check(&Table::compute([&dns], [], without_dns), &[("dns/dns-tcp", &["10.0.0.10:53"], &[])]);
}

#[test]
fn node_ports_listen_on_the_node_ip_too() {
    let services = [
        service(
            "web",
            json!({"type": "NodePort", "clusterIP": "127.96.0.20", "ports": [{"port": 80, "nodePort": 30080}]}),
        ),
        // A ClusterIP Service with a stray nodePort does not open it.
        service("inner", json!({"clusterIP": "127.96.0.21", "ports": [{"port": 80, "nodePort": 30081}]})),
    ];
    check(
        &table(&services, &[]),
        &[("inner/", &["127.96.0.21:80"], &[]), ("web/", &["127.96.0.20:80", "127.0.0.1:30080"], &[])],
    );
}

#[test]
fn session_affinity_timeout_defaults_to_three_hours() {
    let services = [
        service(
            "default-timeout",
            json!({"clusterIP": "127.96.0.20", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}),
        ),
        service(
            "short",
            json!({"clusterIP": "127.96.0.21", "sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "ports": [{"port": 80}]}),
        ),
        service(
            "none",
            json!({"clusterIP": "127.96.0.22", "sessionAffinity": "None", "ports": [{"port": 80}]}),
        ),
    ];
    let table = table(&services, &[]);
    let affinity = |name: &str| table.entries[&key(name, "")].route.affinity;
    assert_eq!(affinity("default-timeout"), Some(AFFINITY_TIMEOUT_DEFAULT));
    assert_eq!(affinity("short"), Some(Duration::from_secs(60)));
    assert_eq!(affinity("none"), None);
}

fn route(endpoints: &[&str], affinity: Option<Duration>) -> Route {
    Route { service: key("web", ""), endpoints: addresses(endpoints), affinity }
}

#[test]
fn diff_opens_closes_and_updates_listeners() {
    let old = BTreeMap::from([
        (address("127.96.0.20:80"), route(&["127.1.1.2:8080"], None)),
        (address("127.96.0.21:80"), route(&["127.1.1.3:8080"], None)),
        (address("127.96.0.22:80"), route(&["127.1.1.4:8080"], None)),
    ]);
    let new = BTreeMap::from([
        (address("127.96.0.20:80"), route(&["127.1.1.2:8080"], None)),
        (address("127.96.0.21:80"), route(&[], None)),
        (address("127.96.0.23:80"), route(&["127.1.1.5:8080"], None)),
    ]);
    let changes = diff(&old, &new);
    assert_eq!(changes.open.keys().copied().collect::<Vec<_>>(), addresses(&["127.96.0.23:80"]));
    assert_eq!(changes.close.iter().copied().collect::<Vec<_>>(), addresses(&["127.96.0.22:80"]));
    assert_eq!(changes.update.keys().copied().collect::<Vec<_>>(), addresses(&["127.96.0.21:80"]));
    assert_eq!(diff(&new, &new), ListenerDiff::default());
}

const CLIENT_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const CLIENT_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

#[test]
fn round_robin_spreads_connections_and_skips_failed_endpoints() {
    let route = route(&["127.1.1.2:80", "127.1.1.3:80", "127.1.1.4:80"], None);
    let mut balancer = Balancer::default();
    let now = Instant::now();
    let picks: Vec<SocketAddr> =
        (0..6).map(|_| balancer.pick(&route, CLIENT_A, &[], now).expect("an endpoint")).collect();
    assert_eq!(picks, addresses(&["127.1.1.2:80", "127.1.1.3:80", "127.1.1.4:80"]).repeat(2));
    // A retry never returns an endpoint that failed this connection, and gives up when all did.
    let failed = addresses(&["127.1.1.2:80", "127.1.1.3:80"]);
    for _ in 0..3 {
        assert_eq!(balancer.pick(&route, CLIENT_A, &failed, now), Some(address("127.1.1.4:80")));
    }
    assert_eq!(balancer.pick(&route, CLIENT_A, &route.endpoints, now), None);
    assert_eq!(Balancer::default().pick(&self::route(&[], None), CLIENT_A, &[], now), None);
}

#[test]
fn client_ip_affinity_holds_while_the_endpoint_stays_ready_and_the_client_returns_in_time() {
    let timeout = Duration::from_secs(60);
    let both = route(&["127.1.1.2:80", "127.1.1.3:80"], Some(timeout));
    let mut balancer = Balancer::default();
    let start = Instant::now();
    let first_a = balancer.pick(&both, CLIENT_A, &[], start).expect("an endpoint");
    let first_b = balancer.pick(&both, CLIENT_B, &[], start).expect("an endpoint");
    assert_ne!(first_a, first_b, "new clients are still spread");
    // Each return within the timeout renews it.
    for minute in 1..5 {
        let now = start + Duration::from_secs(59 * minute);
        assert_eq!(balancer.pick(&both, CLIENT_A, &[], now), Some(first_a));
    }
    // Its endpoint failing this connection moves the client, and it stays on the new one.
    let now = start + Duration::from_secs(300);
    let moved = balancer.pick(&both, CLIENT_A, &[first_a], now).expect("an endpoint");
    assert_ne!(moved, first_a);
    assert_eq!(balancer.pick(&both, CLIENT_A, &[], now), Some(moved));
    // Its endpoint leaving the route moves it too.
    let without = Route { endpoints: vec![first_a], ..both.clone() };
    assert_eq!(balancer.pick(&without, CLIENT_A, &[], now), Some(first_a));
    // Past the timeout, the client is a new one again: round-robin decides.
    let late = now + timeout;
    let picks: Vec<SocketAddr> =
        (0..2).map(|_| balancer.pick(&both, CLIENT_B, &[], late + timeout).expect("an endpoint")).collect();
    assert_eq!(picks[0], picks[1], "a new stickiness starts at the first pick");
}

#[test]
fn the_affinity_table_is_bounded() {
    let route = route(&["127.1.1.2:80"], Some(AFFINITY_TIMEOUT_DEFAULT));
    let mut balancer = Balancer::default();
    let start = Instant::now();
    for client in 0..AFFINITY_ENTRIES_MAX + 10 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + u32::try_from(client).expect("small")));
        let now = start + Duration::from_millis(u64::try_from(client).expect("small"));
        balancer.pick(&route, ip, &[], now);
    }
    assert_eq!(balancer.affinity_entries(), AFFINITY_ENTRIES_MAX);
}
