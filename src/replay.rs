//! Executing verified block records on an execution client: the one step
//! the standby (from PostgreSQL) and the member (from the sync API) share.
//!
//! Only VALID counts. SYNCING and ACCEPTED mean the client did not execute
//! the block, so they are errors here; callers decide how to supply what
//! the client is missing.

use std::time::{Duration, Instant};

use crate::block::BlockRecord;
use crate::codec::Hash32;
use crate::engine::{BlockTag, EngineClient, EngineError, ForkchoiceState, PayloadStatus};
use crate::resume::{plan_resume, ResumePlan};
use crate::shutdown::Shutdown;
use crate::store::{BlockReads, ChainHead, StoreError, StoreErrorKind};

/// Blocks replayed per forkchoiceUpdated while catching up from a store.
pub const REPLAY_BATCH_LEN: u32 = 64;
/// ... and at most about this much payload text read at once (a batch of
/// full blocks is cut short rather than held whole in memory).
pub const REPLAY_BATCH_BYTES: u64 = crate::page_budget::MEMBER_PAGE_BYTES;

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

/// `execute`; when the client answers SYNCING/ACCEPTED although it holds
/// the parent (it was just handed it, or it is its head), it holds that
/// parent without its state: geth killed before it wrote the state comes
/// back knowing the blocks, answers each VALID ("already known") without
/// executing it, and refuses the first child (docs/FAULTS.md, finding 10).
/// forkchoiceUpdated to the parent, a stored and so committed block, makes
/// geth re-execute it from the nearest state it has; then one more try.
fn execute_recovering_parent(
    engine: &EngineClient,
    record: &BlockRecord,
    parent: ChainHead,
) -> Result<(), ReplayError> {
    match execute(engine, record) {
        Err(error) if error.is_not_executed() => {
            make_canonical(engine, parent.number, parent.hash)?;
            execute(engine, record).map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// Why catching up from a store stopped.
#[derive(Debug)]
pub enum CatchUpError {
    Replay(ReplayError),
    Store(StoreError),
    /// The execution client's chain and the stored chain disagree.
    Diverged(String),
}

impl std::fmt::Display for CatchUpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatchUpError::Replay(e) => write!(f, "replaying {e}"),
            CatchUpError::Store(e) => write!(f, "{e}"),
            CatchUpError::Diverged(reason) => f.write_str(reason),
        }
    }
}

impl From<StoreError> for CatchUpError {
    fn from(e: StoreError) -> Self {
        CatchUpError::Store(e)
    }
}

impl From<ReplayError> for CatchUpError {
    fn from(e: ReplayError) -> Self {
        CatchUpError::Replay(e)
    }
}

/// The hash the store holds at `number` (genesis from the client for 0).
pub fn stored_hash_at(
    engine: &EngineClient,
    store: &mut impl BlockReads,
    number: u64,
) -> Result<Option<Hash32>, CatchUpError> {
    if number == 0 {
        let genesis = engine
            .block_by_number(BlockTag::Number(0))
            .map_err(|source| CatchUpError::Replay(ReplayError::Engine { block_number: 0, source }))?;
        return Ok(genesis.map(|g| g.hash));
    }
    let Some(block) = store.block_by_number(number)? else { return Ok(None) };
    // A stored hash that does not parse is a corrupt row, not a missing one.
    let hash = Hash32::parse(&block.hash).map_err(|e| {
        StoreError::new(StoreErrorKind::Corrupt, store.url(), "read block", format!("block_hash {:?}: {e}", block.hash))
            .at_block(number)
    })?;
    Ok(Some(hash))
}

/// The hash of the client's canonical block at `number`, if it has one.
pub fn el_hash_at(engine: &EngineClient, number: u64) -> Result<Option<Hash32>, CatchUpError> {
    let block = engine
        .block_by_number(BlockTag::Number(number))
        .map_err(|source| CatchUpError::Replay(ReplayError::Engine { block_number: number, source }))?;
    Ok(block.map(|b| b.hash))
}

/// Replays the stored blocks after `el_head` (the client's canonical head)
/// up to `target` onto the client, in order, verifying that the client's
/// head is itself a stored block and that every block links to the one
/// before. Calls `progress` after each forkchoiceUpdated.
pub fn catch_up_from_store(
    engine: &EngineClient,
    store: &mut impl BlockReads,
    el_head: ChainHead,
    target: ChainHead,
    shutdown: &Shutdown,
    mut progress: impl FnMut(ChainHead, usize),
) -> Result<ChainHead, CatchUpError> {
    let plan = plan_resume(
        el_head,
        target,
        |number| stored_hash_at(engine, store, number),
        |number| el_hash_at(engine, number),
    )?;
    match plan {
        ResumePlan::InStep(head) => return Ok(head),
        ResumePlan::ReplayStored { .. } => {}
        // A caller that replays from its store never makes a block canonical
        // before storing it, so a client ahead of the store holds blocks that
        // were never committed here.
        ResumePlan::StoreExecuted { .. } => {
            return Err(CatchUpError::Diverged(format!(
                "execution client head {} ({}) is above the stored head {} ({}): \
                 it holds blocks that were never committed here; refusing to guess",
                el_head.number, el_head.hash, target.number, target.hash
            )))
        }
        ResumePlan::Diverged(reason) => return Err(CatchUpError::Diverged(reason)),
    }
    let mut parent = el_head;
    while parent.number < target.number && !shutdown.is_requested() {
        let wanted = u32::try_from(target.number - parent.number).unwrap_or(u32::MAX).min(REPLAY_BATCH_LEN);
        let blocks = store.blocks_after(parent.number, wanted, REPLAY_BATCH_BYTES)?;
        if blocks.is_empty() {
            return Err(CatchUpError::Diverged(format!(
                "stored head is {} but no block after {} is stored",
                target.number, parent.number
            )));
        }
        for block in &blocks {
            let record = BlockRecord::from_stored(block)
                .map_err(|e| CatchUpError::Diverged(format!("stored record is unreadable: {e}")))?;
            // Heights strictly consecutive and linked: the store promises it;
            // a replay that finds otherwise must stop, not execute.
            if record.number() != parent.number + 1 || record.parent_hash() != parent.hash {
                return Err(CatchUpError::Diverged(format!(
                    "stored block {} ({}) does not extend {} ({})",
                    record.number(),
                    record.hash(),
                    parent.number,
                    parent.hash
                )));
            }
            execute_recovering_parent(engine, &record, parent)?;
            parent = ChainHead { number: record.number(), hash: record.hash() };
        }
        make_canonical(engine, parent.number, parent.hash)?;
        progress(parent, blocks.len());
    }
    Ok(parent)
}
