//! A fault-injecting TCP forwarder: what stands between an agent and its API server in the
//! tests and benchmarks of node failure, so that agents' traffic passes a fault plan
//! (`shoal_chaos::Faults`) as the store members' peer traffic does, and the lab's latency
//! models besides (`lab::failure_detector::latency::LinkLatency`).
//!
//! Bytes go through in chunks, in order, each direction on its own; TLS passes through
//! untouched. Before a chunk goes on, the plan decides for its direction of the link:
//! - a partitioned link, or a dropped chunk, *holds* the chunk and asks again every
//!   [`RETRY_INTERVAL`], as TCP retransmits through a partition: the connection stays open
//!   and loses nothing, the peers hear silence, and traffic resumes when the link heals;
//! - a delay (the plan's, plus the latency model's) holds the chunk that long, but never
//!   lets it overtake the chunk before it: a stream has one order, so reordering and
//!   duplication, which only messages can have, do not apply.
//!
//! While a chunk is held its direction reads nothing more, so the kernel's buffers fill and
//! the sender is slowed, as by a real network. Both halves are bounded: [`CHUNK_BYTES_MAX`]
//! per read, [`CHUNKS_IN_FLIGHT_MAX`] chunks awaiting their time, [`CONNECTIONS_MAX`]
//! connections (further ones are closed at once, and the client dials again).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shoal_chaos::{Faults, Link};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::lab::failure_detector::latency::LinkLatency;

/// The most bytes read in one go, and so the most one chunk holds.
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;
/// Chunks of one direction read but not yet due, at most: 1 MiB per direction with full
/// chunks. Reading waits beyond it.
pub const CHUNKS_IN_FLIGHT_MAX: usize = 64;
/// Connections forwarded at once, at most. An agent keeps one or two; the rest is room for
/// reconnections whose old connection is still held by a partition.
pub const CONNECTIONS_MAX: usize = 64;
/// How often a held chunk asks the plan again: Linux's shortest TCP retransmission timeout.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(200);
/// How long connecting to the upstream may take before the client's connection is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running forwarder from a loopback port of its own to `upstream`. Dropping it stops it
/// and closes every connection it forwards.
pub struct LinkForwarder {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    faults: Faults,
    /// `from` is the forwarder's client side (the agent), `to` its upstream (the server).
    link: Link,
    /// The instant `LinkLatency` measures its time from.
    origin: Instant,
    // A std `Mutex`: held for one model step, never across an `.await`.
    latency: Mutex<Option<LinkLatency>>,
    connections: Arc<Semaphore>,
}

impl LinkForwarder {
    /// Listens on a free loopback port and forwards every connection to `upstream` through
    /// `faults`, deciding on the link `link.from -> link.to` for bytes towards the upstream and
    /// on its reverse for bytes back.
    pub async fn start(upstream: SocketAddr, link: Link, faults: Faults) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            faults,
            link,
            origin: Instant::now(),
            latency: Mutex::new(None),
            connections: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
        });
        let accept = tokio::spawn(accept(listener, upstream, shared.clone()));
        Ok(LinkForwarder { local_addr, shared, accept })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The link its upstream-bound bytes are decided on.
    pub fn link(&self) -> Link {
        self.shared.link
    }

    /// Puts the link under a latency model from now on (`None`: no latency beyond the plan's).
    /// `make` gets the model's present time.
    pub fn set_latency(&self, make: impl FnOnce(Duration) -> Option<LinkLatency>) {
        let now = self.shared.origin.elapsed();
        *self.shared.latency() = make(now);
    }

    /// The lengths of the pauses the current latency model has begun so far.
    pub fn pauses(&self) -> Vec<Duration> {
        self.shared.latency().as_ref().map(|model| model.pauses().to_vec()).unwrap_or_default()
    }
}

impl Drop for LinkForwarder {
    fn drop(&mut self) {
        // Aborting the accept loop drops its `JoinSet`, which aborts every connection.
        self.accept.abort();
    }
}

impl Shared {
    fn latency(&self) -> MutexGuard<'_, Option<LinkLatency>> {
        // Only a panic inside a model step could poison the lock: a bug.
        self.latency.lock().expect("link latency lock poisoned")
    }

    /// How long a chunk entering `link` now is to be held, or `None` if the plan does not let
    /// it through at all for now.
    fn delay(&self, link: Link) -> Option<Duration> {
        let verdict = self.faults.decide(link.from, link.to);
        if !verdict.deliver {
            return None;
        }
        let now = self.origin.elapsed();
        let modelled = self.latency().as_mut().map_or(Duration::ZERO, |model| model.delay(now));
        Some(verdict.delay + modelled)
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(%error, "link forwarder: accepting a connection failed");
                tokio::time::sleep(RETRY_INTERVAL).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            tracing::warn!(limit = CONNECTIONS_MAX, "link forwarder: too many connections; closing one");
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let _permit = permit;
            forward(client, upstream, shared).await;
        });
    }
}

/// Carries one connection both ways until both directions have ended.
async fn forward(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(server)) => server,
        Ok(Err(error)) => {
            tracing::debug!(%error, %upstream, "link forwarder: connecting upstream failed");
            return;
        }
        Err(_) => return,
    };
    // Chunks are small and already delayed on purpose: Nagle's algorithm would add its own.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let link = shared.link;
    tokio::join!(
        pump(client_read, server_write, &shared, link),
        pump(server_read, client_write, &shared, link.reversed()),
    );
}

/// One direction: reads chunks, stamps each with the instant it is due (never before the one
/// ahead of it), and writes them at that instant. Ends at the reader's end of stream (passing
/// it on) or at the first failed write.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: &Shared, link: Link) {
    let (due_chunks, mut chunks) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT_MAX);
    let read = async move {
        let mut last_due = Instant::now();
        loop {
            let mut chunk = vec![0; CHUNK_BYTES_MAX];
            let length = match from.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(length) => length,
            };
            chunk.truncate(length);
            let delay = loop {
                match shared.delay(link) {
                    Some(delay) => break delay,
                    None => tokio::time::sleep(RETRY_INTERVAL).await,
                }
            };
            last_due = last_due.max(Instant::now() + delay);
            if due_chunks.send((last_due, chunk)).await.is_err() {
                break;
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = chunks.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forwarder in front of an echo server, and a connection through it.
    async fn echo_through(faults: &Faults) -> (LinkForwarder, TcpStream) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        let forwarder = LinkForwarder::start(upstream, Link::new(1000, 1), faults.clone()).await.unwrap();
        let client = TcpStream::connect(forwarder.local_addr()).await.unwrap();
        (forwarder, client)
    }

    async fn read_exactly(client: &mut TcpStream, length: usize) -> Vec<u8> {
        let mut buffer = vec![0; length];
        client.read_exact(&mut buffer).await.unwrap();
        buffer
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_holds_bytes_until_it_heals_and_loses_none() {
        // Bytes go through a healthy link; while the link is partitioned one way, bytes sent
        // are neither delivered nor lost: after the heal they all arrive, in order, on the same
        // connection.
        let faults = Faults::new(1);
        let (_forwarder, mut client) = echo_through(&faults).await;
        client.write_all(b"hello").await.unwrap();
        assert_eq!(read_exactly(&mut client, 5).await, b"hello");

        faults.update_plan(|plan| plan.partition_one_way(1000, 1)).unwrap();
        client.write_all(b"held ").await.unwrap();
        client.write_all(b"in order").await.unwrap();
        let mut buffer = [0; 1];
        let silent = tokio::time::timeout(Duration::from_secs(60), client.read(&mut buffer)).await;
        assert!(silent.is_err(), "nothing may cross a partition");

        faults.update_plan(|plan| plan.heal()).unwrap();
        assert_eq!(read_exactly(&mut client, 13).await, b"held in order");
    }

    #[tokio::test(start_paused = true)]
    async fn delays_keep_the_order_of_the_stream() {
        // With a plan delaying every chunk by 0 to 300 ms, bytes written one at a time come
        // back complete and in order, no sooner than the plan's smallest delay allows.
        let faults = Faults::new(2);
        faults
            .set_plan({
                let mut plan = shoal_chaos::FaultPlan::default();
                plan.set_default(shoal_chaos::LinkFaults {
                    delay_ms: 100,
                    jitter_ms: 200,
                    ..Default::default()
                });
                plan
            })
            .unwrap();
        let (_forwarder, mut client) = echo_through(&faults).await;
        let started = Instant::now();
        let sent: Vec<u8> = (0..50).collect();
        for byte in &sent {
            client.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(read_exactly(&mut client, sent.len()).await, sent);
        // Each byte crossed twice (there and back), at least 100 ms each way.
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    }
}
