//! Why producing or following failed: the leader's one error type.
//!
//! The variant decides what the producer does next (back off, start over
//! from the database, or step down): see `decide.rs`.

use crate::engine::EngineError;
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
            ProduceError::Diverged(reason) => write!(f, "{reason}"),
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
            ProduceError::Diverged(_) => Component::Chain,
            _ => Component::ExecutionClient,
        }
    }
}
