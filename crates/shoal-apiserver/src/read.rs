//! get and list: resourceVersion semantics, selectors, paging, and Table output.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};
use serde_json::{Value, json};
use shoal_store::mvcc::Revision;

use crate::api::{
    Api, Call, METADATA_CONTENT_TYPE, METADATA_LIST_CONTENT_TYPE, Query, Reply, Shape, TABLE_CONTENT_TYPE,
};
use crate::error::ApiError;
use crate::objects::{
    ListPage, ListRequest, META_V1, PARTIAL_METADATA_LIST_KIND, RawObject, ReadAt, not_found,
    partial_metadata,
};
use crate::resource::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::table;

pub async fn get(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    let name = target.name.expect("get has a name");
    let read = read_at(&call.query, false)?;
    let stored = api.objects.get(target.resource, target.namespace, name, read).await?;
    let object = stored.ok_or_else(|| not_found(target.resource, name))?.object;
    Ok(match call.shape() {
        Shape::Objects => Reply::ok(object),
        Shape::Table => {
            let revision = resource_version(&object);
            table_reply(target.resource, &[object], revision, None, &call.query)
        }
        Shape::Metadata => Reply::Json {
            code: StatusCode::OK,
            body: partial_metadata(&object),
            content_type: METADATA_CONTENT_TYPE,
            warnings: Vec::new(),
        },
    })
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
    let shape = call.shape();
    if shape == Shape::Table {
        let page = api.objects.list(&request).await?;
        let continue_token = page.continue_token.as_deref();
        return Ok(table_reply(target.resource, &page.items, page.revision, continue_token, &call.query));
    }
    let metadata_only = shape == Shape::Metadata;
    // Without selectors the objects' stored bytes go out unparsed.
    let page = if filter.is_everything() {
        let mut page = api.objects.list_raw(&request).await?;
        if metadata_only {
            page.items = page.items.iter().map(RawObject::partial_metadata).collect();
        }
        page
    } else {
        let page = api.objects.list(&request).await?;
        let encode = |object: &Value| {
            if metadata_only {
                RawObject::serialized(&partial_metadata(object))
            } else {
                RawObject::serialized(object)
            }
        };
        let items = page.items.iter().map(encode).collect();
        ListPage { items, revision: page.revision, continue_token: page.continue_token }
    };
    let (kind, api_version, content_type) = if metadata_only {
        (PARTIAL_METADATA_LIST_KIND.to_owned(), META_V1.to_owned(), METADATA_LIST_CONTENT_TYPE)
    } else {
        (format!("{}List", target.resource.kind), target.resource.api_version(), crate::api::JSON)
    };
    Ok(Reply::Raw(list_response(&kind, &api_version, content_type, page)))
}

/// A list response (`kind`, `api_version`) around objects encoded already. The body is
/// written out a chunk at a time as the connection takes it, so the first bytes are on their
/// way (and being encrypted, and read) while the rest is still being assembled, and no copy
/// of the whole list is ever held.
fn list_response(
    kind: &str,
    api_version: &str,
    content_type: &'static str,
    page: ListPage<RawObject>,
) -> http::Response<crate::server::Body> {
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = Value::String(token);
    }
    let head = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
    let mut head = serde_json::to_vec(&head).expect("JSON values serialize");
    head.pop(); // The closing brace: the items follow.
    head.extend_from_slice(b",\"items\":[");
    http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(ListBody::new(head, page.items).boxed_unsync())
        .expect("a response with valid headers builds")
}

/// The bytes of a list, assembled a chunk at a time; its exact length is known up front, so
/// the response carries a Content-Length.
struct ListBody {
    head: Option<Vec<u8>>,
    items: std::vec::IntoIter<RawObject>,
    /// Bytes not yet handed out.
    remaining: u64,
}

/// How much of a list one chunk holds (at least one whole item).
const LIST_CHUNK_BYTES: usize = 128 * 1024;
const LIST_TAIL: &[u8] = b"]}";

impl ListBody {
    fn new(head: Vec<u8>, items: Vec<RawObject>) -> Self {
        let separators = items.len().saturating_sub(1);
        let length = head.len()
            + items.iter().map(RawObject::encoded_len).sum::<usize>()
            + separators
            + LIST_TAIL.len();
        ListBody { head: Some(head), items: items.into_iter(), remaining: length as u64 }
    }

    /// The next chunk, counted off `remaining`.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let chunk = self.assemble_chunk()?;
        self.remaining -= chunk.len() as u64;
        Some(chunk)
    }

    fn assemble_chunk(&mut self) -> Option<Vec<u8>> {
        if self.remaining == 0 {
            return None;
        }
        let first = self.head.is_some();
        let mut chunk = self.head.take().unwrap_or_default();
        chunk.reserve(LIST_CHUNK_BYTES);
        for (index, item) in self.items.by_ref().enumerate() {
            if index > 0 || !first {
                chunk.push(b',');
            }
            item.write_to(&mut chunk);
            if chunk.len() >= LIST_CHUNK_BYTES {
                return Some(chunk);
            }
        }
        chunk.extend_from_slice(LIST_TAIL);
        Some(chunk)
    }
}

impl hyper::body::Body for ListBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = self.get_mut().next_chunk();
        Poll::Ready(chunk.map(|chunk| Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
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

    // A list body, chunk by chunk, is one JSON document of exactly the announced length,
    // with every item in order: none, one, and more than fit one chunk.
    #[test]
    fn a_list_body_adds_up() {
        let head = br#"{"kind":"PodList","metadata":{},"items":["#.to_vec();
        for count in [0, 1, 2, 1_000] {
            let items: Vec<RawObject> = (0..count)
                .map(|i| {
                    RawObject::serialized(
                        &json!({"metadata": {"name": format!("pod-{i}")}, "pad": "x".repeat(300)}),
                    )
                })
                .collect();
            let mut body = ListBody::new(head.clone(), items);
            let announced = body.remaining;
            let (mut bytes, mut chunks) = (Vec::new(), 0);
            while let Some(chunk) = body.next_chunk() {
                bytes.extend_from_slice(&chunk);
                chunks += 1;
            }
            assert_eq!(bytes.len() as u64, announced, "{count} items");
            let list: Value = serde_json::from_slice(&bytes).expect("one JSON document");
            let names: Vec<&str> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["metadata"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, (0..count).map(|i| format!("pod-{i}")).collect::<Vec<_>>());
            assert_eq!(chunks > 1, bytes.len() > LIST_CHUNK_BYTES, "{count} items in {chunks} chunks");
        }
    }

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
