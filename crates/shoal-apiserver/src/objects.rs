//! Kubernetes objects in the replicated store: keys, revisions, optimistic concurrency, paging.
//!
//! Each object is one key, `/registry/<group>/<plural>/<namespace>/<name>` (the namespace
//! segment absent for cluster-scoped kinds, `core` standing for the core group), holding the
//! object's JSON without `metadata.resourceVersion`: the resourceVersion is the key's
//! `mod_revision`, filled in on every read. Every conditional write is a store transaction
//! that compares the key's `mod_revision`, which is how a stale update becomes a 409.
//!
//! Architecture invariant: the store never sees a Secret in the clear; `SecretBox` seals
//! values of the `secrets` resource before they are proposed and opens them after reads.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde_json::Value;
use shoal_store::command::{CommandError, Operation, Outcome};
use shoal_store::mvcc::{KeyValue, MvccError, Revision};
use shoal_store::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyRange, PutRequest, RangeRequest, RequestOp,
    ResponseOp, TxnRequest,
};
use shoal_store::store::{Consistency, ReadError, Store, WriteError};

use crate::error::ApiError;
use crate::fence::Fence;
use crate::resource::ResourceType;
use crate::secret_box::SecretBox;

/// The prefix of every key the API server writes.
pub const REGISTRY_PREFIX: &str = "/registry/";
/// Keys read from the store per round while a filtered list fills a page.
const LIST_BATCH_KEYS: i64 = 1_000;
/// How long a read with `resourceVersionMatch=NotOlderThan` waits for this member to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(3);

/// Which state a read may see (the list and get `resourceVersion` semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAt {
    /// The latest state: a linearizable read (resourceVersion unset).
    Latest,
    /// Whatever this member has (resourceVersion="0").
    Any,
    /// This member's state once it has applied at least this revision.
    NotOlderThan(Revision),
    /// Exactly this revision (resourceVersionMatch=Exact, and continue tokens).
    Exact(Revision),
}

/// An object read from the store, with its resourceVersion filled in.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Value,
    pub revision: Revision,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage<T = Value> {
    pub items: Vec<T>,
    /// The revision the whole list (across pages) is read at.
    pub revision: Revision,
    /// The token for the next page, if the list was cut short by the limit.
    pub continue_token: Option<String>,
}

/// A list request.
pub struct ListRequest<'a> {
    pub resource: &'static ResourceType,
    pub namespace: Option<&'a str>,
    pub read: ReadAt,
    /// At most this many items; `None` for all.
    pub limit: Option<usize>,
    pub continue_token: Option<&'a str>,
    /// Keeps an item in the page (label and field selectors).
    pub filter: &'a (dyn Fn(&Value) -> bool + Sync),
}

/// The store, seen as a set of Kubernetes objects.
#[derive(Clone)]
pub struct ObjectStore {
    store: Store,
    secret_box: SecretBox,
}

/// Where a list continues: the revision of the first page and the next key.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

impl ObjectStore {
    pub fn new(store: Store, secret_box: SecretBox) -> Self {
        Self { store, secret_box }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store key of one object.
    pub fn key(resource: &ResourceType, namespace: Option<&str>, name: &str) -> String {
        let mut key = Self::collection_prefix(resource, namespace);
        key.push_str(name);
        key
    }

    /// The prefix of a collection: every namespace's when `namespace` is `None`.
    pub fn collection_prefix(resource: &ResourceType, namespace: Option<&str>) -> String {
        let group = if resource.group.is_empty() { "core" } else { resource.group };
        match namespace {
            Some(namespace) => format!("{REGISTRY_PREFIX}{group}/{}/{namespace}/", resource.plural),
            None => format!("{REGISTRY_PREFIX}{group}/{}/", resource.plural),
        }
    }

    pub async fn get(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        read: ReadAt,
    ) -> Result<Option<Stored>, ApiError> {
        let key = Self::key(resource, namespace, name);
        let request = RangeRequest { range: KeyRange::key(key), ..RangeRequest::default() };
        let (response, _) = self.range(request, read).await?;
        response.kvs.into_iter().next().map(|kv| self.decode(resource, &kv)).transpose()
    }

    /// One page of a collection, filtered, read at one revision across pages.
    pub async fn list(&self, request: &ListRequest<'_>) -> Result<ListPage, ApiError> {
        let (resource, filter) = (request.resource, request.filter);
        self.scan(request, |kv| {
            let object = self.decode(resource, kv)?.object;
            Ok(filter(&object).then_some(object))
        })
        .await
    }

    /// A page of a collection as the JSON bytes of its objects, unfiltered: a list without
    /// selectors then never parses an object (`request.filter` is not consulted).
    pub async fn list_raw(&self, request: &ListRequest<'_>) -> Result<ListPage<RawObject>, ApiError> {
        let resource = request.resource;
        self.scan(request, |kv| self.decode_raw(resource, kv).map(Some)).await
    }

    /// Reads a collection page by page at one revision, keeping what `keep` returns.
    async fn scan<T>(
        &self,
        request: &ListRequest<'_>,
        mut keep: impl FnMut(&KeyValue) -> Result<Option<T>, ApiError>,
    ) -> Result<ListPage<T>, ApiError> {
        let prefix = Self::collection_prefix(request.resource, request.namespace);
        let range_end = shoal_store::request::prefix_end(prefix.as_bytes());
        let (mut start, mut read) = (Bytes::from(prefix.clone()), request.read);
        if let Some(token) = request.continue_token {
            // A list across namespaces resumes at `namespace/name`; one in a namespace, or of a
            // kind without namespaces, at a bare name.
            let across_namespaces = request.resource.namespaced && request.namespace.is_none();
            let token = decode_continue(token, usize::from(across_namespaces))?;
            start = Bytes::from(format!("{prefix}{}", token.start));
            read = ReadAt::Exact(token.rv);
        }
        let limit = request.limit.unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut revision = None;
        loop {
            let range = KeyRange { key: start.clone(), range_end: range_end.clone() };
            let batch = RangeRequest { range, limit: LIST_BATCH_KEYS, ..RangeRequest::default() };
            let (response, read_revision) = self.range(batch, read).await?;
            let revision = *revision.get_or_insert(read_revision);
            read = ReadAt::Exact(revision);
            let last_key = response.kvs.last().map(|kv| kv.key.clone());
            let mut kvs = response.kvs.iter();
            while let Some(kv) = kvs.next() {
                let Some(item) = keep(kv)? else { continue };
                items.push(item);
                let more_keys = kvs.len() > 0 || response.more;
                if items.len() == limit && more_keys {
                    let name = kv.key[prefix.len()..].to_vec();
                    let start = format!("{}\0", String::from_utf8_lossy(&name));
                    let token = encode_continue(&ContinueToken { rv: revision, start });
                    return Ok(ListPage { items, revision, continue_token: Some(token) });
                }
            }
            let Some(last_key) = last_key.filter(|_| response.more) else {
                return Ok(ListPage { items, revision, continue_token: None });
            };
            let mut next = last_key.to_vec();
            next.push(0);
            start = Bytes::from(next);
        }
    }

    /// Creates an object; 409 AlreadyExists if the key exists.
    pub async fn create(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        object: Value,
    ) -> Result<Stored, ApiError> {
        match self.create_claiming(resource, namespace, name, object, &[]).await? {
            Ok(stored) => Ok(stored),
            Err(claim) => unreachable!("nothing was claimed, yet {claim} was taken"),
        }
    }

    /// Creates an object together with claim keys (allocated addresses and ports) that must
    /// not exist yet, all or nothing. 409 AlreadyExists if the object exists; `Ok(Err(key))`
    /// if a claim is taken.
    pub async fn create_claiming(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        object: Value,
        claims: &[String],
    ) -> Result<Result<Stored, String>, ApiError> {
        let key = Self::key(resource, namespace, name);
        let keys: Vec<String> = std::iter::once(key.clone()).chain(claims.iter().cloned()).collect();
        let absent = |key: &String| Compare {
            range: KeyRange::key(key.clone()),
            result: CompareResult::Equal,
            target: CompareTarget::CreateRevision(0),
        };
        let mut success = vec![RequestOp::Put(PutRequest {
            key: Bytes::from(key.clone()),
            value: self.encode(resource, &object)?,
            ..PutRequest::default()
        })];
        let owner = format!("{}/{}", namespace.unwrap_or(""), name);
        success.extend(claims.iter().map(|claim| {
            RequestOp::Put(PutRequest {
                key: Bytes::from(claim.clone()),
                value: Bytes::from(owner.clone()),
                ..PutRequest::default()
            })
        }));
        let probes = keys
            .iter()
            .map(|key| {
                RequestOp::Range(RangeRequest {
                    range: KeyRange::key(key.clone()),
                    count_only: true,
                    ..RangeRequest::default()
                })
            })
            .collect();
        let txn = TxnRequest { compare: keys.iter().map(absent).collect(), success, failure: probes };
        let (succeeded, revision, responses) = self.txn(txn).await?;
        if succeeded {
            return Ok(Ok(Stored { object: with_resource_version(object, revision), revision }));
        }
        let present =
            |index: usize| matches!(responses.get(index), Some(ResponseOp::Range(range)) if range.count > 0);
        if present(0) {
            return Err(already_exists(resource, name));
        }
        let taken = (1..keys.len())
            .find(|&index| present(index))
            .map_or_else(|| keys[0].clone(), |i| keys[i].clone());
        Ok(Err(taken))
    }

    /// Replaces an object if it is still at `expected_revision`; 409 Conflict otherwise, 404
    /// if it is gone.
    pub async fn update(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        object: Value,
        expected_revision: Revision,
    ) -> Result<Stored, ApiError> {
        let key = Self::key(resource, namespace, name);
        let put = RequestOp::Put(PutRequest {
            key: Bytes::from(key.clone()),
            value: self.encode(resource, &object)?,
            ..PutRequest::default()
        });
        let (succeeded, revision, present) = self.conditional(&key, expected_revision, put).await?;
        match (succeeded, present) {
            (true, _) => Ok(Stored { object: with_resource_version(object, revision), revision }),
            (false, true) => Err(conflict(resource, name)),
            (false, false) => Err(not_found(resource, name)),
        }
    }

    /// Deletes an object if it is still at `expected_revision`, releasing its claim keys in
    /// the same transaction; returns the deletion's revision.
    pub async fn delete(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        expected_revision: Revision,
        release: &[String],
    ) -> Result<Revision, ApiError> {
        let key = Self::key(resource, namespace, name);
        let deletes = std::iter::once(&key)
            .chain(release)
            .map(|key| {
                RequestOp::DeleteRange(DeleteRangeRequest {
                    range: KeyRange::key(key.clone()),
                    prev_kv: false,
                })
            })
            .collect();
        let (succeeded, revision, present) = self.conditional_all(&key, expected_revision, deletes).await?;
        match (succeeded, present) {
            (true, _) => Ok(revision),
            (false, true) => Err(conflict(resource, name)),
            (false, false) => Err(not_found(resource, name)),
        }
    }

    /// Runs `op` if `key` is at `expected_revision`; returns (succeeded, revision, key exists).
    async fn conditional(
        &self,
        key: &str,
        expected_revision: Revision,
        op: RequestOp,
    ) -> Result<(bool, Revision, bool), ApiError> {
        self.conditional_all(key, expected_revision, vec![op]).await
    }

    /// Runs `ops` if `key` is at `expected_revision`; returns (succeeded, revision, key exists).
    async fn conditional_all(
        &self,
        key: &str,
        expected_revision: Revision,
        ops: Vec<RequestOp>,
    ) -> Result<(bool, Revision, bool), ApiError> {
        let unchanged = Compare {
            range: KeyRange::key(key.to_owned()),
            result: CompareResult::Equal,
            target: CompareTarget::ModRevision(expected_revision),
        };
        let probe = RequestOp::Range(RangeRequest {
            range: KeyRange::key(key.to_owned()),
            count_only: true,
            ..RangeRequest::default()
        });
        let txn = TxnRequest { compare: vec![unchanged], success: ops, failure: vec![probe] };
        let (succeeded, revision, responses) = self.txn(txn).await?;
        let present = match responses.first() {
            Some(ResponseOp::Range(range)) => range.count > 0,
            _ => true,
        };
        Ok((succeeded, revision, present))
    }

    /// Runs a transaction; a fenced request's (`fence.rs`) also requires its Lease unmoved,
    /// and fails with `FenceMoved` when that is why it failed.
    async fn txn(&self, mut txn: TxnRequest) -> Result<(bool, Revision, Vec<ResponseOp>), ApiError> {
        let fence = Fence::current();
        if let Some(fence) = &fence {
            txn.compare.push(Compare {
                range: KeyRange::key(fence.key.clone()),
                result: CompareResult::Equal,
                target: CompareTarget::ModRevision(fence.revision),
            });
            // Last, so that the caller's own failure responses keep their positions.
            txn.failure.push(RequestOp::Range(RangeRequest {
                range: KeyRange::key(fence.key.clone()),
                keys_only: true,
                ..RangeRequest::default()
            }));
        }
        let response = self.store.write(Operation::Txn(txn)).await.map_err(write_error)?;
        let Ok(Outcome::Txn(txn)) = response.outcome else {
            panic!("the store answered a transaction with {:?}", response.outcome)
        };
        let mut responses = txn.responses;
        if let (Some(fence), false) = (fence, txn.succeeded) {
            let lease_revision = match responses.pop() {
                Some(ResponseOp::Range(range)) => range.kvs.first().map(|kv| kv.mod_revision),
                other => panic!("the fence's probe was answered with {other:?}"),
            };
            if lease_revision != Some(fence.revision) {
                return Err(ApiError::FenceMoved);
            }
        }
        Ok((txn.succeeded, response.revision, responses))
    }

    /// Every ClusterIP and NodePort claimed (`allocator`'s keys), read linearizably.
    pub async fn allocator_claims(&self) -> Result<crate::allocator::Taken, ApiError> {
        let mut claims = crate::allocator::Taken::new();
        for prefix in [crate::allocator::ip_key(""), crate::allocator::node_port_key_prefix()] {
            let range_end = shoal_store::request::prefix_end(prefix.as_bytes());
            let range = KeyRange { key: Bytes::from(prefix), range_end };
            let request = RangeRequest { range, keys_only: true, ..RangeRequest::default() };
            let (response, _) = self.range(request, ReadAt::Latest).await?;
            claims.extend(response.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()));
        }
        Ok(claims)
    }

    /// Reads a range at `read`, returning the response and the revision it reflects.
    async fn range(
        &self,
        mut request: RangeRequest,
        read: ReadAt,
    ) -> Result<(shoal_store::request::RangeResponse, Revision), ApiError> {
        let consistency = match read {
            ReadAt::Latest => Consistency::Linearizable,
            ReadAt::Any => Consistency::Serializable,
            ReadAt::NotOlderThan(revision) => {
                self.wait_for_revision(revision).await?;
                Consistency::Serializable
            }
            ReadAt::Exact(revision) => {
                self.wait_for_revision(revision).await?;
                request.revision = revision;
                Consistency::Serializable
            }
        };
        let (response, current) = self.store.range(&request, consistency).await.map_err(read_error)?;
        let revision = if request.revision > 0 { request.revision } else { current };
        Ok((response, revision))
    }

    async fn wait_for_revision(&self, revision: Revision) -> Result<(), ApiError> {
        let mut applied = self.store.shared().revision.subscribe();
        let reached = applied.wait_for(|current| *current >= revision);
        match tokio::time::timeout(CATCH_UP_TIMEOUT, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_closed)) => Err(ApiError::ServiceUnavailable { message: "the store is stopping".into() }),
            Err(_elapsed) => Err(ApiError::Timeout {
                message: format!(
                    "Too large resource version: {revision}, current: {}",
                    self.store.revision()
                ),
            }),
        }
    }

    fn encode(&self, resource: &ResourceType, object: &Value) -> Result<Bytes, ApiError> {
        let json = serde_json::to_vec(&WithoutResourceVersion(object))
            .map_err(|error| ApiError::internal(error.to_string()))?;
        if resource.plural == "secrets" && resource.group.is_empty() {
            return Ok(Bytes::from(self.secret_box.seal(&json)));
        }
        Ok(Bytes::from(json))
    }

    /// The object's JSON as clients see it, without parsing: `"resourceVersion"` goes into
    /// the top-level `metadata` as it is written out (stored objects always have one, written
    /// by `encode` with sorted keys and never a resourceVersion of their own). The stored
    /// bytes are shared, not copied.
    pub fn decode_raw(&self, resource: &ResourceType, kv: &KeyValue) -> Result<RawObject, ApiError> {
        let json = if resource.plural == "secrets" && resource.group.is_empty() {
            Bytes::from(self.secret_box.open(&kv.value).map_err(|error| {
                tracing::error!(key = %String::from_utf8_lossy(&kv.key), %error, "cannot open a stored secret");
                ApiError::internal("a stored secret cannot be decrypted with this server's key")
            })?)
        } else {
            kv.value.clone()
        };
        match top_level_metadata(&json) {
            Some(at) => Ok(RawObject { json, splice: Some((at, kv.mod_revision)) }),
            // Not the shape `encode` writes: take the slow, parsing path.
            None => Ok(RawObject::serialized(&self.decode(resource, kv)?.object)),
        }
    }

    /// Turns a stored key-value into the object clients see.
    pub fn decode(&self, resource: &ResourceType, kv: &KeyValue) -> Result<Stored, ApiError> {
        let opened;
        let json: &[u8] = if resource.plural == "secrets" && resource.group.is_empty() {
            opened = self.secret_box.open(&kv.value).map_err(|error| {
                tracing::error!(key = %String::from_utf8_lossy(&kv.key), %error, "cannot open a stored secret");
                ApiError::internal("a stored secret cannot be decrypted with this server's key")
            })?;
            &opened
        } else {
            &kv.value
        };
        let object: Value = serde_json::from_slice(json).map_err(|error| {
            tracing::error!(key = %String::from_utf8_lossy(&kv.key), %error, "stored object is not JSON");
            ApiError::internal("a stored object is corrupt")
        })?;
        Ok(Stored { object: with_resource_version(object, kv.mod_revision), revision: kv.mod_revision })
    }
}

/// An object's JSON as clients see it, still in pieces: the stored bytes, and the
/// resourceVersion to splice into its `metadata` as it is written out.
#[derive(Debug, Clone)]
pub struct RawObject {
    json: Bytes,
    /// Where the first member of the top-level `metadata` starts, and the revision to put there.
    splice: Option<(usize, Revision)>,
}

impl RawObject {
    /// An object that carries its resourceVersion already.
    pub fn serialized(object: &Value) -> Self {
        let json = serde_json::to_vec(object).expect("JSON values serialize");
        RawObject { json: Bytes::from(json), splice: None }
    }

    /// The length of what `write_to` writes.
    pub fn encoded_len(&self) -> usize {
        let field =
            |revision| RESOURCE_VERSION_OPEN.len() + decimal_len(revision) + RESOURCE_VERSION_CLOSE.len();
        self.json.len() + self.splice.map_or(0, |(_, revision)| field(revision))
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let Some((at, revision)) = self.splice else {
            out.extend_from_slice(&self.json);
            return;
        };
        out.extend_from_slice(&self.json[..at]);
        out.extend_from_slice(RESOURCE_VERSION_OPEN);
        write!(out, "{revision}").expect("writing to a Vec cannot fail");
        out.extend_from_slice(RESOURCE_VERSION_CLOSE);
        out.extend_from_slice(&self.json[at..]);
    }
}

/// An object as it is stored: its JSON without `metadata.resourceVersion`, which the store's
/// revision supplies when it is read. Written straight from the object, without a copy.
struct WithoutResourceVersion<'a>(&'a Value);

/// An object's `metadata` without its `resourceVersion`.
struct MetadataWithoutResourceVersion<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let Value::Object(fields) = self.0 else { return self.0.serialize(serializer) };
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (key, value) in fields {
            match value {
                Value::Object(metadata) if key == "metadata" => {
                    map.serialize_entry(key, &MetadataWithoutResourceVersion(metadata))?
                }
                _ => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}

impl serde::Serialize for MetadataWithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().filter(|(key, _)| *key != "resourceVersion"))
    }
}

/// The kind and apiVersion of an object's metadata alone, and of a list of them.
pub const PARTIAL_METADATA_KIND: &str = "PartialObjectMetadata";
pub const PARTIAL_METADATA_LIST_KIND: &str = "PartialObjectMetadataList";
pub const META_V1: &str = "meta.k8s.io/v1";

/// The start of a PartialObjectMetadata, up to its `metadata`'s value.
const PARTIAL_METADATA_HEAD: &[u8] =
    br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#;

/// An object as a `meta.k8s.io/v1` PartialObjectMetadata: its metadata and nothing else.
pub fn partial_metadata(object: &Value) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| Value::Object(Default::default()));
    serde_json::json!({"kind": PARTIAL_METADATA_KIND, "apiVersion": META_V1, "metadata": metadata})
}

impl RawObject {
    /// The object as a PartialObjectMetadata ([`partial_metadata`]). The stored bytes of its
    /// metadata are cut out without parsing the rest, and the revision is still spliced in.
    pub fn partial_metadata(&self) -> RawObject {
        if let Some((at, revision)) = self.splice
            && let Some(end) = object_end(&self.json, at)
        {
            // From the metadata's `{` (just before `at`) to its `}`.
            let metadata = &self.json[at - 1..end];
            let mut json = Vec::with_capacity(PARTIAL_METADATA_HEAD.len() + metadata.len() + 1);
            json.extend_from_slice(PARTIAL_METADATA_HEAD);
            json.extend_from_slice(metadata);
            json.push(b'}');
            return RawObject {
                json: json.into(),
                splice: Some((PARTIAL_METADATA_HEAD.len() + 1, revision)),
            };
        }
        match serde_json::from_slice::<Value>(&self.json) {
            Ok(object) => RawObject::serialized(&partial_metadata(&object)),
            Err(error) => {
                tracing::error!(%error, "an encoded object does not parse; answering empty metadata");
                RawObject::serialized(&partial_metadata(&Value::Null))
            }
        }
    }
}

/// What surrounds the revision in `"resourceVersion":"<revision>",`.
const RESOURCE_VERSION_OPEN: &[u8] = b"\"resourceVersion\":\"";
const RESOURCE_VERSION_CLOSE: &[u8] = b"\",";

/// How many characters `revision` takes in decimal.
fn decimal_len(revision: Revision) -> usize {
    let digits = revision.unsigned_abs().checked_ilog10().map_or(1, |log| log as usize + 1);
    digits + usize::from(revision < 0)
}

/// Where the first member of the top-level, non-empty `metadata` object starts, found by a
/// scan that tracks strings and nesting; `None` if there is none.
fn top_level_metadata(json: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"metadata\":{";
    let mut depth = 0usize;
    for (index, byte) in outside_strings(json) {
        match byte {
            b'"' if depth == 1 && json[index..].starts_with(KEY) => {
                let first = index + KEY.len();
                return (json.get(first) != Some(&b'}')).then_some(first);
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    None
}

/// Just past the `}` that closes the object whose first member starts at `first`.
fn object_end(json: &[u8], first: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (index, byte) in outside_strings(json.get(first..)?) {
        match byte {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(first + index + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The bytes of `json` that are not inside a string, with their index. A string's opening
/// quote is among them (a key can be matched there); the rest of the string is not.
fn outside_strings(json: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    json.iter().enumerate().filter_map(move |(index, &byte)| {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            return None;
        }
        in_string = byte == b'"';
        Some((index, byte))
    })
}

/// Sets `metadata.resourceVersion` to `revision`.
pub fn with_resource_version(mut object: Value, revision: Revision) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    object
}

fn encode_continue(token: &ContinueToken) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(token).expect("a continue token serializes"))
}

/// Reads a token whose resume point has at most `slashes` slashes (and no `..` part).
fn decode_continue(text: &str, slashes: usize) -> Result<ContinueToken, ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid: the token is malformed");
    let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|_| invalid())?;
    let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if token.rv <= 0
        || token.start.matches('/').count() > slashes
        || token.start.split('/').any(|part| part == "..")
    {
        return Err(invalid());
    }
    Ok(token)
}

pub fn not_found(resource: &ResourceType, name: &str) -> ApiError {
    ApiError::NotFound {
        resource: resource.qualified_plural(),
        name: name.to_owned(),
        group: resource.group.to_owned(),
        kind: resource.plural.to_owned(),
    }
}

pub fn already_exists(resource: &ResourceType, name: &str) -> ApiError {
    ApiError::AlreadyExists {
        resource: resource.qualified_plural(),
        name: name.to_owned(),
        group: resource.group.to_owned(),
        kind: resource.plural.to_owned(),
    }
}

pub fn conflict(resource: &ResourceType, name: &str) -> ApiError {
    ApiError::Conflict {
        resource: resource.qualified_plural(),
        name: name.to_owned(),
        group: resource.group.to_owned(),
        kind: resource.plural.to_owned(),
    }
}

fn write_error(error: WriteError) -> ApiError {
    match error {
        WriteError::Rejected(CommandError::Mvcc(error)) => ApiError::internal(error.to_string()),
        WriteError::Rejected(error) => ApiError::internal(error.to_string()),
        WriteError::NoLeader => ApiError::ServiceUnavailable {
            message: "the store has no leader (no quorum); the write was not applied".into(),
        },
        WriteError::OutcomeUnknown => ApiError::Timeout {
            message: "the store did not confirm the write in time; it may or may not have been applied"
                .into(),
        },
        WriteError::Stopping => ApiError::ServiceUnavailable {
            message: "the server is stopping; the write may or may not have been applied".into(),
        },
    }
}

fn read_error(error: ReadError) -> ApiError {
    match error {
        ReadError::Mvcc(MvccError::Compacted { compact_revision }) => ApiError::Expired {
            message: format!(
                "The resourceVersion for the provided list is too old (compacted at {compact_revision}); start a new list"
            ),
        },
        ReadError::Mvcc(MvccError::FutureRevision { .. }) => {
            ApiError::Timeout { message: "Too large resource version".into() }
        }
        ReadError::Mvcc(error) => ApiError::internal(error.to_string()),
        ReadError::NoLeader => ApiError::ServiceUnavailable {
            message: "the store has no leader (no quorum); a consistent read needs one (resourceVersion=0 reads without)"
                .into(),
        },
        ReadError::Timeout => ApiError::Timeout { message: "the store did not confirm the read in time".into() },
        ReadError::Stopping => ApiError::ServiceUnavailable { message: "the server is stopping".into() },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // The resourceVersion splice finds the top-level metadata past strings and nested
    // objects that look like it, and gives the same object as parsing would.
    #[test]
    fn metadata_splice() {
        let check = |json: &str, expected: Option<&str>| {
            let found = top_level_metadata(json.as_bytes()).map(|at| &json[at..]);
            assert_eq!(found, expected, "{json}");
        };
        check(r#"{"apiVersion":"v1","metadata":{"name":"a"}}"#, Some(r#""name":"a"}}"#));
        check(r#"{"data":{"metadata":{"x":1}},"metadata":{"name":"b"}}"#, Some(r#""name":"b"}}"#));
        check(r#"{"a":"\"metadata\":{","metadata":{"name":"c"}}"#, Some(r#""name":"c"}}"#));
        check(r#"{"metadata":{}}"#, None);
        check(r#"{"spec":{}}"#, None);
        check(r#"}}}"#, None);
    }

    // A spliced object says exactly as many bytes as `encoded_len` promises (a list's
    // Content-Length is the sum), and reads as the stored object with its resourceVersion.
    #[test]
    fn raw_objects_splice_their_revision() {
        let written = |raw: &RawObject| {
            let mut out = Vec::new();
            raw.write_to(&mut out);
            out
        };
        let stored = Bytes::from_static(br#"{"kind":"Pod","metadata":{"name":"a"},"spec":{}}"#);
        let at = top_level_metadata(&stored).expect("has metadata");
        for revision in [0, 7, 10, 99, 100, 123_456_789, i64::MAX, -5] {
            let raw = RawObject { json: stored.clone(), splice: Some((at, revision)) };
            let bytes = written(&raw);
            assert_eq!(bytes.len(), raw.encoded_len(), "{revision}");
            let object: Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(object["metadata"]["resourceVersion"], revision.to_string());
            assert_eq!(object["metadata"]["name"], "a");
        }
        let serialized = RawObject::serialized(&serde_json::json!({"metadata": {"resourceVersion": "3"}}));
        assert_eq!(written(&serialized).len(), serialized.encoded_len());
    }

    // An object is stored as its JSON without the top-level metadata's resourceVersion, and
    // only that one: the same bytes as serializing a copy with it removed.
    #[test]
    fn objects_are_stored_without_their_resource_version() {
        let object = serde_json::json!({
            "kind": "Pod",
            "metadata": {"name": "a", "resourceVersion": "12", "uid": "u"},
            "spec": {"resourceVersion": "kept", "list": [1, {"metadata": {"resourceVersion": "kept"}}]},
            "status": {}
        });
        let mut expected = object.clone();
        expected["metadata"].as_object_mut().expect("an object").remove("resourceVersion");
        let stored = serde_json::to_vec(&WithoutResourceVersion(&object)).expect("serializes");
        assert_eq!(String::from_utf8(stored).expect("UTF-8"), expected.to_string());
        for other in
            [serde_json::json!({"metadata": "not an object"}), serde_json::json!([1, 2]), Value::Null]
        {
            let stored = serde_json::to_vec(&WithoutResourceVersion(&other)).expect("serializes");
            assert_eq!(String::from_utf8(stored).expect("UTF-8"), other.to_string());
        }
    }

    // An object's PartialObjectMetadata cut from its stored bytes is the one built from the
    // parsed object, with the revision spliced in, whatever its strings and nesting hold.
    #[test]
    fn partial_metadata_is_cut_from_the_stored_bytes() {
        let objects = [
            json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 1}}),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "data": {"metadata": "{\"}", "k": "}]\\"},
                "metadata": {
                    "name": "b}{\"",
                    "labels": {"app": "web"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "r", "uid": "u"}],
                    "annotations": {"note": "\"metadata\":{}"}
                },
                "status": {"list": [[], {}]}
            }),
        ];
        for object in objects {
            let stored = Bytes::from(serde_json::to_vec(&WithoutResourceVersion(&object)).unwrap());
            let at = top_level_metadata(&stored).expect("has metadata");
            let raw = RawObject { json: stored, splice: Some((at, 42)) };
            let cut = raw.partial_metadata();
            let mut out = Vec::new();
            cut.write_to(&mut out);
            assert_eq!(out.len(), cut.encoded_len());
            let parsed: Value = serde_json::from_slice(&out).expect("JSON");
            assert_eq!(parsed, partial_metadata(&with_resource_version(object.clone(), 42)), "{object}");
            // Without a splice (an object encoded from its parsed form), the same.
            let slow = RawObject::serialized(&with_resource_version(object, 42)).partial_metadata();
            let mut slow_out = Vec::new();
            slow.write_to(&mut slow_out);
            assert_eq!(serde_json::from_slice::<Value>(&slow_out).expect("JSON"), parsed);
        }
    }

    // Continue tokens round-trip, and tampered ones are refused rather than read.
    #[test]
    fn continue_tokens() {
        let token = encode_continue(&ContinueToken { rv: 42, start: "web-3\0".into() });
        let decoded = decode_continue(&token, 0).expect("round trip");
        assert_eq!((decoded.rv, decoded.start.as_str()), (42, "web-3\0"));
        for bad in ["", "!!", &URL_SAFE_NO_PAD.encode(br#"{"rv":0,"start":"a"}"#)] {
            assert!(decode_continue(bad, 0).is_err(), "{bad}");
        }
        let escaping = URL_SAFE_NO_PAD.encode(br#"{"rv":3,"start":"../secrets/x"}"#);
        assert!(decode_continue(&escaping, 0).is_err());
        assert!(decode_continue(&escaping, 1).is_err());
        // A list across namespaces resumes at `namespace/name`.
        let across = encode_continue(&ContinueToken { rv: 42, start: "default/web-3\0".into() });
        assert!(decode_continue(&across, 0).is_err());
        assert_eq!(decode_continue(&across, 1).expect("one slash").start, "default/web-3\0");
    }
}
