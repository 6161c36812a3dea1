//! Request-head parsing: pure, bounded, fuzzed (`fuzz/request_parsing`).
//! Turns the bytes a client sent into the head the gate forwards to
//! tiny_http (no body, no hop-by-hop headers) and what a handler would see
//! of it.

use std::ops::Range;

use tiny_http::Method;

use super::handoff::TICKET_HEADER_LOWER;
use super::{Incoming, BODY_REFUSED_HEADER, BODY_REFUSED_HEADER_LOWER, MAX_HEAD_BYTES, MAX_TARGET_LEN};

/// A request head as the gate forwards it, how to frame its answer, and
/// what a handler would see of it (for the precheck and parked polls).
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
}

impl ForwardedHead {
    /// The request as a handler sees it (the same fields tiny_http would
    /// give `check_and_handle` in `http/mod.rs`).
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

/// Checks one complete request head (ending in an empty line) and rewrites
/// it for tiny_http: hop-by-hop headers (`Connection`, `Keep-Alive`, `TE`:
/// tiny_http would choose chunked framing from it) and body headers removed
/// (a body is never read or forwarded; the handler is told one was
/// announced, and the connection closes after the answer). The gate's
/// connection to tiny_http is kept open after every answer: an HTTP/1.0
/// request says `Connection: keep-alive` to it (tiny_http writes no
/// Connection header in its answer, so the client's bytes do not change).
/// Pure, for fuzzing.
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
    let mut rewritten = String::with_capacity(head.len() + 64);
    rewritten.push_str(request_line);
    rewritten.push_str("\r\n");
    let target_range = range_within(request_line, target);
    let facts = copy_headers(lines, &mut rewritten)?;
    // HTTP/1.1 keeps the connection unless told otherwise; 1.0 closes it.
    let mut keep_alive = facts.connection_keep_alive.unwrap_or(version == "HTTP/1.1");
    if version == "HTTP/1.0" {
        rewritten.push_str("Connection: keep-alive\r\n");
    }
    if facts.body_announced {
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
        bearer: facts.bearer,
        accepts_json: facts.accepts_json,
        body_refused: facts.body_announced,
    })
}

/// What the gate learns from the header lines while copying them.
#[derive(Default)]
struct HeaderFacts {
    /// The last `Connection` header's say, if any.
    connection_keep_alive: Option<bool>,
    body_announced: bool,
    /// The first Authorization header's bearer token, within the rewritten head.
    bearer: Option<Range<usize>>,
    accepts_json: bool,
}

/// Copies the header lines into `rewritten`, dropping hop-by-hop and body
/// headers and a client's copy of the body marker, and notes what they say.
fn copy_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
    rewritten: &mut String,
) -> Result<HeaderFacts, (u16, &'static str)> {
    let mut facts = HeaderFacts::default();
    let mut authorization_seen = false;
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
                facts.body_announced |= value != "0";
                continue;
            }
            "transfer-encoding" => {
                facts.body_announced = true;
                continue;
            }
            "connection" => {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    facts.connection_keep_alive = Some(false);
                } else if value.contains("keep-alive") {
                    facts.connection_keep_alive = Some(true);
                }
                continue;
            }
            // The gate's own headers: a client's copy is never forwarded.
            "keep-alive" | "te" | BODY_REFUSED_HEADER_LOWER | TICKET_HEADER_LOWER => continue,
            // As check_and_handle reads them from tiny_http: the first
            // Authorization header, any Accept header.
            "authorization" if !authorization_seen => {
                authorization_seen = true;
                facts.bearer = value
                    .strip_prefix("Bearer ")
                    .map(str::trim)
                    .map(|token| shift(range_within(line, token), rewritten.len()));
            }
            "accept" => facts.accepts_json |= value.to_ascii_lowercase().contains("application/json"),
            _ => {}
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    Ok(facts)
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

pub(crate) fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(4).position(|window| window == b"\r\n\r\n").map(|position| position + 4)
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
        assert!(incoming.accepts_json && !incoming.body_refused);
        // TE is hop-by-hop: tiny_http would frame its answer by it.
        assert_eq!(rewrite_head(b"GET / HTTP/1.1\r\nte: chunked\r\n\r\n").unwrap().bytes, b"GET / HTTP/1.1\r\n\r\n");
        // HTTP/1.0 keeps the gate's own connection to tiny_http open.
        let old = rewrite_head(b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(old.bytes, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(!old.keep_alive);
        let spoofed = rewrite_head(b"GET /x HTTP/1.1\r\nX-Clnode-Body-Refused: 1\r\n\r\n").unwrap();
        assert!(!String::from_utf8(spoofed.bytes).unwrap().contains("Refused"), "a client cannot set the marker");
        let forged = rewrite_head(b"GET /x HTTP/1.1\r\nx-clnode-ticket: 3\r\n\r\n").unwrap();
        assert_eq!(forged.bytes, b"GET /x HTTP/1.1\r\n\r\n", "nor the gate's ticket");
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
}
