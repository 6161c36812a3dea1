//! The one TCP proxy of the tests: it sits between a member and a sync API,
//! or between a leader-mode node and its Redis, PostgreSQL or execution
//! client, and can pass, refuse (cut), hang, blackhole (both ways or one
//! direction only), answer garbage, or rewrite the pages it forwards,
//! switched while the test runs.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// What the proxy does with a connection; read when the connection is
/// accepted (and, in `Tamper`, for each request on it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProxyMode {
    /// Forward bytes both ways.
    Pass,
    /// Accept and close at once (the source is unreachable).
    Refuse,
    /// Accept and never answer (a stopped or hopelessly slow source).
    Hang,
    /// A partition: new connections hang, and the open ones stop carrying
    /// bytes both ways (held, and delivered once the mode leaves), so a
    /// call in flight neither fails nor returns.
    Blackhole,
    /// A one-way partition: requests (client to server) are held, answers
    /// flow. New connections reach the server; nothing the client sends
    /// arrives until the mode leaves.
    HoldRequests,
    /// The other way: what the client sends arrives (a commit is made, a
    /// lease renewed), what the server answers is held until the mode leaves.
    HoldReplies,
    /// Answer every request with a 200 page of garbage records.
    Garbage,
    /// Forward each request as its own GET and rewrite the first record of
    /// each page the upstream answers with the fault set when the answer
    /// arrives (`Fault::None`: forward unchanged).
    /// Only real HTTP on loopback; the bytes of the records are what is
    /// tampered with.
    Tamper(Fault),
}

/// What `ProxyMode::Tamper` does to the first record of each page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    None,
    /// A payload that is not a payload.
    GarbagePayload,
    /// A record hash the payload does not have.
    WrongHash,
    /// A record and payload that agree, but do not link to the previous block.
    Unlinked,
    /// The record is left out: the page starts one block late.
    Gap,
}

const FAULTS: [Fault; 5] = [Fault::None, Fault::GarbagePayload, Fault::WrongHash, Fault::Unlinked, Fault::Gap];

impl ProxyMode {
    fn to_u8(self) -> u8 {
        match self {
            ProxyMode::Pass => 0,
            ProxyMode::Refuse => 1,
            ProxyMode::Hang => 2,
            ProxyMode::Garbage => 3,
            ProxyMode::Blackhole => 4,
            ProxyMode::Tamper(fault) => 5 + FAULTS.iter().position(|f| *f == fault).unwrap_or(0) as u8,
            ProxyMode::HoldRequests => 20,
            ProxyMode::HoldReplies => 21,
        }
    }

    fn from_u8(value: u8) -> ProxyMode {
        match value {
            1 => ProxyMode::Refuse,
            2 => ProxyMode::Hang,
            3 => ProxyMode::Garbage,
            4 => ProxyMode::Blackhole,
            20 => ProxyMode::HoldRequests,
            21 => ProxyMode::HoldReplies,
            n if n >= 5 => ProxyMode::Tamper(FAULTS[usize::from(n - 5).min(FAULTS.len() - 1)]),
            _ => ProxyMode::Pass,
        }
    }
}

struct ProxyShared {
    upstream: u16,
    mode: AtomicU8,
    stop: AtomicBool,
    open: Mutex<BTreeMap<u64, (TcpStream, TcpStream)>>,
    next_id: AtomicU64,
}

/// A proxy on 127.0.0.1 in front of 127.0.0.1:`upstream`; stops (and cuts
/// what is open) when dropped.
pub struct TcpProxy {
    pub port: u16,
    shared: Arc<ProxyShared>,
}

const GARBAGE_PAGE: &str =
    r#"{"head":999999,"blocks":[{"block_number":1,"block_hash":"0xnot-a-hash","payload_data":"%%%"}]}"#;

impl TcpProxy {
    pub fn start(upstream: u16, mode: ProxyMode) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(ProxyShared {
            upstream,
            mode: AtomicU8::new(mode.to_u8()),
            stop: AtomicBool::new(false),
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            while !accept_shared.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let shared = Arc::clone(&accept_shared);
                        std::thread::spawn(move || TcpProxy::handle(client, &shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TcpProxy { port, shared }
    }

    fn mode(shared: &ProxyShared) -> ProxyMode {
        ProxyMode::from_u8(shared.mode.load(Ordering::SeqCst))
    }

    fn handle(client: TcpStream, shared: &Arc<ProxyShared>) {
        let _ = client.set_nonblocking(false);
        match TcpProxy::mode(shared) {
            ProxyMode::Refuse => drop(client),
            mode @ (ProxyMode::Hang | ProxyMode::Blackhole) => {
                while TcpProxy::mode(shared) == mode && !shared.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            ProxyMode::Garbage => {
                let mut client = client;
                let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
                let mut pending = Vec::new();
                let _ = read_head(&mut client, &mut pending);
                let _ = write_response(&mut client, 200, GARBAGE_PAGE, false);
            }
            ProxyMode::Tamper(_) => TcpProxy::tamper_connection(client, shared),
            ProxyMode::Pass | ProxyMode::HoldRequests | ProxyMode::HoldReplies => {
                let addr = SocketAddr::from(([127, 0, 0, 1], shared.upstream));
                let Ok(upstream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return };
                // Small requests (Redis, PostgreSQL) must not wait for Nagle.
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let (Ok(client2), Ok(upstream2), Ok(client3), Ok(upstream3)) =
                    (client.try_clone(), upstream.try_clone(), client.try_clone(), upstream.try_clone())
                else {
                    return;
                };
                let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                shared.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, (client3, upstream3));
                let back_shared = Arc::clone(shared);
                let back = std::thread::spawn(move || pump(upstream2, client2, &back_shared, Direction::Replies));
                pump(client, upstream, shared, Direction::Requests);
                let _ = back.join();
                shared.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            }
        }
    }

    /// Request by request (keep-alive, as the member's client uses it): each
    /// GET is fetched from the upstream and its page rewritten with the
    /// fault current once the answer is in. Ends when the client closes, or
    /// when the mode has left `Tamper` (the next connection gets the new mode).
    fn tamper_connection(mut client: TcpStream, shared: &ProxyShared) {
        let upstream = format!("http://127.0.0.1:{}", shared.upstream);
        let mut pending = Vec::new();
        while let Some(head) = read_head(&mut client, &mut pending) {
            // The records are rewritten as JSON: a member's request for
            // binary records gets the JSON page (it reads either, by the
            // content type).
            let target = head.split_whitespace().nth(1).unwrap_or("/").replace("&format=binary", "");
            let (status, body) = super::http_get(&format!("{upstream}{target}")).unwrap_or((502, String::new()));
            // The fault is read when the answer is in, not when the request
            // came: a long poll asked before `set` still gets the new fault.
            let ProxyMode::Tamper(fault) = TcpProxy::mode(shared) else { return };
            let body = match (status, serde_json::from_str::<Value>(&body)) {
                (200, Ok(mut page)) if page.get("blocks").is_some() => {
                    tamper(&mut page, fault);
                    page.to_string()
                }
                _ => body,
            };
            if write_response(&mut client, status, &body, true).is_err() || shared.stop.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// New connections (and, in `Tamper`, new requests) get `mode`; `cut`
    /// also breaks the connections open in `Pass` (or a one-way mode).
    pub fn set(&self, mode: ProxyMode, cut: bool) {
        self.shared.mode.store(mode.to_u8(), Ordering::SeqCst);
        if cut {
            for (a, b) in self.shared.open.lock().unwrap_or_else(PoisonError::into_inner).values() {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set(ProxyMode::Refuse, true);
    }
}

/// Which way a pump copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to server.
    Requests,
    /// Server to client.
    Replies,
}

/// Whether `mode` holds the bytes going `direction`.
fn holds(mode: ProxyMode, direction: Direction) -> bool {
    match mode {
        ProxyMode::Blackhole => true,
        ProxyMode::HoldRequests => direction == Direction::Requests,
        ProxyMode::HoldReplies => direction == Direction::Replies,
        _ => false,
    }
}

/// Copies `from` to `to` until either side closes; while the proxy's mode
/// holds this direction (`Blackhole`, or a one-way mode), what arrives is
/// held back.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &ProxyShared, direction: Direction) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while holds(TcpProxy::mode(shared), direction) && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Reads one request head (up to the blank line) from `stream`, with what
/// came after it kept in `pending` for the next call. `None` once the client
/// closes or stops sending. Bodies are not expected: the sync API is GET only.
fn read_head(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            return Some(head);
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

fn write_response(stream: &mut TcpStream, status: u16, body: &str, keep_alive: bool) -> std::io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
    stream.write_all(response.as_bytes())
}

/// Rewrites the first record of a sync page as `fault` says.
fn tamper(page: &mut Value, fault: Fault) {
    let Some(blocks) = page["blocks"].as_array_mut() else { return };
    if blocks.is_empty() {
        return;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let other_hash = format!("0x{}", "5a".repeat(32));
    match fault {
        Fault::GarbagePayload => blocks[0]["payload_data"] = json!(b64.encode(br#"{"not":"a payload"}"#)),
        Fault::WrongHash => blocks[0]["block_hash"] = json!(other_hash),
        Fault::Unlinked => {
            // Self-consistent (record and payload agree) but not linked.
            let payload = b64.decode(blocks[0]["payload_data"].as_str().unwrap()).unwrap();
            let mut payload: Value = serde_json::from_slice(&payload).unwrap();
            payload["parentHash"] = json!(other_hash);
            blocks[0]["payload_data"] = json!(b64.encode(payload.to_string()));
            blocks[0]["parent_hash"] = json!(other_hash);
        }
        Fault::Gap => {
            blocks.remove(0);
        }
        Fault::None => {}
    }
}
