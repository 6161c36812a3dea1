//! #13: the startup faults.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use crate::*;

/// The `startup_faults` test.
pub fn startup_faults() {
    let _serial = serial();
    if !selected("startup") {
        eprintln!("startup_faults: not in CLNODE_FAULT_CASES, skipped");
        return;
    }
    let started = Instant::now();
    let dir = TestDir::new("faults-startup");
    let secret = dir.join("jwt.hex");
    assert!(Command::new(script("jwt.sh")).arg(&secret).status().unwrap().success());
    let secret = secret.display().to_string();
    let not_hex = dir.join("not-hex.hex");
    std::fs::write(&not_hex, "this is not a secret\n").unwrap();
    let not_hex = not_hex.display().to_string();
    let a_directory = dir.path.display().to_string();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let with = |extra: &[&str]| -> Vec<String> {
        // Record signatures are not what these cases are about.
        let mut args: Vec<String> = ["--instance-id", "x", "--jwt-secret-file", &secret, "--insecure-unsigned-records"]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, Option<i32>, &str)> = vec![
        (vec!["--bogus".into()], Some(2), "--bogus"),
        (vec!["--jwt-secret-file".into(), secret.clone()], Some(2), "--instance-id"),
        (with(&["--mode", "boss"]), Some(2), "--mode"),
        (with(&["--lease-ttl", "10ms"]), Some(2), "--lease-ttl"),
        (with(&["--lease-ttl", "2s", "--lease-renew-interval", "5s"]), Some(2), "--lease-renew-interval"),
        (with(&["--lease-ttl"]), Some(2), "--lease-ttl"),
        (with(&["--health-addr", "nonsense"]), Some(2), "--health-addr"),
        (with(&["--postgres-url", "mysql://x"]), Some(2), "--postgres-url"),
        (with(&["--mode", "member", "--leader-url", "ftp://x"]), Some(2), "--leader-url"),
        (with(&["--mode", "member", "--sync-batch-limit", "0"]), Some(2), "--sync-batch-limit"),
        (with(&["--evm-build-delay", "soon"]), Some(2), "--evm-build-delay"),
        (with(&["stray"]), Some(2), "stray"),
        (
            vec!["--instance-id".into(), "x".into(), "--jwt-secret-file".into(), "/nonexistent/jwt.hex".into()],
            None,
            "/nonexistent/jwt.hex",
        ),
        (vec!["--instance-id".into(), "x".into(), "--jwt-secret-file".into(), a_directory.clone()], None, &a_directory),
        (vec!["--instance-id".into(), "x".into(), "--jwt-secret-file".into(), not_hex.clone()], None, "JWT secret"),
        (vec!["--instance-id".into(), "x".into(), "--jwt-secret".into(), "0x1234".into()], None, "JWT secret"),
        // A port that is taken: one line, exit 1, before anything else starts.
        (
            with(&[
                "--health-addr",
                &taken_addr,
                "--eth-client-url",
                "http://127.0.0.1:9",
                "--api-addr",
                "127.0.0.1:0",
            ]),
            Some(1),
            &taken_addr,
        ),
    ];
    for (args, expected, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = run_clnode(&args);
        match expected {
            Some(expected) => assert_eq!(code, Some(*expected), "clnode {args:?}: {stderr}"),
            None => assert!(code.is_some_and(|c| c != 0), "clnode {args:?} exited with {code:?}: {stderr}"),
        }
        // Past flag parsing the node logs as usual ("<time> INFO x starting ..."); the error is one line.
        let is_log =
            |line: &str| line.split(' ').nth(1).is_some_and(|level| ["INFO", "WARN", "ERROR"].contains(&level));
        let lines: Vec<&str> = stderr.lines().filter(|line| !is_log(line)).collect();
        assert_eq!(lines.len(), 1, "clnode {args:?}: expected one line, got {stderr:?}");
        assert!(lines[0].starts_with("clnode: ") && lines[0].contains(needle), "clnode {args:?}: {stderr:?}");
        assert!(stdout.is_empty(), "clnode {args:?} printed {stdout:?}");
        eprintln!("  {args:?} -> {code:?}: {}", lines[0]);
    }
    drop(taken);

    // SIGTERM while the node waits for its services at startup: it stops at once.
    let mut waiting = Command::new(clnode_binary())
        .args(["--instance-id", "x", "--jwt-secret-file", &secret, "--eth-client-url", "http://127.0.0.1:9"])
        .args(["--health-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--insecure-unsigned-records"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(700));
    assert!(Command::new("kill").arg("-TERM").arg(waiting.id().to_string()).status().unwrap().success());
    let signalled = Instant::now();
    while waiting.try_wait().unwrap().is_none() {
        assert!(signalled.elapsed() < Duration::from_secs(5), "a node waiting for its services ignored SIGTERM");
        sleep(Duration::from_millis(10));
    }
    let output = waiting.wait_with_output().unwrap();
    let last = String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("").to_owned();
    eprintln!(
        "  SIGTERM while waiting for services: exit {:?} after {} ms: {last}",
        output.status.code(),
        signalled.elapsed().as_millis()
    );
    assert_eq!(output.status.code(), Some(0), "a requested stop during the startup wait is not an error: {last}");

    // Services that come later: the node waits, /health names what is missing.
    let mut redis = Redis::start(&dir);
    let mut pg = Postgres::start(&dir, "pg");
    let mut el = El::start(&dir, "geth0", ElKind::Geth, "osaka");
    redis.proc.kill();
    pg.proc.kill();
    el.proc.kill();
    let mut node = Node::leader(&dir, "leader-0", &el, &pg, &redis, &LEADER_FLAGS);
    let wait_health = |node: &Node, what: &str| -> String {
        poll(Duration::from_secs(30), Duration::from_millis(50), &format!("/health to name the {what}"), || {
            node.health_within(PROBE).filter(|(s, l)| *s == 503 && l.contains(what)).map(|(_, l)| l)
        })
    };
    eprintln!("  nothing up: {}", wait_health(&node, "execution client").trim());
    sleep(Duration::from_secs(2));
    assert!(node.proc.exited().is_none(), "clnode gave up while the execution client was down");
    assert!(node.proc.log_text().contains("startup: waiting for the execution client"));
    el.proc.start();
    el.wait_ready();
    eprintln!("  execution client up: {}", wait_health(&node, "database").trim());
    assert!(node.proc.log_text().contains("startup: waiting for the database"), "the database wait is not logged");
    pg.proc.start();
    pg.wait_ready();
    eprintln!("  database up: {}", wait_health(&node, "redis").trim());
    assert!(node.proc.exited().is_none());
    redis.proc.start();
    redis.wait_ready();
    poll(Duration::from_secs(30), Duration::from_millis(50), "the node to lead", || {
        node.health_json_within(PROBE).filter(|h| h["role"] == "leader" && h["healthy"] == true)
    });
    let hash = send_transactions(&el.rpc_url(), 1, 0).remove(0);
    poll(Duration::from_secs(30), Duration::from_millis(50), "a block", || el.receipt_block(&hash));

    // A member whose execution client and sync source are not up yet.
    let mut member_el = El::start(&dir, "member-el", ElKind::Geth, "osaka");
    let member_pg = Postgres::start(&dir, "member-pg");
    member_el.proc.kill();
    let dead_url = format!("http://127.0.0.1:{}", free_port());
    let member = Node::member(&dir, "member-0", &member_el, &member_pg, &[dead_url, node.api_url()], &MEMBER_FLAGS);
    eprintln!("  member, no execution client: {}", wait_health(&member, "execution client").trim());
    member_el.proc.start();
    member_el.wait_ready();
    poll(Duration::from_secs(60), Duration::from_millis(50), "the member to sync through its second URL", || {
        (member.synced_height_within()? >= 1).then_some(())
    });
    node.proc.kill();
    eprintln!("  member, no sync source: {}", wait_health(&member, "no sync URL answers").trim());
    assert!(!stored_chain(&member_pg).is_empty(), "the member keeps the chain it has");
    eprintln!("startup_faults: {:.1} s", started.elapsed().as_secs_f64());
}
