//! One back-off: a delay that doubles per consecutive failure from a first
//! to a last value, optionally scaled by jitter.
//!
//! Jitter spreads nodes that failed together (members of one source that
//! went away at once) so they do not come back in lockstep. It needs no
//! random-number crate: an xorshift seeded from the clock and the node's name
//! is random enough to spread retries, and nothing here is security-relevant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exponent cap: 2^16 times the first delay is beyond any last value used.
const MAX_DOUBLINGS: u32 = 16;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    last: Duration,
    /// `Some`: every delay is scaled by 50-100 %.
    jitter: Option<XorShift>,
}

impl Backoff {
    /// Doubles from `first` to `last`, no jitter.
    pub fn new(first: Duration, last: Duration) -> Backoff {
        Backoff { first, last, jitter: None }
    }

    /// Doubles from `first` to `last`, each delay scaled by 50-100 %, the
    /// jitter seeded from the clock and `name`.
    pub fn with_jitter(first: Duration, last: Duration, name: &str) -> Backoff {
        Backoff { first, last, jitter: Some(XorShift::seeded(name)) }
    }

    /// The delay after `failures` consecutive failures (the first failure
    /// waits `first`); never zero when `first` is not.
    pub fn delay(&mut self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        let base = self.first.saturating_mul(1u32 << exponent).min(self.last);
        match &mut self.jitter {
            None => base,
            Some(random) => {
                let percent = 50 + random.next() % 51;
                base.mul_f64(percent as f64 / 100.0).max(Duration::from_millis(1))
            }
        }
    }
}

/// xorshift64: small, fast, never zero once seeded odd.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn seeded(name: &str) -> XorShift {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(1);
        let mut seed = u64::from(nanos) | 1;
        for byte in name.bytes() {
            seed = seed.rotate_left(5) ^ u64::from(byte);
        }
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_backoff_doubles_to_its_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let delays: Vec<u128> = [0, 1, 2, 3, 6, 7, 100].iter().map(|&n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [50, 50, 100, 200, 1600, 2000, 2000]);
    }

    #[test]
    fn jittered_backoff_stays_within_half_to_whole_of_the_plain_delay() {
        let mut jittered = Backoff::with_jitter(Duration::from_millis(200), Duration::from_secs(30), "member-1");
        let mut plain = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut saw_below_whole = false;
        for failures in 1..40 {
            let base = plain.delay(failures);
            let delay = jittered.delay(failures);
            assert!(
                delay >= base / 2 && delay <= base,
                "failure {failures}: {delay:?} outside [{:?}, {base:?}]",
                base / 2
            );
            saw_below_whole |= delay < base;
        }
        assert!(saw_below_whole, "jitter never moved a delay");
        assert_eq!(plain.delay(u32::MAX), Duration::from_secs(30));
    }
}
