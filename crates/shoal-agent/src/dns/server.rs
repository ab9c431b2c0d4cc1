//! The cluster DNS server: DNS over UDP and TCP (RFC 1035, RFC 7766) on one address, answering
//! the cluster's zone with [`super::resolve`] and forwarding every other name to the host's
//! resolver.
//!
//! hickory-proto reads and writes the messages; the framing is a few lines over tokio's
//! sockets, which keeps every limit in one place (hickory-server's `Server` spawns a task per
//! datagram and per connection with no bound, and logs every query at info). The sockets are
//! bound with SO_REUSEADDR and SO_REUSEPORT: the agents of a local cluster all share one
//! cluster DNS address, and the kernel spreads the queries over them (they hold the same
//! caches, so any one answers alike).
//!
//! Names outside the zone go, as they came, to the first `nameserver` of the host's
//! `/etc/resolv.conf` over UDP, with a timeout ([`FORWARD_TIMEOUT`]); without one they are
//! REFUSED. A forwarded answer the upstream truncated is relayed truncated even to a TCP client:
//! the forwarder speaks only UDP.

#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{Answer, ClusterView, Resolution};

/// Queries answered or forwarded at once, over UDP and TCP together; further datagrams wait in
/// the socket's receive buffer (and are dropped by the kernel when it is full), further TCP
/// queries wait on their connection.
pub const QUERIES_IN_FLIGHT_MAX: usize = 256;
/// Open TCP connections at once; further ones wait in the listen backlog.
pub const TCP_CONNECTIONS_MAX: usize = 64;
/// The listen backlog of the TCP socket.
const TCP_BACKLOG: u32 = 128;
/// A TCP connection that sends no complete query for this long is closed (RFC 7766 asks for
/// seconds, not minutes).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the upstream resolver may take to answer a forwarded query before the client gets
/// SERVFAIL; glibc's resolver itself gives up after 5 s.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest UDP answer sent, whatever the client's EDNS buffer: 1232 bytes fits the IPv6
/// minimum MTU without fragments (DNS flag day 2020). Larger answers are truncated (TC), and the
/// client asks again over TCP.
pub const UDP_PAYLOAD_MAX: u16 = 1232;
/// The UDP answer size a client without EDNS accepts (RFC 1035).
const UDP_PAYLOAD_CLASSIC: u16 = 512;
/// The largest datagram read; a query is far smaller, and a longer one is malformed anyway.
const UDP_RECEIVE_BYTES_MAX: usize = 4096;
/// The largest answer read from the upstream resolver.
const FORWARD_RECEIVE_BYTES_MAX: usize = 65_535;
/// The pause after a failed `accept` (out of file descriptors, say), so as not to spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Where the server listens and where it forwards.
#[derive(Debug, Clone)]
pub struct DnsServerConfig {
    /// UDP and TCP listen here; port 0 picks a free port (the same one for both).
    pub listen: SocketAddr,
    /// The resolver of names outside the zone; `None` refuses them.
    pub upstream: Option<SocketAddr>,
}

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct DnsServer {
    /// The address UDP and TCP are bound to.
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds the UDP and TCP sockets and serves `cluster` on them.
pub async fn start<C>(config: DnsServerConfig, cluster: C) -> io::Result<DnsServer>
where
    C: ClusterView + Send + Sync + 'static,
{
    let (udp, tcp, addr) = bind_both(config.listen)?;
    let context = Arc::new(Context {
        cluster,
        zone: super::cluster_zone(),
        upstream: config.upstream,
        queries: Arc::new(Semaphore::new(QUERIES_IN_FLIGHT_MAX)),
    });
    let tasks =
        vec![tokio::spawn(serve_udp(Arc::new(udp), context.clone())), tokio::spawn(serve_tcp(tcp, context))];
    Ok(DnsServer { addr, tasks })
}

/// Ports tried, when `listen` names port 0, for one free for both UDP and TCP: the port the
/// UDP socket is given may be another socket's TCP port.
const FREE_PORT_ATTEMPTS_MAX: usize = 16;

/// A UDP and a TCP socket on one address: `listen`, or with port 0 one port free for both.
fn bind_both(listen: SocketAddr) -> io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let mut attempt = 0;
    loop {
        let udp = bind_udp(listen)?;
        let addr = udp.local_addr()?;
        match bind_tcp(addr) {
            Ok(tcp) => return Ok((udp, tcp, addr)),
            Err(error)
                if listen.port() == 0
                    && error.kind() == io::ErrorKind::AddrInUse
                    && attempt + 1 < FREE_PORT_ATTEMPTS_MAX =>
            {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The first `nameserver` of a resolv.conf that is not `own` (forwarding to ourselves would
/// loop), on port 53.
pub fn upstream_from_resolv_conf(text: &str, own: IpAddr) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .find(|ip| *ip != own && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The transport a query came over: it decides how large an answer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Send(Vec<u8>),
    /// Forward the query upstream; send `failure` (SERVFAIL) if that fails.
    Forward { failure: Vec<u8> },
    /// Send nothing: too short to have a header, or not a query at all.
    Ignore,
}

/// Decides the reply to the message `request`: the whole server but the sockets.
pub fn reply(
    request: &[u8],
    transport: Transport,
    cluster: &impl ClusterView,
    zone: &Name,
    can_forward: bool,
) -> Reply {
    let message = match Message::from_vec(request) {
        Ok(message) => message,
        Err(_) => return malformed(request),
    };
    if message.metadata.message_type != MessageType::Query {
        // Never answer an answer: that is how reflection loops start.
        return Reply::Ignore;
    }
    let limit = payload_limit(&message, transport);
    let error = |code| Reply::Send(encode(response_to(&message, code, can_forward), limit));
    if message.metadata.op_code != OpCode::Query {
        return error(ResponseCode::NotImp);
    }
    let [query] = message.queries.as_slice() else { return error(ResponseCode::FormErr) };
    if query.query_class() != DNSClass::IN {
        return error(ResponseCode::Refused);
    }
    match super::resolve(query.name(), query.query_type(), cluster, zone) {
        Resolution::Authoritative(answer) => {
            Reply::Send(encode(authoritative(&message, answer, can_forward), limit))
        }
        Resolution::Elsewhere if can_forward => Reply::Forward {
            failure: encode(response_to(&message, ResponseCode::ServFail, can_forward), limit),
        },
        Resolution::Elsewhere => error(ResponseCode::Refused),
    }
}

/// What the server shares between its tasks.
struct Context<C> {
    cluster: C,
    zone: Name,
    upstream: Option<SocketAddr>,
    queries: Arc<Semaphore>,
}

impl<C: ClusterView> Context<C> {
    /// The bytes to answer `request` with, if any.
    async fn answer(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        match reply(request, transport, &self.cluster, &self.zone, self.upstream.is_some()) {
            Reply::Send(bytes) => Some(bytes),
            Reply::Ignore => None,
            Reply::Forward { failure } => {
                let upstream = self.upstream?;
                Some(forward(request, upstream).await.unwrap_or(failure))
            }
        }
    }
}

async fn serve_udp<C: ClusterView + Send + Sync + 'static>(socket: Arc<UdpSocket>, context: Arc<Context<C>>) {
    let mut buffer = vec![0u8; UDP_RECEIVE_BYTES_MAX];
    loop {
        let permit = context.queries.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (length, source) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors of earlier sends surface here; the socket itself stays usable.
                tracing::debug!(%error, "receiving a DNS query");
                continue;
            }
        };
        let request = buffer[..length].to_vec();
        let socket = socket.clone();
        let context = context.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(bytes) = context.answer(&request, Transport::Udp).await {
                let _ = socket.send_to(&bytes, source).await;
            }
        });
    }
}

async fn serve_tcp<C: ClusterView + Send + Sync + 'static>(listener: TcpListener, context: Arc<Context<C>>) {
    let connections = Arc::new(Semaphore::new(TCP_CONNECTIONS_MAX));
    loop {
        let permit = connections.clone().acquire_owned().await.expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "accepting a DNS connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let context = context.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, &context).await;
        });
    }
}

/// Answers the queries of one TCP connection in order, until it closes, idles or breaks.
async fn serve_connection<C: ClusterView>(mut stream: TcpStream, context: &Context<C>) {
    loop {
        let mut length = [0u8; 2];
        if !matches!(tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut length)).await, Ok(Ok(_)))
        {
            return;
        }
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if !matches!(tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut request)).await, Ok(Ok(_)))
        {
            return;
        }
        let permit = context.queries.acquire().await.expect("the semaphore is never closed");
        let answer = context.answer(&request, Transport::Tcp).await;
        drop(permit);
        // A message without a header breaks the stream's framing too: close it.
        let Some(answer) = answer else { return };
        let Ok(length) = u16::try_from(answer.len()) else { return };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&answer);
        if !matches!(tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
}

/// Sends `request` to `upstream` from a fresh socket (a random source port) and returns its
/// answer, or `None` on an error or after [`FORWARD_TIMEOUT`].
async fn forward(request: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await.ok()?;
    // Connected: the kernel drops datagrams from anyone but the upstream.
    socket.connect(upstream).await.ok()?;
    socket.send(request).await.ok()?;
    let mut buffer = vec![0u8; FORWARD_RECEIVE_BYTES_MAX];
    let answer = tokio::time::timeout(FORWARD_TIMEOUT, async {
        loop {
            let length = socket.recv(&mut buffer).await.ok()?;
            // Only the answer to this query, by its id.
            if length >= 2 && buffer[..2] == request[..2] {
                return Some(buffer[..length].to_vec());
            }
        }
    });
    answer.await.ok().flatten()
}

/// FORMERR for a message whose header is readable but whose rest is not; nothing otherwise.
fn malformed(request: &[u8]) -> Reply {
    /// The QR bit of the header's third byte: set on answers.
    const RESPONSE_BIT: u8 = 0x80;
    if request.len() < 12 || request[2] & RESPONSE_BIT != 0 {
        return Reply::Ignore;
    }
    let id = u16::from_be_bytes([request[0], request[1]]);
    let op_code = OpCode::from_u8((request[2] >> 3) & 0x0f);
    let message = Message::error_msg(id, op_code, ResponseCode::FormErr);
    Reply::Send(encode(message, UDP_PAYLOAD_CLASSIC))
}

/// The answer to `request` with `code` and no records.
fn response_to(request: &Message, code: ResponseCode, can_forward: bool) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.recursion_available = can_forward;
    response.metadata.response_code = code;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_PAYLOAD_MAX);
        response.set_edns(edns);
    }
    response
}

fn authoritative(request: &Message, answer: Answer, can_forward: bool) -> Message {
    let mut response = response_to(request, answer.code, can_forward);
    response.metadata.authoritative = true;
    response.add_answers(answer.answers);
    response.add_authorities(answer.authorities);
    response.add_additionals(answer.additionals);
    response
}

/// How large an answer to `request` may be.
fn payload_limit(request: &Message, transport: Transport) -> u16 {
    match (transport, &request.edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, Some(edns)) => edns.max_payload().clamp(UDP_PAYLOAD_CLASSIC, UDP_PAYLOAD_MAX),
        (Transport::Udp, None) => UDP_PAYLOAD_CLASSIC,
    }
}

/// The bytes of `message`, truncated (TC, the records dropped) if longer than `limit`.
fn encode(message: Message, limit: u16) -> Vec<u8> {
    let bytes = match message.to_vec() {
        Ok(bytes) if bytes.len() <= usize::from(limit) => return bytes,
        Ok(bytes) => bytes,
        // A record that cannot be written (say a name too long once appended): say so.
        Err(error) => {
            tracing::debug!(%error, "encoding a DNS answer");
            let mut failed = message.truncate();
            failed.metadata.truncation = false;
            failed.metadata.response_code = ResponseCode::ServFail;
            return failed.to_vec().unwrap_or_default();
        }
    };
    tracing::trace!(bytes = bytes.len(), limit, "truncating a DNS answer");
    message.truncate().to_vec().unwrap_or_default()
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use rustix::net::{AddressFamily, SocketType};
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let socket = rustix::net::socket(family, SocketType::DGRAM, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(&socket, true)?;
    rustix::net::sockopt::set_socket_reuseport(&socket, true)?;
    rustix::net::bind(&socket, &addr)?;
    let socket = std::net::UdpSocket::from(socket);
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(TCP_BACKLOG)
}
