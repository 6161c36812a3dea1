//! The block-production thread of a leader-mode node.
//!
//! While this node holds the lease it builds blocks on the committed head
//! and commits them through the fence; while it does not, it follows the
//! committed chain in PostgreSQL onto its own execution client so that it is
//! at the head when it wins. It is the only thread that drives this node's
//! execution client.
//!
//! The order of one block is fixed (ARCHITECTURE.md, "The commit protocol"):
//! build → newPayload (VALID) → fenced commit → forkchoiceUpdated → publish.
//! Nothing becomes canonical on the execution client before it is committed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::clock::{self, ClockReference, ClockVerdict};
use super::error::ProduceError;
use super::failover::{failover_gap_ms, TakeOver};
use super::failpoint::Step;
use super::lease::LeaseHandle;
use super::pool_watch::{PendingPool, PoolWatch};
use super::publish::Publisher;
use super::step_down::{after_failure, AfterFailure};
use crate::backoff::Backoff;
use crate::block::BlockRecord;
use crate::codec::Hash32;
use crate::config::LeaderConfig;
use crate::engine::{EngineClient, EngineError, ForkchoiceState, PayloadAttributes};
use crate::log;
use crate::metrics::Metrics;
use crate::notify::HeadWatch;
use crate::reconnect::Reconnecting;
use crate::replay::{self, CatchUpError};
use crate::shutdown::Shutdown;
use crate::status::{Component, NodeStatus, Role};
use crate::store::{ChainHead, CommitOutcome, FenceOutcome, GuardedStore, Store, StoreError};

/// How long a standby waits for news before looking at the lease again.
const STANDBY_WAIT: Duration = Duration::from_millis(20);
/// A standby re-reads the committed head and its client's head at least
/// this often, and at least twice per lease TTL.
const STANDBY_RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stepping-down producer waits for the lease thread to let go.
const STEP_DOWN_WAIT: Duration = Duration::from_secs(2);
/// While block time runs `--max-timestamp-lead` ahead of the clock, the
/// producer sleeps until the instant it may build
/// (`clock::wait_for_next_timestamp`), but at most this long at a time, so
/// that it looks at the lease, the clock and shutdown as often as before.
const TIMESTAMP_LEAD_RECHECK: Duration = Duration::from_millis(50);
/// Back-off after a failure: doubles from the first to the last value.
const FAILURE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The parent a new block is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parent {
    number: u64,
    hash: Hash32,
    timestamp: u64,
}

enum Outcome {
    Committed,
    NothingToDo,
    /// The fence or the parent check refused the commit: stop leading.
    Refused,
}

/// Everything the producer thread needs, passed in explicitly.
pub struct ProducerContext {
    pub instance_id: String,
    pub config: LeaderConfig,
    pub postgres_url: String,
    pub engine: Arc<EngineClient>,
    pub lease: Arc<LeaseHandle>,
    pub status: Arc<NodeStatus>,
    pub metrics: Arc<Metrics>,
    pub watch: Arc<HeadWatch>,
    pub publisher: Publisher,
    pub shutdown: Shutdown,
}

pub struct Producer {
    ctx: ProducerContext,
    store: Reconnecting<GuardedStore, StoreError>,
    /// The execution client's canonical head as this thread last set or
    /// read it; `None` forces a fresh read (after any engine error).
    el_head: Option<ChainHead>,
    /// The committed head as last read, and when.
    known_committed: Option<(ChainHead, Instant)>,
    last_commit_at: Instant,
    /// When the build of the last committed block started: blocks are
    /// paced start to start, so `--min-block-interval 100ms` gives ten
    /// blocks a second however long a build takes.
    last_block_started_at: Instant,
    build_attempt: u64,
    consecutive_failures: u32,
    /// The build delay of the last build (a longer one is logged once).
    last_build_delay: Duration,
    backoff: Backoff,
    /// When a database call last succeeded.
    database_answered_at: Instant,
    /// Fault injection: the step at which the process stops itself once.
    failpoint: Option<Step>,
    settings: BuildSettings,
    pool_watch: PoolWatch,
    /// Committed, but not yet made canonical on the execution client.
    pending_canonical: Option<ChainHead>,
    /// When this term took over from another: what the failover gap is
    /// measured from, reported at this term's first commit.
    took_over: Option<TakeOver>,
    /// The first committed head this node read: a previous term whose last
    /// block is not above it ended before this node started.
    first_head_seen: Option<u64>,
    /// The database's clock, the cluster's time reference: block time
    /// follows it, and this node leads only while its wall clock agrees.
    clock: ClockReference,
    /// The clock verdict last logged, so a log line marks each change.
    clock_fit_logged: Option<bool>,
}

/// The block-building part of the leader configuration (Copy, so the hot
/// loop reads it without borrowing the context).
#[derive(Debug, Clone, Copy)]
struct BuildSettings {
    fee_recipient: [u8; 20],
    build_delay: Duration,
    min_block_interval: Duration,
    empty_block_interval: Duration,
    idle_poll_interval: Duration,
    max_timestamp_lead: Duration,
    /// How often a standby re-reads the committed head and its client.
    standby_recheck: Duration,
    /// An idle leader reads the fence when the database has not answered
    /// for this long, so a cut is noticed (and the lease released) even
    /// when there is nothing to commit.
    database_check_interval: Duration,
}

impl Producer {
    pub fn new(ctx: ProducerContext) -> Producer {
        let settings = BuildSettings {
            fee_recipient: ctx.config.fee_recipient,
            build_delay: ctx.config.build_delay,
            min_block_interval: ctx.config.min_block_interval,
            empty_block_interval: ctx.config.empty_block_interval,
            idle_poll_interval: ctx.config.idle_poll_interval,
            max_timestamp_lead: ctx.config.max_timestamp_lead,
            standby_recheck: STANDBY_RECHECK_INTERVAL.min(ctx.config.lease_ttl / 2),
            database_check_interval: ctx.config.database_stall_limit / 2,
        };
        let (url, application) = (ctx.postgres_url.clone(), format!("clnode-producer-{}", ctx.instance_id));
        Producer {
            settings,
            pool_watch: PoolWatch::new(Instant::now()),
            pending_canonical: None,
            took_over: None,
            first_head_seen: None,
            clock: ClockReference::new(ctx.config.max_clock_skew),
            clock_fit_logged: None,
            ctx,
            store: Reconnecting::new(move || GuardedStore::connect(&url, &application)),
            el_head: None,
            known_committed: None,
            last_commit_at: Instant::now(),
            last_block_started_at: Instant::now(),
            build_attempt: 0,
            consecutive_failures: 0,
            last_build_delay: Duration::ZERO,
            backoff: Backoff::new(FAILURE_BACKOFF_MIN, FAILURE_BACKOFF_MAX),
            database_answered_at: Instant::now(),
            failpoint: std::env::var("CLNODE_FAILPOINT_STOP_AT").ok().and_then(|name| Step::from_name(&name)),
        }
    }

    /// Runs until shutdown.
    pub fn run(mut self) {
        while !self.ctx.shutdown.is_requested() {
            match self.ctx.lease.held_term() {
                Some(term) => self.lead(term),
                None => self.follow_once(),
            }
        }
        self.ctx.status.update(|s| s.role = Role::Stopping);
        self.ctx.metrics.is_leader.set(0);
    }

    /// One Engine API call, timed for the lease thread: while calls hang or
    /// fail for `--engine-stall-limit`, it releases the lease (a blackholed
    /// client would otherwise keep it for a call's own timeout, 8 s).
    fn engine<T, E>(&self, call: impl FnOnce(&EngineClient) -> Result<T, E>) -> Result<T, E> {
        self.ctx.lease.engine_trouble.started();
        let result = call(&self.ctx.engine);
        if result.is_ok() {
            self.ctx.lease.engine_trouble.answered();
        }
        result
    }

    fn store(&mut self) -> Result<&mut GuardedStore, StoreError> {
        self.store.get()
    }

    /// One database call, timed for the lease thread: while calls hang or
    /// fail for `--database-stall-limit`, it releases the lease. The call
    /// runs on the connection's own thread and answers within
    /// `store::CALL_DEADLINE`, or the connection is given up.
    fn database<T: Send + 'static>(
        &mut self,
        call: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ctx.lease.database_trouble.started();
        let result = self.store.get().and_then(|store| store.call(call));
        if result.is_ok() {
            self.ctx.lease.database_trouble.answered();
            self.database_answered_at = Instant::now();
        }
        result
    }

    /// The committed head and the fence, checked against the highest head
    /// this node has seen (the regression guard).
    fn committed_head(&mut self) -> Result<ChainHead, ProduceError> {
        let read_started = Instant::now();
        let (head, fence) = self.database(|store| Ok((store.committed_head()?, store.fence_term()?)))?;
        if let Some(reason) = self.ctx.watch.observe_database_head(head, None, read_started) {
            log::error(&format!("producer: {reason}; not leading until an operator acts"));
        }
        if let Some(reason) = self.ctx.watch.regression() {
            return Err(ProduceError::Regressed(reason));
        }
        self.ctx.lease.observe_fence_term(fence);
        self.ctx.status.update(|s| {
            if s.role != Role::Leader {
                s.term = fence;
            }
        });
        self.known_committed = Some((head, Instant::now()));
        self.first_head_seen.get_or_insert(head.number);
        self.ctx.watch.advance_to(head.number);
        self.ctx.metrics.committed_head.set_u64(head.number);
        self.ctx.status.update(|s| s.committed_head = Some((head.number, head.hash)));
        self.ctx.status.clear_problem(Component::Database);
        Ok(head)
    }

    /// One round as a standby: catch up if the committed head moved, then
    /// wait briefly for news.
    fn follow_once(&mut self) {
        let stale = match self.known_committed {
            None => true,
            Some((head, read_at)) => {
                self.ctx.watch.get() > head.number
                    || read_at.elapsed() >= self.settings.standby_recheck
                    || self.el_head != Some(head)
            }
        };
        if stale {
            // Read the client afresh too: a cached head would keep a standby
            // whose client died "ready to lead" (and /health green).
            self.el_head = None;
            let result = self.committed_head().and_then(|head| self.sync_el_to(head));
            match result {
                Ok(()) => {
                    self.consecutive_failures = 0;
                    let clock_fit = self.check_clock().fit_to_lead();
                    self.ctx.lease.set_ready_to_lead(clock_fit);
                    self.ctx.status.update(|s| {
                        if s.role != Role::Leader {
                            s.role = Role::Standby;
                        }
                    });
                    self.ctx.status.clear_problem(Component::ExecutionClient);
                    self.ctx.status.clear_problem(Component::Commit);
                }
                Err(error) => {
                    self.ctx.lease.set_ready_to_lead(false);
                    self.record_failure("standby", &error);
                    let pause = self.backoff();
                    self.ctx.shutdown.sleep(pause);
                    return;
                }
            }
        }
        let known = self.known_committed.map(|(head, _)| head.number).unwrap_or(0);
        self.ctx.watch.wait_beyond(known, STANDBY_WAIT);
    }

    fn record_failure(&mut self, role: &str, error: &ProduceError) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures == 1 {
            log::warn(&format!("{role}: {error}"));
        }
        self.ctx.status.set_problem(error.component(), error.to_string());
        match error {
            ProduceError::Store(e) => {
                self.ctx.metrics.count_error("database");
                self.store.drop_if_lost(e);
            }
            ProduceError::Diverged(_) | ProduceError::Regressed(_) => self.ctx.metrics.count_error("internal"),
            ProduceError::Clock(_) => {}
            _ => self.el_head = None,
        }
    }

    fn backoff(&mut self) -> Duration {
        self.backoff.delay(self.consecutive_failures)
    }

    fn read_el_head(&mut self) -> Result<ChainHead, ProduceError> {
        if let Some(head) = self.el_head {
            return Ok(head);
        }
        // A read, not a build: /health says "reading the execution client's
        // chain", never "building block 0".
        let header = self.engine(EngineClient::latest_header).map_err(ProduceError::EngineRead)?;
        let head = ChainHead { number: header.number, hash: header.hash };
        self.set_el_head(head);
        Ok(head)
    }

    fn set_el_head(&mut self, head: ChainHead) {
        self.el_head = Some(head);
        self.ctx.metrics.el_head.set_u64(head.number);
        self.ctx.status.update(|s| s.el_head = Some((head.number, head.hash)));
    }

    /// Makes the execution client's canonical head equal to `target`,
    /// replaying committed blocks it lacks, in order.
    fn sync_el_to(&mut self, target: ChainHead) -> Result<(), ProduceError> {
        let el = self.read_el_head()?;
        if el == target {
            return Ok(());
        }
        let engine = Arc::clone(&self.ctx.engine);
        let shutdown = self.ctx.shutdown.clone();
        let metrics = Arc::clone(&self.ctx.metrics);
        // A replay is many calls: each answered batch counts as an answer.
        let lease = Arc::clone(&self.ctx.lease);
        lease.engine_trouble.started();
        let store = self.store()?;
        let mut reached = el;
        let result = replay::catch_up_from_store(&engine, store, el, target, &shutdown, |head, count| {
            lease.engine_trouble.answered();
            lease.engine_trouble.started();
            metrics.blocks_replayed.add(count as u64);
            reached = head;
        });
        if result.is_ok() {
            lease.engine_trouble.answered();
        }
        if reached != el {
            self.set_el_head(reached);
        }
        result.map(|_| ()).map_err(|error| match error {
            CatchUpError::Replay(e) => ProduceError::Replay(e),
            CatchUpError::Store(e) => ProduceError::Store(e),
            CatchUpError::Diverged(reason) => ProduceError::Diverged(reason),
        })
    }

    /// Leads for as long as the lease holds `term` and nothing fails.
    fn lead(&mut self, term: u64) {
        let acquired_at = Instant::now();
        let parent = match self.prepare_to_lead(term) {
            Ok(Some(parent)) => parent,
            Ok(None) => return,
            Err(error) => {
                self.leader_failed(&error);
                return;
            }
        };
        self.begin_term(term, parent, acquired_at.elapsed());
        let mut parent = parent;
        self.consecutive_failures = 0;
        self.pool_watch.forget_idle();
        while !self.ctx.shutdown.is_requested() && self.ctx.lease.held_term() == Some(term) {
            let lease_remaining = self.ctx.lease.remaining(term);
            self.ctx.status.update(|s| s.lease_remaining_ms = u64::try_from(lease_remaining.as_millis()).unwrap_or(0));
            let step = self.check_still_leading(term).and_then(|leading| match leading {
                true => self.produce_one(term, &mut parent),
                false => Ok(Outcome::Refused),
            });
            match step {
                Ok(Outcome::Committed | Outcome::NothingToDo) => {
                    if self.consecutive_failures > 0 {
                        log::info("leader: recovered");
                        self.ctx.status.clear_problem(Component::ExecutionClient);
                        self.ctx.status.clear_problem(Component::Database);
                    }
                    self.consecutive_failures = 0;
                }
                Ok(Outcome::Refused) => break,
                Err(error) => match self.leader_failed(&error) {
                    AfterFailure::StepDown | AfterFailure::StartOver => break,
                    AfterFailure::Retry => match self.refresh_parent() {
                        Ok(fresh) => parent = fresh,
                        Err(error) => {
                            self.leader_failed(&error);
                            break;
                        }
                    },
                },
            }
        }
        if let Err(error) = self.flush_canonical() {
            self.pending_canonical = None;
            self.record_failure("leader", &error);
        }
        self.ctx.metrics.is_leader.set(0);
        self.ctx.status.update(|s| {
            if s.role == Role::Leader {
                s.role = Role::Standby;
            }
            s.lease_remaining_ms = 0;
        });
    }

    /// Announces a term that is ready to build on `parent`: log, metrics,
    /// `/health`, and the failover gap to report at its first commit.
    fn begin_term(&mut self, term: u64, parent: Parent, ready_in: Duration) {
        let takeover_ms = u64::try_from(ready_in.as_millis()).unwrap_or(u64::MAX);
        log::info(&format!(
            "leader: term {term}, building on block {} ({}), ready {takeover_ms} ms after acquiring",
            parent.number, parent.hash
        ));
        // A failover, as operators see it: the gap from the previous leader's
        // last block to this term's first; measured at that commit
        // (`failover.rs`).
        let parent_number = parent.number;
        self.took_over = match self.database(move |store| store.commit_time(parent_number)) {
            Ok(Some((previous_term, committed_ms))) if previous_term != term => Some(TakeOver {
                previous_block: parent.number,
                previous_committed_ms: committed_ms,
                first_head_seen: self.first_head_seen.unwrap_or(parent.number),
            }),
            _ => None,
        };
        self.ctx.metrics.is_leader.set(1);
        self.ctx.metrics.term.set_u64(term);
        self.ctx.status.update(|s| {
            s.role = Role::Leader;
            s.term = term;
            s.ready_after_acquire_ms = Some(takeover_ms);
        });
        // Preparing just read the database and brought the client to the
        // head: whatever failed before is working again.
        for component in [Component::Commit, Component::ExecutionClient, Component::Database] {
            self.ctx.status.clear_problem(component);
        }
        if self.consecutive_failures > 0 {
            log::info("leader: recovered");
        }
    }

    /// Between blocks: the regression guard, and on an idle chain a fence
    /// read whenever the database has been quiet for a while, so that a
    /// leader cut off from it (or fenced by a newer term) notices without a
    /// commit to fail. `false`: another term holds the fence; step down.
    fn check_still_leading(&mut self, term: u64) -> Result<bool, ProduceError> {
        if let Some(reason) = self.ctx.watch.regression() {
            return Err(ProduceError::Regressed(reason));
        }
        if self.database_answered_at.elapsed() < self.settings.database_check_interval {
            return Ok(true);
        }
        let fence_term = self.database(Store::fence_term)?;
        if fence_term == term {
            return Ok(true);
        }
        log::warn(&format!("leader: fenced: the fence holds term {fence_term}, not {term}; stepping down"));
        self.ctx.lease.observe_fence_term(fence_term);
        self.ctx.lease.request_step_down();
        Ok(false)
    }

    /// Records a failure while holding the lease and acts on the step-down
    /// rule ([`after_failure`]): back off (retry or start over from the
    /// database), or step down and stop offering itself until a standby
    /// round proves it healthy again.
    fn leader_failed(&mut self, error: &ProduceError) -> AfterFailure {
        self.record_failure("leader", error);
        let action = after_failure(error.failure_kind(), self.consecutive_failures);
        if action == AfterFailure::StepDown {
            log::warn(&format!(
                "leader: stepping down after {} consecutive failures: {error}",
                self.consecutive_failures
            ));
            self.ctx.lease.set_ready_to_lead(false);
            self.ctx.lease.request_step_down();
            // Wait for the lease thread to let go, so this thread does not
            // try to lead the same term again.
            let deadline = Instant::now() + STEP_DOWN_WAIT;
            while self.ctx.lease.held_term().is_some() && Instant::now() < deadline && !self.ctx.shutdown.is_requested()
            {
                self.ctx.lease.wait_for_change(STANDBY_WAIT);
            }
            return action;
        }
        let pause = self.backoff();
        self.ctx.shutdown.sleep(pause);
        action
    }

    /// Raises the fence, catches the execution client up and reads the
    /// parent. `None`: this term is already stale.
    fn prepare_to_lead(&mut self, term: u64) -> Result<Option<Parent>, ProduceError> {
        let instance_id = self.ctx.instance_id.clone();
        match self.database(move |store| store.raise_fence(term, &instance_id))? {
            FenceOutcome::Raised => {}
            FenceOutcome::AlreadyAt { fence_term } => {
                // A higher term, or this very term raised by another node
                // (Redis lost its counter and handed the term out twice).
                log::warn(&format!(
                    "leader: fenced: the fence holds term {fence_term} (this node acquired {term}, \
                     held by another node if equal); stepping down"
                ));
                self.ctx.lease.observe_fence_term(fence_term);
                self.ctx.lease.request_step_down();
                self.ctx.shutdown.sleep(Duration::from_millis(50));
                return Ok(None);
            }
        }
        self.ctx.lease.observe_fence_term(term);
        self.refresh_parent().map(Some)
    }

    fn refresh_parent(&mut self) -> Result<Parent, ProduceError> {
        let head = self.committed_head()?;
        self.sync_el_to(head)?;
        // The client is at the committed head now, canonical included.
        self.pending_canonical = None;
        let header = self
            .engine(|e| e.block_by_hash(&head.hash))
            .map_err(ProduceError::EngineRead)?
            .ok_or_else(|| ProduceError::Diverged(format!("execution client lacks committed block {}", head.number)))?;
        Ok(Parent { number: head.number, hash: head.hash, timestamp: header.timestamp })
    }

    /// The block with the cluster's signature, made before the commit so
    /// that it is stored (and served by every node) with the row.
    fn signed(&self, mut block: crate::block::StoredBlock) -> crate::block::StoredBlock {
        block.leader_signature = self.ctx.config.signing_key.as_ref().map(|key| key.sign(&block));
        block
    }

    fn failpoint(&mut self, step: Step) {
        if self.failpoint == Some(step) {
            self.failpoint = None;
            log::warn(&format!("failpoint: stopping the process at step {}", step.name()));
            crate::shutdown::stop_whole_process();
        }
    }

    /// Makes the last committed block canonical now, if the next build did
    /// not already.
    fn flush_canonical(&mut self) -> Result<(), ProduceError> {
        if let Some(head) = self.pending_canonical {
            self.engine(|e| replay::make_canonical(e, head.number, head.hash))?;
            self.pending_canonical = None;
            self.set_el_head(head);
        }
        Ok(())
    }

    /// Samples the database clock when due and judges this node's wall
    /// clock: `/health`, the offset metric, a log line at each change. A
    /// failed sample changes nothing (the last one ages out after
    /// `clock::MAX_SAMPLE_AGE`); the database's own problems are reported
    /// by the reads around it.
    fn check_clock(&mut self) -> ClockVerdict {
        let now = Instant::now();
        if self.clock.due(now) {
            self.clock.attempted(now);
            if let Ok(sample) = self.database(clock::sample_database_clock) {
                if self.clock.record(sample) {
                    #[allow(clippy::cast_possible_truncation)] // as saturates; NaN gives 0
                    self.ctx.metrics.clock_offset_ms.set((sample.offset_s() * 1000.0) as i64);
                }
            }
        }
        let verdict = self.clock.verdict(Instant::now());
        let problem = verdict.problem(self.clock.bound());
        if self.clock_fit_logged != Some(problem.is_none()) {
            self.clock_fit_logged = Some(problem.is_none());
            match (&problem, verdict) {
                (Some(text), _) => log::warn(&format!("clock: {text}")),
                (None, ClockVerdict::Agrees { offset_s }) => {
                    log::info(&format!("clock: wall clock within {offset_s:+.3} s of PostgreSQL's"));
                }
                (None, _) => {}
            }
        }
        match problem {
            Some(text) => self.ctx.status.set_problem(Component::Clock, text),
            None => self.ctx.status.clear_problem(Component::Clock),
        }
        verdict
    }

    /// Samples the clock when due ([`Self::check_clock`]); an error when
    /// this node's clock is unfit to lead: the leader steps down.
    fn judge_clock(&mut self) -> Result<(), ProduceError> {
        match self.check_clock().problem(self.clock.bound()) {
            Some(problem) => Err(ProduceError::Clock(problem)),
            None => Ok(()),
        }
    }

    /// How long until block time allows a block on `parent`, on the clock
    /// sample in hand (no round trip); zero without a fresh sample, so that
    /// [`Self::block_timestamp`] takes one (or fails).
    fn timestamp_wait(&self, parent: Parent) -> Duration {
        match self.clock.database_now(Instant::now()) {
            Some((now, uncertainty)) => {
                clock::wait_for_next_timestamp(parent.timestamp, now, uncertainty, self.settings.max_timestamp_lead)
            }
            None => Duration::ZERO,
        }
    }

    /// The next block's timestamp on the database's clock; `None` while it
    /// would run more than `--max-timestamp-lead` ahead (wait). An error
    /// when this node's clock is unfit to lead: the leader steps down.
    fn block_timestamp(&mut self, parent: Parent) -> Result<Option<u64>, ProduceError> {
        self.judge_clock()?;
        let bound = self.clock.bound();
        let (now, uncertainty) = self
            .clock
            .database_now(Instant::now())
            .ok_or_else(|| ProduceError::Clock(ClockVerdict::Unknown.problem(bound).unwrap_or_default()))?;
        Ok(clock::next_block_timestamp(parent.timestamp, now, uncertainty, self.settings.max_timestamp_lead))
    }

    /// An empty block is due: `--empty-block-interval` is set and that long
    /// has passed since the last commit.
    fn heartbeat_due(&self) -> bool {
        let interval = self.settings.empty_block_interval;
        !interval.is_zero() && self.last_commit_at.elapsed() >= interval
    }

    /// One step of the block loop: build on `parent`, validate, commit
    /// through the fence, and record the block (ARCHITECTURE.md, steps 4-8).
    fn produce_one(&mut self, term: u64, parent: &mut Parent) -> Result<Outcome, ProduceError> {
        let Some(timestamp) = self.next_build_timestamp(term, *parent)? else {
            return Ok(Outcome::NothingToDo);
        };
        let Some(built) = self.build(term, *parent, timestamp)? else {
            return Ok(Outcome::NothingToDo);
        };
        match self.validate_and_commit(term, built)? {
            CommitStep::Committed(committed) => {
                self.after_commit(term, parent, committed);
                Ok(Outcome::Committed)
            }
            CommitStep::LeaseLapsed => Ok(Outcome::NothingToDo),
            CommitStep::Refused => Ok(Outcome::Refused),
        }
    }

    /// The timestamp of the next block, or `None` when this is not the
    /// moment to build: paced by `--min-block-interval`, bounded by
    /// `--max-timestamp-lead`, stopping, the lease gone, or an idle pool.
    /// Whenever it waits, it first makes the last commit canonical.
    fn next_build_timestamp(&mut self, term: u64, parent: Parent) -> Result<Option<u64>, ProduceError> {
        let config = self.settings;
        let since_last = self.last_block_started_at.elapsed();
        if since_last < config.min_block_interval {
            self.flush_canonical()?;
            self.ctx.shutdown.sleep(config.min_block_interval - since_last);
            return Ok(None);
        }
        // Block time may not run further ahead of the clock: make the last
        // commit canonical first (nothing, not even the clock sample's round
        // trip, comes between a commit and its block becoming visible), then
        // wait until block time allows the next one, to the millisecond.
        let wait = self.timestamp_wait(parent);
        if !wait.is_zero() {
            self.flush_canonical()?;
            self.judge_clock()?;
            self.ctx.shutdown.sleep(wait.min(TIMESTAMP_LEAD_RECHECK));
            return Ok(None);
        }
        let Some(timestamp) = self.block_timestamp(parent)? else {
            // A fresh clock sample moved the instant: wait again.
            self.flush_canonical()?;
            let wait = self.timestamp_wait(parent);
            self.ctx.shutdown.sleep(wait.min(TIMESTAMP_LEAD_RECHECK));
            return Ok(None);
        };
        if self.ctx.shutdown.is_requested() || self.ctx.lease.held_term() != Some(term) {
            self.flush_canonical()?;
            return Ok(None);
        }
        let pool = TimedPool { engine: &self.ctx.engine, lease: &self.ctx.lease };
        if !self.heartbeat_due() && !self.pool_watch.worth_building(&pool, Instant::now()) {
            self.ctx.shutdown.sleep(config.idle_poll_interval);
            return Ok(None);
        }
        Ok(Some(timestamp))
    }

    /// Step 4: forkchoiceUpdated with attributes on `parent`, the build
    /// delay, getPayload. `None`: an empty build that is not due as a
    /// heartbeat (discarded), or a stop during the build delay.
    fn build(&mut self, term: u64, parent: Parent, timestamp: u64) -> Result<Option<BuiltBlock>, ProduceError> {
        let config = self.settings;
        let pool = TimedPool { engine: &self.ctx.engine, lease: &self.ctx.lease };
        self.pool_watch.before_build(&pool, Instant::now());
        let number = parent.number + 1;
        self.build_attempt += 1;
        let attributes = PayloadAttributes {
            timestamp,
            prev_randao: prev_randao(parent.hash, timestamp, term, self.build_attempt),
            suggested_fee_recipient: config.fee_recipient,
            // No beacon chain: the parent's execution hash stands in, so the
            // EIP-4788 contract still holds a verifiable history.
            parent_beacon_block_root: parent.hash,
        };
        let started = Instant::now();
        // How far block time runs ahead of the clock as this build starts
        // (the per-block timeline in the debug line; `--max-timestamp-lead`
        // caps it).
        let lead_at_start_ms = timestamp as f64 * 1000.0 - self.database_now_ms();
        let engine_error = |source| ProduceError::Engine { block_number: number, source };
        let updated = self
            .engine(|e| e.forkchoice_updated(&ForkchoiceState::all_at(parent.hash), Some(&attributes)))
            .map_err(engine_error)?;
        let requested_in = started.elapsed();
        self.failpoint(Step::Build);
        if updated.payload_status.is_valid() {
            // This call made the parent canonical (it may be the block just
            // committed, see `pending_canonical`).
            self.pending_canonical = None;
            self.set_el_head(ChainHead { number: parent.number, hash: parent.hash });
        }
        let payload_id = match (&updated.payload_status, updated.payload_id) {
            (status, Some(id)) if status.is_valid() => id,
            (status, _) => {
                return Err(ProduceError::EngineRefused {
                    block_number: number,
                    reason: format!("forkchoiceUpdated with attributes answered {status} without a payload id"),
                })
            }
        };
        let build_delay = self.pool_watch.build_delay(config.build_delay);
        // One slow build at a load step's start is normal; a delay eight
        // times the configured one means the client keeps coming back empty.
        if build_delay > self.last_build_delay && build_delay >= config.build_delay.saturating_mul(8) {
            log::warn(&format!(
                "leader: the client's builds came back empty while transactions arrived; build delay now {} ms",
                build_delay.as_millis()
            ));
        }
        self.last_build_delay = build_delay;
        if !self.ctx.shutdown.sleep(build_delay) {
            return Ok(None);
        }
        let get_payload_started = Instant::now();
        let built = self.engine(|e| e.get_payload(&payload_id, timestamp)).map_err(engine_error)?;
        let get_payload_in = get_payload_started.elapsed();
        if built.payload.transaction_count() > 0 {
            self.failpoint(Step::Payload);
        }
        // Asked again: the heartbeat may have come due during the build.
        if built.payload.transaction_count() == 0 && !self.heartbeat_due() {
            self.ctx.metrics.empty_builds_discarded.inc();
            self.pool_watch.found_nothing();
            self.ctx.shutdown.sleep(config.idle_poll_interval);
            return Ok(None);
        }
        if built.payload.number() != number || built.payload.parent_hash() != parent.hash {
            return Err(ProduceError::EngineRefused {
                block_number: number,
                reason: format!(
                    "client built block {} on {} instead of {number} on {}",
                    built.payload.number(),
                    built.payload.parent_hash(),
                    parent.hash
                ),
            });
        }
        let record = BlockRecord::from_built(built, parent.hash, term);
        Ok(Some(BuiltBlock { record, timestamp, started, lead_at_start_ms, requested_in, get_payload_in }))
    }

    /// Steps 5 and 6: newPayload (VALID only), the local lease check, the
    /// fenced commit. A refused commit makes this node step down.
    fn validate_and_commit(&mut self, term: u64, built: BuiltBlock) -> Result<CommitStep, ProduceError> {
        let number = built.record.number();
        let executed_in = self.engine(|e| replay::execute(e, &built.record))?;
        self.failpoint(Step::Execute);
        if self.ctx.lease.remaining(term).is_zero() {
            // The lease lapsed while building: never commit without it.
            log::warn(&format!("leader: lease for term {term} lapsed before committing block {number}"));
            return Ok(CommitStep::LeaseLapsed);
        }
        let stored = Arc::new(self.signed(built.record.to_stored()));
        self.failpoint(Step::Commit);
        let commit_started = Instant::now();
        let max_lead = self.settings.max_timestamp_lead;
        let to_commit = Arc::clone(&stored);
        let outcome = self.database(move |store| store.commit_block(term, &to_commit, max_lead))?;
        let committed_in = commit_started.elapsed();
        self.ctx.metrics.database_write_seconds.observe(committed_in);
        let reason = match outcome {
            CommitOutcome::Committed => {
                return Ok(CommitStep::Committed(Box::new(CommittedBlock {
                    built,
                    stored,
                    executed_in,
                    committed_in,
                })));
            }
            CommitOutcome::Fenced { fence_term } => format!("the fence holds term {fence_term}"),
            CommitOutcome::NotHead { head_number, head_hash } => {
                format!("the committed head is {head_number} ({head_hash})")
            }
            CommitOutcome::Clock { database_now_s } => {
                // The timestamp came from this node's reading of the
                // database clock: that reading is wrong. Trust no reading
                // older than this refusal before offering to lead again.
                self.clock.forget();
                self.ctx.lease.set_ready_to_lead(false);
                format!(
                    "timestamp {} is more than --max-timestamp-lead ahead of the database clock ({database_now_s})",
                    built.timestamp
                )
            }
        };
        log::warn(&format!(
            "leader: commit of block {number} ({}) with term {term} refused: {reason}; stepping down",
            built.record.hash()
        ));
        self.ctx.metrics.commit_refusals.inc();
        self.ctx.status.set_problem(Component::Commit, format!("block {number} refused: {reason}"));
        self.ctx.lease.request_step_down();
        self.known_committed = None;
        Ok(CommitStep::Refused)
    }

    /// Steps 7 and 8 and the bookkeeping of a committed block: from here on
    /// the block exists whatever happens next, so nothing here can fail.
    fn after_commit(&mut self, term: u64, parent: &mut Parent, committed: Box<CommittedBlock>) {
        let CommittedBlock { built, stored, executed_in, committed_in } = *committed;
        let (record, number) = (&built.record, built.record.number());
        if log::debug_enabled() {
            let (fcu, get, new, commit, total) = (
                log::millis(built.requested_in),
                log::millis(built.get_payload_in),
                log::millis(executed_in),
                log::millis(committed_in),
                log::millis(built.started.elapsed()),
            );
            let (txs, lead) = (record.payload.transaction_count(), built.lead_at_start_ms);
            log::debug_with(
                &format!(
                    "leader: committed block {number} ({}, {txs} txs, term {term}): forkchoiceUpdated {fcu:.3} ms, \
                     getPayload {get:.3} ms, newPayload {new:.3} ms, commit {commit:.3} ms; build start to commit \
                     {total:.3} ms, block time {lead:.1} ms ahead of the clock at the start",
                    record.hash(),
                ),
                &[
                    ("block", number.into()),
                    ("hash", record.hash().to_string().into()),
                    ("txs", txs.into()),
                    ("term", term.into()),
                    ("forkchoice_updated_ms", fcu.into()),
                    ("get_payload_ms", get.into()),
                    ("new_payload_ms", new.into()),
                    ("commit_ms", commit.into()),
                    ("build_to_commit_ms", total.into()),
                    ("timestamp_lead_at_start_ms", lead.into()),
                ],
            );
        }
        assert_eq!(number, parent.number + 1, "committed a block that does not extend its parent");
        *parent = Parent { number, hash: record.hash(), timestamp: built.timestamp };
        self.last_commit_at = Instant::now();
        self.last_block_started_at = built.started;
        self.pool_watch.forget_idle();
        self.known_committed = Some((ChainHead { number, hash: record.hash() }, Instant::now()));
        self.ctx.watch.committed_head(ChainHead { number, hash: record.hash() });
        self.ctx.watch.committed(Arc::clone(&stored));
        self.ctx.metrics.blocks_produced.inc();
        self.ctx.metrics.committed_head.set_u64(number);
        self.ctx.metrics.transactions_committed.add(record.payload.transaction_count() as u64);
        self.ctx.metrics.block_production_seconds.observe(built.started.elapsed());
        self.report_failover_gap(term);
        self.ctx.status.update(|s| s.committed_head = Some((number, record.hash())));
        self.ctx.publisher.publish(stored);
        self.failpoint(Step::Canonical);
        // The next build's forkchoiceUpdated (with attributes, on this block)
        // makes it canonical one round trip sooner; whenever the producer is
        // about to wait or stop instead, `flush_canonical` does it alone.
        self.pending_canonical = Some(ChainHead { number, hash: record.hash() });
    }

    /// At a term's first commit: the gap since the previous term's last
    /// block, as operators see a failover.
    fn report_failover_gap(&mut self, term: u64) {
        let Some(take_over) = self.took_over.take() else {
            return;
        };
        let Some(gap) = failover_gap_ms(&take_over, self.database_now_ms()) else {
            return;
        };
        log::info(&format!("leader: first block of term {term} committed {gap} ms after the previous term's last"));
        self.ctx.status.update(|s| {
            s.last_failover_ms = Some(gap);
            s.last_failover_at_unix_s = Some(unix_now_s());
        });
    }

    /// Now on the database's clock (ms since the epoch), like the commit
    /// times it is compared with; the wall clock before the first sample.
    fn database_now_ms(&self) -> f64 {
        match self.clock.database_now(Instant::now()) {
            Some((now, _)) => now.as_secs_f64() * 1000.0,
            None => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
        }
    }
}

/// A block built and checked against its parent, not yet executed.
struct BuiltBlock {
    record: BlockRecord,
    timestamp: u64,
    /// When its build started: blocks are paced start to start.
    started: Instant,
    /// Its timestamp minus the database clock at that start (ms).
    lead_at_start_ms: f64,
    requested_in: Duration,
    get_payload_in: Duration,
}

/// A block whose commit returned `committed`.
struct CommittedBlock {
    built: BuiltBlock,
    stored: Arc<crate::block::StoredBlock>,
    executed_in: Duration,
    committed_in: Duration,
}

/// How validate-and-commit ended.
enum CommitStep {
    Committed(Box<CommittedBlock>),
    /// The local lease deadline passed before the commit: nothing committed.
    LeaseLapsed,
    /// The fence or the parent check refused the commit: stop leading.
    Refused,
}

/// A fresh, deterministic prevRandao per build attempt. Varying it makes
/// clients that cache one build per attribute set (EthereumJS) build anew.
/// The client's pending-transaction filter, each call timed for the lease
/// thread like `Producer::engine`'s (while a client hangs, these polls are
/// what times out first).
struct TimedPool<'a> {
    engine: &'a EngineClient,
    lease: &'a LeaseHandle,
}

impl TimedPool<'_> {
    fn timed<T>(&self, call: impl FnOnce(&EngineClient) -> Result<T, EngineError>) -> Result<T, EngineError> {
        self.lease.engine_trouble.started();
        let result = call(self.engine);
        // A JSON-RPC error is an answer too (EthereumJS has no filter: -32601).
        if result.as_ref().map_or_else(|error| error.rpc_code().is_some(), |_| true) {
            self.lease.engine_trouble.answered();
        }
        result
    }
}

impl PendingPool for TimedPool<'_> {
    fn new_pending_transaction_filter(&self) -> Result<String, EngineError> {
        self.timed(EngineClient::new_pending_transaction_filter)
    }

    fn pending_transactions_arrived(&self, filter_id: &str) -> Result<bool, EngineError> {
        self.timed(|engine| engine.pending_transactions_arrived(filter_id))
    }

    fn name(&self) -> &str {
        self.engine.url()
    }
}

fn prev_randao(parent: Hash32, timestamp: u64, term: u64, attempt: u64) -> Hash32 {
    let mut hasher = Sha256::new();
    hasher.update(parent.0);
    hasher.update(timestamp.to_be_bytes());
    hasher.update(term.to_be_bytes());
    hasher.update(attempt.to_be_bytes());
    Hash32(hasher.finalize().into())
}

fn unix_now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prev_randao_differs_per_attempt() {
        let a = prev_randao(Hash32([1; 32]), 10, 1, 1);
        assert_ne!(a, prev_randao(Hash32([1; 32]), 10, 1, 2));
        assert_eq!(a, prev_randao(Hash32([1; 32]), 10, 1, 1));
    }
}
