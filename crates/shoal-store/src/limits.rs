//! Every limit of the store in one place, each with the reason for its value.

/// The largest request a client may send, as etcd's default `--max-request-bytes`.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// The most operations one transaction may hold, as etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Leases alive at once. Each costs a timer on the leader; a million would be a bug, not a load.
pub const MAX_LEASES: usize = 100_000;

/// The shortest lease a client gets: shorter than a few election timeouts and a leader change
/// would expire leases whose owners did nothing wrong.
pub const MIN_LEASE_TTL_SECONDS: i64 = 2;

/// The longest lease, as etcd's `MaxLeaseTTL`.
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;

/// Watch streams open at once on one member, and watches on one stream.
pub const MAX_WATCH_STREAMS: usize = 10_000;
pub const MAX_WATCHES_PER_STREAM: usize = 1_000;

/// Events one watch response carries at most; a catching-up watcher gets several responses.
pub const MAX_EVENTS_PER_WATCH_RESPONSE: usize = 1_000;

/// Client sessions remembered for deduplicating retried writes. The least recently used is
/// forgotten first; a client silent through this many others' writes starts afresh.
pub const MAX_CLIENT_SESSIONS: usize = 4_096;

/// Responses remembered per client for writes it has not acknowledged: bounds its writes in
/// flight. A member proposing on behalf of its clients waits for a slot before proposing more.
pub const MAX_RESPONSES_PER_CLIENT: usize = 4_096;

/// The largest snapshot a member accepts from a peer.
pub const MAX_SNAPSHOT_BYTES: usize = 1024 * 1024 * 1024;

/// How many revisions of history the leader keeps before compacting automatically.
pub const AUTO_COMPACTION_RETAINED_REVISIONS: i64 = 10_000;
