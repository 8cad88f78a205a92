//! libhakmem.so: the C ABI over `hakmem::api`, a thin translation layer.
//!
//! Each function maps C's contract (argument checks, return value, errno) onto
//! `hakmem::api` and nothing more; allocator logic lives in the hakmem crate.
//! The caller's return address is the call site for large-block profiling.

// The safety contract of every function here is the C library's (malloc(3),
// posix_memalign(3), ...): pointers passed in come from this allocator or are null.
#![allow(clippy::missing_safety_doc)]

use core::ffi::c_void;
use hakmem_core::api;
use libc::{c_int, size_t};

// malloc, calloc and realloc are assembly trampolines that pass their return
// address (the call site, `[rsp]` at entry) as one more argument to the Rust
// function, then jump to it: exact, and free of any frame-layout assumption.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn malloc(_size: size_t) -> *mut c_void {
    core::arch::naked_asm!("mov rsi, [rsp]", "jmp {}", sym hak_malloc_at_site)
}

#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn calloc(_n: size_t, _size: size_t) -> *mut c_void {
    core::arch::naked_asm!("mov rdx, [rsp]", "jmp {}", sym hak_calloc_at_site)
}

#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn realloc(_p: *mut c_void, _size: size_t) -> *mut c_void {
    core::arch::naked_asm!("mov rdx, [rsp]", "jmp {}", sym hak_realloc_at_site)
}

extern "C" fn hak_malloc_at_site(size: size_t, site: usize) -> *mut c_void {
    api::malloc_at(size, site) as *mut c_void
}

extern "C" fn hak_calloc_at_site(n: size_t, size: size_t, site: usize) -> *mut c_void {
    api::calloc_at(n, size, site) as *mut c_void
}

unsafe extern "C" fn hak_realloc_at_site(p: *mut c_void, size: size_t, site: usize) -> *mut c_void {
    // SAFETY: C's contract for realloc.
    unsafe { api::realloc_at(p as *mut u8, size, site) as *mut c_void }
}

#[cfg(not(target_arch = "x86_64"))]
#[no_mangle]
pub extern "C" fn malloc(size: size_t) -> *mut c_void {
    hak_malloc_at_site(size, 0)
}

#[cfg(not(target_arch = "x86_64"))]
#[no_mangle]
pub extern "C" fn calloc(n: size_t, size: size_t) -> *mut c_void {
    hak_calloc_at_site(n, size, 0)
}

#[cfg(not(target_arch = "x86_64"))]
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: size_t) -> *mut c_void {
    // SAFETY: C's contract for realloc.
    unsafe { hak_realloc_at_site(p, size, 0) }
}

/// Call site for the entry points without a trampoline: unknown.
#[inline(always)]
fn caller() -> usize {
    0
}

#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: C's contract for free.
    unsafe { api::free(p as *mut u8) }
}

#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: size_t, size: size_t) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: C's contract for realloc.
        Some(total) => unsafe { api::realloc_at(p as *mut u8, total, caller()) as *mut c_void },
        None => {
            hakmem_core::os::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    out: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let p = api::aligned_at(align, size, caller());
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: C's contract: `out` is writable.
    unsafe { *out = p as *mut c_void };
    0
}

#[no_mangle]
pub extern "C" fn aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    if !align.is_power_of_two() {
        hakmem_core::os::set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    api::aligned_at(align, size, caller()) as *mut c_void
}

#[no_mangle]
pub extern "C" fn memalign(align: size_t, size: size_t) -> *mut c_void {
    // glibc rounds a non-power-of-two alignment up; too large is EINVAL.
    match align.max(1).checked_next_power_of_two() {
        Some(a) => api::aligned_at(a, size, caller()) as *mut c_void,
        None => {
            hakmem_core::os::set_errno(libc::EINVAL);
            core::ptr::null_mut()
        }
    }
}

#[no_mangle]
pub extern "C" fn valloc(size: size_t) -> *mut c_void {
    api::aligned_at(hakmem_core::os::OS_PAGE, size, caller()) as *mut c_void
}

#[no_mangle]
pub extern "C" fn pvalloc(size: size_t) -> *mut c_void {
    let page = hakmem_core::os::OS_PAGE;
    match size.max(1).checked_add(page - 1) {
        Some(s) => api::aligned_at(page, s & !(page - 1), caller()) as *mut c_void,
        None => {
            hakmem_core::os::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> size_t {
    // SAFETY: C's contract: p is null or a live block.
    unsafe { api::usable_size(p as *mut u8) }
}

/// `cfree`, an old alias of free some programs still call.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: as free.
    unsafe { api::free(p as *mut u8) }
}

/// hakmem extension: allocate `size` bytes attributed to call site `site`.
#[no_mangle]
pub extern "C" fn hak_alloc_at(size: size_t, site: usize) -> *mut c_void {
    api::malloc_at(size, site) as *mut c_void
}

/// hakmem extension: free a block (same as free).
#[no_mangle]
pub unsafe extern "C" fn hak_free(p: *mut c_void) {
    // SAFETY: as free.
    unsafe { api::free(p as *mut u8) }
}

/// hakmem extension: print the statistics report to stderr.
#[no_mangle]
pub extern "C" fn hak_stats_print() {
    hakmem_core::print_stats();
}

/// hakmem extension: collect pending frees and give free memory back now.
#[no_mangle]
pub extern "C" fn hak_collect(force: c_int) {
    hakmem_core::collect(force != 0);
}
