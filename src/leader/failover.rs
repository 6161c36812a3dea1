//! The failover gap a new leader reports (`/health` `last_failover_ms`,
//! the devnet table's LAST FAILOVER): the gap in the chain across a change
//! of leader, as a block explorer shows it, from the previous term's last
//! block to this term's first (both on the database's clock). Pure; the
//! producer passes the numbers and times.
//!
//! It is no failover at all when the previous term's last block is at or
//! below the first committed head this node read: the chain had stopped
//! before this node started (a restart of the whole cluster), and the gap
//! would only be the time the cluster was down. On a chain that was idle
//! before the change (no transactions, no heartbeat) the gap includes the
//! idle time: no block was missed then, but none was made either.

/// What this node knows when it begins a term that follows another one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TakeOver {
    /// The previous term's last block, and when it was committed (ms since
    /// the epoch, database clock).
    pub previous_block: u64,
    pub previous_committed_ms: f64,
    /// The first committed head this node read after it started.
    pub first_head_seen: u64,
}

/// The gap in whole milliseconds at a first commit at `first_commit_ms`, or
/// `None` when taking over was not a failover (see the module comment).
pub fn failover_gap_ms(take_over: &TakeOver, first_commit_ms: f64) -> Option<u64> {
    if take_over.previous_block <= take_over.first_head_seen {
        return None;
    }
    // Clamped at zero (clock readings are off by a little); `as` saturates
    // at u64::MAX and maps NaN to 0.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let gap = (first_commit_ms - take_over.previous_committed_ms).max(0.0) as u64;
    Some(gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failover_is_a_previous_term_that_committed_while_this_node_ran() {
        let at = |previous_block, previous_committed_ms, first_head_seen| TakeOver {
            previous_block,
            previous_committed_ms,
            first_head_seen,
        };
        let cases = [
            // A SIGKILL under load: the old leader's last block, then the
            // lease's expiry, then the new leader's first block.
            ("kill under load", at(500, 10_000.0, 20), 11_350.0, Some(1_350)),
            ("graceful hand-over", at(500, 10_000.0, 20), 10_060.0, Some(60)),
            // The whole devnet restarted after 74 s down: the previous term's
            // last block is the head this node found when it started. Not a
            // failover (it showed "took 74.58s").
            ("cluster restart", at(500, 10_000.0, 500), 84_580.0, None),
            ("head found at start is newer", at(499, 10_000.0, 500), 84_580.0, None),
            // One block committed after this node started is enough.
            ("one block after start", at(501, 10_000.0, 500), 10_700.0, Some(700)),
            // Clock readings a little off: never negative.
            ("clock jitter", at(500, 10_000.0, 20), 9_990.0, Some(0)),
        ];
        for (name, take_over, first_commit_ms, expected) in cases {
            assert_eq!(failover_gap_ms(&take_over, first_commit_ms), expected, "{name}");
        }
    }
}
