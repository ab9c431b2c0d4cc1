//! Joining a node with a bootstrap token, against 3-member clusters of `shoal server`
//! processes: `create_join_token` as the admin, `obtain_node_credential` pinning the CA by its
//! hash, and what the node's credential may then do (its own Node, not another's). And the
//! refusals: wrong and expired tokens get 401, and a server that answers with another CA
//! never sees the token (`Imposter`, a TLS server that records what it is sent).

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use shoal::join::{CaTrust, JoinError, ca_cert_hash, node_client_config, obtain_node_credential};
use shoal::local_cluster::LocalCluster;
use shoal::token::create_join_token;
use shoal_pki::{ClientAuth, ClusterCa, IssueRequest, TlsFiles, Usage};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use common::start_cluster;

/// A bound on each step against the cluster, so a hang fails the test instead of stalling it.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a request the imposter reads: a join request's head and body are far smaller.
const IMPOSTER_REQUEST_BYTES_MAX: usize = 64 << 10;
const ADDRESSES: [&str; 2] = ["127.0.0.1", "localhost"];

// Creates a token as the admin and joins node n1 through another member than the admin's (so
// the token is found on a server that did not write it), pinning the CA by hash. Checks that
// the key is private, that the credential creates and updates Node n1 but gets 403 updating
// n2, that the token alone may not even list Nodes, and that joining again with the
// credential in place reuses it without asking the server (the token given is bogus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_writes_only_its_own_node() {
    let cluster = start_cluster(3, &[]).await;
    let admin = admin_client(&cluster).await;
    let token =
        step(create_join_token(&admin, Duration::from_secs(3600), "for n1")).await.expect("creating a token");
    let hash = cluster_ca_hash(&cluster);
    let server = cluster.member(1).api_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let addresses = ADDRESSES.map(str::to_owned);

    let files = step(obtain_node_credential(
        &server,
        &token,
        CaTrust::Hash(hash.clone()),
        "n1",
        &addresses,
        dir.path(),
    ))
    .await
    .expect("joining as n1");
    assert_eq!(files, TlsFiles::in_dir(dir.path(), "node"));
    assert_eq!(std::fs::metadata(&files.key).expect("key").permissions().mode() & 0o777, 0o600);

    let node = kube::Client::try_from(node_client_config(&server, &files).expect("config")).expect("client");
    let nodes = Api::<Node>::all(node);
    step(nodes.create(&PostParams::default(), &node_object("n1"))).await.expect("n1 creates its Node");
    let mut own = step(nodes.get("n1")).await.expect("n1 reads its Node");
    own.metadata.labels = Some([("joined".to_owned(), "yes".to_owned())].into());
    step(nodes.replace("n1", &PostParams::default(), &own)).await.expect("n1 updates its Node");

    step(Api::<Node>::all(admin.clone()).create(&PostParams::default(), &node_object("n2")))
        .await
        .expect("the admin creates n2");
    let mut other = step(nodes.get("n2")).await.expect("n1 reads n2");
    other.metadata.labels = Some([("taken".to_owned(), "yes".to_owned())].into());
    let refused = step(nodes.replace("n2", &PostParams::default(), &other)).await.expect_err("n1 updates n2");
    assert_eq!(api_code(&refused), Some(403), "{refused:?}");

    let bootstrapper = token_client(&cluster, &token);
    let refused =
        step(Api::<Node>::all(bootstrapper).list(&ListParams::default())).await.expect_err("listing");
    assert_eq!(api_code(&refused), Some(403), "{refused:?}");

    let cert_before = std::fs::read(&files.cert).expect("cert");
    let again = step(obtain_node_credential(
        &server,
        "zzzzzz.zzzzzzzzzzzzzzzz",
        CaTrust::Hash(hash),
        "n1",
        &addresses,
        dir.path(),
    ))
    .await
    .expect("reusing the credential");
    assert_eq!(again, files);
    assert_eq!(std::fs::read(&files.cert).expect("cert"), cert_before);
}

// Tries to join with a wrong secret for a real token id, with an unknown id, and with a token
// created with a one-second lifetime once that second has passed. Each is refused with 401,
// and no credential is left behind. The CA is trusted from its file here, the other way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_expired_tokens_get_401() {
    let cluster = start_cluster(3, &[]).await;
    let admin = admin_client(&cluster).await;
    let valid =
        step(create_join_token(&admin, Duration::from_secs(3600), "")).await.expect("creating a token");
    let expiring =
        step(create_join_token(&admin, Duration::from_secs(1), "")).await.expect("creating a token");
    let (id, _) = valid.split_once('.').expect("id.secret");
    // Expirations are written in whole seconds, so one second of lifetime ends within two.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let server = cluster.member(0).api_url();
    let ca = CaTrust::File(cluster.pki_dir().join("ca.crt"));
    let dir = tempfile::tempdir().expect("temp dir");
    for token in [format!("{id}.0000000000000000"), "abc123.0123456789abcdef".to_owned(), expiring] {
        let error = step(obtain_node_credential(&server, &token, ca.clone(), "n1", &[], dir.path()))
            .await
            .expect_err("joining with a bad token");
        assert!(
            matches!(error.downcast_ref::<JoinError>(), Some(JoinError::Refused { code: 401, .. })),
            "{token}: {error:#}"
        );
        assert!(!dir.path().join("node.key").exists(), "{token}: a key was saved");
    }
    step(obtain_node_credential(&server, &valid, ca, "n1", &[], dir.path()))
        .await
        .expect("the valid token joins");
}

// Points a node at an imposter that serves its own CA, giving the node the hash of another
// CA. Checks that joining fails with a hash mismatch, that the imposter was asked for the CA
// and nothing else (no request carried the token), and that no key was saved. Then, given
// the imposter's own hash, the node does send it the token: the recorder would have seen it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_hash_is_refused_before_the_token_is_sent() {
    let imposter_dir = tempfile::tempdir().expect("temp dir");
    let imposter = Imposter::start(imposter_dir.path()).await;
    let cluster_ca = ClusterCa::generate("shoal").expect("CA");
    let token = "abcdef.0123456789abcdef";
    let dir = tempfile::tempdir().expect("temp dir");

    let hash = ca_cert_hash(cluster_ca.cert_pem()).expect("hash");
    let error =
        step(obtain_node_credential(&imposter.url, token, CaTrust::Hash(hash), "n1", &[], dir.path()))
            .await
            .expect_err("joining through the imposter");
    assert!(matches!(error.downcast_ref::<JoinError>(), Some(JoinError::CaHashMismatch { .. })), "{error:#}");
    let requests = imposter.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].starts_with("GET /shoal/v1/ca "), "{requests:?}");
    assert!(!requests[0].contains(token) && !requests[0].to_ascii_lowercase().contains("authorization"));
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "the node saved something");

    let own_hash = ca_cert_hash(&imposter.ca_pem).expect("hash");
    step(obtain_node_credential(&imposter.url, token, CaTrust::Hash(own_hash), "n1", &[], dir.path()))
        .await
        .expect_err("the imposter answers the join with a PEM");
    let requests = imposter.requests();
    assert!(
        requests.iter().any(|request| request.starts_with("POST /shoal/v1/join ") && request.contains(token))
    );
}

async fn step<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP_TIMEOUT, future).await.expect("the step finished in time")
}

async fn admin_client(cluster: &LocalCluster) -> kube::Client {
    let path = cluster.write_kubeconfig(0).expect("writing the kubeconfig");
    let kubeconfig = Kubeconfig::read_from(&path).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config");
    kube::Client::try_from(config).expect("a client")
}

/// A client that authenticates with a bootstrap token only.
fn token_client(cluster: &LocalCluster, token: &str) -> kube::Client {
    let mut config = kube::Config::new(cluster.member(0).api_url().parse().expect("URL"));
    let ca = std::fs::read_to_string(cluster.pki_dir().join("ca.crt")).expect("CA");
    config.root_cert = Some(vec![pem_der(&ca)]);
    let bearer = format!("Bearer {token}").parse().expect("header value");
    config.headers.push((http::header::AUTHORIZATION, bearer));
    kube::Client::try_from(config).expect("a client")
}

fn cluster_ca_hash(cluster: &LocalCluster) -> String {
    ca_cert_hash(&std::fs::read_to_string(cluster.pki_dir().join("ca.crt")).expect("CA")).expect("hash")
}

fn pem_der(pem: &str) -> Vec<u8> {
    pem::parse(pem).expect("PEM").into_contents()
}

fn node_object(name: &str) -> Node {
    Node { metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() }, ..Node::default() }
}

fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A TLS server with a CA of its own that answers every request with that CA's certificate
/// and records each request's head.
struct Imposter {
    url: String,
    ca_pem: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Imposter {
    async fn start(dir: &Path) -> Self {
        let ca = ClusterCa::generate("shoal").expect("CA");
        ca.save(dir).expect("saving the CA");
        let request = IssueRequest {
            common_name: "imposter".to_owned(),
            organizations: Vec::new(),
            dns_names: vec!["localhost".to_owned()],
            ip_addresses: vec!["127.0.0.1".parse().expect("IP")],
            usage: Usage::Server,
            validity_days: 1,
        };
        ca.issue(&request).expect("issuing").save(dir, "server").expect("saving");
        let mut tls =
            shoal_pki::server_config(&TlsFiles::in_dir(dir, "server"), ClientAuth::None).expect("TLS");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let url = format!("https://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let ca_pem = ca.cert_pem().to_owned();
        let task = tokio::spawn(serve(listener, acceptor, ca_pem.clone(), requests.clone()));
        Self { url, ca_pem, requests, task }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for Imposter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    answer: String,
    requests: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let Ok(mut stream) = acceptor.accept(stream).await else { continue };
        let mut head = Vec::new();
        let mut buffer = [0u8; 4096];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < IMPOSTER_REQUEST_BYTES_MAX
        {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => head.extend_from_slice(&buffer[..read]),
            }
        }
        requests.lock().expect("lock").push(String::from_utf8_lossy(&head).into_owned());
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}
