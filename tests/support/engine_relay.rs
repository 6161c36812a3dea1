//! An Engine API relay that signs every request anew with the real clock.
//!
//! On a real machine a node and its execution client read the same clock,
//! so the JWT `iat` a node with a wrong clock sends is what its client
//! expects. In the tests only clnode runs under libfaketime (geth, a Go
//! binary, reads the clock without libc), so geth would refuse every token
//! of a node an hour off (the Engine API allows 60 s). This relay stands in
//! for the shared clock: it forwards each request body unchanged with a
//! token issued now by the test process, and the answer back unchanged.
//!
//! It also keeps the last `KEPT_PAYLOADS` `engine_getPayload*` answers
//! (`built_payloads`), so a test can hold what a node committed to what its
//! client built (tests/requests.rs: the execution requests).

use std::io::Read as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use clnode::engine::JwtSecret;

use super::{free_port, El};

/// Engine API calls wait up to 8 s (forkchoiceUpdated, newPayload).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Enough for clnode's one Engine API caller at a time, plus a spare.
const WORKERS: usize = 4;
const LARGEST_BODY: u64 = 64 << 20;
/// getPayload answers kept (the newest).
const KEPT_PAYLOADS: usize = 256;

type Kept = Arc<Mutex<Vec<serde_json::Value>>>;

pub struct EngineRelay {
    pub port: u16,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    built: Kept,
}

impl EngineRelay {
    /// Relays 127.0.0.1:`port` to `el`'s Engine API.
    pub fn start(el: &El) -> EngineRelay {
        let port = free_port();
        let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).unwrap());
        let secret = Arc::new(JwtSecret::from_file(&el.jwt).unwrap());
        let (target, stop) = (el.engine_url(), Arc::new(AtomicBool::new(false)));
        let built: Kept = Arc::default();
        let workers = (0..WORKERS)
            .map(|_| {
                let (server, secret, target, stop, built) =
                    (Arc::clone(&server), Arc::clone(&secret), target.clone(), Arc::clone(&stop), Arc::clone(&built));
                std::thread::spawn(move || relay_until_stopped(&server, &secret, &target, &stop, &built))
            })
            .collect();
        EngineRelay { port, stop, workers, built }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `result` of every `engine_getPayload*` answer relayed (the last
    /// `KEPT_PAYLOADS`), oldest first.
    pub fn built_payloads(&self) -> Vec<serde_json::Value> {
        self.built.lock().unwrap().clone()
    }
}

impl Drop for EngineRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn relay_until_stopped(server: &tiny_http::Server, secret: &JwtSecret, target: &str, stop: &AtomicBool, built: &Kept) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(FORWARD_TIMEOUT)).http_status_as_error(false).build().into();
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(100)) else { continue };
        let mut body = Vec::new();
        let read = request.as_reader().take(LARGEST_BODY).read_to_end(&mut body);
        let answer = read.map_err(|e| e.to_string()).and_then(|_| forward(&agent, secret, target, &body));
        if let Ok((_, _, bytes)) = &answer {
            keep_built_payload(&body, bytes, built);
        }
        let response = match answer {
            Ok((status, content_type, bytes)) => tiny_http::Response::from_data(bytes)
                .with_status_code(status)
                .with_header(tiny_http::Header::from_bytes("Content-Type", content_type).unwrap()),
            Err(error) => tiny_http::Response::from_data(error.into_bytes()).with_status_code(502),
        };
        let _ = request.respond(response);
    }
}

/// Keeps the result of a getPayload answer (`body` the request, `answer` the client's).
fn keep_built_payload(body: &[u8], answer: &[u8], built: &Kept) {
    let method =
        serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|r| r["method"].as_str().map(str::to_owned));
    if !method.is_some_and(|m| m.starts_with("engine_getPayload")) {
        return;
    }
    let Some(result) = serde_json::from_slice::<serde_json::Value>(answer).ok().map(|a| a["result"].clone()) else {
        return;
    };
    let mut kept = built.lock().unwrap();
    if kept.len() == KEPT_PAYLOADS {
        kept.remove(0);
    }
    kept.push(result);
}

/// (status, content type, body) of the execution client's answer.
fn forward(
    agent: &ureq::Agent,
    secret: &JwtSecret,
    target: &str,
    body: &[u8],
) -> Result<(u16, String, Vec<u8>), String> {
    let mut response = agent
        .post(target)
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {}", secret.token_now()))
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_owned();
    let bytes = response.body_mut().with_config().limit(LARGEST_BODY).read_to_vec().map_err(|e| e.to_string())?;
    Ok((status, content_type, bytes))
}
