//! The real `etcdctl` (API v3) against a 3-member cluster of `shoal server` processes: every
//! command an operator uses, with its printed output checked, and bad input refused clearly.
//!
//! Without etcdctl on `PATH` each test prints why it skips, unless `SHOAL_REQUIRE_TOOLS=1`
//! (set in CI), which turns the missing tool into a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use shoal::local_cluster::LocalCluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use common::start_cluster;

/// How long one etcdctl command may run; its own `--command-timeout` is 5 s per request.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a background `etcdctl watch` gets to print the events expected of it.
const WATCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a condition polled through etcdctl gets to hold (a promotion, a lease expiry).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// etcd's default `--max-request-bytes`, which shoal shares.
const MAX_REQUEST_BYTES: usize = 1536 * 1024;

// ---------------------------------------------------------------------------------------
// put, get, del

// Puts three keys and overwrites one, then reads them back every way `get` offers (by
// prefix, at an older revision, keys only, limited, serializable on each member) and
// deletes them singly and by prefix with the previous values returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_and_delete() {
    let Some(exe) = etcdctl_or_skip("put_get_and_delete") else { return };
    let cluster = start_cluster(3, &[]).await;
    let etcdctl = Etcdctl::all(&exe, &cluster);

    // Revisions are taken from the answers: the servers' own Lease renewals write in between.
    let first = revision_of(&etcdctl.json(&["put", "k/a", "1"]).await);
    assert_eq!(etcdctl.ok(&["put", "k/b", "2"]).await, "OK\n");
    etcdctl.ok(&["put", "k/c", "3"]).await;
    let last = revision_of(&etcdctl.json(&["put", "k/a", "10"]).await);

    let got = etcdctl.json(&["get", "k/a"]).await;
    let kv = &got["kvs"][0];
    assert_eq!(text(&kv["value"]), "10");
    assert_eq!((kv["version"].as_i64(), kv["create_revision"].as_i64()), (Some(2), Some(first)));
    assert_eq!(kv["mod_revision"].as_i64(), Some(last));
    assert_eq!(etcdctl.ok(&["get", "k/a", &format!("--rev={first}")]).await, "k/a\n1\n");
    assert_eq!(etcdctl.ok(&["get", "k/", "--prefix"]).await, "k/a\n10\nk/b\n2\nk/c\n3\n");
    assert_eq!(lines(&etcdctl.ok(&["get", "k/", "--prefix", "--keys-only"]).await), ["k/a", "k/b", "k/c"]);
    assert_eq!(etcdctl.ok(&["get", "k/", "--prefix", "--print-value-only"]).await, "10\n2\n3\n");

    let limited = etcdctl.json(&["get", "k/", "--prefix", "--limit=2"]).await;
    assert_eq!(keys(&limited["kvs"]), ["k/a", "k/b"]);
    assert_eq!((limited["count"].as_i64(), limited["more"].as_bool()), (Some(3), Some(true)));

    // Each member answers a serializable read from its own state once it has applied `last`.
    for i in 0..cluster.len() {
        cluster.wait_caught_up(i, last).await.expect("member catches up");
        let member = Etcdctl::member(&exe, &cluster, i);
        assert_eq!(member.ok(&["get", "k/a", "--consistency=s"]).await, "k/a\n10\n");
    }

    assert_eq!(etcdctl.ok(&["del", "k/c"]).await, "1\n");
    assert_eq!(etcdctl.ok(&["del", "k/c"]).await, "0\n");
    let deleted = etcdctl.json(&["del", "k/", "--prefix", "--prev-kv"]).await;
    assert_eq!(deleted["deleted"].as_i64(), Some(2));
    assert_eq!(keys(&deleted["prev_kvs"]), ["k/a", "k/b"]);
    assert_eq!(values(&deleted["prev_kvs"]), ["10", "2"]);
    assert_eq!(etcdctl.ok(&["get", "k/", "--prefix"]).await, "");
    assert_eq!(etcdctl.json(&["get", "k/", "--prefix"]).await["count"].as_i64(), None, "no keys left");
}

// ---------------------------------------------------------------------------------------
// txn

// Runs `etcdctl txn -i` (compares, success ops and failure ops on standard input) once with
// compares that all hold and once with one that fails, with compares on value, version,
// create and mod revision and the =, > and < operators, and checks which branch ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_runs_the_branch_its_compares_choose() {
    let Some(exe) = etcdctl_or_skip("txn_runs_the_branch_its_compares_choose") else { return };
    let cluster = start_cluster(3, &[]).await;
    let etcdctl = Etcdctl::all(&exe, &cluster);
    let x_created = revision_of(&etcdctl.json(&["put", "t/x", "1"]).await);
    let y_modified = revision_of(&etcdctl.json(&["put", "t/y", "a"]).await);

    let holding = format!(
        "value(\"t/x\") = \"1\"\nversion(\"t/x\") = \"1\"\ncreate(\"t/x\") = \"{x_created}\"\n\
         mod(\"t/y\") = \"{y_modified}\"\nversion(\"t/y\") > \"0\"\nmod(\"t/y\") < \"{}\"\n\n\
         put t/z yes\nget t/x\n\nput t/failed yes\n\n",
        y_modified + 1
    );
    let success = etcdctl.json_with_stdin(&["txn", "-i"], holding.as_bytes()).await;
    assert_eq!(success["succeeded"].as_bool(), Some(true), "{success}");
    let responses = success["responses"].as_array().expect("txn responses");
    assert_eq!(responses.len(), 2);
    assert!(responses[0]["Response"]["ResponsePut"].is_object(), "{success}");
    assert_eq!(values(&responses[1]["Response"]["ResponseRange"]["kvs"]), ["1"]);
    assert_eq!(etcdctl.ok(&["get", "t/z", "--print-value-only"]).await, "yes\n");
    assert_eq!(etcdctl.ok(&["get", "t/failed"]).await, "");

    let failing =
        "value(\"t/x\") = \"1\"\nmod(\"t/x\") > \"1000\"\n\nput t/z no\n\nput t/failed yes\nget t/y\n\n";
    let failure = etcdctl.json_with_stdin(&["txn", "-i"], failing.as_bytes()).await;
    assert_eq!(failure["succeeded"].as_bool(), None, "succeeded is false, left out: {failure}");
    let responses = failure["responses"].as_array().expect("txn responses");
    assert_eq!(values(&responses[1]["Response"]["ResponseRange"]["kvs"]), ["a"]);
    assert_eq!(etcdctl.ok(&["get", "t/z", "--print-value-only"]).await, "yes\n");
    assert_eq!(etcdctl.ok(&["get", "t/failed", "--print-value-only"]).await, "yes\n");

    // The plain output says which branch ran.
    let plain = etcdctl
        .ok_with_stdin(&["txn", "-i"], b"value(\"t/x\") = \"2\"\n\nput t/z no\n\ndel t/failed\n\n")
        .await;
    assert!(plain.contains("FAILURE\n\n1\n"), "{plain}");
}

// ---------------------------------------------------------------------------------------
// watch

// Starts `etcdctl watch --prefix --prev-kv --rev=R` in the background from a revision in
// the past, writes inside and outside the prefix, and reads its JSON lines (one response
// each) until the expected events arrived: the history from R, then the live changes, in
// revision order, with previous values, and nothing outside the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_history_and_streams_changes() {
    let Some(exe) = etcdctl_or_skip("watch_replays_history_and_streams_changes") else { return };
    let cluster = start_cluster(3, &[]).await;
    let etcdctl = Etcdctl::all(&exe, &cluster);
    let start = revision_of(&etcdctl.json(&["put", "w/a", "1"]).await);
    etcdctl.ok(&["put", "elsewhere", "x"]).await;

    let mut watch =
        etcdctl.spawn(&["watch", "w/", "--prefix", "--prev-kv", &format!("--rev={start}"), "-w", "json"]);
    etcdctl.ok(&["put", "w/a", "2"]).await;
    etcdctl.ok(&["del", "w/a"]).await;
    etcdctl.ok(&["put", "elsewhere", "y"]).await;
    etcdctl.ok(&["put", "w/b", "3"]).await;

    let events = watch.events(4).await;
    let summary = events.iter().map(event_summary).collect::<Vec<_>>();
    assert_eq!(
        summary,
        ["PUT w/a=1 (prev none)", "PUT w/a=2 (prev 1)", "DELETE w/a (prev 2)", "PUT w/b=3 (prev none)"]
    );
    let revisions =
        events.iter().map(|event| event["kv"]["mod_revision"].as_i64().unwrap()).collect::<Vec<_>>();
    assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "revisions increase: {revisions:?}");
    assert_eq!(revisions[0], start);
}

// ---------------------------------------------------------------------------------------
// leases

// Grants a lease, attaches a key, reads it back with `timetolive --keys`, renews it once
// with `keep-alive --once` and revokes it, which deletes the key; then grants a short lease
// and polls until it expires by itself and takes its key with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_grant_keep_alive_revoke_and_expire() {
    let Some(exe) = etcdctl_or_skip("lease_grant_keep_alive_revoke_and_expire") else { return };
    let cluster = start_cluster(3, &[]).await;
    let etcdctl = Etcdctl::all(&exe, &cluster);

    let granted = etcdctl.json(&["lease", "grant", "60"]).await;
    assert_eq!(granted["TTL"].as_i64(), Some(60));
    let lease = format!("{:016x}", granted["ID"].as_i64().expect("lease id"));
    etcdctl.ok(&["put", "l/a", "v", &format!("--lease={lease}")]).await;
    assert_eq!(etcdctl.json(&["get", "l/a"]).await["kvs"][0]["lease"].as_i64(), granted["ID"].as_i64());

    let alive = etcdctl.json(&["lease", "timetolive", &lease, "--keys"]).await;
    assert_eq!(alive["granted-ttl"].as_i64(), Some(60));
    assert!((1..=60).contains(&alive["ttl"].as_i64().expect("remaining ttl")), "{alive}");
    assert_eq!(keys_of_strings(&alive["keys"]), ["l/a"]);
    let text = etcdctl.ok(&["lease", "timetolive", &lease, "--keys"]).await;
    assert!(text.starts_with(&format!("lease {lease} granted with TTL(60s), remaining(")), "{text}");
    assert!(text.ends_with("attached keys([l/a])\n"), "{text}");

    assert_eq!(
        etcdctl.ok(&["lease", "keep-alive", "--once", &lease]).await,
        format!("lease {lease} keepalived with TTL(60)\n")
    );
    let listed = etcdctl.ok(&["lease", "list"]).await;
    assert!(listed.contains(&lease), "{listed}");

    assert_eq!(etcdctl.ok(&["lease", "revoke", &lease]).await, format!("lease {lease} revoked\n"));
    assert_eq!(etcdctl.ok(&["get", "l/a"]).await, "", "revoking deletes the lease's keys");
    assert_eq!(
        etcdctl.ok(&["lease", "timetolive", &lease]).await,
        format!("lease {lease} already expired\n")
    );

    // The shortest lease shoal grants is 2 s; the leader revokes it shortly after it runs out.
    let short = etcdctl.json(&["lease", "grant", "2"]).await;
    let short = format!("{:016x}", short["ID"].as_i64().expect("lease id"));
    etcdctl.ok(&["put", "l/short", "v", &format!("--lease={short}")]).await;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while !etcdctl.ok(&["get", "l/short"]).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the key of an expired lease is still there after {CONVERGE_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    assert_eq!(
        etcdctl.ok(&["lease", "timetolive", &short]).await,
        format!("lease {short} already expired\n")
    );
}

// ---------------------------------------------------------------------------------------
// membership

// Lists the members, adds a fourth with `etcdctl member add` and starts its process with
// `--initial-cluster-state existing`, polls until it is listed by name as a voter and its
// serializable reads show writes made before and after it joined, then removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_add_catch_up_and_remove() {
    let Some(exe) = etcdctl_or_skip("member_list_add_catch_up_and_remove") else { return };
    let mut cluster = start_cluster(3, &[]).await;
    let etcdctl = Etcdctl::all(&exe, &cluster);

    let listed = etcdctl.json(&["member", "list"]).await;
    let mut names =
        listed["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect::<Vec<_>>();
    names.sort_unstable();
    assert_eq!(names, ["s1", "s2", "s3"]);
    for i in 0..3 {
        let member = member_named(&listed, &cluster.member(i).name);
        assert_eq!(member["peerURLs"][0].as_str(), Some(cluster.member(i).peer_url().as_str()));
        assert_eq!(member["clientURLs"][0].as_str(), Some(cluster.member(i).client_url().as_str()));
    }
    etcdctl.ok(&["put", "m/before", "1"]).await;

    let s4 = cluster.plan_member("s4").expect("planning a fourth member");
    let peer_url = cluster.member(s4).peer_url();
    let added = etcdctl.ok(&["member", "add", "s4", &format!("--peer-urls={peer_url}")]).await;
    assert!(added.contains("added to cluster"), "{added}");
    assert!(added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{added}");
    cluster.join(s4).await.expect("starting the fourth member");

    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let id = loop {
        let listed = etcdctl.json(&["member", "list"]).await;
        let members = listed["members"].as_array().unwrap();
        let s4 = members.iter().find(|m| m["name"] == "s4" && m["isLearner"].as_bool() != Some(true));
        if let Some(s4) = s4 {
            assert_eq!(members.len(), 4);
            assert_eq!(s4["clientURLs"][0].as_str(), Some(cluster.member(3).client_url().as_str()));
            break s4["ID"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "s4 not listed as a voter after {CONVERGE_TIMEOUT:?}: {listed}");
        tokio::time::sleep(POLL_INTERVAL).await;
    };

    let latest = revision_of(&etcdctl.json(&["put", "m/after", "2"]).await);
    cluster.wait_caught_up(s4, latest).await.expect("s4 catches up");
    let on_s4 = Etcdctl::member(&exe, &cluster, s4);
    assert_eq!(on_s4.ok(&["get", "m/", "--prefix", "--consistency=s"]).await, "m/after\n2\nm/before\n1\n");

    let removed = etcdctl.ok(&["member", "remove", &format!("{id:x}")]).await;
    // etcdctl prints the id as `%16x`: padded with spaces when its first digit is a zero.
    assert!(removed.starts_with(&format!("Member {id:16x} removed from cluster")), "{removed}");
    cluster.kill(s4).await.expect("killing the removed member");
    let listed = etcdctl.json(&["member", "list"]).await;
    assert_eq!(listed["members"].as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(Etcdctl::all(&exe, &cluster).ok(&["put", "m/after-removal", "3"]).await, "OK\n");
}

// ---------------------------------------------------------------------------------------
// endpoint status, compaction

// Asks every member for `endpoint status -w json` after a few writes: all name the same
// leader (the one the harness found), share the term, and report the same revision and an
// applied index no greater than the last index; `endpoint health` finds all healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_status_reports_leader_term_index_and_revision() {
    let Some(exe) = etcdctl_or_skip("endpoint_status_reports_leader_term_index_and_revision") else { return };
    let cluster = start_cluster(3, &[]).await;
    let etcdctl = Etcdctl::all(&exe, &cluster);
    for value in ["1", "2", "3"] {
        etcdctl.ok(&["put", "e/k", value]).await;
    }
    let latest = revision_of(&etcdctl.json(&["get", "e/k"]).await);
    for i in 0..cluster.len() {
        cluster.wait_caught_up(i, latest).await.expect("member catches up");
    }
    let leader = cluster.wait_ready().await.expect("a leader");
    let leader_id = cluster.status(leader).await.unwrap().header.unwrap().member_id;

    let statuses = etcdctl.json(&["endpoint", "status"]).await;
    let statuses = statuses.as_array().expect("one status per endpoint");
    assert_eq!(statuses.len(), 3);
    let mut member_ids = Vec::new();
    for status in statuses {
        let status = &status["Status"];
        assert_eq!(status["leader"].as_u64(), Some(leader_id), "{status}");
        // At least: the servers' leader-election Leases keep writing.
        assert!(status["header"]["revision"].as_i64().is_some_and(|revision| revision >= latest), "{status}");
        assert_eq!(status["raftTerm"], statuses[0]["Status"]["raftTerm"]);
        assert!(status["raftTerm"].as_u64().unwrap() >= 1, "{status}");
        let (index, applied) =
            (status["raftIndex"].as_u64().unwrap(), status["raftAppliedIndex"].as_u64().unwrap());
        assert!(applied >= 1 && applied <= index, "{status}");
        member_ids.push(status["header"]["member_id"].as_u64().unwrap());
    }
    assert!(member_ids.contains(&leader_id));
    let health = etcdctl.run(&["endpoint", "health"], None).await;
    assert!(health.success, "{health:?}");
    assert_eq!(health.stderr.matches("is healthy").count(), 3, "{health:?}");
}

// Writes five versions of a key and compacts at the third: a get below the compaction
// fails with etcd's "compacted" error while the compaction revision itself still reads,
// and a watch from below it is cancelled carrying the compact revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_refuses_older_reads_and_cancels_older_watches() {
    let Some(exe) = etcdctl_or_skip("compaction_refuses_older_reads_and_cancels_older_watches") else {
        return;
    };
    let cluster = start_cluster(3, &[]).await;
    let etcdctl = Etcdctl::all(&exe, &cluster);
    let mut revisions = Vec::new();
    for value in ["v1", "v2", "v3", "v4", "v5"] {
        revisions.push(revision_of(&etcdctl.json(&["put", "c/k", value]).await));
    }
    let compacted = revisions[2];
    assert_eq!(
        etcdctl.ok(&["compaction", &compacted.to_string()]).await,
        format!("compacted revision {compacted}\n")
    );

    let error = etcdctl.fails(&["get", "c/k", &format!("--rev={}", revisions[1])]).await;
    assert!(error.contains("Error: etcdserver: mvcc: required revision has been compacted"), "{error}");
    assert_eq!(
        etcdctl.ok(&["get", "c/k", &format!("--rev={compacted}"), "--print-value-only"]).await,
        "v3\n"
    );
    let error = etcdctl.fails(&["compaction", &revisions[1].to_string()]).await;
    assert!(error.contains("required revision has been compacted"), "{error}");

    let mut watch = etcdctl.spawn(&["watch", "c/k", &format!("--rev={}", revisions[1]), "-w", "json"]);
    let cancelled = watch.next_response().await;
    assert_eq!(cancelled["Canceled"].as_bool(), Some(true), "{cancelled}");
    assert_eq!(cancelled["CompactRevision"].as_i64(), Some(compacted), "{cancelled}");
    let (success, stderr) = watch.finish().await;
    assert!(!success, "the watch exits with an error");
    assert!(
        stderr.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// bad input

// Sends what a member must refuse (a value over the request limit, a transaction over the
// operation limit, a read at a future revision, removal of an unknown member, revocation of
// an unknown lease), checks each is refused with a message naming the problem, and that the
// cluster still serves reads and writes afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_the_cluster_keeps_working() {
    let Some(exe) = etcdctl_or_skip("bad_input_is_refused_clearly_and_the_cluster_keeps_working") else {
        return;
    };
    let cluster = start_cluster(3, &[]).await;
    let etcdctl = Etcdctl::all(&exe, &cluster);

    // Values come on standard input: one argument may not exceed 128 KiB on Linux.
    let oversized = vec![b'a'; MAX_REQUEST_BYTES + 64 * 1024];
    let error = etcdctl.fails_with_stdin(&["put", "big"], &oversized).await;
    assert!(error.contains("too large"), "{error}");
    let large = vec![b'a'; 1024 * 1024];
    assert_eq!(
        etcdctl.ok_with_stdin(&["put", "large"], &large).await,
        "OK\n",
        "a 1 MiB value is within the limit"
    );

    let mut txn = String::from("\n");
    for i in 0..129 {
        txn.push_str(&format!("put tx/{i} v\n"));
    }
    txn.push_str("\n\n");
    let error = etcdctl.fails_with_stdin(&["txn", "-i"], txn.as_bytes()).await;
    assert!(error.contains("Error: etcdserver: too many operations in txn request"), "{error}");
    assert_eq!(etcdctl.ok(&["get", "tx/", "--prefix", "--keys-only"]).await, "", "nothing of it applied");

    let current = revision_of(&etcdctl.json(&["get", "big"]).await);
    let error = etcdctl.fails(&["get", "big", &format!("--rev={}", current + 100)]).await;
    assert!(error.contains("Error: etcdserver: mvcc: required revision is a future revision"), "{error}");

    let error = etcdctl.fails(&["member", "remove", "123456789abcdef"]).await;
    assert!(error.contains("Error: etcdserver: member not found"), "{error}");

    let error = etcdctl.fails(&["lease", "revoke", "123456789abcdef"]).await;
    assert!(error.contains("etcdserver: requested lease not found"), "{error}");
    let error = etcdctl.fails(&["lease", "keep-alive", "--once", "123456789abcdef"]).await;
    assert!(error.contains("etcdserver: requested lease not found"), "{error}");

    assert_eq!(etcdctl.ok(&["put", "after", "fine"]).await, "OK\n");
    assert_eq!(etcdctl.ok(&["get", "after", "--print-value-only"]).await, "fine\n");
    assert_eq!(etcdctl.json(&["member", "list"]).await["members"].as_array().unwrap().len(), 3);
}

// ---------------------------------------------------------------------------------------
// helpers

/// The etcdctl executable, or `None` after saying why the test skips.
fn etcdctl_or_skip(test: &str) -> Option<PathBuf> {
    common::tool_or_skip("etcdctl", "Debian: apt-get install etcd-client", test)
}

/// etcdctl with the connection flags of some members of a cluster.
struct Etcdctl {
    exe: PathBuf,
    connection: Vec<String>,
}

/// What one etcdctl run printed.
#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Etcdctl {
    /// Talks to every running member (etcdctl balances between them).
    fn all(exe: &Path, cluster: &LocalCluster) -> Self {
        Etcdctl { exe: exe.to_owned(), connection: cluster.etcdctl_args() }
    }

    /// Talks to member `i` alone.
    fn member(exe: &Path, cluster: &LocalCluster, i: usize) -> Self {
        Etcdctl { exe: exe.to_owned(), connection: cluster.etcdctl_args_of(i) }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.exe);
        command.env("ETCDCTL_API", "3").args(&self.connection).args(args).kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting etcdctl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            let input = input.to_vec();
            // Written while the output is read, so neither side can block the other.
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
            });
        }
        let output = tokio::time::timeout(ETCDCTL_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("etcdctl {args:?} still runs after {ETCDCTL_TIMEOUT:?}"))
            .expect("waiting for etcdctl");
        Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Standard output of a run that must succeed.
    async fn ok(&self, args: &[&str]) -> String {
        self.expect_success(args, None).await
    }

    async fn ok_with_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        self.expect_success(args, Some(stdin)).await
    }

    async fn expect_success(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let run = self.run(args, stdin).await;
        assert!(run.success, "etcdctl {args:?} failed: {run:?}");
        run.stdout
    }

    /// Standard error of a run that must fail.
    async fn fails(&self, args: &[&str]) -> String {
        self.expect_failure(args, None).await
    }

    async fn fails_with_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        self.expect_failure(args, Some(stdin)).await
    }

    async fn expect_failure(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let run = self.run(args, stdin).await;
        assert!(!run.success, "etcdctl {args:?} should have failed: {run:?}");
        run.stderr
    }

    /// The `-w json` answer of a run that must succeed.
    async fn json(&self, args: &[&str]) -> Value {
        self.json_with_stdin(args, b"").await
    }

    /// `txn -i` prints its prompts before the answer: the JSON is the last line.
    async fn json_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Value {
        let args = [&["-w", "json"], args].concat();
        let stdout = self.expect_success(&args, (!stdin.is_empty()).then_some(stdin)).await;
        let last = stdout.lines().rfind(|line| !line.trim().is_empty()).unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|error| panic!("etcdctl {args:?} printed no JSON ({error}): {stdout}"))
    }

    /// Starts a long-running command (a watch) whose output is read line by line.
    fn spawn(&self, args: &[&str]) -> Background {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting etcdctl");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Background { child, stdout, deadline: Instant::now() + WATCH_TIMEOUT }
    }
}

/// A background etcdctl, killed when dropped.
struct Background {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    deadline: Instant,
}

impl Background {
    /// The next JSON line; fails the test at `WATCH_TIMEOUT` after the start.
    async fn next_response(&mut self) -> Value {
        let line = tokio::time::timeout_at(self.deadline, self.stdout.next_line()).await;
        let line = line.unwrap_or_else(|_| panic!("no watch response within {WATCH_TIMEOUT:?}"));
        let line = line.expect("reading etcdctl's output").expect("etcdctl exited early");
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
    }

    /// The first `count` events, however the responses split them.
    async fn events(&mut self, count: usize) -> Vec<Value> {
        let mut events = Vec::new();
        while events.len() < count {
            let response = self.next_response().await;
            events.extend(response["Events"].as_array().into_iter().flatten().cloned());
        }
        events
    }

    /// Waits for the process to exit by itself; its success and standard error.
    async fn finish(mut self) -> (bool, String) {
        let status = tokio::time::timeout_at(self.deadline, self.child.wait()).await;
        let status = status.unwrap_or_else(|_| panic!("etcdctl still runs after {WATCH_TIMEOUT:?}"));
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr).await.expect("reading stderr");
        }
        (status.expect("waiting for etcdctl").success(), stderr)
    }
}

/// The revision in the header of an answer (`put`, `get`, …).
fn revision_of(answer: &Value) -> i64 {
    let header = if answer["header"].is_object() { &answer["header"] } else { answer };
    header["revision"].as_i64().unwrap_or_else(|| panic!("no revision in {answer}"))
}

fn lines(output: &str) -> Vec<&str> {
    output.lines().filter(|line| !line.is_empty()).collect()
}

fn keys(kvs: &Value) -> Vec<String> {
    kvs.as_array().into_iter().flatten().map(|kv| text(&kv["key"])).collect()
}

fn values(kvs: &Value) -> Vec<String> {
    kvs.as_array().into_iter().flatten().map(|kv| text(&kv["value"])).collect()
}

fn keys_of_strings(keys: &Value) -> Vec<String> {
    keys.as_array().into_iter().flatten().map(text).collect()
}

fn member_named<'a>(list: &'a Value, name: &str) -> &'a Value {
    let members = list["members"].as_array().expect("members");
    members.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no member {name} in {list}"))
}

/// "PUT key=value (prev value)" or "DELETE key (prev value)".
fn event_summary(event: &Value) -> String {
    let key = text(&event["kv"]["key"]);
    let prev = if event["prev_kv"].is_object() { text(&event["prev_kv"]["value"]) } else { "none".into() };
    match event["type"].as_i64() {
        None => format!("PUT {key}={} (prev {prev})", text(&event["kv"]["value"])),
        Some(1) => format!("DELETE {key} (prev {prev})"),
        Some(other) => panic!("unknown event type {other}"),
    }
}

/// etcdctl's JSON carries bytes as base64; these tests use UTF-8 keys and values.
fn text(value: &Value) -> String {
    let encoded = value.as_str().unwrap_or_default();
    String::from_utf8(base64_decode(encoded)).expect("UTF-8 text")
}

fn base64_decode(encoded: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for symbol in encoded.bytes().take_while(|symbol| *symbol != b'=') {
        let position = ALPHABET.iter().position(|a| *a == symbol).expect("a base64 symbol");
        buffer = (buffer << 6) | u32::try_from(position).expect("below 64");
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push(u8::try_from((buffer >> bits) & 0xff).expect("a byte"));
        }
    }
    bytes
}

#[test]
fn base64_decode_reads_etcdctl_bytes() {
    assert_eq!(base64_decode("dy9h"), b"w/a");
    assert_eq!(base64_decode("MQ=="), b"1");
    assert_eq!(base64_decode("Mg=="), b"2");
    assert_eq!(base64_decode(""), b"");
}
