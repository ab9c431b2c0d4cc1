//! rustls server and client configs that trust only the cluster CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::PkiError;
use crate::ca::CA_CERT_FILE;
use crate::files;

/// ALPN protocol id of HTTP/2, which gRPC and the Kubernetes API both speak. Set on every
/// config built here; callers that speak something else overwrite `alpn_protocols`.
pub const ALPN_H2: &[u8] = b"h2";

/// Where one TLS identity lives on disk: the CA to trust, and this side's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of the CA certificates to trust.
    pub ca: PathBuf,
    /// PEM file of this side's certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file of this side's private key.
    pub key: PathBuf,
}

/// Whether a server asks connecting clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate issued by the CA.
    Required,
    /// Clients may present one, and it is verified if they do; others authenticate some
    /// other way (the Kubernetes API's bearer tokens).
    Optional,
    /// Clients are not asked; the `ca` file is not read.
    None,
}

impl TlsFiles {
    /// The layout `ClusterCa::save` and `IssuedCert::save` write: `dir/ca.crt`,
    /// `dir/<stem>.crt` and `dir/<stem>.key`.
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        Self {
            ca: dir.join(CA_CERT_FILE),
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// A server config presenting `files.cert`, verifying client certificates against
/// `files.ca` as `client_auth` says, offering ALPN `h2`.
pub fn server_config(files: &TlsFiles, client_auth: ClientAuth) -> Result<ServerConfig, PkiError> {
    let provider = ring_provider();
    let chain = files::read_certificates(&files.cert)?;
    let key = files::read_private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| PkiError::Rustls { source })?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required | ClientAuth::Optional => {
            let roots = Arc::new(read_roots(&files.ca)?);
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            if client_auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|source| PkiError::ClientVerifier { source })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|source| PkiError::Rustls { source })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// A client config trusting only the CAs in `files.ca`, presenting `files.cert`,
/// offering ALPN `h2`.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, PkiError> {
    let roots = read_roots(&files.ca)?;
    let chain = files::read_certificates(&files.cert)?;
    let key = files::read_private_key(&files.key)?;
    let mut config = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| PkiError::Rustls { source })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|source| PkiError::Rustls { source })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The ring provider, passed explicitly so no process-wide default is needed or consulted.
pub(crate) fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A trust store holding every certificate in `path`.
pub(crate) fn read_roots(path: &Path) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for certificate in files::read_certificates(path)? {
        roots.add(certificate).map_err(|source| PkiError::TrustAnchor { path: path.to_owned(), source })?;
    }
    Ok(roots)
}
