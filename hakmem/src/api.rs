//! malloc-family semantics shared by the Rust API and the C ABI: sizes,
//! alignment, errno, realloc rules, foreign-pointer handling.
//!
//! Everything here routes by size: up to `MAX_CLASS_SIZE` to the thread's heap
//! (`heap.rs`), above to large blocks (`large_path.rs`). While a tracer is
//! attached, each entry point takes the traced twin that times it.

use crate::heap;
use crate::large;
use crate::large_path;
use crate::os;
use crate::probe::{self, Component};
use crate::segment_map::{self, Region};
use crate::size_class::{class_for_aligned, MAX_CLASS_SIZE};
use crate::stats::GLOBAL;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

/// Largest request hakmem tries to serve (as glibc: PTRDIFF_MAX).
const MAX_REQUEST: usize = isize::MAX as usize - 2 * crate::segment::SEGMENT_SIZE;

/// Alignment every `malloc` result has (for blocks of more than 8 bytes).
pub const MIN_ALIGN: usize = 16;

/// `malloc(size)` with a call site (0 = unknown) for large-block profiling.
#[inline(always)]
pub fn malloc_at(size: usize, site: usize) -> *mut u8 {
    if probe::tracing() {
        return traced(size, move || alloc_traced(size, site));
    }
    if size <= MAX_CLASS_SIZE {
        heap::alloc_small(size)
    } else {
        large_path::alloc(size, MIN_ALIGN, site, false)
    }
}

/// `malloc(size)`.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    malloc_at(size, 0)
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
    if size <= MAX_CLASS_SIZE {
        heap::alloc_class_traced(crate::size_class::class_of(size))
    } else {
        large_path::alloc(size, MIN_ALIGN, site, false)
    }
}

/// `calloc(n, size)`: ENOMEM on overflow; memory fresh from the OS is not cleared twice.
pub fn calloc_at(n: usize, size: usize, site: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let zeroed = || {
        if total <= MAX_CLASS_SIZE {
            let p = if probe::tracing() {
                alloc_traced(total, site)
            } else {
                heap::alloc_small(total)
            };
            if !p.is_null() {
                // SAFETY: a fresh block of at least `total` bytes.
                unsafe { ptr::write_bytes(p, 0, total) };
            }
            p
        } else {
            large_path::alloc(total, MIN_ALIGN, site, true)
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
    if probe::tracing() {
        // SAFETY: forwarded contract.
        return unsafe { traced_free(p) };
    }
    // SAFETY: forwarded contract.
    unsafe { free_untraced(p) }
}

#[inline(always)]
unsafe fn free_untraced(p: *mut u8) {
    let a = p as usize;
    match segment_map::lookup(a) {
        // SAFETY: the map says this is a size-class segment.
        Region::ClassSegment => unsafe { heap::free_class(a) },
        Region::Foreign => {
            if !p.is_null() {
                foreign_pointer("free", p);
            }
        }
        // SAFETY: the region kind is one of the large kinds.
        r => unsafe { large_path::free(a, r) },
    }
}

#[cold]
#[inline(never)]
unsafe fn traced_free(p: *mut u8) {
    // Large blocks are always timed; the block's size (the event's `arg`) is
    // looked up for timed frees only: it is the tracer's cost, not free's, so
    // it stays outside the timed region and off the counted-only path.
    let large = !matches!(
        segment_map::lookup(p as usize),
        Region::ClassSegment | Region::Foreign
    );
    let size = if large || probe::sampling_next() {
        // SAFETY: forwarded contract.
        unsafe { usable_size_quiet(p) }
    } else {
        0
    };
    let t = probe::start_op(large);
    // SAFETY: forwarded contract.
    unsafe { free_untraced(p) };
    probe::emit(Component::Free, t, size as u64);
}

/// `malloc_usable_size(p)`: 0 for null and for pointers hakmem did not hand out.
///
/// # Safety
/// `p` is null or a live block.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    let a = p as usize;
    match segment_map::lookup(a) {
        // SAFETY: the map says this is a size-class segment.
        Region::ClassSegment => unsafe { heap::usable_size_class(a) },
        Region::Foreign => {
            if !p.is_null() {
                foreign_pointer("malloc_usable_size", p);
            }
            0
        }
        // SAFETY: large kinds.
        r => match unsafe { large::header(a, r) } {
            Some(h) => large::usable_size(h),
            None => {
                foreign_pointer("malloc_usable_size", p);
                0
            }
        },
    }
}

/// As [`usable_size`] without reporting (for tracing).
unsafe fn usable_size_quiet(p: *mut u8) -> usize {
    let a = p as usize;
    match segment_map::lookup(a) {
        // SAFETY: as in usable_size.
        Region::ClassSegment => unsafe { heap::usable_size_class(a) },
        Region::Foreign => 0,
        // SAFETY: as in usable_size.
        r => unsafe { large::header(a, r) }.map_or(0, |h| large::usable_size(h)),
    }
}

/// True if `p` is inside a segment or a large block's mapping of hakmem's.
pub fn owns(p: *const u8) -> bool {
    let a = p as usize;
    match segment_map::lookup(a) {
        Region::Foreign => false,
        Region::ClassSegment => true,
        // A large block's mapping may cover only part of its 4 MiB region;
        // the kernel can put someone else's mapping in the rest.
        r => {
            let base = a & !(crate::segment::SEGMENT_SIZE - 1);
            let (h, start) = if r == Region::LargeHeaderAtBase {
                (base, base)
            } else {
                (base - large::HEADER_SIZE, base - os::OS_PAGE)
            };
            // SAFETY: the region is registered, so its header is mapped.
            let len = unsafe { (*(h as *const large::LargeHeader)).len_pages } as usize;
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
    let region = segment_map::lookup(a);
    let old = match region {
        // SAFETY: the map says so.
        Region::ClassSegment => unsafe { heap::usable_size_class(a) },
        Region::Foreign => {
            foreign_pointer("realloc", p);
            os::set_errno(libc::EINVAL);
            return ptr::null_mut();
        }
        // SAFETY: large kinds.
        r => match unsafe { large::header(a, r) } {
            Some(h) => {
                let old = large::usable_size(h);
                if size > old && size > MAX_CLASS_SIZE && large_path::grow_in_place(a, h, size) {
                    return p;
                }
                old
            }
            None => {
                foreign_pointer("realloc", p);
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
            free_untraced(p);
        } else {
            free(p);
        }
    }
    q
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
                heap::alloc_class_traced(c)
            } else {
                heap::alloc_class(c)
            }
        }
        None => large_path::alloc(size, align, site, false),
    }
}

/// Whether `size` is beyond anything hakmem will try to map.
pub fn too_big(size: usize) -> bool {
    size > MAX_REQUEST
}

// ---------------------------------------------------------------------------
// Bad pointers
// ---------------------------------------------------------------------------

static FOREIGN_REPORTED: AtomicBool = AtomicBool::new(false);

/// A pointer hakmem never handed out reached `op`: reported once (every time
/// with `HAKMEM_VERBOSE=1`) and left alone; in debug builds, abort.
#[cold]
#[inline(never)]
pub fn foreign_pointer(op: &str, p: *mut u8) {
    GLOBAL.foreign_frees.fetch_add(1, Ordering::Relaxed);
    let debug = cfg!(any(debug_assertions, feature = "debug-checks"));
    if debug || !FOREIGN_REPORTED.swap(true, Ordering::Relaxed) || crate::options::get().verbose {
        use core::fmt::Write;
        let mut w = crate::report::StackWriter::<200>::new();
        let _ = writeln!(
            w,
            "hakmem: {op}({p:p}): pointer not allocated by hakmem; {}",
            if debug {
                "aborting (debug build)"
            } else {
                "ignored (reported once; HAKMEM_VERBOSE=1 reports each)"
            }
        );
        w.flush_stderr();
    }
    if debug {
        // SAFETY: abort never returns.
        unsafe { libc::abort() };
    }
}

fn fatal(msg: core::fmt::Arguments) -> ! {
    use core::fmt::Write;
    let mut w = crate::report::StackWriter::<200>::new();
    let _ = w.write_fmt(msg);
    let _ = w.write_str("\n");
    w.flush_stderr();
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

/// Debug check: `p` lies in a hakmem page but is not the start of a block.
#[cold]
pub fn invalid_pointer(op: &str, p: *mut u8, class: usize) -> ! {
    fatal(format_args!(
        "hakmem: {op}({p:p}): not the start of a block (size class {class})"
    ))
}

/// Debug check: `p` is already free.
#[cold]
pub fn double_free(p: *mut u8, class: usize) -> ! {
    fatal(format_args!(
        "hakmem: double free of {p:p} (size class {class})"
    ))
}

/// Debug check: a large block's header magic is wrong.
#[cold]
pub fn corrupt_header(p: *mut u8) -> ! {
    fatal(format_args!(
        "hakmem: corrupt large-block header before {p:p}"
    ))
}
