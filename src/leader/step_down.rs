//! What a leader does after a failure while it holds the lease: a pure
//! decision over the failure's kind and how many failures came in a row.
//!
//! The producer classifies its error ([`ProduceError::failure_kind`]) and
//! acts on the answer; the rule itself lives here so that every case has a
//! row in a table test.
//!
//! [`ProduceError::failure_kind`]: super::error::ProduceError::failure_kind

/// Consecutive execution-client failures after which the leader steps down.
pub const MAX_CONSECUTIVE_ENGINE_FAILURES: u32 = 5;

/// What kind of failure a leader hit, as far as the decision cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// An execution-client call ran into its (spec-length) timeout: a hung
    /// client.
    EngineHung,
    /// Any other execution-client failure (refused, unreachable, malformed,
    /// a replay that did not execute).
    EngineFailed,
    /// A database call failed: the commit may or may not have happened.
    Store,
    /// The execution client's chain disagrees with the committed chain.
    Diverged,
    /// This node's wall clock disagrees with the cluster's (PostgreSQL's)
    /// beyond `--max-clock-skew`, or the commit refused its timestamp.
    Clock,
}

/// The leader's next move after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back off, re-read the parent and build again under the same term.
    Retry,
    /// Leave the build loop and start over from what the database says:
    /// a lost reply may hide a successful commit.
    StartOver,
    /// Release the lease and stop offering to lead until a standby round
    /// proves this node healthy again.
    StepDown,
}

/// The step-down rule. `consecutive` counts this failure.
///
/// A hung client steps down at once: waiting for more spec-length timeouts
/// only prolongs the outage. A diverged chain steps down at once: this node
/// cannot build on the committed head. Other client failures step down after
/// [`MAX_CONSECUTIVE_ENGINE_FAILURES`] in a row, so one dropped connection
/// does not cost a failover. A store failure starts over under the same
/// term (the lease thread keeps renewing).
pub fn after_failure(kind: FailureKind, consecutive: u32) -> AfterFailure {
    match kind {
        FailureKind::EngineHung | FailureKind::Diverged | FailureKind::Clock => AfterFailure::StepDown,
        FailureKind::EngineFailed if consecutive >= MAX_CONSECUTIVE_ENGINE_FAILURES => AfterFailure::StepDown,
        FailureKind::EngineFailed => AfterFailure::Retry,
        FailureKind::Store => AfterFailure::StartOver,
    }
}

/// Whether a leader must step down after this failure.
pub fn must_step_down(kind: FailureKind, consecutive: u32) -> bool {
    after_failure(kind, consecutive) == AfterFailure::StepDown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_down_rule() {
        use AfterFailure::*;
        use FailureKind::*;
        let table = [
            (EngineHung, 1, StepDown),
            (EngineHung, 9, StepDown),
            (Diverged, 1, StepDown),
            (Clock, 1, StepDown),
            (EngineFailed, 1, Retry),
            (EngineFailed, MAX_CONSECUTIVE_ENGINE_FAILURES - 1, Retry),
            (EngineFailed, MAX_CONSECUTIVE_ENGINE_FAILURES, StepDown),
            (EngineFailed, u32::MAX, StepDown),
            (Store, 1, StartOver),
            (Store, 100, StartOver),
        ];
        for (kind, consecutive, expected) in table {
            assert_eq!(after_failure(kind, consecutive), expected, "{kind:?} x{consecutive}");
            assert_eq!(must_step_down(kind, consecutive), expected == StepDown);
        }
    }
}
