//! kubeconfig files for the cluster's admin: what `kubectl` needs to reach a shoal API server.

use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use shoal_pki::TlsFiles;

/// Writes a kubeconfig at `path` for `server` (an `https://` URL), trusting the cluster CA
/// and authenticating with the admin's client certificate. Replaces an earlier file shoal
/// wrote there; refuses to touch a file it did not write.
pub fn write(path: &Path, server: &str, admin: &TlsFiles) -> anyhow::Result<()> {
    let read = |file: &Path| std::fs::read(file).with_context(|| format!("reading {}", file.display()));
    let ca = STANDARD.encode(read(&admin.ca)?);
    let cert = STANDARD.encode(read(&admin.cert)?);
    let key = STANDARD.encode(read(&admin.key)?);
    if let Ok(existing) = std::fs::read_to_string(path)
        && !existing.starts_with(MARKER)
    {
        anyhow::bail!("{} exists and was not written by shoal; not overwriting it", path.display());
    }
    let text = format!(
        "{MARKER}
apiVersion: v1
kind: Config
clusters:
- name: shoal
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: shoal-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: shoal
  context:
    cluster: shoal
    user: shoal-admin
    namespace: default
current-context: shoal
"
    );
    let _ = std::fs::remove_file(path);
    crate::certs::write_new_private(path, &text)
}

/// The first line of every kubeconfig shoal writes.
const MARKER: &str = "# Written by shoal for its admin; shoal rewrites this file.";
