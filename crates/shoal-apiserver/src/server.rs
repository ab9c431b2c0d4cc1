//! The HTTPS listener: TLS, client identities, connection limits, and hand-off to the API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_pki::{ClientAuth, TlsFiles};
use shoal_store::store::Store;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::auth::{TokenAuthenticator, User};
use crate::objects::ObjectStore;
use crate::secret_box::SecretBox;

/// Connections served at once; more wait in the kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 4_096;
/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A response body: whole, or streamed (watch, follow).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What an API server needs to start.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    pub listen: SocketAddr,
    /// The serving certificate, and the CA whose client certificates are accepted.
    pub tls: TlsFiles,
    /// Bearer tokens (Kubernetes' static token file format).
    pub token_file: Option<PathBuf>,
    /// The keys that encrypt Secrets at rest.
    pub encryption_key_file: PathBuf,
    /// Where Service ClusterIPs come from.
    pub service_cidr: crate::allocator::ServiceCidr,
    /// The cluster CA with its key, to sign node credentials at `POST /shoal/v1/join`;
    /// without it joins get 503. The CA certificate (`tls.ca`) is served either way.
    pub signer: Option<Arc<shoal_pki::ClusterCa>>,
    /// The client certificate this server presents to agents' kubelet ports (`pods/log`);
    /// without it such requests get 503.
    pub kubelet_client: Option<TlsFiles>,
    /// How long pods tolerate, by default, a node that is not ready or unreachable before they
    /// are evicted (`crate::admit::DEFAULT_TOLERATION_SECONDS` unless set).
    pub default_toleration_seconds: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error("binding the API address {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] shoal_pki::PkiError),
    #[error(transparent)]
    Tokens(#[from] crate::auth::TokenFileError),
    #[error(transparent)]
    Encryption(#[from] crate::secret_box::SecretBoxError),
    #[error("reading the CA certificate {path}")]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running API server.
pub struct RunningApiServer {
    pub addr: SocketAddr,
    api: Arc<Api>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningApiServer {
    /// The API for a client inside this process acting as `user`: its requests are served
    /// without a connection (no TLS, TCP or HTTP framing) but otherwise as any other, through
    /// authorization, admission and the store.
    pub fn local(&self, user: User) -> LocalApi {
        LocalApi::new(self.api.clone(), user)
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The API server as a function, for the clients inside its process (the controllers and the
/// scheduler of a `shoal server`), as one user. It goes on serving after the listener stops.
#[derive(Clone)]
pub struct LocalApi {
    api: Arc<Api>,
    user: User,
}

impl LocalApi {
    /// `api` for clients inside its process acting as `user`.
    pub fn new(api: Arc<Api>, user: User) -> LocalApi {
        LocalApi { api, user }
    }

    pub async fn handle(
        &self,
        request: http::Request<UnsyncBoxBody<Bytes, std::io::Error>>,
    ) -> http::Response<Body> {
        let (parts, body) = request.into_parts();
        self.api.handle(parts, body, Some(self.user.clone())).await
    }
}

/// Starts serving the Kubernetes API over `store`.
pub async fn start(config: ApiServerConfig, store: Store) -> Result<RunningApiServer, ApiStartError> {
    let mut tls = shoal_pki::server_config(&config.tls, ClientAuth::Optional)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let tokens = match &config.token_file {
        Some(path) => TokenAuthenticator::load(path)?,
        None => TokenAuthenticator::default(),
    };
    let secret_box = SecretBox::load_or_generate(&config.encryption_key_file)?;
    let ca_pem = read_ca_pem(&config.tls.ca)?;
    let api = Arc::new(
        Api::new(ObjectStore::new(store, secret_box), tokens, config.service_cidr)
            .with_cluster_ca(ca_pem, config.signer.clone())
            .with_node_dialer(
                config.kubelet_client.as_ref().map(crate::node_proxy::NodeDialer::load).transpose()?,
            )
            .with_default_toleration_seconds(config.default_toleration_seconds),
    );
    api.ensure_system_objects();
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ApiStartError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ApiStartError::Bind { addr: config.listen, source })?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, acceptor, api.clone(), stopped));
    tracing::info!(%addr, "Kubernetes API serving");
    Ok(RunningApiServer { addr, api, stop, task })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    api: Arc<Api>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting an API connection failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
                tracing::debug!(%peer, "TLS handshake failed or timed out");
                return;
            };
            let certificate_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| shoal_pki::peer_identity(leaf))
                .map(|identity| User { name: identity.common_name, groups: identity.organizations });
            serve_connection(tls, api, certificate_user, stopped).await;
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    api: Arc<Api>,
    certificate_user: Option<User>,
    mut stopped: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let api = api.clone();
        let user = certificate_user.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.map_err(std::io::Error::other).boxed_unsync();
            Ok::<_, Infallible>(api.handle(parts, body, user).await)
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "API connection ended with an error");
            }
        }
        _ = stopped.changed() => {}
    }
}

/// The CA certificate file's text, read up to the size a PEM file may have.
fn read_ca_pem(path: &std::path::Path) -> Result<String, ApiStartError> {
    use std::io::Read as _;
    let error = |source| ApiStartError::CaCertificate { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(error)?;
    let mut text = String::new();
    file.take(shoal_pki::PEM_FILE_BYTES_MAX).read_to_string(&mut text).map_err(error)?;
    Ok(text)
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into()).boxed_unsync()
}
