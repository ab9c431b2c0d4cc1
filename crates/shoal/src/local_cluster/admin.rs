//! What `LocalCluster` asks its members over etcd's v3 API, with the admin's certificate:
//! status, readiness, catching up, and membership changes.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use shoal_store::etcd::proto::etcdserverpb as pb;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::{LocalCluster, POLL_INTERVAL};

/// How long the running members get to agree on a leader.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a member gets to reach a revision the cluster already has (after a restart, a
/// re-add): a snapshot install plus the log after it.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dialing a member may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one RPC of the harness may take. Member add and remove go through the leader,
/// which retries for up to `shoal_store::store::WRITE_TIMEOUT`; this leaves room for that.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

impl LocalCluster {
    /// A gRPC endpoint of member `i`'s etcd API with the admin's certificate; the caller sets
    /// request timeouts and connects.
    pub fn client_endpoint(&self, i: usize) -> anyhow::Result<Endpoint> {
        let files = shoal_store::server::TlsFiles {
            ca: self.admin.ca.clone(),
            cert: self.admin.cert.clone(),
            key: self.admin.key.clone(),
        };
        let tls = shoal_store::server::peer_client_tls(&files).context("loading the admin certificate")?;
        let endpoint = Endpoint::from_shared(self.member(i).client_url())
            .context("member client URL")?
            .tls_config(tls)
            .context("TLS settings")?
            .connect_timeout(CONNECT_TIMEOUT);
        Ok(endpoint)
    }

    /// A channel to member `i` whose requests time out after `RPC_TIMEOUT`. It connects on
    /// first use and reconnects after the member restarts.
    pub fn channel(&self, i: usize) -> anyhow::Result<Channel> {
        Ok(self.client_endpoint(i)?.timeout(RPC_TIMEOUT).connect_lazy())
    }

    /// Adds a member to the cluster (Cluster.MemberAdd, as `etcdctl member add`), starts it
    /// with `--initial-cluster-state existing` and waits until it accepts client connections.
    /// Returns its index; it catches up and is promoted to a voter by itself.
    pub async fn add_member(&mut self, name: &str) -> anyhow::Result<usize> {
        let i = self.plan_member(name)?;
        self.member_add(i).await?;
        self.join(i).await?;
        Ok(i)
    }

    /// Asks the cluster to add member `i` (by its peer URL) and returns the id it was given.
    /// Use it again to re-add a member that was removed and wiped.
    pub async fn member_add(&self, i: usize) -> anyhow::Result<u64> {
        let request = pb::MemberAddRequest { peer_ur_ls: vec![self.member(i).peer_url()], is_learner: false };
        let response = self
            .on_any_member(i, "member add", |channel| {
                let request = request.clone();
                async move { pb::cluster_client::ClusterClient::new(channel).member_add(request).await }
            })
            .await?;
        response.member.map(|member| member.id).context("member add answered without the member")
    }

    /// Removes member `i` from the membership (Cluster.MemberRemove); its process, if any,
    /// keeps running until killed or stopped.
    pub async fn remove_member(&self, i: usize) -> anyhow::Result<()> {
        let id = self.member_id(i).await?;
        let request = pb::MemberRemoveRequest { id };
        self.on_any_member(i, "member remove", |channel| async move {
            pb::cluster_client::ClusterClient::new(channel).member_remove(request).await
        })
        .await?;
        Ok(())
    }

    /// Member `i`'s id in the membership, as another running member lists it.
    pub async fn member_id(&self, i: usize) -> anyhow::Result<u64> {
        let peer_url = self.member(i).peer_url();
        let list = self
            .on_any_member(i, "member list", |channel| async move {
                pb::cluster_client::ClusterClient::new(channel)
                    .member_list(pb::MemberListRequest::default())
                    .await
            })
            .await?;
        let member = list.members.iter().find(|member| member.peer_ur_ls.contains(&peer_url));
        member.map(|member| member.id).with_context(|| format!("no member has peer URL {peer_url}"))
    }

    /// Member `i`'s `endpoint status`.
    pub async fn status(&self, i: usize) -> anyhow::Result<pb::StatusResponse> {
        let mut client = pb::maintenance_client::MaintenanceClient::new(self.channel(i)?);
        let response = client.status(pb::StatusRequest {}).await;
        let response = response.with_context(|| format!("status of member {}", self.member(i).name))?;
        Ok(response.into_inner())
    }

    /// Waits until every running member names the same leader, itself a running member, which
    /// lists every running member by name and URLs; returns the leader's index.
    pub async fn wait_ready(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let seen = self.agreed_leader().await;
            match seen {
                Ok(Some(leader)) => return Ok(leader),
                Ok(None) | Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL_INTERVAL).await,
                Ok(None) => bail!("the running members did not agree on a leader within {READY_TIMEOUT:?}"),
                Err(error) => {
                    return Err(error.context(format!("the cluster was not ready within {READY_TIMEOUT:?}")));
                }
            }
        }
    }

    /// The running members' common leader, if they agree on one that runs.
    async fn agreed_leader(&self) -> anyhow::Result<Option<usize>> {
        let running = self.running();
        ensure!(!running.is_empty(), "no member is running");
        let mut leaders = BTreeSet::new();
        let mut ids = Vec::new();
        for i in &running {
            let status = self.status(*i).await?;
            leaders.insert(status.leader);
            ids.push(status.header.map_or(0, |header| header.member_id));
        }
        let [leader] = leaders.into_iter().collect::<Vec<_>>()[..] else { return Ok(None) };
        let Some(leader) = ids.iter().position(|id| *id == leader && leader != 0).map(|at| running[at])
        else {
            return Ok(None);
        };
        Ok(self.all_published(leader, &running).await?.then_some(leader))
    }

    /// Whether member `at` lists every member of `members` with its name and client URL,
    /// which each member publishes by itself shortly after it starts.
    async fn all_published(&self, at: usize, members: &[usize]) -> anyhow::Result<bool> {
        let mut client = pb::cluster_client::ClusterClient::new(self.channel(at)?);
        let list = client.member_list(pb::MemberListRequest::default()).await?.into_inner();
        Ok(members.iter().map(|i| self.member(*i)).all(|member| {
            list.members.iter().any(|listed| {
                listed.name == member.name
                    && listed.peer_ur_ls == [member.peer_url()]
                    && listed.client_ur_ls == [member.client_url()]
            })
        }))
    }

    /// Waits until member `i` has applied `revision` (its serializable reads show it).
    pub async fn wait_caught_up(&self, i: usize, revision: i64) -> anyhow::Result<()> {
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let mut seen = None;
        while Instant::now() < deadline {
            if let Ok(status) = self.status(i).await {
                seen = status.header.map(|header| header.revision);
                if seen >= Some(revision) {
                    return Ok(());
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        bail!(
            "member {} reached revision {seen:?}, not {revision}, within {CATCH_UP_TIMEOUT:?}\n{}",
            self.member(i).name,
            self.log_tail(i)
        )
    }

    /// Runs `call` on the running members other than `except`, in turn, until one answers
    /// with anything but "unavailable".
    async fn on_any_member<T, F, Fut>(&self, except: usize, what: &str, call: F) -> anyhow::Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last_error = None;
        for j in self.running().into_iter().filter(|j| *j != except) {
            match call(self.channel(j)?).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == tonic::Code::Unavailable => last_error = Some(status),
                Err(status) => bail!("{what} on member {}: {status}", self.member(j).name),
            }
        }
        match last_error {
            Some(status) => bail!("{what}: no member could answer: {status}"),
            None => bail!("{what}: no other member is running"),
        }
    }
}
