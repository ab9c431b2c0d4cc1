//! The collector's decisions on small graphs, pass by pass, and a property test that runs
//! `decide` against a model of the API server's deletion semantics until nothing is left to do.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use proptest::prelude::*;

use super::*;

const NAMESPACE: &str = "default";

/// The kinds served in these tests: a few namespaced ones and two cluster-scoped ones.
fn kinds() -> BTreeMap<GroupKind, Scope> {
    [
        ("apps", "Deployment", Scope::Namespaced),
        ("apps", "ReplicaSet", Scope::Namespaced),
        ("", "Pod", Scope::Namespaced),
        ("", "ConfigMap", Scope::Namespaced),
        ("", "Node", Scope::Cluster),
        ("", "Namespace", Scope::Cluster),
    ]
    .into_iter()
    .map(|(group, kind, scope)| (GroupKind::new(group, kind), scope))
    .collect()
}

/// An object of `kind` (`Deployment`, `ReplicaSet`, `Pod`, …) in `default`, its uid
/// `uid-<name>`, no owners, at resourceVersion 1.
fn object(kind: &str, name: &str) -> Object {
    let group_kind = kinds().into_keys().find(|group_kind| group_kind.kind == kind).expect("a test kind");
    let namespace = (kinds()[&group_kind] == Scope::Namespaced).then(|| NAMESPACE.to_owned());
    Object {
        group_kind,
        namespace,
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        resource_version: "1".to_owned(),
        owner_references: Vec::new(),
        finalizers: Vec::new(),
        deleting: false,
    }
}

fn reference_to(owner: &Object) -> OwnerReference {
    let group = &owner.group_kind.group;
    OwnerReference {
        api_version: if group.is_empty() { "v1".to_owned() } else { format!("{group}/v1") },
        kind: owner.group_kind.kind.clone(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owner_key(owner: &Object) -> OwnerKey {
    OwnerKey {
        group_kind: owner.group_kind.clone(),
        namespace: owner.namespace.clone(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    }
}

fn owned_by(mut dependent: Object, owners: &[&Object]) -> Object {
    dependent.owner_references.extend(owners.iter().map(|owner| reference_to(owner)));
    dependent
}

/// `object` after a DELETE that left it in place with `finalizer`.
fn deleting(mut object: Object, finalizer: Option<&str>) -> Object {
    object.deleting = true;
    object.finalizers.extend(finalizer.map(str::to_owned));
    object
}

fn delete(object: &Object, propagation: Propagation, absent: &[&Object]) -> Action {
    Action::Delete {
        target: target(object),
        propagation,
        absent_owners: absent.iter().map(|owner| owner_key(owner)).collect(),
    }
}

fn set_owners(object: &Object, kept: &[&Object], absent: &[&Object]) -> Action {
    Action::Patch {
        target: target(object),
        owner_references: Some(kept.iter().map(|owner| reference_to(owner)).collect()),
        finalizers: None,
        absent_owners: absent.iter().map(|owner| owner_key(owner)).collect(),
    }
}

fn set_finalizers(object: &Object, kept: &[&str]) -> Action {
    Action::Patch {
        target: target(object),
        owner_references: None,
        finalizers: Some(kept.iter().map(|finalizer| (*finalizer).to_owned()).collect()),
        absent_owners: Vec::new(),
    }
}

#[track_caller]
fn check(objects: &[Object], expected: &[Action]) {
    let snapshot = Snapshot { kinds: kinds(), objects: objects.to_vec() };
    assert_eq!(decide(&snapshot), expected);
}

// A ReplicaSet whose Deployment is gone is deleted in the background, naming the Deployment
// as the absent owner to confirm; its pods, whose owner is still there, are left alone.
#[test]
fn orphaned_dependent_is_deleted() {
    let deployment = object("Deployment", "web");
    let replica_set = owned_by(object("ReplicaSet", "web-1"), &[&deployment]);
    let pod = owned_by(object("Pod", "web-1-a"), &[&replica_set]);
    check(
        &[replica_set.clone(), pod.clone()],
        &[delete(&replica_set, Propagation::Background, &[&deployment])],
    );
    // With the Deployment present there is nothing to do.
    check(&[deployment, replica_set, pod], &[]);
}

// A ConfigMap owned by two Deployments, one of them gone, keeps the surviving reference and
// loses the dangling one; it is not deleted.
#[test]
fn dependent_with_one_surviving_owner_keeps_it() {
    let survivor = object("Deployment", "web");
    let gone = object("Deployment", "api");
    let config_map = owned_by(object("ConfigMap", "shared"), &[&gone, &survivor]);
    check(&[survivor.clone(), config_map.clone()], &[set_owners(&config_map, &[&survivor], &[&gone])]);
}

// An owner recreated under the same name has a new uid: references to the old uid are
// dangling, so the old owner's ReplicaSet is deleted and the old uid is what the runtime
// must confirm absent.
#[test]
fn owner_recreated_under_the_same_name_counts_as_absent() {
    let old = object("Deployment", "web");
    let recreated = Object { uid: "uid-web-2".to_owned(), ..old.clone() };
    let replica_set = owned_by(object("ReplicaSet", "web-1"), &[&old]);
    check(&[recreated, replica_set.clone()], &[delete(&replica_set, Propagation::Background, &[&old])]);
}

// The same name and uid in another namespace is not the owner: owners of a namespaced kind
// are looked for in the dependent's namespace only.
#[test]
fn owner_in_another_namespace_counts_as_absent() {
    let owner = Object { namespace: Some("other".to_owned()), ..object("Deployment", "web") };
    let replica_set = owned_by(object("ReplicaSet", "web-1"), &[&owner]);
    let expected_key = OwnerKey { namespace: Some(NAMESPACE.to_owned()), ..owner_key(&owner) };
    check(
        &[owner, replica_set.clone()],
        &[Action::Delete {
            target: target(&replica_set),
            propagation: Propagation::Background,
            absent_owners: vec![expected_key],
        }],
    );
}

// References the collector cannot resolve keep their dependent: an owner kind that is not
// served, an empty uid, a namespaced owner named by a cluster-scoped object. Such a
// reference counts as a survivor, so a dangling reference beside it is only removed.
#[test]
fn unresolvable_references_keep_their_dependent() {
    let mut unserved = owned_by(object("ConfigMap", "a"), &[]);
    unserved.owner_references.push(OwnerReference {
        api_version: "example.com/v1".to_owned(),
        kind: "Widget".to_owned(),
        name: "w".to_owned(),
        uid: "uid-w".to_owned(),
        ..OwnerReference::default()
    });
    let mut no_uid = object("ConfigMap", "b");
    no_uid
        .owner_references
        .push(OwnerReference { uid: String::new(), ..reference_to(&object("Deployment", "x")) });
    let node = owned_by(object("Node", "n1"), &[&object("Deployment", "web")]);
    check(&[unserved.clone(), no_uid, node], &[]);

    let gone = object("Deployment", "gone");
    let mixed = owned_by(unserved.clone(), &[&gone]);
    let expected = Action::Patch {
        target: target(&mixed),
        owner_references: Some(unserved.owner_references.clone()),
        finalizers: None,
        absent_owners: vec![owner_key(&gone)],
    };
    check(&[mixed], &[expected]);
}

// Orphan deletion of a Deployment: the first pass removes its reference from the ReplicaSet
// (keeping the ReplicaSet's other owner) and leaves the Deployment's finalizer; once no
// dependent refers to it, the next pass removes the `orphan` finalizer. The pods are never
// touched.
#[test]
fn orphan_finalizer_flow() {
    let deployment = deleting(object("Deployment", "web"), Some(ORPHAN_FINALIZER));
    let other_owner = object("ConfigMap", "keeper");
    let replica_set = owned_by(object("ReplicaSet", "web-1"), &[&deployment, &other_owner]);
    let pod = owned_by(object("Pod", "web-1-a"), &[&replica_set]);
    let world = [deployment.clone(), other_owner.clone(), replica_set.clone(), pod.clone()];
    check(&world, &[set_owners(&replica_set, &[&other_owner], &[])]);

    let replica_set = owned_by(object("ReplicaSet", "web-1"), &[&other_owner]);
    check(&[deployment.clone(), other_owner, replica_set, pod], &[set_finalizers(&deployment, &[])]);
}

// An orphaning owner is honoured before anything else: a dependent whose other owner is gone
// first only loses the orphaning reference; deciding about the dangling one is left to the
// next pass (where it is deleted, as upstream does).
#[test]
fn orphaning_comes_before_collecting() {
    let orphaning = deleting(object("Deployment", "web"), Some(ORPHAN_FINALIZER));
    let gone = object("Deployment", "api");
    let config_map = owned_by(object("ConfigMap", "shared"), &[&orphaning, &gone]);
    check(&[orphaning.clone(), config_map.clone()], &[set_owners(&config_map, &[&gone], &[])]);
}

// Foreground deletion of a Deployment over a ReplicaSet over two pods, pass by pass:
// 1. the ReplicaSet, which has dependents, is deleted with Foreground;
// 2. the ReplicaSet now waits too: its pod that is not yet being deleted is deleted (in the
//    background: it has no dependents); the one already terminating is left alone;
// 3. with the pods gone the ReplicaSet loses `foregroundDeletion` (the server then deletes it);
// 4. with the ReplicaSet gone the Deployment loses it too.
#[test]
fn foreground_flow_across_two_levels() {
    let deployment = deleting(object("Deployment", "web"), Some(FOREGROUND_FINALIZER));
    let replica_set = owned_by(object("ReplicaSet", "web-1"), &[&deployment]);
    let running = owned_by(object("Pod", "web-1-a"), &[&replica_set]);
    let terminating = deleting(owned_by(object("Pod", "web-1-b"), &[&replica_set]), None);
    let pods = [running.clone(), terminating.clone()];

    let world = [&[deployment.clone(), replica_set.clone()][..], &pods].concat();
    check(&world, &[delete(&replica_set, Propagation::Foreground, &[])]);

    let replica_set = deleting(replica_set, Some(FOREGROUND_FINALIZER));
    let world = [&[deployment.clone(), replica_set.clone()][..], &pods].concat();
    check(&world, &[delete(&running, Propagation::Background, &[])]);

    check(&[deployment.clone(), replica_set.clone()], &[set_finalizers(&replica_set, &[])]);
    check(std::slice::from_ref(&deployment), &[set_finalizers(&deployment, &[])]);
}

// A dependent of a foreground-deleted owner that has another, solid owner is not deleted:
// it only loses its reference to the waiting owner, which then stops waiting for it.
#[test]
fn foreground_spares_dependents_with_another_owner() {
    let waiting = deleting(object("Deployment", "web"), Some(FOREGROUND_FINALIZER));
    let solid = object("Deployment", "api");
    let config_map = owned_by(object("ConfigMap", "shared"), &[&waiting, &solid]);
    check(&[waiting, solid.clone(), config_map.clone()], &[set_owners(&config_map, &[&solid], &[])]);
}

// An object that is being deleted is not deleted again even when its owners are gone; and a
// dependent whose own finalizers ask for orphaning is deleted with that policy.
#[test]
fn deletion_in_progress_and_own_policy() {
    let gone = object("Deployment", "web");
    let terminating = deleting(owned_by(object("Pod", "web-a"), &[&gone]), None);
    check(std::slice::from_ref(&terminating), &[]);

    let mut orphans_by_default = owned_by(object("ReplicaSet", "web-1"), &[&gone]);
    orphans_by_default.finalizers.push(ORPHAN_FINALIZER.to_owned());
    check(
        std::slice::from_ref(&orphans_by_default),
        &[delete(&orphans_by_default, Propagation::Orphan, &[&gone])],
    );
}

/// A model of the API server's side of deletion, enough to run `decide` to its end.
#[derive(Debug)]
struct Model {
    objects: Vec<Object>,
    revision: u64,
}

impl Model {
    fn find(&self, target: &Target) -> Option<usize> {
        self.objects.iter().position(|object| {
            object.group_kind == target.group_kind
                && object.namespace == target.namespace
                && object.name == target.name
                && object.uid == target.uid
                && object.resource_version == target.resource_version
        })
    }

    /// Applies one action as the server would, or not at all when its precondition fails.
    fn apply(&mut self, action: &Action) {
        let Some(index) = self.find(action.target()) else { return };
        self.revision += 1;
        let object = &mut self.objects[index];
        object.resource_version = self.revision.to_string();
        match action {
            Action::Delete { propagation, .. } => {
                let finalizer = match propagation {
                    Propagation::Background => None,
                    Propagation::Foreground => Some(FOREGROUND_FINALIZER),
                    Propagation::Orphan => Some(ORPHAN_FINALIZER),
                };
                if let Some(finalizer) = finalizer
                    && !object.deleting
                    && !has_finalizer(object, finalizer)
                {
                    object.finalizers.push(finalizer.to_owned());
                }
                object.deleting = true;
            }
            Action::Patch { owner_references, finalizers, .. } => {
                if let Some(references) = owner_references {
                    object.owner_references = references.clone();
                }
                if let Some(finalizers) = finalizers {
                    object.finalizers = finalizers.clone();
                }
            }
        }
        if object.deleting && object.finalizers.is_empty() {
            self.objects.remove(index);
        }
    }
}

/// Up to 10 ConfigMaps; each may refer to up to 3 earlier ones (so the graph has no cycles),
/// one time in four by a stale uid, and may start out being deleted with either finalizer.
fn arbitrary_world() -> impl Strategy<Value = Vec<Object>> {
    let spec = (proptest::collection::vec((any::<usize>(), 0u8..4), 0..4), 0u8..4);
    proptest::collection::vec(spec, 1..10).prop_map(|specs| {
        let mut objects: Vec<Object> = Vec::new();
        for (index, (references, state)) in specs.into_iter().enumerate() {
            let mut object = object("ConfigMap", &format!("c{index}"));
            for (owner, stale) in references.into_iter().filter(|_| index > 0) {
                let mut reference = reference_to(&objects[owner % index]);
                if stale == 0 {
                    reference.uid.push_str("-old");
                }
                object.owner_references.push(reference);
            }
            object = match state {
                1 => deleting(object, Some(ORPHAN_FINALIZER)),
                2 => deleting(object, Some(FOREGROUND_FINALIZER)),
                _ => object,
            };
            objects.push(object);
        }
        objects
    })
}

proptest! {
    // Runs decide and the model in turns from an arbitrary acyclic world. Checks at every pass
    // that nothing with a solid owner is deleted, that no owner loses its `orphan` or
    // `foregroundDeletion` finalizer while something still refers to it, and that objects
    // without owners that were not being deleted never disappear; and that within a bounded number of passes decide has
    // nothing left to do, no object is left being deleted, and no reference dangles.
    #[test]
    fn passes_converge_and_keep_rooted_objects(world in arbitrary_world()) {
        let roots: Vec<String> = world
            .iter()
            .filter(|object| object.owner_references.is_empty() && !object.deleting)
            .map(|object| object.uid.clone())
            .collect();
        let mut model = Model { objects: world, revision: 1 };
        let passes_max = 4 * model.objects.len() + 4;
        let mut settled = false;
        for _ in 0..passes_max {
            let snapshot = Snapshot { kinds: kinds(), objects: model.objects.clone() };
            let actions = decide(&snapshot);
            if actions.is_empty() {
                settled = true;
                break;
            }
            for action in &actions {
                match action {
                    Action::Delete { target, .. } => {
                        let dependent = snapshot.objects.iter().find(|o| o.uid == target.uid).expect("target");
                        let owners_alive = dependent.owner_references.iter().any(|reference| {
                            snapshot.objects.iter().any(|o| o.uid == reference.uid && !o.deleting)
                        });
                        prop_assert!(!owners_alive, "{target:?} has a solid owner");
                    }
                    Action::Patch { target, finalizers: Some(_), .. } => {
                        let has_dependents = snapshot.objects.iter().any(|object| {
                            object.owner_references.iter().any(|reference| reference.uid == target.uid)
                        });
                        prop_assert!(!has_dependents, "{target:?} lets go of its dependents early");
                    }
                    Action::Patch { .. } => {}
                }
                model.apply(action);
            }
            for root in &roots {
                prop_assert!(model.objects.iter().any(|object| &object.uid == root), "root {root} deleted");
            }
        }
        prop_assert!(settled, "no fixed point after {passes_max} passes: {:?}", model.objects);
        for object in &model.objects {
            prop_assert!(!object.deleting, "{} left being deleted", object.name);
            for reference in &object.owner_references {
                prop_assert!(model.objects.iter().any(|o| o.uid == reference.uid), "{} dangles", object.name);
            }
        }
    }
}

// An object that names itself as its owner is not its own dependent: deleted in the
// foreground, it does not wait for itself.
#[test]
fn self_reference_does_not_block_foreground_deletion() {
    let config_map = object("ConfigMap", "narcissus");
    let config_map = deleting(owned_by(config_map.clone(), &[&config_map]), Some(FOREGROUND_FINALIZER));
    check(std::slice::from_ref(&config_map), &[set_finalizers(&config_map, &[])]);
}
