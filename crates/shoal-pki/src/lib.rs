//! shoal's certificates: the cluster CA, the certificates it issues, and rustls configs over them.
//!
//! Store peers, the etcd-compatible client API and the Kubernetes API server all speak
//! mutual TLS rooted in one cluster CA. This crate creates that CA ([`ClusterCa`]), issues
//! server and client certificates from it ([`IssueRequest`]), stores both as PEM files, and
//! turns a set of those files ([`TlsFiles`]) into rustls configs that trust only the cluster
//! CA ([`server_config`], [`client_config`]). [`peer_identity`] reads the user name and groups
//! (`CN=` and `O=`, as Kubernetes does) from a verified peer certificate.
//!
//! A joining node's key never leaves the node: it generates a [`NodeKey`], sends the public
//! point, and the CA certifies that point ([`ClusterCa::issue_for_key`] over a checked
//! [`P256PublicKey`]). [`verify_credential`] tells the node whether the credential it saved
//! is still usable.
//!
//! Architecture invariant: every rustls config is built with the ring provider passed in
//! explicitly, never with a process-wide default, so nothing here depends on which crate
//! happened to install one first.

mod ca;
mod credential;
mod der;
mod error;
mod files;
mod identity;
mod public_key;
mod tls;

pub use ca::{
    CA_CERT_FILE, CA_KEY_FILE, CA_VALIDITY_DAYS, ClusterCa, ISSUED_VALIDITY_DAYS_MAX, IssueRequest,
    IssuedCert, Usage,
};
pub use credential::verify_credential;
pub use error::PkiError;
pub use files::PEM_FILE_BYTES_MAX;
pub use identity::{PeerIdentity, peer_identity};
pub use public_key::{NodeKey, P256_POINT_BYTES, P256PublicKey};
pub use tls::{ALPN_H2, ClientAuth, TlsFiles, client_config, server_config};
