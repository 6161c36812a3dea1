//! The connection guard: owns every public connection. A fixed pool of
//! guard threads takes connections from a bounded queue (full: 503 at once),
//! reads each request head with a size cap and a deadline, never reads a
//! body, answers cached renderings itself ([`super::CachedAnswers`]) and
//! relays everything else to tiny_http ([`super::relay`]).

use std::io::{IoSlice, Read, Write};
use std::net::{Shutdown as SocketShutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::head::{find_head_end, rewrite_head, ForwardedHead};
use super::relay::relay;
use tiny_http::HTTPVersion;

use super::{
    tiny_response, CachedAnswers, Reply, ACCEPT_POLL, HANDLER_TIMEOUT, HEAD_TIMEOUT, KEEP_ALIVE_IDLE, MAX_HEAD_BYTES,
    MAX_REQUESTS_PER_CONNECTION, WRITE_TIMEOUT,
};
use crate::shutdown::Shutdown;

pub(crate) fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = stream.write_all(&plain_response(503, "too many connections"));
}

fn plain_response(status: u16, message: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        414 => "URI Too Long",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub(crate) fn guard_loop(
    receiver: &Mutex<Receiver<TcpStream>>,
    socket_path: &PathBuf,
    cached: Option<&CachedAnswers>,
    shutdown: &Shutdown,
) {
    loop {
        // One guard waits on the queue; the others wait on the lock.
        let next = receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
        match next {
            Ok(stream) => guard_one(stream, socket_path, cached, shutdown),
            Err(_) => return, // the acceptor stopped
        }
    }
}

/// Serves the requests of one connection through tiny_http, within limits:
/// each head bounded in size and time, keep-alive between requests for at
/// most [`KEEP_ALIVE_IDLE`] and [`MAX_REQUESTS_PER_CONNECTION`] requests.
fn guard_one(client: TcpStream, socket_path: &PathBuf, cached: Option<&CachedAnswers>, shutdown: &Shutdown) {
    let _ = client.set_nodelay(true);
    let _ = client.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut reader =
        HeadReader { stream: client, buffer: Vec::with_capacity(1024), read_timeout: None, shutdown: shutdown.clone() };
    let mut upstream: Option<UnixStream> = None;
    // Reused for every cached answer's head on this connection.
    let mut answer_head = Vec::with_capacity(256);
    for served in 0..MAX_REQUESTS_PER_CONNECTION {
        let wait = if served == 0 { HEAD_TIMEOUT } else { KEEP_ALIVE_IDLE };
        let head = match reader.next_head(wait) {
            Ok(Some(head)) => head,
            Ok(None) => break, // the client closed or went idle between requests
            Err((status, message)) => {
                let _ = reader.stream.write_all(&plain_response(status, message));
                break;
            }
        };
        if let Some(reply) = cached.and_then(|lookup| cached_answer(lookup, &head)) {
            let body = if head.head_only { &[][..] } else { &reply.body[..] };
            let sent = render_answer_head(&reply, &head, &mut answer_head)
                .and_then(|()| write_all_parts(&mut reader.stream, &answer_head, body));
            match sent {
                Ok(()) if head.keep_alive => continue,
                _ => break,
            }
        }
        if upstream.is_none() {
            upstream = UnixStream::connect(socket_path)
                .and_then(|stream| {
                    stream.set_read_timeout(Some(HANDLER_TIMEOUT))?;
                    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    Ok(stream)
                })
                .ok();
        }
        let Some(connection) = upstream.as_mut() else {
            let _ = reader.stream.write_all(&plain_response(502, "handler unavailable"));
            break;
        };
        match relay(&head, connection, &mut reader.stream) {
            // tiny_http ends an HTTP/1.0 connection after one answer (the
            // guard drops the client's Connection header): use a new one.
            Ok(true) if head.keep_alive && head.http_1_0 => upstream = None,
            Ok(true) if head.keep_alive => {}
            Ok(_) => break,
            Err(_) => {
                let _ = reader.stream.write_all(&plain_response(502, "handler unavailable"));
                break;
            }
        }
    }
    let _ = reader.stream.shutdown(SocketShutdown::Both);
}

/// What `lookup` answers for `head`, if the guard may write it itself:
/// never for a request that names a transfer coding (tiny_http's framing
/// would then depend on it), and only a 200.
fn cached_answer(lookup: &CachedAnswers, head: &ForwardedHead) -> Option<Reply> {
    if head.names_transfer_coding {
        return None;
    }
    lookup(&head.incoming()?).filter(|reply| reply.status == 200)
}

/// The status line and headers tiny_http writes for `reply` to this request
/// (its own writer, so a cached answer and a relayed one cannot differ).
fn render_answer_head(reply: &Reply, head: &ForwardedHead, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.clear();
    let version = if head.http_1_0 { HTTPVersion(1, 0) } else { HTTPVersion(1, 1) };
    // The only request header raw_print reads is TE, and such requests are
    // relayed, so no request headers are needed here.
    tiny_response(reply, head.head_only).raw_print(&mut *out, version, &[], true, None)
}

/// Writes `head` then `body`, in one system call when the socket takes it.
fn write_all_parts(stream: &mut TcpStream, mut head: &[u8], mut body: &[u8]) -> std::io::Result<()> {
    // Every pass writes at least one byte or fails (a stalled client fails
    // after WRITE_TIMEOUT), so the loop ends.
    while !head.is_empty() || !body.is_empty() {
        let written = stream.write_vectored(&[IoSlice::new(head), IoSlice::new(body)])?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = written.min(head.len());
        head = &head[from_head..];
        body = body.get(written - from_head..).unwrap_or_default();
    }
    Ok(())
}

/// Reads request heads from a client, keeping bytes that arrive early.
struct HeadReader {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// The read timeout the socket has now: setting it is a system call,
    /// made only when it changes.
    read_timeout: Option<Duration>,
    /// An idle keep-alive connection is let go when the node stops.
    shutdown: Shutdown,
}

impl HeadReader {
    /// The next request head, bounded in size and in time (`wait` from
    /// now). `Ok(None)` when the client closes, or stays silent between
    /// requests, before sending any byte of a new one.
    fn next_head(&mut self, wait: Duration) -> Result<Option<ForwardedHead>, (u16, &'static str)> {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 2048];
        let end = loop {
            if let Some(end) = find_head_end(&self.buffer) {
                break end;
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err((431, "request head larger than 8192 bytes"));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let silent = self.buffer.is_empty();
            if silent && self.shutdown.is_requested() {
                return Ok(None);
            }
            if remaining.is_zero() {
                return if silent && wait == KEEP_ALIVE_IDLE {
                    Ok(None)
                } else {
                    Err((408, "request head not received in time"))
                };
            }
            // Between requests, look at the shutdown flag now and then.
            // Mid-head, wake at the same pace to keep the timeout (and so
            // the system call to set it) unchanged; the deadline is checked
            // after every slice.
            let slice = remaining.min(ACCEPT_POLL);
            if self.read_timeout != Some(slice) {
                let _ = self.stream.set_read_timeout(Some(slice));
                self.read_timeout = Some(slice);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) if silent => return Ok(None),
                Ok(0) => return Err((400, "connection closed before the request head ended")),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if Instant::now() < deadline {
                        continue; // a slice ended, not the wait
                    }
                    if silent && wait == KEEP_ALIVE_IDLE {
                        return Ok(None);
                    }
                    return Err((408, "request head not received in time"));
                }
                Err(_) if silent => return Ok(None),
                Err(_) => return Err((400, "unreadable request")),
            }
        };
        let head: Vec<u8> = self.buffer.drain(..end).collect();
        rewrite_head(&head).map(Some)
    }
}
