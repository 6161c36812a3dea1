//! The API workers' database connections, shared, most recently used first.
//!
//! Each worker once owned a connection. tiny_http hands requests to its
//! idle workers in turn, so four clients kept all sixteen PostgreSQL
//! backends waking in rotation, each cold: PostgreSQL spent 2.3 times the
//! CPU per query it spends for four steady clients (issue 16, U2). Taking
//! the connection used last keeps as few backends busy as there are
//! requests in flight; the rest sit idle and are reused only under load.

use std::sync::{Mutex, MutexGuard};

/// Idle connections kept, by recency (the last is the warmest).
pub struct Pool<T> {
    idle: Mutex<Vec<T>>,
    max_idle: usize,
}

impl<T> Pool<T> {
    /// A pool that keeps at most `max_idle` idle connections (one per
    /// worker: more are never in use at once).
    pub fn new(max_idle: usize) -> Pool<T> {
        Pool { idle: Mutex::new(Vec::with_capacity(max_idle)), max_idle }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // A worker that panicked cannot leave the list half-changed.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection used last, or a new one from `connect` (connected
    /// outside the lock). The flag says it is new: a failure on it is not
    /// a stale connection to retry, the database is down.
    pub fn take<E>(&self, connect: impl FnOnce() -> Result<T, E>) -> Result<(T, bool), E> {
        let warmest = self.lock().pop();
        match warmest {
            Some(connection) => Ok((connection, false)),
            None => connect().map(|connection| (connection, true)),
        }
    }

    /// A connection that worked, for the next request. Past `max_idle`
    /// it is closed.
    pub fn give_back(&self, connection: T) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(connection);
        }
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_used_last_is_taken_first_and_idle_ones_are_bounded() {
        let pool: Pool<u32> = Pool::new(2);
        let connect = |n: u32| move || Ok::<u32, ()>(n);
        assert_eq!(pool.take(connect(1)), Ok((1, true)), "empty: connect");
        let (second, fresh) = pool.take(connect(2)).unwrap();
        assert!(fresh);
        pool.give_back(1);
        pool.give_back(second);
        assert_eq!(pool.take(connect(9)), Ok((2, false)), "the warmest, not a new one");
        assert_eq!(pool.take(connect(9)), Ok((1, false)));
        assert_eq!(pool.take(|| Err::<u32, &str>("down")), Err("down"), "a failed connect is the caller's error");
        for n in [5, 6, 7] {
            pool.give_back(n);
        }
        assert_eq!(pool.idle(), 2, "the one past max_idle was closed");
        assert_eq!(pool.take(connect(9)), Ok((6, false)));
    }
}
