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
//!
//! A relayed request crosses three threads (guard, tiny_http's connection
//! thread, a handler) and two unix-socket hops; on two cores that hand-off,
//! not the handler, was most of the cost of a request. So a server may hand
//! [`serve_with_cached_answers`] a [`CachedAnswers`] lookup: after the head
//! passed every check above, the guard asks it, and when it returns an
//! answer the guard writes it itself and tiny_http never sees the request.
//! The lookup must only return answers already rendered and valid for the
//! present state (the API's render cache); it must never block, wait, or
//! touch the database, because it runs on a guard thread that the limits
//! above count on being free again in microseconds. It must check whatever
//! the handler would check first (method, body, bearer token), since a hit
//! skips the handler. The answer's bytes are rendered by tiny_http's own
//! response writer, so they are identical to the relayed answer's (a test
//! holds this). Anything the lookup does not answer (a miss, an error, a
//! 401) goes through the relay as before.

use std::io::{Cursor, IoSlice, Read, Write};
use std::net::{Shutdown as SocketShutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{HTTPVersion, Header, Method, Request, Response, Server};

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

/// Answers the guard may write itself, without a handler: called on a
/// guard thread with a request that passed every check of the guard.
/// `Some` only for a 200 answer that is already rendered and valid now
/// (anything else is ignored and relayed); it must never block, wait or
/// touch the database, and must refuse (`None`) whatever the handler would
/// refuse, bearer token included. See the module comment.
pub type CachedAnswers = Arc<dyn Fn(&Incoming<'_>) -> Option<Reply> + Send + Sync>;

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
    serve_with_cached_answers(name, addr, workers, None, shutdown, make_handler)
}

/// [`serve`], with answers the guard threads give themselves when `cached`
/// has one (see [`CachedAnswers`]); every other request is relayed.
pub fn serve_with_cached_answers<H, F>(
    name: &str,
    addr: SocketAddr,
    workers: usize,
    cached: Option<CachedAnswers>,
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
        let cached = cached.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{name}-guard-{index}"))
            .spawn(move || guard_loop(&receiver, &socket_path, cached.as_ref(), &shutdown))
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

fn guard_loop(
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

/// A request head as the guard forwards it, how to frame its answer, and
/// what a handler would see of it (for [`CachedAnswers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedHead {
    pub bytes: Vec<u8>,
    /// The client may send another request on this connection.
    pub keep_alive: bool,
    /// A HEAD request: the answer has headers only.
    pub head_only: bool,
    pub method: Method,
    /// HTTP/1.0 (tiny_http answers in the request's version).
    pub http_1_0: bool,
    /// The request target, within `bytes`.
    pub target: Range<usize>,
    /// The token of the first `Authorization: Bearer` header, within `bytes`.
    pub bearer: Option<Range<usize>>,
    pub accepts_json: bool,
    /// A body was announced (and is never read).
    pub body_refused: bool,
    /// A `TE` header: tiny_http may then choose the answer's framing from
    /// it, so only the relay answers such a request.
    pub names_transfer_coding: bool,
}

impl ForwardedHead {
    /// The request as a handler sees it (the same fields tiny_http would
    /// give [`check_and_handle`]).
    pub fn incoming(&self) -> Option<Incoming<'_>> {
        let text = std::str::from_utf8(&self.bytes).ok()?;
        let target = text.get(self.target.clone())?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let bearer = match &self.bearer {
            Some(range) => Some(text.get(range.clone())?),
            None => None,
        };
        Some(Incoming {
            method: &self.method,
            path,
            query,
            accepts_json: self.accepts_json,
            bearer,
            body_refused: self.body_refused,
        })
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
    let (method, target, version) = parse_request_line(request_line)?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut rewritten = String::with_capacity(head.len() + 64);
    let mut body_announced = false;
    let (mut bearer, mut accepts_json, mut names_transfer_coding) = (None, false, false);
    let mut authorization_seen = false;
    rewritten.push_str(request_line);
    rewritten.push_str("\r\n");
    let target_range = range_within(request_line, target);
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
            // As check_and_handle reads them from tiny_http: the first
            // Authorization header, any Accept header.
            "authorization" if !authorization_seen => {
                authorization_seen = true;
                bearer = value
                    .strip_prefix("Bearer ")
                    .map(str::trim)
                    .map(|token| shift(range_within(line, token), rewritten.len()));
            }
            "accept" => accepts_json |= value.to_ascii_lowercase().contains("application/json"),
            "te" => names_transfer_coding = true,
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
    Ok(ForwardedHead {
        bytes: rewritten.into_bytes(),
        keep_alive,
        head_only: method == "HEAD",
        method: method.parse().map_err(|()| (400, "malformed request method"))?,
        http_1_0: version == "HTTP/1.0",
        target: target_range,
        bearer,
        accepts_json,
        body_refused: body_announced,
        names_transfer_coding,
    })
}

/// Where `part` (a slice of `whole`) lies within `whole`.
fn range_within(whole: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize).min(whole.len());
    start..(start + part.len()).min(whole.len())
}

fn shift(range: Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
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
    // The client may have gone; nothing to do about it.
    let _ = request.respond(tiny_response(&reply, is_head));
}

/// `reply` as tiny_http writes it, always framed by Content-Length (a
/// HEAD answer carries the length of the body it leaves out).
fn tiny_response(reply: &Reply, is_head: bool) -> Response<Cursor<SharedBody>> {
    let mut response = Response::new(
        tiny_http::StatusCode(reply.status),
        Vec::new(),
        Cursor::new(SharedBody(if is_head { Arc::from(Vec::new()) } else { Arc::clone(&reply.body) })),
        Some(reply.body.len()),
        None,
    )
    // Above its default threshold (32 KiB) tiny_http would send chunks,
    // which the guard cannot frame: it would close the connection after
    // every large page.
    .with_chunked_threshold(usize::MAX);
    if let Ok(header) = Header::from_bytes("Content-Type", reply.content_type) {
        response.add_header(header);
    }
    if let Some(allow) = reply.allow {
        if let Ok(header) = Header::from_bytes("Allow", allow) {
            response.add_header(header);
        }
    }
    response
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
        let seen = rewrite_head(
            b"GET /b?after=1 HTTP/1.1\r\nAccept: Application/JSON\r\nAuthorization:  Bearer  t0k \r\nAuthorization: Bearer no\r\n\r\n",
        )
        .unwrap();
        let incoming = seen.incoming().unwrap();
        assert_eq!((incoming.path, incoming.query, incoming.bearer), ("/b", "after=1", Some("t0k")));
        assert!(incoming.accepts_json && !incoming.body_refused && !seen.names_transfer_coding);
        assert!(rewrite_head(b"GET / HTTP/1.1\r\nte: trailers\r\n\r\n").unwrap().names_transfer_coding);
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

    /// Reads one Content-Length-framed answer; the Date line (the clock
    /// may tick between two answers) reads `Date: -`.
    fn read_answer(stream: &mut TcpStream, head_only: bool) -> Vec<u8> {
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while find_head_end(&answer).is_none() {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "answer ended early: {answer:?}");
            answer.push(byte[0]);
        }
        let text = String::from_utf8(answer).unwrap();
        let length: usize = text
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .expect("Content-Length framing")
            .parse()
            .unwrap();
        let mut body = vec![0u8; if head_only { 0 } else { length }];
        stream.read_exact(&mut body).unwrap();
        let mut lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
        let date = lines.iter_mut().find(|line| line.starts_with("Date: ")).expect("a Date header");
        *date = "Date: -".to_owned();
        let mut masked = lines.join("\r\n").into_bytes();
        masked.extend_from_slice(&body);
        masked
    }

    #[test]
    fn cached_answers_are_the_bytes_tiny_http_writes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Larger than tiny_http's chunking threshold: still Content-Length.
        let body: Arc<[u8]> = Arc::from(format!("{{\"x\":\"{}\"}}", "y".repeat(40_000)).into_bytes());
        let reply = Reply::json_bytes(200, Arc::clone(&body));
        let handled = Arc::new(AtomicUsize::new(0));
        let cached: CachedAnswers = {
            let reply = reply.clone();
            Arc::new(move |request: &Incoming<'_>| {
                (request.path == "/cached" && request.bearer == Some("token")).then(|| reply.clone())
            })
        };
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let shutdown = Shutdown::new();
        let handles = serve_with_cached_answers("test-cached", addr, 1, Some(cached), &shutdown, || {
            let (handled, reply) = (Arc::clone(&handled), reply.clone());
            move |_: &Incoming<'_>| {
                handled.fetch_add(1, Ordering::SeqCst);
                reply.clone()
            }
        })
        .unwrap();
        let auth = "Authorization: Bearer token\r\n";
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut exchange = |method: &str, path: &str, extra: &str| {
            write!(client, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}\r\n").unwrap();
            read_answer(&mut client, method == "HEAD")
        };
        // One keep-alive connection: relayed and cached answers interleave.
        let relayed_get = exchange("GET", "/relayed", "");
        let cached_get = exchange("GET", "/cached", "");
        let cached_head = exchange("HEAD", "/cached", "");
        let relayed_head = exchange("HEAD", "/relayed", "");
        assert_eq!(handled.load(Ordering::SeqCst), 2, "the cached requests never reached a handler");
        assert_eq!(String::from_utf8_lossy(&cached_get), String::from_utf8_lossy(&relayed_get));
        assert_eq!(cached_head, relayed_head);
        let text = String::from_utf8_lossy(&cached_head);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n")
                && text.contains("Content-Type: application/json\r\n")
                && text.contains(&format!("Content-Length: {}\r\n", body.len()))
                && !text.contains("Connection")
                && text.ends_with("\r\n\r\n"),
            "{text}"
        );
        assert!(cached_get.ends_with(&body));
        // Without the token: relayed (here: to the handler).
        write!(client, "GET /cached HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let _ = read_answer(&mut client, false);
        assert_eq!(handled.load(Ordering::SeqCst), 3);
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).unwrap(), 0, "Connection: close ends it after the answer");
        // Naming a transfer coding: relayed (tiny_http then chunks).
        let mut chunked = TcpStream::connect(addr).unwrap();
        chunked.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(chunked, "GET /cached HTTP/1.1\r\n{auth}TE: chunked\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        chunked.read_to_end(&mut answer).unwrap();
        assert!(String::from_utf8_lossy(&answer).contains("Transfer-Encoding: chunked"));
        assert_eq!(handled.load(Ordering::SeqCst), 4);

        // HTTP/1.0, keep-alive asked for: same bytes, and the connection
        // carries a relayed request after a cached one and vice versa.
        let mut old = TcpStream::connect(addr).unwrap();
        old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut exchange_1_0 = |path: &str| {
            write!(old, "GET {path} HTTP/1.0\r\n{auth}Connection: keep-alive\r\n\r\n").unwrap();
            read_answer(&mut old, false)
        };
        let relayed = exchange_1_0("/relayed");
        let cached = exchange_1_0("/cached");
        let relayed_again = exchange_1_0("/relayed");
        assert_eq!(relayed, cached);
        assert_eq!(relayed, relayed_again);
        assert!(cached.starts_with(b"HTTP/1.0 200 OK\r\n"));

        shutdown.request();
        for handle in handles {
            handle.join().unwrap();
        }
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
