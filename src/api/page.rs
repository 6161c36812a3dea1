//! Rendering a page of blocks: in the encoding the request asked for (JSON
//! by default, `format=binary` for members, `binary_page.rs`) and within
//! its byte budget (`page_budget.rs`).

use std::ops::Range;
use std::sync::Arc;

use crate::block::StoredBlock;
use crate::page_budget::fits;
use crate::page_key::PageFormat;

/// A rendered page: its body, and where its records (the part that does
/// not change with the head) are in it.
pub struct RenderedPage {
    pub body: Arc<[u8]>,
    /// The JSON list, or the binary records.
    pub records: Range<usize>,
    /// Blocks in the page.
    pub count: usize,
    /// The page stopped at its byte budget before a block it had: it
    /// can never change once its blocks are committed, like a full page.
    pub cut_by_budget: bool,
}

#[cfg(test)]
impl RenderedPage {
    pub fn records(&self) -> &[u8] {
        &self.body[self.records.clone()]
    }
}

/// A worker keeps its render buffer up to this capacity between pages (so
/// pages are rendered without new allocations); a larger one is dropped.
pub const SCRATCH_KEEP_BYTES: usize = 4 * 1024 * 1024;

/// Renders the page of `blocks` in `format` with `head`, stopping at
/// `budget` bytes of records (always after the first block).
/// `json_record` renders one block as JSON, `binary_record` as a binary
/// record; each appends to `scratch`, the worker's reusable buffer, so a
/// page is rendered without a tree of values and without fresh pages of
/// memory; the body is one copy of it.
pub fn render_page<'a>(
    format: PageFormat,
    budget: u64,
    head: u64,
    blocks: impl Iterator<Item = &'a StoredBlock>,
    scratch: &mut Vec<u8>,
    mut json_record: impl FnMut(&StoredBlock, &mut Vec<u8>),
    mut binary_record: impl FnMut(&StoredBlock, &mut Vec<u8>),
) -> RenderedPage {
    let out = scratch;
    out.clear();
    match format {
        PageFormat::Json => out.extend_from_slice(JSON_PREFIX),
        PageFormat::Binary => crate::binary_page::push_header(out, head),
    }
    let start = out.len();
    if format == PageFormat::Json {
        out.push(b'[');
    }
    let (mut count, mut cut_by_budget) = (0usize, false);
    for block in blocks {
        let before = out.len();
        match format {
            PageFormat::Json => {
                if count > 0 {
                    out.push(b',');
                }
                json_record(block, out);
            }
            PageFormat::Binary => binary_record(block, out),
        }
        let size = out.len() - before;
        if !fits((before - start) as u64, size as u64, count, budget) {
            out.truncate(before);
            cut_by_budget = true;
            break;
        }
        count += 1;
    }
    if format == PageFormat::Json {
        out.push(b']');
    }
    let end = out.len();
    if format == PageFormat::Json {
        push_json_suffix(out, head);
    }
    let body = Arc::from(&out[..]);
    if out.capacity() > SCRATCH_KEEP_BYTES {
        *out = Vec::new();
    }
    RenderedPage { body, records: start..end, count, cut_by_budget }
}

/// Appends `block`'s sync API JSON record, byte for byte what
/// `serde_json::to_writer(out, &block.to_wire_json())` writes (with
/// `signature` added as `block::sign_wire_record` adds it), without the
/// tree of values, the key strings and the intermediate base64 strings that
/// path allocates per block: the payload's base64 is encoded straight into
/// `out`. Keys in serde_json's order (sorted: its map is a BTreeMap).
pub fn push_json_record(out: &mut Vec<u8>, block: &StoredBlock, signature: Option<&str>) {
    out.extend_from_slice(b"{\"blob_versioned_hashes\":");
    push_versioned_hashes(out, &block.blob_versioned_hashes_json);
    out.extend_from_slice(b",\"block_hash\":");
    push_json_string(out, &block.hash);
    out.extend_from_slice(b",\"block_number\":");
    push_decimal(out, block.number);
    if let Some(leader_signature) = &block.leader_signature {
        out.extend_from_slice(b",\"leader_signature\":");
        push_json_string(out, leader_signature);
    }
    out.extend_from_slice(b",\"parent_beacon_block_root\":");
    push_json_string(out, &block.parent_beacon_block_root);
    out.extend_from_slice(b",\"parent_hash\":");
    push_json_string(out, &block.parent_hash);
    out.extend_from_slice(b",\"payload_data\":");
    push_base64_string(out, block.payload_json.as_bytes());
    out.extend_from_slice(b",\"payload_version\":");
    push_decimal(out, u64::from(block.payload_version));
    out.extend_from_slice(b",\"requests_data\":");
    push_base64_string(out, block.requests_json.as_bytes());
    if let Some(signature) = signature {
        out.extend_from_slice(b",\"signature\":");
        push_json_string(out, signature);
    }
    out.extend_from_slice(b",\"term\":");
    push_decimal(out, block.term);
    out.extend_from_slice(b",\"timestamp\":");
    push_decimal(out, block.timestamp);
    out.push(b'}');
}

/// The stored list of versioned hashes as `to_wire_json` serves it: parsed
/// and written compactly (an unparsable one, which `store.rs` refuses on
/// read, as `[]`). Nearly every block has none: `[]` is written directly.
fn push_versioned_hashes(out: &mut Vec<u8>, text: &str) {
    if text == "[]" {
        out.extend_from_slice(b"[]");
        return;
    }
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()));
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &value);
}

/// `text` as a JSON string, escaped as serde_json escapes it.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(out, text);
}

fn push_decimal(out: &mut Vec<u8>, number: u64) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{number}");
}

/// `bytes` in base64 (standard, padded) between quotes, encoded in place.
fn push_base64_string(out: &mut Vec<u8>, bytes: &[u8]) {
    use base64::Engine as _;
    out.push(b'"');
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

const JSON_PREFIX: &[u8] = b"{\"blocks\":";

fn push_json_suffix(out: &mut Vec<u8>, head: u64) {
    out.extend_from_slice(b",\"head\":");
    out.extend_from_slice(head.to_string().as_bytes());
    out.push(b'}');
}

/// The body for records rendered by [`render_page`] and the head.
pub fn page_body(format: PageFormat, records: &[u8], head: u64) -> Arc<[u8]> {
    match format {
        PageFormat::Json => {
            let mut body = Vec::with_capacity(records.len() + 40);
            body.extend_from_slice(JSON_PREFIX);
            body.extend_from_slice(records);
            push_json_suffix(&mut body, head);
            Arc::from(body)
        }
        PageFormat::Binary => {
            let mut body = Vec::with_capacity(records.len() + crate::binary_page::HEADER_LEN);
            crate::binary_page::push_header(&mut body, head);
            body.extend_from_slice(records);
            Arc::from(body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64, payload_len: usize) -> StoredBlock {
        let record = crate::block::tests::sample_record(number, crate::codec::Hash32([1; 32]));
        let mut stored = record.to_stored();
        stored.requests_json = format!("[\"{}\"]", "x".repeat(payload_len));
        stored
    }

    fn render(format: PageFormat, budget: u64, blocks: &[StoredBlock]) -> RenderedPage {
        render_page(
            format,
            budget,
            9,
            blocks.iter(),
            &mut Vec::new(),
            |b, out| out.extend_from_slice(b.requests_json.as_bytes()),
            |b, out| crate::binary_page::push_record(out, b, None),
        )
    }

    #[test]
    fn json_records_are_the_bytes_serde_json_writes() {
        use crate::block::{sign_wire_record, SIGNATURE_FIELD};
        let key = crate::secret::Secret::from_bytes(b"sync secret");
        let plain = block(3, 10);
        let signed = StoredBlock { leader_signature: Some(format!("0x{}", "ab".repeat(64))), ..block(4, 2) };
        let with_hashes = StoredBlock {
            blob_versioned_hashes_json: format!("[ \"0x{}\" ]", "01".repeat(32)),
            requests_json: "[]".to_owned(),
            hash: "0x\"quoted\\".to_owned(),
            ..block(5, 0)
        };
        let unparsable = StoredBlock { blob_versioned_hashes_json: "nope".to_owned(), ..block(6, 1) };
        for stored in [plain, signed, with_hashes, unparsable] {
            let mut expected = Vec::new();
            serde_json::to_writer(&mut expected, &stored.to_wire_json()).unwrap();
            let mut out = b"prefix".to_vec();
            push_json_record(&mut out, &stored, None);
            assert_eq!(String::from_utf8_lossy(&out[6..]), String::from_utf8_lossy(&expected));
            let mut wire = stored.to_wire_json();
            sign_wire_record(&key, &mut wire);
            let mut expected = Vec::new();
            serde_json::to_writer(&mut expected, &wire).unwrap();
            let mut out = Vec::new();
            push_json_record(&mut out, &stored, wire[SIGNATURE_FIELD].as_str());
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected));
        }
    }

    #[test]
    fn json_pages_stop_at_the_budget_and_stay_valid_json() {
        let blocks: Vec<_> = (1..=5).map(|n| block(n, 100)).collect();
        let page = render(PageFormat::Json, 250, &blocks);
        assert_eq!((page.count, page.cut_by_budget), (2, true));
        assert!(page.records().len() <= 250);
        let value: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
        assert_eq!(value["blocks"].as_array().map(Vec::len), Some(2));
        assert_eq!(value["head"], 9);
        assert_eq!(page_body(PageFormat::Json, page.records(), 9), page.body, "the same body rebuilt");
        let all = render(PageFormat::Json, u64::MAX, &blocks);
        assert_eq!((all.count, all.cut_by_budget), (5, false));
        let empty = render(PageFormat::Json, 10, &[]);
        assert_eq!(empty.records(), b"[]");
        assert_eq!(&empty.body[..], b"{\"blocks\":[],\"head\":9}");
    }

    #[test]
    fn a_block_larger_than_the_budget_goes_alone_in_either_format() {
        let blocks = [block(1, 10_000), block(2, 10)];
        for format in [PageFormat::Json, PageFormat::Binary] {
            let page = render(format, 100, &blocks);
            assert_eq!((page.count, page.cut_by_budget), (1, true), "{format:?}");
        }
        let page = render(PageFormat::Binary, 100, &blocks);
        let (head, records) = crate::binary_page::decode_page(&page.body).unwrap();
        assert_eq!((head, records.len()), (9, 1));
        assert_eq!(page_body(PageFormat::Binary, page.records(), 9), page.body);
    }
}
