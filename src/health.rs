//! `/health` and `/metrics` on the health address.
//!
//! `/health` answers the seed's line with 200 when the node can do its job
//! and 503 with the reason when it cannot; with `?format=json` or
//! `Accept: application/json` it answers the full status as JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::json;

use crate::http::{parse_query, precheck, serve, Incoming, Reply};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::status::NodeStatus;

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
            let pairs = match parse_query(request.query, &["format"]) {
                Ok(pairs) => pairs,
                Err(message) => return Reply::error(400, message),
            };
            let json = match pairs.first() {
                None => request.accepts_json,
                Some((_, "json")) => true,
                Some((_, "text")) => false,
                Some((_, other)) => return Reply::error(400, format!("format must be json or text, got {other:?}")),
            };
            let snapshot = status.snapshot();
            let code = if snapshot.healthy() { 200 } else { 503 };
            if json {
                let mut view = snapshot.to_json();
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
