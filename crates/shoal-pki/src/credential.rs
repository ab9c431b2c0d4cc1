//! Checking a credential on disk before using it: does the certificate chain to the CA beside
//! it, is it valid now, and does the key belong to it.
//!
//! A node keeps the credential it obtained at join and reuses it on every start; this is
//! how it tells a usable one from a stale, foreign or half-written one.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{KeyPair, PublicKeyData as _};
use rustls::pki_types::UnixTime;
use rustls::server::WebPkiClientVerifier;

use crate::der::CertificateView;
use crate::tls::{read_roots, ring_provider};
use crate::{PeerIdentity, PkiError, TlsFiles, files, peer_identity};

/// Checks that `files` hold a certificate the CA in `files.ca` issued, valid at `now` for
/// client use, with the private key in `files.key`; returns the identity it asserts.
pub fn verify_credential(files: &TlsFiles, now: SystemTime) -> Result<PeerIdentity, PkiError> {
    let roots = Arc::new(read_roots(&files.ca)?);
    let chain = files::read_certificates(&files.cert)?;
    let key_der = files::read_private_key(&files.key)?;
    let key = KeyPair::try_from(&key_der)
        .map_err(|source| PkiError::PrivateKey { path: files.key.clone(), source })?;
    let malformed = || PkiError::MalformedCertificate { path: files.cert.clone() };
    let (leaf, intermediates) = chain.split_first().ok_or_else(malformed)?;
    let view = CertificateView::parse(leaf).ok_or_else(malformed)?;
    if view.subject_public_key_info().encoded != key.subject_public_key_info() {
        return Err(PkiError::KeyMismatch { cert_path: files.cert.clone(), key_path: files.key.clone() });
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, ring_provider())
        .build()
        .map_err(|source| PkiError::ClientVerifier { source })?;
    let since_epoch = now.duration_since(UNIX_EPOCH).expect("the clock reads after 1970");
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::since_unix_epoch(since_epoch))
        .map_err(|source| PkiError::CredentialRejected { path: files.cert.clone(), source })?;
    peer_identity(leaf).ok_or_else(malformed)
}
