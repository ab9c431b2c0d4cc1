//! Lease deadlines, kept by the leader alone.
//!
//! Which leases exist, with what TTL and keys, is replicated state. When each one expires is
//! not: it is wall-clock state of the current leader, as in etcd. A new leader gives every
//! lease a full TTL from its own start of leadership, so no lease expires early because its
//! keep-alives went to a leader that has since died. Expiry itself is a replicated write
//! (`LeaseRevoke`) that the leader proposes.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct Lessor {
    deadlines: BTreeMap<i64, Instant>,
}

impl Lessor {
    /// Starts a term of leadership: every known lease lives a full TTL from `now`.
    pub fn restart(&mut self, now: Instant, leases: impl IntoIterator<Item = (i64, i64)>) {
        self.deadlines = leases.into_iter().map(|(id, ttl_seconds)| (id, now + ttl(ttl_seconds))).collect();
    }

    /// Keeps the deadlines in step with the replicated leases: new ones get a full TTL, gone
    /// ones are forgotten.
    pub fn reconcile(&mut self, now: Instant, leases: impl IntoIterator<Item = (i64, i64)>) {
        let mut next = BTreeMap::new();
        for (id, ttl_seconds) in leases {
            let deadline = self.deadlines.get(&id).copied().unwrap_or(now + ttl(ttl_seconds));
            next.insert(id, deadline);
        }
        self.deadlines = next;
    }

    /// A keep-alive: the lease lives a full TTL from `now`.
    pub fn renew(&mut self, now: Instant, id: i64, ttl_seconds: i64) {
        self.deadlines.insert(id, now + ttl(ttl_seconds));
    }

    /// Whole seconds the lease has left, rounded up as etcd does; `None` if it is unknown.
    pub fn remaining_seconds(&self, now: Instant, id: i64) -> Option<i64> {
        let left = self.deadlines.get(&id)?.saturating_duration_since(now);
        Some(i64::try_from(left.as_millis().div_ceil(1000)).unwrap_or(i64::MAX))
    }

    /// Leases whose deadline has passed, oldest first, at most `limit` of them.
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut expired: Vec<(Instant, i64)> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, deadline)| (*deadline, *id))
            .collect();
        expired.sort_unstable();
        expired.into_iter().take(limit).map(|(_, id)| id).collect()
    }
}

fn ttl(ttl_seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A lease expires exactly a TTL after its last renewal, and a restart of leadership gives
    // every lease a full TTL again.
    #[test]
    fn deadlines_follow_renewals_and_leadership() {
        let start = Instant::now();
        let mut lessor = Lessor::default();
        lessor.restart(start, [(1, 10), (2, 5)]);
        assert_eq!(lessor.expired(start + Duration::from_secs(4), 10), Vec::<i64>::new());
        assert_eq!(lessor.expired(start + Duration::from_secs(5), 10), vec![2]);
        lessor.renew(start + Duration::from_secs(4), 2, 5);
        assert_eq!(lessor.expired(start + Duration::from_secs(8), 10), Vec::<i64>::new());
        assert_eq!(lessor.remaining_seconds(start + Duration::from_millis(8500), 2), Some(1));
        assert_eq!(lessor.expired(start + Duration::from_secs(10), 10), vec![2, 1], "oldest deadline first");
        lessor.restart(start + Duration::from_secs(10), [(1, 10)]);
        assert_eq!(lessor.remaining_seconds(start + Duration::from_secs(10), 1), Some(10));
        assert_eq!(lessor.remaining_seconds(start, 2), None);
    }

    // Reconciling keeps existing deadlines, adds new leases with a full TTL, drops revoked ones.
    #[test]
    fn reconcile_adds_and_forgets() {
        let start = Instant::now();
        let mut lessor = Lessor::default();
        lessor.restart(start, [(1, 10)]);
        let later = start + Duration::from_secs(3);
        lessor.reconcile(later, [(1, 10), (3, 10)]);
        assert_eq!(lessor.remaining_seconds(later, 1), Some(7));
        assert_eq!(lessor.remaining_seconds(later, 3), Some(10));
        lessor.reconcile(later, [(3, 10)]);
        assert_eq!(lessor.remaining_seconds(later, 1), None);
    }
}
