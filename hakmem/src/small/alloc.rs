//! Allocation of small blocks: the fast pop from the head page of a class's
//! queue, and the refill that finds or makes a page with blocks to give.
//!
//! The thread context (`crate::thread`) calls [`pop`] inline and, when it
//! fails, sets up the heap if needed and calls [`refill`].

use crate::os;
use crate::small::heap::{empty_page, Heap};
use crate::small::page::Page;
use crate::small::segment::{self, PageKind, Segment};
use crate::small::size_class::{direct_slot, page_kind};
use core::ptr;

/// Bytes at the start of a block that its free-list link (and, hardened,
/// its freed tag) may have written while it waited to be handed out.
pub const LINK_BYTES: usize = 2 * core::mem::size_of::<usize>();

/// How many abandoned segments `new_page` may adopt before it maps a fresh one.
const RECLAIMS_PER_NEW_SEGMENT: u32 = 8;

/// Pops a block of class `c` from the head page of its queue; null if that
/// page has none (then [`refill`]).
///
/// # Safety
/// `heap` is the calling thread's heap (or the read-only empty heap, whose
/// queues all hold the empty page) and `c < NUM_CLASSES`.
#[inline(always)]
pub unsafe fn pop(heap: *mut Heap, c: usize) -> *mut u8 {
    // SAFETY: the caller's contract: `c < NUM_CLASSES` (no bounds check on
    // the fast path) and `first[c]` is a page of this heap or the empty page,
    // whose `free` is null so `pop` does not write to it. The count shares
    // the cache line of `first[c]`, which this pop reads anyway.
    unsafe {
        let head = (*heap).first.get_unchecked(c);
        let b = (*head.page).pop();
        if !b.is_null() {
            head.allocs.add(1);
            #[cfg(all(feature = "test-delay", target_arch = "x86_64"))]
            crate::test_delay::small();
        }
        b as *mut u8
    }
}

/// Pops a block for a request of `size <= TABLE_MAX` bytes from the page
/// `direct` holds for it; null if that page has none (then [`refill`] of
/// `class_of_table(size)`).
///
/// # Safety
/// As [`pop`]; `size <= TABLE_MAX`.
#[inline(always)]
pub unsafe fn pop_direct(heap: *mut Heap, size: usize) -> *mut u8 {
    // SAFETY: the caller's contract: the slot is below DIRECT_SLOTS, and
    // `direct` holds the head page of the size's class (or the empty page,
    // which `pop` does not write). The page's class indexes the count.
    unsafe {
        let page = *(*heap).direct.get_unchecked(direct_slot(size));
        let b = (*page).pop();
        if !b.is_null() {
            (*heap)
                .first
                .get_unchecked((*page).class as usize)
                .allocs
                .add(1);
            #[cfg(all(feature = "test-delay", target_arch = "x86_64"))]
            crate::test_delay::small();
        }
        b as *mut u8
    }
}

/// The slow path of an allocation of class `c`: collect, carve or take a new
/// page. Null with ENOMEM if the OS refuses memory. True with a block carved
/// just now from memory that reads zero (`Page::zero_tail`): all of it but
/// its free-list link, the first [`LINK_BYTES`], is zero then (a block
/// carved is the first of its batch: `Page::extend` puts the batch at the
/// head of the free list).
#[cold]
#[inline(never)]
pub fn refill(h: &mut Heap, c: usize) -> (*mut u8, bool) {
    // Mail both ways: blocks others sent this heap, and this thread's own
    // remote frees (so that they wait no longer than its next slow path).
    h.drain_inbox();
    h.flush_outbox();
    for attempt in 0..2 {
        let mut page = h.first[c].page;
        while page != empty_page() {
            // SAFETY: pages in the queue belong to segments this heap owns
            // (a descriptor lives in its segment's header).
            let (b, fresh) = unsafe {
                Segment::collect(Segment::of(page as usize), page);
                let p = &mut *page;
                let carved = p.free.is_null() && p.extend();
                (p.pop(), carved && p.zero_tail)
            };
            if !b.is_null() {
                h.first[c].allocs.add(1);
                return (b as *mut u8, fresh);
            }
            // Nothing left: out of the queue until a block comes back. The
            // page was the head, so the next candidate is the new head.
            // SAFETY: the head of this heap's queue.
            unsafe {
                h.unlink(page);
                (*page).set_in_full(true);
            }
            page = h.first[c].page;
        }
        if attempt == 0 && !h.collect_remote() {
            break;
        }
    }
    match h.new_page(c) {
        Some(page) => {
            // SAFETY: a fresh page of this heap.
            let (b, fresh) = unsafe {
                let carved = (*page).extend();
                ((*page).pop(), carved && (*page).zero_tail)
            };
            h.first[c].allocs.add(1);
            (b as *mut u8, fresh)
        }
        None => (out_of_memory(), false),
    }
}

/// The OS refused memory: NULL with errno ENOMEM, as malloc must.
#[cold]
pub fn out_of_memory() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

impl Heap {
    /// An owned segment of big pages with a free page that may be resident
    /// and was last carved for class `c`.
    fn resident_big_segment(&self, c: usize) -> Option<*mut Segment> {
        let mut seg = self.segments[PageKind::Big as usize].head;
        while !seg.is_null() {
            // SAFETY: an owned segment; the reference ends in the statement.
            let (matches, next) = unsafe { ((*seg).has_resident_page_of_class(c), (*seg).next) };
            if matches {
                return Some(seg);
            }
            seg = next;
        }
        None
    }

    /// A fresh page for class `c`: from an owned segment, an abandoned one, the
    /// pool, or the OS.
    fn new_page(&mut self, c: usize) -> Option<*mut Page> {
        let kind = page_kind(c);
        let big = kind == PageKind::Big;
        // No resident free page to carve: the kept empty pages of other
        // classes go back first, so that this class carves their resident
        // memory instead of faulting in fresh pages (espresso: 518 page
        // faults a run while they stayed kept, 382 now, 399 before pages
        // were kept).
        let head = self.segments[kind as usize].head;
        // SAFETY: the head of this heap's list: an owned segment.
        let resident = !head.is_null() && unsafe { (*head).free_pages & (*head).dirty_pages != 0 };
        if self.kept_bytes != 0 && !resident {
            self.release_kept(os::monotonic_ns());
        }
        // Abandoned segments are adopted before a fresh one is taken, several
        // per call: a thread that exits leaves several segments behind, and
        // adopting fewer than are left makes the abandoned stack grow forever.
        let mut reclaims_left = RECLAIMS_PER_NEW_SEGMENT;
        // Once this call took a segment, the pool is not searched again (it
        // would take a second one and leave the first idle in the list).
        let mut acquired = false;
        loop {
            // Big pages: one last carved for this class first, in any owned
            // segment, then in an abandoned one, then in the pool, and only
            // then a page of another class (`segment::acquire_resident`).
            let mut seg = self.segments[kind as usize].head;
            let mut adopt_first = false;
            if big {
                if let Some(s) = self.resident_big_segment(c) {
                    seg = s;
                } else if reclaims_left > 0 {
                    adopt_first = true;
                } else if acquired {
                    // The segment this call took is the head.
                } else if let Some(s) = segment::acquire_resident(c, self.id()) {
                    // SAFETY: a segment just acquired for this heap, in no list.
                    unsafe { self.segment_push_front(s) };
                    seg = s;
                }
            }
            // SAFETY: owned segments; no reference to one outlives a statement.
            if !adopt_first && !seg.is_null() && unsafe { (*seg).has_free_page() } {
                // SAFETY: as above.
                let (page, full, has_next) = unsafe {
                    let page = (*seg).alloc_page(c)?;
                    (page, !(*seg).has_free_page(), !(*seg).next.is_null())
                };
                // SAFETY: an owned segment in its list; a fresh page of it.
                unsafe {
                    if full && has_next {
                        self.segment_unlink(seg);
                        self.segment_push_back(seg);
                    }
                    self.push_front(page);
                }
                return Some(page);
            }
            if reclaims_left > 0 {
                reclaims_left -= 1;
                if self.reclaim_abandoned() {
                    // Reclaimed pages may already serve this class.
                    let first = self.first[c].page;
                    if first != empty_page() {
                        // SAFETY: a page of this heap.
                        if unsafe { !(*first).free.is_null() || (*first).extend() } {
                            return Some(first);
                        }
                    }
                    continue;
                }
                reclaims_left = 0;
                if big {
                    continue; // the pool's resident pages, then the head's
                }
            }
            let another = !self.segments[kind as usize].head.is_null();
            let seg = segment::acquire(kind, self.id(), another)?;
            acquired = true;
            // SAFETY: a segment just acquired for this heap, in no list.
            unsafe { self.segment_push_front(seg) };
        }
    }
}
