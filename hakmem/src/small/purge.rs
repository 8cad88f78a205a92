//! Giving memory back: collecting remote frees into their pages, retiring
//! empty pages to their segment and empty segments to the pool, and purging
//! free pages that have waited the purge delay.

use crate::os;
use crate::small::heap::Heap;
use crate::small::page::Page;
use crate::small::segment::{self, Segment};
use crate::small::size_class::NUM_CLASSES;
use core::sync::atomic::Ordering;

/// Free small-block memory waits this many purge delays before it goes back
/// to the OS (80 ms at the default 10 ms). The threads of a program's next
/// round reuse what the exited threads of the last one left only if it is
/// still resident: on `mstress` (rounds of ~50 ms, 2-3.5 us a page fault
/// here) one delay purged 240-490 MiB a run and faulted 25-31k times; four,
/// eight and sixteen delays purged 160, 100 and 95 MiB, faulted 22-24k,
/// 18-21k and 18-21k times, with median operations 96-122, 91-105 and 83-100
/// ns (same minutes) and peak RSS 61-66 MiB each (mimalloc 2: 120, mimalloc
/// 3: 165).
pub(crate) const RETAIN_DELAYS: u64 = 8;

/// Bytes of empty pages a heap keeps in their class queues (`Heap::keep`)
/// rather than give back to their segments. A program that empties and
/// refills the same pages (glibc-simple: N blocks of one size allocated,
/// then all freed, 1.5 MiB at 1600 x 1 KiB) took each page from its
/// segment and gave it back every round: ~950 instructions a page (the
/// purge clock, the process-wide carved count, the segment lists, the
/// refill that found the queue empty). Kept pages stay resident as the
/// pages they replace did (a freed page waits [`RETAIN_DELAYS`] before its
/// purge): they go back to their segments once the heap has kept pages
/// that long ([`Heap::purge`]), when a refill would fault in fresh memory,
/// and when the heap goes quiet (`purge_quiet`).
pub(crate) const KEEP_EMPTY_BYTES: usize = 2 << 20;

impl Heap {
    /// An empty page goes back to its segment unless it is the class's only
    /// page (keeping one avoids re-carving on alloc/free ping-pong) or the
    /// heap keeps it in its queue ([`KEEP_EMPTY_BYTES`]).
    ///
    /// # Safety
    /// `page` is an empty page of `seg`, which this heap owns; `page` is in
    /// its class's queue unless `in_full`.
    pub(crate) unsafe fn retire_if_spare(&mut self, seg: *mut Segment, page: *mut Page) {
        // SAFETY: the caller's contract; no reference outlives a statement.
        unsafe {
            if (*page).in_full() {
                (*page).set_in_full(false);
            } else {
                if self.first[(*page).class as usize].page == page && (*page).next.is_null() {
                    return;
                }
                if self.keep(page) {
                    return;
                }
                self.unlink(page);
            }
            self.release_page(seg, page);
        }
    }

    /// Gives the empty `page` (in no queue) back to `seg`, and `seg` to the
    /// pool if that left it empty.
    ///
    /// # Safety
    /// `page` is an empty page of `seg`, which this heap owns; it is in no queue.
    pub(crate) unsafe fn release_page(&mut self, seg: *mut Segment, page: *mut Page) {
        let now = os::monotonic_ns();
        // SAFETY: the caller's contract.
        if unsafe { self.return_page(seg, page, now) } {
            // SAFETY: an owned segment in this heap's list.
            unsafe { self.segment_unlink(seg) };
            segment::release(seg, now);
        }
    }

    /// Gives the empty `page` (in no queue) back to `seg`, which stays in
    /// this heap's list (at its front if it had no free page before).
    /// Returns true if `seg` is empty now.
    ///
    /// # Safety
    /// As [`Heap::release_page`].
    unsafe fn return_page(&mut self, seg: *mut Segment, page: *mut Page, now: u64) -> bool {
        // SAFETY: the caller's contract; the reference ends before the list calls.
        let (had_free, empty) = unsafe {
            let s = &mut *seg;
            let had_free = s.has_free_page();
            s.free_page(page, now);
            (had_free, s.is_empty())
        };
        if !had_free {
            // It has a free page again: to the front, where new_page looks.
            // SAFETY: an owned segment in this heap's list.
            unsafe {
                self.segment_unlink(seg);
                self.segment_push_front(seg);
            }
        }
        empty
    }

    /// Collects remote frees of segments that flagged some; puts pages that
    /// have blocks again back in their queues. Returns true if any page came back.
    pub(crate) fn collect_remote(&mut self) -> bool {
        let mut relinked = self.drain_inbox();
        for k in 0..3 {
            let mut seg = self.segments[k].head;
            while !seg.is_null() {
                // SAFETY: owned segment; `next` read before it may be released.
                let (next, pending) = unsafe {
                    (
                        (*seg).next,
                        (*seg).remote_pending.load(Ordering::Relaxed) != 0,
                    )
                };
                if pending {
                    // SAFETY: as above.
                    unsafe { (*seg).remote_pending.swap(0, Ordering::SeqCst) };
                    // SAFETY: an owned segment.
                    relinked |= unsafe { self.collect_segment(seg) };
                }
                seg = next;
            }
        }
        relinked
    }

    /// Collects the remote frees of `seg`'s pages that need it: pages out of
    /// their queue (`in_full`: the frees bring them back) and pages whose
    /// every block is back (they retire). A page still in its queue with
    /// blocks on its free list keeps its remote list until it runs dry (its
    /// refill takes the list as its free list, without a walk; joining the
    /// two lists here walked one block by block, 86% of this function's
    /// samples on xthread). Such a page keeps the segment's flag raised, so
    /// that a later pass sees it once all its blocks are back.
    ///
    /// # Safety
    /// `seg` is owned by this heap.
    unsafe fn collect_segment(&mut self, seg: *mut Segment) -> bool {
        let mut relinked = false;
        let mut waiting = false;
        // The segment is reached through `seg` only, never a reference held
        // across the calls below (they write through `seg` themselves).
        // SAFETY: the caller's contract.
        let pages = unsafe { (*seg).kind.page_count() };
        for i in 0..pages {
            // SAFETY: a descriptor of an owned segment and its remote list;
            // the references end here.
            let (page, collected, used, in_full) = unsafe {
                let page: *mut Page = &raw mut (*seg).pages[i];
                let p = &*page;
                if !p.in_use {
                    continue;
                }
                if !p.in_full() && !p.free.is_null() {
                    let n = (*seg).remote[i].len();
                    if n == 0 {
                        continue;
                    }
                    if n < p.used() {
                        waiting = true;
                        continue;
                    }
                }
                let collected = Segment::collect(seg, page);
                (page, collected, (*page).used(), (*page).in_full())
            };
            if collected == 0 {
                continue;
            }
            // SAFETY: a page of an owned segment (in its queue unless in_full).
            unsafe {
                if used == 0 {
                    let owner = (*seg).owner.load(Ordering::Relaxed);
                    self.retire_if_spare(seg, page);
                    if (*seg).owner.load(Ordering::Relaxed) != owner {
                        return relinked; // the segment went to the pool
                    }
                } else if in_full {
                    (*page).set_in_full(false);
                    self.push_front(page);
                    relinked = true;
                }
            }
        }
        if waiting {
            // SAFETY: an owned segment (still ours: it did not go to the pool).
            unsafe { (*seg).remote_pending.store(1, Ordering::SeqCst) };
        }
        relinked
    }

    /// The thread's small side has been quiet for a purge delay (no
    /// allocation) while the thread went on working (`thread::LargeCtx::on_clock`): its
    /// empty pages go back to their segments, including the one a class
    /// keeps against alloc/free ping-pong, every free page of its segments
    /// is purged now, without [`RETAIN_DELAYS`], and segments left empty go
    /// to the pool (their pages already purged). The pool itself keeps its
    /// usual delay: other threads may be busy reusing it.
    ///
    /// The owner thread alone calls this, so no page it may be writing is
    /// purged: only pages with no block handed out (`used == 0`, which
    /// counts blocks still waiting in the remote list) leave their queue, and
    /// only free pages are purged. Pages of exited threads (abandoned or
    /// pooled segments, what `mstress` reuses) are not touched.
    pub fn purge_quiet(&mut self, now: u64, delay_ns: u64) {
        self.collect_remote();
        for c in 0..NUM_CLASSES {
            let mut page = self.queues[c].head;
            while !page.is_null() {
                // SAFETY: a page in this heap's queue, of a segment it owns
                // (its descriptor lies in the segment's header); `next` is
                // read before the page may leave the queue.
                unsafe {
                    let next = (*page).next;
                    if (*page).used() == 0 {
                        self.unlink(page);
                        self.return_page(Segment::of(page as usize), page, now);
                    }
                    page = next;
                }
            }
        }
        for k in 0..3 {
            let mut seg = self.segments[k].head;
            while !seg.is_null() {
                // SAFETY: an owned segment in this heap's list; `next` is
                // read before it may leave the list.
                unsafe {
                    let next = (*seg).next;
                    (*seg).purge_free_pages(now, 0);
                    if (*seg).is_empty() {
                        self.segment_unlink(seg);
                        segment::release(seg, now);
                    }
                    seg = next;
                }
            }
        }
        segment::maintain_pool(now, delay_ns.saturating_mul(RETAIN_DELAYS));
        if cfg!(any(debug_assertions, feature = "debug-checks")) {
            self.check();
        }
    }

    /// Gives the empty pages kept in their class queues back to their
    /// segments (a forced collect: all free memory goes back; a refill about
    /// to carve memory that is not resident: those pages are). Kept pages
    /// that hand out blocks again stop counting; `kept_bytes` is 0 after.
    pub(crate) fn release_kept(&mut self, now: u64) {
        if self.kept_bytes == 0 {
            return;
        }
        for c in 0..NUM_CLASSES {
            let mut page = self.queues[c].head;
            while !page.is_null() {
                // SAFETY: a page in this heap's queue, of a segment it owns;
                // `next` is read before the page may leave the queue.
                unsafe {
                    let next = (*page).next;
                    if (*page).kept && (*page).used() != 0 {
                        self.unkeep(page);
                    } else if (*page).kept {
                        self.unlink(page);
                        let seg = Segment::of(page as usize);
                        if self.return_page(seg, page, now) {
                            self.segment_unlink(seg);
                            segment::release(seg, now);
                        }
                    }
                    page = next;
                }
            }
        }
    }

    /// Purges free pages of owned segments and of the pool that have waited
    /// [`RETAIN_DELAYS`] times `delay_ns` (0: everything now, and the empty
    /// pages kept in their queues go back to their segments first).
    pub fn purge(&mut self, now: u64, delay_ns: u64) {
        let retain_ns = delay_ns.saturating_mul(RETAIN_DELAYS);
        // Kept pages go back once kept for as long as a freed page waits
        // before its purge: a thread that keeps allocating other classes
        // from resident pages would otherwise hold them until it exits.
        if delay_ns == 0 || now.saturating_sub(self.kept_since_ns) >= retain_ns {
            self.release_kept(now);
        }
        let delay_ns = retain_ns;
        for k in 0..3 {
            let mut seg = self.segments[k].head;
            while !seg.is_null() {
                // SAFETY: owned segment.
                let s = unsafe { &mut *seg };
                s.purge_free_pages(now, delay_ns);
                seg = s.next;
            }
        }
        segment::maintain_pool(now, delay_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::alloc::{pop, refill};
    use crate::small::free::free;
    use crate::small::size_class::class_of;

    fn no_heap() -> Option<*mut Heap> {
        None
    }

    /// Pages of this heap's small segments that are carved (in use).
    fn pages_in_use(h: &Heap) -> u32 {
        let mut n = 0;
        let mut seg = h.segments[0].head;
        while !seg.is_null() {
            // SAFETY: a segment this heap owns.
            unsafe {
                n += (!(*seg).free_pages).count_ones();
                seg = (*seg).next;
            }
        }
        n
    }

    /// `n` blocks of class `c`, then all freed in allocation order: a round of glibc-simple.
    fn round(heap: *mut Heap, c: usize, n: usize) -> Vec<usize> {
        let blocks: Vec<usize> = (0..n)
            .map(|_| {
                // SAFETY: this test's heap, a class below NUM_CLASSES.
                let b = unsafe { pop(heap, c) };
                if b.is_null() {
                    // SAFETY: as above.
                    refill(unsafe { &mut *heap }, c).0 as usize
                } else {
                    b as usize
                }
            })
            .collect();
        for &b in &blocks {
            // SAFETY: blocks of this heap's segments, handed out above.
            unsafe { free(heap, b, no_heap) };
        }
        blocks
    }

    #[test]
    fn emptied_pages_stay_in_their_queue_within_the_budget_until_needed_elsewhere() {
        let heap = Box::into_raw(Box::new(Heap::empty()));
        // SAFETY: this test's heap, used by this thread alone.
        let h = unsafe { &mut *heap };
        h.live = true;
        let c = class_of(1024);
        // 1.6 MB of 1 KiB blocks: ~26 pages of 64 KiB, within the budget.
        let first = round(heap, c, 1600);
        let kept = h.kept_bytes;
        assert!(kept > 0 && kept <= KEEP_EMPTY_BYTES, "kept {kept} bytes");
        let in_use = pages_in_use(h);
        let mut second = round(heap, c, 1600);
        assert_eq!(pages_in_use(h), in_use, "no page went back or came anew");
        assert_eq!(h.kept_bytes, kept);
        second.sort();
        let mut first = first;
        first.sort();
        assert_eq!(first, second, "the same blocks again");
        h.check();
        // Another class needs a page and no free page of the segments is
        // resident: the kept pages go back first, and it carves one of them.
        // (The segment may have come from the dirty pool, its free pages
        // resident — more often since the background thread pools exited
        // threads' segments while other tests run: made clean here.)
        let now = os::monotonic_ns();
        for k in 0..3 {
            let mut seg = h.segments[k].head;
            while !seg.is_null() {
                // SAFETY: a segment this test's heap owns; the reference
                // ends in the statement.
                seg = unsafe {
                    let s = &mut *seg;
                    s.purge_free_pages(now, 0);
                    // Halves a huge-page segment keeps resident count as clean.
                    s.dirty_pages = 0;
                    s.next
                };
            }
        }
        let b = refill(h, class_of(100)).0;
        assert_eq!(h.kept_bytes, 0);
        assert_eq!(pages_in_use(h), 1, "the kept pages went back");
        // SAFETY: a block of this heap, handed out above.
        unsafe { free(heap, b as usize, no_heap) };
        h.check();
        // 6 MB: more than the budget; the rest goes back to the segments.
        round(heap, c, 6000);
        assert!(h.kept_bytes <= KEEP_EMPTY_BYTES);
        assert!(pages_in_use(h) as usize <= 1 + KEEP_EMPTY_BYTES / (64 << 10));
        h.check();
        // A regular purge keeps them within the retain time, and gives them
        // back once they have been kept for longer.
        let delay = 10_000_000;
        h.purge(h.kept_since_ns + delay, delay);
        assert!(h.kept_bytes > 0, "kept for less than the retain time");
        h.purge(h.kept_since_ns + RETAIN_DELAYS * delay, delay);
        assert_eq!(h.kept_bytes, 0, "kept for the retain time");
        assert!(pages_in_use(h) <= 1, "only the class's single page stays");
        h.check();
        round(heap, c, 1600);
        assert!(h.kept_bytes > 0);
        // A forced purge gives every kept page back.
        h.purge(os::monotonic_ns(), 0);
        assert_eq!(h.kept_bytes, 0);
        assert!(pages_in_use(h) <= 1, "only the class's single page stays");
        h.check();
        h.abandon();
        // SAFETY: allocated above; its segments went to the pool.
        drop(unsafe { Box::from_raw(heap) });
    }
}
