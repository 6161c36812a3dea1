//! Blob transactions (EIP-4844, type 3) for the tests: sent with the
//! project's tool, `scripts/node/sendblob.mjs`, and read back from a client.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::{keys, rpc, script, wait_with_output, El};

/// The tool computes every sidecar before it sends: KZG commitments and
/// proofs in JavaScript, 4-6 s per blob for Osaka's 128 cell proofs on a
/// loaded 2-core machine.
const SEND_TIMEOUT: Duration = Duration::from_secs(300);

/// One blob transaction the client accepted, as the tool printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobTx {
    pub hash: String,
    pub from: String,
    /// In blob order: what the block's record must carry for it.
    pub versioned_hashes: Vec<String>,
    /// 0 (a proof per blob, Prague) or 1 (cell proofs, Osaka).
    pub sidecar_version: u64,
}

impl BlobTx {
    fn from_line(line: &str) -> BlobTx {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("sendblob printed {line:?}: {e}"));
        BlobTx {
            hash: value["hash"].as_str().unwrap().to_owned(),
            from: value["from"].as_str().unwrap().to_owned(),
            versioned_hashes: strings(&value["versioned_hashes"]),
            sidecar_version: value["sidecar_version"].as_u64().unwrap(),
        }
    }
}

/// Sends one transaction with `blobs` blobs from each of the accounts
/// `keys::BLOB_KEYS[i]` for `i` in `key_indexes` (all prepared first, then
/// sent at once), the fork chosen by the tool from the client; panics with
/// the tool's stderr (the client's own error) if any was refused.
pub fn send_blob_transactions(rpc_url: &str, key_indexes: &[usize], blobs: usize) -> Vec<BlobTx> {
    try_send_blob_transactions(rpc_url, key_indexes, blobs).unwrap_or_else(|err| panic!("sendblob.mjs failed: {err}"))
}

/// `send_blob_transactions`, or the tool's stderr when it failed.
pub fn try_send_blob_transactions(rpc_url: &str, key_indexes: &[usize], blobs: usize) -> Result<Vec<BlobTx>, String> {
    let mut command = Command::new("node");
    command.arg(script("node/sendblob.mjs")).args(["--rpc", rpc_url, "--blobs", &blobs.to_string()]);
    for &index in key_indexes {
        command.args(["--key", keys::key(&keys::BLOB_KEYS, index)]);
    }
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (status, out, err) = wait_with_output(child, SEND_TIMEOUT, "sendblob.mjs");
    eprint!("{err}");
    if !status.success() {
        return Err(format!("{status}: {err}"));
    }
    let sent: Vec<BlobTx> = out.lines().map(BlobTx::from_line).collect();
    assert_eq!(sent.len(), key_indexes.len(), "sendblob.mjs printed {out}");
    Ok(sent)
}

/// A JSON list of strings.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|item| item.as_str().unwrap().to_owned())
        .collect()
}

/// The blob transactions of block `number` on `el`, in block order: (tx
/// hash, its versioned hashes), and the header's `blobGasUsed`.
pub fn block_blob_transactions(el: &El, number: u64) -> (Vec<(String, Vec<String>)>, u64) {
    let block = rpc(&el.rpc_url(), "eth_getBlockByNumber", json!([format!("0x{number:x}"), true])).unwrap();
    let transactions = block["transactions"].as_array().unwrap_or_else(|| panic!("block {number}: {block}"));
    let blob_txs = transactions
        .iter()
        .filter(|tx| tx["type"] == "0x3")
        .map(|tx| (tx["hash"].as_str().unwrap().to_owned(), strings(&tx["blobVersionedHashes"])))
        .collect();
    (blob_txs, super::quantity(&block["blobGasUsed"]))
}
