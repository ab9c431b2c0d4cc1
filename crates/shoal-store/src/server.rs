//! Starting a store member: identity, storage, Raft, the peer and client listeners.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use shoal_chaos::Faults;
use tokio::task::JoinSet;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::forward::{ForwardRequest, ForwardResponse, ForwardResult};
use crate::limits::AUTO_COMPACTION_RETAINED_REVISIONS;
use crate::network::{Listener, Network};
use crate::peer_proto::peer_server::PeerServer;
use crate::peer_service::PeerService;
use crate::raft::{Member, MemberId, Raft};
use crate::raft_network::RaftNetworkFactoryImpl;
use crate::storage::StorageOptions;
use crate::store::{Store, StoreIdentity};
use crate::transport::{MAX_FRAME_BYTES, NOT_A_MEMBER, PeerRpc, PeerTransport};

/// Whether this member founds a cluster with the others of `initial_cluster` or joins one that
/// already runs (after `member add`), as etcd's `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// PEM files of the cluster CA and this member's certificate, which serves both listeners and
/// identifies the member to its peers.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Raft's clock, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for RaftTiming {
    /// Tuned for a LAN, and for openraft 0.9's arithmetic: a follower calls an election only
    /// after the leader lease (`election_timeout_max`) plus its own random timeout have passed
    /// without a heartbeat, and other followers refuse to vote until their lease has run out.
    /// A dead leader is thus replaced after about `max + (min + max) / 2`: 390 ms here, with
    /// a heartbeat missed three times over before anyone suspects it.
    fn default() -> Self {
        RaftTiming { heartbeat_ms: 40, election_timeout_min_ms: 120, election_timeout_max_ms: 220 }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub cluster_token: String,
    pub data_dir: PathBuf,
    pub listen_peer: SocketAddr,
    pub listen_client: SocketAddr,
    pub advertise_peer_url: String,
    pub advertise_client_url: String,
    /// name → peer URL of the founding members (for `ClusterState::New`), or of members to ask
    /// for the membership (for `ClusterState::Existing`).
    pub initial_cluster: BTreeMap<String, String>,
    pub initial_cluster_state: ClusterState,
    /// `None` serves and dials plaintext: only with the explicit `--insecure-plaintext` flag.
    pub tls: Option<TlsFiles>,
    pub fault_seed: u64,
    pub raft_timing: RaftTiming,
    pub auto_compaction_retained: i64,
    pub snapshot_every_entries: u64,
    /// How the member listens and dials: the operating system's TCP, or an injected network
    /// (the simulator's).
    pub network: Network,
    /// How storage runs its blocking work; the simulator runs it inline.
    pub storage: StorageOptions,
    /// Seeds this member's random choices (its client id, lease and member ids), so that a
    /// simulated run replays; `None` draws them from the operating system.
    pub random_seed: Option<u64>,
}

impl ServerConfig {
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            name: name.into(),
            cluster_token: "shoal".into(),
            data_dir: data_dir.into(),
            listen_peer: ([127, 0, 0, 1], 2380).into(),
            listen_client: ([127, 0, 0, 1], 2379).into(),
            advertise_peer_url: String::new(),
            advertise_client_url: String::new(),
            initial_cluster: BTreeMap::new(),
            initial_cluster_state: ClusterState::New,
            tls: None,
            fault_seed: 0,
            raft_timing: RaftTiming::default(),
            auto_compaction_retained: AUTO_COMPACTION_RETAINED_REVISIONS,
            snapshot_every_entries: 10_000,
            network: Network::Tcp,
            storage: StorageOptions::default(),
            random_seed: None,
        }
    }

    /// A one-member cluster on loopback ports the system chooses, plaintext: a store inside a
    /// test's process. Its peer URL is never dialled, since a lone member has no peers.
    pub fn solo_on_loopback(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        let mut config = ServerConfig::new(name, data_dir);
        config.listen_peer = ([127, 0, 0, 1], 0).into();
        config.listen_client = ([127, 0, 0, 1], 0).into();
        config.advertise_peer_url = "http://127.0.0.1:0".to_owned();
        config.advertise_client_url = "http://127.0.0.1:0".to_owned();
        config.initial_cluster.insert(config.name.clone(), config.advertise_peer_url.clone());
        config
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("member identity file {path} is corrupt")]
    Identity { path: PathBuf, reason: String },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageOpenError),
    #[error("cannot read TLS file {path}")]
    Tls {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    TlsConfig(String),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid Raft configuration: {0}")]
    RaftConfig(String),
    #[error("this member ({peer_url}) is not in the initial cluster")]
    NotInInitialCluster { peer_url: String },
    #[error("no member of the existing cluster lists {peer_url}; run `member add` first")]
    NotAMember { peer_url: String },
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// A running member with its listeners. Dropping it does not stop it; call `shutdown`.
pub struct RunningServer {
    pub store: Store,
    pub peer_addr: SocketAddr,
    pub client_addr: SocketAddr,
    listeners: JoinSet<()>,
    background: JoinSet<()>,
}

impl RunningServer {
    pub async fn shutdown(mut self) {
        self.listeners.abort_all();
        self.background.abort_all();
        if let Err(error) = self.store.raft().shutdown().await {
            tracing::warn!(%error, "raft did not shut down cleanly");
        }
    }

    /// Waits until a listener fails (it normally never does).
    pub async fn wait(&mut self) {
        self.listeners.join_next().await;
    }
}

/// What a member remembers about itself across restarts.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct IdentityFile {
    id: MemberId,
    cluster_id: u64,
    name: String,
}

/// Member ids of founding members are derived from the cluster token and the member name, so
/// that every founding member computes the same initial membership without talking.
pub fn founding_member_id(cluster_token: &str, name: &str) -> MemberId {
    fnv1a64(format!("{cluster_token}/member/{name}").as_bytes()).max(1)
}

pub fn cluster_id(cluster_token: &str) -> u64 {
    fnv1a64(format!("{cluster_token}/cluster").as_bytes())
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
    let (client_tls, server_tls) = tls_configs(config.tls.as_ref())?;
    let faults = Faults::new(config.fault_seed);
    let member = Member {
        name: config.name.clone(),
        peer_url: config.advertise_peer_url.clone(),
        client_url: config.advertise_client_url.clone(),
    };

    let peer_listener = bind(&config.network, config.listen_peer).await?;
    let client_listener = bind(&config.network, config.listen_client).await?;
    let peer_addr = peer_listener.local_addr().expect("bound listener has an address");
    let client_addr = client_listener.local_addr().expect("bound listener has an address");

    let identity_path = config.data_dir.join("member.json");
    let existing = read_identity(&identity_path)?;
    let is_new_member = existing.is_none();
    let identity = match existing {
        Some(identity) => identity,
        None => {
            let identity = discover_identity(&config, &member, client_tls.clone()).await?;
            write_identity(&identity_path, &identity)?;
            identity
        }
    };

    let (log_store, state_store) =
        crate::storage::open_with(&config.data_dir.join("store.redb"), config.storage)?;
    let shared = state_store.shared();
    let db_path = config.data_dir.join("store.redb");
    let db_size = Box::new(move || std::fs::metadata(&db_path).map_or(0, |m| m.len()));

    let transport =
        Arc::new(PeerTransport::new(identity.id, faults, client_tls).with_network(config.network.clone()));
    let network = RaftNetworkFactoryImpl { transport: transport.clone() };
    let raft_config = raft_config(&config)?;
    let raft = Raft::new(identity.id, raft_config, network, log_store, state_store)
        .await
        .map_err(|error| StartError::Raft(error.to_string()))?;

    let store_identity = StoreIdentity {
        id: identity.id,
        cluster_id: identity.cluster_id,
        member: member.clone(),
        data_dir: config.data_dir.clone(),
    };
    let rng = match config.random_seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_os_rng(),
    };
    let store = Store::new(store_identity, raft.clone(), shared, transport, db_size, rng);

    if is_new_member && config.initial_cluster_state == ClusterState::New {
        let founders: BTreeMap<MemberId, Member> = config
            .initial_cluster
            .iter()
            .map(|(name, peer_url)| {
                let founder =
                    Member { name: name.clone(), peer_url: peer_url.clone(), client_url: String::new() };
                (founding_member_id(&config.cluster_token, name), founder)
            })
            .collect();
        // Every founder must initialize with the identical membership: the entries share one
        // log id, so Raft would never notice a difference. Client URLs are published after.
        if let Err(error) = raft.initialize(founders).await {
            tracing::info!(%error, "cluster already initialized");
        }
    }

    let mut tasks = JoinSet::new();
    let peer_service = PeerServer::new(PeerService::new(store.clone()))
        .max_decoding_message_size(MAX_FRAME_BYTES)
        .max_encoding_message_size(MAX_FRAME_BYTES);
    let mut peer_server = tonic::transport::Server::builder();
    if let Some(tls) = &server_tls {
        peer_server =
            peer_server.tls_config(tls.clone()).map_err(|e| StartError::TlsConfig(e.to_string()))?;
    }
    let peer_router = peer_server.add_service(peer_service);
    tasks.spawn(async move {
        if let Err(error) = peer_listener.serve(peer_router).await {
            tracing::error!(%error, "peer listener failed");
        }
    });

    let mut client_server = tonic::transport::Server::builder();
    if let Some(tls) = &server_tls {
        client_server =
            client_server.tls_config(tls.clone()).map_err(|e| StartError::TlsConfig(e.to_string()))?;
    }
    let client_router = crate::etcd::services(client_server, store.clone());
    tasks.spawn(async move {
        if let Err(error) = client_listener.serve(client_router).await {
            tracing::error!(%error, "client listener failed");
        }
    });

    let mut background = JoinSet::new();
    let maintainer = store.clone();
    let retained = config.auto_compaction_retained;
    background.spawn(async move { maintainer.maintain(retained).await });
    let publisher = store.clone();
    background.spawn(async move { publish_member(publisher, member).await });

    Ok(RunningServer { store, peer_addr, client_addr, listeners: tasks, background })
}

fn raft_config(config: &ServerConfig) -> Result<Arc<openraft::Config>, StartError> {
    let timing = config.raft_timing;
    let raft_config = openraft::Config {
        cluster_name: config.cluster_token.clone(),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: timing.election_timeout_min_ms,
        election_timeout_max: timing.election_timeout_max_ms,
        install_snapshot_timeout: 60_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
        max_in_snapshot_log_to_keep: config.snapshot_every_entries / 10,
        ..Default::default()
    };
    Ok(Arc::new(raft_config.validate().map_err(|error| StartError::RaftConfig(error.to_string()))?))
}

async fn bind(network: &Network, addr: SocketAddr) -> Result<Listener, StartError> {
    network.listen(addr).await.map_err(|source| StartError::Listen { addr, source })
}

fn read_tls_file(path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|source| StartError::Tls { path: path.to_owned(), source })
}

/// The TLS settings to dial members with `files`' certificate (members, and operator tools).
pub fn peer_client_tls(files: &TlsFiles) -> Result<ClientTlsConfig, StartError> {
    Ok(tls_configs(Some(files))?.0.expect("files given, so a client config"))
}

fn tls_configs(
    files: Option<&TlsFiles>,
) -> Result<(Option<ClientTlsConfig>, Option<ServerTlsConfig>), StartError> {
    let Some(files) = files else { return Ok((None, None)) };
    let ca = Certificate::from_pem(read_tls_file(&files.ca)?);
    let identity = Identity::from_pem(read_tls_file(&files.cert)?, read_tls_file(&files.key)?);
    let client = ClientTlsConfig::new().ca_certificate(ca.clone()).identity(identity.clone());
    // Peers and clients alike must present a certificate of the cluster CA.
    let server = ServerTlsConfig::new().identity(identity).client_ca_root(ca);
    Ok((Some(client), Some(server)))
}

fn read_identity(path: &Path) -> Result<Option<IdentityFile>, StartError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StartError::Identity { path: path.to_owned(), reason: error.to_string() }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StartError::DataDir { path: path.to_owned(), source }),
    }
}

fn write_identity(path: &Path, identity: &IdentityFile) -> Result<(), StartError> {
    let bytes = serde_json::to_vec_pretty(identity).expect("serializing to memory cannot fail");
    std::fs::write(path, bytes).map_err(|source| StartError::DataDir { path: path.to_owned(), source })
}

/// A founding member derives its id; a joining one asks the cluster which id `member add`
/// gave its peer URL.
async fn discover_identity(
    config: &ServerConfig,
    member: &Member,
    tls: Option<ClientTlsConfig>,
) -> Result<IdentityFile, StartError> {
    let cluster_id = cluster_id(&config.cluster_token);
    if config.initial_cluster_state == ClusterState::New {
        if !config.initial_cluster.contains_key(&config.name) {
            return Err(StartError::NotInInitialCluster { peer_url: member.peer_url.clone() });
        }
        let id = founding_member_id(&config.cluster_token, &config.name);
        return Ok(IdentityFile { id, cluster_id, name: config.name.clone() });
    }
    // Fault injection is off for this one-time lookup: the member has no plan yet.
    let transport = PeerTransport::new(NOT_A_MEMBER, Faults::new(config.fault_seed), tls)
        .with_network(config.network.clone());
    for attempt in 0..50 {
        for peer_url in config.initial_cluster.values().filter(|url| **url != member.peer_url) {
            let result: Result<ForwardResult, _> = transport
                .call(
                    NOT_A_MEMBER,
                    peer_url,
                    PeerRpc::Forward,
                    &ForwardRequest::Members,
                    Duration::from_secs(2),
                )
                .await;
            if let Ok(Ok(ForwardResponse::Members(list))) = result {
                let found =
                    list.voters.iter().chain(&list.learners).find(|(_, m)| m.peer_url == member.peer_url);
                return match found {
                    Some((id, _)) => Ok(IdentityFile { id: *id, cluster_id, name: config.name.clone() }),
                    None => Err(StartError::NotAMember { peer_url: member.peer_url.clone() }),
                };
            }
        }
        tracing::info!(attempt, "waiting for a member of the existing cluster to answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(StartError::NotAMember { peer_url: member.peer_url.clone() })
}

/// Makes the member's name and URLs part of the replicated membership (as etcd publishes its
/// attributes), so `member list` shows them on every member.
async fn publish_member(store: Store, member: Member) {
    let id = store.id();
    loop {
        let known = store.members();
        let current = known.voters.get(&id).or_else(|| known.learners.get(&id));
        if current == Some(&member) {
            return;
        }
        if current.is_some() {
            let request = ForwardRequest::PublishMember { id, member: member.clone() };
            if let Err(error) = store.to_leader(request).await {
                tracing::debug!(%error, "publishing member attributes failed; will retry");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
