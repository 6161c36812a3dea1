//! Upgrading an execution client in a running cluster (issue 18, section
//! 4). A cluster on geth v1.16.8 under load: the standby's geth is
//! replaced by the next geth (scripts/deps.sh geth-next) on the same data
//! directory, ports and JWT; the standby is made leader by a hand-over
//! (`clnode admin transfer`); the old leader's geth and the member's are
//! upgraded the same way; the standby's is rolled back to v1.16.8 and
//! upgraded again on an empty datadir (the rollback drill). And a mixed cluster on Prague: a geth leader
//! hands over to an EthereumJS standby, which builds blocks, and back.
//! Throughout: heights consecutive, every client holds the same hash for
//! every block, every block committed before a step is still served by the
//! sync API after it, no refusal. Run with --nocapture for the pauses.
//!
//! The geth upgrade needs a second geth (a build of minutes, not in `make
//! deps`), so it is ignored by `cargo test` (and `make test`): `make
//! upgrade-test` installs that geth and runs both tests. The mixed one
//! (some 25 s) runs in `make test` too.

// Test code: a failed unwrap, expect or panic is a failed test, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use support::fork::{committed_blocks, unix_now_ms, CommittedBlock};
use support::*;

const TOKEN: &str = "upgrade-admin-token-0123456789ab";
/// Transactions a second to the leader's client: a block about every second.
const LOAD_RATE: f64 = 20.0;
/// ... in the mixed cluster (EthereumJS builds slower than geth).
const MIXED_LOAD_RATE: f64 = 5.0;
/// Blocks to see built after each step before the next one.
const BLOCKS_PER_STEP: u64 = 5;
/// The geth every test cluster runs (scripts/deps.sh GETH_VERSION).
const GETH_FROM: &str = "1.16.8";

/// The upgrade target's version, as scripts/deps.sh names it (one place).
fn geth_next_version() -> String {
    let deps = std::fs::read_to_string(script("deps.sh")).unwrap();
    let line = deps.lines().find_map(|line| line.strip_prefix("GETH_NEXT_VERSION=")).expect("GETH_NEXT_VERSION");
    line.split_whitespace().next().unwrap().to_owned()
}

/// `<repo>/.tools/geth-<version>/bin/geth`, installed by `scripts/deps.sh geth-next`.
fn geth_next_binary(version: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(".tools/geth-{version}/bin/geth"));
    assert!(path.is_file(), "{} missing: run scripts/deps.sh geth-next (make upgrade-test does)", path.display());
    path
}

/// `web3_clientVersion`, e.g. `Geth/v1.17.10-stable-.../linux-amd64/go1.26.8`.
fn client_version(el: &El) -> String {
    rpc(&el.rpc_url(), "web3_clientVersion", json!([])).unwrap().as_str().unwrap().to_owned()
}

fn assert_geth(el: &El, version: &str) {
    let running = client_version(el);
    assert!(running.starts_with(&format!("Geth/v{version}-")), "{}: runs {running}, not v{version}", el.proc.name);
}

/// `clnode admin transfer --to leader-<to>`, sent to every node's health
/// address (the leader acts). Retried while the target is not ready to
/// lead yet (409: it has just had its client restarted).
fn transfer(cluster: &Cluster, to: usize) {
    let urls: Vec<String> = cluster.nodes.iter().map(|n| format!("http://127.0.0.1:{}", n.health_port)).collect();
    let urls = urls.join(",");
    let id = format!("leader-{to}");
    let started = Instant::now();
    loop {
        let (code, stdout, stderr) = run_clnode(&["admin", "--url", &urls, "--token", TOKEN, "transfer", "--to", &id]);
        if code == Some(0) {
            eprintln!("{}", stdout.trim_end());
            break;
        }
        assert!(stderr.contains("HTTP 409"), "transfer to {id} failed: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(60), "{id} never ready to lead: {stderr}");
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_for(Duration::from_secs(10), &format!("{id} leads"), || cluster.nodes[to].is_leader().then_some(()));
}

/// Every block of `chain` (committed before a step) is still served, with
/// its hash, by each node's sync API: paged `/blocks?after=N`.
fn assert_served(nodes: &[&Node], chain: &[(u64, String, String)], context: &str) {
    let Some((head, _, _)) = chain.last() else { return };
    for node in nodes {
        let mut served: Vec<(u64, String)> = Vec::new();
        let mut after = 0;
        // A page holds at least one block: at most `head` pages.
        for _ in 0..=*head {
            if after >= *head {
                break;
            }
            let (status, page) = node.api(&format!("/blocks?after={after}&limit=1000"));
            assert_eq!(status, 200, "{context}: {} /blocks?after={after}: {page}", node.id);
            let blocks = page["blocks"].as_array().unwrap();
            assert!(!blocks.is_empty(), "{context}: {} serves nothing after {after} (head {head})", node.id);
            for block in blocks {
                served
                    .push((block["block_number"].as_u64().unwrap(), block["block_hash"].as_str().unwrap().to_owned()));
            }
            after = served.last().unwrap().0;
        }
        for (number, hash, _) in chain {
            let got = served.get(*number as usize - 1);
            assert_eq!(got, Some(&(*number, hash.clone())), "{context}: {} lost or changed block {number}", node.id);
        }
    }
}

/// Waits until the member's client and database hold `head` (the chain
/// moves on under load: `Member::wait_caught_up` wants it exactly).
fn wait_member_past(member: &Member, head: &(u64, String)) {
    wait_for(Duration::from_secs(60), &format!("{} past block {}", member.node.id, head.0), || {
        let stored = stored_chain(&member.postgres).last().map(|b| b.0).unwrap_or(0);
        (stored >= head.0 && member.el.block_hash(head.0).as_ref() == Some(&head.1)).then_some(())
    });
}

/// Heights 1, 2, 3, ... with no gap.
fn assert_consecutive(blocks: &[CommittedBlock]) {
    for (index, block) in blocks.iter().enumerate() {
        assert_eq!(block.number, index as u64 + 1, "gap in the committed chain at {}", block.number);
    }
}

/// Every client holds every committed block with the same hash.
fn assert_clients_hold_all(els: &[&El], blocks: &[CommittedBlock]) {
    let head = blocks.last().unwrap().number;
    for el in els {
        wait_for(Duration::from_secs(60), &format!("{} at block {head}", el.proc.name), || {
            (el.head().0 >= head).then_some(())
        });
        for block in blocks {
            assert_eq!(el.block_hash(block.number), Some(block.hash.clone()), "{} at {}", el.proc.name, block.number);
        }
    }
}

/// No record refused by a member, no commit refused, no payload found
/// invalid. (Failed Engine API calls are expected: each node's client was
/// away while it was upgraded; EthereumJS answers -32601 to the pending-
/// transaction filter. They are printed.)
fn assert_no_refusals(nodes: &[&Node]) {
    for node in nodes {
        for name in [
            "clnode_sync_refusals_total",
            "clnode_commit_refusals_total",
            "clnode_errors_total{kind=\"engine_invalid_payload\"}",
            "clnode_errors_total{kind=\"sync_refused\"}",
        ] {
            assert_eq!(node.metric(name), Some(0.0), "{}: {name}", node.id);
        }
        let count = |kind: &str| node.metric(&format!("clnode_errors_total{{kind=\"{kind}\"}}")).unwrap_or(0.0);
        eprintln!(
            "{}: Engine API calls failed: {} unreachable, {} answered with an error",
            node.id,
            count("engine_transport"),
            count("engine_rpc")
        );
    }
}

/// How long the node's Engine API calls of `method` took: count, mean and
/// how many took over 0.5, 1 and 2.5 s (from its latency histogram).
fn print_engine_latency(node: &Node, method: &str) {
    let series = |suffix: &str, le: Option<&str>| {
        let labels = match le {
            Some(le) => format!("method=\"{method}\",le=\"{le}\""),
            None => format!("method=\"{method}\""),
        };
        node.metric(&format!("clnode_engine_request_duration_seconds_{suffix}{{{labels}}}")).unwrap_or(0.0)
    };
    let count = series("count", None);
    let mean_ms = if count > 0.0 { series("sum", None) / count * 1000.0 } else { 0.0 };
    eprintln!(
        "{}: {method}: {count} calls, mean {mean_ms:.0} ms, {} over 0.5 s, {} over 1 s, {} over 2.5 s",
        node.id,
        count - series("bucket", Some("0.5")),
        count - series("bucket", Some("1")),
        count - series("bucket", Some("2.5"))
    );
}

/// What a step cost the chain: the longest interval between two commits
/// from the last commit before the step to the end of the step.
struct Pause {
    step: &'static str,
    longest_ms: i64,
    at_block: u64,
    took_ms: i64,
}

fn pause(postgres: &Postgres, step: &'static str, from_ms: i64, to_ms: i64) -> Pause {
    let blocks = committed_blocks(postgres);
    let start = blocks.iter().rposition(|b| b.committed_ms < from_ms).unwrap_or(0);
    let window: Vec<&CommittedBlock> =
        blocks[start..].iter().take_while(|b| b.committed_ms <= to_ms || b.number == blocks[start].number).collect();
    // Up to the end of the step: the interval still open then counts too.
    let mut longest = (to_ms - window.last().unwrap().committed_ms, window.last().unwrap().number);
    for pair in window.windows(2) {
        let gap = pair[1].committed_ms - pair[0].committed_ms;
        if gap > longest.0 {
            longest = (gap, pair[1].number);
        }
    }
    Pause { step, longest_ms: longest.0, at_block: longest.1, took_ms: to_ms - from_ms }
}

fn median_interval_ms(blocks: &[CommittedBlock]) -> i64 {
    let mut gaps: Vec<i64> = blocks.windows(2).map(|w| w[1].committed_ms - w[0].committed_ms).collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(0)
}

fn print_pauses(what: &str, pauses: &[Pause], blocks: &[CommittedBlock]) {
    eprintln!("{what}: median interval between commits {} ms over {} blocks", median_interval_ms(blocks), blocks.len());
    for p in pauses {
        eprintln!(
            "{what}: {}: took {} ms; longest interval between commits {} ms (before block {})",
            p.step, p.took_ms, p.longest_ms, p.at_block
        );
    }
}

/// The leader's client is sent transactions (key `leader`), three rounds
/// of two, and builds them into blocks; returns those blocks' numbers.
fn phase(cluster: &Cluster, leader: usize, what: &str) -> Vec<u64> {
    let mut numbers = Vec::new();
    for _ in 0..3 {
        for hash in cluster.commit_transactions(leader, 2, Duration::from_secs(60)) {
            let number = cluster.els[leader].receipt_block(&hash).unwrap();
            eprintln!("{what}: transaction {hash} in block {number}");
            numbers.push(number);
        }
    }
    numbers.dedup();
    numbers
}

/// Waits for `count` more committed blocks than `after`.
fn wait_blocks(cluster: &Cluster, after: u64, count: u64, timeout: Duration) {
    wait_for(timeout, &format!("{count} blocks after {after}"), || (cluster.head().0 >= after + count).then_some(()));
}

/// The load: `rate` transactions a second to node `index`'s client, from
/// load key `key` (a fresh key per sender: no nonce left behind in another
/// client's pool).
fn load_to(cluster: &Cluster, index: usize, key: usize, rate: f64) -> Proc {
    let name = format!("load-{index}-key{key}");
    let key = keys::key(&keys::LOAD_KEYS, key);
    load_generator(&cluster.dir, &name, &cluster.els[index].rpc_url(), key, rate, 600.0)
}

#[test]
#[ignore = "needs the second geth (scripts/deps.sh geth-next, a build of minutes): make upgrade-test"]
fn a_cluster_upgrades_geth_one_node_at_a_time_with_a_hand_over_and_loses_no_block() {
    let started = Instant::now();
    let next = geth_next_version();
    let next_bin = geth_next_binary(&next);
    let next_bin = next_bin.display().to_string();
    let mut cluster = Cluster::builder("upgrade-geth").leaders(2).flags(&["--admin-token", TOKEN]).start();
    let old_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let standby = 1 - old_leader;
    let sync: Vec<String> = cluster.nodes.iter().map(Node::api_url).collect();
    let mut member = Member::start(&cluster.dir, "member", ElKind::Geth, &cluster.els[0].genesis, &sync, &[]);
    for el in cluster.els.iter().chain([&member.el]) {
        assert_geth(el, GETH_FROM);
    }
    let mut load = load_to(&cluster, old_leader, 0, LOAD_RATE);
    wait_blocks(&cluster, 0, 10, Duration::from_secs(60));
    let mut pauses = Vec::new();

    // 1. The standby's geth: SIGTERM (a clean stop), the next geth on the
    // same datadir, ports and JWT; its node replays what it missed.
    let before = stored_chain(&cluster.postgres);
    let from = unix_now_ms();
    cluster.els[standby].restart_with_env(&[("GETH_BIN", &next_bin)]);
    assert_geth(&cluster.els[standby], &next);
    let head = cluster.head();
    wait_for(Duration::from_secs(60), "the upgraded standby's client caught up", || {
        (cluster.els[standby].head().0 >= head.0).then_some(())
    });
    pauses.push(pause(&cluster.postgres, "standby's geth upgraded", from, unix_now_ms()));
    assert_served(&[&cluster.nodes[0], &cluster.nodes[1], &member.node], &before, "standby upgraded");
    wait_blocks(&cluster, cluster.head().0, BLOCKS_PER_STEP, Duration::from_secs(30));

    // 2. The hand-over: the standby on the next geth leads and builds.
    let before = stored_chain(&cluster.postgres);
    let from = unix_now_ms();
    transfer(&cluster, standby);
    drop(load);
    load = load_to(&cluster, standby, 1, LOAD_RATE);
    let handed_at = cluster.head().0;
    wait_blocks(&cluster, handed_at, BLOCKS_PER_STEP, Duration::from_secs(30));
    pauses.push(pause(&cluster.postgres, "hand-over to the upgraded node", from, unix_now_ms()));
    let blocks = committed_blocks(&cluster.postgres);
    let new_term = blocks.last().unwrap().term;
    assert!(
        blocks.iter().filter(|b| b.term == new_term).count() as u64 >= BLOCKS_PER_STEP,
        "the upgraded node built fewer than {BLOCKS_PER_STEP} blocks"
    );
    assert_served(&[&cluster.nodes[0], &cluster.nodes[1], &member.node], &before, "hand-over");

    // 3. The old leader's geth, now a standby's.
    let before = stored_chain(&cluster.postgres);
    let from = unix_now_ms();
    cluster.els[old_leader].restart_with_env(&[("GETH_BIN", &next_bin)]);
    assert_geth(&cluster.els[old_leader], &next);
    let head = cluster.head();
    wait_for(Duration::from_secs(60), "the old leader's client caught up", || {
        (cluster.els[old_leader].head().0 >= head.0).then_some(())
    });
    pauses.push(pause(&cluster.postgres, "old leader's geth upgraded", from, unix_now_ms()));
    assert_served(&[&cluster.nodes[0], &cluster.nodes[1], &member.node], &before, "old leader upgraded");
    wait_blocks(&cluster, cluster.head().0, BLOCKS_PER_STEP, Duration::from_secs(30));

    // 4. The member's geth.
    let before = stored_chain(&cluster.postgres);
    let from = unix_now_ms();
    member.el.restart_with_env(&[("GETH_BIN", &next_bin)]);
    assert_geth(&member.el, &next);
    wait_member_past(&member, &cluster.head());
    pauses.push(pause(&cluster.postgres, "member's geth upgraded", from, unix_now_ms()));
    assert_served(&[&cluster.nodes[0], &cluster.nodes[1], &member.node], &before, "member upgraded");
    wait_blocks(&cluster, cluster.head().0, BLOCKS_PER_STEP, Duration::from_secs(30));

    // 5. The rollback drill: the standby's geth back to v1.16.8 on the
    // datadir v1.17 wrote (it opens it and follows), then forward again on
    // an empty datadir, which its node fills from the committed chain:
    // v1.17.10 refuses a datadir v1.16.8 has run on after it ("gap in the
    // chain between ancients [0 - #N] and leveldb", docs/OPERATIONS.md).
    let old_bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/geth").display().to_string();
    let datadir = cluster.dir.join(&cluster.els[old_leader].proc.name);
    for (bin, version, step) in
        [(&old_bin, GETH_FROM, "standby's geth rolled back"), (&next_bin, &*next, "... forward on an empty datadir")]
    {
        let before = stored_chain(&cluster.postgres);
        let from = unix_now_ms();
        if version == next {
            cluster.els[old_leader].proc.terminate(Duration::from_secs(30));
            std::fs::remove_dir_all(&datadir).unwrap();
        }
        cluster.els[old_leader].restart_with_env(&[("GETH_BIN", bin)]);
        assert_geth(&cluster.els[old_leader], version);
        let head = cluster.head();
        wait_for(Duration::from_secs(60), &format!("{step}: caught up"), || {
            (cluster.els[old_leader].head().0 >= head.0).then_some(())
        });
        pauses.push(pause(&cluster.postgres, step, from, unix_now_ms()));
        assert_served(&[&cluster.nodes[0], &cluster.nodes[1], &member.node], &before, step);
        wait_blocks(&cluster, cluster.head().0, BLOCKS_PER_STEP, Duration::from_secs(30));
    }
    wait_blocks(&cluster, cluster.head().0, BLOCKS_PER_STEP, Duration::from_secs(30));
    drop(load);

    // The end: one chain, on every client, served by every node.
    let blocks = committed_blocks(&cluster.postgres);
    assert_consecutive(&blocks);
    let last = blocks.last().unwrap();
    member.wait_caught_up(&(last.number, last.hash.clone()), Duration::from_secs(60));
    member.assert_same_chain(&cluster);
    assert_clients_hold_all(&[&cluster.els[0], &cluster.els[1], &member.el], &blocks);
    assert_served(
        &[&cluster.nodes[0], &cluster.nodes[1], &member.node],
        &stored_chain(&cluster.postgres),
        "at the end",
    );
    for el in cluster.els.iter().chain([&member.el]) {
        assert_geth(el, &next);
    }
    wait_for(Duration::from_secs(30), "every node healthy", || {
        cluster.nodes.iter().chain([&member.node]).all(|n| n.health().is_some_and(|(s, _)| s == 200)).then_some(())
    });
    assert_no_refusals(&[&cluster.nodes[0], &cluster.nodes[1], &member.node]);
    print_pauses(&format!("geth v{GETH_FROM} -> v{next}"), &pauses, &blocks);
    eprintln!("geth upgrade: {} blocks, {:.0} s", blocks.len(), started.elapsed().as_secs_f64());
}

#[test]
fn on_prague_a_geth_leader_hands_over_to_an_ethereumjs_standby_and_back() {
    let started = Instant::now();
    let cluster = Cluster::builder("upgrade-mixed")
        .el(ElKind::Geth, "prague")
        .mixed(&[ElKind::Geth, ElKind::EthereumJs])
        // EthereumJS answers an engine_forkchoiceUpdatedV3 that starts a
        // build in over 1 s now and then on a busy machine (printed below):
        // with the default limit (the lease TTL, 1 s) the EthereumJS node
        // released the lease 406 ms after a transfer gave it ("the
        // execution client has not answered for 1100 ms").
        .flags(&["--admin-token", TOKEN, "--engine-stall-limit", "3s"])
        .start();
    let (geth, ejs) = (0, 1);
    let first = cluster.wait_for_leader(Duration::from_secs(60));
    if first != geth {
        transfer(&cluster, geth);
    }
    let mut pauses = Vec::new();
    let mut load = load_to(&cluster, geth, 0, MIXED_LOAD_RATE);
    let by_geth = phase(&cluster, geth, "geth leads");

    let before = stored_chain(&cluster.postgres);
    let from = unix_now_ms();
    wait_for(Duration::from_secs(60), "the EthereumJS standby caught up", || {
        (cluster.els[ejs].head().0 >= cluster.head().0).then_some(())
    });
    transfer(&cluster, ejs);
    drop(load);
    load = load_to(&cluster, ejs, 1, MIXED_LOAD_RATE);
    let by_ejs = phase(&cluster, ejs, "EthereumJS leads");
    pauses.push(pause(&cluster.postgres, "hand-over to EthereumJS", from, unix_now_ms()));
    assert_served(&[&cluster.nodes[0], &cluster.nodes[1]], &before, "to EthereumJS");

    let before = stored_chain(&cluster.postgres);
    let from = unix_now_ms();
    wait_for(Duration::from_secs(60), "the geth standby caught up", || {
        (cluster.els[geth].head().0 >= cluster.head().0).then_some(())
    });
    transfer(&cluster, geth);
    drop(load);
    let load = load_to(&cluster, geth, 2, MIXED_LOAD_RATE);
    let by_geth_again = phase(&cluster, geth, "geth leads again");
    pauses.push(pause(&cluster.postgres, "hand-over back to geth", from, unix_now_ms()));
    assert_served(&[&cluster.nodes[0], &cluster.nodes[1]], &before, "back to geth");

    drop(load);
    let blocks = committed_blocks(&cluster.postgres);
    assert_consecutive(&blocks);
    // Three terms: geth's, EthereumJS's, geth's again; each built the
    // blocks that hold the transactions sent to its client.
    let term_of = |numbers: &[u64]| -> Vec<u64> {
        let mut terms: Vec<u64> = numbers.iter().map(|n| blocks[*n as usize - 1].term).collect();
        terms.dedup();
        terms
    };
    let terms = [term_of(&by_geth), term_of(&by_ejs), term_of(&by_geth_again)];
    assert!(terms.iter().all(|t| t.len() == 1), "one term per phase: {terms:?}");
    assert!(terms[0][0] < terms[1][0] && terms[1][0] < terms[2][0], "a new term per hand-over: {terms:?}");
    let ejs_term = terms[1][0];
    let built: Vec<u64> = blocks.iter().filter(|b| b.term == ejs_term).map(|b| b.number).collect();
    eprintln!(
        "mixed: EthereumJS built blocks {built:?} (term {ejs_term}), {} of them with the transactions sent to it",
        by_ejs.len()
    );
    assert_clients_hold_all(&[&cluster.els[geth], &cluster.els[ejs]], &blocks);
    assert_served(&[&cluster.nodes[0], &cluster.nodes[1]], &stored_chain(&cluster.postgres), "at the end");
    assert_no_refusals(&[&cluster.nodes[0], &cluster.nodes[1]]);
    for node in &cluster.nodes {
        for method in ["engine_newPayloadV4", "engine_forkchoiceUpdatedV3", "engine_getPayloadV4"] {
            print_engine_latency(node, method);
        }
    }
    print_pauses("geth <-> EthereumJS", &pauses, &blocks);
    eprintln!("mixed hand-over: {} blocks, {:.0} s", blocks.len(), started.elapsed().as_secs_f64());
}
