//! Execution requests (EIP-7685) end to end on real processes: a deposit
//! through the genesis's deposit contract (EIP-6110), a withdrawal request
//! (EIP-7002) and a consolidation request (EIP-7251) through their system
//! contracts, each sent with scripts/node/requests.mjs, then all three at
//! once. Each lands in a committed block whose record carries exactly that
//! request (decoded and held to what was sent); the record's
//! `requests_data` round-trips byte for byte and equals what the leader's
//! getPayload answered (seen through `EngineRelay`); the standby's geth and
//! every member's client hold the block with the same hash, and each
//! member stores and serves the same `requests_data`.

// Test code: a failed unwrap, expect or panic is a failed test; the
// shared harness casts measured figures, checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use clnode::block::BlockRecord;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use support::engine_relay::EngineRelay;
use support::*;

/// EIP-7685 request types and the size of one request of each.
const DEPOSIT: u8 = 0x00;
const WITHDRAWAL: u8 = 0x01;
const CONSOLIDATION: u8 = 0x02;
const DEPOSIT_LEN: usize = 48 + 32 + 8 + 96 + 8;
const WITHDRAWAL_LEN: usize = 20 + 48 + 8;
const CONSOLIDATION_LEN: usize = 20 + 48 + 48;

/// Attempts at one block holding all three kinds (the leader may build
/// between two arrivals of one batch).
const ALL_AT_ONCE_ATTEMPTS: usize = 5;

/// Two leader-mode nodes on geth, each reaching its geth through a relay
/// that keeps the getPayload answers. Fields drop in order: the nodes
/// before the relays they talk through.
struct RequestsCluster {
    cluster: Cluster,
    relays: Vec<EngineRelay>,
}

impl RequestsCluster {
    fn start(name: &str, genesis: &str) -> RequestsCluster {
        let mut cluster = Cluster::builder(name).leaders(0).el(ElKind::Geth, genesis).start();
        let mut relays = Vec::new();
        for i in 0..2 {
            let el = El::start(&cluster.dir, &format!("geth{i}"), ElKind::Geth, genesis);
            let relay = EngineRelay::start(&el);
            let relay_url = relay.url();
            let mut flags = FAST_LEADER.to_vec();
            flags.extend(["--eth-client-url", relay_url.as_str()]);
            let node =
                Node::leader(&cluster.dir, &format!("leader-{i}"), &el, &cluster.postgres, &cluster.redis, &flags);
            cluster.els.push(el);
            cluster.nodes.push(node);
            relays.push(relay);
        }
        cluster.wait_for_leader(Duration::from_secs(30));
        RequestsCluster { cluster, relays }
    }

    /// The `executionRequests` the leader's getPayload answered for `block_hash`.
    fn built_requests(&self, block_hash: &str) -> Vec<String> {
        let built = self
            .relays
            .iter()
            .flat_map(EngineRelay::built_payloads)
            .find(|answer| answer["executionPayload"]["blockHash"] == block_hash)
            .unwrap_or_else(|| panic!("no getPayload answer for {block_hash}"));
        serde_json::from_value(built["executionRequests"].clone()).unwrap()
    }
}

/// Runs `program` with `args` (in `dir`) for at most 60 s; its stdout.
fn run(program: &Path, args: &[&str], dir: &Path) -> String {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let what = format!("{} {}", program.display(), args.join(" "));
    let (status, out, err) = wait_with_output(child, Duration::from_secs(60), &what);
    assert!(status.success(), "{what} failed: {err}");
    out
}

/// Sends one transaction per kind with requests.mjs; returns its output lines.
fn send_requests(rpc_url: &str, kinds: &[&str]) -> Vec<Value> {
    let tool = script("node/requests.mjs").display().to_string();
    let kinds_arg = kinds.join(",");
    let args = [tool.as_str(), "--rpc", rpc_url, "--kinds", &kinds_arg, "--key", keys::key(&keys::SEND_KEYS, 0)];
    let out = run(Path::new("node"), &args, Path::new(REPO));
    let sent: Vec<Value> = out.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(sent.len(), kinds.len(), "one line per request");
    sent
}

fn hex_bytes(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a string: {value}"));
    decode_hex(text)
}

fn decode_hex(text: &str) -> Vec<u8> {
    let digits = text.strip_prefix("0x").unwrap_or_else(|| panic!("no 0x: {text}"));
    assert!(digits.len().is_multiple_of(2), "odd hex: {text}");
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{digits}")
}

fn le64(text: &Value) -> [u8; 8] {
    text.as_str().unwrap().parse::<u64>().unwrap().to_le_bytes()
}

/// The request one line of requests.mjs output must produce, encoded here
/// from its fields as the EIPs lay it out (amounts and the deposit index
/// little-endian), `deposit_index` the one this test expects.
fn expected_request(sent: &Value, deposit_index: u64) -> (u8, Vec<u8>) {
    let field = |name: &str| hex_bytes(&sent[name]);
    match sent["kind"].as_str().unwrap() {
        "deposit" => {
            let mut data = field("pubkey");
            data.extend(field("withdrawal_credentials"));
            data.extend(le64(&sent["amount_gwei"]));
            data.extend(field("signature"));
            data.extend(deposit_index.to_le_bytes());
            (DEPOSIT, data)
        }
        "withdrawal" => {
            let mut data = field("source_address");
            data.extend(field("validator_pubkey"));
            data.extend(le64(&sent["amount_gwei"]));
            (WITHDRAWAL, data)
        }
        "consolidation" => {
            let mut data = field("source_address");
            data.extend(field("source_pubkey"));
            data.extend(field("target_pubkey"));
            (CONSOLIDATION, data)
        }
        other => panic!("unknown kind {other}"),
    }
}

/// A block's requests list decoded: (type, data) in order, held to
/// EIP-7685 (ascending types, none empty) and to the size of each type's
/// requests.
fn decode_requests(list: &[String]) -> Vec<(u8, Vec<u8>)> {
    let decoded: Vec<(u8, Vec<u8>)> = list
        .iter()
        .map(|text| {
            let bytes = decode_hex(text);
            assert_eq!(&encode_hex(&bytes), text, "a request is not lower-case hex");
            let (kind, data) = bytes.split_first().unwrap_or_else(|| panic!("an empty request: {text}"));
            let size = match *kind {
                DEPOSIT => DEPOSIT_LEN,
                WITHDRAWAL => WITHDRAWAL_LEN,
                CONSOLIDATION => CONSOLIDATION_LEN,
                other => panic!("unknown request type {other}"),
            };
            assert!(!data.is_empty() && data.len() % size == 0, "type {kind}: {} bytes", data.len());
            (*kind, data.to_vec())
        })
        .collect();
    assert!(decoded.windows(2).all(|w| w[0].0 < w[1].0), "request types not ascending: {list:?}");
    decoded
}

/// The record's `requests_data` decoded; asserts it round-trips byte for
/// byte (base64, JSON, and clnode's own record type).
fn requests_of_record(wire: &Value) -> Vec<String> {
    let text = wire["requests_data"].as_str().unwrap();
    let json_bytes = BASE64.decode(text).unwrap();
    let list: Vec<String> = serde_json::from_slice(&json_bytes).unwrap();
    let json_again = serde_json::to_string(&list).unwrap();
    assert_eq!(json_again.as_bytes(), json_bytes.as_slice(), "requests JSON does not round-trip");
    assert_eq!(BASE64.encode(json_again.as_bytes()), text, "requests_data does not round-trip");
    let record = BlockRecord::from_wire_json(wire).unwrap();
    assert_eq!(record.execution_requests, list);
    assert_eq!(record.to_stored().to_wire_json()["requests_data"], wire["requests_data"]);
    list
}

/// EIP-7685's commitment: sha256 of the sha256 of each request.
fn requests_hash(list: &[String]) -> String {
    let mut outer = Sha256::new();
    for request in list {
        outer.update(Sha256::digest(decode_hex(request)));
    }
    encode_hex(&outer.finalize())
}

/// The record of block `number` from a node's sync API (JSON).
fn served_record(node: &Node, number: u64) -> Value {
    let (status, page) = node.api(&format!("/blocks?after={}&limit=1", number - 1));
    assert_eq!(status, 200, "{page}");
    let record = page["blocks"][0].clone();
    assert_eq!(record["block_number"], json!(number), "{page}");
    record
}

/// (number, requests_data) of every stored block.
fn stored_requests(postgres: &Postgres) -> Vec<(i64, String)> {
    let mut client = postgres.client();
    let rows = client.query("SELECT block_number, requests_data FROM payloads ORDER BY block_number", &[]).unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

/// What the test sent and where it expects it: block number, then the
/// expected (type, data) per type in send order.
#[derive(Default)]
struct Expected {
    blocks: BTreeMap<u64, BTreeMap<u8, Vec<u8>>>,
    deposits: u64,
}

impl Expected {
    /// Sends `kinds` to the leader's geth, waits until each is in a
    /// committed block and records what that block must carry; returns the
    /// blocks they landed in.
    fn send(&mut self, rc: &RequestsCluster, kinds: &[&str]) -> Vec<u64> {
        let cluster = &rc.cluster;
        let leader = cluster.leader();
        let el = &cluster.els[leader];
        let sent = send_requests(&el.rpc_url(), kinds);
        let mut blocks = Vec::new();
        for line in &sent {
            let hash = line["hash"].as_str().unwrap();
            let block = poll(Duration::from_secs(60), Duration::from_millis(100), &format!("{hash} included"), || {
                el.receipt_block(hash)
            });
            let receipt = rpc(&el.rpc_url(), "eth_getTransactionReceipt", json!([hash])).unwrap();
            assert_eq!(receipt["status"], "0x1", "{} request reverted: {receipt}", line["kind"]);
            let index = if line["kind"] == "deposit" {
                self.deposits += 1;
                self.deposits - 1
            } else {
                0
            };
            let (kind, data) = expected_request(line, index);
            // The tool's own encoding (with its predicted index) agrees with this one.
            let tool_index = line.get("index").map_or(index, |i| i.as_str().unwrap().parse().unwrap());
            assert_eq!(hex_bytes(&line["request"]), expected_request(line, tool_index).1, "{line}");
            self.blocks.entry(block).or_default().entry(kind).or_default().extend(data);
            blocks.push(block);
        }
        // Committed: the sync API serves the last of them.
        let last = *blocks.iter().max().unwrap();
        poll(Duration::from_secs(30), Duration::from_millis(100), "committed", || {
            (cluster.head().0 >= last).then_some(())
        });
        blocks
    }

    /// Every block holding requests: the served record carries exactly the
    /// expected requests, round-trips, equals what getPayload answered and
    /// what the block header commits to.
    fn check_leader_side(&self, rc: &RequestsCluster) {
        let cluster = &rc.cluster;
        let leader = cluster.leader();
        for (&number, kinds) in &self.blocks {
            let record = served_record(&cluster.nodes[leader], number);
            let list = requests_of_record(&record);
            let decoded = decode_requests(&list);
            let want: Vec<(u8, Vec<u8>)> = kinds.iter().map(|(k, d)| (*k, d.clone())).collect();
            assert_eq!(decoded, want, "block {number}: the requests are not the ones sent");
            let hash = record["block_hash"].as_str().unwrap();
            assert_eq!(rc.built_requests(hash), list, "block {number}: not what getPayload answered");
            let header =
                rpc(&cluster.els[leader].rpc_url(), "eth_getBlockByNumber", json!([format!("0x{number:x}"), false]))
                    .unwrap();
            assert_eq!(header["hash"], hash);
            assert_eq!(header["requestsHash"], requests_hash(&list), "block {number}: requestsHash");
            eprintln!("block {number}: {} request list(s), {:?}", list.len(), kinds.keys().collect::<Vec<_>>());
        }
    }

    /// The standby's geth and each member's client hold every request
    /// block with the leader's hash; each member stores and serves the
    /// leader's `requests_data` byte for byte.
    fn check_replicas(&self, rc: &RequestsCluster, members: &[&Member]) {
        let cluster = &rc.cluster;
        let head = cluster.head();
        let leader = cluster.leader();
        let standby = &cluster.els[1 - leader];
        poll(Duration::from_secs(60), Duration::from_millis(100), "the standby's geth at the head", || {
            (standby.head().0 >= head.0).then_some(())
        });
        for member in members {
            member.wait_caught_up(&head, Duration::from_secs(300));
            member.assert_same_chain(cluster);
        }
        let leader_stored = stored_requests(&cluster.postgres);
        for &number in self.blocks.keys() {
            let hash = cluster.els[leader].block_hash(number).unwrap();
            assert_eq!(standby.block_hash(number).as_ref(), Some(&hash), "standby's geth at {number}");
            let leader_record = served_record(&cluster.nodes[leader], number);
            for member in members {
                assert_eq!(member.el.block_hash(number).as_ref(), Some(&hash), "{} at {number}", member.node.id);
                let record = served_record(&member.node, number);
                assert_eq!(record["requests_data"], leader_record["requests_data"], "{} serves", member.node.id);
                requests_of_record(&record);
            }
        }
        for member in members {
            let stored = stored_requests(&member.postgres);
            assert_eq!(stored, leader_stored[..stored.len()], "{} stored other requests_data", member.node.id);
        }
    }
}

/// Each kind alone, then all three in one block.
fn each_kind_then_all_at_once(rc: &RequestsCluster) -> Expected {
    let mut expected = Expected::default();
    rc.cluster.grow_to(2);
    for kind in ["deposit", "withdrawal", "consolidation"] {
        let blocks = expected.send(rc, &[kind]);
        assert_eq!(expected.blocks[&blocks[0]].len(), 1, "{kind}: other requests in block {}", blocks[0]);
    }
    let all = ["deposit", "withdrawal", "consolidation"];
    let one_block = (0..ALL_AT_ONCE_ATTEMPTS).find_map(|attempt| {
        let blocks = expected.send(rc, &all);
        eprintln!("all three at once, attempt {attempt}: blocks {blocks:?}");
        blocks.windows(2).all(|w| w[0] == w[1]).then(|| blocks[0])
    });
    let block = one_block.unwrap_or_else(|| panic!("no block held all three kinds in {ALL_AT_ONCE_ATTEMPTS} tries"));
    assert_eq!(expected.blocks[&block].keys().copied().collect::<Vec<_>>(), [DEPOSIT, WITHDRAWAL, CONSOLIDATION]);
    expected.check_leader_side(rc);
    expected
}

const DEPOSIT_CONTRACT: &str = "0x00000000219ab540356cBB839Cbe05303d7705Fa";

/// An alloc entry by address, whatever the case of its hex digits.
fn account<'a>(alloc: &'a Value, address: &str) -> &'a Value {
    let found = alloc.as_object().unwrap().iter().find(|(a, _)| a.eq_ignore_ascii_case(address));
    found.unwrap_or_else(|| panic!("no account {address}")).1
}

/// Both genesis files hold the request contracts exactly as the sources
/// docs/OPERATIONS.md names: the four system contracts as geth v1.16.8's
/// developer genesis has them, the deposit contract (code and storage) as
/// Hoodi's genesis in @ethereumjs/genesis has it, its storage the zero
/// hashes of the deposit tree.
#[test]
fn the_genesis_files_hold_the_request_contracts_as_geth_and_hoodi_have_them() {
    let geth = std::env::var("GETH_BIN").unwrap_or_else(|_| format!("{REPO}/.tools/bin/geth"));
    let dev: Value = serde_json::from_str(&run(Path::new(&geth), &["--dev", "dumpgenesis"], Path::new(REPO))).unwrap();
    let hoodi_js = "import { getGenesis } from '@ethereumjs/genesis'; \
                    console.log(JSON.stringify(getGenesis(560048)['0x00000000219ab540356cbb839cbe05303d7705fa']))";
    let hoodi: Value = serde_json::from_str(&run(
        Path::new("node"),
        &["--input-type=module", "-e", hoodi_js],
        &Path::new(REPO).join("scripts/node"),
    ))
    .unwrap();
    // [balance, code, [[slot, value], ..], nonce]
    let hoodi_storage: BTreeMap<String, String> = hoodi[2]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (pair[0].as_str().unwrap().to_owned(), pair[1].as_str().unwrap().to_owned()))
        .collect();
    let mut zero_hashes = vec![[0u8; 32]];
    for _ in 0..31 {
        let last = zero_hashes.last().unwrap();
        let next: [u8; 32] = Sha256::new().chain_update(last).chain_update(last).finalize().into();
        zero_hashes.push(next);
    }
    // zero_hashes[i] at slot 33 + i (after branch[32] and deposit_count); zero_hashes[0] = 0 is not stored.
    let tree: BTreeMap<String, String> =
        (1..32).map(|i| (format!("0x{:064x}", 33 + i), encode_hex(&zero_hashes[i]))).collect();
    assert_eq!(hoodi_storage, tree, "Hoodi's deposit contract storage is the zero hashes");
    let mut allocs = Vec::new();
    for name in ["prague", "osaka"] {
        let file: Value = serde_json::from_str(&std::fs::read_to_string(genesis(name)).unwrap()).unwrap();
        assert_eq!(file["config"]["depositContractAddress"], DEPOSIT_CONTRACT, "{name}");
        let alloc = &file["alloc"];
        let system: Vec<(&String, &Value)> =
            dev["alloc"].as_object().unwrap().iter().filter(|(_, a)| a.get("code").is_some()).collect();
        assert_eq!(system.len(), 4, "geth's developer genesis: {system:?}");
        for (address, want) in system {
            let have = account(alloc, &format!("0x{}", address.trim_start_matches("0x")));
            let code = |a: &Value| a["code"].as_str().unwrap().to_ascii_lowercase();
            assert_eq!(code(have), code(want), "{name}: code at {address}");
            assert_eq!(have["nonce"], want["nonce"], "{name}: nonce at {address}");
        }
        let deposit = account(alloc, DEPOSIT_CONTRACT);
        assert_eq!(deposit["code"], hoodi[1], "{name}: the deposit contract's code");
        let storage: BTreeMap<String, String> =
            serde_json::from_value(deposit["storage"].clone()).unwrap_or_else(|e| panic!("{name}: storage: {e}"));
        assert_eq!(storage, tree, "{name}: the deposit contract's storage");
        allocs.push(alloc.clone());
    }
    assert_eq!(allocs[0], allocs[1], "the two genesis files differ in alloc");
}

#[test]
fn requests_on_prague_are_committed_served_and_replayed_by_geth_and_ethereumjs_members() {
    let rc = RequestsCluster::start("requests-prague", "prague");
    let sync: Vec<String> = rc.cluster.nodes.iter().map(Node::api_url).collect();
    let geth_member = Member::start(&rc.cluster.dir, "member-geth", ElKind::Geth, "prague", &sync, &[]);
    let ejs_member = Member::start(&rc.cluster.dir, "member-ejs", ElKind::EthereumJs, "prague", &sync, &[]);
    let expected = each_kind_then_all_at_once(&rc);
    expected.check_replicas(&rc, &[&geth_member, &ejs_member]);
}

#[test]
fn requests_on_osaka_are_committed_served_and_replayed_by_a_geth_member() {
    let rc = RequestsCluster::start("requests-osaka", "osaka");
    let sync: Vec<String> = rc.cluster.nodes.iter().map(Node::api_url).collect();
    let member = Member::start(&rc.cluster.dir, "member-geth", ElKind::Geth, "osaka", &sync, &[]);
    let expected = each_kind_then_all_at_once(&rc);
    expected.check_replicas(&rc, &[&member]);
}
