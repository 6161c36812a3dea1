//! Everything a request's bytes reach before a handler: the gate's head
//! check and rewrite, then path and query parsing of every route.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rewritten) = clnode::http::rewrite_head(data) {
        // What the gate forwards ends its head, and is accepted again
        // unchanged (rewriting is idempotent on its own output).
        assert!(rewritten.bytes.ends_with(b"\r\n\r\n"));
        // What the precheck and parking see of it always exists.
        assert!(rewritten.incoming().is_some());
        let marked = rewritten.bytes.windows(21).any(|w| w.eq_ignore_ascii_case(b"x-clnode-body-refused"));
        if rewritten.bytes.len() <= clnode::http::MAX_HEAD_BYTES && !marked {
            let again = clnode::http::rewrite_head(&rewritten.bytes).expect("the gate accepts what it forwards");
            assert_eq!(again.bytes, rewritten.bytes);
        }
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
