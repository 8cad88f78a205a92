//! Threads come and go, their segments stay: at thread exit the heap gives
//! back what is free and leaves the rest on the abandoned stack; another
//! thread's slow path (or `collect(true)`) adopts such segments. Until one
//! does, the background thread's pass ([`purge_unowned`]) collects what
//! other threads freed into them and gives their free pages back, as it
//! does the pooled segments'.

use crate::counters::GLOBAL;
use crate::os;
use crate::small::heap::Heap;
use crate::small::page::Page;
use crate::small::purge::RETAIN_DELAYS;
use crate::small::segment::{self, Segment, ABANDONED};
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set when memory nobody owns may have become purgeable (a thread exited,
/// a block of an abandoned segment was freed); cleared by the pass that
/// looks ([`purge_unowned`]).
static UNOWNED_WORK: AtomicBool = AtomicBool::new(false);

/// Abandoned segments one pass looks at, at most (the rest wait for the next).
const PASS_SEGMENTS: usize = 64;

/// Notes that memory nobody owns may be purgeable, and tells the
/// background thread (`crate::background`).
pub(crate) fn note_unowned_work() {
    UNOWNED_WORK.store(true, Ordering::SeqCst);
    crate::background::notify();
}

/// Whether a background pass may find purgeable memory nobody owns:
/// a dirty pooled segment, or work noted since the last pass.
pub fn unowned_work() -> bool {
    UNOWNED_WORK.load(Ordering::SeqCst) || segment::pool_has_dirty()
}

/// The background thread's pass over small-block memory no thread owns:
/// the remote frees of abandoned segments go into their pages, pages left
/// empty become free and segments left empty go to the pool; free pages and
/// pooled segments go back to the OS once they have waited what a heap's
/// own do ([`RETAIN_DELAYS`] purge delays of `delay_ns`; the free pages of
/// an abandoned segment count from when its last page became free).
/// Returns true if something is left to purge later.
///
/// A segment this pass holds (popped, at most [`PASS_SEGMENTS`]) is out of
/// reach of a thread's reclaim for the pass's few microseconds; frees into
/// it go on its remote lists as before, and raise [`UNOWNED_WORK`] for the
/// next pass. A fork in those microseconds leaves the segments held in the
/// child on no stack: its frees into them still go on their remote lists,
/// but no thread of the child adopts them (their free memory is lost to the
/// child's reuse, never corrupted).
pub fn purge_unowned(now: u64, delay_ns: u64) -> bool {
    UNOWNED_WORK.store(false, Ordering::SeqCst);
    let delay_ns = delay_ns.saturating_mul(RETAIN_DELAYS);
    let mut held: [*mut Segment; PASS_SEGMENTS] = [ptr::null_mut(); PASS_SEGMENTS];
    let mut n = 0;
    while n < PASS_SEGMENTS {
        let Some(seg) = ABANDONED.pop() else { break };
        held[n] = seg;
        n += 1;
    }
    let mut left = n == PASS_SEGMENTS && !ABANDONED.is_empty();
    // Deepest first, so that what goes back keeps its order: the most
    // recently abandoned segment (the most likely resident) stays on top
    // for the next thread's reclaim.
    for &seg in held[..n].iter().rev() {
        // SAFETY: popped from the abandoned stack, so this thread owns it
        // until it is pushed back (or pooled); its pages are in no heap's
        // queue. No reference to it outlives a statement (the calls write
        // through `seg` themselves).
        unsafe {
            // A segment abandoned just now is likely adopted by the next
            // thread (rounds of threads, `mstress`): left alone until it
            // has waited as long as its free pages would.
            let abandoned_at = (*seg).pooled_at_ns.load(Ordering::Relaxed);
            if now.saturating_sub(abandoned_at) < delay_ns {
                left = true;
                ABANDONED.push(seg);
                continue;
            }
            (*seg).remote_pending.store(0, Ordering::SeqCst);
            Segment::collect_and_free_empty(seg, now);
            if (*seg).is_empty() {
                GLOBAL
                    .segments_unowned_pooled
                    .fetch_add(1, Ordering::Relaxed);
                segment::release(seg, now);
                continue;
            }
            let purged = (*seg).purge_free_pages(now, delay_ns);
            GLOBAL
                .unowned_purged_bytes
                .fetch_add(purged as u64, Ordering::Relaxed);
            // Free pages still waiting their delay call for another pass;
            // those a purge leaves dirty once it has waited (the header half
            // of a huge-page segment) do not, or a survivor in such a
            // segment would keep the thread awake for good.
            if (*seg).dirty_pages != 0 && now.saturating_sub((*seg).last_release_ns) < delay_ns {
                left = true;
            }
            ABANDONED.push(seg);
        }
    }
    segment::maintain_pool(now, delay_ns);
    left || segment::pool_has_dirty()
}

impl Heap {
    /// Adopts every segment left by exited threads (`collect(true)`): their
    /// free pages can then be purged and empty segments pooled.
    pub(crate) fn reclaim_all_abandoned(&mut self) {
        while self.reclaim_abandoned() {}
    }

    /// Adopts one segment left by an exited thread. Returns true if one was found.
    pub(crate) fn reclaim_abandoned(&mut self) -> bool {
        let Some(seg) = ABANDONED.pop() else {
            return false;
        };
        GLOBAL.segments_reclaimed.fetch_add(1, Ordering::Relaxed);
        // The segment is reached through `seg` only, never a reference held
        // across the calls below (they write through `seg` themselves).
        // SAFETY: popped from the abandoned stack, so nobody else owns it.
        let (has_free, pages) = unsafe {
            (*seg).owner.store(self.id(), Ordering::Release);
            (*seg).remote_pending.store(0, Ordering::SeqCst);
            // Its free pages wait for this thread from now: purging them on
            // the exited thread's clock would drop resident memory just
            // before the adopter carves it (mstress: fresh threads fault in
            // what exited ones left).
            (*seg).last_release_ns = os::monotonic_ns();
            ((*seg).has_free_page(), (*seg).kind.page_count())
        };
        // Segments with free pages come first: new_page looks only at the head.
        // SAFETY: now owned by this heap, in no list.
        unsafe {
            if has_free {
                self.segment_push_front(seg);
            } else {
                self.segment_push_back(seg);
            }
        }
        for i in 0..pages {
            // SAFETY: a descriptor of the adopted segment.
            let page: *mut Page = unsafe { &raw mut (*seg).pages[i] };
            // SAFETY: as above; the reference ends before the calls below.
            let (in_use, used, empty_and_carved) = unsafe {
                if (*page).in_use {
                    Segment::collect(seg, page);
                }
                let p = &mut *page;
                if p.in_use {
                    p.next = ptr::null_mut();
                    p.prev = ptr::null_mut();
                    p.kept = false; // counted by the heap that left it
                }
                (
                    p.in_use,
                    p.used(),
                    p.free.is_null() && p.capacity == p.reserved,
                )
            };
            if !in_use {
                continue;
            }
            // SAFETY: a page of an owned segment, in no queue.
            unsafe {
                if used == 0 {
                    (*page).set_in_full(true); // not in any queue
                    self.release_page(seg, page);
                    if (*seg).owner.load(Ordering::Relaxed) == 0 {
                        return true; // the segment was empty and went to the pool
                    }
                } else if empty_and_carved {
                    (*page).set_in_full(true);
                } else {
                    (*page).set_in_full(false);
                    self.push_back(page);
                }
            }
        }
        true
    }

    /// Thread exit: gives back what is free and leaves the segments that
    /// still hold live blocks on the abandoned stack. The heap is empty after.
    pub fn abandon(&mut self) {
        self.close_mail();
        self.collect_remote();
        let now = os::monotonic_ns();
        for k in 0..3 {
            let mut seg = self.segments[k].head;
            while !seg.is_null() {
                // SAFETY: owned segment; `next` read first.
                let next = unsafe { (*seg).next };
                // SAFETY: this exiting heap's segment, reached through `seg`
                // only; its queues are cleared below.
                unsafe { Segment::collect_and_free_empty(seg, now) };
                // SAFETY: as above; the collects are done.
                let s = unsafe { &mut *seg };
                s.next = ptr::null_mut();
                s.prev = ptr::null_mut();
                if s.is_empty() {
                    segment::release(seg, now);
                } else {
                    s.owner.store(0, Ordering::Release);
                    s.pooled_at_ns.store(now, Ordering::Relaxed);
                    GLOBAL.segments_abandoned.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: an owned segment, now off this heap's list.
                    unsafe { ABANDONED.push(seg) };
                }
                seg = next;
            }
            self.segments[k].clear();
        }
        self.clear_queues();
        // What this thread left (free pages, pooled or abandoned segments)
        // waits for the background pass if no other thread comes for it.
        note_unowned_work();
    }
}
