//! glibc allocator settings and the one call that hands freed memory back.
//!
//! By default glibc gives each busy thread its own arena and raises its
//! mmap threshold after a large free, so the megabyte-sized pages the API
//! renders and the syncer applies stay resident after use. *Never* called
//! on a hot path: only at startup and after a burst of large allocations.

/// A page of at least this many blocks is large: after applying one
/// (member) or rendering one from the database (API), freed memory is
/// handed back with [`release_free_memory`]. One block is not worth it; a
/// catch-up page is megabytes.
pub const LARGE_PAGE_BLOCKS: usize = 64;

/// glibc `mallopt` parameters (malloc.h).
const M_TRIM_THRESHOLD: i32 = -1;
const M_MMAP_THRESHOLD: i32 = -3;
const M_ARENA_MAX: i32 = -8;

extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
    fn malloc_trim(pad: usize) -> i32;
}

/// Two arenas and a fixed 256 KiB mmap threshold, so large buffers go back
/// to the system when freed. Call before any other thread exists.
pub fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; called from main
    // before any other thread exists.
    unsafe {
        mallopt(M_ARENA_MAX, 2);
        mallopt(M_MMAP_THRESHOLD, 256 * 1024);
        mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

/// Returns free pages inside the heap to the system (`malloc_trim(0)`
/// releases whole free pages anywhere in every arena, not just at the top).
/// Costs well under a millisecond for a heap of a few tens of MB; called
/// after a large page was applied or rendered, so a finished catch-up does
/// not leave its peak resident.
pub fn release_free_memory() {
    // SAFETY: malloc_trim is thread-safe and only returns free memory.
    unsafe {
        malloc_trim(0);
    }
}
