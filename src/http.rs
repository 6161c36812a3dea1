//! The HTTP plumbing both servers share: a fixed pool of worker threads on
//! one tiny_http listener, strict query parsing, and JSON error replies.
//!
//! Limits: a fixed number of workers (so a fixed number of requests in
//! flight), a cap on the request target's length, and GET/HEAD only with
//! no body. Handlers return a [`Reply`]; nothing here panics on input.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::shutdown::Shutdown;

/// Longest request target (path and query) accepted.
pub const MAX_TARGET_LEN: usize = 2048;
/// Largest request body accepted; the API takes none.
pub const MAX_BODY_BYTES: u64 = 0;
/// How often an idle worker looks at the shutdown flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub allow: Option<&'static str>,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply { status, content_type: "application/json", body: value.to_string().into_bytes(), allow: None }
    }

    pub fn text(status: u16, text: String) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: text.into_bytes(), allow: None }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    pub fn method_not_allowed() -> Reply {
        Reply { allow: Some("GET, HEAD"), ..Reply::error(405, "method not allowed; use GET") }
    }
}

/// What a handler sees of a request: already checked for size and method.
pub struct Incoming<'a> {
    pub path: &'a str,
    pub query: &'a str,
    pub accepts_json: bool,
}

/// Starts `workers` threads answering on `addr`. Each thread makes its own
/// handler (so it can own a database connection).
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
    let server = Server::http(addr).map_err(|e| format!("cannot listen on {addr} ({name}): {e}"))?;
    let server = Arc::new(server);
    let mut handles = Vec::with_capacity(workers);
    for index in 0..workers {
        let server = Arc::clone(&server);
        let shutdown = shutdown.clone();
        let mut handler = make_handler();
        let handle = std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || {
                while !shutdown.is_requested() {
                    match server.recv_timeout(ACCEPT_POLL) {
                        Ok(Some(request)) => answer(request, &mut handler),
                        Ok(None) => {}
                        Err(_) => std::thread::sleep(ACCEPT_POLL),
                    }
                }
            })
            .map_err(|e| format!("cannot start {name} worker: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
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
        Cursor::new(if is_head { Vec::new() } else { reply.body.clone() }),
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
    if !matches!(request.method(), Method::Get | Method::Head) {
        return Reply::method_not_allowed();
    }
    if request.body_length().unwrap_or(0) > MAX_BODY_BYTES as usize {
        return Reply::error(413, "request body not accepted");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let accepts_json = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("Accept") && h.value.as_str().to_ascii_lowercase().contains("application/json"));
    handler(&Incoming { path, query, accepts_json })
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
