//! Requests the API server passes on to the agent of a pod's node (its kubelet port), as
//! kube-apiserver does: `pods/log` and `pods/exec`; `metrics` fetches nodes' summaries with the
//! same dialer. The API server dials the node's InternalIP at its
//! advertised kubelet port over TLS, verifying the node's certificate against the cluster CA and
//! presenting its own kubelet-client certificate (group `shoal:apiservers`).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::Value;
use shoal_pki::TlsFiles;
use tokio_rustls::TlsConnector;

use crate::api::{Api, Call, Reply};
use crate::error::ApiError;
use crate::objects::{ReadAt, not_found};
use crate::resource;

/// How long reaching a node's agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The kubelet port when a Node does not say.
const KUBELET_PORT_DEFAULT: u16 = 10250;
/// The PodLogOptions passed on to the agent.
const LOG_OPTIONS: &[&str] =
    &["follow", "previous", "tailLines", "sinceSeconds", "sinceTime", "timestamps", "limitBytes"];
/// The PodExecOptions passed on to the agent.
const EXEC_OPTIONS: &[&str] = &["command", "stdin", "stdout", "stderr", "tty"];
/// The headers of a WebSocket upgrade, passed on to the agent so that it answers the client.
static UPGRADE_HEADERS: &[http::HeaderName] = &[
    http::header::UPGRADE,
    http::header::CONNECTION,
    http::header::SEC_WEBSOCKET_KEY,
    http::header::SEC_WEBSOCKET_VERSION,
    http::header::SEC_WEBSOCKET_PROTOCOL,
];

/// Dials agents' kubelet ports.
#[derive(Clone)]
pub struct NodeDialer {
    tls: TlsConnector,
}

impl std::fmt::Debug for NodeDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeDialer")
    }
}

impl NodeDialer {
    /// A dialer presenting `files.cert` and trusting only `files.ca`.
    pub fn load(files: &TlsFiles) -> Result<Self, shoal_pki::PkiError> {
        let mut config = shoal_pki::client_config(files)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { tls: TlsConnector::from(Arc::new(config)) })
    }

    /// An HTTP/1.1 connection to the agent at `address`, able to switch protocols.
    async fn connect(
        &self,
        address: SocketAddr,
    ) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| format!("dial tcp {address}: i/o timeout"))?
            .map_err(|error| format!("dial tcp {address}: {error}"))?;
        let server_name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(server_name, stream))
            .await
            .map_err(|_| format!("tls handshake with {address}: i/o timeout"))?
            .map_err(|error| format!("tls handshake with {address}: {error}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|error| error.to_string())?;
        tokio::spawn(connection.with_upgrades());
        Ok(sender)
    }

    /// `GET path` on the agent at `address` with `headers`; the response streams as it arrives.
    pub(crate) async fn get(
        &self,
        address: SocketAddr,
        path_and_query: &str,
        headers: &[(http::HeaderName, http::HeaderValue)],
    ) -> Result<Response<Incoming>, String> {
        let mut sender = self.connect(address).await?;
        let mut request = http::Request::get(path_and_query).header(http::header::HOST, address.to_string());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request =
            request.body(http_body_util::Empty::<Bytes>::new()).map_err(|error| error.to_string())?;
        sender.send_request(request).await.map_err(|error| error.to_string())
    }
}

/// A body that ends quietly where the agent's fails midway (the node went away).
fn relay_body(body: Incoming) -> crate::server::Body {
    let frames = futures::stream::unfold(body, |mut body| async move {
        match body.frame().await {
            Some(Ok(frame)) => Some((Ok::<_, Infallible>(frame), body)),
            _ => None,
        }
    });
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

/// Where a pod's container runs: the pod, the container, and the agent's address.
struct Located {
    pod: Value,
    container: String,
    node_name: String,
    address: SocketAddr,
}

async fn locate(api: &Api, call: &Call<'_>) -> Result<Located, ApiError> {
    let name = call.target.name.expect("pod subresources have a pod name");
    let pods = resource::find("", "v1", "pods").expect("pods are served");
    let pod = api
        .objects
        .get(pods, call.target.namespace, name, ReadAt::Latest)
        .await?
        .ok_or_else(|| not_found(pods, name))?
        .object;
    let container = log_container(&pod, name, call.query.other("container"))?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|node| !node.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?
        .to_owned();
    let nodes = resource::find("", "v1", "nodes").expect("nodes are served");
    let node = api
        .objects
        .get(nodes, None, &node_name, ReadAt::Latest)
        .await?
        .ok_or_else(|| not_found(nodes, &node_name))?
        .object;
    let address = kubelet_address(&node).ok_or_else(|| {
        ApiError::bad_request(format!("node {node_name:?} has no InternalIP address to reach its agent at"))
    })?;
    Ok(Located { pod, container, node_name, address })
}

/// The query parameters of `names` in `call`, repeated ones included, re-encoded.
fn forwarded_query(call: &Call<'_>, names: &[&str]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &call.query.other {
        if names.contains(&key.as_str()) {
            query.append_pair(key, value);
        }
    }
    query.finish()
}

/// An agent's refusal as an API error.
async fn agent_error(node_name: &str, response: Response<Incoming>) -> ApiError {
    let status = response.status();
    let message = response.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    let message = String::from_utf8_lossy(&message).trim().to_owned();
    match status {
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => ApiError::bad_request(message),
        _ => ApiError::internal(format!("the agent of node {node_name:?} answered {status}: {message}")),
    }
}

fn unreachable(node_name: &str, message: String) -> ApiError {
    ApiError::ServiceUnavailable {
        message: format!("the agent of node {node_name:?} cannot be reached: {message}"),
    }
}

/// `GET /api/v1/namespaces/<ns>/pods/<name>/log`.
pub async fn pod_log(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let dialer = dialer(api)?;
    let located = locate(api, call).await?;
    let name = call.target.name.unwrap_or_default();
    let namespace = call.target.namespace.unwrap_or("default");
    let query = forwarded_query(call, LOG_OPTIONS);
    let path = format!("/containerLogs/{namespace}/{name}/{}?{query}", located.container);
    let response = dialer
        .get(located.address, &path, &[])
        .await
        .map_err(|message| unreachable(&located.node_name, message))?;
    if response.status() != StatusCode::OK {
        return Err(agent_error(&located.node_name, response).await);
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    Ok(Reply::Raw(Response::from_parts(parts, relay_body(body))))
}

/// `GET /api/v1/namespaces/<ns>/pods/<name>/exec`, a WebSocket upgrade: the request goes to
/// the agent as it came, and once both sides have switched protocols the two connections are
/// spliced. The API server never reads the session.
pub async fn pod_exec(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let dialer = dialer(api)?;
    let upgrading = call.header(http::header::UPGRADE).eq_ignore_ascii_case("websocket");
    let upgrade =
        call.upgrade.lock().expect("upgrade lock").take().filter(|_| upgrading).ok_or_else(|| {
            ApiError::bad_request(
                "exec needs a WebSocket upgrade (Upgrade: websocket); SPDY is not supported",
            )
        })?;
    let located = locate(api, call).await?;
    if let Some(phase @ ("Succeeded" | "Failed")) =
        located.pod.pointer("/status/phase").and_then(Value::as_str)
    {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let name = call.target.name.unwrap_or_default();
    let namespace = call.target.namespace.unwrap_or("default");
    let query = forwarded_query(call, EXEC_OPTIONS);
    let path = format!("/exec/{namespace}/{name}/{}?{query}", located.container);
    let headers: Vec<(http::HeaderName, http::HeaderValue)> = UPGRADE_HEADERS
        .iter()
        .flat_map(|name| call.headers.get_all(name).iter().map(move |value| (name.clone(), value.clone())))
        .collect();
    let response = dialer
        .get(located.address, &path, &headers)
        .await
        .map_err(|message| unreachable(&located.node_name, message))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent_error(&located.node_name, response).await);
    }
    let mut switched = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for name in [
        http::header::UPGRADE,
        http::header::CONNECTION,
        http::header::SEC_WEBSOCKET_ACCEPT,
        http::header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        for value in response.headers().get_all(&name) {
            switched = switched.header(&name, value);
        }
    }
    tokio::spawn(async move {
        let (client, agent) = match tokio::join!(upgrade, hyper::upgrade::on(response)) {
            (Ok(client), Ok(agent)) => (client, agent),
            _ => return,
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut agent = hyper_util::rt::TokioIo::new(agent);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    Ok(Reply::Raw(switched.body(crate::server::full(Bytes::new())).expect("a valid response")))
}

fn dialer(api: &Api) -> Result<&NodeDialer, ApiError> {
    api.node_dialer.as_ref().ok_or_else(|| ApiError::ServiceUnavailable {
        message: "this API server has no kubelet client certificate and cannot reach nodes".into(),
    })
}

/// The container whose log is asked for: the one named, the pod's default, or its only one.
fn log_container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|container| container.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let containers = names("/spec/containers");
    let init_containers = names("/spec/initContainers");
    if let Some(asked) = asked.filter(|asked| !asked.is_empty()) {
        if containers.iter().chain(&init_containers).any(|known| known == asked) {
            return Ok(asked.to_owned());
        }
        return Err(ApiError::bad_request(format!("container {asked} is not valid for pod {name}")));
    }
    let default = pod
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
        .and_then(Value::as_str)
        .filter(|default| containers.iter().any(|known| known == default));
    match (default, containers.as_slice()) {
        (Some(default), _) => Ok(default.to_owned()),
        (None, [only]) => Ok(only.clone()),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// Where a node's agent listens: its InternalIP (else any address that is an IP) and its
/// advertised kubelet port.
pub(crate) fn kubelet_address(node: &Value) -> Option<SocketAddr> {
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array)?;
    let address_of = |kind: Option<&str>| {
        addresses.iter().find_map(|address| {
            let matches = kind.is_none_or(|kind| address.get("type").and_then(Value::as_str) == Some(kind));
            matches.then(|| address.get("address").and_then(Value::as_str)?.parse::<IpAddr>().ok()).flatten()
        })
    };
    let ip = address_of(Some("InternalIP")).or_else(|| address_of(None))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port > 0)
        .unwrap_or(KUBELET_PORT_DEFAULT);
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The container is the one asked for, the annotated default, or the only one; otherwise
    // the error names the choices as kube-apiserver does.
    #[test]
    fn container_choice() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}});
        assert_eq!(log_container(&pod, "p", Some("b")).unwrap(), "b");
        assert_eq!(log_container(&pod, "p", Some("init")).unwrap(), "init");
        assert_eq!(
            log_container(&pod, "p", None).unwrap_err().to_string(),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(
            log_container(&pod, "p", Some("c")).unwrap_err().to_string(),
            "container c is not valid for pod p"
        );
        let mut annotated = pod.clone();
        annotated["metadata"] = json!({"annotations": {"kubectl.kubernetes.io/default-container": "b"}});
        assert_eq!(log_container(&annotated, "p", None).unwrap(), "b");
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(log_container(&single, "p", None).unwrap(), "only");
    }

    // The agent is reached at the node's InternalIP and advertised port.
    #[test]
    fn node_address() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}
        }});
        assert_eq!(kubelet_address(&node), Some("127.0.0.5:10251".parse().unwrap()));
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(kubelet_address(&bare), None);
    }
}
