//! Whole-process faults on a 3-member cluster of `shoal server` processes: SIGKILL of the
//! leader under write load, restart, SIGSTOP, wipe and re-add, loss of quorum, and restarts
//! that must not disturb a healthy leader.
//!
//! Clients are shoal-store's generated etcd v3 gRPC clients over TLS with the admin's
//! certificate, as any etcd client library would talk to shoal. Histories recorded under
//! load go through `shoal_sim::linearizability::check`, which treats writes whose outcome
//! is unknown (timeouts, broken connections) as "maybe applied".

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use shoal::local_cluster::LocalCluster;
use shoal_sim::linearizability::{self, CheckResult, History, Op, Operation, Outcome};
use shoal_store::etcd::proto::etcdserverpb as pb;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

use common::{start_cluster, start_cluster_with_env};

type KvClient = pb::kv_client::KvClient<Channel>;

/// A client's deadline per request: above the server's own write deadline
/// (`shoal_store::store::WRITE_TIMEOUT`, 5 s), so the server's verdict normally comes first.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);
/// How long the load gets to reach each of its goals of acknowledged writes.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the cluster gets to settle after a fault before a check gives up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How soon a write must fail once the cluster has lost its quorum.
const QUORUM_LOSS_BOUND: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Concurrent writers of the load, and the keys they share: few keys, so that writers
/// contend and the linearizability check has orders to rule out.
const WRITERS: u64 = 4;
const LOAD_KEYS: [&str; 3] = ["load/a", "load/b", "load/c"];
/// Acknowledged writes before the leader is killed, and after it (served by the new one).
const ACKS_BEFORE_KILL: usize = 40;
const ACKS_AFTER_KILL: usize = 40;

// Runs four writers (puts and linearizable reads on three shared keys, each writer
// switching member after an error) and SIGKILLs the leader once they have 40 acknowledged
// writes. Checks that another member leads and 40 more writes are acknowledged; then that
// every acknowledged put is found by a linearizable read on each survivor at the revision
// it was acknowledged with, and that the recorded history is linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_write_load_loses_no_acknowledged_write() {
    let mut cluster = start_cluster(3, &["--auto-compaction-retained", "0"]).await;
    let old_leader = cluster.wait_ready().await.expect("a leader");

    let load = Load::start(&cluster);
    load.wait_acked(ACKS_BEFORE_KILL).await;
    cluster.kill(old_leader).await.expect("killing the leader");
    let acked_at_kill = load.acked();
    let new_leader = cluster.wait_ready().await.expect("a new leader among the survivors");
    assert_ne!(new_leader, old_leader);
    load.wait_acked(acked_at_kill + ACKS_AFTER_KILL).await;
    let (history, acked_puts) = load.finish().await;

    for survivor in cluster.running() {
        let mut client = kv_client(&cluster, survivor);
        for put in &acked_puts {
            let found =
                get_at(&mut client, &put.key, put.revision).await.expect("reading an acknowledged put");
            let expected = Some((put.value.clone(), put.revision));
            assert_eq!(
                found,
                expected,
                "acknowledged put of {} lost on {}",
                put.key,
                cluster.member(survivor).name
            );
        }
    }
    let operations = history.operations();
    let unknown = operations.iter().filter(|operation| operation.outcome == Outcome::Unknown).count();
    eprintln!(
        "history: {} operations, {} acknowledged puts, {unknown} unknown",
        operations.len(),
        acked_puts.len()
    );
    assert_eq!(linearizability::check(&history), CheckResult::Linearizable);
}

// SIGKILLs the leader after 20 writes, makes 20 more (which the killed member misses, in a
// term it never saw), restarts it on its data directory, waits until it has applied the
// latest revision, and reads all 40 keys from it with serializable reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_member_restarts_and_catches_up() {
    let mut cluster = start_cluster(3, &[]).await;
    let killed = cluster.wait_ready().await.expect("a leader");
    for n in 0..20 {
        put_anywhere(&cluster, &format!("restart/{n:02}"), &format!("v{n}")).await;
    }
    cluster.kill(killed).await.expect("killing the leader");
    cluster.wait_ready().await.expect("a new leader");
    let mut latest = 0;
    for n in 20..40 {
        latest = put_anywhere(&cluster, &format!("restart/{n:02}"), &format!("v{n}")).await;
    }

    cluster.restart(killed).await.expect("restarting the killed member");
    cluster.wait_caught_up(killed, latest).await.expect("the restarted member catches up");
    let mut client = kv_client(&cluster, killed);
    for n in 0..40 {
        let found = get(&mut client, &format!("restart/{n:02}"), Read::Serializable)
            .await
            .expect("serializable read");
        assert_eq!(found.map(|(value, _)| value), Some(format!("v{n}")));
    }
    cluster.wait_ready().await.expect("all three agree on the leader again");
}

// SIGKILLs a follower, writes 48 values of 1 MiB (8 at a time, so the leader batches them)
// that it misses, restarts it and waits until it has applied them all. The backlog, 48 MiB,
// is far more than one AppendEntries can carry within openraft's 40 ms timeout: sent whole
// and resent whole after every timeout, it never arrived, and a cluster whose two followers
// fell behind like this under a write flood stopped committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up_on_a_backlog_of_large_writes() {
    const VALUES: usize = 48;
    const AT_ONCE: usize = 8;
    let mut cluster = start_cluster(3, &[]).await;
    let leader = cluster.wait_ready().await.expect("a leader");
    let follower = (leader + 1) % 3;
    cluster.kill(follower).await.expect("killing a follower");
    let value = "v".repeat(1024 * 1024);
    let mut latest = 0;
    for round in 0..VALUES / AT_ONCE {
        let puts = (0..AT_ONCE).map(|n| {
            let key = format!("backlog/{round}-{n}");
            let (cluster, value) = (&cluster, &value);
            async move { put_anywhere(cluster, &key, value).await }
        });
        latest = latest.max(futures::future::join_all(puts).await.into_iter().max().unwrap_or(0));
    }

    cluster.restart(follower).await.expect("restarting the follower");
    cluster.wait_caught_up(follower, latest).await.expect("the restarted follower catches up");
    let found = count_prefix(&mut kv_client(&cluster, follower), "backlog/").await.expect("counting");
    assert_eq!(found, VALUES as i64, "values on the restarted follower");
}

// SIGSTOPs the leader: the other two elect a new one and acknowledge a write. SIGCONT lets
// the old leader run again, still believing it leads; it must learn the new term, follow,
// and show the write made while it was frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_is_replaced_and_follows_after_resuming() {
    let mut cluster = start_cluster(3, &[]).await;
    let paused = cluster.wait_ready().await.expect("a leader");
    put_anywhere(&cluster, "pause/k", "before").await;
    cluster.pause(paused).await.expect("pausing the leader");
    let new_leader = cluster.wait_ready().await.expect("a new leader among the others");
    assert_ne!(new_leader, paused);
    let latest = put_anywhere(&cluster, "pause/k", "during").await;

    cluster.resume(paused).await.expect("resuming the old leader");
    cluster.wait_ready().await.expect("all three agree on a leader");
    cluster.wait_caught_up(paused, latest).await.expect("the old leader catches up");
    let mut client = kv_client(&cluster, paused);
    let found = get(&mut client, "pause/k", Read::Serializable).await.expect("serializable read");
    assert_eq!(found, Some(("during".to_owned(), latest)));
}

// With a snapshot every 100 entries, stops a follower, removes it from the membership and
// wipes its data directory, writes 300 more keys (the log is purged past every entry it
// had), adds it back under the same peer URL and starts it with `--initial-cluster-state
// existing`. An empty member can only catch up from a snapshot: its log shows one
// installed, its serializable reads show every key, and it is promoted to voter again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_member_is_re_added_and_catches_up_by_snapshot() {
    let args = ["--snapshot-every-entries", "100", "--auto-compaction-retained", "0"];
    // openraft says at info level when it installs a snapshot.
    let mut cluster = start_cluster_with_env(3, &args, &[("SHOAL_LOG", "info,openraft=info")]).await;
    let leader = cluster.wait_ready().await.expect("a leader");
    let wiped = (leader + 1) % cluster.len();
    for n in 0..100 {
        put_anywhere(&cluster, &format!("snap/{n:03}"), &format!("v{n}")).await;
    }

    cluster.stop(wiped).await.expect("stopping a follower");
    cluster.remove_member(wiped).await.expect("removing it");
    cluster.wipe(wiped).expect("wiping its data directory");
    let mut latest = 0;
    for n in 100..400 {
        latest = put_anywhere(&cluster, &format!("snap/{n:03}"), &format!("v{n}")).await;
    }

    cluster.member_add(wiped).await.expect("adding it back");
    cluster.join(wiped).await.expect("starting it on an empty data directory");
    cluster.wait_caught_up(wiped, latest).await.expect("the re-added member catches up");
    let mut client = kv_client(&cluster, wiped);
    for n in [0, 99, 100, 250, 399] {
        let found =
            get(&mut client, &format!("snap/{n:03}"), Read::Serializable).await.expect("serializable read");
        assert_eq!(found.map(|(value, _)| value), Some(format!("v{n}")));
    }
    let count = count_prefix(&mut client, "snap/").await.expect("counting keys");
    assert_eq!(count, 400);
    let log = cluster.process_log(wiped);
    assert!(log.contains("install_full_snapshot"), "no snapshot install logged\n{}", cluster.log_tail(wiped));
    wait_promoted(&cluster, wiped).await;
}

// Stops two of three members with SIGTERM, leaving the leader alone: a write to it fails
// within 10 s with a status that says no leader or timed out (never hangs), a linearizable
// read fails likewise, and a serializable read still answers with the last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_with_the_leader_surviving() {
    check_quorum_loss(Survivor::Leader).await;
}

// As above, but the survivor is a follower: its leader is gone as well as its quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_with_a_follower_surviving() {
    check_quorum_loss(Survivor::Follower).await;
}

#[derive(Clone, Copy, Debug)]
enum Survivor {
    Leader,
    Follower,
}

async fn check_quorum_loss(survivor: Survivor) {
    let mut cluster = start_cluster(3, &[]).await;
    let leader = cluster.wait_ready().await.expect("a leader");
    let latest = put_anywhere(&cluster, "quorum/k", "last").await;
    let survivor = match survivor {
        Survivor::Leader => leader,
        Survivor::Follower => (leader + 1) % cluster.len(),
    };
    cluster.wait_caught_up(survivor, latest).await.expect("the survivor has the last write");
    for i in (0..cluster.len()).filter(|i| *i != survivor) {
        cluster.stop(i).await.expect("stopping a member");
    }

    // The client waits longer than the bound, so that the bound is the server's doing.
    let channel =
        cluster.client_endpoint(survivor).expect("endpoint").timeout(3 * QUORUM_LOSS_BOUND).connect_lazy();
    let mut client = KvClient::new(channel);
    let started = Instant::now();
    let error = put(&mut client, "quorum/k", "lost").await.expect_err("a write without a quorum fails");
    assert!(started.elapsed() < QUORUM_LOSS_BOUND, "the write failed only after {:?}", started.elapsed());
    assert_clear_unavailability(&error);

    let started = Instant::now();
    let error =
        get(&mut client, "quorum/k", Read::Linearizable).await.expect_err("a linearizable read fails");
    assert!(started.elapsed() < QUORUM_LOSS_BOUND, "the read failed only after {:?}", started.elapsed());
    assert_clear_unavailability(&error);

    let found = get(&mut client, "quorum/k", Read::Serializable).await.expect("a serializable read answers");
    assert_eq!(found, Some(("last".to_owned(), latest)));
}

/// Unavailable or DeadlineExceeded, with a message that says why.
fn assert_clear_unavailability(error: &tonic::Status) {
    assert!(matches!(error.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded), "{error:?}");
    let message = error.message();
    assert!(message.contains("no leader") || message.contains("timed out"), "unclear message: {error:?}");
}

// ---------------------------------------------------------------------------------------
// the load

/// Writers running in the background, recording what they did.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    writers: JoinSet<WriterLog>,
}

/// One writer's record: its operations for the checker, and the puts acknowledged to it.
#[derive(Default)]
struct WriterLog {
    operations: Vec<Operation>,
    acked_puts: Vec<AckedPut>,
}

#[derive(Clone, Debug)]
struct AckedPut {
    key: String,
    value: String,
    revision: i64,
}

impl Load {
    fn start(cluster: &LocalCluster) -> Load {
        let clients = (0..cluster.len()).map(|i| kv_client(cluster, i)).collect::<Vec<_>>();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let epoch = std::time::Instant::now();
        let mut writers = JoinSet::new();
        for writer in 0..WRITERS {
            let context = WriterContext {
                writer,
                clients: clients.clone(),
                stop: stop.clone(),
                acked: acked.clone(),
                epoch,
            };
            writers.spawn(context.run());
        }
        Load { stop, acked, writers }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    async fn wait_acked(&self, count: usize) {
        let deadline = Instant::now() + LOAD_TIMEOUT;
        while self.acked() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} writes acknowledged in {LOAD_TIMEOUT:?}",
                self.acked()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops the writers (each finishes its operation in flight) and merges their records.
    async fn finish(mut self) -> (History, Vec<AckedPut>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut history = History::new();
        let mut acked_puts = Vec::new();
        while let Some(log) = self.writers.join_next().await {
            let log = log.expect("a writer panicked");
            log.operations.into_iter().for_each(|operation| history.push(operation));
            acked_puts.extend(log.acked_puts);
        }
        (history, acked_puts)
    }
}

struct WriterContext {
    writer: u64,
    /// One client per member; the writer moves to the next after an error.
    clients: Vec<KvClient>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    epoch: std::time::Instant,
}

impl WriterContext {
    /// One operation after another until stopped: a third linearizable reads, the rest puts
    /// of values unique to this writer.
    async fn run(mut self) -> WriterLog {
        let mut log = WriterLog::default();
        let mut random = SplitMix64(self.writer);
        let mut target = usize::try_from(self.writer).expect("few writers") % self.clients.len();
        let mut sequence = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let roll = random.next();
            let key = LOAD_KEYS[usize::try_from(roll % 3).expect("below 3")];
            let invoke = self.now();
            let client = &mut self.clients[target];
            let (op, outcome) = if (roll / 3).is_multiple_of(3) {
                match get(client, key, Read::Linearizable).await {
                    Ok(value) => (read_op(key, value.map(|(value, _)| value)), Outcome::Ok),
                    // A failed read changed nothing and constrains nothing.
                    Err(_) => (read_op(key, None), Outcome::Failed),
                }
            } else {
                sequence += 1;
                let value = format!("w{}-{sequence}", self.writer);
                let outcome = match put(client, key, &value).await {
                    Ok(revision) => {
                        log.acked_puts.push(AckedPut { key: key.to_owned(), value: value.clone(), revision });
                        self.acked.fetch_add(1, Ordering::Relaxed);
                        Outcome::Ok
                    }
                    Err(status) if certainly_not_applied(&status) => Outcome::Failed,
                    Err(_) => Outcome::Unknown,
                };
                (Op::Write { key: Bytes::from(key.to_owned()), value: Bytes::from(value) }, outcome)
            };
            let complete = self.now();
            if outcome != Outcome::Ok {
                target = (target + 1) % self.clients.len();
            }
            log.operations.push(Operation { process: self.writer, invoke, complete, op, outcome });
        }
        log
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).expect("a test shorter than 584 years")
    }
}

/// shoal says "the write was not applied" only when no member could have taken it; any
/// other failure, including the transport's, leaves the outcome unknown.
fn certainly_not_applied(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().contains("the write was not applied")
}

fn read_op(key: &str, value: Option<String>) -> Op {
    Op::Read { key: Bytes::from(key.to_owned()), value: value.map(Bytes::from) }
}

/// A small deterministic generator, so each writer's choice of operations is reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

// ---------------------------------------------------------------------------------------
// clients

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    Linearizable,
    Serializable,
}

fn kv_client(cluster: &LocalCluster, i: usize) -> KvClient {
    let endpoint = cluster.client_endpoint(i).expect("member endpoint");
    KvClient::new(endpoint.timeout(CLIENT_TIMEOUT).connect_lazy())
}

/// Puts and returns the revision of the write.
async fn put(client: &mut KvClient, key: &str, value: &str) -> Result<i64, tonic::Status> {
    let request = pb::PutRequest { key: bytes_of(key), value: bytes_of(value), ..Default::default() };
    let response = client.put(request).await?.into_inner();
    Ok(response.header.expect("put answers with a header").revision)
}

/// The value and mod revision of `key`, if it exists.
async fn get(client: &mut KvClient, key: &str, read: Read) -> Result<Option<(String, i64)>, tonic::Status> {
    let serializable = read == Read::Serializable;
    range_one(client, pb::RangeRequest { key: bytes_of(key), serializable, ..Default::default() }).await
}

/// `key` as it was at `revision`, read linearizably.
async fn get_at(
    client: &mut KvClient,
    key: &str,
    revision: i64,
) -> Result<Option<(String, i64)>, tonic::Status> {
    range_one(client, pb::RangeRequest { key: bytes_of(key), revision, ..Default::default() }).await
}

async fn range_one(
    client: &mut KvClient,
    request: pb::RangeRequest,
) -> Result<Option<(String, i64)>, tonic::Status> {
    let response = client.range(request).await?.into_inner();
    Ok(response.kvs.first().map(|kv| (String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision)))
}

fn bytes_of(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// How many keys start with `prefix`, read serializably.
async fn count_prefix(client: &mut KvClient, prefix: &str) -> Result<i64, tonic::Status> {
    let mut range_end = prefix.as_bytes().to_vec();
    *range_end.last_mut().expect("a non-empty prefix") += 1;
    let request = pb::RangeRequest {
        key: bytes_of(prefix),
        range_end: range_end.into(),
        count_only: true,
        serializable: true,
        ..Default::default()
    };
    Ok(client.range(request).await?.into_inner().count)
}

/// Puts through the running members in turn until one acknowledges (leaders change under
/// these tests); returns the revision.
async fn put_anywhere(cluster: &LocalCluster, key: &str, value: &str) -> i64 {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last_error = None;
    while Instant::now() < deadline {
        for i in cluster.running() {
            match put(&mut kv_client(cluster, i), key, value).await {
                Ok(revision) => return revision,
                Err(error) => last_error = Some(error),
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("no member acknowledged a put of {key} within {SETTLE_TIMEOUT:?}: {last_error:?}")
}

/// Waits until member `i` is listed as a voter (a re-added member starts as a learner).
async fn wait_promoted(cluster: &LocalCluster, i: usize) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let peer_url = cluster.member(i).peer_url();
    loop {
        let mut client = pb::cluster_client::ClusterClient::new(cluster.channel(i).expect("channel"));
        let listed =
            client.member_list(pb::MemberListRequest::default()).await.map(tonic::Response::into_inner);
        let member = listed
            .as_ref()
            .ok()
            .and_then(|list| list.members.iter().find(|m| m.peer_ur_ls == [peer_url.clone()]));
        if member.is_some_and(|member| !member.is_learner) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {} not promoted within {SETTLE_TIMEOUT:?}: {listed:?}",
            cluster.member(i).name
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

// SIGKILLs a member and restarts it, six times over, under a write load through every
// member: followers three times, then the leader three times (each restart after a new
// leader took over). A restarted member must hear from the leader before its election timer
// runs out: if it called an election instead, its higher term would depose the leader
// (openraft 0.9 has no pre-vote) and writes would stop for an election, for nothing.
// Election timeouts twice the other tests' keep a leader that a busy machine starves for a
// second from losing its term for reasons this test is not about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_does_not_depose_a_healthy_leader() {
    const RESTARTS: usize = 6;
    const ELECTION_TIMEOUT_MAX: Duration = Duration::from_secs(4);
    let election_timeout_max = ELECTION_TIMEOUT_MAX.as_millis().to_string();
    let timing = ["--election-timeout-ms", "2000", "--election-timeout-max-ms", &election_timeout_max];
    let mut cluster = start_cluster(3, &timing).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut load = JoinSet::new();
    for i in 0..3 {
        let (mut client, stop, acknowledged) = (kv_client(&cluster, i), stop.clone(), acknowledged.clone());
        load.spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match put(&mut client, &format!("load/{i}/{}", n % 50), "value").await {
                    Ok(_) => _ = acknowledged.fetch_add(1, Ordering::Relaxed),
                    Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
                }
            }
        });
    }

    let mut deposed = Vec::new();
    for restart in 0..RESTARTS {
        let leader = cluster.wait_ready().await.expect("a leader");
        let latest = put_anywhere(&cluster, "restart/k", &format!("v{restart}")).await;
        let killed = if restart < RESTARTS / 2 { (leader + 1 + restart % 2) % 3 } else { leader };
        cluster.kill(killed).await.expect("killing a member");
        let leader = cluster.wait_ready().await.expect("a leader among the others");
        let leader_id = cluster.member_id(leader).await.expect("member id");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let term = cluster.status(leader).await.expect("status").raft_term;
        cluster.restart(killed).await.expect("restarting the member");
        cluster.wait_caught_up(killed, latest).await.expect("the restarted member catches up");
        // Past any election the restarted member could have called.
        tokio::time::sleep(ELECTION_TIMEOUT_MAX).await;
        let status = cluster.status(leader).await.expect("status");
        if status.raft_term != term || status.leader != leader_id {
            deposed.push((restart, killed, term, status.raft_term));
        }
    }
    stop.store(true, Ordering::Relaxed);
    load.join_all().await;
    assert!(acknowledged.load(Ordering::Relaxed) > 0, "the load made no write");
    assert!(
        deposed.is_empty(),
        "restarted members deposed the leader: (restart, member, term, term after) {deposed:?}"
    );
}
