//! The member's fetch thread: long-polls the sync URLs one page ahead of
//! execution, decodes each page (signatures included) so that work overlaps
//! execution, and moves between URLs on failure.
//!
//! It never executes or stores anything; the syncer owns the cursor's
//! resets (a generation counter discards pages fetched before a reset).
//!
//! Pages are asked for within a byte budget (`max_bytes`, `page_budget.rs`)
//! and in the compact encoding (`format=binary`, `binary_page.rs`); an
//! answer too large to read halves the block count asked for next, so the
//! same oversized request is never repeated. After an early empty answer
//! the fetcher pauses (`pace.rs`).

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::pace::{parse_retry_after, pause_before_next};
use super::verify::{decode_page, verification_keys};
use crate::backoff::Backoff;
use crate::block::BlockRecord;
use crate::config::{MemberConfig, SyncKeys, SyncWire};
use crate::log;
use crate::metrics::Metrics;
use crate::page_budget::{limit_after_oversize, limit_after_success, max_answer_bytes, MEMBER_PAGE_BYTES};
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::status::{Component, NodeStatus};
use crate::store::MAX_BLOCKS_PER_QUERY;

/// Batches fetched ahead of execution.
pub const PIPELINE_DEPTH: usize = 2;
/// After this long on a fallback URL, the first URL is tried again.
pub const PRIMARY_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// A sync API answer larger than this is refused: the member's byte
/// budget plus one block larger than any gas limit allows.
pub const MAX_SYNC_RESPONSE_BYTES: u64 = MEMBER_PAGE_BYTES + crate::page_budget::LARGEST_BLOCK_BYTES;
/// Beyond the long-poll wait, how long a fetch may take.
pub const FETCH_TIMEOUT_SLACK: Duration = Duration::from_secs(10);
/// A sync source that does not accept a connection within this is down.
const FETCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One fetched page of the sync API, decoded (and its signatures checked)
/// on the fetch thread so that work overlaps execution.
pub struct Batch {
    pub generation: u64,
    pub url: String,
    /// Every record of the page, or why one of them was refused.
    pub records: Result<Vec<BlockRecord>, String>,
    /// The page's size on the wire.
    pub bytes: u64,
}

/// Beyond this many blocks behind, the fetcher asks for full pages.
const FAR_BEHIND_PAGES: u64 = 2;

/// Where the fetcher should continue; the syncer moves it back on refusal.
#[derive(Default)]
pub struct Cursor {
    state: Mutex<CursorState>,
}

#[derive(Default, Clone, Copy)]
struct CursorState {
    generation: u64,
    /// Fetch the blocks after this one.
    after: u64,
    /// Set with a reset after a refused batch: try another sync URL.
    move_on: bool,
}

impl Cursor {
    fn lock(&self) -> std::sync::MutexGuard<'_, CursorState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self) -> (u64, u64) {
        let state = self.lock();
        (state.generation, state.after)
    }

    /// Starts a new generation fetching after `after`.
    pub fn reset(&self, after: u64, move_on: bool) -> u64 {
        let mut state = self.lock();
        state.generation += 1;
        state.after = after;
        state.move_on = move_on;
        state.generation
    }

    /// Advances within `generation` (ignored if a reset happened meanwhile).
    pub fn advance(&self, generation: u64, after: u64) {
        let mut state = self.lock();
        if state.generation == generation {
            state.after = after;
        }
    }

    /// Whether the last reset asked for another URL; clears the request.
    pub fn take_move_on(&self) -> bool {
        std::mem::take(&mut self.lock().move_on)
    }
}

/// One page from the first sync URL that answers (no long poll), in JSON:
/// used once at start-up, for a few blocks.
pub fn fetch_from_any(
    urls: &[String],
    token: Option<&Secret>,
    after: u64,
    limit: u32,
) -> Result<(u64, Vec<Value>), String> {
    let mut reasons = Vec::new();
    for url in urls {
        let request = PageRequest {
            after,
            limit,
            wait: Duration::ZERO,
            compact: false,
            page_bytes: MEMBER_PAGE_BYTES,
            max_answer: MAX_SYNC_RESPONSE_BYTES,
        };
        match fetch_page(url, token, request) {
            Ok(page) => return Ok((page.head, page.records)),
            Err(error) => reasons.push(error.message),
        }
    }
    Err(reasons.join("; "))
}

/// What the fetcher asks a sync source for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: u64,
    pub limit: u32,
    /// The long poll's wait.
    pub wait: Duration,
    /// Ask for binary records within `page_bytes` (clnode sources);
    /// otherwise a plain JSON page (seed sources, older nodes).
    pub compact: bool,
    /// The byte budget asked for (`--sync-page-bytes`).
    pub page_bytes: u64,
    /// The largest answer read.
    pub max_answer: u64,
}

impl PageRequest {
    pub fn target(&self, url: &str) -> String {
        let PageRequest { after, limit, wait, compact, page_bytes, .. } = self;
        let mut target = format!("{url}/blocks?after={after}&limit={limit}&wait_ms={}", wait.as_millis());
        if *compact {
            target.push_str(&format!("&max_bytes={page_bytes}&format=binary"));
        }
        target
    }
}

/// One page as the source answered it.
#[derive(Debug)]
pub struct FetchedPage {
    /// The source's head (or the last block it sent, if larger).
    pub head: u64,
    pub records: Vec<Value>,
    /// The source's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// The answer's size on the wire.
    pub bytes: u64,
}

/// What went wrong with a page request; decides the fetcher's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// The answer was larger than the member reads: ask for fewer blocks.
    TooLarge,
    /// 400: the source does not take the request (an older node that does
    /// not know `max_bytes`/`format`): ask in plain JSON.
    BadRequest,
    /// 429: the source is at its long-poll cap and says when to come
    /// back (`Retry-After`): wait that long, as asked; not a failure.
    Busy,
    /// Anything else: the source is down, busy or broken; back off.
    Failed,
}

#[derive(Debug)]
pub struct FetchError {
    pub kind: FetchErrorKind,
    /// Says which URL and what happened.
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// GET one page.
pub fn fetch_page(url: &str, token: Option<&Secret>, request: PageRequest) -> Result<FetchedPage, FetchError> {
    let PageRequest { after, wait, .. } = request;
    let fail = |kind: FetchErrorKind, message: String| FetchError { kind, message, retry_after: None };
    // One agent for the process, but a fresh connection per page (no idle
    // connections kept): whatever sits between member and source (a proxy,
    // a load balancer moving to another node) is asked anew for each page,
    // for about 0.1 ms of connect on loopback.
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    let agent = AGENT.get_or_init(|| crate::http::client::agent(FETCH_CONNECT_TIMEOUT, 0));
    let target = request.target(url);
    let failed = |e: String| fail(FetchErrorKind::Failed, format!("GET {target}: {e}"));
    let mut http = agent.get(&target).config().timeout_global(Some(wait + FETCH_TIMEOUT_SLACK)).build();
    if let Some(token) = token {
        http = http.header("Authorization", &format!("Bearer {}", String::from_utf8_lossy(token.expose())));
    }
    let mut response = http.call().map_err(|e| failed(e.to_string()))?;
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let retry_after = header("retry-after").as_deref().and_then(parse_retry_after);
    let binary = header("content-type").is_some_and(|t| t.starts_with(crate::binary_page::CONTENT_TYPE));
    let body = match response.body_mut().with_config().limit(request.max_answer).read_to_vec() {
        Ok(body) => body,
        Err(ureq::Error::BodyExceedsLimit(limit)) => {
            return Err(fail(FetchErrorKind::TooLarge, format!("GET {target}: the answer is over {limit} bytes")))
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    if status != 200 {
        let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        let kind = match status {
            400 => FetchErrorKind::BadRequest,
            429 => FetchErrorKind::Busy,
            _ => FetchErrorKind::Failed,
        };
        return Err(FetchError { kind, message: format!("GET {target}: HTTP {status}: {excerpt}"), retry_after });
    }
    let (head, records) = if binary {
        crate::binary_page::decode_page(&body).map_err(|e| failed(format!("binary page: {e}")))?
    } else {
        json_page(&body).map_err(failed)?
    };
    // Only an estimate of the source's head: a record without a valid
    // number is refused when the page is decoded.
    let last = records.last().and_then(|r| r.get("block_number")).and_then(Value::as_u64).unwrap_or(after);
    Ok(FetchedPage { head: head.max(last), records, retry_after, bytes: body.len() as u64 })
}

/// (head, records) of a JSON page.
fn json_page(body: &[u8]) -> Result<(u64, Vec<Value>), String> {
    let mut value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let records = match value.get_mut("blocks").map(Value::take) {
        Some(Value::Array(records)) => records,
        _ => return Err("no blocks list".into()),
    };
    // `head` only tells how far behind the member is (clnode's API always
    // sends it; a source may not): absent, the source is taken to be at the
    // last block it sent. Present, it must be a block number.
    let head = match value.get("head") {
        None | Some(Value::Null) => 0,
        Some(head) => head.as_u64().ok_or_else(|| format!("head {head} is not a block number"))?,
    };
    Ok((head, records))
}

/// The fetch thread: long polls the sync URLs in order, moving to the next
/// one on failure and back to the first after a while.
pub struct Fetcher {
    pub(super) config: MemberConfig,
    pub(super) sync_keys: SyncKeys,
    /// The source's head at the last answer: far behind it, pages are full.
    pub(super) last_source_head: u64,
    pub(super) cursor: Arc<Cursor>,
    pub(super) status: Arc<NodeStatus>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) shutdown: Shutdown,
    pub(super) backoff: Backoff,
    pub(super) url_index: usize,
    pub(super) on_fallback_since: Option<Instant>,
    /// The most blocks asked for at once: halved after an answer too large
    /// to read, grown back after answers that could be read.
    pub(super) page_cap: u32,
    /// Whether the present URL is asked for binary pages within a budget
    /// (cleared for a source that refuses them; set again on a URL switch).
    pub(super) compact: bool,
    /// The largest answer read (`page_budget::max_answer_bytes`); smaller in tests.
    pub(super) max_answer: u64,
}

impl Fetcher {
    /// A fetcher starting at the first URL.
    pub fn new(
        config: MemberConfig,
        sync_keys: SyncKeys,
        parts: (Arc<Cursor>, Arc<NodeStatus>, Arc<Metrics>, Shutdown, Backoff),
    ) -> Fetcher {
        let (cursor, status, metrics, shutdown, backoff) = parts;
        let compact = config.wire == SyncWire::Json;
        let max_answer = max_answer_bytes(config.page_bytes);
        Fetcher {
            config,
            sync_keys,
            last_source_head: 0,
            cursor,
            status,
            metrics,
            shutdown,
            backoff,
            url_index: 0,
            on_fallback_since: None,
            page_cap: MAX_BLOCKS_PER_QUERY,
            compact,
            max_answer,
        }
    }
}

impl Fetcher {
    pub fn run(mut self, sender: &SyncSender<Batch>) {
        let mut failures_in_a_row: u32 = 0;
        while !self.shutdown.is_requested() {
            if self.on_fallback_since.is_some_and(|since| since.elapsed() >= PRIMARY_RETRY_INTERVAL) {
                self.switch_to(0, "retrying the first sync URL");
            }
            if self.cursor.take_move_on() && self.config.leader_urls.len() > 1 {
                let next = (self.url_index + 1) % self.config.leader_urls.len();
                self.switch_to(next, "its last batch was refused");
            }
            let (generation, after) = self.cursor.get();
            let url = self.config.leader_urls[self.url_index].clone();
            let wanted = if self.last_source_head > after + FAR_BEHIND_PAGES * u64::from(self.config.batch_limit) {
                MAX_BLOCKS_PER_QUERY
            } else {
                self.config.batch_limit
            };
            let limit = wanted.min(self.page_cap).max(1);
            let request = PageRequest {
                after,
                limit,
                wait: self.config.long_poll_wait,
                compact: self.compact,
                page_bytes: self.config.page_bytes,
                max_answer: self.max_answer,
            };
            let started = Instant::now();
            self.status.update(|s| s.lag_clock.asked(started, request.wait));
            let fetched = fetch_page(&url, self.config.sync_token.as_ref(), request);
            // Before the page goes to the syncer, so its lag counts from
            // this answer's arrival (`lag.rs`).
            let arrived = Instant::now();
            self.status.update(|s| match &fetched {
                Ok(page) => s.lag_clock.answered(arrived, page.head, s.last_synced),
                Err(_) => s.lag_clock.failed(),
            });
            match fetched {
                Ok(FetchedPage { head: source_head, records, retry_after, bytes }) => {
                    self.last_source_head = source_head;
                    self.metrics.sync_pages.inc();
                    self.metrics.sync_page_bytes.add(bytes);
                    if i64::try_from(bytes).is_ok_and(|bytes| bytes > self.metrics.sync_page_bytes_max.get()) {
                        self.metrics.sync_page_bytes_max.set_u64(bytes);
                    }
                    self.page_cap = limit_after_success(
                        self.page_cap,
                        MAX_BLOCKS_PER_QUERY,
                        limit,
                        records.len(),
                        bytes,
                        self.max_answer,
                    );
                    failures_in_a_row = 0;
                    self.status.clear_problem(Component::SyncSource);
                    let pause = pause_before_next(started.elapsed(), records.is_empty(), retry_after);
                    let last = records.last().and_then(|r| r.get("block_number")).and_then(Value::as_u64);
                    if let Some(last) = last {
                        self.cursor.advance(generation, last);
                    }
                    let keys = verification_keys(&self.sync_keys);
                    let records = decode_page(&records, self.config.wire, &self.config.record_trust, &keys);
                    let batch = Batch { generation, url, records, bytes };
                    if !self.send(sender, batch) {
                        return;
                    }
                    if !pause.is_zero() {
                        self.shutdown.sleep(pause);
                    }
                }
                Err(error) if error.kind == FetchErrorKind::TooLarge && limit > 1 => {
                    // Never the same oversized request again: fewer blocks.
                    self.page_cap = limit_after_oversize(limit);
                    self.metrics.count_error("sync_fetch");
                    log::warn(&format!(
                        "member: {}; asking for at most {} blocks per page",
                        error.message, self.page_cap
                    ));
                }
                Err(error) if error.kind == FetchErrorKind::BadRequest && self.compact => {
                    self.compact = false;
                    log::warn(&format!(
                        "member: {}; the source does not take max_bytes/format: asking it for JSON pages",
                        error.message
                    ));
                }
                Err(FetchError { kind: FetchErrorKind::Busy, message, retry_after }) => {
                    // A healthy source past its cap: the member waits its
                    // turn (never sooner than asked, never at once) and
                    // stays healthy; only its count says it happened.
                    self.metrics.count_error("sync_busy");
                    log::debug(&format!("member: {message}"));
                    self.shutdown.sleep(pause_before_next(Duration::ZERO, true, retry_after));
                }
                Err(FetchError { message: reason, retry_after, .. }) => {
                    failures_in_a_row = failures_in_a_row.saturating_add(1);
                    self.metrics.count_error("sync_fetch");
                    if failures_in_a_row == 1 || failures_in_a_row.is_multiple_of(10) {
                        log::warn(&format!("member: fetch failed: {reason}"));
                    }
                    let urls = self.config.leader_urls.len();
                    if failures_in_a_row as usize >= urls {
                        self.status.set_problem(Component::SyncSource, format!("no sync URL answers: {reason}"));
                    }
                    if urls > 1 {
                        self.switch_to((self.url_index + 1) % urls, &reason);
                    }
                    // Back off only once every URL has failed in this round.
                    let rounds = failures_in_a_row.div_ceil(u32::try_from(urls).unwrap_or(1));
                    if (failures_in_a_row as usize).is_multiple_of(urls) || urls == 1 {
                        let asked = pause_before_next(Duration::ZERO, false, retry_after);
                        self.shutdown.sleep(self.backoff.delay(rounds).max(asked));
                    }
                }
            }
        }
    }

    fn switch_to(&mut self, index: usize, reason: &str) {
        if index == self.url_index {
            self.on_fallback_since = None;
            return;
        }
        log::info(&format!(
            "member: sync URL {} -> {} ({reason})",
            self.config.leader_urls[self.url_index], self.config.leader_urls[index]
        ));
        self.url_index = index;
        self.on_fallback_since = (index != 0).then(Instant::now);
        self.compact = self.config.wire == SyncWire::Json;
        self.metrics.sync_url_switches.inc();
    }

    /// Hands a batch to the syncer, waiting while the pipeline is full.
    fn send(&self, sender: &SyncSender<Batch>, batch: Batch) -> bool {
        let mut pending = batch;
        loop {
            match sender.try_send(pending) {
                Ok(()) => return true,
                Err(std::sync::mpsc::TrySendError::Full(batch)) => {
                    if self.shutdown.is_requested() {
                        return false;
                    }
                    pending = batch;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::sync_channel;

    /// A sync source on a real socket that answers every request at once
    /// with `answer(query)` (status, extra header, body), and records the
    /// queries it was asked.
    struct FakeSource {
        url: String,
        queries: Arc<Mutex<Vec<String>>>,
        stop: Arc<AtomicBool>,
    }

    impl FakeSource {
        fn start(
            answer: impl Fn(&str) -> (u16, Option<(&'static str, &'static str)>, Vec<u8>) + Send + 'static,
        ) -> FakeSource {
            let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
            let url = format!("http://{}", server.server_addr().to_ip().unwrap());
            let (queries, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
            let (seen, stopping) = (Arc::clone(&queries), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(20)) else { continue };
                    let query = request.url().split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
                    seen.lock().unwrap().push(query.clone());
                    let (status, header, body) = answer(&query);
                    let mut response = tiny_http::Response::from_data(body).with_status_code(status);
                    if let Some((name, value)) = header {
                        response = response.with_header(tiny_http::Header::from_bytes(name, value).unwrap());
                    }
                    let _ = request.respond(response);
                }
            });
            FakeSource { url, queries, stop }
        }

        fn queries(&self) -> Vec<String> {
            self.queries.lock().unwrap().clone()
        }
    }

    impl Drop for FakeSource {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Runs a fetcher against `url` for `run_for`, draining its batches.
    /// Runs a fetcher against `url` for `run_for`; its node status after.
    fn run_fetcher(url: &str, batch_limit: u32, max_answer: u64, run_for: Duration) -> Arc<NodeStatus> {
        let config = MemberConfig {
            leader_urls: vec![url.to_owned()],
            sync_token: None,
            batch_limit,
            page_bytes: MEMBER_PAGE_BYTES,
            long_poll_wait: Duration::from_secs(5),
            record_trust: crate::signing::RecordTrust::Unverified,
            wire: SyncWire::Json,
            lag_limits: crate::member::lag_limit::LagLimits::default(),
        };
        let shutdown = Shutdown::new();
        let backoff = Backoff::with_jitter(Duration::from_millis(200), Duration::from_secs(30), "test");
        let status = Arc::new(NodeStatus::new(crate::config::Mode::Member, "test"));
        let parts =
            (Arc::new(Cursor::default()), Arc::clone(&status), Arc::new(Metrics::default()), shutdown.clone(), backoff);
        let mut fetcher = Fetcher::new(config, SyncKeys::default(), parts);
        fetcher.max_answer = max_answer;
        let (sender, receiver) = sync_channel(PIPELINE_DEPTH);
        let thread = std::thread::spawn(move || fetcher.run(&sender));
        let deadline = Instant::now() + run_for;
        while Instant::now() < deadline {
            let _ = receiver.recv_timeout(Duration::from_millis(10));
        }
        shutdown.request();
        while !thread.is_finished() {
            let _ = receiver.recv_timeout(Duration::from_millis(10));
        }
        status
    }

    /// Issue 16.2: a source past its long-poll cap answered an empty page at
    /// once, and the fetcher asked again at once (about 1,400 requests a
    /// second per member).
    #[test]
    fn an_early_empty_answer_is_not_asked_again_before_the_floor() {
        let source = FakeSource::start(|_| (200, None, b"{\"blocks\":[],\"head\":0}".to_vec()));
        run_fetcher(&source.url, 100, MAX_SYNC_RESPONSE_BYTES, Duration::from_millis(1000));
        let asked = source.queries().len();
        let most = (Duration::from_millis(1000).as_millis() / super::super::pace::EMPTY_ANSWER_FLOOR.as_millis()) + 1;
        assert!((1..=most as usize).contains(&asked), "{asked} requests in 1 s (at most {most})");
    }

    /// Issue 16.2: past its long-poll cap the gate answers 429 with
    /// Retry-After; the member counted that as a failed fetch (unhealthy,
    /// backing off by its own schedule). It waits as asked and stays
    /// healthy.
    #[test]
    fn a_busy_source_is_asked_again_after_its_retry_after_and_the_member_stays_healthy() {
        let source = FakeSource::start(|_| (429, Some(("Retry-After", "1")), b"{\"error\":\"busy\"}".to_vec()));
        let status = run_fetcher(&source.url, 100, MAX_SYNC_RESPONSE_BYTES, Duration::from_millis(1500));
        let asked = source.queries().len();
        assert!((1..=2).contains(&asked), "{asked} requests in 1.5 s with Retry-After: 1");
        let problems = status.snapshot().problems;
        assert!(problems.is_empty(), "a busy source is not a failure: {problems:?}");
    }

    #[test]
    fn the_sources_retry_after_is_honoured_on_empty_answers() {
        let source = FakeSource::start(|_| (200, Some(("Retry-After", "1")), b"{\"blocks\":[],\"head\":0}".to_vec()));
        run_fetcher(&source.url, 100, MAX_SYNC_RESPONSE_BYTES, Duration::from_millis(1500));
        let asked = source.queries().len();
        assert!((1..=2).contains(&asked), "{asked} requests in 1.5 s with Retry-After: 1");
    }

    /// Issue 16.3: a member far behind asked for 1,000-block pages, refused
    /// the answer as too large, and asked the same again for ever.
    #[test]
    fn an_oversized_answer_is_never_asked_for_again() {
        // A source that ignores max_bytes: 1,000 bytes per block asked for.
        let source = FakeSource::start(|query| {
            let limit: usize =
                query.split('&').find_map(|pair| pair.strip_prefix("limit=")).and_then(|v| v.parse().ok()).unwrap_or(1);
            let mut body = b"{\"blocks\":[],\"head\":0}".to_vec();
            body.resize(body.len() + limit * 1000, b' ');
            (200, None, body)
        });
        run_fetcher(&source.url, 1000, 50_000, Duration::from_millis(800));
        let limits: Vec<u32> = source
            .queries()
            .iter()
            .filter_map(|q| q.split('&').find_map(|pair| pair.strip_prefix("limit=")).and_then(|v| v.parse().ok()))
            .collect();
        assert_eq!(limits[..6], [1000, 500, 250, 125, 62, 31], "halved until an answer fits: {limits:?}");
        assert!(limits[6..].iter().all(|limit| *limit <= 31), "an oversized request again: {limits:?}");
        assert!(source.queries()[0].contains("max_bytes=") && source.queries()[0].contains("format=binary"));
    }

    #[test]
    fn a_source_that_refuses_the_budget_is_asked_in_json() {
        let source = FakeSource::start(|query| {
            if query.contains("format=") {
                (400, None, b"{\"error\":\"unknown query parameter \\\"max_bytes\\\"\"}".to_vec())
            } else {
                (200, None, b"{\"blocks\":[],\"head\":0}".to_vec())
            }
        });
        run_fetcher(&source.url, 100, MAX_SYNC_RESPONSE_BYTES, Duration::from_millis(400));
        let queries = source.queries();
        assert!(queries.len() >= 2 && queries[0].contains("format=binary"), "{queries:?}");
        assert!(queries[1..].iter().all(|q| !q.contains("format=")), "{queries:?}");
    }

    #[test]
    fn cursor_reset_discards_advances_of_the_old_generation() {
        let cursor = Cursor::default();
        let first = cursor.reset(10, false);
        cursor.advance(first, 20);
        assert_eq!(cursor.get(), (first, 20));
        let second = cursor.reset(15, true);
        cursor.advance(first, 30);
        assert_eq!(cursor.get(), (second, 15));
        assert!(cursor.take_move_on());
        assert!(!cursor.take_move_on());
    }
}
