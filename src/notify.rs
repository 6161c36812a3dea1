//! Learning that the committed head moved: a [`HeadWatch`] that threads can
//! wait on, fed by a PostgreSQL LISTEN thread (and directly by the local
//! producer or syncer, which know first).
//!
//! Notifications are a latency optimisation only: the notifier also reads
//! the head at a fixed interval, so a lost notification costs at most that.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;

use crate::block::StoredBlock;
use crate::codec::Hash32;
use crate::log;
use crate::metrics::Metrics;
use crate::regression::HighWater;
use crate::shutdown::Shutdown;
use crate::status::{Component, NodeStatus};
use crate::store::{ChainHead, Store, StoreError};

/// The channel `clnode_commit_block` and the member's append notify on.
pub const CHANNEL: &str = "clnode_blocks";
/// The notifier re-reads the head at least this often.
const HEAD_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Back-off between reconnects while the database is down.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Committed blocks kept in memory by [`HeadWatch`]: enough for every
/// long poll at the head, where members wait.
pub const RECENT_BLOCKS: usize = 64;
/// ... and at most this many bytes of block text, the newest block always
/// kept: 64 full blocks are about 100 MB, which a member kept after a
/// catch-up (docs/BENCHMARKS.md, M1), where a waiter at the head needs one.
pub const RECENT_BYTES: usize = 2 * 1024 * 1024;

/// The highest committed block number known to this process, and the last
/// few blocks this process committed itself (producer) or stored (syncer).
///
/// The blocks let the API answer a long poll at the head without reading
/// back from PostgreSQL what was just written: that read was the tail of
/// the replication lag (p99 19 ms of a 24 ms commit-to-member path, traced
/// at 10 blocks/s on this project's machine). Only blocks whose commit
/// (leader) or store (member) has returned are ever put here. A leader's are
/// durable; a member's store returns before its WAL is flushed, so a
/// PostgreSQL crash can take back what the watch still holds: blocks the
/// leader committed all the same, which the member stores again.
#[derive(Default)]
pub struct HeadWatch {
    state: Mutex<WatchState>,
    advanced: Condvar,
    /// Called (under the state lock, so never missed) whenever the head
    /// rises: the HTTP gates' wakers, which answer parked long polls.
    on_advance: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

#[derive(Default)]
struct WatchState {
    head: u64,
    /// Consecutive blocks, oldest first, at most [`RECENT_BLOCKS`].
    recent: VecDeque<Arc<StoredBlock>>,
    /// Leader mode: the highest committed head seen, and the database's
    /// regression below it once found (`regression.rs`).
    high_water: HighWater,
}

impl HeadWatch {
    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self) -> u64 {
        self.lock().head
    }

    /// Raises the head (never lowers it) and wakes every waiter.
    pub fn advance_to(&self, number: u64) {
        self.raise(&mut self.lock(), number);
    }

    fn raise(&self, state: &mut WatchState, number: u64) {
        if number > state.head {
            state.head = number;
            self.advanced.notify_all();
            self.wake_subscribers();
        }
    }

    /// Calls `wake` whenever the head rises (it must be cheap and never
    /// block: it runs with the watch locked). Bounded by the servers that
    /// register, one each.
    pub fn on_advance(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.on_advance.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(wake);
    }

    /// `block` is committed (its commit returned): remember it and raise the
    /// head to it. A block that does not follow the last one remembered (a
    /// new term, a restart) starts the run afresh.
    pub fn committed(&self, block: Arc<StoredBlock>) {
        let mut state = self.lock();
        if state.high_water.regression().is_some() {
            return;
        }
        if state.recent.back().is_some_and(|last| last.number + 1 != block.number) {
            state.recent.clear();
        }
        while state.recent.len() >= RECENT_BLOCKS
            || !state.recent.is_empty() && recent_bytes(&state.recent) + block.text_bytes() > RECENT_BYTES
        {
            state.recent.pop_front();
        }
        let number = block.number;
        state.recent.push_back(block);
        if number <= state.head {
            // The notifier raised the head first (it reads the database
            // the commit just wrote): parked polls waiting for this block
            // in memory are woken now that it is here.
            self.wake_subscribers();
        }
        self.raise(&mut state, number);
    }

    /// The last block kept in memory, if any.
    pub fn recent_head(&self) -> Option<u64> {
        self.lock().recent.back().map(|block| block.number)
    }

    fn wake_subscribers(&self) {
        for wake in self.on_advance.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            wake();
        }
    }

    /// Leader mode: this node committed `head` itself.
    pub fn committed_head(&self, head: ChainHead) {
        self.lock().high_water.committed(head);
    }

    /// Leader mode: the shared database's committed head (and its hash at
    /// the highest height seen, when looked up). Returns the regression the
    /// first time one is found; from then on [`HeadWatch::regression`]
    /// answers, the blocks kept for long polls are dropped, and nothing
    /// more is kept.
    pub fn observe_database_head(
        &self,
        head: ChainHead,
        hash_at_seen: Option<Option<Hash32>>,
        read_started: Instant,
    ) -> Option<String> {
        let mut state = self.lock();
        let found = state.high_water.observe(head, hash_at_seen, read_started);
        if found.is_some() {
            state.recent.clear();
        }
        found
    }

    /// The highest committed head this node has seen (leader mode).
    pub fn highest_seen(&self) -> Option<ChainHead> {
        self.lock().high_water.seen()
    }

    /// Why this node stopped leading and serving: the database went back.
    pub fn regression(&self) -> Option<String> {
        self.lock().high_water.regression().map(str::to_owned)
    }

    /// Blocks `first..=last` if every one of them is remembered.
    pub fn recent_range(&self, first: u64, last: u64) -> Option<Vec<Arc<StoredBlock>>> {
        let state = self.lock();
        let oldest = state.recent.front()?.number;
        if first < oldest || last < first || last > state.recent.back()?.number {
            return None;
        }
        let skip = usize::try_from(first - oldest).ok()?;
        let take = usize::try_from(last - first + 1).ok()?;
        let blocks: Vec<_> = state.recent.iter().skip(skip).take(take).cloned().collect();
        // Consecutive by construction; checked because a gap would be served.
        let consecutive = blocks.iter().zip(first..).all(|(block, expected)| block.number == expected);
        (consecutive && blocks.len() == take).then_some(blocks)
    }

    /// Waits until the head is above `after` or `timeout` passes; returns
    /// the head it saw last.
    pub fn wait_beyond(&self, after: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.head <= after {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self.advanced.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        state.head
    }
}

/// The notifier thread: LISTEN on [`CHANNEL`], poll the head as a fallback.
/// Its connection doubles as the node's database liveness check.
/// `guard`: leader mode, where the database's head must never go below
/// what this node saw committed (`regression.rs`); members repair their own
/// database instead.
pub fn run_notifier(
    postgres_url: String,
    watch: Arc<HeadWatch>,
    status: Arc<NodeStatus>,
    metrics: Arc<Metrics>,
    guard: bool,
    shutdown: Shutdown,
) {
    let mut reported_down = false;
    while !shutdown.is_requested() {
        let mut store = match Store::connect(&postgres_url, "clnode-notifier") {
            Ok(store) => store,
            Err(error) => {
                if !reported_down {
                    log::warn(&format!("notifier: {error}"));
                    reported_down = true;
                }
                status.set_problem(Component::Database, error.to_string());
                metrics.count_error("database");
                shutdown.sleep(RECONNECT_DELAY);
                continue;
            }
        };
        if reported_down {
            log::info("notifier: database reachable again");
        }
        reported_down = false;
        status.clear_problem(Component::Database);
        if let Err(error) = store.client().batch_execute(&format!("LISTEN {CHANNEL}")) {
            log::warn(&format!("notifier: LISTEN failed: {error}"));
            shutdown.sleep(RECONNECT_DELAY);
            continue;
        }
        let observer = HeadObserver { watch: &watch, status: &status, guard };
        listen(&mut store, &observer, &shutdown);
        if !shutdown.is_requested() {
            status.set_problem(Component::Database, format!("connection to {} lost", store.url()));
        }
    }
}

/// What the notifier does with each head it reads.
struct HeadObserver<'a> {
    watch: &'a HeadWatch,
    status: &'a NodeStatus,
    guard: bool,
}

impl HeadObserver<'_> {
    /// Raises the watch, and in leader mode checks the head against the
    /// highest seen: when the database moved past it, the block seen is
    /// looked up (one indexed read per head that moved).
    fn observe(&self, store: &mut Store, head: ChainHead, read_started: Instant) -> Result<(), StoreError> {
        if !self.guard {
            self.watch.advance_to(head.number);
            return Ok(());
        }
        let hash_at_seen = match self.watch.highest_seen() {
            Some(seen) if head.number > seen.number => Some(store.hash_at(seen.number)?),
            _ => None,
        };
        if let Some(reason) = self.watch.observe_database_head(head, hash_at_seen, read_started) {
            log::error(&format!("notifier: {reason}; this node stops leading and serving until an operator acts"));
            self.status.set_problem(Component::Chain, format!("database regressed: {reason}"));
        }
        if self.watch.regression().is_none() {
            self.watch.advance_to(head.number);
        }
        Ok(())
    }
}

fn listen(store: &mut Store, observer: &HeadObserver<'_>, shutdown: &Shutdown) {
    let mut next_poll = Instant::now();
    while !shutdown.is_requested() {
        if Instant::now() >= next_poll {
            let read_started = Instant::now();
            match store.committed_head().and_then(|head| observer.observe(store, head, read_started)) {
                Ok(()) => {}
                Err(error) if error.is_connection_lost() => return,
                Err(_) => {} // no chain recorded yet
            }
            next_poll = Instant::now() + HEAD_POLL_INTERVAL;
        }
        let client = store.client();
        let next = client.notifications().timeout_iter(Duration::from_millis(100)).next();
        match next {
            // A notification only says "read the head now"; the head read
            // checks it like any other.
            Ok(Some(_notification)) => next_poll = Instant::now(),
            Ok(None) => {}
            Err(_) => return,
        }
        if client.is_closed() {
            return;
        }
    }
}

/// The block text the watch holds (`RECENT_BYTES`).
fn recent_bytes(recent: &VecDeque<Arc<StoredBlock>>) -> usize {
    recent.iter().map(|block| block.text_bytes()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_when_the_head_passes_their_mark() {
        let watch = Arc::new(HeadWatch::default());
        watch.advance_to(5);
        assert_eq!(watch.wait_beyond(4, Duration::from_secs(5)), 5, "already beyond: no wait");
        let waiter = {
            let watch = Arc::clone(&watch);
            std::thread::spawn(move || watch.wait_beyond(5, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        watch.advance_to(6);
        assert_eq!(waiter.join().unwrap(), 6);
        watch.advance_to(3);
        assert_eq!(watch.get(), 6, "the head never goes back");
        assert_eq!(watch.wait_beyond(6, Duration::from_millis(10)), 6, "times out");
    }

    fn block(number: u64) -> Arc<StoredBlock> {
        Arc::new(StoredBlock::for_test(number))
    }

    #[test]
    fn recent_blocks_are_served_only_as_a_complete_consecutive_run() {
        let watch = HeadWatch::default();
        assert!(watch.recent_range(1, 1).is_none());
        for number in 1..=3 {
            watch.committed(block(number));
        }
        assert_eq!(watch.get(), 3, "a committed block raises the head");
        let numbers =
            |range: Option<Vec<Arc<StoredBlock>>>| range.map(|b| b.iter().map(|b| b.number).collect::<Vec<_>>());
        assert_eq!(numbers(watch.recent_range(2, 3)), Some(vec![2, 3]));
        assert_eq!(numbers(watch.recent_range(1, 4)), None, "block 4 is not committed");
        assert_eq!(numbers(watch.recent_range(3, 2)), None);
        // A block that does not follow (another term after a gap) restarts the run.
        watch.committed(block(7));
        assert_eq!(numbers(watch.recent_range(3, 3)), None);
        assert_eq!(numbers(watch.recent_range(7, 7)), Some(vec![7]));
        // Bounded: the oldest fall out.
        for number in 8..8 + RECENT_BLOCKS as u64 {
            watch.committed(block(number));
        }
        assert_eq!(numbers(watch.recent_range(7, 7)), None);
        let last = 7 + RECENT_BLOCKS as u64;
        assert_eq!(numbers(watch.recent_range(8, last)).map(|v| v.len()), Some(RECENT_BLOCKS));
        // The head learnt from elsewhere (the notifier) does not invent blocks.
        watch.advance_to(last + 5);
        assert_eq!(numbers(watch.recent_range(last, last + 1)), None);
        // Bounded by bytes as well: full blocks push the oldest out, and one
        // larger than the whole budget is still kept, alone.
        let full = |number: u64, bytes: usize| {
            Arc::new(StoredBlock { payload_json: "x".repeat(bytes), ..(*block(number)).clone() })
        };
        let first = last + 6;
        for number in first..first + 4 {
            watch.committed(full(number, RECENT_BYTES / 3));
        }
        assert_eq!(numbers(watch.recent_range(first + 2, first + 3)), Some(vec![first + 2, first + 3]));
        assert_eq!(numbers(watch.recent_range(first, first + 3)), None);
        watch.committed(full(first + 4, RECENT_BYTES * 2));
        assert_eq!(numbers(watch.recent_range(first + 3, first + 4)), None);
        assert_eq!(numbers(watch.recent_range(first + 4, first + 4)), Some(vec![first + 4]));
    }
}
