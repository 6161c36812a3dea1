//! The process's descriptor limit and the connection budget both servers
//! share: at start the soft `RLIMIT_NOFILE` is raised to the hard limit
//! (where the system allows; logged either way), and client connections
//! may take all but [`RESERVED_DESCRIPTORS`] of it. Past the budget a new
//! connection is answered 503 at once and closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Descriptors kept for everything that is not a client connection
/// (database and Redis connections, the execution client, tiny_http's
/// private sockets, files, the gates' polls).
pub const RESERVED_DESCRIPTORS: usize = 512;
/// Connections at most, whatever the descriptor limit.
pub const MAX_CONNECTIONS: usize = 100_000;

const RLIMIT_NOFILE: i32 = 7;

/// `struct rlimit` (Linux, 64-bit `rlim_t`).
#[repr(C)]
struct RLimit {
    current: u64,
    max: u64,
}

extern "C" {
    fn getrlimit(resource: i32, limit: *mut RLimit) -> i32;
    fn setrlimit(resource: i32, limit: *const RLimit) -> i32;
}

fn open_files_limit() -> Option<(u64, u64)> {
    let mut limit = RLimit { current: 0, max: 0 };
    // SAFETY: getrlimit writes one struct rlimit through a valid pointer.
    let result = unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) };
    (result == 0).then_some((limit.current, limit.max))
}

/// Connections allowed under a descriptor limit of `descriptors`.
pub fn connections_for(descriptors: u64) -> usize {
    usize::try_from(descriptors).unwrap_or(usize::MAX).saturating_sub(RESERVED_DESCRIPTORS).clamp(1, MAX_CONNECTIONS)
}

/// Raises the soft descriptor limit to the hard one and sizes the
/// connection budget from the result. Returns the line to log.
pub fn raise_open_files_limit() -> String {
    let Some((soft, hard)) = open_files_limit() else {
        return "cannot read the open-files limit; connections capped by the default budget".to_owned();
    };
    let mut now = soft;
    if hard > soft {
        let wanted = RLimit { current: hard, max: hard };
        // SAFETY: setrlimit reads one struct rlimit through a valid pointer.
        if unsafe { setrlimit(RLIMIT_NOFILE, &wanted) } == 0 {
            now = hard;
        }
    }
    let connections = connections_for(now);
    budget().set_cap(connections);
    if now > soft {
        format!("open-files limit raised from {soft} to {now} (hard limit {hard}); at most {connections} client connections")
    } else {
        format!("open-files limit {now} (hard limit {hard}); at most {connections} client connections")
    }
}

/// Client connections open in the process, against a cap.
pub struct ConnectionBudget {
    open: AtomicUsize,
    cap: AtomicUsize,
}

impl ConnectionBudget {
    pub fn new(cap: usize) -> ConnectionBudget {
        ConnectionBudget { open: AtomicUsize::new(0), cap: AtomicUsize::new(cap) }
    }

    fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// Takes one connection's place, if any is left.
    pub fn try_take(&self) -> bool {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.cap.load(Ordering::Relaxed) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn release(&self) {
        let _ = self.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| open.checked_sub(1));
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// The budget every server of the process shares.
pub fn budget() -> Arc<ConnectionBudget> {
    static BUDGET: OnceLock<Arc<ConnectionBudget>> = OnceLock::new();
    Arc::clone(BUDGET.get_or_init(|| {
        let soft = open_files_limit().map_or(1024, |(soft, _)| soft);
        Arc::new(ConnectionBudget::new(connections_for(soft)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_connections_against_the_descriptor_limit() {
        assert_eq!(connections_for(20_000), 20_000 - RESERVED_DESCRIPTORS);
        assert_eq!(connections_for(100), 1, "never zero");
        assert_eq!(connections_for(u64::MAX), MAX_CONNECTIONS);
        let budget = ConnectionBudget::new(2);
        assert!(budget.try_take() && budget.try_take());
        assert!(!budget.try_take(), "past the cap");
        budget.release();
        assert!(budget.try_take());
        assert_eq!(budget.open(), 2);
        let line = raise_open_files_limit();
        assert!(line.contains("open-files limit"), "{line}");
    }
}
