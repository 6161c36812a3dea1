//! Byte budgets for sync pages: a page is bounded by a block count *and* by
//! bytes, on the server (`api.rs`, `store.rs`) and in the member's request
//! (`member/fetch.rs`). A block larger than the budget still goes through,
//! alone: a page always carries at least one block when one exists.
//!
//! Pure decisions only; the callers measure and act.

/// The server's cap on a page's rendered bytes, and its default when the
/// request names none. A request for more is capped, as `limit` is.
pub const MAX_PAGE_BYTES: u64 = 64 * 1024 * 1024;
/// What a member asks for (`max_bytes`) by default (`--sync-page-bytes`):
/// a few full blocks per page keeps execution pipelined while the
/// fetcher's memory stays small.
pub const MEMBER_PAGE_BYTES: u64 = 8 * 1024 * 1024;
/// Room for one block far larger than any gas limit allows today (a 60 M-gas
/// block of zero-byte calldata is 6 MB raw, about 16 MB as JSON).
pub const LARGEST_BLOCK_BYTES: u64 = 128 * 1024 * 1024;

/// A member refuses to read an answer larger than this: its budget plus one
/// block of [`LARGEST_BLOCK_BYTES`] (which the server sends alone).
pub fn max_answer_bytes(page_bytes: u64) -> u64 {
    page_bytes.saturating_add(LARGEST_BLOCK_BYTES)
}

/// How many of the blocks, in order, a page of at most `budget` bytes
/// carries, given each block's rendered size: every block while the sum
/// stays within the budget, and always the first (a block larger than the
/// budget goes through alone rather than never).
pub fn blocks_within(sizes: impl IntoIterator<Item = usize>, budget: u64) -> usize {
    let mut total: u64 = 0;
    let mut count = 0;
    for size in sizes {
        if !fits(total, size as u64, count, budget) {
            break;
        }
        total = total.saturating_add(size as u64);
        count += 1;
    }
    count
}

/// Whether a block of `size` bytes joins a page that already holds `count`
/// blocks in `total` bytes: within the budget, or as the first block.
pub fn fits(total: u64, size: u64, count: usize, budget: u64) -> bool {
    count == 0 || total.saturating_add(size) <= budget
}

/// The block count a member asks for next after an answer was too large to
/// read: half of what it asked, at least one. A source that ignores the
/// byte budget (an older node) is then asked for fewer blocks each time, so
/// the same oversized request is never repeated.
pub fn limit_after_oversize(asked: u32) -> u32 {
    (asked / 2).max(1)
}

/// The cap on the block count after an answer that could be read: it grows
/// back (doubling, toward `max`) only after a full page (`received` ==
/// `asked`) that took at most half of what the member reads
/// (`answer_bytes` against `max_answer`), so that doubling is likely to fit
/// again: one huge block does not keep later pages small for ever, and an
/// oversized request is not made again at once.
pub fn limit_after_success(cap: u32, max: u32, asked: u32, received: usize, answer_bytes: u64, max_answer: u64) -> u32 {
    let grow = received >= asked as usize && answer_bytes.saturating_mul(2) <= max_answer;
    let next = if grow { cap.saturating_mul(2) } else { cap };
    next.clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stop_at_the_budget_but_carry_at_least_one_block() {
        let cases: &[(&[usize], u64, usize)] = &[
            (&[], 100, 0),
            (&[10, 10, 10], 100, 3),
            (&[40, 40, 40], 100, 2),
            (&[50, 50], 100, 2),
            (&[50, 51], 100, 1),
            (&[500], 100, 1),                    // larger than the budget: alone
            (&[500, 1], 100, 1),                 // ... and nothing after it
            (&[1, 500, 1], 100, 1),              // the big one waits for the next page
            (&[0, 0, 0], 0, 3),                  // empty renderings cost nothing
            (&[usize::MAX, usize::MAX], 100, 1), // no overflow
        ];
        for (sizes, budget, expected) in cases {
            assert_eq!(blocks_within(sizes.iter().copied(), *budget), *expected, "{sizes:?} within {budget}");
        }
    }

    #[test]
    fn oversized_answers_shrink_the_request_until_one_block() {
        let mut limit = 1000;
        let mut asked = Vec::new();
        while limit > 1 {
            limit = limit_after_oversize(limit);
            asked.push(limit);
        }
        assert_eq!(asked, [500, 250, 125, 62, 31, 15, 7, 3, 1]);
        assert_eq!(limit_after_oversize(1), 1);
        assert_eq!(limit_after_oversize(0), 1);
    }

    #[test]
    fn the_cap_grows_back_after_good_answers() {
        let cases = [
            // (cap, asked, received, answer bytes, next cap)
            (1, 1, 1, 10, 2),
            (600, 600, 600, 10, 1000),
            (u32::MAX, 1000, 1000, 10, 1000),
            (31, 31, 0, 10, 31),  // an empty answer says nothing about size
            (31, 31, 31, 60, 31), // more than half the limit: doubling would not fit
            (31, 31, 31, 50, 62), // exactly half: it fits
            (31, 31, 5, 10, 31),  // the page was short
        ];
        for (cap, asked, received, bytes, next) in cases {
            assert_eq!(
                limit_after_success(cap, 1000, asked, received, bytes, 100),
                next,
                "{cap} {asked} {received} {bytes}"
            );
        }
        assert_eq!(limit_after_success(0, 0, 0, 0, 0, 0), 1);
    }

    #[test]
    fn a_member_can_read_its_budget_and_one_huge_block() {
        assert_eq!(max_answer_bytes(MEMBER_PAGE_BYTES), MEMBER_PAGE_BYTES + LARGEST_BLOCK_BYTES);
        assert_eq!(max_answer_bytes(u64::MAX), u64::MAX);
        const { assert!(MEMBER_PAGE_BYTES <= MAX_PAGE_BYTES) };
    }
}
