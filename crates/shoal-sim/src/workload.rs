//! The clients of a simulated run: a few processes, each with at most one request in flight,
//! sending puts, linearizable gets, compare-and-sets and deletes on a small key set to random
//! members.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::Cluster;
use crate::history::{Recorder, Request, RequestId};

/// Keys the clients contend on: few, so that operations conflict.
const KEYS: usize = 3;

/// The longest a client pauses between requests.
const THINK_TIME_MAX: Duration = Duration::from_millis(40);

/// A client's pause when no member can take a request.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

pub struct Workload {
    rng: ChaCha8Rng,
    keys: Vec<Bytes>,
    processes: Vec<Process>,
    /// Values are unique across the run: the request's number.
    next_value: u64,
    /// The value last written to each key, which compare-and-sets mostly expect.
    last_value: BTreeMap<Bytes, Bytes>,
}

enum Process {
    Idle { ready_at: Duration },
    Busy { request: RequestId, member: usize },
}

impl Workload {
    pub fn new(seed: u64, processes: usize) -> Workload {
        Workload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys: (0..KEYS).map(|key| Bytes::from(format!("k{key}"))).collect(),
            processes: (0..processes).map(|_| Process::Idle { ready_at: Duration::ZERO }).collect(),
            next_value: 0,
            last_value: BTreeMap::new(),
        }
    }

    pub fn keys(&self) -> &[Bytes] {
        &self.keys
    }

    /// Frees the processes whose requests completed, and lets idle ones send their next.
    pub fn tick(&mut self, now: Duration, cluster: &Cluster, recorder: &Recorder) {
        for index in 0..self.processes.len() {
            if let Process::Busy { request, .. } = self.processes[index]
                && recorder.is_completed(request)
            {
                let think = self.rng.random_range(Duration::ZERO..=THINK_TIME_MAX);
                self.processes[index] = Process::Idle { ready_at: now + think };
            }
            let Process::Idle { ready_at } = self.processes[index] else { continue };
            if ready_at > now {
                continue;
            }
            let started: Vec<usize> =
                (0..cluster.members().len()).filter(|&member| cluster.handle(member).is_some()).collect();
            if started.is_empty() {
                self.processes[index] = Process::Idle { ready_at: now + RETRY_PAUSE };
                continue;
            }
            let member = started[self.rng.random_range(0..started.len())];
            let request = self.next_request(index as u64);
            let id = recorder.issue(index as u64, member, request);
            assert!(cluster.submit(member, id), "a member with a handle takes requests");
            self.processes[index] = Process::Busy { request: id, member };
        }
    }

    /// The member crashed: its clients' requests will never be answered.
    pub fn member_crashed(&mut self, now: Duration, crashed: usize) {
        for process in &mut self.processes {
            if let Process::Busy { member, .. } = *process
                && member == crashed
            {
                *process = Process::Idle { ready_at: now };
            }
        }
    }

    /// Stops sending: from now on processes only finish what they have in flight.
    pub fn stop(&mut self) {
        for process in &mut self.processes {
            if let Process::Idle { ready_at } = process {
                *ready_at = Duration::MAX;
            }
        }
    }

    /// Requests sent and not yet answered (nor lost with a crashed member).
    pub fn in_flight(&self, recorder: &Recorder) -> usize {
        let busy = |process: &&Process| match process {
            Process::Busy { request, .. } => !recorder.is_completed(*request),
            Process::Idle { .. } => false,
        };
        self.processes.iter().filter(busy).count()
    }

    fn next_request(&mut self, process: u64) -> Request {
        let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
        self.next_value += 1;
        let value = Bytes::from(format!("p{process}.{}", self.next_value));
        match self.rng.random_range(0..10) {
            0..4 => {
                self.last_value.insert(key.clone(), value.clone());
                Request::Put { key, value }
            }
            4..7 => Request::Get { key },
            7..9 => {
                let expected =
                    if self.rng.random_bool(0.8) { self.last_value.get(&key).cloned() } else { None };
                self.last_value.insert(key.clone(), value.clone());
                Request::CompareAndSet { key, expected, new: value }
            }
            _ => {
                self.last_value.remove(&key);
                Request::Delete { key }
            }
        }
    }
}
