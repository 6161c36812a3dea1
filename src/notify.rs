//! Learning that the committed head moved: a [`HeadWatch`] that threads can
//! wait on, fed by a PostgreSQL LISTEN thread (and directly by the local
//! producer or syncer, which know first).
//!
//! Notifications are a latency optimisation only: the notifier also reads
//! the head at a fixed interval, so a lost notification costs at most that.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;

use crate::log;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::status::{Component, NodeStatus};
use crate::store::Store;

/// The channel `clnode_commit_block` and the member's append notify on.
pub const CHANNEL: &str = "clnode_blocks";
/// The notifier re-reads the head at least this often.
const HEAD_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Back-off between reconnects while the database is down.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The highest committed block number known to this process.
#[derive(Default)]
pub struct HeadWatch {
    head: Mutex<u64>,
    advanced: Condvar,
}

impl HeadWatch {
    fn lock(&self) -> MutexGuard<'_, u64> {
        self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self) -> u64 {
        *self.lock()
    }

    /// Raises the head (never lowers it) and wakes every waiter.
    pub fn advance_to(&self, number: u64) {
        let mut head = self.lock();
        if number > *head {
            *head = number;
            self.advanced.notify_all();
        }
    }

    /// Waits until the head is above `after` or `timeout` passes; returns
    /// the head it saw last.
    pub fn wait_beyond(&self, after: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut head = self.lock();
        while *head <= after {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            head = self.advanced.wait_timeout(head, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        *head
    }
}

/// The notifier thread: LISTEN on [`CHANNEL`], poll the head as a fallback.
/// Its connection doubles as the node's database liveness check.
pub fn run_notifier(
    postgres_url: String,
    watch: Arc<HeadWatch>,
    status: Arc<NodeStatus>,
    metrics: Arc<Metrics>,
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
        listen(&mut store, &watch, &shutdown);
        if !shutdown.is_requested() {
            status.set_problem(Component::Database, format!("connection to {} lost", store.url()));
        }
    }
}

fn listen(store: &mut Store, watch: &HeadWatch, shutdown: &Shutdown) {
    let mut next_poll = Instant::now();
    while !shutdown.is_requested() {
        if Instant::now() >= next_poll {
            match store.committed_head() {
                Ok(head) => watch.advance_to(head.number),
                Err(error) if error.connection_lost => return,
                Err(_) => {} // no chain recorded yet
            }
            next_poll = Instant::now() + HEAD_POLL_INTERVAL;
        }
        let client = store.client();
        let next = client.notifications().timeout_iter(Duration::from_millis(100)).next();
        match next {
            Ok(Some(notification)) => {
                if let Ok(number) = notification.payload().parse::<u64>() {
                    watch.advance_to(number);
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
        if client.is_closed() {
            return;
        }
    }
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
}
