//! What identifies a page of blocks: the list query without its wait. The
//! sync API's handlers, its render cache and the HTTP gate's parked polls
//! (`http/park.rs`) share it: polls with the same key get the same bytes.

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

/// The page after `after`: at most `limit` blocks and `max_bytes` of
/// records (one larger block goes alone), in `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub after: u64,
    pub limit: u32,
    pub max_bytes: u64,
    pub format: PageFormat,
}
