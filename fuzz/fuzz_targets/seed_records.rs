//! The seed's records from an untrusted server (`--sync-wire seed`): the
//! msgpack decoder and the payload and requests conversions must refuse
//! garbage without panicking or allocating beyond the input, and anything
//! accepted must round-trip (as clnode serves it back to seed members).
#![no_main]

use clnode::seed::{msgpack, payload, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = msgpack::decode(data) {
        assert_eq!(msgpack::decode(&msgpack::encode(&value)), Ok(value), "msgpack round-trips");
    }
    if let Ok(json) = payload::payload_json_from_msgpack(data) {
        let bytes = payload::payload_msgpack_from_json(&json).expect("a decoded payload encodes");
        assert_eq!(payload::payload_json_from_msgpack(&bytes).expect("and decodes again"), json);
    }
    if let Ok(requests) = payload::requests_from_msgpack(data) {
        let bytes = payload::requests_msgpack(&requests).expect("decoded requests encode");
        assert_eq!(payload::requests_from_msgpack(&bytes).expect("and decode again"), requests);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(record) = wire::record_from_seed_wire(&value) {
        let served = wire::seed_wire_json(&record.to_stored()).expect("an accepted record is served");
        assert_eq!(wire::record_from_seed_wire(&served).expect("and read back"), record);
    }
});
