//! Server-side apply's walks over an object and the schema of its type: the set of fields a
//! value sets, the comparison of two objects, the merge of an applied configuration into an
//! object, and the removal of a set of fields from an object.
//!
//! These follow structured-merge-diff's `typed` package (`tofieldset.go`, `compare.go`,
//! `merge.go`, `remove.go`), including its treatment of empty and null values. Where a value
//! does not have the type its schema gives it, the walks treat it as an opaque value instead of
//! failing, except [`Walker::field_set`] in strict mode, which checks an applied configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::field_set::{FieldSet, PathElement, compare_values, render_path};
use super::structure::{
    ATOMIC_MAP_FIELDS, ATOMIC_STRUCTS, GRANULAR_STRUCT_FIELDS, LIST_TYPES, ListType, OPTIONAL_VALUE_STRUCTS,
};
use crate::schema::{Node, Schemas};

/// How deep a walk goes. serde_json parses documents at most 128 deep; the limit keeps a value
/// built by other means from exhausting the stack.
const DEPTH_MAX: usize = 256;

static NULL: Value = Value::Null;
static EMPTY_OBJECT: LazyLock<Value> = LazyLock::new(|| Value::Object(Map::new()));

/// A value that does not fit the schema, or a list element without identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", path_prefix(.path))]
pub(super) struct WalkError {
    /// Upstream's notation: `.spec.template.spec.containers`.
    pub(super) path: String,
    pub(super) message: String,
}

/// What is at a place in an object, for server-side apply.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ty<'s> {
    node: Node<'s>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    /// A list, struct or map replaced whole.
    Atomic,
    /// A struct whose fields are tracked one by one.
    Struct,
    /// A map whose keys are tracked one by one (`labels`).
    Map,
    /// A list whose elements are tracked one by one.
    List(ListType),
    /// No schema (a type without one, or a free-form object): objects are maps, lists atomic.
    Deduced,
}

const DEDUCED: Ty<'static> = Ty { node: Node::UNKNOWN, kind: Kind::Deduced };
const SCALAR: Ty<'static> = Ty { node: Node::UNKNOWN, kind: Kind::Scalar };

/// The fields each object added, changed and removed, going from one object to another.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Comparison {
    pub(super) added: FieldSet,
    pub(super) modified: FieldSet,
    pub(super) removed: FieldSet,
}

impl Comparison {
    pub(super) fn filtered(&self, filter: impl Fn(&FieldSet) -> FieldSet) -> Comparison {
        Comparison {
            added: filter(&self.added),
            modified: filter(&self.modified),
            removed: filter(&self.removed),
        }
    }
}

/// How a walk treats a value at a place: as one opaque value, or as a container of tracked
/// children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Leaf,
    Object,
    List(ListType),
}

pub(super) struct Walker<'s> {
    schemas: &'s Schemas,
}

impl<'s> Walker<'s> {
    pub(super) fn new(schemas: &'s Schemas) -> Walker<'s> {
        Walker { schemas }
    }

    pub(super) fn root(&self) -> Ty<'s> {
        self.classify(self.schemas.root(), None)
    }

    /// What the schema at `node` is, reached as `field_of` = (definition, field) if it is a field.
    fn classify(&self, node: Node<'s>, field_of: Option<(&str, &str)>) -> Ty<'s> {
        let in_table = |table: &[(&str, &str)]| field_of.is_some_and(|field_of| table.contains(&field_of));
        let kind = if node.schema.is_none() {
            Kind::Deduced
        } else if node.has_properties() {
            let atomic = node.definition.is_some_and(|definition| ATOMIC_STRUCTS.contains(&definition));
            if atomic && !in_table(GRANULAR_STRUCT_FIELDS) { Kind::Atomic } else { Kind::Struct }
        } else if node.type_name() == Some("array") {
            let list_type = field_of.and_then(|(definition, field)| {
                LIST_TYPES.iter().find(|(name, name_field, _)| *name == definition && *name_field == field)
            });
            list_type.map_or(Kind::Atomic, |(_, _, list_type)| Kind::List(*list_type))
        } else if self.schemas.values(node).is_some() {
            if in_table(ATOMIC_MAP_FIELDS) { Kind::Atomic } else { Kind::Map }
        } else if node.type_name() == Some("object") {
            Kind::Deduced
        } else {
            Kind::Scalar
        };
        Ty { node, kind }
    }

    /// The type of `name` in an object of type `parent`; `None` for a field a struct does not
    /// declare, which server-side apply leaves alone.
    fn field_ty(&self, parent: Ty<'s>, name: &str) -> Option<Ty<'s>> {
        match parent.kind {
            Kind::Struct => {
                let node = self.schemas.property(parent.node, name)?;
                Some(self.classify(node, Some((parent.node.definition.unwrap_or_default(), name))))
            }
            Kind::Map => {
                Some(self.schemas.values(parent.node).map_or(DEDUCED, |node| self.classify(node, None)))
            }
            Kind::Deduced => Some(DEDUCED),
            Kind::Scalar | Kind::Atomic | Kind::List(_) => None,
        }
    }

    fn element_ty(&self, list: Ty<'s>) -> Ty<'s> {
        if list.node.schema.is_none() {
            return DEDUCED;
        }
        self.classify(self.schemas.items(list.node), None)
    }

    /// Whether a Go object of type `parent` always has field `name` (of type `child`): a
    /// required field, or a struct rather than a pointer to one.
    fn always_present(&self, parent: Ty<'s>, name: &str, child: Ty<'s>) -> bool {
        if parent.kind != Kind::Struct {
            return false;
        }
        let definition = parent.node.definition.unwrap_or_default();
        parent.node.requires(name)
            || (child.kind == Kind::Struct && matches!(name, "metadata" | "spec" | "status"))
            || OPTIONAL_VALUE_STRUCTS.contains(&(definition, name))
    }

    /// The set of fields `value` sets: its leaves, list elements, map entries and empty or null
    /// struct fields (upstream's `ToFieldSet`). `strict` checks that containers have the types
    /// the schema gives them, as an applied configuration must.
    pub(super) fn field_set(&self, value: &Value, ty: Ty<'s>, strict: bool) -> Result<FieldSet, WalkError> {
        let mut set = FieldSet::default();
        self.collect(value, ty, strict, &mut Vec::new(), &mut set)?;
        Ok(set)
    }

    fn collect(
        &self,
        value: &Value,
        ty: Ty<'s>,
        strict: bool,
        path: &mut Vec<PathElement>,
        set: &mut FieldSet,
    ) -> Result<(), WalkError> {
        check_depth(path)?;
        match (ty.kind, value) {
            (Kind::Scalar | Kind::Atomic, _) => set.insert(path),
            (Kind::Struct | Kind::Map | Kind::Deduced, Value::Object(fields)) => {
                for (name, child) in fields {
                    let Some(child_ty) = self.field_ty(ty, name) else { continue };
                    path.push(PathElement::Field(name.clone()));
                    self.collect(child, child_ty, strict, path, set)?;
                    let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                    if empty || ty.kind != Kind::Struct {
                        set.insert(path);
                    }
                    path.pop();
                }
            }
            (Kind::Deduced, _) => set.insert(path),
            (Kind::List(list_type), Value::Array(items)) => {
                self.collect_list(items, list_type, self.element_ty(ty), strict, path, set)?;
            }
            (_, Value::Null) => {}
            (kind, other) if strict => {
                let expected = if kind == Kind::Struct || kind == Kind::Map { "map" } else { "list" };
                return Err(error(path, format!("expected {expected}, got {}", json_type(other))));
            }
            (_, _) => set.insert(path),
        }
        Ok(())
    }

    fn collect_list(
        &self,
        items: &[Value],
        list_type: ListType,
        element_ty: Ty<'s>,
        strict: bool,
        path: &mut Vec<PathElement>,
        set: &mut FieldSet,
    ) -> Result<(), WalkError> {
        let elements = self.elements(items, list_type, path)?;
        // A duplicated element is owned as a whole, never field by field; an applied
        // configuration may not have one.
        let mut seen = BTreeSet::new();
        let repeated: Vec<&PathElement> = elements.iter().filter(|element| !seen.insert(*element)).collect();
        if let (true, Some(duplicate)) = (strict, repeated.first()) {
            let message =
                format!("duplicate entries for key {}", render_path(std::slice::from_ref(*duplicate)));
            return Err(error(path, message));
        }
        let duplicates: BTreeSet<&PathElement> = repeated.into_iter().collect();
        for (element, item) in elements.iter().zip(items) {
            path.push(element.clone());
            if !duplicates.contains(element) {
                self.collect(item, element_ty, strict, path, set)?;
            }
            set.insert(path);
            path.pop();
        }
        Ok(())
    }

    /// The identities of a list's elements.
    fn elements(
        &self,
        items: &[Value],
        list_type: ListType,
        path: &[PathElement],
    ) -> Result<Vec<PathElement>, WalkError> {
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                element(list_type, item).map_err(|message| error(path, format!("element {index}: {message}")))
            })
            .collect()
    }

    /// Compares two objects of type `ty` (upstream's `Compare`).
    pub(super) fn compare(&self, lhs: &Value, rhs: &Value, ty: Ty<'s>) -> Result<Comparison, WalkError> {
        let mut comparison = Comparison::default();
        self.compare_at(Some(lhs), Some(rhs), ty, &mut Vec::new(), &mut comparison)?;
        Ok(comparison)
    }

    fn compare_at(
        &self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        ty: Ty<'s>,
        path: &mut Vec<PathElement>,
        out: &mut Comparison,
    ) -> Result<(), WalkError> {
        check_depth(path)?;
        match shape(ty, lhs, rhs) {
            Shape::Leaf => {
                match (lhs, rhs) {
                    (None, Some(_)) => out.added.insert(path),
                    (Some(_), None) => out.removed.insert(path),
                    (Some(lhs), Some(rhs)) if !compare_values(lhs, rhs).is_eq() => out.modified.insert(path),
                    _ => {}
                }
                return Ok(());
            }
            Shape::Object => self.compare_fields(lhs, rhs, ty, path, out)?,
            Shape::List(list_type) => {
                let element_ty = self.element_ty(ty);
                let lhs = self.index_list(lhs, list_type, path)?;
                let rhs = self.index_list(rhs, list_type, path)?;
                for (element, left) in &lhs {
                    path.push(element.clone());
                    self.compare_at(Some(left), rhs.get(element).copied(), element_ty, path, out)?;
                    path.pop();
                }
                for (element, right) in rhs.iter().filter(|(element, _)| !lhs.contains_key(*element)) {
                    path.push(element.clone());
                    self.compare_at(None, Some(right), element_ty, path, out)?;
                    path.pop();
                }
            }
        }
        if lhs.is_none() {
            out.added.insert(path);
        } else if rhs.is_none() {
            out.removed.insert(path);
        }
        Ok(())
    }

    fn compare_fields(
        &self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        ty: Ty<'s>,
        path: &mut Vec<PathElement>,
        out: &mut Comparison,
    ) -> Result<(), WalkError> {
        let (lhs, rhs) = (lhs.and_then(Value::as_object), rhs.and_then(Value::as_object));
        let names: BTreeSet<&String> =
            lhs.iter().chain(rhs.iter()).flat_map(|fields| fields.keys()).collect();
        for name in names {
            let Some(child_ty) = self.field_ty(ty, name) else { continue };
            // A struct field a Go object always has is there, empty, when the JSON leaves it
            // out: changes inside it do not add or remove the field itself.
            let default = match self.always_present(ty, name, child_ty) {
                true if child_ty.kind == Kind::Struct => Some(&*EMPTY_OBJECT),
                true => Some(&NULL),
                false => None,
            };
            let left = lhs.and_then(|fields| fields.get(name.as_str()).or(default));
            let right = rhs.and_then(|fields| fields.get(name.as_str()).or(default));
            path.push(PathElement::Field(name.clone()));
            self.compare_at(left, right, child_ty, path, out)?;
            path.pop();
        }
        Ok(())
    }

    /// A list's elements by identity; a repeated element counts once, as its first occurrence.
    fn index_list<'v>(
        &self,
        list: Option<&'v Value>,
        list_type: ListType,
        path: &[PathElement],
    ) -> Result<BTreeMap<PathElement, &'v Value>, WalkError> {
        let items = items(list);
        let elements = self.elements(items, list_type, path)?;
        let mut index = BTreeMap::new();
        for (element, item) in elements.into_iter().zip(items) {
            index.entry(element).or_insert(item);
        }
        Ok(index)
    }

    /// Merges `rhs` into `lhs` (upstream's `Merge`): `rhs` wins on leaves, and containers merge
    /// child by child. `None` for a place neither side has anything at.
    pub(super) fn merge(
        &self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        ty: Ty<'s>,
        path: &mut Vec<PathElement>,
    ) -> Result<Option<Value>, WalkError> {
        check_depth(path)?;
        // A value of the wrong type on the live side counts as absent; on the applied side, it
        // replaces what is there.
        let lhs = if fits(ty, rhs) && !fits(ty, lhs) { None } else { lhs };
        match shape(ty, lhs, rhs) {
            Shape::Leaf => Ok(rhs.or(lhs).cloned()),
            Shape::Object => {
                let (lhs, rhs) = (lhs.and_then(Value::as_object), rhs.and_then(Value::as_object));
                let names: BTreeSet<&String> =
                    lhs.iter().chain(rhs.iter()).flat_map(|fields| fields.keys()).collect();
                let mut merged = Map::new();
                for name in names {
                    let child_ty = self.field_ty(ty, name).unwrap_or(DEDUCED);
                    let (left, right) =
                        (lhs.and_then(|f| f.get(name.as_str())), rhs.and_then(|f| f.get(name.as_str())));
                    path.push(PathElement::Field(name.clone()));
                    let child = self.merge(left, right, child_ty, path)?;
                    path.pop();
                    merged.extend(child.map(|child| (name.clone(), child)));
                }
                Ok((!merged.is_empty()).then_some(Value::Object(merged)))
            }
            Shape::List(list_type) => self.merge_list(items(lhs), items(rhs), list_type, ty, path),
        }
    }

    /// Merges two associative lists in upstream's order: the applied order, with the live
    /// elements the configuration does not name kept where they were relative to those it does.
    fn merge_list(
        &self,
        lhs: &[Value],
        rhs: &[Value],
        list_type: ListType,
        ty: Ty<'s>,
        path: &mut Vec<PathElement>,
    ) -> Result<Option<Value>, WalkError> {
        let rhs_order = self.elements(rhs, list_type, path)?;
        let mut seen = BTreeSet::new();
        if let Some(repeated) = rhs_order.iter().find(|element| !seen.insert(*element)) {
            let message =
                format!("duplicate entries for key {}", render_path(std::slice::from_ref(repeated)));
            return Err(error(path, message));
        }
        let lhs_order = self.elements(lhs, list_type, path)?;
        let element_ty = self.element_ty(ty);
        let mut merged = Vec::with_capacity(lhs.len().max(rhs.len()));
        for (element, lhs_item, rhs_item) in merge_order(lhs, &lhs_order, rhs, &rhs_order) {
            path.push(element.clone());
            let element = self.merge(lhs_item, rhs_item, element_ty, path);
            path.pop();
            merged.extend(element?);
        }
        Ok((!merged.is_empty()).then_some(Value::Array(merged)))
    }

    /// `value` without the members of `set` (upstream's `RemoveItems`); `None` where nothing is
    /// left. A struct or map emptied below its top level is left as null, as upstream leaves it.
    pub(super) fn remove(&self, value: &Value, set: &FieldSet, ty: Ty<'s>, depth: usize) -> Option<Value> {
        if depth > DEPTH_MAX {
            return Some(value.clone());
        }
        let kind = match (ty.kind, value) {
            (Kind::Deduced, Value::Object(_)) => Kind::Map,
            (Kind::Deduced, Value::Array(_)) => Kind::Atomic,
            (kind, _) => kind,
        };
        match (kind, value) {
            (Kind::Scalar | Kind::Deduced, _) => Some(value.clone()),
            (Kind::Struct | Kind::Map, Value::Object(fields)) if !fields.is_empty() => {
                let mut kept = Map::new();
                for (name, child) in fields {
                    let element = PathElement::Field(name.clone());
                    if set.members().contains(&element) {
                        continue;
                    }
                    let child = match set.child(&element) {
                        Some(below) => {
                            let child_ty = self.field_ty(ty, name).unwrap_or(DEDUCED);
                            self.remove(child, below, child_ty, depth + 1).unwrap_or(Value::Null)
                        }
                        None => child.clone(),
                    };
                    kept.insert(name.clone(), child);
                }
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            (Kind::List(list_type), Value::Array(items)) if !items.is_empty() => {
                let element_ty = self.element_ty(ty);
                let mut kept = Vec::with_capacity(items.len());
                for item in items {
                    let Ok(element) = element(list_type, item) else {
                        kept.push(item.clone());
                        continue;
                    };
                    if set.members().contains(&element) {
                        continue;
                    }
                    kept.push(match set.child(&element) {
                        Some(below) => self.remove(item, below, element_ty, depth + 1).unwrap_or(Value::Null),
                        None => item.clone(),
                    });
                }
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            // Atomic values, and containers that are empty or of the wrong type.
            _ => None,
        }
    }

    /// `set` plus every struct field under which it has members (upstream's
    /// `EnsureNamedFieldsAreMembers`), so that removing a set removes those fields too.
    pub(super) fn ensure_named(&self, set: &FieldSet, ty: Ty<'s>) -> FieldSet {
        let mut members = set.members().clone();
        let mut children = BTreeMap::new();
        for (element, child) in set.children() {
            let child_ty = match element {
                PathElement::Field(name) => {
                    if ty.kind == Kind::Struct && self.schemas.property(ty.node, name).is_some() {
                        members.insert(element.clone());
                    }
                    self.field_ty(ty, name).unwrap_or(SCALAR)
                }
                PathElement::Key(_) if matches!(ty.kind, Kind::List(_)) => self.element_ty(ty),
                _ => SCALAR,
            };
            children.insert(element.clone(), self.ensure_named(child, child_ty));
        }
        FieldSet::from_parts(members, children)
    }
}

/// The order in which upstream's merge visits two associative lists' elements, each with its
/// live and applied value. `rhs_order` has no repeated element; a repeated live element is
/// kept as it is unless the configuration names it, and then merged as if it were null.
fn merge_order<'v>(
    lhs: &'v [Value],
    lhs_order: &'v [PathElement],
    rhs: &'v [Value],
    rhs_order: &'v [PathElement],
) -> Vec<(&'v PathElement, Option<&'v Value>, Option<&'v Value>)> {
    let observed_rhs: BTreeMap<&PathElement, &Value> = rhs_order.iter().zip(rhs).collect();
    let mut observed_lhs: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (element, item) in lhs_order.iter().zip(lhs) {
        observed_lhs.entry(element).and_modify(|seen| *seen = &NULL).or_insert(item);
    }
    let both = |element: &'v PathElement| {
        (element, observed_lhs.get(element).copied(), observed_rhs.get(element).copied())
    };
    let mut shared = rhs_order.iter().filter(|element| observed_lhs.contains_key(element));
    let mut next_shared = shared.next();
    let mut merged_rhs = BTreeSet::new();
    let mut order = Vec::with_capacity(lhs_order.len().max(rhs_order.len()));
    let (mut left, mut right) = (0, 0);
    // Every round takes at least one element from one side.
    for _ in 0..=lhs_order.len() + rhs_order.len() {
        if left >= lhs_order.len() && right >= rhs_order.len() {
            break;
        }
        if left < lhs_order.len() && right < rhs_order.len() {
            let element = &lhs_order[left];
            if *element == rhs_order[right] {
                merged_rhs.insert(element);
                order.push(both(element));
                (left, right) = (left + 1, right + 1);
                next_shared = shared.next();
                continue;
            }
            // A shared element, but not the one the configuration's order wants next.
            if observed_rhs.contains_key(element) && next_shared.is_some_and(|next| next != element) {
                left += 1;
                continue;
            }
        }
        if left < lhs_order.len() {
            let element = &lhs_order[left];
            if !observed_rhs.contains_key(element) {
                order.push((element, lhs.get(left), None));
                left += 1;
                continue;
            } else if merged_rhs.contains(element) {
                left += 1;
            }
        }
        if right < rhs_order.len() {
            let element = &rhs_order[right];
            merged_rhs.insert(element);
            order.push(both(element));
            right += 1;
            if next_shared == Some(element) {
                next_shared = shared.next();
            }
        }
    }
    order
}

/// Whether `value` has a type a place of type `ty` can hold as a container (or is absent).
fn fits(ty: Ty<'_>, value: Option<&Value>) -> bool {
    match (ty.kind, value) {
        (_, None | Some(Value::Null)) => true,
        (Kind::Struct | Kind::Map, Some(value)) => value.is_object(),
        (Kind::List(_), Some(value)) => value.is_array(),
        _ => true,
    }
}

/// How two values at a place of type `ty` are walked: as containers if both fit and at least
/// one has something inside, otherwise as one opaque value.
fn shape(ty: Ty<'_>, lhs: Option<&Value>, rhs: Option<&Value>) -> Shape {
    let shape = match ty.kind {
        Kind::Scalar | Kind::Atomic => return Shape::Leaf,
        Kind::Struct | Kind::Map => Shape::Object,
        Kind::List(list_type) => Shape::List(list_type),
        Kind::Deduced => match (lhs, rhs) {
            (Some(Value::Object(_)), None | Some(Value::Object(_) | Value::Null))
            | (None | Some(Value::Null), Some(Value::Object(_))) => Shape::Object,
            _ => return Shape::Leaf,
        },
    };
    let fitting = |value: Option<&Value>| match (shape, value) {
        (_, None | Some(Value::Null)) => true,
        (Shape::Object, Some(value)) => value.is_object(),
        (_, Some(value)) => value.is_array(),
    };
    let empty = |value: Option<&Value>| match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(fields)) => fields.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    };
    if !fitting(lhs) || !fitting(rhs) || (empty(lhs) && empty(rhs)) {
        return Shape::Leaf;
    }
    shape
}

/// The identity of a list element (upstream's `listItemToPathElement`).
fn element(list_type: ListType, item: &Value) -> Result<PathElement, String> {
    let keys = match list_type {
        ListType::Set => {
            return match item {
                Value::Object(_) => {
                    Err("associative list without keys has an element that's a map type".into())
                }
                Value::Array(_) => {
                    Err("associative list without keys has an element that's a list type".into())
                }
                scalar => Ok(PathElement::Value(scalar.clone())),
            };
        }
        ListType::Map(keys) => keys,
    };
    let fields = match item {
        Value::Object(fields) => fields,
        Value::Null => return Err("associative list with keys may not have a null element".into()),
        _ => return Err("associative list with keys may not have non-map elements".into()),
    };
    let mut key: Vec<(String, Value)> = keys
        .iter()
        .filter_map(|(name, default)| {
            let value =
                fields.get(*name).cloned().or_else(|| default.map(|default| Value::String(default.into())));
            value.map(|value| ((*name).to_owned(), value))
        })
        .collect();
    if key.is_empty() {
        let names: Vec<String> = keys.iter().map(|(name, _)| format!("{name:?}")).collect();
        return Err(format!(
            "associative list with keys has an element that omits all key fields [{}] (and doesn't have default values for any key fields)",
            names.join(" ")
        ));
    }
    key.sort_by(|(left, _), (right, _)| left.cmp(right));
    Ok(PathElement::Key(key))
}

/// The elements of a list; none for anything else.
fn items(list: Option<&Value>) -> &[Value] {
    list.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn check_depth(path: &[PathElement]) -> Result<(), WalkError> {
    if path.len() > DEPTH_MAX {
        return Err(error(path, format!("the object nests deeper than {DEPTH_MAX} levels")));
    }
    Ok(())
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() { String::new() } else { format!("{path}: ") }
}

fn error(path: &[PathElement], message: String) -> WalkError {
    WalkError { path: render_path(path), message }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Pod, Service};
    use schemars::JsonSchema;
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check_merge<K: JsonSchema>(lhs: Value, rhs: Value, expected: Value) {
        let schemas = Schemas::of::<K>();
        let walker = Walker::new(&schemas);
        let merged = walker.merge(Some(&lhs), Some(&rhs), walker.root(), &mut Vec::new());
        assert_eq!(merged, Ok(Some(expected)), "merging {rhs} into {lhs}");
    }

    #[test]
    fn merged_sets_are_ordered_as_upstream() {
        // structured-merge-diff's own set cases (typed/merge_test.go), played by finalizers:
        // the configuration's order wins, live-only elements keep their place around it, and
        // repeated live elements are kept unless the configuration names them.
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["a", "b", "c"], &["a", "b"], &["a", "b", "c"]),
            (&["a", "b"], &["a", "b", "c"], &["a", "b", "c"]),
            (&["a", "b", "c"], &[], &["a", "b", "c"]),
            (&[], &["a", "b", "c"], &["a", "b", "c"]),
            (&["a", "b"], &["b", "a"], &["b", "a"]),
            (&["a", "b", "c"], &["d", "e", "f"], &["a", "b", "c", "d", "e", "f"]),
            (&["a", "b", "c"], &["c", "d", "e", "f"], &["a", "b", "c", "d", "e", "f"]),
            (&["a", "b", "c", "g", "f"], &["c", "d", "e", "f"], &["a", "b", "c", "g", "d", "e", "f"]),
            (&["c", "d", "e", "f"], &["a", "c", "e"], &["a", "c", "d", "e", "f"]),
            (
                &["a", "b", "c", "x", "y", "z"],
                &["d", "e", "f"],
                &["a", "b", "c", "x", "y", "z", "d", "e", "f"],
            ),
            (
                &["a", "b", "c", "x", "y", "z"],
                &["d", "e", "f", "x", "y", "z"],
                &["a", "b", "c", "d", "e", "f", "x", "y", "z"],
            ),
            (&["c", "a", "g", "f"], &["c", "f", "a", "g"], &["c", "f", "a", "g"]),
            (&["a", "b", "c", "d"], &["d", "e", "f", "a"], &["b", "c", "d", "e", "f", "a"]),
            (
                &["c", "d", "e", "f", "g", "h", "i", "j"],
                &["2", "h", "3", "e", "4", "k", "l"],
                &["c", "d", "f", "g", "2", "h", "i", "j", "3", "e", "4", "k", "l"],
            ),
            (
                &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"],
                &["1", "b", "2", "h", "3", "e", "4", "k", "l"],
                &["a", "1", "b", "c", "d", "f", "g", "2", "h", "i", "j", "3", "e", "4", "k", "l"],
            ),
            (&["a", "b", "b"], &["c"], &["a", "b", "b", "c"]),
            (&["a", "b", "b"], &["b"], &["a", "b"]),
            (&["a", "b", "b"], &["a"], &["a", "b", "b"]),
            (
                &["a", "b", "c", "d", "e", "c"],
                &["1", "b", "2", "e", "d"],
                &["a", "1", "b", "c", "2", "e", "c", "d"],
            ),
            (
                &["a", "b", "c", "d", "e", "c"],
                &["1", "b", "2", "c", "e", "d"],
                &["a", "1", "b", "2", "c", "e", "d"],
            ),
            (&["a", "a", "b", "b"], &["b", "c", "d"], &["a", "a", "b", "c", "d"]),
            (&["a", "a", "b", "b"], &[], &["a", "a", "b", "b"]),
            (&["c", "a", "g", "f", "c", "a"], &["c", "f", "a", "g"], &["c", "f", "a", "g"]),
        ];
        let pod = |finalizers: &[&str]| json!({"metadata": {"finalizers": finalizers}});
        for (lhs, rhs, expected) in cases {
            check_merge::<Pod>(pod(lhs), pod(rhs), pod(expected));
        }
    }

    #[test]
    fn merged_list_maps_are_ordered_as_upstream() {
        // The associative-list cases of the same file, keyed by (key, id) there and by
        // (protocol, port) here; atomic lists are replaced whole, even by null or [].
        let port = |protocol: &str, port: i64| json!({"protocol": protocol, "port": port});
        let service = |ports: Vec<Value>| json!({"spec": {"ports": ports}});
        let (a1, a2, b1, b2, c3) =
            (port("TCP", 1), port("TCP", 2), port("UDP", 1), port("UDP", 2), port("SCTP", 3));
        let a1_named = json!({"protocol": "TCP", "port": 1, "name": "x"});
        let cases = [
            (vec![a1_named.clone()], vec![a1.clone()], vec![a1_named.clone()]),
            (vec![a1.clone()], vec![a2.clone()], vec![a1.clone(), a2.clone()]),
            (vec![a1.clone(), b1.clone()], vec![a1.clone(), a2.clone()], vec![a1.clone(), b1, a2]),
            (
                vec![b2.clone()],
                vec![a1.clone(), b2.clone(), c3.clone()],
                vec![a1.clone(), b2.clone(), c3.clone()],
            ),
            (
                vec![a1.clone(), b2.clone(), c3.clone()],
                vec![c3.clone(), b2.clone()],
                vec![a1.clone(), c3.clone(), b2.clone()],
            ),
            (vec![a1.clone(), b2.clone(), c3.clone()], vec![c3.clone(), a1.clone()], vec![b2, c3, a1]),
        ];
        for (lhs, rhs, expected) in cases {
            check_merge::<Service>(service(lhs), service(rhs), service(expected));
        }
        let ips = |ips: Value| json!({"spec": {"clusterIPs": ips}});
        check_merge::<Service>(ips(json!(["a", "a", "a"])), ips(Value::Null), ips(Value::Null));
        check_merge::<Service>(ips(json!(["a", "b", "c"])), ips(json!([])), ips(json!([])));
        check_merge::<Service>(ips(json!(["a", "a", "a"])), ips(json!(["a", "a"])), ips(json!(["a", "a"])));
    }

    #[test]
    fn comparison_marks_added_structs_unless_go_always_has_them() {
        // Creating a Pod adds labels and a container whole ("."), but not metadata or spec,
        // which a Go object always has; a changed and a removed field are reported as such.
        let schemas = Schemas::of::<Pod>();
        let walker = Walker::new(&schemas);
        let before = json!({"metadata": {"name": "p", "annotations": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let after = json!({"metadata": {"name": "p", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "j"}, {"name": "d"}]}});
        let comparison = walker.compare(&before, &after, walker.root()).unwrap();
        assert_eq!(
            comparison.added.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {r#"k:{"name":"d"}"#: {".": {}, "f:name": {}}}}})
        );
        assert_eq!(
            comparison.modified.to_fields_v1(),
            json!({"f:spec": {"f:containers": {r#"k:{"name":"c"}"#: {"f:image": {}}}}})
        );
        assert_eq!(
            comparison.removed.to_fields_v1(),
            json!({"f:metadata": {"f:annotations": {".": {}, "f:a": {}}}})
        );
        let created = walker.compare(&json!({}), &after, walker.root()).unwrap();
        assert_eq!(created.added.to_fields_v1()["f:metadata"].get("."), None);
        assert_eq!(
            created.added.to_fields_v1()["f:spec"]["f:containers"].get("."),
            None,
            "containers is required"
        );
    }
}
