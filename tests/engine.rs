//! The Engine API client against real execution clients: geth (Osaka and
//! Prague) and EthereumJS (Prague), including cross-client replay.

// Test code: a failed unwrap, expect or panic is a failed test, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::time::Duration;

use clnode::codec::Hash32;
use clnode::engine::{BuiltPayload, EngineClient, EngineErrorKind, ForkchoiceState, JwtSecret, PayloadAttributes};
use support::{send_transactions, El, ElKind, TestDir};

/// The chain position a test driver builds on.
#[derive(Clone, Copy)]
struct Tip {
    hash: Hash32,
    timestamp: u64,
}

fn genesis_tip(engine: &EngineClient) -> Tip {
    let genesis = engine.block_by_number(clnode::engine::BlockTag::Number(0)).unwrap().unwrap();
    Tip { hash: genesis.hash, timestamp: genesis.timestamp }
}

/// forkchoiceUpdated with attributes, a wait for the full build, getPayload.
fn build(engine: &EngineClient, tip: Tip, attempt: u8, build_wait: Duration) -> BuiltPayload {
    let attributes = PayloadAttributes {
        timestamp: tip.timestamp + 1,
        prev_randao: Hash32([attempt; 32]),
        suggested_fee_recipient: [0x42; 20],
        parent_beacon_block_root: tip.hash,
    };
    let updated = engine.forkchoice_updated(&ForkchoiceState::all_at(tip.hash), Some(&attributes)).unwrap();
    assert!(updated.payload_status.is_valid(), "fcu answered {}", updated.payload_status);
    let payload_id = updated.payload_id.expect("a payload id");
    std::thread::sleep(build_wait);
    engine.get_payload(&payload_id, attributes.timestamp).unwrap()
}

/// newPayload (must be VALID) then forkchoiceUpdated to it.
fn import(engine: &EngineClient, built: &BuiltPayload, parent: Tip) -> Tip {
    let status = engine
        .new_payload(&built.payload, &built.blob_versioned_hashes, &parent.hash, &built.execution_requests)
        .unwrap();
    assert!(status.is_valid(), "newPayload on {} answered {status}", engine.url());
    let updated = engine.forkchoice_updated(&ForkchoiceState::all_at(built.payload.hash()), None).unwrap();
    assert!(updated.payload_status.is_valid(), "fcu answered {}", updated.payload_status);
    Tip { hash: built.payload.hash(), timestamp: built.payload.timestamp() }
}

/// Builds `blocks` blocks, each after sending `txs_per_block` transactions,
/// and checks each block carries them.
fn drive_chain(el: &El, blocks: u64, txs_per_block: usize, expected_version: u8, build_wait: Duration) {
    let engine = el.engine();
    let mut tip = genesis_tip(&engine);
    let mut sent = Vec::new();
    for number in 1..=blocks {
        let hashes = send_transactions(&el.rpc_url(), txs_per_block, 0);
        let built = build(&engine, tip, number as u8, build_wait);
        assert_eq!(built.payload.number(), number);
        assert_eq!(built.payload.parent_hash(), tip.hash);
        assert_eq!(built.get_payload_version, expected_version, "getPayload version for this fork");
        assert_eq!(built.payload.transaction_count(), txs_per_block, "block {number} lacks the sent transactions");
        tip = import(&engine, &built, tip);
        sent.extend(hashes);
    }
    assert_eq!(el.head(), (blocks, tip.hash.to_hex()));
    for hash in &sent {
        assert!(el.receipt_block(hash).is_some(), "transaction {hash} not in the chain");
    }
}

#[test]
fn geth_osaka_drives_twenty_blocks_with_transactions() {
    let dir = TestDir::new("engine-geth-osaka");
    let geth = El::start(&dir, "geth", ElKind::Geth, "osaka");
    drive_chain(&geth, 20, 2, 5, Duration::from_millis(100));
}

#[test]
fn ethereumjs_prague_drives_twenty_blocks_with_transactions() {
    let dir = TestDir::new("engine-ejs-prague");
    let ejs = El::start(&dir, "ejs", ElKind::EthereumJs, "prague");
    drive_chain(&ejs, 20, 2, 4, Duration::from_millis(400));
}

#[test]
fn blocks_replay_across_geth_and_ethereumjs_with_identical_hashes() {
    let dir = TestDir::new("engine-cross");
    let geth = El::start(&dir, "geth", ElKind::Geth, "prague");
    let ejs = El::start(&dir, "ejs", ElKind::EthereumJs, "prague");
    let (geth_engine, ejs_engine) = (geth.engine(), ejs.engine());
    let mut tip = genesis_tip(&geth_engine);
    assert_eq!(tip.hash, genesis_tip(&ejs_engine).hash, "both clients must start from the same genesis");
    // Blocks 1-5 built by geth and replayed on EthereumJS, then 6-10 built
    // by EthereumJS and replayed on geth: one chain, two builders.
    for number in 1..=10u64 {
        let (builder, follower, builder_el, wait) = if number <= 5 {
            (&geth_engine, &ejs_engine, &geth, Duration::from_millis(100))
        } else {
            (&ejs_engine, &geth_engine, &ejs, Duration::from_millis(400))
        };
        send_transactions(&builder_el.rpc_url(), 2, 1);
        let built = build(builder, tip, number as u8, wait);
        assert_eq!(built.payload.transaction_count(), 2, "block {number}");
        let parent = tip;
        tip = import(builder, &built, parent);
        let replayed = import(follower, &built, parent);
        assert_eq!(replayed.hash, tip.hash);
    }
    assert_eq!(geth.head(), ejs.head(), "both clients end on the same head");
    for number in 1..=10 {
        assert_eq!(geth.block_hash(number), ejs.block_hash(number), "block {number} differs");
    }
    let account = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    assert_eq!(geth.balance(account), ejs.balance(account), "state differs");
}

#[test]
fn wrong_jwt_secret_yields_the_auth_error_with_the_clients_text() {
    let dir = TestDir::new("engine-auth");
    let geth = El::start(&dir, "geth", ElKind::Geth, "osaka");
    let wrong = JwtSecret::from_hex(&"42".repeat(32)).unwrap();
    let engine = EngineClient::new(&geth.engine_url(), wrong);
    let error = engine.exchange_capabilities().unwrap_err();
    match &error.kind {
        EngineErrorKind::Auth { status, body } => {
            assert_eq!(*status, 401);
            assert!(!body.is_empty(), "the client's own text is kept");
            assert!(error.to_string().contains(body.as_str()));
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert_eq!(error.method, "engine_exchangeCapabilities");
    assert!(error.url.contains(&geth.auth_port.to_string()));
    // The right secret works against the same client.
    let capabilities = geth.engine().exchange_capabilities().unwrap();
    assert!(capabilities.iter().any(|m| m == "engine_newPayloadV4"));
}

#[test]
fn unreachable_client_is_a_transport_error_naming_url_and_method() {
    let port = support::free_port();
    let engine = EngineClient::new(&format!("http://127.0.0.1:{port}"), JwtSecret::from_hex(&"11".repeat(32)).unwrap());
    let error = engine.chain_id().unwrap_err();
    assert!(matches!(error.kind, EngineErrorKind::Transport(_)), "{error:?}");
    assert!(error.is_unreachable());
    let text = error.to_string();
    assert!(text.contains("eth_chainId") && text.contains(&port.to_string()), "{text}");
}
