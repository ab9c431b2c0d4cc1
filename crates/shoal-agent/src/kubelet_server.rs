//! The agent's own HTTPS API on the kubelet port: what the API server proxies to a node for
//! `kubectl logs`, and the CPU and memory figures behind `kubectl top` (`stats`). Only the API servers (group
//! [`API_SERVER_GROUP`]) and cluster administrators (`system:masters`) may call it, each with
//! a client certificate from the cluster CA.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_pki::{ClientAuth, TlsFiles};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::logs::{self, LogRequest};
use crate::runtime::{ContainerInfo, ContainerState, Runtime, Sandbox};

/// The group of the certificate the API servers present to agents.
pub const API_SERVER_GROUP: &str = "shoal:apiservers";
const MASTERS_GROUP: &str = "system:masters";
/// Connections served at once.
const CONNECTIONS_MAX: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Debug, thiserror::Error)]
pub enum KubeletServerError {
    #[error("binding the kubelet address {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] shoal_pki::PkiError),
}

/// A running kubelet server; dropping it stops it.
pub struct KubeletServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for KubeletServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the kubelet API on `listen` with the node's certificate.
pub async fn start<R: Runtime>(
    listen: SocketAddr,
    tls: &TlsFiles,
    runtime: Arc<R>,
) -> Result<KubeletServer, KubeletServerError> {
    let mut config = shoal_pki::server_config(tls, ClientAuth::Required)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| KubeletServerError::Bind { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| KubeletServerError::Bind { addr: listen, source })?;
    let task = tokio::spawn(accept_loop(listener, acceptor, runtime));
    Ok(KubeletServer { addr, task })
}

async fn accept_loop<R: Runtime>(listener: TcpListener, acceptor: TlsAcceptor, runtime: Arc<R>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let Ok((stream, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
                return;
            };
            let allowed = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| shoal_pki::peer_identity(leaf))
                .is_some_and(|identity| {
                    identity
                        .organizations
                        .iter()
                        .any(|group| group == API_SERVER_GROUP || group == MASTERS_GROUP)
                });
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let runtime = runtime.clone();
                async move { Ok::<_, Infallible>(handle(request, allowed, runtime).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await;
        });
    }
}

async fn handle<R: Runtime>(
    request: http::Request<Incoming>,
    allowed: bool,
    runtime: Arc<R>,
) -> Response<Body> {
    if !allowed {
        return text(StatusCode::FORBIDDEN, "only the API servers may call the kubelet API\n");
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let method = request.method().clone();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (http::Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (http::Method::GET, ["containerLogs", namespace, pod, container]) => {
            container_logs(runtime, namespace, pod, container, &query).await
        }
        (http::Method::GET, ["exec", namespace, pod, container]) => {
            exec(request, runtime, namespace, pod, container, &query).await
        }
        (http::Method::GET, ["stats", "summary"]) => crate::stats::summary_response(runtime.as_ref()).await,
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// `GET /exec/<namespace>/<pod>/<container>?command=…`, a WebSocket upgrade.
async fn exec<R: Runtime>(
    request: http::Request<Incoming>,
    runtime: Arc<R>,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let exec = match crate::exec::ExecRequest::from_query(query) {
        Ok(exec) => exec,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    let (protocol, accept) = match crate::exec::negotiate(request.headers()) {
        Ok(negotiated) => negotiated,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    let run = match runs_of(runtime.as_ref(), namespace, pod, container).await {
        Ok((_, runs)) => {
            runs.into_iter().last().filter(|run| matches!(run.state, ContainerState::Running { .. }))
        }
        Err(response) => return response,
    };
    let Some(run) = run else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("container {container:?} in pod {pod:?} is not running"),
        );
    };
    let process = crate::exec::start(&runtime, &run.id, &exec).await;
    crate::exec::switch(request, protocol, accept, exec, process)
}

/// The sandbox of a pod on this node and the runs of one of its containers, oldest first.
async fn runs_of<R: Runtime>(
    runtime: &R,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<(Sandbox, Vec<ContainerInfo>), Response<Body>> {
    let sandboxes = runtime.list_sandboxes().await.unwrap_or_default();
    let Some(sandbox) =
        sandboxes.iter().find(|sandbox| sandbox.config.namespace == namespace && sandbox.config.name == pod)
    else {
        return Err(text(
            StatusCode::NOT_FOUND,
            &format!("pod {namespace}/{pod} has no containers on this node"),
        ));
    };
    let mut runs: Vec<ContainerInfo> = runtime
        .list_containers()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|info| info.pod_uid == sandbox.config.pod_uid && info.name == container)
        .collect();
    runs.sort_by_key(|info| info.attempt);
    Ok((sandbox.clone(), runs))
}

/// `GET /containerLogs/<namespace>/<pod>/<container>?<PodLogOptions>`.
async fn container_logs<R: Runtime>(
    runtime: Arc<R>,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let request = match LogRequest::from_query(query) {
        Ok(request) => request,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    let (sandbox, runs) = match runs_of(runtime.as_ref(), namespace, pod, container).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let chosen =
        if request.previous { runs.len().checked_sub(2).map(|index| &runs[index]) } else { runs.last() };
    let Some(run) = chosen else {
        let message = if request.previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating")
        };
        return text(StatusCode::BAD_REQUEST, &message);
    };
    let path = runtime.log_path(&sandbox.config, container, run.attempt);
    let running = matches!(run.state, ContainerState::Running { .. });
    let exited = {
        let runtime = runtime.clone();
        let id = run.id.clone();
        async move {
            if running {
                let _ = runtime.wait_container(&id).await;
            }
        }
    };
    let receiver = logs::stream(path, request, exited);
    let body =
        http_body_util::StreamBody::new(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver
                .recv()
                .await
                .map(|chunk| (Ok::<_, Infallible>(hyper::body::Frame::data(chunk)), receiver))
        }));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(body.boxed_unsync())
        .expect("a valid response")
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(http_body_util::Full::new(Bytes::from(message.to_owned())).boxed_unsync())
        .expect("a valid response")
}
