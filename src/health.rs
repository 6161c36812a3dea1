//! `/health` and `/metrics` on the health address.
//!
//! `/health` answers the seed's line with 200 when the node can do its job
//! and 503 with the reason when it cannot; with `?format=json` or
//! `Accept: application/json` it answers the full status as JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::json;

use crate::http::{parse_query, serve, Incoming, Reply};
use crate::leader::lease::LeaseHandle;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::status::NodeStatus;

/// The token-protected admin view; off unless `--admin-token` is set.
#[derive(Clone)]
pub struct Admin {
    pub token: Option<Secret>,
    /// Leader-mode nodes only.
    pub lease: Option<Arc<LeaseHandle>>,
}

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
        return handle_admin(request, action, status, admin);
    }
    if !request.is_read() {
        return Reply::method_not_allowed("GET, HEAD");
    }
    if let Some(refusal) = request.refuse_body() {
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

fn handle_admin(request: &Incoming<'_>, action: &str, status: &NodeStatus, admin: &Admin) -> Reply {
    let Some(token) = admin.token.as_ref() else {
        return Reply::error(404, "admin endpoints are disabled; start the node with --admin-token");
    };
    if let Some(refusal) = request.check_bearer(Some(token)) {
        return refusal;
    }
    match action {
        "status" => {
            if !request.is_read() {
                return Reply::method_not_allowed("GET, HEAD");
            }
            if let Some(refusal) = request.refuse_body() {
                return refusal;
            }
            let mut view = status.snapshot().to_json();
            if let Some(lease) = &admin.lease {
                let held = lease.held_term();
                view["lease"] = json!({
                    "held_term": held,
                    "remaining_ms": held.map(|term| u64::try_from(lease.remaining(term).as_millis()).unwrap_or(u64::MAX)).unwrap_or(0),
                    "ready_to_lead": lease.is_ready_to_lead(),
                    "redis_reachable": lease.redis_ok(),
                });
            }
            Reply::json(200, &view)
        }
        "step-down" => {
            if *request.method != tiny_http::Method::Post {
                return Reply::method_not_allowed("POST");
            }
            if let Some(refusal) = request.refuse_body() {
                return refusal;
            }
            let Some(lease) = &admin.lease else {
                return Reply::error(409, "only a leader-mode node can step down");
            };
            match lease.held_term() {
                Some(term) => {
                    crate::log::info(&format!("admin: step-down requested for term {term}"));
                    lease.request_step_down();
                    Reply::json(202, &json!({"stepping_down": true, "term": term}))
                }
                None => Reply::error(409, "this node is not the leader"),
            }
        }
        other => Reply::error(404, format!("no admin action {other:?}; see /admin/status and /admin/step-down")),
    }
}
