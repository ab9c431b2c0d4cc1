//! Where a member's connections come from: the operating system's TCP, or an injected network.
//!
//! Both listeners and the peer transport's dialer go through [`Network`]. Production uses
//! [`Network::Tcp`], tokio's sockets, exactly as if this module did not exist. The deterministic
//! simulation (`shoal-sim`) passes [`Network::Injected`] with an adapter over its simulated
//! sockets, so that the real server and transport run over a network it controls. This crate
//! does not know which simulator that is.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tonic::transport::server::{Connected, Router};
use tonic::transport::{Channel, Endpoint, Uri};

/// A future an [`InjectedNetwork`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The connections a listener of an [`InjectedNetwork`] accepts, in order.
pub type Incoming = Pin<Box<dyn Stream<Item = io::Result<Connection>> + Send>>;

/// How a member listens and dials.
#[derive(Clone, Default)]
pub enum Network {
    /// The operating system's TCP, through tokio.
    #[default]
    Tcp,
    /// Another network, e.g. a simulated one.
    Injected(Arc<dyn InjectedNetwork>),
}

/// A network other than the operating system's.
///
/// To ensure correctness, an implementation:
/// - delivers each connection's bytes in order and exactly once, or breaks the connection, as
///   TCP does: gRPC framing relies on it;
/// - resolves the host names of the peer URLs the members advertise;
/// - never blocks the calling thread: it runs on the member's async threads.
pub trait InjectedNetwork: Send + Sync + 'static {
    /// Listens on `addr`; returns the address bound and the connections accepted there.
    fn listen(&self, addr: SocketAddr) -> BoxFuture<io::Result<(SocketAddr, Incoming)>>;

    /// Opens a connection to `host:port`.
    fn connect(&self, host: String, port: u16) -> BoxFuture<io::Result<Connection>>;
}

/// One byte stream of an [`InjectedNetwork`].
pub struct Connection(Box<dyn Io>);

/// What a connection must be to carry gRPC.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A bound listener of either network, ready to serve a gRPC router.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Injected { addr: SocketAddr, incoming: Incoming },
}

impl Network {
    pub(crate) async fn listen(&self, addr: SocketAddr) -> io::Result<Listener> {
        match self {
            Network::Tcp => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            Network::Injected(network) => {
                let (addr, incoming) = network.listen(addr).await?;
                Ok(Listener::Injected { addr, incoming })
            }
        }
    }

    /// A channel to `endpoint` that connects on first use and reconnects after a failure.
    pub(crate) fn channel(&self, endpoint: Endpoint) -> Channel {
        let Network::Injected(network) = self else {
            return endpoint.connect_lazy();
        };
        let network = network.clone();
        let connector = tower::service_fn(move |uri: Uri| {
            let network = network.clone();
            async move {
                let (host, port) = host_and_port(&uri)?;
                let connection = network.connect(host, port).await?;
                Ok::<_, io::Error>(TokioIo::new(connection))
            }
        });
        endpoint.connect_with_connector_lazy(connector)
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Tcp => f.write_str("Tcp"),
            Network::Injected(_) => f.write_str("Injected"),
        }
    }
}

/// The host and port to dial for `uri`, the port defaulting by scheme as URLs do.
fn host_and_port(uri: &Uri) -> io::Result<(String, u16)> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no host"));
    let host = uri.host().ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    Ok((host, port))
}

impl Listener {
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr(),
            Listener::Injected { addr, .. } => Ok(*addr),
        }
    }

    /// Serves `router` on every connection accepted, until the listener fails.
    pub(crate) async fn serve(self, router: Router) -> Result<(), tonic::transport::Error> {
        match self {
            Listener::Tcp(listener) => {
                // Without TCP_NODELAY, Nagle's algorithm meets the peer's delayed ACKs and a
                // small response waits ~40 ms: every request/response protocol wants it off.
                let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                router.serve_with_incoming(incoming).await
            }
            Listener::Injected { incoming, .. } => router.serve_with_incoming(incoming).await,
        }
    }
}

impl Connection {
    pub fn new(io: impl Io) -> Self {
        Connection(Box::new(io))
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// Injected connections carry no peer address: nothing in the store asks for one.
impl Connected for Connection {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}
