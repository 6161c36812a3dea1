//! Member mode: follow a sync API, verify each block, execute it on the
//! member's own execution client, then store it in the member's own
//! PostgreSQL. The member ends with exactly the leader's chain, block for
//! block, or stops and says why; it never skips a height.
//!
//! Two threads: a fetcher long-polls `GET /blocks?after=N&limit=M&wait_ms=W`
//! one batch ahead (a bounded pipeline of [`PIPELINE_DEPTH`] batches), and
//! the syncer thread verifies, executes and stores. Refusing a batch resets
//! the fetcher to the last stored block (a generation counter discards the
//! batches already in flight).

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fetch::{fetch_from_any, Batch, Cursor, Fetcher, PIPELINE_DEPTH};
use super::verify::{verification_keys, verify_batch, verify_links};
use crate::backoff::Backoff;
use crate::block::BlockRecord;
use crate::config::{MemberConfig, SyncKeys};
use crate::engine::{BlockTag, EngineClient};
use crate::log;
use crate::metrics::Metrics;
use crate::notify::HeadWatch;
use crate::reconnect::Reconnecting;
use crate::replay::{self, CatchUpError, ReplayError};
use crate::resume::{plan_resume, ResumePlan};
use crate::shutdown::Shutdown;
use crate::status::{Component, NodeStatus, Role};
use crate::store::{ChainHead, Store, StoreError};

/// Back-off after a failed fetch or a refused record: 200 ms doubling to 30 s, with jitter.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Behind and without progress for this long counts as stalled on /health.
pub const STALL_AFTER: Duration = Duration::from_secs(30);
/// Attempts to execute one batch when the client answers "not executed".
const EXECUTE_ATTEMPTS: u32 = 3;

pub struct SyncerContext {
    pub instance_id: String,
    pub config: MemberConfig,
    /// When `current` is set, every record must carry a valid signature.
    pub sync_keys: SyncKeys,
    pub postgres_url: String,
    pub engine: Arc<EngineClient>,
    pub status: Arc<NodeStatus>,
    pub metrics: Arc<Metrics>,
    pub watch: Arc<HeadWatch>,
    /// This member serves the sync API (`--api-addr`): the blocks it stores
    /// are kept in `watch` for its long polls. Without an API nothing reads
    /// them, and with full blocks they were megabytes held for nothing.
    pub serves_api: bool,
    pub shutdown: Shutdown,
}

/// Why a sync step failed; decides back-off, health and whether to stop.
#[derive(Debug)]
enum SyncError {
    /// A record failed verification: nothing executed, nothing stored.
    Refused(String),
    /// No sync URL answered.
    Fetch(String),
    Replay(ReplayError),
    Store(StoreError),
    /// The chains disagree in a way clnode will not guess about: stop.
    Diverged(String),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Refused(reason) => write!(f, "refused: {reason}"),
            SyncError::Fetch(reason) => write!(f, "fetching: {reason}"),
            SyncError::Replay(e) => write!(f, "executing {e}"),
            SyncError::Store(e) => write!(f, "{e}"),
            SyncError::Diverged(reason) => f.write_str(reason),
        }
    }
}

impl From<CatchUpError> for SyncError {
    fn from(error: CatchUpError) -> Self {
        match error {
            CatchUpError::Replay(e) => SyncError::Replay(e),
            CatchUpError::Store(e) => SyncError::Store(e),
            CatchUpError::Diverged(reason) => SyncError::Diverged(reason),
        }
    }
}

impl From<StoreError> for SyncError {
    fn from(error: StoreError) -> Self {
        SyncError::Store(error)
    }
}

pub struct Syncer {
    ctx: SyncerContext,
    store: Reconnecting<Store, StoreError>,
    /// The last block executed and stored (genesis at first).
    head: Option<ChainHead>,
    cursor: Arc<Cursor>,
    consecutive_failures: u32,
    total_synced: u64,
    last_progress: Instant,
    backoff: Backoff,
}

impl Syncer {
    pub fn new(ctx: SyncerContext) -> Syncer {
        let backoff = Backoff::with_jitter(BACKOFF_MIN, BACKOFF_MAX, &ctx.instance_id);
        let (url, application) = (ctx.postgres_url.clone(), format!("clnode-syncer-{}", ctx.instance_id));
        Syncer {
            ctx,
            store: Reconnecting::new(move || Store::connect(&url, &application)),
            head: None,
            cursor: Arc::new(Cursor::default()),
            consecutive_failures: 0,
            total_synced: 0,
            last_progress: Instant::now(),
            backoff,
        }
    }

    pub fn run(mut self) {
        self.ctx.status.update(|s| s.role = Role::Starting);
        let head = loop {
            if self.ctx.shutdown.is_requested() {
                return;
            }
            match self.reconcile() {
                Ok(head) => break head,
                Err(SyncError::Diverged(reason)) => return self.halt(&reason),
                Err(error) => self.failed("resume", &error),
            }
        };
        self.set_head(head, 0);
        self.ctx.status.update(|s| s.role = Role::Member);
        let (sender, receiver) = sync_channel(PIPELINE_DEPTH);
        // The fetcher may sit in a long poll for up to --sync-wait; it only
        // reads, so on shutdown it is left to end with the process rather
        // than joined.
        match self.start_fetcher(sender, head.number) {
            Ok(_fetcher) => self.sync_loop(&receiver),
            Err(error) => self.halt(&error),
        }
    }

    /// Keeps serving /health with the reason, but executes nothing more.
    fn halt(&self, reason: &str) {
        log::error(&format!("member: stopped syncing: {reason}"));
        self.ctx.status.set_problem(Component::Chain, format!("stopped syncing: {reason}"));
        self.ctx.shutdown.wait();
    }

    fn failed(&mut self, what: &str, error: &SyncError) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures == 1 {
            log::warn(&format!("member: {what}: {error}"));
        }
        let component = match error {
            SyncError::Refused(_) => Component::SyncRecord,
            SyncError::Fetch(_) => Component::SyncSource,
            SyncError::Store(_) => Component::Database,
            SyncError::Replay(_) => Component::ExecutionClient,
            SyncError::Diverged(_) => Component::Chain,
        };
        self.ctx.status.set_problem(component, error.to_string());
        match error {
            SyncError::Store(e) => {
                self.ctx.metrics.count_error("database");
                self.store.drop_if_lost(e);
            }
            SyncError::Refused(_) => {
                self.ctx.metrics.sync_refusals.inc();
                self.ctx.metrics.count_error("sync_refused");
            }
            SyncError::Fetch(_) => self.ctx.metrics.count_error("sync_fetch"),
            SyncError::Replay(_) | SyncError::Diverged(_) => {}
        }
        let pause = self.backoff.delay(self.consecutive_failures);
        self.ctx.shutdown.sleep(pause);
    }

    fn store(&mut self) -> Result<&mut Store, StoreError> {
        self.store.get()
    }

    fn el_head(&self) -> Result<ChainHead, SyncError> {
        let header = self
            .ctx
            .engine
            .latest_header()
            .map_err(|source| SyncError::Replay(ReplayError::Engine { block_number: 0, source }))?;
        Ok(ChainHead { number: header.number, hash: header.hash })
    }

    /// Exact resume: make the execution client and the database agree, then
    /// return the head both hold (the rules: `resume.rs`).
    fn reconcile(&mut self) -> Result<ChainHead, SyncError> {
        let el = self.el_head()?;
        let stored = self.store()?.committed_head()?;
        let engine = Arc::clone(&self.ctx.engine);
        let store = self.store()?;
        let plan = plan_resume(
            el,
            stored,
            |number| replay::stored_hash_at(&engine, store, number),
            |number| replay::el_hash_at(&engine, number),
        )?;
        match plan {
            ResumePlan::InStep(head) => Ok(head),
            ResumePlan::ReplayStored { from, to } => self.replay_stored(from, to),
            // The client executed blocks the database never stored (a crash
            // between the two): store them, each checked against the client.
            ResumePlan::StoreExecuted { from, to } => self.store_blocks_the_client_has(from, to),
            ResumePlan::Diverged(reason) => Err(SyncError::Diverged(reason)),
        }
    }

    /// E < D: replay the member's own stored blocks after `el` (no network).
    fn replay_stored(&mut self, el: ChainHead, stored: ChainHead) -> Result<ChainHead, SyncError> {
        let engine = Arc::clone(&self.ctx.engine);
        let shutdown = self.ctx.shutdown.clone();
        let metrics = Arc::clone(&self.ctx.metrics);
        let store = self.store()?;
        let head = replay::catch_up_from_store(&engine, store, el, stored, &shutdown, |_, count| {
            metrics.blocks_replayed.add(count as u64);
        })?;
        if head != el {
            log::info(&format!("member: replayed blocks {}..={} from the local database", el.number + 1, head.number));
        }
        Ok(head)
    }

    fn store_blocks_the_client_has(&mut self, stored: ChainHead, el: ChainHead) -> Result<ChainHead, SyncError> {
        let mut head = stored;
        while head.number < el.number && !self.ctx.shutdown.is_requested() {
            let wanted = u32::try_from(el.number - head.number).unwrap_or(u32::MAX).min(self.ctx.config.batch_limit);
            let (_, records) =
                fetch_from_any(&self.ctx.config.leader_urls, self.ctx.config.sync_token.as_ref(), head.number, wanted)
                    .map_err(SyncError::Fetch)?;
            let keys = verification_keys(&self.ctx.sync_keys);
            let records = verify_batch(head, &records, self.ctx.config.wire, &self.ctx.config.record_trust, &keys)
                .map_err(SyncError::Refused)?;
            if records.is_empty() {
                return Err(SyncError::Refused(format!("the sync API has no block after {}", head.number)));
            }
            let mut batch = Vec::new();
            // The last record's typed number and hash (verified above), never
            // parsed back from its stored text.
            let mut last = None;
            for record in records.into_iter().take_while(|r| r.number() <= el.number) {
                let at_el = self.ctx.engine.block_by_number(BlockTag::Number(record.number())).map_err(|source| {
                    SyncError::Replay(ReplayError::Engine { block_number: record.number(), source })
                })?;
                if at_el.map(|b| b.hash) != Some(record.hash()) {
                    return Err(SyncError::Diverged(format!(
                        "block {}: the execution client holds {} but the sync API serves {}",
                        record.number(),
                        at_el.map(|b| b.hash.to_hex()).unwrap_or_else(|| "nothing".into()),
                        record.hash()
                    )));
                }
                last = Some(ChainHead { number: record.number(), hash: record.hash() });
                batch.push(record.to_stored());
            }
            self.store()?.append_replica_batch(&batch)?;
            if let Some(last) = last {
                log::info(&format!(
                    "member: stored blocks {}..={} the execution client already had",
                    head.number + 1,
                    last.number
                ));
                head = last;
            }
        }
        Ok(head)
    }

    fn set_head(&mut self, head: ChainHead, synced: u64) {
        self.head = Some(head);
        self.total_synced += synced;
        self.ctx.watch.advance_to(head.number);
        self.ctx.metrics.synced_height.set_u64(head.number);
        self.ctx.metrics.el_head.set_u64(head.number);
        self.ctx.metrics.committed_head.set_u64(head.number);
        let total = self.total_synced;
        self.ctx.status.update(|s| {
            s.last_synced = head.number;
            s.total_synced = total;
            s.el_head = Some((head.number, head.hash));
            s.committed_head = Some((head.number, head.hash));
            s.lag_clock.stored(head.number);
        });
    }

    fn start_fetcher(&self, sender: SyncSender<Batch>, after: u64) -> Result<JoinHandle<()>, String> {
        self.cursor.reset(after, false);
        let fetcher = Fetcher::new(
            self.ctx.config.clone(),
            self.ctx.sync_keys.clone(),
            (
                Arc::clone(&self.cursor),
                Arc::clone(&self.ctx.status),
                Arc::clone(&self.ctx.metrics),
                self.ctx.shutdown.clone(),
                Backoff::with_jitter(BACKOFF_MIN, BACKOFF_MAX, &format!("{}-fetch", self.ctx.instance_id)),
            ),
        );
        std::thread::Builder::new()
            .name("fetch".into())
            .spawn(move || fetcher.run(&sender))
            .map_err(|e| format!("cannot start the fetch thread: {e}"))
    }

    fn sync_loop(&mut self, receiver: &Receiver<Batch>) {
        while !self.ctx.shutdown.is_requested() {
            let batch = match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok(batch) => batch,
                Err(RecvTimeoutError::Timeout) => {
                    self.update_lag();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let (generation, _) = self.cursor.get();
            if batch.generation != generation {
                continue; // fetched before a reset: stale
            }
            self.ctx.status.update(|s| s.sync_url = Some(batch.url.clone()));
            self.update_lag();
            if batch.records.as_ref().is_ok_and(Vec::is_empty) {
                continue;
            }
            let url = batch.url;
            let large = crate::alloc::is_large_page(batch.records.as_ref().map_or(0, Vec::len), batch.bytes);
            let applied = self.apply(batch.records);
            if large {
                // The page and its renderings are freed by now; the trimmer
                // hands the memory back once large pages stop.
                crate::alloc::large_page_freed();
            }
            match applied {
                Ok(()) => {
                    if self.consecutive_failures > 0 {
                        log::info("member: syncing again");
                    }
                    self.consecutive_failures = 0;
                    for component in [Component::SyncRecord, Component::ExecutionClient, Component::Database] {
                        self.ctx.status.clear_problem(component);
                    }
                    self.update_lag();
                }
                Err(SyncError::Diverged(reason)) => return self.halt(&reason),
                Err(error) => {
                    let head = self.head.map(|h| h.number).unwrap_or(0);
                    self.failed(&format!("batch after block {head} from {url}"), &error);
                    // Whatever was in flight is now suspect: start over from
                    // what is stored (reconciling the client if it moved).
                    match self.reconcile() {
                        Ok(head) => self.set_head(head, 0),
                        Err(SyncError::Diverged(reason)) => return self.halt(&reason),
                        Err(_) => {}
                    }
                    let after = self.head.map(|h| h.number).unwrap_or(0);
                    self.cursor.reset(after, matches!(error, SyncError::Refused(_)));
                }
            }
        }
    }

    /// Verify every record of the batch, execute them, make the last one
    /// canonical, then store them all in one transaction.
    fn apply(&mut self, records: Result<Vec<BlockRecord>, String>) -> Result<(), SyncError> {
        let head = self.head.ok_or_else(|| SyncError::Diverged("no head before syncing".into()))?;
        let records = records.map_err(SyncError::Refused)?;
        verify_links(head, &records).map_err(SyncError::Refused)?;
        let started = Instant::now();
        for record in &records {
            self.execute_with_retry(record)?;
        }
        let executed_in = started.elapsed();
        let Some(last) = records.last() else { return Ok(()) };
        let stored: Vec<_> = records.iter().map(BlockRecord::to_stored).collect();
        // Every block of the page is executed (VALID), so making it canonical
        // and storing it are independent: they run at the same time, and the
        // head moves once both are done. Either order of failure leaves a
        // state the resume rules repair (EL ahead of the database, or the
        // database ahead of the EL's canonical head).
        let finished = self.canonical_and_store(last, &stored);
        match &finished.stored {
            Ok(_) => self.ctx.metrics.database_write_seconds.observe(finished.stored_in),
            // Whatever else failed, a dead connection is not reused.
            Err(error) if error.is_connection_lost() => self.store.invalidate(),
            Err(_) => {}
        }
        finished.canonical.map_err(SyncError::Replay)?;
        finished.stored?;
        if log::debug_enabled() {
            let (first, last_number) = (records[0].number(), last.number());
            let txs = records.iter().map(|r| r.payload.transaction_count()).sum::<usize>();
            let (new, fcu, store) =
                (log::millis(executed_in), log::millis(finished.canonical_in), log::millis(finished.stored_in));
            log::debug_with(
                &format!(
                    "member: applied blocks {first}..={last_number} ({txs} txs): newPayload {new:.3} ms, \
                     forkchoiceUpdated {fcu:.3} ms, store {store:.3} ms"
                ),
                &[
                    ("first_block", first.into()),
                    ("last_block", last_number.into()),
                    ("txs", txs.into()),
                    ("new_payload_ms", new.into()),
                    ("forkchoice_updated_ms", fcu.into()),
                    ("store_ms", store.into()),
                ],
            );
        }
        // Stored: members of this member may be served them from memory.
        if self.ctx.serves_api {
            for block in stored.into_iter().rev().take(crate::notify::RECENT_BLOCKS).rev() {
                self.ctx.watch.committed(Arc::new(block));
            }
        }
        let count = records.len() as u64;
        self.ctx.metrics.blocks_synced.add(count);
        self.ctx.metrics.sync_batch_size.observe_value(count);
        if let Some(per_block) = started.elapsed().checked_div(u32::try_from(count).unwrap_or(1)) {
            self.ctx.metrics.block_execution_seconds.observe(per_block);
        }
        self.set_head(ChainHead { number: last.number(), hash: last.hash() }, count);
        self.last_progress = Instant::now();
        Ok(())
    }

    /// forkchoiceUpdated to `last` on a scoped thread while this thread
    /// stores the page.
    fn canonical_and_store(&mut self, last: &BlockRecord, stored: &[crate::block::StoredBlock]) -> PageFinish {
        let engine = Arc::clone(&self.ctx.engine);
        let (number, hash) = (last.number(), last.hash());
        let make_canonical = move || {
            let started = Instant::now();
            (replay::make_canonical(&engine, number, hash), started.elapsed())
        };
        std::thread::scope(|scope| {
            let helper =
                std::thread::Builder::new().name("canonical".into()).spawn_scoped(scope, make_canonical.clone());
            let store_started = Instant::now();
            let stored_result = self.store().and_then(|store| store.append_replica_batch(stored));
            let stored_in = store_started.elapsed();
            let (canonical, canonical_in) = match helper {
                // A panic there is a bug: carry it on here.
                Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: do it here, after the store.
                Err(_) => make_canonical(),
            };
            PageFinish { canonical, canonical_in, stored: stored_result, stored_in }
        })
    }

    /// newPayload; when the client answers SYNCING/ACCEPTED (not executed),
    /// try forkchoiceUpdated to the block (EthereumJS executes large blocks
    /// there), then supply missing ancestors from the local database.
    fn execute_with_retry(&mut self, record: &BlockRecord) -> Result<(), SyncError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match replay::execute(&self.ctx.engine, record) {
                Ok(_) => return Ok(()),
                Err(error) if error.is_not_executed() && attempt < EXECUTE_ATTEMPTS => {
                    if replay::make_canonical(&self.ctx.engine, record.number(), record.hash()).is_ok() {
                        return Ok(());
                    }
                    // The client lost blocks we stored: replay them, then retry.
                    let reached = self.reconcile()?;
                    if reached.number + 1 != record.number() {
                        return Err(SyncError::Replay(error));
                    }
                }
                Err(error) => return Err(SyncError::Replay(error)),
            }
        }
    }

    /// The lag metrics and the stall verdict, from what the fetcher and
    /// this thread recorded (`member/lag.rs`); /health computes its own at
    /// each request.
    fn update_lag(&self) {
        let now = Instant::now();
        let stalled_for = self.last_progress.elapsed();
        let metrics = &self.ctx.metrics;
        self.ctx.status.update(|s| {
            let lag = s.lag(now);
            metrics.sync_lag_blocks.set_u64(lag.blocks);
            metrics.sync_lag_ms.set_u64(lag.ms);
            // Set and cleared here on every update, so a member that caught
            // up never keeps reporting an old stall.
            if lag.blocks > 0 && stalled_for > STALL_AFTER {
                let reason =
                    format!("stalled: {} blocks behind with no progress for {} s", lag.blocks, STALL_AFTER.as_secs());
                s.problems.insert(Component::SyncProgress, reason);
            } else {
                s.problems.remove(&Component::SyncProgress);
            }
        });
    }
}

/// How the two last steps of a page ended, and how long each took.
struct PageFinish {
    canonical: Result<(), ReplayError>,
    canonical_in: Duration,
    stored: Result<u64, StoreError>,
    stored_in: Duration,
}
