//! Idle detection: whether an idle leader's execution client has new
//! pending transactions worth a build.

use std::time::{Duration, Instant};

use crate::engine::{rpc_code, EngineClient};
use crate::log;

/// Tells an idle leader whether its execution client's pool has changed
/// since the last build that found nothing, so that while idle it polls one
/// small filter call per `idle_poll_interval` instead of building and
/// discarding an empty payload (forkchoiceUpdated with attributes, a build
/// in the client, getPayload of a whole payload), which cost clnode about
/// 1.8 % of a core on an idle chain.
///
/// An empty build does not prove an empty pool: geth answers getPayload
/// with its empty payload when the full one is not ready yet (a loaded
/// machine, a big pool). So the leader goes idle only after
/// [`EMPTY_BUILDS_BEFORE_IDLE`] empty builds in a row, all made after the
/// filter existed, and while idle still builds once per
/// [`IDLE_REBUILD_INTERVAL`]: a transaction that slipped past both waits
/// at most that long. Any other doubt (a client without the filter, an
/// error, a filter the client forgot) means "build", the old behaviour.
#[derive(Debug)]
pub struct PoolWatch {
    filter_id: Option<String>,
    /// The client has no pending-transaction filter (EthereumJS 0.10):
    /// build every poll.
    unsupported: bool,
    /// Empty builds in a row since the filter existed and last reported an
    /// arrival (or since the last commit).
    empty_builds: u32,
    last_build_at: Instant,
}

/// Empty builds in a row before an idle leader trusts the filter alone.
const EMPTY_BUILDS_BEFORE_IDLE: u32 = 3;
/// An idle leader still builds this often, whatever the filter says.
const IDLE_REBUILD_INTERVAL: Duration = Duration::from_secs(1);

impl Default for PoolWatch {
    fn default() -> Self {
        PoolWatch { filter_id: None, unsupported: false, empty_builds: 0, last_build_at: Instant::now() }
    }
}

impl PoolWatch {
    /// Before every build: make sure the filter exists before it.
    pub fn before_build(&mut self, engine: &EngineClient) {
        self.last_build_at = Instant::now();
        if self.filter_id.is_some() || self.unsupported {
            return;
        }
        // Builds before the filter existed prove nothing about arrivals.
        self.empty_builds = 0;
        match engine.new_pending_transaction_filter() {
            Ok(id) => self.filter_id = Some(id),
            Err(error) if error.rpc_code() == Some(rpc_code::METHOD_NOT_FOUND) => {
                log::info(&format!(
                    "leader: {} has no pending-transaction filter; idle polls build and discard instead",
                    engine.url()
                ));
                self.unsupported = true;
            }
            // Tried again before the next build; the build itself reports
            // a broken client.
            Err(_) => {}
        }
    }

    pub fn found_nothing(&mut self) {
        self.empty_builds = self.empty_builds.saturating_add(1);
    }

    /// After a commit or at a new term: build until proven idle again.
    pub fn forget_idle(&mut self) {
        self.empty_builds = 0;
    }

    /// Right after a commit or an arrival: build. After an empty build:
    /// read (and so drain) the filter first, and build again on an arrival,
    /// until [`EMPTY_BUILDS_BEFORE_IDLE`], or every [`IDLE_REBUILD_INTERVAL`].
    pub fn worth_building(&mut self, engine: &EngineClient) -> bool {
        let Some(filter_id) = &self.filter_id else {
            return true;
        };
        if self.empty_builds == 0 {
            return true;
        }
        match engine.pending_transactions_arrived(filter_id) {
            Ok(false) => {
                self.empty_builds < EMPTY_BUILDS_BEFORE_IDLE || self.last_build_at.elapsed() >= IDLE_REBUILD_INTERVAL
            }
            Ok(true) => {
                self.empty_builds = 0;
                true
            }
            Err(_) => {
                // Most likely a restarted client that forgot the filter
                // (geth also drops one not polled for 5 minutes).
                self.filter_id = None;
                true
            }
        }
    }
}
