//! How soon the member's fetcher may ask a sync source again: never at once
//! after an answer that came back early and empty (a source past its long
//! poll cap, or one that does not wait), and never sooner than the wait the
//! source asked for with `Retry-After`. Without this, one member beyond a
//! source's long-poll cap sent about 1,400 requests a second.

use std::time::Duration;

/// After an empty answer, the next request starts at least this long after
/// the previous one started. A long poll that waited longer has already
/// paused; only early answers pause here, so a member at the head of a
/// healthy source loses nothing.
pub const EMPTY_ANSWER_FLOOR: Duration = Duration::from_millis(250);
/// The longest `Retry-After` honoured: a source cannot park a member for
/// longer than a long poll could.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The pause before the next request, given how long the last one took,
/// whether its answer had no blocks, and the source's `Retry-After`.
pub fn pause_before_next(elapsed: Duration, empty: bool, retry_after: Option<Duration>) -> Duration {
    let asked = retry_after.map_or(Duration::ZERO, |wait| wait.min(MAX_RETRY_AFTER));
    let floor = if empty { EMPTY_ANSWER_FLOOR.saturating_sub(elapsed) } else { Duration::ZERO };
    asked.max(floor)
}

/// A `Retry-After` header's delay (delta-seconds; an HTTP date is not
/// used by clnode's sources and is ignored, leaving the floor).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_empty_answers_pause_and_full_ones_do_not() {
        let ms = Duration::from_millis;
        let cases = [
            // (elapsed, empty, retry_after, pause)
            (ms(0), true, None, EMPTY_ANSWER_FLOOR),
            (ms(100), true, None, ms(150)),
            (ms(5000), true, None, ms(0)), // a long poll that waited
            (ms(0), false, None, ms(0)),   // blocks: go on at once
            (ms(0), true, Some(ms(2000)), ms(2000)),
            (ms(0), false, Some(ms(2000)), ms(2000)),
            (ms(5000), true, Some(ms(2000)), ms(2000)),
            (ms(0), true, Some(Duration::from_secs(3600)), MAX_RETRY_AFTER),
        ];
        for (elapsed, empty, retry_after, pause) in cases {
            assert_eq!(pause_before_next(elapsed, empty, retry_after), pause, "{elapsed:?} {empty} {retry_after:?}");
        }
    }

    #[test]
    fn retry_after_is_delta_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        for ignored in ["", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999"] {
            assert_eq!(parse_retry_after(ignored), None, "{ignored:?}");
        }
    }
}
