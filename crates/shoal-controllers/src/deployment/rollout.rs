//! One pass of the Deployment controller over an in-memory copy of the Deployment and its
//! ReplicaSets: each step changes the copy the way upstream's sync changes its objects, and
//! records the write that makes the change real.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

mod progress;

use super::template::{POD_TEMPLATE_HASH_LABEL, equal_ignoring_hash, template_hash};
use super::*;
use crate::ownership::{Claim, claim, controller_of, controller_reference};
use progress::complete;

pub(super) struct Pass<'a> {
    deployment: &'a Deployment,
    pods: &'a [Pod],
    now: Timestamp,
    /// The Deployment's ReplicaSets (after claiming), as this pass has changed them.
    replica_sets: Vec<ReplicaSet>,
    /// The index of the new ReplicaSet in `replica_sets`.
    new: Option<usize>,
    /// The Deployment's status as this pass has changed it (conditions, collisionCount).
    status: DeploymentStatus,
    /// The Deployment's revision annotation as this pass has changed it.
    revision: Option<String>,
    writes: Vec<Write>,
}

impl<'a> Pass<'a> {
    pub(super) fn new(
        deployment: &'a Deployment,
        replica_sets: &[ReplicaSet],
        pods: &'a [Pod],
        now: Timestamp,
    ) -> Self {
        let uid = deployment.metadata.uid.as_deref().unwrap_or_default();
        let selector = deployment.spec.as_ref().map(|spec| spec.selector.clone()).unwrap_or_default();
        let deleting = deployment.metadata.deletion_timestamp.is_some();
        let namespace = deployment.metadata.namespace.as_deref();
        let mut writes = Vec::new();
        let mut owned = Vec::new();
        for replica_set in replica_sets.iter().filter(|rs| rs.metadata.namespace.as_deref() == namespace) {
            match claim(uid, &selector, deleting, &replica_set.metadata) {
                Claim::Owned => owned.push(replica_set.clone()),
                Claim::Adopt => {
                    writes.push(Write::Adopt(replica_set.clone()));
                    let mut adopted = replica_set.clone();
                    adopted.metadata.owner_references =
                        Some(vec![controller_reference("apps/v1", "Deployment", &deployment.metadata)]);
                    owned.push(adopted);
                }
                Claim::Release => writes.push(Write::Release(replica_set.clone())),
                Claim::Ignore => {}
            }
        }
        // Oldest first, as upstream sorts by creation time (names break ties).
        owned.sort_by(|left, right| {
            let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|time| time.0);
            created(left).cmp(&created(right)).then_with(|| left.metadata.name.cmp(&right.metadata.name))
        });
        let template = deployment.spec.as_ref().map(|spec| spec.template.clone()).unwrap_or_default();
        let new = owned.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|spec| spec.template.as_ref())
                .is_some_and(|t| equal_ignoring_hash(t, &template))
        });
        Self {
            deployment,
            pods,
            now,
            replica_sets: owned,
            new,
            status: deployment.status.clone().unwrap_or_default(),
            revision: deployment_annotation(deployment, REVISION_ANNOTATION),
            writes,
        }
    }

    pub(super) fn run(mut self) -> Decision {
        let deployment = self.deployment;
        if deployment.metadata.deletion_timestamp.is_some() {
            self.sync_revision(false);
            return self.finish_plain();
        }
        self.check_paused_conditions();
        if is_paused(deployment) || self.is_scaling_event() {
            self.sync_revision(false);
            self.scale();
            if is_paused(deployment) {
                self.clean_up();
            }
            return self.finish_plain();
        }
        if is_rolling_update(deployment) { self.rolling() } else { self.recreate() }
    }

    fn rolling(mut self) -> Decision {
        if !self.sync_revision(true) {
            return self.finish_rollout();
        }
        if self.reconcile_new() || self.reconcile_old() {
            return self.finish_rollout();
        }
        if complete(self.deployment, &self.deployment.status.clone().unwrap_or_default()) {
            self.clean_up();
        }
        self.finish_rollout()
    }

    fn recreate(mut self) -> Decision {
        self.sync_revision(false);
        let mut scaled_down = false;
        for index in self.old_indexes() {
            if replicas_of(&self.replica_sets[index]) != 0 {
                self.scale_to(index, 0, "down");
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running() {
            return self.finish_rollout();
        }
        if self.new.is_none() && !self.sync_revision(true) {
            return self.finish_rollout();
        }
        let new = self.new.expect("created or found above");
        let wanted = desired_replicas(self.deployment);
        if replicas_of(&self.replica_sets[new]) != wanted {
            let direction = if replicas_of(&self.replica_sets[new]) < wanted { "up" } else { "down" };
            self.scale_to(new, wanted, direction);
        }
        if complete(self.deployment, &self.deployment.status.clone().unwrap_or_default()) {
            self.clean_up();
        }
        self.finish_rollout()
    }

    fn old_indexes(&self) -> Vec<usize> {
        (0..self.replica_sets.len()).filter(|index| Some(*index) != self.new).collect()
    }

    /// Whether pods of old ReplicaSets still run (Recreate waits for them to be gone).
    fn old_pods_running(&self) -> bool {
        let old: Vec<&str> = self
            .old_indexes()
            .into_iter()
            .map(|index| self.replica_sets[index].metadata.uid.as_deref().unwrap_or_default())
            .collect();
        let counted = self
            .old_indexes()
            .iter()
            .any(|index| self.replica_sets[*index].status.as_ref().is_some_and(|status| status.replicas > 0));
        counted
            || self.pods.iter().any(|pod| {
                let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
                controller_of(&pod.metadata).is_some_and(|owner| old.contains(&owner.uid.as_str()))
                    && !matches!(phase, Some("Succeeded" | "Failed"))
            })
    }

    /// Upstream's `getNewReplicaSet`: keeps the new ReplicaSet's annotations and the
    /// Deployment's revision in step, or (with `create`) creates the new ReplicaSet. Returns
    /// whether there is a new ReplicaSet now.
    fn sync_revision(&mut self, create: bool) -> bool {
        let max_old_revision =
            self.old_indexes().iter().map(|index| revision_of(&self.replica_sets[*index])).max().unwrap_or(0);
        let new_revision = (max_old_revision + 1).to_string();
        if let Some(index) = self.new {
            let mut replica_set = self.replica_sets[index].clone();
            let mut changed = self.set_new_annotations(&mut replica_set, &new_revision, true);
            let min_ready = self.deployment.spec.as_ref().and_then(|spec| spec.min_ready_seconds);
            let spec = replica_set.spec.get_or_insert_with(ReplicaSetSpec::default);
            if spec.min_ready_seconds != min_ready {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            if changed {
                self.update(index, replica_set, None);
            }
            let revision =
                annotation(&self.replica_sets[index], REVISION_ANNOTATION).unwrap_or_default().to_owned();
            self.set_revision(revision);
            if progress_deadline(self.deployment).is_some() && condition(&self.status, PROGRESSING).is_none()
            {
                let name = self.replica_sets[index].metadata.name.clone().unwrap_or_default();
                let message = format!("Found new replica set {name:?}");
                let found = new_condition(PROGRESSING, "True", "FoundNewReplicaSet", message, self.now);
                set_condition(&mut self.status, found);
            }
            return true;
        }
        if !create {
            return false;
        }
        let replica_set = self.new_replica_set(&new_revision);
        let name = replica_set.metadata.name.clone().unwrap_or_default();
        let replicas = replicas_of(&replica_set);
        let event = (replicas > 0).then(|| format!("Scaled up replica set {name} from 0 to {replicas}"));
        self.writes.push(Write::Create { replica_set: replica_set.clone(), event });
        self.replica_sets.push(replica_set);
        self.new = Some(self.replica_sets.len() - 1);
        self.set_revision(new_revision);
        if progress_deadline(self.deployment).is_some() {
            let message = format!("Created new replica set {name:?}");
            let created = new_condition(PROGRESSING, "True", "NewReplicaSetCreated", message, self.now);
            set_condition(&mut self.status, created);
        }
        true
    }

    /// The new ReplicaSet as upstream makes it: named and selected by the template hash,
    /// owned by the Deployment, sized by the rollout's rules.
    fn new_replica_set(&self, revision: &str) -> ReplicaSet {
        let deployment = self.deployment;
        let spec = deployment.spec.clone().unwrap_or_default();
        let collision_count = self.status.collision_count;
        let mut template = spec.template.clone();
        let hash = template_hash(&template, collision_count);
        let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
        metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let labels = metadata.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut replica_set = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", deployment.metadata.name.as_deref().unwrap_or_default())),
                namespace: deployment.metadata.namespace.clone(),
                owner_references: Some(vec![controller_reference(
                    "apps/v1",
                    "Deployment",
                    &deployment.metadata,
                )]),
                labels,
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let replicas = if is_rolling_update(deployment) {
            let total: i32 = self.replica_sets.iter().map(replicas_of).sum();
            let wanted = desired_replicas(deployment);
            let room = (wanted + max_surge(deployment) - total).max(0);
            room.min(wanted)
        } else {
            desired_replicas(deployment)
        };
        replica_set.spec.as_mut().expect("set above").replicas = Some(replicas);
        self.set_new_annotations(&mut replica_set, revision, false);
        replica_set
    }

    /// Upstream's `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises
    /// the revision (keeping the one it replaces in the revision history) and, on a new
    /// ReplicaSet, sets the replica annotations. Returns whether anything changed.
    fn set_new_annotations(&self, replica_set: &mut ReplicaSet, new_revision: &str, exists: bool) -> bool {
        let deployment = self.deployment;
        let annotations = replica_set.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        for (key, value) in deployment.metadata.annotations.iter().flatten() {
            if !ANNOTATIONS_NOT_COPIED.contains(&key.as_str()) {
                changed |= set_annotation(annotations, key, value.clone());
            }
        }
        let old_revision = annotations.get(REVISION_ANNOTATION).cloned();
        let old_number = match old_revision.as_deref() {
            None | Some("") => 0,
            Some(text) => match text.parse::<i64>() {
                Ok(number) => number,
                Err(_) => return changed,
            },
        };
        let new_number: i64 = new_revision.parse().unwrap_or(0);
        if old_number < new_number {
            annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_owned());
            changed = true;
            if let Some(old) = old_revision.filter(|old| !old.is_empty()) {
                let history = annotations.get(REVISION_HISTORY_ANNOTATION).cloned().unwrap_or_default();
                let mut revisions: Vec<&str> = history.split(',').filter(|entry| !entry.is_empty()).collect();
                revisions.push(&old);
                while revisions.join(",").len() > REVISION_HISTORY_CHARS_MAX && revisions.len() > 1 {
                    revisions.remove(0);
                }
                let joined = revisions.join(",");
                annotations.insert(REVISION_HISTORY_ANNOTATION.into(), joined);
            }
        }
        if !exists {
            let wanted = desired_replicas(deployment);
            changed |= set_annotation(annotations, DESIRED_REPLICAS_ANNOTATION, wanted.to_string());
            changed |= set_annotation(
                annotations,
                MAX_REPLICAS_ANNOTATION,
                (wanted + max_surge(deployment)).to_string(),
            );
        }
        changed
    }

    fn set_revision(&mut self, revision: String) {
        if self.revision.as_deref() != Some(revision.as_str()) {
            self.revision = Some(revision.clone());
            self.writes.push(Write::Revision(revision));
        }
    }

    /// Upstream's `checkPausedConditions`.
    fn check_paused_conditions(&mut self) {
        if progress_deadline(self.deployment).is_none() {
            return;
        }
        let current = condition(&self.status, PROGRESSING);
        if current.is_some_and(|current| current.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
            return;
        }
        let paused_recorded =
            current.is_some_and(|current| current.reason.as_deref() == Some("DeploymentPaused"));
        let paused = is_paused(self.deployment);
        if paused && !paused_recorded {
            let condition = new_condition(
                PROGRESSING,
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                self.now,
            );
            set_condition(&mut self.status, condition);
        } else if !paused && paused_recorded {
            let condition = new_condition(
                PROGRESSING,
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
                self.now,
            );
            set_condition(&mut self.status, condition);
        }
    }

    /// Whether `spec.replicas` changed since an active ReplicaSet was sized.
    fn is_scaling_event(&mut self) -> bool {
        let wanted = desired_replicas(self.deployment);
        self.replica_sets.iter().filter(|rs| replicas_of(rs) > 0).any(|rs| {
            annotation_number(rs, DESIRED_REPLICAS_ANNOTATION).is_some_and(|desired| desired != wanted)
        })
    }

    /// Upstream's `scale`: the one active (or the newest) ReplicaSet takes `spec.replicas`;
    /// with a saturated new one the old go to zero; otherwise, in a rolling update, the
    /// change is shared in proportion to the ReplicaSets' sizes.
    fn scale(&mut self) {
        let deployment = self.deployment;
        let wanted = desired_replicas(deployment);
        let active: Vec<usize> =
            (0..self.replica_sets.len()).filter(|i| replicas_of(&self.replica_sets[*i]) > 0).collect();
        let only = match active.as_slice() {
            [one] => Some(*one),
            [] => self.new.or_else(|| self.newest()),
            _ => None,
        };
        if let Some(index) = only {
            if replicas_of(&self.replica_sets[index]) != wanted {
                let direction = if replicas_of(&self.replica_sets[index]) < wanted { "up" } else { "down" };
                self.scale_to(index, wanted, direction);
            }
            return;
        }
        if let Some(new) = self.new.filter(|new| self.is_saturated(*new)) {
            for index in active.into_iter().filter(|index| *index != new) {
                self.scale_to(index, 0, "down");
            }
            return;
        }
        if !is_rolling_update(deployment) {
            return;
        }
        let total: i32 = active.iter().map(|i| replicas_of(&self.replica_sets[*i])).sum();
        let allowed = if wanted > 0 { wanted + max_surge(deployment) } else { 0 };
        let to_add = allowed - total;
        if to_add == 0 {
            return;
        }
        // Larger first; among equals, newer first when growing and older first when shrinking.
        let mut order = active;
        order.sort_by(|left, right| {
            let (l, r) = (&self.replica_sets[*left], &self.replica_sets[*right]);
            let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|time| time.0);
            let by_age = if to_add > 0 { created(r).cmp(&created(l)) } else { created(l).cmp(&created(r)) };
            replicas_of(r).cmp(&replicas_of(l)).then(by_age)
        });
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(order.len());
        for index in &order {
            let proportion = self.proportion(&self.replica_sets[*index], to_add, added);
            sizes.push(replicas_of(&self.replica_sets[*index]) + proportion);
            added += proportion;
        }
        sizes[0] = (sizes[0] + to_add - added).max(0);
        let direction = if to_add > 0 { "up" } else { "down" };
        for (index, size) in order.into_iter().zip(sizes) {
            self.scale_to(index, size, direction);
        }
    }

    /// Upstream's `GetReplicaSetProportion`.
    fn proportion(&self, replica_set: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        let current = replicas_of(replica_set);
        if current == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let deployment = self.deployment;
        let fraction = if desired_replicas(deployment) == 0 {
            -current
        } else {
            let max_now = desired_replicas(deployment) + max_surge(deployment);
            let before = annotation_number(replica_set, MAX_REPLICAS_ANNOTATION)
                .filter(|before| *before != 0)
                .unwrap_or(self.deployment.status.as_ref().and_then(|status| status.replicas).unwrap_or(0));
            if before == 0 {
                0
            } else {
                let size = f64::from(current) * f64::from(max_now) / f64::from(before);
                #[allow(clippy::cast_possible_truncation, reason = "bounded by i32 sizes")]
                let rounded = size.round() as i32;
                rounded - current
            }
        };
        let allowed = to_add - added;
        if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
    }

    fn newest(&self) -> Option<usize> {
        (0..self.replica_sets.len()).max_by_key(|index| {
            self.replica_sets[*index].metadata.creation_timestamp.as_ref().map(|time| time.0)
        })
    }

    /// Upstream's `IsSaturated`: the new ReplicaSet has all `spec.replicas`, sized for them,
    /// and all available.
    fn is_saturated(&self, index: usize) -> bool {
        let replica_set = &self.replica_sets[index];
        let wanted = desired_replicas(self.deployment);
        let available = replica_set.status.as_ref().and_then(|status| status.available_replicas).unwrap_or(0);
        replicas_of(replica_set) == wanted
            && annotation_number(replica_set, DESIRED_REPLICAS_ANNOTATION) == Some(wanted)
            && available == wanted
    }

    /// Upstream's `reconcileNewReplicaSet`; returns whether it scaled.
    fn reconcile_new(&mut self) -> bool {
        let deployment = self.deployment;
        let new = self.new.expect("the new replica set exists in a rolling update");
        let wanted = desired_replicas(deployment);
        let current = replicas_of(&self.replica_sets[new]);
        if current == wanted {
            return false;
        }
        if current > wanted {
            return self.scale_to(new, wanted, "down");
        }
        let total: i32 = self.replica_sets.iter().map(replicas_of).sum();
        let ceiling = wanted + max_surge(deployment);
        if total >= ceiling {
            return false;
        }
        let target = current + (ceiling - total).min(wanted - current);
        self.scale_to(new, target, "up")
    }

    /// Upstream's `reconcileOldReplicaSets`: unhealthy old pods first, then old ones while
    /// enough stay available; returns whether it scaled.
    fn reconcile_old(&mut self) -> bool {
        let deployment = self.deployment;
        let new = self.new.expect("the new replica set exists in a rolling update");
        let old = self.old_by_age();
        let old_total: i32 = old.iter().map(|i| replicas_of(&self.replica_sets[*i])).sum();
        if old_total == 0 {
            return false;
        }
        let all_total: i32 = self.replica_sets.iter().map(replicas_of).sum();
        let min_available = desired_replicas(deployment) - max_unavailable(deployment);
        let new_unavailable = replicas_of(&self.replica_sets[new]) - available_of(&self.replica_sets[new]);
        let max_scaled_down = all_total - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let mut scaled_down = 0;
        for index in &old {
            if scaled_down >= max_scaled_down {
                break;
            }
            let (replicas, available) =
                (replicas_of(&self.replica_sets[*index]), available_of(&self.replica_sets[*index]));
            if replicas == 0 || replicas == available {
                continue;
            }
            let count = (max_scaled_down - scaled_down).min(replicas - available);
            self.scale_to(*index, replicas - count, "down");
            scaled_down += count;
        }
        let available_total: i32 = self.replica_sets.iter().map(available_of).sum();
        if available_total > min_available {
            let budget = available_total - min_available;
            let mut taken = 0;
            for index in &old {
                if taken >= budget {
                    break;
                }
                let replicas = replicas_of(&self.replica_sets[*index]);
                if replicas == 0 {
                    continue;
                }
                let count = replicas.min(budget - taken);
                self.scale_to(*index, replicas - count, "down");
                taken += count;
            }
            scaled_down += taken;
        }
        scaled_down > 0
    }

    fn old_by_age(&self) -> Vec<usize> {
        let mut old = self.old_indexes();
        old.sort_by_key(|index| {
            self.replica_sets[*index].metadata.creation_timestamp.as_ref().map(|time| time.0)
        });
        old
    }

    /// Sets a ReplicaSet's size and its replica annotations; returns whether its size changed.
    fn scale_to(&mut self, index: usize, replicas: i32, direction: &str) -> bool {
        let deployment = self.deployment;
        let mut replica_set = self.replica_sets[index].clone();
        let current = replicas_of(&replica_set);
        let annotations = replica_set.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let wanted = desired_replicas(deployment);
        let mut changed = set_annotation(annotations, DESIRED_REPLICAS_ANNOTATION, wanted.to_string());
        changed |= set_annotation(
            annotations,
            MAX_REPLICAS_ANNOTATION,
            (wanted + max_surge(deployment)).to_string(),
        );
        let resized = current != replicas;
        if !resized && !changed {
            return false;
        }
        replica_set.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(replicas);
        let name = replica_set.metadata.name.clone().unwrap_or_default();
        let event =
            resized.then(|| format!("Scaled {direction} replica set {name} from {current} to {replicas}"));
        self.update(index, replica_set, event);
        resized
    }

    /// Records a change of a ReplicaSet: one write per ReplicaSet per pass, the last state.
    fn update(&mut self, index: usize, replica_set: ReplicaSet, event: Option<String>) {
        let uid = replica_set.metadata.uid.clone();
        let name = replica_set.metadata.name.clone();
        self.replica_sets[index] = replica_set.clone();
        for write in &mut self.writes {
            match write {
                Write::Create { replica_set: pending, event: pending_event }
                    if pending.metadata.name == name =>
                {
                    // A ReplicaSet made in this pass is created as it ends up.
                    let replicas = replicas_of(&replica_set);
                    let created_name = name.clone().unwrap_or_default();
                    *pending_event = (replicas > 0)
                        .then(|| format!("Scaled up replica set {created_name} from 0 to {replicas}"));
                    *pending = replica_set;
                    return;
                }
                Write::Update { replica_set: pending, event: pending_event }
                    if pending.metadata.uid == uid =>
                {
                    *pending = replica_set;
                    if event.is_some() {
                        *pending_event = event;
                    }
                    return;
                }
                _ => {}
            }
        }
        self.writes.push(Write::Update { replica_set, event });
    }

    /// Upstream's `cleanupDeployment`: deletes the oldest revisions beyond the history limit,
    /// of those scaled down and settled.
    fn clean_up(&mut self) {
        let limit = usize::try_from(revision_history_limit(self.deployment)).unwrap_or(0);
        let mut old: Vec<&ReplicaSet> = self
            .old_indexes()
            .into_iter()
            .map(|index| &self.replica_sets[index])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        if old.len() <= limit {
            return;
        }
        let surplus = old.len() - limit;
        old.sort_by_key(|rs| (revision_of(rs), rs.metadata.creation_timestamp.as_ref().map(|time| time.0)));
        let deletes: Vec<Write> = old
            .into_iter()
            .take(surplus)
            .filter(|rs| {
                let status = rs.status.clone().unwrap_or_default();
                status.replicas == 0
                    && replicas_of(rs) == 0
                    && rs.metadata.generation.unwrap_or(0) <= status.observed_generation.unwrap_or(0)
            })
            .map(|rs| Write::Delete(rs.clone()))
            .collect();
        self.writes.extend(deletes);
    }
}

fn available_of(replica_set: &ReplicaSet) -> i32 {
    replica_set.status.as_ref().and_then(|status| status.available_replicas).unwrap_or(0)
}

fn ready_of(replica_set: &ReplicaSet) -> i32 {
    replica_set.status.as_ref().and_then(|status| status.ready_replicas).unwrap_or(0)
}

fn actual_of(replica_set: &ReplicaSet) -> i32 {
    replica_set.status.as_ref().map_or(0, |status| status.replicas)
}

fn deployment_annotation(deployment: &Deployment, key: &str) -> Option<String> {
    deployment.metadata.annotations.as_ref()?.get(key).cloned()
}
