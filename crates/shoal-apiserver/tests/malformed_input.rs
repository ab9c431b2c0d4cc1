//! Malformed requests never crash the API server and always get a Kubernetes `Status`.
//!
//! A one-member store runs in this process; generated requests (random bodies, mutated valid
//! objects, every patch and body content type, odd paths and query strings) go straight to
//! `Api::handle`. Each answer must be a JSON document; every error must be a `Status` whose
//! `code` is the HTTP status; no server error may come from bad input.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use serde_json::{Value, json};
use shoal_apiserver::api::Api;
use shoal_apiserver::auth::{MASTERS_GROUP, TokenAuthenticator, User};
use shoal_apiserver::objects::ObjectStore;
use shoal_apiserver::secret_box::SecretBox;
use shoal_store::server::{RunningServer, ServerConfig};

const KEY_FILE: &str = "k AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    api: Arc<Api>,
    _server: RunningServer,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let server = runtime.block_on(async {
            let config = ServerConfig::solo_on_loopback("solo", dir.path().join("data"));
            let server = shoal_store::server::start(config).await.expect("store starts");
            let mut metrics = server.store.raft().metrics();
            metrics.wait_for(|m| m.current_leader.is_some()).await.expect("a leader");
            server
        });
        let secret_box = SecretBox::parse(KEY_FILE).expect("key");
        let api = Arc::new(Api::new(
            ObjectStore::new(server.store.clone(), secret_box),
            TokenAuthenticator::default(),
            Default::default(),
        ));
        runtime.block_on(async {
            shoal_apiserver::write::ensure_namespace(&api, "default").await.expect("default namespace");
        });
        Fixture { runtime, api, _server: server, _dir: dir }
    })
}

/// Sends one request and checks the answer's shape; returns the status code.
fn send(method: &str, path: &str, content_type: &str, body: Vec<u8>) -> u16 {
    let fixture = fixture();
    let admin = User { name: "admin".into(), groups: vec![MASTERS_GROUP.into()] };
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(())
        .expect("a valid request");
    let (parts, ()) = request.into_parts();
    let body = http_body_util::Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync();
    let response = fixture.runtime.block_on(fixture.api.handle(parts, body, Some(admin)));
    let status = response.status().as_u16();
    let is_watch = path.contains("watch=");
    if is_watch && status == 200 {
        return status; // a stream that stays open; its shape is tested elsewhere
    }
    let bytes = fixture.runtime.block_on(response.into_body().collect()).expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        status < 500 || status == 503 || status == 504,
        "{method} {path} ({content_type}) -> {status}: {text}"
    );
    if status >= 400 {
        let document: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert_eq!(document["kind"], "Status", "{text}");
        assert_eq!(document["code"], json!(status), "{text}");
        assert!(document["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    }
    status
}

const PATHS: &[&str] = &[
    "/api/v1/namespaces/default/configmaps",
    "/api/v1/namespaces/default/configmaps/cm",
    "/api/v1/namespaces/default/pods",
    "/api/v1/namespaces/default/pods/p",
    "/api/v1/namespaces/default/pods/p/status",
    "/api/v1/namespaces/default/pods/p/binding",
    "/api/v1/namespaces/default/pods/p/eviction",
    "/apis/apps/v1/namespaces/default/deployments",
    "/apis/apps/v1/namespaces/default/deployments/d",
    "/apis/apps/v1/namespaces/default/deployments/d/scale",
    "/api/v1/namespaces/default/secrets",
    "/api/v1/namespaces",
    "/api/v1/nodes/n",
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    "/api/v1/namespaces/default/services/s",
];

const QUERIES: &[&str] = &[
    "",
    "?fieldValidation=Strict",
    "?dryRun=All",
    "?labelSelector=a%20in%20(",
    "?fieldSelector=spec.nope%3Dx",
    "?limit=-1",
    "?continue=garbage",
    "?resourceVersion=99999999&resourceVersionMatch=Exact",
    "?resourceVersion=abc",
    "?fieldManager=%00",
    "?watch=true&resourceVersion=-5",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "application/yaml",
    "text/plain",
];

/// Valid-looking objects to mutate.
fn seeds() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
        json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
        json!({"spec": {"$setElementOrder/containers": [{"name": "c"}], "containers": [{"name": "c", "$patch": "delete"}]}}),
        json!({"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n"}}),
        json!({"kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "p"}}),
    ]
}

/// Replaces the value at a random place in `value` with `replacement`.
fn mutate(value: &mut Value, choices: &[usize], replacement: Value) {
    let Some((&choice, rest)) = choices.split_first() else {
        *value = replacement;
        return;
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(choice % map.len()).cloned().expect("a key");
            mutate(map.get_mut(&key).expect("the key exists"), rest, replacement);
        }
        Value::Array(list) if !list.is_empty() => {
            let len = list.len();
            mutate(&mut list[choice % len], rest, replacement);
        }
        _ => *value = replacement,
    }
}

fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "x", null, {"$patch": "replace"}])),
        Just(json!({"$patch": "delete", "$retainKeys": [3]})),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(b"k8s\0\x0a\x05\x0a\x02v1".to_vec()),
        (0..seeds.len(), proptest::collection::vec(any::<usize>(), 0..6), replacement()).prop_map(
            move |(seed, choices, replacement)| {
                let mut value = seeds[seed].clone();
                mutate(&mut value, &choices, replacement);
                serde_json::to_vec(&value).expect("serializes")
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn malformed_requests_get_a_status(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]),
        path in prop::sample::select(PATHS),
        query in prop::sample::select(QUERIES),
        content_type in prop::sample::select(CONTENT_TYPES),
        body in body(),
    ) {
        send(method, &format!("{path}{query}"), content_type, body);
    }
}

// Bodies past the 3 MiB limit get 413 RequestEntityTooLarge, as a Status.
#[test]
fn oversized_bodies_get_413() {
    let body = vec![b' '; shoal_apiserver::api::REQUEST_BODY_BYTES_MAX + 1];
    assert_eq!(send("POST", "/api/v1/namespaces/default/configmaps", "application/json", body), 413);
}

// Unknown paths and types get 404 Status, not a plain-text body.
#[test]
fn unknown_paths_get_404() {
    for path in
        ["/nope", "/api/v1/widgets", "/apis/apps/v9/deployments", "/api/v1/namespaces/default/pods/p/nope"]
    {
        assert_eq!(send("GET", path, "application/json", Vec::new()), 404, "{path}");
    }
}
