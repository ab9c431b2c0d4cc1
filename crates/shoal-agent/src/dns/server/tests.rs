//! The server over real sockets on loopback: queries built with hickory-proto, sent over UDP
//! and TCP, answers decoded back.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use super::{DnsServer, DnsServerConfig, start, upstream_from_resolv_conf};
use crate::dns::tests::{Cluster, cluster};

/// How long a test waits for an answer that should come.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure that no answer comes.
const SILENCE: Duration = Duration::from_millis(300);

async fn serve(cluster: Cluster, upstream: Option<SocketAddr>) -> DnsServer {
    let config = DnsServerConfig { listen: "127.0.0.1:0".parse().unwrap(), upstream };
    start(config, cluster).await.expect("the server binds a free loopback port")
}

fn query(name: &str, query_type: RecordType) -> Message {
    let mut message = Message::query();
    message.add_query(hickory_proto::op::Query::query(Name::from_ascii(name).unwrap(), query_type));
    message.metadata.recursion_desired = true;
    message
}

async fn udp_exchange(server: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(request, server).await.unwrap();
    let mut buffer = vec![0u8; 65_535];
    let wait = if request.len() < 12 { SILENCE } else { ANSWER_TIMEOUT };
    let length = tokio::time::timeout(wait, socket.recv(&mut buffer)).await.ok()?.unwrap();
    Some(buffer[..length].to_vec())
}

async fn ask_udp(server: SocketAddr, message: &Message) -> Message {
    let answer = udp_exchange(server, &message.to_vec().unwrap()).await.expect("an answer over UDP");
    let answer = Message::from_vec(&answer).unwrap();
    assert_eq!(answer.metadata.id, message.metadata.id);
    answer
}

async fn ask_tcp(server: SocketAddr, messages: &[Message]) -> Vec<Message> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut answers = Vec::new();
    // Several queries on one connection, answered in order.
    for message in messages {
        let bytes = message.to_vec().unwrap();
        stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut length = [0u8; 2];
        tokio::time::timeout(ANSWER_TIMEOUT, stream.read_exact(&mut length)).await.unwrap().unwrap();
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut answer).await.unwrap();
        answers.push(Message::from_vec(&answer).unwrap());
    }
    answers
}

fn addresses(message: &Message) -> Vec<String> {
    let mut addresses: Vec<String> = message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    addresses.sort();
    addresses
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    // The same questions over both transports get the resolver's answers, authoritative.
    let server = serve(cluster(), None).await;
    let answer = ask_udp(server.addr, &query("web.default.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(addresses(&answer), ["127.96.0.12"]);

    let answers = ask_tcp(
        server.addr,
        &[
            query("db.default.svc.cluster.local.", RecordType::A),
            query("nope.default.svc.cluster.local.", RecordType::A),
            query("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
        ],
    )
    .await;
    assert_eq!(addresses(&answers[0]), ["127.1.0.5", "127.1.0.6"]);
    assert_eq!(answers[1].metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(answers[1].authorities.len(), 1, "the zone's SOA for negative caching");
    let RData::SRV(srv) = &answers[2].answers[0].data else { panic!("an SRV answer: {:?}", answers[2]) };
    assert_eq!((srv.port, srv.target.to_string().as_str()), (80, "web.default.svc.cluster.local."));
}

#[tokio::test]
async fn malformed_messages_get_formerr_or_nothing_and_the_server_goes_on() {
    // A readable header with garbage after it is answered FORMERR; fewer bytes than a header,
    // and answers (QR set), get nothing. A good query afterwards is still answered.
    let server = serve(cluster(), None).await;
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0xff; 7]);
    let answer = udp_exchange(server.addr, &garbage).await.expect("FORMERR");
    let answer = Message::from_vec(&answer).unwrap();
    assert_eq!(answer.metadata.id, 0x1234);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    assert_eq!(udp_exchange(server.addr, &[1, 2, 3]).await, None);
    let mut response = query("web.default.svc.cluster.local.", RecordType::A);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&response.to_vec().unwrap(), server.addr).await.unwrap();
    let mut buffer = [0u8; 512];
    assert!(
        tokio::time::timeout(SILENCE, socket.recv(&mut buffer)).await.is_err(),
        "an answer is never answered"
    );

    let answer = ask_udp(server.addr, &query("web.default.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(addresses(&answer), ["127.96.0.12"]);
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    // A headless Service with 100 endpoints is over 512 bytes: a UDP client without EDNS gets
    // TC and no records, then all of them over TCP; with EDNS it gets up to 1232 bytes.
    let endpoints: Vec<String> = (1..=100).map(|last| format!("127.1.1.{last}")).collect();
    let endpoints: Vec<(&str, Option<&str>, bool)> =
        endpoints.iter().map(|ip| (ip.as_str(), None, true)).collect();
    let cluster = Cluster::default().service("default", "many", json!({"clusterIP": "None"})).slice(
        "default",
        "many",
        json!([]),
        &endpoints,
    );
    let server = serve(cluster, None).await;
    let question = query("many.default.svc.cluster.local.", RecordType::A);
    let answer = ask_udp(server.addr, &question).await;
    assert!(answer.metadata.truncation);
    assert!(answer.answers.is_empty());

    let mut with_edns = question.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    with_edns.set_edns(edns);
    let answer = ask_udp(server.addr, &with_edns).await;
    assert!(answer.metadata.truncation, "100 A records are over 1232 bytes too");

    let answers = ask_tcp(server.addr, &[question]).await;
    assert!(!answers[0].metadata.truncation);
    assert_eq!(answers[0].answers.len(), 100);
}

#[tokio::test]
async fn other_names_are_forwarded_upstream_or_refused() {
    // A fake upstream answers one query with a recognisable address; without an upstream the
    // server refuses names that are not the cluster's.
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        let (length, client) = upstream.recv_from(&mut buffer).await.unwrap();
        let request = Message::from_vec(&buffer[..length]).unwrap();
        let mut answer = Message::response(request.metadata.id, request.metadata.op_code);
        answer.add_queries(request.queries.clone());
        let name = request.queries[0].name().clone();
        answer.add_answer(hickory_proto::rr::Record::from_rdata(
            name,
            60,
            RData::A(hickory_proto::rr::rdata::A([192, 0, 2, 7].into())),
        ));
        upstream.send_to(&answer.to_vec().unwrap(), client).await.unwrap();
    });
    let server = serve(cluster(), Some(upstream_addr)).await;
    let answer = ask_udp(server.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(addresses(&answer), ["192.0.2.7"]);
    fake.await.unwrap();

    let refusing = serve(cluster(), None).await;
    let answer = ask_udp(refusing.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn servers_share_one_address() {
    // Two agents on one machine bind the same cluster DNS address; both start.
    let first = serve(cluster(), None).await;
    let config = DnsServerConfig { listen: first.addr, upstream: None };
    let second = start(config, cluster()).await.expect("SO_REUSEPORT lets a second server bind");
    assert_eq!(second.addr, first.addr);
    let answer = ask_udp(first.addr, &query("web.default.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(addresses(&answer), ["127.96.0.12"]);
}

#[test]
fn the_upstream_is_the_first_other_nameserver() {
    let own = "127.96.0.10".parse().unwrap();
    let text =
        "# comment\nsearch example.com\nnameserver 127.96.0.10\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
    assert_eq!(upstream_from_resolv_conf(text, own), Some("10.0.0.2:53".parse().unwrap()));
    assert_eq!(upstream_from_resolv_conf("nameserver 127.96.0.10\n", own), None);
    assert_eq!(upstream_from_resolv_conf("", own), None);
}
