//! The anchor: a cluster of real etcd processes (Debian's `etcd-server`), configured like
//! shoal's members — loopback, mutual TLS with certificates of the same CA, fsync on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::certs;

/// How long an etcd member gets to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

impl EtcdMember {
    pub fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

/// An etcd cluster; dropping it kills the processes.
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: PathBuf,
    pki_dir: PathBuf,
    exe: PathBuf,
}

impl EtcdCluster {
    /// Starts `size` etcd members with client ports `base_port + 10·i` (peer: the next port).
    pub async fn start(
        exe: &Path,
        dir: &Path,
        pki_dir: &Path,
        size: usize,
        base_port: u16,
    ) -> anyhow::Result<Self> {
        let ca = certs::ensure_ca(pki_dir, "shoal")?;
        let members: Vec<EtcdMember> = (0..size)
            .map(|i| {
                let offset = u16::try_from(10 * i).expect("a handful of members");
                EtcdMember {
                    name: format!("etcd{}", i + 1),
                    client_port: base_port + offset,
                    peer_port: base_port + offset + 1,
                    child: None,
                }
            })
            .collect();
        for member in &members {
            certs::ensure_member_cert(&ca, pki_dir, &member.name, &[])?;
        }
        let mut cluster =
            EtcdCluster { members, dir: dir.to_owned(), pki_dir: pki_dir.to_owned(), exe: exe.to_owned() };
        for i in 0..size {
            cluster.launch(i, "new")?;
        }
        for i in 0..size {
            wait_for_port(cluster.members[i].client_port).await?;
        }
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",")
    }

    fn launch(&mut self, i: usize, state: &str) -> anyhow::Result<()> {
        let initial_cluster = self.initial_cluster();
        let member = &self.members[i];
        let data_dir = self.dir.join(&member.name);
        let log = std::fs::File::create(self.dir.join(format!("{}.log", member.name)))?;
        let pki = |file: &str| self.pki_dir.join(file);
        let cert = pki(&format!("member-{}.crt", member.name));
        let key = pki(&format!("member-{}.key", member.name));
        let child = Command::new(&self.exe)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &member.client_url()])
            .args(["--advertise-client-urls", &member.client_url()])
            .args(["--listen-peer-urls", &member.peer_url()])
            .args(["--initial-advertise-peer-urls", &member.peer_url()])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "shoal-bench"])
            .arg("--cert-file")
            .arg(&cert)
            .arg("--key-file")
            .arg(&key)
            .arg("--trusted-ca-file")
            .arg(pki("ca.crt"))
            .arg("--client-cert-auth")
            .arg("--peer-cert-file")
            .arg(&cert)
            .arg("--peer-key-file")
            .arg(&key)
            .arg("--peer-trusted-ca-file")
            .arg(pki("ca.crt"))
            .arg("--peer-client-cert-auth")
            .args(["--logger", "zap", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    pub async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().await.context("killing etcd")?;
        }
        Ok(())
    }

    /// Restarts a killed member on its data directory.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.launch(i, "existing")?;
        wait_for_port(self.members[i].client_port).await
    }
}

pub async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on port {port} after {STARTUP_TIMEOUT:?}")
}
