//! What this node is doing, for `/health`, the JSON health view and the
//! status command. Written by the roles, read by the health server.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::codec::Hash32;
use crate::config::Mode;
use crate::member::lag::{Lag, LagClock};
use crate::member::lag_limit::LagLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Starting,
    Standby,
    Leader,
    Member,
    Stopping,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Leader => "leader",
            Role::Member => "member",
            Role::Stopping => "stopping",
        }
    }
}

/// A component that can stop this node from doing its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    ExecutionClient,
    Database,
    Redis,
    Commit,
    /// This node's wall clock disagrees with the cluster's (PostgreSQL's).
    Clock,
    SyncSource,
    SyncRecord,
    /// A member behind its source and not moving: the syncer's own verdict,
    /// set and cleared by it alone (the fetcher owns `SyncSource`).
    SyncProgress,
    /// A member past a readiness threshold (`member/lag_limit.rs`): never
    /// stored, added to the copy /health answers from.
    SyncLag,
    Chain,
}

impl Component {
    pub fn label(self) -> &'static str {
        match self {
            Component::ExecutionClient => "execution client",
            Component::Database => "database",
            Component::Redis => "redis",
            Component::Commit => "commit",
            Component::Clock => "clock",
            Component::SyncSource => "sync source",
            Component::SyncRecord => "sync record",
            Component::SyncProgress => "sync progress",
            Component::SyncLag => "sync lag",
            Component::Chain => "chain",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub mode: Mode,
    pub instance_id: String,
    pub role: Role,
    pub term: u64,
    pub committed_head: Option<(u64, Hash32)>,
    pub el_head: Option<(u64, Hash32)>,
    pub problems: BTreeMap<Component, String>,
    /// Whether this node signs (leader mode) or verifies (member) the
    /// committing leader's record signatures, as /health JSON shows it.
    pub record_signatures: &'static str,
    pub lease_remaining_ms: u64,
    /// Gap between the previous term's last block and this node's first
    /// block as leader (set at that first commit, only on a change of term).
    pub last_failover_ms: Option<u64>,
    pub last_failover_at_unix_s: Option<u64>,
    /// From acquiring the lease to being ready to build (fence raised,
    /// execution client at the head).
    pub ready_after_acquire_ms: Option<u64>,
    /// Paused by an operator (`clnode admin pause`): does not take the lease.
    pub paused: bool,
    // Member.
    pub last_synced: u64,
    pub total_synced: u64,
    pub sync_url: Option<String>,
    /// What the source's answers told the member (`member/lag.rs`): the
    /// fetcher records requests and answers, the syncer what it stored.
    pub lag_clock: LagClock,
    /// `--max-lag-blocks` / `--max-lag-ms`: /health's threshold unless a
    /// request gives its own.
    pub lag_limits: LagLimits,
    pub started: Instant,
}

pub struct NodeStatus {
    inner: Mutex<Snapshot>,
}

impl NodeStatus {
    pub fn new(mode: Mode, instance_id: &str) -> NodeStatus {
        let started = Instant::now();
        NodeStatus {
            inner: Mutex::new(Snapshot {
                mode,
                instance_id: instance_id.to_owned(),
                role: Role::Starting,
                term: 0,
                committed_head: None,
                el_head: None,
                problems: BTreeMap::new(),
                record_signatures: "",
                lease_remaining_ms: 0,
                last_failover_ms: None,
                last_failover_at_unix_s: None,
                ready_after_acquire_ms: None,
                paused: false,
                last_synced: 0,
                total_synced: 0,
                sync_url: None,
                lag_clock: LagClock::new(started),
                lag_limits: LagLimits::default(),
                started,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        change(&mut self.lock());
    }

    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    pub fn set_problem(&self, component: Component, reason: impl Into<String>) {
        self.lock().problems.insert(component, reason.into());
    }

    pub fn clear_problem(&self, component: Component) {
        self.lock().problems.remove(&component);
    }
}

impl Snapshot {
    /// A member's lag at `now` (`member/lag.rs`).
    pub fn lag(&self, now: Instant) -> Lag {
        self.lag_clock.lag(now, self.last_synced)
    }

    pub fn healthy(&self) -> bool {
        self.problems.is_empty() && self.role != Role::Starting
    }

    /// The seed's plain-text line, with the reason appended when unhealthy.
    pub fn health_line(&self) -> String {
        let detail = match self.mode {
            Mode::Leader if self.paused => format!("mode=leader, isLeader={}, paused", self.role == Role::Leader),
            Mode::Leader => format!("mode=leader, isLeader={}", self.role == Role::Leader),
            Mode::Member => {
                format!("mode=member, lastSynced={}, totalSynced={}", self.last_synced, self.total_synced)
            }
        };
        if self.healthy() {
            format!("OK ({detail})")
        } else {
            let mut reasons: Vec<String> =
                self.problems.iter().map(|(component, reason)| format!("{}: {reason}", component.label())).collect();
            if self.role == Role::Starting && reasons.is_empty() {
                reasons.push("starting".into());
            }
            format!("UNHEALTHY ({detail}) {}", reasons.join("; "))
        }
    }

    pub fn to_json(&self) -> Value {
        self.to_json_at(Instant::now())
    }

    /// The JSON view with a member's lag as of `now`.
    pub fn to_json_at(&self, now: Instant) -> Value {
        let head = |h: &Option<(u64, Hash32)>| match h {
            Some((number, hash)) => json!({"number": number, "hash": hash.to_hex()}),
            None => Value::Null,
        };
        let problems: serde_json::Map<String, Value> =
            self.problems.iter().map(|(c, r)| (c.label().to_owned(), json!(r))).collect();
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut value = json!({
            "healthy": self.healthy(),
            "instance_id": self.instance_id,
            "mode": match self.mode { Mode::Leader => "leader", Mode::Member => "member" },
            "role": self.role.label(),
            "term": self.term,
            "committed_head": head(&self.committed_head),
            "el_head": head(&self.el_head),
            "problems": problems,
            "record_signatures": self.record_signatures,
            "uptime_s": self.started.elapsed().as_secs(),
            "now_unix_s": now_s,
        });
        match self.mode {
            Mode::Leader => {
                value["is_leader"] = json!(self.role == Role::Leader);
                value["lease_remaining_ms"] = json!(self.lease_remaining_ms);
                value["last_failover_ms"] = json!(self.last_failover_ms);
                value["last_failover_at_unix_s"] = json!(self.last_failover_at_unix_s);
                value["ready_after_acquire_ms"] = json!(self.ready_after_acquire_ms);
                value["paused"] = json!(self.paused);
            }
            Mode::Member => {
                value["last_synced"] = json!(self.last_synced);
                value["total_synced"] = json!(self.total_synced);
                value["sync_url"] = json!(self.sync_url);
                let lag = self.lag(now);
                value["source_head"] = json!(lag.source_head);
                value["lag_blocks"] = json!(lag.blocks);
                value["lag_ms"] = json!(lag.ms);
                #[allow(clippy::cast_precision_loss)]
                let lag_seconds = lag.ms as f64 / 1000.0;
                value["lag_seconds"] = json!(lag_seconds);
                value["lag_unconfirmed"] = json!(lag.unconfirmed);
                value["lag_limits"] =
                    json!({"max_lag_blocks": self.lag_limits.max_blocks, "max_lag_ms": self.lag_limits.max_ms});
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_lines_match_the_seed_and_name_the_problem() {
        let status = NodeStatus::new(Mode::Leader, "l1");
        status.update(|s| s.role = Role::Leader);
        assert_eq!(status.snapshot().health_line(), "OK (mode=leader, isLeader=true)");
        status.set_problem(Component::Database, "connection refused");
        let line = status.snapshot().health_line();
        assert!(line.starts_with("UNHEALTHY (mode=leader, isLeader=true) database: connection refused"), "{line}");
        let member = NodeStatus::new(Mode::Member, "m1");
        member.update(|s| {
            s.role = Role::Member;
            s.last_synced = 1234;
            s.total_synced = 500;
        });
        assert_eq!(member.snapshot().health_line(), "OK (mode=member, lastSynced=1234, totalSynced=500)");
        assert_eq!(member.snapshot().to_json()["lag_blocks"], 0);
    }
}
