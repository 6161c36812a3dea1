//! The monitoring kit in deploy/ against what clnode really exports: the
//! Prometheus alerts (`promtool check rules`, and `promtool test rules` on
//! alerts.test.yml, which proves each alert fires on the series it claims
//! to), the Grafana dashboard's shape, and that every metric name the alerts,
//! their tests, the dashboard and OPERATIONS.md's metrics table use is one
//! `/metrics` serves (and every one it serves is documented), so none of them
//! can go stale. promtool is the real one (Debian `prometheus`, installed by
//! scripts/deps.sh); the devnet smoke test (tests/devnet.rs) runs the alerts
//! and the dashboard's queries in a live Prometheus.

// Test code: a failed unwrap, expect or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use clnode::metrics::Metrics;
use serde_json::Value;
use support::wait_with_output;

const PROMTOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs promtool with `args` (and `stdin`), bounded by [`PROMTOOL_TIMEOUT`];
/// returns (success, stdout + stderr).
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool does not start ({e}): run scripts/deps.sh prometheus"));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let (status, out, err) = wait_with_output(child, PROMTOOL_TIMEOUT, &format!("promtool {args:?}"));
    (status.success(), format!("{out}{err}"))
}

/// The metric names in `text`: every `clnode_…` or `process_…` token (lower
/// case, digits, underscores) that does not continue a longer identifier or
/// path, skipping YAML comment lines (which name files such as
/// src/process_metrics.rs). Histogram series suffixes are kept; callers
/// compare against [`exported_series`].
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !line.is_char_boundary(i) {
                i += 1;
                continue;
            }
            let rest = &line[i..];
            let starts_name = rest.starts_with("clnode_") || rest.starts_with("process_");
            let joined = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || b"_/.-".contains(&bytes[i - 1]));
            if starts_name && !joined {
                let len =
                    rest.bytes().take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_').count();
                names.insert(rest[..len].to_owned());
                i += len;
            } else {
                i += 1;
            }
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_exprs_and_text_but_not_in_paths() {
    let cases: [(&str, &[&str]); 8] = [
        ("expr: up{job=\"clnode\"} == 0", &[]),
        ("expr: clnode_committed_head - clnode_el_head > 10", &["clnode_committed_head", "clnode_el_head"]),
        ("rate(clnode_errors_total{kind!=\"internal\"}[5m])", &["clnode_errors_total"]),
        ("histogram_quantile(0.99, rate(clnode_x_seconds_bucket[5m]))", &["clnode_x_seconds_bucket"]),
        ("# (src/metrics.rs, src/process_metrics.rs) clnode_not_checked", &[]),
        ("see src/process_metrics.rs and my_clnode_thing", &[]),
        ("p99 → 50 ms: `clnode_term`, ‘process_open_fds’", &["clnode_term", "process_open_fds"]),
        ("\"expr\": \"time() - process_start_time_seconds{job=\\\"clnode\\\"}\"", &["process_start_time_seconds"]),
    ];
    for (text, expected) in cases {
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(metric_names(text), expected, "{text}");
    }
}

/// Every series name `/metrics` serves (histograms with their `_bucket`,
/// `_sum` and `_count`), from the `# TYPE` lines of a node's render.
fn exported_series() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = Metrics::for_node("leader", "leader-1").render();
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut words = rest.split(' ');
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        families.insert(name.to_owned());
        series.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                series.insert(format!("{name}{suffix}"));
            }
        }
    }
    (families, series)
}

/// The text of docs/OPERATIONS.md's "Metrics and alerts" section.
fn operations_metrics_section() -> String {
    let doc = read("docs/OPERATIONS.md");
    let start = doc.find("\n## Metrics and alerts\n").expect("OPERATIONS.md has a 'Metrics and alerts' section");
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

#[test]
fn every_metric_the_kit_names_is_exported_and_every_exported_one_is_documented() {
    let (families, series) = exported_series();
    for must in [
        "clnode_build_info",
        "clnode_node_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(families.contains(must), "/metrics does not serve {must}");
    }
    let docs = operations_metrics_section();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
        "deploy/grafana/clnode.json",
        "docs/OPERATIONS.md (Metrics and alerts)",
    ] {
        let text = if file.starts_with("docs/") { docs.clone() } else { read(file) };
        let names = metric_names(&text);
        assert!(!names.is_empty() || file.contains("OPERATIONS"), "{file} names no metric");
        let unknown: Vec<_> = names.iter().filter(|n| !series.contains(*n)).collect();
        assert!(unknown.is_empty(), "{file} names metrics clnode does not export: {unknown:?}");
    }
    let documented = metric_names(&docs);
    let undocumented: Vec<_> = families.iter().filter(|f| !documented.contains(*f)).collect();
    assert!(undocumented.is_empty(), "OPERATIONS.md's 'Metrics and alerts' does not name {undocumented:?}");
}

/// The alert names of alerts.yml, in order.
fn alert_names() -> Vec<String> {
    read("deploy/prometheus/alerts.yml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn promtool_accepts_the_alerts_and_their_unit_tests_pass() {
    let (ok, out) = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"], None);
    assert!(ok, "promtool check rules:\n{out}");
    let alerts = alert_names();
    assert!(out.contains(&format!("SUCCESS: {} rules found", alerts.len())), "{out}");
    let (ok, out) = promtool(&["test", "rules", "deploy/prometheus/alerts.test.yml"], None);
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_is_proven_to_fire_and_documented() {
    let tests = read("deploy/prometheus/alerts.test.yml");
    let docs = operations_metrics_section();
    let alerts = alert_names();
    assert!(alerts.len() >= 15, "{alerts:?}");
    for alert in &alerts {
        // A block-form test case (`alertname: X` alone on its line) whose
        // expectations, up to the next case, list an alert.
        let fires = tests.match_indices(&format!("alertname: {alert}\n")).any(|(at, _)| {
            let rest = &tests[at..];
            let case = rest[1..].find("eval_time").map_or(rest, |end| &rest[..end]);
            case.contains("exp_labels")
        });
        assert!(fires, "no test in alerts.test.yml expects {alert} to fire");
        assert!(docs.contains(&format!("`{alert}`")), "OPERATIONS.md's 'Metrics and alerts' does not name `{alert}`");
    }
    let unique: BTreeSet<_> = alerts.iter().collect();
    assert_eq!(unique.len(), alerts.len(), "an alert name is used twice: {alerts:?}");
}

#[test]
fn promtool_accepts_the_metrics_text() {
    let metrics = Metrics::for_node("member", "member-1");
    metrics.count_error("database");
    metrics.observe_engine_call("engine_newPayloadV4", Duration::from_millis(3));
    metrics.sync_batch_size.observe_value(7);
    let (ok, out) = promtool(&["check", "metrics"], Some(&metrics.render()));
    assert!(ok, "promtool check metrics:\n{out}");
}

/// Every panel of the dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_of_prometheus_queries() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/clnode.json")).expect("clnode.json is JSON");
    assert_eq!(dashboard["uid"], "clnode");
    let variables: Vec<&str> =
        dashboard["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(variables, ["datasource", "cluster", "instance"]);
    let mut ids = BTreeSet::new();
    let mut titles = String::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64().expect("numeric id")), "panel id of {title} used twice");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24 && grid["h"].as_u64().unwrap() > 0, "{title}: gridPos {grid}");
        titles.push_str(title);
        titles.push('\n');
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}: not on the datasource variable");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a target without expr"));
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}: target not on the datasource variable");
        }
    }
    // What the dashboard is for (issue 17): each of these has a panel.
    for wanted in [
        "Committed head per node",
        "Member lag",
        "Block interval",
        "Commit latency",
        "Engine API latency",
        "Failovers",
        "Refusals",
        "Errors by kind",
    ] {
        assert!(titles.contains(wanted), "no panel titled {wanted:?}:\n{titles}");
    }
}
