//! The heap's intrusive lists, both [`crate::list::List`]s linked through the
//! `next`/`prev` fields of the elements themselves (no allocation): the queue
//! of pages of each size class and the list of owned segments of each page
//! kind. A class's queue head is mirrored in `first[c].page` (and its slots
//! of `direct`), the empty page when the queue is empty, so the fast path
//! pops without a null check.
//!
//! Every function here takes an element that belongs to this heap (a page of
//! an owned segment, an owned segment); they are `unsafe` for that reason.

use crate::list::Linked;
use crate::small::heap::{empty_page, Heap};
use crate::small::page::Page;
use crate::small::purge::KEEP_EMPTY_BYTES;
use crate::small::segment::Segment;
use crate::small::size_class::{direct_slots, NUM_CLASSES};

// SAFETY: `next` and `prev` are two distinct fields of a page, used only as
// queue links (by `list`) while the page is in a queue.
unsafe impl Linked for Page {
    unsafe fn next(this: *mut Self) -> *mut *mut Self {
        // SAFETY: the caller's contract: `this` is a live page descriptor.
        unsafe { &raw mut (*this).next }
    }
    unsafe fn prev(this: *mut Self) -> *mut *mut Self {
        // SAFETY: as above.
        unsafe { &raw mut (*this).prev }
    }
}

// SAFETY: `next` and `prev` are two distinct fields of a segment header, used
// only as list links while the segment is in a heap's list.
unsafe impl Linked for Segment {
    unsafe fn next(this: *mut Self) -> *mut *mut Self {
        // SAFETY: the caller's contract: `this` is a live segment.
        unsafe { &raw mut (*this).next }
    }
    unsafe fn prev(this: *mut Self) -> *mut *mut Self {
        // SAFETY: as above.
        unsafe { &raw mut (*this).prev }
    }
}

impl Heap {
    /// Mirrors class `c`'s queue head into `first[c].page` and the class's
    /// slots of `direct`.
    #[inline]
    fn sync_first(&mut self, c: usize) {
        let head = self.queues[c].head;
        let page = if head.is_null() { empty_page() } else { head };
        self.first[c].page = page;
        for w in direct_slots(c) {
            self.direct[w] = page;
        }
    }

    /// Empties every class's queue (the heap gives its pages up), and with
    /// them `first` and `direct`. Their `kept` flags stay as they are: the
    /// heap that adopts their segment clears them (`reclaim.rs`).
    pub(crate) fn clear_queues(&mut self) {
        for c in 0..NUM_CLASSES {
            self.queues[c].clear();
            self.sync_first(c);
        }
        self.kept_bytes = 0;
    }

    /// Marks the empty `page`, in its class queue, as kept there instead of
    /// going back to its segment, if [`KEEP_EMPTY_BYTES`] allows; false if not.
    /// It counts until it leaves the queue, also while the fast path hands
    /// its blocks out again (the fast path does not look): the count may
    /// overstate the empty pages kept, never understate them.
    ///
    /// # Safety
    /// `page` is an empty page of an owned segment, in its class queue.
    pub(crate) unsafe fn keep(&mut self, page: *mut Page) -> bool {
        // SAFETY: the caller's contract: the descriptor lies in its segment's header.
        unsafe {
            if (*page).kept {
                return true;
            }
            let bytes = 1usize << (*Segment::of(page as usize)).page_shift;
            if self.kept_bytes + bytes > KEEP_EMPTY_BYTES {
                return false;
            }
            if self.kept_bytes == 0 {
                self.kept_since_ns = crate::os::monotonic_ns();
            }
            self.kept_bytes += bytes;
            (*page).kept = true;
        }
        true
    }

    /// `page` leaves its queue: it no longer counts against [`KEEP_EMPTY_BYTES`].
    ///
    /// # Safety
    /// `page` is a page of an owned segment in this heap's queue.
    #[inline]
    pub(crate) unsafe fn unkeep(&mut self, page: *mut Page) {
        // SAFETY: the caller's contract: the descriptor lies in its segment's header.
        unsafe {
            if (*page).kept {
                (*page).kept = false;
                self.kept_bytes -= 1usize << (*Segment::of(page as usize)).page_shift;
            }
        }
    }

    /// Puts `page` at the head of its class's queue.
    ///
    /// # Safety
    /// `page` is a page of a segment this heap owns, in no queue.
    pub(crate) unsafe fn push_front(&mut self, page: *mut Page) {
        // SAFETY: the caller's contract; queued pages belong to this heap.
        let c = unsafe {
            let c = (*page).class as usize;
            self.queues[c].push_front(page);
            c
        };
        self.sync_first(c);
    }

    /// Puts `page` at the tail of its class's queue.
    ///
    /// # Safety
    /// As [`Heap::push_front`].
    pub(crate) unsafe fn push_back(&mut self, page: *mut Page) {
        // SAFETY: as in `push_front`.
        let c = unsafe {
            let c = (*page).class as usize;
            self.queues[c].push_back(page);
            c
        };
        self.sync_first(c);
    }

    /// Takes `page` out of its class's queue.
    ///
    /// # Safety
    /// `page` is in this heap's queue for its class.
    pub(crate) unsafe fn unlink(&mut self, page: *mut Page) {
        // SAFETY: the caller's contract; neighbours are pages of the same queue.
        let c = unsafe {
            self.unkeep(page);
            let c = (*page).class as usize;
            self.queues[c].unlink(page);
            c
        };
        self.sync_first(c);
    }

    /// Puts `seg` at the head of its kind's list.
    ///
    /// # Safety
    /// `seg` is owned by this heap and in no list.
    pub(crate) unsafe fn segment_push_front(&mut self, seg: *mut Segment) {
        // SAFETY: the caller's contract; list members are owned segments.
        unsafe { self.segments[(*seg).kind as usize].push_front(seg) }
    }

    /// Puts `seg` at the tail of its kind's list.
    ///
    /// # Safety
    /// As [`Heap::segment_push_front`].
    pub(crate) unsafe fn segment_push_back(&mut self, seg: *mut Segment) {
        // SAFETY: as above.
        unsafe { self.segments[(*seg).kind as usize].push_back(seg) }
    }

    /// Takes `seg` out of its kind's list.
    ///
    /// # Safety
    /// `seg` is in this heap's list for its kind.
    pub(crate) unsafe fn segment_unlink(&mut self, seg: *mut Segment) {
        // SAFETY: the caller's contract; neighbours are owned segments.
        unsafe { self.segments[(*seg).kind as usize].unlink(seg) }
    }
}
