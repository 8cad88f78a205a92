//! Thread-local heaps: the malloc/free fast paths and the refill slow path.
//!
//! Each thread reaches its heap through a `const`-initialised thread local
//! holding a raw pointer (no destructor, no lazy initialiser: registering one
//! would allocate and re-enter malloc under LD_PRELOAD). Until a thread's first
//! allocation that pointer is [`EMPTY_HEAP`], whose queues all point at an
//! empty page, so the fast path needs no "is there a heap" branch: popping
//! from the empty page fails and the slow path creates the heap. A pthread key
//! destructor abandons the heap at thread exit.
//!
//! ```text
//! Heap ── first[class] ──► Page ⇄ Page ⇄ …   (pages with blocks to give)
//!      └─ segments[kind] ─► Segment ⇄ Segment …   (every segment it owns)
//! ```
//!
//! Full pages leave their queue (`in_full`) and come back when a block is
//! freed into them: by the owner directly, by other threads through the
//! segment's `remote_pending` flag, which the slow path checks before it takes
//! a fresh page. Heaps are never unmapped: an exited thread's heap waits on a
//! lock-free stack for the next new thread, and a registry of all heaps lets
//! `stats()` sum their counters.

use crate::options;
use crate::os;
use crate::small::page::{Block, Page};
use crate::probe::{self, Component};
use crate::small::segment::{self, PageKind, Segment, ABANDONED};
use crate::small::size_class::{class_of, page_kind, NUM_CLASSES};
use crate::stats::{HeapCounters, GLOBAL};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// A thread's heap.
#[repr(C)]
pub struct Heap {
    /// Head of the queue of pages of each class; `EMPTY_PAGE` when empty. The
    /// fast path pops from `first[c]`.
    pub first: [*mut Page; NUM_CLASSES],
    /// Tail of each queue (null when empty).
    last: [*mut Page; NUM_CLASSES],
    /// Owned segments of each kind; those with free pages come first.
    segments: [*mut Segment; 3],
    /// This thread's counters (see stats.rs).
    pub counters: HeapCounters,
    /// Large-block state of this thread: BigCache slots, ELO sampling.
    pub large: crate::large::block::ThreadState,
    /// Slow-path calls since the last maintenance check.
    slow_calls: u32,
    /// Earliest time of the next purge pass, in monotonic ns.
    next_maintenance_ns: u64,
    /// Link in the registry of all heaps (set once, before publication).
    registry_next: *mut Heap,
    /// Link in the pool of unused heaps.
    pool_next: AtomicUsize,
}

struct SyncPage(Page);
// SAFETY: the empty page is never written: every write path checks for it first.
unsafe impl Sync for SyncPage {}
static EMPTY_PAGE: SyncPage = SyncPage(Page::EMPTY);

#[inline(always)]
fn empty_page() -> *mut Page {
    &raw const EMPTY_PAGE.0 as *mut Page
}

/// The heap of threads that have not allocated yet (never written).
pub struct SyncHeap(Heap);
// SAFETY: EMPTY_HEAP is only read; every write path replaces it by a real heap first.
unsafe impl Sync for SyncHeap {}
pub static EMPTY_HEAP: SyncHeap = SyncHeap(Heap {
    first: [&raw const EMPTY_PAGE.0 as *mut Page; NUM_CLASSES],
    last: [ptr::null_mut(); NUM_CLASSES],
    segments: [ptr::null_mut(); 3],
    counters: HeapCounters::new(),
    large: crate::large::block::ThreadState::new(),
    slow_calls: 0,
    next_maintenance_ns: 0,
    registry_next: ptr::null_mut(),
    pool_next: AtomicUsize::new(0),
});

pub(crate) const EMPTY_HEAP_PTR: *mut Heap = &raw const EMPTY_HEAP.0 as *mut Heap;

/// The calling thread's heap (maybe [`EMPTY_HEAP`]).
#[inline(always)]
pub fn current() -> *mut Heap {
    crate::tls::get()
}

#[inline(always)]
fn is_empty_heap(h: *mut Heap) -> bool {
    h == EMPTY_HEAP_PTR
}

/// The calling thread's heap, created if needed. None if the OS refuses memory.
pub fn current_or_init() -> Option<*mut Heap> {
    let h = current();
    if is_empty_heap(h) {
        init_current()
    } else {
        Some(h)
    }
}

// ---------------------------------------------------------------------------
// Fast paths
// ---------------------------------------------------------------------------

/// Allocates a block of class `c`: pop from the current page, or refill.
#[inline(always)]
pub fn alloc_class(c: usize) -> *mut u8 {
    let heap = current();
    // SAFETY: `first[c]` is a page of this heap or the empty page, whose
    // `free` is null so `pop` does not write to it.
    unsafe {
        let b = (*(*heap).first[c]).pop();
        if !b.is_null() {
            (*heap).counters.allocs[c].add(1);
            return b as *mut u8;
        }
    }
    alloc_class_slow(heap, c)
}

/// Allocates `size` bytes (`size <= MAX_CLASS_SIZE`).
#[inline(always)]
pub fn alloc_small(size: usize) -> *mut u8 {
    alloc_class(class_of(size))
}

/// As [`alloc_class`], reporting fast path vs refill to the tracer.
#[cold]
pub fn alloc_class_traced(c: usize) -> *mut u8 {
    let t = probe::start();
    let heap = current();
    // SAFETY: as in `alloc_class`.
    unsafe {
        let b = (*(*heap).first[c]).pop();
        if !b.is_null() {
            (*heap).counters.allocs[c].add(1);
            probe::emit(Component::SmallFast, t, c as u64);
            return b as *mut u8;
        }
    }
    let p = alloc_class_slow(heap, c);
    probe::emit(Component::SmallRefill, t, c as u64);
    p
}

/// Frees a block of a size-class segment (the region lookup said so).
///
/// # Safety
/// `addr` lies in a live size-class segment.
#[inline(always)]
pub unsafe fn free_class(addr: usize) {
    let seg = Segment::of(addr);
    // SAFETY: the caller checked the segment map.
    unsafe {
        let page = (*seg).page_of(addr);
        let heap = current();
        let local = (*seg).owner.load(Ordering::Relaxed) == heap as usize;
        if cfg!(any(debug_assertions, feature = "debug-checks")) {
            check_block(page, addr, local);
        }
        if local {
            // SAFETY: a page's class is < NUM_CLASSES by construction.
            (*heap)
                .counters
                .frees
                .get_unchecked((*page).class as usize)
                .add(1);
            if (*page).push_local(addr as *mut Block) {
                free_local_slow(&mut *heap, seg, page);
            }
        } else {
            free_remote(seg, page, addr);
        }
    }
}

/// Usable size of a block of a size-class segment.
///
/// # Safety
/// `addr` lies in a live size-class segment.
#[inline]
pub unsafe fn usable_size_class(addr: usize) -> usize {
    // SAFETY: the caller checked the segment map.
    unsafe { (*(*Segment::of(addr)).page_of(addr)).block_size as usize }
}

/// Debug check of a freed block; `local`: this thread owns the page.
#[cold]
fn check_block(page: *mut Page, addr: usize, local: bool) {
    // SAFETY: `page` is a descriptor in a hakmem segment header.
    let p = unsafe { &*page };
    if !p.is_block_start(addr) {
        crate::api::invalid_pointer("free", addr as *mut u8, p.class as usize);
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
            crate::api::double_free(addr as *mut u8, p.class as usize);
        }
        // SAFETY: free-list blocks belong to the page.
        b = p.next_of(b);
    }
}

// ---------------------------------------------------------------------------
// Slow paths
// ---------------------------------------------------------------------------

#[cold]
#[inline(never)]
fn alloc_class_slow(heap: *mut Heap, c: usize) -> *mut u8 {
    let heap = if is_empty_heap(heap) {
        match init_current() {
            Some(h) => h,
            None => return out_of_memory(),
        }
    } else {
        heap
    };
    // SAFETY: a real heap, used only by its own thread.
    let h = unsafe { &mut *heap };
    h.tick();
    for attempt in 0..2 {
        let mut page = h.first[c];
        while page != empty_page() {
            // SAFETY: pages in the queue belong to segments this heap owns.
            let p = unsafe { &mut *page };
            p.collect();
            if p.free.is_null() {
                p.extend();
            }
            let b = p.pop();
            if !b.is_null() {
                h.counters.allocs[c].add(1);
                return b as *mut u8;
            }
            // Nothing left: out of the queue until a block comes back. The
            // page was the head, so the next candidate is the new head.
            h.unlink(page);
            p.in_full = true;
            page = h.first[c];
        }
        if attempt == 0 && !h.collect_remote() {
            break;
        }
    }
    match h.new_page(c) {
        Some(page) => {
            // SAFETY: a fresh page of this heap.
            let p = unsafe { &mut *page };
            p.extend();
            let b = p.pop();
            h.counters.allocs[c].add(1);
            b as *mut u8
        }
        None => out_of_memory(),
    }
}

/// The OS refused memory: NULL with errno ENOMEM, as malloc must.
#[cold]
fn out_of_memory() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

#[cold]
#[inline(never)]
fn free_local_slow(h: &mut Heap, seg: *mut Segment, page: *mut Page) {
    // SAFETY: `page` belongs to `seg`, owned by `h`.
    let p = unsafe { &mut *page };
    if p.in_full {
        p.in_full = false;
        h.push_front(page);
    }
    if p.used == 0 {
        h.retire_if_spare(seg, page);
    }
}

#[cold]
#[inline(never)]
fn free_remote(seg: *mut Segment, page: *mut Page, addr: usize) {
    let traced = probe::tracing();
    let t = if traced { probe::start() } else { 0 };
    // Count in this thread's heap (create it: a thread that only frees is rare).
    // Read the class before the push: after it the owner may recycle the page.
    // SAFETY: `page` is a live page descriptor; the block is live until pushed.
    let class = unsafe { (*page).class as usize };
    if let Some(h) = current_or_init() {
        // SAFETY: this thread's heap.
        unsafe {
            (*h).counters.remote_frees.add(1);
            (*h).counters.frees[class].add(1);
        }
    }
    // SAFETY: as above; the flag is raised after the push (see segment.rs).
    unsafe {
        (*page).push_remote(addr as *mut Block);
        if (*seg).remote_pending.load(Ordering::SeqCst) == 0 {
            (*seg).remote_pending.store(1, Ordering::SeqCst);
        }
    }
    if traced {
        probe::emit(Component::RemoteFree, t, class as u64);
    }
}

impl Heap {
    fn push_front(&mut self, page: *mut Page) {
        // SAFETY: `page` belongs to this heap and is in no queue.
        let p = unsafe { &mut *page };
        let c = p.class as usize;
        let first = self.first[c];
        p.prev = ptr::null_mut();
        if first == empty_page() {
            p.next = ptr::null_mut();
            self.last[c] = page;
        } else {
            p.next = first;
            // SAFETY: a page of this heap.
            unsafe { (*first).prev = page };
        }
        self.first[c] = page;
    }

    fn push_back(&mut self, page: *mut Page) {
        // SAFETY: as in push_front.
        let p = unsafe { &mut *page };
        let c = p.class as usize;
        if self.first[c] == empty_page() {
            return self.push_front(page);
        }
        let last = self.last[c];
        p.next = ptr::null_mut();
        p.prev = last;
        // SAFETY: a page of this heap.
        unsafe { (*last).next = page };
        self.last[c] = page;
    }

    fn unlink(&mut self, page: *mut Page) {
        // SAFETY: `page` is in this heap's queue for its class.
        let p = unsafe { &mut *page };
        let c = p.class as usize;
        // SAFETY: neighbours are pages of the same queue.
        unsafe {
            if p.prev.is_null() {
                self.first[c] = if p.next.is_null() {
                    empty_page()
                } else {
                    p.next
                };
            } else {
                (*p.prev).next = p.next;
            }
            if p.next.is_null() {
                self.last[c] = p.prev;
            } else {
                (*p.next).prev = p.prev;
            }
        }
        p.next = ptr::null_mut();
        p.prev = ptr::null_mut();
    }

    /// An empty page goes back to its segment unless it is the class's only
    /// page (keeping one avoids re-carving on alloc/free ping-pong).
    fn retire_if_spare(&mut self, seg: *mut Segment, page: *mut Page) {
        // SAFETY: `page` belongs to `seg`, owned by this heap.
        let p = unsafe { &mut *page };
        if p.in_full {
            p.in_full = false;
        } else {
            if self.first[p.class as usize] == page && p.next.is_null() {
                return;
            }
            self.unlink(page);
        }
        self.release_page(seg, page);
    }

    fn release_page(&mut self, seg: *mut Segment, page: *mut Page) {
        let now = os::monotonic_ns();
        // SAFETY: owned segment.
        let s = unsafe { &mut *seg };
        let had_free = s.has_free_page();
        s.free_page(page, now);
        if s.is_empty() {
            self.segment_unlink(seg);
            segment::release(seg, now);
        } else if !had_free {
            // It has a free page again: to the front, where new_page looks.
            self.segment_unlink(seg);
            self.segment_push_front(seg);
        }
    }

    fn segment_push_front(&mut self, seg: *mut Segment) {
        // SAFETY: owned segment, in no list.
        let s = unsafe { &mut *seg };
        let k = s.kind as usize;
        s.prev = ptr::null_mut();
        s.next = self.segments[k];
        if !s.next.is_null() {
            // SAFETY: owned segment.
            unsafe { (*s.next).prev = seg };
        }
        self.segments[k] = seg;
    }

    fn segment_push_back(&mut self, seg: *mut Segment) {
        // SAFETY: owned segments.
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

    fn segment_unlink(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is in this heap's list for its kind.
        unsafe {
            let s = &mut *seg;
            if s.prev.is_null() {
                self.segments[s.kind as usize] = s.next;
            } else {
                (*s.prev).next = s.next;
            }
            if !s.next.is_null() {
                (*s.next).prev = s.prev;
            }
            s.next = ptr::null_mut();
            s.prev = ptr::null_mut();
        }
    }

    /// A fresh page for class `c`: from an owned segment, an abandoned one, the
    /// pool, or the OS.
    fn new_page(&mut self, c: usize) -> Option<*mut Page> {
        let kind = page_kind(c);
        // Abandoned segments are adopted before a fresh one is taken, several
        // per call: a thread that exits leaves several segments behind, and
        // adopting fewer than are left makes the abandoned stack grow forever.
        let mut reclaims_left = RECLAIMS_PER_NEW_SEGMENT;
        loop {
            let seg = self.segments[kind as usize];
            // SAFETY: owned segments.
            if !seg.is_null() && unsafe { (*seg).has_free_page() } {
                let s = unsafe { &mut *seg };
                let page = s.alloc_page(c)?;
                if !s.has_free_page() && !s.next.is_null() {
                    self.segment_unlink(seg);
                    self.segment_push_back(seg);
                }
                self.push_front(page);
                return Some(page);
            }
            if reclaims_left > 0 {
                reclaims_left -= 1;
                if self.reclaim_abandoned() {
                    // Reclaimed pages may already serve this class.
                    let first = self.first[c];
                    if first != empty_page() {
                        // SAFETY: a page of this heap.
                        if unsafe { !(*first).free.is_null() || (*first).extend() } {
                            return Some(first);
                        }
                    }
                    continue;
                }
                reclaims_left = 0;
            }
            let seg = segment::acquire(kind, self as *mut Heap as usize)?;
            self.segment_push_front(seg);
        }
    }

    /// Adopts every segment left by exited threads (`collect(true)`): their
    /// free pages can then be purged and empty segments pooled.
    fn reclaim_all_abandoned(&mut self) {
        while self.reclaim_abandoned() {}
    }

    /// Adopts one segment left by an exited thread. Returns true if one was found.
    fn reclaim_abandoned(&mut self) -> bool {
        let Some(seg) = ABANDONED.pop() else {
            return false;
        };
        GLOBAL.segments_reclaimed.fetch_add(1, Ordering::Relaxed);
        // SAFETY: popped from the abandoned stack, so nobody else owns it.
        let s = unsafe { &mut *seg };
        s.owner.store(self as *mut Heap as usize, Ordering::Release);
        s.remote_pending.store(0, Ordering::SeqCst);
        // Segments with free pages come first: new_page looks only at the head.
        if s.has_free_page() {
            self.segment_push_front(seg);
        } else {
            self.segment_push_back(seg);
        }
        let now = os::monotonic_ns();
        for i in 0..s.kind.page_count() {
            let page: *mut Page = &mut s.pages[i];
            // SAFETY: a descriptor of the adopted segment.
            let p = unsafe { &mut *page };
            if !p.in_use {
                continue;
            }
            p.collect();
            p.next = ptr::null_mut();
            p.prev = ptr::null_mut();
            if p.used == 0 {
                p.in_full = true; // not in any queue
                self.release_page(seg, page);
                if s.owner.load(Ordering::Relaxed) == 0 {
                    return true; // the segment was empty and went to the pool
                }
            } else if p.free.is_null() && p.capacity == p.reserved {
                p.in_full = true;
            } else {
                p.in_full = false;
                self.push_back(page);
            }
        }
        let _ = now;
        true
    }

    /// Collects remote frees of segments that flagged some; puts pages that
    /// have blocks again back in their queues. Returns true if any page came back.
    fn collect_remote(&mut self) -> bool {
        let mut relinked = false;
        for k in 0..3 {
            let mut seg = self.segments[k];
            while !seg.is_null() {
                // SAFETY: owned segment; `next` read before it may be released.
                let s = unsafe { &mut *seg };
                let next = s.next;
                if s.remote_pending.load(Ordering::Relaxed) != 0 {
                    s.remote_pending.swap(0, Ordering::SeqCst);
                    relinked |= self.collect_segment(seg);
                }
                seg = next;
            }
        }
        relinked
    }

    fn collect_segment(&mut self, seg: *mut Segment) -> bool {
        let mut relinked = false;
        // SAFETY: owned segment.
        let s = unsafe { &mut *seg };
        for i in 0..s.kind.page_count() {
            let page: *mut Page = &mut s.pages[i];
            // SAFETY: a descriptor of an owned segment.
            let p = unsafe { &mut *page };
            if !p.in_use || p.collect() == 0 {
                continue;
            }
            if p.used == 0 {
                let self_owned = s.owner.load(Ordering::Relaxed);
                self.retire_if_spare(seg, page);
                if s.owner.load(Ordering::Relaxed) != self_owned {
                    return relinked; // the segment went to the pool
                }
            } else if p.in_full {
                p.in_full = false;
                self.push_front(page);
                relinked = true;
            }
        }
        relinked
    }

    /// Periodic work on the slow path: purge memory that has been free long enough.
    #[inline]
    fn tick(&mut self) {
        self.slow_calls += 1;
        if self.slow_calls < 64 {
            return;
        }
        self.slow_calls = 0;
        let now = os::monotonic_ns();
        if now >= self.next_maintenance_ns {
            let delay = options::get().purge_delay_ms * 1_000_000;
            self.purge(now, delay);
            self.next_maintenance_ns = now + (delay / 2).max(1_000_000);
        }
    }

    /// Purges free pages of owned segments, the pool and the BigCache that have
    /// waited `delay_ns`.
    pub fn purge(&mut self, now: u64, delay_ns: u64) {
        for k in 0..3 {
            let mut seg = self.segments[k];
            while !seg.is_null() {
                // SAFETY: owned segment.
                let s = unsafe { &mut *seg };
                s.purge_free_pages(now, delay_ns);
                seg = s.next;
            }
        }
        segment::maintain_pool(now, delay_ns);
        crate::large::path::purge_thread(self, now, delay_ns);
    }

    /// Thread exit: give back what is free, leave the rest for other threads.
    fn abandon(&mut self) {
        crate::large::path::thread_exit(self);
        self.collect_remote();
        let now = os::monotonic_ns();
        for k in 0..3 {
            let mut seg = self.segments[k];
            while !seg.is_null() {
                // SAFETY: owned segment; `next` read first.
                let s = unsafe { &mut *seg };
                let next = s.next;
                for i in 0..s.kind.page_count() {
                    let p: *mut Page = &mut s.pages[i];
                    // SAFETY: a descriptor of an owned segment.
                    unsafe {
                        if (*p).in_use {
                            (*p).collect();
                            if (*p).used == 0 {
                                s.free_page(p, now);
                            }
                        }
                    }
                }
                s.next = ptr::null_mut();
                s.prev = ptr::null_mut();
                if s.is_empty() {
                    segment::release(seg, now);
                } else {
                    s.owner.store(0, Ordering::Release);
                    GLOBAL.segments_abandoned.fetch_add(1, Ordering::Relaxed);
                    ABANDONED.push(seg);
                }
                seg = next;
            }
            self.segments[k] = ptr::null_mut();
        }
        self.first = [empty_page(); NUM_CLASSES];
        self.last = [ptr::null_mut(); NUM_CLASSES];
    }

    /// Every page of every owned segment (for `collect` and debug checks).
    pub fn check(&self) {
        for k in PageKind::ALL {
            let mut seg = self.segments[k as usize];
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

// ---------------------------------------------------------------------------
// Heap life cycle: creation, thread exit, the pool of unused heaps, the registry
// ---------------------------------------------------------------------------

/// How many abandoned segments `new_page` may adopt before it maps a fresh one.
const RECLAIMS_PER_NEW_SEGMENT: u32 = 8;

/// Heaps are page-aligned, so the low 12 bits of the pool head are an ABA tag.
const HEAP_TAG: usize = os::OS_PAGE - 1;
static HEAP_POOL: AtomicUsize = AtomicUsize::new(0);
static REGISTRY: AtomicPtr<Heap> = AtomicPtr::new(ptr::null_mut());
/// pthread key + 1 (0 = not created yet).
static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);

fn pool_pop() -> Option<*mut Heap> {
    let mut h = HEAP_POOL.load(Ordering::Acquire);
    loop {
        let heap = (h & !HEAP_TAG) as *mut Heap;
        if heap.is_null() {
            return None;
        }
        // SAFETY: heaps are never unmapped; a stale read loses the CAS.
        let next = unsafe { (*heap).pool_next.load(Ordering::Relaxed) };
        let new = next | (h.wrapping_add(1) & HEAP_TAG);
        match HEAP_POOL.compare_exchange_weak(h, new, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => return Some(heap),
            Err(x) => h = x,
        }
    }
}

fn pool_push(heap: *mut Heap) {
    let mut h = HEAP_POOL.load(Ordering::Relaxed);
    loop {
        // SAFETY: the pusher owns `heap`.
        unsafe { (*heap).pool_next.store(h & !HEAP_TAG, Ordering::Relaxed) };
        let new = heap as usize | (h.wrapping_add(1) & HEAP_TAG);
        match HEAP_POOL.compare_exchange_weak(h, new, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(x) => h = x,
        }
    }
}

fn new_heap() -> Option<*mut Heap> {
    let bytes = (core::mem::size_of::<Heap>() + os::OS_PAGE - 1) & !(os::OS_PAGE - 1);
    let heap = os::map(bytes)? as *mut Heap;
    // SAFETY: fresh zeroed memory, sized and aligned for a Heap; written before publication.
    unsafe {
        ptr::copy_nonoverlapping(EMPTY_HEAP_PTR as *const Heap, heap, 1);
        (*heap).large = crate::large::block::ThreadState::new();
    }
    GLOBAL.heaps_created.fetch_add(1, Ordering::Relaxed);
    let mut head = REGISTRY.load(Ordering::Relaxed);
    loop {
        // SAFETY: not yet published.
        unsafe { (*heap).registry_next = head };
        match REGISTRY.compare_exchange_weak(head, heap, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return Some(heap),
            Err(x) => head = x,
        }
    }
}

fn exit_key() -> Option<libc::pthread_key_t> {
    let k = EXIT_KEY.load(Ordering::Acquire);
    if k != 0 {
        return Some((k - 1) as libc::pthread_key_t);
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out-pointer and destructor. pthread_key_create does not allocate.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } != 0 {
        return None;
    }
    match EXIT_KEY.compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // Once per process, with the first heap (already published, so
            // an allocation inside pthread_atfork finds it).
            // SAFETY: a valid handler that only stores to an atomic.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
            Some(key)
        }
        Err(winner) => {
            // Another thread created one first: use theirs (no lock, so no
            // lock for a forked child to inherit).
            // SAFETY: our key, unused.
            unsafe { libc::pthread_key_delete(key) };
            Some((winner - 1) as libc::pthread_key_t)
        }
    }
}

/// In a forked child: reset the tracer's records (see `probe::after_fork_in_child`).
unsafe extern "C" fn after_fork_in_child() {
    crate::probe::after_fork_in_child();
}

#[cold]
#[inline(never)]
fn init_current() -> Option<*mut Heap> {
    let heap = pool_pop().or_else(new_heap)?;
    // SAFETY: a heap nobody else uses.
    unsafe { (*heap).large.configure(&options::get()) };
    // Publish before pthread_setspecific: if that allocates (keys ≥ 32 in
    // glibc), the nested malloc must find this heap, not recurse here.
    crate::tls::set(heap);
    if let Some(key) = exit_key() {
        // SAFETY: a valid key; the value is our heap.
        unsafe { libc::pthread_setspecific(key, heap as *const libc::c_void) };
    }
    crate::exit_report::ensure_registered();
    Some(heap)
}

extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    let heap = value as *mut Heap;
    if heap.is_null() || is_empty_heap(heap) {
        return;
    }
    // Whatever this thread allocates after this (other TLS destructors) gets
    // a new heap, and the key destructor runs again for it.
    crate::tls::set(EMPTY_HEAP_PTR);
    // SAFETY: the exiting thread's own heap; no other thread uses it.
    unsafe { (*heap).abandon() };
    pool_push(heap);
}

/// Calls `f` with the counters of every heap ever created.
pub fn for_each_heap(mut f: impl FnMut(&HeapCounters)) {
    let mut h = REGISTRY.load(Ordering::Acquire);
    while !h.is_null() {
        // SAFETY: registered heaps are never unmapped; counters are atomics.
        unsafe {
            f(&(*h).counters);
            h = (*h).registry_next;
        }
    }
}

/// Collects the calling thread's remote frees and purges free memory now
/// (`force`) or once it has waited the purge delay.
pub fn collect(force: bool) {
    let h = current();
    if is_empty_heap(h) {
        segment::maintain_pool(os::monotonic_ns(), if force { 0 } else { u64::MAX });
        return;
    }
    // SAFETY: this thread's heap.
    let h = unsafe { &mut *h };
    if force {
        h.reclaim_all_abandoned();
    }
    h.collect_remote();
    let delay = if force {
        0
    } else {
        options::get().purge_delay_ms * 1_000_000
    };
    h.purge(os::monotonic_ns(), delay);
    if cfg!(any(debug_assertions, feature = "debug-checks")) {
        h.check();
    }
}
