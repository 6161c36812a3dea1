//! What an operator meets first: errors that will not heal end the node at
//! once with one line (a database that does not exist, credentials
//! PostgreSQL or Redis refuses), and logs tools can read (`--log-format
//! json`). Real PostgreSQL, Redis, geth and clnode processes.

// Test code: a failed unwrap, expect or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use serde_json::Value;
use support::*;

/// The flags of a leader-mode node against these services, plus `extra`.
fn node_args(geth: &El, postgres_url: &str, redis_addr: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--instance-id",
        "operator",
        "--jwt-secret-file",
        &geth.jwt.display().to_string(),
        "--eth-client-url",
        &geth.engine_url(),
        "--postgres-url",
        postgres_url,
        "--redis-addr",
        redis_addr,
        "--health-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--api-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--insecure-unsigned-records",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(args: &[String]) -> (Option<i32>, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = run_clnode(&args);
    (code, stderr)
}

/// Exit 1 and exactly one `clnode:` line, which contains every one of `expected`.
fn assert_one_line_exit(code: Option<i32>, stderr: &str, expected: &[&str]) -> String {
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("clnode:")).collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert_eq!(stderr.lines().last(), Some(lines[0]), "the reason is the last line: {stderr}");
    for part in expected {
        assert!(lines[0].contains(part), "{part:?} missing: {stderr}");
    }
    lines[0].to_owned()
}

#[test]
fn postgresql_refusing_the_database_name_or_the_password_ends_the_node_with_one_line() {
    let dir = TestDir::new("operator-postgres");
    let postgres = Postgres::start(&dir, "pg");
    let geth = El::start(&dir, "geth", ElKind::Geth, "osaka");
    let redis_addr = format!("127.0.0.1:{}", free_port()); // never reached
                                                           // A database that does not exist (SQLSTATE 3D000).
    let missing = format!("postgres://postgres@127.0.0.1:{}/no_such_db", postgres.port);
    let (code, stderr) = run(&node_args(&geth, &missing, &redis_addr, &[]));
    assert_one_line_exit(code, &stderr, &["no_such_db", "does not exist"]);
    // A password PostgreSQL refuses (SQLSTATE 28P01): TCP clients must now
    // authenticate; the harness's own client uses the unix socket.
    let mut client = postgres.client();
    client.batch_execute("ALTER USER postgres PASSWORD 'the-right-one'").unwrap();
    let hba: String = client.query_one("SHOW hba_file", &[]).unwrap().get(0);
    std::fs::write(&hba, "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    let wrong = format!("postgres://postgres:hunter2-wrong@127.0.0.1:{}/postgres", postgres.port);
    let (code, stderr) = run(&node_args(&geth, &wrong, &redis_addr, &[]));
    let line = assert_one_line_exit(code, &stderr, &["password authentication failed"]);
    assert!(!stderr.contains("hunter2"), "password echoed: {line}");
}

#[test]
fn redis_refusing_this_nodes_password_ends_the_node_with_one_line() {
    let dir = TestDir::new("operator-redis");
    let postgres = Postgres::start(&dir, "pg");
    let geth = El::start(&dir, "geth", ElKind::Geth, "osaka");
    let redis = Redis::start(&dir);
    let mut admin = redis::Client::open(format!("redis://{}/", redis.addr())).unwrap().get_connection().unwrap();
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("the-right-one").query::<()>(&mut admin).unwrap();
    // No password at all: Redis answers NOAUTH. In the JSON format the
    // reason is one JSON object too, and every other line is one as well.
    let (code, stderr) = run(&node_args(&geth, &postgres.url(), &redis.addr(), &["--log-format", "json"]));
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for line in &lines {
        for field in ["time", "level", "instance", "component", "message"] {
            assert!(line[field].is_string(), "{field} missing: {line}");
        }
        assert!(line["fields"].is_object(), "{line}");
        assert_eq!(line["instance"], "operator", "{line}");
    }
    assert!(lines.iter().any(|l| l["component"] == "startup"), "{stderr}");
    let last = lines.last().unwrap();
    assert_eq!((&last["level"], &last["fields"]["fatal"]), (&Value::from("error"), &Value::from(true)), "{last}");
    let reason = last["message"].as_str().unwrap();
    assert!(reason.contains("Redis") && reason.contains("NOAUTH") && reason.contains("--redis-password"), "{reason}");
    assert_eq!(lines.iter().filter(|l| l["fields"]["fatal"] == true).count(), 1, "{stderr}");
    // A wrong password: refused at AUTH (WRONGPASS).
    let (code, stderr) = run(&node_args(&geth, &postgres.url(), &redis.addr(), &["--redis-password", "hunter2-wrong"]));
    let line = assert_one_line_exit(code, &stderr, &["Redis", &redis.addr(), "--redis-password"]);
    assert!(!line.contains("hunter2"), "password echoed: {line}");
}
