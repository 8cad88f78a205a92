//! The large-block side's per-thread state: BigCache slots, the exploration
//! RNG, the one allocation being measured, the purge clock, options copied at
//! set-up, and the thread's large-block counters. The thread context
//! (`crate::thread`) holds one per thread and passes it to `path`.

use crate::counters::Counter;
use crate::large::shared_cache::{self, SharedCache};
use crate::large::span_heap::{PageMeta, NO_SPAN};
use crate::large::{elo, evolution, reuse};
use crate::options;

/// Per-thread large-block state: BigCache slots, exploration RNG, the one
/// allocation being measured for ELO, and the purge clock.
pub struct ThreadState {
    /// This thread's BigCache slots: a field of the same thread context,
    /// beside this state (the background purge thread reaches it, never this
    /// state). Null until the context is created.
    pub cache: *const SharedCache,
    /// Exploration RNG (a different sequence per thread).
    pub rng: elo::Rng,
    /// The allocation being measured for ELO, if any.
    pub sample: evolution::Sample,
    /// Large allocations until the next measured one, per size band.
    pub sample_countdown: [u32; evolution::BANDS],
    /// Large operations since the last purge-clock check, in quarters: a
    /// hot hit (`path::alloc_hot`) counts 1, any other large operation 4.
    pub ops: u32,
    /// This thread's kernel id, once a purge-clock check needed it (0 before).
    pub tid: u32,
    /// When this thread's BigCache was last aged, in monotonic ns.
    pub aged_ns: u64,
    /// Options this path needs, copied at heap set-up (they never change).
    pub mode: options::BigCacheMode,
    /// Call-site profiling on (`HAKMEM_MINIMAL` turns it off).
    pub profiling: bool,
    /// The call site of the last profiled large allocation and its table
    /// slot: a loop at one site skips the table lookup.
    pub last_site: usize,
    /// See `last_site`.
    pub last_slot: u32,
    /// `HAKMEM_PURGE_DELAY_MS` in ns.
    pub purge_delay_ns: u64,
    /// This thread's large-block counters.
    pub counters: Counters,
    /// Which cache classes this thread reuses (cache or span level on free).
    pub reuse: reuse::Reuse,
    /// The span block this thread's last BigCache hit on the hit paths
    /// handed out: its free needs no lookup (`path::free_hit`), and its
    /// next hit little more than a compare (`path::alloc_hot`).
    pub hit: Hit,
    /// Bytes of big-page-class requests (64-512 KiB) since the thread
    /// began to churn large blocks (`path::takes_mid_block`).
    pub mid_bytes: u64,
    /// How many hits `path::alloc_hot` may take (counted in
    /// `counters.hot_allocs`) before anything else is due: the purge clock,
    /// the band's next sample. Set when [`Self::hit`] is made, 0 once its
    /// tallies are settled (`path::settle`): the hot hit checks this one
    /// word instead of the clock and the sample countdown.
    pub hot_limit: u64,
}

/// The block this thread's last BigCache hit on the hit paths handed out,
/// as its free and its next hit need it. Kept across its free: while it
/// waits as the cache's hot block (`ThreadCache::hot` is `ptr`), a request
/// of the same size at the same site takes it back on [`path::alloc`]'s
/// first test, without computing anything this record already holds.
///
/// [`path::alloc`]: crate::large::path::alloc
#[derive(Clone, Copy)]
pub struct Hit {
    /// The block (0 = none).
    pub ptr: usize,
    /// The request that got it (0 with no block): a request of this size
    /// has its class and band.
    pub size: usize,
    /// The request's call site, and the mask its comparison takes (all
    /// ones with profiling, whose slot depends on the site; 0 without).
    pub site: usize,
    /// See `site`.
    pub site_mask: usize,
    /// The page map entry of its span (checked on free; `NO_SPAN` with no block).
    pub meta: &'static PageMeta,
    /// Its usable size.
    pub usable: u64,
    /// The bytes its class holds of the cache's budget.
    pub class_bytes: u64,
    /// Its span's length in pages (its header's `len_pages`, with the
    /// guard page of hardened builds): what the page map must say.
    pub span_pages: u32,
    /// This thread's owner tag (`block::owner_tag`): the page map's owner.
    pub owner: u32,
    /// Its header's `len_pages`.
    pub pages: u32,
    /// The table slot of its site (0 without profiling).
    pub slot: u32,
    /// Its cache class.
    pub class: u32,
    /// Its header's site word as the hit wrote it (site slot, strategy).
    pub word: u32,
    /// `evolution::epoch()` when that strategy was chosen.
    pub epoch: u32,
    /// `evolution::band_of(size)`.
    pub band: u8,
    /// The program holds it (between a hit and its free); false once it is
    /// the cache's again.
    pub out: bool,
}

impl Hit {
    /// No block.
    pub const NONE: Hit = Hit {
        ptr: 0,
        size: 0,
        site: 0,
        site_mask: 0,
        meta: &NO_SPAN,
        usable: 0,
        class_bytes: 0,
        span_pages: 0,
        owner: 0,
        pages: 0,
        slot: 0,
        class: 0,
        word: 0,
        epoch: 0,
        band: 0,
        out: false,
    };
}

/// Bytes of large blocks a thread has freed from which its requests of 64-512
/// KiB (the classes of big pages) go to the span heap too ([`ThreadState::churns`]).
///
/// In a big-page segment each class has pages of its own (2 MiB), on 4 KiB
/// pages (`small/segment.rs`: huge pages there raised python3's and gcc's
/// peak RSS), so a thread that cycles through blocks of many of those sizes
/// first-touches a fresh part of one class's page at almost every
/// allocation, and its pages are purged and faulted in again
/// (`large-varied`: ~1,700 of its ~1,900 faults a run, from 3% of its
/// requests). The span heap serves every size from the same resident,
/// huge-page memory that large frees leave dirty, and gives it back when the
/// thread goes idle. A thread that has freed this much in large blocks
/// churns them; one that only grows and keeps its memory never gets here.
pub const CHURN_BYTES: u64 = 64 << 20;

impl ThreadState {
    /// Whether this thread churns large blocks: it has freed at least
    /// [`CHURN_BYTES`] of them.
    #[inline(always)]
    pub fn churns(&self) -> bool {
        self.counters.bytes_freed() >= CHURN_BYTES
    }

    /// The state before set-up (options not applied yet).
    pub const fn new() -> Self {
        ThreadState {
            cache: core::ptr::null(),
            rng: elo::Rng(0x9e37_79b9_7f4a_7c15),
            sample: evolution::Sample::NONE,
            sample_countdown: [0; evolution::BANDS],
            ops: 0,
            tid: 0,
            aged_ns: 0,
            mode: options::BigCacheMode::Off,
            profiling: false,
            last_site: 0,
            last_slot: 0,
            purge_delay_ns: 0,
            counters: Counters::new(),
            reuse: reuse::Reuse::new(),
            hit: Hit::NONE,
            mid_bytes: 0,
            hot_limit: 0,
        }
    }

    /// Copies the options into the thread's state (at heap set-up).
    pub fn configure(&mut self, o: &options::Options) {
        self.mode = o.bigcache;
        self.profiling = o.profiling();
        self.purge_delay_ns = o.purge_delay_ms.saturating_mul(1_000_000);
        self.aged_ns = crate::os::monotonic_ns();
        // A different exploration sequence per thread.
        self.rng.0 ^= (self as *mut Self as u64).rotate_left(17) | 1;
    }
}

impl ThreadState {
    /// This thread's cache, unless the background purge thread is inside it
    /// (then the caller acts as on a miss or a refusal).
    #[inline(always)]
    pub fn cache(&self) -> Option<shared_cache::Guard<'static>> {
        // SAFETY: null, or set at context creation to a field of a thread
        // context, and contexts are never unmapped.
        unsafe { self.cache.as_ref() }?.try_lock()
    }

    /// [`Self::cache`] without the test for a context not created yet.
    ///
    /// # Safety
    /// This state's context was created (`cache` was set): it holds a
    /// record of a hit, say.
    #[inline(always)]
    pub unsafe fn cache_set_up(&self) -> Option<shared_cache::Guard<'static>> {
        debug_assert!(!self.cache.is_null());
        // SAFETY: the caller's contract: set at context creation to a field
        // of a thread context, and contexts are never unmapped.
        unsafe { &*self.cache }.try_lock()
    }

    /// This thread's cache at thread exit, waiting for the purge thread.
    pub fn cache_for_exit(&self) -> Option<shared_cache::Guard<'static>> {
        // SAFETY: as in `cache`.
        unsafe { self.cache.as_ref() }?.lock_for_exit()
    }
}

impl Default for ThreadState {
    fn default() -> Self {
        Self::new()
    }
}

/// The large-block counters each thread keeps (written by that thread only,
/// summed by the statistics snapshot).
pub struct Counters {
    /// Large blocks allocated, freed, and their usable bytes.
    pub large_allocs: Counter,
    /// See `large_allocs`.
    pub large_frees: Counter,
    /// See `large_allocs`.
    pub large_bytes_allocated: Counter,
    /// See `large_allocs`.
    pub large_bytes_freed: Counter,
    /// BigCache lookups that found a block.
    pub bigcache_hits: Counter,
    /// BigCache lookups that did not.
    pub bigcache_misses: Counter,
    /// Hits that took a block of a larger class and trimmed it.
    pub bigcache_larger_hits: Counter,
    /// Frees sent to the span level, not the cache, because it held at
    /// least the block's size of resident free memory.
    pub bigcache_bypassed: Counter,
    /// Blocks the cache took on free.
    pub bigcache_puts: Counter,
    /// Blocks the cache turned away.
    pub bigcache_refused: Counter,
    /// Older blocks unmapped to make room.
    pub bigcache_evictions: Counter,
    /// Blocks released by purges, thread exit or collect.
    pub bigcache_purged: Counter,
    /// Large blocks mapped with each ELO strategy.
    pub strategy_uses: [Counter; elo::N],
    /// Hits of the hot path (`path::alloc_hot`) not yet added to the
    /// counters above: each is a large allocation and a BigCache hit of
    /// `hot_usable` bytes. The hot pair counts one word per call; the
    /// slow paths settle the tallies (`path::settle`, at most 64 large
    /// operations later), and readers add them ([`Self::allocs`] and the
    /// others), so the counters read the same as if every call added.
    pub hot_allocs: Counter,
    /// Frees of the hot path (`path::free_hit`) not yet added: each a
    /// large free and a BigCache put of `hot_usable` bytes.
    pub hot_frees: Counter,
    /// The usable size of the block the hot tallies count
    /// (`ThreadState::hit`'s).
    pub hot_usable: Counter,
}

impl Counters {
    /// Large blocks allocated, hot tallies included.
    pub fn allocs(&self) -> u64 {
        self.large_allocs.get() + self.hot_allocs.get()
    }
    /// Large blocks freed, hot tallies included.
    pub fn frees(&self) -> u64 {
        self.large_frees.get() + self.hot_frees.get()
    }
    /// Usable bytes of large blocks allocated, hot tallies included.
    pub fn bytes_allocated(&self) -> u64 {
        self.large_bytes_allocated.get() + self.hot_allocs.get() * self.hot_usable.get()
    }
    /// Usable bytes of large blocks freed, hot tallies included.
    pub fn bytes_freed(&self) -> u64 {
        self.large_bytes_freed.get() + self.hot_frees.get() * self.hot_usable.get()
    }
    /// BigCache hits, hot tallies included.
    pub fn hits(&self) -> u64 {
        self.bigcache_hits.get() + self.hot_allocs.get()
    }
    /// BigCache puts, hot tallies included.
    pub fn puts(&self) -> u64 {
        self.bigcache_puts.get() + self.hot_frees.get()
    }
}

impl Counters {
    /// All zero.
    pub const fn new() -> Self {
        Counters {
            large_allocs: Counter::new(),
            large_frees: Counter::new(),
            large_bytes_allocated: Counter::new(),
            large_bytes_freed: Counter::new(),
            bigcache_hits: Counter::new(),
            bigcache_misses: Counter::new(),
            bigcache_larger_hits: Counter::new(),
            bigcache_bypassed: Counter::new(),
            bigcache_puts: Counter::new(),
            bigcache_refused: Counter::new(),
            bigcache_evictions: Counter::new(),
            bigcache_purged: Counter::new(),
            strategy_uses: [const { Counter::new() }; elo::N],
            hot_allocs: Counter::new(),
            hot_frees: Counter::new(),
            hot_usable: Counter::new(),
        }
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}
