//! The end of a pass: the Deployment's status, and how the Progressing condition moves on
//! (upstream's `syncRolloutStatus` and `calculateStatus`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};

use super::super::*;
use super::{Pass, actual_of, available_of, ready_of};

impl Pass<'_> {
    /// Ends a paused, scaled or deleted Deployment's pass: status without progress estimates.
    pub(super) fn finish_plain(mut self) -> Decision {
        let status = self.calculate_status();
        self.push_status(status);
        Decision { writes: self.writes, requeue_after: None }
    }

    /// Upstream's `syncRolloutStatus`: the status with the Progressing condition moved on.
    pub(super) fn finish_rollout(mut self) -> Decision {
        let deployment = self.deployment;
        let mut status = self.calculate_status();
        let deadline = progress_deadline(deployment);
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = condition(&self.status, PROGRESSING).cloned();
        let was_complete = status.replicas.unwrap_or(0) == status.updated_replicas.unwrap_or(0)
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
        let new_name =
            self.new.map(|index| self.replica_sets[index].metadata.name.clone().unwrap_or_default());
        let subject = match &new_name {
            Some(name) => format!("ReplicaSet {name:?}"),
            None => format!("Deployment {:?}", deployment.metadata.name.as_deref().unwrap_or_default()),
        };
        let old_status = deployment.status.clone().unwrap_or_default();
        if deadline.is_some() && !was_complete {
            if complete(deployment, &status) {
                let message = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", "NewReplicaSetAvailable", message, self.now),
                );
            } else if progressing(&old_status, &status) {
                let message = format!("{subject} is progressing.");
                let mut updated = new_condition(PROGRESSING, "True", "ReplicaSetUpdated", message, self.now);
                if let Some(current) = &current {
                    if current.status == "True" {
                        updated.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, updated);
            } else if self.timed_out(&status) {
                let message = format!("{subject} has timed out progressing.");
                let timed_out =
                    new_condition(PROGRESSING, "False", "ProgressDeadlineExceeded", message, self.now);
                set_condition(&mut status, timed_out);
            }
        }
        let failure = self
            .replica_sets
            .iter()
            .filter_map(|rs| {
                rs.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
            })
            .next()
            .cloned();
        match failure {
            Some(failure) => set_condition(
                &mut status,
                DeploymentCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: failure.status,
                    reason: failure.reason,
                    message: failure.message,
                    last_update_time: failure.last_transition_time.clone(),
                    last_transition_time: failure.last_transition_time,
                },
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        let requeue_after = self.stuck_requeue(&status);
        self.push_status(status);
        Decision { writes: self.writes, requeue_after }
    }

    /// Upstream's `DeploymentTimedOut`.
    fn timed_out(&self, status: &DeploymentStatus) -> bool {
        let Some(current) = condition(status, PROGRESSING) else { return false };
        if current.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return true;
        }
        let Some(deadline) = progress_deadline(self.deployment) else { return false };
        let Some(since) = current.last_update_time.as_ref() else { return false };
        self.now.duration_since(since.0) > deadline
    }

    /// Upstream's `requeueStuckDeployment`: when a rollout under way may pass its deadline.
    fn stuck_requeue(&self, status: &DeploymentStatus) -> Option<Duration> {
        let deadline = progress_deadline(self.deployment)?;
        let current = condition(status, PROGRESSING)?;
        if complete(self.deployment, status) || current.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return None;
        }
        let since = current.last_update_time.as_ref()?.0;
        let remaining = deadline - self.now.duration_since(since);
        let remaining = remaining.max(k8s_openapi::jiff::SignedDuration::from_secs(1));
        Duration::try_from(remaining).ok()
    }

    /// Upstream's `calculateStatus`, over this pass's copies.
    fn calculate_status(&self) -> DeploymentStatus {
        let deployment = self.deployment;
        let sum = |value: fn(&ReplicaSet) -> i32| -> i32 { self.replica_sets.iter().map(value).sum() };
        let available = sum(available_of);
        let total = sum(replicas_of);
        let mut status = DeploymentStatus {
            observed_generation: deployment.metadata.generation,
            replicas: Some(sum(actual_of)),
            updated_replicas: Some(self.new.map_or(0, |index| actual_of(&self.replica_sets[index]))),
            ready_replicas: Some(sum(ready_of)),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: None,
        };
        let minimum = desired_replicas(deployment) - max_unavailable(deployment);
        let available_condition = if available >= minimum {
            new_condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            new_condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, available_condition);
        status
    }

    fn push_status(&mut self, status: DeploymentStatus) {
        if self.deployment.status.as_ref() != Some(&status) {
            self.writes.push(Write::Status(status));
        }
    }
}

/// Upstream's `DeploymentComplete`.
pub(super) fn complete(deployment: &Deployment, status: &DeploymentStatus) -> bool {
    let wanted = desired_replicas(deployment);
    status.updated_replicas.unwrap_or(0) == wanted
        && status.replicas.unwrap_or(0) == wanted
        && status.available_replicas.unwrap_or(0) == wanted
        && status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0)
}

/// Upstream's `DeploymentProgressing`: more updated, fewer old, more ready or more available.
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_pods =
        |status: &DeploymentStatus| status.replicas.unwrap_or(0) - status.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || old_pods(new) < old_pods(old)
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}
