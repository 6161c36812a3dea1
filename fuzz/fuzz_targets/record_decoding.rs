//! Sync API records from an untrusted server: decoding, verification and
//! signature checks (the HMAC and the leader's Ed25519 signature) must
//! refuse garbage without panicking, and anything accepted must round-trip,
//! its leader signature included (members pass it on unchanged).
#![no_main]

use clnode::block::{verify_wire_record, BlockRecord, StoredBlock};
use clnode::secret::Secret;
use clnode::signing::{verify_committed, PublicKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let key = Secret::from_bytes(b"fuzzing-sync-secret-key");
    let _ = verify_wire_record(&[&key], &value);
    // RFC 8032's first test key: any valid public key exercises the checks.
    let pinned = PublicKey::from_hex("0xd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        .expect("a valid public key");
    let _ = verify_committed(&[pinned], &value);
    if let Ok(record) = BlockRecord::from_wire_json(&value) {
        let stored: StoredBlock = record.to_stored();
        let again = BlockRecord::from_stored(&stored).expect("an accepted record round-trips through storage");
        assert_eq!(again, record);
        let wire = stored.to_wire_json();
        assert_eq!(BlockRecord::from_wire_json(&wire).expect("and through the wire"), record);
    }
    if let Some(blocks) = value.get("blocks").and_then(serde_json::Value::as_array) {
        for block in blocks.iter().take(16) {
            let _ = BlockRecord::from_wire_json(block);
        }
    }
});
