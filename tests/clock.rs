//! Clock skew on real Redis, PostgreSQL and geth, with one clnode's wall
//! clock moved by libfaketime (its monotonic clock left alone): at +1 h,
//! -1 h, +5 s, and jumping by an hour while it leads.
//!
//! What must hold in every case: no block is committed with a timestamp
//! more than the lead cap (`--max-timestamp-lead`, 2 s) ahead of real time
//! (PostgreSQL's clock at the commit, `created_at`); the skewed node says
//! so on `/health` (503, `clock: ...`) and does not lead (or steps down);
//! after it is killed a correct node commits within 2 x the lease TTL.
//!
//! The skewed node reaches its geth through `support::engine_relay`, which
//! re-signs the Engine API JWT with the real clock: on a real machine the
//! node and its client share the wrong clock, but geth (Go) cannot be put
//! under libfaketime. All four cases run in `make test` (20-40 s).

// Test code: a failed unwrap, expect or panic is a failed test, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::engine_relay::EngineRelay;
use support::*;

/// The default lease TTL; a correct node must commit within twice this.
const LEASE_TTL: Duration = Duration::from_secs(1);
/// The default `--max-timestamp-lead`.
const LEAD_CAP_S: f64 = 2.0;
/// Empty blocks keep the chain moving without a transaction load, so every
/// stall and every takeover shows in the committed chain.
const HEARTBEAT: [&str; 2] = ["--empty-block-interval", "300ms"];
/// How long the skewed node is left alone with the lease free: more than
/// 2 x TTL, so a node that may lead has acquired and built by then.
const ALONE: Duration = Duration::from_secs(4);

/// Debian's libfaketime (`make deps` installs the `faketime` package).
fn libfaketime() -> PathBuf {
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("libfaketime.so.1 missing: run `make deps` (it installs Debian's faketime)")
}

/// The environment that moves only the wall clock (libfaketime 0.9.10:
/// FAKETIME_DONT_FAKE_MONOTONIC), by `offset` ("+3600") or by what the
/// file `offset_file` says, read on every call.
fn faketime_env(library: &Path, offset: Option<&str>, offset_file: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![
        ("LD_PRELOAD".to_owned(), library.display().to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
    ];
    if let Some(offset) = offset {
        env.push(("FAKETIME".to_owned(), offset.to_owned()));
    }
    if let Some(file) = offset_file {
        env.push(("FAKETIME_TIMESTAMP_FILE".to_owned(), file.display().to_string()));
        env.push(("FAKETIME_NO_CACHE".to_owned(), "1".to_owned()));
    }
    env
}

/// Two leader-mode nodes on geth with heartbeats; node 0 is replaced by
/// one whose wall clock runs under `env`, reaching its geth through the
/// re-signing relay (its JWTs carry the skewed time).
fn cluster_with_skewed_node(name: &str, env: &[(String, String)]) -> (Cluster, EngineRelay) {
    let mut cluster = Cluster::builder(name).leaders(2).flags(&HEARTBEAT).start();
    cluster.nodes[0].proc.kill();
    let relay = EngineRelay::start(&cluster.els[0]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let relay_url = relay.url();
    let mut flags = HEARTBEAT.to_vec();
    flags.extend(["--eth-client-url", relay_url.as_str()]);
    let node = Node::leader_with_env(
        &cluster.dir,
        "leader-0-skewed",
        &cluster.els[0],
        &cluster.postgres,
        &cluster.redis,
        &flags,
        &env,
    );
    cluster.nodes[0] = node;
    (cluster, relay)
}

/// (number, timestamp, commit time in s since the epoch, term) of every
/// committed block; the commit time is PostgreSQL's `now()` at the commit.
fn committed(postgres: &Postgres) -> Vec<(u64, u64, f64, u64)> {
    let mut client = postgres.client();
    let rows = client
        .query(
            "SELECT block_number, timestamp, extract(epoch FROM created_at)::FLOAT8, term FROM payloads \
             ORDER BY block_number",
            &[],
        )
        .unwrap();
    rows.iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64, r.get(2), r.get::<_, i64>(3) as u64))
        .collect()
}

/// The committed head's number; `None` until a node applied the schema.
fn committed_head(postgres: &Postgres) -> Option<u64> {
    let mut client = postgres::Client::connect(&postgres.url(), postgres::NoTls).ok()?;
    let row = client.query_one("SELECT COALESCE(max(block_number), 0) FROM payloads", &[]).ok()?;
    Some(row.get::<_, i64>(0) as u64)
}

/// No committed block is more than the lead cap ahead of real time.
fn assert_no_block_ahead_of_real_time(cluster: &Cluster) {
    for (number, timestamp, committed_at, term) in committed(&cluster.postgres) {
        let ahead = timestamp as f64 - committed_at;
        assert!(
            ahead <= LEAD_CAP_S,
            "block {number} (term {term}) has timestamp {timestamp}, {ahead:.1} s ahead of real time at its commit \
             ({committed_at:.3}); the cap is {LEAD_CAP_S} s"
        );
    }
}

fn unix_now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// `/health` is 503 and names the clock with the measured offset.
fn assert_reports_clock(node: &Node) {
    let (code, line) = node.health().unwrap_or_default();
    assert_eq!(code, 503, "{} /health: {line}", node.id);
    assert!(line.contains("clock: ") && line.contains("offset"), "{} /health does not name the clock: {line}", node.id);
    let json = node.health_json().unwrap();
    assert!(json["problems"]["clock"].is_string(), "{json}");
    assert_ne!(json["role"], "leader", "{json}");
}

/// Leaves node 0 alone with the lease free for [`ALONE`]; returns whether
/// it ever reported itself leader.
fn leave_alone(cluster: &Cluster) -> bool {
    let deadline = Instant::now() + ALONE;
    let mut led = false;
    while Instant::now() < deadline {
        led |= cluster.nodes[0].is_leader();
        std::thread::sleep(Duration::from_millis(100));
    }
    led
}

/// SIGKILLs node 0 and asserts that a block is committed within 2 x TTL.
fn kill_skewed_node_and_time_the_next_commit(cluster: &mut Cluster) -> f64 {
    let before = cluster.head().0;
    let killed_at = unix_now_s();
    cluster.nodes[0].proc.kill();
    let limit = 2.0 * LEASE_TTL.as_secs_f64();
    let first = wait_for(Duration::from_secs(10), "a commit after the skewed node was killed", || {
        committed(&cluster.postgres).into_iter().find(|b| b.0 > before && b.2 > killed_at)
    });
    let took = first.2 - killed_at;
    assert!(took <= limit, "block {} committed {took:.2} s after the kill; the limit is 2 x TTL = {limit} s", first.0);
    took
}

/// A node at a fixed offset: the correct node leads first, then leaves
/// (SIGTERM hands the lease on at once); the skewed node, alone, must
/// neither commit blocks ahead of real time nor hold the lease; the
/// correct node comes back, and after the skewed node is killed commits
/// within 2 x TTL.
fn skewed_node_case(name: &str, offset: &str) {
    let env = faketime_env(&libfaketime(), Some(offset), None);
    let (mut cluster, _relay) = cluster_with_skewed_node(name, &env);
    wait_for(Duration::from_secs(30), "two committed blocks", || {
        (committed_head(&cluster.postgres)? >= 2).then_some(())
    });
    assert_eq!(cluster.nodes[1].proc.terminate(Duration::from_secs(10)), Some(0), "the correct node's exit");
    let led = leave_alone(&cluster);
    assert_no_block_ahead_of_real_time(&cluster);
    assert!(!led, "the node at {offset} led:\n{}", cluster.nodes[0].proc.log_tail(15));
    assert_reports_clock(&cluster.nodes[0]);
    cluster.nodes[1].proc.start();
    wait_for(Duration::from_secs(30), "the correct node healthy", || {
        cluster.nodes[1].health().is_some_and(|(code, _)| code == 200).then_some(())
    });
    let took = kill_skewed_node_and_time_the_next_commit(&mut cluster);
    assert_no_block_ahead_of_real_time(&cluster);
    assert_continuous(&stored_chain(&cluster.postgres));
    eprintln!("{name}: first commit {:.0} ms after the skewed node was killed", took * 1000.0);
}

#[test]
fn a_node_an_hour_ahead_never_commits_the_future() {
    skewed_node_case("clock-ahead-1h", "+3600");
}

/// Before the fix: it took the lease and waited an hour for its clock to
/// pass the chain's block time, committing nothing.
#[test]
fn a_node_an_hour_behind_does_not_take_the_lease() {
    skewed_node_case("clock-behind-1h", "-3600");
}

/// Five seconds: more than the 2 s lead cap, so before the fix its blocks
/// ran 5 s ahead and the next leader waited for them.
#[test]
fn a_node_five_seconds_ahead_does_not_lead() {
    skewed_node_case("clock-ahead-5s", "+5");
}

/// The leader's wall clock jumps an hour ahead while it leads: it steps
/// down within about a second, no block is committed ahead of real time,
/// and the standby carries on.
#[test]
fn a_clock_jump_makes_the_leader_step_down() {
    let library = libfaketime();
    let dir = TestDir::new("clock-jump-offset");
    let offset_file = dir.join("faketime.rc");
    write_offset(&offset_file, "+0");
    let env = faketime_env(&library, None, Some(&offset_file));
    let (mut cluster, _relay) = cluster_with_skewed_node("clock-jump", &env);
    // Node 0 (clock still right) leads: the other one leaves and comes back as a standby.
    wait_for(Duration::from_secs(30), "node 0 healthy", || {
        cluster.nodes[0].health().is_some_and(|(code, _)| code == 200).then_some(())
    });
    if !cluster.nodes[0].is_leader() {
        assert_eq!(cluster.nodes[1].proc.terminate(Duration::from_secs(10)), Some(0));
        wait_for(Duration::from_secs(10), "node 0 leading", || cluster.nodes[0].is_leader().then_some(()));
        cluster.nodes[1].proc.start();
    }
    let head = committed_head(&cluster.postgres).unwrap_or(0);
    wait_for(Duration::from_secs(10), "node 0 committing", || {
        (committed_head(&cluster.postgres)? > head + 1).then_some(())
    });
    wait_for(Duration::from_secs(30), "node 1 a healthy standby", || {
        cluster.nodes[1].health().is_some_and(|(code, _)| code == 200).then_some(())
    });
    let jumped_at = Instant::now();
    write_offset(&offset_file, "+3600");
    wait_for(Duration::from_secs(5), "node 0 reporting its clock and stepping down", || {
        let json = cluster.nodes[0].health_json()?;
        (json["problems"]["clock"].is_string() && json["role"] != "leader").then_some(())
    });
    let stepped_down_in = jumped_at.elapsed();
    wait_for(Duration::from_secs(5), "node 1 leading", || cluster.nodes[1].is_leader().then_some(()));
    assert_reports_clock(&cluster.nodes[0]);
    assert_no_block_ahead_of_real_time(&cluster);
    let took = kill_skewed_node_and_time_the_next_commit(&mut cluster);
    assert_no_block_ahead_of_real_time(&cluster);
    assert_continuous(&stored_chain(&cluster.postgres));
    eprintln!(
        "clock-jump: stepped down {} ms after the jump; first commit {:.0} ms after the kill",
        stepped_down_in.as_millis(),
        took * 1000.0
    );
}

/// Replaces libfaketime's offset file in one step (a reader never sees it
/// half written).
fn write_offset(file: &Path, offset: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, format!("{offset}\n")).unwrap();
    std::fs::rename(&next, file).unwrap();
}
