//! A member's readiness threshold for a load balancer: how far behind its
//! sync source (`lag.rs`) a member may be and still answer 200 on
//! `/health`. Past it the member answers 503, the balancer's check takes it
//! out of the pool, and once it has caught up it answers 200 again and
//! comes back; nothing else about the node changes (it keeps syncing).
//!
//! The limits come from the node's flags (`--max-lag-blocks`,
//! `--max-lag-ms`: every reader of its /health, off unless set) and, per
//! request, from `/health?max_lag_blocks=N&max_lag_ms=MS` (each parameter
//! replaces its flag for that answer only), so each balancer can ask for
//! its own threshold without restarting the member. Pure: the decision is
//! [`judge`], table-tested.

use std::fmt;

use super::lag::Lag;
use crate::http::parse_decimal;

/// The largest `max_lag_blocks` (flag or query): far beyond any sensible
/// threshold; it only keeps the value a plain number.
pub const MAX_LAG_BLOCKS_LIMIT: u64 = 1_000_000_000;
/// The largest `max_lag_ms` (flag or query): a day.
pub const MAX_LAG_MS_LIMIT: u64 = 86_400_000;

/// The two thresholds; `None` is not judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LagLimits {
    pub max_blocks: Option<u64>,
    pub max_ms: Option<u64>,
}

impl LagLimits {
    pub fn is_set(&self) -> bool {
        self.max_blocks.is_some() || self.max_ms.is_some()
    }

    /// These limits with the query's `max_lag_blocks` / `max_lag_ms` in
    /// place of their own; an unusable value is the 400's message.
    pub fn with_query(self, pairs: &[(&str, &str)]) -> Result<LagLimits, String> {
        let mut limits = self;
        for (name, value) in pairs {
            let (slot, max) = match *name {
                "max_lag_blocks" => (&mut limits.max_blocks, MAX_LAG_BLOCKS_LIMIT),
                "max_lag_ms" => (&mut limits.max_ms, MAX_LAG_MS_LIMIT),
                _ => continue,
            };
            let number = parse_decimal(name, value, max)?;
            if number == 0 {
                return Err(format!("{name} must be at least 1 (leave it out to not judge it)"));
            }
            *slot = Some(number);
        }
        Ok(limits)
    }
}

/// Why a member is not ready, or that it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    /// Limits are set but no answer has told the member its source's head.
    SourceUnknown,
    BlocksBehind {
        blocks: u64,
        max: u64,
    },
    /// Behind, for longer than allowed.
    TimeBehind {
        ms: u64,
        max: u64,
    },
    /// At the last reported head, but the source has not confirmed it for
    /// longer than allowed (its answer is overdue or its requests fail).
    Unconfirmed {
        ms: u64,
        max: u64,
    },
}

/// Ready unless a set limit is exceeded. Blocks are judged before time: a
/// member both far behind and slow says how many blocks it misses.
pub fn judge(lag: &Lag, limits: LagLimits) -> Verdict {
    if !limits.is_set() {
        return Verdict::Ready;
    }
    if lag.source_head.is_none() {
        return Verdict::SourceUnknown;
    }
    if let Some(max) = limits.max_blocks.filter(|max| lag.blocks > *max) {
        return Verdict::BlocksBehind { blocks: lag.blocks, max };
    }
    match limits.max_ms.filter(|max| lag.ms > *max) {
        Some(max) if lag.unconfirmed => Verdict::Unconfirmed { ms: lag.ms, max },
        Some(max) => Verdict::TimeBehind { ms: lag.ms, max },
        None => Verdict::Ready,
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Verdict::Ready => f.write_str("ready"),
            Verdict::SourceUnknown => {
                f.write_str("not ready: no answer from the sync source yet (its head is unknown)")
            }
            Verdict::BlocksBehind { blocks, max } => {
                write!(f, "not ready: {blocks} blocks behind the sync source (max_lag_blocks {max})")
            }
            Verdict::TimeBehind { ms, max } => {
                write!(f, "not ready: behind the sync source for {ms} ms (max_lag_ms {max})")
            }
            Verdict::Unconfirmed { ms, max } => write!(
                f,
                "not ready: the sync source has not confirmed its head for {ms} ms (its answer is overdue or \
                 failed; max_lag_ms {max})"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(source_head: Option<u64>, blocks: u64, ms: u64, unconfirmed: bool) -> Lag {
        Lag { source_head, blocks, ms, unconfirmed }
    }

    #[test]
    fn verdicts() {
        let off = LagLimits::default();
        let blocks = LagLimits { max_blocks: Some(5), max_ms: None };
        let ms = LagLimits { max_blocks: None, max_ms: Some(2000) };
        let both = LagLimits { max_blocks: Some(5), max_ms: Some(2000) };
        let cases = [
            ("no limits: never judged", lag(None, 900, 90_000, true), off, Verdict::Ready),
            ("limits before any answer", lag(None, 0, 0, false), blocks, Verdict::SourceUnknown),
            ("at the head", lag(Some(9), 0, 0, false), both, Verdict::Ready),
            ("at the block limit", lag(Some(9), 5, 0, false), blocks, Verdict::Ready),
            ("past the block limit", lag(Some(9), 6, 0, false), blocks, Verdict::BlocksBehind { blocks: 6, max: 5 }),
            ("blocks not judged without their limit", lag(Some(9), 600, 100, false), ms, Verdict::Ready),
            ("at the time limit", lag(Some(9), 1, 2000, false), ms, Verdict::Ready),
            ("past the time limit", lag(Some(9), 1, 2001, false), ms, Verdict::TimeBehind { ms: 2001, max: 2000 }),
            ("time not judged without its limit", lag(Some(9), 1, 90_000, false), blocks, Verdict::Ready),
            (
                "cut off from the source",
                lag(Some(9), 0, 6500, true),
                both,
                Verdict::Unconfirmed { ms: 6500, max: 2000 },
            ),
            ("cut off, within the limit", lag(Some(9), 0, 1500, true), both, Verdict::Ready),
            ("blocks are named first", lag(Some(9), 8, 9000, false), both, Verdict::BlocksBehind { blocks: 8, max: 5 }),
        ];
        for (name, lag, limits, expected) in cases {
            assert_eq!(judge(&lag, limits), expected, "{name}");
        }
    }

    #[test]
    fn query_values_replace_the_flags_and_bad_ones_are_refused() {
        let flags = LagLimits { max_blocks: Some(10), max_ms: None };
        let with = |pairs: &[(&str, &str)]| flags.with_query(pairs);
        assert_eq!(with(&[]), Ok(flags));
        assert_eq!(with(&[("format", "json")]), Ok(flags));
        assert_eq!(with(&[("max_lag_blocks", "3")]), Ok(LagLimits { max_blocks: Some(3), max_ms: None }));
        assert_eq!(with(&[("max_lag_ms", "1500")]), Ok(LagLimits { max_blocks: Some(10), max_ms: Some(1500) }));
        for (pairs, message) in [
            (&[("max_lag_blocks", "x")][..], "max_lag_blocks must be a decimal number"),
            (&[("max_lag_blocks", "")][..], "max_lag_blocks must be a decimal number"),
            (&[("max_lag_ms", "-1")][..], "max_lag_ms must be a decimal number"),
            (&[("max_lag_ms", "0")][..], "max_lag_ms must be at least 1"),
            (&[("max_lag_ms", "86400001")][..], "max_lag_ms must be at most 86400000"),
            (&[("max_lag_blocks", "99999999999999999999999")][..], "max_lag_blocks must be a decimal number"),
        ] {
            let error = with(pairs).unwrap_err();
            assert!(error.starts_with(message), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn reasons_name_the_numbers_and_the_limit() {
        let text = Verdict::BlocksBehind { blocks: 12, max: 5 }.to_string();
        assert_eq!(text, "not ready: 12 blocks behind the sync source (max_lag_blocks 5)");
        assert!(Verdict::Unconfirmed { ms: 6500, max: 2000 }.to_string().contains("6500 ms"));
    }
}
