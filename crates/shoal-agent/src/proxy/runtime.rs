//! The proxy's sockets: one listener per address of the [`Table`], each accepted connection
//! spliced to an endpoint the listener's [`Balancer`] picks.
//!
//! [`run`] (in [`ProxyMode::Userspace`]; the kernel path is [`super::nftables`]) recomputes the table whenever the node's Service or EndpointSlice cache changes
//! (the caches' reflectors signal it) and hands it to [`Proxy::apply`]: new addresses are
//! bound, vanished ones closed, and listeners whose endpoints changed get their new route at
//! once, so the next connection they accept already sees it. Connections already spliced are
//! left alone when their endpoint goes, as kube-proxy's userspace mode did. On Linux the bytes
//! of a connection move between its two sockets inside the kernel ([`zero_copy`]).
//!
//! Several agents of a local cluster run on one machine and listen on the same addresses:
//! every listener sets SO_REUSEADDR and SO_REUSEPORT, the kernel spreads connections over
//! them, and as every agent has the same view, any of them routes a connection alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use super::{Balancer, NodeAddresses, ProxyMode, Route, Table, diff};

#[cfg(target_os = "linux")]
pub mod zero_copy;

/// Connections the proxy splices at once, over all its listeners: beyond it, listeners stop
/// accepting (clients wait in the kernel's backlog) until one ends, so a flood cannot exhaust
/// the agent's file descriptors.
pub const CONNECTIONS_MAX: usize = 4096;
/// How long one connect to an endpoint may take before the next endpoint is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Endpoints tried for one connection at most before the client's connection is closed.
pub const CONNECT_ATTEMPTS_MAX: usize = 3;
/// How often listen addresses that could not be bound are tried again.
pub const BIND_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// Connections each listener's kernel queue holds before they are accepted.
pub const LISTEN_BACKLOG: u32 = 1024;
/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What [`run`] needs besides the caches.
#[derive(Clone, Copy, Debug)]
pub struct ProxyConfig {
    pub node: NodeAddresses,
    /// See [`CONNECTIONS_MAX`].
    pub connections_max: usize,
    pub mode: ProxyMode,
}

/// Keeps the node's listeners in step with its Service and EndpointSlice caches, until the
/// task is dropped. `changed` is notified by the caches' reflectors on every event.
pub async fn run(
    config: ProxyConfig,
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    changed: Arc<Notify>,
) {
    if config.mode == ProxyMode::Nftables {
        return super::nftables::run(config.node, services, endpoint_slices, changed).await;
    }
    let mut proxy = Proxy::new(config.connections_max);
    loop {
        let (services, slices) = (services.state(), endpoint_slices.state());
        let table =
            Table::compute(services.iter().map(AsRef::as_ref), slices.iter().map(AsRef::as_ref), config.node);
        proxy.apply(table.by_listen_address());
        if proxy.has_unbound() {
            tokio::select! {
                () = changed.notified() => {}
                () = tokio::time::sleep(BIND_RETRY_INTERVAL) => {}
            }
        } else {
            changed.notified().await;
        }
    }
}

/// The proxy's listeners. Dropping it closes them (connections already spliced go on).
pub struct Proxy {
    /// The routes last applied, by listen address.
    applied: BTreeMap<SocketAddr, Route>,
    listeners: HashMap<SocketAddr, Listener>,
    /// Applied addresses not bound yet (in use by another program, say), with their routes.
    unbound: BTreeMap<SocketAddr, Route>,
    /// Unbound addresses whose failure was logged as a warning already: retries log quietly.
    warned: BTreeSet<SocketAddr>,
    connections: Arc<Semaphore>,
}

struct Listener {
    route: watch::Sender<Arc<Route>>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub fn new(connections_max: usize) -> Self {
        Proxy {
            applied: BTreeMap::new(),
            listeners: HashMap::new(),
            unbound: BTreeMap::new(),
            warned: BTreeSet::new(),
            connections: Arc::new(Semaphore::new(connections_max)),
        }
    }

    /// Makes the listeners those of `routes`, then tries to bind every address still unbound.
    pub fn apply(&mut self, routes: BTreeMap<SocketAddr, Route>) {
        let changes = diff(&self.applied, &routes);
        for address in &changes.close {
            self.listeners.remove(address);
            self.unbound.remove(address);
            self.warned.remove(address);
            tracing::debug!(%address, "proxy stopped listening");
        }
        for (address, route) in changes.update {
            match self.listeners.get(&address) {
                Some(listener) => {
                    listener.route.send_replace(Arc::new(route));
                }
                None => {
                    self.unbound.insert(address, route);
                }
            }
        }
        self.unbound.extend(changes.open);
        self.applied = routes;
        self.bind_unbound();
    }

    /// Whether some address could not be bound yet; [`Proxy::bind_unbound`] tries again.
    pub fn has_unbound(&self) -> bool {
        !self.unbound.is_empty()
    }

    /// The addresses listened on.
    pub fn listening(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listeners.keys().copied()
    }

    /// Tries to bind every address not bound yet; a failure is logged and left for later.
    pub fn bind_unbound(&mut self) {
        let unbound = std::mem::take(&mut self.unbound);
        for (address, route) in unbound {
            match bind(address) {
                Ok(listener) => {
                    let (sender, receiver) = watch::channel(Arc::new(route));
                    let task = tokio::spawn(serve(listener, receiver, self.connections.clone()));
                    self.listeners.insert(address, Listener { route: sender, task });
                    self.warned.remove(&address);
                    tracing::debug!(%address, "proxy listening");
                }
                Err(error) => {
                    if self.warned.insert(address) {
                        tracing::warn!(%address, %error, "the proxy cannot listen on a service address; retrying");
                    } else {
                        tracing::debug!(%address, %error, "the proxy still cannot listen on a service address");
                    }
                    self.unbound.insert(address, route);
                }
            }
        }
    }
}

/// A listener that shares its address with the other agents on the machine.
fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections and splices each to an endpoint of the listener's current route.
async fn serve(listener: TcpListener, route: watch::Receiver<Arc<Route>>, connections: Arc<Semaphore>) {
    let balancer = Arc::new(Mutex::new(Balancer::default()));
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "proxy accept");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Taken after the accept, so that idle listeners hold none; while none is left this
        // listener accepts no more, and new clients wait in its backlog.
        let permit = connections.clone().acquire_owned().await.expect("the semaphore is never closed");
        let route = route.borrow().clone();
        let balancer = balancer.clone();
        tokio::spawn(async move {
            splice(client, peer.ip(), &route, &balancer).await;
            drop(permit);
        });
    }
}

/// Connects the client to an endpoint and copies both ways until both sides are done; a
/// side's end of stream is passed on as a half-close. Without an endpoint that answers, the
/// client's connection is closed.
async fn splice(mut client: TcpStream, client_ip: IpAddr, route: &Route, balancer: &Mutex<Balancer>) {
    let Some(mut upstream) = connect(route, client_ip, balancer).await else {
        tracing::debug!(service = ?route.service, "no endpoint answered; closing the client's connection");
        return;
    };
    let _ = upstream.set_nodelay(true);
    if let Err(error) = copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%error, service = ?route.service, "proxied connection ended");
    }
}

/// Copies both ways between the sockets until both ends of stream, passing each on as a
/// half-close: on Linux inside the kernel ([`zero_copy`]), elsewhere, or when the pipes cannot
/// be made (out of file descriptors, say), through a buffer in user space.
async fn copy_bidirectional(client: &mut TcpStream, upstream: &mut TcpStream) -> io::Result<(u64, u64)> {
    #[cfg(target_os = "linux")]
    match zero_copy::Pipes::new() {
        Ok(pipes) => return zero_copy::copy_bidirectional(client, upstream, pipes).await,
        Err(error) => tracing::debug!(%error, "no pipes for splice(2); copying through user space"),
    }
    tokio::io::copy_bidirectional(client, upstream).await
}

/// A connection to one of the route's endpoints: each that refuses or does not answer within
/// [`CONNECT_TIMEOUT`] is skipped, up to [`CONNECT_ATTEMPTS_MAX`] tries.
pub async fn connect(route: &Route, client_ip: IpAddr, balancer: &Mutex<Balancer>) -> Option<TcpStream> {
    let mut failed = Vec::with_capacity(CONNECT_ATTEMPTS_MAX);
    for _ in 0..CONNECT_ATTEMPTS_MAX {
        let endpoint = balancer.lock().expect("the balancer's lock is never poisoned").pick(
            route,
            client_ip,
            &failed,
            Instant::now(),
        )?;
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(error)) => tracing::debug!(%endpoint, %error, "endpoint refused; trying another"),
            Err(_) => tracing::debug!(%endpoint, "endpoint did not answer; trying another"),
        }
        failed.push(endpoint);
    }
    None
}
