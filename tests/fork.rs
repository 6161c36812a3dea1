//! A fork transition, live (issue 18, section 3): the chain starts on
//! Prague with Osaka scheduled some 20-30 s later. The leader switches
//! from engine_getPayloadV4 to V5 at the first block whose timestamp
//! reaches the fork, with no gap and no refused block; the standby and a
//! member follow across the boundary; and the same when the leader is
//! SIGKILLed just before the fork, so that the standby builds the first
//! Osaka block; and a fork scheduled on a running cluster, by restarting
//! its clients with the fork time while clnode keeps running. Run with
//! --nocapture for the measured intervals.

// Test code: a failed unwrap, expect or panic is a failed test, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::fork::{
    committed_blocks, head_timestamp, p256verify_at, unix_now, unix_now_ms, CommittedBlock, P256_VALID,
};
use support::*;

/// Seconds from writing the genesis to the fork: the start of three geths,
/// two databases and three nodes takes 5-15 s on a busy 2-core machine,
/// which leaves some 20-30 s of Prague blocks.
const FORK_AFTER_S: u64 = 40;
/// Fewer seconds than this left before the fork once everything runs:
/// too few Prague blocks to call the boundary tested.
const MIN_PRAGUE_S: u64 = 12;
/// Osaka blocks to see past the boundary.
const OSAKA_S: u64 = 12;
/// Transactions a second, to the first client (the clients are peered, so
/// whichever node leads sees them): a block every second.
const LOAD_RATE: f64 = 20.0;

struct ForkCluster {
    cluster: Cluster,
    member: Member,
    osaka: u64,
    _load: Proc,
}

fn start(name: &str) -> ForkCluster {
    let osaka = unix_now() + FORK_AFTER_S;
    let cluster = Cluster::builder(name).leaders(2).peered().osaka_at(Some(osaka)).start();
    cluster.wait_for_leader(Duration::from_secs(30));
    cluster.wait_peered(Duration::from_secs(30));
    let sync: Vec<String> = cluster.nodes.iter().map(Node::api_url).collect();
    let member = Member::start(&cluster.dir, "member", ElKind::Geth, &cluster.els[0].genesis, &sync, &[]);
    let load = load_generator(
        &cluster.dir,
        "load",
        &cluster.els[0].rpc_url(),
        keys::key(&keys::LOAD_KEYS, 0),
        LOAD_RATE,
        (FORK_AFTER_S + OSAKA_S + 60) as f64,
    );
    let left = osaka.saturating_sub(unix_now());
    eprintln!("osakaTime {osaka}: {left} s after the cluster runs");
    assert!(left >= MIN_PRAGUE_S, "the start took too long: only {left} s of Prague left");
    ForkCluster { cluster, member, osaka, _load: load }
}

fn wait_for_head_timestamp(cluster: &Cluster, at_least: u64, timeout: Duration) {
    poll(timeout, Duration::from_millis(20), &format!("a block with timestamp >= {at_least}"), || {
        (head_timestamp(&cluster.postgres) >= at_least).then_some(())
    });
}

fn median(mut values: Vec<i64>) -> i64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// What the boundary looked like, for the assertions and the printout.
struct Boundary {
    /// Index of the first block with timestamp >= osakaTime.
    first_osaka: usize,
    /// Median commit-to-commit interval of the Prague blocks (after the
    /// first three: the start), ms.
    usual_commit_ms: i64,
    /// ... and of their timestamps, s.
    usual_timestamp_s: i64,
    /// The first Osaka block's commit interval and timestamp step.
    boundary_commit_ms: i64,
    boundary_timestamp_s: i64,
}

/// Heights consecutive from 1; V4 before the fork and V5 from the first
/// block whose timestamp reaches it.
fn check_versions(blocks: &[CommittedBlock], osaka: u64) -> Boundary {
    for (index, block) in blocks.iter().enumerate() {
        assert_eq!(block.number, index as u64 + 1, "gap in the committed chain at {}", block.number);
        let expected = if block.timestamp >= osaka { 5 } else { 4 };
        assert_eq!(
            block.payload_version, expected,
            "block {} (timestamp {}, osakaTime {osaka}) built with getPayloadV{}",
            block.number, block.timestamp, block.payload_version
        );
        if index > 0 {
            assert!(
                block.timestamp > blocks[index - 1].timestamp,
                "block {}'s timestamp does not advance",
                block.number
            );
        }
    }
    let first_osaka = blocks.iter().position(|b| b.timestamp >= osaka).expect("no Osaka block");
    assert!(first_osaka >= 5, "only {first_osaka} Prague blocks before the fork");
    assert!(blocks.len() - first_osaka >= 5, "only {} Osaka blocks", blocks.len() - first_osaka);
    let prague = &blocks[3.min(first_osaka - 1)..first_osaka];
    let steps = |f: fn(&CommittedBlock) -> i64| prague.windows(2).map(|w| f(&w[1]) - f(&w[0])).collect::<Vec<_>>();
    let (before, at) = (&blocks[first_osaka - 1], &blocks[first_osaka]);
    Boundary {
        first_osaka,
        usual_commit_ms: median(steps(|b| b.committed_ms)),
        usual_timestamp_s: median(steps(|b| b.timestamp as i64)),
        boundary_commit_ms: at.committed_ms - before.committed_ms,
        boundary_timestamp_s: at.timestamp as i64 - before.timestamp as i64,
    }
}

/// Every client (the cluster's and the member's) holds every committed
/// block with the same hash, runs Osaka's P256VERIFY from the first Osaka
/// block on and not before, and says Osaka is its current fork.
fn check_clients(cluster: &Cluster, member: &Member, blocks: &[CommittedBlock], first_osaka: usize) {
    let head = (blocks.last().unwrap().number, blocks.last().unwrap().hash.clone());
    member.wait_caught_up(&head, Duration::from_secs(60));
    member.assert_same_chain(cluster);
    for el in cluster.els.iter().chain([&member.el]) {
        wait_for(Duration::from_secs(60), &format!("{} at block {}", el.proc.name, head.0), || {
            (el.head().0 >= head.0).then_some(())
        });
        for block in blocks {
            assert_eq!(el.block_hash(block.number), Some(block.hash.clone()), "{} at {}", el.proc.name, block.number);
        }
        let (last_prague, first) = (blocks[first_osaka - 1].number, blocks[first_osaka].number);
        assert_eq!(p256verify_at(el, last_prague), "0x", "{}: P256VERIFY before Osaka", el.proc.name);
        assert_eq!(p256verify_at(el, first), P256_VALID, "{}: P256VERIFY in the first Osaka block", el.proc.name);
        let config = rpc(&el.rpc_url(), "eth_config", json!([])).unwrap();
        assert!(
            config["current"]["precompiles"].get("P256VERIFY").is_some(),
            "{}: not on Osaka: {config}",
            el.proc.name
        );
    }
}

/// No refusal anywhere: the member refused no record, no node had an
/// Engine API call refused or a payload found invalid, no commit refused.
fn check_no_refusals(nodes: &[&Node]) {
    for node in nodes {
        for name in [
            "clnode_sync_refusals_total",
            "clnode_commit_refusals_total",
            "clnode_errors_total{kind=\"engine_rpc\"}",
            "clnode_errors_total{kind=\"engine_invalid_payload\"}",
            "clnode_errors_total{kind=\"sync_refused\"}",
        ] {
            assert_eq!(node.metric(name), Some(0.0), "{}: {name}", node.id);
        }
        let (status, text) = node.health().unwrap();
        assert_eq!(status, 200, "{}: {text}", node.id);
    }
}

fn print_boundary(what: &str, boundary: &Boundary, blocks: &[CommittedBlock]) {
    let at = &blocks[boundary.first_osaka];
    eprintln!(
        "{what}: first Osaka block {} (timestamp {}, term {}); usual interval {} ms between commits and {} s of \
         block time; at the boundary {} ms and {} s",
        at.number,
        at.timestamp,
        at.term,
        boundary.usual_commit_ms,
        boundary.usual_timestamp_s,
        boundary.boundary_commit_ms,
        boundary.boundary_timestamp_s
    );
}

#[test]
fn the_leader_switches_to_get_payload_v5_at_the_fork_and_everyone_follows() {
    let started = Instant::now();
    let fc = start("fork-live");
    let cluster = &fc.cluster;
    let leader = cluster.leader();
    wait_for_head_timestamp(cluster, fc.osaka - 1, Duration::from_secs(FORK_AFTER_S + 30));
    let v4_before = get_payload_v4_calls(&cluster.nodes);
    wait_for_head_timestamp(cluster, fc.osaka + OSAKA_S, Duration::from_secs(OSAKA_S + 60));
    assert_eq!(get_payload_v4_calls(&cluster.nodes), v4_before, "getPayloadV4 called for an Osaka block");
    // Still the same leader: the boundary is the leader's own switch.
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(5)), leader, "the leader changed");
    let blocks = committed_blocks(&cluster.postgres);
    let boundary = check_versions(&blocks, fc.osaka);
    print_boundary("fork, one leader", &boundary, &blocks);
    check_clients(cluster, &fc.member, &blocks, boundary.first_osaka);
    let nodes: Vec<&Node> = cluster.nodes.iter().chain([&fc.member.node]).collect();
    check_no_refusals(&nodes);
    // No gap: the step across the fork is no larger than an ordinary one
    // (block time moves a second a block under load; a commit takes about
    // the same), with 500 ms of room for a busy machine.
    assert_eq!(boundary.boundary_timestamp_s, boundary.usual_timestamp_s, "block time jumped at the fork");
    assert!(
        boundary.boundary_commit_ms <= boundary.usual_commit_ms + 500,
        "the first Osaka block came {} ms after the last Prague one (usually {} ms)",
        boundary.boundary_commit_ms,
        boundary.usual_commit_ms
    );
    eprintln!("fork, one leader: {:.0} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_standby_that_takes_over_just_before_the_fork_builds_the_first_osaka_blocks() {
    let started = Instant::now();
    let mut fc = start("fork-failover");
    let leader = fc.cluster.leader();
    // The next block is the first Osaka one: the leader dies before it.
    wait_for_head_timestamp(&fc.cluster, fc.osaka - 1, Duration::from_secs(FORK_AFTER_S + 30));
    let killed_term = committed_blocks(&fc.cluster.postgres).last().unwrap().term;
    fc.cluster.nodes[leader].proc.kill();
    let killed_ms = unix_now_ms();
    eprintln!("killed leader-{leader} (term {killed_term}) at {killed_ms} ms, osakaTime {}", fc.osaka);
    let standby = 1 - leader;
    wait_for(Duration::from_secs(15), "the standby leads", || fc.cluster.nodes[standby].is_leader().then_some(()));
    wait_for_head_timestamp(&fc.cluster, fc.osaka + OSAKA_S, Duration::from_secs(OSAKA_S + 60));
    // Back as a standby: its client catches up across the boundary too.
    fc.cluster.nodes[leader].proc.start();
    let cluster = &fc.cluster;
    let blocks = committed_blocks(&cluster.postgres);
    let boundary = check_versions(&blocks, fc.osaka);
    print_boundary("fork, failover", &boundary, &blocks);
    let first = &blocks[boundary.first_osaka];
    eprintln!(
        "fork, failover: the first Osaka block committed {} ms after the SIGKILL, {} ms after the last Prague one",
        first.committed_ms - killed_ms,
        first.committed_ms - blocks[boundary.first_osaka - 1].committed_ms
    );
    assert!(first.term > killed_term, "block {} was built by the killed leader (term {})", first.number, first.term);
    check_clients(cluster, &fc.member, &blocks, boundary.first_osaka);
    wait_for(Duration::from_secs(30), "the restarted node healthy", || {
        cluster.nodes[leader].health().filter(|(status, _)| *status == 200)
    });
    let nodes: Vec<&Node> = cluster.nodes.iter().chain([&fc.member.node]).collect();
    check_no_refusals(&nodes);
    // The hand-over is the only gap: a lease TTL (1 s) and the standby's
    // first build, well under 5 s.
    assert!(
        boundary.boundary_commit_ms <= 5000,
        "the first Osaka block came {} ms after the last Prague one",
        boundary.boundary_commit_ms
    );
    eprintln!("fork, failover: {:.0} s", started.elapsed().as_secs_f64());
}

/// How often each node has called engine_getPayloadV4 so far.
fn get_payload_v4_calls(nodes: &[Node]) -> Vec<Option<f64>> {
    let name = "clnode_engine_request_duration_seconds_count{method=\"engine_getPayloadV4\"}";
    nodes.iter().map(|node| node.metric(name)).collect()
}

#[test]
fn a_fork_scheduled_by_restarting_the_clients_of_a_running_cluster_is_built_with_v5_from_its_first_block() {
    let started = Instant::now();
    let mut cluster = Cluster::builder("fork-scheduled").leaders(2).peered().osaka_at(None).start();
    let first = cluster.wait_for_leader(Duration::from_secs(30));
    cluster.wait_peered(Duration::from_secs(30));
    let sync: Vec<String> = cluster.nodes.iter().map(Node::api_url).collect();
    let mut member = Member::start(&cluster.dir, "member", ElKind::Geth, &cluster.els[0].genesis, &sync, &[]);
    let key = keys::key(&keys::LOAD_KEYS, 0);
    let _load = load_generator(&cluster.dir, "load", &cluster.els[0].rpc_url(), key, LOAD_RATE, 180.0);
    wait_for(Duration::from_secs(30), "blocks from the first leader", || (cluster.head().0 >= 3).then_some(()));
    // The other node leads for a while too (the first one frozen, not
    // restarted: it keeps what it learnt), so both nodes have asked their
    // client for its fork schedule while none was scheduled.
    cluster.nodes[first].proc.signal("STOP");
    wait_for(Duration::from_secs(30), "blocks from the second leader", || {
        let blocks = committed_blocks(&cluster.postgres);
        (blocks.iter().filter(|b| b.term > 1).count() >= 3).then_some(())
    });
    cluster.nodes[first].proc.signal("CONT");
    // The operator schedules Osaka: every client restarted in turn with
    // the fork time (geth's --override.osaka), clnode left running.
    let osaka = unix_now() + FORK_AFTER_S;
    let osaka_text = osaka.to_string();
    for el in cluster.els.iter_mut() {
        el.restart_with_env(&[("GETH_OVERRIDE_OSAKA", &osaka_text)]);
    }
    member.el.restart_with_env(&[("GETH_OVERRIDE_OSAKA", &osaka_text)]);
    let left = osaka.saturating_sub(unix_now());
    eprintln!("osakaTime {osaka} scheduled on the running cluster: {left} s left after the restarts");
    assert!(left >= MIN_PRAGUE_S / 2, "the restarts took too long: only {left} s before the fork");
    wait_for_head_timestamp(&cluster, osaka - 1, Duration::from_secs(FORK_AFTER_S + 30));
    let v4_before = get_payload_v4_calls(&cluster.nodes);
    wait_for_head_timestamp(&cluster, osaka + OSAKA_S, Duration::from_secs(OSAKA_S + 60));
    let blocks = committed_blocks(&cluster.postgres);
    assert!(blocks.iter().any(|b| b.term == 1) && blocks.iter().any(|b| b.term == 2), "both nodes led");
    let boundary = check_versions(&blocks, osaka);
    print_boundary("fork scheduled on the running cluster", &boundary, &blocks);
    // From the last Prague block on, no node asked for a V4 payload: the
    // nodes learnt the new schedule from their restarted clients (geth
    // answers getPayloadV4 for an Osaka block instead of refusing it, so
    // a node on the old schedule records Osaka blocks as V4).
    assert_eq!(get_payload_v4_calls(&cluster.nodes), v4_before, "getPayloadV4 called for an Osaka block");
    check_clients(&cluster, &member, &blocks, boundary.first_osaka);
    for node in cluster.nodes.iter().chain([&member.node]) {
        for name in ["clnode_sync_refusals_total", "clnode_errors_total{kind=\"engine_invalid_payload\"}"] {
            assert_eq!(node.metric(name), Some(0.0), "{}: {name}", node.id);
        }
    }
    eprintln!("fork scheduled on the running cluster: {:.0} s", started.elapsed().as_secs_f64());
}
