//! hakmem: a malloc for Linux with thread-local heaps, size-segregated pages and
//! intrusive free lists for small blocks, a BigCache and ELO-learned strategies
//! for large ones, call-site profiling, and probe points an eBPF tracer can watch.
//!
//! Layers, dependencies pointing down only:
//!
//! ```text
//! global_alloc (GlobalAlloc)     hakmem-preload (C ABI, separate crate)
//!          └──────── api (malloc-family semantics, errno, foreign pointers)
//!                     ├── heap (thread-local fast paths, refill)  ── page, size_class
//!                     │     └── segment (4 MiB chunks, pool, abandoned list) ── segment_map
//!                     └── large_path (BigCache, ELO, evolution) ── large, profile
//!                                 all ──► os (the only OS calls), options, stats, probe
//! ```
//!
//! Use it from Rust with
//! `#[global_allocator] static A: hakmem::Hakmem = hakmem::Hakmem;`, or from any
//! program with `LD_PRELOAD=target/release/libhakmem.so`.

#![warn(missing_docs)]
#![allow(clippy::missing_safety_doc)]

#[allow(missing_docs)]
pub mod api;
pub mod counters;
pub mod diag;
mod exit_report;
mod global_alloc;
#[allow(missing_docs)]
pub mod hardening;
pub mod large;
pub mod layout;
#[allow(missing_docs)]
pub mod options;
#[allow(missing_docs)]
pub mod os;
#[allow(missing_docs)]
pub mod probe;
mod report;
mod segment_map;
pub mod small;
#[allow(missing_docs)]
pub mod stats;
pub mod thread;
pub mod vm;

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
/// back to the OS: all of it if `force`, else what has waited the purge delay.
pub fn collect(force: bool) {
    thread::collect(force)
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
