//! A pod's status as the agent reports it, computed from the spec, the containers' records and
//! the plan: phase, conditions, and each container's state, last state, restart count and
//! readiness, in Kubernetes' words.

use std::net::Ipv4Addr;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::lifecycle::{ContainerRecord, Plan, Records, Run};
use crate::runtime::Exit;

/// What the status is computed from besides the pod and its records.
#[derive(Debug, Clone)]
pub struct StatusFacts<'a> {
    pub plan: &'a Plan,
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: &'a str,
    /// When the agent first took the pod on.
    pub start_time: SystemTime,
    pub now: SystemTime,
    /// The runtime's scheme for container ids: `<scheme>://<id>`.
    pub runtime_scheme: &'a str,
}

pub fn time(at: SystemTime) -> Time {
    Time(jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// The pod's status.
pub fn pod_status(pod: &Pod, records: &Records, facts: &StatusFacts<'_>) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let init_containers = spec.init_containers.unwrap_or_default();
    let containers = spec.containers;
    let previous = pod.status.as_ref();
    let initialized = init_containers.iter().all(|container| succeeded(records.get(&container.name)));
    // How kubelet names a pod in messages: `name_namespace(uid)`.
    let meta = &pod.metadata;
    let pod_label = format!(
        "{}_{}({})",
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or("default"),
        meta.uid.as_deref().unwrap_or_default()
    );
    let status_of = |container: &Container, init: bool| {
        container_status(container, records.get(&container.name), init, initialized, &pod_label, facts)
    };
    let init_statuses: Vec<ContainerStatus> =
        init_containers.iter().map(|container| status_of(container, true)).collect();
    let statuses: Vec<ContainerStatus> =
        containers.iter().map(|container| status_of(container, false)).collect();

    let phase = phase(&containers, records, facts.plan, initialized);
    let unready: Vec<&str> =
        statuses.iter().filter(|status| !status.ready).map(|status| status.name.as_str()).collect();
    let incomplete: Vec<&str> = init_containers
        .iter()
        .filter(|container| !succeeded(records.get(&container.name)))
        .map(|container| container.name.as_str())
        .collect();
    let finished = matches!(phase, "Succeeded" | "Failed");
    let ready_condition = |kind: &str| {
        if finished {
            condition(kind, false, Some("PodCompleted"), None)
        } else if unready.is_empty() {
            condition(kind, true, None, None)
        } else {
            let message = format!("containers with unready status: [{}]", unready.join(" "));
            condition(kind, false, Some("ContainersNotReady"), Some(message))
        }
    };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", facts.pod_ip.is_some(), None, None),
        if incomplete.is_empty() {
            condition("Initialized", true, None, None)
        } else {
            let message = format!("containers with incomplete status: [{}]", incomplete.join(" "));
            condition("Initialized", false, Some("ContainersNotInitialized"), Some(message))
        },
        ready_condition("Ready"),
        ready_condition("ContainersReady"),
    ];
    // Conditions others own (PodScheduled, readiness gates) stay as they are.
    let ours: Vec<String> = conditions.iter().map(|condition| condition.type_.clone()).collect();
    let theirs = previous.and_then(|status| status.conditions.clone()).unwrap_or_default();
    conditions.extend(theirs.iter().filter(|condition| !ours.contains(&condition.type_)).cloned());
    for condition in &mut conditions {
        let earlier = theirs.iter().find(|old| old.type_ == condition.type_);
        condition.last_transition_time = match earlier {
            Some(old) if old.status == condition.status => old.last_transition_time.clone(),
            _ => Some(time(facts.now)),
        };
    }

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(facts.host_ip.into()),
        host_ips: Some(vec![HostIP { ip: facts.host_ip.into() }]),
        pod_ip: facts.pod_ip.map(|ip| ip.to_string()),
        pod_ips: facts.pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        start_time: Some(time(facts.start_time)),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: previous.and_then(|status| status.qos_class.clone()),
        ..PodStatus::default()
    }
}

/// Kubernetes' phase: Pending until a container runs, Running while any runs or will run
/// again, then Succeeded if every container exited 0, else Failed.
fn phase(containers: &[Container], records: &Records, plan: &Plan, initialized: bool) -> &'static str {
    if plan.finished {
        let all_succeeded = initialized
            && containers.iter().all(|container| {
                records
                    .get(&container.name)
                    .and_then(ContainerRecord::exit)
                    .is_some_and(|exit| exit.exit_code == 0)
            });
        return if all_succeeded { "Succeeded" } else { "Failed" };
    }
    let has_run =
        containers.iter().any(|container| records.get(&container.name).is_some_and(|r| r.run.is_some()));
    if initialized && has_run { "Running" } else { "Pending" }
}

/// Whether a container's current run exited 0.
fn succeeded(record: Option<&ContainerRecord>) -> bool {
    record.and_then(ContainerRecord::exit).is_some_and(|exit| exit.exit_code == 0)
}

fn condition(kind: &str, status: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.map(str::to_owned),
        message,
        ..PodCondition::default()
    }
}

fn container_status(
    container: &Container,
    record: Option<&ContainerRecord>,
    init: bool,
    initialized: bool,
    pod_label: &str,
    facts: &StatusFacts<'_>,
) -> ContainerStatus {
    let waiting = |reason: &str, message: Option<String>| K8sState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }),
        ..K8sState::default()
    };
    let terminated = |exit: &Exit, id: Option<String>| K8sState {
        terminated: Some(terminated(exit, id)),
        ..K8sState::default()
    };
    let container_id = |id: &crate::runtime::ContainerId| format!("{}://{id}", facts.runtime_scheme);
    let default_waiting = if !init && !initialized { "PodInitializing" } else { "ContainerCreating" };
    let (state, last_state, id) = match record.and_then(|record| record.run.as_ref()) {
        None => {
            let state = match record.and_then(|record| record.waiting.clone()) {
                Some((reason, message)) => waiting(&reason, Some(message)),
                None => waiting(default_waiting, None),
            };
            (
                state,
                record.and_then(|record| record.previous_exit.as_ref()).map(|exit| terminated(exit, None)),
                None,
            )
        }
        Some(Run::Running { id, .. }) => {
            let record = record.expect("a run has a record");
            let started_at = record.started_at;
            let state = K8sState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(started_at.unwrap_or(facts.now))),
                }),
                ..K8sState::default()
            };
            let last = record.previous_exit.as_ref().map(|exit| terminated(exit, None));
            (state, last, Some(container_id(id)))
        }
        Some(Run::Exited { id, exit, .. }) => {
            let record = record.expect("a run has a record");
            if facts.plan.backing_off.contains(&container.name) {
                let message = format!(
                    "back-off {}s restarting failed container={} pod={pod_label}",
                    record.restart_delay.as_secs(),
                    container.name
                );
                let state = waiting("CrashLoopBackOff", Some(message));
                (state, Some(terminated(exit, Some(container_id(id)))), Some(container_id(id)))
            } else {
                let last = record.previous_exit.as_ref().map(|exit| terminated(exit, None));
                (terminated(exit, Some(container_id(id))), last, Some(container_id(id)))
            }
        }
    };
    let running = record.is_some_and(ContainerRecord::is_running);
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: String::new(),
        container_id: id,
        restart_count: record.map_or(0, |record| record.attempts.saturating_sub(1) as i32),
        ready: running && record.is_some_and(|record| record.ready),
        started: Some(running && record.is_some_and(|record| record.started)),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..ContainerStatus::default()
    }
}

fn terminated(exit: &Exit, container_id: Option<String>) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: exit.reason.clone(),
        message: exit.message.clone(),
        started_at: exit.started_at.map(time),
        finished_at: Some(time(exit.finished_at)),
        container_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{BackoffPolicy, ContainerRecord, Plan, Records, plan};
    use crate::runtime::{ContainerId, Exit};
    use std::time::Instant;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "main", "image": "host"}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}], "qosClass": "BestEffort"}
        }))
        .unwrap()
    }

    fn exit(code: i32) -> Exit {
        Exit {
            started_at: None,
            finished_at: SystemTime::UNIX_EPOCH,
            exit_code: code,
            signal: None,
            reason: Some("Error".into()),
            message: None,
        }
    }

    fn status_of(pod: &Pod, records: &Records, plan: &Plan) -> PodStatus {
        let facts = StatusFacts {
            plan,
            pod_ip: Some(Ipv4Addr::new(127, 1, 1, 2)),
            host_ip: "127.0.0.1",
            start_time: SystemTime::UNIX_EPOCH,
            now: SystemTime::UNIX_EPOCH,
            runtime_scheme: "shoal-process",
        };
        pod_status(pod, records, &facts)
    }

    fn condition_status(status: &PodStatus, kind: &str) -> String {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    // A pod goes Pending → Running (ready) → CrashLoopBackOff with the last exit as lastState,
    // keeping the scheduler's condition and the server's QoS class throughout.
    #[test]
    fn running_then_crash_loop() {
        let pod = pod("Always");
        let now = Instant::now();
        let mut records = Records::new();
        let pending = status_of(&pod, &records, &plan(&pod, &records, now));
        assert_eq!(pending.phase.as_deref(), Some("Pending"));
        let waiting = pending.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().waiting.unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));

        let mut record = ContainerRecord::default();
        record.started_run(ContainerId::new("u", "main", 0), now, SystemTime::UNIX_EPOCH);
        record.ready = true;
        record.started = true;
        records.insert("main".into(), record.clone());
        let running = status_of(&pod, &records, &plan(&pod, &records, now));
        assert_eq!(running.phase.as_deref(), Some("Running"));
        assert_eq!(condition_status(&running, "Ready"), "True");
        assert_eq!(condition_status(&running, "PodScheduled"), "True");
        assert_eq!(running.qos_class.as_deref(), Some("BestEffort"));
        let main = &running.container_statuses.as_ref().unwrap()[0];
        assert_eq!(main.container_id.as_deref(), Some("shoal-process://u/main.0"));

        // Crashed twice: the second restart waits out a back-off.
        let policy = BackoffPolicy::default();
        record.exited(exit(1), now, &policy);
        record.started_run(ContainerId::new("u", "main", 1), now, SystemTime::UNIX_EPOCH);
        record.exited(exit(2), now, &policy);
        records.insert("main".into(), record);
        let looping = status_of(&pod, &records, &plan(&pod, &records, now));
        assert_eq!(looping.phase.as_deref(), Some("Running"));
        assert_eq!(condition_status(&looping, "Ready"), "False");
        let main = &looping.container_statuses.as_ref().unwrap()[0];
        assert_eq!(main.restart_count, 1);
        let waiting = main.state.clone().unwrap().waiting.unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            waiting.message.as_deref(),
            Some("back-off 10s restarting failed container=main pod=p_default(u)")
        );
        assert_eq!(main.last_state.clone().unwrap().terminated.unwrap().exit_code, 2);
    }

    // Under Never a pod whose container exited is Succeeded or Failed by its exit code, and not
    // Ready.
    #[test]
    fn terminal_phases() {
        for (code, phase) in [(0, "Succeeded"), (5, "Failed")] {
            let pod = pod("Never");
            let now = Instant::now();
            let mut record = ContainerRecord::default();
            record.started_run(ContainerId::new("u", "main", 0), now, SystemTime::UNIX_EPOCH);
            record.exited(exit(code), now, &BackoffPolicy::default());
            let records = Records::from([("main".to_owned(), record)]);
            let status = status_of(&pod, &records, &plan(&pod, &records, now));
            assert_eq!(status.phase.as_deref(), Some(phase));
            assert_eq!(condition_status(&status, "Ready"), "False");
            let terminated = status.container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
            assert_eq!(terminated.exit_code, code);
        }
    }
}
