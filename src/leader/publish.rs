//! Publishing committed blocks to the Redis stream, off the production path.
//!
//! The stream is a notification for outside consumers; PostgreSQL is the
//! record. So publishing runs on its own thread behind a bounded queue: a
//! slow or absent Redis never delays a block, and a full queue drops the
//! oldest news (counted) rather than growing.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::block::StoredBlock;
use crate::config::LeaderConfig;
use crate::leader::redis_target::connect_redis;
use crate::log;
use crate::metrics::Metrics;
use crate::reconnect::Reconnecting;
use crate::shutdown::Shutdown;

/// Blocks waiting to be published; beyond this they are dropped.
pub const PUBLISH_QUEUE_LEN: usize = 1024;

#[derive(Clone)]
pub struct Publisher {
    sender: SyncSender<Arc<StoredBlock>>,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn start(
        config: &LeaderConfig,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Result<(Publisher, JoinHandle<()>), String> {
        let (sender, receiver) = sync_channel(PUBLISH_QUEUE_LEN);
        let config = config.clone();
        let thread_metrics = Arc::clone(&metrics);
        let handle = std::thread::Builder::new()
            .name("publish".into())
            .spawn(move || run(&config, &receiver, &thread_metrics, &shutdown))
            .map_err(|e| format!("cannot start the publish thread: {e}"))?;
        Ok((Publisher { sender, metrics }, handle))
    }

    /// Queues a committed block; never blocks.
    pub fn publish(&self, block: Arc<StoredBlock>) {
        match self.sender.try_send(block) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.metrics.count_error("redis"),
        }
    }
}

fn run(config: &LeaderConfig, receiver: &Receiver<Arc<StoredBlock>>, metrics: &Metrics, shutdown: &Shutdown) {
    let (target, password) = (config.redis.clone(), config.redis_password.clone());
    let mut connection =
        Reconnecting::new(move || connect_redis(&target, password.as_ref(), crate::leader::lease::REDIS_IO_TIMEOUT));
    let mut reported = false;
    while !shutdown.is_requested() {
        let block = match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(block) => block,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let conn = match connection.get() {
            Ok(conn) => conn,
            Err(error) => {
                if !reported {
                    log::warn(&format!("publish: {error}; block {} not published", block.number));
                    reported = true;
                }
                metrics.count_error("redis");
                continue;
            }
        };
        let record = block.to_wire_json().to_string();
        let result: Result<String, _> = redis::cmd("XADD")
            .arg(&config.redis_stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(config.redis_stream_max_len)
            .arg("*")
            .arg("block_number")
            .arg(block.number)
            .arg("block_hash")
            .arg(&block.hash)
            .arg("parent_hash")
            .arg(&block.parent_hash)
            .arg("term")
            .arg(block.term)
            .arg("record")
            .arg(record)
            .query(conn);
        match result {
            Ok(_) => reported = false,
            Err(error) => {
                if !reported {
                    log::warn(&format!("publish: XADD block {} to {}: {error}", block.number, config.redis_stream));
                    reported = true;
                }
                metrics.count_error("redis");
                // A reply may still be owed on it: start afresh.
                connection.invalidate();
            }
        }
    }
}
