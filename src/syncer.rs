//! Member mode: follows a sync API, verifies and executes each block on the
//! member's own execution client, then stores it in the member's database.
//! (Filled in by the member issue.)

use std::sync::Arc;

use crate::config::MemberConfig;
use crate::engine::EngineClient;
use crate::metrics::Metrics;
use crate::notify::HeadWatch;
use crate::shutdown::Shutdown;
use crate::status::NodeStatus;

pub struct SyncerContext {
    pub instance_id: String,
    pub config: MemberConfig,
    pub postgres_url: String,
    pub engine: Arc<EngineClient>,
    pub status: Arc<NodeStatus>,
    pub metrics: Arc<Metrics>,
    pub watch: Arc<HeadWatch>,
    pub shutdown: Shutdown,
}

pub struct Syncer {
    ctx: SyncerContext,
}

impl Syncer {
    pub fn new(ctx: SyncerContext) -> Syncer {
        Syncer { ctx }
    }

    pub fn run(self) {
        while self.ctx.shutdown.sleep(std::time::Duration::from_secs(1)) {}
    }
}
