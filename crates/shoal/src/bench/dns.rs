//! `shoal bench dns`: the agent's cluster DNS server in queries per second and latency, and
//! dnsmasq serving the same names from a hosts file as the anchor, in one run.
//!
//! No cluster: the bench starts the agent's DNS server ([`shoal_agent::dns::server::start`])
//! in-process on a free port of 127.0.0.1 over a fixed snapshot of `--services` Services in
//! the namespace `bench` and their EndpointSlices, held as the agent's caches hold them. Every
//! [`HEADLESS_EVERY`]th Service is headless with [`HEADLESS_ENDPOINTS`] ready endpoints; the
//! others have a ClusterIP and [`CLUSTER_IP_ENDPOINTS`] endpoints. The clients run in the same
//! process and tokio runtime as the server (dnsmasq is a process of its own, single-threaded).
//!
//! Each workload cycles over the snapshot's names, one question per query:
//! - `A` of a Service's full name, `svc-<i>.bench.svc.cluster.local.`, as a pod's resolver
//!   sends it once its search path has expanded a short name;
//! - `SRV` of its named port, `_http._tcp.svc-<i>.bench.svc.cluster.local.`;
//! - `A` of a headless Service: every ready endpoint's address;
//! - `A` of a name that does not exist: NXDOMAIN.
//!
//! Each client is a UDP socket with one query in flight, waiting at most [`QUERY_TIMEOUT`] for
//! its answer; every answer is checked against the snapshot, and the answers whose code or
//! records differ are counted as wrong, so that fast errors cannot pass for throughput.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use shoal_agent::dns::server::{DnsServer, DnsServerConfig};
use shoal_agent::dns::{ClusterView, SlicesByService};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::workload::Latency;

#[derive(Args, Clone, Debug)]
pub struct BenchDnsArgs {
    /// Services of the snapshot (every tenth one headless).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Concurrent clients of each run, each with one query in flight.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub clients: Vec<usize>,
    /// Length of each run (one workload, one client count, one server), in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// The anchor's executable (Debian's `dnsmasq-base`); the anchor is skipped without it.
    #[arg(long, default_value = "/usr/sbin/dnsmasq")]
    pub dnsmasq: PathBuf,
    /// Scratch directory for the anchor's configuration and hosts file (wiped first).
    #[arg(long, default_value = "/var/tmp/shoal-bench-dns")]
    pub dir: PathBuf,
}

/// The namespace of the snapshot's Services.
const NAMESPACE: &str = "bench";
/// Services of the snapshot at most: their ClusterIPs and endpoints must fit 127.96.0.0/16
/// and 127.1.0.0/16.
const SERVICES_MAX: usize = 10_000;
/// One Service in this many is headless.
pub const HEADLESS_EVERY: usize = 10;
/// Ready endpoints of each headless Service: its A answer holds them all.
pub const HEADLESS_ENDPOINTS: usize = 4;
/// Endpoints of each Service with a ClusterIP (its A answer is the ClusterIP alone).
const CLUSTER_IP_ENDPOINTS: usize = 2;
/// The Services' named port and its number.
const PORT_NAME: &str = "http";
const PORT: u16 = 80;
/// The endpoints' port.
const TARGET_PORT: u16 = 8080;
/// The first ClusterIP and the first endpoint address, as the process runtime hands them out.
const CLUSTER_IP_BASE: Ipv4Addr = Ipv4Addr::new(127, 96, 0, 0);
const ENDPOINT_BASE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 0);
/// How long a client waits for the answer to one query before counting a timeout and
/// sending the next: glibc's resolver waits 5 s, but on loopback an answer later than this
/// is a lost one.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest answer a client reads; the server sends at most 1232 bytes over UDP.
const ANSWER_BYTES_MAX: usize = 4096;
/// How long dnsmasq may take to answer its first query after it is started.
const DNSMASQ_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two probes of a starting dnsmasq.
const DNSMASQ_PROBE_PAUSE: Duration = Duration::from_millis(50);

/// The workloads, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    FullNameA,
    NamedPortSrv,
    HeadlessA,
    NxDomain,
}

impl Workload {
    pub const ALL: [Workload; 4] =
        [Workload::FullNameA, Workload::NamedPortSrv, Workload::HeadlessA, Workload::NxDomain];

    fn label(self) -> &'static str {
        match self {
            Workload::FullNameA => "A, full name",
            Workload::NamedPortSrv => "SRV, named port",
            Workload::HeadlessA => "A, headless (4 endpoints)",
            Workload::NxDomain => "A, NXDOMAIN",
        }
    }
}

/// One Service of the snapshot, with what DNS must answer for it.
#[derive(Clone, Debug)]
struct BenchService {
    index: usize,
    /// `None` for a headless Service.
    cluster_ip: Option<Ipv4Addr>,
    endpoints: Vec<Ipv4Addr>,
}

impl BenchService {
    fn name(&self) -> String {
        format!("svc-{}", self.index)
    }

    fn full_name(&self) -> String {
        format!("svc-{}.{NAMESPACE}.svc.cluster.local.", self.index)
    }
}

/// The bench's fixed cluster: the Services with what DNS must answer for each, and the objects
/// the server reads.
pub struct Snapshot {
    services: Vec<BenchService>,
    objects: Objects,
}

/// Services and EndpointSlices, looked up as the agent's view looks them up once its caches
/// are steady (a map by name; `services()` copies the list of `Arc`s, as `Store::state` does;
/// slices come from the index the agent builds after each change).
#[derive(Clone)]
struct Objects {
    by_name: HashMap<(String, String), Arc<Service>>,
    services: Vec<Arc<Service>>,
    slices: Arc<SlicesByService>,
}

impl ClusterView for Objects {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.by_name.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    fn services(&self) -> Vec<Arc<Service>> {
        self.services.clone()
    }

    fn endpoint_slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        self.slices.of(namespace, service)
    }
}

fn offset(base: Ipv4Addr, by: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + u32::try_from(by).expect("the snapshot's size is bounded"))
}

impl Snapshot {
    pub fn new(count: usize) -> anyhow::Result<Snapshot> {
        anyhow::ensure!(
            (HEADLESS_EVERY..=SERVICES_MAX).contains(&count),
            "--services must be between {HEADLESS_EVERY} and {SERVICES_MAX}"
        );
        let services: Vec<BenchService> = (0..count)
            .map(|index| {
                let headless = index % HEADLESS_EVERY == HEADLESS_EVERY - 1;
                let endpoints = (0..HEADLESS_ENDPOINTS)
                    .take(if headless { HEADLESS_ENDPOINTS } else { CLUSTER_IP_ENDPOINTS })
                    .map(|k| offset(ENDPOINT_BASE, 1 + index * HEADLESS_ENDPOINTS + k))
                    .collect();
                let cluster_ip = (!headless).then(|| offset(CLUSTER_IP_BASE, 1 + index));
                BenchService { index, cluster_ip, endpoints }
            })
            .collect();
        let (mut by_name, mut service_objects, mut slices) = (HashMap::new(), Vec::new(), Vec::new());
        for service in &services {
            let cluster_ip = service.cluster_ip.map_or_else(|| "None".to_owned(), |ip| ip.to_string());
            let object: Service = serde_json::from_value(json!({
                "metadata": {"name": service.name(), "namespace": NAMESPACE},
                "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                         "ports": [{"name": PORT_NAME, "port": PORT, "protocol": "TCP",
                                    "targetPort": TARGET_PORT}]},
            }))?;
            let object = Arc::new(object);
            by_name.insert((NAMESPACE.to_owned(), service.name()), object.clone());
            service_objects.push(object);
            let endpoints: Vec<_> = service
                .endpoints
                .iter()
                .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
                .collect();
            let slice: EndpointSlice = serde_json::from_value(json!({
                "metadata": {"name": format!("{}-0", service.name()), "namespace": NAMESPACE,
                             "labels": {"kubernetes.io/service-name": service.name()}},
                "addressType": "IPv4",
                "ports": [{"name": PORT_NAME, "port": TARGET_PORT, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))?;
            slices.push(Arc::new(slice));
        }
        let slices = Arc::new(SlicesByService::new(slices));
        Ok(Snapshot { services, objects: Objects { by_name, services: service_objects, slices } })
    }

    /// The questions of `workload`, each with its expected answer, cycling over the snapshot.
    pub fn questions(&self, workload: Workload) -> Vec<Question> {
        let with_ip = self.services.iter().filter(|service| service.cluster_ip.is_some());
        let headless = self.services.iter().filter(|service| service.cluster_ip.is_none());
        match workload {
            Workload::FullNameA => with_ip
                .map(|service| {
                    let ip = service.cluster_ip.expect("filtered on it");
                    Question::new(
                        &service.full_name(),
                        RecordType::A,
                        ResponseCode::NoError,
                        vec![a_line(ip)],
                    )
                })
                .collect(),
            Workload::NamedPortSrv => with_ip
                .map(|service| {
                    let name = format!("_{PORT_NAME}._tcp.{}", service.full_name());
                    let expected = vec![srv_line(PORT, &service.full_name())];
                    Question::new(&name, RecordType::SRV, ResponseCode::NoError, expected)
                })
                .collect(),
            Workload::HeadlessA => headless
                .map(|service| {
                    let expected = service.endpoints.iter().copied().map(a_line).collect();
                    Question::new(&service.full_name(), RecordType::A, ResponseCode::NoError, expected)
                })
                .collect(),
            Workload::NxDomain => self
                .services
                .iter()
                .map(|service| {
                    let name = format!("missing-{}.{NAMESPACE}.svc.cluster.local.", service.index);
                    Question::new(&name, RecordType::A, ResponseCode::NXDomain, Vec::new())
                })
                .collect(),
        }
    }

    /// The same names as dnsmasq reads them: a hosts file and its configuration lines.
    fn write_dnsmasq_files(&self, dir: &Path, port: u16) -> anyhow::Result<PathBuf> {
        let mut hosts = String::new();
        let mut config = String::new();
        for service in &self.services {
            let name = service.full_name();
            let name = name.trim_end_matches('.');
            match service.cluster_ip {
                Some(ip) => {
                    hosts.push_str(&format!("{ip} {name}\n"));
                    config.push_str(&format!("srv-host=_{PORT_NAME}._tcp.{name},{name},{PORT}\n"));
                }
                None => {
                    for ip in &service.endpoints {
                        hosts.push_str(&format!("{ip} {name}\n"));
                    }
                }
            }
        }
        let hosts_path = dir.join("hosts");
        std::fs::write(&hosts_path, hosts)?;
        // Nothing but these names: no /etc/hosts, no upstream; names under the zone that the
        // hosts file lacks are NXDOMAIN; the records' TTL is the agent's.
        let header = format!(
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             addn-hosts={}\nlocal=/cluster.local/\nlocal-ttl={}\npid-file=\n",
            hosts_path.display(),
            shoal_agent::dns::RECORD_TTL_SECONDS
        );
        let config_path = dir.join("dnsmasq.conf");
        std::fs::write(&config_path, header + &config)?;
        Ok(config_path)
    }
}

/// An `A` answer line as [`answer_lines`] writes it.
fn a_line(ip: Ipv4Addr) -> String {
    format!("A {ip}")
}

/// An `SRV` answer line as [`answer_lines`] writes it (priority and weight left out).
fn srv_line(port: u16, target: &str) -> String {
    format!("SRV {port} {target}")
}

/// The answer section as sorted lines, `A <ip>` or `SRV <port> <target>`.
fn answer_lines(answer: &Message) -> Vec<String> {
    let mut lines: Vec<String> = answer
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(a) => a_line(a.0),
            RData::SRV(srv) => srv_line(srv.port, &srv.target.to_string()),
            data => format!("{} {data}", record.record_type()),
        })
        .collect();
    lines.sort();
    lines
}

/// One query, encoded once (the id is patched per send), and the answer it must get.
#[derive(Clone, Debug)]
pub struct Question {
    query: Vec<u8>,
    code: ResponseCode,
    /// Sorted, as [`answer_lines`] writes them.
    answers: Vec<String>,
}

impl Question {
    fn new(name: &str, query_type: RecordType, code: ResponseCode, mut answers: Vec<String>) -> Question {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        let name = Name::from_ascii(name).expect("the snapshot's names are valid");
        message.add_query(Query::query(name, query_type));
        answers.sort();
        Question { query: message.to_vec().expect("a query encodes"), code, answers }
    }

    /// The query with `id`.
    fn with_id(&self, id: u16) -> Vec<u8> {
        let mut query = self.query.clone();
        query[..2].copy_from_slice(&id.to_be_bytes());
        query
    }

    /// Whether `answer` is the expected one.
    fn is_answered_by(&self, answer: &Message) -> bool {
        answer.metadata.response_code == self.code && answer_lines(answer) == self.answers
    }
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientTally {
    latencies: Vec<Duration>,
    wrong: u64,
    timeouts: u64,
}

/// One run's figures.
#[derive(Debug)]
pub struct Outcome {
    pub queries_per_second: f64,
    pub latency: Latency,
    /// Answers whose code or records differ from the snapshot's, or that did not parse.
    pub wrong: u64,
    pub timeouts: u64,
}

/// Why a query got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within [`QUERY_TIMEOUT`] (or the socket failed).
    TimedOut,
    /// An answer with the query's id that is not a DNS message.
    Garbled,
}

/// Sends one query with `id` on the connected `socket` and waits up to [`QUERY_TIMEOUT`] for
/// its answer; answers to earlier queries that timed out are skipped.
pub async fn exchange(
    socket: &UdpSocket,
    question: &Question,
    id: u16,
    buffer: &mut [u8],
) -> Result<Message, Failure> {
    socket.send(&question.with_id(id)).await.map_err(|_| Failure::TimedOut)?;
    let answer = tokio::time::timeout(QUERY_TIMEOUT, async {
        loop {
            let length = socket.recv(buffer).await.map_err(|_| Failure::TimedOut)?;
            if length >= 2 && buffer[..2] == id.to_be_bytes() {
                return Message::from_vec(&buffer[..length]).map_err(|_| Failure::Garbled);
            }
        }
    });
    answer.await.unwrap_or(Err(Failure::TimedOut))
}

/// A UDP socket on loopback connected to `server`, so that only its datagrams arrive.
pub async fn client_socket(server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.context("binding a client socket")?;
    socket.connect(server).await.context("connecting a client socket")?;
    Ok(socket)
}

/// `clients` clients asking `questions` of `server` for `duration`, one query in flight each.
pub async fn measure(
    server: SocketAddr,
    questions: Arc<Vec<Question>>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!questions.is_empty(), "no questions");
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        sockets.push(client_socket(server).await?);
    }
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = JoinSet::new();
    for (client, socket) in sockets.into_iter().enumerate() {
        let questions = questions.clone();
        tasks.spawn(async move {
            let mut tally = ClientTally::default();
            let mut buffer = vec![0u8; ANSWER_BYTES_MAX];
            // Clients start at different names, so they do not ask in lockstep.
            let mut next = client * questions.len() / clients.max(1);
            let mut id: u16 = 0;
            while Instant::now() < end {
                let question = &questions[next % questions.len()];
                next += 1;
                id = id.wrapping_add(1);
                let sent = Instant::now();
                match exchange(&socket, question, id, &mut buffer).await {
                    Ok(answer) => {
                        tally.latencies.push(sent.elapsed());
                        if !question.is_answered_by(&answer) {
                            tally.wrong += 1;
                        }
                    }
                    Err(Failure::Garbled) => {
                        tally.latencies.push(sent.elapsed());
                        tally.wrong += 1;
                    }
                    Err(Failure::TimedOut) => tally.timeouts += 1,
                }
            }
            tally
        });
    }
    let mut total = ClientTally::default();
    while let Some(tally) = tasks.join_next().await {
        let tally = tally.context("a DNS client")?;
        total.latencies.extend(tally.latencies);
        total.wrong += tally.wrong;
        total.timeouts += tally.timeouts;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Outcome {
        queries_per_second: total.latencies.len() as f64 / elapsed,
        latency: Latency::of(total.latencies),
        wrong: total.wrong,
        timeouts: total.timeouts,
    })
}

/// The agent's DNS server over `snapshot`, on a free port of 127.0.0.1, refusing names
/// outside the zone (the bench asks none).
pub async fn serve(snapshot: &Snapshot) -> anyhow::Result<DnsServer> {
    let config = DnsServerConfig { listen: (Ipv4Addr::LOCALHOST, 0).into(), upstream: None };
    shoal_agent::dns::server::start(config, snapshot.objects.clone()).await.context("starting the DNS server")
}

/// dnsmasq serving the snapshot's names; killed when dropped.
struct Dnsmasq {
    child: tokio::process::Child,
    address: SocketAddr,
}

impl Dnsmasq {
    async fn start(executable: &Path, dir: &Path, snapshot: &Snapshot) -> anyhow::Result<Dnsmasq> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|probe| probe.local_addr())
            .context("finding a free port")?
            .port();
        let config = snapshot.write_dnsmasq_files(dir, port)?;
        let child = tokio::process::Command::new(executable)
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", config.display()))
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", executable.display()))?;
        let dnsmasq = Dnsmasq { child, address: (Ipv4Addr::LOCALHOST, port).into() };
        dnsmasq.wait_answering(snapshot).await?;
        Ok(dnsmasq)
    }

    async fn wait_answering(&self, snapshot: &Snapshot) -> anyhow::Result<()> {
        let question = &snapshot.questions(Workload::FullNameA)[0];
        let socket = client_socket(self.address).await?;
        let mut buffer = vec![0u8; ANSWER_BYTES_MAX];
        let deadline = Instant::now() + DNSMASQ_START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(answer) = exchange(&socket, question, 1, &mut buffer).await
                && question.is_answered_by(&answer)
            {
                return Ok(());
            }
            tokio::time::sleep(DNSMASQ_PROBE_PAUSE).await;
        }
        bail!("dnsmasq did not answer within {DNSMASQ_START_TIMEOUT:?}")
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

pub async fn run(args: BenchDnsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seconds > 0 && args.clients.iter().all(|&clients| clients > 0),
        "nothing to measure"
    );
    let snapshot = Snapshot::new(args.services)?;
    let duration = Duration::from_secs(args.seconds);
    let shoal = serve(&snapshot).await?;
    let dnsmasq = if args.dnsmasq.exists() {
        Some(Dnsmasq::start(&args.dnsmasq, &args.dir, &snapshot).await?)
    } else {
        eprintln!("{} not found: no anchor (install Debian's dnsmasq-base)", args.dnsmasq.display());
        None
    };
    let mut servers = vec![("shoal", shoal.addr)];
    servers.extend(dnsmasq.as_ref().map(|dnsmasq| ("dnsmasq", dnsmasq.address)));

    println!("| workload | clients | server | queries/s | p50 | p99 | wrong answers | timeouts |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    for workload in Workload::ALL {
        let questions = Arc::new(snapshot.questions(workload));
        for &clients in &args.clients {
            for &(server, address) in &servers {
                let outcome = measure(address, questions.clone(), clients, duration).await?;
                println!(
                    "| {} | {clients} | {server} | {:.0} | {} µs | {} µs | {} | {} |",
                    workload.label(),
                    outcome.queries_per_second,
                    outcome.latency.p50_us,
                    outcome.latency.p99_us,
                    outcome.wrong,
                    outcome.timeouts
                );
            }
        }
    }
    if let Some(dnsmasq) = dnsmasq {
        dnsmasq.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks `question` of `server` once.
    async fn ask(server: SocketAddr, question: &Question) -> Message {
        let socket = client_socket(server).await.expect("a client socket");
        let mut buffer = vec![0u8; ANSWER_BYTES_MAX];
        exchange(&socket, question, 7, &mut buffer).await.expect("an answer within the timeout")
    }

    // The bench's snapshot, served by the agent's server, answers what the bench expects: a
    // ClusterIP for a Service's full name and NXDOMAIN for a name that does not exist (so the
    // bench measures real answers, not errors); and an answer of the wrong kind is caught.
    #[tokio::test]
    async fn the_served_snapshot_answers_what_the_bench_expects() {
        let snapshot = Snapshot::new(20).expect("a snapshot");
        let server = serve(&snapshot).await.expect("the DNS server");

        let web =
            Question::new("svc-3.bench.svc.cluster.local.", RecordType::A, ResponseCode::NoError, vec![]);
        let answer = ask(server.addr, &web).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "{answer:?}");
        assert_eq!(answer_lines(&answer), ["A 127.96.0.4"]);

        let missing =
            Question::new("nope.bench.svc.cluster.local.", RecordType::A, ResponseCode::NXDomain, vec![]);
        let answer = ask(server.addr, &missing).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "{answer:?}");
        assert!(answer.answers.is_empty(), "{answer:?}");

        for workload in Workload::ALL {
            let questions = snapshot.questions(workload);
            assert!(!questions.is_empty(), "{workload:?}");
            for question in &questions {
                let answer = ask(server.addr, question).await;
                assert!(question.is_answered_by(&answer), "{workload:?}: {answer:?} for {question:?}");
            }
        }
        // The check does fail: an A answer does not pass for NXDOMAIN, nor for another address.
        let nxdomain = &snapshot.questions(Workload::NxDomain)[0];
        let full_name = &snapshot.questions(Workload::FullNameA);
        assert!(!nxdomain.is_answered_by(&ask(server.addr, &full_name[0]).await));
        assert!(!full_name[1].is_answered_by(&ask(server.addr, &full_name[0]).await));
    }

    #[tokio::test]
    async fn a_short_run_counts_answers_and_no_errors() {
        let snapshot = Snapshot::new(20).expect("a snapshot");
        let server = serve(&snapshot).await.expect("the DNS server");
        let questions = Arc::new(snapshot.questions(Workload::HeadlessA));
        let outcome = measure(server.addr, questions, 2, Duration::from_millis(200)).await.expect("a run");
        assert!(outcome.queries_per_second > 0.0, "{outcome:?}");
        assert_eq!((outcome.wrong, outcome.timeouts), (0, 0), "{outcome:?}");
    }
}
