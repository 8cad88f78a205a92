//! The span heap: page-granular spans in reserved arenas, so freed large
//! memory serves later requests of any size.
//!
//! ```text
//! arena (256 MiB reserved, MAP_NORESERVE, 256 MiB-aligned)
//! [meta: one PageMeta per page][span][span ][span       ][span  ] …
//!                               used  dirty  used          clean
//! ```
//!
//! Taken from the three models:
//! * tcmalloc's page heap: a span is a run of pages; a page map (here the
//!   arena's `PageMeta` array, at its start) gives the span of a page, so a
//!   free finds its neighbours in O(1) and coalesces with them; free spans of
//!   two states, *dirty* (pages may be resident: reused without a fault) and
//!   *clean* (purged with `MADV_DONTNEED`: reads zero, faults on touch), are
//!   coalesced only with spans of the same state (gperftools does the same:
//!   merging would either purge resident pages early or lose track of them).
//! * jemalloc's extents: free spans sit in size-binned lists (four bins per
//!   doubling, a bitmap of non-empty bins), dirty spans are preferred and are
//!   purged once they have waited the purge delay (its decay, simplified to
//!   one deadline per span).
//! * mimalloc's arenas: large reserved ranges with an aligned base, so the
//!   arena of a pointer is one mask; metadata outside the blocks.
//!
//! Invariants (checked by [`check`] under `debug-checks`): the spans of an
//! arena tile `[META_PAGES, PAGES)`; a span's first and last page carry its
//! length and state (the boundary tags), every other page has state 0; no two
//! adjacent free spans have the same state; every free span is in exactly the
//! list of its state and bin; `dirty_pages` is the sum of dirty span lengths.
//!
//! One lock (a spin lock that yields) guards the lists and tags. It never
//! allocates while held and is taken in a `pthread_atfork` prepare handler and
//! released in both parent and child, so a forked child never inherits it held.
//! Purging (`madvise`) happens outside it: a span being purged is marked busy.
//!
//! Depends only on `os` and `vm` (and `segment_map`, to mark arenas as ours).

use crate::os::{self, OS_PAGE};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

/// Bytes per arena (a power of two).
pub const ARENA_SIZE: usize = 256 << 20;
/// Pages per arena.
pub const PAGES: usize = ARENA_SIZE / OS_PAGE;
/// Pages at the arena start holding the page map.
///
/// The page map itself takes 1.25 MiB; the rest of the first 2 MiB stays
/// unused, so that spans start on a huge-page boundary and the page map,
/// written sparsely (20 bytes a page, at span boundaries), lies outside the
/// huge-page advice: inside it, it held a whole 2 MiB page resident for the
/// life of the process (`large-phase`'s RSS after: 2.8 MiB of the arena, 2
/// of them that page), and the first span, sharing that page with the map,
/// faulted 4 KiB at a time once it was split.
pub const META_PAGES: usize = (PAGES * core::mem::size_of::<PageMeta>())
    .div_ceil(OS_PAGE)
    .next_multiple_of(HUGE_PAGES);
/// OS pages per transparent huge page.
const HUGE_PAGES: usize = crate::layout::HUGE_PAGE / OS_PAGE;
/// The largest span handed out (larger blocks are mapped on their own).
pub const MAX_SPAN_PAGES: usize = PAGES / 4;
/// Arenas at most (64 GiB of address space); beyond, blocks are mapped on their own.
pub const MAX_ARENAS: usize = 256;
const BINS: usize = 64;
const NIL: u32 = u32::MAX;

// Page states (a boundary tag's `state`).
const INTERIOR: u32 = 0;
const DIRTY: u32 = 1;
const CLEAN: u32 = 2;
const USED: u32 = 3;
/// A free span whose pages are being purged (not in a list, not coalesced).
const BUSY: u32 = 4;
const KIND: u32 = 0xf;
/// Flag on the tag of a span's first page.
const FIRST: u32 = 0x10;
/// Flag on the tag of a span's last page.
const LAST: u32 = 0x20;

/// One page's entry in the page map. Only a span's first and last page carry
/// values (see the module invariants).
#[repr(C)]
pub struct PageMeta {
    /// Span length in pages.
    len: AtomicU32,
    /// State (low 4 bits) and FIRST/LAST flags.
    state: AtomicU32,
    /// Free span (first page): previous span id in its list; used span: owner tag.
    prev: AtomicU32,
    /// Free span (first page): next span id in its list.
    next: AtomicU32,
    /// Dirty span (first page): when it became dirty, in ms of the monotonic clock.
    since_ms: AtomicU32,
}

/// A page map entry of no span (a free page's): what a BigCache hit record
/// without a block points at (`large::thread::Hit`), so that its free's
/// check needs no null test ([`live_span_in`] says None).
pub static NO_SPAN: PageMeta = PageMeta {
    len: AtomicU32::new(0),
    state: AtomicU32::new(0),
    prev: AtomicU32::new(0),
    next: AtomicU32::new(0),
    since_ms: AtomicU32::new(0),
};

/// The arenas, by index (0 = not reserved yet). Append-only.
static ARENAS: [AtomicUsize; MAX_ARENAS] = [const { AtomicUsize::new(0) }; MAX_ARENAS];
static ARENA_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Arena index + 1 by `address / ARENA_SIZE` (47-bit user addresses), 0 = none:
/// a pointer's arena in one load (1 MiB of `.bss`, resident only where used).
static ARENA_OF: [AtomicU16; 1 << (47 - ARENA_SHIFT)] =
    [const { AtomicU16::new(0) }; 1 << (47 - ARENA_SHIFT)];
const ARENA_SHIFT: u32 = ARENA_SIZE.trailing_zeros();

/// List heads (span ids) per state (0 = dirty, 1 = clean) and bin.
struct Lists {
    head: [[u32; BINS]; 2],
    /// Bit b set = bin b non-empty.
    nonempty: [u64; 2],
}

struct Locked(core::cell::UnsafeCell<Lists>);
// SAFETY: accessed only while LOCK is held.
unsafe impl Sync for Locked {}

static LISTS: Locked = Locked(core::cell::UnsafeCell::new(Lists {
    head: [[NIL; BINS]; 2],
    nonempty: [0; 2],
}));
static LOCK: AtomicBool = AtomicBool::new(false);

/// Counters (process-wide, rare events: one per span operation).
pub struct SpanCounters {
    /// Spans handed out.
    pub allocs: AtomicU64,
    /// ... of which came from dirty (resident) memory.
    pub dirty_reuses: AtomicU64,
    /// ... of those, a dirty span extended into the clean span after it.
    pub mixed_reuses: AtomicU64,
    /// Spans given back.
    pub frees: AtomicU64,
    /// Coalescings with a neighbour.
    pub merges: AtomicU64,
    /// Dirty spans purged.
    pub purges: AtomicU64,
    /// Bytes those purges gave back.
    pub purged_bytes: AtomicU64,
    /// Pages in dirty spans right now.
    pub dirty_pages: AtomicU64,
    /// Pages handed out right now.
    pub used_pages: AtomicU64,
    /// Blocks grown or shrunk in place.
    pub resized_in_place: AtomicU64,
    /// Blocks freed by a thread other than their owner, sent here past its BigCache.
    pub cross_thread_frees: AtomicU64,
}

/// The span level's counters (read by `LargeStats`).
pub static COUNTERS: SpanCounters = SpanCounters {
    allocs: AtomicU64::new(0),
    dirty_reuses: AtomicU64::new(0),
    mixed_reuses: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    merges: AtomicU64::new(0),
    purges: AtomicU64::new(0),
    purged_bytes: AtomicU64::new(0),
    dirty_pages: AtomicU64::new(0),
    used_pages: AtomicU64::new(0),
    resized_in_place: AtomicU64::new(0),
    cross_thread_frees: AtomicU64::new(0),
};

/// Arenas reserved so far.
pub fn arenas() -> usize {
    ARENA_COUNT.load(Acquire)
}

// ---------------------------------------------------------------------------
// The lock and fork
// ---------------------------------------------------------------------------

struct Guard;

fn lock() -> Guard {
    let mut spins = 0u32;
    loop {
        if !LOCK.swap(true, Acquire) {
            return Guard;
        }
        while LOCK.load(Relaxed) {
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                // SAFETY: plain syscall, no memory involved.
                unsafe { libc::sched_yield() };
            }
        }
    }
}

fn try_lock() -> Option<Guard> {
    // Not `then_some(Guard)`: that builds the guard even when the lock is
    // busy, and dropping it released the holder's lock (two threads then
    // changed the lists at once: the span heap's corruption of November 2026).
    if LOCK.swap(true, Acquire) {
        None
    } else {
        Some(Guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        LOCK.store(false, Release);
    }
}

impl Guard {
    #[allow(clippy::mut_from_ref)]
    fn lists(&self) -> &mut Lists {
        // SAFETY: the lock is held for the guard's life; one guard at a time.
        unsafe { &mut *LISTS.0.get() }
    }
}

static ATFORK: AtomicBool = AtomicBool::new(false);

extern "C" fn fork_prepare() {
    // The purge thread out of every thread's cache first: inside one, it may
    // be waiting for this lock (cache -> span heap is the lock order).
    crate::large::shared_cache::fork_gate();
    core::mem::forget(lock());
}

extern "C" fn fork_parent() {
    LOCK.store(false, Release);
    crate::large::shared_cache::fork_done();
}

extern "C" fn fork_child() {
    LOCK.store(false, Release);
    // The parent's threads do not exist here.
    LAST_ACTIVE_TID.store(0, Relaxed);
    crate::large::shared_cache::fork_done();
}

/// Registers the fork handlers once (before the first arena exists, with no
/// lock held: glibc's pthread_atfork may allocate).
pub(crate) fn ensure_atfork() {
    if !ATFORK.load(Acquire) && !ATFORK.swap(true, AcqRel) {
        // SAFETY: valid handlers that only touch atomics.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    }
}

// ---------------------------------------------------------------------------
// Span ids, tags and bins
// ---------------------------------------------------------------------------

#[inline]
fn id(arena: usize, page: usize) -> u32 {
    (arena << 16 | page) as u32
}

#[inline]
fn arena_base(idx: usize) -> usize {
    ARENAS[idx].load(Acquire)
}

#[inline]
fn meta(base: usize, page: usize) -> &'static PageMeta {
    debug_assert!(page < PAGES);
    // SAFETY: the page map fills the first META_PAGES of every arena, which is
    // mapped for the life of the process.
    unsafe { &*(base as *const PageMeta).add(page) }
}

#[inline]
fn meta_of(span: u32) -> &'static PageMeta {
    meta(arena_base((span >> 16) as usize), (span & 0xffff) as usize)
}

/// The bin of a span of `n` pages (four bins per doubling).
#[inline]
fn bin(n: usize) -> usize {
    debug_assert!(n >= 1);
    if n < 4 {
        return n - 1;
    }
    let b = (usize::BITS - 1 - n.leading_zeros()) as usize;
    3 + (b - 2) * 4 + ((n >> (b - 2)) & 3)
}

/// Writes both boundary tags of the span `[page, page+len)`.
fn set_tags(base: usize, page: usize, len: usize, kind: u32) {
    let first = meta(base, page);
    let last = meta(base, page + len - 1);
    first.len.store(len as u32, Relaxed);
    last.len.store(len as u32, Relaxed);
    if len == 1 {
        first.state.store(kind | FIRST | LAST, Release);
    } else {
        first.state.store(kind | FIRST, Release);
        last.state.store(kind | LAST, Release);
    }
}

fn clear_tag(base: usize, page: usize) {
    meta(base, page).state.store(INTERIOR, Relaxed);
}

fn push(l: &mut Lists, kind: u32, span: u32, len: usize) {
    let s = (kind - 1) as usize;
    let b = bin(len);
    let m = meta_of(span);
    let head = l.head[s][b];
    m.prev.store(NIL, Relaxed);
    m.next.store(head, Relaxed);
    if head != NIL {
        meta_of(head).prev.store(span, Relaxed);
    }
    l.head[s][b] = span;
    l.nonempty[s] |= 1 << b;
}

fn unlink(l: &mut Lists, kind: u32, span: u32, len: usize) {
    let s = (kind - 1) as usize;
    let b = bin(len);
    let m = meta_of(span);
    let (prev, next) = (m.prev.load(Relaxed), m.next.load(Relaxed));
    if prev == NIL {
        l.head[s][b] = next;
    } else {
        meta_of(prev).next.store(next, Relaxed);
    }
    if next != NIL {
        meta_of(next).prev.store(prev, Relaxed);
    }
    if l.head[s][b] == NIL {
        l.nonempty[s] &= !(1 << b);
    }
}

fn now_ms() -> u32 {
    (os::monotonic_ns() / 1_000_000) as u32
}

/// A span handed out.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    /// Address of its first page.
    pub start: usize,
    /// Its length in OS pages.
    pub pages: usize,
    /// True if its pages may be resident (not zero); false = fresh or purged.
    pub dirty: bool,
}

// ---------------------------------------------------------------------------
// Allocation
// ---------------------------------------------------------------------------

/// A span of `pages` pages (1 ..= MAX_SPAN_PAGES), dirty memory first; `owner`
/// is recorded for [`owner`]. None if no arena can be reserved.
pub fn alloc(pages: usize, owner: u32) -> Option<Span> {
    debug_assert!((1..=MAX_SPAN_PAGES).contains(&pages));
    // Read before the lock: it may probe (at most once a second).
    let thp = crate::thp::worth_it();
    loop {
        {
            let g = lock();
            let l = g.lists();
            if let Some(span) = find(l, DIRTY, pages) {
                let s = take(l, DIRTY, span, pages, owner);
                debug_check(l, "alloc");
                drop(g);
                return Some(s);
            }
            // Memory about to be faulted in: under the advice measured now.
            sync_advice(&g, thp);
            if let Some(span) = find_dirty_before_clean(l, pages) {
                let s = take_dirty_and_clean(l, span, pages, owner);
                debug_check(l, "alloc (dirty + clean)");
                drop(g);
                return Some(s);
            }
            if let Some(span) = find(l, CLEAN, pages) {
                let s = take(l, CLEAN, span, pages, owner);
                debug_check(l, "alloc");
                drop(g);
                return Some(s);
            }
        }
        grow(thp)?;
    }
}

/// Whether the arenas are advised for huge pages now (all alike).
static ADVISED: AtomicBool = AtomicBool::new(false);

/// True if the arenas ask for huge pages now: a span's first write into
/// clean memory then faults one in (timed for `thp`'s cost meter).
pub fn advised() -> bool {
    ADVISED.load(Relaxed)
}

/// Advises every arena (past its page map) for huge pages or not, where
/// that changed since the last call: the advice follows `thp::worth_it`,
/// read by the caller before it took the lock. Only the areas' flags
/// change: pages already resident stay as they are.
fn sync_advice(_g: &Guard, thp: bool) {
    if ADVISED.load(Relaxed) == thp {
        return;
    }
    let skip = META_PAGES * OS_PAGE;
    for arena in ARENAS.iter().take(ARENA_COUNT.load(Acquire)) {
        let base = arena.load(Acquire);
        if base != 0 {
            crate::vm::advise_thp((base + skip) as *mut u8, ARENA_SIZE - skip, thp);
        }
    }
    ADVISED.store(thp, Relaxed);
}

/// The first span of `kind` with at least `pages` pages: scans the bin of
/// `pages` (whose spans may be shorter), else the head of the next non-empty bin.
fn find(l: &Lists, kind: u32, pages: usize) -> Option<u32> {
    let s = (kind - 1) as usize;
    let b = bin(pages);
    if l.nonempty[s] & (1 << b) != 0 {
        let mut span = l.head[s][b];
        while span != NIL {
            let m = meta_of(span);
            if m.len.load(Relaxed) as usize >= pages {
                return Some(span);
            }
            span = m.next.load(Relaxed);
        }
    }
    let above = if b + 1 >= BINS {
        0
    } else {
        l.nonempty[s] >> (b + 1) << (b + 1)
    };
    (above != 0).then(|| l.head[s][above.trailing_zeros() as usize])
}

/// Dirty spans looked at by [`find_dirty_before_clean`] at most (the lock is held).
const MIXED_SCAN: usize = 64;

/// When no dirty span is long enough: the longest dirty span (of the first
/// [`MIXED_SCAN`] looked at, longest bins first) whose right neighbour is a
/// clean free span making up the rest. Dirty and clean spans are never
/// coalesced (see the module docs), so without this a request one page
/// longer than every dirty span took clean memory whole and faulted every
/// page in, next to resident memory it could have started with: with
/// varied sizes the heap's resident free memory sits between live blocks,
/// and the last dirty span before the arena's clean tail is the common case.
fn find_dirty_before_clean(l: &Lists, pages: usize) -> Option<u32> {
    let mut mask = l.nonempty[0];
    let mut seen = 0;
    while mask != 0 && seen < MIXED_SCAN {
        let b = 63 - mask.leading_zeros() as usize;
        mask &= !(1 << b);
        let mut span = l.head[0][b];
        while span != NIL && seen < MIXED_SCAN {
            seen += 1;
            let m = meta_of(span);
            let len = m.len.load(Relaxed) as usize;
            let page = (span & 0xffff) as usize;
            if page + len < PAGES {
                let base = arena_base((span >> 16) as usize);
                let right = meta(base, page + len);
                if right.state.load(Relaxed) & KIND == CLEAN
                    && len + right.len.load(Relaxed) as usize >= pages
                {
                    return Some(span);
                }
            }
            span = m.next.load(Relaxed);
        }
    }
    None
}

/// Takes the dirty span `span` and the start of the clean span after it
/// ([`find_dirty_before_clean`]) as one used span of `pages` pages; the
/// clean rest stays free and clean. The block is dirty: not all of it reads zero.
fn take_dirty_and_clean(l: &mut Lists, span: u32, pages: usize, owner: u32) -> Span {
    let m = meta_of(span);
    let dlen = m.len.load(Relaxed) as usize;
    let a = (span >> 16) as usize;
    let base = arena_base(a);
    let page = (span & 0xffff) as usize;
    let cpage = page + dlen;
    let clen = meta(base, cpage).len.load(Relaxed) as usize;
    debug_assert!(dlen < pages && dlen + clen >= pages);
    unlink(l, DIRTY, span, dlen);
    unlink(l, CLEAN, id(a, cpage), clen);
    clear_tag(base, cpage - 1);
    clear_tag(base, cpage);
    let end = page + dlen + clen;
    if end > page + pages {
        clear_tag(base, end - 1);
        set_tags(base, page + pages, end - page - pages, CLEAN);
        meta(base, page + pages).since_ms.store(0, Relaxed);
        push(l, CLEAN, id(a, page + pages), end - page - pages);
    } else {
        clear_tag(base, end - 1);
    }
    set_tags(base, page, pages, USED);
    m.prev.store(owner, Relaxed);
    LAST_ACTIVITY_MS.store(now_ms(), Relaxed);
    COUNTERS.allocs.fetch_add(1, Relaxed);
    COUNTERS.used_pages.fetch_add(pages as u64, Relaxed);
    COUNTERS.dirty_reuses.fetch_add(1, Relaxed);
    COUNTERS.mixed_reuses.fetch_add(1, Relaxed);
    COUNTERS.dirty_pages.fetch_sub(dlen as u64, Relaxed);
    Span {
        start: base + page * OS_PAGE,
        pages,
        dirty: true,
    }
}

/// Takes the first `pages` of the free span `span` (of `kind`); the rest
/// stays free in the same state.
fn take(l: &mut Lists, kind: u32, span: u32, pages: usize, owner: u32) -> Span {
    let m = meta_of(span);
    let len = m.len.load(Relaxed) as usize;
    let since = m.since_ms.load(Relaxed);
    unlink(l, kind, span, len);
    let a = (span >> 16) as usize;
    let base = arena_base(a);
    let page = (span & 0xffff) as usize;
    if len > pages {
        let rest = page + pages;
        set_tags(base, rest, len - pages, kind);
        meta(base, rest).since_ms.store(since, Relaxed);
        push(l, kind, id(a, rest), len - pages);
    }
    set_tags(base, page, pages, USED);
    m.prev.store(owner, Relaxed);
    LAST_ACTIVITY_MS.store(now_ms(), Relaxed);
    COUNTERS.allocs.fetch_add(1, Relaxed);
    COUNTERS.used_pages.fetch_add(pages as u64, Relaxed);
    if kind == DIRTY {
        COUNTERS.dirty_reuses.fetch_add(1, Relaxed);
        COUNTERS.dirty_pages.fetch_sub(pages as u64, Relaxed);
    }
    Span {
        start: base + page * OS_PAGE,
        pages,
        dirty: kind == DIRTY,
    }
}

/// Reserves one more arena (outside the lock) and adds it as one clean span.
/// After a failed reservation, none is tried again before this time (ms):
/// under RLIMIT_AS every large allocation would otherwise pay a failing mmap.
static GROW_AFTER_MS: AtomicU32 = AtomicU32::new(0);

/// Reserves one more arena, advised for huge pages if `thp` (the cost
/// meter's answer, read before any lock).
#[cold]
fn grow(thp: bool) -> Option<()> {
    ensure_atfork();
    let count = ARENA_COUNT.load(Acquire);
    if count >= MAX_ARENAS {
        return None;
    }
    let after = GROW_AFTER_MS.load(Relaxed);
    if after != 0 && now_ms().wrapping_sub(after) > u32::MAX / 2 {
        return None;
    }
    let Some(base) = crate::vm::map_aligned(ARENA_SIZE, ARENA_SIZE) else {
        GROW_AFTER_MS.store(now_ms().wrapping_add(1000).max(1), Relaxed);
        return None;
    };
    let base = base as usize;
    // Where the kernel gives huge pages (measured once, `thp.rs`; off with
    // HAKMEM_THP=refuse), the arena asks for them: one madvise per 256 MiB.
    // Measured here (`large-varied`, blocks written whole): 23,000 faults
    // -> 1,200-1,800, median operation 10.8 -> 10.2 us, but peak RSS
    // 93-97 -> 136-151 MiB (a 2 MiB page is zeroed and kept whole for a
    // block that uses part of it); `vm` 2,700 -> 140 faults. A purge of part
    // of a huge page splits it and returns the purged 4 KiB pages.
    // The page map is left out (see `META_PAGES`). Only while huge pages
    // are worth it (`thp::worth_it`, read by the caller): where a huge
    // page's first fault costs more than its 4 KiB pages would, the arena
    // keeps 4 KiB pages (`sync_advice` turns the advice of every arena when
    // that changes).
    if thp {
        let skip = META_PAGES * OS_PAGE;
        crate::vm::advise_thp((base + skip) as *mut u8, ARENA_SIZE - skip, true);
    }
    let g = lock();
    // Another thread may have added one meanwhile: keep ours anyway (it is
    // only address space until touched).
    let idx = ARENA_COUNT.load(Acquire);
    if idx >= MAX_ARENAS {
        drop(g);
        // SAFETY: the arena just mapped, never published.
        unsafe { crate::vm::unmap(base as *mut u8, ARENA_SIZE) };
        return None;
    }
    ARENAS[idx].store(base, Release);
    ARENA_OF[base >> ARENA_SHIFT].store(idx as u16 + 1, Release);
    ARENA_COUNT.store(idx + 1, Release);
    sync_advice(&g, thp);
    let mut r = base;
    while r < base + ARENA_SIZE {
        crate::segment_map::set(r, crate::segment_map::Region::Span);
        r += crate::layout::SEGMENT_SIZE;
    }
    let l = g.lists();
    set_tags(base, META_PAGES, PAGES - META_PAGES, CLEAN);
    push(l, CLEAN, id(idx, META_PAGES), PAGES - META_PAGES);
    Some(())
}

// ---------------------------------------------------------------------------
// Lookup, free, resize
// ---------------------------------------------------------------------------

/// The arena base and page of `addr` if it lies in an arena (any page).
#[inline]
fn locate(addr: usize) -> Option<(usize, usize, usize)> {
    let i = ARENA_OF.get(addr >> ARENA_SHIFT)?.load(Acquire) as usize;
    if i == 0 {
        return None;
    }
    let base = addr & !(ARENA_SIZE - 1);
    Some((i - 1, base, (addr - base) / OS_PAGE))
}

/// The used span starting at the page of `start`: its length in pages, or
/// None if no live span starts there (a foreign or interior pointer).
#[inline]
pub fn used_span_at(start: usize) -> Option<usize> {
    if start % OS_PAGE != 0 {
        return None;
    }
    let (_, base, page) = locate(start)?;
    if page < META_PAGES {
        return None;
    }
    let m = meta(base, page);
    let st = m.state.load(Acquire);
    (st & KIND == USED && st & FIRST != 0).then(|| m.len.load(Relaxed) as usize)
}

/// The page map entry of the span at `start`, without an arena lookup:
/// `start` must be an address where this heap once handed out a span
/// (arenas are never unmapped, so its page map is there). For a caller that
/// looks at the same span again and again ([`live_span_in`]: the BigCache
/// hit's free).
#[inline(always)]
pub fn meta_at_known(start: usize) -> &'static PageMeta {
    debug_assert!(locate(start).is_some_and(|(_, _, page)| page >= META_PAGES));
    let base = start & !(ARENA_SIZE - 1);
    meta(base, (start - base) / OS_PAGE)
}

/// The length in pages and the owner tag of the used span whose page map
/// entry is `m` ([`meta_at_known`]), or None if no live span starts there.
#[inline(always)]
pub fn live_span_in(m: &PageMeta) -> Option<(usize, u32)> {
    let st = m.state.load(Acquire);
    (st & KIND == USED && st & FIRST != 0)
        .then(|| (m.len.load(Relaxed) as usize, m.prev.load(Relaxed)))
}

/// True if `addr` lies in one of the arenas.
pub fn contains(addr: usize) -> bool {
    locate(addr).is_some()
}

/// The owner tag recorded when the span at `start` (a live span) was allocated.
pub fn owner(start: usize) -> u32 {
    let base = start & !(ARENA_SIZE - 1);
    meta(base, (start - base) / OS_PAGE).prev.load(Relaxed)
}

/// Records a new owner for the live span at `start` (a block handed to another thread).
pub fn set_owner(start: usize, owner: u32) {
    let base = start & !(ARENA_SIZE - 1);
    meta(base, (start - base) / OS_PAGE)
        .prev
        .store(owner, Relaxed);
}

/// Gives the live span at `start` back: it becomes dirty (its pages stay
/// resident until purged) and coalesces with dirty neighbours.
pub fn free(start: usize) {
    let now = now_ms();
    LAST_ACTIVITY_MS.store(now, Relaxed);
    free_since(start, now)
}

/// [`free`] for memory that already waited the purge delay elsewhere (the
/// BigCache): counted as freed one purge delay ago, so an idle program's next
/// pass purges it, and a busy one holds it like any other free span. The
/// cache's aging is no program activity: it does not postpone idleness.
pub fn free_aged(start: usize) {
    let delay = crate::options::get()
        .purge_delay_ms
        .min(u32::MAX as u64 / 4) as u32;
    free_since(start, now_ms().wrapping_sub(delay))
}

fn free_since(start: usize, since: u32) {
    let Some((a, base, page)) = locate(start) else {
        return;
    };
    let g = lock();
    let l = g.lists();
    let len = meta(base, page).len.load(Relaxed) as usize;
    debug_assert_eq!(meta(base, page).state.load(Relaxed) & KIND, USED);
    COUNTERS.frees.fetch_add(1, Relaxed);
    COUNTERS.used_pages.fetch_sub(len as u64, Relaxed);
    COUNTERS.dirty_pages.fetch_add(len as u64, Relaxed);
    insert_free(l, a, base, page, len, DIRTY, since);
    debug_check(l, "free");
    drop(g);
}

/// Puts `[page, page+len)` into the free lists as `kind`, coalescing with
/// free neighbours of the same kind.
fn insert_free(
    l: &mut Lists,
    a: usize,
    base: usize,
    mut page: usize,
    mut len: usize,
    kind: u32,
    since: u32,
) {
    let mut since = since;
    if page > META_PAGES {
        let left = meta(base, page - 1);
        if left.state.load(Relaxed) & KIND == kind {
            let llen = left.len.load(Relaxed) as usize;
            let lpage = page - llen;
            // A merged span is as old as its youngest part.
            since = if kind == DIRTY {
                since.max(meta(base, lpage).since_ms.load(Relaxed))
            } else {
                since
            };
            unlink(l, kind, id(a, lpage), llen);
            clear_tag(base, page - 1);
            clear_tag(base, page);
            page = lpage;
            len += llen;
            COUNTERS.merges.fetch_add(1, Relaxed);
        }
    }
    if page + len < PAGES {
        let right = meta(base, page + len);
        if right.state.load(Relaxed) & KIND == kind {
            let rlen = right.len.load(Relaxed) as usize;
            if kind == DIRTY {
                since = since.max(right.since_ms.load(Relaxed));
            }
            unlink(l, kind, id(a, page + len), rlen);
            clear_tag(base, page + len - 1);
            clear_tag(base, page + len);
            len += rlen;
            COUNTERS.merges.fetch_add(1, Relaxed);
        }
    }
    set_tags(base, page, len, kind);
    meta(base, page).since_ms.store(since, Relaxed);
    push(l, kind, id(a, page), len);
}

/// Grows (or shrinks) the live span at `start` to `pages` pages in place:
/// growing takes the start of a free span right after it. Returns false if
/// that span is missing, too short or busy. New pages may be dirty: the
/// caller must not assume they read zero.
pub fn resize(start: usize, pages: usize) -> bool {
    let Some((a, base, page)) = locate(start) else {
        return false;
    };
    if pages == 0 || pages > MAX_SPAN_PAGES || page + pages > PAGES {
        return false;
    }
    let g = lock();
    let l = g.lists();
    let m = meta(base, page);
    let len = m.len.load(Relaxed) as usize;
    let owner = m.prev.load(Relaxed);
    if pages == len {
        return true;
    }
    if pages < len {
        set_tags(base, page, pages, USED);
        COUNTERS.used_pages.fetch_sub((len - pages) as u64, Relaxed);
        COUNTERS
            .dirty_pages
            .fetch_add((len - pages) as u64, Relaxed);
        clear_tag(base, page + len - 1);
        insert_free(l, a, base, page + pages, len - pages, DIRTY, now_ms());
    } else {
        let next = page + len;
        if next >= PAGES {
            return false;
        }
        let nm = meta(base, next);
        let kind = nm.state.load(Relaxed) & KIND;
        let nlen = nm.len.load(Relaxed) as usize;
        if !(kind == DIRTY || kind == CLEAN) || len + nlen < pages {
            return false;
        }
        let since = nm.since_ms.load(Relaxed);
        unlink(l, kind, id(a, next), nlen);
        let extra = pages - len;
        clear_tag(base, page + len - 1);
        clear_tag(base, next);
        if nlen > extra {
            let rest = next + extra;
            set_tags(base, rest, nlen - extra, kind);
            meta(base, rest).since_ms.store(since, Relaxed);
            push(l, kind, id(a, rest), nlen - extra);
        } else {
            clear_tag(base, next + nlen - 1);
        }
        set_tags(base, page, pages, USED);
        if kind == DIRTY {
            COUNTERS.dirty_pages.fetch_sub(extra as u64, Relaxed);
        }
        COUNTERS.used_pages.fetch_add(extra as u64, Relaxed);
    }
    m.prev.store(owner, Relaxed);
    COUNTERS.resized_in_place.fetch_add(1, Relaxed);
    debug_check(l, "resize");
    drop(g);
    true
}

// ---------------------------------------------------------------------------
// Purging
// ---------------------------------------------------------------------------

/// While spans are being handed out or given back, a dirty span's whole
/// huge pages are purged only after it has waited this long (ms), not the
/// purge delay; the rest of it waits [`SPLIT_HOLD_MS`].
///
/// Why: a program that frees and allocates large blocks without pause needs
/// its freed memory again within milliseconds, and on this machine purging
/// it costs a fault per page (2-3.5 us) when it is reused. With the delay
/// alone (10 ms), `large-varied` purged 1.5 GiB in 3,000 operations and took
/// 325,000 faults (tcmalloc: 23,000). A whole huge page purged costs one
/// fault when it is reused, so it waits least. Idle is judged for the span
/// level as a whole, as mimalloc does for an arena (each free there pushes
/// its purge deadline back): no span handed out or given back for a purge
/// delay.
///
/// Measured (`hakmem-bench programs`, 5 rounds; pbzip2's faults with
/// `/usr/bin/time`): with every busy purge held 1 s, the free spans
/// python3's next round did not reuse stayed resident all run and its
/// footprint grew round by round (peak RSS 122.3 MiB; 117.5 with these
/// holds), while `pbzip2 -p2`'s and `large-varied`'s faults stay as they
/// were. The rest purged after 100-200 ms brought pbzip2's refaults back
/// (~440 -> 660-3,400 a run: its compressor threads reuse their working
/// arrays one 900 kB block, ~100-250 ms, later).
pub const HUGE_HOLD_MS: u64 = 100;

/// While the program is busy, a dirty span's pages outside whole huge pages
/// are purged only after it has waited this long (ms): purging them splits
/// the huge page they share with live blocks, and their reuse faults 4 KiB
/// at a time (see [`HUGE_HOLD_MS`]).
pub const SPLIT_HOLD_MS: u64 = 300;

/// The busy holds ([`HUGE_HOLD_MS`], [`SPLIT_HOLD_MS`]) are for a program
/// that runs whenever it can; they are stretched, up to 8 times, by the
/// larger of two measures of how much longer its work takes on a loaded
/// machine: the one-minute load average per CPU this process may use
/// (`/proc/loadavg`), and how long the thread last active at the span level
/// waited for a CPU against how long it ran over about the last second (its
/// `/proc/self/task/TID/schedstat`: (run + wait) / run). Read at most once a
/// second. Wall time then passes faster than the program's work, which
/// comes back later to the memory it freed. On this 2-CPU machine at a load
/// average of 4-5, `pbzip2 -p2` ran twice as slowly and with the unscaled
/// 100/300 ms holds took 453-1,124 faults a run (1 s hold: 438-449). Each
/// measure alone misses a case (four spinning loops beside it, same run):
/// the load average follows a change a minute late (load climbing 1.6 ->
/// 3.2: 450-611 faults a run with it, 440-452 with schedstat), and the
/// active thread may be one that mostly sleeps and is served at once when
/// it wakes, while the threads that reuse the memory wait (steady load 4:
/// 443-456 with the load average, 523-1,088 with schedstat).
fn hold_scale_x16(now: u32) -> u64 {
    let read = SCALE_READ_MS.load(Relaxed);
    if read != 0 && now.wrapping_sub(read) < 1000 {
        return SCALE_X16.load(Relaxed) as u64;
    }
    SCALE_READ_MS.store(now.max(1), Relaxed);
    let load = load_scale_x16(crate::os::load_average_x100(), crate::os::cpus_allowed());
    let tid = LAST_ACTIVE_TID.load(Relaxed);
    let wait = match thread_schedstat(tid) {
        Some((ran, waited)) => {
            // The last sample's thread, run and wait times (racy updates
            // between callers only cost one interval's accuracy).
            let same = SAMPLE_TID.swap(tid, Relaxed) == tid;
            let ran0 = SAMPLE_RAN_NS.swap(ran, Relaxed);
            let waited0 = SAMPLE_WAITED_NS.swap(waited, Relaxed);
            if same && ran >= ran0 && waited >= waited0 {
                wait_scale_x16(ran - ran0, waited - waited0)
            } else {
                16
            }
        }
        None => 16,
    };
    let scale = load.max(wait);
    SCALE_X16.store(scale as u32, Relaxed);
    scale
}

/// The hold scale (sixteenths) for a load average of `load_x100` / 100 on
/// `cpus` CPUs: 1 up to one runnable thread per CPU, the load per CPU
/// above that, at most 8.
fn load_scale_x16(load_x100: Option<u32>, cpus: u32) -> u64 {
    let Some(load) = load_x100 else { return 16 };
    (load as u64 * 16 / (cpus.max(1) as u64 * 100)).clamp(16, 8 * 16)
}

/// The hold scale (sixteenths) for a thread that ran `ran_ns` and waited
/// for a CPU `waited_ns` in an interval: (run + wait) / run, from 1 to 8;
/// 1 when it ran under 1 ms (too little to tell).
fn wait_scale_x16(ran_ns: u64, waited_ns: u64) -> u64 {
    if ran_ns < 1_000_000 {
        return 16;
    }
    (ran_ns.saturating_add(waited_ns).saturating_mul(16) / ran_ns).clamp(16, 8 * 16)
}

/// [`hold_scale_x16`]'s last answer and when it was computed (ms, 0 = never).
static SCALE_X16: AtomicU32 = AtomicU32::new(16);
static SCALE_READ_MS: AtomicU32 = AtomicU32::new(0);
/// The schedstat sample it was computed from.
static SAMPLE_TID: AtomicU32 = AtomicU32::new(0);
static SAMPLE_RAN_NS: AtomicU64 = AtomicU64::new(0);
static SAMPLE_WAITED_NS: AtomicU64 = AtomicU64::new(0);

/// No large-block activity for this long (ms) is idleness whatever the last
/// active thread does (see [`idle`]).
pub const QUIET_IDLE_MS: u64 = 1000;

/// When a span was last handed out or given back (ms of the monotonic clock).
static LAST_ACTIVITY_MS: AtomicU32 = AtomicU32::new(0);
/// The kernel id of a thread that did large-block work lately (0 = none
/// known): see [`idle`].
static LAST_ACTIVE_TID: AtomicU32 = AtomicU32::new(0);

/// Notes large-block activity that did not reach the span level (BigCache
/// hits) by thread `tid` (0 = not known): the program is busy, so free
/// spans are held ([`HUGE_HOLD_MS`], [`SPLIT_HOLD_MS`]).
pub fn note_activity(now_ns: u64, tid: u32) {
    LAST_ACTIVITY_MS.store((now_ns / 1_000_000) as u32, Relaxed);
    if tid != 0 && LAST_ACTIVE_TID.load(Relaxed) != tid {
        LAST_ACTIVE_TID.store(tid, Relaxed);
    }
}

/// Whether the large-block side is idle (the background purge thread then
/// ages the threads' caches, and purges take everything that waited the
/// delay): no large-block activity for two purge delays of `delay_ms`, and
/// the thread last active is not running or waiting for a CPU, or no
/// activity for [`QUIET_IDLE_MS`] whatever it does.
///
/// The thread's state matters on a loaded machine: a program that writes an
/// 8 MiB buffer between two allocations, or waits 20 ms for a CPU, is not
/// idle, and purging then made every next allocation fault its pages in
/// again (`large-varied` at a load average of 7: 4,000-32,000 faults and 2-10x
/// the time a run, against ~1,300 without the purges). A sleeping program
/// (a server in `epoll_wait`) still gets its memory purged two delays after
/// its last allocation. A delay of 0 is always idle.
pub fn idle(delay_ms: u64) -> bool {
    if delay_ms == 0 {
        // No delay (`collect`, `HAKMEM_PURGE_DELAY_MS=0`): now.
        return true;
    }
    let quiet = now_ms().wrapping_sub(LAST_ACTIVITY_MS.load(Relaxed)) as u64;
    if quiet < 2 * delay_ms {
        return false;
    }
    quiet >= QUIET_IDLE_MS || !thread_runnable(LAST_ACTIVE_TID.load(Relaxed))
}

/// Reads /proc/self/task/TID/NAME into `buf` (no allocation): the length
/// read, None for tid 0, an exited thread, or no /proc.
fn read_task_file(tid: u32, name: &str, buf: &mut [u8]) -> Option<usize> {
    use core::fmt::Write;
    if tid == 0 {
        return None;
    }
    let mut path = crate::report::StackWriter::<48>::new();
    write!(path, "/proc/self/task/{tid}/{name}\0").ok()?;
    let path = core::ffi::CStr::from_bytes_until_nul(path.as_bytes()).ok()?;
    os::read_file(path, buf)
}

/// Whether thread `tid` of this process is running or waiting for a CPU:
/// state `R` in /proc/self/task/TID/stat (no allocation). False for a thread
/// that sleeps, is stopped or has exited, and where /proc is not mounted.
fn thread_runnable(tid: u32) -> bool {
    // "TID (comm) S ...": the state follows the last ')' (comm may hold one).
    let mut buf = [0u8; 256];
    let Some(len) = read_task_file(tid, "stat", &mut buf) else {
        return false;
    };
    let Some(close) = buf[..len].iter().rposition(|&c| c == b')') else {
        return false;
    };
    buf.get(close + 2) == Some(&b'R')
}

/// Nanoseconds thread `tid` has run and has waited for a CPU (the first two
/// fields of /proc/self/task/TID/schedstat), None if unreadable.
fn thread_schedstat(tid: u32) -> Option<(u64, u64)> {
    let mut buf = [0u8; 96];
    let len = read_task_file(tid, "schedstat", &mut buf)?;
    parse_schedstat(&buf[..len])
}

/// "RUN_NS WAIT_NS SLICES\n" → (run, wait).
fn parse_schedstat(s: &[u8]) -> Option<(u64, u64)> {
    let mut fields = s.split(|&c| c == b' ' || c == b'\n');
    Some((
        os::parse_decimal(fields.next()?)?,
        os::parse_decimal(fields.next()?)?,
    ))
}

/// Purges dirty spans that have been dirty for at least `delay_ms` (all of
/// them if 0) while the span level is idle (no large-block activity for two
/// purge delays); while it is busy, a span's whole huge pages once it has
/// waited [`HUGE_HOLD_MS`] and all of it once it has waited [`SPLIT_HOLD_MS`].
/// `wait` = take the lock even if busy (else skip a busy heap). Returns bytes
/// purged.
pub fn purge(delay_ms: u64, wait: bool) -> u64 {
    if COUNTERS.dirty_pages.load(Relaxed) == 0 {
        return 0;
    }
    let now = now_ms();
    // Two delays: one slow operation (faulting 8 MiB in takes 6 ms here)
    // between span operations must not look like idleness.
    let idle = idle(delay_ms);
    let (huge_ms, split_ms) = if idle {
        (delay_ms, delay_ms)
    } else {
        let scale = hold_scale_x16(now);
        (
            delay_ms.max(HUGE_HOLD_MS * scale / 16),
            delay_ms.max(SPLIT_HOLD_MS * scale / 16),
        )
    };
    let mut purged = 0u64;
    // One span per lock hold: the madvise runs unlocked.
    loop {
        let g = if wait { Some(lock()) } else { try_lock() };
        let Some(g) = g else { return purged };
        let l = g.lists();
        let Some((span, len)) = first_expired(l, now, huge_ms, split_ms) else {
            return purged;
        };
        let since = meta_of(span).since_ms.load(Relaxed);
        unlink(l, DIRTY, span, len);
        let a = (span >> 16) as usize;
        let base = arena_base(a);
        let span_page = (span & 0xffff) as usize;
        // Before the split hold, only the span's whole huge pages go (see
        // `thp::whole_huge_pages`); the rest stays dirty, as old as it was,
        // and goes once it has waited the split hold (or the program is idle).
        let (page, len) = if now.wrapping_sub(since) as u64 >= split_ms {
            (span_page, len)
        } else {
            let (first, last) = whole_huge_pages_of(base, span_page, len);
            debug_assert!(first >= span_page && last <= span_page + len && last > first);
            if first > span_page {
                insert_free(l, a, base, span_page, first - span_page, DIRTY, since);
            }
            if last < span_page + len {
                insert_free(l, a, base, last, span_page + len - last, DIRTY, since);
            }
            (first, last - first)
        };
        set_tags(base, page, len, BUSY);
        COUNTERS.dirty_pages.fetch_sub(len as u64, Relaxed);
        debug_check(l, "purge (busy part)");
        drop(g);
        // SAFETY: a free span marked busy: no block lives there and no
        // other thread touches it until it is put back below.
        unsafe { crate::vm::purge((base + page * OS_PAGE) as *mut u8, len * OS_PAGE) };
        COUNTERS.purges.fetch_add(1, Relaxed);
        COUNTERS
            .purged_bytes
            .fetch_add((len * OS_PAGE) as u64, Relaxed);
        purged += (len * OS_PAGE) as u64;
        let g = lock();
        let l = g.lists();
        insert_free(l, a, base, page, len, CLEAN, 0);
        debug_check(l, "purge");
        drop(g);
    }
}

/// The pages `[first, last)` of the span at `page` (of `len` pages) that
/// make up whole huge pages where the kernel gives them, all of them where
/// it does not (`thp::whole_huge_pages`); `last <= first` if none.
fn whole_huge_pages_of(base: usize, page: usize, len: usize) -> (usize, usize) {
    let start = base + page * OS_PAGE;
    let (s, e) = crate::thp::whole_huge_pages(start, start + len * OS_PAGE);
    ((s - base) / OS_PAGE, (e.max(s) - base) / OS_PAGE)
}

/// The first dirty span (shortest bins first) that has waited `split_ms`,
/// or `huge_ms` and holds a whole huge page, if any.
fn first_expired(l: &Lists, now: u32, huge_ms: u64, split_ms: u64) -> Option<(u32, usize)> {
    let mut mask = l.nonempty[0];
    while mask != 0 {
        let b = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let mut span = l.head[0][b];
        while span != NIL {
            let m = meta_of(span);
            let age = now.wrapping_sub(m.since_ms.load(Relaxed)) as u64;
            let len = m.len.load(Relaxed) as usize;
            if age >= split_ms {
                return Some((span, len));
            }
            if age >= huge_ms {
                let base = arena_base((span >> 16) as usize);
                let (first, last) = whole_huge_pages_of(base, (span & 0xffff) as usize, len);
                if last > first {
                    return Some((span, len));
                }
            }
            span = m.next.load(Relaxed);
        }
    }
    None
}

/// Whether a dirty span of at least `pages` pages is free right now (a
/// request of that size would reuse resident memory, not fault fresh pages).
pub fn dirty_fit(pages: usize) -> bool {
    if COUNTERS.dirty_pages.load(Relaxed) < pages as u64 {
        return false;
    }
    let g = lock();
    find(g.lists(), DIRTY, pages).is_some()
}

/// Bytes in dirty spans (resident free memory) right now.
pub fn dirty_bytes() -> u64 {
    COUNTERS.dirty_pages.load(Relaxed) * OS_PAGE as u64
}

// ---------------------------------------------------------------------------
// Invariant checks
// ---------------------------------------------------------------------------

/// Under `debug-checks`, the whole-heap walk after every change, in the same
/// lock hold (so a broken invariant is pinned on the operation that broke it).
/// It visits every span and list entry but not every interior page (that is
/// O(pages) per change: [`check`] does it).
fn debug_check(l: &Lists, after: &str) {
    if cfg!(feature = "debug-checks") {
        check_locked(l, after, false);
    }
}

/// Walks every arena and list and panics on a broken invariant (see the
/// module docs). Takes the lock.
#[allow(clippy::needless_range_loop)] // `s` is the state index of two arrays
pub fn check() {
    let g = lock();
    check_locked(g.lists(), "check", true);
}

/// [`check`] with the lock held; `after` names the operation just done;
/// `interior` = also check that every interior page has state 0.
#[allow(clippy::needless_range_loop)]
fn check_locked(l: &Lists, after: &str, interior: bool) {
    let mut dirty = 0u64;
    let mut listed = [0usize; 2];
    for s in 0..2 {
        for b in 0..BINS {
            let mut span = l.head[s][b];
            assert_eq!(
                l.nonempty[s] & (1 << b) != 0,
                span != NIL,
                "bitmap of bin {b}"
            );
            let mut prev = NIL;
            while span != NIL {
                let m = meta_of(span);
                let len = m.len.load(Relaxed) as usize;
                assert_eq!(
                    m.state.load(Relaxed) & KIND,
                    s as u32 + 1,
                    "span in the list of its state (after {after})"
                );
                assert_eq!(bin(len), b, "span in the bin of its length");
                assert_eq!(m.prev.load(Relaxed), prev, "list links");
                listed[s] += 1;
                prev = span;
                span = m.next.load(Relaxed);
            }
        }
    }
    let mut free_spans = [0usize; 2];
    for a in 0..ARENA_COUNT.load(Acquire) {
        let base = arena_base(a);
        let mut page = META_PAGES;
        let mut prev_kind = 0;
        while page < PAGES {
            let m = meta(base, page);
            let st = m.state.load(Relaxed);
            let len = m.len.load(Relaxed) as usize;
            assert!(
                st & FIRST != 0 && len >= 1,
                "span start tag at page {page} (after {after})"
            );
            let kind = st & KIND;
            let last = meta(base, page + len - 1);
            assert!(last.state.load(Relaxed) & LAST != 0, "span end tag");
            assert_eq!(last.state.load(Relaxed) & KIND, kind);
            assert_eq!(last.len.load(Relaxed) as usize, len);
            for p in (page + 1..page + len - 1).filter(|_| interior) {
                assert_eq!(
                    meta(base, p).state.load(Relaxed),
                    INTERIOR,
                    "interior page {p}"
                );
            }
            if kind == DIRTY || kind == CLEAN {
                assert_ne!(
                    kind, prev_kind,
                    "adjacent free spans of one state are coalesced"
                );
                free_spans[(kind - 1) as usize] += 1;
            }
            if kind == DIRTY {
                dirty += len as u64;
            }
            prev_kind = kind;
            page += len;
        }
        assert_eq!(page, PAGES, "spans tile the arena");
    }
    assert_eq!(
        listed, free_spans,
        "every free span is listed once (after {after})"
    );
    assert_eq!(
        dirty,
        COUNTERS.dirty_pages.load(Relaxed),
        "dirty page count (after {after})"
    );
}

/// Unit tests that use the span heap (here and in `bigcache.rs`) run one at a
/// time: it is process-wide, and a test that needs two spans to be adjacent
/// must not have another test's allocation land between them.
#[cfg(test)]
pub(crate) fn test_serial() -> impl Drop {
    static SERIAL: AtomicBool = AtomicBool::new(false);
    struct S;
    impl Drop for S {
        fn drop(&mut self) {
            SERIAL.store(false, Release);
        }
    }
    while SERIAL.swap(true, Acquire) {
        std::thread::yield_now();
    }
    S
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial() -> impl Drop {
        test_serial()
    }

    #[test]
    fn bins_are_monotonic_and_cover_all_lengths() {
        let mut last = 0;
        for n in 1..=PAGES {
            let b = bin(n);
            assert!(b >= last && b < BINS);
            last = b;
        }
        assert_eq!(bin(1), 0);
        assert_eq!(bin(4), 3);
        assert_eq!(bin(8), 7);
    }

    #[test]
    fn freed_span_serves_a_smaller_request_and_coalesces() {
        let _s = serial();
        let a = alloc(512, 1).unwrap();
        let b = alloc(256, 1).unwrap();
        assert_eq!(used_span_at(a.start), Some(512));
        assert_eq!(used_span_at(a.start + OS_PAGE), None, "interior page");
        // Write every page, free, and ask for a different size: same memory, still resident.
        unsafe { core::ptr::write_bytes(a.start as *mut u8, 7, 512 * OS_PAGE) };
        free(a.start);
        let c = alloc(300, 2).unwrap();
        assert!(c.dirty, "dirty memory is preferred");
        assert!(c.start >= a.start && c.start + 300 * OS_PAGE <= a.start + 512 * OS_PAGE);
        assert_eq!(owner(c.start), 2);
        free(c.start);
        free(b.start);
        check();
        // All three coalesced: one request of the combined size fits there.
        let d = alloc(768, 3).unwrap();
        assert!(d.dirty);
        free(d.start);
        check();
    }

    #[test]
    fn a_dirty_span_extends_into_the_clean_span_after_it() {
        let _s = serial();
        // Large enough that no other test's dirty span serves the request
        // (and at most MAX_SPAN_PAGES).
        let (n, want) = (8_000, 12_000);
        let a = alloc(n, 1).unwrap();
        let b = alloc(n, 1).unwrap();
        let guard = alloc(1, 1).unwrap();
        assert_eq!(b.start, a.start + n * OS_PAGE, "adjacent spans");
        free(b.start);
        purge(0, true);
        unsafe { core::ptr::write_bytes(a.start as *mut u8, 7, OS_PAGE) };
        free(a.start);
        let mixed = COUNTERS.mixed_reuses.load(Relaxed);
        let d = alloc(want, 2).unwrap();
        assert_eq!(d.start, a.start, "starts with the resident span");
        assert!(d.dirty, "not all of it reads zero");
        assert_eq!(COUNTERS.mixed_reuses.load(Relaxed), mixed + 1);
        assert_eq!(used_span_at(d.start), Some(want));
        check();
        free(d.start);
        free(guard.start);
        check();
        purge(0, true);
    }

    #[test]
    fn a_quiet_stretch_is_idle_only_once_the_last_active_thread_sleeps() {
        let _s = serial();
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                tx.send(os::gettid()).unwrap();
                // Computing (or waiting for a CPU on a loaded machine): state R.
                while !stop.load(Relaxed) {
                    core::hint::spin_loop();
                }
                // Then asleep: state S.
                std::thread::park();
            })
        };
        let tid = rx.recv().unwrap();
        let quiet = |ms: u32| LAST_ACTIVITY_MS.store(now_ms().wrapping_sub(ms), Relaxed);
        note_activity(os::monotonic_ns(), tid);
        assert!(!idle(10), "activity just now");
        quiet(100);
        assert!(thread_runnable(tid));
        assert!(!idle(10), "the last active thread is computing: not idle");
        quiet(QUIET_IDLE_MS as u32 + 100);
        assert!(
            idle(10),
            "a second without activity is idle whatever the thread does"
        );
        stop.store(true, Relaxed);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while thread_runnable(tid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread never slept"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        quiet(100);
        assert!(idle(10), "the last active thread sleeps: idle");
        spinner.thread().unpark();
        spinner.join().unwrap();
        // join returns once the kernel cleared the thread's tid word, early in
        // its exit: the task still runs (state R) for a moment after that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while thread_runnable(tid) {
            assert!(
                std::time::Instant::now() < deadline,
                "an exited thread is not runnable"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        note_activity(os::monotonic_ns(), 0);
    }

    #[test]
    fn purge_makes_spans_clean_after_the_delay() {
        // Other unit tests (the BigCache's) use the span heap at the same
        // time: only what this test's own span shows is asserted.
        let _s = serial();
        let a = alloc(64, 1).unwrap();
        unsafe { core::ptr::write_bytes(a.start as *mut u8, 1, 64 * OS_PAGE) };
        free(a.start);
        assert!(dirty_bytes() >= 64 * OS_PAGE as u64);
        let purged = purge(0, true);
        assert!(purged >= 64 * OS_PAGE as u64);
        check();
    }

    #[test]
    fn a_purge_while_busy_takes_whole_huge_pages_first_and_the_rest_after_the_split_hold() {
        let _s = serial();
        crate::thp::set_for_test(true);
        // Three spans of 5 MiB and two pages, each between live one-page
        // spans (no neighbour to merge with): at least one whole 2 MiB page
        // lies inside each, and a rest at one end at least.
        let pages = (5 << 20) / OS_PAGE + 2;
        let mut guards = vec![alloc(1, 1).unwrap()];
        let mut spans = Vec::new();
        for _ in 0..3 {
            let a = alloc(pages, 1).unwrap();
            assert_eq!(
                a.start,
                guards.last().unwrap().start + OS_PAGE,
                "adjacent spans"
            );
            // SAFETY: the span just handed out, `pages` pages long.
            unsafe { core::ptr::write_bytes(a.start as *mut u8, 7, pages * OS_PAGE) };
            spans.push(a);
            guards.push(alloc(1, 1).unwrap());
            assert_eq!(guards.last().unwrap().start, a.start + pages * OS_PAGE);
        }
        let state = |addr: usize| {
            let base = addr & !(ARENA_SIZE - 1);
            meta(base, (addr - base) / OS_PAGE).state.load(Relaxed)
        };
        let since = |addr: usize| {
            let base = addr & !(ARENA_SIZE - 1);
            meta(base, (addr - base) / OS_PAGE).since_ms.load(Relaxed)
        };
        let now = now_ms();
        // Freed between the two holds, after both, and before either, while
        // the program is busy now.
        let between = now.wrapping_sub(((HUGE_HOLD_MS + SPLIT_HOLD_MS) / 2) as u32);
        free_since(spans[0].start, between);
        free_since(spans[1].start, now.wrapping_sub(SPLIT_HOLD_MS as u32 + 100));
        free_since(spans[2].start, now.wrapping_sub(HUGE_HOLD_MS as u32 / 2));
        note_activity(os::monotonic_ns(), 0);
        // As for a thread that gets a CPU when it can (not stretched).
        SCALE_X16.store(16, Relaxed);
        SCALE_READ_MS.store(now_ms().max(1), Relaxed);
        purge(10, true);

        let a = spans[0];
        let end = a.start + pages * OS_PAGE;
        let (s, e) = crate::thp::whole_huge_pages(a.start, end);
        assert!(s < e && (s > a.start || e < end));
        assert_eq!(state(s), CLEAN | FIRST, "the whole huge pages were purged");
        for (rest, there) in [(a.start, s > a.start), (e, e < end)] {
            if there {
                assert_eq!(state(rest) & KIND, DIRTY, "the rest around them was not");
                assert_eq!(since(rest), between, "and it is as old as before");
            }
        }
        let b = spans[1];
        assert_eq!(
            state(b.start),
            CLEAN | FIRST,
            "purged whole after the split hold"
        );
        assert_eq!(used_span_at(b.start + pages * OS_PAGE), Some(1));
        let c = spans[2];
        assert_eq!(
            state(c.start),
            DIRTY | FIRST,
            "not purged before either hold"
        );
        check();
        // Once idle, the rest goes too.
        LAST_ACTIVITY_MS.store(now_ms().wrapping_sub(QUIET_IDLE_MS as u32), Relaxed);
        purge(10, true);
        assert_eq!(state(a.start) & KIND, CLEAN);
        assert_eq!(state(c.start) & KIND, CLEAN);
        check();
        for g in guards {
            free(g.start);
        }
        check();
        purge(0, true);
    }

    #[test]
    fn the_busy_holds_stretch_with_the_load_per_cpu() {
        assert_eq!(load_scale_x16(None, 2), 16, "no /proc: unscaled");
        assert_eq!(load_scale_x16(Some(150), 2), 16, "a CPU free: unscaled");
        assert_eq!(load_scale_x16(Some(786), 2), 62, "3.9 runnable a CPU");
        assert_eq!(load_scale_x16(Some(786), 0), 125);
        assert_eq!(load_scale_x16(Some(99_999), 4), 128, "at most 8 times");
        assert_eq!(
            os::parse_load_x100(b"7.86 6.80 5.22 3/456 1234\n"),
            Some(786)
        );
        assert_eq!(os::parse_load_x100(b"12.5 1.00 1.00 1/1 1"), Some(1250));
        assert_eq!(os::parse_load_x100(b"0.04 0 0"), Some(4));
        assert_eq!(os::parse_load_x100(b"x.1 0 0"), None);
        assert!(
            os::load_average_x100().is_some(),
            "/proc/loadavg is readable here"
        );
        assert!(os::cpus_allowed() >= 1);
    }

    #[test]
    fn the_busy_holds_stretch_with_the_active_threads_wait_for_a_cpu() {
        assert_eq!(wait_scale_x16(500_000, 9_000_000), 16, "ran under 1 ms");
        assert_eq!(wait_scale_x16(100_000_000, 0), 16, "never waited: unscaled");
        assert_eq!(wait_scale_x16(100_000_000, 100_000_000), 32, "waited half");
        assert_eq!(wait_scale_x16(100_000_000, 290_000_000), 62, "3.9 times");
        assert_eq!(wait_scale_x16(10_000_000, u64::MAX), 128, "at most 8 times");
        assert_eq!(
            parse_schedstat(b"180927 411476 2\n"),
            Some((180_927, 411_476))
        );
        assert_eq!(parse_schedstat(b"12 x 1"), None);
        assert_eq!(parse_schedstat(b""), None);
        let me = os::gettid();
        // (The run time of a running thread is brought up to date at a
        // tick or a switch: a fresh one may read 0.)
        assert!(thread_schedstat(me).is_some(), "schedstat is readable here");
        assert_eq!(thread_schedstat(0), None);
        // A thread that has exited (no such task): None, and errno as it
        // was (this runs inside malloc; the model test caught ENOENT left
        // behind by a malloc that succeeded).
        os::set_errno(0);
        assert_eq!(thread_schedstat(u32::MAX - 1), None);
        assert!(!thread_runnable(u32::MAX - 1));
        // SAFETY: this thread's errno slot.
        assert_eq!(unsafe { *libc::__errno_location() }, 0, "errno kept");
    }

    /// A thread that waits for its CPU behind two spinning threads pinned
    /// to the same one stretches the holds within the interval (the load
    /// average alone took a minute to follow).
    #[test]
    fn a_thread_waiting_for_its_cpu_is_seen_within_a_second() {
        let _s = serial();
        // SAFETY: a zeroed cpu_set_t is an empty set; CPU 0 added; the calls
        // only read or write it.
        let pinned = unsafe {
            let mut set: libc::cpu_set_t = core::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            move || libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        };
        if !pinned() {
            return; // not allowed on CPU 0: nothing to measure here
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let spinners: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pinned();
                    let mut x = 1u64;
                    while !stop.load(Relaxed) {
                        x = core::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        let me = os::gettid();
        LAST_ACTIVE_TID.store(me, Relaxed);
        SCALE_READ_MS.store(0, Relaxed);
        hold_scale_x16(now_ms());
        // Run for ~300 ms of CPU beside them.
        let (ran0, _) = thread_schedstat(me).unwrap();
        let mut x = 1u64;
        while thread_schedstat(me).unwrap().0 - ran0 < 300_000_000 {
            for _ in 0..100_000 {
                x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        SCALE_READ_MS.store(0, Relaxed);
        let scale = hold_scale_x16(now_ms());
        stop.store(true, Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        SCALE_READ_MS.store(0, Relaxed);
        LAST_ACTIVE_TID.store(0, Relaxed);
        assert!(
            scale >= 32,
            "a thread sharing its CPU with two spinners: scale {scale}/16"
        );
    }

    #[test]
    fn resize_grows_into_the_free_neighbour_and_shrinks() {
        let _s = serial();
        let a = alloc(200, 1).unwrap();
        assert!(resize(a.start, 400), "the arena's free tail follows");
        assert_eq!(used_span_at(a.start), Some(400));
        let b = alloc(10, 1).unwrap();
        assert!(!resize(a.start, 400 + 10 + 1_000_000 / 4096) || b.start < a.start);
        assert!(resize(a.start, 100));
        assert_eq!(used_span_at(a.start), Some(100));
        check();
        free(a.start);
        free(b.start);
        check();
    }

    #[test]
    fn spans_fill_arenas_and_more_are_reserved() {
        let _s = serial();
        let spans: Vec<Span> = (0..6).map(|_| alloc(MAX_SPAN_PAGES, 9).unwrap()).collect();
        assert!(arenas() >= 2, "six quarter-arena spans need a second arena");
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                let (a0, b0) = (a.start, b.start);
                let len = MAX_SPAN_PAGES * OS_PAGE;
                assert!(a0 + len <= b0 || b0 + len <= a0, "spans overlap");
            }
        }
        for s in &spans {
            assert!(contains(s.start));
            free(s.start);
        }
        check();
        purge(0, true);
    }
}
