//! The resolver's answers, record by record, over a small cluster built in memory.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::{ClusterView, Resolution, SlicesByService, cluster_zone, resolve};

/// Services and EndpointSlices held in plain lists.
#[derive(Default)]
pub(super) struct Cluster {
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    /// A view whose caches have not listed yet.
    unsynced: bool,
}

impl ClusterView for Cluster {
    fn synced(&self) -> bool {
        !self.unsynced
    }

    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services
            .iter()
            .find(|service| {
                service.metadata.namespace.as_deref() == Some(namespace)
                    && service.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }

    fn services(&self) -> Vec<Arc<Service>> {
        self.services.clone()
    }

    fn endpoint_slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        SlicesByService::new(self.slices.iter().cloned()).of(namespace, service)
    }
}

impl Cluster {
    pub(super) fn service(mut self, namespace: &str, name: &str, spec: serde_json::Value) -> Self {
        let service = json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec});
        self.services.push(Arc::new(serde_json::from_value(service).expect("a Service")));
        self
    }

    /// A slice of `service` with `endpoints` as (address, hostname, ready).
    pub(super) fn slice(
        mut self,
        namespace: &str,
        service: &str,
        ports: serde_json::Value,
        endpoints: &[(&str, Option<&str>, bool)],
    ) -> Self {
        let endpoints: Vec<_> = endpoints
            .iter()
            .map(|(ip, hostname, ready)| {
                json!({"addresses": [ip], "hostname": hostname, "conditions": {"ready": ready}})
            })
            .collect();
        let name = format!("{service}-{}", self.slices.len());
        let slice = json!({
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        });
        self.slices.push(Arc::new(serde_json::from_value(slice).expect("an EndpointSlice")));
        self
    }
}

/// The example cluster: a normal, a headless and an ExternalName Service in `default`.
pub(super) fn cluster() -> Cluster {
    Cluster::default()
        .service(
            "default",
            "web",
            json!({"clusterIP": "127.96.0.12", "clusterIPs": ["127.96.0.12"],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                             {"name": "dns", "port": 53, "protocol": "UDP"},
                             {"port": 9000}]}),
        )
        .service("default", "db", json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}))
        .slice(
            "default",
            "db",
            json!([{"name": "pg", "port": 15432, "protocol": "TCP"}]),
            &[
                ("127.1.0.5", Some("db-0"), true),
                ("127.1.0.6", None, true),
                ("127.1.0.7", Some("db-2"), false),
            ],
        )
        .service("default", "docs", json!({"type": "ExternalName", "externalName": "docs.example.com"}))
        .service("other", "api", json!({"clusterIP": "127.96.0.40", "ports": [{"port": 443}]}))
}

/// Asks `question` of the cluster: the response code, then the answers and the additionals as
/// zone-file lines; `None` when the name is not the cluster's.
fn ask(
    cluster: &Cluster,
    question: &str,
    query_type: RecordType,
) -> Option<(ResponseCode, Vec<String>, Vec<String>)> {
    let name = Name::from_ascii(question).expect("a valid name");
    match resolve(&name, query_type, cluster, &cluster_zone()) {
        Resolution::Elsewhere => None,
        Resolution::Authoritative(answer) => {
            let lines = |records: Vec<hickory_proto::rr::Record>| {
                let mut lines: Vec<String> = records.iter().map(ToString::to_string).collect();
                lines.sort();
                lines
            };
            if answer.answers.is_empty() && answer.code != ResponseCode::ServFail {
                // Negative answers carry the zone's SOA, for negative caching.
                assert_eq!(answer.authorities.len(), 1, "{question}: {answer:?}");
                assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);
            }
            Some((answer.code, lines(answer.answers), lines(answer.additionals)))
        }
    }
}

fn check(question: &str, query_type: RecordType, code: ResponseCode, answers: &[&str], additionals: &[&str]) {
    let expected = Some((
        code,
        answers.iter().map(ToString::to_string).collect(),
        additionals.iter().map(ToString::to_string).collect(),
    ));
    assert_eq!(ask(&cluster(), question, query_type), expected, "{question} {query_type}");
}

fn check_records(question: &str, query_type: RecordType, answers: &[&str]) {
    check(question, query_type, ResponseCode::NoError, answers, &[]);
}

fn check_nodata(question: &str, query_type: RecordType) {
    check(question, query_type, ResponseCode::NoError, &[], &[]);
}

fn check_nxdomain(question: &str, query_type: RecordType) {
    check(question, query_type, ResponseCode::NXDomain, &[], &[]);
}

#[test]
fn a_service_answers_its_cluster_ip() {
    check_records(
        "web.default.svc.cluster.local.",
        RecordType::A,
        &["web.default.svc.cluster.local. 5 IN A 127.96.0.12"],
    );
    // Names are case-insensitive; the answer keeps the question's spelling.
    check_records(
        "Web.Default.SVC.cluster.local.",
        RecordType::A,
        &["Web.Default.SVC.cluster.local. 5 IN A 127.96.0.12"],
    );
}

#[test]
fn a_headless_service_answers_its_ready_endpoints() {
    // 127.1.0.7 is not ready.
    check_records(
        "db.default.svc.cluster.local.",
        RecordType::A,
        &["db.default.svc.cluster.local. 5 IN A 127.1.0.5", "db.default.svc.cluster.local. 5 IN A 127.1.0.6"],
    );
    check_records(
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
        &["db-0.db.default.svc.cluster.local. 5 IN A 127.1.0.5"],
    );
    // An endpoint without a hostname is named by its address.
    check_records(
        "127-1-0-6.db.default.svc.cluster.local.",
        RecordType::A,
        &["127-1-0-6.db.default.svc.cluster.local. 5 IN A 127.1.0.6"],
    );
    check_nxdomain("db-2.db.default.svc.cluster.local.", RecordType::A);
    // Endpoint names exist only under headless Services.
    check_nxdomain("db-0.web.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn a_headless_service_without_ready_endpoints_does_not_exist() {
    let cluster = Cluster::default().service("default", "db", json!({"clusterIP": "None"})).slice(
        "default",
        "db",
        json!([]),
        &[("127.1.0.7", None, false)],
    );
    let answer = ask(&cluster, "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answer, Some((ResponseCode::NXDomain, vec![], vec![])));
    // publishNotReadyAddresses counts every endpoint as ready.
    let cluster = Cluster::default()
        .service("default", "db", json!({"clusterIP": "None", "publishNotReadyAddresses": true}))
        .slice("default", "db", json!([]), &[("127.1.0.7", None, false)]);
    let answer = ask(&cluster, "db.default.svc.cluster.local.", RecordType::A);
    let expected = vec!["db.default.svc.cluster.local. 5 IN A 127.1.0.7".to_owned()];
    assert_eq!(answer, Some((ResponseCode::NoError, expected, vec![])));
}

#[test]
fn srv_records_name_the_service_or_each_endpoint() {
    check(
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        ResponseCode::NoError,
        &["_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."],
        &["web.default.svc.cluster.local. 5 IN A 127.96.0.12"],
    );
    check(
        "_dns._udp.web.default.svc.cluster.local.",
        RecordType::SRV,
        ResponseCode::NoError,
        &["_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."],
        &["web.default.svc.cluster.local. 5 IN A 127.96.0.12"],
    );
    // A headless Service: one per ready endpoint, with the endpoint's port.
    check(
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
        ResponseCode::NoError,
        &[
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 127-1-0-6.db.default.svc.cluster.local.",
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 db-0.db.default.svc.cluster.local.",
        ],
        &[
            "127-1-0-6.db.default.svc.cluster.local. 5 IN A 127.1.0.6",
            "db-0.db.default.svc.cluster.local. 5 IN A 127.1.0.5",
        ],
    );
    // The port's protocol is part of the name; unknown ports do not exist.
    check_nxdomain("_http._udp.web.default.svc.cluster.local.", RecordType::SRV);
    check_nxdomain("_grpc._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    // `_tcp.<service>` exists when the Service has named TCP ports.
    check_nodata("_tcp.web.default.svc.cluster.local.", RecordType::SRV);
    // An SRV name asked for an address holds none.
    check_nodata("_http._tcp.web.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn an_external_name_service_is_a_cname() {
    for query_type in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        check_records(
            "docs.default.svc.cluster.local.",
            query_type,
            &["docs.default.svc.cluster.local. 5 IN CNAME docs.example.com."],
        );
    }
}

#[test]
fn names_that_do_not_exist_are_nxdomain() {
    check_nxdomain("nope.default.svc.cluster.local.", RecordType::A);
    check_nxdomain("web.nope.svc.cluster.local.", RecordType::A);
    check_nxdomain("nope.cluster.local.", RecordType::A);
    check_nxdomain("a.b.web.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn search_domains_of_another_namespace_find_nothing() {
    // A pod in `other` asking for `web` tries `web.other.svc.cluster.local` first: not there.
    check_nxdomain("web.other.svc.cluster.local.", RecordType::A);
    // With ndots:5 a full name is tried under the search domains first; those do not exist.
    check_nxdomain("web.default.svc.cluster.local.default.svc.cluster.local.", RecordType::A);
    // `api` lives in `other`.
    check_nxdomain("api.default.svc.cluster.local.", RecordType::A);
    check_records(
        "api.other.svc.cluster.local.",
        RecordType::A,
        &["api.other.svc.cluster.local. 5 IN A 127.96.0.40"],
    );
}

#[test]
fn existing_names_without_the_type_are_nodata() {
    // An IPv4 Service has no AAAA record.
    check_nodata("web.default.svc.cluster.local.", RecordType::AAAA);
    check_nodata("web.default.svc.cluster.local.", RecordType::MX);
    check_nodata("db-0.db.default.svc.cluster.local.", RecordType::AAAA);
    // The names above the Services exist.
    check_nodata("default.svc.cluster.local.", RecordType::A);
    check_nodata("svc.cluster.local.", RecordType::A);
    check_nodata("cluster.local.", RecordType::A);
}

#[test]
fn the_zone_has_an_soa_and_a_schema_version() {
    let answer = ask(&cluster(), "cluster.local.", RecordType::SOA).expect("in the zone");
    assert_eq!(answer.0, ResponseCode::NoError);
    assert_eq!(answer.1.len(), 1);
    assert!(answer.1[0].starts_with("cluster.local. 5 IN SOA ns.dns.cluster.local."), "{answer:?}");
    check_records(
        "dns-version.cluster.local.",
        RecordType::TXT,
        &["dns-version.cluster.local. 5 IN TXT 1.1.0"],
    );
}

#[test]
fn pod_records_answer_the_dashed_address() {
    check_records(
        "127-1-0-9.default.pod.cluster.local.",
        RecordType::A,
        &["127-1-0-9.default.pod.cluster.local. 5 IN A 127.1.0.9"],
    );
    check_nxdomain("not-an-address.default.pod.cluster.local.", RecordType::A);
}

#[test]
fn reverse_names_point_at_services_and_headless_endpoints() {
    check_records(
        "12.0.96.127.in-addr.arpa.",
        RecordType::PTR,
        &["12.0.96.127.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."],
    );
    check_records(
        "5.0.1.127.in-addr.arpa.",
        RecordType::PTR,
        &["5.0.1.127.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."],
    );
    // Addresses that are not the cluster's are the upstream's to answer.
    assert_eq!(ask(&cluster(), "1.2.0.10.in-addr.arpa.", RecordType::PTR), None);
}

#[test]
fn nothing_is_denied_before_the_caches_have_listed() {
    // An empty cache would make every Service NXDOMAIN; SERVFAIL makes clients try again.
    let cluster = Cluster { unsynced: true, ..cluster() };
    let answer = ask(&cluster, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answer, Some((ResponseCode::ServFail, vec![], vec![])));
    assert_eq!(ask(&cluster, "example.com.", RecordType::A), None);
}

#[test]
fn names_outside_the_zone_are_answered_elsewhere() {
    assert_eq!(ask(&cluster(), "example.com.", RecordType::A), None);
    assert_eq!(ask(&cluster(), "cluster.local.example.com.", RecordType::A), None);
    assert_eq!(ask(&cluster(), "local.", RecordType::A), None);
}

/// The resolver a pod in `default` with `spec` gets from a node serving cluster DNS at
/// 127.96.0.10, as resolv.conf text; `None` keeps the node's.
fn pod_resolv_conf(spec: serde_json::Value, cluster_dns: Option<&str>) -> Option<String> {
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}))
            .expect("a Pod");
    let cluster_dns = cluster_dns.map(|ip| ip.parse().expect("an address"));
    super::pod_dns_config(&pod, cluster_dns).map(|config| config.resolv_conf())
}

#[test]
fn pods_get_the_cluster_dns_by_their_dns_policy() {
    let cluster_first = "nameserver 127.96.0.10\n\
                         search default.svc.cluster.local svc.cluster.local cluster.local\n\
                         options ndots:5\n";
    let containers = json!([{"name": "c"}]);
    let dns = Some("127.96.0.10");
    assert_eq!(pod_resolv_conf(json!({"containers": containers}), dns).as_deref(), Some(cluster_first));
    let policy = |policy: &str| json!({"containers": containers, "dnsPolicy": policy});
    assert_eq!(pod_resolv_conf(policy("ClusterFirst"), dns).as_deref(), Some(cluster_first));
    assert_eq!(pod_resolv_conf(policy("Default"), dns), None);
    // Without a cluster DNS, ClusterFirst falls back to the node's resolver, as kubelet does.
    assert_eq!(pod_resolv_conf(policy("ClusterFirst"), None), None);
    // Pods on the host's network use the host's resolver unless they ask otherwise.
    let host = |policy: &str| json!({"containers": containers, "dnsPolicy": policy, "hostNetwork": true});
    assert_eq!(pod_resolv_conf(host("ClusterFirst"), dns), None);
    assert_eq!(pod_resolv_conf(host("ClusterFirstWithHostNet"), dns).as_deref(), Some(cluster_first));
}

#[test]
fn a_pods_dns_config_extends_or_replaces_the_cluster_dns() {
    let extra = json!({"nameservers": ["10.0.0.9"], "searches": ["example.com"],
                       "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]});
    let spec = json!({"containers": [{"name": "c"}], "dnsConfig": extra});
    assert_eq!(
        pod_resolv_conf(spec, Some("127.96.0.10")).as_deref(),
        Some(
            "nameserver 127.96.0.10\nnameserver 10.0.0.9\n\
             search default.svc.cluster.local svc.cluster.local cluster.local example.com\n\
             options ndots:2 edns0\n"
        )
    );
    let spec = json!({"containers": [{"name": "c"}], "dnsPolicy": "None", "dnsConfig": extra});
    assert_eq!(
        pod_resolv_conf(spec, Some("127.96.0.10")).as_deref(),
        Some("nameserver 10.0.0.9\nsearch example.com\noptions ndots:2 edns0\n")
    );
}

// The agent's view answers from an index of the slices that a change to the cache makes it
// build again: a slice added after the first question is seen by the next one.
#[tokio::test]
async fn the_agents_view_follows_slice_changes() {
    use std::sync::atomic::{AtomicU64, Ordering};

    use kube::runtime::{reflector, watcher};

    use super::ReflectedCluster;

    let example = cluster();
    let (services, mut service_writer) = reflector::store();
    let (slices, mut slice_writer) = reflector::store();
    for service in &example.services {
        service_writer.apply_watcher_event(&watcher::Event::Apply(Service::clone(service)));
    }
    let generation = Arc::new(AtomicU64::new(0));
    let view = ReflectedCluster::new(services, slices, generation.clone());
    let names = |view: &ReflectedCluster, service: &str| -> Vec<String> {
        let slices = view.endpoint_slices_of("default", service);
        slices.iter().map(|slice| slice.metadata.name.clone().unwrap_or_default()).collect()
    };
    assert!(names(&view, "db").is_empty());

    let [first] = &example.slices[..] else { panic!("the example cluster has one slice") };
    slice_writer.apply_watcher_event(&watcher::Event::Apply(EndpointSlice::clone(first)));
    generation.fetch_add(1, Ordering::Release);
    assert_eq!(names(&view, "db"), ["db-0"]);
    assert!(names(&view, "web").is_empty(), "another Service's slices are not this one's");

    let second = Cluster::default().slice("default", "db", json!([]), &[("127.1.0.9", None, true)]);
    let mut second = EndpointSlice::clone(&second.slices[0]);
    second.metadata.name = Some("db-1".into());
    slice_writer.apply_watcher_event(&watcher::Event::Apply(second));
    generation.fetch_add(1, Ordering::Release);
    let mut seen = names(&view, "db");
    seen.sort();
    assert_eq!(seen, ["db-0", "db-1"]);
}
