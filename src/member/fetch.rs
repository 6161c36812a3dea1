//! The member's fetch thread: long-polls the sync URLs one page ahead of
//! execution, decodes each page (signatures included) so that work overlaps
//! execution, and moves between URLs on failure.
//!
//! It never executes or stores anything; the syncer owns the cursor's
//! resets (a generation counter discards pages fetched before a reset).

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::verify::{decode_page, verification_keys};
use crate::backoff::Backoff;
use crate::block::BlockRecord;
use crate::config::{MemberConfig, SyncKeys};
use crate::log;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::status::{Component, NodeStatus};
use crate::store::MAX_BLOCKS_PER_QUERY;

/// Batches fetched ahead of execution.
pub const PIPELINE_DEPTH: usize = 2;
/// After this long on a fallback URL, the first URL is tried again.
pub const PRIMARY_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// A sync API answer larger than this is refused (1000 full blocks fit).
pub const MAX_SYNC_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;
/// Beyond the long-poll wait, how long a fetch may take.
pub const FETCH_TIMEOUT_SLACK: Duration = Duration::from_secs(10);
/// A sync source that does not accept a connection within this is down.
const FETCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One fetched page of the sync API, decoded (and its signatures checked)
/// on the fetch thread so that work overlaps execution.
pub struct Batch {
    pub generation: u64,
    pub url: String,
    /// The source's committed head when it answered.
    pub source_head: u64,
    /// Every record of the page, or why one of them was refused.
    pub records: Result<Vec<BlockRecord>, String>,
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

/// One page from the first sync URL that answers (no long poll).
pub fn fetch_from_any(
    urls: &[String],
    token: Option<&Secret>,
    after: u64,
    limit: u32,
) -> Result<(u64, Vec<Value>), String> {
    let mut reasons = Vec::new();
    for url in urls {
        match fetch_page(url, token, after, limit, Duration::ZERO) {
            Ok(page) => return Ok(page),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(reasons.join("; "))
}

/// GET one page; returns (source head, records).
fn fetch_page(
    url: &str,
    token: Option<&Secret>,
    after: u64,
    limit: u32,
    wait: Duration,
) -> Result<(u64, Vec<Value>), String> {
    // One agent for the process, but a fresh connection per page (no idle
    // connections kept): whatever sits between member and source (a proxy,
    // a load balancer moving to another node) is asked anew for each page,
    // for about 0.1 ms of connect on loopback.
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    let agent = AGENT.get_or_init(|| crate::http::client::agent(FETCH_CONNECT_TIMEOUT, 0));
    let target = format!("{url}/blocks?after={after}&limit={limit}&wait_ms={}", wait.as_millis());
    let mut request = agent.get(&target).config().timeout_global(Some(wait + FETCH_TIMEOUT_SLACK)).build();
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {}", String::from_utf8_lossy(token.expose())));
    }
    let mut response = request.call().map_err(|e| format!("GET {target}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_SYNC_RESPONSE_BYTES)
        .read_to_string()
        .map_err(|e| format!("GET {target}: {e}"))?;
    if status != 200 {
        let excerpt: String = body.chars().take(200).collect();
        return Err(format!("GET {target}: HTTP {status}: {excerpt}"));
    }
    let mut value: Value = serde_json::from_str(&body).map_err(|e| format!("GET {target}: not JSON: {e}"))?;
    let records = match value.get_mut("blocks").map(Value::take) {
        Some(Value::Array(records)) => records,
        _ => return Err(format!("GET {target}: no blocks list")),
    };
    // `head` only tells how far behind the member is (clnode's API always
    // sends it; a source may not): absent, the source is taken to be at the
    // last block it sent. Present, it must be a block number.
    let head = match value.get("head") {
        None | Some(Value::Null) => 0,
        Some(head) => head.as_u64().ok_or_else(|| format!("GET {target}: head {head} is not a block number"))?,
    };
    // Only an estimate of the source's head: a record without a valid
    // number is refused when the page is decoded.
    let last = records.last().and_then(|r| r.get("block_number")).and_then(Value::as_u64).unwrap_or(after);
    Ok((head.max(last), records))
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
            let limit = if self.last_source_head > after + FAR_BEHIND_PAGES * u64::from(self.config.batch_limit) {
                MAX_BLOCKS_PER_QUERY
            } else {
                self.config.batch_limit
            };
            match fetch_page(&url, self.config.sync_token.as_ref(), after, limit, self.config.long_poll_wait) {
                Ok((source_head, records)) => {
                    self.last_source_head = source_head;
                    failures_in_a_row = 0;
                    self.status.clear_problem(Component::SyncSource);
                    let last = records.last().and_then(|r| r.get("block_number")).and_then(Value::as_u64);
                    if let Some(last) = last {
                        self.cursor.advance(generation, last);
                    }
                    let keys = verification_keys(&self.sync_keys);
                    let records = decode_page(&records, self.config.wire, &self.config.record_trust, &keys);
                    let batch = Batch { generation, url, source_head, records };
                    if !self.send(sender, batch) {
                        return;
                    }
                }
                Err(reason) => {
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
                        self.shutdown.sleep(self.backoff.delay(rounds));
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
