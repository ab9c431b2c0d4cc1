//! One API request, end to end: authenticate, route, authorize, read the body, dispatch to the
//! verb, and turn any `ApiError` into a `Status` response.
//!
//! Besides the Kubernetes paths, the API serves joining (`join`): the CA certificate to anyone,
//! before authentication, and node credentials to bootstrap tokens.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::auth::{self, Attributes, TokenAuthenticator, User};
use crate::bootstrap_token::{self, BootstrapToken};
use crate::discovery;
use crate::error::ApiError;
use crate::objects::ObjectStore;
use crate::route::{self, ResourceTarget, Route};
use crate::server::{Body, full};

/// The largest request body accepted (Kubernetes' limit); larger gets 413.
pub const REQUEST_BODY_BYTES_MAX: usize = 3 << 20;
/// Watches served at once by one API server.
pub const WATCHES_MAX: usize = 10_000;

/// How long the bootstrap of system namespaces and Services waits between tries while the
/// store has no quorum.
const SYSTEM_OBJECT_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
pub const JSON: &str = "application/json";
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
pub const METADATA_CONTENT_TYPE: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
pub const METADATA_LIST_CONTENT_TYPE: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

/// The API's shared state.
pub struct Api {
    pub(crate) objects: ObjectStore,
    tokens: TokenAuthenticator,
    pub(crate) watch_slots: Arc<Semaphore>,
    pub(crate) service_cidr: crate::allocator::ServiceCidr,
    /// The CA certificate served at `/shoal/v1/ca`; that path is not served without it.
    pub(crate) cluster_ca_pem: Option<String>,
    /// The cluster CA with its key, which signs node credentials; joins get 503 without it.
    pub(crate) signer: Option<Arc<shoal_pki::ClusterCa>>,
    /// Reaches agents' kubelet ports; `pods/log` and metrics get 503 without it.
    pub(crate) node_dialer: Option<crate::node_proxy::NodeDialer>,
    /// Nodes' earlier summaries, for `metrics.k8s.io` rates.
    pub(crate) sampler: crate::metrics::Sampler,
    /// The `tolerationSeconds` of the not-ready and unreachable tolerations pods get at create.
    pub(crate) default_toleration_seconds: i64,
}

/// The query parameters the API understands.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub watch: bool,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: Option<String>,
    pub force: bool,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub include_object: Option<String>,
    pub send_initial_events: bool,
    /// Parameters of subresources (`container`, `follow`, `tailLines`, …), kept raw.
    pub other: Vec<(String, String)>,
}

impl Query {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut query = Query::default();
        for (key, value) in form_urlencoded::parse(text.as_bytes()) {
            let value = value.into_owned();
            let flag = || value == "true" || value == "1";
            match key.as_ref() {
                "watch" => query.watch = flag(),
                "resourceVersion" => query.resource_version = Some(value).filter(|v| !v.is_empty()),
                "resourceVersionMatch" => {
                    query.resource_version_match = Some(value).filter(|v| !v.is_empty())
                }
                "limit" => query.limit = Some(parse_number(&key, &value)?).filter(|&limit| limit > 0),
                "continue" => query.continue_token = Some(value).filter(|v| !v.is_empty()),
                "labelSelector" => query.label_selector = Some(value),
                "fieldSelector" => query.field_selector = Some(value),
                "timeoutSeconds" => query.timeout_seconds = Some(parse_number(&key, &value)?),
                "allowWatchBookmarks" => query.allow_watch_bookmarks = flag(),
                "dryRun" => query.dry_run = !value.is_empty(),
                "fieldManager" => query.field_manager = Some(value),
                "fieldValidation" => query.field_validation = Some(value),
                "force" => query.force = flag(),
                "propagationPolicy" => query.propagation_policy = Some(value),
                "gracePeriodSeconds" => query.grace_period_seconds = Some(parse_number(&key, &value)?),
                "includeObject" => query.include_object = Some(value),
                "sendInitialEvents" => query.send_initial_events = flag(),
                _ => query.other.push((key.into_owned(), value)),
            }
        }
        if query.dry_run && !form_urlencoded::parse(text.as_bytes()).any(|(k, v)| k == "dryRun" && v == "All")
        {
            return Err(ApiError::bad_request("dryRun must be \"All\""));
        }
        Ok(query)
    }

    pub fn other(&self, name: &str) -> Option<&str> {
        self.other.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid value {value:?} for query parameter {key}")))
}

/// One resource request, parsed and authenticated.
pub struct Call<'a> {
    pub method: Method,
    pub target: ResourceTarget<'a>,
    pub query: Query,
    pub headers: &'a HeaderMap,
    pub user: User,
    pub body: Bytes,
    /// The connection's upgrade, for the subresources that switch protocols (`pods/exec`).
    pub upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

impl Call<'_> {
    pub fn header(&self, name: http::header::HeaderName) -> &str {
        self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
    }

    pub fn wants_table(&self) -> bool {
        self.shape() == Shape::Table
    }

    /// What the Accept header asks a read to answer with ([`Shape::of`]).
    pub fn shape(&self) -> Shape {
        Shape::of(self.header(http::header::ACCEPT))
    }
}

/// What a get, list or watch answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Objects,
    /// A `meta.k8s.io/v1` Table of them, as kubectl prints it.
    Table,
    /// Only their metadata, as `meta.k8s.io/v1` PartialObjectMetadata(List): what metadata
    /// informers (client-go's, kube-rs's `metadata_watcher`) ask for.
    Metadata,
}

impl Shape {
    /// The shape an Accept header asks for. A Table is asked for first in the list (kubectl).
    /// PartialObjectMetadata may come after a protobuf form of it, which is not served
    /// (client-go's metadata client lists both): the first entry that is not protobuf decides.
    pub fn of(accept: &str) -> Shape {
        let mut entries = accept.split(',').map(str::trim);
        if entries.clone().next().is_some_and(|first| first.contains("as=Table")) {
            return Shape::Table;
        }
        match entries.find(|entry| !entry.starts_with(crate::protobuf::MEDIA_TYPE)) {
            Some(entry) if entry.contains("as=PartialObjectMetadata") && entry.contains("g=meta.k8s.io") => {
                Shape::Metadata
            }
            _ => Shape::Objects,
        }
    }
}

/// A successful answer: a JSON document with a status code, or a prepared response.
pub enum Reply {
    Json { code: StatusCode, body: Value, content_type: &'static str, warnings: Vec<String> },
    Raw(Response<Body>),
}

impl Reply {
    pub fn ok(body: impl Serialize) -> Self {
        Self::with_code(StatusCode::OK, body)
    }

    pub fn with_code(code: StatusCode, body: impl Serialize) -> Self {
        let body = serde_json::to_value(body).expect("API documents serialize");
        Reply::Json { code, body, content_type: JSON, warnings: Vec::new() }
    }
}

impl Api {
    pub fn new(
        objects: ObjectStore,
        tokens: TokenAuthenticator,
        service_cidr: crate::allocator::ServiceCidr,
    ) -> Self {
        Self {
            objects,
            tokens,
            watch_slots: Arc::new(Semaphore::new(WATCHES_MAX)),
            service_cidr,
            cluster_ca_pem: None,
            signer: None,
            node_dialer: None,
            sampler: crate::metrics::Sampler::default(),
            default_toleration_seconds: crate::admit::DEFAULT_TOLERATION_SECONDS,
        }
    }

    /// Gives created pods tolerations of not-ready and unreachable nodes for `seconds`.
    pub fn with_default_toleration_seconds(mut self, seconds: i64) -> Self {
        self.default_toleration_seconds = seconds;
        self
    }

    /// Lets the API reach agents, for `pods/log` and `metrics.k8s.io`.
    pub fn with_node_dialer(mut self, dialer: Option<crate::node_proxy::NodeDialer>) -> Self {
        self.node_dialer = dialer;
        self
    }

    /// Serves `ca_pem` at `/shoal/v1/ca` and, with a `signer`, issues node credentials.
    pub fn with_cluster_ca(mut self, ca_pem: String, signer: Option<Arc<shoal_pki::ClusterCa>>) -> Self {
        self.cluster_ca_pem = Some(ca_pem);
        self.signer = signer;
        self
    }

    /// Creates `default`, `kube-system`, `kube-public` and `kube-node-lease`, then the cluster
    /// DNS Service, if they are missing, retrying in the background until the store has a
    /// quorum.
    pub fn ensure_system_objects(self: &Arc<Self>) {
        let api = self.clone();
        tokio::spawn(async move {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                loop {
                    match crate::write::ensure_namespace(&api, name).await {
                        Ok(()) => break,
                        Err(error) => {
                            tracing::debug!(%error, namespace = name, "creating a system namespace; retrying");
                            tokio::time::sleep(SYSTEM_OBJECT_RETRY).await;
                        }
                    }
                }
            }
            loop {
                match crate::write::ensure_service(&api, crate::write::dns_service(api.service_cidr)).await {
                    Ok(()) => break,
                    // Its address is another Service's (a range changed under a running cluster):
                    // retrying cannot help, the operator must choose.
                    Err(error @ ApiError::Invalid { .. }) => {
                        tracing::warn!(%error, "cannot create the cluster DNS Service kube-system/kube-dns");
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "creating the cluster DNS Service; retrying");
                        tokio::time::sleep(SYSTEM_OBJECT_RETRY).await;
                    }
                }
            }
        });
    }

    pub async fn handle(
        &self,
        mut parts: http::request::Parts,
        body: UnsyncBoxBody<Bytes, std::io::Error>,
        certificate_user: Option<User>,
    ) -> Response<Body> {
        let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        let reply = self.serve(&parts, body, certificate_user, upgrade).await;
        let response = match reply {
            Ok(Reply::Raw(response)) => return response,
            Ok(Reply::Json { code, body, content_type, warnings }) => {
                json_response(code, &body, content_type, &warnings)
            }
            Err(error) => error_response(&error),
        };
        if response.status().is_server_error() {
            tracing::warn!(method = %parts.method, uri = %parts.uri, status = %response.status(), "API request failed");
        }
        response
    }

    async fn serve(
        &self,
        parts: &http::request::Parts,
        body: UnsyncBoxBody<Bytes, std::io::Error>,
        certificate_user: Option<User>,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<Reply, ApiError> {
        let route = route::parse(parts.uri.path());
        // The one unauthenticated path: a joining node pins the CA by hash before it trusts it.
        if route == Some(Route::ClusterCa) {
            return crate::join::cluster_ca(self, &parts.method);
        }
        let user = self.authenticate(&parts.headers, certificate_user).await?;
        let route = route.ok_or(ApiError::NoSuchPath)?;
        let accept = parts.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let target = match route {
            Route::Resource(target) => target,
            Route::Join => return self.join(&parts.method, &user, body).await,
            other => return non_resource(other, accept, &parts.method),
        };
        let query = Query::parse(parts.uri.query().unwrap_or(""))?;
        let body = read_body(body, REQUEST_BODY_BYTES_MAX).await?;
        let upgrade = std::sync::Mutex::new(upgrade);
        let call = Call {
            method: parts.method.clone(),
            target,
            query,
            headers: &parts.headers,
            user,
            body,
            upgrade,
        };
        self.authorize(&call).await?;
        crate::fence::dispatch(self, &call).await
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        certificate_user: Option<User>,
    ) -> Result<User, ApiError> {
        let Some(authorization) = headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()) else {
            return certificate_user.ok_or(ApiError::Unauthorized);
        };
        if let Some(user) = self.tokens.authenticate(authorization) {
            return Ok(user);
        }
        match BootstrapToken::from_authorization(authorization) {
            Some(token) => self.authenticate_bootstrap(&token).await,
            None => Err(ApiError::Unauthorized),
        }
    }

    /// Checks a bootstrap token against its Secret, read linearizably: a token works on every
    /// server as soon as it is created, and stops working everywhere once it is deleted.
    async fn authenticate_bootstrap(&self, token: &BootstrapToken) -> Result<User, ApiError> {
        let secrets = crate::resource::find("", "v1", "secrets").expect("Secrets are a served resource");
        let stored = self
            .objects
            .get(
                secrets,
                Some(bootstrap_token::NAMESPACE),
                &token.secret_name(),
                crate::objects::ReadAt::Latest,
            )
            .await?;
        let Some(stored) = stored else {
            tracing::debug!(token_id = token.id(), "refused a bootstrap token: no such token");
            return Err(ApiError::Unauthorized);
        };
        bootstrap_token::authenticate(token, &stored.object, jiff::Timestamp::now()).map_err(|rejection| {
            tracing::debug!(token_id = token.id(), %rejection, "refused a bootstrap token");
            ApiError::Unauthorized
        })
    }

    /// `POST /shoal/v1/join`, authorized before its body is read.
    async fn join(
        &self,
        method: &Method,
        user: &User,
        body: UnsyncBoxBody<Bytes, std::io::Error>,
    ) -> Result<Reply, ApiError> {
        if method != Method::POST {
            return Err(ApiError::MethodNotAllowed { message: format!("{method} is not supported here") });
        }
        if !auth::may_join(user) {
            return Err(ApiError::Forbidden {
                message: format!(
                    "forbidden: User \"{}\" cannot create path \"{}\"",
                    user.name,
                    crate::join::JOIN_PATH
                ),
            });
        }
        let body = read_body(body, crate::join::JOIN_BODY_BYTES_MAX).await?;
        crate::join::join(self, user, &body)
    }

    async fn authorize(&self, call: &Call<'_>) -> Result<(), ApiError> {
        let verb = crate::dispatch::verb(call);
        let target = &call.target;
        let stored;
        let core_pod = target.resource.group.is_empty() && target.resource.plural == "pods";
        let object = if call.user.node_name().is_some() && core_pod && target.name.is_some() {
            let name = target.name.unwrap_or_default();
            stored = self
                .objects
                .get(target.resource, target.namespace, name, crate::objects::ReadAt::Any)
                .await?;
            stored.as_ref().map(|stored| &stored.object)
        } else {
            None
        };
        let attributes = Attributes {
            verb,
            group: target.resource.group,
            resource: target.resource.plural,
            subresource: target.subresource.unwrap_or(""),
            namespace: target.namespace.unwrap_or(""),
            name: target.name.unwrap_or(""),
            object,
        };
        if auth::authorize(&call.user, &attributes) {
            return Ok(());
        }
        let resource = match target.subresource {
            Some(sub) => format!("{}/{sub}", target.resource.plural),
            None => target.resource.plural.to_owned(),
        };
        let scope = match target.namespace {
            Some(namespace) => format!(" in the namespace \"{namespace}\""),
            None => " at the cluster scope".to_owned(),
        };
        let group = target.resource.group;
        let qualified = if group.is_empty() { resource.clone() } else { format!("{resource}.{group}") };
        Err(ApiError::Forbidden {
            message: format!(
                "{qualified}{} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{group}\"{scope}",
                target.name.map(|name| format!(" \"{name}\"")).unwrap_or_default(),
                call.user.name
            ),
        })
    }
}

fn non_resource(route: Route<'_>, accept: &str, method: &Method) -> Result<Reply, ApiError> {
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed { message: format!("{method} is not supported here") });
    }
    let reply = match route {
        Route::Version => Reply::ok(discovery::version()),
        Route::Health => return Ok(Reply::Raw(text_response(StatusCode::OK, "ok"))),
        Route::CoreGroup if discovery::wants_aggregated(accept) => aggregated(true),
        Route::Groups if discovery::wants_aggregated(accept) => aggregated(false),
        Route::CoreGroup => Reply::ok(discovery::api_versions()),
        Route::Groups => Reply::ok(discovery::api_group_list()),
        Route::Group { group } if discovery::serves_group(group) => Reply::ok(discovery::api_group(group)),
        Route::Group { .. } => return Err(ApiError::NoSuchPath),
        Route::ResourceList { group, version } => Reply::ok(discovery::resource_list(group, version)),
        Route::OpenApiIndex => Reply::ok(crate::openapi::index()),
        Route::OpenApiGroupVersion { group, version } => {
            Reply::ok(crate::openapi::group_version(group, version).ok_or(ApiError::NoSuchPath)?)
        }
        Route::Resource(_) | Route::Join | Route::ClusterCa => {
            unreachable!("resource and join routes are dispatched by the caller")
        }
    };
    Ok(reply)
}

fn aggregated(core: bool) -> Reply {
    let body = discovery::aggregated(core);
    Reply::Json {
        code: StatusCode::OK,
        body,
        content_type: discovery::AGGREGATED_CONTENT_TYPE,
        warnings: Vec::new(),
    }
}

async fn read_body(
    body: UnsyncBoxBody<Bytes, std::io::Error>,
    limit_bytes: usize,
) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit_bytes);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::RequestTooLarge { limit_bytes })
        }
        Err(error) => Err(ApiError::bad_request(format!("reading the request body failed: {error}"))),
    }
}

pub fn json_response(
    code: StatusCode,
    body: &Value,
    content_type: &str,
    warnings: &[String],
) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("JSON values serialize");
    let mut builder = Response::builder().status(code).header(CONTENT_TYPE, content_type);
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        builder = builder.header("Warning", format!("299 - \"{escaped}\""));
    }
    builder.body(full(bytes)).expect("a response with valid headers builds")
}

pub fn error_response(error: &ApiError) -> Response<Body> {
    let status = serde_json::to_value(error.status()).expect("a Status serializes");
    json_response(error.code(), &status, JSON, &[])
}

pub fn text_response(code: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "text/plain")
        .body(full(Bytes::copy_from_slice(text.as_bytes())))
        .expect("a response with valid headers builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Accept headers kubectl, client-go's metadata client and kube-rs send, and the
    // shape each gets.
    #[test]
    fn accept_headers_choose_the_shape() {
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        let client_go_metadata = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        for (accept, shape) in [
            ("", Shape::Objects),
            ("application/json", Shape::Objects),
            ("application/vnd.kubernetes.protobuf, */*", Shape::Objects),
            (table, Shape::Table),
            (client_go_metadata, Shape::Metadata),
            ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", Shape::Metadata),
            (
                "application/json, application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                Shape::Objects,
            ),
            ("application/json;as=PartialObjectMetadata;g=example.com;v=v1", Shape::Objects),
        ] {
            assert_eq!(Shape::of(accept), shape, "{accept}");
        }
    }

    // Query parameters kubectl sends parse into their fields; bad numbers and dryRun values
    // are refused.
    #[test]
    fn query_parameters() {
        let query = Query::parse("watch=true&resourceVersion=12&limit=500&labelSelector=app%3Dweb&fieldManager=kubectl-client-side-apply&container=c")
            .expect("parses");
        assert!(query.watch);
        assert_eq!(query.resource_version.as_deref(), Some("12"));
        assert_eq!(query.limit, Some(500));
        assert_eq!(query.label_selector.as_deref(), Some("app=web"));
        assert_eq!(query.other("container"), Some("c"));
        assert!(Query::parse("limit=ten").is_err());
        assert!(Query::parse("dryRun=Some").is_err());
        assert!(Query::parse("dryRun=All").expect("dry run").dry_run);
    }
}
