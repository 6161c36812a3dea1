//! How far behind its sync source a member is, in blocks and in time:
//! what `/health`, `clnode_sync_lag_*` and a balancer's readiness threshold
//! (`lag_limit.rs`) read. Pure: every event comes with its instant, so the
//! rules are table-tested without clocks or sockets.
//!
//! What the member knows is what its source's answers told it. Each answer
//! carries the source's committed head (`head` in the page); the member
//! knows nothing about the source between answers, except one thing: a
//! long poll under way is a promise. The source answers it as soon as a
//! block after the member's head is committed, and with an empty page at
//! the end of its wait. So while a poll is under way and not overdue, no
//! answer means no new block; once it is overdue (its wait plus
//! [`ANSWER_GRACE`] has passed with no answer: the source or the path to it
//! is down, stopped or partitioned), the member cannot tell how far behind
//! it is, and counts the time since it last knew it held the head.
//!
//! Definitions (the numbers /health shows):
//! - `lag_blocks` = the head the source last reported − the member's
//!   stored head (0 when the member holds it, or before any answer).
//! - `lag_ms`:
//!   - behind (`lag_blocks` > 0): now − the arrival of the first answer
//!     that reported the oldest block the member does not hold yet. That
//!     block was committed before the answer came, so this is a lower bound
//!     of the block's age on the member's clock, short of the answer's
//!     transit time;
//!   - at the reported head with a poll under way and not overdue: 0;
//!   - at the reported head otherwise (the poll overdue, a request failed,
//!     or the member waits before asking again): now − the arrival of the
//!     last answer whose head the member holds ("last known in step"). A
//!     member cut off from its source therefore shows a growing `lag_ms`
//!     at most `--sync-wait` + [`ANSWER_GRACE`] after its last answer, even
//!     though it cannot count the blocks it misses.
//!
//! Both are the member's view of its *source*: a member syncing from
//! another member is measured against that member's head.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How much later than its wait a long poll's answer may come before the
/// member counts it as overdue: the source's deadline sweeps (50 ms), the
/// page's rendering and the transit, with room for a loaded machine.
pub const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// Heads reported above the member's own that are remembered with their
/// arrival (a member far behind sees one per page). Past it, the newest
/// entry takes the later head and keeps its earlier arrival, which can
/// only make `lag_ms` larger, never smaller.
pub const MAX_PENDING_HEADS: usize = 64;

/// The member's lag at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// The head the source last reported; `None` before its first answer.
    pub source_head: Option<u64>,
    pub blocks: u64,
    pub ms: u64,
    /// At the reported head, but the source's answer is overdue (or no
    /// request is under way): `ms` counts from the last known in-step
    /// instant, not from a known missing block.
    pub unconfirmed: bool,
}

/// What the member has learnt from its source's answers; see the module's
/// definitions.
#[derive(Debug, Clone)]
pub struct LagClock {
    /// The head the last answer reported, and when that answer arrived.
    last_answer: Option<(u64, Instant)>,
    /// Reported heads above the member's stored head, oldest first, each
    /// with the arrival of the first answer that reported it (heads rising).
    pending: VecDeque<(u64, Instant)>,
    /// The arrival of the last answer whose head the member holds (the
    /// node's start before any).
    in_step_at: Instant,
    /// The request under way and by when its answer is due.
    answer_due: Option<Instant>,
}

impl LagClock {
    pub fn new(started: Instant) -> LagClock {
        LagClock { last_answer: None, pending: VecDeque::new(), in_step_at: started, answer_due: None }
    }

    /// A request for the blocks after the member's fetch cursor left at
    /// `now`, with the long-poll `wait` (zero for a source that does not
    /// wait).
    pub fn asked(&mut self, now: Instant, wait: Duration) {
        self.answer_due = Some(now + wait + ANSWER_GRACE);
    }

    /// The request failed (no answer, an error status, a page too large):
    /// nothing learnt, and no answer is due any more.
    pub fn failed(&mut self) {
        self.answer_due = None;
    }

    /// An answer reporting the source's `head` arrived at `now`; the member
    /// holds `stored`.
    pub fn answered(&mut self, now: Instant, head: u64, stored: u64) {
        self.answer_due = None;
        self.last_answer = Some((head, now));
        if head <= stored {
            self.in_step_at = now;
            self.pending.clear();
            return;
        }
        let full = self.pending.len() >= MAX_PENDING_HEADS;
        match self.pending.back_mut() {
            Some((last, _)) if *last >= head => {} // known already, since earlier
            Some((last, _)) if full => *last = head,
            _ => self.pending.push_back((head, now)),
        }
    }

    /// The member now holds `stored` (executed and stored).
    pub fn stored(&mut self, stored: u64) {
        while self.pending.front().is_some_and(|(head, _)| *head <= stored) {
            self.pending.pop_front();
        }
        // It holds what the source had when its last answer came.
        if let Some((_, arrived)) = self.last_answer.filter(|(head, _)| *head <= stored) {
            self.in_step_at = self.in_step_at.max(arrived);
        }
    }

    /// The lag at `now` of a member holding `stored`.
    pub fn lag(&self, now: Instant, stored: u64) -> Lag {
        let source_head = self.last_answer.map(|(head, _)| head);
        let blocks = source_head.map_or(0, |head| head.saturating_sub(stored));
        let since = |at: Instant| u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX);
        if blocks > 0 {
            // The oldest reported head above the member's; the last answer's
            // arrival if none was kept (a member whose store went back).
            let first = self.pending.iter().find(|(head, _)| *head > stored).map(|(_, at)| *at);
            let ms = first.map_or_else(|| since(self.in_step_at), since);
            return Lag { source_head, blocks, ms, unconfirmed: false };
        }
        if self.answer_due.is_some_and(|due| now <= due) {
            return Lag { source_head, blocks, ms: 0, unconfirmed: false };
        }
        Lag { source_head, blocks, ms: since(self.in_step_at), unconfirmed: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// One step of a member's life and the lag expected right after it.
    enum Step {
        Asked,
        Answered(u64, u64),
        Failed,
        Stored(u64),
    }

    #[test]
    fn lag_follows_the_definitions() {
        use Step::*;
        // (name, steps with their time in ms, stored head, time of the check, expected lag)
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, &[(u64, Step)], u64, u64, (Option<u64>, u64, u64, bool))] = &[
            ("before any answer: unknown, counted from the start", &[], 0, 700, (None, 0, 700, true)),
            ("first poll under way", &[(0, Asked)], 0, 700, (None, 0, 0, false)),
            ("in step, poll under way", &[(0, Answered(10, 10)), (1, Asked)], 10, 4000, (Some(10), 0, 0, false)),
            (
                "in step, poll overdue: time since the last answer",
                &[(0, Answered(10, 10)), (1, Asked)],
                10,
                6500,
                (Some(10), 0, 6500, true),
            ),
            ("in step, between requests", &[(0, Answered(10, 10))], 10, 300, (Some(10), 0, 300, true)),
            (
                "a request failed",
                &[(0, Answered(10, 10)), (1, Asked), (900, Failed)],
                10,
                1000,
                (Some(10), 0, 1000, true),
            ),
            (
                "behind: since the answer that reported the oldest missing block",
                &[(100, Answered(12, 10)), (200, Answered(15, 10))],
                10,
                1000,
                (Some(15), 5, 900, false),
            ),
            (
                "part-way: the next missing block was reported later",
                &[(100, Answered(12, 10)), (200, Answered(15, 10)), (300, Stored(12))],
                12,
                1000,
                (Some(15), 3, 800, false),
            ),
            (
                "caught up on what was reported, poll under way",
                &[(100, Answered(12, 10)), (150, Stored(12)), (160, Asked)],
                12,
                1000,
                (Some(12), 0, 0, false),
            ),
            (
                "caught up, then cut off: in step as of the answer it caught up to",
                &[(100, Answered(12, 10)), (150, Stored(12)), (160, Asked)],
                12,
                7000,
                (Some(12), 0, 6900, true),
            ),
            (
                "in step as of the last answer that reported the head it reached",
                &[(100, Answered(12, 10)), (200, Answered(12, 11)), (250, Stored(12))],
                12,
                300,
                (Some(12), 0, 100, true),
            ),
            (
                "a source that stops: behind grows whatever the poll",
                &[(100, Answered(12, 10)), (160, Asked)],
                10,
                9000,
                (Some(12), 2, 8900, false),
            ),
            (
                "a fallback source behind the member: in step with it",
                &[(100, Answered(20, 20)), (200, Answered(18, 20)), (210, Asked)],
                20,
                1000,
                (Some(18), 0, 0, false),
            ),
        ];
        for (name, steps, stored, at, (head, blocks, lag_ms, unconfirmed)) in cases {
            let start = Instant::now();
            let mut clock = LagClock::new(start);
            for (t, step) in *steps {
                let now = start + ms(*t);
                match step {
                    Asked => clock.asked(now, WAIT),
                    Answered(head, held) => clock.answered(now, *head, *held),
                    Failed => clock.failed(),
                    Stored(held) => clock.stored(*held),
                }
            }
            let lag = clock.lag(start + ms(*at), *stored);
            let expected = Lag { source_head: *head, blocks: *blocks, ms: *lag_ms, unconfirmed: *unconfirmed };
            assert_eq!(lag, expected, "{name}");
        }
    }

    #[test]
    fn pending_heads_are_bounded_and_only_ever_overstate_the_lag() {
        let start = Instant::now();
        let mut clock = LagClock::new(start);
        for page in 1..=200u64 {
            clock.answered(start + ms(page), page * 10, 0);
        }
        assert_eq!(clock.pending.len(), MAX_PENDING_HEADS);
        // Past the cap the last entry keeps its earlier arrival.
        clock.stored(1990);
        let lag = clock.lag(start + ms(1000), 1990);
        assert_eq!((lag.blocks, lag.ms), (10, 1000 - u64::try_from(MAX_PENDING_HEADS).unwrap()));
        clock.stored(2000);
        assert_eq!(clock.lag(start + ms(1000), 2000).blocks, 0);
    }
}
