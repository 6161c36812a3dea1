//! Executing verified block records on an execution client: the one step
//! the standby (from PostgreSQL) and the member (from the sync API) share.
//!
//! Only VALID counts. SYNCING and ACCEPTED mean the client did not execute
//! the block, so they are errors here; callers decide how to supply what
//! the client is missing.

use std::time::{Duration, Instant};

use crate::block::BlockRecord;
use crate::codec::Hash32;
use crate::engine::{EngineClient, EngineError, ForkchoiceState, PayloadStatus};

#[derive(Debug, Clone)]
pub enum ReplayError {
    Engine {
        block_number: u64,
        source: EngineError,
    },
    /// The client answered something other than VALID.
    NotValid {
        block_number: u64,
        block_hash: Hash32,
        status: PayloadStatus,
    },
}

impl ReplayError {
    pub fn block_number(&self) -> u64 {
        match self {
            ReplayError::Engine { block_number, .. } | ReplayError::NotValid { block_number, .. } => *block_number,
        }
    }

    /// The client lacks an ancestor or its state (SYNCING/ACCEPTED).
    pub fn is_not_executed(&self) -> bool {
        matches!(self, ReplayError::NotValid { status: PayloadStatus::Syncing | PayloadStatus::Accepted, .. })
    }
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Engine { block_number, source } => write!(f, "block {block_number}: {source}"),
            ReplayError::NotValid { block_number, block_hash, status } => {
                write!(f, "block {block_number} ({block_hash}): execution client answered {status}")
            }
        }
    }
}

impl std::error::Error for ReplayError {}

/// newPayload with exactly the values the leader used; VALID or an error.
/// Returns how long the client took.
pub fn execute(engine: &EngineClient, record: &BlockRecord) -> Result<Duration, ReplayError> {
    let started = Instant::now();
    let status = engine
        .new_payload(
            &record.payload,
            &record.blob_versioned_hashes,
            &record.parent_beacon_block_root,
            &record.execution_requests,
        )
        .map_err(|source| ReplayError::Engine { block_number: record.number(), source })?;
    if !status.is_valid() {
        return Err(ReplayError::NotValid { block_number: record.number(), block_hash: record.hash(), status });
    }
    Ok(started.elapsed())
}

/// forkchoiceUpdated to `head` (no attributes); VALID or an error.
pub fn make_canonical(engine: &EngineClient, block_number: u64, head: Hash32) -> Result<(), ReplayError> {
    let updated = engine
        .forkchoice_updated(&ForkchoiceState::all_at(head), None)
        .map_err(|source| ReplayError::Engine { block_number, source })?;
    if !updated.payload_status.is_valid() {
        return Err(ReplayError::NotValid { block_number, block_hash: head, status: updated.payload_status });
    }
    Ok(())
}
