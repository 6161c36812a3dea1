//! `/admin/*` on the health address: the operator's leadership controls.
//! Off unless `--admin-token` is set (404); every request needs the token
//! as a bearer token (missing: 401, wrong: 403, compared in constant
//! time). Errors are JSON `{"error": ...}`.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/status` | the JSON health view, the lease, paused, the cluster's readiness records |
//! | `POST /admin/step-down` | the leader releases the lease (any ready standby takes it) |
//! | `POST /admin/transfer?to=ID` | the leader hands the lease to ID (healthy and caught up, else 409) |
//! | `POST /admin/pause` | this node does not take the lease; a paused leader hands over |
//! | `POST /admin/resume` | undoes pause |
//!
//! Why the health port and not an address of its own: it already has a
//! bounded server and binds to loopback unless told otherwise, the admin
//! routes are few and cheap, and `clnode admin` reaches a node at the URL
//! `clnode status` already uses. The token, not the port, is the guard.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::http::{parse_query, Incoming, Reply};
use crate::leader::lease::LeaseHandle;
use crate::secret::Secret;
use crate::status::NodeStatus;

/// The admin endpoint's state; off unless `token` is set.
#[derive(Clone)]
pub struct Admin {
    pub token: Option<Secret>,
    /// Leader-mode nodes only.
    pub lease: Option<Arc<LeaseHandle>>,
}

/// Missing token 401, wrong token 403, both JSON.
fn check_token(request: &Incoming<'_>, token: &Secret) -> Option<Reply> {
    match request.bearer {
        Some(presented) if token.matches(presented.as_bytes()) => None,
        Some(_) => Some(Reply::error(403, "wrong admin token")),
        None => Some(Reply::error(401, "missing admin token (Authorization: Bearer ...)")),
    }
}

pub fn handle(request: &Incoming<'_>, action: &str, status: &NodeStatus, admin: &Admin) -> Reply {
    let Some(token) = admin.token.as_ref() else {
        return Reply::error(404, "admin endpoints are disabled; start the node with --admin-token");
    };
    if let Some(refusal) = check_token(request, token) {
        return refusal;
    }
    let post_only = action != "status";
    if post_only && *request.method != tiny_http::Method::Post {
        return Reply::method_not_allowed("POST");
    }
    if !post_only && !request.is_read() {
        return Reply::method_not_allowed("GET, HEAD");
    }
    if let Some(refusal) = request.refuse_body() {
        return refusal;
    }
    let allowed: &[&str] = if action == "transfer" { &["to"] } else { &[] };
    let query = match parse_query(request.query, allowed) {
        Ok(pairs) => pairs,
        Err(message) => return Reply::error(400, message),
    };
    if action == "status" {
        return Reply::json(200, &status_view(status, admin.lease.as_deref()));
    }
    if !matches!(action, "step-down" | "transfer" | "pause" | "resume") {
        return Reply::error(
            404,
            format!("no admin action {action:?}; see /admin/status, step-down, transfer?to=ID, pause, resume"),
        );
    }
    let Some(lease) = &admin.lease else {
        return Reply::error(409, format!("{action} needs a leader-mode node; this one is a member"));
    };
    let id = status.snapshot().instance_id;
    match action {
        "step-down" => match lease.held_term() {
            Some(term) => {
                crate::log::info(&format!("admin: step-down requested for term {term}"));
                lease.request_step_down();
                Reply::json(202, &json!({"node": id, "stepping_down": true, "term": term}))
            }
            None => Reply::error(409, format!("{id} is not the leader")),
        },
        "transfer" => {
            let Some((_, to)) = query.first() else {
                return Reply::error(400, "transfer needs ?to=ID");
            };
            crate::log::info(&format!("admin: transfer to {to} requested"));
            match lease.request_transfer(to) {
                Ok(done) => Reply::json(202, &json!({"node": id, "term": done.term, "to": done.to})),
                Err(refused) => Reply::error(refused.http_status(), format!("{id}: {refused}")),
            }
        }
        "pause" => {
            crate::log::info("admin: paused (this node will not take the lease)");
            lease.set_paused(true);
            status.update(|s| s.paused = true);
            let leading = lease.held_term().is_some();
            Reply::json(200, &json!({"node": id, "paused": true, "leading": leading}))
        }
        _ => {
            crate::log::info("admin: resumed (this node may take the lease again)");
            lease.set_paused(false);
            status.update(|s| s.paused = false);
            Reply::json(200, &json!({"node": id, "paused": false}))
        }
    }
}

/// `/health`'s JSON view with the lease and the cluster's readiness.
fn status_view(status: &NodeStatus, lease: Option<&LeaseHandle>) -> Value {
    let mut view = status.snapshot().to_json();
    if let Some(lease) = lease {
        let held = lease.held_term();
        view["lease"] = json!({
            "held_term": held,
            "remaining_ms": held.map(|term| u64::try_from(lease.remaining(term).as_millis()).unwrap_or(u64::MAX)).unwrap_or(0),
            "ready_to_lead": lease.is_ready_to_lead(),
            "redis_reachable": lease.redis_ok(),
        });
        view["paused"] = json!(lease.is_paused());
        view["cluster"] = Value::Array(lease.cluster().iter().map(|record| record.to_json()).collect());
    }
    view
}
