//! The cluster's one time reference: PostgreSQL's clock.
//!
//! Every leader-mode node already depends on the shared database, so its
//! clock is the one all of them agree on (ARCHITECTURE.md, "Timestamps").
//! The producer samples it about once a second (`clock_timestamp()`, with
//! the round trip's midpoint) and reads "now" as the sample's database time
//! plus the *monotonic* time elapsed since the sample: block timestamps
//! follow the database's clock, and a step of this node's wall clock never
//! moves them. The node's wall clock is compared with the sample only to
//! judge the node: one that disagrees by more than `--max-clock-skew` says
//! so on `/health` and does not lead (its logs, its execution client's JWT
//! checks and anything else on the machine read that wrong clock).
//!
//! The decisions are pure functions of a sample and an instant; the
//! producer does the round trip ([`sample_database_clock`]) and acts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::store::{Store, StoreError};

/// How often the producer samples the database clock (standby or leader).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// A sample whose round trip took longer says too little: the database
/// read its clock somewhere in that window. Kept out, the previous sample
/// stays in use.
pub const MAX_SAMPLE_ROUND_TRIP: Duration = Duration::from_millis(250);
/// With no usable sample this recent, the node does not know the time well
/// enough to lead.
pub const MAX_SAMPLE_AGE: Duration = Duration::from_secs(10);
/// Added to half the round trip as the reference's uncertainty: the
/// monotonic clock's rate error over a sample's life (under 1 ms at
/// 100 ppm over 10 s) and scheduling noise around the two clock reads.
const UNCERTAINTY_MARGIN: Duration = Duration::from_millis(10);

/// One reading of the database clock, as seen from this node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    /// The database's clock at the round trip's midpoint, since the epoch.
    pub database: Duration,
    /// This node's wall clock at the same midpoint, seconds since the epoch
    /// (negative before 1970: a clock can be that wrong).
    pub wall_s: f64,
    /// The same midpoint on the monotonic clock.
    pub at: Instant,
    pub round_trip: Duration,
}

impl ClockSample {
    /// How far this node's wall clock is ahead of the database's, in
    /// seconds (negative: behind).
    pub fn offset_s(&self) -> f64 {
        self.wall_s - self.database.as_secs_f64()
    }
}

/// What the samples say about this node's wall clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClockVerdict {
    /// Within `--max-clock-skew` of the database's.
    Agrees { offset_s: f64 },
    /// Further off than `--max-clock-skew`: report it and do not lead.
    Skewed { offset_s: f64 },
    /// No usable sample younger than [`MAX_SAMPLE_AGE`].
    Unknown,
}

impl ClockVerdict {
    pub fn fit_to_lead(self) -> bool {
        matches!(self, ClockVerdict::Agrees { .. })
    }

    /// The `/health` text when the node is not fit; `None` when it is.
    pub fn problem(self, bound: Duration) -> Option<String> {
        match self {
            ClockVerdict::Agrees { .. } => None,
            ClockVerdict::Skewed { offset_s } => Some(format!(
                "wall clock offset {offset_s:+.3} s from PostgreSQL's, beyond --max-clock-skew {} ms; \
                 not leading until it agrees (fix NTP on this machine)",
                bound.as_millis()
            )),
            ClockVerdict::Unknown => Some(format!(
                "no usable reading of PostgreSQL's clock in the last {} s (offset unknown); not leading",
                MAX_SAMPLE_AGE.as_secs()
            )),
        }
    }
}

/// Whether an offset (seconds, either sign) is within `bound`. Not a
/// number is not within anything.
pub fn clock_ok(offset_s: f64, bound: Duration) -> bool {
    offset_s.abs() <= bound.as_secs_f64()
}

/// The timestamp of a block on a parent with `parent_timestamp`, given the
/// reference clock's `now` (since the epoch) and its `uncertainty`:
/// `max(parent + 1, now)` in whole seconds, or `None` while that would be
/// more than `max_lead` ahead of the earliest the reference may really be
/// (the caller waits). The database refuses a block whose timestamp is
/// more than `max_lead` ahead of its `now()` at the commit, which comes
/// after this; taking off the uncertainty keeps that refusal for clocks
/// that are really wrong.
pub fn next_block_timestamp(
    parent_timestamp: u64,
    now: Duration,
    uncertainty: Duration,
    max_lead: Duration,
) -> Option<u64> {
    let timestamp = parent_timestamp.saturating_add(1).max(now.as_secs());
    let latest = now.saturating_sub(uncertainty).saturating_add(max_lead);
    (u128::from(timestamp) * 1000 <= latest.as_millis()).then_some(timestamp)
}

/// How long from `now` until [`next_block_timestamp`] allows a block on a
/// parent with `parent_timestamp` (zero: it does now): the instant the
/// next whole second, less `max_lead`, is behind the earliest the
/// reference may really be. The producer sleeps exactly this long (within
/// its bound) instead of looking again at fixed intervals, so that under
/// sustained load each build starts when block time allows it, not up to
/// a recheck interval later.
pub fn wait_for_next_timestamp(
    parent_timestamp: u64,
    now: Duration,
    uncertainty: Duration,
    max_lead: Duration,
) -> Duration {
    let timestamp = parent_timestamp.saturating_add(1).max(now.as_secs());
    let allowed_at = Duration::from_secs(timestamp).saturating_add(uncertainty).saturating_sub(max_lead);
    allowed_at.saturating_sub(now)
}

/// The samples the producer keeps, and what follows from them.
#[derive(Debug)]
pub struct ClockReference {
    bound: Duration,
    sample: Option<ClockSample>,
    last_attempt: Option<Instant>,
}

impl ClockReference {
    /// `bound` is `--max-clock-skew`.
    pub fn new(bound: Duration) -> ClockReference {
        ClockReference { bound, sample: None, last_attempt: None }
    }

    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// A new sample should be taken: none was tried for [`SAMPLE_INTERVAL`].
    pub fn due(&self, now: Instant) -> bool {
        self.last_attempt.is_none_or(|at| now.saturating_duration_since(at) >= SAMPLE_INTERVAL)
    }

    /// Notes an attempt (failed ones too, so a failing database is not
    /// asked more often than once a second from here).
    pub fn attempted(&mut self, now: Instant) {
        self.last_attempt = Some(now);
    }

    /// Keeps `sample` unless its round trip was too slow to say much;
    /// returns whether it was kept.
    pub fn record(&mut self, sample: ClockSample) -> bool {
        let usable = sample.round_trip <= MAX_SAMPLE_ROUND_TRIP;
        if usable {
            self.sample = Some(sample);
        }
        usable
    }

    /// Drops the sample (the database refused a timestamp this node took
    /// from it): nothing is trusted until a fresh one.
    pub fn forget(&mut self) {
        self.sample = None;
        self.last_attempt = None;
    }

    fn fresh_sample(&self, now: Instant) -> Option<&ClockSample> {
        self.sample.as_ref().filter(|s| now.saturating_duration_since(s.at) <= MAX_SAMPLE_AGE)
    }

    pub fn verdict(&self, now: Instant) -> ClockVerdict {
        match self.fresh_sample(now) {
            None => ClockVerdict::Unknown,
            Some(sample) if clock_ok(sample.offset_s(), self.bound) => {
                ClockVerdict::Agrees { offset_s: sample.offset_s() }
            }
            Some(sample) => ClockVerdict::Skewed { offset_s: sample.offset_s() },
        }
    }

    /// The database's time at `now` (since the epoch) and how far off it
    /// may be; `None` without a fresh sample.
    pub fn database_now(&self, now: Instant) -> Option<(Duration, Duration)> {
        let sample = self.fresh_sample(now)?;
        let elapsed = now.saturating_duration_since(sample.at);
        Some((sample.database.saturating_add(elapsed), sample.round_trip / 2 + UNCERTAINTY_MARGIN))
    }
}

/// One round trip to read the database's clock, timed on the monotonic
/// clock; this node's wall clock is read once, at the start, and moved to
/// the midpoint on the monotonic clock (so a wall-clock step during the
/// round trip cannot skew the midpoint).
pub fn sample_database_clock(store: &mut Store) -> Result<ClockSample, StoreError> {
    let wall_s = wall_clock_s();
    let started = Instant::now();
    let database = store.database_time()?;
    let round_trip = started.elapsed();
    let half = round_trip / 2;
    Ok(ClockSample { database, wall_s: wall_s + half.as_secs_f64(), at: started + half, round_trip })
}

/// This node's wall clock in seconds since the epoch (negative before it).
fn wall_clock_s() -> f64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(database_s: f64, wall_s: f64, at: Instant, round_trip_ms: u64) -> ClockSample {
        ClockSample {
            database: Duration::from_secs_f64(database_s),
            wall_s,
            at,
            round_trip: Duration::from_millis(round_trip_ms),
        }
    }

    #[test]
    fn clock_ok_is_a_symmetric_inclusive_bound() {
        let second = Duration::from_secs(1);
        let table = [
            (0.0, true),
            (0.999, true),
            (1.0, true),
            (-1.0, true),
            (1.001, false),
            (-1.001, false),
            (3600.0, false),
            (-3600.0, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
        ];
        for (offset, expected) in table {
            assert_eq!(clock_ok(offset, second), expected, "{offset}");
        }
    }

    #[test]
    fn block_time_is_the_parents_plus_one_or_now_within_the_lead_cap() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let lead = s(2);
        // (parent, now, uncertainty, expected)
        let table = [
            (100, ms(200_500), ms(10), Some(200)),  // parent long ago: now
            (200, ms(200_500), ms(10), Some(201)),  // same second: parent + 1
            (201, ms(200_500), ms(10), Some(202)),  // 202 <= 200.49 + 2
            (202, ms(200_500), ms(10), None),       // 203 > 202.49: wait
            (201, ms(200_005), ms(10), None),       // 202 > 199.995 + 2: the uncertainty costs 5 ms
            (201, ms(200_010), ms(10), Some(202)),  // exactly at the cap
            (0, ms(0), ms(50), Some(1)),            // the epoch: 1 <= 0 + 2 (never below zero)
            (u64::MAX - 1, ms(1_000), ms(0), None), // absurd parent: wait, never wrap
            (u64::MAX, ms(1_000), ms(0), None),     // saturates rather than overflowing
        ];
        for (parent, now, uncertainty, expected) in table {
            assert_eq!(next_block_timestamp(parent, now, uncertainty, lead), expected, "{parent} {now:?}");
        }
        // A lead cap of zero: only a timestamp at or before the earliest now.
        assert_eq!(next_block_timestamp(99, ms(100_500), ms(10), Duration::ZERO), Some(100));
        assert_eq!(next_block_timestamp(100, ms(100_500), ms(10), Duration::ZERO), None);
    }

    #[test]
    fn the_wait_ends_when_the_next_timestamp_is_allowed() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let lead = s(2);
        // (parent, now, uncertainty, expected wait)
        let table = [
            (100, ms(200_500), ms(10), ms(0)),   // parent long ago: build now
            (201, ms(200_500), ms(10), ms(0)),   // 202 within the lead: build now
            (202, ms(200_500), ms(10), ms(510)), // 203 allowed at 201.010
            (202, ms(201_009), ms(10), ms(1)),   // one millisecond before it
            (202, ms(201_010), ms(10), ms(0)),   // exactly at the cap
            (202, ms(201_300), ms(10), ms(0)),   // past it
            (202, ms(200_500), ms(0), ms(500)),  // no uncertainty: at the second's turn
            (u64::MAX, ms(1_000), ms(0), Duration::from_secs(u64::MAX).saturating_sub(s(2)).saturating_sub(ms(1_000))),
        ];
        for (parent, now, uncertainty, expected) in table {
            let wait = wait_for_next_timestamp(parent, now, uncertainty, lead);
            assert_eq!(wait, expected, "{parent} {now:?}");
            // Consistent with the decision: allowed after the wait, not a
            // millisecond before it.
            if parent < u64::MAX / 2 {
                assert!(next_block_timestamp(parent, now + wait, uncertainty, lead).is_some(), "{parent} {now:?}");
                if !wait.is_zero() {
                    let before = now + wait - ms(1);
                    assert_eq!(next_block_timestamp(parent, before, uncertainty, lead), None, "{parent} {now:?}");
                }
            }
        }
        // A lead cap of zero: the next second's turn plus the uncertainty.
        assert_eq!(wait_for_next_timestamp(100, ms(100_500), ms(10), Duration::ZERO), ms(510));
    }

    #[test]
    fn the_verdict_follows_the_freshest_usable_sample() {
        let t0 = Instant::now();
        let mut clock = ClockReference::new(Duration::from_secs(1));
        assert_eq!(clock.verdict(t0), ClockVerdict::Unknown);
        assert!(clock.due(t0));
        clock.attempted(t0);
        assert!(!clock.due(t0 + Duration::from_millis(999)));
        assert!(clock.due(t0 + SAMPLE_INTERVAL));
        // An hour ahead.
        assert!(clock.record(sample(1000.0, 4600.0, t0, 2)));
        assert_eq!(clock.verdict(t0), ClockVerdict::Skewed { offset_s: 3600.0 });
        assert!(!clock.verdict(t0).fit_to_lead());
        // A slow round trip says too little: the previous sample stays.
        assert!(!clock.record(sample(1001.0, 1001.0, t0, 251)));
        assert_eq!(clock.verdict(t0), ClockVerdict::Skewed { offset_s: 3600.0 });
        // Fixed: a quarter second behind is within the bound.
        assert!(clock.record(sample(1002.0, 1001.75, t0, 3)));
        assert_eq!(clock.verdict(t0), ClockVerdict::Agrees { offset_s: -0.25 });
        assert!(clock.verdict(t0).fit_to_lead());
        // Too old: unknown again.
        assert_eq!(clock.verdict(t0 + MAX_SAMPLE_AGE + Duration::from_millis(1)), ClockVerdict::Unknown);
        clock.forget();
        assert_eq!(clock.verdict(t0), ClockVerdict::Unknown);
        assert!(clock.due(t0));
    }

    #[test]
    fn database_time_runs_on_the_monotonic_clock_from_the_sample() {
        let t0 = Instant::now();
        let mut clock = ClockReference::new(Duration::from_secs(1));
        assert_eq!(clock.database_now(t0), None);
        // The wall clock an hour off changes nothing about the database's time.
        clock.record(sample(1000.0, 4600.0, t0, 40));
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(clock.database_now(later), Some((Duration::from_millis(1_001_500), Duration::from_millis(30))));
        assert_eq!(clock.database_now(t0 + MAX_SAMPLE_AGE + Duration::from_secs(1)), None);
    }

    #[test]
    fn problems_name_the_offset_and_the_bound() {
        let bound = Duration::from_secs(1);
        assert_eq!(ClockVerdict::Agrees { offset_s: 0.2 }.problem(bound), None);
        let text = ClockVerdict::Skewed { offset_s: 3600.0 }.problem(bound).unwrap_or_default();
        assert!(text.starts_with("wall clock offset +3600.000 s from PostgreSQL's"), "{text}");
        assert!(text.contains("--max-clock-skew 1000 ms"), "{text}");
        let text = ClockVerdict::Unknown.problem(bound).unwrap_or_default();
        assert!(text.contains("offset unknown"), "{text}");
    }
}
