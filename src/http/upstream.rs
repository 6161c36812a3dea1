//! The gate's side of tiny_http: a fixed pool of private unix connections
//! to the tiny_http server (which never faces a client), each carrying one
//! request at a time; the answer tiny_http writes is read whole (framed by
//! its Content-Length: the gate strips `TE`, and tiny_http is told never to
//! chunk) and handed back for the client.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use mio::{Interest, Poll, Token};

use tiny_http::HTTPVersion;

use super::handoff::{parse_ticket, Handoffs, HANDED_OFF_HEADER, TICKET_HEADER};
use super::head::{find_head_end, ForwardedHead};
use super::{MAX_ANSWER_BYTES, MAX_HEAD_BYTES};

/// How long a new connection to tiny_http may take to be served.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A unix socket in a fresh directory only this user can enter.
pub(crate) fn private_unix_listener(name: &str) -> Result<(PathBuf, UnixListener), String> {
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

/// What became of the request an upstream connection carries.
pub(crate) enum UpstreamEvent {
    Pending,
    /// The answer's bytes: head and body (the body is empty when the head
    /// holds the whole answer tiny_http wrote).
    Answered {
        client: (usize, u64),
        answer: [Arc<[u8]>; 2],
    },
    Failed {
        client: (usize, u64),
        error: String,
    },
}

/// One private connection to tiny_http.
pub(crate) struct Upstream {
    socket_path: PathBuf,
    stream: Option<UnixStream>,
    /// The client connection (index, id) whose request this carries.
    client: Option<(usize, u64)>,
    request: Vec<u8>,
    written: usize,
    answer: Vec<u8>,
    head_only: bool,
    http_1_0: bool,
    /// The ticket on the request in flight (unique per gate).
    ticket: u64,
    handoffs: Arc<Handoffs>,
    /// Read buffer, allocated once.
    chunk: Box<[u8]>,
    started: Instant,
}

impl Upstream {
    pub fn new(socket_path: PathBuf, handoffs: Arc<Handoffs>) -> Upstream {
        Upstream {
            socket_path,
            stream: None,
            client: None,
            request: Vec::new(),
            written: 0,
            answer: Vec::new(),
            head_only: false,
            http_1_0: false,
            ticket: 0,
            handoffs,
            chunk: vec![0; 64 * 1024].into_boxed_slice(),
            started: Instant::now(),
        }
    }

    pub fn is_free(&self) -> bool {
        self.client.is_none()
    }

    /// Takes `head` for `client` with `ticket` (never used before by
    /// this gate), connecting first if needed.
    pub fn start(
        &mut self,
        poll: &Poll,
        token: Token,
        client: (usize, u64),
        head: &ForwardedHead,
        ticket: u64,
    ) -> std::io::Result<()> {
        if self.stream.is_none() {
            self.connect(poll, token)?;
        }
        self.client = Some(client);
        self.request.clear();
        // The head ends in an empty line: the ticket goes before it.
        let without_end = head.bytes.strip_suffix(b"\r\n").unwrap_or(&head.bytes);
        self.request.extend_from_slice(without_end);
        self.request.extend_from_slice(format!("{TICKET_HEADER}: {ticket}\r\n\r\n").as_bytes());
        self.written = 0;
        self.answer.clear();
        self.head_only = head.head_only;
        self.http_1_0 = head.http_1_0;
        self.ticket = ticket;
        self.started = Instant::now();
        Ok(())
    }

    /// Connects to tiny_http and waits until one of its connection threads
    /// serves the connection: a probe (`OPTIONS *`, which every handler
    /// refuses with 405 before doing anything) must come back. tiny_http's
    /// thread pool, given connections faster than its idle threads wake,
    /// queues them behind connections that never end (these are kept open),
    /// so they are added one at a time, each served before the next.
    pub fn connect(&mut self, poll: &Poll, token: Token) -> std::io::Result<()> {
        // A local unix connect completes at once (or fails).
        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket_path)?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
        stream.write_all(b"OPTIONS * HTTP/1.1\r\n\r\n")?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let framed = framed_length(&answer, false).map_err(std::io::Error::other)?;
            if framed.is_some_and(|total| answer.len() >= total) {
                break;
            }
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                return Err(std::io::Error::other("the handler side closed the probe connection"));
            }
            answer.extend_from_slice(chunk.get(..read).unwrap_or_default());
        }
        stream.set_nonblocking(true)?;
        let mut stream = UnixStream::from_std(stream);
        poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Writes the request and reads the answer as far as the socket allows.
    pub fn progress(&mut self) -> UpstreamEvent {
        match self.exchange() {
            Ok(None) => UpstreamEvent::Pending,
            Ok(Some(answer)) => match self.client.take() {
                Some(client) => UpstreamEvent::Answered { client, answer },
                None => UpstreamEvent::Pending,
            },
            Err(error) => {
                self.stream = None;
                match self.client.take() {
                    Some(client) => UpstreamEvent::Failed { client, error },
                    None => UpstreamEvent::Pending,
                }
            }
        }
    }

    fn exchange(&mut self) -> Result<Option<[Arc<[u8]>; 2]>, String> {
        let Some(stream) = self.stream.as_mut() else { return Ok(None) };
        if self.client.is_none() {
            // Idle: tiny_http only ever closes it (or says something wrong).
            let mut byte = [0u8; 1];
            return match stream.read(&mut byte) {
                Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(None),
                _ => Err("the handler side closed an idle connection".to_owned()),
            };
        }
        while self.written < self.request.len() {
            match stream.write(self.request.get(self.written..).unwrap_or_default()) {
                Ok(0) => return Err("the handler side closed the connection".to_owned()),
                Ok(written) => self.written += written,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(format!("writing to the handler side: {error}")),
            }
        }
        loop {
            if let Some(total) = framed_length(&self.answer, self.head_only)? {
                if self.answer.len() > total {
                    return Err("the handler wrote more than its Content-Length".to_owned());
                }
                if self.answer.len() == total {
                    return self.finished_answer().map(Some);
                }
            }
            match stream.read(&mut self.chunk) {
                Ok(0) => return Err("the handler side closed the connection mid-answer".to_owned()),
                Ok(read) => self.answer.extend_from_slice(self.chunk.get(..read).unwrap_or_default()),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(format!("reading from the handler side: {error}")),
            }
        }
    }

    /// The complete answer in `self.answer` as the client gets it: as
    /// tiny_http wrote it, or the reply it marks as handed off.
    fn finished_answer(&mut self) -> Result<[Arc<[u8]>; 2], String> {
        let Some(ticket) = handed_off_ticket(&self.answer) else {
            return Ok([Arc::from(std::mem::take(&mut self.answer)), Arc::from(Vec::new())]);
        };
        self.answer.clear();
        if ticket != self.ticket {
            return Err(format!("the handler handed off ticket {ticket} for ticket {}", self.ticket));
        }
        let reply = self.handoffs.take(ticket).ok_or_else(|| format!("handed-off reply {ticket} is missing"))?;
        let version = if self.http_1_0 { HTTPVersion(1, 0) } else { HTTPVersion(1, 1) };
        Ok([super::gate::render_head(&reply, version, false), reply.body])
    }

    /// A request carried longer than `limit` (its client was answered 504
    /// already): the connection is dropped; tiny_http's answer, when it
    /// comes, goes nowhere.
    pub fn expire(&mut self, now: Instant, limit: Duration) {
        if self.client.is_some() && now.saturating_duration_since(self.started) > limit {
            self.client = None;
            self.stream = None;
        }
    }
}

/// The full length of the answer starting `buffer` (head and body), once
/// its head is complete. Pure; an answer must be Content-Length framed.
pub(crate) fn framed_length(buffer: &[u8], head_only: bool) -> Result<Option<usize>, String> {
    let Some(end) = find_head_end(buffer) else {
        return if buffer.len() > MAX_HEAD_BYTES * 2 { Err("answer head too large".to_owned()) } else { Ok(None) };
    };
    let head = std::str::from_utf8(buffer.get(..end).unwrap_or_default()).map_err(|_| "answer head not UTF-8")?;
    let length = head
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
        })
        .ok_or("answer without Content-Length")?;
    if length > MAX_ANSWER_BYTES {
        return Err(format!("answer of {length} bytes is over {MAX_ANSWER_BYTES}"));
    }
    Ok(Some(end + if head_only { 0 } else { length }))
}

/// The ticket of a handed-off reply, if `answer` (a complete answer) is
/// tiny_http's marker for one. Pure.
pub(crate) fn handed_off_ticket(answer: &[u8]) -> Option<u64> {
    let end = find_head_end(answer)?;
    let head = std::str::from_utf8(answer.get(..end)?).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case(HANDED_OFF_HEADER) {
            parse_ticket(value)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marker_header_names_a_handed_off_ticket() {
        assert_eq!(
            handed_off_ticket(b"HTTP/1.1 204 No Content\r\nX-Clnode-Handed-Off: 9\r\nContent-Length: 0\r\n\r\n"),
            Some(9)
        );
        assert_eq!(handed_off_ticket(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"), None);
        assert_eq!(
            handed_off_ticket(b"HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\nX-Clnode-Handed-Off: 9\r\n\r\n"),
            None,
            "body bytes are not headers"
        );
    }

    #[test]
    fn answers_are_framed_by_their_content_length() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(framed_length(&answer[..10], false), Ok(None));
        assert_eq!(framed_length(answer, false), Ok(Some(answer.len())));
        assert_eq!(framed_length(answer, true), Ok(Some(answer.len() - 5)), "HEAD: no body follows");
        assert!(framed_length(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false).is_err());
        assert!(framed_length(&vec![b'a'; MAX_HEAD_BYTES * 2 + 1], false).is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_ANSWER_BYTES + 1);
        assert!(framed_length(huge.as_bytes(), false).is_err());
    }
}
