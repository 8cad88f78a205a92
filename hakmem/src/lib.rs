//! hakmem: a malloc for Linux with thread-local heaps, size-segregated pages and
//! intrusive free lists for small blocks, a BigCache and ELO-learned strategies
//! for large ones, call-site profiling, and probe points an eBPF tracer can watch.
//!
//! # Layers (bottom first; a module imports only modules below it)
//!
//! ```text
//!  7 global_alloc (GlobalAlloc)        hakmem-preload (C ABI, separate crate)
//!  6 api          malloc-family semantics, errno, classify(ptr) → Small|Large|Foreign
//!  5 stats, exit_report   snapshot of every counter; the at-exit report
//!  4 thread       ThreadCtx { small heap, large state }: TLS, life cycle, maintenance
//!  3 small/ | large/      neither imports the other
//!      small: size_class, page, segment, heap (alloc, free, queue, reclaim, purge)
//!      large: block (header), bigcache, elo, evolution, profile, path, thread, stats
//!  2 probe, counters, layout, segment_map, hardening, vm (counted OS memory
//!    calls), thp (does the kernel give huge pages, do they pay: measured), stack
//!    (the one tagged lock-free stack), test_delay (test builds: known costs),
//!    background (the purge thread: start, park, wake, fork; its pass is
//!    registered by `thread`)
//!  1 os (raw system calls), report (stack writer), diag (warn, fatal, bad
//!    pointers), options (parsing, no side effect)
//! ```
//!
//! The total order, and its one exception, are checked by `tests/layering.rs`.
//!
//! # Data model
//!
//! ```text
//! segment_map  one byte per 4 MiB region: Foreign | ClassSegment | Large header
//!              at base | Large header before. Written before a region is handed
//!              out, cleared before it is unmapped; free trusts nothing else.
//! Segment      4 MiB aligned; header (owner, remote_pending, remote lists, page
//!              descriptors), then pages of one kind. Owner = the heap whose thread
//!              alone changes its pages; 0 while pooled or abandoned. Never unmapped
//!              (pooled, purged), so a late remote_pending store always hits mapped memory.
//! Page         blocks of one class, one cache line the owner alone touches:
//!              used + len(free) == capacity <= reserved, len(remote list) <= used;
//!              free, used (and in_full, its sign bit), capacity, queue links. class, block_size, key,
//!              start are fixed while the page is in use.
//! RemoteFrees  per page, beside the descriptors: the blocks other threads freed
//!              into it (CAS push of head and count in one word, swap to collect)
//!              and a copy of the class, so a remote free never reads the page.
//! Heap         queues[c] (head mirrored in first[c], and for sizes up to 1 KiB in
//!              direct[(size + 7) / 8]): pages of class c with blocks to give (in_full
//!              pages are in no queue); segments[k]: owned segments, those with a
//!              free page first. The empty heap's queues hold the read-only empty page.
//! ThreadCtx    { small: Heap (first field: its address is the segments' owner),
//!              large: ThreadState }; EMPTY_CTX until the first allocation; never
//!              unmapped (pooled at thread exit, registered for stats).
//! LargeHeader  16 bytes at the region base (or just before a 4 MiB-aligned block):
//!              len_pages, offset (validates the pointer), site word, magic.
//! ThreadState  BigCache slots (blocks of this thread's sites), ELO sample, counters.
//! ```
//!
//! Use it from Rust with
//! `#[global_allocator] static A: hakmem::Hakmem = hakmem::Hakmem;`, or from any
//! program with `LD_PRELOAD=target/release/libhakmem.so`.

#![warn(missing_docs)]

pub mod api;
pub(crate) mod background;
pub(crate) mod counters;
pub(crate) mod diag;
mod exit_report;
mod global_alloc;
pub(crate) mod hardening;
pub mod large;
pub(crate) mod layout;
pub(crate) mod list;
pub mod options;
pub mod os;
pub mod probe;
mod report;
mod segment_map;
pub(crate) mod small;
pub(crate) mod stack;
pub(crate) mod stats;
#[cfg(feature = "test-delay")]
mod test_delay;
pub mod thp;
pub(crate) mod thread;
pub(crate) mod vm;

pub use global_alloc::Hakmem;
pub use large::stats::LargeStats;
pub use options::Options;
pub use stats::{ClassStats, Stats};

/// A snapshot of hakmem's statistics (see [`Stats`]).
pub fn stats() -> Stats {
    stats::collect()
}

/// Prints the statistics report to stderr (what `HAKMEM_STATS=1` prints at exit).
pub fn print_stats() {
    stats::print(&stats::collect());
}

/// The options this process runs with (parsed from `HAKMEM_*` on first use).
pub fn options() -> Options {
    options::get()
}

/// Collects this thread's pending cross-thread frees and gives free memory
/// back to the OS: all of it if `force`, else what has waited the purge delay
/// (free small-block pages wait 8 delays: `HAKMEM_PURGE_DELAY_MS`).
pub fn collect(force: bool) {
    thread::collect(force)
}

/// Test hook: the background thread's pass over the small-block memory of
/// exited threads, now and with no delay (every abandoned segment is
/// visited, its free pages and the pool purged at once), whatever the real
/// thread is doing. Returns whether it left anything for a later pass.
#[doc(hidden)]
pub fn purge_unowned_for_test() -> bool {
    small::reclaim::purge_unowned(os::monotonic_ns(), 0)
}

/// Allocates `size` bytes attributed to call site `site` (any stable number,
/// e.g. a return address); null on failure. Free with [`free`].
pub fn alloc_at(size: usize, site: usize) -> *mut u8 {
    api::malloc_at(size, site)
}

/// Allocates `size` bytes attributed to the caller's source location.
#[track_caller]
pub fn alloc_here(size: usize) -> *mut u8 {
    api::malloc_at(
        size,
        large::profile::rust_site(core::panic::Location::caller()),
    )
}

/// Frees a block from [`alloc_at`] / [`alloc_here`].
///
/// # Safety
/// `p` is null or a live block from hakmem.
pub unsafe fn free(p: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe { api::free(p) }
}

/// Bytes usable in the block at `p`.
///
/// # Safety
/// `p` is null or a live block from hakmem.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    unsafe { api::usable_size(p) }
}

/// True if `p` points into memory hakmem manages.
pub fn owns(p: *const u8) -> bool {
    api::owns(p)
}
