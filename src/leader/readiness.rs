//! The readiness publisher: a thread of its own, beside the lease thread,
//! that writes this node's readiness record to Redis every renew interval
//! and reads the cluster's records about once a second (admin status).
//!
//! It used to run on the lease thread, after each renew: two more round
//! trips (and, on a starved machine, two more waits for a CPU) between one
//! renew and the next. Now the lease thread, while it leads, does nothing
//! but renew (and hand over when one is due), on a Redis connection of its
//! own, so a slow publish or read never delays a renew.
//!
//! The records only inform hand-overs (`preference.rs`) and the admin view;
//! nothing here touches the lease, and a failed publish only makes this node
//! look absent to the others until the next one succeeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Script;

use super::handover;
use super::lease::{millis, run_script, LeaseHandle, RedisError, REDIS_IO_TIMEOUT};
use super::preference::{Preference, Readiness};
use super::redis_target::connect_redis;
use crate::config::LeaderConfig;
use crate::log;
use crate::metrics::Metrics;
use crate::reconnect::Reconnecting;
use crate::shutdown::Shutdown;
use crate::status::NodeStatus;

/// How often the cluster's records are read for the admin view.
const CLUSTER_READ_INTERVAL: Duration = Duration::from_secs(1);

pub struct ReadinessPublisher {
    config: LeaderConfig,
    instance_id: String,
    handle: Arc<LeaseHandle>,
    metrics: Arc<Metrics>,
    status: Arc<NodeStatus>,
    shutdown: Shutdown,
    preference: Preference,
    connection: Reconnecting<redis::Connection, RedisError>,
    /// Since when this node has been ready to lead without a break.
    ready_since: Option<Instant>,
    last_cluster_read: Option<Instant>,
    /// The last publish failed (a failure is logged once, not every interval).
    failing: bool,
}

impl ReadinessPublisher {
    pub fn new(
        config: LeaderConfig,
        instance_id: String,
        handle: Arc<LeaseHandle>,
        metrics: Arc<Metrics>,
        status: Arc<NodeStatus>,
        shutdown: Shutdown,
    ) -> ReadinessPublisher {
        let (target, password) = (config.redis.clone(), config.redis_password.clone());
        let preference = Preference { order: config.preferred_leaders.clone() };
        ReadinessPublisher {
            config,
            instance_id,
            handle,
            metrics,
            status,
            shutdown,
            preference,
            connection: Reconnecting::new(move || connect_redis(&target, password.as_ref(), REDIS_IO_TIMEOUT)),
            ready_since: None,
            last_cluster_read: None,
            failing: false,
        }
    }

    /// Publishes every renew interval until shutdown, then takes the record
    /// down, so no leader hands this node the lease in the record's last
    /// moments.
    pub fn run(mut self) {
        let publish = handover::publish_script();
        let read = Script::new(handover::READ_LUA);
        while !self.shutdown.is_requested() {
            let started = Instant::now();
            self.publish(&publish);
            if self.last_cluster_read.is_none_or(|at| started.duration_since(at) >= CLUSTER_READ_INTERVAL) {
                self.last_cluster_read = Some(started);
                if let Ok(records) = read_records(&mut self.connection, &self.config.redis.label(), &read) {
                    self.handle.set_cluster(records);
                }
            }
            let next = started + self.config.lease_renew_interval;
            self.shutdown.sleep(next.saturating_duration_since(Instant::now()));
        }
        self.withdraw();
    }

    fn publish(&mut self, script: &Script) {
        let now = Instant::now();
        let paused = self.handle.is_paused();
        let ready = self.handle.is_ready_to_lead() && !self.handle.in_cooldown() && !paused;
        if ready {
            self.ready_since.get_or_insert(now);
        } else {
            self.ready_since = None;
        }
        let record = Readiness {
            id: self.instance_id.clone(),
            ready,
            paused,
            leading: self.handle.held_term().is_some(),
            el_head: self.status.snapshot().el_head.map(|(number, _)| number).unwrap_or(0),
            ready_for_ms: self.ready_since.map(|since| millis(now.duration_since(since))).unwrap_or(0),
            order_digest: self.preference.digest(),
        };
        // Fresh for a few publish intervals, and never shorter than a TTL.
        let ttl = self.config.lease_ttl.max(self.config.lease_renew_interval * 3);
        let args = [record.to_json().to_string(), millis(ttl).to_string(), self.instance_id.clone()];
        let key = handover::ready_key_of(&self.instance_id);
        let keys = [key.as_str(), handover::READY_INDEX_KEY];
        let published = run_script(&mut self.connection, &self.config.redis.label(), script, &keys, &args, "publish")
            .map(|_: i64| ());
        match published {
            Ok(()) => self.failing = false,
            Err(error) => self.failed(&error),
        }
    }

    /// The lease thread reports Redis's state (/health, the warning);
    /// this thread only counts its own failures and says once that they
    /// began.
    fn failed(&mut self, error: &RedisError) {
        self.metrics.count_error("redis");
        if !self.failing {
            log::info(&format!("lease: readiness record not published: {error}"));
        }
        self.failing = true;
    }

    fn withdraw(&mut self) {
        let key = handover::ready_key_of(&self.instance_id);
        if let Ok(connection) = self.connection.get() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query(connection);
        }
    }
}

/// The live readiness records (at most `handover::MAX_RECORDS`), read with
/// `script` (`handover::READ_LUA`).
pub(super) fn read_records(
    connection: &mut Reconnecting<redis::Connection, RedisError>,
    addr: &str,
    script: &Script,
) -> Result<Vec<Readiness>, RedisError> {
    let args = [handover::READY_KEY_PREFIX.to_owned(), handover::MAX_RECORDS.to_string()];
    let values: Vec<String> =
        run_script(connection, addr, script, &[handover::READY_INDEX_KEY], &args, "read readiness")?;
    Ok(handover::parse_records(&values))
}
