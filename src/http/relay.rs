//! The relay to tiny_http: each client connection gets one private unix
//! connection to the tiny_http server, which never faces a client directly;
//! exactly one Content-Length-framed answer is copied back per request.

use std::io::{Read, Write};
use std::net::{Shutdown as SocketShutdown, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use super::head::{find_head_end, ForwardedHead};
use super::MAX_HEAD_BYTES;

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

/// Sends one head upstream and copies exactly one answer back. Returns
/// whether the upstream connection can carry another request.
pub(crate) fn relay(head: &ForwardedHead, upstream: &mut UnixStream, client: &mut TcpStream) -> std::io::Result<bool> {
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
