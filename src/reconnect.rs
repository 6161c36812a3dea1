//! A connection made on first use and made again after it was lost.
//!
//! Every role that talks to PostgreSQL or Redis holds one connection of its
//! own and must survive the service going away: connect lazily (the service
//! may come up after clnode), and after a failure that broke the connection,
//! drop it so that the next use connects afresh. [`Reconnecting`] is that
//! rule, once; the roles only say when a connection is no longer to be used.

use std::fmt;

/// An error that can tell whether the connection it came from is broken.
pub trait ConnectionError {
    /// True when the connection must not be used again (reconnect first).
    fn is_connection_lost(&self) -> bool;
}

/// A resource (a connection) that is connected on first use and again after
/// [`invalidate`](Reconnecting::invalidate).
pub struct Reconnecting<T, E> {
    /// Boxed so the holder's type does not name the closure; `Send` because
    /// roles move their connections into their threads.
    connect: Box<dyn FnMut() -> Result<T, E> + Send>,
    resource: Option<T>,
}

impl<T, E> Reconnecting<T, E> {
    /// Nothing is connected until the first [`get`](Reconnecting::get).
    pub fn new(connect: impl FnMut() -> Result<T, E> + Send + 'static) -> Self {
        Reconnecting { connect: Box::new(connect), resource: None }
    }

    /// The connection, connecting first if there is none. A failed connect
    /// leaves none, so the next call tries again.
    pub fn get(&mut self) -> Result<&mut T, E> {
        let resource = match self.resource.take() {
            Some(resource) => resource,
            None => (self.connect)()?,
        };
        Ok(self.resource.insert(resource))
    }

    /// Drops the connection; the next [`get`](Reconnecting::get) connects.
    pub fn invalidate(&mut self) {
        self.resource = None;
    }

    /// Drops the connection if `error` says it is broken; other errors (a
    /// refused statement, a corrupt value) leave a working connection in
    /// place. Returns whether it dropped it.
    pub fn drop_if_lost(&mut self, error: &impl ConnectionError) -> bool {
        let lost = error.is_connection_lost();
        if lost {
            self.invalidate();
        }
        lost
    }

    /// Whether a connection is held now (it may still turn out broken).
    pub fn is_connected(&self) -> bool {
        self.resource.is_some()
    }
}

impl<T, E> fmt::Debug for Reconnecting<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting").field("connected", &self.is_connected()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Failure {
        lost: bool,
    }

    impl ConnectionError for Failure {
        fn is_connection_lost(&self) -> bool {
            self.lost
        }
    }

    /// A connector that counts its calls and hands out the call number.
    fn counting() -> (Arc<AtomicU32>, Reconnecting<u32, Failure>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&calls);
        (calls, Reconnecting::new(move || Ok(counter.fetch_add(1, Ordering::SeqCst) + 1)))
    }

    #[test]
    fn connects_once_on_first_use() {
        let (calls, mut connection) = counting();
        assert!(!connection.is_connected());
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing connects before the first use");
        assert_eq!(connection.get(), Ok(&mut 1));
        assert_eq!(connection.get(), Ok(&mut 1));
        *connection.get().unwrap() = 7;
        assert_eq!(connection.get(), Ok(&mut 7), "the same resource is handed out");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn reconnects_after_invalidate_or_a_lost_connection_only() {
        let (calls, mut connection) = counting();
        assert_eq!(connection.get(), Ok(&mut 1));
        connection.invalidate();
        assert!(!connection.is_connected());
        assert_eq!(connection.get(), Ok(&mut 2));
        assert!(!connection.drop_if_lost(&Failure { lost: false }), "a working connection is kept");
        assert_eq!(connection.get(), Ok(&mut 2));
        assert!(connection.drop_if_lost(&Failure { lost: true }));
        assert_eq!(connection.get(), Ok(&mut 3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_failed_connect_passes_through_and_is_tried_again() {
        let attempts = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&attempts);
        let mut connection = Reconnecting::new(move || match counter.fetch_add(1, Ordering::SeqCst) {
            0 => Err(Failure { lost: true }),
            n => Ok(n),
        });
        assert_eq!(connection.get(), Err(Failure { lost: true }));
        assert!(!connection.is_connected(), "a failed connect leaves nothing behind");
        assert_eq!(connection.get(), Ok(&mut 1));
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }
}
