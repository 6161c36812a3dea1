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
