//! The one error type of this crate: what failed, and on which file.

use std::io;
use std::path::PathBuf;

use crate::P256_POINT_BYTES;

/// Everything that can go wrong generating, loading or using cluster certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is larger than {limit_bytes} bytes, too large for a PEM file")]
    FileTooLarge { path: PathBuf, limit_bytes: u64 },
    #[error("bad PEM in {path}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    #[error("malformed certificate in {path}")]
    MalformedCertificate { path: PathBuf },
    #[error("unusable private key in {path}")]
    PrivateKey {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("private key {key_path} does not belong to certificate {cert_path}")]
    KeyMismatch { cert_path: PathBuf, key_path: PathBuf },
    #[error("certificate generation failed")]
    Generate {
        #[source]
        source: rcgen::Error,
    },
    #[error("invalid DNS name {name:?}")]
    InvalidDnsName {
        name: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("the common name of a certificate must not be empty")]
    EmptyCommonName,
    #[error("validity of {validity_days} days is outside 1..={max_days}")]
    ValidityOutOfRange { validity_days: u32, max_days: u32 },
    #[error("CA certificate in {path} is not usable as a trust anchor")]
    TrustAnchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the client certificate verifier")]
    ClientVerifier {
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("the certificate in {path} is not a valid credential from its CA")]
    CredentialRejected {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "a public key must be an uncompressed P-256 point of {P256_POINT_BYTES} bytes starting with 0x04, not {length} bytes"
    )]
    PublicKeyShape { length: usize },
    #[error("the public key is not a point on the P-256 curve")]
    PublicKeyNotOnCurve,
    #[error("the system's random number generator failed")]
    Random,
    #[error("rustls rejected the TLS configuration")]
    Rustls {
        #[source]
        source: rustls::Error,
    },
}
