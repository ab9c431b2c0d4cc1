//! The scheduling queue: pods waiting for a node, each tried in turn, and after a failed try
//! held back for a while that doubles with each failure (kube-scheduler's
//! `podInitialBackoffSeconds` and `podMaxBackoffSeconds`), unless the cluster changes in a
//! way that may let it fit (a node added or changed, a pod gone): then every held pod is due
//! at once. Time is passed in, so the queue is tested without a clock.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The back-off after a pod's first failed try.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The pods the queue holds at most. More are dropped on arrival: the periodic resync
/// offers every unscheduled pod again, so a dropped pod waits, but is not lost.
pub const QUEUED_PODS_MAX: usize = 200_000;
const _: () = assert!(BACKOFF_INITIAL.as_millis() <= BACKOFF_MAX.as_millis());

/// A pod's namespace and name.
pub type PodKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In `ready`, to be tried.
    Ready,
    /// Held back until the instant (in `waiting`).
    Waiting(Instant),
    /// Handed out by `pop_ready`, not yet reported back.
    Trying,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    state: State,
}

#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<PodKey, Entry>,
    ready: VecDeque<PodKey>,
    waiting: BTreeSet<(Instant, PodKey)>,
}

impl SchedulingQueue {
    /// Queues a pod to be tried, unless it is queued already (ready, held back or being
    /// tried). Returns false when the queue is full and the pod was dropped.
    pub fn add(&mut self, key: PodKey) -> bool {
        if self.entries.contains_key(&key) {
            return true;
        }
        if self.entries.len() >= QUEUED_PODS_MAX {
            return false;
        }
        self.entries.insert(key.clone(), Entry { failures: 0, state: State::Ready });
        self.ready.push_back(key);
        true
    }

    /// Up to `max` pods to try now, oldest first, counting held pods whose back-off is over
    /// at `now`; they stay in the queue until `forget` or `back_off`.
    pub fn pop_ready(&mut self, now: Instant, max: usize) -> Vec<PodKey> {
        while let Some((due, _)) = self.waiting.first()
            && *due <= now
        {
            let (_, key) = self.waiting.pop_first().expect("first exists");
            self.entries.get_mut(&key).expect("a waiting pod has an entry").state = State::Ready;
            self.ready.push_back(key);
        }
        let count = max.min(self.ready.len());
        let popped: Vec<PodKey> = self.ready.drain(..count).collect();
        for key in &popped {
            self.entries.get_mut(key).expect("a ready pod has an entry").state = State::Trying;
        }
        popped
    }

    /// Holds a pod back after a failed try: 1 s after the first, doubling up to 10 s.
    pub fn back_off(&mut self, key: PodKey, now: Instant) {
        let entry = self.entries.entry(key.clone()).or_insert(Entry { failures: 0, state: State::Trying });
        match entry.state {
            State::Ready => self.ready.retain(|queued| *queued != key),
            State::Waiting(due) => {
                self.waiting.remove(&(due, key.clone()));
            }
            State::Trying => {}
        }
        entry.failures = entry.failures.saturating_add(1);
        let due = now + backoff(entry.failures);
        entry.state = State::Waiting(due);
        self.waiting.insert((due, key));
    }

    /// Removes a pod: it is bound, gone, or no longer this scheduler's.
    pub fn forget(&mut self, key: &PodKey) {
        let Some(entry) = self.entries.remove(key) else { return };
        match entry.state {
            State::Ready => self.ready.retain(|queued| queued != key),
            State::Waiting(due) => {
                self.waiting.remove(&(due, key.clone()));
            }
            State::Trying => {}
        }
    }

    /// The cluster changed so that held pods may fit now: each is due at once. Their failure
    /// counts stay, so a pod that still does not fit backs off as long as before.
    pub fn move_forward(&mut self) {
        for (_, key) in std::mem::take(&mut self.waiting) {
            self.entries.get_mut(&key).expect("a waiting pod has an entry").state = State::Ready;
            self.ready.push_back(key);
        }
    }

    /// Whether a pod is ready to try now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// When the next held pod is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.first().map(|(due, _)| *due)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The back-off after `failures` failed tries (at least 1).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_INITIAL.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PodKey {
        ("default".to_owned(), name.to_owned())
    }

    // The back-off doubles from 1 s and stops at 10 s.
    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let seconds: Vec<u64> = (1..=6).map(|failures| backoff(failures).as_secs()).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    // Pods come out in arrival order, once each; a failed one comes back only after its
    // back-off, and a cluster change brings it back at once.
    #[test]
    fn failed_pods_wait_out_their_backoff_or_a_cluster_change() {
        let start = Instant::now();
        let mut queue = SchedulingQueue::default();
        assert!(queue.add(key("a")));
        assert!(queue.add(key("b")));
        assert!(queue.add(key("a")));
        assert_eq!(queue.pop_ready(start, 10), [key("a"), key("b")]);
        assert!(queue.add(key("a")), "a pod being tried is not queued twice");
        assert!(queue.pop_ready(start, 10).is_empty());
        queue.back_off(key("a"), start);
        queue.forget(&key("b"));
        assert_eq!(queue.next_due(), Some(start + Duration::from_secs(1)));
        assert!(queue.pop_ready(start + Duration::from_millis(999), 10).is_empty());
        assert_eq!(queue.pop_ready(start + Duration::from_secs(1), 10), [key("a")]);
        // The second failure holds it for 2 s, but a node added brings it forward.
        queue.back_off(key("a"), start + Duration::from_secs(1));
        assert_eq!(queue.next_due(), Some(start + Duration::from_secs(3)));
        queue.move_forward();
        assert!(queue.has_ready());
        assert_eq!(queue.pop_ready(start + Duration::from_secs(1), 10), [key("a")]);
        // Its failures are remembered: the third holds it for 4 s.
        queue.back_off(key("a"), start + Duration::from_secs(2));
        assert_eq!(queue.next_due(), Some(start + Duration::from_secs(6)));
        queue.forget(&key("a"));
        assert!(queue.is_empty());
        assert_eq!(queue.next_due(), None);
    }

    // `max` bounds one pop; the rest stay ready.
    #[test]
    fn pops_are_bounded() {
        let mut queue = SchedulingQueue::default();
        for name in ["a", "b", "c"] {
            queue.add(key(name));
        }
        assert_eq!(queue.pop_ready(Instant::now(), 2), [key("a"), key("b")]);
        assert_eq!(queue.pop_ready(Instant::now(), 2), [key("c")]);
        assert_eq!(queue.len(), 3);
    }
}
