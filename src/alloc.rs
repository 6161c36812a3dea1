//! glibc allocator settings, and handing freed memory back when idle.
//!
//! By default glibc gives each busy thread its own arena and moves its mmap
//! threshold after a large free, so the megabyte-sized pages the API
//! renders and the syncer applies stay resident after use. The first
//! answer (a fixed 256 KiB mmap threshold and `malloc_trim` after every
//! large page) kept memory low but made every large page mmap, fault in,
//! zero and unmap its buffers: a profile of random uncached pages showed
//! 71 % kernel time there. Now the API renders into a reusable buffer per
//! worker (`api/page.rs`), so only a page's final body is mapped, and a
//! trimmer thread hands free memory back once no large page was freed for
//! a check interval (after a catch-up, within about a second). *Never*
//! trims on a request's path. Why not a higher mmap threshold, so that
//! bodies come from the heap as well: measured, a 32 MiB threshold left a
//! member at 36 MB after a catch-up of full blocks, against 25 MB with
//! 256 KiB, trimmed all the same (the heap fragments).

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
/// pages go). Counts are of [`large_page_freed`] calls.
pub fn should_trim(freed_now: u64, freed_at_last_check: u64, freed_at_last_trim: u64) -> bool {
    freed_now == freed_at_last_check && freed_now != freed_at_last_trim
}

/// The trimmer thread's loop: every [`TRIM_CHECK_INTERVAL`] until shutdown.
pub fn run_idle_trimmer(shutdown: &Shutdown) {
    let (mut last_check, mut last_trim) = (0, 0);
    while shutdown.sleep(TRIM_CHECK_INTERVAL) {
        let now = LARGE_PAGES_FREED.load(Ordering::Relaxed);
        if should_trim(now, last_check, last_trim) {
            release_free_memory();
            last_trim = now;
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
        // (freed now, at the last check, at the last trim, trim?)
        let cases = [
            (0, 0, 0, false), // nothing freed yet
            (3, 1, 0, false), // still freeing: busy
            (3, 3, 0, true),  // stopped: trim
            (3, 3, 3, false), // trimmed already
            (4, 3, 3, false), // busy again
            (4, 4, 3, true),
        ];
        for (now, check, trim, expected) in cases {
            assert_eq!(should_trim(now, check, trim), expected, "{now} {check} {trim}");
        }
    }

    #[test]
    fn large_pages_by_blocks_or_bytes() {
        assert!(!is_large_page(1, 1000));
        assert!(is_large_page(LARGE_PAGE_BLOCKS, 0));
        assert!(is_large_page(1, LARGE_PAGE_BYTES));
    }
}
