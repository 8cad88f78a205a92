//! `libmimalloc3.so`: mimalloc 3 behind the C allocation API, for `LD_PRELOAD`.
//!
//! Debian ships mimalloc 2 only, and one binary cannot link both major
//! versions (the same `mi_*` symbols), so hakmem-bench links mimalloc 2 and
//! preloads this library for mimalloc 3. Each function is a plain forward to
//! the matching `mi_*` entry point (mimalloc's own override layer does the
//! same), so the cost of preloading is one jump. The C library is compiled by
//! `build.rs` (it says why not by libmimalloc-sys) and exported only through
//! these functions: a cdylib exports its Rust `#[no_mangle]` items alone.

use std::ffi::{c_int, c_void};

// The C API of mimalloc 3 (mimalloc.h); build.rs compiles it and links it in.
extern "C" {
    fn mi_malloc(size: usize) -> *mut c_void;
    fn mi_calloc(count: usize, size: usize) -> *mut c_void;
    fn mi_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn mi_reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void;
    fn mi_free(p: *mut c_void);
    fn mi_posix_memalign(out: *mut *mut c_void, alignment: usize, size: usize) -> c_int;
    fn mi_aligned_alloc(alignment: usize, size: usize) -> *mut c_void;
    fn mi_memalign(alignment: usize, size: usize) -> *mut c_void;
    fn mi_valloc(size: usize) -> *mut c_void;
    fn mi_pvalloc(size: usize) -> *mut c_void;
    fn mi_malloc_usable_size(p: *const c_void) -> usize;
    fn mi_version() -> c_int;
}

/// `malloc(3)`.
///
/// # Safety
/// The C contract of `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: mi_malloc has malloc's contract.
    unsafe { mi_malloc(size) }
}

/// `calloc(3)`.
///
/// # Safety
/// The C contract of `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    // SAFETY: mi_calloc has calloc's contract (overflow gives NULL + ENOMEM).
    unsafe { mi_calloc(count, size) }
}

/// `realloc(3)`.
///
/// # Safety
/// `p` is NULL or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { mi_realloc(p, size) }
}

/// `reallocarray(3)`.
///
/// # Safety
/// `p` is NULL or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { mi_reallocarray(p, count, size) }
}

/// `free(3)`.
///
/// # Safety
/// `p` is NULL or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { mi_free(p) }
}

/// `posix_memalign(3)`.
///
/// # Safety
/// `out` is valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    out: *mut *mut c_void,
    alignment: usize,
    size: usize,
) -> c_int {
    // SAFETY: forwarded with the caller's guarantee; mimalloc checks the alignment.
    unsafe { mi_posix_memalign(out, alignment, size) }
}

/// `aligned_alloc(3)`.
///
/// # Safety
/// The C contract of `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: mimalloc checks the alignment.
    unsafe { mi_aligned_alloc(alignment, size) }
}

/// `memalign(3)`.
///
/// # Safety
/// The C contract of `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: mimalloc checks the alignment.
    unsafe { mi_memalign(alignment, size) }
}

/// `valloc(3)`.
///
/// # Safety
/// The C contract of `valloc`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: mi_valloc has valloc's contract.
    unsafe { mi_valloc(size) }
}

/// `pvalloc(3)`.
///
/// # Safety
/// The C contract of `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: mi_pvalloc has pvalloc's contract.
    unsafe { mi_pvalloc(size) }
}

/// `malloc_usable_size(3)`.
///
/// # Safety
/// `p` is NULL or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { mi_malloc_usable_size(p) }
}

/// The compiled mimalloc's version as `mi_version` reports it (major ×
/// 10,000 + minor × 100 + patch, e.g. 30302), so a caller can check which
/// major version it got.
#[no_mangle]
pub extern "C" fn mimalloc3_version() -> c_int {
    // SAFETY: mi_version has no preconditions.
    unsafe { mi_version() }
}
