//! The seed's sync-API records, read and written.
//!
//! A seed record has six fields: `block_number`, `block_hash`,
//! `parent_hash`, `payload_data` (base64 of the msgpack payload),
//! `requests_data` (base64 of the msgpack requests) and `timestamp`. What
//! clnode's records add is derived the way the seed's own member executes:
//! the parent beacon block root is the parent hash (the seed's builder
//! builds with it, its syncer executes with it), there are no blob
//! versioned hashes (it passes none), and the payload came from
//! `engine_getPayloadV5` (the only one its builder calls). A seed record
//! has no fencing term: it is stored with [`SEED_TERM`], below every term a
//! clnode leader holds, and no leader signature.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::payload::{payload_json_from_msgpack, payload_msgpack_from_json, requests_from_msgpack, requests_msgpack};
use crate::block::{BlockRecord, RecordError, StoredBlock};

/// The term of a block the seed committed: it had none (unfenced), and
/// every clnode term is at least 1.
pub const SEED_TERM: u64 = 0;
/// The seed's builder fetches every payload with `engine_getPayloadV5`.
pub const SEED_PAYLOAD_VERSION: u8 = 5;

/// A record of a seed's sync API (or a row of its table), checked as
/// clnode checks its own: the payload decodes and agrees with the number,
/// hashes and timestamp beside it.
pub fn record_from_seed_fields(
    number: u64,
    hash: &str,
    parent_hash: &str,
    payload_data: &str,
    requests_data: &str,
    timestamp: u64,
) -> Result<BlockRecord, RecordError> {
    let fail = |reason: String| RecordError { block_number: Some(number), reason };
    let payload_bytes = BASE64.decode(payload_data).map_err(|e| fail(format!("payload_data is not base64: {e}")))?;
    let payload = payload_json_from_msgpack(&payload_bytes)
        .map_err(|e| fail(format!("payload_data is not the seed's msgpack payload: {e}")))?;
    let requests_bytes = BASE64.decode(requests_data).map_err(|e| fail(format!("requests_data is not base64: {e}")))?;
    let requests = requests_from_msgpack(&requests_bytes)
        .map_err(|e| fail(format!("requests_data is not the seed's msgpack requests: {e}")))?;
    BlockRecord::from_parts(
        number,
        hash,
        parent_hash,
        timestamp,
        payload,
        &json!(requests),
        // The seed's rule: the parent's execution hash stands in for the
        // beacon root (normalised by the parse in `from_parts`).
        parent_hash,
        &json!([]),
        SEED_PAYLOAD_VERSION,
        SEED_TERM,
    )
}

/// One record of a seed's `/blocks` answer.
pub fn record_from_seed_wire(value: &Value) -> Result<BlockRecord, RecordError> {
    let number = value.get("block_number").and_then(Value::as_u64);
    let fail = |reason: String| RecordError { block_number: number, reason };
    let number = number.ok_or_else(|| fail("block_number is missing or not a number".into()))?;
    let text = |name: &str| -> Result<&str, RecordError> {
        value.get(name).and_then(Value::as_str).ok_or_else(|| fail(format!("{name} is missing or not a string")))
    };
    // The seed writes its timestamp as a signed number; a negative one is no block's.
    let timestamp = value
        .get("timestamp")
        .and_then(Value::as_u64)
        .ok_or_else(|| fail("timestamp is missing or not a non-negative number".into()))?;
    record_from_seed_fields(
        number,
        text("block_hash")?,
        text("parent_hash")?,
        text("payload_data")?,
        // The seed's table defaults it to '' (no requests).
        value.get("requests_data").and_then(Value::as_str).unwrap_or(""),
        timestamp,
    )
}

/// A stored block as the seed's sync API serves it: the six fields only,
/// payload and requests as base64 of the seed's msgpack.
pub fn seed_wire_json(stored: &StoredBlock) -> Result<Value, String> {
    let fail = |e: String| format!("block {}: {e}", stored.number);
    let payload: Value = serde_json::from_str(&stored.payload_json).map_err(|e| fail(format!("payload: {e}")))?;
    let requests: Vec<String> =
        serde_json::from_str(&stored.requests_json).map_err(|e| fail(format!("requests: {e}")))?;
    Ok(json!({
        "block_number": stored.number,
        "block_hash": stored.hash,
        "parent_hash": stored.parent_hash,
        "payload_data": BASE64.encode(payload_msgpack_from_json(&payload).map_err(fail)?),
        "requests_data": BASE64.encode(requests_msgpack(&requests).map_err(fail)?),
        "timestamp": stored.timestamp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Hash32;
    use crate::engine::ExecutionPayload;
    use crate::seed::payload::tests::sample_payload;

    fn stored(number: u64, parent: Hash32) -> StoredBlock {
        let payload = ExecutionPayload::from_json(sample_payload(number, parent)).unwrap();
        BlockRecord {
            payload,
            execution_requests: vec!["0x00aa".into()],
            parent_beacon_block_root: parent,
            blob_versioned_hashes: vec![],
            payload_version: 5,
            term: 7,
            leader_signature: Some(format!("0x{}", "ab".repeat(64))),
        }
        .to_stored()
    }

    #[test]
    fn a_served_seed_record_reads_back_as_the_seed_member_derives_it() {
        let original = stored(3, Hash32([1; 32]));
        let wire = seed_wire_json(&original).unwrap();
        let keys: Vec<&str> = wire.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6, "the seed's six fields only: {keys:?}");
        let record = record_from_seed_wire(&wire).unwrap();
        assert_eq!(record.payload, BlockRecord::from_stored(&original).unwrap().payload);
        assert_eq!(record.execution_requests, vec!["0x00aa".to_owned()]);
        assert_eq!(record.parent_beacon_block_root, Hash32([1; 32]), "the parent hash");
        assert!(record.blob_versioned_hashes.is_empty());
        assert_eq!((record.payload_version, record.term, record.leader_signature), (5, SEED_TERM, None));
    }

    #[test]
    fn seed_records_that_disagree_with_their_payload_are_refused() {
        let wire = seed_wire_json(&stored(3, Hash32([1; 32]))).unwrap();
        let cases: [(&str, Value, &str); 6] = [
            ("block_number", json!(4), "payload number"),
            ("parent_hash", json!(Hash32([9; 32]).to_hex()), "payload parent"),
            ("timestamp", json!(-1), "timestamp is missing or not a non-negative number"),
            ("payload_data", json!("e30="), "payload_data is not the seed's msgpack payload"),
            ("payload_data", json!("%%%"), "payload_data is not base64"),
            ("requests_data", json!("kQ=="), "requests_data is not the seed's msgpack requests"),
        ];
        for (field, value, expected) in cases {
            let mut bad = wire.clone();
            bad[field] = value;
            let error = record_from_seed_wire(&bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{field}: {error}");
        }
        let mut no_requests = wire.clone();
        no_requests["requests_data"] = json!("");
        assert!(record_from_seed_wire(&no_requests).unwrap().execution_requests.is_empty());
    }
}
