//! A fork that activates while the cluster runs: a genesis that schedules
//! Osaka at a chosen instant (Prague from genesis), and what the tests read
//! to check the boundary (the stored blocks' version, term and commit time,
//! the P256VERIFY precompile that only Osaka has).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{genesis, rpc, El, Postgres, TestDir};

/// Seconds since the Unix epoch: block time's unit.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// Milliseconds since the Unix epoch (PostgreSQL's `created_at` is compared with it).
pub fn unix_now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Writes `<dir>/genesis-osaka-at-<osaka_time>.json`: scripts/genesis/osaka.json
/// with `osakaTime` moved to `osaka_time`, or removed for `None` (Osaka
/// not scheduled; Osaka's blob schedule stays, so a later
/// `GETH_OVERRIDE_OSAKA` can schedule it). Prague stays at 0, so blocks
/// before the fork are Prague ones; the genesis block's own timestamp stays
/// 0, which geth accepts with a later fork. Every execution client of the
/// test must start from this one file. Returns its path, which `El::start`
/// and the cluster builder take in place of a genesis name.
pub fn osaka_genesis_at(dir: &TestDir, osaka_time: Option<u64>) -> String {
    let text = std::fs::read_to_string(genesis("osaka")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    let name = match osaka_time {
        Some(time) => {
            config["config"]["osakaTime"] = json!(time);
            format!("genesis-osaka-at-{time}.json")
        }
        None => {
            config["config"].as_object_mut().unwrap().remove("osakaTime");
            "genesis-osaka-unscheduled.json".to_owned()
        }
    };
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path.display().to_string()
}

/// A committed block as the cluster's database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlock {
    pub number: u64,
    pub hash: String,
    pub timestamp: u64,
    /// 4: built with engine_getPayloadV4 (Prague); 5: V5 (Osaka).
    pub payload_version: u8,
    pub term: u64,
    /// When the database stored it (`created_at`), in Unix milliseconds.
    pub committed_ms: i64,
}

/// Every committed block, in order.
pub fn committed_blocks(postgres: &Postgres) -> Vec<CommittedBlock> {
    let mut client = postgres.client();
    let sql = "SELECT block_number, block_hash, timestamp, payload_version, term, \
               (extract(epoch FROM created_at) * 1000)::bigint FROM payloads ORDER BY block_number";
    client
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|row| CommittedBlock {
            number: u64::try_from(row.get::<_, i64>(0)).unwrap(),
            hash: row.get(1),
            timestamp: u64::try_from(row.get::<_, i64>(2)).unwrap(),
            payload_version: u8::try_from(row.get::<_, i16>(3)).unwrap(),
            term: u64::try_from(row.get::<_, i64>(4)).unwrap(),
            committed_ms: row.get(5),
        })
        .collect()
}

/// The committed head's timestamp (0 before the first block).
pub fn head_timestamp(postgres: &Postgres) -> u64 {
    let mut client = postgres.client();
    let row = client.query_one("SELECT COALESCE(MAX(timestamp), 0) FROM payloads", &[]).unwrap();
    u64::try_from(row.get::<_, i64>(0)).unwrap()
}

/// A valid P-256 signature check input for EIP-7951's precompile at 0x100
/// (sha256("clnode osaka"), r, s, x, y; made with Node's crypto): Osaka's
/// P256VERIFY answers 1 (32 bytes); before Osaka 0x100 is an empty account
/// and the call answers nothing.
const P256_VALID_INPUT: &str = "0xfe5f54b20fe96d24e155f33876ef3988b34fe19eb24d9220922e02808f77256c\
883f68d3608d6c52ef4c62abe0c63317744cb9aa77590e70c4ad8e0f3027e79e882ee2395279efa6422b4797443619390fa\
339aaeaa2d6642f1354954ef3b584cdd5dcc13ca0e306a0923a7a06dd3fb711e4a24b9fa8b851cd931a10e081feffdbbbfa\
43019de8c2da36da5ccf6790e112bcf44a1b7c2a5babf7eab5be4ade37";

/// What P256VERIFY answers on `el` in the state of block `number`.
pub fn p256verify_at(el: &El, number: u64) -> String {
    let call = json!({"to": "0x0000000000000000000000000000000000000100", "data": P256_VALID_INPUT, "gas": "0x100000"});
    let answer = rpc(&el.rpc_url(), "eth_call", json!([call, format!("0x{number:x}")]))
        .unwrap_or_else(|e| panic!("{}: eth_call at {number}: {e}", el.proc.name));
    answer.as_str().unwrap().to_owned()
}

/// P256VERIFY's answer for a valid signature.
pub const P256_VALID: &str = "0x0000000000000000000000000000000000000000000000000000000000000001";

/// Whether `path` is a genesis file rather than a name in scripts/genesis.
pub fn is_genesis_file(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|ext| ext == "json")
}
