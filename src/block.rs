//! The committed block record: what PostgreSQL stores, what the sync API
//! serves, and what a replay needs to rebuild the exact same block.
//!
//! [`StoredBlock`] is the row as text (the API serves it without parsing the
//! payload). [`BlockRecord`] is a verified record: its number, hash, parent
//! hash and timestamp agree with the payload it carries. Nothing executes a
//! block that did not become a `BlockRecord`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::codec::{decode_data, encode_data, Hash32};
use crate::engine::jwt::hs256;
use crate::engine::types::{execution_requests_of, BuiltPayload};
use crate::engine::ExecutionPayload;
use crate::secret::{constant_time_eq, Secret};

/// The sync API field that carries a record's signature.
pub const SIGNATURE_FIELD: &str = "signature";
/// Domain separation: a signature over a record can never be mistaken for
/// an HMAC of anything else made with the same key.
const SIGNATURE_DOMAIN: &[u8] = b"clnode sync record v1";
/// The sync API field (and `payloads` column) that carries the committing
/// leader's Ed25519 signature (`signing.rs`).
pub const LEADER_SIGNATURE_FIELD: &str = "leader_signature";
/// Domain of the leader's signature: "the cluster committed this block",
/// never confusable with the HMAC's "a cluster node served this record".
const COMMITTED_DOMAIN: &[u8] = b"clnode committed block v1";

/// A row of `payloads`, as text. Hashes are lowercase `0x` hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    pub number: u64,
    pub hash: String,
    pub parent_hash: String,
    /// The execution payload JSON, as the client built it.
    pub payload_json: String,
    /// JSON list of request strings.
    pub requests_json: String,
    pub timestamp: u64,
    pub parent_beacon_block_root: String,
    /// JSON list of versioned hashes.
    pub blob_versioned_hashes_json: String,
    pub payload_version: u8,
    pub term: u64,
    /// The committing leader's signature (`0x` hex), stored and served as
    /// committed; `None` on rows committed without a signing key.
    pub leader_signature: Option<String>,
}

/// A block record that passed every check; safe to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRecord {
    pub payload: ExecutionPayload,
    pub execution_requests: Vec<String>,
    pub parent_beacon_block_root: Hash32,
    pub blob_versioned_hashes: Vec<Hash32>,
    pub payload_version: u8,
    pub term: u64,
    /// Carried unchanged from the committing leader to every store and
    /// every member downstream; checked by members (`signing.rs`), not here.
    pub leader_signature: Option<String>,
}

/// Why a record was refused. Carries the block number when it was readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub block_number: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.block_number {
            Some(n) => write!(f, "block {n}: {}", self.reason),
            None => write!(f, "block record: {}", self.reason),
        }
    }
}

impl std::error::Error for RecordError {}

impl BlockRecord {
    pub fn number(&self) -> u64 {
        self.payload.number()
    }
    pub fn hash(&self) -> Hash32 {
        self.payload.hash()
    }
    pub fn parent_hash(&self) -> Hash32 {
        self.payload.parent_hash()
    }

    pub fn from_built(built: BuiltPayload, parent_beacon_block_root: Hash32, term: u64) -> BlockRecord {
        BlockRecord {
            payload: built.payload,
            execution_requests: built.execution_requests,
            parent_beacon_block_root,
            blob_versioned_hashes: built.blob_versioned_hashes,
            payload_version: built.get_payload_version,
            term,
            leader_signature: None,
        }
    }

    pub fn to_stored(&self) -> StoredBlock {
        StoredBlock {
            number: self.number(),
            hash: self.hash().to_hex(),
            parent_hash: self.parent_hash().to_hex(),
            payload_json: self.payload.json().to_string(),
            requests_json: json!(self.execution_requests).to_string(),
            timestamp: self.payload.timestamp(),
            parent_beacon_block_root: self.parent_beacon_block_root.to_hex(),
            blob_versioned_hashes_json: json!(self
                .blob_versioned_hashes
                .iter()
                .map(Hash32::to_hex)
                .collect::<Vec<_>>())
            .to_string(),
            payload_version: self.payload_version,
            term: self.term,
            leader_signature: self.leader_signature.clone(),
        }
    }

    /// Parses and cross-checks a stored row.
    pub fn from_stored(stored: &StoredBlock) -> Result<BlockRecord, RecordError> {
        let fail = |reason: String| RecordError { block_number: Some(stored.number), reason };
        let payload_json: Value =
            serde_json::from_str(&stored.payload_json).map_err(|e| fail(format!("payload is not JSON: {e}")))?;
        let requests_json: Value =
            serde_json::from_str(&stored.requests_json).map_err(|e| fail(format!("requests are not JSON: {e}")))?;
        let hashes_json: Value = serde_json::from_str(&stored.blob_versioned_hashes_json)
            .map_err(|e| fail(format!("versioned hashes are not JSON: {e}")))?;
        BlockRecord::from_parts(
            stored.number,
            &stored.hash,
            &stored.parent_hash,
            stored.timestamp,
            payload_json,
            &requests_json,
            &stored.parent_beacon_block_root,
            &hashes_json,
            stored.payload_version,
            stored.term,
        )
        .map(|record| BlockRecord { leader_signature: stored.leader_signature.clone(), ..record })
    }

    #[allow(clippy::too_many_arguments)] // one argument per record field, all checked here
    pub(crate) fn from_parts(
        number: u64,
        hash: &str,
        parent_hash: &str,
        timestamp: u64,
        payload_json: Value,
        requests_json: &Value,
        beacon_root: &str,
        hashes_json: &Value,
        payload_version: u8,
        term: u64,
    ) -> Result<BlockRecord, RecordError> {
        let fail = |reason: String| RecordError { block_number: Some(number), reason };
        let payload = ExecutionPayload::from_json(payload_json).map_err(|e| fail(format!("payload: {e}")))?;
        if payload.number() != number {
            return Err(fail(format!("record number {number} but payload number {}", payload.number())));
        }
        let hash = Hash32::parse(hash).map_err(|e| fail(format!("block_hash: {e}")))?;
        if payload.hash() != hash {
            return Err(fail(format!("record hash {hash} but payload hash {}", payload.hash())));
        }
        let parent_hash = Hash32::parse(parent_hash).map_err(|e| fail(format!("parent_hash: {e}")))?;
        if payload.parent_hash() != parent_hash {
            return Err(fail(format!("record parent {parent_hash} but payload parent {}", payload.parent_hash())));
        }
        if payload.timestamp() != timestamp {
            return Err(fail(format!("record timestamp {timestamp} but payload timestamp {}", payload.timestamp())));
        }
        let execution_requests =
            execution_requests_of(Some(requests_json)).map_err(|e| fail(format!("requests: {e}")))?;
        let parent_beacon_block_root =
            Hash32::parse(beacon_root).map_err(|e| fail(format!("parent_beacon_block_root: {e}")))?;
        let blob_versioned_hashes = hashes_json
            .as_array()
            .ok_or_else(|| fail("blob_versioned_hashes is not a list".into()))?
            .iter()
            .map(|h| {
                h.as_str()
                    .ok_or_else(|| fail("versioned hash is not a string".into()))
                    .and_then(|t| Hash32::parse(t).map_err(|e| fail(format!("versioned hash: {e}"))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !(4..=5).contains(&payload_version) {
            return Err(fail(format!("payload_version {payload_version} is not 4 or 5")));
        }
        Ok(BlockRecord {
            payload,
            execution_requests,
            parent_beacon_block_root,
            blob_versioned_hashes,
            payload_version,
            term,
            leader_signature: None,
        })
    }

    /// Decodes one record of the sync API (see [`StoredBlock::to_wire_json`]).
    pub fn from_wire_json(value: &Value) -> Result<BlockRecord, RecordError> {
        let number = value.get("block_number").and_then(Value::as_u64);
        let fail = |reason: String| RecordError { block_number: number, reason };
        let number = number.ok_or_else(|| fail("block_number is missing or not a number".into()))?;
        let text = |name: &str| -> Result<&str, RecordError> {
            value.get(name).and_then(Value::as_str).ok_or_else(|| fail(format!("{name} is missing or not a string")))
        };
        let uint = |name: &str| -> Result<u64, RecordError> {
            value.get(name).and_then(Value::as_u64).ok_or_else(|| fail(format!("{name} is missing or not a number")))
        };
        let decode_base64_json = |name: &str| -> Result<Value, RecordError> {
            let bytes = BASE64.decode(text(name)?).map_err(|e| fail(format!("{name} is not base64: {e}")))?;
            serde_json::from_slice(&bytes).map_err(|e| fail(format!("{name} is not base64 of JSON: {e}")))
        };
        let payload_json = decode_base64_json("payload_data")?;
        let requests_json = decode_base64_json("requests_data")?;
        let hashes_json =
            value.get("blob_versioned_hashes").ok_or_else(|| fail("blob_versioned_hashes is missing".into()))?;
        let payload_version =
            u8::try_from(uint("payload_version")?).map_err(|_| fail("payload_version out of range".into()))?;
        let leader_signature = match value.get(LEADER_SIGNATURE_FIELD) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if is_signature_hex(text) => Some(text.clone()),
            Some(_) => return Err(fail(format!("{LEADER_SIGNATURE_FIELD} is not 64 bytes of 0x hex"))),
        };
        let record = BlockRecord::from_parts(
            number,
            text("block_hash")?,
            text("parent_hash")?,
            uint("timestamp")?,
            payload_json,
            &requests_json,
            text("parent_beacon_block_root")?,
            hashes_json,
            payload_version,
            uint("term")?,
        )?;
        Ok(BlockRecord { leader_signature, ..record })
    }
}

/// `0x` and 128 lowercase hex digits: what a member stores and passes on.
fn is_signature_hex(text: &str) -> bool {
    text.strip_prefix("0x")
        .is_some_and(|digits| digits.len() == 128 && digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

impl StoredBlock {
    /// The bytes of text the block holds (what it costs in memory, and in a
    /// statement that writes it).
    pub fn text_bytes(&self) -> usize {
        self.payload_json.len()
            + self.requests_json.len()
            + self.blob_versioned_hashes_json.len()
            + self.hash.len()
            + self.parent_hash.len()
            + self.parent_beacon_block_root.len()
            + self.leader_signature.as_ref().map_or(0, String::len)
    }

    /// A stored block with an empty payload, for unit tests of what holds
    /// and serves blocks (hashes and parents from the number).
    #[cfg(test)]
    pub fn for_test(number: u64) -> StoredBlock {
        StoredBlock {
            number,
            hash: format!("0x{number:064x}"),
            parent_hash: format!("0x{:064x}", number.saturating_sub(1)),
            payload_json: "{}".into(),
            requests_json: "[]".into(),
            timestamp: number,
            parent_beacon_block_root: format!("0x{:064x}", 0),
            blob_versioned_hashes_json: "[]".into(),
            payload_version: 5,
            term: 1,
            leader_signature: None,
        }
    }

    /// The sync API's JSON for one block: the seed's fields (`payload_data`
    /// and `requests_data` are base64 of the JSON the leader stored) plus the
    /// fields an exact replay needs.
    pub fn to_wire_json(&self) -> Value {
        // Always a JSON list: written by `BlockRecord::to_stored`, checked
        // when read back (store.rs), so the fallback is never taken.
        let versioned_hashes: Value =
            serde_json::from_str(&self.blob_versioned_hashes_json).unwrap_or_else(|_| Value::Array(Vec::new()));
        let mut wire = json!({
            "block_number": self.number,
            "block_hash": self.hash,
            "parent_hash": self.parent_hash,
            "payload_data": BASE64.encode(self.payload_json.as_bytes()),
            "requests_data": BASE64.encode(self.requests_json.as_bytes()),
            "timestamp": self.timestamp,
            "parent_beacon_block_root": self.parent_beacon_block_root,
            "blob_versioned_hashes": versioned_hashes,
            "payload_version": self.payload_version,
            "term": self.term,
        });
        if let Some(signature) = &self.leader_signature {
            wire[LEADER_SIGNATURE_FIELD] = Value::String(signature.clone());
        }
        wire
    }
}

/// The bytes a record signature covers: every field a member uses, as
/// served, each prefixed by its length so no two records share a message.
fn signed_message(domain: &[u8], wire: &Value) -> Result<Vec<u8>, String> {
    let mut message = Vec::with_capacity(4096);
    let mut push = |bytes: &[u8]| {
        message.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        message.extend_from_slice(bytes);
    };
    push(domain);
    for name in ["block_number", "timestamp", "payload_version", "term"] {
        let number = wire.get(name).and_then(Value::as_u64).ok_or_else(|| format!("{name} is missing"))?;
        push(number.to_string().as_bytes());
    }
    for name in ["block_hash", "parent_hash", "payload_data", "requests_data", "parent_beacon_block_root"] {
        let text = wire.get(name).and_then(Value::as_str).ok_or_else(|| format!("{name} is missing"))?;
        push(text.as_bytes());
    }
    let hashes =
        wire.get("blob_versioned_hashes").and_then(Value::as_array).ok_or("blob_versioned_hashes is missing")?;
    push(hashes.len().to_string().as_bytes());
    for hash in hashes {
        push(hash.as_str().ok_or("a versioned hash is not a string")?.as_bytes());
    }
    Ok(message)
}

/// What the committing leader signs (Ed25519, `signing.rs`): the same
/// fields as the HMAC, under the committed-block domain.
pub fn committed_message(wire: &Value) -> Result<Vec<u8>, String> {
    signed_message(COMMITTED_DOMAIN, wire)
}

/// Adds `signature` (hex HMAC-SHA256 under `key`) to a wire record.
pub fn sign_wire_record(key: &Secret, wire: &mut Value) {
    // Records built by `to_wire_json` always have every signed field.
    if let Ok(message) = signed_message(SIGNATURE_DOMAIN, wire) {
        wire[SIGNATURE_FIELD] = Value::String(encode_data(&hs256(key.expose(), &message)));
    }
}

/// Checks a wire record's signature against any of `keys` (the current key
/// and, during a rotation, the previous one).
pub fn verify_wire_record(keys: &[&Secret], wire: &Value) -> Result<(), String> {
    let presented = wire
        .get(SIGNATURE_FIELD)
        .and_then(Value::as_str)
        .ok_or("record is not signed (this member requires --sync-secret signatures)")?;
    let presented = decode_data(presented).map_err(|e| format!("signature is not hex: {e}"))?;
    let message = signed_message(SIGNATURE_DOMAIN, wire)?;
    let any_matches = keys.iter().any(|key| constant_time_eq(&hs256(key.expose(), &message), &presented));
    if any_matches {
        Ok(())
    } else {
        Err("signature does not verify with the configured sync secret(s)".into())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_record(number: u64, parent: Hash32) -> BlockRecord {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&number.to_be_bytes());
        hash[31] = 0xee;
        let payload = ExecutionPayload::from_json(json!({
            "blockNumber": format!("0x{number:x}"),
            "blockHash": Hash32(hash).to_hex(),
            "parentHash": parent.to_hex(),
            "timestamp": format!("0x{:x}", 1000 + number),
            "transactions": ["0x02ab"],
            "requestsHash": "0x01",
        }))
        .unwrap();
        BlockRecord {
            payload,
            execution_requests: vec!["0x01ab".into()],
            parent_beacon_block_root: parent,
            blob_versioned_hashes: vec![Hash32([1; 32])],
            payload_version: 4,
            term: 3,
            leader_signature: None,
        }
    }

    #[test]
    fn record_round_trips_through_storage_and_wire() {
        let record = sample_record(7, Hash32([9; 32]));
        let stored = record.to_stored();
        assert_eq!(BlockRecord::from_stored(&stored).unwrap(), record);
        let wire = stored.to_wire_json();
        assert_eq!(BlockRecord::from_wire_json(&wire).unwrap(), record);
        assert_eq!(wire["block_number"], 7);
        assert_eq!(wire["term"], 3);
    }

    #[test]
    fn signatures_cover_every_field_and_support_rotation() {
        let old_key = Secret::from_bytes(b"the-old-sync-secret-0123");
        let new_key = Secret::from_bytes(b"the-new-sync-secret-4567");
        let mut wire = sample_record(7, Hash32([9; 32])).to_stored().to_wire_json();
        sign_wire_record(&old_key, &mut wire);
        assert!(verify_wire_record(&[&old_key], &wire).is_ok());
        assert!(verify_wire_record(&[&new_key, &old_key], &wire).is_ok(), "previous key accepted during rotation");
        assert!(verify_wire_record(&[&new_key], &wire).is_err(), "a retired key no longer verifies");
        let tampered_fields: [(&str, Value); 10] = [
            ("block_number", json!(8)),
            ("timestamp", json!(1)),
            ("payload_version", json!(5)),
            ("term", json!(4)),
            ("block_hash", json!(Hash32([1; 32]).to_hex())),
            ("parent_hash", json!(Hash32([1; 32]).to_hex())),
            ("payload_data", json!("e30=")),
            ("requests_data", json!("W10=")),
            ("parent_beacon_block_root", json!(Hash32([1; 32]).to_hex())),
            ("blob_versioned_hashes", json!([])),
        ];
        for (field, value) in tampered_fields {
            let mut tampered = wire.clone();
            tampered[field] = value;
            assert!(verify_wire_record(&[&old_key], &tampered).is_err(), "{field} is not covered");
        }
        let mut unsigned = wire.clone();
        unsigned.as_object_mut().unwrap().remove(SIGNATURE_FIELD);
        assert!(verify_wire_record(&[&old_key], &unsigned).unwrap_err().contains("not signed"));
    }

    #[test]
    fn wire_record_that_disagrees_with_its_payload_is_refused() {
        let wire = sample_record(7, Hash32([9; 32])).to_stored().to_wire_json();
        let mutations: [(&str, Value, &str); 6] = [
            ("block_number", json!(8), "payload number"),
            ("block_hash", json!(Hash32([5; 32]).to_hex()), "payload hash"),
            ("parent_hash", json!(Hash32([5; 32]).to_hex()), "payload parent"),
            ("timestamp", json!(1), "payload timestamp"),
            ("payload_data", json!("!!!"), "base64"),
            ("payload_version", json!(9), "payload_version"),
        ];
        for (field, value, expected) in mutations {
            let mut bad = wire.clone();
            bad[field] = value;
            let error = BlockRecord::from_wire_json(&bad).unwrap_err();
            assert!(error.to_string().contains(expected), "{field}: {error}");
        }
        let mut missing = wire.clone();
        missing.as_object_mut().unwrap().remove("parent_beacon_block_root");
        assert!(BlockRecord::from_wire_json(&missing).is_err());
    }
}
