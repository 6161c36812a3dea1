//! PgBouncer (issue 17, §3) on real processes: leader-mode nodes and their
//! sync API reach PostgreSQL through PgBouncer 1.18 in session mode, the
//! mode clnode supports, and keep every property they rely on: prepared
//! statements, the fence's row lock, LISTEN/NOTIFY, the server-side
//! timeouts, and a failover. Transaction mode is shown losing the
//! notifications (docs/OPERATIONS.md, "PgBouncer", says why it is refused).

// Test code: a failed unwrap, expect or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::time::Duration;

use clnode::notify::CHANNEL;
use clnode::store::{Store, IDLE_IN_TRANSACTION_TIMEOUT_MS, STATEMENT_TIMEOUT_MS};
use postgres::fallible_iterator::FallibleIterator;
use support::pgbouncer::PgBouncer;
use support::*;

/// A session LISTENing on clnode's channel through `url`; returns how many
/// notifications it got while `act` ran and one second after.
fn notifications_through(url: &str, act: impl FnOnce()) -> usize {
    let mut listener = postgres::Client::connect(url, postgres::NoTls).unwrap();
    listener.batch_execute(&format!("LISTEN {CHANNEL}")).unwrap();
    act();
    let mut notifications = listener.notifications();
    let mut count = 0;
    let mut iter = notifications.timeout_iter(Duration::from_secs(1));
    while let Ok(Some(_)) = iter.next() {
        count += 1;
    }
    count
}

#[test]
fn leader_mode_nodes_work_through_pgbouncer_in_session_mode() {
    let mut cluster = Cluster::builder("pgbouncer-session").leaders(2).pgbouncer().start();
    let bouncer_url = cluster.pgbouncer.as_ref().unwrap().url();
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    // Commits through the bouncer: prepared statements, the fence.
    let notified = notifications_through(&bouncer_url, || {
        cluster.commit_transactions(leader, 2, Duration::from_secs(30));
    });
    assert!(notified >= 1, "no commit notification came through PgBouncer's session mode");
    let head = cluster.head();
    assert!(head.0 >= 1);
    // The sync API reads through it too.
    let (status, latest) = cluster.nodes[leader].api("/blocks/latest");
    assert_eq!((status, latest["block_number"].as_u64()), (200, Some(head.0)), "{latest}");
    // The nodes' connections are the bouncer's clients (its admin console
    // lists them by application name).
    let bouncer_port = cluster.pgbouncer.as_ref().unwrap().port;
    let admin_url = format!("postgres://postgres@127.0.0.1:{bouncer_port}/pgbouncer");
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
    let clients: Vec<String> = admin
        .simple_query("SHOW CLIENTS")
        .unwrap()
        .into_iter()
        .filter_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get("application_name").map(str::to_owned),
            _ => None,
        })
        .collect();
    for role in [
        "clnode-notifier".to_owned(),
        format!("clnode-producer-leader-{leader}"),
        format!("clnode-api-leader-{leader}"),
    ] {
        assert!(clients.contains(&role), "{role} is no client of PgBouncer: {clients:?}");
    }
    // The server-side timeouts hold on a connection made through it.
    let mut store = Store::connect(&bouncer_url, "clnode-test").unwrap();
    let show = |store: &mut Store, name: &str| -> String {
        store.client().query_one(&format!("SHOW {name}"), &[]).unwrap().get(0)
    };
    assert_eq!(show(&mut store, "statement_timeout"), format!("{}s", STATEMENT_TIMEOUT_MS / 1000));
    assert_eq!(
        show(&mut store, "idle_in_transaction_session_timeout"),
        format!("{}s", IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000)
    );
    drop(store);
    // A failover through the bouncer: the standby raises the fence and
    // commits on the committed head.
    let standby = 1 - leader;
    cluster.nodes[leader].proc.kill();
    wait_for(Duration::from_secs(15), "the standby takes over", || cluster.nodes[standby].is_leader().then_some(()));
    let hashes = send_transactions(&cluster.els[standby].rpc_url(), 1, standby);
    let block =
        wait_for(Duration::from_secs(20), "the new leader commits", || cluster.els[standby].receipt_block(&hashes[0]));
    assert!(block > head.0);
    assert_continuous(&stored_chain(&cluster.postgres));
    let log = cluster.nodes[standby].proc.log_text();
    assert!(!log.contains("LISTEN failed") && !log.contains("session settings"), "{log}");
}

/// Why not transaction mode: a LISTEN made through it is bound to a server
/// connection only for its own transaction, so commits never reach it (and
/// clnode's prepared statements would name statements another server
/// connection never saw; PgBouncer supports them only from 1.21).
#[test]
fn transaction_mode_loses_notifications() {
    let dir = TestDir::new("pgbouncer-transaction");
    let postgres = Postgres::start(&dir, "pg");
    let session = PgBouncer::start(&dir, "bouncer-session", &postgres, "session");
    let transaction = PgBouncer::start(&dir, "bouncer-transaction", &postgres, "transaction");
    let notify = || {
        for _ in 0..3 {
            postgres.client().batch_execute(&format!("NOTIFY {CHANNEL}")).unwrap();
        }
    };
    assert_eq!(notifications_through(&session.url(), notify), 3, "session mode delivers every notification");
    assert_eq!(notifications_through(&transaction.url(), notify), 0, "transaction mode delivered notifications");
}
