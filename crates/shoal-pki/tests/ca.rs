//! The cluster CA: generating it, storing and reloading it and its certificates, and what
//! it writes into the certificates it issues.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use shoal_pki::{
    CA_CERT_FILE, CA_KEY_FILE, ClusterCa, ISSUED_VALIDITY_DAYS_MAX, IssueRequest, IssuedCert, PeerIdentity,
    PkiError, Usage, peer_identity,
};

fn client_request(common_name: &str, organizations: &[&str]) -> IssueRequest {
    IssueRequest {
        common_name: common_name.to_owned(),
        organizations: organizations.iter().map(|&organization| organization.to_owned()).collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        usage: Usage::Client,
        validity_days: 365,
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("file exists").permissions().mode() & 0o777
}

fn identity_of(issued: &IssuedCert) -> Option<PeerIdentity> {
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("PEM certificate");
    peer_identity(&der)
}

// A generated CA saved to a directory loads back as the same certificate, its key file is
// private to the owner, and the reloaded CA can still issue.
#[test]
fn generated_ca_round_trips_through_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ClusterCa::generate("alpha").expect("generate");
    ca.save(dir.path()).expect("save");

    assert_eq!(mode(&dir.path().join(CA_KEY_FILE)), 0o600);
    let loaded = ClusterCa::load(dir.path()).expect("load");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    assert_eq!(loaded.cert_der(), ca.cert_der());
    let identity = peer_identity(loaded.cert_der()).expect("CA subject");
    assert_eq!(identity, PeerIdentity { common_name: "shoal-ca alpha".to_owned(), organizations: vec![] });
    loaded.issue(&client_request("admin", &[])).expect("the reloaded CA issues");
}

// Saving over an existing CA replaces it, and a key file left with loose permissions is
// replaced by a private one rather than rewritten in place.
#[test]
fn saving_replaces_files_and_tightens_key_permissions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_path = dir.path().join(CA_KEY_FILE);
    fs::write(&key_path, "stale").expect("write stale key");
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).expect("loosen");

    let ca = ClusterCa::generate("alpha").expect("generate");
    ca.save(dir.path()).expect("save");

    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(ClusterCa::load(dir.path()).expect("load").cert_pem(), ca.cert_pem());
}

// An issued certificate and key saved under a stem load back unchanged, the key private.
#[test]
fn issued_cert_round_trips_through_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ClusterCa::generate("alpha").expect("generate");
    let issued = ca.issue(&client_request("admin", &["system:masters"])).expect("issue");
    issued.save(dir.path(), "admin").expect("save");

    assert_eq!(mode(&dir.path().join("admin.key")), 0o600);
    assert_eq!(IssuedCert::load(dir.path(), "admin").expect("load"), issued);
}

// The subject of an issued certificate carries the common name and every organization in
// request order, which rcgen alone cannot write (it keeps one value per attribute type).
#[test]
fn subject_carries_common_name_and_every_organization() {
    let ca = ClusterCa::generate("alpha").expect("generate");
    let check = |common_name: &str, organizations: &[&str]| {
        let issued = ca.issue(&client_request(common_name, organizations)).expect("issue");
        let expected = PeerIdentity {
            common_name: common_name.to_owned(),
            organizations: organizations.iter().map(|&organization| organization.to_owned()).collect(),
        };
        assert_eq!(identity_of(&issued), Some(expected));
    };
    check("admin", &[]);
    check("system:node:worker-1", &["system:nodes"]);
    check("alice", &["system:masters", "ops", "dev", "ops-2"]);
    check("bjørn", &["grüppe"]);
}

// Requests that would produce a useless or overlong certificate are refused up front.
#[test]
fn invalid_requests_are_refused() {
    let ca = ClusterCa::generate("alpha").expect("generate");
    let check = |request: IssueRequest, matches: fn(&PkiError) -> bool| {
        let error = ca.issue(&request).expect_err("refused");
        assert!(matches(&error), "unexpected error {error:?}");
    };
    let valid = client_request("admin", &[]);
    check(IssueRequest { common_name: String::new(), ..valid.clone() }, |error| {
        matches!(error, PkiError::EmptyCommonName)
    });
    check(IssueRequest { validity_days: 0, ..valid.clone() }, |error| {
        matches!(error, PkiError::ValidityOutOfRange { validity_days: 0, .. })
    });
    check(IssueRequest { validity_days: ISSUED_VALIDITY_DAYS_MAX + 1, ..valid.clone() }, |error| {
        matches!(error, PkiError::ValidityOutOfRange { max_days: ISSUED_VALIDITY_DAYS_MAX, .. })
    });
    check(
        IssueRequest { dns_names: vec!["bücher.example".to_owned()], ..valid },
        |error| matches!(error, PkiError::InvalidDnsName { name, .. } if name == "bücher.example"),
    );
}

// A CA directory whose key belongs to another CA is refused instead of issuing
// certificates nobody can verify.
#[test]
fn load_refuses_a_key_from_another_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let other_dir = tempfile::tempdir().expect("temp dir");
    ClusterCa::generate("alpha").expect("generate").save(dir.path()).expect("save");
    ClusterCa::generate("beta").expect("generate").save(other_dir.path()).expect("save");
    fs::copy(other_dir.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).expect("swap key");

    let error = ClusterCa::load(dir.path()).expect_err("mismatched key");
    assert!(matches!(error, PkiError::KeyMismatch { .. }), "unexpected error {error:?}");
}

// Missing or garbled files are reported with the path that failed.
#[test]
fn load_names_the_file_that_failed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_path = dir.path().join(CA_CERT_FILE);
    let error = ClusterCa::load(dir.path()).expect_err("no files");
    assert!(matches!(&error, PkiError::Io { path, .. } if *path == cert_path), "unexpected error {error:?}");

    fs::write(&cert_path, "not a certificate").expect("write");
    let error = ClusterCa::load(dir.path()).expect_err("no certificate");
    assert!(
        matches!(&error, PkiError::NoCertificate { path } if *path == cert_path),
        "unexpected error {error:?}"
    );
}
