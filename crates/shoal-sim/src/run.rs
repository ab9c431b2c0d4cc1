//! One simulated run from one seed: start a cluster, run clients under faults, heal, converge,
//! read everything back, and check every invariant.
//!
//! Phases, in simulated time:
//! 1. warm-up: the cluster elects a leader and clients start, with no fault;
//! 2. faults: the nemesis partitions, degrades links, crashes and restarts members while the
//!    clients keep going; Election Safety and State Machine Safety are checked after every step;
//! 3. heal: every fault is undone, crashed members restart, clients stop sending; the run waits
//!    until every request has been answered and every member has applied the leader's whole log;
//! 4. read back: every member reads every key (linearizably), and those reads join the history;
//! 5. checks: equal states, acknowledged writes present and failed ones absent, a linearizable
//!    history, and every member's durable log agreeing with what was applied.
//!
//! Everything the run does is drawn from its seed; see the crate documentation for what still is
//! not replayable.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use shoal_store::server::RaftTiming;

use crate::cluster::{Cluster, ClusterConfig, mix};
use crate::history::{Answer, Recorder, Request};
use crate::invariants::{self, Observer, Violation};
use crate::linearizability::{self, CheckResult};
use crate::nemesis::{Event, Nemesis, NemesisStats};
use crate::workload::Workload;

/// Faults start after this much calm, once a leader has had time to be elected.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long the nemesis acts.
const FAULT_PHASE: Duration = Duration::from_secs(10);
/// How long the cluster may take to converge once healed: a few election rounds, a restarted
/// member catching up, and every request still in flight reaching its timeout.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(20);
/// How long the read-back may take.
const READ_BACK_DEADLINE: Duration = Duration::from_secs(10);
/// The network's latency per message, at most, outside latency faults.
const BASE_LATENCY: Duration = Duration::from_millis(5);

/// What one run is: its seed, and what the seed decides about the cluster.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub members: usize,
    /// Small in some runs, so that members snapshot, purge their logs, and catch up a
    /// restarted member by sending it a snapshot; the production default in the others.
    pub snapshot_every_entries: u64,
}

impl RunConfig {
    /// Even seeds run 3 members, odd seeds 5; a third of the seeds snapshot often.
    pub fn for_seed(seed: u64) -> RunConfig {
        let members = if seed.is_multiple_of(2) { 3 } else { 5 };
        let snapshot_every_entries = if (seed / 2).is_multiple_of(3) { 50 } else { 10_000 };
        RunConfig { seed, members, snapshot_every_entries }
    }
}

/// What a run did, for the summary line.
#[derive(Clone, Debug)]
pub struct Summary {
    pub config: RunConfig,
    pub simulated: Duration,
    pub requests: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub unknown: usize,
    /// The longest any request took to be answered.
    pub slowest: Duration,
    /// The highest term any member reached.
    pub highest_term: u64,
    pub applied_indexes: usize,
    pub nemesis: NemesisStats,
    /// A digest of everything observable, to compare replays of the same seed.
    pub fingerprint: u64,
}

/// A run that broke an invariant (or could not finish), with the trace of what the nemesis did.
#[derive(Debug)]
pub struct Failure {
    pub config: RunConfig,
    pub at: Duration,
    pub violation: Violation,
    pub trace: Vec<String>,
}

/// What a run shows of itself besides its result.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Print the trace as it happens.
    pub verbose: bool,
    /// Write the clients' history and the trace to `seed-N.txt` here, to compare two runs.
    pub dump_dir: Option<PathBuf>,
}

/// Runs one seed.
pub fn run(config: RunConfig, output: &Output) -> Result<Summary, Box<Failure>> {
    install_panic_recorder();
    PANICS.with(|panics| panics.borrow_mut().clear());
    // openraft's election timeouts draw from this thread's generator; every member runs here.
    shoal_store::raft::seed_thread_rng(mix(config.seed, u64::MAX, 0));
    let mut run = Run::new(config, output.verbose);
    let result = run.all_phases();
    if let Some(dir) = &output.dump_dir {
        run.dump(dir);
    }
    let at = run.cluster.now();
    match result {
        Ok(()) => Ok(run.summary()),
        Err(violation) => Err(Box::new(Failure { config, at, violation, trace: run.trace })),
    }
}

struct Run {
    config: RunConfig,
    verbose: bool,
    cluster: Cluster,
    recorder: Recorder,
    observer: Observer,
    workload: Workload,
    nemesis: Nemesis,
    trace: Vec<String>,
}

impl Run {
    fn new(config: RunConfig, verbose: bool) -> Run {
        let recorder = Recorder::default();
        let cluster_config = ClusterConfig {
            seed: config.seed,
            members: config.members,
            raft_timing: RaftTiming::default(),
            max_latency: BASE_LATENCY,
            snapshot_every_entries: config.snapshot_every_entries,
        };
        let cluster = Cluster::new(&cluster_config, &recorder);
        let processes = config.members + 1;
        Run {
            config,
            verbose,
            cluster,
            recorder,
            observer: Observer::default(),
            workload: Workload::new(mix(config.seed, u64::MAX, 1), processes),
            nemesis: Nemesis::new(mix(config.seed, u64::MAX, 2), WARM_UP, BASE_LATENCY),
            trace: Vec::new(),
        }
    }

    fn all_phases(&mut self) -> Result<(), Violation> {
        self.note(format!("{} members, seed {}", self.config.members, self.config.seed));
        while self.cluster.now() < WARM_UP + FAULT_PHASE {
            let now = self.cluster.now();
            self.workload.tick(now, &self.cluster, &self.recorder);
            let mut trace = Vec::new();
            for event in self.nemesis.tick(now, &mut self.cluster, &mut trace) {
                let Event::Crashed(member) = event;
                self.workload.member_crashed(now, member);
                let crashed = &self.cluster.members()[member];
                self.observer.read_log(now, &crashed.name, &crashed.data_dir)?;
            }
            trace.into_iter().for_each(|line| self.note(line));
            self.step()?;
        }

        let now = self.cluster.now();
        let mut trace = Vec::new();
        self.nemesis.heal(now, &mut self.cluster, &mut trace);
        trace.into_iter().for_each(|line| self.note(line));
        self.workload.stop();
        self.converge()?;

        self.read_back()?;
        self.final_checks()
    }

    /// One simulation step, then the step-wise invariants.
    fn step(&mut self) -> Result<(), Violation> {
        self.cluster.step().map_err(|detail| Violation { invariant: "every host keeps running", detail })?;
        if let Some(panic) = PANICS.with(|panics| panics.borrow_mut().pop()) {
            return Err(Violation { invariant: "no member panics", detail: panic });
        }
        let now = self.cluster.now();
        for member in 0..self.cluster.members().len() {
            if let Some(handle) = self.cluster.handle(member) {
                self.observer.sample(now, &self.cluster.members()[member].name, &handle.store)?;
            }
        }
        Ok(())
    }

    /// Steps until every request is answered and every member has applied the leader's log.
    fn converge(&mut self) -> Result<(), Violation> {
        let deadline = self.cluster.now() + CONVERGE_DEADLINE;
        while self.cluster.now() < deadline {
            self.workload.tick(self.cluster.now(), &self.cluster, &self.recorder);
            if self.workload.in_flight(&self.recorder) == 0 && self.converged() {
                self.note(format!("{:?} converged", self.cluster.now()));
                return Ok(());
            }
            self.step()?;
        }
        Err(Violation {
            invariant: "a healed cluster converges",
            detail: format!(
                "after {CONVERGE_DEADLINE:?}: {} requests unanswered; members: {}",
                self.workload.in_flight(&self.recorder),
                self.describe_members()
            ),
        })
    }

    /// Every member runs, follows one leader in one term, and has applied that leader's log.
    fn converged(&self) -> bool {
        let handles: Option<Vec<_>> =
            (0..self.cluster.members().len()).map(|member| self.cluster.handle(member)).collect();
        let Some(handles) = handles else { return false };
        let metrics: Vec<_> =
            handles.iter().map(|handle| handle.store.raft().metrics().borrow().clone()).collect();
        let Some(leader) = metrics[0].current_leader else { return false };
        let Some(leader_metrics) = metrics.iter().find(|m| m.id == leader) else { return false };
        let log_end = leader_metrics.last_log_index;
        metrics.iter().all(|m| {
            m.current_leader == Some(leader)
                && m.current_term == leader_metrics.current_term
                && m.last_applied.map(|id| id.index) == log_end
        })
    }

    /// Every member reads every key; the reads join the history, and each must answer.
    fn read_back(&mut self) -> Result<(), Violation> {
        let mut reads = Vec::new();
        for member in 0..self.cluster.members().len() {
            for key in self.workload.keys().to_vec() {
                let process = 1_000 + member as u64;
                let id = self.recorder.issue(process, member, Request::Get { key });
                assert!(self.cluster.submit(member, id), "every member runs after the heal");
                reads.push(id);
            }
        }
        let deadline = self.cluster.now() + READ_BACK_DEADLINE;
        while !reads.iter().all(|&id| self.recorder.is_completed(id)) {
            if self.cluster.now() >= deadline {
                return Err(Violation {
                    invariant: "a healed cluster answers reads",
                    detail: format!("reads unanswered after {READ_BACK_DEADLINE:?}"),
                });
            }
            self.step()?;
        }
        let records = self.recorder.records();
        for &id in &reads {
            if let Some((_, Answer::Failed | Answer::Unknown)) = records[id].completion {
                return Err(Violation {
                    invariant: "a healed cluster answers reads",
                    detail: format!("{:?} failed", records[id]),
                });
            }
        }
        Ok(())
    }

    fn final_checks(&mut self) -> Result<(), Violation> {
        let members: Vec<(String, _)> = (0..self.cluster.members().len())
            .map(|member| {
                let handle = self.cluster.handle(member).expect("every member runs after the heal");
                (self.cluster.members()[member].name.clone(), handle.store)
            })
            .collect();
        invariants::check_converged(&members)?;
        let records = self.recorder.records();
        invariants::check_durability(&members[0].1, &records)?;
        drop(members);

        match linearizability::check(&self.recorder.to_history()) {
            CheckResult::Linearizable => {}
            CheckResult::NotLinearizable { key, explanation } => {
                return Err(Violation {
                    invariant: "the history is linearizable",
                    detail: format!("key {key:?}: {explanation}"),
                });
            }
            CheckResult::Inconclusive { key, limit } => {
                return Err(Violation {
                    invariant: "the history is linearizable",
                    detail: format!("the check of key {key:?} hit its {limit:?} limit: make runs smaller"),
                });
            }
        }

        let now = self.cluster.now();
        self.cluster.crash_all();
        for member in self.cluster.members() {
            self.observer.read_log(now, &member.name, &member.data_dir)?;
        }
        Ok(())
    }

    fn describe_members(&self) -> String {
        let mut lines = Vec::new();
        for (index, member) in self.cluster.members().iter().enumerate() {
            let line = match self.cluster.handle(index) {
                None if member.running => format!("{} starting", member.name),
                None => format!("{} down", member.name),
                Some(handle) => {
                    let m = handle.store.raft().metrics().borrow().clone();
                    format!(
                        "{} {:?} term {} leader {:?} log end {:?} applied {:?}",
                        member.name,
                        m.state,
                        m.current_term,
                        m.current_leader,
                        m.last_log_index,
                        m.last_applied
                    )
                }
            };
            lines.push(line);
        }
        lines.join("; ")
    }

    fn note(&mut self, line: String) {
        if self.verbose {
            eprintln!("{line}");
        }
        self.trace.push(line);
    }

    fn dump(&self, dir: &Path) {
        let mut text = String::new();
        for record in self.recorder.records() {
            text.push_str(&format!("{record:?}\n"));
        }
        for line in &self.trace {
            text.push_str(&format!("{line}\n"));
        }
        let path = dir.join(format!("seed-{}.txt", self.config.seed));
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .expect("the dump is writable");
    }

    fn summary(&self) -> Summary {
        let records = self.recorder.records();
        let answered = |wanted: fn(&Answer) -> bool| {
            records.iter().filter(|r| r.completion.as_ref().is_some_and(|(_, answer)| wanted(answer))).count()
        };
        let succeeded = answered(|a| matches!(a, Answer::Done | Answer::Read(_) | Answer::Swapped(_)));
        let failed = answered(|a| matches!(a, Answer::Failed));
        let slowest = records
            .iter()
            .filter_map(|r| Some(r.completion.as_ref()?.0 - r.invoke_ns?))
            .max()
            .map_or(Duration::ZERO, Duration::from_nanos);
        let (highest_term, applied_indexes) = self.observer.counts();
        Summary {
            config: self.config,
            simulated: self.cluster.now(),
            requests: records.len(),
            succeeded,
            failed,
            unknown: records.len() - succeeded - failed,
            slowest,
            highest_term,
            applied_indexes,
            nemesis: self.nemesis.stats,
            fingerprint: fingerprint(&records, &self.trace),
        }
    }
}

/// A digest of the history and the trace: equal for two runs that behaved the same.
fn fingerprint(records: &[crate::history::Record], trace: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    // `DefaultHasher::new()` is keyed with zeros, so its digest is the same in every process.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{records:?}").hash(&mut hasher);
    trace.hash(&mut hasher);
    hasher.finish()
}

thread_local! {
    /// Panics on this thread since the run began: a member's task panicking is caught by its
    /// runtime, so the run looks for it here.
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn install_panic_recorder() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|panics| panics.borrow_mut().push(info.to_string()));
            previous(info);
        }));
    });
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({} members, snapshot every {}): {:?} simulated, {} requests ({} ok, {} failed, {} unknown, slowest {:?}), term {}, \
             {} indexes applied, {} partitions, {} fault plans, {} crashes, fingerprint {:016x}",
            self.config.seed,
            self.config.members,
            self.config.snapshot_every_entries,
            self.simulated,
            self.requests,
            self.succeeded,
            self.failed,
            self.unknown,
            self.slowest,
            self.highest_term,
            self.applied_indexes,
            self.nemesis.partitions,
            self.nemesis.plans,
            self.nemesis.crashes,
            self.fingerprint
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RunConfig { seed, members, .. } = self.config;
        writeln!(f, "seed {seed} ({members} members) failed at {:?}: {}", self.at, self.violation)?;
        const SHOWN: usize = 40;
        let skipped = self.trace.len().saturating_sub(SHOWN);
        writeln!(f, "last {} of {} trace lines:", self.trace.len() - skipped, self.trace.len())?;
        for line in &self.trace[skipped..] {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "replay: SHOAL_SIM_SEED={seed} cargo test -p shoal-sim --test simulation -- replay --nocapture"
        )
    }
}
