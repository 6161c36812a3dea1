//! Coming from the seed (the Go tutorial's `03-member-nodes`, which clnode
//! replaces node by node): its flags and variables are taken or refused
//! with one line, its PostgreSQL is migrated in place or refused untouched,
//! and its wire (msgpack records) is followed and served, checked against
//! tools/seedwire (a Go program of this project built on go-ethereum's
//! engine types and vmihailenco/msgpack/v5, as the seed is).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[test]
fn the_seeds_flags_and_variables_are_refused_with_one_line_naming_clnodes_equivalent() {
    let jwt = "ab".repeat(32);
    let base = ["--instance-id", "leader-1", "--jwt-secret", &jwt, "--insecure-unsigned-records"];
    let with = |more: &[&'static str]| base.iter().copied().chain(more.iter().copied()).collect::<Vec<&str>>();
    type Case<'a> = (Vec<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (
            with(&["--evm-build-delay-empty-block", "1m"]),
            &[],
            "--evm-build-delay-empty-block is the seed's flag, not clnode's: clnode commits no empty block",
        ),
        (
            with(&["--tx-pool-polling-interval", "5ms"]),
            &[],
            "--tx-pool-polling-interval is the seed's flag, not clnode's: use --idle-poll-interval",
        ),
        (
            with(&[]),
            &[("EVM_BUILD_DELAY_EMPTY_BLOCK", "banana")],
            "EVM_BUILD_DELAY_EMPTY_BLOCK is the seed's variable (--evm-build-delay-empty-block), not clnode's",
        ),
        (
            with(&[]),
            &[("TX_POOL_POLLING_INTERVAL", "5ms")],
            "TX_POOL_POLLING_INTERVAL is the seed's variable (--tx-pool-polling-interval), not clnode's",
        ),
        // The seed's own run line: it defaulted to a published JWT secret.
        (
            vec!["--instance-id", "leader-1", "--mode", "leader", "--health-addr", ":8080", "--api-addr", ":8090"],
            &[],
            "an Engine API secret is required: --jwt-secret-file PATH (or JWT_SECRET_FILE), the file your execution \
             client reads (geth --authrpc.jwtsecret); clnode has no built-in secret, unlike the seed",
        ),
    ];
    for (args, env, expected) in cases {
        let (code, _, stderr) = run_clnode_env(&args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?}: not one line: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
    }
}

/// The seed's table, as its store creates it (pkg/postgres/store.go).
const SEED_SCHEMA: &str = "
    CREATE TABLE payloads (
        block_number BIGINT PRIMARY KEY,
        block_hash TEXT NOT NULL UNIQUE,
        parent_hash TEXT NOT NULL,
        payload_data TEXT NOT NULL,
        requests_data TEXT NOT NULL DEFAULT '',
        timestamp BIGINT NOT NULL,
        created_at TIMESTAMPTZ DEFAULT NOW()
    );
    CREATE INDEX idx_payloads_block_hash ON payloads(block_hash);
    CREATE INDEX idx_payloads_timestamp ON payloads(timestamp);";

/// Runs tools/seedwire with `input` on stdin; returns its stdout as JSON.
fn seedwire(command: &str, input: &Value) -> Value {
    use std::io::Write as _;
    let mut child = std::process::Command::new(seedwire_binary())
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "seedwire {command}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The seed's table in `postgres`, holding the seed `records`.
fn seed_database(postgres: &Postgres, records: &[Value]) {
    let mut client = postgres.client();
    client.batch_execute(SEED_SCHEMA).unwrap();
    for record in records {
        client
            .execute(
                "INSERT INTO payloads (block_number, block_hash, parent_hash, payload_data, requests_data, timestamp) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &record["block_number"].as_i64().unwrap(),
                    &record["block_hash"].as_str().unwrap(),
                    &record["parent_hash"].as_str().unwrap(),
                    &record["payload_data"].as_str().unwrap(),
                    &record["requests_data"].as_str().unwrap(),
                    &record["timestamp"].as_i64().unwrap(),
                ],
            )
            .unwrap();
    }
}

/// Everything of a database a refused migration must leave as it was: the
/// tables, the columns of payloads, and its rows.
fn database_state(postgres: &Postgres) -> (Vec<String>, Vec<String>, Vec<Vec<String>>) {
    let mut client = postgres.client();
    let tables = client
        .query("SELECT tablename::TEXT FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let columns = client
        .query(
            "SELECT column_name::TEXT FROM information_schema.columns WHERE table_name = 'payloads' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let rows = client
        .query(
            "SELECT block_number::TEXT, block_hash, parent_hash, payload_data, requests_data, timestamp::TEXT \
             FROM payloads ORDER BY block_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (0..6).map(|i| row.get::<_, String>(i)).collect())
        .collect();
    (tables, columns, rows)
}

fn decode_base64_json(text: &str) -> Value {
    use base64::Engine as _;
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(text).unwrap()).unwrap()
}

/// Both directions of the seed's wire, and its database, on real geth and
/// PostgreSQL. A clnode leader makes a chain; tools/seedwire (Go, the
/// seed's encoding) turns its records into the seed's. Then:
/// (a) a clnode member (`--sync-wire seed`) follows them served the seed's
///     way by tools/seedwire, to identical hashes on its own geth;
/// (b) a clnode leader started on a PostgreSQL the seed made, holding those
///     rows, migrates it in place, replays it onto a fresh geth, extends it,
///     and serves it as seed records that Go decodes into the very payloads
///     (field for field) geth built, the new block accepted by a real geth;
/// (c) the same database with one broken link is refused with one line and
///     left exactly as it was.
#[test]
fn seed_records_are_followed_served_and_their_database_migrated() {
    let dir = TestDir::new("seed-wire");
    let redis = Redis::start(&dir);
    let maker_pg = Postgres::start(&dir, "maker-pg");
    let maker_el = El::start(&dir, "maker-el", ElKind::Geth, "osaka");
    let mut maker = Node::leader(&dir, "maker", &maker_el, &maker_pg, &redis, &FAST_LEADER);
    for round in 0..3 {
        let sent = send_transactions(&maker_el.rpc_url(), 5, round);
        wait_for(Duration::from_secs(30), "transfers committed", || {
            sent.iter().all(|tx| maker_el.receipt_block(tx).is_some()).then_some(())
        });
    }
    let chain = stored_chain(&maker_pg);
    let head = (chain.last().unwrap().0, chain.last().unwrap().1.clone());
    assert!(head.0 >= 3, "{chain:?}");
    let (_, body) = http_get(&format!("{}/blocks?after=0&limit=1000", maker.api_url())).unwrap();
    let clnode_page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(maker.proc.terminate(Duration::from_secs(10)), Some(0));
    let seed_page = seedwire("encode", &clnode_page);
    let seed_records = seed_page["blocks"].as_array().unwrap().clone();
    assert_eq!(seed_records.len() as u64, head.0);

    // (a) Members first: a clnode member follows a seed source.
    let seed_file = dir.join("seed-records.json");
    std::fs::write(&seed_file, seed_page.to_string()).unwrap();
    let seed_port = free_port();
    let mut seed_source = Proc::spawn(
        "seed-source",
        dir.join("seed-source.log"),
        &seedwire_binary(),
        &["serve".into(), format!("127.0.0.1:{seed_port}"), seed_file.display().to_string()],
    );
    let member = Member::start(
        &dir,
        "member",
        ElKind::Geth,
        "osaka",
        &[format!("http://127.0.0.1:{seed_port}")],
        &["--sync-wire", "seed", "--insecure-unsigned-records"],
    );
    member.wait_caught_up(&head, Duration::from_secs(60));
    for (number, hash, _) in &chain {
        assert_eq!(member.el.block_hash(*number).as_ref(), Some(hash), "member's geth at {number}");
    }
    assert_eq!(stored_chain(&member.postgres), chain, "the member stored the seed's chain");
    let health = member.node.health_json().unwrap();
    assert!(health["record_signatures"].as_str().unwrap().starts_with("UNFENCED seed source"), "{health}");
    let (_, line) = member.node.health().unwrap();
    assert_eq!(line.trim_end(), format!("OK (mode=member, lastSynced={}, totalSynced={})", head.0, head.0));
    seed_source.terminate(Duration::from_secs(5));

    // (c) A seed database with a broken link is refused and left untouched.
    let broken_pg = Postgres::start(&dir, "broken-pg");
    let mut broken = seed_records.clone();
    broken.remove(1);
    seed_database(&broken_pg, &broken);
    let before = database_state(&broken_pg);
    let successor_el = El::start(&dir, "successor-el", ElKind::Geth, "osaka");
    let jwt = successor_el.jwt.display().to_string();
    let (code, _, stderr) = run_clnode(&[
        "--instance-id",
        "refused",
        "--jwt-secret-file",
        &jwt,
        "--eth-client-url",
        &successor_el.engine_url(),
        "--postgres-url",
        &broken_pg.url(),
        "--redis-addr",
        &redis.addr(),
        "--health-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--api-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--insecure-unsigned-records",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    // Log lines before it aside, the error is one line.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("clnode:")).collect();
    assert_eq!(errors.len(), 1, "not one line: {stderr}");
    assert!(errors[0].contains("block 2 is missing (the rows jump from 1 to 3); nothing was changed"), "{stderr}");
    assert_eq!(database_state(&broken_pg), before, "a refused migration changed the database");

    // (b) Leaders first: a clnode leader on the seed's database migrates it,
    // serves the seed's wire, and extends the chain.
    let seed_pg = Postgres::start(&dir, "seed-pg");
    seed_database(&seed_pg, &seed_records);
    let successor = Node::leader(
        &dir,
        "successor",
        &successor_el,
        &seed_pg,
        &redis,
        &["--max-timestamp-lead", "60m", "--sync-wire", "seed"],
    );
    wait_for(Duration::from_secs(60), "the successor leads on the migrated chain", || {
        (successor.is_leader() && successor_el.head() == head).then_some(())
    });
    assert_eq!(stored_chain(&seed_pg), chain, "migrated in place");
    let mut client = seed_pg.client();
    let migrated = client
        .query(
            "SELECT payload_data, requests_data, parent_beacon_block_root, blob_versioned_hashes, payload_version, term \
             FROM payloads ORDER BY block_number",
            &[],
        )
        .unwrap();
    let original = clnode_page["blocks"].as_array().unwrap();
    for (row, record) in migrated.iter().zip(original) {
        let payload: Value = serde_json::from_str(&row.get::<_, String>(0)).unwrap();
        assert_eq!(payload, decode_base64_json(record["payload_data"].as_str().unwrap()), "payload, field for field");
        let requests: Value = serde_json::from_str(&row.get::<_, String>(1)).unwrap();
        assert_eq!(requests, decode_base64_json(record["requests_data"].as_str().unwrap()));
        assert_eq!(row.get::<_, String>(2), record["parent_beacon_block_root"].as_str().unwrap());
        assert_eq!(row.get::<_, String>(3), "[]");
        assert_eq!((row.get::<_, i16>(4), row.get::<_, i64>(5)), (5, 0), "the seed's payload version, no term");
    }
    // Signed with the cluster's key at the migration, so pinned members take them.
    let signatures = stored_signatures(&seed_pg);
    assert!(signatures.iter().all(Option::is_some), "{signatures:?}");
    let sent = send_transactions(&successor_el.rpc_url(), 3, 3);
    wait_for(Duration::from_secs(30), "a block on top of the seed's chain", || {
        sent.iter().all(|tx| successor_el.receipt_block(tx).is_some()).then_some(())
    });
    let extended = stored_chain(&seed_pg);
    assert!(extended.len() > chain.len() && extended[..chain.len()] == chain[..], "{extended:?}");
    let term: i64 = client
        .query_one("SELECT term FROM payloads WHERE block_number = $1", &[&i64::try_from(head.0 + 1).unwrap()])
        .unwrap()
        .get(0);
    assert!(term >= 1, "a clnode block has a term: {term}");

    // What the successor serves, decoded the seed's way (Go).
    let (_, body) = http_get(&format!("{}/blocks?after=0&limit=1000", successor.api_url())).unwrap();
    let served: Value = serde_json::from_str(&body).unwrap();
    for record in served["blocks"].as_array().unwrap() {
        let keys: Vec<&String> = record.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6, "the seed's fields only: {keys:?}");
    }
    // The seed's blocks are served byte for byte as the seed stored them
    // (clnode's msgpack is Go's).
    for (ours, go) in served["blocks"].as_array().unwrap().iter().zip(&seed_records) {
        assert_eq!(ours, go, "block {}", go["block_number"]);
    }
    let decoded = seedwire("decode", &served);
    let rows = client
        .query("SELECT payload_data, requests_data, parent_beacon_block_root FROM payloads ORDER BY block_number", &[])
        .unwrap();
    let decoded = decoded["blocks"].as_array().unwrap();
    assert_eq!(decoded.len(), rows.len());
    for (go, row) in decoded.iter().zip(&rows) {
        let payload: Value = serde_json::from_str(&row.get::<_, String>(0)).unwrap();
        assert_eq!(
            go["payload"], payload,
            "block {}: Go decodes the stored payload, field for field",
            go["block_number"]
        );
        let requests: Value = serde_json::from_str(&row.get::<_, String>(1)).unwrap();
        assert_eq!(go["execution_requests"], requests);
        assert_eq!(go["parent_beacon_block_root"], row.get::<_, String>(2));
    }
    // The member's geth (at the seed's head) accepts the successor's next
    // block as the seed's member would execute it.
    let next = &decoded[chain.len()];
    let payload = clnode::engine::ExecutionPayload::from_json(next["payload"].clone()).unwrap();
    let root = clnode::codec::Hash32::parse(next["parent_beacon_block_root"].as_str().unwrap()).unwrap();
    let requests: Vec<String> = serde_json::from_value(next["execution_requests"].clone()).unwrap();
    let status = member.el.engine().new_payload(&payload, &[], &root, &requests).unwrap();
    assert_eq!(status, clnode::engine::PayloadStatus::Valid);
}
