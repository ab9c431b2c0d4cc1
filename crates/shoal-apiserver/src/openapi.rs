//! OpenAPI v3: the index at `/openapi/v3` and one document per group version.
//!
//! kubectl needs two things from it. `create`/`apply` look for a `patch` operation carrying
//! `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, and then leave
//! validation to the server. `explain` reads `components.schemas`, which come from the
//! k8s-openapi types' schemas. The patch operation deliberately does not declare strategic
//! merge patch in its request body: the schemas lack the patch merge keys, and kubectl would
//! compute client-side apply patches from them; without the declaration it uses the merge
//! keys compiled into it, which are right for every built-in kind.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::resource::{self, RESOURCES, ResourceType};

/// `/openapi/v3`: where each group version's document is, with a hash that changes with it.
pub fn index() -> Value {
    let paths: Map<String, Value> = documents()
        .iter()
        .map(|(path, document)| {
            let url = format!("/openapi/v3/{path}?hash={}", document.hash);
            (path.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// The document of one group version, `None` if it is not served.
pub fn group_version(group: &str, version: &str) -> Option<Value> {
    let path = document_path(group, version);
    documents().get(&path).map(|document| document.body.clone())
}

struct Document {
    body: Value,
    hash: String,
}

fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// Every document, built once: they depend only on the served types.
fn documents() -> &'static BTreeMap<String, Document> {
    static DOCUMENTS: OnceLock<BTreeMap<String, Document>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        resource::group_versions()
            .into_iter()
            .map(|(group, version)| {
                let body = build(group, version);
                let hash = hash(&serde_json::to_vec(&body).expect("documents serialize"));
                (document_path(group, version), Document { body, hash })
            })
            .collect()
    })
}

fn build(group: &str, version: &str) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let mut kinds = Vec::new();
    for rt in RESOURCES.iter().filter(|rt| rt.group == group && rt.version == version) {
        let schema = (rt.codec.schema)(&mut generator);
        let reference = schema.get("$ref").and_then(Value::as_str).unwrap_or_default().to_owned();
        kinds.push((rt, reference.rsplit('/').next().unwrap_or_default().to_owned()));
        let (collection, item) = resource_paths(rt);
        for (path, operations) in
            [(item, item_operations(rt, &reference)), (collection, collection_operations(rt, &reference))]
        {
            let operations = served(rt, operations);
            if !operations.is_empty() {
                paths.insert(path, Value::Object(operations));
            }
        }
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    for (rt, name) in kinds {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{}.{}", crate::discovery::KUBERNETES_MAJOR, crate::discovery::KUBERNETES_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The collection and item paths of a resource, as kube-apiserver writes them.
fn resource_paths(rt: &ResourceType) -> (String, String) {
    let base = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    let collection = if rt.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{base}/{}", rt.plural)
    };
    let item = format!("{collection}/{{name}}");
    (collection, item)
}

fn gvk(rt: &ResourceType) -> Value {
    json!({"group": rt.group, "version": rt.version, "kind": rt.kind})
}

fn body_response(reference: &str) -> Value {
    json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": reference}}}}})
}

fn query_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_parameters() -> Value {
    json!([
        query_parameter("dryRun", "When present, indicates that modifications should not be persisted."),
        query_parameter(
            "fieldManager",
            "A name associated with the actor or entity that is making these changes."
        ),
        query_parameter(
            "fieldValidation",
            "Instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict."
        ),
    ])
}

fn item_operations(rt: &ResourceType, reference: &str) -> Value {
    let action =
        |verb: &str| json!({"x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk(rt)});
    let mut get = action("get");
    get["responses"] = body_response(reference);
    let mut put = action("put");
    put["parameters"] = write_parameters();
    put["requestBody"] = json!({"content": {"*/*": {"schema": {"$ref": reference}}}, "required": true});
    put["responses"] = body_response(reference);
    let mut patch = action("patch");
    patch["parameters"] = write_parameters();
    patch["requestBody"] = json!({"content": {
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/apply-patch+yaml": {"schema": {"type": "object"}},
    }, "required": true});
    patch["responses"] = body_response(reference);
    let mut delete = action("delete");
    delete["responses"] = json!({"200": {"description": "OK"}});
    json!({"get": get, "put": put, "patch": patch, "delete": delete})
}

fn collection_operations(rt: &ResourceType, reference: &str) -> Value {
    let mut list = json!({"x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk(rt)});
    list["responses"] = json!({"200": {"description": "OK"}});
    let mut post = json!({"x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk(rt)});
    post["parameters"] = write_parameters();
    post["requestBody"] = json!({"content": {"*/*": {"schema": {"$ref": reference}}}, "required": true});
    post["responses"] = body_response(reference);
    json!({"get": list, "post": post})
}

/// The operations (keyed by HTTP method) whose Kubernetes verb the resource serves: a
/// read-only kind shows no writes, a review only its `post`.
fn served(rt: &ResourceType, operations: Value) -> Map<String, Value> {
    let Value::Object(mut operations) = operations else { unreachable!("operations are built as objects") };
    operations.retain(|_, operation| {
        let verb = match operation["x-kubernetes-action"].as_str() {
            Some("post") => "create",
            Some("put") => "update",
            Some(action) => action,
            None => "",
        };
        rt.verbs.contains(&verb)
    });
    operations
}

/// FNV-1a, hex: the document hash in `serverRelativeURL`, which only needs to change when
/// the document does.
fn hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The apps/v1 document has what kubectl's validation looks for: a patch operation with a
    // single-object GVK and the fieldValidation parameter; and the schema explain reads.
    #[test]
    fn apps_document_satisfies_kubectl() {
        let document = group_version("apps", "v1").expect("apps/v1 is served");
        let patch = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let parameters = patch["parameters"].as_array().expect("parameters");
        assert!(parameters.iter().any(|parameter| parameter["name"] == "fieldValidation"));
        let schema = &document["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert!(schema["properties"]["spec"].is_object());
        let index = index();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().expect("url");
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
    }

    // A read-only kind's document has its schema and only the reads: metrics are not written.
    #[test]
    fn metrics_document_has_only_reads() {
        let document = group_version("metrics.k8s.io", "v1beta1").expect("metrics.k8s.io/v1beta1 is served");
        let item = &document["paths"]["/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}"];
        let methods: Vec<&String> = item.as_object().expect("the item path").keys().collect();
        assert_eq!(methods, ["get"]);
        let collection = &document["paths"]["/apis/metrics.k8s.io/v1beta1/nodes"];
        assert_eq!(collection["get"]["x-kubernetes-action"], "list");
        assert!(collection.get("post").is_none());
        let schema =
            &document["components"]["schemas"]["io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics"];
        assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "NodeMetrics");
        assert!(schema["properties"]["usage"].is_object());
    }
}
