//! `make soak`: a cluster under sustained load for a long time, the leader
//! never killed, counting what must not happen: false failovers (the term
//! changing with nobody killed), lease losses, warn/error log lines, /health
//! answering 503, and memory that grows.
//!
//! Two leader-mode nodes and two members, each on its own geth, all four
//! geths peered over devp2p on loopback, and one transaction sender per
//! geth at `SOAK_RATE` transfers a second. Settings (environment):
//!
//! - `SOAK_MINUTES` (default 60): how long the load runs;
//! - `SOAK_RATE` (default 10): transfers per second sent to each of the 4 geths;
//! - `SOAK_FLAGS` (default none): extra flags for both leader-mode nodes,
//!   e.g. `--lease-ttl 500ms --lease-renew-interval 100ms --lease-safety-margin 100ms`;
//! - `SOAK_OUT` (default `target/soak`): where `progress.jsonl` (one line a
//!   minute, written as it goes) and `report.json` (at the end) go.
//!
//! Exits 1 when any false failover, lease loss, warn/error line or 503 was
//! seen, so `make soak` fails on it.

// Test code: a failed unwrap, expect or panic is a failed run, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn env_number(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|v| v.parse().unwrap_or(f64::NAN));
    [fields.next().unwrap_or(f64::NAN), fields.next().unwrap_or(f64::NAN), fields.next().unwrap_or(f64::NAN)]
}

/// Every term that committed a block: (term, first block, its commit time
/// as text), in order.
fn terms(postgres: &Postgres) -> Vec<(u64, u64, String)> {
    postgres
        .client()
        .query(
            "SELECT term, MIN(block_number), to_char(MIN(created_at) AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') \
             FROM payloads GROUP BY term ORDER BY term",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64, row.get::<_, String>(2)))
        .collect()
}

fn head(postgres: &Postgres) -> u64 {
    let row = postgres.client().query_one("SELECT COALESCE(MAX(block_number), 0) FROM payloads", &[]).unwrap();
    row.get::<_, i64>(0) as u64
}

/// A clnode log read as it grows: the warn and error lines since the last call.
struct LogWatch {
    node: String,
    path: PathBuf,
    offset: usize,
}

impl LogWatch {
    fn new_lines(&mut self) -> Vec<String> {
        let text = std::fs::read(&self.path).unwrap_or_default();
        let fresh = String::from_utf8_lossy(&text[self.offset.min(text.len())..]).into_owned();
        // Only whole lines; a partial last line is read next time.
        let complete = fresh.rfind('\n').map_or(0, |i| i + 1);
        self.offset += complete;
        fresh[..complete]
            .lines()
            .filter(|line| {
                let level = line.split_whitespace().nth(1).unwrap_or("");
                level == "WARN" || level == "ERROR"
            })
            .map(|line| format!("{}: {line}", self.node))
            .collect()
    }
}

/// /health of every node, polled by a thread of its own every 500 ms.
#[derive(Default)]
struct HealthTally {
    polls: u64,
    unavailable: u64,
    no_answer: u64,
    /// The first few 503 lines, with the node's name.
    samples: Vec<String>,
    /// Times two nodes reported themselves leader in one poll round.
    two_leaders: u64,
}

fn poll_health(ports: Vec<(String, u16)>, stop: &std::sync::atomic::AtomicBool, tally: &std::sync::Mutex<HealthTally>) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut leaders = 0;
        for (name, port) in &ports {
            let answer = http_get_within(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(2));
            let mut tally = tally.lock().unwrap();
            tally.polls += 1;
            match answer {
                Ok((503, body)) => {
                    tally.unavailable += 1;
                    if tally.samples.len() < 10 {
                        let line = format!("{} {name}: {}", clnode::log::utc_now(), body.trim());
                        tally.samples.push(line);
                    }
                }
                Ok((_, body)) => leaders += usize::from(body.contains("isLeader=true")),
                Err(error) => {
                    tally.no_answer += 1;
                    if tally.samples.len() < 10 {
                        tally.samples.push(format!("{} {name}: no answer: {error}", clnode::log::utc_now()));
                    }
                }
            }
        }
        if leaders > 1 {
            tally.lock().unwrap().two_leaders += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How late a thread of this process wakes from a 10 ms sleep: the
/// machine's scheduling delay, measured beside the cluster, so a lease
/// loss can be told from a machine that stalled as a whole.
#[derive(Default)]
struct Stalls {
    /// The worst oversleep since the last minute line (ms).
    minute_max_ms: f64,
    /// The worst over the run (ms).
    max_ms: f64,
    /// Oversleeps of 200 ms or more: when, and how long.
    samples: Vec<String>,
    count_over_200ms: u64,
}

fn watch_stalls(stop: &std::sync::atomic::AtomicBool, stalls: &std::sync::Mutex<Stalls>) {
    let tick = Duration::from_millis(10);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let before = Instant::now();
        std::thread::sleep(tick);
        let late_ms = before.elapsed().saturating_sub(tick).as_secs_f64() * 1000.0;
        let mut stalls = stalls.lock().unwrap();
        stalls.minute_max_ms = stalls.minute_max_ms.max(late_ms);
        stalls.max_ms = stalls.max_ms.max(late_ms);
        if late_ms >= 200.0 {
            stalls.count_over_200ms += 1;
            if stalls.samples.len() < 50 {
                stalls.samples.push(format!("{} woke {late_ms:.0} ms late", clnode::log::utc_now()));
            }
        }
    }
}

/// Redis's own latency monitor (events such as `aof-write`, `aof-fsync-always`,
/// `command`, `expire-cycle` that took 50 ms or more): event -> worst ms.
fn redis_latency(redis: &Redis) -> Value {
    let Ok(client) = redis::Client::open(format!("redis://{}/", redis.addr())) else { return Value::Null };
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(2)) else { return Value::Null };
    let latest: Vec<(String, i64, i64, i64)> =
        redis::cmd("LATENCY").arg("LATEST").query(&mut connection).unwrap_or_default();
    latest.into_iter().map(|(event, _at, _last, max)| (event, json!(max))).collect::<serde_json::Map<_, _>>().into()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` builds and
    // runs bench targets too and must not start an hour-long run.
    if !std::env::args().any(|arg| arg == "--bench") {
        eprintln!("soak: run it with `make soak` (cargo bench --bench soak)");
        return;
    }
    let minutes = env_number("SOAK_MINUTES", 60.0);
    let rate = env_number("SOAK_RATE", 10.0);
    let flags_text = std::env::var("SOAK_FLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags_text.split_whitespace().collect();
    let out = PathBuf::from(std::env::var("SOAK_OUT").unwrap_or_else(|_| format!("{REPO}/target/soak")));
    std::fs::create_dir_all(&out).unwrap();
    let progress_path = out.join("progress.jsonl");
    let mut progress = std::fs::File::create(&progress_path).unwrap();
    eprintln!(
        "soak: {minutes} min, {rate} tx/s to each of 4 geths, leader flags {flags:?}; progress in {}",
        progress_path.display()
    );

    let cluster = Cluster::builder("soak").leaders(2).peered().flags(&flags).start();
    {
        let client = redis::Client::open(format!("redis://{}/", cluster.redis.addr())).unwrap();
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
        let _: () =
            redis::cmd("CONFIG").arg("SET").arg("latency-monitor-threshold").arg("50").query(&mut connection).unwrap();
    }
    let sync: Vec<String> = cluster.nodes.iter().map(Node::api_url).collect();
    let members: Vec<Member> = (0..2)
        .map(|i| {
            Member::start_peered(
                &cluster.dir,
                &format!("member-{i}"),
                ElKind::Geth,
                "osaka",
                &sync,
                &[],
                &cluster.el_enodes(),
            )
        })
        .collect();
    cluster.wait_peered(Duration::from_secs(60));
    for member in &members {
        wait_for(Duration::from_secs(60), "member peered", || (member.el.peer_count() >= 2).then_some(()));
    }
    let first_leader = cluster.wait_for_leader(Duration::from_secs(60));
    cluster.commit_transactions(first_leader, 1, Duration::from_secs(60));
    for member in &members {
        member.wait_caught_up(&cluster.head(), Duration::from_secs(60));
    }

    let rpcs: Vec<String> = cluster.els.iter().map(El::rpc_url).chain(members.iter().map(|m| m.el.rpc_url())).collect();
    let loads: Vec<Proc> = rpcs
        .iter()
        .enumerate()
        .map(|(i, rpc)| {
            load_generator(
                &cluster.dir,
                &format!("load{i}"),
                rpc,
                keys::key(&keys::LOAD_KEYS, i),
                rate,
                minutes * 60.0 + 120.0,
            )
        })
        .collect();

    let nodes: Vec<&Node> = cluster.nodes.iter().chain(members.iter().map(|m| &m.node)).collect();
    let names: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let mut logs: Vec<LogWatch> =
        nodes.iter().map(|n| LogWatch { node: n.id.clone(), path: n.proc.log.clone(), offset: 0 }).collect();
    // Lines from the start-up (a standby's "not ready" while it catches
    // up, say) are read now and counted apart from the run's.
    let startup_lines: Vec<String> = logs.iter_mut().flat_map(LogWatch::new_lines).collect();
    let start_terms = terms(&cluster.postgres);
    let start_head = head(&cluster.postgres);
    let losses_at_start: Vec<f64> =
        cluster.nodes.iter().map(|n| n.metric("clnode_lease_losses_total").unwrap_or(0.0)).collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tally = std::sync::Arc::new(std::sync::Mutex::new(HealthTally::default()));
    let poller = {
        let ports: Vec<(String, u16)> = nodes.iter().map(|n| (n.id.clone(), n.health_port)).collect();
        let (stop, tally) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&tally));
        std::thread::spawn(move || poll_health(ports, &stop, &tally))
    };

    let stalls = std::sync::Arc::new(std::sync::Mutex::new(Stalls::default()));
    let stall_watch = {
        let (stop, stalls) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&stalls));
        std::thread::spawn(move || watch_stalls(&stop, &stalls))
    };

    let started = Instant::now();
    let total = Duration::from_secs_f64(minutes * 60.0);
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); nodes.len()];
    let mut loads_avg: Vec<f64> = Vec::new();
    let mut bad_lines: Vec<String> = Vec::new();
    let mut max_member_lag = 0_u64;
    let mut minute = 0_u64;
    let mut next_sample = started;
    while started.elapsed() < total {
        // Member lag, sampled every 2 s between the minute marks.
        let leader_head = head(&cluster.postgres);
        for member in &members {
            if let Some(synced) = member.node.synced_height() {
                max_member_lag = max_member_lag.max(leader_head.saturating_sub(synced));
            }
        }
        if Instant::now() >= next_sample {
            let sizes: Vec<f64> = nodes.iter().map(|n| rss_mb(n.proc.pid())).collect();
            for (series, size) in rss.iter_mut().zip(&sizes) {
                series.push(*size);
            }
            let load = load_average();
            loads_avg.push(load[0]);
            let fresh: Vec<String> = logs.iter_mut().flat_map(LogWatch::new_lines).collect();
            for line in &fresh {
                eprintln!("soak: {line}");
            }
            bad_lines.extend(fresh);
            let term_list = terms(&cluster.postgres);
            let tally_now = tally.lock().unwrap();
            let accepted: usize =
                loads.iter().map(|l| l.log_text().lines().filter(|l| l.contains("\"hash\"")).count()).sum();
            let line = json!({
                "minute": minute,
                "utc": clnode::log::utc_now(),
                "head": head(&cluster.postgres),
                "accepted_txs": accepted,
                "terms": term_list.len(),
                "term_changes": term_list.len().saturating_sub(start_terms.len()),
                "rss_mb": names.iter().zip(&sizes).map(|(n, s)| (n.clone(), json!((s * 10.0).round() / 10.0))).collect::<serde_json::Map<_, _>>(),
                "load_average": load,
                "warn_error_lines": bad_lines.len(),
                "health_polls": tally_now.polls,
                "health_503": tally_now.unavailable,
                "health_no_answer": tally_now.no_answer,
                "two_leaders": tally_now.two_leaders,
                "max_member_lag_blocks": max_member_lag,
            });
            drop(tally_now);
            let mut line = line;
            {
                let mut stalls_now = stalls.lock().unwrap();
                line["scheduling_delay_max_ms"] = json!(stalls_now.minute_max_ms.round());
                line["scheduling_delays_over_200ms"] = json!(stalls_now.count_over_200ms);
                stalls_now.minute_max_ms = 0.0;
            }
            line["redis_latency_max_ms"] = redis_latency(&cluster.redis);
            eprintln!("soak: {line}");
            writeln!(progress, "{line}").unwrap();
            progress.flush().unwrap();
            minute += 1;
            next_sample += Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.join().unwrap();
    stall_watch.join().unwrap();
    let stalls = stalls.lock().unwrap();
    let end_terms = terms(&cluster.postgres);
    let end_head = head(&cluster.postgres);
    let losses: Vec<f64> = cluster
        .nodes
        .iter()
        .zip(&losses_at_start)
        .map(|(n, before)| n.metric("clnode_lease_losses_total").unwrap_or(f64::NAN) - before)
        .collect();
    bad_lines.extend(logs.iter_mut().flat_map(LogWatch::new_lines));
    let term_changes = end_terms.len().saturating_sub(start_terms.len());
    let tally = tally.lock().unwrap();
    let accepted: usize = loads.iter().map(|l| l.log_text().lines().filter(|l| l.contains("\"hash\"")).count()).sum();
    let elapsed_s = started.elapsed().as_secs_f64();
    let rss_summary: serde_json::Map<String, Value> = names
        .iter()
        .zip(&rss)
        .map(|(name, series)| {
            let max = series.iter().copied().fold(f64::NAN, f64::max);
            // Flat: the last half's mean against the first half's (after
            // the first minute's warm-up).
            let half = series.len() / 2;
            let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
            (
                name.clone(),
                json!({
                    "first": series.first(), "last": series.last(), "max": max,
                    "first_half_mean": mean(&series[1.min(half)..half]), "second_half_mean": mean(&series[half..]),
                    "series": series.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    let mut sorted_load = loads_avg.clone();
    sorted_load.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let report = json!({
        "command": format!("SOAK_MINUTES={minutes} SOAK_RATE={rate} SOAK_FLAGS='{flags_text}' cargo bench --bench soak"),
        "leader_flags": flags_text,
        "minutes": elapsed_s / 60.0,
        "rate_per_geth": rate,
        "blocks": end_head - start_head,
        "accepted_txs": accepted,
        "term_changes": term_changes,
        "terms_during_run": end_terms.iter().skip(start_terms.len().saturating_sub(1)).map(|(t, b, at)| json!({"term": t, "first_block": b, "at": at})).collect::<Vec<_>>(),
        "lease_losses": losses,
        "warn_error_lines": bad_lines.len(),
        "warn_error_samples": bad_lines.iter().take(20).collect::<Vec<_>>(),
        "startup_warn_error_lines": startup_lines.len(),
        "health_polls": tally.polls,
        "health_503": tally.unavailable,
        "health_no_answer": tally.no_answer,
        "health_samples": tally.samples,
        "two_leaders_seen": tally.two_leaders,
        "max_member_lag_blocks": max_member_lag,
        "rss_mb": rss_summary,
        "load_average_1m": {"min": sorted_load.first(), "median": sorted_load.get(sorted_load.len() / 2), "max": sorted_load.last()},
        "scheduling_delay": {"max_ms": stalls.max_ms.round(), "over_200ms": stalls.count_over_200ms, "samples": stalls.samples},
        "redis_latency_max_ms": redis_latency(&cluster.redis),
    });
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!("soak: {}", serde_json::to_string_pretty(&report).unwrap());
    drop(loads);
    let clean = term_changes == 0
        && losses.iter().all(|l| *l == 0.0)
        && bad_lines.is_empty()
        && tally.unavailable == 0
        && tally.no_answer == 0
        && tally.two_leaders == 0;
    drop(tally);
    drop(members);
    drop(cluster);
    if !clean {
        eprintln!("soak: NOT CLEAN (see {})", out.join("report.json").display());
        std::process::exit(1);
    }
    eprintln!("soak: clean");
}
