//! Why producing or following failed: the leader's one error type.
//!
//! The variant decides what the producer does next (back off, start over
//! from the database, or step down): [`ProduceError::failure_kind`] feeds
//! the rule in `step_down.rs`.

use super::step_down::FailureKind;
use crate::engine::{EngineError, EngineErrorKind};
use crate::replay::ReplayError;
use crate::status::Component;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ProduceError {
    Engine {
        block_number: u64,
        source: EngineError,
    },
    /// Reading the client's chain (not building) failed.
    EngineRead(EngineError),
    /// The client answered, but not what building requires (e.g. no payload id).
    EngineRefused {
        block_number: u64,
        reason: String,
    },
    Replay(ReplayError),
    Store(StoreError),
    /// The execution client's chain disagrees with the committed chain.
    Diverged(String),
    /// The shared database went back below a block this node saw committed
    /// (`regression.rs`): stop leading until an operator acts.
    Regressed(String),
    /// This node's wall clock is too far from the database's, or unknown
    /// (`leader/clock.rs`): it must not lead.
    Clock(String),
}

impl std::fmt::Display for ProduceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProduceError::Engine { block_number, source } => write!(f, "building block {block_number}: {source}"),
            ProduceError::EngineRead(source) => write!(f, "reading the execution client's chain: {source}"),
            ProduceError::EngineRefused { block_number, reason } => {
                write!(f, "building block {block_number}: {reason}")
            }
            ProduceError::Replay(e) => write!(f, "replaying {e}"),
            ProduceError::Store(e) => write!(f, "{e}"),
            ProduceError::Diverged(reason) | ProduceError::Clock(reason) => write!(f, "{reason}"),
            ProduceError::Regressed(reason) => write!(f, "database regressed: {reason}"),
        }
    }
}

impl From<StoreError> for ProduceError {
    fn from(e: StoreError) -> Self {
        ProduceError::Store(e)
    }
}

impl From<ReplayError> for ProduceError {
    fn from(e: ReplayError) -> Self {
        ProduceError::Replay(e)
    }
}

impl ProduceError {
    pub fn component(&self) -> Component {
        match self {
            ProduceError::Store(_) => Component::Database,
            ProduceError::Diverged(_) | ProduceError::Regressed(_) => Component::Chain,
            ProduceError::Clock(_) => Component::Clock,
            _ => Component::ExecutionClient,
        }
    }

    /// The failure as the step-down rule sees it. Only a direct build or
    /// read call that timed out counts as a hung client; a replay's timeout
    /// counts with the other client failures, as before.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            ProduceError::Engine { source, .. } | ProduceError::EngineRead(source)
                if matches!(source.kind, EngineErrorKind::Timeout { .. }) =>
            {
                FailureKind::EngineHung
            }
            ProduceError::Engine { .. }
            | ProduceError::EngineRead(_)
            | ProduceError::EngineRefused { .. }
            | ProduceError::Replay(_) => FailureKind::EngineFailed,
            ProduceError::Store(_) => FailureKind::Store,
            ProduceError::Diverged(_) | ProduceError::Regressed(_) => FailureKind::Diverged,
            ProduceError::Clock(_) => FailureKind::Clock,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_error(kind: EngineErrorKind) -> EngineError {
        EngineError { url: "http://127.0.0.1:8551".into(), method: "engine_getPayloadV4", kind }
    }

    #[test]
    fn only_a_timed_out_build_or_read_is_a_hung_client() {
        let timeout = || engine_error(EngineErrorKind::Timeout { timeout_ms: 1000 });
        let refused = || engine_error(EngineErrorKind::Transport("connection refused".into()));
        let table = [
            (ProduceError::Engine { block_number: 7, source: timeout() }, FailureKind::EngineHung),
            (ProduceError::EngineRead(timeout()), FailureKind::EngineHung),
            (ProduceError::Engine { block_number: 7, source: refused() }, FailureKind::EngineFailed),
            (ProduceError::EngineRead(refused()), FailureKind::EngineFailed),
            (ProduceError::EngineRefused { block_number: 7, reason: "no id".into() }, FailureKind::EngineFailed),
            (
                ProduceError::Replay(ReplayError::Engine { block_number: 7, source: timeout() }),
                FailureKind::EngineFailed,
            ),
            (ProduceError::Diverged("other chain".into()), FailureKind::Diverged),
            (ProduceError::Regressed("went back".into()), FailureKind::Diverged),
            (ProduceError::Clock("an hour ahead".into()), FailureKind::Clock),
        ];
        for (error, expected) in table {
            assert_eq!(error.failure_kind(), expected, "{error}");
        }
    }
}
