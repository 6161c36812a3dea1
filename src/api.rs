//! The block sync API: read-only views of the committed chain, served from
//! PostgreSQL by every leader-mode node (and by members with --api-addr).
//!
//! Routes (GET): `/blocks/latest`, `/blocks/{number}`, `/blocks/{hash}`,
//! `/blocks?after=N&limit=M&wait_ms=W`. Errors are `{"error": "..."}` with
//! 400 (bad input), 404 (no such block or route), 405 (method), 503 (the
//! database is unreachable). This module never writes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::block::{sign_wire_record, StoredBlock};
use crate::codec::Hash32;
use crate::http::{
    parse_decimal, parse_query, precheck, serve_with_long_polls, Incoming, LongPolls, Park, PollRoute, Reply,
};
use crate::log;
use crate::metrics::Metrics;
use crate::notify::HeadWatch;
use crate::reconnect::Reconnecting;
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError, MAX_BLOCKS_PER_QUERY};

/// Requests handled at once. Long polls waiting for the head do not hold
/// a worker: the HTTP gate parks them (`http/park.rs`, [`ApiLongPolls`]).
pub const API_WORKERS: usize = 16;
/// The longest `wait_ms` accepted.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Blocks the in-memory run may trail the head by, for parked polls to
/// wait for it (see `ApiLongPolls::head`).
pub const MEMORY_HEAD_SLACK: u64 = 2;
/// The seed's default page size.
pub const DEFAULT_LIMIT: u32 = 100;
/// Rendered pages kept; a page is cached only once every block in it is
/// committed, after which it can never change.
pub const MAX_CACHED_PAGES: usize = 32;
/// Bytes of rendered pages kept.
pub const MAX_CACHED_BYTES: usize = 8 * 1024 * 1024;

/// Renderings of committed blocks, which never change: full pages by
/// (after, limit), and the latest block by its number.
#[derive(Default)]
pub struct RenderCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    latest: Option<(u64, Arc<[u8]>)>,
    pages: HashMap<(u64, u32), Arc<[u8]>>,
    order: VecDeque<(u64, u32)>,
    bytes: usize,
}

impl RenderCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn latest(&self, head: u64) -> Option<Arc<[u8]>> {
        self.lock().latest.as_ref().filter(|(number, _)| *number == head).map(|(_, body)| Arc::clone(body))
    }

    fn store_latest(&self, number: u64, body: Arc<[u8]>) {
        let mut inner = self.lock();
        if inner.latest.as_ref().is_none_or(|(cached, _)| number >= *cached) {
            inner.latest = Some((number, body));
        }
    }

    /// The full page after `after`, if cached and every block in it is at
    /// or below `checked_head`: the head the watch has checked against the
    /// database (leader mode: against the highest block seen, so that any
    /// change at or below it stops the API within one head read). A page
    /// rendered from a read that ran ahead of the watch waits until the
    /// watch catches up; until then the handler reads the database.
    fn page(&self, after: u64, limit: u32, checked_head: u64) -> Option<Arc<[u8]>> {
        if after.saturating_add(u64::from(limit)) > checked_head {
            return None;
        }
        self.lock().pages.get(&(after, limit)).cloned()
    }

    fn store_page(&self, after: u64, limit: u32, blocks_json: Arc<[u8]>) {
        let mut inner = self.lock();
        if blocks_json.len() > MAX_CACHED_BYTES / 4 || inner.pages.contains_key(&(after, limit)) {
            return;
        }
        inner.bytes += blocks_json.len();
        inner.pages.insert((after, limit), blocks_json);
        inner.order.push_back((after, limit));
        while inner.pages.len() > MAX_CACHED_PAGES || inner.bytes > MAX_CACHED_BYTES {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(evicted) = inner.pages.remove(&oldest) {
                inner.bytes -= evicted.len();
            }
        }
    }
}

/// `{"blocks":<rendered list>,"head":N}` from a rendered list.
fn page_body(blocks_json: &[u8], head: u64) -> Arc<[u8]> {
    let head = head.to_string();
    let mut body = Vec::with_capacity(blocks_json.len() + head.len() + 20);
    body.extend_from_slice(b"{\"blocks\":");
    body.extend_from_slice(blocks_json);
    body.extend_from_slice(b",\"head\":");
    body.extend_from_slice(head.as_bytes());
    body.push(b'}');
    Arc::from(body)
}

pub struct ApiContext {
    pub postgres_url: String,
    pub watch: Arc<HeadWatch>,
    pub metrics: Arc<Metrics>,
    pub instance_id: String,
    /// Required bearer token, if any.
    pub token: Option<Secret>,
    /// Key that signs every served record, if any.
    pub signing_key: Option<Secret>,
    /// Long polls end early when the node stops.
    pub shutdown: Shutdown,
    /// clnode's records, or the seed's (`--sync-wire seed`, for seed members).
    pub wire: crate::config::SyncWire,
}

pub fn start(addr: SocketAddr, ctx: ApiContext, shutdown: &Shutdown) -> Result<Vec<JoinHandle<()>>, String> {
    let ctx = Arc::new(ctx);
    let cache = Arc::new(RenderCache::default());
    let long_polls: Arc<dyn LongPolls> = Arc::new(ApiLongPolls { ctx: Arc::clone(&ctx), cache: Arc::clone(&cache) });
    let serving = serve_with_long_polls("api", addr, API_WORKERS, Some(long_polls), shutdown, || {
        let mut handler = ApiHandler { ctx: Arc::clone(&ctx), store: connection_for(&ctx), cache: Arc::clone(&cache) };
        move |request: &Incoming<'_>| handler.handle(request)
    })?;
    Ok(serving.threads)
}

/// A worker's database connection, made when its first request needs it.
fn connection_for(ctx: &ApiContext) -> Reconnecting<Store, StoreError> {
    let (url, application) = (ctx.postgres_url.clone(), format!("clnode-api-{}", ctx.instance_id));
    Reconnecting::new(move || Store::connect(&url, &application))
}

/// The API's long polls, parked in the HTTP gate: a poll at the head waits
/// there (a connection, no thread) and is answered from the blocks this
/// process just committed or stored ([`HeadWatch::recent_range`]), one
/// rendering per page for every waiter. Runs on the gate's thread: never
/// blocks and never touches the database (a page not in memory goes to a
/// handler).
pub struct ApiLongPolls {
    pub ctx: Arc<ApiContext>,
    pub cache: Arc<RenderCache>,
}

impl LongPolls for ApiLongPolls {
    fn route(&self, request: &Incoming<'_>) -> PollRoute {
        if precheck(request, self.ctx.token.as_ref()).is_some()
            || self.ctx.watch.regression().is_some()
            || self.ctx.shutdown.is_requested()
            || !(request.path == "/blocks" || request.path == "/blocks/")
        {
            return PollRoute::Handler;
        }
        let Ok(ListQuery { after, limit, wait_ms }) = parse_list_query(request.query) else {
            return PollRoute::Handler;
        };
        if LongPolls::head(self) > after {
            // Blocks already there (a subscriber behind, or catching up):
            // from memory if they are there, else a handler reads them.
            return PollRoute::Now { after, limit };
        }
        if wait_ms == 0 {
            return PollRoute::Handler;
        }
        PollRoute::Park(Park { after, limit, deadline: std::time::Instant::now() + Duration::from_millis(wait_ms) })
    }

    /// The head parked polls are answered at: the last block in memory
    /// when it is at most [`MEMORY_HEAD_SLACK`] behind the watch's head.
    /// The notifier may raise the head (from the database the commit just
    /// wrote) before the producer hands the block to the watch; answering
    /// then would send every waiter to a handler at once (P9: the handler
    /// queue overflowed at 5,000 subscribers). The watch wakes the gate
    /// again when the block arrives; a poll still waiting at its deadline
    /// is answered then, by a handler if need be.
    fn head(&self) -> u64 {
        let head = self.ctx.watch.get();
        match self.ctx.watch.recent_head() {
            Some(in_memory) if in_memory < head && head - in_memory <= MEMORY_HEAD_SLACK => in_memory,
            _ => head,
        }
    }

    fn answer(&self, after: u64, limit: u32) -> Option<Reply> {
        if self.ctx.watch.regression().is_some() {
            return None; // the handler refuses it
        }
        self.ctx.metrics.api_requests.inc();
        let head = LongPolls::head(self);
        if head <= after {
            // The wait ended with nothing new: the page a handler would give.
            return Some(Reply::json_bytes(200, page_body(b"[]", head)));
        }
        if let Some(blocks_json) = self.cache.page(after, limit, head) {
            return Some(Reply::json_bytes(200, page_body(&blocks_json, head)));
        }
        let last = head.min(after.saturating_add(u64::from(limit)));
        let blocks = self.ctx.watch.recent_range(after.saturating_add(1), last)?;
        let blocks_json = render_page(&self.ctx, &self.cache, after, limit, blocks.iter().map(|block| &**block));
        Some(Reply::json_bytes(200, page_body(&blocks_json, head)))
    }

    fn on_head_moved(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.ctx.watch.on_advance(wake);
    }
}

struct ApiHandler {
    ctx: Arc<ApiContext>,
    /// This worker's own connection.
    store: Reconnecting<Store, StoreError>,
    cache: Arc<RenderCache>,
}

/// What `/blocks/{key}` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Latest,
    Number(u64),
    /// Lowercase `0x` hex.
    Hash(String),
}

/// The parameters of `/blocks?after=N&limit=M&wait_ms=W`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub after: u64,
    /// 1..=1000 (larger requests are capped, as the seed does).
    pub limit: u32,
    pub wait_ms: u64,
}

/// Parses the list query strictly; the error is the 400 message.
pub fn parse_list_query(query: &str) -> Result<ListQuery, String> {
    let pairs = parse_query(query, &["after", "limit", "wait_ms"])?;
    let mut parsed = ListQuery { after: 0, limit: DEFAULT_LIMIT, wait_ms: 0 };
    for (name, value) in pairs {
        match name {
            "after" => parsed.after = parse_decimal("after", value, i64::MAX as u64)?,
            "limit" => {
                let limit = parse_decimal("limit", value, u64::MAX)?;
                if limit == 0 {
                    return Err("limit must be at least 1".to_owned());
                }
                parsed.limit =
                    u32::try_from(limit.min(u64::from(MAX_BLOCKS_PER_QUERY))).unwrap_or(MAX_BLOCKS_PER_QUERY);
            }
            _ => parsed.wait_ms = parse_decimal("wait_ms", value, MAX_WAIT_MS)?,
        }
    }
    Ok(parsed)
}

impl ApiHandler {
    fn handle(&mut self, request: &Incoming<'_>) -> Reply {
        self.ctx.metrics.api_requests.inc();
        if let Some(refusal) = precheck(request, self.ctx.token.as_ref()) {
            return refusal;
        }
        // The database went back below a block this node saw committed:
        // serve nothing it holds now (regression.rs).
        if let Some(reason) = self.ctx.watch.regression() {
            return Reply::error(503, format!("database regressed: {reason}"));
        }
        let path = request.path;
        if path == "/blocks" || path == "/blocks/" {
            return self.list(request.query);
        }
        let Some(key) = path.strip_prefix("/blocks/") else {
            return Reply::error(404, format!("no route {path}; see /blocks/latest, /blocks/{{number}}, /blocks/{{hash}}, /blocks?after=N&limit=M"));
        };
        if !request.query.is_empty() {
            return Reply::error(400, "this endpoint takes no query parameters");
        }
        let lookup = match parse_block_key(key) {
            Ok(lookup) => lookup,
            Err(message) => return Reply::error(400, message),
        };
        let known_head = self.ctx.watch.get();
        if lookup == Lookup::Latest {
            if let Some(body) = self.cache.latest(known_head) {
                return Reply::json_bytes(200, body);
            }
        }
        let result = self.with_store(|store| match &lookup {
            Lookup::Latest => store.latest_block(),
            Lookup::Number(n) => store.block_by_number(*n),
            Lookup::Hash(h) => store.block_by_hash(h),
        });
        match result {
            Ok(Some(block)) => {
                let body: Arc<[u8]> = Arc::from(wire(&self.ctx, &block).to_string().into_bytes());
                if lookup == Lookup::Latest {
                    self.cache.store_latest(block.number, Arc::clone(&body));
                }
                Reply::json_bytes(200, body)
            }
            Ok(None) => Reply::error(
                404,
                match lookup {
                    Lookup::Latest => "no block committed yet".to_owned(),
                    Lookup::Number(n) => format!("block {n} not found"),
                    Lookup::Hash(h) => format!("block {h} not found"),
                },
            ),
            Err(reply) => reply,
        }
    }

    fn list(&mut self, query: &str) -> Reply {
        // A long poll that must wait was parked by the gate (ApiLongPolls);
        // one here has its answer now.
        let ListQuery { after, limit, wait_ms: _ } = match parse_list_query(query) {
            Ok(parsed) => parsed,
            Err(message) => return Reply::error(400, message),
        };
        let checked_head = self.ctx.watch.get();
        if let Some(blocks_json) = self.cache.page(after, limit, checked_head) {
            return Reply::json_bytes(200, page_body(&blocks_json, checked_head));
        }
        // At the head (where long polls wake), the blocks just committed by
        // this process are in memory; see `HeadWatch`.
        let head = self.ctx.watch.get();
        let last = head.min(after.saturating_add(u64::from(limit)));
        if let Some(blocks) = self.ctx.watch.recent_range(after.saturating_add(1), last) {
            let blocks_json = render_page(&self.ctx, &self.cache, after, limit, blocks.iter().map(|block| &**block));
            return Reply::json_bytes(200, page_body(&blocks_json, head));
        }
        match self.with_store(|store| store.blocks_after(after, limit)) {
            Ok(blocks) => {
                let head = blocks.last().map(|b| b.number).unwrap_or(0).max(self.ctx.watch.get());
                let blocks_json = render_page(&self.ctx, &self.cache, after, limit, blocks.iter());
                if blocks.len() >= crate::alloc::LARGE_PAGE_BLOCKS {
                    // A catch-up page's rows and JSON tree are several times
                    // its rendering; give that back once it is freed.
                    drop(blocks);
                    crate::alloc::release_free_memory();
                }
                Reply::json_bytes(200, page_body(&blocks_json, head))
            }
            Err(reply) => reply,
        }
    }

    /// Runs `query` on this worker's connection, connecting if needed.
    /// Any failure becomes a 503, and the next request starts on a fresh
    /// connection; a lost connection is retried once at once (it is most
    /// often an idle one the server or a proxy dropped).
    fn with_store<T>(&mut self, query: impl Fn(&mut Store) -> Result<T, StoreError>) -> Result<T, Reply> {
        let mut retried = false;
        loop {
            let result = self.store.get().and_then(&query);
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            self.ctx.metrics.count_error("database");
            let connected = self.store.is_connected();
            self.store.invalidate();
            // A connect that failed is not retried: the database is down.
            if !connected || !error.is_connection_lost() || retried {
                log::warn(&format!("api: {error}"));
                return Err(Reply::error(503, "database unavailable"));
            }
            retried = true;
        }
    }
}

/// The JSON list of `blocks`, the page after `after`; kept in the render
/// cache when the page is full (a full page of committed blocks never
/// changes).
fn render_page<'a>(
    ctx: &ApiContext,
    cache: &RenderCache,
    after: u64,
    limit: u32,
    blocks: impl Iterator<Item = &'a StoredBlock>,
) -> Arc<[u8]> {
    let items: Vec<Value> = blocks.map(|block| wire(ctx, block)).collect();
    let full = items.len() == limit as usize;
    let blocks_json: Arc<[u8]> = Arc::from(Value::Array(items).to_string().into_bytes());
    if full {
        cache.store_page(after, limit, Arc::clone(&blocks_json));
    }
    blocks_json
}

fn wire(ctx: &ApiContext, block: &StoredBlock) -> Value {
    if ctx.wire == crate::config::SyncWire::Seed {
        // A stored payload the seed's struct cannot hold is served as
        // its number and the reason: the seed member stops there and
        // logs it, rather than executing something else.
        return crate::seed::wire::seed_wire_json(block).unwrap_or_else(|error| {
            crate::log::warn(&format!("api: cannot serve block {} as a seed record: {error}", block.number));
            serde_json::json!({"block_number": block.number, "error": error})
        });
    }
    let mut wire = block.to_wire_json();
    if let Some(key) = &ctx.signing_key {
        sign_wire_record(key, &mut wire);
    }
    wire
}

/// Parses `{key}` of `/blocks/{key}`; the error is the 400 message.
pub fn parse_block_key(key: &str) -> Result<Lookup, String> {
    if key == "latest" {
        return Ok(Lookup::Latest);
    }
    if let Some(digits) = key.strip_prefix("0x").or_else(|| key.strip_prefix("0X")) {
        let normalised = format!("0x{digits}");
        return Hash32::parse(&normalised)
            .map(|hash| Lookup::Hash(hash.to_hex()))
            .map_err(|e| format!("block hash {key:?}: {e}"));
    }
    parse_decimal("block number", key, i64::MAX as u64)
        .map(Lookup::Number)
        .map_err(|_| format!("expected a block number, a 0x block hash or \"latest\", got {key:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_bodies_and_the_cache_bounds() {
        let body = page_body(b"[1,2]", 9);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value, json!({"blocks": [1, 2], "head": 9}));
        let cache = RenderCache::default();
        for after in 0..(MAX_CACHED_PAGES as u64 + 10) {
            cache.store_page(after, 1, Arc::from(b"[]".to_vec()));
        }
        assert!(cache.page(0, 1, u64::MAX).is_none(), "the oldest page was evicted");
        assert!(cache.page(MAX_CACHED_PAGES as u64 + 9, 1, u64::MAX).is_some());
        assert_eq!(cache.lock().pages.len(), MAX_CACHED_PAGES);
        cache.store_latest(5, Arc::from(b"5".to_vec()));
        cache.store_latest(4, Arc::from(b"4".to_vec()));
        assert_eq!(cache.latest(5).as_deref(), Some(&b"5"[..]), "latest never goes back");
        assert!(cache.latest(6).is_none(), "a newer head misses the cache");
    }

    fn test_context(token: Option<Secret>) -> Arc<ApiContext> {
        Arc::new(ApiContext {
            postgres_url: "postgres://unreachable.invalid/none".to_owned(),
            watch: Arc::new(HeadWatch::default()),
            metrics: Arc::new(Metrics::default()),
            instance_id: "test".to_owned(),
            token,
            signing_key: None,
            shutdown: Shutdown::new(),
            wire: crate::config::SyncWire::Json,
        })
    }

    fn stored(number: u64) -> Arc<StoredBlock> {
        Arc::new(StoredBlock {
            number,
            hash: format!("0x{number:064x}"),
            parent_hash: format!("0x{:064x}", number.saturating_sub(1)),
            payload_json: "{}".into(),
            requests_json: "[]".into(),
            timestamp: number,
            parent_beacon_block_root: format!("0x{:064x}", 0),
            blob_versioned_hashes_json: "[]".into(),
            payload_version: 5,
            term: 1,
            leader_signature: None,
        })
    }

    /// Issue 16: a long poll is parked by the gate only after the same
    /// precheck the handler makes (method, body, token), and its answer is
    /// the handler's answer to the same request, byte for byte.
    #[test]
    fn parked_polls_pass_the_precheck_and_get_the_handlers_answer() {
        let ctx = test_context(Some(Secret::from_bytes(b"api-token-0123456789abcdef")));
        let cache = Arc::new(RenderCache::default());
        let polls = ApiLongPolls { ctx: Arc::clone(&ctx), cache: Arc::clone(&cache) };
        let mut handler = ApiHandler { ctx: Arc::clone(&ctx), store: connection_for(&ctx), cache: Arc::clone(&cache) };
        let request = |method: &str, target: &str, auth: &str| {
            crate::http::rewrite_head(format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes())
                .unwrap()
        };
        let good = "Authorization: Bearer api-token-0123456789abcdef\r\n";
        let wrong = "Authorization: Bearer api-token-0123456789abcdeX\r\n";
        for block in 1..=3 {
            ctx.watch.committed(stored(block));
        }
        let waiting = request("GET", "/blocks?after=3&limit=2&wait_ms=1000", good);
        let PollRoute::Park(park) = polls.route(&waiting.incoming().unwrap()) else { panic!("not parked") };
        assert_eq!((park.after, park.limit), (3, 2));
        let behind = request("GET", "/blocks?after=2&limit=5&wait_ms=1000", good);
        assert_eq!(polls.route(&behind.incoming().unwrap()), PollRoute::Now { after: 2, limit: 5 });
        for refused in [
            request("GET", "/blocks?after=3&wait_ms=1000", ""),
            request("GET", "/blocks?after=3&wait_ms=1000", wrong),
            request("POST", "/blocks?after=3&wait_ms=1000", good),
            request("GET", "/blocks?after=3&wait_ms=1000", &format!("{good}Content-Length: 3\r\n")),
            request("GET", "/blocks?after=3&wait_ms=1000&bogus=1", good),
            request("GET", "/blocks?after=3", good),
            request("GET", "/blocks/latest", good),
        ] {
            let incoming = refused.incoming().unwrap();
            assert_eq!(polls.route(&incoming), PollRoute::Handler, "{:?}", String::from_utf8_lossy(&refused.bytes));
        }
        let refusal = handler.handle(&request("GET", "/blocks?after=3&wait_ms=1000", wrong).incoming().unwrap());
        assert_eq!(refusal.status, 401);
        // The wait ends with nothing new: the empty page the handler gives.
        assert_eq!(&polls.answer(3, 2).unwrap().body[..], b"{\"blocks\":[],\"head\":3}");
        // The head moves: the page from memory, as the handler renders it.
        ctx.watch.committed(stored(4));
        ctx.watch.committed(stored(5));
        let parked = polls.answer(3, 2).expect("from the blocks in memory");
        let handled = handler.handle(&waiting.incoming().unwrap());
        assert_eq!(
            (parked.status, parked.content_type, &parked.body),
            (handled.status, handled.content_type, &handled.body)
        );
        let page: Value = serde_json::from_slice(&parked.body).unwrap();
        assert_eq!(page["head"], 5);
        assert_eq!(page["blocks"].as_array().map(Vec::len), Some(2));
        // Blocks no longer in memory (a new run after a gap): the handler answers.
        ctx.watch.committed(stored(7));
        assert!(polls.answer(4, 10).is_none());
    }

    /// Issue 14.2: a page rendered from a database read that ran ahead of
    /// the head watch holds blocks the watch never checked; if the database
    /// then went back, the old cache kept serving them (keyed by after and
    /// limit alone) with no regression ever detected for blocks the watch
    /// never saw. Cached pages are served only at or below the checked head.
    #[test]
    fn cached_pages_hold_only_blocks_at_or_below_the_checked_head() {
        let ctx = test_context(None);
        let cache = Arc::new(RenderCache::default());
        let polls = ApiLongPolls { ctx: Arc::clone(&ctx), cache: Arc::clone(&cache) };
        ctx.watch.advance_to(9);
        cache.store_page(8, 2, Arc::from(b"[9,10]".to_vec()));
        assert!(polls.answer(8, 2).is_none(), "block 10 is above the checked head 9: the handler reads it");
        ctx.watch.advance_to(10);
        let body = polls.answer(8, 2).expect("served once the head is checked").body;
        assert_eq!(&body[..], b"{\"blocks\":[9,10],\"head\":10}");
    }

    #[test]
    fn list_queries_parse_strictly_and_cap_the_limit() {
        assert_eq!(parse_list_query("").unwrap(), ListQuery { after: 0, limit: 100, wait_ms: 0 });
        assert_eq!(
            parse_list_query("after=7&limit=5000&wait_ms=30000").unwrap(),
            ListQuery { after: 7, limit: 1000, wait_ms: 30000 }
        );
        for bad in ["limit=0", "wait_ms=30001", "after=x", "after=1&after=2", "bogus=1", "after=9223372036854775808"] {
            assert!(parse_list_query(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn block_keys_parse_strictly() {
        assert!(matches!(parse_block_key("latest"), Ok(Lookup::Latest)));
        assert!(matches!(parse_block_key("42"), Ok(Lookup::Number(42))));
        let upper = format!("0X{}", "AB".repeat(32));
        match parse_block_key(&upper) {
            Ok(Lookup::Hash(h)) => assert_eq!(h, format!("0x{}", "ab".repeat(32))),
            _ => panic!("hash lookup is case-insensitive"),
        }
        for bad in ["-1", "0x12", "abc", "", "1.5", "99999999999999999999"] {
            assert!(parse_block_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
