//! Idle detection: whether an idle leader's execution client has new
//! pending transactions worth a build.
//!
//! The decision is a small state machine over two client calls, reached
//! through [`PendingPool`] so that it can be tested against a fake client
//! and with an explicit clock (`now`) instead of sleeping.

use std::time::{Duration, Instant};

use crate::engine::{rpc_code, EngineClient, EngineError};
use crate::log;

/// Empty builds in a row before an idle leader trusts the filter alone.
pub const EMPTY_BUILDS_BEFORE_IDLE: u32 = 3;
/// An idle leader still builds this often, whatever the filter says.
pub const IDLE_REBUILD_INTERVAL: Duration = Duration::from_secs(1);
/// The build delay doubles at most this many times (256x) ...
const MAX_STARVED_BUILDS: u32 = 8;
/// ... and never beyond this (half the one-second block time at the clock).
pub const MAX_BUILD_DELAY: Duration = Duration::from_millis(500);

/// How long to let the client build before getPayload: the configured
/// delay, doubled for every build that came back empty although
/// transactions had arrived (`starved`), capped at [`MAX_BUILD_DELAY`]
/// (never below the configured delay). Pure.
///
/// Why: with geth's pool full (5,120 pending at 640 tx/s in P10) its
/// builder did not fill a block within the default 20 ms; every build
/// came back empty and was discarded, arrivals made the leader build again
/// at once, and the chain stopped while the leader stayed healthy.
pub fn build_delay_for(configured: Duration, starved: u32) -> Duration {
    let factor = 1u32 << starved.min(MAX_STARVED_BUILDS);
    configured.saturating_mul(factor).min(MAX_BUILD_DELAY).max(configured)
}

/// The two pool calls idle detection needs from an execution client.
pub trait PendingPool {
    /// `eth_newPendingTransactionFilter`: a filter id.
    fn new_pending_transaction_filter(&self) -> Result<String, EngineError>;
    /// `eth_getFilterChanges`: whether anything arrived since the last poll.
    fn pending_transactions_arrived(&self, filter_id: &str) -> Result<bool, EngineError>;
    /// Names the client in the one log line about a missing filter.
    fn name(&self) -> &str;
}

impl PendingPool for EngineClient {
    fn new_pending_transaction_filter(&self) -> Result<String, EngineError> {
        EngineClient::new_pending_transaction_filter(self)
    }

    fn pending_transactions_arrived(&self, filter_id: &str) -> Result<bool, EngineError> {
        EngineClient::pending_transactions_arrived(self, filter_id)
    }

    fn name(&self) -> &str {
        self.url()
    }
}

/// Tells an idle leader whether its execution client's pool has changed
/// since the last build that found nothing, so that while idle it polls one
/// small filter call per `idle_poll_interval` instead of building and
/// discarding an empty payload (forkchoiceUpdated with attributes, a build
/// in the client, getPayload of a whole payload), which cost clnode about
/// 1.8 % of a core on an idle chain.
///
/// An empty build does not prove an empty pool: geth answers getPayload
/// with its empty payload when the full one is not ready yet (a loaded
/// machine, a big pool). So the leader goes idle only after
/// [`EMPTY_BUILDS_BEFORE_IDLE`] empty builds in a row, all made after the
/// filter existed, and while idle still builds once per
/// [`IDLE_REBUILD_INTERVAL`]: a transaction that slipped past both waits
/// at most that long. Any other doubt (a client without the filter, an
/// error, a filter the client forgot) means "build", the old behaviour.
#[derive(Debug)]
pub struct PoolWatch {
    filter_id: Option<String>,
    /// The client has no pending-transaction filter (EthereumJS 0.10):
    /// build every poll.
    unsupported: bool,
    /// Empty builds in a row since the filter existed and last reported an
    /// arrival (or since the last commit).
    empty_builds: u32,
    last_build_at: Instant,
    /// The filter reported an arrival since the last build.
    arrival_seen: bool,
    /// Empty builds made after an arrival, less commits since (each commit
    /// takes one off, so the delay settles where the client keeps up).
    starved: u32,
}

impl PoolWatch {
    pub fn new(now: Instant) -> PoolWatch {
        PoolWatch {
            filter_id: None,
            unsupported: false,
            empty_builds: 0,
            last_build_at: now,
            arrival_seen: false,
            starved: 0,
        }
    }

    /// Before every build: make sure the filter exists before it.
    pub fn before_build(&mut self, pool: &impl PendingPool, now: Instant) {
        self.last_build_at = now;
        if self.filter_id.is_some() || self.unsupported {
            return;
        }
        // Builds before the filter existed prove nothing about arrivals.
        self.empty_builds = 0;
        match pool.new_pending_transaction_filter() {
            Ok(id) => self.filter_id = Some(id),
            Err(error) if error.rpc_code() == Some(rpc_code::METHOD_NOT_FOUND) => {
                log::info(&format!(
                    "leader: {} has no pending-transaction filter; idle polls build and discard instead",
                    pool.name()
                ));
                self.unsupported = true;
            }
            // Tried again before the next build; the build itself reports
            // a broken client.
            Err(_) => {}
        }
    }

    pub fn found_nothing(&mut self) {
        self.empty_builds = self.empty_builds.saturating_add(1);
        if std::mem::take(&mut self.arrival_seen) {
            self.starved = (self.starved + 1).min(MAX_STARVED_BUILDS);
        }
    }

    /// After a commit or at a new term: build until proven idle again.
    pub fn forget_idle(&mut self) {
        self.empty_builds = 0;
        self.arrival_seen = false;
        self.starved = self.starved.saturating_sub(1);
    }

    /// The delay before getPayload for the next build ([`build_delay_for`]).
    pub fn build_delay(&self, configured: Duration) -> Duration {
        build_delay_for(configured, self.starved)
    }

    /// Right after a commit or an arrival: build. After an empty build:
    /// read (and so drain) the filter first, and build again on an arrival,
    /// until [`EMPTY_BUILDS_BEFORE_IDLE`], or every [`IDLE_REBUILD_INTERVAL`].
    pub fn worth_building(&mut self, pool: &impl PendingPool, now: Instant) -> bool {
        let Some(filter_id) = &self.filter_id else {
            return true;
        };
        if self.empty_builds == 0 {
            return true;
        }
        match pool.pending_transactions_arrived(filter_id) {
            Ok(false) => {
                self.empty_builds < EMPTY_BUILDS_BEFORE_IDLE
                    || now.saturating_duration_since(self.last_build_at) >= IDLE_REBUILD_INTERVAL
            }
            Ok(true) => {
                self.empty_builds = 0;
                self.arrival_seen = true;
                true
            }
            Err(_) => {
                // Most likely a restarted client that forgot the filter
                // (geth also drops one not polled for 5 minutes).
                self.filter_id = None;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::engine::EngineErrorKind;

    /// A pool whose answers the test scripts, counting the calls made.
    struct FakePool {
        /// The answer to the next filter creation.
        filter: RefCell<Result<String, EngineError>>,
        /// Answers to the next polls, in order; empty means "nothing arrived".
        polls: RefCell<Vec<Result<bool, EngineError>>>,
        filters_created: Cell<u32>,
        polls_made: Cell<u32>,
    }

    fn rpc_error(code: i64) -> EngineError {
        EngineError {
            url: "fake".into(),
            method: "eth_test",
            kind: EngineErrorKind::Rpc { code, message: "scripted".into() },
        }
    }

    impl FakePool {
        fn with_filter() -> FakePool {
            FakePool {
                filter: RefCell::new(Ok("0x1".into())),
                polls: RefCell::new(Vec::new()),
                filters_created: Cell::new(0),
                polls_made: Cell::new(0),
            }
        }

        fn without_filter() -> FakePool {
            let pool = FakePool::with_filter();
            *pool.filter.borrow_mut() = Err(rpc_error(rpc_code::METHOD_NOT_FOUND));
            pool
        }

        fn next_polls(&self, answers: Vec<Result<bool, EngineError>>) {
            *self.polls.borrow_mut() = answers;
        }
    }

    impl PendingPool for FakePool {
        fn new_pending_transaction_filter(&self) -> Result<String, EngineError> {
            self.filters_created.set(self.filters_created.get() + 1);
            self.filter.borrow().clone()
        }

        fn pending_transactions_arrived(&self, _filter_id: &str) -> Result<bool, EngineError> {
            self.polls_made.set(self.polls_made.get() + 1);
            let mut polls = self.polls.borrow_mut();
            if polls.is_empty() {
                Ok(false)
            } else {
                polls.remove(0)
            }
        }

        fn name(&self) -> &str {
            "fake"
        }
    }

    #[test]
    fn the_build_delay_doubles_per_starved_build_within_its_bounds() {
        let ms = Duration::from_millis;
        for (configured, starved, expected) in [
            (ms(20), 0, ms(20)),
            (ms(20), 1, ms(40)),
            (ms(20), 4, ms(320)),
            (ms(20), 5, ms(500)),
            (ms(20), 40, ms(500)),
            (ms(1), 8, ms(256)),
            (ms(1), 9, ms(256)),
            (ms(900), 0, ms(900)),
            (ms(900), 3, ms(900)),
        ] {
            assert_eq!(build_delay_for(configured, starved), expected, "{configured:?} after {starved}");
        }
    }

    /// The P10 stall: transactions keep arriving, every build comes back
    /// empty. Each such build doubles the next delay; empty builds without
    /// an arrival (an idle chain) do not; commits bring it down one step each.
    #[test]
    fn empty_builds_while_transactions_arrive_lengthen_the_build_delay() {
        let (pool, start) = (FakePool::with_filter(), Instant::now());
        let mut watch = PoolWatch::new(start);
        let base = Duration::from_millis(20);
        empty_builds(&mut watch, &pool, start, 5);
        assert_eq!(watch.build_delay(base), base, "an idle chain keeps the configured delay");
        for expected in [40, 80, 160] {
            pool.next_polls(vec![Ok(true)]);
            assert!(watch.worth_building(&pool, start));
            empty_builds(&mut watch, &pool, start, 1);
            assert_eq!(watch.build_delay(base), Duration::from_millis(expected));
        }
        watch.forget_idle();
        assert_eq!(watch.build_delay(base), Duration::from_millis(80), "a commit takes one step off");
        watch.forget_idle();
        watch.forget_idle();
        watch.forget_idle();
        assert_eq!(watch.build_delay(base), base);
    }

    /// Builds once and finds nothing, `times` times, all at `at`.
    fn empty_builds(watch: &mut PoolWatch, pool: &FakePool, at: Instant, times: u32) {
        for _ in 0..times {
            watch.before_build(pool, at);
            watch.found_nothing();
        }
    }

    #[test]
    fn idle_after_three_empty_builds_until_an_arrival_or_the_rebuild_interval() {
        let start = Instant::now();
        let soon = start + Duration::from_millis(10);
        // (empty builds so far, seconds since the last build, poll answer, build?)
        let table: [(u32, u64, Result<bool, EngineError>, bool); 9] = [
            (0, 0, Ok(false), true),                                  // right after a commit: build
            (1, 0, Ok(false), true),                                  // one empty build proves nothing
            (2, 0, Ok(false), true),                                  // nor two
            (3, 0, Ok(false), false),                                 // three, and the filter is quiet: idle
            (3, 0, Ok(true), true),                                   // an arrival: build
            (3, 1, Ok(false), true),                                  // quiet, but a second has passed: build
            (7, 0, Ok(false), false),                                 // still idle
            (3, 0, Err(rpc_error(-32000)), true),                     // a forgotten filter: build
            (3, 0, Err(rpc_error(rpc_code::METHOD_NOT_FOUND)), true), // any error: build
        ];
        for (row, (empties, seconds, answer, expected)) in table.into_iter().enumerate() {
            let pool = FakePool::with_filter();
            let mut watch = PoolWatch::new(start);
            empty_builds(&mut watch, &pool, start, empties);
            pool.next_polls(vec![answer]);
            let now = if seconds == 0 { soon } else { start + Duration::from_secs(seconds) };
            assert_eq!(watch.worth_building(&pool, now), expected, "row {row}");
            let polled = empties > 0;
            assert_eq!(pool.polls_made.get(), u32::from(polled), "row {row}: polls made");
        }
    }

    #[test]
    fn an_arrival_restarts_the_count_and_a_commit_forgets_idleness() {
        let start = Instant::now();
        let pool = FakePool::with_filter();
        let mut watch = PoolWatch::new(start);
        empty_builds(&mut watch, &pool, start, 3);
        pool.next_polls(vec![Ok(true)]);
        assert!(watch.worth_building(&pool, start), "arrival");
        assert!(watch.worth_building(&pool, start), "count restarted: no poll needed");
        empty_builds(&mut watch, &pool, start, 3);
        assert!(!watch.worth_building(&pool, start));
        watch.forget_idle();
        let polls = pool.polls_made.get();
        assert!(watch.worth_building(&pool, start), "after a commit");
        assert_eq!(pool.polls_made.get(), polls, "no poll right after a commit");
    }

    #[test]
    fn a_client_without_the_filter_always_builds_and_is_asked_once() {
        let start = Instant::now();
        let pool = FakePool::without_filter();
        let mut watch = PoolWatch::new(start);
        empty_builds(&mut watch, &pool, start, 10);
        assert!(watch.worth_building(&pool, start));
        assert_eq!(pool.filters_created.get(), 1, "asked once, then remembered");
        assert_eq!(pool.polls_made.get(), 0);
    }

    #[test]
    fn a_lost_filter_is_created_again_and_builds_before_it_prove_nothing() {
        let start = Instant::now();
        let pool = FakePool::with_filter();
        let mut watch = PoolWatch::new(start);
        empty_builds(&mut watch, &pool, start, 3);
        pool.next_polls(vec![Err(rpc_error(-32000))]);
        assert!(watch.worth_building(&pool, start), "lost filter: build");
        // The next build makes a new filter, and the count starts over.
        empty_builds(&mut watch, &pool, start, 2);
        assert_eq!(pool.filters_created.get(), 2);
        assert!(watch.worth_building(&pool, start), "two empty builds after the new filter prove nothing");
        // A filter that could not be made (transient error) means build.
        let broken = FakePool::with_filter();
        *broken.filter.borrow_mut() = Err(rpc_error(-32000));
        let mut watch = PoolWatch::new(start);
        empty_builds(&mut watch, &broken, start, 5);
        assert!(watch.worth_building(&broken, start));
        assert_eq!(broken.filters_created.get(), 5, "tried again before every build");
    }
}
