//! Freeing small blocks: a local free pushes on the page's free list; a free
//! by another thread waits in the thread's outbox for a message to the owner
//! (`remote.rs`), or pushes on the page's remote list and raises the
//! segment's `remote_pending` flag for the owner's next slow path. A remote
//! free never touches the page descriptor the owner is popping from.

use crate::probe::{self, Component};
use crate::small::heap::Heap;
use crate::small::page::{Block, Page};
use crate::small::remote;
use crate::small::segment::Segment;
use core::sync::atomic::Ordering;

/// Frees the small block at `addr`. `heap` is the calling thread's heap (maybe
/// the empty one); `heap_or_init` returns it set up, for a remote free by a
/// thread that has none yet (its counters must count the free).
///
/// # Safety
/// `addr` lies in a live size-class segment (the segment map says so) and is
/// a block the caller no longer uses; `heap` is the calling thread's heap.
#[inline(always)]
pub unsafe fn free(heap: *mut Heap, addr: usize, heap_or_init: fn() -> Option<*mut Heap>) {
    let seg = Segment::of(addr);
    // SAFETY: the caller's contract: a live segment, this thread's heap.
    unsafe {
        let local = (*seg).owner.load(Ordering::Relaxed) == heap as usize;
        if cfg!(any(debug_assertions, feature = "debug-checks")) {
            check_block(Segment::page_of(seg, addr), addr, local);
        }
        if local {
            let page = Segment::page_of(seg, addr);
            // A page's class is < NUM_CLASSES by construction.
            (*heap)
                .counters
                .frees
                .get_unchecked((*page).class as usize)
                .add(1);
            if (*page).push_local(addr as *mut Block) {
                free_local_slow(addr, &mut *heap, seg);
            }
        } else {
            free_remote(addr, seg, heap, heap_or_init);
        }
    }
}

/// Usable size of the small block at `addr`.
///
/// # Safety
/// `addr` lies in a live size-class segment (the segment map says so).
#[inline]
pub unsafe fn usable_size(addr: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { (*Segment::page_of(Segment::of(addr), addr)).block_size as usize }
}

/// Debug check of a freed block; `local`: this thread owns the page.
#[cold]
fn check_block(page: *mut Page, addr: usize, local: bool) {
    // SAFETY: `page` is a descriptor in a hakmem segment header.
    let p = unsafe { &*page };
    if !p.is_block_start(addr) {
        crate::diag::invalid_pointer("free", addr, p.class as usize);
    }
    // Only the owner may read its free list: another thread would race with
    // the owner popping blocks and follow a `next` the user has overwritten.
    if !local {
        return;
    }
    // A double free most often hits the head of the free list.
    let mut b = p.free;
    for _ in 0..8 {
        if b.is_null() {
            break;
        }
        if b as usize == addr {
            crate::diag::double_free(addr, Some(p.class as usize));
        }
        // SAFETY: free-list blocks belong to the page.
        b = p.next_of(b);
    }
}

/// A local free that made the page holding `addr` non-full again or empty:
/// a full page goes back to its queue, an empty one to its segment unless
/// kept. The page is found again here: passing its address made the fast
/// path compute it (two instructions on every free). `addr` comes first, in
/// the register that holds `free`'s argument: last, it made the LD_PRELOAD
/// `free` copy its argument to the third argument's register on entry, on
/// every call.
///
/// # Safety
/// `addr` is a block of `seg`, a live segment `h` owns.
#[cold]
#[inline(never)]
pub(crate) unsafe fn free_local_slow(addr: usize, h: &mut Heap, seg: *mut Segment) {
    // SAFETY: the caller's contract; no reference to the page is held
    // across the calls, which write through `page` themselves.
    unsafe {
        let page = Segment::page_of(seg, addr);
        if (*page).in_full() {
            (*page).set_in_full(false);
            h.push_front(page);
        }
        if (*page).used() == 0 {
            h.retire_if_spare(seg, page);
        }
    }
}

/// A free of a block another heap owns: into this thread's outbox, or
/// directly onto the page's remote list (`remote.rs`). `addr` first, as in
/// [`free_local_slow`].
#[cold]
#[inline(never)]
fn free_remote(
    addr: usize,
    seg: *mut Segment,
    heap: *mut Heap,
    heap_or_init: fn() -> Option<*mut Heap>,
) {
    let traced = probe::tracing();
    let t = if traced { probe::start() } else { 0 };
    // Count in this thread's heap (create it: a thread that only frees is rare).
    // Read the class and owner before the block leaves: after it the owner
    // may recycle the page.
    // SAFETY: a live segment; the remote list of the page in use holding
    // the block, which is live until sent.
    let (class, owner) = unsafe {
        (
            (*Segment::remote_of(seg, addr)).class as usize,
            (*seg).owner.load(Ordering::Relaxed),
        )
    };
    let mut posted = false;
    // SAFETY: the caller's heap, maybe the empty one (only read here).
    let h = if unsafe { (*heap).live } {
        Some(heap)
    } else {
        heap_or_init()
    };
    if let Some(h) = h {
        // SAFETY: this thread's heap, a real one; the block is ours to send.
        unsafe {
            (*h).counters.remote_frees.add(1);
            (*h).counters.frees[class].add(1);
            posted = remote::post(&mut *h, owner, addr, class);
        }
    }
    if !posted {
        // SAFETY: the caller's contract: a block of a live segment that this
        // thread does not own.
        unsafe { remote::push_direct(addr) };
        if owner == 0 {
            // A block of an exited thread's segment: the background pass
            // collects it (and may give its page back) if no thread adopts
            // the segment first.
            crate::small::reclaim::note_unowned_work();
        }
    }
    if traced {
        probe::emit(Component::RemoteFree, t, class as u64);
    }
}
