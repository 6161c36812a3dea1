//! `/health` and `/metrics` on the health address.
//!
//! `/health` answers the seed's line with 200 when the node can do its job
//! and 503 with the reason when it cannot; with `?format=json` or
//! `Accept: application/json` it answers the full status as JSON. A member
//! also answers 503 past its readiness threshold (`--max-lag-blocks`,
//! `--max-lag-ms`, or `?max_lag_blocks=N&max_lag_ms=MS` for this request):
//! what a load balancer's health check asks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::json;

use crate::config::Mode;
use crate::http::{parse_query, precheck, serve, Incoming, Reply};
use crate::member::lag_limit::{self, Verdict};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::status::{Component, NodeStatus, Snapshot};

/// The token-protected admin routes (`admin.rs`); off unless `--admin-token` is set.
pub use crate::admin::Admin;

/// Scrapes and probes are cheap; two workers keep one slow client from
/// blocking the other.
pub const HEALTH_WORKERS: usize = 2;

pub fn start(
    addr: SocketAddr,
    status: Arc<NodeStatus>,
    metrics: Arc<Metrics>,
    admin: Admin,
    shutdown: &Shutdown,
) -> Result<Vec<JoinHandle<()>>, String> {
    serve("health", addr, HEALTH_WORKERS, shutdown, || {
        let status = Arc::clone(&status);
        let metrics = Arc::clone(&metrics);
        let admin = admin.clone();
        move |request: &Incoming<'_>| handle(request, &status, &metrics, &admin)
    })
}

/// A member past its readiness threshold (the flags', or the query's in
/// their place: `member/lag_limit.rs`) gets the reason as a problem in
/// this answer's copy of the status, so the line, the JSON and the status
/// code all say it; the JSON's `lag_limits` are the limits applied. The
/// query's limits are for members; a leader-mode node refuses them.
fn judge_lag(snapshot: &mut Snapshot, pairs: &[(&str, &str)], now: Instant) -> Result<(), String> {
    let asked = pairs.iter().any(|(name, _)| name.starts_with("max_lag_"));
    if snapshot.mode != Mode::Member && asked {
        return Err("max_lag_blocks and max_lag_ms apply to members; this node is in leader mode".into());
    }
    if snapshot.mode != Mode::Member {
        return Ok(());
    }
    snapshot.lag_limits = snapshot.lag_limits.with_query(pairs)?;
    let verdict = lag_limit::judge(&snapshot.lag(now), snapshot.lag_limits);
    if verdict != Verdict::Ready {
        snapshot.problems.insert(Component::SyncLag, verdict.to_string());
    }
    Ok(())
}

fn handle(request: &Incoming<'_>, status: &NodeStatus, metrics: &Metrics, admin: &Admin) -> Reply {
    if let Some(action) = request.path.strip_prefix("/admin/") {
        return crate::admin::handle(request, action, status, admin);
    }
    // No token on the read routes; admin routes check their own.
    if let Some(refusal) = precheck(request, None) {
        return refusal;
    }
    match request.path {
        "/health" => {
            let pairs = match parse_query(request.query, &["format", "max_lag_blocks", "max_lag_ms"]) {
                Ok(pairs) => pairs,
                Err(message) => return Reply::error(400, message),
            };
            let json = match pairs.iter().find(|(name, _)| *name == "format") {
                None => request.accepts_json,
                Some((_, "json")) => true,
                Some((_, "text")) => false,
                Some((_, other)) => return Reply::error(400, format!("format must be json or text, got {other:?}")),
            };
            let (mut snapshot, now) = (status.snapshot(), Instant::now());
            if let Err(message) = judge_lag(&mut snapshot, &pairs, now) {
                return Reply::error(400, message);
            }
            let code = if snapshot.healthy() { 200 } else { 503 };
            if json {
                let mut view = snapshot.to_json_at(now);
                // A leader-mode node says whether it would take the lease
                // now (its client at the committed head, the database
                // readable, no regression): operators and tests read it.
                if let Some(lease) = &admin.lease {
                    view["ready_to_lead"] = json!(lease.is_ready_to_lead());
                }
                Reply::json(code, &view)
            } else {
                Reply::text(code, format!("{}\n", snapshot.health_line()))
            }
        }
        "/metrics" => {
            Reply { content_type: "text/plain; version=0.0.4; charset=utf-8", ..Reply::text(200, metrics.render()) }
        }
        other => Reply::error(404, format!("no route {other}; see /health and /metrics")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::lag_limit::LagLimits;
    use crate::status::Role;

    fn member(limits: LagLimits) -> Snapshot {
        let status = NodeStatus::new(Mode::Member, "m1");
        let now = Instant::now();
        status.update(|s| {
            s.role = Role::Member;
            s.last_synced = 10;
            s.lag_limits = limits;
            // An answer reported block 12; the member holds 10.
            s.lag_clock.answered(now, 12, 10);
            s.lag_clock.asked(now, std::time::Duration::from_secs(5));
        });
        status.snapshot()
    }

    #[test]
    fn the_query_or_the_flags_decide_and_the_answer_says_why() {
        // No limits anywhere: a member behind is healthy, as before.
        let mut snapshot = member(LagLimits::default());
        judge_lag(&mut snapshot, &[], Instant::now()).unwrap();
        assert!(snapshot.healthy());
        // The flags' limit.
        let mut snapshot = member(LagLimits { max_blocks: Some(1), max_ms: None });
        judge_lag(&mut snapshot, &[], Instant::now()).unwrap();
        assert!(!snapshot.healthy());
        let line = snapshot.health_line();
        assert!(line.contains("sync lag: not ready: 2 blocks behind the sync source (max_lag_blocks 1)"), "{line}");
        // The query's limit in its place, for this answer.
        let mut snapshot = member(LagLimits { max_blocks: Some(1), max_ms: None });
        judge_lag(&mut snapshot, &[("max_lag_blocks", "5")], Instant::now()).unwrap();
        assert!(snapshot.healthy(), "{:?}", snapshot.problems);
        assert_eq!(snapshot.to_json()["lag_limits"]["max_lag_blocks"], 5);
        // Bad values, and leader mode, are refused.
        let mut snapshot = member(LagLimits::default());
        assert!(judge_lag(&mut snapshot, &[("max_lag_ms", "soon")], Instant::now()).is_err());
        let mut leader = NodeStatus::new(Mode::Leader, "l1").snapshot();
        assert!(judge_lag(&mut leader, &[("max_lag_ms", "100")], Instant::now()).unwrap_err().contains("leader mode"));
        assert!(judge_lag(&mut leader, &[("format", "json")], Instant::now()).is_ok());
    }
}
