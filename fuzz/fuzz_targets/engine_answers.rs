//! Answers from an execution client (which may be broken): every parser of
//! Engine API and eth_ results, and the hex codecs under them.
#![no_main]

use clnode::codec::{decode_data, decode_quantity, encode_data, encode_quantity, Hash32};
use clnode::engine::types::{
    execution_requests_of, versioned_hashes_of_bundle, BlockHeader, ExecutionPayload, PayloadStatus,
};
use clnode::engine::ForkSchedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(value) = decode_quantity(text) {
            assert_eq!(decode_quantity(&encode_quantity(value)), Ok(value));
        }
        if let Ok(bytes) = decode_data(text) {
            assert_eq!(decode_data(&encode_data(&bytes)), Ok(bytes));
        }
        let _ = Hash32::parse(text);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = ExecutionPayload::from_json(value.clone());
    let _ = PayloadStatus::from_json(&value);
    let _ = BlockHeader::from_json(&value);
    let _ = versioned_hashes_of_bundle(Some(&value));
    let _ = execution_requests_of(Some(&value));
    let _ = ForkSchedule::from_eth_config(&value);
    if let Some(payload) = value.get("executionPayload") {
        let _ = ExecutionPayload::from_json(payload.clone());
    }
});
