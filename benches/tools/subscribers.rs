//! Simulated subscribers for bench P9: `count` plain HTTP/1.1 long-poll
//! clients (no execution client) following one node's `/blocks` at the
//! head, on keep-alive connections, from one thread (mio), for `seconds`.
//!
//! Usage: subscribers HOST:PORT COUNT SECONDS AFTER [idle]
//! Each asks `/blocks?after=A&limit=100&wait_ms=20000` and, on each answer,
//! takes the page's `"head"` as its next `after`. Every block number a
//! subscriber learns is noted with the wall-clock time it arrived (ms since
//! the epoch, the clock the node's log uses). With `idle`, every subscriber
//! waits for a block a million ahead (never answered within the run: the
//! cost of idle waiters). Output, one line each: `block N COUNT P50 P99 MAX`
//! (receive times over the subscribers that got block N), then
//! `summary answers A errors E reconnects R statuses ...`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

struct Subscriber {
    stream: TcpStream,
    after: u64,
    input: Vec<u8>,
    connected: bool,
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

fn request(after: u64) -> Vec<u8> {
    format!("GET /blocks?after={after}&limit=100&wait_ms=20000 HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

/// One complete answer at the start of `input`: (status, answer end, head).
fn take_answer(input: &[u8]) -> Option<(u16, usize, Option<u64>)> {
    let end = input.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&input[..end]).ok()?;
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: ").or_else(|| l.strip_prefix("content-length: ")))?
        .trim()
        .parse()
        .ok()?;
    if input.len() < end + length {
        return None;
    }
    let body = &input[end..end + length];
    // The page ends `,"head":N}`.
    let tail = &body[body.len().saturating_sub(40)..];
    let text = std::str::from_utf8(tail).ok()?;
    let chain_head = text.rsplit_once("\"head\":").and_then(|(_, n)| n.trim_end_matches('}').parse().ok());
    Some((status, end + length, chain_head))
}

fn connect(poll: &Poll, addr: SocketAddr, token: Token) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE).unwrap();
    stream
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args[1].parse().unwrap();
    let count: usize = args[2].parse().unwrap();
    let seconds: u64 = args[3].parse().unwrap();
    let start_after: u64 = args[4].parse().unwrap();
    let idle = args.get(5).is_some_and(|a| a == "idle");
    let first_after = if idle { start_after + 1_000_000 } else { start_after };
    let mut poll = Poll::new().unwrap();
    let mut subscribers: Vec<Subscriber> = Vec::with_capacity(count);
    for index in 0..count {
        let stream = connect(&poll, addr, Token(index));
        subscribers.push(Subscriber { stream, after: first_after, input: Vec::new(), connected: false });
        if index % 500 == 499 {
            // Let the node accept them (its backlog is finite).
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut received: HashMap<u64, Vec<f64>> = HashMap::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let (mut answers, mut errors, mut reconnects) = (0usize, 0usize, 0usize);
    let mut first_refusal: Option<String> = None;
    let mut events = Events::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
        for event in events.iter() {
            let index = event.token().0;
            let sub = &mut subscribers[index];
            if event.is_writable() && !sub.connected {
                if sub.stream.peer_addr().is_err() {
                    continue; // still connecting
                }
                sub.connected = true;
                if sub.stream.write_all(&request(sub.after)).is_err() {
                    errors += 1;
                }
            }
            if !event.is_readable() {
                continue;
            }
            let mut closed = false;
            loop {
                match sub.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => sub.input.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            let at = now_ms();
            while let Some((status, used, chain_head)) = take_answer(&sub.input) {
                if status != 200 && first_refusal.is_none() {
                    first_refusal = Some(String::from_utf8_lossy(&sub.input[..used]).replace("\r\n", " | "));
                }
                sub.input.drain(..used);
                answers += 1;
                *statuses.entry(status).or_default() += 1;
                match (status, chain_head) {
                    (200, Some(head)) if head > sub.after && !idle => {
                        for number in sub.after + 1..=head.min(sub.after + 100) {
                            received.entry(number).or_default().push(at);
                        }
                        sub.after = head;
                    }
                    (200, _) => {}
                    _ => errors += 1,
                }
                if sub.stream.write_all(&request(sub.after)).is_err() {
                    closed = true;
                }
            }
            if closed {
                reconnects += 1;
                let _ = poll.registry().deregister(&mut sub.stream);
                sub.stream = connect(&poll, addr, Token(index));
                sub.connected = false;
                sub.input.clear();
            }
        }
    }
    let mut out = String::new();
    let mut numbers: Vec<u64> = received.keys().copied().collect();
    numbers.sort_unstable();
    for number in numbers {
        let times = received.get_mut(&number).unwrap();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rank = |p: f64| times[((p / 100.0 * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
        out.push_str(&format!(
            "block {number} {} {:.3} {:.3} {:.3}\n",
            times.len(),
            rank(50.0),
            rank(99.0),
            times[times.len() - 1]
        ));
    }
    out.push_str(&format!(
        "summary answers {answers} errors {errors} reconnects {reconnects} statuses {statuses:?} first refusal: {}\n",
        first_refusal.unwrap_or_else(|| "none".into())
    ));
    print!("{out}");
}
