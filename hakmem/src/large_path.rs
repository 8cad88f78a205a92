//! The large-block paths: allocation and free of blocks above the last size class.
//!
//! Allocation: choose a strategy (ELO), look in the BigCache, else map.
//! Free: validate the header, offer the block to the BigCache, else unmap.

use crate::heap;
use crate::large::{self, LargeHeader};
use crate::os;
use crate::probe::{self, Component};
use crate::segment_map::Region;
use core::ptr;

/// Allocates a large block of `size` bytes aligned to `align`; zeroed if `zero`.
#[cold]
#[inline(never)]
pub fn alloc(size: usize, align: usize, site: usize, zero: bool) -> *mut u8 {
    let t = if probe::tracing() { probe::now() } else { 0 };
    if crate::api::too_big(size) {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    let Some(h) = heap::current_or_init() else {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let site_slot = crate::profile::site_slot(site);
    let Some(block) = large::map_block(size, align, site_slot) else {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    if zero && !block.zeroed {
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { ptr::write_bytes(block.ptr, 0, size) };
    }
    // SAFETY: this thread's heap.
    unsafe {
        let usable = large::usable_size(large_header_of(block.ptr));
        (*h).counters.large_allocs.add(1);
        (*h).counters.large_bytes_allocated.add(usable as u64);
    }
    if t != 0 {
        probe::emit(Component::LargeAlloc, t, size as u64);
    }
    block.ptr
}

fn large_header_of(p: *mut u8) -> *mut LargeHeader {
    let r = crate::segment_map::lookup(p as usize);
    // SAFETY: `p` was just produced by map_block.
    unsafe { large::header(p as usize, r) }.expect("fresh large block has a header")
}

/// Frees the large block at `a`.
///
/// # Safety
/// `region` is `segment_map::lookup(a)`, one of the large kinds.
#[cold]
#[inline(never)]
pub unsafe fn free(a: usize, region: Region) {
    // SAFETY: forwarded contract.
    let Some(h) = (unsafe { large::header(a, region) }) else {
        crate::api::foreign_pointer("free", a as *mut u8);
        return;
    };
    let usable = large::usable_size(h);
    if let Some(heap) = heap::current_or_init() {
        // SAFETY: this thread's heap.
        unsafe {
            (*heap).counters.large_frees.add(1);
            (*heap).counters.large_bytes_freed.add(usable as u64);
        }
    }
    large::unmap_block(a, h);
}

/// Tries to grow the large block at `a` to `size` bytes without moving it.
pub fn grow_in_place(a: usize, h: *mut LargeHeader, size: usize) -> bool {
    let old = large::usable_size(h);
    if !large::resize_in_place(a, h, size) {
        return false;
    }
    if let Some(heap) = heap::current_or_init() {
        let new = large::usable_size(h);
        // SAFETY: this thread's heap.
        unsafe {
            (*heap).counters.large_bytes_allocated.add(new.saturating_sub(old) as u64);
        }
    }
    true
}
