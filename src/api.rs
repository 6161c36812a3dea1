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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

mod page;

pub use page::PageFormat;
use page::{page_body, render_page, RenderedPage};

use crate::block::{sign_wire_record, StoredBlock, SIGNATURE_FIELD};
use crate::codec::Hash32;
use crate::http::{parse_decimal, parse_query, serve_with_cached_answers, CachedAnswers, Incoming, Reply};
use crate::log;
use crate::metrics::Metrics;
use crate::notify::HeadWatch;
use crate::page_budget::MAX_PAGE_BYTES;
use crate::reconnect::Reconnecting;
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError, MAX_BLOCKS_PER_QUERY};

/// Requests served at once; long polls hold a worker while they wait.
pub const API_WORKERS: usize = 16;
/// At most this many workers may sit in a long poll; the rest answer at once.
pub const MAX_CONCURRENT_LONG_POLLS: usize = API_WORKERS - 4;
/// The longest `wait_ms` accepted.
pub const MAX_WAIT_MS: u64 = 30_000;
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

/// What identifies a page's rendering: the query without its wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub after: u64,
    pub limit: u32,
    pub max_bytes: u64,
    pub format: PageFormat,
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
    let long_polls = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(RenderCache::default());
    let cached: CachedAnswers = {
        let (ctx, cache) = (Arc::clone(&ctx), Arc::clone(&cache));
        Arc::new(move |request: &Incoming<'_>| cached_answer(&ctx, &cache, request))
    };
    serve_with_cached_answers("api", addr, API_WORKERS, Some(cached), shutdown, || {
        let mut handler = ApiHandler {
            ctx: Arc::clone(&ctx),
            store: connection_for(&ctx),
            long_polls: Arc::clone(&long_polls),
            cache: Arc::clone(&cache),
            scratch: Vec::new(),
        };
        move |request: &Incoming<'_>| handler.handle(request)
    })
}

/// A worker's database connection, made when its first request needs it.
fn connection_for(ctx: &ApiContext) -> Reconnecting<Store, StoreError> {
    let (url, application) = (ctx.postgres_url.clone(), format!("clnode-api-{}", ctx.instance_id));
    Reconnecting::new(move || Store::connect(&url, &application))
}

/// The answer to `request` if it is already rendered and valid for the
/// present head: `/blocks/latest`, and full pages without a long poll to
/// wait for. Runs on the HTTP guard's threads, ahead of any handler, so it
/// makes the handler's checks first (method, body, bearer token, in constant
/// time) and answers `None` to anything else, a refusal included: the
/// handler then answers it. It never blocks and never touches the database.
pub fn cached_answer(ctx: &ApiContext, cache: &RenderCache, request: &Incoming<'_>) -> Option<Reply> {
    if !request.is_read() || request.body_refused || request.check_bearer(ctx.token.as_ref()).is_some() {
        return None;
    }
    // Cached renderings are of blocks seen committed; after a regression the
    // handler refuses everything instead.
    if ctx.watch.regression().is_some() {
        return None;
    }
    let reply = if request.path == "/blocks/latest" && request.query.is_empty() {
        Reply::json_bytes(200, cache.latest(ctx.watch.get())?)
    } else if request.path == "/blocks" || request.path == "/blocks/" {
        let query = parse_list_query(request.query).ok()?;
        let head = ctx.watch.get();
        if query.wait_ms > 0 && head <= query.after {
            return None; // a long poll: the handler waits
        }
        page_reply(query.format, cache.page(&query.key(), head)?)
    } else {
        return None;
    };
    ctx.metrics.api_requests.inc();
    Some(reply)
}

struct ApiHandler {
    ctx: Arc<ApiContext>,
    /// This worker's own connection.
    store: Reconnecting<Store, StoreError>,
    long_polls: Arc<AtomicUsize>,
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
        if !request.is_read() {
            return Reply::method_not_allowed("GET, HEAD");
        }
        if let Some(refusal) = request.refuse_body() {
            return refusal;
        }
        if let Some(refusal) = request.check_bearer(self.ctx.token.as_ref()) {
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
                self.push_json_record(&block, &mut scratch);
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
        let query = match parse_list_query(query) {
            Ok(parsed) => parsed,
            Err(message) => return Reply::error(400, message),
        };
        if query.format == PageFormat::Binary && self.ctx.wire == crate::config::SyncWire::Seed {
            return Reply::error(
                400,
                "format=binary carries clnode records; this node serves the seed's (--sync-wire seed)",
            );
        }
        let ListQuery { after, limit, wait_ms, max_bytes, format } = query;
        if wait_ms > 0 && self.ctx.watch.get() <= after {
            self.long_poll(after, Duration::from_millis(wait_ms));
        }
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

    /// The records of `blocks`, the page for `key`, within its byte budget;
    /// kept in the render cache when the page is full or cut by its budget
    /// (such a page of committed blocks never changes).
    fn render_page<'a>(
        &mut self,
        key: PageKey,
        head: u64,
        blocks: impl Iterator<Item = &'a StoredBlock>,
    ) -> RenderedPage {
        let mut last = key.after;
        let blocks = blocks.inspect(|block| last = block.number);
        let mut scratch = std::mem::take(&mut self.scratch);
        let rendered = render_page(
            key.format,
            key.max_bytes,
            head,
            blocks,
            &mut scratch,
            |block, out| self.push_json_record(block, out),
            |block, out| {
                let signature = self.hmac_signature(block);
                crate::binary_page::push_record(out, block, signature.as_deref());
            },
        );
        self.scratch = scratch;
        if rendered.count == key.limit as usize || rendered.cut_by_budget {
            // `last` ran one block past a page cut by its budget: the cut
            // page is valid once that block is committed and checked too.
            self.cache.store_page(key, last, head, &rendered);
        }
        rendered
    }

    /// The serving node's HMAC over `block`'s JSON record, if it signs.
    fn hmac_signature(&self, block: &StoredBlock) -> Option<String> {
        let key = self.ctx.signing_key.as_ref()?;
        let mut wire = block.to_wire_json();
        sign_wire_record(key, &mut wire);
        wire.get(SIGNATURE_FIELD).and_then(Value::as_str).map(str::to_owned)
    }

    /// Appends `block`'s JSON record (signed when this node signs), or the
    /// seed's record with `--sync-wire seed`.
    fn push_json_record(&self, block: &StoredBlock, out: &mut Vec<u8>) {
        if self.ctx.wire == crate::config::SyncWire::Seed {
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
        let signature = self.hmac_signature(block);
        page::push_json_record(out, block, signature.as_deref());
    }

    fn long_poll(&self, after: u64, wait: Duration) {
        /// How often a waiting long poll looks at the shutdown flag.
        const SHUTDOWN_CHECK: Duration = Duration::from_millis(50);
        let in_flight = self.long_polls.fetch_add(1, Ordering::SeqCst);
        if in_flight < MAX_CONCURRENT_LONG_POLLS {
            let deadline = std::time::Instant::now() + wait;
            loop {
                let remaining = deadline.saturating_duration_since(std::time::Instant::now());
                if remaining.is_zero() || self.ctx.shutdown.is_requested() {
                    break;
                }
                if self.ctx.watch.wait_beyond(after, remaining.min(SHUTDOWN_CHECK)) > after {
                    break;
                }
            }
        }
        self.long_polls.fetch_sub(1, Ordering::SeqCst);
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

    #[test]
    fn cached_answers_check_the_token_and_match_the_handler() {
        use crate::http::ForwardedHead;
        let ctx = Arc::new(ApiContext {
            postgres_url: "postgres://unreachable.invalid/none".to_owned(),
            watch: Arc::new(HeadWatch::default()),
            metrics: Arc::new(Metrics::default()),
            instance_id: "test".to_owned(),
            token: Some(Secret::from_bytes(b"api-token-0123456789abcdef")),
            signing_key: None,
            shutdown: Shutdown::new(),
            wire: crate::config::SyncWire::Json,
        });
        let cache = Arc::new(RenderCache::default());
        let mut handler = ApiHandler {
            ctx: Arc::clone(&ctx),
            store: connection_for(&ctx),
            long_polls: Arc::new(AtomicUsize::new(0)),
            cache: Arc::clone(&cache),
            scratch: Vec::new(),
        };
        let head = |text: String| -> ForwardedHead { crate::http::rewrite_head(text.as_bytes()).unwrap() };
        let request = |method: &str, target: &str, auth: &str| {
            head(format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"))
        };
        let good = "Authorization: Bearer api-token-0123456789abcdef\r\n";
        let latest = request("GET", "/blocks/latest", good);
        assert!(cached_answer(&ctx, &cache, &latest.incoming().unwrap()).is_none(), "nothing cached yet");

        ctx.watch.advance_to(7);
        cache.store_latest(7, Arc::from(b"{\"block_number\":7}".to_vec()));
        store_records(&cache, key(3, 2), 5, b"[4,5]");
        for (target, method) in
            [("/blocks/latest", "GET"), ("/blocks/latest", "HEAD"), ("/blocks?after=3&limit=2", "GET")]
        {
            let forwarded = request(method, target, good);
            let incoming = forwarded.incoming().unwrap();
            let fast = cached_answer(&ctx, &cache, &incoming).expect("a cached answer");
            // The handler gives the same answer (from the cache: no database here).
            let slow = handler.handle(&incoming);
            assert_eq!((fast.status, fast.content_type, &fast.body), (slow.status, slow.content_type, &slow.body));
            assert_eq!(fast.status, 200);
        }
        let page = request("GET", "/blocks?after=3&limit=2", good);
        let body = cached_answer(&ctx, &cache, &page.incoming().unwrap()).unwrap().body;
        assert_eq!(&body[..], b"{\"blocks\":[4,5],\"head\":7}");

        // Refusals, misses and long polls are left to the handler.
        let wrong = "Authorization: Bearer api-token-0123456789abcdeX\r\n";
        for forwarded in [
            request("GET", "/blocks/latest", ""),
            request("GET", "/blocks/latest", wrong),
            request("GET", "/blocks/latest", "Authorization: Basic xyz\r\n"),
            request("POST", "/blocks/latest", good),
            request("GET", "/blocks/latest", &format!("{good}Content-Length: 3\r\n")),
            request("GET", "/blocks/latest?x=1", good),
            request("GET", "/blocks/7", good),
            request("GET", "/blocks?after=4&limit=2", good),
            request("GET", "/blocks?after=3&limit=2&wait_ms=100&bogus=1", good),
            request("GET", "/blocks?after=9&limit=2&wait_ms=100", good),
        ] {
            let incoming = forwarded.incoming().unwrap();
            assert!(
                cached_answer(&ctx, &cache, &incoming).is_none(),
                "{:?}",
                String::from_utf8_lossy(&forwarded.bytes)
            );
        }
        assert_eq!(handler.handle(&request("GET", "/blocks/latest", wrong).incoming().unwrap()).status, 401);
    }

    /// Issue 14.2: a page rendered from a database read that ran ahead of
    /// the head watch holds blocks the watch never checked; if the database
    /// then went back, the old cache kept serving them (keyed by after and
    /// limit alone) with no regression ever detected for blocks the watch
    /// never saw. Cached pages are served only at or below the checked head.
    #[test]
    fn cached_pages_hold_only_blocks_at_or_below_the_checked_head() {
        let ctx = ApiContext {
            postgres_url: "postgres://unreachable.invalid/none".to_owned(),
            watch: Arc::new(HeadWatch::default()),
            metrics: Arc::new(Metrics::default()),
            instance_id: "test".to_owned(),
            token: None,
            signing_key: None,
            shutdown: Shutdown::new(),
            wire: crate::config::SyncWire::Json,
        };
        let cache = RenderCache::default();
        let forwarded = crate::http::rewrite_head(b"GET /blocks?after=8&limit=2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let incoming = forwarded.incoming().unwrap();
        ctx.watch.advance_to(9);
        store_records(&cache, key(8, 2), 10, b"[9,10]");
        assert!(cached_answer(&ctx, &cache, &incoming).is_none(), "block 10 is above the checked head 9");
        ctx.watch.advance_to(10);
        let body = cached_answer(&ctx, &cache, &incoming).expect("served once the head is checked").body;
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
