//! The service proxy's runtime on real loopback sockets, without a cluster: tiny tokio servers
//! are the endpoints, each answering a connection with its name and then echoing what it
//! reads; the proxy listens on a loopback address of its own per test.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::json;
use shoal_agent::proxy::runtime::{self, Proxy, ProxyConfig};
use shoal_agent::proxy::{NodeAddresses, Route, ServicePortName};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a test waits for what should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

/// An endpoint: writes `<name>\n` on each connection, then echoes until the client's end of
/// stream, then closes.
struct Backend {
    address: SocketAddr,
    _task: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a backend");
    let address = listener.local_addr().expect("the backend's address");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                writer.write_all(format!("{name}\n").as_bytes()).await?;
                tokio::io::copy(&mut reader, &mut writer).await?;
                writer.shutdown().await
            });
        }
    });
    Backend { address, _task: AbortOnDrop(task) }
}

/// A port free on `ip` just now, for the proxy to listen on.
fn free_address(ip: &str) -> SocketAddr {
    let ip: IpAddr = ip.parse().expect("an address");
    let listener = std::net::TcpListener::bind((ip, 0)).expect("binding a probe");
    listener.local_addr().expect("its address")
}

/// Connects through the proxy and returns the name of the endpoint that answered, or `None`
/// when the proxy closed the connection without one.
async fn which(address: SocketAddr) -> Option<String> {
    let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(address))
        .await
        .expect("connecting in time")
        .expect("the proxy accepts");
    answer(stream).await
}

/// The name of the endpoint that answered on a connection through the proxy.
async fn answer(stream: TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    match tokio::time::timeout(PATIENCE, reader.read_line(&mut line)).await.expect("an answer in time") {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_owned()),
    }
}

fn route(endpoints: &[SocketAddr]) -> Route {
    let service = ServicePortName { namespace: "default".into(), service: "web".into(), port: String::new() };
    Route { service, endpoints: endpoints.to_vec(), affinity: None }
}

#[tokio::test]
async fn balances_across_endpoints_and_retries_a_refused_connect() {
    // Three endpoints, one of them a closed port: every connection still reaches a live
    // endpoint (the refused connect is retried on the next one), and both live ones get some.
    let (one, two) = (backend("one").await, backend("two").await);
    let closed = free_address("127.0.0.1");
    let listen = free_address("127.97.0.1");
    let mut proxy = Proxy::new(runtime::CONNECTIONS_MAX);
    proxy.apply(BTreeMap::from([(listen, route(&[one.address, two.address, closed]))]));
    assert!(!proxy.has_unbound());
    let mut answers = BTreeMap::<String, usize>::new();
    for _ in 0..12 {
        let name = which(listen).await.expect("a live endpoint answers every connection");
        *answers.entry(name).or_default() += 1;
    }
    assert_eq!(answers.keys().map(String::as_str).collect::<Vec<_>>(), ["one", "two"], "{answers:?}");
}

#[tokio::test]
async fn a_half_closed_connection_gets_its_whole_answer() {
    // The client sends and closes its side; the endpoint reads to the end and only then
    // answers: the proxy must pass the half-close on and still carry the answer back.
    let one = backend("one").await;
    let listen = free_address("127.97.0.2");
    let mut proxy = Proxy::new(runtime::CONNECTIONS_MAX);
    proxy.apply(BTreeMap::from([(listen, route(&[one.address]))]));
    let mut stream = TcpStream::connect(listen).await.expect("connecting");
    stream.write_all(b"hello").await.expect("writing");
    stream.shutdown().await.expect("half-closing");
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .expect("the answer in time")
        .expect("reading");
    assert_eq!(answer, "one\nhello");
}

/// `length` bytes that differ from one offset to the next, so that a lost, repeated or
/// reordered stretch shows.
fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[tokio::test]
async fn mebibytes_cross_both_ways_around_a_half_close() {
    // The endpoint echoes what it reads and, after the client's end of stream, sends a trailer
    // of its own before closing. The client streams 4 MiB while reading the echo, half-closes
    // its side in the middle of the exchange, and must still get the whole echo and the whole
    // trailer, byte for byte.
    let request = pattern(4 << 20, 0x5a);
    let trailer = pattern(3 << 20, 0xa5);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the endpoint");
    let endpoint = listener.local_addr().expect("the endpoint's address");
    let endpoint_trailer = trailer.clone();
    let _endpoint = AbortOnDrop(tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else { return };
        let (mut reader, mut writer) = stream.split();
        tokio::io::copy(&mut reader, &mut writer).await.expect("echoing");
        writer.write_all(&endpoint_trailer).await.expect("writing the trailer");
        writer.shutdown().await.expect("closing");
    }));
    let listen = free_address("127.97.0.7");
    let mut proxy = Proxy::new(runtime::CONNECTIONS_MAX);
    proxy.apply(BTreeMap::from([(listen, route(&[endpoint]))]));
    assert!(!proxy.has_unbound());

    let mut stream = TcpStream::connect(listen).await.expect("connecting");
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(&request).await.expect("writing");
        writer.shutdown().await.expect("half-closing");
    };
    let mut received = Vec::new();
    let ((), read) =
        tokio::time::timeout(PATIENCE, async { tokio::join!(write, reader.read_to_end(&mut received)) })
            .await
            .expect("the exchange in time");
    read.expect("reading");
    let expected = [request, trailer].concat();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "the bytes differ from what was sent and the trailer");
}

#[tokio::test]
async fn a_service_without_endpoints_closes_connections_and_closed_listeners_stop() {
    let listen = free_address("127.97.0.3");
    let mut proxy = Proxy::new(runtime::CONNECTIONS_MAX);
    proxy.apply(BTreeMap::from([(listen, route(&[]))]));
    assert_eq!(which(listen).await, None);
    proxy.apply(BTreeMap::new());
    assert_eq!(proxy.listening().count(), 0);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(listen).await.is_ok() {
        assert!(Instant::now() < deadline, "the listener still accepts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn web_service(cluster_ip: SocketAddr) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": cluster_ip.ip().to_string(), "ports": [{"name": "http", "port": cluster_ip.port()}]},
    }))
    .expect("a service")
}

/// The Service's one slice, its endpoints all on 127.0.0.1 with their own ports (a slice
/// carries one port number per port name; two endpoints on one address take two slices).
fn web_slice(name: &str, endpoint: SocketAddr, ready: bool) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": endpoint.port()}],
        "endpoints": [{"addresses": [endpoint.ip().to_string()], "conditions": {"ready": ready}}],
    }))
    .expect("a slice")
}

#[tokio::test]
async fn an_endpoint_turned_not_ready_gets_no_new_connections_within_a_second() {
    // The proxy's own loop over reflector caches, fed by hand as the watches would: once the
    // slice says `two` is not ready, within a second every new connection goes to `one`.
    let (one, two) = (backend("one").await, backend("two").await);
    let listen = free_address("127.97.0.4");
    let (services, mut services_writer) = reflector::store::<Service>();
    let (slices, mut slices_writer) = reflector::store::<EndpointSlice>();
    let changed = Arc::new(Notify::new());
    services_writer.apply_watcher_event(&Event::Apply(web_service(listen)));
    slices_writer.apply_watcher_event(&Event::Apply(web_slice("web-one", one.address, true)));
    slices_writer.apply_watcher_event(&Event::Apply(web_slice("web-two", two.address, true)));
    let config = ProxyConfig {
        node: NodeAddresses { node_ip: "127.0.0.1".parse().expect("an address"), cluster_dns: None },
        connections_max: runtime::CONNECTIONS_MAX,
    };
    let _proxy = AbortOnDrop(tokio::spawn(runtime::run(config, services, slices, changed.clone())));
    changed.notify_one();

    // Both endpoints answer, alternately.
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !(seen.contains(&"one".to_owned()) && seen.contains(&"two".to_owned())) {
        assert!(Instant::now() < deadline, "both endpoints answer in time: {seen:?}");
        match TcpStream::connect(listen).await {
            Ok(stream) => seen.extend(answer(stream).await),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }

    slices_writer.apply_watcher_event(&Event::Apply(web_slice("web-two", two.address, false)));
    changed.notify_one();
    let changed_at = Instant::now();
    // Round-robin over two endpoints never answers `one` four times in a row.
    let mut in_a_row = 0;
    while in_a_row < 4 {
        assert!(changed_at.elapsed() < Duration::from_secs(1), "two still gets connections after 1 s");
        in_a_row = if which(listen).await.as_deref() == Some("one") { in_a_row + 1 } else { 0 };
    }
    for _ in 0..20 {
        assert_eq!(which(listen).await.as_deref(), Some("one"));
    }
}

#[tokio::test]
async fn an_address_in_use_is_bound_once_it_is_free() {
    // Another program holds the address (without SO_REUSEPORT): the proxy cannot listen, says
    // so, and binds it on a later try once the address is free.
    let listen = free_address("127.97.0.5");
    let squatter = std::net::TcpListener::bind(listen).expect("holding the address");
    let one = backend("one").await;
    let mut proxy = Proxy::new(runtime::CONNECTIONS_MAX);
    proxy.apply(BTreeMap::from([(listen, route(&[one.address]))]));
    assert!(proxy.has_unbound());
    assert_eq!(proxy.listening().count(), 0);
    drop(squatter);
    proxy.bind_unbound();
    assert!(!proxy.has_unbound());
    assert_eq!(which(listen).await.as_deref(), Some("one"));
}

#[tokio::test]
async fn agents_on_one_machine_share_a_listen_address() {
    // Two proxies (two agents) listen on the same address at once; both serve it.
    let one = backend("one").await;
    let listen = free_address("127.97.0.6");
    let mut first = Proxy::new(runtime::CONNECTIONS_MAX);
    let mut second = Proxy::new(runtime::CONNECTIONS_MAX);
    first.apply(BTreeMap::from([(listen, route(&[one.address]))]));
    second.apply(BTreeMap::from([(listen, route(&[one.address]))]));
    assert!(!first.has_unbound() && !second.has_unbound());
    for _ in 0..10 {
        assert_eq!(which(listen).await.as_deref(), Some("one"));
    }
    assert_eq!(first.listening().count() + second.listening().count(), 2);
}
