//! shoal-store's injected network over turmoil's simulated TCP.
//!
//! turmoil delivers each connection's bytes in order (it re-sequences segments) and breaks a
//! connection with a reset when a host crashes, which is what `InjectedNetwork` asks of an
//! implementation. It does not retransmit: a segment dropped by `Sim::partition` or by a random
//! link failure leaves a hole that stalls the connection for good, which no real TCP does. So the
//! simulation partitions with `hold`/`release` (segments wait, as TCP retransmission would make
//! them) and drops messages with shoal's own fault plan instead.

use std::io;
use std::net::SocketAddr;

use shoal_store::network::{BoxFuture, Connection, Incoming, InjectedNetwork};

/// The turmoil network of the host the calling task runs on.
#[derive(Debug)]
pub struct TurmoilNetwork;

impl InjectedNetwork for TurmoilNetwork {
    fn listen(&self, addr: SocketAddr) -> BoxFuture<io::Result<(SocketAddr, Incoming)>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(addr).await?;
            let bound = listener.local_addr()?;
            let incoming = futures::stream::unfold(listener, |listener| async move {
                let accepted = listener.accept().await.map(|(stream, _)| Connection::new(stream));
                Some((accepted, listener))
            });
            Ok((bound, Box::pin(incoming) as Incoming))
        })
    }

    fn connect(&self, host: String, port: u16) -> BoxFuture<io::Result<Connection>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host, port)).await?;
            Ok(Connection::new(stream))
        })
    }
}
