//! TLS to PostgreSQL and Redis (issue 17, §7) on real processes: a
//! PostgreSQL with ssl=on and a TLS-only Redis, both presenting a
//! certificate from a self-signed test CA made by the openssl CLI
//! (scripts/test-certs.sh). Each sslmode does what libpq's does, a refused
//! certificate is a TLS error by kind, a leader-mode node commits over
//! verified TLS to both (the server side shows the connections encrypted),
//! and a wrong CA keeps a node from leading with /health saying TLS.

// Test code: a failed unwrap, expect or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::time::{Duration, Instant};

use clnode::leader::lease::{RedisError, RedisErrorKind, LEASE_KEY, REDIS_IO_TIMEOUT};
use clnode::leader::redis_target::{connect_redis, parse_redis_addr, RedisTarget, RedisTls};
use clnode::store::{Store, StoreErrorKind};
use support::tls::TestCa;
use support::*;

/// The server certificates name `localhost` only: connecting to 127.0.0.1
/// is the wrong name for `verify-full` (and for Redis, which always checks
/// the name), while `verify-ca` accepts it.
const SERVER_NAMES: &str = "DNS:localhost";

fn pg_url(postgres: &Postgres, host: &str, params: &str) -> String {
    format!("postgres://postgres@{host}:{}/postgres?{params}", postgres.port)
}

/// Whether the session of `store` is encrypted, as the server sees it.
fn session_is_encrypted(store: &mut Store) -> bool {
    store.client().query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0)
}

#[test]
fn each_sslmode_and_rediss_verifies_what_it_says() {
    let started = Instant::now();
    let dir = TestDir::new("tls-modes");
    let ca = TestCa::new(&dir, "ca", SERVER_NAMES);
    let other = TestCa::new(&dir, "other-ca", SERVER_NAMES);
    let postgres = Postgres::start_tls(&dir, "pg", &ca);
    let (right, wrong) = (ca.ca(), other.ca());
    // (host, parameters, encrypted, or the kind of the refusal)
    let cases: Vec<(&str, String, Result<bool, StoreErrorKind>)> = vec![
        ("localhost", format!("sslmode=verify-full&sslrootcert={right}"), Ok(true)),
        ("127.0.0.1", format!("sslmode=verify-full&sslrootcert={right}"), Err(StoreErrorKind::Tls)),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={right}"), Ok(true)),
        ("localhost", format!("sslmode=verify-full&sslrootcert={wrong}"), Err(StoreErrorKind::Tls)),
        ("localhost", format!("sslmode=verify-ca&sslrootcert={wrong}"), Err(StoreErrorKind::Tls)),
        // libpq: a CA file makes require check the chain.
        ("127.0.0.1", format!("sslmode=require&sslrootcert={wrong}"), Err(StoreErrorKind::Tls)),
        // No sslrootcert: the Mozilla roots, which never signed a test CA.
        ("localhost", "sslmode=verify-full".to_owned(), Err(StoreErrorKind::Tls)),
        ("127.0.0.1", "sslmode=require".to_owned(), Ok(true)),
        ("127.0.0.1", "sslmode=prefer".to_owned(), Ok(true)),
        ("127.0.0.1", String::new(), Ok(true)),
        ("127.0.0.1", "sslmode=disable".to_owned(), Ok(false)),
    ];
    for (host, params, expected) in cases {
        let url = pg_url(&postgres, host, &params);
        let got = Store::connect(&url, "clnode-tls-test").map(|mut store| session_is_encrypted(&mut store));
        match (&got, &expected) {
            (Ok(encrypted), Ok(want)) => assert_eq!(encrypted, want, "{host} {params}"),
            (Err(error), Err(kind)) => {
                assert_eq!(error.kind, *kind, "{host} {params}: {error}");
                assert!(error.to_string().contains("TLS"), "{error}");
            }
            _ => panic!("{host} {params}: {:?}, expected {expected:?}", got.map_err(|e| e.to_string())),
        }
    }

    // Redis: TLS only on its port; the name and the chain are always checked.
    let redis = Redis::start_tls(&dir, "redis", &ca);
    let target = |host: &str, ca_file: Option<String>| RedisTarget::Direct {
        addr: format!("{host}:{}", redis.port),
        tls: Some(RedisTls { ca_file: ca_file.map(Into::into) }),
    };
    let ping = |target: &RedisTarget| {
        connect_redis(target, None, REDIS_IO_TIMEOUT)
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).map_err(|e| RedisError::new("", "ping", &e)))
    };
    assert_eq!(ping(&target("localhost", Some(right.clone()))).unwrap(), "PONG");
    for (host, ca_file) in [("127.0.0.1", Some(right.clone())), ("localhost", Some(wrong.clone())), ("localhost", None)]
    {
        let error = ping(&target(host, ca_file.clone())).unwrap_err();
        assert_eq!(error.kind, RedisErrorKind::Tls, "{host} {ca_file:?}: {error}");
        assert!(error.to_string().starts_with(&format!("Redis connect (rediss://{host}:")), "{error}");
        assert!(error.to_string().contains("TLS: "), "{error}");
    }
    // Plaintext to the TLS port gets nowhere.
    let plain = parse_redis_addr(&format!("127.0.0.1:{}", redis.port)).unwrap();
    let error = ping(&plain).unwrap_err();
    assert_eq!(error.kind, RedisErrorKind::ConnectionLost, "{error}");

    // Servers without TLS: PostgreSQL says so (the crate gives that no
    // type: `Connect`); a plaintext Redis waits for the end of a command
    // line that a ClientHello never sends, so the connect times out.
    let plain_pg = Postgres::start(&dir, "plain-pg");
    let error = Store::connect(&pg_url(&plain_pg, "127.0.0.1", "sslmode=require"), "clnode-tls-test").err().unwrap();
    assert_eq!(error.kind, StoreErrorKind::Connect, "{error}");
    assert!(error.to_string().ends_with("error performing TLS handshake: server does not support TLS"), "{error}");
    let plain_redis = Redis::start_named(&dir, "plain-redis", None);
    let error = ping(&parse_redis_addr(&format!("rediss://localhost:{}", plain_redis.port)).unwrap()).unwrap_err();
    assert_eq!(error.kind, RedisErrorKind::Timeout, "{error}");
    eprintln!("sslmodes and rediss checked in {:?}", started.elapsed());
}

/// `rediss://` on the sentinel list: TLS to the sentinel and to the master
/// it names, both verified against the CA (Sentinel names the master by IP
/// address, so the certificate carries 127.0.0.1).
#[test]
fn sentinels_and_the_master_they_name_speak_tls() {
    let dir = TestDir::new("tls-sentinel");
    let ca = TestCa::new(&dir, "ca", "DNS:localhost,IP:127.0.0.1");
    let other = TestCa::new(&dir, "other-ca", "DNS:localhost,IP:127.0.0.1");
    let master = Redis::start_tls(&dir, "redis", &ca);
    let port = free_port();
    let args =
        [dir.join("sentinel").display().to_string(), port.to_string(), "mymaster".into(), master.addr(), "1".into()];
    let env = [("REDIS_TLS_CERT", ca.cert()), ("REDIS_TLS_KEY", ca.key()), ("REDIS_TLS_CA", ca.ca())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _sentinel =
        Proc::spawn_with_env("sentinel", dir.join("sentinel.log"), &script("redis-sentinel.sh"), &args, &env);
    let list = format!("rediss://localhost:{port}");
    let mut target = clnode::leader::redis_target::parse_sentinels(&list, "mymaster").unwrap();
    target.set_ca_file(ca.ca().into()).unwrap();
    let mut connection = wait_for(Duration::from_secs(10), "the master through the sentinel", || {
        connect_redis(&target, None, REDIS_IO_TIMEOUT).ok()
    });
    let pong: String = redis::cmd("PING").query(&mut connection).unwrap();
    assert_eq!(pong, "PONG");
    // The sentinel answers only over TLS, and only to a client that trusts its CA.
    let plain = clnode::leader::redis_target::parse_sentinels(&format!("localhost:{port}"), "mymaster").unwrap();
    assert!(connect_redis(&plain, None, REDIS_IO_TIMEOUT).is_err());
    let mut wrong = clnode::leader::redis_target::parse_sentinels(&list, "mymaster").unwrap();
    wrong.set_ca_file(other.ca().into()).unwrap();
    let error = connect_redis(&wrong, None, REDIS_IO_TIMEOUT).err().unwrap();
    assert_eq!((error.kind, error.addr.as_str()), (RedisErrorKind::Tls, format!("rediss://localhost:{port}").as_str()));
}

/// An unreadable password or CA file stops the start: one line naming the
/// flag, exit 2.
#[test]
fn unreadable_secret_and_ca_files_are_one_line_and_exit_2() {
    let base =
        ["--instance-id", "x", "--jwt-secret", "0x1111111111111111111111111111111111111111111111111111111111111111"];
    let cases: [(&[&str], &str); 4] = [
        (&["--redis-password", "@/nonexistent/redis.password"], "clnode: --redis-password: cannot read"),
        (&["--postgres-password", "@/nonexistent/pg.password"], "clnode: --postgres-password: cannot read"),
        (&["--redis-addr", "rediss://r:6380", "--redis-ca-file", "/nonexistent/ca.pem"], "clnode: --redis-ca-file:"),
        (
            &["--postgres-url", "postgres://u:hunter2@db/c?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"],
            "clnode: --postgres-url: sslrootcert: cannot read CA file /nonexistent/ca.pem",
        ),
    ];
    for (extra, start) in cases {
        let args = [&base[..], extra].concat();
        let (code, stdout, stderr) = run_clnode(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(start), "{stderr}");
        assert!(!stderr.contains("hunter2") && stdout.is_empty(), "{stderr}");
    }
}

#[test]
fn a_leader_commits_over_verified_tls_and_a_wrong_ca_keeps_a_node_from_leading() {
    let started = Instant::now();
    let dir = TestDir::new("tls-leader");
    let ca = TestCa::new(&dir, "ca", SERVER_NAMES);
    let other = TestCa::new(&dir, "other-ca", SERVER_NAMES);
    let postgres = Postgres::start_tls(&dir, "pg", &ca);
    let redis = Redis::start_tls(&dir, "redis", &ca);
    let el = El::start(&dir, "geth", ElKind::Geth, "osaka");
    // Passwords from files: Redis requires one (set over TLS), PostgreSQL
    // (trust authentication here) is sent one.
    let password_file = dir.join("redis.password");
    std::fs::write(&password_file, "correct horse tls\n").unwrap();
    let mut admin = redis.tls_connection("localhost", &ca, None);
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("correct horse tls").query::<()>(&mut admin).unwrap();
    let mut admin = redis.tls_connection("localhost", &ca, Some("correct horse tls"));
    let password = format!("@{}", password_file.display());

    let (right, wrong) = (ca.ca(), other.ca());
    let verified_pg = pg_url(&postgres, "localhost", &format!("sslmode=verify-full&sslrootcert={right}"));
    let rediss = format!("rediss://localhost:{}", redis.port);
    let node_with = |id: &str, pg: &str, redis_ca: &str| {
        let flags = [
            "--postgres-url",
            pg,
            "--postgres-password",
            &password,
            "--redis-addr",
            &rediss,
            "--redis-ca-file",
            redis_ca,
            "--redis-password",
            &password,
        ];
        Node::leader(&dir, id, &el, &postgres, &redis, &[&FAST_LEADER[..], &flags[..]].concat())
    };
    let commit_one = |node: &Node| {
        wait_for(Duration::from_secs(30), &format!("{} leads", node.id), || node.is_leader().then_some(()));
        let hashes = send_transactions(&el.rpc_url(), 1, 0);
        wait_for(Duration::from_secs(20), "the transaction is committed", || el.receipt_block(&hashes[0]))
    };

    // Verified TLS to both: the node leads and commits.
    let mut node = node_with("verified", &verified_pg, &right);
    let block = commit_one(&node);
    assert!(stored_chain(&postgres).iter().any(|(number, _, _)| *number == block));
    // The server side: every clnode session is encrypted...
    let sessions: Vec<(String, bool)> = postgres
        .client()
        .query(
            "SELECT application_name, ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name LIKE 'clnode%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(sessions.len() >= 3, "{sessions:?}");
    assert!(sessions.iter().all(|(_, ssl)| *ssl), "a clnode session in plaintext: {sessions:?}");
    // ...and Redis has no plaintext port at all, while the node's
    // connections (lease, readiness, publisher) are its clients.
    let port: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("port").query(&mut admin).unwrap();
    assert_eq!(port, ["port", "0"]);
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    assert!(clients.lines().count() >= 3, "{clients}");
    node.proc.kill();

    // The wrong CA for PostgreSQL: the node never finishes starting.
    let wrong_pg = pg_url(&postgres, "localhost", &format!("sslmode=verify-full&sslrootcert={wrong}"));
    let node = node_with("wrong-pg-ca", &wrong_pg, &right);
    let problem = wait_for(Duration::from_secs(15), "/health names the database's TLS", || {
        let health = node.health_json()?;
        health["problems"]["database"].as_str().filter(|p| p.contains("TLS")).map(str::to_owned)
    });
    assert!(problem.contains("invalid peer certificate"), "{problem}");
    let (status, _) = node.health().unwrap();
    assert_eq!(status, 503);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!node.is_leader());
    assert!(node.proc.log_text().contains("TLS"), "{}", node.proc.log_text());
    drop(node);

    // The wrong CA for Redis: no lease, so no leading.
    let node = node_with("wrong-redis-ca", &verified_pg, &wrong);
    let problem = wait_for(Duration::from_secs(15), "/health names Redis's TLS", || {
        let health = node.health_json()?;
        health["problems"]["redis"].as_str().filter(|p| p.contains("TLS")).map(str::to_owned)
    });
    assert!(problem.starts_with(&format!("Redis connect (rediss://localhost:{})", redis.port)), "{problem}");
    let log = node.proc.log_text();
    assert!(
        log.lines().any(|l| l.contains(" WARN ") && l.contains("lease: Redis connect") && l.contains("TLS")),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!node.is_leader());
    let lease: Option<String> = redis::cmd("GET").arg(LEASE_KEY).query(&mut admin).unwrap();
    assert!(lease.as_ref().is_none_or(|holder| !holder.starts_with("wrong-redis-ca")), "{lease:?}");
    drop(node);

    // sslmode=require: encrypted without a CA; the node leads and commits.
    let require_pg = pg_url(&postgres, "127.0.0.1", "sslmode=require");
    let node = node_with("require", &require_pg, &right);
    let next = commit_one(&node);
    assert!(next > block);
    assert_continuous(&stored_chain(&postgres));
    let plaintext: i64 = postgres
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name LIKE 'clnode%' AND NOT ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(plaintext, 0);
    eprintln!("leader over TLS checked in {:?}", started.elapsed());
}
