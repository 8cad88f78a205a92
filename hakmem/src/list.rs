//! The one intrusive doubly linked list: a head and a tail, the links inside
//! the elements (`next`/`prev` fields the element type names through
//! [`Linked`]). Used for a heap's page queues and its segment lists; nothing
//! here allocates or synchronises (one owner thread changes a list).
//!
//! Invariant: `head` is null iff `tail` is; `head.prev` and `tail.next` are
//! null; following `next` from `head` reaches `tail`, each `prev` mirroring it.
//! An element not in a list has null links.

use core::ptr;

/// An element type with its links inside.
///
/// # Safety
/// `next` and `prev` return pointers to two distinct fields of `*this`, used
/// by nothing but this module while the element is in a list.
pub(crate) unsafe trait Linked: Sized {
    /// The address of `this`'s `next` link.
    ///
    /// # Safety
    /// `this` points to a live element.
    unsafe fn next(this: *mut Self) -> *mut *mut Self;
    /// The address of `this`'s `prev` link.
    ///
    /// # Safety
    /// As [`Linked::next`].
    unsafe fn prev(this: *mut Self) -> *mut *mut Self;
}

/// A list of `T` (see the module invariant).
pub(crate) struct List<T> {
    /// First element, or null.
    pub(crate) head: *mut T,
    /// Last element, or null.
    pub(crate) tail: *mut T,
}

impl<T: Linked> List<T> {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        List {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
        }
    }

    /// Puts `x` first.
    ///
    /// # Safety
    /// `x` is a live element in no list; the list's elements are live.
    pub(crate) unsafe fn push_front(&mut self, x: *mut T) {
        // SAFETY: the caller's contract: `x` and the old head are live.
        unsafe {
            *T::prev(x) = ptr::null_mut();
            *T::next(x) = self.head;
            if self.head.is_null() {
                self.tail = x;
            } else {
                *T::prev(self.head) = x;
            }
        }
        self.head = x;
    }

    /// Puts `x` last.
    ///
    /// # Safety
    /// As [`List::push_front`].
    pub(crate) unsafe fn push_back(&mut self, x: *mut T) {
        // SAFETY: the caller's contract: `x` and the old tail are live.
        unsafe {
            *T::next(x) = ptr::null_mut();
            *T::prev(x) = self.tail;
            if self.tail.is_null() {
                self.head = x;
            } else {
                *T::next(self.tail) = x;
            }
        }
        self.tail = x;
    }

    /// Takes `x` out; its links become null.
    ///
    /// # Safety
    /// `x` is in this list; the list's elements are live.
    pub(crate) unsafe fn unlink(&mut self, x: *mut T) {
        // SAFETY: the caller's contract: `x` and its neighbours are live members.
        unsafe {
            let (next, prev) = (*T::next(x), *T::prev(x));
            if prev.is_null() {
                self.head = next;
            } else {
                *T::next(prev) = next;
            }
            if next.is_null() {
                self.tail = prev;
            } else {
                *T::prev(next) = prev;
            }
            *T::next(x) = ptr::null_mut();
            *T::prev(x) = ptr::null_mut();
        }
    }

    /// Forgets every element (their links are left as they are).
    pub(crate) fn clear(&mut self) {
        *self = List::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        v: u32,
        next: *mut Node,
        prev: *mut Node,
    }

    // SAFETY: two distinct fields.
    unsafe impl Linked for Node {
        unsafe fn next(this: *mut Self) -> *mut *mut Self {
            // SAFETY: the caller's contract: `this` is live.
            unsafe { &raw mut (*this).next }
        }
        unsafe fn prev(this: *mut Self) -> *mut *mut Self {
            // SAFETY: as above.
            unsafe { &raw mut (*this).prev }
        }
    }

    /// Values head to tail, checking every `prev` on the way.
    fn values(l: &List<Node>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut prev = ptr::null_mut();
        let mut x = l.head;
        while !x.is_null() {
            // SAFETY: the test's nodes live in a Vec that outlives the list.
            unsafe {
                assert_eq!((*x).prev, prev, "prev mirrors next");
                out.push((*x).v);
                prev = x;
                x = (*x).next;
            }
        }
        assert_eq!(l.tail, prev, "tail is the last element");
        out
    }

    #[test]
    fn push_unlink_keep_head_tail_and_links_consistent() {
        let mut nodes: Vec<Node> = (0..5)
            .map(|v| Node {
                v,
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
            })
            .collect();
        let p: Vec<*mut Node> = nodes.iter_mut().map(|n| n as *mut Node).collect();
        let mut l: List<Node> = List::new();
        assert!(l.head.is_null());
        // SAFETY: live nodes, each pushed once and unlinked only while listed.
        unsafe {
            l.push_back(p[1]);
            l.push_front(p[0]);
            l.push_back(p[2]);
            l.push_back(p[3]);
            assert_eq!(values(&l), [0, 1, 2, 3]);
            l.unlink(p[0]); // head
            l.unlink(p[3]); // tail
            l.unlink(p[2]); // middle… now tail
            assert_eq!(values(&l), [1]);
            assert!((*p[3]).next.is_null() && (*p[3]).prev.is_null());
            l.unlink(p[1]);
            assert!(l.head.is_null() && l.tail.is_null());
            l.push_front(p[4]);
            l.push_front(p[3]);
            assert_eq!(values(&l), [3, 4]);
        }
        l.clear();
        assert!(l.head.is_null() && l.tail.is_null());
    }
}
