//! Engine API values: the wire JSON kept apart from what clnode reads of it.
//!
//! The execution payload travels as the client's own JSON object, unchanged,
//! so fields a client adds (EthereumJS's `requestsHash`) round-trip through
//! PostgreSQL and the sync API. [`ExecutionPayload`] validates the handful of
//! fields clnode reads once, at construction, and offers typed accessors.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::codec::{decode_data, decode_quantity, encode_quantity, Hash32};

/// Blob versioned hash version byte (EIP-4844 `VERSIONED_HASH_VERSION_KZG`).
const VERSIONED_HASH_VERSION_KZG: u8 = 0x01;
/// Size of a KZG commitment in bytes.
const KZG_COMMITMENT_LEN_BYTES: usize = 48;

/// An execution payload as the client sent it, with its key fields checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionPayload {
    json: Value,
    number: u64,
    hash: Hash32,
    parent_hash: Hash32,
    timestamp: u64,
    transaction_count: usize,
}

impl ExecutionPayload {
    /// Checks the fields clnode relies on; anything else passes through.
    pub fn from_json(json: Value) -> Result<ExecutionPayload, String> {
        let object = json.as_object().ok_or("execution payload is not a JSON object")?;
        let number = quantity_field(object, "blockNumber")?;
        let hash = hash_field(object, "blockHash")?;
        let parent_hash = hash_field(object, "parentHash")?;
        let timestamp = quantity_field(object, "timestamp")?;
        let transactions = object
            .get("transactions")
            .and_then(Value::as_array)
            .ok_or("execution payload has no transactions array")?;
        for (index, tx) in transactions.iter().enumerate() {
            let text = tx.as_str().ok_or_else(|| format!("transaction {index} is not a string"))?;
            decode_data(text).map_err(|e| format!("transaction {index}: {e}"))?;
        }
        let transaction_count = transactions.len();
        Ok(ExecutionPayload { json, number, hash, parent_hash, timestamp, transaction_count })
    }

    pub fn json(&self) -> &Value {
        &self.json
    }
    pub fn number(&self) -> u64 {
        self.number
    }
    pub fn hash(&self) -> Hash32 {
        self.hash
    }
    pub fn parent_hash(&self) -> Hash32 {
        self.parent_hash
    }
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }
    pub fn transaction_count(&self) -> usize {
        self.transaction_count
    }
}

fn quantity_field(object: &Map<String, Value>, name: &str) -> Result<u64, String> {
    let text =
        object.get(name).and_then(Value::as_str).ok_or_else(|| format!("field {name} is missing or not a string"))?;
    decode_quantity(text).map_err(|e| format!("field {name}: {e}"))
}

fn hash_field(object: &Map<String, Value>, name: &str) -> Result<Hash32, String> {
    let text =
        object.get(name).and_then(Value::as_str).ok_or_else(|| format!("field {name} is missing or not a string"))?;
    Hash32::parse(text).map_err(|e| format!("field {name}: {e}"))
}

/// `PayloadStatusV1`, normalised. Only `Valid` means the block was executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadStatus {
    Valid,
    Invalid {
        latest_valid_hash: Option<Hash32>,
        validation_error: Option<String>,
    },
    /// Not executed: the client lacks the parent or the state.
    Syncing,
    /// Not executed: the client accepted it on a side branch without executing.
    Accepted,
}

impl PayloadStatus {
    pub fn from_json(value: &Value) -> Result<PayloadStatus, String> {
        let status = value.get("status").and_then(Value::as_str).ok_or("payload status has no status field")?;
        match status {
            "VALID" => Ok(PayloadStatus::Valid),
            // INVALID_BLOCK_HASH is the pre-Shanghai spelling of the same verdict.
            "INVALID" | "INVALID_BLOCK_HASH" => {
                let latest_valid_hash = match value.get("latestValidHash") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(text)) => {
                        Some(Hash32::parse(text).map_err(|e| format!("latestValidHash: {e}"))?)
                    }
                    Some(other) => return Err(format!("latestValidHash is not a string: {other}")),
                };
                let validation_error = value.get("validationError").and_then(Value::as_str).map(str::to_owned);
                Ok(PayloadStatus::Invalid { latest_valid_hash, validation_error })
            }
            "SYNCING" => Ok(PayloadStatus::Syncing),
            "ACCEPTED" => Ok(PayloadStatus::Accepted),
            other => Err(format!("unknown payload status {other:?}")),
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, PayloadStatus::Valid)
    }

    pub fn label(&self) -> &'static str {
        match self {
            PayloadStatus::Valid => "VALID",
            PayloadStatus::Invalid { .. } => "INVALID",
            PayloadStatus::Syncing => "SYNCING",
            PayloadStatus::Accepted => "ACCEPTED",
        }
    }
}

impl std::fmt::Display for PayloadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadStatus::Invalid { latest_valid_hash, validation_error } => write!(
                f,
                "INVALID (latestValidHash {}, error {})",
                latest_valid_hash.map(|h| h.to_hex()).unwrap_or_else(|| "null".into()),
                validation_error.as_deref().unwrap_or("none")
            ),
            other => f.write_str(other.label()),
        }
    }
}

/// `ForkchoiceStateV1`. clnode has no separate safety levels: a committed
/// block is final, so head, safe and finalized are the same hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkchoiceState {
    pub head: Hash32,
    pub safe: Hash32,
    pub finalized: Hash32,
}

impl ForkchoiceState {
    pub fn all_at(head: Hash32) -> ForkchoiceState {
        ForkchoiceState { head, safe: head, finalized: head }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "headBlockHash": self.head.to_hex(),
            "safeBlockHash": self.safe.to_hex(),
            "finalizedBlockHash": self.finalized.to_hex(),
        })
    }
}

/// `PayloadAttributesV3`, with no withdrawals (clnode has no beacon chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadAttributes {
    pub timestamp: u64,
    pub prev_randao: Hash32,
    pub suggested_fee_recipient: [u8; 20],
    pub parent_beacon_block_root: Hash32,
}

impl PayloadAttributes {
    pub fn to_json(&self) -> Value {
        json!({
            "timestamp": encode_quantity(self.timestamp),
            "prevRandao": self.prev_randao.to_hex(),
            "suggestedFeeRecipient": crate::codec::encode_data(&self.suggested_fee_recipient),
            "withdrawals": [],
            "parentBeaconBlockRoot": self.parent_beacon_block_root.to_hex(),
        })
    }
}

/// What `forkchoiceUpdated` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkchoiceUpdated {
    pub payload_status: PayloadStatus,
    pub payload_id: Option<String>,
}

/// What `getPayloadV4`/`V5` answered, reduced to what a block needs for replay.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltPayload {
    pub payload: ExecutionPayload,
    pub blob_versioned_hashes: Vec<Hash32>,
    /// EIP-7685 requests, each `0x`-prefixed type byte + data, as sent.
    pub execution_requests: Vec<String>,
    /// Which `engine_getPayloadV*` produced it (4 Prague, 5 Osaka).
    pub get_payload_version: u8,
}

/// Versioned hash of a blob KZG commitment: `0x01 || sha256(commitment)[1..]`.
pub fn versioned_hash(commitment: &[u8]) -> Result<Hash32, String> {
    if commitment.len() != KZG_COMMITMENT_LEN_BYTES {
        return Err(format!("KZG commitment must be {KZG_COMMITMENT_LEN_BYTES} bytes, got {}", commitment.len()));
    }
    let mut hash: [u8; 32] = Sha256::digest(commitment).into();
    hash[0] = VERSIONED_HASH_VERSION_KZG;
    Ok(Hash32(hash))
}

/// Versioned hashes from a `blobsBundle`, in commitment order.
pub fn versioned_hashes_of_bundle(bundle: Option<&Value>) -> Result<Vec<Hash32>, String> {
    let Some(bundle) = bundle else {
        return Ok(Vec::new());
    };
    if bundle.is_null() {
        return Ok(Vec::new());
    }
    let commitments =
        bundle.get("commitments").and_then(Value::as_array).ok_or("blobsBundle has no commitments array")?;
    commitments
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let text = c.as_str().ok_or_else(|| format!("commitment {index} is not a string"))?;
            let bytes = decode_data(text).map_err(|e| format!("commitment {index}: {e}"))?;
            versioned_hash(&bytes).map_err(|e| format!("commitment {index}: {e}"))
        })
        .collect()
}

/// Execution requests as a list of DATA strings (`[]` when absent).
pub fn execution_requests_of(value: Option<&Value>) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let text = item.as_str().ok_or_else(|| format!("request {index} is not a string"))?;
                decode_data(text).map_err(|e| format!("request {index}: {e}"))?;
                Ok(text.to_owned())
            })
            .collect(),
        Some(other) => Err(format!("executionRequests is not a list: {other}")),
    }
}

/// The header fields clnode reads from `eth_getBlockBy*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub number: u64,
    pub hash: Hash32,
    pub parent_hash: Hash32,
    pub timestamp: u64,
}

impl BlockHeader {
    pub fn from_json(value: &Value) -> Result<BlockHeader, String> {
        let object = value.as_object().ok_or("block is not a JSON object")?;
        Ok(BlockHeader {
            number: quantity_field(object, "number")?,
            hash: hash_field(object, "hash")?,
            parent_hash: hash_field(object, "parentHash")?,
            timestamp: quantity_field(object, "timestamp")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_hash_of_the_empty_blob_commitment() {
        // The commitment to the all-zero blob is the compressed point at
        // infinity; its versioned hash appears throughout the 4844 test suites.
        let mut commitment = vec![0u8; 48];
        commitment[0] = 0xc0;
        assert_eq!(
            versioned_hash(&commitment).unwrap().to_hex(),
            "0x010657f37554c781402a22917dee2f75def7ab966d7b770905398eba3c444014"
        );
        assert!(versioned_hash(&commitment[..47]).is_err());
    }

    #[test]
    fn bundle_hashes_follow_commitment_order_and_absent_bundle_is_empty() {
        let zero = format!("0xc0{}", "00".repeat(47));
        let other = format!("0x{}", "ab".repeat(48));
        let bundle = json!({"commitments": [zero, other], "proofs": [], "blobs": []});
        let hashes = versioned_hashes_of_bundle(Some(&bundle)).unwrap();
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[0].to_hex(), "0x010657f37554c781402a22917dee2f75def7ab966d7b770905398eba3c444014");
        assert_eq!(hashes[1].0[0], 0x01);
        assert_eq!(versioned_hashes_of_bundle(None).unwrap(), vec![]);
        assert_eq!(versioned_hashes_of_bundle(Some(&Value::Null)).unwrap(), vec![]);
        assert!(versioned_hashes_of_bundle(Some(&json!({"commitments": ["0x00"]}))).is_err());
    }

    #[test]
    fn status_normalisation() {
        assert_eq!(PayloadStatus::from_json(&json!({"status": "VALID"})).unwrap(), PayloadStatus::Valid);
        assert_eq!(
            PayloadStatus::from_json(&json!({"status": "SYNCING", "latestValidHash": null})).unwrap(),
            PayloadStatus::Syncing
        );
        assert_eq!(PayloadStatus::from_json(&json!({"status": "ACCEPTED"})).unwrap(), PayloadStatus::Accepted);
        let lvh = format!("0x{}", "12".repeat(32));
        assert_eq!(
            PayloadStatus::from_json(
                &json!({"status": "INVALID", "latestValidHash": lvh, "validationError": "bad root"})
            )
            .unwrap(),
            PayloadStatus::Invalid {
                latest_valid_hash: Some(Hash32([0x12; 32])),
                validation_error: Some("bad root".into())
            }
        );
        assert_eq!(
            PayloadStatus::from_json(&json!({"status": "INVALID_BLOCK_HASH"})).unwrap(),
            PayloadStatus::Invalid { latest_valid_hash: None, validation_error: None }
        );
        assert!(PayloadStatus::from_json(&json!({"status": "MAYBE"})).is_err());
        assert!(PayloadStatus::from_json(&json!({})).is_err());
        assert!(PayloadStatus::from_json(&json!({"status": "INVALID", "latestValidHash": "0x12"})).is_err());
        assert!(!PayloadStatus::Syncing.is_valid());
        assert!(!PayloadStatus::Accepted.is_valid());
    }

    fn sample_payload() -> Value {
        json!({
            "blockNumber": "0x2a",
            "blockHash": format!("0x{}", "aa".repeat(32)),
            "parentHash": format!("0x{}", "bb".repeat(32)),
            "timestamp": "0x6553f100",
            "transactions": ["0x02f870", "0x02f871"],
            "requestsHash": "0x1234",
        })
    }

    #[test]
    fn payload_keeps_unknown_fields_and_reads_typed_ones() {
        let payload = ExecutionPayload::from_json(sample_payload()).unwrap();
        assert_eq!(payload.number(), 42);
        assert_eq!(payload.hash(), Hash32([0xaa; 32]));
        assert_eq!(payload.parent_hash(), Hash32([0xbb; 32]));
        assert_eq!(payload.timestamp(), 0x6553f100);
        assert_eq!(payload.transaction_count(), 2);
        assert_eq!(payload.json()["requestsHash"], "0x1234");
    }

    #[test]
    fn payload_refuses_missing_or_malformed_fields() {
        for (field, bad) in [
            ("blockNumber", json!("0x02a")),
            ("blockHash", json!("0xaa")),
            ("parentHash", json!(7)),
            ("timestamp", Value::Null),
            ("transactions", json!(["nothex"])),
        ] {
            let mut value = sample_payload();
            value[field] = bad;
            assert!(ExecutionPayload::from_json(value).is_err(), "{field} accepted");
        }
        assert!(ExecutionPayload::from_json(json!([1, 2])).is_err());
    }

    #[test]
    fn attributes_send_empty_withdrawals_not_null() {
        let attrs = PayloadAttributes {
            timestamp: 16,
            prev_randao: Hash32::ZERO,
            suggested_fee_recipient: [0x11; 20],
            parent_beacon_block_root: Hash32([1; 32]),
        };
        let value = attrs.to_json();
        assert_eq!(value["withdrawals"], json!([]));
        assert_eq!(value["timestamp"], "0x10");
        assert_eq!(value["suggestedFeeRecipient"], format!("0x{}", "11".repeat(20)));
    }

    #[test]
    fn execution_requests_are_validated_and_default_to_empty() {
        assert_eq!(execution_requests_of(None).unwrap(), Vec::<String>::new());
        assert_eq!(execution_requests_of(Some(&json!(["0x01ab"]))).unwrap(), vec!["0x01ab".to_owned()]);
        assert!(execution_requests_of(Some(&json!(["01ab"]))).is_err());
        assert!(execution_requests_of(Some(&json!({}))).is_err());
    }
}
