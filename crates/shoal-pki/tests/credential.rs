//! Certificates for keys the CA never sees (`ClusterCa::issue_for_key`), and checking a
//! credential on disk (`verify_credential`) the way a node does before reusing it.

use std::path::Path;
use std::time::{Duration, SystemTime};

use shoal_pki::{
    ClusterCa, IssueRequest, IssuedCert, NodeKey, PeerIdentity, PkiError, TlsFiles, Usage, verify_credential,
};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn node_request(usage: Usage, validity_days: u32) -> IssueRequest {
    IssueRequest {
        common_name: "system:node:n1".to_owned(),
        organizations: vec!["system:nodes".to_owned()],
        dns_names: vec!["n1.example".to_owned()],
        ip_addresses: vec!["127.0.0.1".parse().expect("IP")],
        usage,
        validity_days,
    }
}

/// Saves `ca`'s certificate, `cert_pem` and `key`'s private half as a credential in `dir`.
fn save_credential(dir: &Path, ca: &ClusterCa, cert_pem: String, key: &NodeKey) -> TlsFiles {
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).expect("write CA");
    IssuedCert { cert_pem, key_pem: key.private_key_pem() }.save(dir, "node").expect("save");
    TlsFiles::in_dir(dir, "node")
}

// A certificate issued for a node's public point, saved with the node's own private key,
// is a valid credential naming the node, for client and server use.
#[test]
fn a_certified_public_key_makes_a_valid_credential() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ClusterCa::generate("alpha").expect("generate");
    let key = NodeKey::generate().expect("key");
    let cert = ca.issue_for_key(&node_request(Usage::Both, 365), &key.public_key()).expect("issue");
    let files = save_credential(dir.path(), &ca, cert, &key);

    let identity = verify_credential(&files, SystemTime::now()).expect("valid");
    let expected = PeerIdentity {
        common_name: "system:node:n1".to_owned(),
        organizations: vec!["system:nodes".to_owned()],
    };
    assert_eq!(identity, expected);
    // The server side needs the certificate too: rustls accepts it as a serving certificate.
    shoal_pki::server_config(&files, shoal_pki::ClientAuth::Optional).expect("serves with it");
}

// Each way a credential on disk can be unusable is refused: a key that is not the
// certificate's, a certificate from another CA, one that has expired, and one without
// client use.
#[test]
fn unusable_credentials_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ClusterCa::generate("alpha").expect("generate");
    let key = NodeKey::generate().expect("key");
    let check = |cert: String, key: &NodeKey, now: SystemTime, matches: fn(&PkiError) -> bool| {
        let files = save_credential(dir.path(), &ca, cert, key);
        let error = verify_credential(&files, now).expect_err("refused");
        assert!(matches(&error), "unexpected error {error:?}");
    };
    let valid = || ca.issue_for_key(&node_request(Usage::Both, 365), &key.public_key()).expect("issue");

    let other_key = NodeKey::generate().expect("key");
    check(valid(), &other_key, SystemTime::now(), |error| matches!(error, PkiError::KeyMismatch { .. }));

    let other_ca = ClusterCa::generate("alpha").expect("generate");
    let foreign = other_ca.issue_for_key(&node_request(Usage::Both, 365), &key.public_key()).expect("issue");
    check(foreign, &key, SystemTime::now(), |error| matches!(error, PkiError::CredentialRejected { .. }));

    check(valid(), &key, SystemTime::now() + 366 * DAY, |error| {
        matches!(error, PkiError::CredentialRejected { .. })
    });

    let server_only = ca.issue_for_key(&node_request(Usage::Server, 365), &key.public_key()).expect("issue");
    check(server_only, &key, SystemTime::now(), |error| matches!(error, PkiError::CredentialRejected { .. }));
}
