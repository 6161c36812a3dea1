//! Prometheus metrics: counters, gauges and fixed-bucket histograms on atomics.
//!
//! Every series clnode exports is a field here, so the full list is in one
//! place and rendering needs no registry. Recording is lock-free; only
//! rendering walks the fields. Label sets are closed (fixed arrays), so no
//! input can grow the number of series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    pub fn set_u64(&self, value: u64) {
        self.set(i64::try_from(value).unwrap_or(i64::MAX));
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds in seconds; covers sub-millisecond RPCs to multi-second stalls.
const LATENCY_BUCKETS_S: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Histogram {
    bucket_counts: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bucket_counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS_S.iter().zip(&self.bucket_counts) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observes a plain number (e.g. a batch size) using the same buckets
    /// read as counts rather than seconds.
    pub fn observe_value(&self, value: u64) {
        #[allow(clippy::cast_precision_loss)] // batch sizes are far below 2^52
        let as_f64 = value as f64;
        for (bound, bucket) in SIZE_BUCKETS.iter().zip(&self.bucket_counts) {
            if as_f64 <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(value, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64], sum_scale: f64) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in bounds.iter().zip(&self.bucket_counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 * sum_scale;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

const SIZE_BUCKETS: [f64; 14] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0, 2000.0, 5000.0, 10000.0];

/// Engine API methods whose latency is tracked, in label order.
pub const ENGINE_METHODS: [&str; 11] = [
    "engine_exchangeCapabilities",
    "engine_forkchoiceUpdatedV3",
    "engine_getPayloadV4",
    "engine_getPayloadV5",
    "engine_newPayloadV4",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_chainId",
    "eth_config",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
];

/// Error kinds counted in `clnode_errors_total{kind}`.
pub const ERROR_KINDS: [&str; 13] = [
    "engine_transport",
    "engine_timeout",
    "engine_auth",
    "engine_http_status",
    "engine_rpc",
    "engine_malformed",
    "engine_invalid_payload",
    "database",
    "redis",
    "sync_fetch",
    "sync_refused",
    // The source answered 429 (at its long-poll cap); the member waited.
    "sync_busy",
    "internal",
];

/// The git commit clnode was built from, when the build said so
/// (`CLNODE_GIT_COMMIT`: `make build`, `make static` and the devnet's build
/// set it from `git rev-parse`; no build script, so a plain `cargo build`
/// has none).
const GIT_COMMIT: Option<&str> = option_env!("CLNODE_GIT_COMMIT");

/// `clnode_build_info`'s `commit` label: a hex commit id, else `unknown`
/// (anything else in the variable is not a commit, and never reaches the
/// exposition text unescaped).
fn commit_label(commit: Option<&str>) -> &str {
    match commit {
        Some(c) if (7..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_hexdigit()) => c,
        _ => "unknown",
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[derive(Default)]
pub struct Metrics {
    /// `clnode_node_info`'s labels (`instance_id`, `mode`), rendered once;
    /// none in tests that build a `Metrics` by default.
    node_labels: Option<String>,
    // Leader and standby.
    pub is_leader: Gauge,
    pub term: Gauge,
    pub committed_head: Gauge,
    pub el_head: Gauge,
    /// This node's wall clock minus PostgreSQL's, as last measured (ms).
    pub clock_offset_ms: Gauge,
    pub blocks_produced: Counter,
    pub transactions_committed: Counter,
    pub commit_refusals: Counter,
    pub lease_acquisitions: Counter,
    pub lease_losses: Counter,
    pub blocks_replayed: Counter,
    pub empty_builds_discarded: Counter,
    pub block_production_seconds: Histogram,
    /// Leader: one fenced commit; member: one applied page's insert.
    pub database_write_seconds: Histogram,
    // Member.
    pub synced_height: Gauge,
    pub sync_lag_blocks: Gauge,
    pub sync_lag_ms: Gauge,
    pub sync_batch_size: Histogram,
    pub block_execution_seconds: Histogram,
    pub sync_refusals: Counter,
    pub sync_url_switches: Counter,
    pub blocks_synced: Counter,
    /// Pages read from sync sources, and their bytes on the wire.
    pub sync_pages: Counter,
    pub sync_page_bytes: Counter,
    /// The largest page read since start (its byte budget at work).
    pub sync_page_bytes_max: Gauge,
    // Both.
    pub engine_latency: [Histogram; ENGINE_METHODS.len()],
    pub errors: [Counter; ERROR_KINDS.len()],
    pub api_requests: Counter,
}

impl Metrics {
    /// The metrics of a running node: `clnode_node_info` names it and its
    /// mode, so rules can tell leader-mode nodes from members.
    pub fn for_node(mode: &str, instance_id: &str) -> Metrics {
        let labels = format!("instance_id=\"{}\",mode=\"{}\"", escape_label(instance_id), escape_label(mode));
        Metrics { node_labels: Some(labels), ..Metrics::default() }
    }

    pub fn observe_engine_call(&self, method: &str, elapsed: Duration) {
        if let Some(index) = ENGINE_METHODS.iter().position(|m| *m == method) {
            self.engine_latency[index].observe(elapsed);
        }
    }

    /// Counts one error; unknown kinds count as `internal` rather than
    /// creating a series.
    pub fn count_error(&self, kind: &str) {
        let index = ERROR_KINDS.iter().position(|k| *k == kind).unwrap_or(ERROR_KINDS.len() - 1);
        self.errors[index].inc();
    }

    pub fn error_count(&self, kind: &str) -> u64 {
        ERROR_KINDS.iter().position(|k| *k == kind).map(|i| self.errors[i].get()).unwrap_or(0)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        self.render_info(&mut out);
        self.render_gauges(&mut out);
        self.render_counters(&mut out);
        self.render_histograms(&mut out);
        crate::process_metrics::render(&mut out);
        out
    }

    fn render_info(&self, out: &mut String) {
        let name = "clnode_build_info";
        let _ = writeln!(
            out,
            "# HELP {name} The version and commit clnode was built from (value 1).\n# TYPE {name} gauge\n\
             {name}{{version=\"{}\",commit=\"{}\"}} 1",
            escape_label(env!("CARGO_PKG_VERSION")),
            commit_label(GIT_COMMIT),
        );
        if let Some(labels) = &self.node_labels {
            let name = "clnode_node_info";
            let _ = writeln!(
                out,
                "# HELP {name} This node's --instance-id and --mode (value 1).\n# TYPE {name} gauge\n{name}{{{labels}}} 1"
            );
        }
    }

    fn render_gauges(&self, out: &mut String) {
        let gauges: [(&str, &str, &Gauge); 10] = [
            ("clnode_is_leader", "1 while this node holds the lease and may produce blocks.", &self.is_leader),
            ("clnode_term", "Fencing term this node last held (0 if never).", &self.term),
            ("clnode_committed_head", "Highest block number this node knows is committed.", &self.committed_head),
            ("clnode_el_head", "Head block number of this node's execution client.", &self.el_head),
            (
                "clnode_clock_offset_seconds",
                "Leader mode: this node's wall clock minus PostgreSQL's, as last measured.",
                &self.clock_offset_ms,
            ),
            ("clnode_synced_height", "Member: highest block executed and stored locally.", &self.synced_height),
            (
                "clnode_sync_lag_blocks",
                "Member: blocks between the sync source head and the local head.",
                &self.sync_lag_blocks,
            ),
            (
                "clnode_sync_lag_seconds",
                "Member: seconds between the source head's commit and now, when behind.",
                &self.sync_lag_ms,
            ),
            (
                "clnode_sync_page_bytes_max",
                "Member: the largest sync page read since start, in bytes on the wire.",
                &self.sync_page_bytes_max,
            ),
            ("clnode_up", "Always 1; present so scrapes can tell the process is alive.", &Gauge(AtomicI64::new(1))),
        ];
        for (name, help, gauge) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            if name == "clnode_sync_lag_seconds" || name == "clnode_clock_offset_seconds" {
                #[allow(clippy::cast_precision_loss)]
                let seconds = gauge.get() as f64 / 1000.0;
                let _ = writeln!(out, "{name} {seconds}");
            } else {
                let _ = writeln!(out, "{name} {}", gauge.get());
            }
        }
    }

    fn render_counters(&self, out: &mut String) {
        let counters: [(&str, &str, &Counter); 13] = [
            ("clnode_blocks_produced_total", "Blocks this node built and committed as leader.", &self.blocks_produced),
            (
                "clnode_transactions_committed_total",
                "Transactions in blocks this node committed.",
                &self.transactions_committed,
            ),
            (
                "clnode_commit_refusals_total",
                "Commits refused by the fence or the parent check (this node stepped down).",
                &self.commit_refusals,
            ),
            ("clnode_lease_acquisitions_total", "Times this node acquired the leader lease.", &self.lease_acquisitions),
            ("clnode_lease_losses_total", "Times this node lost or gave up the lease.", &self.lease_losses),
            (
                "clnode_blocks_replayed_total",
                "Committed blocks replayed onto the execution client as a standby.",
                &self.blocks_replayed,
            ),
            (
                "clnode_empty_builds_discarded_total",
                "Built payloads discarded because they held no transactions.",
                &self.empty_builds_discarded,
            ),
            ("clnode_sync_refusals_total", "Member: sync records refused by verification.", &self.sync_refusals),
            (
                "clnode_sync_url_switches_total",
                "Member: times the member moved to another sync URL.",
                &self.sync_url_switches,
            ),
            ("clnode_blocks_synced_total", "Member: blocks executed and stored.", &self.blocks_synced),
            ("clnode_sync_pages_total", "Member: pages read from sync sources.", &self.sync_pages),
            (
                "clnode_sync_page_bytes_total",
                "Member: bytes of the pages read from sync sources, on the wire.",
                &self.sync_page_bytes,
            ),
            ("clnode_api_requests_total", "Sync API requests served.", &self.api_requests),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", counter.get());
        }
        let name = "clnode_errors_total";
        let _ = writeln!(out, "# HELP {name} Errors by kind.\n# TYPE {name} counter");
        for (kind, counter) in ERROR_KINDS.iter().zip(&self.errors) {
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", counter.get());
        }
    }

    fn render_histograms(&self, out: &mut String) {
        let name = "clnode_engine_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Engine API and eth_ call latency by method.\n# TYPE {name} histogram");
        for (method, histogram) in ENGINE_METHODS.iter().zip(&self.engine_latency) {
            histogram.render(out, name, &format!("method=\"{method}\""), &LATENCY_BUCKETS_S, 1e-6);
        }
        let timing: [(&str, &str, &Histogram); 3] = [
            (
                "clnode_block_production_duration_seconds",
                "Leader: from build start to commit.",
                &self.block_production_seconds,
            ),
            (
                "clnode_database_write_duration_seconds",
                "Leader: one block's fenced commit (durable on return); member: one applied page's insert (not flushed).",
                &self.database_write_seconds,
            ),
            (
                "clnode_block_execution_duration_seconds",
                "Member: newPayload time per block.",
                &self.block_execution_seconds,
            ),
        ];
        for (name, help, histogram) in timing {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            histogram.render(out, name, "", &LATENCY_BUCKETS_S, 1e-6);
        }
        let name = "clnode_sync_batch_size";
        let _ = writeln!(out, "# HELP {name} Member: blocks per fetched batch.\n# TYPE {name} histogram");
        self.sync_batch_size.render(out, name, "", &SIZE_BUCKETS, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(300));
        histogram.observe(Duration::from_millis(7));
        let mut out = String::new();
        histogram.render(&mut out, "x", "", &LATENCY_BUCKETS_S, 1e-6);
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("x_count 2\n"), "{out}");
    }

    #[test]
    fn build_info_carries_the_version_and_a_commit_only_when_it_is_one() {
        let cases = [
            (None, "unknown"),
            (Some(""), "unknown"),
            (Some("62603ab"), "62603ab"),
            (Some("62603ab1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7"), "62603ab1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7"),
            (Some("abc"), "unknown"),
            (Some("62603ab-dirty"), "unknown"),
            (Some("x\"} 2"), "unknown"),
        ];
        for (commit, expected) in cases {
            assert_eq!(commit_label(commit), expected, "{commit:?}");
        }
        let text = Metrics::default().render();
        let version = env!("CARGO_PKG_VERSION");
        assert!(text.contains(&format!("clnode_build_info{{version=\"{version}\",commit=\"")), "{text}");
        assert!(!text.contains("clnode_node_info"), "a default Metrics names no node");
    }

    #[test]
    fn node_info_names_the_node_and_its_mode() {
        let text = Metrics::for_node("member", "member-1").render();
        assert!(text.contains("\nclnode_node_info{instance_id=\"member-1\",mode=\"member\"} 1\n"), "{text}");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn render_has_help_and_type_for_every_series() {
        let metrics = Metrics::default();
        metrics.count_error("database");
        metrics.count_error("no-such-kind");
        metrics.observe_engine_call("engine_newPayloadV4", Duration::from_millis(3));
        let text = metrics.render();
        assert!(text.contains("clnode_errors_total{kind=\"database\"} 1"));
        assert!(text.contains("clnode_errors_total{kind=\"internal\"} 1"));
        assert!(text.contains("clnode_engine_request_duration_seconds_count{method=\"engine_newPayloadV4\"} 1"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {base} ")) || text.contains(&format!("# TYPE {name} ")),
                "no TYPE for {name}"
            );
        }
    }
}
