//! The HTTP plumbing both servers share: a bounded connection guard in
//! front of tiny_http, a fixed pool of handler threads, strict query
//! parsing, and JSON error replies.
//!
//! tiny_http has no limits of its own (a thread per connection, header lines
//! of any length, no timeouts), so the public socket belongs to the guard:
//! a fixed pool of guard threads takes connections from a bounded queue
//! (full: 503 at once), reads each request head with a size cap (431) and a
//! deadline (408), never reads a body (the handler answers 405 or 413), and
//! relays the request to tiny_http over one private unix connection per
//! client connection, copying back exactly one Content-Length-framed answer.
//! Keep-alive is bounded (idle time, requests per connection). Handlers
//! return a [`Reply`]; nothing here panics on input.

use std::io::{Cursor, Read, Write};
use std::net::{Shutdown as SocketShutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::shutdown::Shutdown;

/// Set by the guard on a request that announced a body (never forwarded).
const BODY_REFUSED_HEADER: &str = "X-Clnode-Body-Refused";
const BODY_REFUSED_HEADER_LOWER: &str = "x-clnode-body-refused";

/// Longest request target (path and query) accepted.
pub const MAX_TARGET_LEN: usize = 2048;
/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 8192;
/// A request head must arrive within this long of the connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle keep-alive connection is closed after this long.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
/// Requests served on one connection before it is closed.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 10_000;
/// Each write of the answer to the client must progress within this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections waiting for a guard thread; beyond this they get 503.
pub const PENDING_CONNECTIONS: usize = 64;
/// The longest a handler may take (the API's longest long poll, plus slack).
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(45);
/// The pause after a failed accept.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// Shared, so a cached rendering is served without copying it.
    pub body: Arc<[u8]>,
    pub allow: Option<&'static str>,
}

/// A reply body as tiny_http's reader.
struct SharedBody(Arc<[u8]>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply::json_bytes(status, Arc::from(value.to_string().into_bytes()))
    }

    /// JSON already rendered (e.g. from a cache).
    pub fn json_bytes(status: u16, body: Arc<[u8]>) -> Reply {
        Reply { status, content_type: "application/json", body, allow: None }
    }

    pub fn text(status: u16, text: String) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: Arc::from(text.into_bytes()), allow: None }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    pub fn method_not_allowed(allow: &'static str) -> Reply {
        Reply { allow: Some(allow), ..Reply::error(405, format!("method not allowed; use {allow}")) }
    }
}

/// What a handler sees of a request: already checked for size.
pub struct Incoming<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub accepts_json: bool,
    /// The `Authorization: Bearer` token, if one was sent.
    pub bearer: Option<&'a str>,
    /// The client announced a body (the guard dropped it; no route takes one).
    pub body_refused: bool,
}

impl Incoming<'_> {
    pub fn is_read(&self) -> bool {
        matches!(self.method, Method::Get | Method::Head)
    }

    /// 413 when the request came with a body (after the method was checked).
    pub fn refuse_body(&self) -> Option<Reply> {
        self.body_refused.then(|| Reply::error(413, "request body not accepted"))
    }

    /// `None` when `expected` is unset or the request presents it; otherwise
    /// the 401 to answer. Compared in constant time.
    pub fn check_bearer(&self, expected: Option<&crate::secret::Secret>) -> Option<Reply> {
        let expected = expected?;
        match self.bearer {
            Some(token) if expected.matches(token.as_bytes()) => None,
            Some(_) => Some(Reply::error(401, "invalid bearer token")),
            None => Some(Reply::error(401, "missing bearer token (Authorization: Bearer ...)")),
        }
    }
}

/// Starts the guard on `addr` and `workers` handler threads behind it. Each
/// handler thread makes its own handler (so it can own a database
/// connection). `guards` bounds the connections served at once.
pub fn serve<H, F>(
    name: &str,
    addr: SocketAddr,
    workers: usize,
    shutdown: &Shutdown,
    make_handler: F,
) -> Result<Vec<JoinHandle<()>>, String>
where
    F: Fn() -> H,
    H: FnMut(&Incoming<'_>) -> Reply + Send + 'static,
{
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} ({name}): {e}"))?;
    let (socket_path, unix_listener) = private_unix_listener(name)?;
    let server = Arc::new(Server::from_listener(unix_listener, None).map_err(|e| format!("{name}: {e}"))?);
    let mut handles = Vec::with_capacity(workers * 3 + 2);
    // Every thread below blocks until there is work (no polling while
    // idle); the stopper wakes them all when the node stops.
    for index in 0..workers {
        let server = Arc::clone(&server);
        let shutdown = shutdown.clone();
        let mut handler = make_handler();
        let handle = std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || {
                while !shutdown.is_requested() {
                    if let Ok(request) = server.recv() {
                        answer(request, &mut handler);
                    }
                }
            })
            .map_err(|e| format!("cannot start {name} worker: {e}"))?;
        handles.push(handle);
    }
    // Twice as many guards as handlers: a guard waits on its handler, and
    // some requests (long polls) hold a handler for a while.
    let (sender, receiver) = sync_channel::<TcpStream>(PENDING_CONNECTIONS);
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..workers * 2 {
        let (receiver, socket_path, shutdown) = (Arc::clone(&receiver), socket_path.clone(), shutdown.clone());
        let handle = std::thread::Builder::new()
            .name(format!("{name}-guard-{index}"))
            .spawn(move || guard_loop(&receiver, &socket_path, &shutdown))
            .map_err(|e| format!("cannot start {name} guard: {e}"))?;
        handles.push(handle);
    }
    let wake_addr = match listener.local_addr() {
        Ok(local) if local.ip().is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), local.port()),
        Ok(local) => local,
        Err(e) => return Err(format!("{name}: {e}")),
    };
    let accept_shutdown = shutdown.clone();
    let accept = std::thread::Builder::new()
        .name(format!("{name}-accept"))
        .spawn(move || {
            // Dropping the sender on the way out ends the guards.
            while !accept_shutdown.is_requested() {
                match listener.accept() {
                    Ok((stream, _)) if accept_shutdown.is_requested() => drop(stream),
                    Ok((stream, _)) => match sender.try_send(stream) {
                        Ok(()) => {}
                        Err(TrySendError::Full(stream)) => refuse_busy(stream),
                        Err(TrySendError::Disconnected(_)) => return,
                    },
                    // Out of descriptors and the like: pause instead of spinning.
                    Err(_) => std::thread::sleep(ACCEPT_POLL),
                }
            }
        })
        .map_err(|e| format!("cannot start {name} acceptor: {e}"))?;
    handles.push(accept);
    let shutdown = shutdown.clone();
    let stopper = std::thread::Builder::new()
        .name(format!("{name}-stop"))
        .spawn(move || {
            shutdown.wait();
            // Wake the acceptor with a connection, and every handler.
            let _ = TcpStream::connect_timeout(&wake_addr, Duration::from_millis(200));
            for _ in 0..workers {
                server.unblock();
            }
            let _ = std::fs::remove_file(&socket_path);
        })
        .map_err(|e| format!("cannot start {name} stopper: {e}"))?;
    handles.push(stopper);
    Ok(handles)
}

/// A unix socket in a fresh directory only this user can enter.
fn private_unix_listener(name: &str) -> Result<(PathBuf, UnixListener), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("clnode-{}-{name}-{unique}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("{name}: {}: {e}", dir.display()))?;
    let path = dir.join("http.sock");
    let listener = UnixListener::bind(&path).map_err(|e| format!("{name}: {}: {e}", path.display()))?;
    Ok((path, listener))
}

fn refuse_busy(mut stream: TcpStream) {
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

fn guard_loop(receiver: &Mutex<Receiver<TcpStream>>, socket_path: &PathBuf, shutdown: &Shutdown) {
    loop {
        // One guard waits on the queue; the others wait on the lock.
        let next = receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
        match next {
            Ok(stream) => guard_one(stream, socket_path, shutdown),
            Err(_) => return, // the acceptor stopped
        }
    }
}

/// A request head as the guard forwards it, and how to frame its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedHead {
    pub bytes: Vec<u8>,
    /// The client may send another request on this connection.
    pub keep_alive: bool,
    /// A HEAD request: the answer has headers only.
    pub head_only: bool,
}

/// Serves the requests of one connection through tiny_http, within limits:
/// each head bounded in size and time, keep-alive between requests for at
/// most [`KEEP_ALIVE_IDLE`] and [`MAX_REQUESTS_PER_CONNECTION`] requests.
fn guard_one(client: TcpStream, socket_path: &PathBuf, shutdown: &Shutdown) {
    let _ = client.set_nodelay(true);
    let _ = client.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut reader = HeadReader { stream: client, buffer: Vec::with_capacity(1024), shutdown: shutdown.clone() };
    let mut upstream: Option<UnixStream> = None;
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

/// Sends one head upstream and copies exactly one answer back. Returns
/// whether the upstream connection can carry another request.
fn relay(head: &ForwardedHead, upstream: &mut UnixStream, client: &mut TcpStream) -> std::io::Result<bool> {
    upstream.write_all(&head.bytes)?;
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = find_head_end(&buffer) {
            break end;
        }
        if buffer.len() > MAX_HEAD_BYTES * 2 {
            return Err(std::io::Error::other("answer head too large"));
        }
        let read = upstream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::Error::other("handler closed the connection"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let content_length = std::str::from_utf8(&buffer[..end]).ok().and_then(|text| {
        text.split("\r\n").find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<u64>().ok()).flatten()
        })
    });
    let Some(length) = content_length.map(|l| if head.head_only { 0 } else { l }) else {
        // Not framed: let the handler end the connection, pass it all on.
        client.write_all(&buffer)?;
        upstream.shutdown(SocketShutdown::Write)?;
        std::io::copy(upstream, client)?;
        return Ok(false);
    };
    let body_so_far = (buffer.len() - end) as u64;
    if body_so_far > length {
        return Err(std::io::Error::other("answer longer than its Content-Length"));
    }
    client.write_all(&buffer)?;
    let remaining = length - body_so_far;
    let copied = std::io::copy(&mut Read::by_ref(upstream).take(remaining), client)?;
    if copied != remaining {
        return Err(std::io::Error::other("answer shorter than its Content-Length"));
    }
    Ok(true)
}

/// Reads request heads from a client, keeping bytes that arrive early.
struct HeadReader {
    stream: TcpStream,
    buffer: Vec<u8>,
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
            let slice = if silent { remaining.min(ACCEPT_POLL) } else { remaining };
            let _ = self.stream.set_read_timeout(Some(slice));
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

/// Checks one complete request head (ending in an empty line) and rewrites
/// it for tiny_http: hop-by-hop connection headers and body headers removed
/// (a body is never read or forwarded; the handler is told one was
/// announced, and the connection closes after the answer). Pure, for fuzzing.
pub fn rewrite_head(head: &[u8]) -> Result<ForwardedHead, (u16, &'static str)> {
    if head.len() > MAX_HEAD_BYTES {
        return Err((431, "request head larger than 8192 bytes"));
    }
    // Only printable ASCII (and tabs in header values) reaches tiny_http,
    // which answers anything else without a JSON body or drops the client.
    if head.iter().any(|&b| !(b.is_ascii_graphic() || b == b' ' || b == b'\t' || b == b'\r' || b == b'\n')) {
        return Err((400, "request head must be printable ASCII"));
    }
    let text = std::str::from_utf8(head).map_err(|_| (400, "request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let (method, _target, version) = parse_request_line(request_line)?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut rewritten = String::with_capacity(head.len() + 64);
    let mut body_announced = false;
    rewritten.push_str(request_line);
    rewritten.push_str("\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err((400, "malformed header line"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err((400, "malformed header name"));
        }
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            // No route takes a body: it is never read or forwarded. The
            // handler answers 405 or 413, whichever applies first.
            "content-length" => {
                if value != "0" {
                    body_announced = true;
                }
                continue;
            }
            "transfer-encoding" => {
                body_announced = true;
                continue;
            }
            "connection" => {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    keep_alive = false;
                } else if value.contains("keep-alive") {
                    keep_alive = true;
                }
                continue;
            }
            "keep-alive" | BODY_REFUSED_HEADER_LOWER => continue,
            _ => {}
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    if body_announced {
        // The unread body would be taken for the next request: close after.
        keep_alive = false;
        rewritten.push_str(BODY_REFUSED_HEADER);
        rewritten.push_str(": 1\r\n");
    }
    rewritten.push_str("\r\n");
    Ok(ForwardedHead { bytes: rewritten.into_bytes(), keep_alive, head_only: method == "HEAD" })
}

/// RFC 9110 token characters (method and header names).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `METHOD SP /target SP HTTP/1.x`, strictly.
fn parse_request_line(line: &str) -> Result<(&str, &str, &str), (u16, &'static str)> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((400, "malformed request line"));
    };
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err((400, "malformed request method"));
    }
    if !target.starts_with('/') {
        return Err((400, "the request target must be a path"));
    }
    if target.len() > MAX_TARGET_LEN {
        return Err((414, "request target longer than 2048 bytes"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err((400, "only HTTP/1.0 and HTTP/1.1 are served"));
    }
    Ok((method, target, version))
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(4).position(|window| window == b"\r\n\r\n").map(|position| position + 4)
}

fn answer<H>(request: Request, handler: &mut H)
where
    H: FnMut(&Incoming<'_>) -> Reply,
{
    let is_head = *request.method() == Method::Head;
    let reply = check_and_handle(&request, handler);
    let mut response = Response::new(
        tiny_http::StatusCode(reply.status),
        Vec::new(),
        Cursor::new(SharedBody(if is_head { Arc::from(Vec::new()) } else { Arc::clone(&reply.body) })),
        Some(reply.body.len()),
        None,
    );
    if let Ok(header) = Header::from_bytes("Content-Type", reply.content_type) {
        response.add_header(header);
    }
    if let Some(allow) = reply.allow {
        if let Ok(header) = Header::from_bytes("Allow", allow) {
            response.add_header(header);
        }
    }
    // The client may have gone; nothing to do about it.
    let _ = request.respond(response);
}

fn check_and_handle<H>(request: &Request, handler: &mut H) -> Reply
where
    H: FnMut(&Incoming<'_>) -> Reply,
{
    let target = request.url();
    if target.len() > MAX_TARGET_LEN {
        return Reply::error(414, format!("request target longer than {MAX_TARGET_LEN} bytes"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let accepts_json = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("Accept") && h.value.as_str().to_ascii_lowercase().contains("application/json"));
    let bearer = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Bearer "))
        .map(str::trim);
    let body_refused = request.headers().iter().any(|h| h.field.equiv(BODY_REFUSED_HEADER));
    handler(&Incoming { method: request.method(), path, query, accepts_json, bearer, body_refused })
}

/// Parses `a=1&b=2` strictly: each name at most once, only `allowed` names.
pub fn parse_query<'a>(query: &'a str, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if query.is_empty() {
        return Ok(pairs);
    }
    for part in query.split('&') {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        if !allowed.contains(&name) {
            return Err(format!("unknown query parameter {name:?}; allowed: {}", allowed.join(", ")));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(format!("query parameter {name:?} given twice"));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// A decimal number with no sign, no spaces and no leading `+`.
pub fn parse_decimal(name: &str, value: &str, max: u64) -> Result<u64, String> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name} must be a decimal number, got {value:?}"));
    }
    let number: u64 = value.parse().map_err(|_| format!("{name} is out of range"))?;
    if number > max {
        return Err(format!("{name} must be at most {max}, got {number}"));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_rewritten_to_close_and_never_carry_a_body() {
        let rewritten = rewrite_head(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert_eq!(rewritten.bytes, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(rewritten.keep_alive && !rewritten.head_only);
        let closing = rewrite_head(b"HEAD /x HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!closing.keep_alive && closing.head_only);
        assert!(!rewrite_head(b"GET /x HTTP/1.0\r\n\r\n").unwrap().keep_alive, "HTTP/1.0 closes by default");
        let with_body = rewrite_head(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert!(!with_body.keep_alive, "an unread body ends the connection");
        let text = String::from_utf8(with_body.bytes).unwrap();
        assert!(text.contains("X-Clnode-Body-Refused: 1") && !text.contains("Content-Length"), "{text}");
        let spoofed = rewrite_head(b"GET /x HTTP/1.1\r\nX-Clnode-Body-Refused: 1\r\n\r\n").unwrap();
        assert!(!String::from_utf8(spoofed.bytes).unwrap().contains("Refused"), "a client cannot set the marker");
        assert_eq!(rewrite_head(&[0xff, 0xfe, b'\r', b'\n', b'\r', b'\n']).unwrap_err().0, 400);
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert_eq!(rewrite_head(bad).unwrap_err().0, 400, "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET_LEN));
        assert_eq!(rewrite_head(long.as_bytes()).unwrap_err().0, 414);
        assert_eq!(rewrite_head(&vec![b'a'; MAX_HEAD_BYTES + 1]).unwrap_err().0, 431);
    }

    #[test]
    fn head_end_is_found() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(27));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn query_parsing_is_strict() {
        assert_eq!(
            parse_query("after=5&limit=10", &["after", "limit"]).unwrap(),
            vec![("after", "5"), ("limit", "10")]
        );
        assert!(parse_query("after=5&after=6", &["after"]).is_err());
        assert!(parse_query("bogus=1", &["after"]).is_err());
        assert_eq!(parse_query("", &["after"]).unwrap(), vec![]);
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(parse_decimal("n", "42", 100), Ok(42));
        for bad in ["", "-1", "+1", "1e3", " 1", "0x10", "99999999999999999999999"] {
            assert!(parse_decimal("n", bad, u64::MAX).is_err(), "{bad:?} accepted");
        }
        assert!(parse_decimal("n", "101", 100).is_err());
    }
}
