//! `shoal server`: one control-plane member.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use shoal_store::server::{ClusterState, RaftTiming, ServerConfig, TlsFiles};

#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// This member's name, unique in the cluster.
    #[arg(long)]
    pub name: String,
    /// Where the member keeps its Raft log, snapshots and identity.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address for peer (Raft) traffic.
    #[arg(long, default_value = "127.0.0.1:2380")]
    pub listen_peer: SocketAddr,
    /// Address for clients (etcd v3 gRPC API).
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub listen_client: SocketAddr,
    /// Address of the Kubernetes API (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen_api: SocketAddr,
    /// The range Service ClusterIPs are allocated from; the same on every server. Loopback by
    /// default: each node's proxy listens on the ClusterIPs itself (see ARCHITECTURE.md).
    #[arg(long, default_value = "127.96.0.0/16")]
    pub service_cidr: shoal_apiserver::allocator::ServiceCidr,
    /// The peer URL other members use; defaults to the listen address.
    #[arg(long)]
    pub advertise_peer_url: Option<String>,
    /// The client URL announced in `member list`; defaults to the listen address.
    #[arg(long)]
    pub advertise_client_url: Option<String>,
    /// The founding members, `name=peer-url,…` (all of them, this one included).
    #[arg(long, value_delimiter = ',')]
    pub initial_cluster: Vec<String>,
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: InitialClusterState,
    /// Distinguishes clusters; members of one cluster share it.
    #[arg(long, default_value = "shoal")]
    pub cluster_token: String,
    /// Directory of the cluster CA and member certificates; created at first start. The CA
    /// key must be present to issue this member's certificate on its first start.
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    /// Serve and dial without TLS. For experiments only: anyone who can connect can write.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// Seed of the fault-injecting transport's RNG, so a faulty run can be replayed.
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    #[arg(long, default_value_t = RaftTiming::default().heartbeat_ms)]
    pub heartbeat_ms: u64,
    /// The shortest random election timeout; see `RaftTiming` for how it bounds failover.
    #[arg(long, default_value_t = RaftTiming::default().election_timeout_min_ms)]
    pub election_timeout_ms: u64,
    /// The longest random election timeout, which is also the leader lease.
    #[arg(long, default_value_t = RaftTiming::default().election_timeout_max_ms)]
    pub election_timeout_max_ms: u64,
    /// Keep this many revisions of history; older ones are compacted automatically (0: never).
    #[arg(long, default_value_t = shoal_store::limits::AUTO_COMPACTION_RETAINED_REVISIONS)]
    pub auto_compaction_retained: i64,
    /// Snapshot the state machine and purge the log after this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every_entries: u64,
    /// How often the horizontal pod autoscaler looks at each HPA, in milliseconds (upstream's
    /// `--horizontal-pod-autoscaler-sync-period`).
    #[arg(long, default_value_t = shoal_controllers::hpa::SYNC_PERIOD.as_millis() as u64)]
    pub horizontal_pod_autoscaler_sync_period_ms: u64,
    /// How long pods tolerate a node that is unreachable or not ready before the node
    /// lifecycle controller evicts them: the `tolerationSeconds` of the tolerations every pod
    /// gets at create unless it has its own (Kubernetes: 300). The same on every server.
    #[arg(long, default_value_t = shoal_apiserver::admit::DEFAULT_TOLERATION_SECONDS,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub default_toleration_seconds: i64,
    /// Which controllers the leading server runs, as kube-controller-manager's flag: `*` for
    /// all, `name` to turn one on, `-name` to turn one off (`*,-nodelifecycle`). Names as in
    /// Kubernetes: deployment, endpoint, endpointslice, garbagecollector,
    /// horizontalpodautoscaling, namespace, nodelifecycle, replicaset.
    #[arg(long, default_value = "*")]
    pub controllers: shoal_controllers::selection::Selection,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InitialClusterState {
    New,
    Existing,
}

/// How long a stopping member waits for its API server and Raft to stop before it exits
/// anyway; shorter than `LocalCluster`'s wait before SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // It is the holder of the controllers' Leases, and their fence header carries it.
    let printable = |c: char| c.is_ascii_graphic();
    anyhow::ensure!(
        !args.name.is_empty() && args.name.chars().all(printable),
        "--name must be printable ASCII"
    );
    let (config, api_config) = config(&args)?;
    let mut server = shoal_store::server::start(config).await.context("starting the store member")?;
    let api =
        shoal_apiserver::start(api_config, server.store.clone()).await.context("starting the API server")?;
    let mut controllers_config = shoal_controllers::Config::default();
    controllers_config.hpa.sync_period = Duration::from_millis(args.horizontal_pod_autoscaler_sync_period_ms);
    controllers_config.controllers = args.controllers.clone();
    let controllers_api = api.local(crate::controller_manager::controllers_user());
    let controllers =
        tokio::spawn(crate::controller_manager::run(args.name.clone(), controllers_api, controllers_config));
    tracing::info!(
        id = %format!("{:x}", server.store.id()),
        peer = %server.peer_addr,
        client = %server.client_addr,
        api = %api.addr,
        "server running"
    );
    // SIGTERM is how supervisors (and `LocalCluster::stop`) ask a member to stop; Ctrl-C is
    // how a person does. Both shut Raft down cleanly.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        () = server.wait() => bail!("a listener stopped"),
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    controllers.abort();
    let shutdown = async {
        api.shutdown().await;
        server.shutdown().await;
    };
    // Raft may be deep in a backlog; what it acknowledged is fsynced already, so a member that
    // exits before Raft is done loses nothing a client was told.
    if tokio::time::timeout(SHUTDOWN_GRACE, shutdown).await.is_err() {
        tracing::warn!("the member did not shut down within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

fn config(args: &ServerArgs) -> anyhow::Result<(ServerConfig, shoal_apiserver::ApiServerConfig)> {
    let scheme = if args.insecure_plaintext { "http" } else { "https" };
    let peer_url =
        args.advertise_peer_url.clone().unwrap_or_else(|| format!("{scheme}://{}", args.listen_peer));
    let client_url =
        args.advertise_client_url.clone().unwrap_or_else(|| format!("{scheme}://{}", args.listen_client));
    let mut initial_cluster = BTreeMap::new();
    for entry in &args.initial_cluster {
        let (name, url) = entry
            .split_once('=')
            .with_context(|| format!("--initial-cluster entry {entry:?} is not name=url"))?;
        initial_cluster.insert(name.to_owned(), url.to_owned());
    }
    if initial_cluster.is_empty() {
        initial_cluster.insert(args.name.clone(), peer_url.clone());
    }

    // The API is HTTPS even when peers talk in plaintext, so the certificates always exist.
    let pki_dir = args.pki_dir.clone().unwrap_or_else(|| args.data_dir.join("pki"));
    let ca = crate::certs::ensure_ca(&pki_dir, &args.cluster_token)?;
    let hosts = [&peer_url, &client_url].into_iter().filter_map(|url| host_of(url)).collect::<Vec<_>>();
    let files = crate::certs::ensure_member_cert(&ca, &pki_dir, &args.name, &hosts)?;
    crate::certs::ensure_admin_cert(&ca, &pki_dir)?;
    crate::certs::ensure_admin_token(&pki_dir)?;
    let kubelet_client = crate::certs::ensure_kubelet_client_cert(&ca, &pki_dir)?;
    let api_config = shoal_apiserver::ApiServerConfig {
        listen: args.listen_api,
        tls: files.clone(),
        token_file: Some(pki_dir.join(crate::certs::TOKEN_FILE)),
        encryption_key_file: pki_dir.join(crate::certs::ENCRYPTION_KEY_FILE),
        service_cidr: args.service_cidr,
        // Every server of a cluster holds the CA key (`ensure_ca` loads it), so any can sign.
        signer: Some(std::sync::Arc::new(ca)),
        kubelet_client: Some(kubelet_client),
        default_toleration_seconds: args.default_toleration_seconds,
    };
    let tls =
        (!args.insecure_plaintext).then_some(TlsFiles { ca: files.ca, cert: files.cert, key: files.key });

    let mut config = ServerConfig::new(&args.name, &args.data_dir);
    config.cluster_token = args.cluster_token.clone();
    config.listen_peer = args.listen_peer;
    config.listen_client = args.listen_client;
    config.advertise_peer_url = peer_url;
    config.advertise_client_url = client_url;
    config.initial_cluster = initial_cluster;
    config.initial_cluster_state = match args.initial_cluster_state {
        InitialClusterState::New => ClusterState::New,
        InitialClusterState::Existing => ClusterState::Existing,
    };
    config.tls = tls;
    config.fault_seed = args.fault_seed;
    config.raft_timing = RaftTiming {
        heartbeat_ms: args.heartbeat_ms,
        election_timeout_min_ms: args.election_timeout_ms,
        election_timeout_max_ms: args.election_timeout_max_ms,
    };
    config.auto_compaction_retained = args.auto_compaction_retained;
    config.snapshot_every_entries = args.snapshot_every_entries;
    Ok((config, api_config))
}

/// The host part of `scheme://host:port`.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((host, _port)) => host,
        None => authority,
    };
    Some(host.trim_start_matches('[').trim_end_matches(']').to_owned())
}
