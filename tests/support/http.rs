//! HTTP from the tests' side: plain requests through ureq, and raw bytes
//! on a socket for requests no HTTP client would send.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// HTTP GET; returns (status, body).
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    http_request("GET", url)
}

pub fn http_request(method: &str, url: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(40)))
        .http_status_as_error(false)
        .build()
        .into();
    let request = ureq::http::Request::builder().method(method).uri(url).body(()).map_err(|e| e.to_string())?;
    let mut response = agent.run(request).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Ok((status, body))
}

/// HTTP GET with an overall timeout: a stopped (SIGSTOP) process accepts
/// connections but never answers, so probes of it must give up quickly.
pub fn http_get_within(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Ok((status, body))
}

/// Sends raw bytes to 127.0.0.1:`port`; returns the status (if an HTTP
/// answer came) and the body. Reads until the server closes, the answer's
/// Content-Length is complete, 1 MiB arrived, or nothing came for
/// `read_timeout` (a server that never answers gives `None`).
pub fn raw_http(port: u16, request: &[u8], read_timeout: Duration) -> (Option<u16>, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (None, "connect failed".into());
    };
    let _ = stream.set_read_timeout(Some(read_timeout));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    // A server may answer and close before reading everything (an oversized
    // head): what it answered is what counts, so a failed write is not fatal.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > 1 << 20 {
                    break;
                }
                // Stop at the end of a response with a known length.
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().ok())
                        })
                        .flatten();
                    if length.is_some_and(|length| body.len() >= length) {
                        break;
                    }
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.strip_prefix("HTTP/1.").and_then(|rest| rest.get(2..5)).and_then(|code| code.parse().ok());
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// Opens `count` connections to `port` that each send half a request head
/// and then nothing (`partial`), or a whole request whose answer is read,
/// leaving an idle keep-alive connection.
pub fn hold_connections(port: u16, count: usize, partial: bool) -> Vec<TcpStream> {
    let mut held: Vec<TcpStream> = (0..count)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            let request: &[u8] =
                if partial { b"GET /health HTTP/1.1\r\nHost: x\r\n" } else { b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" };
            stream.write_all(request).ok()?;
            Some(stream)
        })
        .collect();
    if !partial {
        // Read each answer (a 404), leaving the connection open and idle.
        for stream in &mut held {
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
        }
    }
    assert!(held.len() * 10 >= count * 9, "only {} of {count} connections opened", held.len());
    held
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
