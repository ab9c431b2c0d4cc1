//! etcd's `Cluster` service: member list, add (as a learner), promote and remove.

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::etcd::proto::etcdserverpb as pb;
use crate::etcd::status::{admin_status, header};
use crate::forward::MemberList;
use crate::raft::{Member, MemberId};
use crate::store::{AdminError, Store};

/// How long a member added without `--learner` may take to catch up before it is promoted.
const AUTO_PROMOTE_TIMEOUT: Duration = Duration::from_secs(120);

pub struct ClusterService {
    store: Store,
}

impl ClusterService {
    pub fn new(store: Store) -> Self {
        ClusterService { store }
    }

    fn members(&self) -> Vec<pb::Member> {
        members_to_proto(&self.store.members())
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        Some(header(&self.store, self.store.revision()))
    }
}

pub fn members_to_proto(list: &MemberList) -> Vec<pb::Member> {
    let voters = list.voters.iter().map(|(id, member)| member_to_proto(*id, member, false));
    let learners = list.learners.iter().map(|(id, member)| member_to_proto(*id, member, true));
    voters.chain(learners).collect()
}

fn member_to_proto(id: MemberId, member: &Member, is_learner: bool) -> pb::Member {
    let urls = |url: &String| if url.is_empty() { vec![] } else { vec![url.clone()] };
    pb::Member {
        id,
        name: member.name.clone(),
        peer_ur_ls: urls(&member.peer_url),
        client_ur_ls: urls(&member.client_url),
        is_learner,
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    /// Adds the member as a learner. Without `--learner` it is promoted to a voter by itself
    /// once it has caught up, so the quorum never waits on an empty member.
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let request = request.into_inner();
        let [peer_url] = request.peer_ur_ls.as_slice() else {
            return Err(Status::invalid_argument("etcdserver: exactly one peer URL per member"));
        };
        if self
            .store
            .members()
            .voters
            .values()
            .chain(self.store.members().learners.values())
            .any(|m| m.peer_url == *peer_url)
        {
            return Err(Status::failed_precondition("etcdserver: Peer URLs already exists"));
        }
        let member = Member { name: String::new(), peer_url: peer_url.clone(), client_url: String::new() };
        let id = self.store.add_learner(member.clone()).await.map_err(admin_status)?;
        if !request.is_learner {
            let store = self.store.clone();
            tokio::spawn(async move { promote_when_caught_up(store, id).await });
        }
        Ok(Response::new(pb::MemberAddResponse {
            header: self.header(),
            member: Some(member_to_proto(id, &member, true)),
            members: self.members(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.store.remove_member(request.into_inner().id).await.map_err(admin_status)?;
        Ok(Response::new(pb::MemberRemoveResponse { header: self.header(), members: self.members() }))
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(Status::unimplemented("shoal: member update is not supported; remove and re-add the member"))
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.store.read_barrier().await.map_err(crate::etcd::status::read_status)?;
        }
        Ok(Response::new(pb::MemberListResponse { header: self.header(), members: self.members() }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.store.promote(request.into_inner().id).await.map_err(admin_status)?;
        Ok(Response::new(pb::MemberPromoteResponse { header: self.header(), members: self.members() }))
    }
}

async fn promote_when_caught_up(store: Store, id: MemberId) {
    let deadline = tokio::time::Instant::now() + AUTO_PROMOTE_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !store.members().learners.contains_key(&id) {
            return;
        }
        match store.promote(id).await {
            Ok(()) => return,
            Err(AdminError::Refused(reason)) => tracing::debug!(member = id, reason, "not promoted yet"),
            Err(error) => tracing::debug!(member = id, %error, "not promoted yet"),
        }
    }
    tracing::warn!(member = id, "learner did not catch up in time; promote it with `member promote`");
}
