//! `clnode status --url URL[,URL...]`: the cluster view from each node's
//! JSON health and metrics, as a table. With `--watch` it redraws every
//! interval and shows committed transactions per second.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::shutdown::Shutdown;

/// A node that does not answer within this long is shown as down.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from a node.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusArgs {
    /// Health addresses (`http://host:port`) of the nodes to show.
    pub urls: Vec<String>,
    pub watch: bool,
    pub interval: Duration,
}

/// What one node said (or that it said nothing).
struct NodeView {
    url: String,
    health: Option<Value>,
    transactions_total: Option<f64>,
}

fn fetch(agent: &ureq::Agent, url: &str) -> Option<String> {
    let mut response = agent.get(url).call().ok()?;
    response.body_mut().with_config().limit(MAX_ANSWER_BYTES).read_to_string().ok()
}

fn observe(agent: &ureq::Agent, url: &str) -> NodeView {
    let health = fetch(agent, &format!("{url}/health?format=json")).and_then(|b| serde_json::from_str(&b).ok());
    let transactions_total = fetch(agent, &format!("{url}/metrics")).and_then(|text| {
        text.lines().find_map(|line| line.strip_prefix("clnode_transactions_committed_total ")?.trim().parse().ok())
    });
    NodeView { url: url.to_owned(), health, transactions_total }
}

/// Runs the command; returns the process exit code (0 when every node is
/// healthy, 1 otherwise, so scripts can use it as a check).
pub fn run(args: &StatusArgs, shutdown: &Shutdown) -> u8 {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(NODE_TIMEOUT)).http_status_as_error(false).build().into();
    let mut previous: Option<(Instant, f64)> = None;
    loop {
        let views: Vec<NodeView> = args.urls.iter().map(|url| observe(&agent, url)).collect();
        // Every leader counts the blocks it committed; the sum over leaders
        // only grows, whoever leads.
        let total: f64 = views.iter().filter_map(|v| v.transactions_total).sum();
        let now = Instant::now();
        let rate = previous.map(|(at, before)| {
            let seconds = now.duration_since(at).as_secs_f64().max(0.001);
            ((total - before) / seconds).max(0.0)
        });
        previous = Some((now, total));
        let table = render(&views, rate);
        let healthy = views.iter().all(|v| v.health.as_ref().is_some_and(|h| h["healthy"] == true));
        if args.watch {
            // Clear the screen and home the cursor, then draw.
            print!("\x1b[2J\x1b[H{table}");
        } else {
            print!("{table}");
            return u8::from(!healthy);
        }
        if !shutdown.sleep(args.interval) {
            return 0;
        }
    }
}

/// The table's columns, in order.
const COLUMNS: [&str; 10] =
    ["NODE", "MODE", "ROLE", "TERM", "COMMITTED", "EL HEAD", "LAG", "LAST FAILOVER", "STATUS", "URL"];

fn render(views: &[NodeView], tx_per_second: Option<f64>) -> String {
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut rows: Vec<[String; 10]> = vec![COLUMNS.map(str::to_owned)];
    rows.extend(views.iter().map(|view| row(view, now_s)));
    let mut out = align(&rows);
    match tx_per_second {
        Some(rate) => {
            let _ = writeln!(out, "\ncommitted transactions per second: {rate:.1}");
        }
        None => out.push_str("\ncommitted transactions per second: (measuring)\n"),
    }
    out
}

/// One node's row; a node that did not answer reads "down".
fn row(view: &NodeView, now_s: u64) -> [String; 10] {
    let Some(h) = &view.health else {
        let mut cells = ["-"; 10].map(str::to_owned);
        cells[0] = "?".into();
        cells[1] = "?".into();
        cells[2] = "down".into();
        cells[8] = "no answer".into();
        cells[9] = view.url.clone();
        return cells;
    };
    let number = |field: &str| h[field]["number"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let failover = match (h["last_failover_ms"].as_u64(), h["last_failover_at_unix_s"].as_u64()) {
        (Some(gap), Some(at)) => format!("{}s ago, {gap} ms gap", now_s.saturating_sub(at)),
        _ => "-".into(),
    };
    let problems: Vec<String> = h["problems"]
        .as_object()
        .map(|p| p.iter().map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    let status = if h["healthy"] == true { "ok".to_owned() } else { problems.join("; ") };
    [
        h["instance_id"].as_str().unwrap_or("?").to_owned(),
        h["mode"].as_str().unwrap_or("?").to_owned(),
        match (h["role"].as_str().unwrap_or("?"), h["paused"] == true) {
            (role, true) => format!("{role} (paused)"),
            (role, false) => role.to_owned(),
        },
        h["term"].as_u64().map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
        number("committed_head"),
        number("el_head"),
        lag(h),
        failover,
        truncate(&status, 60),
        view.url.clone(),
    ]
}

/// A member's lag as it reports it; a leader-mode node's client behind the
/// committed head.
fn lag(h: &Value) -> String {
    match h["mode"].as_str() {
        Some("member") => {
            format!("{} blk / {:.1}s", h["lag_blocks"].as_u64().unwrap_or(0), h["lag_seconds"].as_f64().unwrap_or(0.0))
        }
        _ => match (h["committed_head"]["number"].as_u64(), h["el_head"]["number"].as_u64()) {
            (Some(committed), Some(el)) => format!("{} blk", committed.saturating_sub(el)),
            _ => "-".into(),
        },
    }
}

/// Left-aligned columns two spaces apart, no trailing blanks.
fn align(rows: &[[String; 10]]) -> String {
    let mut widths: HashMap<usize, usize> = HashMap::new();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            let width = widths.entry(index).or_insert(0);
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            let _ = write!(out, "{cell:<width$}  ", width = widths[&index]);
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    out
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max_chars - 3).collect();
        short.push_str("...");
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_shows_nodes_and_marks_the_silent_one_down() {
        let views = vec![
            NodeView {
                url: "http://127.0.0.1:8080".into(),
                health: Some(json!({
                    "instance_id": "leader-1", "mode": "leader", "role": "leader", "term": 3, "healthy": true,
                    "committed_head": {"number": 120, "hash": "0x"}, "el_head": {"number": 120, "hash": "0x"},
                    "problems": {}, "last_failover_ms": 40, "last_failover_at_unix_s": 0
                })),
                transactions_total: Some(10.0),
            },
            NodeView { url: "http://127.0.0.1:8082".into(), health: None, transactions_total: None },
        ];
        let table = render(&views, Some(4.5));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NODE"));
        assert!(lines[1].contains("leader-1") && lines[1].contains("120") && lines[1].contains("40 ms gap"), "{table}");
        assert!(lines[2].contains("down") && lines[2].contains("8082"), "{table}");
        assert!(table.contains("per second: 4.5"));
    }
}
