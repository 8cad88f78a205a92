//! Threads come and go, their segments stay: at thread exit the heap gives
//! back what is free and leaves the rest on the abandoned stack; another
//! thread's slow path (or `collect(true)`) adopts such segments.

use crate::counters::GLOBAL;
use crate::os;
use crate::small::heap::Heap;
use crate::small::page::Page;
use crate::small::segment::{self, Segment, ABANDONED};
use core::ptr;
use core::sync::atomic::Ordering;

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
                let (next, pages) = unsafe { ((*seg).next, (*seg).kind.page_count()) };
                for i in 0..pages {
                    // SAFETY: a descriptor of an owned segment, reached
                    // through `seg` only (no reference to the segment is held).
                    unsafe {
                        let p: *mut Page = &raw mut (*seg).pages[i];
                        if (*p).in_use {
                            Segment::collect(seg, p);
                            if (*p).used() == 0 {
                                (*seg).free_page(p, now);
                            }
                        }
                    }
                }
                // SAFETY: as above; the collects are done.
                let s = unsafe { &mut *seg };
                s.next = ptr::null_mut();
                s.prev = ptr::null_mut();
                if s.is_empty() {
                    segment::release(seg, now);
                } else {
                    s.owner.store(0, Ordering::Release);
                    GLOBAL.segments_abandoned.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: an owned segment, now off this heap's list.
                    unsafe { ABANDONED.push(seg) };
                }
                seg = next;
            }
            self.segments[k].clear();
        }
        self.clear_queues();
    }
}
