//! The heap's intrusive lists: the queue of pages of each size class and the
//! list of owned segments of each page kind, both doubly linked through
//! `next`/`prev` fields of the elements themselves (no allocation).
//!
//! Every function here takes an element that belongs to this heap (a page of
//! an owned segment, an owned segment); they are `unsafe` for that reason.

use crate::small::heap::{empty_page, Heap};
use crate::small::page::Page;
use crate::small::segment::Segment;
use core::ptr;

impl Heap {
    /// Puts `page` at the head of its class's queue.
    ///
    /// # Safety
    /// `page` is a page of a segment this heap owns, in no queue.
    pub(crate) unsafe fn push_front(&mut self, page: *mut Page) {
        // SAFETY: the caller's contract.
        let p = unsafe { &mut *page };
        let c = p.class as usize;
        let first = self.first[c].page;
        p.prev = ptr::null_mut();
        if first == empty_page() {
            p.next = ptr::null_mut();
            self.last[c] = page;
        } else {
            p.next = first;
            // SAFETY: a page of this heap's queue.
            unsafe { (*first).prev = page };
        }
        self.first[c].page = page;
    }

    /// Puts `page` at the tail of its class's queue.
    ///
    /// # Safety
    /// As [`Heap::push_front`].
    pub(crate) unsafe fn push_back(&mut self, page: *mut Page) {
        // SAFETY: the caller's contract.
        let c = unsafe { (*page).class } as usize;
        if self.first[c].page == empty_page() {
            // SAFETY: the caller's contract.
            return unsafe { self.push_front(page) };
        }
        let last = self.last[c];
        // SAFETY: the caller's contract; `last` is a page of this heap's queue.
        unsafe {
            (*page).next = ptr::null_mut();
            (*page).prev = last;
            (*last).next = page;
        }
        self.last[c] = page;
    }

    /// Takes `page` out of its class's queue.
    ///
    /// # Safety
    /// `page` is in this heap's queue for its class.
    pub(crate) unsafe fn unlink(&mut self, page: *mut Page) {
        // SAFETY: the caller's contract; neighbours are pages of the same queue.
        unsafe {
            let (c, next, prev) = ((*page).class as usize, (*page).next, (*page).prev);
            if prev.is_null() {
                self.first[c].page = if next.is_null() { empty_page() } else { next };
            } else {
                (*prev).next = next;
            }
            if next.is_null() {
                self.last[c] = prev;
            } else {
                (*next).prev = prev;
            }
            (*page).next = ptr::null_mut();
            (*page).prev = ptr::null_mut();
        }
    }

    /// Puts `seg` at the head of its kind's list.
    ///
    /// # Safety
    /// `seg` is owned by this heap and in no list.
    pub(crate) unsafe fn segment_push_front(&mut self, seg: *mut Segment) {
        // SAFETY: the caller's contract; the old head is an owned segment.
        unsafe {
            let k = (*seg).kind as usize;
            let head = self.segments[k];
            (*seg).prev = ptr::null_mut();
            (*seg).next = head;
            if !head.is_null() {
                (*head).prev = seg;
            }
            self.segments[k] = seg;
        }
    }

    /// Puts `seg` at the tail of its kind's list.
    ///
    /// # Safety
    /// As [`Heap::segment_push_front`].
    pub(crate) unsafe fn segment_push_back(&mut self, seg: *mut Segment) {
        // SAFETY: the caller's contract; list members are owned segments.
        unsafe {
            let k = (*seg).kind as usize;
            let mut last = self.segments[k];
            if last.is_null() {
                return self.segment_push_front(seg);
            }
            while !(*last).next.is_null() {
                last = (*last).next;
            }
            (*last).next = seg;
            (*seg).prev = last;
            (*seg).next = ptr::null_mut();
        }
    }

    /// Takes `seg` out of its kind's list.
    ///
    /// # Safety
    /// `seg` is in this heap's list for its kind.
    pub(crate) unsafe fn segment_unlink(&mut self, seg: *mut Segment) {
        // SAFETY: the caller's contract; neighbours are owned segments.
        unsafe {
            let (k, next, prev) = ((*seg).kind as usize, (*seg).next, (*seg).prev);
            if prev.is_null() {
                self.segments[k] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*seg).next = ptr::null_mut();
            (*seg).prev = ptr::null_mut();
        }
    }
}
