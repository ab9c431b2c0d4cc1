//! Copying a proxied connection inside the kernel: each direction moves bytes from one socket
//! into a pipe and from the pipe into the other socket with splice(2), so they never pass
//! through the proxy's memory (`copy_bidirectional` reads each byte into a buffer and writes
//! it out again: two copies and twice the system calls' data).
//!
//! Everything is non-blocking: the pipes are created with O_NONBLOCK, every splice is
//! SPLICE_F_NONBLOCK, and tokio's readiness of the sockets says when to try again. A direction
//! alternates two steps: fill the empty pipe from its source, then drain the pipe into its
//! destination until it is empty. A splice that would block is thus never ambiguous: filling,
//! the pipe is empty, so only the source can lack data; draining, the pipe holds bytes, so only
//! the destination can lack room. That matters because tokio clears a socket's readiness when
//! an operation on it would block.

use std::io;
use std::os::fd::OwnedFd;

use rustix::net::Shutdown;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The capacity asked of each pipe: the bytes one fill moves at most. Linux's default is 64 KiB
/// (16 pages); a larger pipe halves the splices per byte on a busy stream. Unprivileged
/// processes may get up to `/proc/sys/fs/pipe-max-size` (1 MiB by default) and, past a per-user
/// total (`pipe-user-pages-soft`), the kernel gives smaller pipes: the size is a wish, and a
/// refusal keeps the default. Two pipes per connection and [`super::CONNECTIONS_MAX`]
/// connections bound the pages held, and the pipe holds only what the sockets' buffers would.
pub const PIPE_BYTES: usize = 256 * 1024;

/// One direction's pipe.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        // Best effort: a refusal (the per-user limit) leaves the default size.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_BYTES);
        Ok(Pipe { read, write })
    }
}

/// The two pipes of one connection, made before the copy starts so that a failure (out of
/// file descriptors, say) can fall back to copying through user space.
pub struct Pipes {
    client_to_upstream: Pipe,
    upstream_to_client: Pipe,
}

impl Pipes {
    pub fn new() -> io::Result<Pipes> {
        Ok(Pipes { client_to_upstream: Pipe::new()?, upstream_to_client: Pipe::new()? })
    }
}

/// Copies both ways between `client` and `upstream` until both directions have reached their
/// end of stream; each end of stream is passed on as a half-close (shutdown of the write side).
/// Returns the bytes moved client to upstream and upstream to client; the first error of
/// either direction ends both, as `tokio::io::copy_bidirectional` does.
pub async fn copy_bidirectional(
    client: &TcpStream,
    upstream: &TcpStream,
    pipes: Pipes,
) -> io::Result<(u64, u64)> {
    tokio::try_join!(
        one_way(client, upstream, &pipes.client_to_upstream),
        one_way(upstream, client, &pipes.upstream_to_client),
    )
}

/// Moves bytes from `source` to `destination` through `pipe` until the source's end of
/// stream, then shuts down the destination's write side.
async fn one_way(source: &TcpStream, destination: &TcpStream, pipe: &Pipe) -> io::Result<u64> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let mut moved = 0u64;
    loop {
        let filled = loop {
            source.readable().await?;
            let fill = || rustix::pipe::splice(source, None, &pipe.write, None, PIPE_BYTES, flags);
            match source.try_io(Interest::READABLE, || fill().map_err(io::Error::from)) {
                Ok(filled) => break filled,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        };
        if filled == 0 {
            rustix::net::shutdown(destination, Shutdown::Write)?;
            return Ok(moved);
        }
        let mut in_pipe = filled;
        while in_pipe > 0 {
            destination.writable().await?;
            let drain = || rustix::pipe::splice(&pipe.read, None, destination, None, in_pipe, flags);
            match destination.try_io(Interest::WRITABLE, || drain().map_err(io::Error::from)) {
                Ok(drained) => {
                    in_pipe -= drained;
                    moved += drained as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpSocket;

    /// A connected pair of loopback sockets; the accepted one's receive buffer is
    /// `receive_buffer` bytes (the kernel doubles it and keeps a floor of a few KiB).
    async fn pair(receive_buffer: u32) -> (TcpStream, TcpStream) {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(receive_buffer).expect("a receive buffer size");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("binding");
        let listener = socket.listen(1).expect("listening");
        let address = listener.local_addr().expect("an address");
        let (connected, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (connected.expect("connecting"), accepted.expect("accepting").0)
    }

    /// `length` bytes that differ from one offset to the next, so that a lost, repeated or
    /// reordered stretch shows.
    fn pattern(length: usize, seed: u8) -> Vec<u8> {
        (0..length).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    // A client, the proxy's two sockets and a server: MiBs both ways, the client's end of
    // stream in the middle (it still reads all the server sends after it), then the server's.
    // The server's small receive buffer keeps the proxy's upstream socket full, so the copy
    // often holds bytes in its pipe while the destination has no room.
    #[tokio::test]
    async fn moves_both_ways_and_passes_each_end_of_stream_on() {
        let (mut client, proxy_client) = pair(1 << 20).await;
        let (proxy_upstream, mut server) = pair(4096).await;
        let copy = tokio::spawn(async move {
            let pipes = Pipes::new().expect("two pipes");
            copy_bidirectional(&proxy_client, &proxy_upstream, pipes).await
        });
        let request = pattern(3 << 20, 0x5a);
        let response = pattern(2 << 20, 0xa5);
        let (client_side, server_side) = tokio::join!(
            async {
                let (mut reader, mut writer) = client.split();
                let write = async {
                    writer.write_all(&request).await.expect("writing the request");
                    writer.shutdown().await.expect("half-closing");
                };
                let mut received = Vec::new();
                let read = reader.read_to_end(&mut received);
                let ((), read) = tokio::join!(write, read);
                read.expect("reading the response");
                received
            },
            async {
                let mut received = Vec::new();
                server.read_to_end(&mut received).await.expect("reading the request");
                server.write_all(&response).await.expect("writing the response");
                server.shutdown().await.expect("closing");
                received
            },
        );
        assert!(server_side == request, "the server got {} bytes, not the request", server_side.len());
        assert!(client_side == response, "the client got {} bytes, not the response", client_side.len());
        let moved = copy.await.expect("the copy task").expect("the copy");
        assert_eq!(moved, (request.len() as u64, response.len() as u64));
    }
}
