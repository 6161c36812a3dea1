//! Rendering a page of blocks: in the encoding the request asked for (JSON
//! by default, `format=binary` for members, `binary_page.rs`) and within
//! its byte budget (`page_budget.rs`).

use std::sync::Arc;

use crate::block::StoredBlock;
use crate::page_budget::fits;

/// The encoding of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PageFormat {
    /// `{"blocks":[...],"head":N}`: readable, the default.
    #[default]
    Json,
    /// `binary_page.rs`: what members ask for.
    Binary,
}

impl PageFormat {
    pub fn parse(value: &str) -> Result<PageFormat, String> {
        match value {
            "json" => Ok(PageFormat::Json),
            "binary" => Ok(PageFormat::Binary),
            _ => Err(format!("format must be json or binary, got {value:?}")),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PageFormat::Json => "application/json",
            PageFormat::Binary => crate::binary_page::CONTENT_TYPE,
        }
    }
}

/// A page's rendered records (without the head, which changes): the JSON
/// list, or the binary records.
pub struct RenderedRecords {
    pub bytes: Arc<[u8]>,
    /// Blocks in the page.
    pub count: usize,
    /// The page stopped at its byte budget before a block it had: it
    /// can never change once its blocks are committed, like a full page.
    pub cut_by_budget: bool,
}

/// Renders `blocks` in `format`, stopping at `budget` bytes (always after
/// the first block). `record` renders one block as JSON; `binary` as a
/// binary record. Each is appended to the page's buffer, so a page is
/// rendered in one growing buffer rather than a tree of values.
pub fn render_records<'a>(
    format: PageFormat,
    budget: u64,
    blocks: impl Iterator<Item = &'a StoredBlock>,
    mut json_record: impl FnMut(&StoredBlock, &mut Vec<u8>),
    mut binary_record: impl FnMut(&StoredBlock, &mut Vec<u8>),
) -> RenderedRecords {
    let mut out = Vec::new();
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
                json_record(block, &mut out);
            }
            PageFormat::Binary => binary_record(block, &mut out),
        }
        let size = out.len() - before;
        if !fits(before as u64, size as u64, count, budget) {
            out.truncate(before);
            cut_by_budget = true;
            break;
        }
        count += 1;
    }
    if format == PageFormat::Json {
        out.push(b']');
    }
    RenderedRecords { bytes: Arc::from(out), count, cut_by_budget }
}

/// The body for records rendered by [`render_records`] and the head.
pub fn page_body(format: PageFormat, records: &[u8], head: u64) -> Arc<[u8]> {
    match format {
        PageFormat::Json => {
            let head = head.to_string();
            let mut body = Vec::with_capacity(records.len() + head.len() + 20);
            body.extend_from_slice(b"{\"blocks\":");
            body.extend_from_slice(records);
            body.extend_from_slice(b",\"head\":");
            body.extend_from_slice(head.as_bytes());
            body.push(b'}');
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

    fn render(format: PageFormat, budget: u64, blocks: &[StoredBlock]) -> RenderedRecords {
        render_records(
            format,
            budget,
            blocks.iter(),
            |b, out| out.extend_from_slice(b.requests_json.as_bytes()),
            |b, out| crate::binary_page::push_record(out, b, None),
        )
    }

    #[test]
    fn json_pages_stop_at_the_budget_and_stay_valid_json() {
        let blocks: Vec<_> = (1..=5).map(|n| block(n, 100)).collect();
        let page = render(PageFormat::Json, 250, &blocks);
        assert_eq!((page.count, page.cut_by_budget), (2, true));
        assert!(page.bytes.len() <= 250);
        let value: serde_json::Value = serde_json::from_slice(&page_body(PageFormat::Json, &page.bytes, 9)).unwrap();
        assert_eq!(value["blocks"].as_array().map(Vec::len), Some(2));
        let all = render(PageFormat::Json, u64::MAX, &blocks);
        assert_eq!((all.count, all.cut_by_budget), (5, false));
        let empty = render(PageFormat::Json, 10, &[]);
        assert_eq!(&empty.bytes[..], b"[]");
    }

    #[test]
    fn a_block_larger_than_the_budget_goes_alone_in_either_format() {
        let blocks = [block(1, 10_000), block(2, 10)];
        for format in [PageFormat::Json, PageFormat::Binary] {
            let page = render(format, 100, &blocks);
            assert_eq!((page.count, page.cut_by_budget), (1, true), "{format:?}");
        }
        let body = page_body(PageFormat::Binary, &render(PageFormat::Binary, 100, &blocks).bytes, 7);
        let (head, records) = crate::binary_page::decode_page(&body).unwrap();
        assert_eq!((head, records.len()), (7, 1));
    }
}
