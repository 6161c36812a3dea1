//! glibc allocator settings, and handing freed memory back when idle.
//!
//! By default glibc gives each busy thread its own arena and moves its mmap
//! threshold after a large free, so the megabyte-sized pages the API
//! renders and the syncer applies stay resident after use. The first
//! answer (a fixed 256 KiB mmap threshold and `malloc_trim` after every
//! large page) kept memory low but made every large page mmap, fault in,
//! zero and unmap its buffers: a profile of random uncached pages showed
//! 71 % kernel time there. Now the API renders into a reusable buffer per
//! worker (`api/page.rs`), and a trimmer thread hands free memory back once
//! no large page was freed for a check interval (after a catch-up, within
//! about a second), and at least every 10 s (a leader that commits full
//! blocks frees large buffers without serving pages). *Never* trims on a
//! request's path. Why not a higher mmap threshold, so that the postgres
//! read buffer, row strings and body of a page with calldata blocks are
//! reused from the heap: measured (docs/BENCHMARKS.md, U1 and M1, same
//! command), 1 MiB with a 64 MiB trim threshold cut clnode's CPU per random
//! 100-block page from 2.6 to 1.7–2.0 ms, but left a member at 16.4 and
//! 19.4 MB after a catch-up of full blocks against 12.3–12.8 MB (goal 20):
//! too little margin (4 MiB: 2.0 ms, 17.4 MB).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::shutdown::Shutdown;

/// A page of at least this many blocks is large: freeing it is noted with
/// [`large_page_freed`] so the trimmer hands memory back once idle. One
/// block is not worth it; a catch-up page is megabytes.
pub const LARGE_PAGE_BLOCKS: usize = 64;
/// ... or of at least this many bytes: a page of a few full blocks is
/// megabytes too.
pub const LARGE_PAGE_BYTES: u64 = 1024 * 1024;
/// How often the trimmer looks whether large pages were freed.
pub const TRIM_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// The trimmer hands free memory back at least every this many checks
/// (10 s), busy or not.
pub const FORCED_TRIM_CHECKS: u32 = 20;

/// Whether a page of `blocks` blocks and `bytes` bytes is large.
pub fn is_large_page(blocks: usize, bytes: u64) -> bool {
    blocks >= LARGE_PAGE_BLOCKS || bytes >= LARGE_PAGE_BYTES
}

/// glibc `mallopt` parameters (malloc.h).
const M_TRIM_THRESHOLD: i32 = -1;
const M_MMAP_THRESHOLD: i32 = -3;
const M_ARENA_MAX: i32 = -8;
/// Buffers from this size are mapped, and unmapped when freed (fixed, so
/// glibc does not raise it after a large free and keep pages resident).
const MMAP_THRESHOLD: i32 = 256 * 1024;
/// `free` gives back free memory at the main heap's top beyond this.
const TRIM_THRESHOLD: i32 = 1024 * 1024;

extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
    fn malloc_trim(pad: usize) -> i32;
}

static LARGE_PAGES_FREED: AtomicU64 = AtomicU64::new(0);

/// Two arenas, a fixed 256 KiB mmap threshold and a 1 MiB trim threshold
/// (see the module). Call before any other thread exists.
pub fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; called from main
    // before any other thread exists.
    unsafe {
        mallopt(M_ARENA_MAX, 2);
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Notes that a large page was freed (cheap: one atomic add).
pub fn large_page_freed() {
    LARGE_PAGES_FREED.fetch_add(1, Ordering::Relaxed);
}

/// Whether to trim now: large pages were freed since the last trim, and
/// none since the previous check (the process is idle, as far as large
/// pages go), or [`FORCED_TRIM_CHECKS`] checks passed since the last trim. Counts are of [`large_page_freed`] calls.
pub fn should_trim(freed_now: u64, freed_at_last_check: u64, freed_at_last_trim: u64, checks_since_trim: u32) -> bool {
    (freed_now == freed_at_last_check && freed_now != freed_at_last_trim) || checks_since_trim >= FORCED_TRIM_CHECKS
}

/// The trimmer thread's loop: every [`TRIM_CHECK_INTERVAL`] until shutdown.
pub fn run_idle_trimmer(shutdown: &Shutdown) {
    let (mut last_check, mut last_trim, mut checks_since_trim) = (0, 0, 0);
    while shutdown.sleep(TRIM_CHECK_INTERVAL) {
        let now = LARGE_PAGES_FREED.load(Ordering::Relaxed);
        checks_since_trim += 1;
        if should_trim(now, last_check, last_trim, checks_since_trim) {
            release_free_memory();
            (last_trim, checks_since_trim) = (now, 0);
        }
        last_check = now;
    }
}

/// Returns free pages inside the heap to the system (`malloc_trim(0)`
/// releases whole free pages anywhere in every arena, not just at the top).
/// Costs well under a millisecond for a heap of a few tens of MB.
pub fn release_free_memory() {
    // SAFETY: malloc_trim is thread-safe and only returns free memory.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_large_pages_stop() {
        // (freed now, at the last check, at the last trim, checks since, trim?)
        let forced = FORCED_TRIM_CHECKS;
        let cases = [
            (0, 0, 0, 1, false), // nothing freed yet
            (3, 1, 0, 1, false), // still freeing: busy
            (3, 3, 0, 1, true),  // stopped: trim
            (3, 3, 3, 1, false), // trimmed already
            (4, 3, 3, 1, false), // busy again
            (4, 4, 3, 1, true),
            (9, 8, 3, forced, true),      // busy for 10 s: trim all the same
            (0, 0, 0, forced, true),      // ... and with no large page at all
            (0, 0, 0, forced - 1, false), // not yet
        ];
        for (now, check, trim, checks, expected) in cases {
            assert_eq!(should_trim(now, check, trim, checks), expected, "{now} {check} {trim} {checks}");
        }
    }

    #[test]
    fn large_pages_by_blocks_or_bytes() {
        assert!(!is_large_page(1, 1000));
        assert!(is_large_page(LARGE_PAGE_BLOCKS, 0));
        assert!(is_large_page(1, LARGE_PAGE_BYTES));
    }
}
