//! One lock-free stack for every pool of never-unmapped objects (pooled and
//! abandoned segments, unused thread contexts): a Treiber stack whose head
//! carries an ABA tag in the low bits the nodes' alignment leaves free.
//!
//! No lock, so a fork in the middle leaves nothing held. Nodes are never
//! unmapped, so a popper that reads the link of a node another thread popped
//! meanwhile reads mapped memory; the tag then makes its CAS fail.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A node of a [`TaggedStack`].
///
/// # Safety
/// Every node's address is a multiple of `1 << ALIGN_BITS`, `link` returns a
/// field of the node itself, and a node, once pushed, is never unmapped.
pub unsafe trait StackNode {
    /// log2 of the nodes' alignment: the low bits the tag may use.
    const ALIGN_BITS: u32;
    /// The node's link field (written by the pusher, read racily by poppers).
    ///
    /// # Safety
    /// `node` points to a live node.
    unsafe fn link(node: *mut Self) -> *const AtomicUsize;
}

/// A lock-free LIFO of `T` nodes with an ABA tag in the head.
pub struct TaggedStack<T: StackNode> {
    head: AtomicUsize,
    _nodes: PhantomData<*mut T>,
}

// SAFETY: the stack holds addresses only and hands each node to one popper.
unsafe impl<T: StackNode> Sync for TaggedStack<T> {}
// SAFETY: as above.
unsafe impl<T: StackNode> Send for TaggedStack<T> {}

impl<T: StackNode> TaggedStack<T> {
    const TAG: usize = (1 << T::ALIGN_BITS) - 1;

    /// An empty stack.
    pub const fn new() -> Self {
        TaggedStack {
            head: AtomicUsize::new(0),
            _nodes: PhantomData,
        }
    }

    /// Pushes `node`.
    ///
    /// # Safety
    /// `node` is a node the caller owns (on no stack), aligned as `T` says.
    pub unsafe fn push(&self, node: *mut T) {
        debug_assert_eq!(node as usize & Self::TAG, 0);
        let mut h = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller owns `node` until the CAS publishes it.
            unsafe { (*T::link(node)).store(h & !Self::TAG, Ordering::Relaxed) };
            let new = node as usize | (h.wrapping_add(1) & Self::TAG);
            match self
                .head
                .compare_exchange_weak(h, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(x) => h = x,
            }
        }
    }

    /// Pops the most recently pushed node; the caller then owns it.
    pub fn pop(&self) -> Option<*mut T> {
        let mut h = self.head.load(Ordering::Acquire);
        loop {
            let node = (h & !Self::TAG) as *mut T;
            if node.is_null() {
                return None;
            }
            // SAFETY: nodes are never unmapped (StackNode's contract), so this
            // read is of mapped memory even if another thread popped `node`
            // meanwhile; the tag then makes the CAS fail.
            let next = unsafe { (*T::link(node)).load(Ordering::Relaxed) };
            let new = next | (h.wrapping_add(1) & Self::TAG);
            match self
                .head
                .compare_exchange_weak(h, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(node),
                Err(x) => h = x,
            }
        }
    }

    /// Whether the stack was empty when looked at.
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed) & !Self::TAG == 0
    }
}

impl<T: StackNode> Default for TaggedStack<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(64))]
    struct Node {
        link: AtomicUsize,
        id: usize,
    }

    // SAFETY: 64-byte aligned; the link is a field; test nodes live in a Vec
    // that outlives every stack operation.
    unsafe impl StackNode for Node {
        const ALIGN_BITS: u32 = 6;
        unsafe fn link(node: *mut Self) -> *const AtomicUsize {
            // SAFETY: the caller's contract.
            unsafe { &raw const (*node).link }
        }
    }

    #[test]
    fn lifo_and_nothing_lost_or_duplicated_under_contention() {
        let mut nodes: Vec<Node> = (0..64)
            .map(|id| Node {
                link: AtomicUsize::new(0),
                id,
            })
            .collect();
        let stack = TaggedStack::<Node>::new();
        assert!(stack.pop().is_none());
        let base = nodes.as_mut_ptr() as usize;
        let at = |i: usize| (base + i * core::mem::size_of::<Node>()) as *mut Node;
        // SAFETY: distinct nodes of the Vec, each pushed once.
        unsafe {
            stack.push(at(0));
            stack.push(at(1));
        }
        // SAFETY: just popped, a live node.
        assert_eq!(stack.pop().map(|n| unsafe { (*n).id }), Some(1), "LIFO");
        // SAFETY: as above.
        unsafe { stack.push(at(1)) };
        for i in 2..64 {
            // SAFETY: as above.
            unsafe { stack.push(at(i)) };
        }
        // Four threads pop and push back as fast as they can: the ABA case
        // (pop A, pop B, push A while a third thread holds A's old link) is
        // what the tag must catch.
        std::thread::scope(|s| {
            for t in 0..4 {
                let stack = &stack;
                s.spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..50_000 {
                        if let Some(n) = stack.pop() {
                            held.push(n as usize);
                        }
                        if (i + t) % 3 != 0 {
                            if let Some(n) = held.pop() {
                                // SAFETY: popped by this thread, so owned.
                                unsafe { stack.push(n as *mut Node) };
                            }
                        }
                    }
                    for n in held {
                        // SAFETY: as above.
                        unsafe { stack.push(n as *mut Node) };
                    }
                });
            }
        });
        let mut seen = [false; 64];
        while let Some(n) = stack.pop() {
            // SAFETY: a live node of the Vec.
            let id = unsafe { (*n).id };
            assert!(!seen[id], "node {id} came out twice");
            seen[id] = true;
        }
        assert!(seen.iter().all(|&s| s), "a node was lost");
        drop(nodes);
    }
}
