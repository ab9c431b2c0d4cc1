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
