//! The garbage collector: deletes objects whose owners are gone, and carries out the
//! `orphan` and `foregroundDeletion` finalizers of owners being deleted.
//!
//! Kubernetes' collector (pkg/controller/garbagecollector) keeps an event-driven graph; this
//! one is level-triggered. Each pass takes a snapshot, from watch caches, of the metadata of
//! the objects that take part in ownership (owned, being deleted, or named as an owner),
//! [`decide`] returns the writes that move it toward the desired state, and the
//! runtime (`gc/runtime.rs`) carries them out, each conditioned on the resourceVersion read.
//! A lost race (409) or a stale cache only leaves the work to a later pass.
//!
//! Each ownerReference of an object resolves to one of:
//! - *unresolvable*: its kind is not served, its uid is empty, or it names a namespaced kind
//!   from a cluster-scoped object. It is never removed and counts as a surviving owner.
//! - *absent*: no object of its kind, name and namespace (the dependent's, for a namespaced
//!   kind) has its uid. An owner deleted and recreated under the same name is a different
//!   owner, so the reference is absent.
//! - *orphaning*: the owner is being deleted with the `orphan` finalizer.
//! - *waiting*: the owner is being deleted with `foregroundDeletion`.
//! - *solid*: any other present owner.
//!
//! The rules, as upstream's:
//! 1. A dependent with orphaning owners loses its references to them; nothing else happens to
//!    it in that pass. An orphaning owner without dependents loses its `orphan` finalizer.
//! 2. A dependent with a solid (or unresolvable) owner is kept; its references to absent and
//!    waiting owners are removed.
//! 3. A dependent with only absent and waiting owners is deleted: with Foreground when a
//!    waiting owner needs it gone and it has dependents of its own, so that deep trees go
//!    bottom up; otherwise as its own finalizers ask (`orphan`, `foregroundDeletion`) or in
//!    the Background.
//! 4. A waiting owner without dependents loses its `foregroundDeletion` finalizer. Every
//!    dependent blocks it (upstream only waits for `blockOwnerDeletion` ones).
//! 5. An object being deleted is not deleted again, and keeps its references except those to
//!    orphaning owners.
//!
//! Caches of different kinds lag one another, so an owner missing from the snapshot may exist
//! already: actions that rely on an absent owner name it in `absent_owners`, and the runtime
//! confirms the absence with a live read before writing, as upstream's `isDangling` does.

mod runtime;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::kinds::GroupKind;

pub use runtime::run;

/// The finalizer of an owner deleted with propagationPolicy Orphan.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer of an owner deleted with propagationPolicy Foreground.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// What one pass sees: the served kinds and the metadata of every object of them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every served kind, and whether it is namespaced.
    pub kinds: BTreeMap<GroupKind, Scope>,
    pub objects: Vec<Object>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// The metadata of one object that the collector needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub group_kind: GroupKind,
    /// None for a cluster-scoped object.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub owner_references: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

/// A write the collector decided on. Each is conditioned on `target.resource_version`.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Delete {
        target: Target,
        propagation: Propagation,
        absent_owners: Vec<OwnerKey>,
    },
    /// Replaces `metadata.ownerReferences` and `metadata.finalizers` where `Some`; an empty
    /// list removes the field.
    Patch {
        target: Target,
        owner_references: Option<Vec<OwnerReference>>,
        finalizers: Option<Vec<String>>,
        absent_owners: Vec<OwnerKey>,
    },
}

impl Action {
    pub fn target(&self) -> &Target {
        match self {
            Action::Delete { target, .. } | Action::Patch { target, .. } => target,
        }
    }

    /// The owners whose absence the action relies on, to be confirmed by a live read.
    pub fn absent_owners(&self) -> &[OwnerKey] {
        match self {
            Action::Delete { absent_owners, .. } | Action::Patch { absent_owners, .. } => absent_owners,
        }
    }
}

/// One line for logs: `delete (Foreground)`, `patch ownerReferences=[Deployment/web]`.
impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Delete { propagation, .. } => write!(formatter, "delete ({propagation:?})"),
            Action::Patch { owner_references, finalizers, .. } => {
                formatter.write_str("patch")?;
                if let Some(references) = owner_references {
                    let names: Vec<String> =
                        references.iter().map(|owner| format!("{}/{}", owner.kind, owner.name)).collect();
                    write!(formatter, " ownerReferences={names:?}")?;
                }
                if let Some(finalizers) = finalizers {
                    write!(formatter, " finalizers={finalizers:?}")?;
                }
                Ok(())
            }
        }
    }
}

/// The object a write is for, at the version the decision saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub group_kind: GroupKind,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

/// An owner as a reference names it: where it would be, and the uid it must have.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerKey {
    pub group_kind: GroupKind,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// The writes that bring `snapshot` closer to having no dangling references and no owners
/// stuck on `orphan` or `foregroundDeletion`; at most one per object, in a stable order.
pub fn decide(snapshot: &Snapshot) -> Vec<Action> {
    let graph = Graph::new(snapshot);
    let mut order: Vec<usize> = (0..snapshot.objects.len()).collect();
    order.sort_by_key(|&index| {
        let object = &snapshot.objects[index];
        (&object.group_kind, &object.namespace, &object.name)
    });
    order.into_iter().filter_map(|index| graph.decide_object(index)).collect()
}

/// What one ownerReference points at.
#[derive(Clone, Debug)]
enum Resolution {
    Unresolvable,
    Absent(OwnerKey),
    Present(usize),
}

/// The snapshot with its references resolved both ways.
struct Graph<'a> {
    snapshot: &'a Snapshot,
    /// Per object, how each of its ownerReferences resolves, in order.
    owners: Vec<Vec<Resolution>>,
    /// Per object, the objects with a reference resolving to it.
    dependents: Vec<Vec<usize>>,
}

/// How a present owner bears on its dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerState {
    Solid,
    Orphaning,
    Waiting,
}

impl<'a> Graph<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        let objects = &snapshot.objects;
        let by_name: HashMap<(&GroupKind, Option<&str>, &str), usize> = objects
            .iter()
            .enumerate()
            .map(|(index, object)| {
                ((&object.group_kind, object.namespace.as_deref(), object.name.as_str()), index)
            })
            .collect();
        let mut dependents = vec![Vec::new(); objects.len()];
        let owners: Vec<Vec<Resolution>> = objects
            .iter()
            .enumerate()
            .map(|(index, object)| {
                let resolutions: Vec<Resolution> = object
                    .owner_references
                    .iter()
                    .map(|reference| resolve(snapshot, &by_name, object, reference))
                    .collect();
                for resolution in &resolutions {
                    // An object is not its own dependent (it would wait for itself), and one
                    // naming an owner twice is its dependent once: the last one pushed.
                    if let Resolution::Present(owner) = *resolution
                        && owner != index
                        && dependents[owner].last() != Some(&index)
                    {
                        dependents[owner].push(index);
                    }
                }
                resolutions
            })
            .collect();
        Self { snapshot, owners, dependents }
    }

    fn decide_object(&self, index: usize) -> Option<Action> {
        let object = &self.snapshot.objects[index];
        let orphaning = self.references_where(index, |state| state == Some(OwnerState::Orphaning));
        if object.deleting {
            return self.decide_deleting(index, &orphaning);
        }
        if !orphaning.is_empty() {
            return Some(self.drop_references(index, &orphaning, Vec::new()));
        }
        let absent = self.absent_owners(index);
        let waiting = self.references_where(index, |state| state == Some(OwnerState::Waiting));
        if absent.is_empty() && waiting.is_empty() {
            return None;
        }
        let has_survivor = self.owners[index].iter().enumerate().any(|(reference, resolution)| {
            matches!(resolution, Resolution::Unresolvable)
                || self.owner_state(index, reference) == Some(OwnerState::Solid)
        });
        if has_survivor {
            let mut dropped: Vec<usize> = waiting;
            dropped.extend(self.references_where(index, |state| state.is_none()));
            dropped.sort_unstable();
            return Some(self.drop_references(index, &dropped, absent));
        }
        let propagation = if !waiting.is_empty() && !self.dependents[index].is_empty() {
            Propagation::Foreground
        } else if has_finalizer(object, ORPHAN_FINALIZER) {
            Propagation::Orphan
        } else if has_finalizer(object, FOREGROUND_FINALIZER) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        Some(Action::Delete { target: target(object), propagation, absent_owners: absent })
    }

    /// An object being deleted: it lets go of orphaning owners, and drops its own `orphan`
    /// or `foregroundDeletion` finalizer once it has no dependents.
    fn decide_deleting(&self, index: usize, orphaning: &[usize]) -> Option<Action> {
        let object = &self.snapshot.objects[index];
        let owner_references =
            (!orphaning.is_empty()).then(|| kept_references(&object.owner_references, orphaning));
        let mut finalizers = None;
        if self.dependents[index].is_empty() {
            let kept: Vec<String> = object
                .finalizers
                .iter()
                .filter(|finalizer| *finalizer != ORPHAN_FINALIZER && *finalizer != FOREGROUND_FINALIZER)
                .cloned()
                .collect();
            if kept.len() != object.finalizers.len() {
                finalizers = Some(kept);
            }
        }
        if owner_references.is_none() && finalizers.is_none() {
            return None;
        }
        Some(Action::Patch {
            target: target(object),
            owner_references,
            finalizers,
            absent_owners: Vec::new(),
        })
    }

    fn drop_references(&self, index: usize, dropped: &[usize], absent_owners: Vec<OwnerKey>) -> Action {
        let object = &self.snapshot.objects[index];
        Action::Patch {
            target: target(object),
            owner_references: Some(kept_references(&object.owner_references, dropped)),
            finalizers: None,
            absent_owners,
        }
    }

    /// The state of the owner that reference `reference` of object `index` resolves to;
    /// None when it is absent or unresolvable.
    fn owner_state(&self, index: usize, reference: usize) -> Option<OwnerState> {
        let Resolution::Present(owner) = self.owners[index][reference] else { return None };
        let owner = &self.snapshot.objects[owner];
        Some(if !owner.deleting {
            OwnerState::Solid
        } else if has_finalizer(owner, ORPHAN_FINALIZER) {
            OwnerState::Orphaning
        } else if has_finalizer(owner, FOREGROUND_FINALIZER) {
            OwnerState::Waiting
        } else {
            OwnerState::Solid
        })
    }

    /// The positions of object `index`'s resolvable references whose owner state passes
    /// `select` (None standing for an absent owner).
    fn references_where(&self, index: usize, select: impl Fn(Option<OwnerState>) -> bool) -> Vec<usize> {
        (0..self.owners[index].len())
            .filter(|&reference| !matches!(self.owners[index][reference], Resolution::Unresolvable))
            .filter(|&reference| select(self.owner_state(index, reference)))
            .collect()
    }

    fn absent_owners(&self, index: usize) -> Vec<OwnerKey> {
        let mut keys: Vec<OwnerKey> = self.owners[index]
            .iter()
            .filter_map(|resolution| match resolution {
                Resolution::Absent(key) => Some(key.clone()),
                _ => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

fn resolve(
    snapshot: &Snapshot,
    by_name: &HashMap<(&GroupKind, Option<&str>, &str), usize>,
    dependent: &Object,
    reference: &OwnerReference,
) -> Resolution {
    let group_kind = GroupKind::from_api_version(&reference.api_version, &reference.kind);
    let namespace = match snapshot.kinds.get(&group_kind) {
        None => return Resolution::Unresolvable,
        Some(Scope::Cluster) => None,
        Some(Scope::Namespaced) => match &dependent.namespace {
            Some(namespace) => Some(namespace.as_str()),
            None => return Resolution::Unresolvable,
        },
    };
    if reference.uid.is_empty() {
        return Resolution::Unresolvable;
    }
    match by_name.get(&(&group_kind, namespace, reference.name.as_str())) {
        Some(&owner) if snapshot.objects[owner].uid == reference.uid => Resolution::Present(owner),
        _ => Resolution::Absent(OwnerKey {
            group_kind,
            namespace: namespace.map(str::to_owned),
            name: reference.name.clone(),
            uid: reference.uid.clone(),
        }),
    }
}

fn kept_references(references: &[OwnerReference], dropped: &[usize]) -> Vec<OwnerReference> {
    references
        .iter()
        .enumerate()
        .filter(|(position, _)| !dropped.contains(position))
        .map(|(_, reference)| reference.clone())
        .collect()
}

fn has_finalizer(object: &Object, finalizer: &str) -> bool {
    object.finalizers.iter().any(|present| present == finalizer)
}

fn target(object: &Object) -> Target {
    Target {
        group_kind: object.group_kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        uid: object.uid.clone(),
        resource_version: object.resource_version.clone(),
    }
}
