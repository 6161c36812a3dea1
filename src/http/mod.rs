//! The HTTP plumbing both servers share: the gate that owns every
//! connection, tiny_http behind it with a fixed pool of handler threads,
//! the one precheck every path makes, strict query parsing, and JSON error
//! replies.
//!
//! tiny_http has no limits of its own (a thread per connection, header
//! lines of any length, no timeouts), so the public socket belongs to the
//! gate ([`gate`]): one thread per server waits on every connection at once
//! (epoll through `mio`), reads each request head with a size cap (431) and
//! a deadline (408), never reads a body (the handler answers 405 or 413),
//! keeps idle keep-alive connections for a bounded time, and hands each
//! complete request to tiny_http over a small fixed pool of private unix
//! connections ([`upstream`]), copying back the one Content-Length-framed
//! answer tiny_http wrote. A server may give it [`LongPolls`]: a long poll
//! that must wait is then parked in the gate (a connection and an entry,
//! no thread) and answered when the head moves, every waiter of a page
//! with the same bytes, rendered once, headed by tiny_http's own response
//! writer ([`park`]). Connections are budgeted per process against the
//! descriptor limit, which the node raises at start ([`limits`]).
//! Handlers return a [`Reply`]; nothing here panics on input.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::shutdown::Shutdown;

pub mod client;
pub mod gate;
pub mod handoff;
pub mod head;
pub mod limits;
pub mod park;
pub mod upstream;

use handoff::{parse_ticket, Handoffs, HANDED_OFF_HEADER, HANDOFF_MIN_BYTES, TICKET_HEADER};
pub use head::{rewrite_head, ForwardedHead};
pub use park::{LongPolls, Park, PollRoute};
use upstream::private_unix_listener;

/// Set by the gate on a request that announced a body (never forwarded).
pub(crate) const BODY_REFUSED_HEADER: &str = "X-Clnode-Body-Refused";
pub(crate) const BODY_REFUSED_HEADER_LOWER: &str = "x-clnode-body-refused";

/// Longest request target (path and query) accepted.
pub const MAX_TARGET_LEN: usize = 2048;
/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 8192;
/// A request head must arrive within this long of the connection (or of
/// its first byte, on a kept-alive connection).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle keep-alive connection is closed after this long.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
/// Requests served on one connection before it is closed.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 10_000;
/// Each write of an answer to the client must progress within this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Complete requests waiting for a handler; beyond this, 503 with Retry-After.
pub const MAX_QUEUED_REQUESTS: usize = 4096;
/// Long polls parked at once per server; beyond this, 429 with Retry-After.
pub const MAX_PARKED_POLLS: usize = 50_000;
/// The longest a handler may take (queue wait included) before 504.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(45);
/// The largest answer the gate copies from tiny_http (above the member's
/// 512 MiB cap on a page).
pub const MAX_ANSWER_BYTES: usize = 768 * 1024 * 1024;
/// Deadlines are checked by sweeps at least this far apart (so they fire
/// up to this late).
pub const DEADLINE_GRANULARITY: Duration = Duration::from_millis(50);

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
    /// The client announced a body (the gate dropped it; no route takes one).
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

/// The one check every path makes first, whoever answers (a handler, or
/// the gate parking a long poll): the method (reads only), no body, the
/// bearer token (in constant time). `None`: go on.
pub fn precheck(request: &Incoming<'_>, token: Option<&crate::secret::Secret>) -> Option<Reply> {
    if !request.is_read() {
        return Some(Reply::method_not_allowed("GET, HEAD"));
    }
    if let Some(refusal) = request.refuse_body() {
        return Some(refusal);
    }
    request.check_bearer(token)
}

/// Starts the gate on `addr` and `workers` handler threads behind it. Each
/// handler thread makes its own handler (so it can own a database
/// connection).
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
    serve_with_long_polls(name, addr, workers, None, shutdown, make_handler).map(|server| server.threads)
}

/// A running server: its threads, and how many connections its gate holds.
pub struct Serving {
    pub threads: Vec<JoinHandle<()>>,
    pub open_connections: Arc<AtomicUsize>,
    /// Large replies given to the gate in memory.
    pub handoffs: Arc<Handoffs>,
}

/// [`serve`], with long polls parked in the gate (see [`LongPolls`]).
pub fn serve_with_long_polls<H, F>(
    name: &str,
    addr: SocketAddr,
    workers: usize,
    long_polls: Option<Arc<dyn LongPolls>>,
    shutdown: &Shutdown,
    make_handler: F,
) -> Result<Serving, String>
where
    F: Fn() -> H,
    H: FnMut(&Incoming<'_>) -> Reply + Send + 'static,
{
    let listener = mio::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} ({name}): {e}"))?;
    let (socket_path, unix_listener) = private_unix_listener(name)?;
    let server = Arc::new(Server::from_listener(unix_listener, None).map_err(|e| format!("{name}: {e}"))?);
    let (poll, waker) = gate::new_poll().map_err(|e| format!("{name}: cannot create the event poll: {e}"))?;
    if let Some(polls) = &long_polls {
        let waker = Arc::clone(&waker);
        polls.on_head_moved(Box::new(move || {
            let _ = waker.wake();
        }));
    }
    let mut handles = Vec::with_capacity(workers + 2);
    let handoffs = Arc::new(Handoffs::default());
    // Every thread below blocks until there is work (no polling while
    // idle); the stopper wakes them all when the node stops.
    for index in 0..workers {
        let (server, shutdown, mut handler) = (Arc::clone(&server), shutdown.clone(), make_handler());
        let handoffs = Arc::clone(&handoffs);
        handles.push(spawn_named(format!("{name}-{index}"), move || {
            while !shutdown.is_requested() {
                if let Ok(request) = server.recv() {
                    answer(request, &mut handler, &handoffs);
                }
            }
        })?);
    }
    let open_connections = Arc::new(AtomicUsize::new(0));
    let setup = gate::GateSetup {
        name: name.to_owned(),
        listener,
        socket_path: socket_path.clone(),
        upstreams: workers,
        handoffs: Arc::clone(&handoffs),
        long_polls,
        budget: limits::budget(),
        shutdown: shutdown.clone(),
    };
    let open = Arc::clone(&open_connections);
    handles.push(spawn_named(format!("{name}-gate"), move || gate::run(setup, poll, open))?);
    let shutdown = shutdown.clone();
    handles.push(spawn_named(format!("{name}-stop"), move || {
        shutdown.wait();
        let _ = waker.wake();
        for _ in 0..workers {
            server.unblock();
        }
        let _ = std::fs::remove_file(&socket_path);
    })?);
    Ok(Serving { threads: handles, open_connections, handoffs })
}

fn spawn_named(name: String, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new().name(name.clone()).spawn(body).map_err(|e| format!("cannot start thread {name}: {e}"))
}

fn answer<H>(request: Request, handler: &mut H, handoffs: &Handoffs)
where
    H: FnMut(&Incoming<'_>) -> Reply,
{
    let is_head = *request.method() == Method::Head;
    let reply = check_and_handle(&request, handler);
    // A large body goes to the gate in memory (`handoff.rs`); tiny_http
    // writes only the marker. The client may have gone either way.
    if !is_head && reply.body.len() >= HANDOFF_MIN_BYTES {
        let ticket = request.headers().iter().find(|h| h.field.equiv(TICKET_HEADER)).map(|h| h.value.as_str());
        if let Some(ticket) = ticket.and_then(parse_ticket) {
            if handoffs.leave(ticket, &reply) {
                let _ = request.respond(handed_off_marker(ticket));
                return;
            }
        }
    }
    let _ = request.respond(tiny_response(&reply, is_head));
}

/// What tiny_http writes for a reply left in [`Handoffs`] under `ticket`.
fn handed_off_marker(ticket: u64) -> Response<std::io::Empty> {
    let mut response = Response::empty(204);
    if let Ok(header) = Header::from_bytes(HANDED_OFF_HEADER, ticket.to_string()) {
        response.add_header(header);
    }
    response
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
    // Above its default threshold (32 KiB) tiny_http would send chunks;
    // the gate frames answers by Content-Length.
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
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

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

    struct TestPolls {
        head: Arc<AtomicU64>,
        wake: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
        rendered: AtomicUsize,
    }

    fn page(head: u64) -> Reply {
        // Larger than tiny_http's chunking threshold: still Content-Length.
        Reply::json_bytes(
            200,
            Arc::from(format!("{{\"head\":{head},\"pad\":\"{}\"}}", "y".repeat(40_000)).into_bytes()),
        )
    }

    impl LongPolls for TestPolls {
        fn route(&self, request: &Incoming<'_>) -> PollRoute {
            let wait = if request.query == "short" { Duration::from_millis(300) } else { Duration::from_secs(30) };
            if request.path != "/poll" || self.head.load(Ordering::SeqCst) != 0 {
                return PollRoute::Handler;
            }
            let page = crate::page_key::PageKey {
                after: 0,
                limit: 1,
                max_bytes: 1 << 20,
                format: crate::page_key::PageFormat::Json,
            };
            PollRoute::Park(Park { page, deadline: Instant::now() + wait })
        }
        fn head(&self) -> u64 {
            self.head.load(Ordering::SeqCst)
        }
        fn answer(&self, _page: crate::page_key::PageKey) -> Option<Reply> {
            self.rendered.fetch_add(1, Ordering::SeqCst);
            Some(page(self.head()))
        }
        fn on_head_moved(&self, wake: Box<dyn Fn() + Send + Sync>) {
            *self.wake.lock().unwrap() = Some(wake);
        }
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    }

    /// Issue 16: one gate thread owns the connections; a handler answers
    /// through tiny_http, long polls wait in the gate (not on the one
    /// handler thread here) and get the bytes tiny_http would write, one
    /// rendering for all of them.
    #[test]
    fn the_gate_parks_long_polls_and_answers_in_tiny_https_bytes() {
        let head = Arc::new(AtomicU64::new(0));
        let polls =
            Arc::new(TestPolls { head: Arc::clone(&head), wake: Mutex::new(None), rendered: AtomicUsize::new(0) });
        let handled = Arc::new(AtomicUsize::new(0));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let shutdown = Shutdown::new();
        let long_polls: Arc<dyn LongPolls> = Arc::clone(&polls) as Arc<dyn LongPolls>;
        let serving = serve_with_long_polls("test-gate", addr, 1, Some(long_polls), &shutdown, || {
            let (handled, head) = (Arc::clone(&handled), Arc::clone(&head));
            move |request: &Incoming<'_>| {
                handled.fetch_add(1, Ordering::SeqCst);
                match request.path {
                    "/poll" => page(head.load(Ordering::SeqCst)),
                    _ => Reply::json_bytes(200, Arc::from(b"{\"ok\":true}".to_vec())),
                }
            }
        })
        .unwrap();

        // Keep-alive, HEAD, HTTP/1.0 and a named transfer coding: all framed
        // by Content-Length, on one connection each.
        let mut client = connect(addr);
        let mut exchange = |method: &str, path: &str, extra: &str| {
            write!(client, "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
            read_answer(&mut client, method == "HEAD")
        };
        let get = exchange("GET", "/x", "");
        let head_answer = exchange("HEAD", "/x", "");
        let chunk_asked = exchange("GET", "/x", "TE: chunked\r\n");
        assert_eq!(get, chunk_asked, "TE is hop-by-hop: the same Content-Length-framed answer");
        let text = String::from_utf8_lossy(&head_answer);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("Content-Length: 11\r\n"), "{text}");
        let mut old = connect(addr);
        for _ in 0..2 {
            write!(old, "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
            assert!(read_answer(&mut old, false).starts_with(b"HTTP/1.0 200 OK\r\n"));
        }
        write!(old, "GET /x HTTP/1.0\r\n\r\n").unwrap();
        let _ = read_answer(&mut old, false);
        let mut rest = Vec::new();
        assert_eq!(old.read_to_end(&mut rest).unwrap(), 0, "HTTP/1.0 without keep-alive ends after the answer");
        let before = handled.load(Ordering::SeqCst);

        // 200 long polls wait; the one handler thread stays free.
        let mut waiting: Vec<TcpStream> = (0..200)
            .map(|_| {
                let mut stream = connect(addr);
                write!(stream, "GET /poll HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                stream
            })
            .collect();
        let mut short = connect(addr);
        write!(short, "GET /poll?short HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(exchange("GET", "/x", ""), get, "a handler answers while 201 polls wait");
        // A poll whose wait ends gets the server's answer at the head it has.
        let timed_out = read_answer(&mut short, false);
        assert!(String::from_utf8_lossy(&timed_out).contains("\"head\":0"));
        // The head moves: every waiter gets the same bytes, rendered once,
        // and they are the bytes tiny_http writes for the handler's answer.
        head.store(1, Ordering::SeqCst);
        (polls.wake.lock().unwrap().as_ref().unwrap())();
        let answers: Vec<Vec<u8>> = waiting.iter_mut().map(|stream| read_answer(stream, false)).collect();
        assert!(answers.iter().all(|answer| *answer == answers[0]));
        assert_eq!(polls.rendered.load(Ordering::SeqCst), 2, "one rendering at the deadline, one for all 200");
        assert_eq!(handled.load(Ordering::SeqCst), before + 1, "no poll reached the handler");
        let handler_answer = exchange("GET", "/poll", "");
        assert_eq!(String::from_utf8_lossy(&answers[0]), String::from_utf8_lossy(&handler_answer));
        // Pipelined requests (two in one write) are answered in order: the
        // second waits in the gate's buffer, not in the socket, once the
        // first is read (the gate does not read a drained socket again).
        let mut piped = connect(addr);
        write!(piped, "GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_answer(&mut piped, false), get);
        assert_eq!(read_answer(&mut piped, false), get, "the pipelined request is answered too");
        // Kept alive after a parked answer.
        write!(waiting[0], "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(read_answer(&mut waiting[0], false), get.clone());
        assert_eq!(waiting[0].read_to_end(&mut rest).unwrap(), 0, "Connection: close ends it after the answer");
        drop(waiting);

        shutdown.request();
        for handle in serving.threads {
            handle.join().unwrap();
        }
    }

    /// Issue 16.3: a large body goes from the handler to the gate in
    /// memory, and the client gets the bytes tiny_http would have written
    /// for it (HTTP/1.1 and 1.0, kept alive); a small one and a HEAD answer
    /// are still relayed through tiny_http; a client cannot forge the
    /// gate's ticket.
    #[test]
    fn large_answers_are_handed_to_the_gate_in_tiny_https_bytes() {
        let big = Reply::json_bytes(200, Arc::from(vec![b'7'; 3 * 1024 * 1024 + 5]));
        let tiny_http_bytes = |reply: &Reply, version: tiny_http::HTTPVersion| {
            let mut out = Vec::new();
            tiny_response(reply, false).raw_print(&mut out, version, &[], false, None).unwrap();
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let mut lines: Vec<String> = head.split("\r\n").map(str::to_owned).collect();
            *lines.iter_mut().find(|line| line.starts_with("Date: ")).unwrap() = "Date: -".to_owned();
            format!("{}\r\n\r\n{body}", lines.join("\r\n")).into_bytes()
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let shutdown = Shutdown::new();
        let served = big.clone();
        let serving = serve_with_long_polls("test-handoff", addr, 2, None, &shutdown, || {
            let big = served.clone();
            move |request: &Incoming<'_>| match request.path {
                "/big" => big.clone(),
                _ => Reply::json_bytes(200, Arc::from(b"{}".to_vec())),
            }
        })
        .unwrap();
        let mut client = connect(addr);
        for _ in 0..2 {
            // A forged ticket is dropped by the gate (head.rs), which sets its own.
            write!(client, "GET /big HTTP/1.1\r\nHost: x\r\nX-Clnode-Ticket: 999\r\n\r\n").unwrap();
            let answer = read_answer(&mut client, false);
            assert!(answer == tiny_http_bytes(&big, tiny_http::HTTPVersion(1, 1)), "HTTP/1.1 answer differs");
        }
        assert_eq!(serving.handoffs.taken(), 2, "both went through memory");
        write!(client, "HEAD /big HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let head = read_answer(&mut client, true);
        assert!(String::from_utf8_lossy(&head).contains(&format!("Content-Length: {}\r\n", big.body.len())));
        assert!(read_answer(&mut client, false).ends_with(b"\r\n\r\n{}"));
        assert_eq!(serving.handoffs.taken(), 2, "HEAD and small answers are relayed");
        let mut old = connect(addr);
        write!(old, "GET /big HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(
            read_answer(&mut old, false) == tiny_http_bytes(&big, tiny_http::HTTPVersion(1, 0)),
            "HTTP/1.0 answer differs"
        );
        assert_eq!(serving.handoffs.taken(), 3);
        shutdown.request();
        for handle in serving.threads {
            handle.join().unwrap();
        }
    }

    /// Found while building the gate: tiny_http's thread pool, given its
    /// connections faster than its idle threads wake, queued eleven of
    /// sixteen kept-open connections behind ones that never end, and their
    /// requests were never answered. Here 2,000 keep-alive clients each
    /// get an answer through sixteen handler connections, and once idle
    /// they are closed at the keep-alive deadline.
    #[test]
    fn every_client_is_answered_and_idle_ones_are_closed() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let shutdown = Shutdown::new();
        let threads = serve("test-idle", addr, 16, &shutdown, || |_: &Incoming<'_>| Reply::error(404, "no")).unwrap();
        let mut held: Vec<TcpStream> = (0..2000)
            .map(|_| {
                let mut stream = connect(addr);
                stream.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                stream
            })
            .collect();
        let answered = Instant::now();
        for stream in &mut held {
            assert!(read_answer(stream, false).starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        }
        for stream in &mut held {
            let mut rest = Vec::new();
            assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0, "closed without another word");
        }
        let closed = answered.elapsed();
        assert!(
            closed >= KEEP_ALIVE_IDLE - Duration::from_millis(500) && closed < Duration::from_secs(9),
            "{closed:?}"
        );
        shutdown.request();
        for handle in threads {
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
