//! malloc-family semantics shared by the Rust API and the C ABI: sizes,
//! alignment, errno, realloc rules, foreign-pointer handling.
//!
//! Everything here routes by size: up to `MAX_CLASS_SIZE` to the thread's heap
//! (`heap.rs`), above to large blocks (`large_path.rs`), and the big-page
//! classes (64-512 KiB) of a thread that churns large blocks to large blocks
//! too ([`small_serves`]). While a tracer is
//! attached, each entry point takes the traced twin that times it.

use crate::large::block::{self, LargeHeader};
use crate::large::path as large_path;
use crate::layout::{MAX_REQUEST, SEGMENT_SIZE};
use crate::os;
use crate::probe::{self, Component, GrantOp};
use crate::segment_map::{self, Region};
use crate::small::size_class::{
    class_for_aligned, class_of, class_of_computed, MAX_CLASS_SIZE, MAX_MEDIUM_SIZE, TABLE_MAX,
};
use crate::thread;
use core::ptr;

/// Who owns a pointer: the one region match free, realloc, usable_size and
/// owns share (one segment-map load; no memory of the pointer is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A block of a size-class segment (if a block start at all: debug checks).
    Small,
    /// Inside a region where a large block starts; the region kind says
    /// where its header is (validated by [`large_header`]).
    Large(Region),
    /// Not hakmem's (null included).
    Foreign,
}

/// The owner of address `a`.
#[inline(always)]
pub(crate) fn classify(a: usize) -> Owner {
    match segment_map::lookup(a) {
        Region::ClassSegment => Owner::Small,
        Region::Foreign => Owner::Foreign,
        r => Owner::Large(r),
    }
}

/// The validated header of the large block at `p` in a region of kind `r`,
/// or None (reported as a foreign pointer of `op` when `report`).
#[inline]
fn large_header(op: &str, p: *mut u8, r: Region, report: bool) -> Option<*mut LargeHeader> {
    // SAFETY: `r` is the segment map's large kind for `p`.
    let h = unsafe { block::header(p as usize, r) };
    if h.is_none() && report {
        foreign_pointer(p, op);
    }
    h
}

/// A large allocation with this thread's large-block state.
#[inline]
fn alloc_large(size: usize, align: usize, site: usize, zero: bool) -> *mut u8 {
    large_path::alloc(size, align, site, zero, thread::LargeCtx)
}

/// A pointer hakmem never handed out reached `op`. The pointer comes
/// first, in the register that holds it on entry to `free` (see
/// `small::free::free_local_slow`).
#[cold]
#[inline(never)]
fn foreign_pointer(p: *mut u8, op: &str) {
    crate::diag::foreign_pointer(op, p, || crate::options::get().verbose);
}

pub use crate::layout::MIN_ALIGN;

/// `malloc(size)` with a call site (0 = unknown) for large-block profiling.
#[inline(always)]
pub fn malloc_at(size: usize, site: usize) -> *mut u8 {
    if probe::enabled() {
        return malloc_traced(size, site);
    }
    malloc_untraced(size, site)
}

/// Whether the thread's small heap serves a request of `size` bytes: up to
/// the medium classes always; up to `MAX_CLASS_SIZE` unless the thread
/// churns large blocks (`thread::churns_large`) and such requests are a
/// small share of its large ones, served from resident free span memory
/// (`large_path::takes_mid_block`): then the span heap does
/// (`large::thread::CHURN_BYTES` says why). Requests up to 64 KiB pay one
/// comparison, as before.
///
/// `takes_mid_block` counts the request towards that share: one call per
/// request. A path that must look before it decides asks
/// [`small_serves_surely`].
#[inline(always)]
fn small_serves(size: usize) -> bool {
    small_serves_surely(size)
        || (size <= MAX_CLASS_SIZE && !large_path::takes_mid_block(size, thread::LargeCtx))
}

/// Whether the small heap serves `size` bytes whatever [`small_serves`]'s
/// share rule says: without side effects.
#[inline(always)]
fn small_serves_surely(size: usize) -> bool {
    size <= MAX_MEDIUM_SIZE || (size <= MAX_CLASS_SIZE && !thread::churns_large())
}

/// The table's sizes are tested first, and find their page through the
/// heap's direct array: one compare and one load before the pop. Sizes
/// above the medium classes go out of line ([`malloc_untraced_above_medium`]):
/// their share test calls a function, and inlined here that call made every
/// malloc save two callee-saved registers (the entry points' prologue).
#[inline(always)]
fn malloc_untraced(size: usize, site: usize) -> *mut u8 {
    if size <= TABLE_MAX {
        thread::alloc_direct(size)
    } else if size <= MAX_MEDIUM_SIZE {
        thread::alloc_class(class_of_computed(size))
    } else {
        malloc_untraced_above_medium(size, site)
    }
}

/// [`malloc_untraced`] of more than `MAX_MEDIUM_SIZE` bytes: the big-page
/// classes if the small heap serves them ([`small_serves`]), else a large block.
#[inline(never)]
fn malloc_untraced_above_medium(size: usize, site: usize) -> *mut u8 {
    if small_serves(size) {
        thread::alloc_class(class_of_computed(size))
    } else {
        // The caller saw no tracer attached.
        large_path::alloc_untraced(size, site, thread::LargeCtx)
    }
}

/// `malloc(size)`.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    malloc_at(size, 0)
}

/// `malloc` while a tracer is attached. A small block popped from the free
/// list while no sample is due takes the granted fast path, inlined here:
/// the untraced pop plus one decrement of this thread's malloc grant, which
/// counts it (a Malloc and a SmallFast: see `probe`'s module docs).
/// Anything else (a refill, a large block, a timed call, a thread allocating
/// for hakmem itself) takes [`malloc_traced_slow`].
#[inline(always)]
fn malloc_traced(size: usize, site: usize) -> *mut u8 {
    // The whole traced path decides again (`alloc_traced`): no counting here.
    if small_serves_surely(size) {
        let (ctx, grants) = thread::current_with_grants();
        if probe::take_grant_in(grants, GrantOp::Malloc) {
            let b = thread::pop_class_in(ctx, class_of(size));
            if !b.is_null() {
                return b;
            }
            return malloc_traced_refill(size, site);
        }
    }
    malloc_traced_slow(size, site)
}

/// The granted fast path found the free list empty: the grant goes back
/// and the call takes the whole traced path. Out of line, so that the fast
/// path makes no call and keeps no registers to save.
#[cold]
#[inline(never)]
fn malloc_traced_refill(size: usize, site: usize) -> *mut u8 {
    probe::return_grant(GrantOp::Malloc);
    malloc_traced_slow(size, site)
}

#[cold]
#[inline(never)]
fn malloc_traced_slow(size: usize, site: usize) -> *mut u8 {
    if !probe::tracing() {
        return malloc_untraced(size, site);
    }
    let p = traced(size, move || alloc_traced(size, site));
    thread::mirror_trace_grants();
    p
}

/// Runs one malloc-family call under the tracer: the whole call is one
/// `Malloc` event (sub-components emit their own events inside it).
#[cold]
#[inline(never)]
fn traced(size: usize, f: impl FnOnce() -> *mut u8) -> *mut u8 {
    // Large blocks are rare and costly: a sample would miss them, time them all.
    let t = probe::start_op(size > MAX_CLASS_SIZE);
    let p = f();
    probe::emit(Component::Malloc, t, size as u64);
    p
}

/// `malloc` while traced: the small path reports fast path vs refill.
fn alloc_traced(size: usize, site: usize) -> *mut u8 {
    if small_serves(size) {
        thread::alloc_class_traced(class_of(size))
    } else {
        alloc_large(size, MIN_ALIGN, site, false)
    }
}

/// `calloc(n, size)`: ENOMEM on overflow; memory fresh from the OS is not cleared twice.
pub fn calloc_at(n: usize, size: usize, site: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let zeroed = || {
        if small_serves(total) {
            if probe::tracing() {
                let p = thread::alloc_class_traced(class_of(total));
                if !p.is_null() {
                    // SAFETY: a fresh block of at least `total` bytes.
                    unsafe { ptr::write_bytes(p, 0, total) };
                }
                p
            } else {
                thread::alloc_class_zeroed(class_of(total), total)
            }
        } else {
            alloc_large(total, MIN_ALIGN, site, true)
        }
    };
    if probe::tracing() {
        traced(total, zeroed)
    } else {
        zeroed()
    }
}

/// `free(p)`: null is a no-op; a pointer hakmem did not hand out is reported, not freed.
///
/// # Safety
/// `p` is null, or a block from this allocator that the caller no longer uses.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    if probe::enabled() {
        // SAFETY: forwarded contract.
        return unsafe { free_traced(p) };
    }
    // SAFETY: forwarded contract.
    unsafe { free_untraced(p) }
}

/// `free` with no tracer attached: a span block goes to the BigCache hit's
/// free without a second look at the tracer.
///
/// # Safety
/// As [`free`].
#[inline(always)]
unsafe fn free_untraced(p: *mut u8) {
    match classify(p as usize) {
        Owner::Large(Region::Span) => free_span_untraced(p),
        // SAFETY: forwarded contract.
        owner => unsafe { free_owned(p, owner) },
    }
}

/// [`free_large`] of a span block with no tracer attached: the BigCache
/// hit's free, which calls nothing (so this function saves no registers),
/// else the whole of [`free_large`].
#[inline(never)]
fn free_span_untraced(p: *mut u8) {
    if !large_path::free_hit_untraced(p as usize, thread::LargeCtx) {
        free_large_general(p, Region::Span);
    }
}

/// Frees `p`, whose owner is `owner` (`classify(p)`).
///
/// # Safety
/// As [`free`]; `owner` is `classify(p as usize)`.
#[inline(always)]
unsafe fn free_owned(p: *mut u8, owner: Owner) {
    match owner {
        // SAFETY: the map says this is a size-class segment; the caller's contract.
        Owner::Small => unsafe { thread::free_small(p as usize) },
        Owner::Foreign => {
            if !p.is_null() {
                foreign_pointer(p, "free");
            }
        }
        Owner::Large(r) => free_large(p, r),
    }
}

#[cold]
#[inline(never)]
fn free_large(p: *mut u8, r: Region) {
    if r == Region::Span && large_path::free_hit(p as usize, thread::LargeCtx) {
        return;
    }
    free_large_general(p, r);
}

/// [`free_large`] after the BigCache hit's free: the header validated, then
/// the large path's free.
#[cold]
#[inline(never)]
fn free_large_general(p: *mut u8, r: Region) {
    if let Some(h) = large_header("free", p, r, true) {
        // SAFETY: a validated header of a block the caller gave up (free's contract).
        unsafe { large_path::free(p as usize, h, thread::LargeCtx) }
    }
}

/// `free` while a tracer is attached. The granted fast path (see
/// `malloc_traced`): a small block while no sample is due is freed as
/// untraced, counted by one decrement of this thread's free grant.
///
/// # Safety
/// As [`free`].
#[inline(always)]
unsafe fn free_traced(p: *mut u8) {
    if classify(p as usize) == Owner::Small {
        let (ctx, grants) = thread::current_with_grants();
        if probe::take_grant_in(grants, GrantOp::Free) {
            // SAFETY: forwarded contract; the map says it is a small
            // block; `ctx` is this thread's context.
            return unsafe { thread::free_small_in(ctx, p as usize) };
        }
    }
    // SAFETY: forwarded contract.
    unsafe { free_traced_slow(p) }
}

/// `free` while a tracer is attached, off the counting fast path.
///
/// # Safety
/// As [`free`].
#[cold]
#[inline(never)]
unsafe fn free_traced_slow(p: *mut u8) {
    if !probe::tracing() {
        // SAFETY: forwarded contract.
        return unsafe { free_untraced(p) };
    }
    // SAFETY: forwarded contract.
    unsafe { traced_free(p) };
    thread::mirror_trace_grants();
}

/// `free` under the tracer: one `Free` event.
///
/// # Safety
/// As [`free`].
#[cold]
#[inline(never)]
unsafe fn traced_free(p: *mut u8) {
    let owner = classify(p as usize);
    // Large blocks are always timed; the block's size (the event's `arg`) is
    // looked up for timed frees only: it is the tracer's cost, not free's, so
    // it stays outside the timed region and off the counted-only path.
    let large = matches!(owner, Owner::Large(_));
    let size = if large || probe::sampling_next() {
        // SAFETY: forwarded contract.
        unsafe { usable_size_quiet(p) }
    } else {
        0
    };
    let t = probe::start_op(large);
    // SAFETY: forwarded contract; `owner` is `classify(p)`.
    unsafe { free_owned(p, owner) };
    probe::emit(Component::Free, t, size as u64);
}

/// `malloc_usable_size(p)`: 0 for null and for pointers hakmem did not hand out.
///
/// # Safety
/// `p` is null or a live block.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    unsafe { usable_size_of(p, classify(p as usize), true) }
}

/// As [`usable_size`] without reporting (for tracing).
unsafe fn usable_size_quiet(p: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    unsafe { usable_size_of(p, classify(p as usize), false) }
}

/// Usable size of `p` owned by `owner`; 0 (reported if `report`) when foreign.
///
/// # Safety
/// `p` is null or a live block; `owner` is `classify(p as usize)`.
unsafe fn usable_size_of(p: *mut u8, owner: Owner, report: bool) -> usize {
    match owner {
        // SAFETY: the map says this is a size-class segment.
        Owner::Small => unsafe { crate::small::free::usable_size(p as usize) },
        Owner::Foreign => {
            if report && !p.is_null() {
                foreign_pointer(p, "malloc_usable_size");
            }
            0
        }
        Owner::Large(r) => {
            large_header("malloc_usable_size", p, r, report).map_or(0, |h| block::usable_size(h))
        }
    }
}

/// True if `p` is inside a segment or a large block's mapping of hakmem's.
pub fn owns(p: *const u8) -> bool {
    let a = p as usize;
    match classify(a) {
        Owner::Foreign => false,
        Owner::Small => true,
        // The whole arena is one mapping of ours.
        Owner::Large(Region::Span) => crate::large::span_heap::contains(a),
        // A large block's mapping may cover only part of its 4 MiB region;
        // the kernel can put someone else's mapping in the rest.
        Owner::Large(r) => {
            let base = a & !(SEGMENT_SIZE - 1);
            let (h, start) = if r == Region::LargeHeaderAtBase {
                (base, base)
            } else {
                (base - block::HEADER_SIZE, base - os::OS_PAGE)
            };
            // SAFETY: the region is registered, so its header is mapped.
            let len = unsafe { (*(h as *const LargeHeader)).len_pages } as usize;
            a < start + len * os::OS_PAGE
        }
    }
}

/// `realloc(p, size)`: null `p` allocates; size 0 frees and returns null (as
/// glibc); on failure returns null with ENOMEM and leaves the old block intact.
///
/// # Safety
/// `p` is null or a live block from this allocator.
pub unsafe fn realloc_at(p: *mut u8, size: usize, site: usize) -> *mut u8 {
    if p.is_null() {
        return malloc_at(size, site);
    }
    if size == 0 {
        // SAFETY: forwarded contract.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    if probe::tracing() {
        // SAFETY: forwarded contract.
        return unsafe { traced_realloc(p, size, site) };
    }
    // SAFETY: forwarded contract.
    unsafe { resize(p, size, site, false) }
}

/// `realloc` while traced: one `Realloc` event per call, whether the block
/// stays or moves (the move's allocation and free report their inner
/// components only, not a second top-level malloc and free).
#[cold]
#[inline(never)]
unsafe fn traced_realloc(p: *mut u8, size: usize, site: usize) -> *mut u8 {
    let t = probe::start_op(size > MAX_CLASS_SIZE);
    // SAFETY: forwarded contract.
    let q = unsafe { resize(p, size, site, true) };
    probe::emit(Component::Realloc, t, size as u64);
    q
}

/// The body of `realloc` for a live `p` and `size > 0`; `traced` takes the
/// move's allocation and free without their top-level events.
///
/// # Safety
/// As [`realloc_at`].
unsafe fn resize(p: *mut u8, size: usize, site: usize, traced: bool) -> *mut u8 {
    let a = p as usize;
    let owner = classify(a);
    let old = match owner {
        // SAFETY: the map says so.
        Owner::Small => unsafe { crate::small::free::usable_size(a) },
        Owner::Foreign => {
            foreign_pointer(p, "realloc");
            os::set_errno(libc::EINVAL);
            return ptr::null_mut();
        }
        Owner::Large(r) => match large_header("realloc", p, r, true) {
            Some(h) => {
                let old = block::usable_size(h);
                // Any large block grows in place where it can: a span block
                // of a big-page class (`small_serves`) as well.
                if size > old
                    // SAFETY: a validated header of a live block (realloc's contract).
                    && unsafe { large_path::grow_in_place(a, h, size, thread::LargeCtx) }
                {
                    return p;
                }
                old
            }
            None => {
                os::set_errno(libc::EINVAL);
                return ptr::null_mut();
            }
        },
    };
    // Keep the block when the new size fits and would not waste more than half.
    if size <= old && size >= old / 2 {
        return p;
    }
    // A block that grew once is likely to grow again: moving it to a class one
    // step (12.5%) above the request halves the copies of a buffer grown by small
    // steps (the `realloc` scenario spent half its time in memmove), at the
    // waste mimalloc's 25%-spaced classes always have.
    let want = if size > old && size <= MAX_CLASS_SIZE {
        (size + size / 8).min(MAX_CLASS_SIZE)
    } else {
        size
    };
    let q = if traced {
        alloc_traced(want, site)
    } else {
        malloc_at(want, site)
    };
    if q.is_null() {
        return q; // errno is ENOMEM; `p` untouched
    }
    // SAFETY: both blocks are live and distinct; `old` and `size` bound their lengths.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.min(size));
        if traced {
            free_owned(p, owner);
        } else {
            free_classified(p, owner);
        }
    }
    q
}

/// Frees `p` already classified (realloc looks a pointer up once).
///
/// # Safety
/// As [`free`]; `owner` is `classify(p as usize)`.
#[inline]
unsafe fn free_classified(p: *mut u8, owner: Owner) {
    if probe::tracing() {
        // SAFETY: forwarded contract (the traced twin times the whole free).
        return unsafe { traced_free(p) };
    }
    // SAFETY: forwarded contract.
    unsafe { free_owned(p, owner) }
}

/// A block of `size` bytes aligned to `align` (a power of two), or null with ENOMEM.
pub fn aligned_at(align: usize, size: usize, site: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= MIN_ALIGN && (align <= 8 || size > 8) {
        return malloc_at(size, site);
    }
    if probe::tracing() {
        return traced(size, move || aligned_untimed(align, size, site));
    }
    aligned_untimed(align, size, site)
}

fn aligned_untimed(align: usize, size: usize, site: usize) -> *mut u8 {
    if size > MAX_REQUEST || align > MAX_REQUEST {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    // A block of at least one byte, as malloc(0): a large block of 0 bytes
    // would start at the very end of its mapping, outside memory hakmem owns.
    let size = size.max(1);
    match class_for_aligned(size, align) {
        Some(c) => {
            if probe::tracing() {
                thread::alloc_class_traced(c)
            } else {
                thread::alloc_class(c)
            }
        }
        None => alloc_large(size, align, site, false),
    }
}
