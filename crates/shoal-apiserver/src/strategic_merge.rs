//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`), as kubectl sends it.
//!
//! A strategic merge patch is a JSON merge patch in which some lists merge element by element
//! instead of being replaced, plus a few `$` directives. Which lists merge, and by which key, is
//! declared upstream by Go struct tags (`patchStrategy:"merge" patchMergeKey:"name"`) that the
//! OpenAPI schemas of k8s-openapi do not carry, so [`FIELD_STRATEGIES`] keeps them by schema
//! definition name and field, and the patch finds a field's definition by walking the schemars
//! schema of the patched type alongside the document (`crate::schema`).
//!
//! The semantics are those of upstream's server side, `StrategicMergeMapPatch` in
//! `k8s.io/apimachinery/pkg/util/strategicpatch` (release-1.33), including its ordering rules
//! for merged lists. Where upstream leaves directives or nulls inside a value that lands where
//! the original had nothing, or inside a list that replaces another, this module drops them: the
//! result must decode as the typed object.

use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::schema::{Node, Schemas};

/// Applies a strategic merge patch to `original`, using K's schema for list merge keys and strategies.
///
/// Fields that K's schema does not know merge as plain maps and replace as lists, so a type
/// without a schema (`serde_json::Value`) gets a JSON merge patch plus the `$` directives.
pub fn apply<K: JsonSchema>(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::PatchNotAnObject);
    };
    let Value::Object(original) = original else {
        return Err(PatchError::OriginalNotAnObject);
    };
    let schemas = Schemas::of::<K>();
    let merger = Merger { schemas: &schemas };
    merger.merge_map(original.clone(), patch, schemas.root(), &Path::ROOT).map(Value::Object)
}

/// Why a patch could not be applied. All but `OriginalNotAnObject` are the client's fault (a 400
/// or 422 for the API layer); that one means the caller passed something other than a stored
/// object, and is an error rather than a panic because `apply` takes any `Value`.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("a strategic merge patch must be a JSON object")]
    PatchNotAnObject,
    #[error("the object to patch is not a JSON object")]
    OriginalNotAnObject,
    #[error("{path}: unknown $patch directive {directive}, expected \"replace\" or \"delete\"")]
    UnknownDirective { path: String, directive: Value },
    #[error("{path}: directive {key} does not name a field after its '/'")]
    MalformedDirectiveKey { path: String, key: String },
    #[error("{path} must be a list")]
    NotAList { path: String },
    #[error("{path}: elements of a list merged by key must be objects")]
    ListElementNotObject { path: String },
    #[error("{path}: elements of a merged list of values must not be objects or lists")]
    ListElementNotScalar { path: String },
    #[error("{path}: list element has no merge key {merge_key:?}")]
    MissingMergeKey { path: String, merge_key: &'static str },
    #[error("{path}: field {field:?} is patched but missing from $retainKeys")]
    FieldNotRetained { path: String, field: String },
    #[error("{path}: the patch lists elements in another order than $setElementOrder")]
    OrderMismatch { path: String },
    #[error("the patch nests deeper than {max} levels")]
    TooDeep { max: usize },
}

/// Deepest nesting of maps and lists a patch may have. serde_json refuses to parse deeper
/// documents (128) anyway; the limit keeps the recursion well inside a 2 MiB thread stack when
/// a caller builds a `Value` by other means.
const PATCH_DEPTH_MAX: usize = 128;

const PATCH: &str = "$patch";
const REPLACE: &str = "replace";
const DELETE: &str = "delete";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// How a field's value combines with the patch's, from upstream's `patchStrategy` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// No tag: maps merge, lists are replaced whole.
    Default,
    /// `patchStrategy:"merge" patchMergeKey:"…"`: list elements merge by this field.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of strings: the patch adds to the set.
    MergeScalars,
    /// `patchStrategy:"replace"` on a struct: the patch replaces the map whole.
    Replace,
}

/// The `patchStrategy` tags of Kubernetes 1.33 (k8s.io/api and k8s.io/apimachinery
/// `release-1.33`, every tag outside alpha and beta packages, plus kube-aggregator's), as
/// (schema definition, field, strategy). A field not listed keeps [`Strategy::Default`]:
/// notably `NodeSpec.taints`, `PodSpec.tolerations`, `Container.resizePolicy` and
/// `PodStatus.containerStatuses` carry no tag, so a patch replaces them whole.
///
/// `retainKeys` tags (`DeploymentSpec.strategy`, `PodSpec.volumes`, …) are left out on purpose:
/// upstream servers honour a `$retainKeys` directive wherever a patch carries one, so that tag
/// only tells clients when to send it.
const FIELD_STRATEGIES: &[(&str, &str, Strategy)] = {
    use Strategy::{MergeByKey, MergeScalars, Replace};
    &[
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", MergeScalars),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", MergeByKey("uid")),
        ("io.k8s.api.core.v1.PodSpec", "containers", MergeByKey("name")),
        ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", MergeByKey("name")),
        ("io.k8s.api.core.v1.PodSpec", "hostAliases", MergeByKey("ip")),
        ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", MergeByKey("name")),
        ("io.k8s.api.core.v1.PodSpec", "initContainers", MergeByKey("name")),
        ("io.k8s.api.core.v1.PodSpec", "resourceClaims", MergeByKey("name")),
        ("io.k8s.api.core.v1.PodSpec", "schedulingGates", MergeByKey("name")),
        ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", MergeByKey("topologyKey")),
        ("io.k8s.api.core.v1.PodSpec", "volumes", MergeByKey("name")),
        ("io.k8s.api.core.v1.Container", "env", MergeByKey("name")),
        ("io.k8s.api.core.v1.Container", "ports", MergeByKey("containerPort")),
        ("io.k8s.api.core.v1.Container", "volumeDevices", MergeByKey("devicePath")),
        ("io.k8s.api.core.v1.Container", "volumeMounts", MergeByKey("mountPath")),
        ("io.k8s.api.core.v1.EphemeralContainer", "env", MergeByKey("name")),
        ("io.k8s.api.core.v1.EphemeralContainer", "ports", MergeByKey("containerPort")),
        ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", MergeByKey("devicePath")),
        ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", MergeByKey("mountPath")),
        ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", MergeByKey("name")),
        ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", MergeByKey("mountPath")),
        ("io.k8s.api.core.v1.PodStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.core.v1.PodStatus", "hostIPs", MergeByKey("ip")),
        ("io.k8s.api.core.v1.PodStatus", "podIPs", MergeByKey("ip")),
        ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", MergeByKey("name")),
        ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", MergeScalars),
        ("io.k8s.api.core.v1.NodeStatus", "addresses", MergeByKey("type")),
        ("io.k8s.api.core.v1.NodeStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.core.v1.ServiceSpec", "ports", MergeByKey("port")),
        ("io.k8s.api.core.v1.ServiceStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.core.v1.ServiceAccount", "secrets", MergeByKey("name")),
        ("io.k8s.api.core.v1.NamespaceStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.core.v1.ComponentStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.batch.v1.JobStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.flowcontrol.v1.FlowSchemaStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.networking.v1.ServiceCIDRStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", Replace),
        ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", MergeByKey("type")),
        ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", MergeByKey("name")),
        ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", MergeByKey("name")),
        ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", MergeByKey("name")),
        (
            "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec",
            "matchConditions",
            MergeByKey("name"),
        ),
        (
            "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec",
            "variables",
            MergeByKey("name"),
        ),
        ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", MergeByKey("name")),
        (
            "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
            "webhooks",
            MergeByKey("name"),
        ),
        (
            "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus",
            "conditions",
            MergeByKey("type"),
        ),
    ]
};

/// The patch strategy of `field` in the object at `node`.
fn strategy(node: Node<'_>, field: &str) -> Strategy {
    let Some(definition) = node.definition else { return Strategy::Default };
    FIELD_STRATEGIES
        .iter()
        .find(|(name, name_field, _)| *name == definition && *name_field == field)
        .map_or(Strategy::Default, |(_, _, strategy)| *strategy)
}

/// Where in the document the merge is, for error messages and the depth limit.
struct Path<'p> {
    parent: Option<&'p Path<'p>>,
    /// `None` for a list element.
    field: Option<&'p str>,
    depth: usize,
}

impl Path<'static> {
    const ROOT: Path<'static> = Path { parent: None, field: None, depth: 0 };
}

impl Path<'_> {
    fn child<'c>(&'c self, field: &'c str) -> Path<'c> {
        Path { parent: Some(self), field: Some(field), depth: self.depth + 1 }
    }

    fn element(&self) -> Path<'_> {
        Path { parent: Some(self), field: None, depth: self.depth + 1 }
    }

    fn check_depth(&self) -> Result<(), PatchError> {
        if self.depth > PATCH_DEPTH_MAX {
            return Err(PatchError::TooDeep { max: PATCH_DEPTH_MAX });
        }
        Ok(())
    }

    fn render(&self) -> String {
        let mut fields = Vec::new();
        let mut at = Some(self);
        while let Some(path) = at {
            fields.extend(path.field);
            at = path.parent;
        }
        if fields.is_empty() {
            return "(root)".to_owned();
        }
        fields.reverse();
        fields.join(".")
    }
}

/// What identifies a list element when lists are merged and ordered.
#[derive(Clone, Copy)]
enum Identity {
    MergeKey(&'static str),
    WholeValue,
}

impl Identity {
    fn of<'v>(self, element: &'v Value, path: &Path<'_>) -> Result<&'v Value, PatchError> {
        let Identity::MergeKey(merge_key) = self else { return Ok(element) };
        let Value::Object(fields) = element else {
            return Err(PatchError::ListElementNotObject { path: path.render() });
        };
        fields.get(merge_key).ok_or_else(|| PatchError::MissingMergeKey { path: path.render(), merge_key })
    }

    fn of_all(self, elements: &[Value], path: &Path<'_>) -> Result<Vec<Value>, PatchError> {
        elements.iter().map(|element| self.of(element, path).cloned()).collect()
    }
}

struct Merger<'s> {
    schemas: &'s Schemas,
}

impl<'s> Merger<'s> {
    fn merge_map(
        &self,
        original: Map<String, Value>,
        patch: &Map<String, Value>,
        node: Node<'s>,
        path: &Path<'_>,
    ) -> Result<Map<String, Value>, PatchError> {
        path.check_depth()?;
        match patch.get(PATCH) {
            None => self.merge_fields(original, patch, node, path),
            Some(directive) if directive == REPLACE => self.merge_fields(Map::new(), patch, node, path),
            // Upstream empties the map rather than removing it from its parent.
            Some(directive) if directive == DELETE => Ok(Map::new()),
            Some(directive) => {
                Err(PatchError::UnknownDirective { path: path.render(), directive: directive.clone() })
            }
        }
    }

    /// Merges every field of `patch` but `$patch`, in upstream's order: `$retainKeys` first, then
    /// each `$setElementOrder` list with the list it orders, then the other fields, and the
    /// `$deleteFromPrimitiveList` lists last (upstream leaves their order to Go's map iteration).
    fn merge_fields(
        &self,
        mut original: Map<String, Value>,
        patch: &Map<String, Value>,
        node: Node<'s>,
        path: &Path<'_>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(retained) = patch.get(RETAIN_KEYS) {
            retain_keys(&mut original, patch, retained, path)?;
        }
        let mut ordered = Vec::new();
        for (key, order) in patch.iter().filter(|(key, _)| key.starts_with(SET_ELEMENT_ORDER)) {
            let field = directive_field(key, SET_ELEMENT_ORDER, path)?;
            let Value::Array(order) = order else {
                return Err(PatchError::NotAList { path: path.child(key).render() });
            };
            self.set_element_order(&mut original, field, order, patch.get(field), node, path)?;
            ordered.push(field);
        }
        for (key, value) in patch {
            if !is_directive(key) && !ordered.contains(&key.as_str()) {
                self.merge_field(&mut original, key, value, node, path)?;
            }
        }
        for (key, doomed) in patch.iter().filter(|(key, _)| key.starts_with(DELETE_FROM_PRIMITIVE_LIST)) {
            let field = directive_field(key, DELETE_FROM_PRIMITIVE_LIST, path)?;
            let Value::Array(doomed) = doomed else {
                return Err(PatchError::NotAList { path: path.child(key).render() });
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|element| !doomed.iter().any(|gone| same_value(gone, element)));
            }
        }
        Ok(original)
    }

    fn merge_field(
        &self,
        original: &mut Map<String, Value>,
        key: &str,
        patch: &Value,
        node: Node<'s>,
        path: &Path<'_>,
    ) -> Result<(), PatchError> {
        if patch.is_null() {
            original.remove(key);
            return Ok(());
        }
        let path = path.child(key);
        let child = self.schemas.field(node, key);
        let strategy = strategy(node, key);
        let merged = match (original.get_mut(key).map(Value::take), patch) {
            (Some(Value::Object(existing)), Value::Object(fields)) if strategy != Strategy::Replace => {
                Some(Value::Object(self.merge_map(existing, fields, child, &path)?))
            }
            (Some(Value::Array(existing)), Value::Array(elements)) => {
                let items = self.schemas.items(child);
                Some(Value::Array(self.merge_list(existing, elements, strategy, items, &path)?))
            }
            (_, patch) => self.fresh_value(patch, child, strategy, &path)?,
        };
        match merged {
            Some(value) => original.insert(key.to_owned(), value),
            None => original.remove(key),
        };
        Ok(())
    }

    /// The value a patch value becomes where the original has none (or one of another type):
    /// the patch merged into nothing, so that nulls and directives do not reach the result.
    fn fresh_value(
        &self,
        patch: &Value,
        node: Node<'s>,
        strategy: Strategy,
        path: &Path<'_>,
    ) -> Result<Option<Value>, PatchError> {
        Ok(match patch {
            Value::Null => None,
            Value::Object(fields) if fields.get(PATCH).is_some_and(|directive| directive == DELETE) => None,
            Value::Object(fields) => Some(Value::Object(self.merge_map(Map::new(), fields, node, path)?)),
            Value::Array(elements) => {
                let items = self.schemas.items(node);
                Some(Value::Array(self.merge_list(Vec::new(), elements, strategy, items, path)?))
            }
            scalar => Some(scalar.clone()),
        })
    }

    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: &[Value],
        strategy: Strategy,
        items: Node<'s>,
        path: &Path<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        match strategy {
            Strategy::MergeByKey(merge_key) => self.merge_keyed_list(original, patch, merge_key, items, path),
            Strategy::MergeScalars => merge_scalar_list(original, patch, path),
            Strategy::Default | Strategy::Replace => self.replace_list(patch, items, path),
        }
    }

    /// A list that replaces the original whole; elements carrying `$patch` are dropped.
    fn replace_list(
        &self,
        patch: &[Value],
        items: Node<'s>,
        path: &Path<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        path.check_depth()?;
        let element_path = path.element();
        let mut list = Vec::with_capacity(patch.len());
        for element in patch {
            match element {
                Value::Object(fields) if fields.contains_key(PATCH) => {}
                Value::Object(fields) => {
                    list.push(Value::Object(self.merge_map(Map::new(), fields, items, &element_path)?));
                }
                Value::Array(inner) => {
                    let inner_items = self.schemas.items(items);
                    list.push(Value::Array(self.replace_list(inner, inner_items, &element_path)?));
                }
                scalar => list.push(scalar.clone()),
            }
        }
        Ok(list)
    }

    /// Merges a list of objects by `merge_key`: `{"$patch": "delete"}` elements remove their
    /// match, a `{"$patch": "replace"}` element makes the rest of the patch the whole list, and
    /// other elements merge into their match or are appended; then the list is ordered.
    fn merge_keyed_list(
        &self,
        original: Vec<Value>,
        patch: &[Value],
        merge_key: &'static str,
        items: Node<'s>,
        path: &Path<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let identity = Identity::MergeKey(merge_key);
        let element_path = path.element();
        let mut list = original;
        let mut patch_elements = Vec::with_capacity(patch.len());
        let mut replace = false;
        for element in patch {
            let Value::Object(fields) = element else {
                return Err(PatchError::ListElementNotObject { path: path.render() });
            };
            match fields.get(PATCH) {
                None => patch_elements.push(fields),
                Some(directive) if directive == DELETE => {
                    let key = identity.of(element, path)?;
                    list.retain(|kept| !kept.get(merge_key).is_some_and(|kept| same_value(kept, key)));
                }
                Some(directive) if directive == REPLACE => replace = true,
                Some(directive) => {
                    return Err(PatchError::UnknownDirective {
                        path: path.render(),
                        directive: directive.clone(),
                    });
                }
            }
        }
        if replace {
            list = patch_elements
                .drain(..)
                .map(|fields| self.merge_map(Map::new(), fields, items, &element_path).map(Value::Object))
                .collect::<Result<_, _>>()?;
        }
        let server_order = identity.of_all(&list, path)?;
        let mut patch_order = Vec::with_capacity(patch_elements.len());
        for fields in patch_elements {
            let key = fields
                .get(merge_key)
                .ok_or_else(|| PatchError::MissingMergeKey { path: path.render(), merge_key })?;
            patch_order.push(key.clone());
            let matching = list.iter_mut().find_map(|existing| match existing {
                Value::Object(existing) if existing.get(merge_key).is_some_and(|k| same_value(k, key)) => {
                    Some(existing)
                }
                _ => None,
            });
            match matching {
                Some(existing) => {
                    *existing = self.merge_map(std::mem::take(existing), fields, items, &element_path)?;
                }
                None => list.push(Value::Object(self.merge_map(Map::new(), fields, items, &element_path)?)),
            }
        }
        normalize_order(list, &patch_order, &server_order, identity, path)
    }

    /// Applies `$setElementOrder/<field>`: merges the field's list with the patch's, if any, then
    /// orders the result as `order` says, server-only elements keeping their place among them.
    fn set_element_order(
        &self,
        original: &mut Map<String, Value>,
        field: &str,
        order: &[Value],
        patch_list: Option<&Value>,
        node: Node<'s>,
        path: &Path<'_>,
    ) -> Result<(), PatchError> {
        let field_path = path.child(field);
        let strategy = strategy(node, field);
        let identity = match strategy {
            Strategy::MergeByKey(merge_key) => Identity::MergeKey(merge_key),
            _ => Identity::WholeValue,
        };
        let patch_list = match patch_list {
            None => None,
            Some(Value::Array(list)) => Some(list.as_slice()),
            Some(_) => return Err(PatchError::NotAList { path: field_path.render() }),
        };
        if let Some(patch_list) = patch_list {
            check_order(patch_list, order, identity, &field_path)?;
        }
        let original_list = match original.get_mut(field) {
            Some(Value::Array(list)) => Some(std::mem::take(list)),
            _ => None,
        };
        let server_order = match &original_list {
            Some(list) => identity.of_all(list, &field_path)?,
            None => Vec::new(),
        };
        let merged = match (original_list, patch_list) {
            (Some(list), None) => list,
            (list, Some(patch_list)) => {
                let items = self.schemas.items(self.schemas.field(node, field));
                self.merge_list(list.unwrap_or_default(), patch_list, strategy, items, &field_path)?
            }
            (None, None) => return Ok(()),
        };
        let order = identity.of_all(order, &field_path)?;
        let ordered = normalize_order(merged, &order, &server_order, identity, &field_path)?;
        original.insert(field.to_owned(), Value::Array(ordered));
        Ok(())
    }
}

/// Unions a list of scalars with the patch's, then orders it.
fn merge_scalar_list(
    original: Vec<Value>,
    patch: &[Value],
    path: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if original.iter().chain(patch).any(|element| element.is_object() || element.is_array()) {
        return Err(PatchError::ListElementNotScalar { path: path.render() });
    }
    let server_order = original.clone();
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for element in original.into_iter().chain(patch.iter().cloned()) {
        if !merged.iter().any(|kept| same_value(kept, &element)) {
            merged.push(element);
        }
    }
    normalize_order(merged, patch, &server_order, Identity::WholeValue, path)
}

/// Orders a merged list as upstream's `normalizeElementOrder` does: the elements the patch
/// names go in the patch's order, the others keep the original's, and the two sequences are
/// interleaved so that a server-only element stays before a patched one it preceded in the
/// original. Orders are given as identities (merge keys, or whole scalars).
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    identity: Identity,
    path: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let position = |order: &[Value], id: &Value| order.iter().position(|other| same_value(other, id));
    let mut patched = Vec::new();
    let mut server_only = Vec::new();
    for element in merged {
        let id = identity.of(&element, path)?;
        let in_server = position(server_order, id);
        match position(patch_order, id) {
            Some(in_patch) => patched.push((in_patch, in_server, element)),
            None => server_only.push((in_server, element)),
        }
    }
    // Stable sorts, as upstream's; elements missing from an order go after those in it.
    patched.sort_by_key(|(in_patch, _, _)| *in_patch);
    server_only.sort_by_key(|(in_server, _)| in_server.unwrap_or(usize::MAX));

    let mut ordered = Vec::with_capacity(patched.len() + server_only.len());
    let mut server_only = server_only.into_iter().peekable();
    let mut patched = patched.into_iter().peekable();
    loop {
        match (server_only.peek(), patched.peek()) {
            (Some((Some(left), _)), Some((_, Some(right), _))) if left < right => {
                ordered.extend(server_only.next().map(|(_, element)| element));
            }
            (_, Some(_)) => ordered.extend(patched.next().map(|(_, _, element)| element)),
            (Some(_), None) => ordered.extend(server_only.next().map(|(_, element)| element)),
            (None, None) => return Ok(ordered),
        }
    }
}

/// Checks that the patch's list names its elements in the order of `$setElementOrder`, skipping
/// directive elements, as upstream's `validatePatchWithSetOrderList`.
fn check_order(
    patch: &[Value],
    order: &[Value],
    identity: Identity,
    path: &Path<'_>,
) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut order = order.iter();
    for element in patch {
        if element.get(PATCH).is_some() {
            continue;
        }
        let id = identity.of(element, path)?;
        loop {
            let Some(ordered) = order.next() else {
                return Err(PatchError::OrderMismatch { path: path.render() });
            };
            if same_value(identity.of(ordered, path)?, id) {
                break;
            }
        }
    }
    Ok(())
}

/// Applies `$retainKeys`: the original keeps only the listed fields, and the patch may set no
/// other field.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retained: &Value,
    path: &Path<'_>,
) -> Result<(), PatchError> {
    let Value::Array(retained) = retained else {
        return Err(PatchError::NotAList { path: path.child(RETAIN_KEYS).render() });
    };
    let is_retained = |key: &str| retained.iter().any(|retained| retained.as_str() == Some(key));
    for (key, value) in patch {
        if !value.is_null() && !is_directive(key) && !is_retained(key) {
            return Err(PatchError::FieldNotRetained { path: path.render(), field: key.clone() });
        }
    }
    original.retain(|key, _| is_retained(key));
    Ok(())
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// The field a `<prefix>/<field>` directive key is about.
fn directive_field<'k>(key: &'k str, prefix: &str, path: &Path<'_>) -> Result<&'k str, PatchError> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|field| !field.is_empty())
        .ok_or_else(|| PatchError::MalformedDirectiveKey { path: path.render(), key: key.to_owned() })
}

/// JSON equality with numbers compared by value, as upstream's decoder makes `80` and `80.0`
/// the same merge key.
fn same_value(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => left == right || left.as_f64() == right.as_f64(),
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingWebhookConfiguration,
    };
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{
        ComponentStatus, Namespace, Node as KubeNode, PersistentVolumeClaim, Pod, ReplicationController,
        Service, ServiceAccount,
    };
    use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
    use k8s_openapi::api::networking::v1::ServiceCIDR;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::storage::v1::CSINode;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check<K: JsonSchema>(original: Value, patch: Value, expected: Value) {
        match apply::<K>(&original, &patch) {
            Ok(patched) => assert_eq!(patched, expected, "patch: {patch}"),
            Err(error) => panic!("patch {patch} failed: {error}"),
        }
    }

    #[track_caller]
    fn check_error<K: JsonSchema>(original: Value, patch: Value, expected: &str) {
        match apply::<K>(&original, &patch) {
            Ok(patched) => panic!("patch {patch} applied, giving {patched}"),
            Err(error) => assert_eq!(error.to_string(), expected, "patch: {patch}"),
        }
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        // kubectl uncordon sends `unschedulable: null`; labels merge key by key.
        check::<KubeNode>(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"unschedulable": true, "podCIDR": "10.0.0.0/24"}}),
            json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"unschedulable": null}}),
            json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"podCIDR": "10.0.0.0/24"}}),
        );
        // A null for a field the original lacks changes nothing.
        check::<KubeNode>(json!({"spec": {}}), json!({"spec": {"unschedulable": null}}), json!({"spec": {}}));
    }

    #[test]
    fn set_element_order_reorders_containers() {
        // kubectl apply of a deployment whose containers swapped places and one image changed:
        // the patched container merges, then both take the order of $setElementOrder.
        check::<Deployment>(
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "img:v1"}, {"name": "side", "image": "side:v1"}]}}}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "c"}],
                "containers": [{"image": "img:v2", "name": "c"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "side", "image": "side:v1"}, {"name": "c", "image": "img:v2"}]}}}}),
        );
    }

    #[test]
    fn env_merges_by_name() {
        let pod = json!({"spec": {"containers": [{"name": "c", "env": [
            {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}});
        // `kubectl set env`: B changes in place, C is new and goes after B, the last patched one.
        check::<Pod>(
            pod.clone(),
            json!({"spec": {"containers": [{"name": "c", "env": [
                {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "env": [
                {"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}),
        );
        // As upstream, an element new to the list goes before the server-only elements it is
        // not ordered against.
        check::<Pod>(
            pod.clone(),
            json!({"spec": {"containers": [{"name": "c", "env": [{"name": "C", "value": "4"}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "env": [
                {"name": "C", "value": "4"}, {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}),
        );
        // kubectl apply removing B: a delete directive under nested $setElementOrder lists.
        check::<Pod>(
            pod,
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}], "containers": [{
                "$setElementOrder/env": [{"name": "A"}],
                "env": [{"$patch": "delete", "name": "B"}],
                "name": "c"}]}}),
            json!({"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}}),
        );
    }

    #[test]
    fn null_list_field_deletes_it() {
        // `"ports": null` inside a merged container removes the container's ports.
        check::<Pod>(
            json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "ports": null}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
        );
    }

    #[test]
    fn patch_delete_removes_list_element() {
        // A `$patch: delete` element removes the element with its merge key, by hand or as
        // kubectl apply sends it.
        let pod =
            json!({"spec": {"containers": [{"name": "c", "image": "i"}, {"name": "side", "image": "s"}]}});
        let expected = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
        check::<Pod>(
            pod.clone(),
            json!({"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}),
            expected.clone(),
        );
        check::<Pod>(
            pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "c"}],
                "containers": [{"$patch": "delete", "name": "side"}]}}),
            expected,
        );
    }

    #[test]
    fn retain_keys_switches_deployment_strategy() {
        // Switching RollingUpdate to Recreate: $retainKeys clears rollingUpdate, with or without
        // the explicit null kubectl apply adds.
        let deployment = json!({"spec": {"replicas": 1, "strategy": {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        let expected = json!({"spec": {"replicas": 1, "strategy": {"type": "Recreate"}}});
        check::<Deployment>(
            deployment.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            expected.clone(),
        );
        check::<Deployment>(
            deployment,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
            expected,
        );
    }

    #[test]
    fn retain_keys_switches_volume_source() {
        // kubectl apply turning an emptyDir volume into a configMap one: $retainKeys inside the
        // merged list element drops the old source.
        check::<Deployment>(
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/volumes": [{"name": "v"}],
                "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "v"}]}}}}),
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]}}}}),
        );
    }

    #[test]
    fn finalizers_are_a_set() {
        let pod = json!({"metadata": {"finalizers": ["a", "b"]}});
        // A patch adds to the set, keeping the original's order and dropping duplicates.
        check::<Pod>(
            pod.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        );
        // A controller removing its finalizer.
        check::<Pod>(
            pod.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": ["b"]}}),
        );
        // kubectl apply replacing a by c: addition, deletion and order in one patch.
        check::<Pod>(
            pod,
            json!({"metadata": {
                "$setElementOrder/finalizers": ["b", "c"],
                "$deleteFromPrimitiveList/finalizers": ["a"],
                "finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        // Deleting from a list the object lacks adds nothing.
        check::<Pod>(
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            json!({"metadata": {}}),
        );
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        // Taints, tolerations, resizePolicy and args carry no patchStrategy upstream.
        check::<KubeNode>(
            json!({"spec": {"taints": [{"key": "old", "effect": "NoExecute"}]}}),
            json!({"spec": {"taints": [{"effect": "NoSchedule", "key": "k", "value": "v"}]}}),
            json!({"spec": {"taints": [{"effect": "NoSchedule", "key": "k", "value": "v"}]}}),
        );
        check::<Pod>(
            json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "c", "args": ["x", "y"],
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["z"],
                "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["z"],
                "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]}}),
        );
    }

    #[test]
    fn merge_keys_from_the_table() {
        // One merge per kind of key: uid, port, type, ip, topologyKey; the patched element
        // merges into its match and the others stay.
        check::<Pod>(
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "ReplicaSet", "name": "rs"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}]}}),
            json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "kind": "ReplicaSet", "name": "rs", "controller": true}]}}),
        );
        check::<Service>(
            json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}),
            json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}),
            json!({"spec": {"ports": [
                {"port": 80, "name": "http"}, {"port": 443, "name": "https", "targetPort": 8443}]}}),
        );
        check::<KubeNode>(
            json!({"status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}}),
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}),
            json!({"status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}]}}),
        );
        check::<Pod>(
            json!({"spec": {
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]}}),
            json!({"spec": {
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]}}),
            json!({"spec": {
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule"}]}}),
        );
        check::<Deployment>(
            json!({"status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]}}),
        );
    }

    #[test]
    fn kubelet_status_patch() {
        // The kubelet's pod status patch: new conditions merge by type in $setElementOrder's
        // order, containerStatuses (no strategy) is replaced.
        check::<Pod>(
            json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": false}, {"name": "d", "ready": false}]}}),
            json!({"status": {
                "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}, {"type": "PodScheduled"}],
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "c", "ready": true}],
                "phase": "Running"}}),
            json!({"status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"},
                    {"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true}]}}),
        );
    }

    #[test]
    fn ordering_follows_upstream_cases() {
        // Upstream's own ordering cases (patch_test.go, current + threeWay -> result), with
        // `mergingList` played by a container's env and `mergingIntList` by finalizers.
        let env = |names: &[&str]| json!(names.iter().map(|name| json!({"name": name})).collect::<Vec<_>>());
        let pod_with_env = |env: Value| json!({"spec": {"containers": [{"name": "c", "env": env}]}});
        let env_cases = [
            // add an item in a list and preserve order
            (
                env(&["1", "2"]),
                json!({"$setElementOrder/env": env(&["3", "1", "2"]), "env": env(&["3"])}),
                env(&["3", "1", "2"]),
            ),
            // add multiple items in a list and preserve order
            (
                env(&["1", "2"]),
                json!({"$setElementOrder/env": env(&["1", "4", "2", "3"]), "env": env(&["4", "3"])}),
                env(&["1", "4", "2", "3"]),
            ),
            // set elements order in a list with server-only items (1, 2 and 3)
            (
                env(&["1", "3", "4", "2", "9"]),
                json!({"$setElementOrder/env": env(&["4", "2", "3", "1"])}),
                env(&["4", "2", "3", "1", "9"]),
            ),
            (
                env(&["1", "2", "9", "3", "4"]),
                json!({"$setElementOrder/env": env(&["2", "1", "4", "3"])}),
                env(&["2", "1", "9", "4", "3"]),
            ),
            (
                env(&["1", "2", "7", "9", "8", "3", "4"]),
                json!({"$setElementOrder/env": env(&["2", "1", "4", "3"])}),
                env(&["2", "1", "7", "9", "8", "4", "3"]),
            ),
            // $setElementOrder contains item that is not present in the list to be merged
            (
                env(&["1", "3"]),
                json!({"$setElementOrder/env": env(&["3", "2", "1"]), "env": env(&["3", "1"])}),
                env(&["3", "1"]),
            ),
            // preserve the order from the patch in a merging list 2 (an older client, no directive)
            (env(&["1", "2", "3"]), json!({"env": env(&["3", "1"])}), env(&["2", "3", "1"])),
            // behavior of set element order for a merging list with duplicate
            (
                json!([{"name": "1"}, {"name": "2", "value": "dup1"}, {"name": "3"}, {"name": "2", "value": "dup2"}, {"name": "4"}]),
                json!({"$setElementOrder/env": env(&["2", "1", "4", "3", "2"])}),
                json!([{"name": "2", "value": "dup1"}, {"name": "2", "value": "dup2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]),
            ),
        ];
        for (current, mut container_patch, expected) in env_cases {
            container_patch["name"] = json!("c");
            check::<Pod>(
                pod_with_env(current),
                json!({"spec": {"containers": [container_patch]}}),
                pod_with_env(expected),
            );
        }
        let finalizers = |list: Value| json!({"metadata": {"finalizers": list}});
        let finalizer_cases = [
            // set elements order in a int list with server-only items
            (
                json!(["1", "3", "4", "2", "9"]),
                json!({"$setElementOrder/finalizers": ["4", "2", "3", "1"]}),
                json!(["4", "2", "3", "1", "9"]),
            ),
            // preserve the order from the patch in a merging int list
            (json!(["1", "2", "3"]), json!({"finalizers": ["3", "1"]}), json!(["2", "3", "1"])),
            // behavior of set element order for a merging int list with duplicate
            (
                json!(["1", "2", "3", "2", "4"]),
                json!({"$setElementOrder/finalizers": ["2", "1", "4", "3", "2"]}),
                json!(["2", "2", "1", "4", "3"]),
            ),
            // $setElementOrder contains item that is not present in the int list to be merged
            (json!(["1", "3"]), json!({"$setElementOrder/finalizers": ["3", "2", "1"]}), json!(["3", "1"])),
        ];
        for (current, metadata_patch, expected) in finalizer_cases {
            check::<Pod>(finalizers(current), json!({"metadata": metadata_patch}), finalizers(expected));
        }
    }

    #[test]
    fn replace_directive() {
        // `$patch: replace` makes the map, or the list it is an element of, exactly the patch's.
        check::<Pod>(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            json!({"metadata": {"labels": {"c": "3"}}}),
        );
        let pod =
            json!({"spec": {"containers": [{"name": "c", "image": "i"}, {"name": "side", "image": "s"}]}});
        check::<Pod>(
            pod.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "new", "image": "n"}]}}),
            json!({"spec": {"containers": [{"name": "new", "image": "n"}]}}),
        );
        check::<Pod>(
            pod,
            json!({"spec": {"containers": [{"$patch": "replace"}]}}),
            json!({"spec": {"containers": []}}),
        );
    }

    #[test]
    fn delete_directive_on_a_map() {
        // As upstream, `$patch: delete` empties an existing map and adds nothing where there is none.
        check::<Deployment>(
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$patch": "delete"}}}),
            json!({"spec": {"strategy": {}}}),
        );
        check::<Pod>(
            json!({"metadata": {}}),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            json!({"metadata": {}}),
        );
    }

    #[test]
    fn new_values_drop_nulls_and_directives() {
        // Values landing where the original has none are merged into nothing: nulls and
        // directives do not reach the result, and a new container goes through the same.
        check::<Pod>(
            json!({"spec": {"containers": [{"name": "c"}]}}),
            json!({"spec": {
                "securityContext": {"runAsUser": 1000, "fsGroup": null},
                "volumes": [{"name": "x", "$patch": "delete"}, {"name": "y", "emptyDir": {}}],
                "containers": [{"name": "d", "image": "i", "ports": null}]}}),
            json!({"spec": {
                "securityContext": {"runAsUser": 1000},
                "volumes": [{"name": "y", "emptyDir": {}}],
                "containers": [{"name": "d", "image": "i"}, {"name": "c"}]}}),
        );
    }

    #[test]
    fn empty_merge_list_changes_nothing() {
        check::<Pod>(
            json!({"spec": {"containers": [{"name": "c"}]}}),
            json!({"spec": {"containers": []}}),
            json!({"spec": {"containers": [{"name": "c"}]}}),
        );
    }

    #[test]
    fn fields_without_schema_merge_plainly() {
        // A field the schema does not know, and any field of a type without schema (a custom
        // resource as `Value`), merges as a map and replaces as a list.
        check::<Pod>(
            json!({"spec": {"madeUp": {"b": 2}, "madeUpList": [{"name": "a", "v": 1}]}}),
            json!({"spec": {"madeUp": {"a": 1}, "madeUpList": [{"name": "a", "v": 2}]}}),
            json!({"spec": {"madeUp": {"a": 1, "b": 2}, "madeUpList": [{"name": "a", "v": 2}]}}),
        );
        check::<Value>(
            json!({"spec": {"containers": [{"name": "a", "v": 1}, {"name": "b"}], "size": 1}}),
            json!({"spec": {"containers": [{"name": "a", "v": 2}], "size": null}}),
            json!({"spec": {"containers": [{"name": "a", "v": 2}]}}),
        );
    }

    #[test]
    fn malformed_patches_are_rejected() {
        let pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "c"}, {"name": "side"}]}});
        let cases = [
            (json!([]), "a strategic merge patch must be a JSON object"),
            (
                json!({"spec": {"containers": [{"image": "x"}]}}),
                "spec.containers: list element has no merge key \"name\"",
            ),
            (
                json!({"spec": {"containers": ["c"]}}),
                "spec.containers: elements of a list merged by key must be objects",
            ),
            (
                json!({"spec": {"containers": [{"$patch": "delete"}]}}),
                "spec.containers: list element has no merge key \"name\"",
            ),
            (
                json!({"metadata": {"labels": {"$patch": "explode"}}}),
                "metadata.labels: unknown $patch directive \"explode\", expected \"replace\" or \"delete\"",
            ),
            (
                json!({"spec": {"containers": [{"name": "c", "$patch": "merge"}]}}),
                "spec.containers: unknown $patch directive \"merge\", expected \"replace\" or \"delete\"",
            ),
            (
                json!({"spec": {"$patch": 1}}),
                "spec: unknown $patch directive 1, expected \"replace\" or \"delete\"",
            ),
            (json!({"spec": {"$retainKeys": "containers"}}), "spec.$retainKeys must be a list"),
            (
                json!({"spec": {"$retainKeys": ["containers"], "hostname": "h"}}),
                "spec: field \"hostname\" is patched but missing from $retainKeys",
            ),
            (
                json!({"spec": {"$setElementOrder/containers": {"name": "c"}}}),
                "spec.$setElementOrder/containers must be a list",
            ),
            (
                json!({"spec": {"$setElementOrder/containers": [{"name": "c"}], "containers": null}}),
                "spec.containers must be a list",
            ),
            (
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "c"}, {"name": "side"}],
                    "containers": [{"name": "side", "image": "x"}, {"name": "c", "image": "y"}]}}),
                "spec.containers: the patch lists elements in another order than $setElementOrder",
            ),
            (
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
                "metadata.$deleteFromPrimitiveList/finalizers must be a list",
            ),
            (
                json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
                "metadata: directive $deleteFromPrimitiveList does not name a field after its '/'",
            ),
            (
                json!({"metadata": {"finalizers": [{"a": 1}]}}),
                "metadata.finalizers: elements of a merged list of values must not be objects or lists",
            ),
        ];
        for (patch, expected) in cases {
            check_error::<Pod>(pod.clone(), patch, expected);
        }
        check_error::<Pod>(json!("pod"), json!({}), "the object to patch is not a JSON object");
        // The stored list must hold the merge key too.
        check_error::<Pod>(
            json!({"spec": {"containers": [{"image": "nameless"}]}}),
            json!({"spec": {"containers": [{"name": "c"}]}}),
            "spec.containers: list element has no merge key \"name\"",
        );
    }

    #[test]
    fn deep_patch_is_rejected() {
        // A patch nested past the limit fails instead of exhausting the stack.
        let mut patch = json!({"leaf": 1});
        for _ in 0..PATCH_DEPTH_MAX + 10 {
            patch = json!({ "deeper": patch });
        }
        check_error::<Pod>(json!({}), patch, "the patch nests deeper than 128 levels");
    }

    /// A fixed-seed linear congruential generator: deterministic, and enough to shuffle JSON.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            usize::try_from(self.0 >> 33).unwrap() % bound
        }

        fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
            words[self.below(words.len())]
        }

        fn value(&mut self, depth: usize) -> Value {
            const KEYS: &[&str] = &[
                "spec",
                "metadata",
                "template",
                "containers",
                "name",
                "image",
                "env",
                "finalizers",
                "strategy",
                "type",
                "ports",
                "containerPort",
                "$patch",
                "$retainKeys",
                "$setElementOrder/containers",
                "$setElementOrder/env",
                "$setElementOrder/finalizers",
                "$deleteFromPrimitiveList/finalizers",
                "$deleteFromPrimitiveList",
                "$setElementOrder/",
            ];
            const STRINGS: &[&str] = &["c", "side", "replace", "delete", "merge", "a", "type", "name"];
            let kinds = if depth == 0 { 4 } else { 7 };
            match self.below(kinds) {
                0 => Value::Null,
                1 => Value::Bool(self.below(2) == 0),
                2 => json!(self.below(3)),
                3 => Value::String(self.pick(STRINGS).to_owned()),
                4 | 5 => {
                    let entries = self.below(4);
                    Value::Object(
                        (0..entries).map(|_| (self.pick(KEYS).to_owned(), self.value(depth - 1))).collect(),
                    )
                }
                _ => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
            }
        }
    }

    #[test]
    fn arbitrary_patches_never_panic() {
        // Thousands of random documents built from the directive vocabulary, as patches to a
        // real deployment and as both sides: every one must give a result or an error.
        let deployment = json!({"metadata": {"finalizers": ["a"]}, "spec": {"strategy": {"type": "Recreate"},
            "template": {"spec": {"containers": [{"name": "c", "env": [{"name": "A"}], "ports": [{"containerPort": 1}]}]}}}});
        let mut rng = Lcg(7);
        for _ in 0..3000 {
            let patch = json!({"spec": {"template": {"spec": rng.value(5)}}, "metadata": rng.value(3)});
            let _ = apply::<Deployment>(&deployment, &patch);
            let (original, patch) = (rng.value(6), rng.value(6));
            let _ = apply::<Deployment>(&original, &patch);
            let _ = apply::<Value>(&original, &patch);
        }
    }

    #[test]
    fn field_strategies_name_real_fields() {
        // Every row of FIELD_STRATEGIES must name a field that k8s-openapi's schema has, with the
        // shape its strategy needs, or the row would silently never apply.
        let _ = (
            Schemas::of::<Pod>(),
            Schemas::of::<KubeNode>(),
            Schemas::of::<Service>(),
            Schemas::of::<ServiceAccount>(),
            Schemas::of::<Namespace>(),
            Schemas::of::<PersistentVolumeClaim>(),
            Schemas::of::<ReplicationController>(),
            Schemas::of::<ComponentStatus>(),
            Schemas::of::<Deployment>(),
            Schemas::of::<DaemonSet>(),
            Schemas::of::<ReplicaSet>(),
            Schemas::of::<StatefulSet>(),
            Schemas::of::<HorizontalPodAutoscaler>(),
            Schemas::of::<Job>(),
            Schemas::of::<FlowSchema>(),
            Schemas::of::<PriorityLevelConfiguration>(),
            Schemas::of::<ServiceCIDR>(),
            Schemas::of::<PodDisruptionBudget>(),
            Schemas::of::<CSINode>(),
            Schemas::of::<ValidatingAdmissionPolicy>(),
            Schemas::of::<ValidatingWebhookConfiguration>(),
            Schemas::of::<MutatingWebhookConfiguration>(),
        );
        // The last type's snapshot holds the definitions of every type generated before it.
        let schemas = Schemas::of::<APIService>();
        assert_eq!(
            Schemas::of::<Pod>().root().definition,
            Some("io.k8s.api.core.v1.Pod"),
            "the root of a k8s-openapi type resolves to its definition",
        );
        for (definition, field, strategy) in FIELD_STRATEGIES {
            let Some(Value::Object(schema)) = schemas.definitions.get(*definition) else {
                panic!("no definition {definition}");
            };
            let node = Node { definition: Some(definition), schema: Some(schema) };
            let child = schemas.field(node, field);
            let child_type = child.schema.and_then(|schema| schema.get("type"));
            let items = schemas.items(child);
            let has_property = |node: Node<'_>, property: &str| {
                node.schema
                    .and_then(|schema| schema.get("properties"))
                    .and_then(|p| p.get(property))
                    .is_some()
            };
            assert!(has_property(node, field), "{definition} has no field {field}");
            match strategy {
                Strategy::MergeByKey(merge_key) => {
                    assert_eq!(child_type, Some(&json!("array")), "{definition}.{field}");
                    assert!(has_property(items, merge_key), "{definition}.{field} elements lack {merge_key}");
                }
                Strategy::MergeScalars => {
                    assert_eq!(child_type, Some(&json!("array")), "{definition}.{field}");
                    let item_type = items.schema.and_then(|schema| schema.get("type"));
                    assert_eq!(item_type, Some(&json!("string")), "{definition}.{field}");
                }
                Strategy::Replace => {
                    assert!(child.definition.is_some(), "{definition}.{field} is not a struct")
                }
                Strategy::Default => panic!("{definition}.{field}: the table lists only tagged fields"),
            }
        }
    }
}
