//! get and list: resourceVersion semantics, selectors, paging, and Table output.

use http::StatusCode;
use serde_json::{Value, json};
use shoal_store::mvcc::Revision;

use crate::api::{Api, Call, Query, Reply, TABLE_CONTENT_TYPE};
use crate::error::ApiError;
use crate::objects::{ListPage, ListRequest, ReadAt, not_found};
use crate::resource::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::table;

pub async fn get(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let name = target.name.expect("get has a name");
    let read = read_at(&call.query, false)?;
    let stored = api.objects.get(target.resource, target.namespace, name, read).await?;
    let object = stored.ok_or_else(|| not_found(target.resource, name))?.object;
    if call.wants_table() {
        let revision = resource_version(&object);
        return Ok(table_reply(target.resource, &[object], revision, None, &call.query));
    }
    Ok(Reply::ok(object))
}

pub async fn list(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let filter = Filter::from_query(target.resource, &call.query)?;
    let matches = |object: &Value| filter.matches(object);
    let request = ListRequest {
        resource: target.resource,
        namespace: target.namespace,
        read: read_at(&call.query, true)?,
        limit: call.query.limit,
        continue_token: call.query.continue_token.as_deref(),
        filter: &matches,
    };
    if call.wants_table() {
        let page = api.objects.list(&request).await?;
        let continue_token = page.continue_token.as_deref();
        return Ok(table_reply(target.resource, &page.items, page.revision, continue_token, &call.query));
    }
    // Without selectors the objects' stored bytes go out unparsed.
    let page = if filter.is_everything() {
        api.objects.list_raw(&request).await?
    } else {
        let page = api.objects.list(&request).await?;
        let items = page.items.iter().map(|item| serde_json::to_vec(item).expect("JSON values serialize"));
        ListPage { items: items.collect(), revision: page.revision, continue_token: page.continue_token }
    };
    Ok(Reply::Raw(list_response(target.resource, page)))
}

/// A `<Kind>List` response whose items are JSON documents already.
fn list_response(resource: &ResourceType, page: ListPage<Vec<u8>>) -> http::Response<crate::server::Body> {
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = Value::String(token);
    }
    let head = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata});
    let head = serde_json::to_vec(&head).expect("JSON values serialize");
    let size = head.len() + page.items.iter().map(|item| item.len() + 1).sum::<usize>() + 16;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(&head[..head.len() - 1]);
    body.extend_from_slice(b",\"items\":[");
    for (index, item) in page.items.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, crate::api::JSON)
        .body(crate::server::full(body))
        .expect("a response with valid headers builds")
}

/// The label and field selectors of a list or watch.
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
    name: Option<String>,
}

impl Filter {
    pub fn from_query(resource: &ResourceType, query: &Query) -> Result<Self, ApiError> {
        let labels = match query.label_selector.as_deref() {
            Some(text) => {
                LabelSelector::parse(text).map_err(|error| ApiError::bad_request(error.to_string()))?
            }
            None => LabelSelector::everything(),
        };
        let fields = match query.field_selector.as_deref() {
            Some(text) => FieldSelector::parse(resource.kind, text)
                .map_err(|error| ApiError::bad_request(error.to_string()))?,
            None => FieldSelector::everything(),
        };
        Ok(Self { labels, fields, name: None })
    }

    /// Whether every object passes.
    pub fn is_everything(&self) -> bool {
        self.name.is_none() && self.labels.is_everything() && self.fields.is_everything()
    }

    /// Whether an object's passing shows in its name alone: `Some(None)` when every object
    /// passes, `Some(Some(name))` when only the object of that name does.
    pub fn by_name_only(&self) -> Option<Option<&str>> {
        if !self.labels.is_everything() {
            return None;
        }
        let field_name = if self.fields.is_everything() { None } else { Some(self.fields.only_name()?) };
        match (self.name.as_deref(), field_name) {
            (None, None) => Some(None),
            (Some(name), None) | (None, Some(name)) => Some(Some(name)),
            (Some(name), Some(other)) if name == other => Some(Some(name)),
            (Some(_), Some(_)) => None,
        }
    }

    /// Also requires `metadata.name == name` (a watch of one object).
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn matches(&self, object: &Value) -> bool {
        let name_matches = self.name.as_deref().is_none_or(|name| crate::meta::name(object) == name);
        name_matches && self.labels.matches_object(object) && self.fields.matches(object)
    }
}

/// What state a read may see, from `resourceVersion` and `resourceVersionMatch`.
pub fn read_at(query: &Query, list: bool) -> Result<ReadAt, ApiError> {
    let Some(text) = query.resource_version.as_deref() else {
        if query.resource_version_match.is_some() {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        return Ok(ReadAt::Latest);
    };
    let revision: Revision = text
        .parse()
        .ok()
        .filter(|revision| *revision >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version {text:?}")))?;
    match (query.resource_version_match.as_deref(), revision) {
        (Some("Exact"), 0) => Err(ApiError::bad_request(
            "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
        )),
        (Some("Exact"), _) if list => Ok(ReadAt::Exact(revision)),
        (None | Some("NotOlderThan"), 0) => Ok(ReadAt::Any),
        (None | Some("NotOlderThan"), _) => Ok(ReadAt::NotOlderThan(revision)),
        (Some(other), _) => Err(ApiError::bad_request(format!("unsupported resourceVersionMatch {other:?}"))),
    }
}

fn resource_version(object: &Value) -> Revision {
    crate::meta::metadata_str(object, "resourceVersion").parse().unwrap_or(0)
}

/// A `meta.k8s.io/v1` Table of `objects`, rows carrying `PartialObjectMetadata` by default.
pub fn table(resource: &ResourceType, objects: &[Value], query: &Query) -> Value {
    let now = jiff::Timestamp::now();
    let columns: Vec<Value> = table::columns(resource.kind)
        .iter()
        .map(|column| {
            json!({
                "name": column.name,
                "type": column.type_,
                "format": column.format,
                "description": column.description,
                "priority": column.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": table::cells(resource.kind, object, now)});
            match query.include_object.as_deref() {
                Some("None") => {}
                Some("Object") => row["object"] = object.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows})
}

fn table_reply(
    resource: &ResourceType,
    objects: &[Value],
    revision: Revision,
    continue_token: Option<&str>,
    query: &Query,
) -> Reply {
    let mut body = table(resource, objects, query);
    body["metadata"] = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        body["metadata"]["continue"] = Value::String(token.to_owned());
    }
    Reply::Json { code: StatusCode::OK, body, content_type: TABLE_CONTENT_TYPE, warnings: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(resource_version: Option<&str>, resource_version_match: Option<&str>) -> Query {
        Query {
            resource_version: resource_version.map(str::to_owned),
            resource_version_match: resource_version_match.map(str::to_owned),
            ..Query::default()
        }
    }

    fn filter(labels: Option<&str>, fields: Option<&str>, name: Option<&str>) -> Filter {
        let query = Query {
            label_selector: labels.map(str::to_owned),
            field_selector: fields.map(str::to_owned),
            ..Query::default()
        };
        let filter =
            Filter::from_query(crate::resource::find("", "v1", "configmaps").unwrap(), &query).unwrap();
        match name {
            Some(name) => filter.with_name(name),
            None => filter,
        }
    }

    // A filter is decided by the name only when it asks nothing but the name.
    #[test]
    fn filters_decided_by_the_name() {
        assert_eq!(filter(None, None, None).by_name_only(), Some(None));
        assert_eq!(filter(None, None, Some("a")).by_name_only(), Some(Some("a")));
        assert_eq!(filter(None, Some("metadata.name=a"), None).by_name_only(), Some(Some("a")));
        assert_eq!(filter(None, Some("metadata.name=a"), Some("a")).by_name_only(), Some(Some("a")));
        assert_eq!(filter(None, Some("metadata.name=b"), Some("a")).by_name_only(), None);
        assert_eq!(filter(None, Some("metadata.name!=a"), None).by_name_only(), None);
        assert_eq!(filter(Some("app=web"), None, Some("a")).by_name_only(), None);
        assert_eq!(filter(None, Some("metadata.namespace=x"), None).by_name_only(), None);
    }

    // resourceVersion and resourceVersionMatch map to what the read may see, as in
    // Kubernetes' list semantics table.
    #[test]
    fn resource_version_semantics() {
        assert_eq!(read_at(&query(None, None), true).ok(), Some(ReadAt::Latest));
        assert_eq!(read_at(&query(Some("0"), None), true).ok(), Some(ReadAt::Any));
        assert_eq!(read_at(&query(Some("12"), None), true).ok(), Some(ReadAt::NotOlderThan(12)));
        assert_eq!(
            read_at(&query(Some("12"), Some("NotOlderThan")), true).ok(),
            Some(ReadAt::NotOlderThan(12))
        );
        assert_eq!(read_at(&query(Some("12"), Some("Exact")), true).ok(), Some(ReadAt::Exact(12)));
        assert!(read_at(&query(Some("0"), Some("Exact")), true).is_err());
        assert!(read_at(&query(None, Some("Exact")), true).is_err());
        assert!(read_at(&query(Some("-3"), None), true).is_err());
        assert!(read_at(&query(Some("abc"), None), true).is_err());
    }
}
