//! A node's side of joining: from a bootstrap token to the node's own credential.
//!
//! The node is given a server's URL, a bootstrap token (`shoal token create`) and a way to
//! trust the cluster CA: the CA certificate file, or only its hash (`sha256:<hex>` of the
//! certificate's DER). With a hash, the node fetches the CA from the public `/shoal/v1/ca`
//! over TLS it cannot verify yet, and checks the hash before anything else: a server that
//! answers with another CA never sees the token. Then the node generates its key, sends the
//! public half with the token over TLS verified against the pinned CA, and saves the
//! certificate it gets back beside its key. The private key never leaves the node.
//!
//! A node that already holds a valid credential for its name from that CA reuses it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::AsyncReadExt as _;
use shoal_apiserver::auth::{NODE_USER_PREFIX, NODES_GROUP};
use shoal_apiserver::join::{CA_PATH, JOIN_PATH, JoinRequest, JoinResponse};
use shoal_pki::{IssuedCert, NodeKey, TlsFiles};

/// The node's credential in its directory: `ca.crt`, `node.crt` and `node.key`.
pub const NODE_CREDENTIAL_STEM: &str = "node";
/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: a CA certificate, or two certificates, are a few KiB. The CA is
/// fetched before the server is trusted, so its answer in particular must be bounded.
const RESPONSE_BYTES_MAX: u64 = 64 << 10;
const HASH_PREFIX: &str = "sha256:";
/// Hex digits of a SHA-256 digest.
const HASH_HEX_DIGITS: usize = 64;

/// How a joining node comes to trust the cluster CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaTrust {
    /// A PEM file holding the CA certificate, obtained out of band.
    File(PathBuf),
    /// `sha256:<hex>` of the CA certificate's DER, as `shoal token create` prints it; the
    /// certificate itself is fetched from the server and checked against it.
    Hash(String),
}

/// What can go wrong joining that a caller may want to tell apart.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the CA hash {given:?} is not sha256:<64 hex digits>")]
    MalformedHash { given: String },
    #[error("the server's CA certificate hashes to {actual}, not {expected}; the token was not sent")]
    CaHashMismatch { expected: String, actual: String },
    #[error("the server refused with {code} {reason}: {message}")]
    Refused { code: u16, reason: String, message: String },
    #[error("the server's answer is larger than {limit_bytes} bytes")]
    ResponseTooLarge { limit_bytes: u64 },
    #[error("the credential is for {actual:?}, not {expected:?}")]
    WrongIdentity { expected: String, actual: String },
}

/// `sha256:<hex>` of the first certificate in `ca_pem`, DER encoded.
pub fn ca_cert_hash(ca_pem: &str) -> anyhow::Result<String> {
    let der = pem::parse_many(ca_pem)
        .context("the CA certificate is not PEM")?
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .context("no certificate in the CA PEM")?
        .into_contents();
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let hex: String = digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("{HASH_PREFIX}{hex}"))
}

/// The node credential for `node_name` in `dir`: the one already there if it is valid and
/// from the trusted CA, else a new one obtained from `server` (`https://host:port`) with the
/// bootstrap `token`. `addresses` (IPs and DNS names) are what the credential serves as.
pub async fn obtain_node_credential(
    server: &str,
    token: &str,
    ca: CaTrust,
    node_name: &str,
    addresses: &[String],
    dir: &Path,
) -> anyhow::Result<TlsFiles> {
    let files = TlsFiles::in_dir(dir, NODE_CREDENTIAL_STEM);
    let (expected_hash, ca_file_pem) = match ca {
        CaTrust::Hash(given) => (normalized_hash(&given)?, None),
        CaTrust::File(path) => {
            let pem =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            (ca_cert_hash(&pem)?, Some(pem))
        }
    };
    match check_credential(&files, node_name, &expected_hash) {
        Ok(()) => {
            tracing::info!(node = node_name, dir = %dir.display(), "reusing the node credential");
            return Ok(files);
        }
        Err(error) if files.cert.exists() => {
            tracing::info!(
                error = format!("{error:#}"),
                "the saved node credential is not usable; joining again"
            );
        }
        Err(_) => {}
    }
    let ca_pem = match ca_file_pem {
        Some(pem) => pem,
        None => fetch_pinned_ca(server, &expected_hash).await?,
    };
    let key = NodeKey::generate().context("generating the node's key")?;
    let request = JoinRequest {
        node_name: node_name.to_owned(),
        public_key: STANDARD.encode(key.public_key().point()),
        addresses: addresses.to_vec(),
    };
    let response = post_join(server, token, &ca_pem, &request).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&files.ca, &ca_pem).with_context(|| format!("writing {}", files.ca.display()))?;
    IssuedCert { cert_pem: response.certificate, key_pem: key.private_key_pem() }
        .save(dir, NODE_CREDENTIAL_STEM)
        .with_context(|| format!("saving the node credential in {}", dir.display()))?;
    check_credential(&files, node_name, &expected_hash)
        .context("the issued node credential is not usable")?;
    tracing::info!(node = node_name, dir = %dir.display(), "joined the cluster");
    Ok(files)
}

/// A kube-rs config that talks to `server` with the node credential in `files`.
pub fn node_client_config(server: &str, files: &TlsFiles) -> anyhow::Result<kube::Config> {
    let ca_pem =
        std::fs::read_to_string(&files.ca).with_context(|| format!("reading {}", files.ca.display()))?;
    let mut config = kube::Config::new(server.parse().with_context(|| format!("the server URL {server:?}"))?);
    config.root_cert = Some(certificates_der(&ca_pem)?);
    config.auth_info.client_certificate = Some(files.cert.to_string_lossy().into_owned());
    config.auth_info.client_key = Some(files.key.to_string_lossy().into_owned());
    Ok(config)
}

/// Whether `files` hold a valid credential for `node_name` from the CA with `expected_hash`.
fn check_credential(files: &TlsFiles, node_name: &str, expected_hash: &str) -> anyhow::Result<()> {
    let ca_pem =
        std::fs::read_to_string(&files.ca).with_context(|| format!("reading {}", files.ca.display()))?;
    let saved_hash = ca_cert_hash(&ca_pem)?;
    ensure!(saved_hash == expected_hash, "it is from the CA {saved_hash}, not {expected_hash}");
    let identity = shoal_pki::verify_credential(files, SystemTime::now())?;
    let expected = format!("{NODE_USER_PREFIX}{node_name}");
    if identity.common_name != expected || !identity.organizations.iter().any(|group| group == NODES_GROUP) {
        let actual = format!("{} (groups {:?})", identity.common_name, identity.organizations);
        return Err(JoinError::WrongIdentity { expected, actual }.into());
    }
    Ok(())
}

/// `given` as `sha256:<lowercase hex>`, or why it is not a hash.
fn normalized_hash(given: &str) -> Result<String, JoinError> {
    let malformed = || JoinError::MalformedHash { given: given.to_owned() };
    let hex = given.strip_prefix(HASH_PREFIX).ok_or_else(malformed)?;
    if hex.len() != HASH_HEX_DIGITS || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(malformed());
    }
    Ok(format!("{HASH_PREFIX}{}", hex.to_ascii_lowercase()))
}

/// The CA certificate `server` serves, if it has `expected_hash`.
async fn fetch_pinned_ca(server: &str, expected_hash: &str) -> anyhow::Result<String> {
    let mut config = kube::Config::new(server.parse().with_context(|| format!("the server URL {server:?}"))?);
    // The one unverified request: nothing is sent but the path, and what comes back is
    // trusted only if it has the hash.
    config.accept_invalid_certs = true;
    let client = client(config)?;
    let request = http::Request::get(CA_PATH).body(Vec::new())?;
    let body = send(&client, request).await.context("fetching the cluster CA")?;
    let pem = String::from_utf8(body).context("the server's CA certificate is not text")?;
    let actual = ca_cert_hash(&pem).context("the server's answer is not a CA certificate")?;
    if actual != expected_hash {
        return Err(JoinError::CaHashMismatch { expected: expected_hash.to_owned(), actual }.into());
    }
    Ok(pem)
}

/// Sends the join request with `token` to `server`, verified against `ca_pem`.
async fn post_join(
    server: &str,
    token: &str,
    ca_pem: &str,
    request: &JoinRequest,
) -> anyhow::Result<JoinResponse> {
    let mut config = kube::Config::new(server.parse().with_context(|| format!("the server URL {server:?}"))?);
    config.root_cert = Some(certificates_der(ca_pem)?);
    let client = client(config)?;
    let request = http::Request::post(JOIN_PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(serde_json::to_vec(request)?)?;
    let body = send(&client, request).await.context("asking the server for a node credential")?;
    serde_json::from_slice(&body).context("the server's answer to the join is not a join response")
}

/// A client that fails fast: joining is retried, if at all, by whoever asked for it.
fn client(mut config: kube::Config) -> anyhow::Result<kube::Client> {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    config.default_retry = false;
    kube::Client::try_from(config).context("building the HTTPS client")
}

/// Sends `request` and reads at most [`RESPONSE_BYTES_MAX`] of the answer; an error Status
/// becomes [`JoinError::Refused`].
async fn send(client: &kube::Client, request: http::Request<Vec<u8>>) -> anyhow::Result<Vec<u8>> {
    let exchange = async {
        let stream = match client.request_stream(request).await {
            Ok(stream) => stream,
            Err(kube::Error::Api(status)) => {
                return Err(JoinError::Refused {
                    code: status.code,
                    reason: status.reason,
                    message: status.message,
                }
                .into());
            }
            Err(error) => return Err(anyhow::Error::new(error)),
        };
        let mut body = Vec::new();
        Box::pin(stream).take(RESPONSE_BYTES_MAX + 1).read_to_end(&mut body).await?;
        if body.len() as u64 > RESPONSE_BYTES_MAX {
            return Err(JoinError::ResponseTooLarge { limit_bytes: RESPONSE_BYTES_MAX }.into());
        }
        Ok(body)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.context("the server did not answer in time")?
}

/// Every certificate in `pem`, DER encoded.
fn certificates_der(pem: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let certificates: Vec<Vec<u8>> = pem::parse_many(pem)
        .context("the CA certificate is not PEM")?
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    ensure!(!certificates.is_empty(), "no certificate in the CA PEM");
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The hash is of the certificate's DER, not its PEM text: the same certificate with other
    // line endings or a trailing key hashes the same; another certificate does not.
    #[test]
    fn ca_hash_is_of_the_der() {
        let ca = shoal_pki::ClusterCa::generate("alpha").expect("CA");
        let hash = ca_cert_hash(ca.cert_pem()).expect("hash");
        let digest = ring::digest::digest(&ring::digest::SHA256, ca.cert_der());
        let hex: String = digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hash, format!("sha256:{hex}"));
        assert_eq!(ca_cert_hash(&ca.cert_pem().replace('\n', "\r\n")).expect("hash"), hash);
        let other = shoal_pki::ClusterCa::generate("alpha").expect("CA");
        assert_ne!(ca_cert_hash(other.cert_pem()).expect("hash"), hash);
        assert!(ca_cert_hash("not PEM").is_err());
    }

    // Hashes are accepted in either case and normalized; a missing prefix, another length or
    // a non-hex digit is refused.
    #[test]
    fn hashes_are_normalized() {
        let hex = "ab".repeat(32);
        assert_eq!(
            normalized_hash(&format!("sha256:{}", hex.to_uppercase())).expect("hash"),
            format!("sha256:{hex}")
        );
        for bad in [
            hex.clone(),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:{}g", &hex[1..]),
        ] {
            assert!(matches!(normalized_hash(&bad), Err(JoinError::MalformedHash { .. })), "{bad}");
        }
    }
}
