//! The cluster's certificates on disk: created at first start, reused afterwards.

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use shoal_pki::{ClusterCa, IssueRequest, IssuedCert, TlsFiles, Usage};

/// Validity of member and client certificates issued at init.
const ISSUED_VALIDITY_DAYS: u32 = 365;

/// Loads the cluster CA from `dir`, creating it if this is the cluster's first start.
pub fn ensure_ca(dir: &Path, cluster: &str) -> anyhow::Result<ClusterCa> {
    if dir.join("ca.crt").exists() {
        return ClusterCa::load(dir)
            .with_context(|| format!("loading the cluster CA from {}", dir.display()));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = ClusterCa::generate(cluster).context("generating the cluster CA")?;
    ca.save(dir).with_context(|| format!("saving the cluster CA to {}", dir.display()))?;
    Ok(ca)
}

/// The certificate a member serves and dials its peers with, valid for `hosts`.
pub fn ensure_member_cert(
    ca: &ClusterCa,
    dir: &Path,
    name: &str,
    hosts: &[String],
) -> anyhow::Result<TlsFiles> {
    let stem = format!("member-{name}");
    let mut request = issue_request(name, Usage::Both);
    for host in hosts.iter().chain(&["127.0.0.1".to_string(), "localhost".to_string()]) {
        match host.parse::<IpAddr>() {
            Ok(ip) if !request.ip_addresses.contains(&ip) => request.ip_addresses.push(ip),
            Ok(_) => {}
            Err(_) if !request.dns_names.contains(host) => request.dns_names.push(host.clone()),
            Err(_) => {}
        }
    }
    ensure_issued(ca, dir, &stem, &request)
}

/// The administrator's client certificate, for etcdctl and (later) kubectl.
pub fn ensure_admin_cert(ca: &ClusterCa, dir: &Path) -> anyhow::Result<TlsFiles> {
    let mut request = issue_request("admin", Usage::Client);
    request.organizations.push("system:masters".into());
    ensure_issued(ca, dir, "admin", &request)
}

/// The file of bearer tokens the API servers accept (Kubernetes' static token file format).
pub const TOKEN_FILE: &str = "tokens.csv";
/// The keys that encrypt Secrets at rest; every server of a cluster needs the same file.
pub const ENCRYPTION_KEY_FILE: &str = "encryption.key";

/// The admin's bearer token, creating the token file with it at the cluster's first start.
pub fn ensure_admin_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(TOKEN_FILE);
    if !path.exists() {
        let token = random_token();
        let line = format!("{token},admin,admin,\"system:masters\"\n");
        write_new_private(&path, &line)?;
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let token = text
        .lines()
        .find(|line| line.split(',').nth(1) == Some("admin"))
        .and_then(|line| line.split(',').next())
        .with_context(|| format!("{} has no admin token", path.display()))?;
    Ok(token.to_owned())
}

/// 32 random bytes as hex.
fn random_token() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Creates a file only its owner can read; fails if it exists.
pub fn write_new_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The certificate API servers present to agents' kubelet ports (group `shoal:apiservers`).
pub fn ensure_kubelet_client_cert(ca: &ClusterCa, dir: &Path) -> anyhow::Result<TlsFiles> {
    let mut request = issue_request("shoal:apiserver", Usage::Client);
    request.organizations.push(shoal_agent::kubelet_server::API_SERVER_GROUP.into());
    ensure_issued(ca, dir, "kubelet-client", &request)
}

fn issue_request(common_name: &str, usage: Usage) -> IssueRequest {
    IssueRequest {
        common_name: common_name.into(),
        organizations: vec![],
        dns_names: vec![],
        ip_addresses: vec![],
        usage,
        validity_days: ISSUED_VALIDITY_DAYS,
    }
}

fn ensure_issued(ca: &ClusterCa, dir: &Path, stem: &str, request: &IssueRequest) -> anyhow::Result<TlsFiles> {
    let files = TlsFiles::in_dir(dir, stem);
    if !files.cert.exists() {
        let issued: IssuedCert = ca.issue(request).with_context(|| format!("issuing {stem}"))?;
        issued.save(dir, stem).with_context(|| format!("saving {stem} to {}", dir.display()))?;
    }
    Ok(files)
}
