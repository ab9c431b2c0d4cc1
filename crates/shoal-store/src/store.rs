//! A running store member: the handle the etcd API (and later the Kubernetes API) uses.
//!
//! `Store` hides where things happen. A write proposed here is forwarded to the leader if this
//! member is not it, retried with the same client sequence until it lands or the deadline
//! passes, and reported as rejected (definitely not applied) or outcome-unknown (maybe applied)
//! when it does not succeed. A linearizable read asks the leader for a read index and waits
//! until this member has applied that far; a serializable read answers from local state.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{ChangeMembers, ServerState};
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::command::{ClientSequence, Command, CommandError, CommandResponse, Operation, Outcome};
use crate::forward::{
    FORWARD_TIMEOUT, ForwardError, ForwardRequest, ForwardResponse, ForwardResult, LeaseTimeToLive,
    MemberList, ReadIndexForwarder, Undelivered, WriteForwarder,
};
use crate::lessor::Lessor;
use crate::limits::MAX_RESPONSES_PER_CLIENT;
use crate::mvcc::Revision;
use crate::proposer::{ProposeError, Proposer, ReadIndexCoalescer, ReadIndexError};
use crate::raft::{Member, MemberId, Raft};
use crate::request::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use crate::storage::SharedState;
use crate::transport::{PeerRpc, PeerTransport, TransportError};

/// How long a write may take, retries and forwarding included, before its outcome is unknown.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a linearizable read may wait for a read index and the local apply to reach it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while there is no leader or the leader just changed.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How a read may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (the default).
    Linearizable,
    /// This member's local state: fast, available without a quorum, possibly stale.
    Serializable,
}

/// Why a write did not succeed. The variant says what the client may assume.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Applied and rejected deterministically: nothing of it took effect.
    #[error(transparent)]
    Rejected(CommandError),
    /// Certainly not applied: no member could take it.
    #[error("etcdserver: no leader; the write was not applied")]
    NoLeader,
    /// Maybe applied, maybe not: it was handed to Raft but no answer came in time.
    #[error("etcdserver: request timed out; the write may or may not have been applied")]
    OutcomeUnknown,
    #[error("member is stopping; the write may or may not have been applied")]
    Stopping,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Mvcc(#[from] crate::mvcc::MvccError),
    #[error("etcdserver: no leader; a linearizable read needs one (serializable reads answer without)")]
    NoLeader,
    #[error("etcdserver: request timed out waiting for a quorum to confirm the read")]
    Timeout,
    #[error("member is stopping")]
    Stopping,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("{0}")]
    Refused(String),
    #[error("member is stopping")]
    Stopping,
}

/// Identity and configuration fixed for the life of a member.
#[derive(Clone, Debug)]
pub struct StoreIdentity {
    pub id: MemberId,
    pub cluster_id: u64,
    pub member: Member,
    pub data_dir: PathBuf,
}

/// A cheap-to-clone handle on a running member.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    identity: StoreIdentity,
    raft: Raft,
    shared: Arc<SharedState>,
    transport: Arc<PeerTransport>,
    lessor: Mutex<Lessor>,
    writes: WriteSequencer,
    proposer: Proposer,
    forwarder: WriteForwarder,
    read_index: ReadIndexCoalescer,
    read_index_forwarder: ReadIndexForwarder,
    db_size: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Draws the lease and member ids this member chooses; seeded in a simulation.
    rng: Mutex<StdRng>,
}

/// Hands out this member's client sequences and tracks which are still in flight, so each
/// command can tell the state machine which responses it may forget.
struct WriteSequencer {
    client_id: u64,
    slots: Semaphore,
    state: Mutex<SequencerState>,
}

#[derive(Default)]
struct SequencerState {
    next: u64,
    in_flight: BTreeSet<u64>,
}

/// A summary for `endpoint status`.
#[derive(Clone, Debug)]
pub struct StoreStatus {
    pub leader: Option<MemberId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub revision: Revision,
    pub compact_revision: Revision,
    pub db_size_bytes: u64,
    pub is_learner: bool,
}

impl Store {
    pub(crate) fn new(
        identity: StoreIdentity,
        raft: Raft,
        shared: Arc<SharedState>,
        transport: Arc<PeerTransport>,
        db_size: Box<dyn Fn() -> u64 + Send + Sync>,
        mut rng: StdRng,
    ) -> Store {
        let writes = WriteSequencer {
            client_id: rng.random(),
            slots: Semaphore::new(MAX_RESPONSES_PER_CLIENT),
            state: Mutex::new(SequencerState { next: 1, in_flight: BTreeSet::new() }),
        };
        let lessor = Mutex::default();
        let rng = Mutex::new(rng);
        let proposer = Proposer::start(raft.clone());
        let forwarder = WriteForwarder::start(transport.clone());
        let read_index = ReadIndexCoalescer::start(raft.clone());
        let read_index_forwarder = ReadIndexForwarder::start(transport.clone());
        let inner = Inner {
            identity,
            raft,
            shared,
            transport,
            lessor,
            writes,
            proposer,
            forwarder,
            read_index,
            read_index_forwarder,
            db_size,
            rng,
        };
        Store { inner: Arc::new(inner) }
    }

    pub fn id(&self) -> MemberId {
        self.inner.identity.id
    }

    pub fn identity(&self) -> &StoreIdentity {
        &self.inner.identity
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn shared(&self) -> &Arc<SharedState> {
        &self.inner.shared
    }

    pub fn transport(&self) -> &Arc<PeerTransport> {
        &self.inner.transport
    }

    /// The current leader as this member believes, if any.
    pub fn leader(&self) -> Option<MemberId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    pub fn current_term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    pub fn revision(&self) -> Revision {
        *self.inner.shared.revision.borrow()
    }

    /// Proposes a write and waits for it to be applied, wherever the leader is.
    pub async fn write(&self, operation: Operation) -> Result<CommandResponse, WriteError> {
        let _slot = self.inner.writes.slots.acquire().await.map_err(|_| WriteError::Stopping)?;
        let client = self.inner.writes.begin();
        let command = Command { client: Some(client), operation };
        let result = self.write_with_retries(command).await;
        self.inner.writes.finish(client.sequence);
        let response = result?;
        match &response.outcome {
            Ok(_) => Ok(response),
            Err(error) => Err(WriteError::Rejected(error.clone())),
        }
    }

    async fn write_with_retries(&self, command: Command) -> Result<CommandResponse, WriteError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        // Once any attempt may have reached a log, failure can no longer be claimed.
        let mut maybe_applied = false;
        while Instant::now() < deadline {
            let leader = self.leader();
            let attempt = match leader {
                None => None,
                Some(leader) if leader == self.id() => Some(self.propose(command.clone(), deadline).await),
                Some(leader) => Some(self.forward_write(leader, command.clone(), deadline).await),
            };
            match attempt {
                Some(Ok(response)) => return Ok(response),
                Some(Err(Undelivered::Stopping)) => return Err(WriteError::Stopping),
                Some(Err(Undelivered::MaybeApplied)) => maybe_applied = true,
                Some(Err(Undelivered::NotApplied)) | None => {}
            }
            self.wait_for_leader_change(leader, deadline).await;
        }
        if maybe_applied { Err(WriteError::OutcomeUnknown) } else { Err(WriteError::NoLeader) }
    }

    async fn propose(&self, command: Command, deadline: Instant) -> Result<CommandResponse, Undelivered> {
        // A leader that lost its quorum stays leader and never commits: stop waiting at the
        // deadline. The entry is in the log and may still commit.
        let proposing = self.inner.proposer.propose(command);
        let Ok(proposed) = tokio::time::timeout_at(deadline, proposing).await else {
            return Err(Undelivered::MaybeApplied);
        };
        match proposed {
            Ok(response) => Ok(response),
            // Leadership may have moved after the entry was appended: it may still commit.
            Err(ProposeError::NotLeader { .. }) => Err(Undelivered::MaybeApplied),
            Err(ProposeError::Stopping) => Err(Undelivered::Stopping),
        }
    }

    async fn forward_write(
        &self,
        leader: MemberId,
        command: Command,
        deadline: Instant,
    ) -> Result<CommandResponse, Undelivered> {
        let Some(url) = self.peer_url_of(leader) else { return Err(Undelivered::NotApplied) };
        let forwarding = self.inner.forwarder.forward(leader, url, command);
        // Past the deadline the write may still be sent, or be on its way: outcome unknown.
        tokio::time::timeout_at(deadline, forwarding).await.unwrap_or(Err(Undelivered::MaybeApplied))
    }

    /// Sleeps until the known leader differs from `previous`, a short pause, or the deadline.
    async fn wait_for_leader_change(&self, previous: Option<MemberId>, deadline: Instant) {
        let mut metrics = self.inner.raft.metrics();
        let pause = tokio::time::sleep(RETRY_PAUSE);
        let changed = async {
            // The guard `wait_for` returns is not `Send`; drop it at once.
            let _ = metrics
                .wait_for(|m| m.current_leader != previous && m.current_leader.is_some())
                .await
                .map(drop);
        };
        let until_deadline = tokio::time::sleep_until(deadline);
        tokio::select! {
            () = changed => {}
            () = pause => {}
            () = until_deadline => {}
        }
    }

    /// Reads a range at the requested consistency.
    pub async fn range(
        &self,
        request: &RangeRequest,
        consistency: Consistency,
    ) -> Result<(RangeResponse, Revision), ReadError> {
        if consistency == Consistency::Linearizable {
            self.read_barrier().await?;
        }
        let machine = self.inner.shared.machine.read().expect("state machine lock poisoned");
        let response = machine.mvcc().range(request)?;
        Ok((response, machine.mvcc().current_revision()))
    }

    /// Answers a transaction that only reads as a linearizable read, without a log entry;
    /// `None` if it writes (then it must go through `write`).
    pub async fn read_txn(&self, request: &TxnRequest) -> Result<Option<(TxnResponse, Revision)>, ReadError> {
        if !crate::mvcc::txn_only_reads(request) {
            return Ok(None);
        }
        self.read_barrier().await?;
        let machine = self.inner.shared.machine.read().expect("state machine lock poisoned");
        let response = machine.mvcc().read_txn(request)?.expect("a transaction that only reads still does");
        Ok(Some((response, machine.mvcc().current_revision())))
    }

    /// Waits until this member has applied every write acknowledged before the call began.
    pub async fn read_barrier(&self) -> Result<(), ReadError> {
        let deadline = Instant::now() + READ_TIMEOUT;
        while Instant::now() < deadline {
            let leader = self.leader();
            let index = match leader {
                None => None,
                Some(leader) if leader == self.id() => self.local_read_index(deadline).await?,
                Some(leader) => match self.peer_url_of(leader) {
                    Some(url) => {
                        let asking = self.inner.read_index_forwarder.read_index(leader, url);
                        tokio::time::timeout_at(deadline, asking).await.ok().flatten()
                    }
                    None => None,
                },
            };
            if let Some(index) = index {
                return self.wait_applied(index, deadline).await;
            }
            self.wait_for_leader_change(leader, deadline).await;
        }
        if self.leader().is_none() { Err(ReadError::NoLeader) } else { Err(ReadError::Timeout) }
    }

    /// On the leader: confirms leadership with a quorum and returns the index to read at.
    async fn local_read_index(&self, deadline: Instant) -> Result<Option<u64>, ReadError> {
        let confirming = self.inner.read_index.read_index();
        match tokio::time::timeout_at(deadline, confirming).await {
            Ok(Ok(index)) => Ok(Some(index)),
            Ok(Err(ReadIndexError::NotLeader { .. } | ReadIndexError::NoQuorum { .. })) | Err(_) => Ok(None),
            Ok(Err(ReadIndexError::Stopping)) => Err(ReadError::Stopping),
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ReadError> {
        let mut applied = self.inner.shared.applied_index.subscribe();
        let reached = applied.wait_for(|applied| *applied >= index);
        match tokio::time::timeout_at(deadline, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_closed)) => Err(ReadError::Stopping),
            Err(_elapsed) => Err(ReadError::Timeout),
        }
    }

    /// Grants a lease; `id` 0 lets the store choose one.
    pub async fn lease_grant(&self, id: i64, ttl_seconds: i64) -> Result<(i64, i64, Revision), WriteError> {
        let id = if id == 0 { self.choose_lease_id() } else { id };
        let ttl_seconds =
            ttl_seconds.clamp(crate::limits::MIN_LEASE_TTL_SECONDS, crate::limits::MAX_LEASE_TTL_SECONDS);
        let response = self.write(Operation::LeaseGrant { id, ttl_seconds }).await?;
        match response.outcome {
            Ok(Outcome::LeaseGranted { id, ttl_seconds }) => Ok((id, ttl_seconds, response.revision)),
            other => panic!("lease grant answered with {other:?}"),
        }
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<Revision, WriteError> {
        Ok(self.write(Operation::LeaseRevoke { id }).await?.revision)
    }

    /// Renews a lease for a full TTL; `None` if it does not exist.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>, AdminError> {
        match self.to_leader(ForwardRequest::LeaseKeepAlive { id }).await? {
            ForwardResponse::LeaseKeepAlive { ttl_seconds } => Ok(ttl_seconds),
            other => panic!("keep-alive answered with {other:?}"),
        }
    }

    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<LeaseTimeToLive>, AdminError> {
        match self.to_leader(ForwardRequest::LeaseTimeToLive { id }).await? {
            ForwardResponse::LeaseTimeToLive(answer) => Ok(answer),
            other => panic!("time-to-live answered with {other:?}"),
        }
    }

    /// The cluster's members as this member knows them (no quorum needed).
    pub fn members(&self) -> MemberList {
        member_list(&self.inner.raft)
    }

    /// Adds a member as a learner; it catches up from the leader and can then be promoted.
    pub async fn add_learner(&self, member: Member) -> Result<MemberId, AdminError> {
        let id = self.choose_member_id();
        self.to_leader(ForwardRequest::AddLearner { id, member }).await?;
        Ok(id)
    }

    pub async fn promote(&self, id: MemberId) -> Result<(), AdminError> {
        self.require_member(id).await?;
        self.to_leader(ForwardRequest::Promote { id }).await.map(drop)
    }

    pub async fn remove_member(&self, id: MemberId) -> Result<(), AdminError> {
        self.require_member(id).await?;
        self.to_leader(ForwardRequest::Remove { id }).await.map(drop)
    }

    /// `MemberNotFound` unless `id` is a member, judged on state at least as new as the call.
    async fn require_member(&self, id: MemberId) -> Result<(), AdminError> {
        self.read_barrier().await.map_err(|error| match error {
            ReadError::NoLeader => AdminError::NoLeader,
            ReadError::Stopping => AdminError::Stopping,
            ReadError::Timeout | ReadError::Mvcc(_) => AdminError::Timeout,
        })?;
        let members = self.members();
        if members.voters.contains_key(&id) || members.learners.contains_key(&id) {
            Ok(())
        } else {
            Err(AdminError::MemberNotFound)
        }
    }

    pub fn status(&self) -> StoreStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let machine = self.inner.shared.machine.read().expect("state machine lock poisoned");
        StoreStatus {
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map_or(0, |id| id.index),
            revision: machine.mvcc().current_revision(),
            compact_revision: machine.mvcc().compact_revision(),
            db_size_bytes: (self.inner.db_size)(),
            is_learner: metrics.state == ServerState::Learner,
        }
    }

    /// Sends a leader-only request to the leader (this member or another), retrying through
    /// leader changes until the deadline.
    pub(crate) async fn to_leader(&self, request: ForwardRequest) -> Result<ForwardResponse, AdminError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut last_error = AdminError::NoLeader;
        while Instant::now() < deadline {
            let leader = self.leader();
            if let Some(leader) = leader {
                let result = if leader == self.id() {
                    // A leader without a quorum never finishes a membership change: stop
                    // waiting at the deadline.
                    match tokio::time::timeout_at(deadline, self.serve_forwarded(request.clone())).await {
                        Ok(served) => served.map_err(ForwardFailure::Refused),
                        Err(_elapsed) => return Err(AdminError::Timeout),
                    }
                } else {
                    self.forward(leader, request.clone(), deadline).await
                };
                match result {
                    Ok(response) => return Ok(response),
                    Err(ForwardFailure::Refused(ForwardError::Membership { reason })) => {
                        return Err(AdminError::Refused(reason));
                    }
                    Err(ForwardFailure::Refused(ForwardError::Stopping)) => return Err(AdminError::Stopping),
                    Err(ForwardFailure::Transport(error)) => {
                        tracing::debug!(%error, "forwarding to the leader failed; retrying");
                        last_error = AdminError::Timeout;
                    }
                    Err(ForwardFailure::Refused(_)) => last_error = AdminError::Timeout,
                }
            }
            self.wait_for_leader_change(leader, deadline).await;
        }
        Err(last_error)
    }

    /// Sends `request` to the leader, waiting at most until `deadline` (and at most
    /// `FORWARD_TIMEOUT`), so a forwarded attempt never outlives its caller's deadline.
    async fn forward(
        &self,
        leader: MemberId,
        request: ForwardRequest,
        deadline: Instant,
    ) -> Result<ForwardResponse, ForwardFailure> {
        let timeout = FORWARD_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let url = self
            .peer_url_of(leader)
            .ok_or(ForwardFailure::Refused(ForwardError::NotLeader { leader: None }))?;
        let result: ForwardResult = self
            .inner
            .transport
            .call(leader, &url, PeerRpc::Forward, &request, timeout)
            .await
            .map_err(ForwardFailure::Transport)?;
        result.map_err(ForwardFailure::Refused)
    }

    fn peer_url_of(&self, id: MemberId) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .nodes()
            .find(|(node_id, _)| **node_id == id)
            .map(|(_, m)| m.peer_url.clone())
    }

    /// Proposes one forwarded write. The forwarder gives up after `FORWARD_TIMEOUT`; without a
    /// quorum the entry would never commit and this task would wait forever. It may still commit.
    async fn serve_forwarded_write(&self, command: Command) -> Result<CommandResponse, ForwardError> {
        let proposing = self.inner.proposer.propose(command);
        match tokio::time::timeout(FORWARD_TIMEOUT, proposing).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(ProposeError::NotLeader { leader })) => Err(ForwardError::NotLeader { leader }),
            Ok(Err(ProposeError::Stopping)) => Err(ForwardError::Stopping),
            Err(_) => Err(ForwardError::NoQuorum { reason: "the write was not committed in time".into() }),
        }
    }

    /// Serves a request forwarded by another member (or by this one, being the leader).
    pub async fn serve_forwarded(&self, request: ForwardRequest) -> ForwardResult {
        let raft = &self.inner.raft;
        match request {
            ForwardRequest::Writes(commands) => {
                // Proposed together, so the proposer puts them in as few entries as it can.
                let writes = commands.into_iter().map(|command| self.serve_forwarded_write(command));
                Ok(ForwardResponse::Written(futures::future::join_all(writes).await))
            }
            ForwardRequest::ReadIndex => {
                let confirming = self.inner.read_index.read_index();
                match tokio::time::timeout(FORWARD_TIMEOUT, confirming).await {
                    Ok(Ok(index)) => Ok(ForwardResponse::ReadIndex { index }),
                    Ok(Err(ReadIndexError::NotLeader { leader })) => Err(ForwardError::NotLeader { leader }),
                    Ok(Err(ReadIndexError::NoQuorum { reason })) => Err(ForwardError::NoQuorum { reason }),
                    Ok(Err(ReadIndexError::Stopping)) => Err(ForwardError::Stopping),
                    Err(_) => Err(ForwardError::NoQuorum {
                        reason: "the read index was not confirmed in time".into(),
                    }),
                }
            }
            ForwardRequest::LeaseKeepAlive { id } => {
                self.ensure_leader()?;
                let ttl = self.lease_ttl(id);
                if let Some(ttl_seconds) = ttl {
                    self.inner.lessor.lock().expect("lessor lock poisoned").renew(
                        Instant::now(),
                        id,
                        ttl_seconds,
                    );
                }
                Ok(ForwardResponse::LeaseKeepAlive { ttl_seconds: ttl })
            }
            ForwardRequest::LeaseTimeToLive { id } => {
                self.ensure_leader()?;
                Ok(ForwardResponse::LeaseTimeToLive(self.local_time_to_live(id)))
            }
            ForwardRequest::Members => Ok(ForwardResponse::Members(member_list(raft))),
            ForwardRequest::AddLearner { id, member } => {
                self.ensure_leader()?;
                raft.add_learner(id, member, false).await.map_err(membership_error)?;
                Ok(ForwardResponse::MembershipChanged)
            }
            ForwardRequest::PublishMember { id, member } => {
                self.ensure_leader()?;
                let nodes = [(id, member)].into_iter().collect();
                raft.change_membership(ChangeMembers::SetNodes(nodes), false)
                    .await
                    .map_err(membership_error)?;
                Ok(ForwardResponse::MembershipChanged)
            }
            ForwardRequest::Promote { id } => {
                self.ensure_leader()?;
                let members = member_list(raft);
                if !members.learners.contains_key(&id) {
                    return Err(ForwardError::Membership {
                        reason: "etcdserver: can only promote a learner member".into(),
                    });
                }
                let voters = [id].into_iter().collect();
                raft.change_membership(ChangeMembers::AddVoterIds(voters), false)
                    .await
                    .map_err(membership_error)?;
                Ok(ForwardResponse::MembershipChanged)
            }
            ForwardRequest::Remove { id } => {
                self.ensure_leader()?;
                let members = member_list(raft);
                let ids = [id].into_iter().collect();
                let change = if members.voters.contains_key(&id) {
                    ChangeMembers::RemoveVoters(ids)
                } else if members.learners.contains_key(&id) {
                    ChangeMembers::RemoveNodes(ids)
                } else {
                    return Err(ForwardError::Membership { reason: "etcdserver: member not found".into() });
                };
                raft.change_membership(change, false).await.map_err(membership_error)?;
                Ok(ForwardResponse::MembershipChanged)
            }
        }
    }

    fn choose_lease_id(&self) -> i64 {
        self.inner.rng.lock().expect("rng lock poisoned").random_range(1..i64::MAX)
    }

    fn choose_member_id(&self) -> u64 {
        self.inner.rng.lock().expect("rng lock poisoned").random_range(1..u64::MAX)
    }

    fn ensure_leader(&self) -> Result<(), ForwardError> {
        let leader = self.leader();
        if leader == Some(self.id()) { Ok(()) } else { Err(ForwardError::NotLeader { leader }) }
    }

    fn lease_ttl(&self, id: i64) -> Option<i64> {
        let machine = self.inner.shared.machine.read().expect("state machine lock poisoned");
        machine.leases().get(&id).map(|lease| lease.ttl_seconds)
    }

    fn local_time_to_live(&self, id: i64) -> Option<LeaseTimeToLive> {
        let (granted, keys) = {
            let machine = self.inner.shared.machine.read().expect("state machine lock poisoned");
            let lease = machine.leases().get(&id)?;
            (lease.ttl_seconds, lease.keys.iter().cloned().collect::<Vec<_>>())
        };
        let now = Instant::now();
        let mut lessor = self.inner.lessor.lock().expect("lessor lock poisoned");
        let remaining = match lessor.remaining_seconds(now, id) {
            Some(remaining) => remaining,
            None => {
                lessor.renew(now, id, granted);
                granted
            }
        };
        Some(LeaseTimeToLive { id, granted_ttl_seconds: granted, remaining_seconds: remaining, keys })
    }

    /// The leader's periodic duties: expire leases, compact old history. Runs on every member
    /// and does nothing while the member is not the leader.
    pub(crate) async fn maintain(&self, auto_compaction_retained: i64) {
        const TICK: Duration = Duration::from_millis(250);
        const EXPIRIES_PER_TICK: usize = 64;
        let mut led_term = None;
        loop {
            tokio::time::sleep(TICK).await;
            let metrics = self.inner.raft.metrics().borrow().clone();
            if metrics.current_leader != Some(self.id()) {
                led_term = None;
                continue;
            }
            let leases: Vec<(i64, i64)> = {
                let machine = self.inner.shared.machine.read().expect("state machine lock poisoned");
                machine.leases().iter().map(|(id, lease)| (*id, lease.ttl_seconds)).collect()
            };
            let now = Instant::now();
            let expired = {
                let mut lessor = self.inner.lessor.lock().expect("lessor lock poisoned");
                if led_term != Some(metrics.current_term) {
                    lessor.restart(now, leases);
                    led_term = Some(metrics.current_term);
                } else {
                    lessor.reconcile(now, leases);
                }
                lessor.expired(now, EXPIRIES_PER_TICK)
            };
            for id in expired {
                let store = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = store.write(Operation::LeaseRevoke { id }).await {
                        tracing::debug!(lease = id, %error, "revoking an expired lease failed; will retry");
                    }
                });
            }
            self.compact_if_due(auto_compaction_retained).await;
        }
    }

    async fn compact_if_due(&self, retained: i64) {
        let (current, compacted) = {
            let machine = self.inner.shared.machine.read().expect("state machine lock poisoned");
            (machine.mvcc().current_revision(), machine.mvcc().compact_revision())
        };
        // Compact in steps of a tenth of the window, not at every revision.
        if retained > 0 && current - compacted > retained + retained / 10 {
            let revision = current - retained;
            if let Err(error) = self.write(Operation::Compact { revision }).await {
                tracing::debug!(revision, %error, "automatic compaction failed; will retry");
            }
        }
    }
}

enum ForwardFailure {
    Transport(TransportError),
    Refused(ForwardError),
}

impl WriteSequencer {
    fn begin(&self) -> ClientSequence {
        let mut state = self.state.lock().expect("sequencer lock poisoned");
        let sequence = state.next;
        state.next += 1;
        state.in_flight.insert(sequence);
        let first_incomplete = *state.in_flight.first().expect("just inserted");
        ClientSequence { client_id: self.client_id, sequence, first_incomplete }
    }

    fn finish(&self, sequence: u64) {
        self.state.lock().expect("sequencer lock poisoned").in_flight.remove(&sequence);
    }
}

fn member_list(raft: &Raft) -> MemberList {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    let voter_ids: BTreeSet<MemberId> = membership.voter_ids().collect();
    let mut list = MemberList::default();
    for (id, member) in membership.nodes() {
        if voter_ids.contains(id) {
            list.voters.insert(*id, member.clone());
        } else {
            list.learners.insert(*id, member.clone());
        }
    }
    list
}

fn membership_error<E: std::fmt::Display>(error: E) -> ForwardError {
    ForwardError::Membership { reason: error.to_string() }
}
