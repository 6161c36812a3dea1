//! Large answers handed from a handler thread to the gate in memory.
//!
//! Relayed through tiny_http, an answer's body crosses the private unix
//! connection twice (tiny_http's writer copies it in 8 KiB writes, the gate
//! reads it back and copies it whole once more), which for a 2 MB block
//! cost more CPU than rendering it. So the gate tags every request it
//! forwards with a ticket; a handler whose body is at least
//! [`HANDOFF_MIN_BYTES`] leaves the [`Reply`] here under that ticket and
//! lets tiny_http write only a marker answer, and the gate, reading the
//! marker, writes the head tiny_http would have written for the reply
//! (`gate::render_head`, the writer parked polls use) and the body from
//! memory. Bytes on the wire do not change.
//!
//! Bounded: at most [`MAX_WAITING`] replies and [`MAX_WAITING_BYTES`] wait
//! (a handler past either, or without a ticket, writes its answer through
//! tiny_http as before), and a reply nobody took (its request expired in
//! the gate) is dropped after [`ABANDONED_AFTER`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Reply, HANDLER_TIMEOUT};

/// The gate's ticket on a forwarded request (client copies are dropped).
pub(crate) const TICKET_HEADER: &str = "X-Clnode-Ticket";
pub(crate) const TICKET_HEADER_LOWER: &str = "x-clnode-ticket";
/// On tiny_http's marker answer: the reply waits here under this ticket.
pub(crate) const HANDED_OFF_HEADER: &str = "X-Clnode-Handed-Off";

/// Bodies smaller than this go through tiny_http (copying them is cheaper
/// than the table's lock and the head rendered again).
pub const HANDOFF_MIN_BYTES: usize = 32 * 1024;
/// Replies waiting to be taken, at most (a gate takes each at once; only
/// abandoned ones accumulate).
pub const MAX_WAITING: usize = 256;
/// Bytes of bodies waiting to be taken, at most (a page is at most
/// 64 MiB; sixteen workers' worth in flight stay below this).
pub const MAX_WAITING_BYTES: usize = 1024 * 1024 * 1024;
/// A reply not taken within this long belongs to a request the gate gave
/// up on (it answered 504 at [`HANDLER_TIMEOUT`]).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(2 * HANDLER_TIMEOUT.as_secs() + 1);

/// Replies waiting for their gate, by ticket.
pub struct Handoffs {
    waiting: Mutex<HashMap<u64, (Instant, Reply)>>,
    taken: AtomicU64,
    max_waiting: usize,
    max_waiting_bytes: usize,
}

impl Default for Handoffs {
    fn default() -> Handoffs {
        Handoffs::with_limits(MAX_WAITING, MAX_WAITING_BYTES)
    }
}

impl Handoffs {
    fn with_limits(max_waiting: usize, max_waiting_bytes: usize) -> Handoffs {
        Handoffs { waiting: Mutex::default(), taken: AtomicU64::new(0), max_waiting, max_waiting_bytes }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, (Instant, Reply)>> {
        // A panic elsewhere cannot leave the map half-written.
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leaves `reply` for the gate under `ticket`; false (keep the reply
    /// and write it through tiny_http) when the table is full by count or
    /// bytes. Abandoned replies are dropped first (the table is small:
    /// one entry per request in flight, normally).
    pub fn leave(&self, ticket: u64, reply: &Reply) -> bool {
        let now = Instant::now();
        let mut waiting = self.lock();
        waiting.retain(|_, (left, _)| now.saturating_duration_since(*left) < ABANDONED_AFTER);
        let bytes: usize = waiting.values().map(|(_, waiting)| waiting.body.len()).sum();
        if waiting.len() >= self.max_waiting || bytes.saturating_add(reply.body.len()) > self.max_waiting_bytes {
            return false;
        }
        waiting.insert(ticket, (now, reply.clone()));
        true
    }

    /// The reply left under `ticket`, once.
    pub fn take(&self, ticket: u64) -> Option<Reply> {
        let reply = self.lock().remove(&ticket).map(|(_, reply)| reply);
        if reply.is_some() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        reply
    }

    /// Replies the gate took from here so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().len()
    }
}

/// The ticket the gate put on a request, from its header value.
pub(crate) fn parse_ticket(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn reply(bytes: usize) -> Reply {
        Reply::json_bytes(200, Arc::from(vec![b'x'; bytes]))
    }

    #[test]
    fn a_reply_is_taken_once_by_its_ticket_and_the_table_is_bounded() {
        let handoffs = Handoffs::default();
        assert!(handoffs.leave(7, &reply(HANDOFF_MIN_BYTES)));
        assert!(handoffs.take(8).is_none(), "another ticket's reply is never given");
        assert_eq!(handoffs.take(7).map(|r| r.body.len()), Some(HANDOFF_MIN_BYTES));
        assert!(handoffs.take(7).is_none(), "taken once");
        for ticket in 0..MAX_WAITING as u64 {
            assert!(handoffs.leave(ticket, &reply(1)));
        }
        assert!(!handoffs.leave(u64::MAX, &reply(1)), "full (none abandoned long enough): written through tiny_http");
        assert_eq!(handoffs.waiting(), MAX_WAITING);
        let handoffs = Handoffs::with_limits(MAX_WAITING, 1000);
        assert!(handoffs.leave(1, &reply(500)));
        assert!(!handoffs.leave(2, &reply(501)), "full by bytes");
        assert!(handoffs.leave(3, &reply(500)));
    }

    #[test]
    fn tickets_parse_strictly() {
        assert_eq!(parse_ticket(" 42"), Some(42));
        assert_eq!(parse_ticket("-1"), None);
        assert_eq!(parse_ticket("x"), None);
    }
}
