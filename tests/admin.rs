//! Leadership control on real Redis, PostgreSQL and geth: the preference
//! order (`--preferred-leaders`) and `clnode admin` (transfer, step-down,
//! pause, resume, the token).

// Test code: a failed unwrap, expect or panic is a failed test, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::time::{Duration, Instant};

use support::*;

const TOKEN: &str = "admin-token-0123456789abcdef";

fn urls(cluster: &Cluster) -> String {
    let urls: Vec<String> = cluster.nodes.iter().map(|n| format!("http://127.0.0.1:{}", n.health_port)).collect();
    urls.join(",")
}

/// `clnode admin --url ... --token TOKEN ARGS`: (exit code, stdout, stderr).
fn admin(url: &str, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["admin", "--url", url, "--token", token];
    all.extend_from_slice(args);
    run_clnode(&all)
}

fn commits_on(cluster: &Cluster, index: usize) {
    let hash = send_transactions(&cluster.els[index].rpc_url(), 1, 3).remove(0);
    wait_for(Duration::from_secs(20), "the leader commits", || cluster.els[index].receipt_block(&hash));
}

#[test]
fn the_preferred_node_leads_and_takes_the_lease_back_after_a_failover() {
    let mut cluster =
        Cluster::builder("admin-preferred").leaders(2).flags(&["--preferred-leaders", "leader-0,leader-1"]).start();
    // Whoever wins the first lease, leader-0 leads once it has been ready
    // for two TTLs.
    wait_for(Duration::from_secs(40), "leader-0 leads", || cluster.nodes[0].is_leader().then_some(()));
    commits_on(&cluster, 0);
    cluster.nodes[0].proc.kill();
    wait_for(Duration::from_secs(10), "leader-1 takes over", || cluster.nodes[1].is_leader().then_some(()));
    commits_on(&cluster, 1);
    cluster.nodes[0].proc.start();
    let restarted = Instant::now();
    wait_for(Duration::from_secs(40), "leader-0 leads again", || cluster.nodes[0].is_leader().then_some(()));
    eprintln!("leader-0 led again {} ms after its restart", restarted.elapsed().as_millis());
    // Its /health follows once its producer has left the term.
    wait_for(Duration::from_secs(5), "leader-1 standing by", || (!cluster.nodes[1].is_leader()).then_some(()));
    commits_on(&cluster, 0);
    let log = cluster.nodes[1].proc.log_text();
    assert!(log.contains("handing term") && log.contains("to leader-0"), "not a graceful hand-over:\n{log}");
    assert_continuous(&stored_chain(&cluster.postgres));
}

#[test]
fn admin_transfers_steps_down_pauses_and_resumes() {
    let cluster = Cluster::builder("admin-control").leaders(2).flags(&["--admin-token", TOKEN]).start();
    let all = urls(&cluster);
    let first = cluster.wait_for_leader(Duration::from_secs(30));
    let other = 1 - first;
    commits_on(&cluster, first);
    let id = |i: usize| format!("leader-{i}");
    let url = |i: usize| format!("http://127.0.0.1:{}", cluster.nodes[i].health_port);

    // The token: missing 401, wrong 403, and the CLI says so and fails.
    let (code, _) = http_get(&format!("{}/admin/status", url(first))).unwrap();
    assert_eq!(code, 401);
    let (code, _, stderr) = admin(&all, "wrong-token-0123456789abcdef", &["status"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("HTTP 403") && stderr.contains("wrong admin token"), "{stderr}");
    let (code, stdout, _) = admin(&all, TOKEN, &["status"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains(&format!("{} ({}): leader leader", id(first), url(first))), "{stdout}");

    // Transfer to the standby, wherever the command is sent.
    wait_for(Duration::from_secs(20), "the standby caught up", || {
        (cluster.els[other].head().0 == cluster.head().0).then_some(())
    });
    let (code, stdout, stderr) = admin(&all, TOKEN, &["transfer", "--to", &id(other)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with(&format!("{}: handed the lease (term ", id(first))), "{stdout}");
    assert!(stdout.trim_end().ends_with(&format!(") to {}", id(other))), "{stdout}");
    wait_for(Duration::from_secs(10), "the target leads", || cluster.nodes[other].is_leader().then_some(()));
    commits_on(&cluster, other);
    let (code, _, stderr) = admin(&all, TOKEN, &["transfer", "--to", "nobody"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("HTTP 404") && stderr.contains("nobody has no readiness record"), "{stderr}");

    // A paused node is never chosen and never takes the lease.
    let (code, stdout, _) = admin(&url(first), TOKEN, &["pause"]);
    assert_eq!((code, stdout.trim()), (Some(0), format!("{}: paused; it will not take the lease", id(first)).as_str()));
    let line = cluster.nodes[first].health().unwrap().1;
    assert_eq!(line, "OK (mode=leader, isLeader=false, paused)\n");
    let (_, table, _) = run_clnode(&["status", "--url", &url(first)]);
    assert!(table.contains("standby (paused)"), "{table}");
    std::thread::sleep(Duration::from_millis(600)); // its record says so
    let (code, _, stderr) = admin(&all, TOKEN, &["transfer", "--to", &id(first)]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("HTTP 409") && stderr.contains("is paused"), "{stderr}");
    let (code, stdout, _) = admin(&all, TOKEN, &["step-down"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains(&format!("{}: stepped down from term", id(other))), "{stdout}");
    // Only the paused node could take it; it does not, and the node that
    // stepped down takes it back after its cool-down (one TTL).
    let back = Instant::now();
    wait_for(Duration::from_secs(10), "the node that stepped down leads again", || {
        assert!(!cluster.nodes[first].is_leader(), "the paused node took the lease");
        (back.elapsed() > Duration::from_millis(300) && cluster.nodes[other].is_leader()).then_some(())
    });

    // Resumed, it may lead again; a paused leader hands over to it.
    let (code, stdout, _) = admin(&url(first), TOKEN, &["resume"]);
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), format!("{}: resumed; it may take the lease again", id(first)).as_str())
    );
    std::thread::sleep(Duration::from_millis(600));
    let (code, stdout, _) = admin(&url(other), TOKEN, &["pause"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("paused; it leads until another node is healthy and caught up"), "{stdout}");
    wait_for(Duration::from_secs(10), "the resumed node leads", || cluster.nodes[first].is_leader().then_some(()));
    commits_on(&cluster, first);
    assert_continuous(&stored_chain(&cluster.postgres));
}
