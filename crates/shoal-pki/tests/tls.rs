//! rustls configs built from cluster certificates, exercised by real TLS handshakes over an
//! in-memory duplex pipe: who gets in, who is refused, and what the server learns.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use shoal_pki::{
    ALPN_H2, ClientAuth, ClusterCa, IssueRequest, PeerIdentity, TlsFiles, Usage, client_config,
    peer_identity, server_config,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Long enough for any handshake on a loaded machine; a hang fails the test instead.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const SERVER_NAME: &str = "localhost";
const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Two CAs on disk: the cluster's ("own", in the root) and an unrelated one ("other") of
/// the same name.
///
/// The root holds `ca.crt`, `server.*` (server use), `admin.*` (client use, two groups);
/// `other/` holds another `ca.crt` and an `admin.*` issued by it.
struct Pki {
    dir: TempDir,
}

/// What a client presents in a handshake.
#[derive(Debug, Clone, Copy)]
enum ClientCert {
    /// The cluster CA's client certificate.
    OwnCa,
    /// A client certificate from an unrelated CA.
    OtherCa,
    /// A certificate from the cluster CA, but for server use only.
    ServerUsage,
    /// No certificate at all.
    NoCert,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Both sides exchanged data; the server saw this client identity, if any.
    Accepted(Option<PeerIdentity>),
    Rejected,
}

fn request(common_name: &str, organizations: &[&str], usage: Usage) -> IssueRequest {
    IssueRequest {
        common_name: common_name.to_owned(),
        organizations: organizations.iter().map(|&organization| organization.to_owned()).collect(),
        dns_names: vec![SERVER_NAME.to_owned()],
        ip_addresses: vec![SERVER_IP],
        usage,
        validity_days: 30,
    }
}

fn admin_identity() -> PeerIdentity {
    PeerIdentity {
        common_name: "admin".to_owned(),
        organizations: vec!["system:masters".to_owned(), "ops".to_owned()],
    }
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let own = ClusterCa::generate("alpha").expect("generate");
        own.save(dir.path()).expect("save CA");
        own.issue(&request("server", &[], Usage::Server))
            .expect("issue")
            .save(dir.path(), "server")
            .expect("save");
        let admin = request("admin", &["system:masters", "ops"], Usage::Client);
        own.issue(&admin).expect("issue").save(dir.path(), "admin").expect("save");

        // The other CA has the same name, so only signatures tell the two apart: the
        // hardest case for a verifier, and what two clusters called alike would look like.
        let other_dir = dir.path().join("other");
        let other = ClusterCa::generate("alpha").expect("generate");
        other.save(&other_dir).expect("save CA");
        other.issue(&admin).expect("issue").save(&other_dir, "admin").expect("save");
        Self { dir }
    }

    fn files(&self, stem: &str) -> TlsFiles {
        TlsFiles::in_dir(self.dir.path(), stem)
    }

    fn server(&self, client_auth: ClientAuth) -> ServerConfig {
        server_config(&self.files("server"), client_auth).expect("server config")
    }

    fn client(&self, cert: ClientCert) -> ClientConfig {
        let own_ca = self.files("admin").ca;
        let files = match cert {
            ClientCert::OwnCa => self.files("admin"),
            ClientCert::OtherCa => {
                TlsFiles { ca: own_ca, ..TlsFiles::in_dir(&self.dir.path().join("other"), "admin") }
            }
            ClientCert::ServerUsage => self.files("server"),
            ClientCert::NoCert => return anonymous_client(&own_ca),
        };
        client_config(&files).expect("client config")
    }
}

/// A client trusting `ca` that presents no certificate; `client_config` always presents one.
fn anonymous_client(ca: &Path) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(certificate.expect("CA certificate")).expect("trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config
}

/// Runs a handshake plus one round trip of application data between the two configs.
///
/// With TLS 1.3 a client finishes its half before the server has judged its certificate,
/// so acceptance means both sides also exchanged data; a refusal shows up on either side.
async fn handshake(server: ServerConfig, client: ClientConfig, server_name: ServerName<'static>) -> Outcome {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let connector = TlsConnector::from(Arc::new(client));
    let server_side = async {
        let mut stream = acceptor.accept(server_io).await?;
        let mut ping = [0; 4];
        stream.read_exact(&mut ping).await?;
        stream.write_all(b"pong").await?;
        stream.flush().await?;
        let connection = stream.get_ref().1;
        assert_eq!(connection.alpn_protocol(), Some(ALPN_H2));
        let leaf = connection.peer_certificates().and_then(|chain| chain.first());
        Ok::<_, io::Error>(leaf.map(|leaf| peer_identity(leaf).expect("verified client has an identity")))
    };
    let client_side = async {
        let mut stream = connector.connect(server_name, client_io).await?;
        stream.write_all(b"ping").await?;
        stream.flush().await?;
        let mut pong = [0; 4];
        stream.read_exact(&mut pong).await?;
        assert_eq!(&pong, b"pong");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(ALPN_H2));
        Ok::<_, io::Error>(())
    };
    let both = async { tokio::join!(server_side, client_side) };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, both).await.expect("handshake finished in time") {
        (Ok(identity), Ok(())) => Outcome::Accepted(identity),
        _ => Outcome::Rejected,
    }
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("DNS name")
}

// Which clients a server admits under each client-auth mode: only certificates from the
// cluster CA issued for client use, and anonymous clients only when auth is not required.
#[tokio::test]
async fn server_admits_only_cluster_clients() {
    let pki = Pki::new();
    let check = async |client_auth: ClientAuth, cert: ClientCert, expected: Outcome| {
        let outcome = handshake(pki.server(client_auth), pki.client(cert), localhost()).await;
        assert_eq!(outcome, expected, "{client_auth:?} with {cert:?}");
    };
    check(ClientAuth::Required, ClientCert::OwnCa, Outcome::Accepted(Some(admin_identity()))).await;
    check(ClientAuth::Required, ClientCert::OtherCa, Outcome::Rejected).await;
    check(ClientAuth::Required, ClientCert::ServerUsage, Outcome::Rejected).await;
    check(ClientAuth::Required, ClientCert::NoCert, Outcome::Rejected).await;
    check(ClientAuth::Optional, ClientCert::OwnCa, Outcome::Accepted(Some(admin_identity()))).await;
    check(ClientAuth::Optional, ClientCert::OtherCa, Outcome::Rejected).await;
    check(ClientAuth::Optional, ClientCert::NoCert, Outcome::Accepted(None)).await;
    check(ClientAuth::None, ClientCert::NoCert, Outcome::Accepted(None)).await;
}

// The server certificate is valid for the IP address it was issued for as well as its DNS
// name, and not for other names.
#[tokio::test]
async fn server_cert_covers_exactly_its_names() {
    let pki = Pki::new();
    let check = async |server_name: ServerName<'static>, expected: Outcome| {
        let outcome =
            handshake(pki.server(ClientAuth::Required), pki.client(ClientCert::OwnCa), server_name.clone());
        assert_eq!(outcome.await, expected, "{server_name:?}");
    };
    check(ServerName::IpAddress(SERVER_IP.into()), Outcome::Accepted(Some(admin_identity()))).await;
    check(ServerName::try_from("elsewhere.example").expect("DNS name"), Outcome::Rejected).await;
}

// A client refuses a server whose certificate comes from another CA of the same name, even
// though that certificate names the right host.
#[tokio::test]
async fn client_refuses_server_from_other_ca() {
    let pki = Pki::new();
    let other = ClusterCa::generate("alpha").expect("generate");
    other
        .issue(&request("server", &[], Usage::Server))
        .expect("issue")
        .save(pki.dir.path(), "impostor")
        .expect("save");
    let impostor = server_config(&pki.files("impostor"), ClientAuth::None).expect("server config");

    let outcome = handshake(impostor, pki.client(ClientCert::OwnCa), localhost()).await;
    assert_eq!(outcome, Outcome::Rejected);
}

// A certificate issued with a past clock reading has expired by now, which shows that
// issue_at sets the validity window from the clock it is given.
#[tokio::test]
async fn client_refuses_expired_server_cert() {
    let pki = Pki::new();
    let ca = ClusterCa::load(pki.dir.path()).expect("load");
    let two_years_ago = SystemTime::now() - Duration::from_secs(2 * 365 * 24 * 60 * 60);
    let expired = ca.issue_at(&request("server", &[], Usage::Server), two_years_ago).expect("issue");
    expired.save(pki.dir.path(), "expired").expect("save");
    let server = server_config(&pki.files("expired"), ClientAuth::None).expect("server config");

    let outcome = handshake(server, pki.client(ClientCert::OwnCa), localhost()).await;
    assert_eq!(outcome, Outcome::Rejected);
}

// Certificates issued by a CA reloaded from disk chain to the saved ca.crt, and one
// certificate for both uses serves as server and as client, as store peers need.
#[tokio::test]
async fn reloaded_ca_issues_peer_certs_for_both_uses() {
    let pki = Pki::new();
    let ca = ClusterCa::load(pki.dir.path()).expect("load");
    ca.issue(&request("member-1", &[], Usage::Both))
        .expect("issue")
        .save(pki.dir.path(), "peer")
        .expect("save");
    let server = server_config(&pki.files("peer"), ClientAuth::Required).expect("server config");
    let client = client_config(&pki.files("peer")).expect("client config");

    let outcome = handshake(server, client, localhost()).await;
    let member = PeerIdentity { common_name: "member-1".to_owned(), organizations: vec![] };
    assert_eq!(outcome, Outcome::Accepted(Some(member)));
}
