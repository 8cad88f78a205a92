//! The small-block heap of one thread: a queue of pages per size class and a
//! list of owned segments per page kind, plus the thread's small-block counters.
//!
//! ```text
//! Heap ── queues[class] ──► Page ⇄ Page ⇄ …   (pages with blocks to give; head in first[class])
//!      └─ segments[kind] ─► Segment ⇄ Segment …   (every segment it owns)
//! ```
//!
//! Until a thread's first allocation its heap is the read-only
//! [`Heap::empty`] (inside the thread context's empty context), whose queues
//! all point at the empty page, so the fast path needs no "is there a heap"
//! branch: popping from the empty page fails and the slow path sets up a
//! real heap. Full pages leave their queue (`in_full`) and come back when a
//! block is freed into them: by the owner directly, by other threads through
//! the segment's `remote_pending` flag, which the slow path checks before it
//! takes a fresh page.
//!
//! The concerns are one file each: `alloc.rs` (fast pop, refill, new pages),
//! `free.rs` (local and remote frees), `queue.rs` (page queues and segment
//! lists), `reclaim.rs` (thread exit and adoption of abandoned segments),
//! `purge.rs` (collecting remote frees, retiring pages, purging), `remote.rs`
//! (remote frees sent to their owner in batches).

use crate::counters::Counter;
use crate::list::List;
use crate::small::page::Page;
use crate::small::remote::Outbox;
use crate::small::segment::{OwnLine, Segment};
use crate::small::size_class::{class_of_table, DIRECT_SLOTS, NUM_CLASSES};
use core::sync::atomic::AtomicUsize;

/// A thread's small-block heap.
#[repr(C)]
pub struct Heap {
    /// Head of the queue of pages of each class (the empty page when the
    /// queue is empty) and the class's allocation count. The fast path pops
    /// from `first[c].page` and counts in the same cache line.
    pub(crate) first: [ClassHead; NUM_CLASSES],
    /// `direct[direct_slot(size)]` = `first[class_of(size)].page` for sizes
    /// up to `TABLE_MAX` (mimalloc's `pages_free_direct`): the fast path
    /// finds the page from the size alone, without the class table.
    pub(crate) direct: [*mut Page; DIRECT_SLOTS],
    /// The queue of pages of each class (its head is mirrored in `first`).
    pub(crate) queues: [List<Page>; NUM_CLASSES],
    /// Owned segments of each kind; those with free pages come first.
    pub(crate) segments: [List<Segment>; 3],
    /// This thread's small-block counters.
    pub counters: Counters,
    /// Bytes of the empty pages kept in their class queue (`Page::kept`),
    /// at most `purge::KEEP_EMPTY_BYTES`.
    pub(crate) kept_bytes: usize,
    /// When `kept_bytes` last went from 0 to more (monotonic ns): kept pages
    /// go back once they have been kept for as long as a freed page waits
    /// before its purge (`purge::RETAIN_DELAYS` delays).
    pub(crate) kept_since_ns: u64,
    /// A thread has this heap (false in the empty heap and in pooled ones):
    /// a remote free can use it without asking the thread layer.
    pub(crate) live: bool,
    /// This thread's frees of other heaps' blocks, waiting to travel to
    /// their owner together (`remote.rs`).
    pub(crate) outbox: Outbox,
    /// Messages of remote frees other threads sent this heap (`remote.rs`):
    /// a stack of carrier blocks, on a line of its own.
    pub(crate) inbox: OwnLine<AtomicUsize>,
}

/// One class's queue head and allocation count, side by side: 16 bytes, so
/// a malloc touches one line of the heap for both.
#[repr(C)]
pub(crate) struct ClassHead {
    /// First page of the class's queue, or the empty page.
    pub(crate) page: *mut Page,
    /// Blocks of the class handed out by this thread (owner writes, anyone reads).
    pub(crate) allocs: Counter,
}

/// The small-block counters each thread keeps besides the per-class
/// allocation counts (written by that thread only, summed by the statistics
/// snapshot).
pub struct Counters {
    /// Frees by this thread, of blocks of any thread, per class.
    pub frees: [Counter; NUM_CLASSES],
    /// Frees by this thread of blocks another thread owns.
    pub remote_frees: Counter,
}

struct SyncPage(Page);
// SAFETY: the empty page is never written: every write path checks for it first.
unsafe impl Sync for SyncPage {}
static EMPTY_PAGE: SyncPage = SyncPage(Page::EMPTY);

/// The page every empty queue points at (never written: its free list is empty).
#[inline(always)]
pub(crate) fn empty_page() -> *mut Page {
    &raw const EMPTY_PAGE.0 as *mut Page
}

/// Another thread's view of a heap's counters (the statistics snapshot):
/// only atomics are read, never the owner's queue pointers.
pub struct CountersOf {
    heap: *const Heap,
}

impl CountersOf {
    /// The view of the heap at `heap`.
    ///
    /// # Safety
    /// `heap` points to a heap that stays mapped while the view is used.
    pub(crate) unsafe fn new(heap: *const Heap) -> Self {
        CountersOf { heap }
    }

    /// Blocks of class `c` handed out.
    pub fn allocs(&self, c: usize) -> u64 {
        // SAFETY: a mapped heap (`new`'s contract); the place expression
        // borrows only the atomic counter, not the owner-written `page`.
        unsafe { (*self.heap).first[c].allocs.get() }
    }

    /// The other counters.
    pub fn counters(&self) -> &Counters {
        // SAFETY: as above; `Counters` holds atomics only.
        unsafe { &(*self.heap).counters }
    }
}

impl Heap {
    /// A heap with every queue empty and no segment.
    pub const fn empty() -> Heap {
        Heap {
            first: [const {
                ClassHead {
                    page: &raw const EMPTY_PAGE.0 as *mut Page,
                    allocs: Counter::new(),
                }
            }; NUM_CLASSES],
            direct: [&raw const EMPTY_PAGE.0 as *mut Page; DIRECT_SLOTS],
            queues: [const { List::new() }; NUM_CLASSES],
            segments: [const { List::new() }; 3],
            counters: Counters {
                frees: [const { Counter::new() }; NUM_CLASSES],
                remote_frees: Counter::new(),
            },
            kept_bytes: 0,
            kept_since_ns: 0,
            live: false,
            outbox: Outbox::new(),
            inbox: OwnLine(AtomicUsize::new(0)),
        }
    }

    /// This heap's address, the `owner` its segments record.
    #[inline(always)]
    pub(crate) fn id(&self) -> usize {
        self as *const Heap as usize
    }

    /// Blocks this heap has handed out so far, of every class (the owner's
    /// view; a sum of 105 counters, for a look every few microseconds at most).
    pub fn allocs(&self) -> u64 {
        self.first
            .iter()
            .fold(0u64, |n, h| n.wrapping_add(h.allocs.get()))
    }

    /// Every page of every owned segment (for `collect` and debug checks),
    /// and `direct` against `first`.
    pub fn check(&self) {
        for (w, &page) in self.direct.iter().enumerate() {
            assert!(
                page == self.first[class_of_table(w * 8)].page,
                "direct slot {w} is not its class's head page"
            );
        }
        for k in 0..3 {
            let mut seg = self.segments[k].head;
            while !seg.is_null() {
                // SAFETY: owned segment.
                let s = unsafe { &*seg };
                for p in &s.pages[..s.kind.page_count()] {
                    p.check();
                }
                seg = s.next;
            }
        }
    }
}
