//! `kubectl exec` on the agent's side: a WebSocket speaking Kubernetes' `v5.channel.k8s.io`
//! (or `v4`) protocol, in which every binary message starts with its channel — 0 stdin,
//! 1 stdout, 2 stderr, 3 the final Status, 4 terminal resizes, 255 (v5) "close this stream".
//!
//! The API server passes the client's upgrade request through unchanged and then splices the
//! two connections, so this is the only place that speaks the protocol.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::runtime::{ContainerId, ExecOptions, ExecProcess, Runtime};

/// The subprotocols spoken, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
/// The largest message accepted from a client (stdin chunks, resizes).
const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Output is read and sent in chunks of at most this many bytes.
const CHUNK_BYTES: usize = 32 * 1024;
/// Messages queued for the client; readers of the command's output wait when it is full.
const OUTGOING_MAX: usize = 16;
/// How long output may keep flowing after the command exited (a background process may hold
/// the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What `kubectl exec` asked for (Kubernetes' PodExecOptions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecRequest {
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut request = ExecRequest::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let flag = matches!(value.as_ref(), "true" | "1");
            match key.as_ref() {
                "command" => request.argv.push(value.into_owned()),
                "stdin" => request.stdin = flag,
                "stdout" => request.stdout = flag,
                "stderr" => request.stderr = flag,
                "tty" => request.tty = flag,
                _ => {}
            }
        }
        if request.argv.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        if !(request.stdin || request.stdout || request.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(request)
    }
}

/// The subprotocol to speak with a client that offered `headers`, and the accept key, if the
/// request is a WebSocket upgrade this side can take.
pub fn negotiate(headers: &HeaderMap) -> Result<(&'static str, String), String> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !header("upgrade").eq_ignore_ascii_case("websocket") {
        return Err("exec needs a WebSocket upgrade (Upgrade: websocket); SPDY is not supported".into());
    }
    let key = header("sec-websocket-key");
    if key.is_empty() || header("sec-websocket-version") != "13" {
        return Err("a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13".into());
    }
    let offered: Vec<&str> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let protocol = PROTOCOLS
        .into_iter()
        .find(|protocol| offered.contains(protocol))
        .ok_or_else(|| format!("none of the offered subprotocols {offered:?} is one of {PROTOCOLS:?}"))?;
    Ok((protocol, tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())))
}

/// Answers an upgrade request with `101 Switching Protocols` and runs the session once the
/// connection is upgraded; `process` is the started command, or why it could not start.
pub fn switch<B: Default>(
    request: http::Request<Incoming>,
    protocol: &'static str,
    accept: String,
    exec: ExecRequest,
    process: Result<ExecProcess, String>,
) -> Response<B> {
    tokio::spawn(async move {
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => session(TokioIo::new(upgraded), exec, process).await,
            Err(error) => tracing::debug!(%error, "an exec connection failed to upgrade"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", protocol)
        .body(B::default())
        .expect("a valid response")
}

/// Starts the command for `exec` in the container `id`.
pub async fn start<R: Runtime>(
    runtime: &Arc<R>,
    id: &ContainerId,
    exec: &ExecRequest,
) -> Result<ExecProcess, String> {
    let options = ExecOptions { stdin: exec.stdin, tty: exec.tty };
    runtime.exec_interactive(id, &exec.argv, options).await.map_err(|error| error.to_string())
}

/// Relays one exec session over an upgraded connection.
pub async fn session<S>(io: S, exec: ExecRequest, process: Result<ExecProcess, String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MESSAGE_BYTES_MAX))
        .max_frame_size(Some(MESSAGE_BYTES_MAX));
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (mut sink, mut incoming) = socket.split();
    let (outgoing, mut queue) = mpsc::channel::<Message>(OUTGOING_MAX);
    let writer = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        // A normal closure code: client-go reads a close without one as an error, not as the
        // end of the streams.
        let normal = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = sink.send(Message::Close(Some(normal))).await;
        let _ = sink.close().await;
    });
    let status = match process {
        Ok(process) => relay(process, &exec, &mut incoming, &outgoing).await,
        Err(message) => failure_status(
            "InternalError",
            500,
            &format!("error executing command in container: {message}"),
            None,
        ),
    };
    let _ = outgoing.send(frame(STATUS, status.to_string().as_bytes())).await;
    drop(outgoing);
    let _ = writer.await;
}

/// Pumps the command's streams until it exits; returns the final Status.
async fn relay<I>(
    process: ExecProcess,
    exec: &ExecRequest,
    incoming: &mut I,
    outgoing: &mpsc::Sender<Message>,
) -> serde_json::Value
where
    I: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let ExecProcess { mut stdin, stdout, stderr, resize, mut exit, kill } = process;
    let mut pumps = vec![tokio::spawn(pump(stdout, STDOUT, exec.stdout, outgoing.clone()))];
    if let Some(stderr) = stderr {
        pumps.push(tokio::spawn(pump(stderr, STDERR, exec.stderr, outgoing.clone())));
    }
    let code = loop {
        tokio::select! {
            code = &mut exit => break code,
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(&STDIN) => {
                        if let Some(writer) = stdin.as_mut()
                            && writer.write_all(&data[1..]).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    Some(&RESIZE) => {
                        if let (Some(resize), Some((columns, rows))) = (&resize, terminal_size(&data[1..])) {
                            resize(columns, rows);
                        }
                    }
                    Some(&CLOSE) if data.get(1) == Some(&STDIN) => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client went away: nobody is left to see the command's output.
                    kill();
                }
                Some(Ok(_)) => {}
            },
        }
    };
    drop(stdin);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, futures::future::join_all(pumps)).await;
    match code {
        Some(0) => serde_json::json!({ "metadata": {}, "status": "Success" }),
        Some(code) => failure_status(
            "NonZeroExitCode",
            500,
            &format!(
                "command terminated with non-zero exit code: error executing command {:?}, exit code {code}",
                exec.argv
            ),
            Some(code),
        ),
        None => failure_status("InternalError", 500, "the command was killed by a signal", None),
    }
}

fn failure_status(reason: &str, code: u16, message: &str, exit_code: Option<i32>) -> serde_json::Value {
    let mut status = serde_json::json!({
        "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(exit_code) = exit_code {
        status["details"] =
            serde_json::json!({ "causes": [{ "reason": "ExitCode", "message": exit_code.to_string() }] });
    }
    status
}

/// Copies a stream to the client on `channel` (or discards it if the client did not ask).
async fn pump(
    mut reader: Box<dyn AsyncRead + Send + Unpin>,
    channel: u8,
    wanted: bool,
    outgoing: mpsc::Sender<Message>,
) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    // A terminal's master reads an error, not end-of-file, once the command is gone.
    while let Ok(read @ 1..) = reader.read(&mut buffer).await {
        if wanted && outgoing.send(frame(channel, &buffer[..read])).await.is_err() {
            return;
        }
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// `{"Width":120,"Height":40}` as kubectl sends it on the resize channel.
fn terminal_size(json: &[u8]) -> Option<(u16, u16)> {
    let size: serde_json::Value = serde_json::from_slice(json).ok()?;
    let dimension = |name: &str| size.get(name)?.as_u64().and_then(|value| u16::try_from(value).ok());
    Some((dimension("Width")?, dimension("Height")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    // PodExecOptions parse from kubectl's query; a request without a command or streams is
    // refused with kube-apiserver's words.
    #[test]
    fn requests() {
        let request =
            ExecRequest::from_query("command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&tty=true")
                .unwrap();
        assert_eq!(request.argv, ["sh", "-c", "echo hi"]);
        assert!(request.stdin && request.stdout && request.tty && !request.stderr);
        assert_eq!(
            ExecRequest::from_query("stdout=true").unwrap_err(),
            "you must specify at least one command for the container"
        );
        assert!(ExecRequest::from_query("command=ls").is_err());
    }

    // The upgrade is accepted with the best offered subprotocol and RFC 6455's accept key.
    #[test]
    fn negotiation() {
        let mut headers = HeaderMap::new();
        headers.insert("upgrade", "websocket".parse().unwrap());
        headers.insert("sec-websocket-version", "13".parse().unwrap());
        headers.insert("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap());
        headers.insert("sec-websocket-protocol", "v4.channel.k8s.io, v5.channel.k8s.io".parse().unwrap());
        let (protocol, accept) = negotiate(&headers).unwrap();
        assert_eq!(protocol, "v5.channel.k8s.io");
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        headers.insert("sec-websocket-protocol", "channel.k8s.io".parse().unwrap());
        assert!(negotiate(&headers).is_err());
        headers.insert("upgrade", "SPDY/3.1".parse().unwrap());
        assert!(negotiate(&headers).unwrap_err().contains("SPDY"));
    }

    // A whole session over an in-memory connection: stdin reaches the command, stdout and
    // stderr come back on their channels, and the Status carries the exit code.
    #[tokio::test]
    async fn session_relays_streams_and_status() {
        let (server_side, client_side) = tokio::io::duplex(64 * 1024);
        let (stdin_writer, mut command_stdin) = tokio::io::duplex(1024);
        let (mut command_stdout, stdout_reader) = tokio::io::duplex(1024);
        let (exit_sender, exit_receiver) = tokio::sync::oneshot::channel::<Option<i32>>();
        // A fake command: echoes its stdin to stdout upper-cased, then exits 3.
        tokio::spawn(async move {
            let mut input = Vec::new();
            command_stdin.read_to_end(&mut input).await.unwrap();
            command_stdout.write_all(&input.to_ascii_uppercase()).await.unwrap();
            drop(command_stdout);
            exit_sender.send(Some(3)).unwrap();
        });
        let process = ExecProcess {
            stdin: Some(Box::new(stdin_writer)),
            stdout: Box::new(stdout_reader),
            stderr: Some(Box::new(tokio::io::empty())),
            resize: None,
            exit: Box::pin(async move { exit_receiver.await.unwrap_or(None) }),
            kill: Box::new(|| {}),
        };
        let exec =
            ExecRequest { argv: vec!["cat".into()], stdin: true, stdout: true, stderr: true, tty: false };
        tokio::spawn(session(server_side, exec, Ok(process)));
        let mut client = WebSocketStream::from_raw_socket(client_side, Role::Client, None).await;
        client.send(frame(STDIN, b"hello")).await.unwrap();
        client.send(frame(CLOSE, &[STDIN])).await.unwrap();
        let mut stdout = Vec::new();
        let mut status = None;
        while let Some(Ok(message)) = client.next().await {
            if let Message::Binary(data) = message {
                match data[0] {
                    STDOUT => stdout.extend_from_slice(&data[1..]),
                    STATUS => status = Some(serde_json::from_slice::<serde_json::Value>(&data[1..]).unwrap()),
                    _ => {}
                }
            }
        }
        assert_eq!(stdout, b"HELLO");
        let status = status.expect("a final status");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
    }
}
