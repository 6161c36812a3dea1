//! The gate: one thread per server owns every public connection. It waits
//! on all of them at once (epoll through `mio`), reads each request head
//! within a size cap and a deadline, never reads a body, keeps idle
//! keep-alive connections within a deadline, parks long polls until the
//! head moves (answering every waiter of a page with one rendering), and
//! hands every other complete request to tiny_http over a small fixed pool
//! of private unix connections ([`super::upstream`]), copying back the one
//! answer tiny_http wrote. No thread per connection: a connection costs its
//! socket and a few hundred bytes here.
//!
//! Limits (all in `http/mod.rs`): connections per process (the descriptor
//! budget, [`super::limits`]); head size, head time, keep-alive idle time,
//! requests per connection; requests waiting for a handler; parked polls
//! (past the cap: 429 with Retry-After, never an early empty page); the
//! time a handler and a write may take.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use tiny_http::HTTPVersion;

use super::handoff::Handoffs;
use super::head::{find_head_end, rewrite_head, ForwardedHead};
use super::limits::ConnectionBudget;
use super::park::{LongPolls, Park, ParkedPolls, PollRoute, Renderings};
use super::upstream::{Upstream, UpstreamEvent};
use super::{
    tiny_response, Reply, DEADLINE_GRANULARITY, HANDLER_TIMEOUT, HEAD_TIMEOUT, KEEP_ALIVE_IDLE, MAX_HEAD_BYTES,
    MAX_PARKED_POLLS, MAX_QUEUED_REQUESTS, MAX_REQUESTS_PER_CONNECTION, WRITE_TIMEOUT,
};
use crate::shutdown::Shutdown;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Upstream connections' tokens start here; client connections' below.
const UPSTREAM_BASE: usize = usize::MAX / 2;
/// Events taken from the kernel per wait.
const EVENTS_PER_WAIT: usize = 1024;
/// After a failed accept (out of descriptors), the pause before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// What a gate needs to run: built in `http/mod.rs`.
pub(crate) struct GateSetup {
    pub name: String,
    pub listener: TcpListener,
    pub socket_path: PathBuf,
    pub upstreams: usize,
    /// Large replies the handler threads leave for this gate.
    pub handoffs: Arc<Handoffs>,
    pub long_polls: Option<Arc<dyn LongPolls>>,
    pub budget: Arc<ConnectionBudget>,
    pub shutdown: Shutdown,
}

/// The poll and its waker, made before the thread starts so that the
/// stopper and the head watch can wake it.
pub(crate) fn new_poll() -> std::io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}

/// What a connection is doing.
enum Phase {
    /// Reading a request head; `started`: a byte of it has arrived.
    Head { first: bool, started: bool },
    /// A complete request waits for a free upstream connection.
    Queued(ForwardedHead),
    /// An upstream connection carries the request to tiny_http.
    Handling,
    /// A long poll waits for the head to pass `park.after`.
    Parked { head: ForwardedHead, park: Park },
    /// Writing an answer.
    Writing(Outgoing),
}

/// An answer being written: head and body, shared with every other waiter
/// that got the same rendering.
struct Outgoing {
    parts: [Arc<[u8]>; 2],
    written: usize,
    close_after: bool,
}

struct Conn {
    id: u64,
    stream: TcpStream,
    input: Vec<u8>,
    phase: Phase,
    served: u32,
    deadline: Instant,
    /// The request in flight leaves the connection open after its answer.
    keep_alive: bool,
    /// The client shut its side; close once the answer is out.
    peer_closed: bool,
    /// The last read emptied the socket: bytes that come later raise a
    /// readable event (mio is edge-triggered), so nothing waits unread.
    drained: bool,
}

struct Gate {
    name: String,
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_id: u64,
    /// The ticket for the next request forwarded (`handoff.rs`).
    next_ticket: u64,
    upstreams: Vec<Upstream>,
    queue: VecDeque<(usize, u64)>,
    parked: ParkedPolls,
    /// Pages rendered at the present head, shared by every answer to them.
    rendered: Renderings,
    long_polls: Option<Arc<dyn LongPolls>>,
    budget: Arc<ConnectionBudget>,
    /// Earliest deadline that may be due; a sweep runs when it passes.
    next_sweep: Instant,
    accept_paused_until: Option<Instant>,
    scratch: Vec<u8>,
    open: Arc<AtomicUsize>,
}

/// Runs the gate until the node stops.
pub(crate) fn run(setup: GateSetup, poll: Poll, open: Arc<AtomicUsize>) {
    let GateSetup { name, mut listener, socket_path, upstreams, handoffs, long_polls, budget, shutdown } = setup;
    if let Err(error) = poll.registry().register(&mut listener, LISTENER, Interest::READABLE) {
        crate::log::error(&format!("{name}: cannot watch the listening socket: {error}"));
        return;
    }
    let mut upstreams: Vec<Upstream> =
        (0..upstreams).map(|_| Upstream::new(socket_path.clone(), Arc::clone(&handoffs))).collect();
    for (slot, upstream) in upstreams.iter_mut().enumerate() {
        if let Err(error) = upstream.connect(&poll, Token(UPSTREAM_BASE + slot)) {
            // Tried again when a request needs it.
            crate::log::warn(&format!("{name}: cannot connect to the handler side yet: {error}"));
        }
    }
    let mut gate = Gate {
        name,
        poll,
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        next_id: 0,
        next_ticket: 0,
        upstreams,
        queue: VecDeque::new(),
        parked: ParkedPolls::default(),
        rendered: Renderings::default(),
        long_polls,
        budget,
        next_sweep: Instant::now() + KEEP_ALIVE_IDLE,
        accept_paused_until: None,
        scratch: vec![0; 16 * 1024],
        open,
    };
    let mut events = Events::with_capacity(EVENTS_PER_WAIT);
    while !shutdown.is_requested() {
        let now = Instant::now();
        let mut wake_at = gate.next_sweep;
        if let Some(paused) = gate.accept_paused_until {
            wake_at = wake_at.min(paused);
        }
        let timeout = wake_at.saturating_duration_since(now);
        if let Err(error) = gate.poll.poll(&mut events, Some(timeout)) {
            if error.kind() != ErrorKind::Interrupted {
                crate::log::error(&format!("{}: waiting on connections failed: {error}", gate.name));
                std::thread::sleep(ACCEPT_PAUSE);
            }
            continue;
        }
        let mut head_moved = false;
        for event in events.iter() {
            match event.token() {
                LISTENER => gate.accept_all(),
                WAKER => head_moved = true,
                Token(index) if index >= UPSTREAM_BASE => gate.upstream_ready(index - UPSTREAM_BASE),
                Token(index) => gate.conn_ready(index, event.is_readable(), event.is_writable()),
            }
        }
        if head_moved {
            gate.answer_parked();
        }
        let now = Instant::now();
        if gate.accept_paused_until.is_some_and(|until| now >= until) {
            gate.accept_paused_until = None;
            gate.accept_all();
        }
        if now >= gate.next_sweep {
            gate.sweep(now);
        }
    }
    // Stopping: every connection closes with the gate (dropped here).
    gate.open.store(0, Ordering::Relaxed);
    for conn in gate.conns.iter().flatten() {
        gate.budget.release();
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl Gate {
    fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if !self.budget.try_take() {
                        refuse_now(stream, 503, "too many connections");
                        continue;
                    }
                    self.admit(stream);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    // Out of descriptors and the like: pause, do not spin.
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream) {
        let index = self.free.pop().unwrap_or(self.conns.len());
        if stream.set_nodelay(true).is_err()
            || self
                .poll
                .registry()
                .register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)
                .is_err()
        {
            self.budget.release();
            return;
        }
        self.next_id += 1;
        let deadline = Instant::now() + HEAD_TIMEOUT;
        let conn = Conn {
            id: self.next_id,
            stream,
            input: Vec::new(),
            phase: Phase::Head { first: true, started: false },
            served: 0,
            deadline,
            keep_alive: true,
            peer_closed: false,
            drained: false,
        };
        if index == self.conns.len() {
            self.conns.push(Some(conn));
        } else if let Some(slot) = self.conns.get_mut(index) {
            *slot = Some(conn);
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        self.note_deadline(deadline);
        // Bytes may have arrived with the connection.
        self.conn_ready(index, true, false);
    }

    fn note_deadline(&mut self, deadline: Instant) {
        // Deadlines are checked by a sweep; sweeps are at least this far
        // apart, so idle connections cost no steady work.
        self.next_sweep = self.next_sweep.min(deadline.max(Instant::now() + DEADLINE_GRANULARITY));
    }

    fn close(&mut self, index: usize) {
        let Some(slot) = self.conns.get_mut(index) else { return };
        if let Some(mut conn) = slot.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            if matches!(conn.phase, Phase::Parked { .. }) {
                self.parked.left();
            }
            self.free.push(index);
            self.budget.release();
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Readiness on a client connection: read what came, write what waits.
    fn conn_ready(&mut self, index: usize, readable: bool, writable: bool) {
        if writable && !self.flush(index) {
            return;
        }
        if readable {
            self.read_input(index);
        }
        self.advance(index);
    }

    /// Reads what the client sent, up to the head cap beyond what is
    /// already buffered. Returns false when the connection was closed.
    fn read_input(&mut self, index: usize) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        loop {
            if conn.input.len() > MAX_HEAD_BYTES {
                conn.drained = false;
                return; // the head check answers 431, or a request is in flight
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    conn.peer_closed = true;
                    return;
                }
                Ok(read) => {
                    conn.input.extend_from_slice(self.scratch.get(..read).unwrap_or_default());
                    if let Phase::Head { started, .. } = &mut conn.phase {
                        if !*started {
                            // The idle wait ends; the head has HEAD_TIMEOUT.
                            *started = true;
                            conn.deadline = Instant::now() + HEAD_TIMEOUT;
                            self.next_sweep = self.next_sweep.min(conn.deadline);
                        }
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    conn.drained = true;
                    return;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.peer_closed = true;
                    conn.input.clear();
                    return;
                }
            }
        }
    }

    /// Moves a connection on as far as its bytes allow.
    fn advance(&mut self, index: usize) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        match &conn.phase {
            Phase::Head { .. } => {
                if let Some(end) = find_head_end(&conn.input) {
                    let head: Vec<u8> = conn.input.drain(..end).collect();
                    match rewrite_head(&head) {
                        Ok(forwarded) => self.route(index, forwarded),
                        Err((status, message)) => self.answer_plain(index, status, message),
                    }
                } else if conn.input.len() > MAX_HEAD_BYTES {
                    self.answer_plain(index, 431, "request head larger than 8192 bytes");
                } else if conn.peer_closed {
                    if conn.input.is_empty() {
                        self.close(index);
                    } else {
                        self.answer_plain(index, 400, "connection closed before the request head ended");
                    }
                }
            }
            // A client gone while its poll waits frees its place at once.
            Phase::Parked { .. } if conn.peer_closed => self.close(index),
            _ => {}
        }
    }

    /// A complete head: park it, answer it from the renderings at the
    /// head, or queue it for tiny_http.
    fn route(&mut self, index: usize, head: ForwardedHead) {
        let polls = self.long_polls.clone();
        let route = match (&polls, head.incoming()) {
            (Some(polls), Some(incoming)) => polls.route(&incoming),
            _ => PollRoute::Handler,
        };
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        conn.keep_alive = head.keep_alive;
        match (route, polls) {
            (PollRoute::Park(park), _) => {
                if self.parked.live() >= MAX_PARKED_POLLS {
                    self.answer_plain(index, 429, "too many long polls waiting; retry after the Retry-After seconds");
                    return;
                }
                conn.deadline = park.deadline;
                self.parked.park(park.page.after, index, conn.id);
                conn.phase = Phase::Parked { head, park };
                self.note_deadline(park.deadline);
            }
            (PollRoute::Now(page), Some(polls)) => {
                self.rendered.at_head(polls.head());
                match self.rendered.answer(&*polls, page, head.http_1_0, head.head_only) {
                    Some(parts) => self.start_writing(index, parts, !head.keep_alive),
                    None => self.enqueue(index, head),
                }
            }
            _ => self.enqueue(index, head),
        }
    }

    fn enqueue(&mut self, index: usize, head: ForwardedHead) {
        if self.queue.len() >= MAX_QUEUED_REQUESTS {
            self.answer_plain(index, 503, "too many requests waiting; retry after the Retry-After seconds");
            return;
        }
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        conn.phase = Phase::Queued(head);
        conn.deadline = Instant::now() + HANDLER_TIMEOUT;
        let deadline = conn.deadline;
        self.queue.push_back((index, conn.id));
        self.note_deadline(deadline);
        self.dispatch();
    }

    /// Gives queued requests to free upstream connections.
    fn dispatch(&mut self) {
        while let Some(slot) = self.upstreams.iter().position(Upstream::is_free) {
            let Some((index, id)) = self.queue.pop_front() else { return };
            let Some(Some(conn)) = self.conns.get_mut(index) else { continue };
            if conn.id != id || !matches!(conn.phase, Phase::Queued(_)) {
                continue; // a stale entry: answered otherwise meanwhile
            }
            let Phase::Queued(head) = std::mem::replace(&mut conn.phase, Phase::Handling) else { continue };
            let Some(upstream) = self.upstreams.get_mut(slot) else { return };
            let token = Token(UPSTREAM_BASE + slot);
            self.next_ticket += 1;
            if let Err(error) = upstream.start(&self.poll, token, (index, id), &head, self.next_ticket) {
                crate::log::warn(&format!("{}: handler connection failed: {error}", self.name));
                self.answer_plain(index, 502, "handler unavailable");
                // Do not spin on a handler side that is gone.
                return;
            }
            self.upstream_ready(slot);
        }
    }

    fn upstream_ready(&mut self, slot: usize) {
        let Some(upstream) = self.upstreams.get_mut(slot) else { return };
        match upstream.progress() {
            UpstreamEvent::Pending => {}
            UpstreamEvent::Answered { client: (index, id), answer } => {
                if self.client_waits(index, id) {
                    let close_after = self.conns.get(index).and_then(Option::as_ref).is_none_or(|c| !c.keep_alive);
                    self.start_writing(index, answer, close_after);
                }
                self.dispatch();
            }
            UpstreamEvent::Failed { client: (index, id), error } => {
                crate::log::warn(&format!("{}: handler connection failed: {error}", self.name));
                if self.client_waits(index, id) {
                    self.answer_plain(index, 502, "handler unavailable");
                }
                self.dispatch();
            }
        }
    }

    /// The connection `id` at `index` still waits for its handler's answer.
    fn client_waits(&self, index: usize, id: u64) -> bool {
        self.conns
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|conn| conn.id == id && matches!(conn.phase, Phase::Handling))
    }

    /// One of the gate's own answers (errors and refusals), then close.
    fn answer_plain(&mut self, index: usize, status: u16, message: &str) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        if matches!(conn.phase, Phase::Parked { .. }) {
            self.parked.left();
        }
        let bytes = plain_response(status, message);
        self.start_writing(index, [Arc::from(bytes), Arc::from(Vec::new())], true);
    }

    fn start_writing(&mut self, index: usize, parts: [Arc<[u8]>; 2], close_after: bool) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        conn.phase = Phase::Writing(Outgoing { parts, written: 0, close_after });
        conn.deadline = Instant::now() + WRITE_TIMEOUT;
        let deadline = conn.deadline;
        self.note_deadline(deadline);
        if self.flush(index) {
            self.advance(index);
        }
    }

    /// Writes what the connection has to write. Returns false when the
    /// connection is gone.
    fn flush(&mut self, index: usize) -> bool {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return false };
        let Phase::Writing(out) = &mut conn.phase else { return true };
        let total = out.parts[0].len() + out.parts[1].len();
        while out.written < total {
            let (first, second) = (&out.parts[0], &out.parts[1]);
            let slices = if out.written < first.len() {
                [IoSlice::new(first.get(out.written..).unwrap_or_default()), IoSlice::new(second)]
            } else {
                [IoSlice::new(second.get(out.written - first.len()..).unwrap_or_default()), IoSlice::new(&[])]
            };
            match conn.stream.write_vectored(&slices) {
                Ok(0) => {
                    self.close(index);
                    return false;
                }
                Ok(written) => {
                    out.written += written;
                    conn.deadline = Instant::now() + WRITE_TIMEOUT;
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(index);
                    return false;
                }
            }
        }
        // Written in full: the connection's next request, or its end.
        conn.served += 1;
        if out.close_after || conn.peer_closed && conn.input.is_empty() || conn.served >= MAX_REQUESTS_PER_CONNECTION {
            self.close(index);
            return false;
        }
        conn.phase = Phase::Head { first: false, started: !conn.input.is_empty() };
        conn.deadline = Instant::now() + if conn.input.is_empty() { KEEP_ALIVE_IDLE } else { HEAD_TIMEOUT };
        let (deadline, drained) = (conn.deadline, conn.drained);
        self.note_deadline(deadline);
        // Edge-triggered: bytes left unread while answering (the head cap
        // stopped a read) are read now. A drained socket is not read again:
        // when thousands of parked polls are answered at once, that read
        // (always EAGAIN) doubled the system calls of each answer.
        if !drained {
            self.read_input(index);
        }
        true
    }

    /// The head moved: answer every parked poll it passed, one rendering
    /// per page.
    fn answer_parked(&mut self) {
        let Some(polls) = self.long_polls.clone() else { return };
        let head = polls.head();
        let ready = self.parked.take_below(head);
        if ready.is_empty() {
            return;
        }
        let started = Instant::now();
        self.rendered.at_head(head);
        let mut answered = 0usize;
        for (after, entries) in ready {
            for (index, id) in entries {
                answered += usize::from(self.answer_one_parked(index, id, Some(after), &*polls));
            }
        }
        // The node's own share of a subscriber's lag (bench P9 reads it):
        // from the wake to the last parked answer handed to the kernel.
        if crate::log::debug_enabled() {
            let took_ms = started.elapsed().as_secs_f64() * 1000.0;
            crate::log::debug(&format!(
                "{}: answered {answered} parked polls at head {head} in {took_ms:.2} ms",
                self.name
            ));
        }
    }

    /// Answers one parked poll with the page `polls` renders now (shared
    /// with every other poll for the same page), or hands it to tiny_http.
    fn answer_one_parked(&mut self, index: usize, id: u64, expected_after: Option<u64>, polls: &dyn LongPolls) -> bool {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return false };
        let Phase::Parked { park, .. } = &conn.phase else { return false };
        if conn.id != id || expected_after.is_some_and(|after| after != park.page.after) {
            return false; // a stale entry: that poll was answered already
        }
        let Phase::Parked { head, park } = std::mem::replace(&mut conn.phase, Phase::Handling) else { return false };
        self.parked.left();
        match self.rendered.answer(polls, park.page, head.http_1_0, head.head_only) {
            Some(parts) => {
                let close_after = !head.keep_alive;
                self.start_writing(index, parts, close_after);
            }
            None => self.enqueue(index, head),
        }
        true
    }

    /// Deadlines: heads not received (408), idle keep-alive (closed),
    /// long polls that waited their time (answered now), handlers and
    /// writes that took too long.
    fn sweep(&mut self, now: Instant) {
        let mut next = now + KEEP_ALIVE_IDLE;
        let mut due = Vec::new();
        for (index, conn) in self.conns.iter().enumerate() {
            if let Some(conn) = conn {
                if conn.deadline <= now {
                    due.push((index, conn.id));
                } else {
                    next = next.min(conn.deadline);
                }
            }
        }
        let polls = self.long_polls.clone();
        if let Some(polls) = &polls {
            self.rendered.at_head(polls.head());
        }
        for (index, id) in due {
            let Some(Some(conn)) = self.conns.get(index) else { continue };
            match &conn.phase {
                Phase::Head { first, started } => {
                    if *started || *first {
                        self.answer_plain(index, 408, "request head not received in time");
                    } else {
                        self.close(index);
                    }
                }
                Phase::Parked { .. } => {
                    if let Some(polls) = &polls {
                        let _ = self.answer_one_parked(index, id, None, &**polls);
                    }
                }
                Phase::Queued(_) | Phase::Handling => self.answer_plain(index, 504, "the handler took too long"),
                Phase::Writing(_) => self.close(index),
            }
        }
        // A connection answered in this sweep has a fresh deadline.
        for conn in self.conns.iter().flatten() {
            if conn.deadline > now {
                next = next.min(conn.deadline);
            }
        }
        for upstream in &mut self.upstreams {
            upstream.expire(now, HANDLER_TIMEOUT);
        }
        self.dispatch();
        let conns = &self.conns;
        self.parked.compact_if_stale(|after, index, id| {
            conns.get(index).and_then(Option::as_ref).is_some_and(|conn| {
                conn.id == id && matches!(&conn.phase, Phase::Parked { park, .. } if park.page.after == after)
            })
        });
        self.next_sweep = next.max(now + DEADLINE_GRANULARITY);
    }
}

/// Answers at once and drops the connection (no budget left for it).
fn refuse_now(mut stream: TcpStream, status: u16, message: &str) {
    let _ = stream.write(&plain_response(status, message));
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// The gate's own answers: refusals before a handler could see the request.
pub(crate) fn plain_response(status: u16, message: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        414 => "URI Too Long",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Service Unavailable",
    };
    let retry = if matches!(status, 429 | 503) { "Retry-After: 1\r\n" } else { "" };
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The head tiny_http writes for `reply` in `version` (its own writer, so
/// a parked poll's answer and a handler's cannot differ).
pub(crate) fn render_head(reply: &Reply, version: HTTPVersion, head_only: bool) -> Arc<[u8]> {
    let mut out = Vec::with_capacity(256);
    let _ = tiny_response(reply, head_only).raw_print(&mut out, version, &[], true, None);
    Arc::from(out)
}
