//! The block sync API: read-only views of the committed chain, served from
//! PostgreSQL by every leader-mode node (and by members with --api-addr).
//!
//! Routes (GET): `/blocks/latest`, `/blocks/{number}`, `/blocks/{hash}`,
//! `/blocks?after=N&limit=M&wait_ms=W&max_bytes=B&format=json|binary`
//! (pages: `api/page.rs`, bounded by `page_budget.rs`, binary records:
//! `binary_page.rs`). Errors are `{"error": "..."}` with
//! 400 (bad input), 404 (no such block or route), 405 (method), 503 (the
//! database is unreachable). This module never writes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

mod page;
mod pool;

pub use crate::page_key::{PageFormat, PageKey};
use page::{page_body, render_page, RenderedPage};
use pool::Pool;

use crate::block::{sign_wire_record, StoredBlock, SIGNATURE_FIELD};
use crate::codec::Hash32;
use crate::http::{
    parse_decimal, parse_query, precheck, serve_with_long_polls, Incoming, LongPolls, Park, PollRoute, Reply,
};
use crate::log;
use crate::metrics::Metrics;
use crate::notify::HeadWatch;
use crate::page_budget::MAX_PAGE_BYTES;
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

/// Renderings of committed blocks, which never change: full pages (and
/// pages cut by their byte budget) by their query, and the latest block by
/// its number.
#[derive(Default)]
pub struct RenderCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    latest: Option<(u64, Arc<[u8]>)>,
    pages: HashMap<PageKey, CachedPage>,
    order: VecDeque<PageKey>,
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

    /// The page for `key`, if cached and every block in it is at or below
    /// `checked_head`: the head the watch has checked against the database
    /// (leader mode: against the highest block seen, so that any change at
    /// or below it stops the API within one head read). A page rendered
    /// from a read that ran ahead of the watch waits until the watch catches
    /// up; until then the handler reads the database.
    /// The page's body for `checked_head`: the cached body itself while
    /// the head is the one it was rendered with, else its records with the
    /// new head (built outside the lock).
    fn page(&self, key: &PageKey, checked_head: u64) -> Option<Arc<[u8]>> {
        if key.after >= checked_head {
            return None;
        }
        let (body, records, head) = {
            let inner = self.lock();
            let cached = inner.pages.get(key).filter(|cached| cached.last <= checked_head)?;
            (Arc::clone(&cached.body), cached.records.clone(), cached.head)
        };
        if head == checked_head {
            return Some(body);
        }
        Some(page_body(key.format, &body[records], checked_head))
    }

    /// Keeps `page` (rendered with `head`), whose blocks run to `last`.
    fn store_page(&self, key: PageKey, last: u64, head: u64, page: &RenderedPage) {
        let mut inner = self.lock();
        if page.body.len() > MAX_CACHED_BYTES / 4 || inner.pages.contains_key(&key) {
            return;
        }
        inner.bytes += page.body.len();
        let cached = CachedPage { last, head, body: Arc::clone(&page.body), records: page.records.clone() };
        inner.pages.insert(key, cached);
        inner.order.push_back(key);
        while inner.pages.len() > MAX_CACHED_PAGES || inner.bytes > MAX_CACHED_BYTES {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(evicted) = inner.pages.remove(&oldest) {
                inner.bytes -= evicted.body.len();
            }
        }
    }
}

/// A cached page: its last block, the head it was rendered with, its body
/// and where the records are in it.
struct CachedPage {
    last: u64,
    head: u64,
    body: Arc<[u8]>,
    records: std::ops::Range<usize>,
}

impl ListQuery {
    pub fn key(&self) -> PageKey {
        PageKey { after: self.after, limit: self.limit, max_bytes: self.max_bytes, format: self.format }
    }
}

fn page_reply(format: PageFormat, body: Arc<[u8]>) -> Reply {
    Reply { status: 200, content_type: format.content_type(), body, allow: None }
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
    let long_polls: Arc<dyn LongPolls> = Arc::new(ApiLongPolls::new(Arc::clone(&ctx), Arc::clone(&cache)));
    let stores = Arc::new(Pool::new(API_WORKERS));
    let serving = serve_with_long_polls("api", addr, API_WORKERS, Some(long_polls), shutdown, || {
        let mut handler = ApiHandler {
            ctx: Arc::clone(&ctx),
            stores: Arc::clone(&stores),
            cache: Arc::clone(&cache),
            scratch: Vec::new(),
        };
        move |request: &Incoming<'_>| handler.handle(request)
    })?;
    Ok(serving.threads)
}

/// A new database connection for the workers' pool (made when a request
/// finds none idle).
fn connect(ctx: &ApiContext) -> Result<Store, StoreError> {
    Store::connect(&ctx.postgres_url, &format!("clnode-api-{}", ctx.instance_id))
}

/// The API's long polls, parked in the HTTP gate: a poll at the head waits
/// there (a connection, no thread) and is answered from the blocks this
/// process just committed or stored ([`HeadWatch::recent_range`]), one
/// rendering per page (the whole query: after, limit, byte budget, format)
/// for every waiter. Runs on the gate's thread: never blocks and never
/// touches the database (a page not in memory goes to a handler).
pub struct ApiLongPolls {
    ctx: Arc<ApiContext>,
    cache: Arc<RenderCache>,
    /// The gate thread's render buffer (the only user: never contended).
    scratch: Mutex<Vec<u8>>,
}

impl ApiLongPolls {
    pub fn new(ctx: Arc<ApiContext>, cache: Arc<RenderCache>) -> ApiLongPolls {
        ApiLongPolls { ctx, cache, scratch: Mutex::new(Vec::new()) }
    }
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
        let Ok(query) = parse_list_query(request.query) else {
            return PollRoute::Handler;
        };
        if query_refusal(&self.ctx, &query).is_some() {
            return PollRoute::Handler;
        }
        if LongPolls::head(self) > query.after {
            // Blocks already there (a subscriber behind, or catching up):
            // from memory or the cache if they are there, else a handler
            // reads them.
            return PollRoute::Now(query.key());
        }
        if query.wait_ms == 0 {
            return PollRoute::Handler;
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(query.wait_ms);
        PollRoute::Park(Park { page: query.key(), deadline })
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

    fn answer(&self, page: PageKey) -> Option<Reply> {
        if self.ctx.watch.regression().is_some() {
            return None; // the handler refuses it
        }
        self.ctx.metrics.api_requests.inc();
        let head = LongPolls::head(self);
        if head <= page.after {
            // The wait ended with nothing new: the page a handler would give.
            return Some(page_reply(page.format, page_body(page.format, empty_records(page.format), head)));
        }
        if let Some(body) = self.cache.page(&page, head) {
            return Some(page_reply(page.format, body));
        }
        let last = head.min(page.after.saturating_add(u64::from(page.limit)));
        let blocks = self.ctx.watch.recent_range(page.after.saturating_add(1), last)?;
        let mut scratch = self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rendered = render_and_cache(&self.ctx, &self.cache, page, head, blocks.iter().map(|b| &**b), &mut scratch);
        Some(page_reply(page.format, rendered.body))
    }

    fn on_head_moved(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.ctx.watch.on_advance(wake);
    }
}

/// The records of an empty page in `format`.
fn empty_records(format: PageFormat) -> &'static [u8] {
    match format {
        PageFormat::Json => b"[]",
        PageFormat::Binary => b"",
    }
}

/// Why a well-formed list query is refused, if it is (the handler's 400).
fn query_refusal(ctx: &ApiContext, query: &ListQuery) -> Option<&'static str> {
    (query.format == PageFormat::Binary && ctx.wire == crate::config::SyncWire::Seed)
        .then_some("format=binary carries clnode records; this node serves the seed's (--sync-wire seed)")
}

struct ApiHandler {
    ctx: Arc<ApiContext>,
    /// The workers' connections, the warmest first (`api/pool.rs`).
    stores: Arc<Pool<Store>>,
    cache: Arc<RenderCache>,
    /// This worker's render buffer, reused from page to page.
    scratch: Vec<u8>,
}

/// What `/blocks/{key}` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Latest,
    Number(u64),
    /// Lowercase `0x` hex.
    Hash(String),
}

/// The parameters of `/blocks?after=N&limit=M&wait_ms=W&max_bytes=B&format=F`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub after: u64,
    /// 1..=1000 (larger requests are capped, as the seed does).
    pub limit: u32,
    pub wait_ms: u64,
    /// The page's byte budget: at least 1, capped at [`MAX_PAGE_BYTES`]
    /// (its default). A block larger than it is sent alone.
    pub max_bytes: u64,
    pub format: PageFormat,
}

/// Parses the list query strictly; the error is the 400 message.
pub fn parse_list_query(query: &str) -> Result<ListQuery, String> {
    let pairs = parse_query(query, &["after", "limit", "wait_ms", "max_bytes", "format"])?;
    let mut parsed =
        ListQuery { after: 0, limit: DEFAULT_LIMIT, wait_ms: 0, max_bytes: MAX_PAGE_BYTES, format: PageFormat::Json };
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
            "max_bytes" => {
                let max_bytes = parse_decimal("max_bytes", value, u64::MAX)?;
                if max_bytes == 0 {
                    return Err("max_bytes must be at least 1".to_owned());
                }
                parsed.max_bytes = max_bytes.min(MAX_PAGE_BYTES);
            }
            "format" => parsed.format = PageFormat::parse(value)?,
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
                // Rendered into this worker's buffer, then copied once.
                let mut scratch = std::mem::take(&mut self.scratch);
                scratch.clear();
                push_json_record(&self.ctx, &block, &mut scratch);
                let body: Arc<[u8]> = Arc::from(&scratch[..]);
                if scratch.capacity() <= page::SCRATCH_KEEP_BYTES {
                    self.scratch = scratch;
                }
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
        let query = match parse_list_query(query) {
            Ok(parsed) => parsed,
            Err(message) => return Reply::error(400, message),
        };
        if let Some(refusal) = query_refusal(&self.ctx, &query) {
            return Reply::error(400, refusal);
        }
        let ListQuery { after, limit, wait_ms: _, max_bytes, format } = query;
        let checked_head = self.ctx.watch.get();
        if let Some(body) = self.cache.page(&query.key(), checked_head) {
            return page_reply(format, body);
        }
        // At the head (where long polls wake), the blocks just committed by
        // this process are in memory; see `HeadWatch`.
        let head = self.ctx.watch.get();
        let last = head.min(after.saturating_add(u64::from(limit)));
        if let Some(blocks) = self.ctx.watch.recent_range(after.saturating_add(1), last) {
            let page = self.render_page(query.key(), head, blocks.iter().map(|block| &**block));
            return page_reply(format, page.body);
        }
        match self.with_store(|store| store.blocks_after(after, limit, max_bytes)) {
            Ok(blocks) => {
                let head = blocks.last().map(|b| b.number).unwrap_or(0).max(self.ctx.watch.get());
                let page = self.render_page(query.key(), head, blocks.iter());
                if crate::alloc::is_large_page(blocks.len(), page.body.len() as u64) {
                    // The trimmer hands the memory back once large pages stop.
                    crate::alloc::large_page_freed();
                }
                page_reply(format, page.body)
            }
            Err(reply) => reply,
        }
    }

    /// The records of `blocks`, the page for `key`, within its byte budget
    /// (see [`render_and_cache`]), in this worker's buffer.
    fn render_page<'a>(
        &mut self,
        key: PageKey,
        head: u64,
        blocks: impl Iterator<Item = &'a StoredBlock>,
    ) -> RenderedPage {
        render_and_cache(&self.ctx, &self.cache, key, head, blocks, &mut self.scratch)
    }

    /// Runs `query` on the warmest idle connection, connecting if none is
    /// idle. Any failure becomes a 503 and the connection is closed; a lost
    /// connection that was idle is retried once at once (it is most often
    /// one the server or a proxy dropped while idle).
    fn with_store<T>(&mut self, query: impl Fn(&mut Store) -> Result<T, StoreError>) -> Result<T, Reply> {
        let mut retried = false;
        loop {
            let (error, fresh) = match self.stores.take(|| connect(&self.ctx)) {
                Ok((mut store, fresh)) => match query(&mut store) {
                    Ok(value) => {
                        self.stores.give_back(store);
                        return Ok(value);
                    }
                    Err(error) => (error, fresh),
                },
                // A connect that failed is not retried: the database is down.
                Err(error) => (error, true),
            };
            self.ctx.metrics.count_error("database");
            if fresh || !error.is_connection_lost() || retried {
                log::warn(&format!("api: {error}"));
                return Err(Reply::error(503, "database unavailable"));
            }
            retried = true;
        }
    }
}

/// Renders the page for `key` of `blocks` with `head` into `scratch`,
/// within its byte budget; keeps it in the render cache when it is full or
/// cut by its budget (such a page of committed blocks never changes).
/// Shared by the handlers and the gate's parked polls, so both give the
/// same bytes.
fn render_and_cache<'a>(
    ctx: &ApiContext,
    cache: &RenderCache,
    key: PageKey,
    head: u64,
    blocks: impl Iterator<Item = &'a StoredBlock>,
    scratch: &mut Vec<u8>,
) -> RenderedPage {
    let mut last = key.after;
    let blocks = blocks.inspect(|block| last = block.number);
    let rendered = render_page(
        key.format,
        key.max_bytes,
        head,
        blocks,
        scratch,
        |block, out| push_json_record(ctx, block, out),
        |block, out| {
            let signature = hmac_signature(ctx, block);
            crate::binary_page::push_record(out, block, signature.as_deref());
        },
    );
    if rendered.count == key.limit as usize || rendered.cut_by_budget {
        // `last` ran one block past a page cut by its budget: the cut
        // page is valid once that block is committed and checked too.
        cache.store_page(key, last, head, &rendered);
    }
    rendered
}

/// The serving node's HMAC over `block`'s JSON record, if it signs.
fn hmac_signature(ctx: &ApiContext, block: &StoredBlock) -> Option<String> {
    let key = ctx.signing_key.as_ref()?;
    let mut wire = block.to_wire_json();
    sign_wire_record(key, &mut wire);
    wire.get(SIGNATURE_FIELD).and_then(Value::as_str).map(str::to_owned)
}

/// Appends `block`'s JSON record (signed when this node signs), or the
/// seed's record with `--sync-wire seed`.
fn push_json_record(ctx: &ApiContext, block: &StoredBlock, out: &mut Vec<u8>) {
    if ctx.wire == crate::config::SyncWire::Seed {
        // A stored payload the seed's struct cannot hold is served as
        // its number and the reason: the seed member stops there and
        // logs it, rather than executing something else.
        let seed = crate::seed::wire::seed_wire_json(block).unwrap_or_else(|error| {
            crate::log::warn(&format!("api: cannot serve block {} as a seed record: {error}", block.number));
            serde_json::json!({"block_number": block.number, "error": error})
        });
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &seed);
        return;
    }
    let signature = hmac_signature(ctx, block);
    page::push_json_record(out, block, signature.as_deref());
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

    /// Caches JSON `records` as a page rendered with head 0.
    fn store_records(cache: &RenderCache, key: PageKey, last: u64, records: &[u8]) {
        let body = page_body(PageFormat::Json, records, 0);
        let prefix = b"{\"blocks\":".len();
        let page = RenderedPage { body, records: prefix..prefix + records.len(), count: 0, cut_by_budget: false };
        cache.store_page(key, last, 0, &page);
    }

    /// A JSON page's key with the default budget.
    fn key(after: u64, limit: u32) -> PageKey {
        PageKey { after, limit, max_bytes: MAX_PAGE_BYTES, format: PageFormat::Json }
    }

    #[test]
    fn page_bodies_and_the_cache_bounds() {
        let body = page_body(PageFormat::Json, b"[1,2]", 9);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value, json!({"blocks": [1, 2], "head": 9}));
        let cache = RenderCache::default();
        for after in 0..(MAX_CACHED_PAGES as u64 + 10) {
            store_records(&cache, key(after, 1), after + 1, b"[]");
        }
        assert!(cache.page(&key(0, 1), u64::MAX).is_none(), "the oldest page was evicted");
        assert!(cache.page(&key(MAX_CACHED_PAGES as u64 + 9, 1), u64::MAX).is_some());
        let binary = PageKey { format: PageFormat::Binary, ..key(MAX_CACHED_PAGES as u64 + 9, 1) };
        assert!(cache.page(&binary, u64::MAX).is_none(), "each format has its own rendering");
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
        Arc::new(StoredBlock::for_test(number))
    }

    /// Issue 16: a long poll is parked by the gate only after the same
    /// precheck the handler makes (method, body, token), and its answer is
    /// the handler's answer to the same request, byte for byte.
    #[test]
    fn parked_polls_pass_the_precheck_and_get_the_handlers_answer() {
        let ctx = test_context(Some(Secret::from_bytes(b"api-token-0123456789abcdef")));
        let cache = Arc::new(RenderCache::default());
        let polls = ApiLongPolls::new(Arc::clone(&ctx), Arc::clone(&cache));
        let mut handler = ApiHandler {
            ctx: Arc::clone(&ctx),
            stores: Arc::new(Pool::new(1)),
            cache: Arc::clone(&cache),
            scratch: Vec::new(),
        };
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
        assert_eq!(park.page, key(3, 2));
        let behind = request("GET", "/blocks?after=2&limit=5&wait_ms=1000", good);
        assert_eq!(polls.route(&behind.incoming().unwrap()), PollRoute::Now(key(2, 5)));
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
        assert_eq!(&polls.answer(key(3, 2)).unwrap().body[..], b"{\"blocks\":[],\"head\":3}");
        // The head moves: the page from memory, as the handler renders it.
        ctx.watch.committed(stored(4));
        ctx.watch.committed(stored(5));
        let parked = polls.answer(key(3, 2)).expect("from the blocks in memory");
        let handled = handler.handle(&waiting.incoming().unwrap());
        assert_eq!(
            (parked.status, parked.content_type, &parked.body),
            (handled.status, handled.content_type, &handled.body)
        );
        let page: Value = serde_json::from_slice(&parked.body).unwrap();
        assert_eq!(page["head"], 5);
        assert_eq!(page["blocks"].as_array().map(Vec::len), Some(2));
        // What members ask for: binary pages within a byte budget. The gate
        // routes them with the whole query and answers what the handler
        // would, one block at a time when the budget holds one.
        let binary = request("GET", "/blocks?after=3&limit=2&max_bytes=1&format=binary&wait_ms=1000", good);
        let binary_key = PageKey { max_bytes: 1, format: PageFormat::Binary, ..key(3, 2) };
        assert_eq!(polls.route(&binary.incoming().unwrap()), PollRoute::Now(binary_key));
        let parked = polls.answer(binary_key).expect("from the blocks in memory");
        let handled = handler.handle(&binary.incoming().unwrap());
        assert_eq!(
            (parked.status, parked.content_type, &parked.body),
            (handled.status, handled.content_type, &handled.body)
        );
        assert_eq!(parked.content_type, crate::binary_page::CONTENT_TYPE);
        let json_one = polls.answer(PageKey { max_bytes: 1, ..key(3, 2) }).unwrap();
        let one: Value = serde_json::from_slice(&json_one.body).unwrap();
        assert_eq!(one["blocks"].as_array().map(Vec::len), Some(1), "the budget holds one block");
        let empty = polls.answer(PageKey { after: 5, ..binary_key }).unwrap();
        assert_eq!(empty.body, page_body(PageFormat::Binary, b"", 5), "an ended wait: the empty binary page");
        // Blocks no longer in memory (a new run after a gap): the handler answers.
        ctx.watch.committed(stored(7));
        assert!(polls.answer(key(4, 10)).is_none());
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
        let polls = ApiLongPolls::new(Arc::clone(&ctx), Arc::clone(&cache));
        ctx.watch.advance_to(9);
        store_records(&cache, key(8, 2), 10, b"[9,10]");
        assert!(polls.answer(key(8, 2)).is_none(), "block 10 is above the checked head 9: the handler reads it");
        ctx.watch.advance_to(10);
        let body = polls.answer(key(8, 2)).expect("served once the head is checked").body;
        assert_eq!(&body[..], b"{\"blocks\":[9,10],\"head\":10}");
    }

    #[test]
    fn list_queries_parse_strictly_and_cap_the_limit() {
        let defaults =
            ListQuery { after: 0, limit: 100, wait_ms: 0, max_bytes: MAX_PAGE_BYTES, format: PageFormat::Json };
        assert_eq!(parse_list_query("").unwrap(), defaults);
        assert_eq!(
            parse_list_query("after=7&limit=5000&wait_ms=30000").unwrap(),
            ListQuery { after: 7, limit: 1000, wait_ms: 30000, ..defaults }
        );
        assert_eq!(
            parse_list_query("max_bytes=99999999999999&format=binary").unwrap(),
            ListQuery { max_bytes: MAX_PAGE_BYTES, format: PageFormat::Binary, ..defaults },
            "the server caps the budget as it caps the limit"
        );
        assert_eq!(parse_list_query("max_bytes=1&format=json").unwrap(), ListQuery { max_bytes: 1, ..defaults });
        for bad in [
            "limit=0",
            "wait_ms=30001",
            "after=x",
            "after=1&after=2",
            "bogus=1",
            "after=9223372036854775808",
            "max_bytes=0",
            "max_bytes=-1",
            "format=xml",
            "format=",
        ] {
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
