//! The thread context: what each thread owns, the small-block heap and the
//! large-block state side by side, reached through one thread-local pointer.
//!
//! ```text
//! TLS ──► ThreadCtx { small: Heap, large: ThreadState, maintenance clock, links }
//! ```
//!
//! Until a thread's first allocation the pointer is [`EMPTY_CTX`] (read-only,
//! its heap's queues all hold the empty page), so the fast path needs no "is
//! there a context" branch: the pop fails and the slow path sets up a real
//! context (`life.rs`: pool of unused contexts, registry of all, pthread key
//! destructor at thread exit, fork handler). This layer is the only one that
//! sees both sides; `small` and `large` never import each other.

mod background_pass;
mod life;
mod tls;

use crate::large::path::StateOf;
use crate::large::shared_cache::SharedCache;
use crate::large::thread::ThreadState;
use crate::options;
use crate::os;
use crate::probe::{self, Component};
use crate::small::heap::Heap;
use crate::small::{self, segment};
use core::sync::atomic::AtomicUsize;

pub use life::for_each;

/// One thread's allocator state. `small` comes first: the heap's address is
/// the context's, which segments record as their owner.
#[repr(C)]
pub struct ThreadCtx {
    /// Small blocks: page queues, owned segments, small counters.
    pub small: Heap,
    /// Large blocks: BigCache slots, ELO sampling, large counters.
    pub large: ThreadState,
    /// The BigCache slots `large.cache` points at (the background purge
    /// thread ages them; see `large::shared_cache`).
    large_cache: SharedCache,
    /// Slow-path calls since the last maintenance check.
    slow_calls: u32,
    /// Earliest time of the next purge pass, in monotonic ns.
    next_maintenance_ns: u64,
    /// Whether the small side went quiet while the thread works on large
    /// blocks (`LargeCtx::on_clock`).
    quiet: QuietWatch,
    /// Link in the registry of all contexts (set once, before publication).
    registry_next: *mut ThreadCtx,
    /// Link in the pool of unused contexts.
    pool_next: AtomicUsize,
}

impl ThreadCtx {
    const fn empty() -> ThreadCtx {
        ThreadCtx {
            small: Heap::empty(),
            large: ThreadState::new(),
            large_cache: SharedCache::new(),
            slow_calls: 0,
            next_maintenance_ns: 0,
            quiet: QuietWatch::new(),
            registry_next: core::ptr::null_mut(),
            pool_next: AtomicUsize::new(0),
        }
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

    /// Purges what has waited `delay_ns` on both sides (0: everything now).
    fn purge(&mut self, now: u64, delay_ns: u64) {
        self.small.purge(now, delay_ns);
        crate::large::path::purge_thread(&mut self.large, now, delay_ns);
    }
}

/// Watches, from the large path's purge clock, for a thread whose small side
/// went quiet: no small allocation for a purge delay while it keeps
/// allocating large blocks. Its small maintenance ran only on small refills,
/// so a thread that moved on to large blocks kept its free small pages (and
/// the empty page each class keeps) resident for as long as it ran:
/// `large-phase`'s 24 KiB phase left ~7 MiB behind.
///
/// Allocations, not refills: a thread that allocates 256-512 KiB blocks
/// among its large ones pops them from a few 2 MiB pages and refills
/// seldom; judged by refills it looked quiet, lost those pages, and faulted
/// them in again (`large-varied`: 1,300 -> 2,900 faults a run).
struct QuietWatch {
    /// The small heap's allocation count at the last look.
    seen: u64,
    /// Since when it has not changed, in monotonic ns (0: not looked yet).
    since_ns: u64,
    /// Earliest time of the next quiet pass (one per purge delay).
    next_pass_ns: u64,
}

impl QuietWatch {
    const fn new() -> QuietWatch {
        QuietWatch {
            seen: 0,
            since_ns: 0,
            next_pass_ns: 0,
        }
    }

    /// True when a quiet pass is due at `now`, `allocs` being the small
    /// heap's allocation count: unchanged for a purge delay or more.
    fn due(&mut self, allocs: u64, now: u64, delay_ns: u64) -> bool {
        if self.since_ns == 0 || allocs != self.seen {
            self.seen = allocs;
            self.since_ns = now;
            return false;
        }
        if now.saturating_sub(self.since_ns) < delay_ns || now < self.next_pass_ns {
            return false;
        }
        self.next_pass_ns = now + delay_ns.max(1_000_000);
        true
    }
}

/// The large paths' view of the calling thread ([`StateOf`]): its
/// large-block state, and the small side's maintenance at their purge clock.
#[derive(Clone, Copy)]
pub struct LargeCtx;

impl StateOf for LargeCtx {
    #[inline(always)]
    fn state(self) -> Option<*mut ThreadState> {
        large_state()
    }

    #[inline(always)]
    fn state_without_call(self) -> Option<*mut ThreadState> {
        let c = current();
        // SAFETY: a live context of this thread; only the field's address is taken.
        (!is_empty(c)).then(|| unsafe { &raw mut (*c).large })
    }

    /// A thread that allocates large blocks and has not allocated a small
    /// one for a purge delay gives its empty small pages back now
    /// (`Heap::purge_quiet`) instead of after eight delays on its next
    /// small refill, which may never come.
    #[inline]
    fn on_clock(self, now_ns: u64) {
        let c = current();
        if is_empty(c) {
            return;
        }
        // SAFETY: this thread's real context. Only its `quiet` and `small`
        // fields are borrowed (place expressions, not a reference to the
        // context): the caller holds its `large` state.
        unsafe {
            let delay = options::get().purge_delay_ms * 1_000_000;
            let allocs = (*c).small.allocs();
            if (*c).quiet.due(allocs, now_ns, delay) {
                (*c).small.purge_quiet(now_ns, delay);
            }
        }
    }
}

/// The context of threads that have not allocated yet (never written).
pub struct SyncCtx(ThreadCtx);
// SAFETY: EMPTY_CTX is only read; every write path replaces it by a real context first.
unsafe impl Sync for SyncCtx {}
/// See [`SyncCtx`].
pub static EMPTY_CTX: SyncCtx = SyncCtx(ThreadCtx::empty());
pub(crate) const EMPTY_CTX_PTR: *mut ThreadCtx = &raw const EMPTY_CTX.0 as *mut ThreadCtx;

/// The calling thread's context (maybe [`EMPTY_CTX`]).
#[inline(always)]
pub fn current() -> *mut ThreadCtx {
    tls::get()
}

#[inline(always)]
fn is_empty(c: *mut ThreadCtx) -> bool {
    c == EMPTY_CTX_PTR
}

/// Adds the calling thread's unsettled BigCache hit tallies to its counters
/// and its call sites' profile (`large::path::settle`), for a report that
/// reads the profile table.
pub fn settle_current() {
    let c = current();
    if !is_empty(c) {
        // SAFETY: the calling thread's own context.
        unsafe { crate::large::path::settle(&mut (*c).large) };
    }
}

/// The calling thread's context, set up if needed. None if the OS refuses memory.
pub fn current_or_init() -> Option<*mut ThreadCtx> {
    let c = current();
    if is_empty(c) {
        life::init_current()
    } else {
        Some(c)
    }
}

/// The calling thread's small heap, set up if needed (for `small::free`).
fn heap_or_init() -> Option<*mut Heap> {
    current_or_init().map(|c| c as *mut Heap)
}

/// The calling thread's large-block state, set up if needed (for `large::path`).
#[inline(always)]
pub fn large_state() -> Option<*mut ThreadState> {
    // SAFETY: a live context of this thread; only the field's address is taken.
    current_or_init().map(|c| unsafe { &raw mut (*c).large })
}

// ---------------------------------------------------------------------------
// Small blocks through the context
// ---------------------------------------------------------------------------

/// Whether the calling thread churns large blocks (`ThreadState::churns`):
/// its requests above the medium classes may then go to the span heap
/// (`large::path::takes_mid_block`).
#[inline(always)]
pub fn churns_large() -> bool {
    let c = current();
    // SAFETY: this thread's context, or the empty one (never written, its
    // counters zero); a load of one counter.
    unsafe { (*c).large.churns() }
}

/// Allocates a block of class `c` (`c < NUM_CLASSES`): pop, or refill.
#[inline(always)]
pub fn alloc_class(c: usize) -> *mut u8 {
    let ctx = current();
    // SAFETY: this thread's context (maybe the empty one); `small` is its first field.
    let b = unsafe { small::alloc::pop(ctx as *mut Heap, c) };
    if !b.is_null() {
        return b;
    }
    alloc_class_slow(ctx, c)
}

/// A block of class `c` whose first `len` bytes (`len` ≤ the class's size)
/// read zero, for `calloc`. A block carved just now from memory the OS
/// zeroed is cleared only where its free-list link was: a block of 16 KiB
/// or more is carved alone, and clearing it all would fault in every 4 KiB
/// page of it (`mstress`: the threads' 300 KiB timing histograms).
pub fn alloc_class_zeroed(c: usize, len: usize) -> *mut u8 {
    let ctx = current();
    // SAFETY: as in `alloc_class`.
    let b = unsafe { small::alloc::pop(ctx as *mut Heap, c) };
    let (b, fresh) = if b.is_null() {
        alloc_class_slow_fresh(ctx, c)
    } else {
        (b, false)
    };
    if !b.is_null() {
        let dirty = if fresh {
            len.min(small::alloc::LINK_BYTES)
        } else {
            len
        };
        // SAFETY: a block of class `c`, at least `len` bytes, ours.
        unsafe { core::ptr::write_bytes(b, 0, dirty) };
    }
    b
}

/// Allocates a block of `size <= TABLE_MAX` bytes: pop from the page the
/// heap's direct array holds for the size, or refill its class.
#[inline(always)]
pub fn alloc_direct(size: usize) -> *mut u8 {
    let ctx = current();
    // SAFETY: as in `alloc_class`; the caller's `size <= TABLE_MAX`.
    let b = unsafe { small::alloc::pop_direct(ctx as *mut Heap, size) };
    if !b.is_null() {
        return b;
    }
    alloc_class_slow(ctx, small::size_class::class_of_table(size))
}

/// A block of class `c` from the free list of `ctx`, the calling thread's
/// context, or null: no refill and no call (the traced fast path, which
/// takes the whole traced path then).
#[inline(always)]
pub fn pop_class_in(ctx: *mut ThreadCtx, c: usize) -> *mut u8 {
    // SAFETY: as in `alloc_class`.
    unsafe { small::alloc::pop(ctx as *mut Heap, c) }
}

/// The calling thread's context and its trace grants pointer (`probe`'s,
/// copied beside the context pointer: one TLS offset for both), reached
/// without a call.
#[inline(always)]
pub fn current_with_grants() -> (*mut ThreadCtx, *const probe::Grants) {
    tls::get_with_grants()
}

/// Brings the calling thread's copy of its trace grants pointer up to date
/// (the traced full path calls it: a thread's first traced operation gives
/// it grants), and from then on `probe` keeps it so.
#[cold]
pub fn mirror_trace_grants() {
    probe::on_grants_change(tls::set_grants);
    tls::set_grants(probe::grants());
}

/// As [`alloc_class`], reporting fast path vs refill to the tracer.
#[cold]
pub fn alloc_class_traced(c: usize) -> *mut u8 {
    let t = probe::start();
    let ctx = current();
    // SAFETY: as in `alloc_class`.
    let b = unsafe { small::alloc::pop(ctx as *mut Heap, c) };
    if !b.is_null() {
        probe::emit(Component::SmallFast, t, c as u64);
        return b;
    }
    let p = alloc_class_slow(ctx, c);
    probe::emit(Component::SmallRefill, t, c as u64);
    p
}

#[cold]
#[inline(never)]
fn alloc_class_slow(ctx: *mut ThreadCtx, c: usize) -> *mut u8 {
    alloc_class_slow_fresh(ctx, c).0
}

/// The slow path of an allocation: sets up the context if needed and
/// refills; true with a block carved just now from zeroed memory
/// (`small::alloc::refill`).
#[inline]
fn alloc_class_slow_fresh(ctx: *mut ThreadCtx, c: usize) -> (*mut u8, bool) {
    let ctx = if is_empty(ctx) {
        match life::init_current() {
            Some(x) => x,
            None => return (small::alloc::out_of_memory(), false),
        }
    } else {
        ctx
    };
    // SAFETY: a real context, used only by its own thread.
    let cx = unsafe { &mut *ctx };
    cx.tick();
    small::alloc::refill(&mut cx.small, c)
}

/// Frees a small block.
///
/// # Safety
/// `addr` lies in a live size-class segment and is a block the caller no longer uses.
#[inline(always)]
pub unsafe fn free_small(addr: usize) {
    // SAFETY: the caller's contract; this thread's heap.
    unsafe { small::free::free(current() as *mut Heap, addr, heap_or_init) }
}

/// As [`free_small`] with this thread's context `ctx` already in hand (from
/// [`current_with_grants`]).
///
/// # Safety
/// As [`free_small`]; `ctx` is the calling thread's context.
#[inline(always)]
pub unsafe fn free_small_in(ctx: *mut ThreadCtx, addr: usize) {
    // SAFETY: the caller's contract; this thread's heap.
    unsafe { small::free::free(ctx as *mut Heap, addr, heap_or_init) }
}

/// Collects the calling thread's remote frees and purges free memory now
/// (`force`) or once it has waited the purge delay (8 of them for free
/// small-block pages, `small::purge`).
pub fn collect(force: bool) {
    let c = current();
    if is_empty(c) {
        segment::maintain_pool(os::monotonic_ns(), if force { 0 } else { u64::MAX });
        return;
    }
    // SAFETY: this thread's context.
    let cx = unsafe { &mut *c };
    if force {
        cx.small.reclaim_all_abandoned();
    }
    cx.small.flush_outbox();
    cx.small.collect_remote();
    let delay = if force {
        0
    } else {
        options::get().purge_delay_ms * 1_000_000
    };
    cx.purge(os::monotonic_ns(), delay);
    if cfg!(any(debug_assertions, feature = "debug-checks")) {
        cx.small.check();
    }
}
