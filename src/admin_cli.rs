//! `clnode admin [--url URL[,URL...]] --token SECRET ACTION`: the leadership
//! controls of `admin.rs` from the command line, one readable line per
//! outcome, exit 0 when every outcome succeeded and 1 otherwise.
//!
//! `status`, `pause` and `resume` go to every listed node; `step-down` and
//! `transfer --to ID` go to whichever listed node leads (found through
//! `/admin/status`), so the same command works wherever the lease is.

use std::time::Duration;

use serde_json::Value;

use crate::secret::Secret;

/// A node that does not answer within this long has failed (a transfer
/// answers within the lease thread's bound, 3 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAction {
    Status,
    StepDown,
    Transfer { to: String },
    Pause,
    Resume,
}

#[derive(Debug, Clone)]
pub struct AdminArgs {
    pub urls: Vec<String>,
    pub token: Secret,
    pub action: AdminAction,
}

/// What one node answered: its status code and JSON, or why there was none.
type Answer = Result<(u16, Value), String>;

fn call(agent: &ureq::Agent, token: &Secret, method: &str, url: &str) -> Answer {
    let bearer = format!("Bearer {}", String::from_utf8_lossy(token.expose()));
    let response = match method {
        "POST" => agent.post(url).header("Authorization", &bearer).send_empty(),
        _ => agent.get(url).header("Authorization", &bearer).call(),
    };
    let mut response = response.map_err(|error| format!("no answer: {error}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .map_err(|error| format!("unreadable answer: {error}"))?;
    let value = serde_json::from_str(&body).map_err(|_| format!("HTTP {status}, not JSON: {}", body.trim()))?;
    Ok((status, value))
}

/// One line for a failed answer: the node's own error text when it sent one.
fn failure(url: &str, answer: &Answer) -> String {
    match answer {
        Ok((status, value)) => {
            format!("{url}: HTTP {status}: {}", value["error"].as_str().unwrap_or("unexpected answer"))
        }
        Err(reason) => format!("{url}: {reason}"),
    }
}

/// One line for a node's `/admin/status`.
fn status_line(url: &str, view: &Value) -> String {
    let head = view["committed_head"]["number"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{} ({url}): {} {}, term {}, committed head {head}",
        view["instance_id"].as_str().unwrap_or("?"),
        view["mode"].as_str().unwrap_or("?"),
        view["role"].as_str().unwrap_or("?"),
        view["term"].as_u64().unwrap_or(0),
    );
    if view["mode"] == "leader" {
        let ready = view["lease"]["ready_to_lead"] == true;
        line.push_str(if ready { ", ready to lead" } else { ", not ready to lead" });
        if view["paused"] == true {
            line.push_str(", PAUSED");
        }
    }
    if view["healthy"] != true {
        line.push_str(", unhealthy");
    }
    line
}

/// Runs the command; returns the exit code.
pub fn run(args: &AdminArgs) -> u8 {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(REQUEST_TIMEOUT)).http_status_as_error(false).build().into();
    let admin = |url: &str, route: &str| format!("{}/admin/{route}", url.trim_end_matches('/'));
    let mut failed = false;
    let mut report = |ok: bool, line: String| {
        if ok {
            println!("{line}");
        } else {
            failed = true;
            eprintln!("clnode admin: {line}");
        }
    };
    match &args.action {
        AdminAction::Status | AdminAction::Pause | AdminAction::Resume => {
            for url in &args.urls {
                let answer = match args.action {
                    AdminAction::Status => call(&agent, &args.token, "GET", &admin(url, "status")),
                    AdminAction::Pause => call(&agent, &args.token, "POST", &admin(url, "pause")),
                    _ => call(&agent, &args.token, "POST", &admin(url, "resume")),
                };
                match (&args.action, &answer) {
                    (AdminAction::Status, Ok((200, view))) => report(true, status_line(url, view)),
                    (AdminAction::Pause, Ok((200, done))) => {
                        let node = done["node"].as_str().unwrap_or(url);
                        let line = if done["leading"] == true {
                            format!(
                                "{node}: paused; it leads until another node is healthy and caught up, then hands over"
                            )
                        } else {
                            format!("{node}: paused; it will not take the lease")
                        };
                        report(true, line);
                    }
                    (AdminAction::Resume, Ok((200, done))) => {
                        report(
                            true,
                            format!("{}: resumed; it may take the lease again", done["node"].as_str().unwrap_or(url)),
                        );
                    }
                    _ => report(false, failure(url, &answer)),
                }
            }
        }
        AdminAction::StepDown | AdminAction::Transfer { .. } => {
            let Some(leader) = find_leader(&agent, args, &admin) else {
                report(false, format!("no leader among {}", args.urls.join(", ")));
                return 1;
            };
            let answer = match &args.action {
                AdminAction::Transfer { to } => {
                    call(&agent, &args.token, "POST", &format!("{}?to={to}", admin(&leader, "transfer")))
                }
                _ => call(&agent, &args.token, "POST", &admin(&leader, "step-down")),
            };
            match (&args.action, &answer) {
                (AdminAction::Transfer { .. }, Ok((202, done))) => report(
                    true,
                    format!(
                        "{}: handed the lease (term {}) to {}",
                        done["node"].as_str().unwrap_or(&leader),
                        done["term"].as_u64().unwrap_or(0),
                        done["to"].as_str().unwrap_or("?")
                    ),
                ),
                (_, Ok((202, done))) => report(
                    true,
                    format!(
                        "{}: stepped down from term {}; a ready standby takes over",
                        done["node"].as_str().unwrap_or(&leader),
                        done["term"].as_u64().unwrap_or(0)
                    ),
                ),
                _ => report(false, failure(&leader, &answer)),
            }
        }
    }
    u8::from(failed)
}

/// The URL of the listed node that leads, from `/admin/status`; a node
/// that refuses the token is reported, since no other will accept it either.
fn find_leader(agent: &ureq::Agent, args: &AdminArgs, admin: &dyn Fn(&str, &str) -> String) -> Option<String> {
    for url in &args.urls {
        match call(agent, &args.token, "GET", &admin(url, "status")) {
            Ok((200, view)) if view["role"] == "leader" => return Some(url.clone()),
            Ok((200, _)) => {}
            answer => eprintln!("clnode admin: {}", failure(url, &answer)),
        }
    }
    None
}
