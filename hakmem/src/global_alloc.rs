//! `hakmem::Hakmem`, the `GlobalAlloc` for Rust programs.

use crate::api::{self, MIN_ALIGN};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

/// The hakmem allocator: `#[global_allocator] static A: hakmem::Hakmem = hakmem::Hakmem;`
pub struct Hakmem;

#[inline(always)]
fn plain(layout: &Layout) -> bool {
    // malloc's own alignment covers it: 16 bytes, 8 for blocks of 8 or less.
    layout.align() <= 8 || (layout.align() <= MIN_ALIGN && layout.size() > 8)
}

// SAFETY: blocks come from hakmem, sized and aligned as the layout asks, and
// stay valid until passed back.
unsafe impl GlobalAlloc for Hakmem {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            api::malloc(layout.size())
        } else {
            api::aligned_at(layout.align(), layout.size(), 0)
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: `p` came from this allocator.
        unsafe { api::free(p) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            return api::calloc_at(1, layout.size(), 0);
        }
        let p = api::aligned_at(layout.align(), layout.size(), 0);
        if !p.is_null() {
            // SAFETY: a fresh block of `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(&layout) && (layout.align() <= 8 || new_size > 8) {
            // SAFETY: `p` came from this allocator; new_size > 0 per the trait.
            return unsafe { api::realloc_at(p, new_size, 0) };
        }
        // Over-aligned: keep the block if it is big enough, else move it.
        // SAFETY: `p` is live.
        let usable = unsafe { api::usable_size(p) };
        if new_size <= usable && new_size >= usable / 2 {
            return p;
        }
        let q = api::aligned_at(layout.align(), new_size, 0);
        if !q.is_null() {
            // SAFETY: distinct live blocks, lengths bounded by both sizes.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                api::free(p);
            }
        }
        q
    }
}
