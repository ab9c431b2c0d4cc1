//! What a pod's containers should do next: a pure function of the pod's spec, what the agent
//! observed of its containers, and the time (kubelet's `computePodActions`).
//!
//! Init containers run one at a time, in order, each to success; then every regular container
//! runs. An exited container restarts as the pod's `restartPolicy` says (init containers treat
//! `Always` as `OnFailure`), after a back-off that doubles with each restart (none before the
//! first, then `initial`, `2 × initial`, … up to `max`) and resets after a container ran for
//! `reset_after`. A container whose liveness or startup probe failed is killed, then restarts
//! like any exited container. A pod being deleted has every container stopped, then is done.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::{ContainerId, Exit};

/// Restart back-off, Kubernetes' defaults unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// The current run of a container, as the agent observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    Running { id: ContainerId, since: Instant },
    Exited { id: ContainerId, exit: Exit, at: Instant },
}

/// Everything the agent knows of one container of a pod across its restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRecord {
    pub run: Option<Run>,
    /// Runs started so far; the next run's attempt number.
    pub attempts: u32,
    /// How the run before the current one ended (`lastState`).
    pub previous_exit: Option<Exit>,
    /// Why the container cannot be created now (`CreateContainerConfigError`, …), with a message.
    pub waiting: Option<(String, String)>,
    /// The delay before the next restart; zero until the first restart.
    pub backoff_delay: Duration,
    /// The delay the current exited run waits out before it restarts.
    pub restart_delay: Duration,
    /// When the current run started, by the wall clock.
    pub started_at: Option<SystemTime>,
    /// No start before this.
    pub not_before: Option<Instant>,
    /// A failed liveness or startup probe asked for the current run to be killed.
    pub kill_requested: Option<KillReason>,
    /// The startup probe has succeeded (or there is none).
    pub started: bool,
    /// The readiness probe says ready (or there is none and the container runs).
    pub ready: bool,
}

impl ContainerRecord {
    pub fn is_running(&self) -> bool {
        matches!(self.run, Some(Run::Running { .. }))
    }

    pub fn exit(&self) -> Option<&Exit> {
        match &self.run {
            Some(Run::Exited { exit, .. }) => Some(exit),
            _ => None,
        }
    }

    /// Records that the current run exited, and when its restart may come.
    pub fn exited(&mut self, exit: Exit, now: Instant, policy: &BackoffPolicy) {
        let Some(Run::Running { id, since }) = self.run.take() else {
            self.run = None;
            return;
        };
        if now.duration_since(since) >= policy.reset_after {
            self.backoff_delay = Duration::ZERO;
        }
        self.restart_delay = self.backoff_delay;
        self.not_before = Some(now + self.backoff_delay);
        self.backoff_delay = if self.backoff_delay.is_zero() {
            policy.initial
        } else {
            (self.backoff_delay * 2).min(policy.max)
        };
        self.kill_requested = None;
        self.ready = false;
        self.started = false;
        self.run = Some(Run::Exited { id, exit, at: now });
    }

    /// Records that a new run started.
    pub fn started_run(&mut self, id: ContainerId, now: Instant, started_at: SystemTime) {
        if let Some(Run::Exited { exit, .. }) = self.run.take() {
            self.previous_exit = Some(exit);
        }
        self.run = Some(Run::Running { id, since: now });
        self.started_at = Some(started_at);
        self.attempts += 1;
        self.waiting = None;
        self.ready = false;
        self.started = false;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    LivenessFailed,
    StartupFailed,
    PostStartHookFailed,
    PodDeleted,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start { name: String, init: bool },
    Kill { name: String, reason: KillReason },
}

/// What to do now and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Look again at this time even if nothing happens (a back-off ends).
    pub wake_at: Option<Instant>,
    /// Containers waiting out a back-off, for status (`CrashLoopBackOff`).
    pub backing_off: Vec<String>,
    /// The pod has run to its end: nothing will start again.
    pub finished: bool,
}

/// A pod's records by container name.
pub type Records = BTreeMap<String, ContainerRecord>;

/// What to do next for `pod` given its containers' `records`.
pub fn plan(pod: &Pod, records: &Records, now: Instant) -> Plan {
    let mut plan = Plan::default();
    let spec = pod.spec.as_ref();
    if pod.metadata.deletion_timestamp.is_some() {
        for (name, record) in records {
            if record.is_running() {
                plan.actions.push(Action::Kill { name: name.clone(), reason: KillReason::PodDeleted });
            }
        }
        plan.finished = plan.actions.is_empty();
        return plan;
    }
    let policy = spec.and_then(|spec| spec.restart_policy.as_deref()).unwrap_or("Always");
    let init_containers = spec.and_then(|spec| spec.init_containers.as_deref()).unwrap_or_default();
    let containers = spec.map(|spec| spec.containers.as_slice()).unwrap_or_default();

    for container in init_containers {
        let record = records.get(&container.name);
        if record.and_then(ContainerRecord::exit).is_some_and(|exit| exit.exit_code == 0) {
            continue;
        }
        // Init containers restart on failure even under `Always`.
        let init_policy = if policy == "Never" { "Never" } else { "OnFailure" };
        match next_step(container, record, init_policy, true, now, &mut plan) {
            Step::Failed => plan.finished = true,
            Step::Done | Step::Busy => {}
        }
        // Nothing after an unfinished init container runs.
        return plan;
    }

    let mut all_done = true;
    for container in containers {
        let record = records.get(&container.name);
        if next_step(container, record, policy, false, now, &mut plan) != Step::Done {
            all_done = false;
        }
    }
    let failed_forever = containers.iter().all(|container| {
        let record = records.get(&container.name);
        record.and_then(ContainerRecord::exit).is_some()
            && !restarts(policy, record.and_then(ContainerRecord::exit))
    });
    plan.finished = !containers.is_empty()
        && (all_done || failed_forever)
        && plan.actions.is_empty()
        && plan.wake_at.is_none();
    plan
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Exited and will not run again (successfully, for init containers).
    Done,
    /// Running, starting, or waiting to restart.
    Busy,
    /// An init container failed and will not run again: the pod failed.
    Failed,
}

fn next_step(
    container: &Container,
    record: Option<&ContainerRecord>,
    policy: &str,
    init: bool,
    now: Instant,
    plan: &mut Plan,
) -> Step {
    let name = &container.name;
    let start = Action::Start { name: name.clone(), init };
    let Some(record) = record else {
        plan.actions.push(start);
        return Step::Busy;
    };
    match &record.run {
        Some(Run::Running { .. }) => {
            if let Some(reason) = record.kill_requested {
                plan.actions.push(Action::Kill { name: name.clone(), reason });
            }
            Step::Busy
        }
        Some(Run::Exited { exit, .. }) if !restarts(policy, Some(exit)) => {
            if init && exit.exit_code != 0 {
                Step::Failed
            } else {
                Step::Done
            }
        }
        Some(Run::Exited { .. }) | None => match record.not_before {
            Some(not_before) if not_before > now => {
                plan.wake_at = Some(plan.wake_at.map_or(not_before, |wake| wake.min(not_before)));
                if record.run.is_some() {
                    plan.backing_off.push(name.clone());
                }
                Step::Busy
            }
            _ => {
                plan.actions.push(start);
                Step::Busy
            }
        },
    }
}

/// Whether a container that ended with `exit` runs again under `policy`.
fn restarts(policy: &str, exit: Option<&Exit>) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit.is_some_and(|exit| exit.exit_code != 0),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(policy: &str, init: &[&str], containers: &[&str]) -> Pod {
        let container = |name: &&str| Container { name: (*name).into(), ..Container::default() };
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: Some(init.iter().map(container).collect()),
                containers: containers.iter().map(container).collect(),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn exit(code: i32) -> Exit {
        Exit {
            started_at: None,
            finished_at: SystemTime::UNIX_EPOCH,
            exit_code: code,
            signal: None,
            reason: None,
            message: None,
        }
    }

    fn running(name: &str, now: Instant) -> ContainerRecord {
        let mut record = ContainerRecord::default();
        record.started_run(ContainerId::new("uid", name, 0), now, SystemTime::now());
        record
    }

    fn exited(name: &str, code: i32, now: Instant) -> ContainerRecord {
        let mut record = running(name, now);
        record.exited(exit(code), now, &BackoffPolicy::default());
        record
    }

    fn start(name: &str, init: bool) -> Action {
        Action::Start { name: name.into(), init }
    }

    // Init containers run one at a time, in order, before any regular container; a failed one
    // is retried (or fails the pod under Never).
    #[test]
    fn init_containers_in_order() {
        let now = Instant::now();
        let pod = pod("Always", &["a", "b"], &["main"]);
        let mut records = Records::new();
        assert_eq!(plan(&pod, &records, now).actions, [start("a", true)]);
        records.insert("a".into(), running("a", now));
        assert_eq!(plan(&pod, &records, now).actions, []);
        records.insert("a".into(), exited("a", 0, now));
        assert_eq!(plan(&pod, &records, now).actions, [start("b", true)]);
        records.insert("b".into(), exited("b", 1, now));
        assert_eq!(plan(&pod, &records, now).actions, [start("b", true)], "the first restart is immediate");
        records.insert("b".into(), exited("b", 0, now));
        assert_eq!(plan(&pod, &records, now).actions, [start("main", false)]);
        let never = super::tests::pod("Never", &["a"], &["main"]);
        let failed = Records::from([("a".into(), exited("a", 1, now))]);
        let verdict = plan(&never, &failed, now);
        assert!(verdict.finished && verdict.actions.is_empty(), "{verdict:?}");
    }

    // Each restart policy restarts what it should; a pod whose containers will not run again
    // is finished.
    #[test]
    fn restart_policies() {
        let now = Instant::now();
        for (policy, code, restarts) in [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 2, true),
            ("Never", 0, false),
            ("Never", 2, false),
        ] {
            let pod = pod(policy, &[], &["main"]);
            let records = Records::from([("main".into(), exited("main", code, now))]);
            let verdict = plan(&pod, &records, now);
            assert_eq!(verdict.actions == [start("main", false)], restarts, "{policy} exit {code}");
            assert_eq!(verdict.finished, !restarts, "{policy} exit {code}");
        }
    }

    // Restarts back off: none before the first, then doubling up to the maximum, reset after a
    // long enough run; a container waiting out its back-off is reported as backing off.
    #[test]
    fn backoff() {
        let policy = BackoffPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(40),
            reset_after: Duration::from_secs(600),
        };
        let pod = pod("Always", &[], &["main"]);
        let mut now = Instant::now();
        let mut record = ContainerRecord::default();
        let mut delays = Vec::new();
        for _ in 0..5 {
            record.started_run(ContainerId::new("uid", "main", record.attempts), now, SystemTime::now());
            record.exited(exit(1), now, &policy);
            let not_before = record.not_before.expect("a restart time");
            delays.push(not_before.duration_since(now).as_secs());
            let records = Records::from([("main".into(), record.clone())]);
            if not_before > now {
                let verdict = plan(&pod, &records, now);
                assert_eq!(verdict.actions, []);
                assert_eq!(verdict.backing_off, ["main"]);
                assert_eq!(verdict.wake_at, Some(not_before));
            }
            now = not_before;
            assert_eq!(plan(&pod, &records, now).actions, [start("main", false)]);
        }
        assert_eq!(delays, [0, 10, 20, 40, 40]);
        record.started_run(ContainerId::new("uid", "main", record.attempts), now, SystemTime::now());
        now += policy.reset_after;
        record.exited(exit(1), now, &policy);
        assert_eq!(record.not_before, Some(now), "a long run resets the back-off");
    }

    // A failed probe kills the running container; deleting the pod kills every running one and
    // is finished once none runs.
    #[test]
    fn kills() {
        let now = Instant::now();
        let pod_spec = pod("Always", &[], &["a", "b"]);
        let mut a = running("a", now);
        a.kill_requested = Some(KillReason::LivenessFailed);
        let records = Records::from([("a".into(), a), ("b".into(), running("b", now))]);
        assert_eq!(
            plan(&pod_spec, &records, now).actions,
            [Action::Kill { name: "a".into(), reason: KillReason::LivenessFailed }]
        );
        let mut deleted = pod_spec.clone();
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        let verdict = plan(&deleted, &records, now);
        assert_eq!(verdict.actions.len(), 2);
        assert!(!verdict.finished);
        let stopped = Records::from([("a".into(), exited("a", 137, now))]);
        assert!(plan(&deleted, &stopped, now).finished);
    }
}
