//! The peer transport: every message between store members, through the fault plan.
//!
//! Members talk gRPC (HTTP/2, mutual TLS unless explicitly disabled) with one generic frame
//! per call. Before a request leaves, the fault plan decides whether the link delivers it, late,
//! or twice; before its response is handed back, the plan decides again for the reverse link.
//! A request that may have reached its target — timed out, or its response lost — is reported
//! as `MaybeDelivered`, never as failed: the caller must treat its effect as unknown.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_chaos::Faults;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::limits::MAX_SNAPSHOT_BYTES;
use crate::network::Network;
use crate::peer_proto::Frame;
use crate::peer_proto::peer_client::PeerClient;
use crate::raft::MemberId;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest frame on the wire: a whole snapshot plus its envelope.
pub const MAX_FRAME_BYTES: usize = MAX_SNAPSHOT_BYTES + 64 * 1024;

/// The sender id of a transport that is not a member (an operator tool, a member that does
/// not know its id yet): its messages cross no member-to-member link, so no fault applies.
pub const NOT_A_MEMBER: MemberId = 0;

/// Which RPC of the `Peer` service a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Forward,
    Faults,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The request certainly did not reach the peer.
    #[error("peer {target} at {url} is unreachable: {reason}")]
    NotSent { target: MemberId, url: String, reason: String },
    /// The peer could not be reached, or the connection broke; the request may still have
    /// reached it and taken effect.
    #[error("peer {target} is unavailable ({reason}); the request may have taken effect")]
    Unavailable { target: MemberId, reason: String },
    /// The request may have reached the peer and taken effect there.
    #[error("no answer from peer {target} ({reason}); the request may have taken effect")]
    MaybeDelivered { target: MemberId, reason: String },
    /// The peer answered with something this member cannot decode.
    #[error("undecodable answer from peer {target}")]
    Undecodable {
        target: MemberId,
        #[source]
        source: postcard::Error,
    },
}

/// The client side of the peer transport, shared by Raft replication and request forwarding.
pub struct PeerTransport {
    self_id: MemberId,
    faults: Faults,
    tls: Option<ClientTlsConfig>,
    network: Network,
    /// One lazily connected channel per peer URL; tonic multiplexes calls over it.
    channels: Mutex<HashMap<String, Channel>>,
}

impl PeerTransport {
    pub fn new(self_id: MemberId, faults: Faults, tls: Option<ClientTlsConfig>) -> Self {
        PeerTransport { self_id, faults, tls, network: Network::Tcp, channels: Mutex::new(HashMap::new()) }
    }

    /// Dials peers over `network` instead of the operating system's TCP.
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Sends `request` to the peer and decodes its answer, all within `timeout`.
    pub async fn call<Req, Resp>(
        &self,
        target: MemberId,
        url: &str,
        rpc: PeerRpc,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let payload = postcard::to_allocvec(request).expect("serializing to memory cannot fail");
        let deadline = tokio::time::Instant::now() + timeout;
        let client = self.client(target, url)?;

        let outbound = self.decide(self.self_id, target);
        if !outbound.deliver {
            // A lost request looks to its sender exactly like a slow one.
            tokio::time::sleep_until(deadline).await;
            return Err(TransportError::MaybeDelivered { target, reason: "request timed out".into() });
        }
        hold(outbound.delay).await;
        if outbound.duplicate {
            let mut copy = client.clone();
            let frame = Frame { payload: payload.clone().into() };
            tokio::spawn(async move { send(&mut copy, rpc, frame).await });
        }

        let mut client = client;
        let sent =
            tokio::time::timeout_at(deadline, send(&mut client, rpc, Frame { payload: payload.into() }));
        let answer = match sent.await {
            Err(_elapsed) => {
                return Err(TransportError::MaybeDelivered { target, reason: "request timed out".into() });
            }
            Ok(Err(status)) => return Err(classify_status(target, status)),
            Ok(Ok(frame)) => frame,
        };

        let inbound = self.decide(target, self.self_id);
        if !inbound.deliver {
            tokio::time::sleep_until(deadline).await;
            return Err(TransportError::MaybeDelivered { target, reason: "response lost".into() });
        }
        hold(inbound.delay).await;
        postcard::from_bytes(&answer.payload).map_err(|source| TransportError::Undecodable { target, source })
    }

    fn decide(&self, from: MemberId, to: MemberId) -> shoal_chaos::Verdict {
        if from == NOT_A_MEMBER || to == NOT_A_MEMBER {
            return shoal_chaos::Verdict {
                deliver: true,
                delay: Duration::ZERO,
                duplicate: false,
                reordered: false,
            };
        }
        self.faults.decide(from, to)
    }

    fn client(&self, target: MemberId, url: &str) -> Result<PeerClient<Channel>, TransportError> {
        let mut channels = self.channels.lock().expect("channel map lock poisoned");
        let channel = match channels.get(url) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.connect_lazy(url).map_err(|reason| TransportError::NotSent {
                    target,
                    url: url.to_owned(),
                    reason,
                })?;
                channels.insert(url.to_owned(), channel.clone());
                channel
            }
        };
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(MAX_FRAME_BYTES)
            .max_encoding_message_size(MAX_FRAME_BYTES))
    }

    fn connect_lazy(&self, url: &str) -> Result<Channel, String> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|error| error.to_string())?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|error| error.to_string())?;
        }
        Ok(self.network.channel(endpoint))
    }
}

/// Holds a message for an injected delay. No delay means no timer at all: tokio's timers tick
/// in milliseconds, so even a zero sleep could cost one.
async fn hold(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

async fn send(client: &mut PeerClient<Channel>, rpc: PeerRpc, frame: Frame) -> Result<Frame, tonic::Status> {
    let response = match rpc {
        PeerRpc::AppendEntries => client.append_entries(frame).await,
        PeerRpc::Vote => client.vote(frame).await,
        PeerRpc::InstallSnapshot => client.install_snapshot(frame).await,
        PeerRpc::Forward => client.forward(frame).await,
        PeerRpc::Faults => client.faults(frame).await,
    };
    response.map(tonic::Response::into_inner)
}

fn classify_status(target: MemberId, status: tonic::Status) -> TransportError {
    // tonic reports a refused connection and a connection broken mid-call alike, so neither
    // can be called "not sent": both may have carried the request.
    if status.code() == tonic::Code::Unavailable {
        TransportError::Unavailable { target, reason: status.message().to_owned() }
    } else {
        TransportError::MaybeDelivered { target, reason: status.to_string() }
    }
}
