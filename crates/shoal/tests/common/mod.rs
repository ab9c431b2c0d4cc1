//! What the multi-process suites share: a `LocalCluster` of `shoal server` processes in a
//! temporary directory, with Raft timing that tolerates a busy test machine.

#![allow(dead_code, reason = "each suite uses a part of it")]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal::local_cluster::{LocalCluster, LocalClusterConfig};
use tempfile::TempDir;

/// Heartbeats and election timeouts a few times the defaults: debug builds of several
/// clusters share two cores in CI, and a starved member must not look dead. For the same
/// reason pods tolerate an unreachable node for 30 s rather than 1 s, so that an agent starved
/// for two seconds does not lose its pods in a test that is not about that; the node lifecycle
/// tests ask for the default back.
const TEST_TIMING_ARGS: [&str; 8] = [
    "--heartbeat-ms",
    "100",
    "--election-timeout-ms",
    "1000",
    "--election-timeout-max-ms",
    "2000",
    "--default-toleration-seconds",
    "30",
];

/// How long any one expected state may take to appear on a busy 2-core machine.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A started cluster that deletes its directory when dropped, after killing its members.
pub struct TestCluster {
    // Declared first so it is dropped first: members die before their directory goes.
    pub cluster: LocalCluster,
    dir: TempDir,
}

/// Starts `members` members, with `server_args` added to every `shoal server` command
/// line, and waits until they agree on a leader.
pub async fn start_cluster(members: usize, server_args: &[&str]) -> TestCluster {
    start_cluster_with_env(members, server_args, &[]).await
}

/// `start_cluster`, with `server_env` added to every member's environment.
pub async fn start_cluster_with_env(
    members: usize,
    server_args: &[&str],
    server_env: &[(&str, &str)],
) -> TestCluster {
    let dir =
        tempfile::Builder::new().prefix("shoal-cluster-").tempdir().expect("creating a temporary directory");
    let mut config = LocalClusterConfig::new(env!("CARGO_BIN_EXE_shoal"), dir.path());
    // A test's own timing flags replace these (flag and value pairs).
    let timing = TEST_TIMING_ARGS.chunks(2).filter(|pair| !server_args.contains(&pair[0])).flatten();
    config.server_args = timing.chain(server_args).map(|arg| (*arg).to_owned()).collect();
    config.server_env =
        server_env.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    let mut cluster = LocalCluster::new(config).expect("creating the cluster's directory and PKI");
    cluster.start(members).await.expect("starting the members");
    cluster.wait_ready().await.expect("electing a leader");
    TestCluster { cluster, dir }
}

impl Deref for TestCluster {
    type Target = LocalCluster;

    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl Drop for TestCluster {
    /// A failed test shows what its members logged: the directory is about to be deleted.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster directory: {}", self.dir.path().display());
            for i in 0..self.cluster.len() {
                eprintln!("{}", self.cluster.log_tail(i));
            }
        }
    }
}

/// The executable `name` from PATH, or `None` after saying why `test` skips; with
/// `SHOAL_REQUIRE_TOOLS=1` (CI) a missing tool fails the test instead. `install` says how to
/// get it.
pub fn tool_or_skip(name: &str, install: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        let reason = format!("{name} is not on PATH ({install})");
        assert!(std::env::var("SHOAL_REQUIRE_TOOLS").as_deref() != Ok("1"), "{test}: {reason}");
        eprintln!("skipping {test}: {reason}");
    }
    found
}

/// Polls `check` until it returns `Some`, failing the test after `SETTLE_TIMEOUT`.
pub async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_until_within(what, SETTLE_TIMEOUT, check).await
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn wait_until_within<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the node `name` reports Ready.
pub async fn wait_node_ready(client: &kube::Client, name: &str) {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    wait_until(&format!("node {name} Ready"), || async {
        let node = nodes.get_opt(name).await.ok().flatten()?;
        let ready = node.status?.conditions?.into_iter().find(|condition| condition.type_ == "Ready")?;
        (ready.status == "True").then_some(())
    })
    .await;
}

/// How long one kubectl command may run (`rollout status` waits for a whole rollout).
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(150);

/// kubectl with the cluster's admin kubeconfig and a discovery cache of its own.
pub struct Kubectl {
    exe: PathBuf,
    home: TempDir,
}

impl Kubectl {
    pub fn new(exe: &Path, cluster: &shoal::local_cluster::LocalCluster) -> Self {
        let home =
            tempfile::Builder::new().prefix("shoal-kubectl-").tempdir().expect("a temporary directory");
        let written = cluster.write_kubeconfig(0).expect("writing the admin's kubeconfig");
        std::fs::copy(written, home.path().join("kubeconfig")).expect("copying the kubeconfig");
        Self { exe: exe.to_owned(), home }
    }

    /// The standard output of a run that must succeed, with `stdin` as its input.
    pub async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        use tokio::io::AsyncWriteExt as _;
        let kubeconfig = self.home.path().join("kubeconfig");
        let mut child = tokio::process::Command::new(&self.exe)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.home.path().join("cache").display()))
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes()).await.expect("writing kubectl's input");
        }
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} still runs after {KUBECTL_TIMEOUT:?}"))
            .expect("waiting for kubectl");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl {args:?} failed: {stderr}\n{stdout}");
        stdout
    }
}

/// The body of `GET <path>` to `address` over a fresh HTTP/1.0 connection, or a sentence saying
/// how it failed (a status other than 200 included), within `timeout`.
pub async fn http_get(
    address: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut stream =
            tokio::net::TcpStream::connect(address).await.map_err(|error| format!("connect: {error}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|error| format!("write: {error}"))?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.map_err(|error| format!("read: {error}"))?;
        let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no body: {response:?}"))?;
        if !head.starts_with("HTTP/1.0 200") {
            return Err(format!("status: {head:?} {body:?}"));
        }
        Ok(body.trim().to_owned())
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| Err("timed out".to_owned()))
}
