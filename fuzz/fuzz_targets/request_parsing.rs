//! Everything a request's bytes reach before a handler: the guard's head
//! check and rewrite, then path and query parsing of every route.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rewritten) = clnode::http::rewrite_head(data) {
        // What the guard forwards is itself a valid head it would accept.
        assert!(rewritten.ends_with(b"Connection: close\r\n\r\n"));
    }
    if let Ok(target) = std::str::from_utf8(data) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let _ = clnode::api::parse_list_query(query);
        if let Some(key) = path.strip_prefix("/blocks/") {
            let _ = clnode::api::parse_block_key(key);
        }
        let _ = clnode::http::parse_query(query, &["format"]);
        if let Ok(parsed) = clnode::api::parse_list_query(query) {
            assert!((1..=1000).contains(&parsed.limit));
            assert!(parsed.wait_ms <= clnode::api::MAX_WAIT_MS);
        }
    }
});
