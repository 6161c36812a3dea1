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

use std::io::Cursor;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::shutdown::Shutdown;

pub mod client;
pub mod guard;
pub mod head;
pub mod relay;

use guard::{guard_loop, refuse_busy};
pub use head::{rewrite_head, ForwardedHead};
use relay::private_unix_listener;

/// Set by the guard on a request that announced a body (never forwarded).
pub(crate) const BODY_REFUSED_HEADER: &str = "X-Clnode-Body-Refused";
pub(crate) const BODY_REFUSED_HEADER_LOWER: &str = "x-clnode-body-refused";

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
pub(crate) const ACCEPT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// Shared, so a cached rendering is served without copying it.
    pub body: Arc<[u8]>,
    pub allow: Option<&'static str>,
}

/// A reply body as tiny_http's reader.
pub(crate) struct SharedBody(Arc<[u8]>);

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
/// connection). Twice `workers` guard threads bound the connections served
/// at once; [`PENDING_CONNECTIONS`] more may wait.
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
        let (server, shutdown, mut handler) = (Arc::clone(&server), shutdown.clone(), make_handler());
        handles.push(spawn_named(format!("{name}-{index}"), move || {
            while !shutdown.is_requested() {
                if let Ok(request) = server.recv() {
                    answer(request, &mut handler);
                }
            }
        })?);
    }
    // Twice as many guards as handlers: a guard waits on its handler, and
    // some requests (long polls) hold a handler for a while.
    let (sender, receiver) = sync_channel::<TcpStream>(PENDING_CONNECTIONS);
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..workers * 2 {
        let (receiver, socket_path, shutdown) = (Arc::clone(&receiver), socket_path.clone(), shutdown.clone());
        let cached = cached.clone();
        handles.push(spawn_named(format!("{name}-guard-{index}"), move || {
            guard_loop(&receiver, &socket_path, cached.as_ref(), &shutdown)
        })?);
    }
    let wake_addr = match listener.local_addr() {
        Ok(local) if local.ip().is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), local.port()),
        Ok(local) => local,
        Err(e) => return Err(format!("{name}: {e}")),
    };
    let accept_shutdown = shutdown.clone();
    handles.push(spawn_named(format!("{name}-accept"), move || accept_loop(&listener, &sender, &accept_shutdown))?);
    let shutdown = shutdown.clone();
    handles.push(spawn_named(format!("{name}-stop"), move || {
        shutdown.wait();
        // Wake the acceptor with a connection, and every handler.
        let _ = TcpStream::connect_timeout(&wake_addr, Duration::from_millis(200));
        for _ in 0..workers {
            server.unblock();
        }
        let _ = std::fs::remove_file(&socket_path);
    })?);
    Ok(handles)
}

fn spawn_named(name: String, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new().name(name.clone()).spawn(body).map_err(|e| format!("cannot start thread {name}: {e}"))
}

/// Hands each accepted connection to the guards' bounded queue; a full
/// queue is answered 503 at once. Dropping the sender on the way out ends
/// the guards.
fn accept_loop(listener: &TcpListener, sender: &SyncSender<TcpStream>, shutdown: &Shutdown) {
    while !shutdown.is_requested() {
        match listener.accept() {
            Ok((stream, _)) if shutdown.is_requested() => drop(stream),
            Ok((stream, _)) => match sender.try_send(stream) {
                Ok(()) => {}
                Err(TrySendError::Full(stream)) => refuse_busy(stream),
                Err(TrySendError::Disconnected(_)) => return,
            },
            // Out of descriptors and the like: pause instead of spinning.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
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
pub(crate) fn tiny_response(reply: &Reply, is_head: bool) -> Response<Cursor<SharedBody>> {
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
    use std::io::{Read, Write};

    use super::head::find_head_end;
    use super::*;

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
