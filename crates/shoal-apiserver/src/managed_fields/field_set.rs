//! Sets of field paths and their `FieldsV1` encoding, as structured-merge-diff's `fieldpath`.
//!
//! A set is a tree: at each level, the path elements that are members of the set, and the
//! elements under which deeper members lie. Being a parent does not make an element a member:
//! `FieldsV1` writes a member that also has children with a `"."` key. Elements are ordered as
//! upstream orders them (fields, then keys, then values, then indexes), which is the order
//! `FieldsV1` is written in and the order conflicts are reported in.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// How deep a `FieldsV1` document may nest. Stored objects are parsed with serde_json's limit of
/// 128; the limit keeps a document built by other means from exhausting the stack.
const FIELDS_DEPTH_MAX: usize = 256;

/// One step of a path.
#[derive(Debug, Clone)]
pub(super) enum PathElement {
    /// A field of an object: `f:name`.
    Field(String),
    /// An element of an associative list, by its key fields sorted by name: `k:{"name":"c"}`.
    Key(Vec<(String, Value)>),
    /// An element of a set (a list of scalars), by value: `v:"a"`.
    Value(Value),
    /// An element of a list by position: `i:0`. Never produced here; kept when decoding.
    Index(i64),
}

/// A set of paths; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FieldSet {
    members: BTreeSet<PathElement>,
    /// Never holds an empty set.
    children: BTreeMap<PathElement, FieldSet>,
}

/// Why a `FieldsV1` document could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct FieldsError(String);

impl FieldSet {
    pub(super) fn from_parts(
        members: BTreeSet<PathElement>,
        children: BTreeMap<PathElement, FieldSet>,
    ) -> FieldSet {
        let children = children.into_iter().filter(|(_, child)| !child.is_empty()).collect();
        FieldSet { members, children }
    }

    pub(super) fn members(&self) -> &BTreeSet<PathElement> {
        &self.members
    }

    pub(super) fn children(&self) -> &BTreeMap<PathElement, FieldSet> {
        &self.children
    }

    /// The paths under `element`, without it.
    pub(super) fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path`, but not its parents. The empty path (the whole object) is never a member.
    pub(super) fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else { return };
        let mut set = self;
        for element in parents {
            set = set.children.entry(element.clone()).or_default();
        }
        set.members.insert(last.clone());
    }

    pub(super) fn has(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else { return false };
        let mut set = self;
        for element in parents {
            match set.children.get(element) {
                Some(child) => set = child,
                None => return false,
            }
        }
        set.members.contains(last)
    }

    pub(super) fn union(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.union(&other.members).cloned().collect();
        let mut children = self.children.clone();
        for (element, theirs) in &other.children {
            let merged = match children.get(element) {
                Some(ours) => ours.union(theirs),
                None => theirs.clone(),
            };
            children.insert(element.clone(), merged);
        }
        FieldSet { members, children }
    }

    pub(super) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, ours)| {
                let theirs = other.children.get(element)?;
                Some((element.clone(), ours.intersection(theirs)))
            })
            .collect();
        FieldSet::from_parts(members, children)
    }

    /// Removes the members of `other`, level by level: a member of `other` does not remove the
    /// paths under it (upstream's `Difference`).
    pub(super) fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .map(|(element, ours)| match other.children.get(element) {
                Some(theirs) => (element.clone(), ours.difference(theirs)),
                None => (element.clone(), ours.clone()),
            })
            .collect();
        FieldSet::from_parts(members, children)
    }

    /// Removes the members of `other` and every path under them (upstream's
    /// `RecursiveDifference`).
    pub(super) fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(element, _)| !other.members.contains(*element))
            .map(|(element, ours)| match other.children.get(element) {
                Some(theirs) => (element.clone(), ours.recursive_difference(theirs)),
                None => (element.clone(), ours.clone()),
            })
            .collect();
        FieldSet::from_parts(members, children)
    }

    /// Every member, depth first: the members of a level before the levels under it.
    pub(super) fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut paths = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut paths);
        paths
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, paths: &mut Vec<Vec<PathElement>>) {
        for member in &self.members {
            let mut path = prefix.clone();
            path.push(member.clone());
            paths.push(path);
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, paths);
            prefix.pop();
        }
    }

    /// The `FieldsV1` form: `{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}`.
    pub(super) fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_level(false))
    }

    fn fields_v1_level(&self, include_self: bool) -> Map<String, Value> {
        let mut fields = Map::new();
        if include_self {
            fields.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for member in &self.members {
            if !self.children.contains_key(member) {
                fields.insert(member.fields_v1_key(), Value::Object(Map::new()));
            }
        }
        for (element, child) in &self.children {
            let is_member = self.members.contains(element);
            fields.insert(element.fields_v1_key(), Value::Object(child.fields_v1_level(is_member)));
        }
        fields
    }

    /// Reads a `FieldsV1` document. Keys of unknown element types are skipped, as upstream
    /// does, so that newer servers' sets still decode.
    pub(super) fn from_fields_v1(fields: &Value) -> Result<FieldSet, FieldsError> {
        let Value::Object(fields) = fields else {
            return Err(FieldsError("fieldsV1 must be a JSON object".to_owned()));
        };
        Ok(read_level(fields, 0)?.0)
    }
}

/// Reads one level: the set below it, and whether the level's own element is a member.
fn read_level(fields: &Map<String, Value>, depth: usize) -> Result<(FieldSet, bool), FieldsError> {
    if depth > FIELDS_DEPTH_MAX {
        return Err(FieldsError(format!("fieldsV1 nests deeper than {FIELDS_DEPTH_MAX} levels")));
    }
    let mut set = FieldSet::default();
    let mut is_member = false;
    for (key, value) in fields {
        if key == "." {
            is_member = true;
            continue;
        }
        let Some(element) = PathElement::from_fields_v1_key(key)? else { continue };
        let Value::Object(below) = value else {
            return Err(FieldsError(format!("fieldsV1 key {key:?} must map to a JSON object")));
        };
        let (child, child_is_member) = read_level(below, depth + 1)?;
        if child_is_member {
            set.members.insert(element.clone());
        }
        if !child.is_empty() {
            set.children.insert(element, child);
        }
    }
    // A level with nothing below it is a leaf, and so a member.
    let is_member = is_member || set.is_empty();
    Ok((set, is_member))
}

impl PathElement {
    fn fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let object: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", go_json(&Value::Object(object)))
            }
            PathElement::Value(value) => format!("v:{}", go_json(value)),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// The element a `FieldsV1` key names; `None` for a key of a type this version does not know.
    fn from_fields_v1_key(key: &str) -> Result<Option<PathElement>, FieldsError> {
        if key.len() < 2 {
            return Err(FieldsError(format!("fieldsV1 key {key:?} must be at least 2 characters long")));
        }
        let Some((kind, body)) = key.get(..2).and_then(|prefix| prefix.strip_suffix(':')).zip(key.get(2..))
        else {
            return Err(FieldsError(format!("fieldsV1 key {key:?} is missing a colon")));
        };
        let parse = |body: &str| {
            serde_json::from_str::<Value>(body)
                .map_err(|error| FieldsError(format!("fieldsV1 key {key:?} is not valid: {error}")))
        };
        Ok(Some(match kind {
            "f" => PathElement::Field(body.to_owned()),
            "v" => PathElement::Value(parse(body)?),
            "k" => match parse(body)? {
                Value::Object(fields) => PathElement::Key(fields.into_iter().collect()),
                _ => return Err(FieldsError(format!("fieldsV1 key {key:?} must hold a JSON object"))),
            },
            "i" => PathElement::Index(
                body.parse().map_err(|_| FieldsError(format!("fieldsV1 key {key:?} is not an index")))?,
            ),
            _ => return Ok(None),
        }))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    /// Upstream's order: fields by name, then keys, then values, then indexes.
    fn cmp(&self, other: &Self) -> Ordering {
        use PathElement::{Field, Index, Key, Value};
        let rank = |element: &PathElement| match element {
            Field(_) => 0,
            Key(_) => 1,
            Value(_) => 2,
            Index(_) => 3,
        };
        match (self, other) {
            (Field(left), Field(right)) => left.cmp(right),
            (Key(left), Key(right)) => compare_fields(left, right),
            (Value(left), Value(right)) => compare_values(left, right),
            (Index(left), Index(right)) => left.cmp(right),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

/// Key fields compared name by name, then value by value; a prefix sorts first.
fn compare_fields(left: &[(String, Value)], right: &[(String, Value)]) -> Ordering {
    for ((left_name, left_value), (right_name, right_value)) in left.iter().zip(right) {
        let order = left_name.cmp(right_name).then_with(|| compare_values(left_value, right_value));
        if order != Ordering::Equal {
            return order;
        }
    }
    left.len().cmp(&right.len())
}

/// Upstream's total order of values: numbers (by value, integers and floats alike), strings,
/// booleans, lists, maps, null.
pub(super) fn compare_values(left: &Value, right: &Value) -> Ordering {
    let rank = |value: &Value| match value {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    };
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => compare_numbers(left, right),
        (Value::String(left), Value::String(right)) => left.cmp(right),
        (Value::Bool(left), Value::Bool(right)) => left.cmp(right),
        (Value::Array(left), Value::Array(right)) => {
            for (left, right) in left.iter().zip(right) {
                let order = compare_values(left, right);
                if order != Ordering::Equal {
                    return order;
                }
            }
            left.len().cmp(&right.len())
        }
        (Value::Object(left), Value::Object(right)) => {
            // serde_json's maps iterate in key order.
            for ((left_key, left_value), (right_key, right_value)) in left.iter().zip(right) {
                let order = left_key.cmp(right_key).then_with(|| compare_values(left_value, right_value));
                if order != Ordering::Equal {
                    return order;
                }
            }
            left.len().cmp(&right.len())
        }
        _ => rank(left).cmp(&rank(right)),
    }
}

fn compare_numbers(left: &serde_json::Number, right: &serde_json::Number) -> Ordering {
    let integer = |number: &serde_json::Number| {
        number.as_i64().map(i128::from).or_else(|| number.as_u64().map(i128::from))
    };
    match (integer(left), integer(right)) {
        (Some(left), Some(right)) => left.cmp(&right),
        _ => {
            let (left, right) = (left.as_f64().unwrap_or(0.0), right.as_f64().unwrap_or(0.0));
            left.partial_cmp(&right).unwrap_or(Ordering::Equal)
        }
    }
}

/// Upstream's notation for a path: `.spec.containers[name="c"].ports[containerPort=80,protocol="TCP"]`.
pub(super) fn render_path(path: &[PathElement]) -> String {
    let mut text = String::new();
    for element in path {
        match element {
            PathElement::Field(name) => {
                let _ = write!(text, ".{name}");
            }
            PathElement::Key(fields) => {
                let fields: Vec<String> =
                    fields.iter().map(|(name, value)| format!("{name}={}", render_value(value))).collect();
                let _ = write!(text, "[{}]", fields.join(","));
            }
            PathElement::Value(value) => {
                let _ = write!(text, "[={}]", render_value(value));
            }
            PathElement::Index(index) => {
                let _ = write!(text, "[{index}]");
            }
        }
    }
    text
}

/// A value as upstream's `value.ToString` prints it: strings quoted, the rest bare.
fn render_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::String(text) => format!("{text:?}"),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(render_value).collect::<Vec<_>>().join(",")),
        Value::Object(fields) => {
            fields.iter().map(|(name, value)| format!("{name}={}", render_value(value))).collect()
        }
    }
}

/// Compact JSON as Go's `encoding/json` writes it: keys sorted (serde_json's maps are), and
/// `<`, `>`, `&`, U+2028 and U+2029 escaped. Those characters only occur inside strings, so
/// replacing them in the output is exact.
pub(super) fn go_json(value: &Value) -> String {
    let text = value.to_string();
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        match character {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    fn key(name: &str, value: Value) -> PathElement {
        PathElement::Key(vec![(name.to_owned(), value)])
    }

    #[track_caller]
    fn check_round_trip(fields_v1: Value, paths: &[&[PathElement]]) {
        let decoded = FieldSet::from_fields_v1(&fields_v1).expect("decodes");
        let mut expected = FieldSet::default();
        for path in paths {
            expected.insert(path);
        }
        assert_eq!(decoded, expected, "decoding {fields_v1}");
        assert_eq!(expected.to_fields_v1(), fields_v1, "encoding");
    }

    #[test]
    fn fields_v1_round_trips() {
        // A member with children carries ".", a leaf is an empty object, keys and values are
        // JSON after their prefix.
        let container = key("name", json!("c"));
        check_round_trip(
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:finalizers": {"v:\"a/b\"": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}}}}),
            &[
                &[field("metadata"), field("labels")],
                &[field("metadata"), field("labels"), field("app")],
                &[field("metadata"), field("finalizers"), PathElement::Value(json!("a/b"))],
                &[field("spec"), field("containers"), container.clone()],
                &[field("spec"), field("containers"), container, field("image")],
            ],
        );
    }

    #[test]
    fn keys_sort_and_escape_as_upstream() {
        // Key fields are sorted by name and written as Go writes JSON; elements sort fields
        // first, then keys, values and indexes, numbers by value.
        let port = PathElement::Key(vec![
            ("containerPort".to_owned(), json!(80)),
            ("protocol".to_owned(), json!("TCP")),
        ]);
        assert_eq!(port.fields_v1_key(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(PathElement::Value(json!("<a&b>")).fields_v1_key(), r#"v:"\u003ca\u0026b\u003e""#);
        let mut ordered =
            vec![PathElement::Index(0), PathElement::Value(json!(10)), key("port", json!(9)), field("z")];
        ordered.push(key("port", json!(10)));
        ordered.push(PathElement::Value(json!(9.5)));
        ordered.sort();
        assert_eq!(
            ordered,
            vec![
                field("z"),
                key("port", json!(9)),
                key("port", json!(10)),
                PathElement::Value(json!(9.5)),
                PathElement::Value(json!(10)),
                PathElement::Index(0),
            ]
        );
        assert_eq!(PathElement::Value(json!(1)), PathElement::Value(json!(1.0)));
    }

    #[test]
    fn set_operations_follow_upstream() {
        // Difference is level by level, recursive difference drops whole subtrees, and no
        // operation leaves an empty child behind.
        let mut set = FieldSet::default();
        set.insert(&[field("a"), field("b")]);
        set.insert(&[field("a"), field("c")]);
        set.insert(&[field("d")]);
        let mut parent = FieldSet::default();
        parent.insert(&[field("a")]);
        assert_eq!(set.difference(&parent), set, "a parent member does not remove its children");
        let mut expected = FieldSet::default();
        expected.insert(&[field("d")]);
        assert_eq!(set.recursive_difference(&parent), expected);
        let mut leaf = FieldSet::default();
        leaf.insert(&[field("a"), field("b")]);
        leaf.insert(&[field("a"), field("c")]);
        assert_eq!(set.difference(&leaf), expected);
        assert_eq!(set.intersection(&leaf), leaf);
        assert_eq!(set.intersection(&parent), FieldSet::default());
        assert_eq!(leaf.union(&expected), set);
        assert!(set.has(&[field("a"), field("b")]));
        assert!(!set.has(&[field("a")]));
        assert_eq!(
            set.paths().iter().map(|path| render_path(path)).collect::<Vec<_>>(),
            [".d", ".a.b", ".a.c"],
            "members of a level come before deeper ones"
        );
    }

    #[test]
    fn paths_render_as_upstream() {
        let path = [
            field("spec"),
            field("ports"),
            PathElement::Key(vec![("port".to_owned(), json!(80)), ("protocol".to_owned(), json!("TCP"))]),
            field("name"),
        ];
        assert_eq!(render_path(&path), r#".spec.ports[port=80,protocol="TCP"].name"#);
        assert_eq!(
            render_path(&[field("finalizers"), PathElement::Value(json!("x"))]),
            r#".finalizers[="x"]"#
        );
        assert_eq!(render_path(&[field("args"), PathElement::Index(2)]), ".args[2]");
    }

    #[test]
    fn malformed_fields_v1_is_an_error() {
        let cases = [
            (json!([]), "fieldsV1 must be a JSON object"),
            (json!({"x": {}}), "fieldsV1 key \"x\" must be at least 2 characters long"),
            (json!({"fx": {}}), "fieldsV1 key \"fx\" is missing a colon"),
            (json!({"f:a": 1}), "fieldsV1 key \"f:a\" must map to a JSON object"),
            (json!({"k:[1]": {}}), "fieldsV1 key \"k:[1]\" must hold a JSON object"),
            (json!({"i:x": {}}), "fieldsV1 key \"i:x\" is not an index"),
        ];
        for (fields_v1, expected) in cases {
            let error = FieldSet::from_fields_v1(&fields_v1).expect_err("rejected");
            assert_eq!(error.to_string(), expected);
        }
        assert!(FieldSet::from_fields_v1(&json!({"v:{": {}})).is_err());
        // Unknown element types are skipped.
        assert_eq!(FieldSet::from_fields_v1(&json!({"z:x": {}})), Ok(FieldSet::default()));
    }
}
