//! The managedFields entries of an object: decoding, encoding in upstream's order, and
//! upstream's cap on the number of `Update` entries.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Operation;
use super::field_set::{FieldSet, go_json};

const MANAGED_FIELDS: &str = "managedFields";
/// The entry the oldest `Update` entries are merged into past [`UPDATE_ENTRIES_MAX`].
const ANCIENT_CHANGES: &str = "ancient-changes";
/// How many `Update` entries an object keeps, as upstream: each update by a new manager adds one.
const UPDATE_ENTRIES_MAX: usize = 10;

/// One managedFields entry, decoded.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) manager: String,
    pub(super) operation: Operation,
    pub(super) api_version: String,
    pub(super) subresource: Option<String>,
    pub(super) time: Option<String>,
    pub(super) fields: FieldSet,
}

/// An object's managedFields, by upstream's manager identifier (manager, operation,
/// subresource, and apiVersion for updates).
#[derive(Debug, Clone, Default)]
pub(super) struct Managed {
    pub(super) entries: BTreeMap<String, Entry>,
}

/// Upstream's manager identifier: the entry's JSON without time and fields, and without
/// apiVersion for an applier, so that an applier has one entry whatever version it applies.
pub(super) fn identifier(
    manager: &str,
    operation: Operation,
    api_version: &str,
    subresource: Option<&str>,
) -> String {
    let mut fields = Vec::new();
    if !manager.is_empty() {
        fields.push(format!("\"manager\":{}", go_json(&Value::String(manager.to_owned()))));
    }
    fields.push(format!("\"operation\":\"{operation}\""));
    if operation == Operation::Update && !api_version.is_empty() {
        fields.push(format!("\"apiVersion\":{}", go_json(&Value::String(api_version.to_owned()))));
    }
    if let Some(subresource) = subresource.filter(|subresource| !subresource.is_empty()) {
        fields.push(format!("\"subresource\":{}", go_json(&Value::String(subresource.to_owned()))));
    }
    format!("{{{}}}", fields.join(","))
}

impl Entry {
    fn identifier(&self) -> String {
        identifier(&self.manager, self.operation, &self.api_version, self.subresource.as_deref())
    }

    fn decode(entry: &Value, index: usize) -> Result<Entry, String> {
        let text = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        if text("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {index}")),
            other => return Err(format!("invalid fieldsType {other:?} in managed fields entry {index}")),
        }
        let fields = match entry.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(fields) => FieldSet::from_fields_v1(fields)
                .map_err(|error| format!("error decoding set of managed fields entry {index}: {error}"))?,
        };
        Ok(Entry {
            manager: text("manager").to_owned(),
            operation,
            api_version: text("apiVersion").to_owned(),
            subresource: Some(text("subresource"))
                .filter(|subresource| !subresource.is_empty())
                .map(str::to_owned),
            time: entry.get("time").and_then(Value::as_str).map(str::to_owned),
            fields,
        })
    }

    fn encode(&self) -> Value {
        let mut entry = Map::new();
        if !self.manager.is_empty() {
            entry.insert("manager".into(), Value::String(self.manager.clone()));
        }
        entry.insert("operation".into(), Value::String(self.operation.to_string()));
        entry.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            entry.insert("time".into(), Value::String(time.clone()));
        }
        entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        entry.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            entry.insert("subresource".into(), Value::String(subresource.clone()));
        }
        Value::Object(entry)
    }

    /// The entry's time in whole seconds, which is what upstream orders entries by.
    fn time_seconds(&self) -> i64 {
        let time = self.time.as_deref().and_then(|time| time.parse::<jiff::Timestamp>().ok());
        time.map_or(0, |time| time.as_second())
    }
}

impl Managed {
    pub(super) fn decode(object: &Value) -> Result<Managed, String> {
        let entries = match object.pointer("/metadata/managedFields") {
            None | Some(Value::Null) => return Ok(Managed::default()),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err("metadata.managedFields must be a list".into()),
        };
        let mut managed = Managed::default();
        for (index, entry) in entries.iter().enumerate() {
            let entry = Entry::decode(entry, index)?;
            managed.entries.insert(entry.identifier(), entry);
        }
        Ok(managed)
    }

    /// Writes the entries into `object`'s metadata, in upstream's order: appliers first, then
    /// by time, manager, apiVersion and subresource. No entries, no managedFields.
    pub(super) fn write_into(&self, object: &mut Value) {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by(|left, right| {
            (left.operation, left.time_seconds(), &left.manager, &left.api_version, &left.subresource).cmp(&(
                right.operation,
                right.time_seconds(),
                &right.manager,
                &right.api_version,
                &right.subresource,
            ))
        });
        let encoded: Vec<Value> = entries.into_iter().map(Entry::encode).collect();
        if encoded.is_empty() {
            remove_managed_fields(object);
        } else if let Some(metadata) = metadata_mut(object) {
            metadata.insert(MANAGED_FIELDS.to_owned(), Value::Array(encoded));
        }
    }

    /// Merges the oldest `Update` entries, per apiVersion, into `ancient-changes` until at most
    /// [`UPDATE_ENTRIES_MAX`] are left (upstream's `capManagersManager`).
    pub(super) fn cap_update_entries(&mut self) {
        let mut updaters: Vec<(i64, String)> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.operation == Operation::Update)
            .map(|(id, entry)| (entry.time_seconds(), id.clone()))
            .collect();
        updaters.sort();
        let mut remaining = updaters.len();
        let mut first_of_version: BTreeMap<String, String> = BTreeMap::new();
        for (_, id) in updaters {
            if remaining <= UPDATE_ENTRIES_MAX {
                break;
            }
            let Some(entry) = self.entries.get(&id).cloned() else { continue };
            let Some(first) = first_of_version.get(&entry.api_version) else {
                first_of_version.insert(entry.api_version.clone(), id);
                continue;
            };
            let bucket = identifier(ANCIENT_CHANGES, Operation::Update, &entry.api_version, None);
            if !self.entries.contains_key(&bucket)
                && let Some(first) = self.entries.remove(first)
            {
                let renamed = Entry { manager: ANCIENT_CHANGES.to_owned(), subresource: None, ..first };
                self.entries.insert(bucket.clone(), renamed);
            }
            self.entries.remove(&id);
            if let Some(ancient) = self.entries.get_mut(&bucket) {
                ancient.fields = entry.fields.union(&ancient.fields);
                ancient.time = entry.time;
            }
            remaining -= 1;
        }
    }
}

/// The entries an update starts from (upstream's `decodeLiveOrNew`): the stored object's for a
/// subresource; otherwise the new object's if it carries valid ones (a client may rewrite
/// them), none if it resets them with `[]` or `[{}]`, else the stored object's.
pub(super) fn managed_before_update(old: Option<&Value>, new: &Value, subresource: Option<&str>) -> Managed {
    let stored = || old.and_then(|old| Managed::decode(old).ok()).unwrap_or_default();
    if subresource.is_some() {
        return stored();
    }
    let is_blank = |entry: &Value| {
        entry
            .as_object()
            .is_some_and(|entry| entry.values().all(|value| value.is_null() || value.as_str() == Some("")))
    };
    match new.pointer("/metadata/managedFields") {
        Some(Value::Array(entries)) if entries.is_empty() => Managed::default(),
        Some(Value::Array(entries)) if entries.len() == 1 && is_blank(&entries[0]) => Managed::default(),
        _ => match Managed::decode(new) {
            Ok(managed) if !managed.entries.is_empty() => managed,
            _ => stored(),
        },
    }
}

/// The metadata of `object`, created if missing; `None` if `object` is not an object.
fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let object = object.as_object_mut()?;
    object.entry("metadata").or_insert_with(|| Value::Object(Map::new())).as_object_mut()
}

pub(super) fn remove_managed_fields(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove(MANAGED_FIELDS);
    }
}

/// Gives `to` the managedFields `from` has, if any.
pub(super) fn copy_managed_fields(from: Option<&Value>, to: &mut Value) {
    let previous = from.and_then(|from| from.pointer("/metadata/managedFields")).cloned();
    if let (Some(previous), Some(metadata)) = (previous, metadata_mut(to)) {
        metadata.insert(MANAGED_FIELDS.to_owned(), previous);
    }
}
