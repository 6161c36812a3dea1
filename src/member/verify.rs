//! Page verification: records of the seed's wire (`--sync-wire seed`)
//! are decoded as the seed's member reads them (`seed::wire`), unsigned
//! and unfenced; otherwise every record carries a leader signature from a pinned
//! key (unless the member runs with `--insecure-unsigned-records`), its
//! HMAC verifies when sync secrets are set, it decodes completely and agrees
//! with its payload, heights follow the member's head one by one and every
//! parent links. Pure: no I/O.

use serde_json::Value;

use crate::block::{verify_wire_record, BlockRecord};
use crate::config::{SyncKeys, SyncWire};
use crate::secret::Secret;
use crate::signing::{verify_committed, RecordTrust};
use crate::store::ChainHead;

/// Decodes a page: each record's leader signature verifies against a pinned
/// key (unless trust is off), its HMAC verifies (when keys are set), and it
/// decodes completely, agreeing with its payload.
pub fn decode_page(
    records: &[Value],
    wire: SyncWire,
    trust: &RecordTrust,
    keys: &[&Secret],
) -> Result<Vec<BlockRecord>, String> {
    if wire == SyncWire::Seed {
        // Configuration allows this wire only with neither a pinned key nor
        // a sync secret: the seed's records carry no signature of either kind.
        return records
            .iter()
            .map(|value| crate::seed::wire::record_from_seed_wire(value).map_err(|e| e.to_string()))
            .collect();
    }
    records
        .iter()
        .map(|value| {
            // For the message only; an unverified record's number is unchecked.
            let refused = |e: String| match value.get("block_number").and_then(Value::as_u64) {
                Some(number) => format!("block {number}: {e}"),
                None => format!("block record: {e}"),
            };
            if let RecordTrust::Pinned(pinned) = trust {
                verify_committed(pinned, value).map_err(refused)?;
            }
            if !keys.is_empty() {
                verify_wire_record(keys, value).map_err(refused)?;
            }
            BlockRecord::from_wire_json(value).map_err(|e| e.to_string())
        })
        .collect()
}

/// Heights follow `head` one by one and every parent links.
pub fn verify_links(head: ChainHead, records: &[BlockRecord]) -> Result<(), String> {
    let mut parent = head;
    for record in records {
        if record.number() != parent.number + 1 {
            return Err(format!(
                "block {} does not follow block {} (a gap or a repeat)",
                record.number(),
                parent.number
            ));
        }
        if record.parent_hash() != parent.hash {
            return Err(format!(
                "block {} has parent {} but block {} is {}",
                record.number(),
                record.parent_hash(),
                parent.number,
                parent.hash
            ));
        }
        parent = ChainHead { number: record.number(), hash: record.hash() };
    }
    Ok(())
}

/// Checks a page of records completely: decoding, signatures, links.
pub fn verify_batch(
    head: ChainHead,
    records: &[Value],
    wire: SyncWire,
    trust: &RecordTrust,
    keys: &[&Secret],
) -> Result<Vec<BlockRecord>, String> {
    let decoded = decode_page(records, wire, trust, keys)?;
    verify_links(head, &decoded)?;
    Ok(decoded)
}

/// The keys a record may be signed with; empty when signing is off.
pub fn verification_keys(keys: &SyncKeys) -> Vec<&Secret> {
    match &keys.current {
        Some(current) => std::iter::once(current).chain(keys.previous.as_ref()).collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::tests::sample_record;
    use crate::codec::Hash32;
    use crate::signing::BlockSigningKey;

    const OPEN: &RecordTrust = &RecordTrust::Unverified;

    #[test]
    fn seed_records_are_read_the_seed_members_way() {
        let genesis = ChainHead { number: 0, hash: Hash32([9; 32]) };
        let payload =
            crate::engine::ExecutionPayload::from_json(crate::seed::payload::tests::sample_payload(1, genesis.hash))
                .unwrap();
        let record = BlockRecord {
            payload,
            execution_requests: vec![],
            parent_beacon_block_root: genesis.hash,
            blob_versioned_hashes: vec![],
            payload_version: 5,
            term: 0,
            leader_signature: None,
        };
        let seed = crate::seed::wire::seed_wire_json(&record.to_stored()).unwrap();
        assert_eq!(
            verify_batch(genesis, std::slice::from_ref(&seed), SyncWire::Seed, OPEN, &[]).unwrap(),
            vec![record]
        );
        let error = verify_batch(genesis, &[seed], SyncWire::Json, OPEN, &[]).unwrap_err();
        assert!(error.contains("not base64 of JSON"), "a seed record is no clnode record: {error}");
    }

    #[test]
    fn only_records_a_pinned_key_signed_are_accepted() {
        let genesis = ChainHead { number: 0, hash: Hash32([9; 32]) };
        let (ours, theirs) = (BlockSigningKey::generate().unwrap(), BlockSigningKey::generate().unwrap());
        let signed_by = |key: &BlockSigningKey| {
            let mut stored = sample_record(1, genesis.hash).to_stored();
            stored.leader_signature = Some(key.sign(&stored));
            stored.to_wire_json()
        };
        let pinned = RecordTrust::Pinned(vec![ours.public_key()]);
        let accepted = verify_batch(genesis, &[signed_by(&ours)], SyncWire::Json, &pinned, &[]).unwrap();
        assert_eq!(accepted[0].leader_signature, signed_by(&ours)["leader_signature"].as_str().map(str::to_owned));
        let cases = [
            (signed_by(&theirs), "block 1: leader signature does not verify"),
            (sample_record(1, genesis.hash).to_stored().to_wire_json(), "block 1: record carries no leader signature"),
        ];
        for (wire, expected) in cases {
            let error = verify_batch(genesis, std::slice::from_ref(&wire), SyncWire::Json, &pinned, &[]).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
            assert!(verify_batch(genesis, &[wire], SyncWire::Json, OPEN, &[]).is_ok(), "the opt-out accepts it");
        }
    }

    #[test]
    fn batches_must_follow_the_head_and_link() {
        let genesis = ChainHead { number: 0, hash: Hash32([9; 32]) };
        let one = sample_record(1, genesis.hash);
        let two = sample_record(2, one.hash());
        let wire = |r: &BlockRecord| r.to_stored().to_wire_json();
        assert_eq!(verify_batch(genesis, &[wire(&one), wire(&two)], SyncWire::Json, OPEN, &[]).unwrap().len(), 2);
        let gap = verify_batch(genesis, &[wire(&two)], SyncWire::Json, OPEN, &[]).unwrap_err();
        assert!(gap.contains("does not follow"), "{gap}");
        let unlinked = sample_record(2, Hash32([3; 32]));
        let error = verify_batch(genesis, &[wire(&one), wire(&unlinked)], SyncWire::Json, OPEN, &[]).unwrap_err();
        assert!(error.contains("has parent"), "{error}");
        let wrong_genesis = ChainHead { number: 0, hash: Hash32([1; 32]) };
        assert!(verify_batch(wrong_genesis, &[wire(&one)], SyncWire::Json, OPEN, &[]).is_err());
        let key = Secret::from_bytes(b"sync-secret-for-tests");
        let unsigned = verify_batch(genesis, &[wire(&one)], SyncWire::Json, OPEN, &[&key]).unwrap_err();
        assert!(unsigned.contains("not signed"), "{unsigned}");
        let mut signed = wire(&one);
        crate::block::sign_wire_record(&key, &mut signed);
        assert_eq!(verify_batch(genesis, &[signed], SyncWire::Json, OPEN, &[&key]).unwrap().len(), 1);
    }
}
