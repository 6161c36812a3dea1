//! A transaction sent to any node's execution client reaches a committed
//! block, whoever leads: the cluster's clients peer over devp2p on loopback
//! (static peers, no discovery; `ClusterBuilder::peered`), so a transfer
//! accepted by a member's or a standby's client gossips to the leader's, and
//! stays in the standbys' pools across a failover until it is included.

// Test code: a failed unwrap, expect or panic is a failed test, and the
// harness casts measured figures the figures themselves check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::time::Duration;

use support::*;

/// Waits until `hash` is in a block on `el`, a client that only ever holds
/// committed blocks (a standby's or a member's), and checks that block is
/// the committed one at its height.
fn wait_committed(cluster: &Cluster, el: &El, hash: &str, timeout: Duration) -> u64 {
    let number = wait_for(timeout, &format!("transaction {hash} committed"), || el.receipt_block(hash));
    let chain = stored_chain(&cluster.postgres);
    let stored = chain.iter().find(|(n, _, _)| *n == number).unwrap_or_else(|| panic!("block {number} not stored"));
    assert_eq!(
        el.block_hash(number).as_ref(),
        Some(&stored.1),
        "block {number} on the client is not the committed one"
    );
    number
}

/// Two leader-mode nodes and a member, every client peered with the
/// cluster's; returns (cluster, member, leader index).
fn peered_cluster(name: &str, leaders_kind: ElKind, member_kind: ElKind, genesis: &str) -> (Cluster, Member, usize) {
    let cluster = Cluster::builder(name).leaders(2).el(leaders_kind, genesis).peered().start();
    let leader = cluster.leader();
    let sync: Vec<String> = cluster.nodes.iter().map(Node::api_url).collect();
    let member = Member::start_peered(&cluster.dir, "member", member_kind, genesis, &sync, &[], &cluster.el_enodes());
    cluster.wait_peered(Duration::from_secs(60));
    wait_for(Duration::from_secs(60), "the member's client peered with both", || {
        (member.el.peer_count() >= 2).then_some(())
    });
    // Every client takes transactions from peers once the Engine API has set
    // its head (geth: the first forkchoiceUpdated); one committed block
    // brings all of them there.
    cluster.commit_transactions(leader, 1, Duration::from_secs(60));
    member.wait_caught_up(&cluster.head(), Duration::from_secs(120));
    (cluster, member, leader)
}

#[test]
fn a_transfer_sent_to_a_members_or_a_standbys_geth_is_committed() {
    let (cluster, member, leader) = peered_cluster("anynode-geth", ElKind::Geth, ElKind::Geth, "osaka");
    let standby = 1 - leader;

    let to_member = send_transactions(&member.el.rpc_url(), 1, 1).remove(0);
    let number = wait_committed(&cluster, &member.el, &to_member, Duration::from_secs(30));
    eprintln!("sent to the member's geth: committed in block {number}");

    let to_standby = send_transactions(&cluster.els[standby].rpc_url(), 1, 2).remove(0);
    let number = wait_committed(&cluster, &cluster.els[standby], &to_standby, Duration::from_secs(30));
    eprintln!("sent to the standby's geth: committed in block {number}");
    member.assert_same_chain(&cluster);
}

#[test]
fn a_transfer_sent_to_a_standby_stays_pending_across_a_sigkill_failover_and_is_committed() {
    let (mut cluster, member, leader) = peered_cluster("anynode-failover", ElKind::Geth, ElKind::Geth, "osaka");
    let standby = 1 - leader;
    // The leader stops building (frozen): what is sent now stays pending.
    cluster.nodes[leader].proc.signal("STOP");
    let to_standby = send_transactions(&cluster.els[standby].rpc_url(), 1, 1).remove(0);
    let to_leader = send_transactions(&cluster.els[leader].rpc_url(), 1, 2).remove(0);
    let to_member = send_transactions(&member.el.rpc_url(), 1, 3).remove(0);
    // Each reached every pool, the leader's client and the standby's included.
    for hash in [&to_standby, &to_leader, &to_member] {
        wait_for(Duration::from_secs(10), &format!("{hash} in every pool"), || {
            let everywhere = cluster.els.iter().chain([&member.el]).all(|el| el.knows_transaction(hash));
            everywhere.then_some(())
        });
    }
    cluster.nodes[leader].proc.kill();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    assert_eq!(new_leader, standby);
    for hash in [&to_standby, &to_leader, &to_member] {
        let number = wait_committed(&cluster, &member.el, hash, Duration::from_secs(30));
        eprintln!("{hash}: committed in block {number} by the new leader");
        assert_eq!(cluster.els[standby].receipt_block(hash), Some(number));
    }
    member.assert_same_chain(&cluster);
}

#[test]
fn on_prague_a_transfer_sent_to_an_ethereumjs_member_or_standby_is_committed() {
    // EthereumJS leaders (the standby's client is EthereumJS) and an
    // EthereumJS member; EthereumJS dials its static peers through
    // scripts/node/cluster-p2p.mjs.
    let (cluster, member, leader) = peered_cluster("anynode-ejs", ElKind::EthereumJs, ElKind::EthereumJs, "prague");
    let standby = 1 - leader;
    let to_member = send_transactions(&member.el.rpc_url(), 1, 1).remove(0);
    let number = wait_committed(&cluster, &member.el, &to_member, Duration::from_secs(60));
    eprintln!("sent to the EthereumJS member: committed in block {number}");
    let to_standby = send_transactions(&cluster.els[standby].rpc_url(), 1, 2).remove(0);
    let number = wait_committed(&cluster, &cluster.els[standby], &to_standby, Duration::from_secs(60));
    eprintln!("sent to the EthereumJS standby: committed in block {number}");
    member.assert_same_chain(&cluster);
}

#[test]
fn on_prague_a_transfer_sent_to_an_ethereumjs_member_of_geth_leaders_is_committed() {
    let (cluster, member, _) = peered_cluster("anynode-mixed", ElKind::Geth, ElKind::EthereumJs, "prague");
    let to_member = send_transactions(&member.el.rpc_url(), 1, 1).remove(0);
    let number = wait_committed(&cluster, &member.el, &to_member, Duration::from_secs(60));
    eprintln!("sent to the EthereumJS member: committed in block {number}");
    member.assert_same_chain(&cluster);
}
