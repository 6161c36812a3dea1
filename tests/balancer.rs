//! Members behind a load balancer (issue 17, §4): HAProxy in front of two
//! members' RPC ports, health-checked on each member's clnode `/health`
//! with a readiness threshold. A member whose sync is cut off while the
//! leader keeps producing leaves the pool within the check's bound, reads
//! through HAProxy keep answering (from the other member), and it comes
//! back once it has caught up.

// Test code: a failed unwrap, expect or panic is a failed test, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// The members' long-poll wait: a member cut off from its source knows it
/// at most this plus `ANSWER_GRACE` after its last answer.
const SYNC_WAIT: Duration = Duration::from_secs(1);
/// The readiness threshold HAProxy's check asks for.
const MAX_LAG_MS: u64 = 1500;
const MAX_LAG_BLOCKS: u64 = 20;
const CHECK_INTER: Duration = Duration::from_millis(250);
const FALL: u32 = 2;
const RISE: u32 = 2;

/// One read through HAProxy.
struct Read {
    at: Instant,
    status: Option<u16>,
    /// The server that answered (HAProxy's `X-Served-By`).
    server: Option<String>,
    block: Option<u64>,
    error: Option<String>,
}

fn read_block_number(agent: &ureq::Agent, url: &str) -> Read {
    let at = Instant::now();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).to_string();
    match agent.post(url).header("Content-Type", "application/json").send(body.as_bytes()) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let server = response.headers().get("x-served-by").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let block = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["result"].as_str().map(str::to_owned))
                .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
            Read { at, status: Some(status), server, block, error: None }
        }
        Err(e) => Read { at, status: None, server: None, block: None, error: Some(e.to_string()) },
    }
}

/// Reads `eth_blockNumber` through `url` every 50 ms until `stop`.
fn reader(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Read>> {
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut reads = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            reads.push(read_block_number(&agent, &url));
            std::thread::sleep(Duration::from_millis(50));
        }
        reads
    })
}

fn wait_status(haproxy: &Haproxy, server: &str, wanted: &str, timeout: Duration) -> Instant {
    poll(timeout, Duration::from_millis(25), &format!("{server} {wanted} in HAProxy"), || {
        (haproxy.status(server).as_deref() == Some(wanted)).then(Instant::now)
    })
}

#[test]
fn a_member_cut_off_from_its_source_leaves_the_pool_and_returns_once_caught_up() {
    let test_started = Instant::now();
    let leaders = Cluster::builder("balancer").fast().start();
    let leader = leaders.leader();
    let api_port = leaders.nodes[leader].api_port.unwrap();
    // Each member syncs through a proxy of its own, so one link can be cut.
    let (link_a, link_b) = (TcpProxy::start(api_port, ProxyMode::Pass), TcpProxy::start(api_port, ProxyMode::Pass));
    let wait = format!("{}ms", SYNC_WAIT.as_millis());
    let (max_ms, max_blocks) = (MAX_LAG_MS.to_string(), MAX_LAG_BLOCKS.to_string());
    // Member a also has the threshold as flags (its plain /health judges
    // it); member b only through the check's query.
    let flags_a = ["--sync-wait", &wait, "--max-lag-ms", &max_ms, "--max-lag-blocks", &max_blocks];
    let a = Member::start(&leaders.dir, "member-a", ElKind::Geth, "osaka", &[link_a.url()], &flags_a);
    let b = Member::start(&leaders.dir, "member-b", ElKind::Geth, "osaka", &[link_b.url()], &["--sync-wait", &wait]);
    leaders.grow_to(3);
    a.wait_caught_up(&leaders.head(), Duration::from_secs(60));
    b.wait_caught_up(&leaders.head(), Duration::from_secs(60));

    // What /health says to a balancer, and what it refuses.
    let health = |node: &Node, query: &str| http_get(&format!("http://127.0.0.1:{}/health{query}", node.health_port));
    let (status, body) = health(&a.node, "?max_lag_blocks=x").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].as_str().unwrap().contains("max_lag_blocks"));
    assert_eq!(health(&a.node, "?max_lag_ms=0").unwrap().0, 400);
    let (status, body) = health(&leaders.nodes[leader], "?max_lag_ms=1000").unwrap();
    assert_eq!(status, 400, "a leader-mode node refuses member thresholds: {body}");
    let (status, view) = health(&a.node, "?format=json").unwrap();
    let view: Value = serde_json::from_str(&view).unwrap();
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["lag_limits"], json!({"max_lag_blocks": MAX_LAG_BLOCKS, "max_lag_ms": MAX_LAG_MS}));

    let check = HealthCheck {
        path: format!("/health?max_lag_blocks={MAX_LAG_BLOCKS}&max_lag_ms={MAX_LAG_MS}"),
        inter: CHECK_INTER,
        fall: FALL,
        rise: RISE,
    };
    let servers = [
        HaproxyServer { name: "a".into(), port: a.el.http_port, check_port: a.node.health_port },
        HaproxyServer { name: "b".into(), port: b.el.http_port, check_port: b.node.health_port },
    ];
    let haproxy = Haproxy::start(&leaders.dir, "haproxy", &servers, &check);
    for server in ["a", "b"] {
        wait_for(Duration::from_secs(10), &format!("{server}'s first check passed"), || {
            (haproxy.check_status(server).as_deref() == Some("L7OK")).then_some(())
        });
        assert_eq!(haproxy.status(server).as_deref(), Some("UP"));
    }

    // The leader keeps producing throughout (about a block per transaction).
    let rpc = leaders.els[leader].rpc_url();
    let _load = load_generator(&leaders.dir, "load", &rpc, keys::key(&keys::LOAD_KEYS, 0), 8.0, 120.0);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = reader(haproxy.url(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_secs(2));

    // Cut member a's sync: its long poll and every new connection are held.
    let cut_head = leaders.head().0;
    let cut = Instant::now();
    link_a.set(ProxyMode::Blackhole, false);
    let down = wait_status(&haproxy, "a", "DOWN", Duration::from_secs(20));
    let left_after = down - cut;
    // Not ready at most SYNC_WAIT + ANSWER_GRACE after its last answer
    // (before the cut) or MAX_LAG_MS after it, whichever is later; then
    // FALL failed checks, the first up to one interval away; plus a second
    // for a loaded two-core machine.
    let unready_by = (SYNC_WAIT + clnode::member::lag::ANSWER_GRACE).max(Duration::from_millis(MAX_LAG_MS));
    let bound = unready_by + CHECK_INTER * (FALL + 1) + Duration::from_secs(1);
    eprintln!(
        "member a left the pool {} ms after its sync was cut (bound {} ms)",
        left_after.as_millis(),
        bound.as_millis()
    );
    assert!(left_after <= bound, "left the pool {left_after:?} after the cut; bound {bound:?}");
    // Its /health says why, to the balancer's query and (its flags) to anyone.
    let query = check.path.trim_start_matches("/health");
    let (status, body) = health(&a.node, &format!("{query}&format=json")).unwrap();
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503, "{view}");
    let reason = view["problems"]["sync lag"].as_str().unwrap_or_else(|| panic!("no sync lag reason: {view}"));
    assert!(reason.starts_with("not ready: "), "{reason}");
    assert!(view["lag_ms"].as_u64().unwrap() > MAX_LAG_MS, "{view}");
    let (status, line) = a.node.health().unwrap();
    assert_eq!(status, 503);
    assert!(line.contains("sync lag: not ready"), "{line}");
    assert_eq!(b.node.health().unwrap().0, 200, "member b has no flags and is in step");
    assert_eq!(haproxy.status("b").as_deref(), Some("UP"));

    // The chain moves on while member a is out.
    std::thread::sleep(Duration::from_secs(4));
    let a_frozen = a.el.head().0;
    let restore_head = leaders.head().0;
    assert!(restore_head > cut_head, "the leader stopped producing ({cut_head} -> {restore_head})");
    let restored = Instant::now();
    link_a.set(ProxyMode::Pass, false);
    let up = wait_status(&haproxy, "a", "UP", Duration::from_secs(40));
    eprintln!(
        "member a was out {} ms; back {} ms after its link was restored (blocks {cut_head} at the cut, {restore_head} \
         at the restore, a held {a_frozen})",
        (up - down).as_millis(),
        (up - restored).as_millis()
    );
    assert!(a.el.head().0 + MAX_LAG_BLOCKS >= restore_head, "back in the pool before catching up");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let reads = reads.join().unwrap();

    // Every read answered 200; none went to a while it was out (a request
    // already on its way when it went DOWN may still finish there).
    let failed: Vec<String> =
        reads.iter().filter(|r| r.status != Some(200)).map(|r| format!("{:?} {:?}", r.status, r.error)).collect();
    assert!(failed.is_empty(), "{} of {} reads failed: {failed:?}", failed.len(), reads.len());
    let served = |from: Instant, to: Instant, server: &str| {
        reads.iter().filter(|r| r.at >= from && r.at < to && r.server.as_deref() == Some(server)).count()
    };
    assert!(served(test_started, cut, "a") > 0 && served(test_started, cut, "b") > 0, "not balanced before the cut");
    let out_from = down + Duration::from_millis(100);
    assert_eq!(served(out_from, up, "a"), 0, "reads reached member a while it was out of the pool");
    assert!(served(out_from, up, "b") > 10, "too few reads while a was out");
    // The reads while a was out came from b's current chain, not a's frozen one.
    let newest_while_out = reads.iter().filter(|r| r.at >= out_from && r.at < up).filter_map(|r| r.block).max();
    assert!(newest_while_out.unwrap() > a_frozen, "reads while a was out lagged: {newest_while_out:?} <= {a_frozen}");
    assert!(served(up, Instant::now(), "a") > 0, "member a got no reads after it came back");
    eprintln!("{} reads through HAProxy, all 200; test took {} s", reads.len(), test_started.elapsed().as_secs());
}
