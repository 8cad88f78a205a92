//! The large-block paths: allocation and free of blocks above the last size class.
//!
//! Allocation: look in the BigCache (per-thread slots by call site and size
//! class, or the global cache); a hit takes the current best strategy (one
//! load). A miss chooses a strategy (evolution/ELO: one load when frozen,
//! epsilon-greedy while learning) and maps a block the way it says. Free: validate
//! the header, offer the block to the BigCache, else give it to the span
//! heap (`span_heap.rs`), where any later request of any size can reuse it. One allocation in
//! a few is measured for the ELO ratings (`evolution.rs`).

use crate::large::bigcache::{self, Put};
use crate::large::block::{self, LargeHeader, HEADER_SIZE};
use crate::large::evolution::{self, Sample};
use crate::large::profile;
use crate::large::span_heap;
use crate::large::thread::{Hit, ThreadState};
use crate::options::BigCacheMode;
use crate::os;
use crate::probe::{self, Component};
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

/// How the large paths reach the calling thread: its state, created on
/// first use, and the thread context's maintenance. The thread context, a
/// layer above, passes it; a generic parameter, not a function pointer, so
/// that the hit paths inline it (an indirect call and its prologue were a
/// tenth of a hit).
pub trait StateOf: Copy {
    /// The calling thread's state (None if the OS refuses memory).
    fn state(self) -> Option<*mut ThreadState>;
    /// The calling thread's state if it has one already and it is reached
    /// without a call, else None: for the BigCache hit paths, which leave
    /// everything else to the general paths so that they need no call (and
    /// so no prologue saving registers).
    fn state_without_call(self) -> Option<*mut ThreadState>;
    /// Called at the purge-clock check (every [`OPS_PER_CLOCK_CHECK`] large
    /// operations, never on the hot hit pair) with the time just read:
    /// the thread context looks after what the thread left on its other
    /// side. It must not touch the thread's `ThreadState`, which the caller
    /// holds.
    fn on_clock(self, now_ns: u64);
}

/// Large operations between two looks at the purge clock.
const OPS_PER_CLOCK_CHECK: u32 = 64;
/// What a hot hit ([`alloc_hot`]) counts towards the clock, in
/// [`ThreadState::ops`]'s units: a quarter of another large operation. The
/// clock looks at the time, which moves a few µs in 256 hot hits; at 64
/// of them its turn (about 800 instructions) was a tenth of a hit loop's.
const OPS_UNIT: u32 = 4;
/// [`OPS_PER_CLOCK_CHECK`] in [`ThreadState::ops`]'s units.
const CLOCK_UNITS: u32 = OPS_PER_CLOCK_CHECK * OPS_UNIT;

fn fail() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// Whether a request of `size` bytes of a big-page class (64-512 KiB) from
/// a thread that churns large blocks ([`ThreadState::churns`]) becomes a
/// span block: only while such requests are a small share of the thread's
/// large-block bytes ([`MID_SHARE`]), and only where resident free memory
/// can serve it, a dirty span that fits or blocks in the thread's BigCache
/// (which [`alloc_general`] flushes into spans for it).
///
/// Both conditions keep programs that hold many such blocks at once in the
/// small heap, whose pages they fill: python3 (PYTHONMALLOC=malloc: 150
/// live byte buffers of 68-256 KiB a round beside 16 of 1 MiB) peaked at
/// 129 MiB instead of 114 with every such request a span block, 48 MiB of
/// dirty spans left at exit (its buffers took the resident memory its 1 MiB
/// ones then missed, and busy spans wait 1 s for a purge).
#[inline(never)]
pub fn takes_mid_block(size: usize, state: impl StateOf) -> bool {
    let Some(ts) = state.state() else {
        return false;
    };
    // SAFETY: this thread's state, used only by this thread.
    let h = unsafe { &mut *ts };
    h.mid_bytes += size as u64;
    if h.mid_bytes.saturating_mul(MID_SHARE) > h.counters.bytes_allocated() {
        return false;
    }
    let pages = (size + block::HEADER_SIZE).div_ceil(os::OS_PAGE);
    span_heap::dirty_fit(pages)
        || (h.mode == BigCacheMode::Thread
            && h.cache()
                .is_some_and(|c| c.held() >= (pages * os::OS_PAGE) as u64))
}

/// Big-page-class requests become span blocks ([`takes_mid_block`]) only
/// while their bytes stay under 1/`MID_SHARE` of the thread's large bytes:
/// `large-varied` (3% of its requests, under 1% of its bytes) and
/// `large-realloc` (one 128 KiB start per 32 MiB buffer) do, python3 (more
/// bytes in such buffers than in large ones) does not.
const MID_SHARE: u64 = 8;

/// Allocates a large block of `size` bytes aligned to `align`; zeroed if `zero`.
///
/// The block of this thread's last hit, back in the cache and asked for
/// again, takes [`alloc_hot`], which calls nothing (so this function saves
/// no registers); everything else [`alloc_rest`].
#[inline(never)]
pub fn alloc(size: usize, align: usize, site: usize, zero: bool, state: impl StateOf) -> *mut u8 {
    if !zero && align <= 16 && !probe::enabled() {
        if let Some(ts) = state.state_without_call() {
            // SAFETY: this thread's state, used only by this thread.
            if let Some(p) = alloc_hot(unsafe { &mut *ts }, size, site) {
                return p;
            }
        }
    }
    alloc_rest(size, align, site, zero, state)
}

/// [`alloc`] of `size` bytes at malloc's alignment, not zeroed, for a
/// caller that just saw no tracer attached (`api::malloc`): the hot hit
/// without a second look at the tracer.
#[inline(never)]
pub fn alloc_untraced(size: usize, site: usize, state: impl StateOf) -> *mut u8 {
    if let Some(ts) = state.state_without_call() {
        // SAFETY: this thread's state, used only by this thread.
        if let Some(p) = alloc_hot(unsafe { &mut *ts }, size, site) {
            return p;
        }
    }
    alloc_rest(size, crate::layout::MIN_ALIGN, site, false, state)
}

/// [`alloc`] after [`alloc_hot`]: a BigCache hit with nothing else due
/// takes [`alloc_hit`]; everything else, a tracer attached or a block to
/// clear included, [`alloc_general`].
#[inline(never)]
fn alloc_rest(size: usize, align: usize, site: usize, zero: bool, state: impl StateOf) -> *mut u8 {
    if !zero && bigcache::cacheable(size, align) {
        if !probe::enabled() {
            if let Some(ts) = state.state_without_call() {
                // SAFETY: this thread's state, used only by this thread.
                if let Some(p) = alloc_hit(unsafe { &mut *ts }, size, site, false, state) {
                    return p;
                }
            }
        } else if let Some(p) = alloc_hit_traced(size, site, state) {
            return p;
        }
    }
    alloc_general(size, align, site, zero, state)
}

/// The hit paths while a tracer is attached: the code the program runs
/// untraced ([`alloc_hot`], then [`alloc_hit`]), timed as one large
/// allocation, with the strategy choice inside timed as ELO selection (as
/// on the general path) and one BigCache lookup that hit. The lookup's
/// cache access is a few loads inside the hit paths, which have no stamps:
/// it is recorded as an empty instance after the hit, so that the lookup is
/// counted and timed whenever the operation around it is (the report takes
/// each nested instance's timestamps out of the operation by its count),
/// and its cost stays in the large allocation's figure. Without this a
/// traced hit took the general path, so the traced figure timed code the
/// untraced program does not run.
#[cold]
#[inline(never)]
fn alloc_hit_traced(size: usize, site: usize, state: impl StateOf) -> Option<*mut u8> {
    if !probe::tracing() {
        return None;
    }
    let ts = state.state_without_call()?;
    // SAFETY: this thread's state, used only by this thread.
    let h = unsafe { &mut *ts };
    let t = probe::stamp();
    let p = alloc_hot(h, size, site).or_else(|| alloc_hit(h, size, site, true, state))?;
    probe::emit(Component::BigCacheLookup, probe::stamp(), 1);
    probe::emit(Component::LargeAlloc, t, size as u64);
    Some(p)
}

/// [`alloc`] in full: misses, sampling, the purge clock, tracing.
#[cold]
#[inline(never)]
fn alloc_general(
    size: usize,
    align: usize,
    site: usize,
    zero: bool,
    state: impl StateOf,
) -> *mut u8 {
    let t = probe::stamp_if_tracing();
    if crate::layout::too_big(size) {
        return fail();
    }
    let Some(ts) = state.state() else {
        return fail();
    };
    // SAFETY: this thread's state, used only by this thread.
    let h = unsafe { &mut *ts };
    settle(h);
    h.ops += OPS_UNIT;
    // A thread's first large operation checks the clock too: it tells the
    // span level which thread is active (`span_heap::idle` asks whether it
    // still runs). Unknown until then, and one operation that faulted cold
    // memory in for 20 ms looked like idleness: the purge thread split the
    // huge pages of free spans mid-run, and their reuse faulted 4 KiB pages
    // (`large-varied`: 1,300-2,400 faults in the runs that met it, ~220 in
    // the others).
    if h.ops >= CLOCK_UNITS || h.tid == 0 {
        clock(h, state);
    }
    let mode = h.mode;
    let slot = if h.profiling {
        let slot = profile::site_slot(site);
        h.last_site = site;
        h.last_slot = slot;
        slot
    } else {
        0
    };
    let sampling = evolution::should_sample(h, size);
    let t0 = if sampling { probe::now() } else { 0 };

    let mut map_size = size;
    if mode != BigCacheMode::Off && bigcache::cacheable(size, align) {
        h.reuse.requested(bigcache::class_of(size));
        let tl = if t != 0 { probe::stamp() } else { 0 };
        let mut hit = match mode {
            BigCacheMode::Thread => h.cache().and_then(|mut c| c.get(size, slot)),
            _ => bigcache::global_get(size),
        };
        if hit.is_none() {
            hit = larger_hit(h, mode, size);
        }
        if tl != 0 {
            probe::emit(Component::BigCacheLookup, tl, hit.is_some() as u64);
        }
        if let Some(p) = hit {
            let (usable, word, _) = take_cached(p, slot);
            h.counters.bigcache_hits.add(1);
            finish_alloc(h, p as *mut u8, size, usable, slot, true, zero, false);
            if sampling {
                // Only a block its last put purged can fault during this life.
                let faults0 =
                    evolution::begin_sample(bigcache::purges_on_put(block::strategy_of(word)));
                start_sample(h, p, t0, faults0, size);
            }
            if t != 0 {
                probe::emit(Component::LargeAlloc, t, size as u64);
            }
            return p as *mut u8;
        }
        h.counters.bigcache_misses.add(1);
        // Map the whole class so the block can serve any request of its class later.
        map_size = bigcache::class_size(bigcache::class_of(size)).max(size);
    }
    if mode != BigCacheMode::Off && align <= 16 {
        // Blocks of other classes waiting in the cache are resident memory
        // this request could use: when no free resident span at the span
        // level can serve it, they go there (coalescing with their
        // neighbours) instead of this miss faulting fresh pages in. With
        // varied sizes that turned 964 misses in 3,000 operations, each
        // faulting every page, into reuse. Asking for a span that fits, not
        // for enough resident bytes in all: fragmented resident memory
        // served no miss, and the cache then held 64 MiB on top of it
        // (`large-varied`: 50,000 faults, peak RSS 175 MiB; 31,000 and
        // 115 MiB with a 16 MiB cache). Requests below the cached sizes (a
        // churning thread's big-page classes, `api::small_serves`) too: a
        // buffer grown by `realloc` from 64 KiB starts there, and took
        // fresh memory beside the cached one (`large-realloc`: 2,750 faults
        // and 100 MiB peak instead of 450 and 34).
        let pages = (map_size + block::HEADER_SIZE).div_ceil(os::OS_PAGE);
        if pages <= span_heap::MAX_SPAN_PAGES && !span_heap::dirty_fit(pages) {
            let released = match mode {
                BigCacheMode::Thread => h.cache().map_or(0, |mut c| c.flush_for_reuse()),
                _ => bigcache::global_flush_for_reuse(),
            };
            h.counters.bigcache_purged.add(released as u64);
        }
    }
    // Strategies are chosen (and explored) where they matter: on a new mapping.
    let strategy = evolution::select(size, &mut h.rng);
    let owner = block::owner_tag(ts as usize);
    let Some(block) = block::map_block(map_size, align, slot, strategy, owner) else {
        return fail();
    };
    // Counted from here: the faults `map_block` took (a header's, a
    // `populate`'s) are already in the sample's cycles.
    let faults0 = if sampling {
        evolution::begin_sample(true)
    } else {
        None
    };
    h.counters.strategy_uses[strategy as usize].add(1);
    let usable = block::usable_size(header_of(block.ptr as usize));
    finish_alloc(h, block.ptr, size, usable, slot, false, zero, block.zeroed);
    if sampling {
        start_sample(h, block.ptr as usize, t0, faults0, size);
    }
    if t != 0 {
        probe::emit(Component::LargeAlloc, t, size as u64);
    }
    block.ptr
}

/// The purge clock, every [`OPS_PER_CLOCK_CHECK`] large operations: the
/// time, the span level's activity note, one aging pass over this thread's
/// cache, the thread context's look at its other side.
#[cold]
#[inline(never)]
fn clock(h: &mut ThreadState, state: impl StateOf) {
    h.ops = 0;
    let delay = h.purge_delay_ns;
    let now = os::monotonic_ns();
    if h.tid == 0 {
        h.tid = os::gettid();
    }
    span_heap::note_activity(now, h.tid);
    // One pass at most here: after an idle stretch, three passes at once
    // released the block this thread had put a moment ago (a hit loop
    // on a loaded machine missed once every 64 operations).
    age_thread_cache(h, now, delay, 1);
    state.on_clock(now);
}

/// The hit of a loop on one block: the block of this thread's last hit
/// ([`ThreadState::hit`]), back in the cache as its hot block, asked for
/// again at the same size and site, with no strategy changed since and
/// nothing else due (the record's [`ThreadState::hot_limit`]). Its record
/// holds the class, the band, the length and the header's site word, so
/// nothing is computed and the header is not read; what the general path
/// counts (statistics, profile, purge clock, sample countdown, reuse
/// score) is one tally here, which [`settle`] adds up later. None (nothing
/// changed) otherwise.
///
/// The caller checked that the request's alignment is a cached block's
/// and it needs no clearing; a tracer is not attached, or the caller times
/// the call ([`alloc_hit_traced`]). (Only [`alloc_hit`] makes a record, in
/// thread mode only.)
#[inline(always)]
fn alloc_hot(h: &mut ThreadState, size: usize, site: usize) -> Option<*mut u8> {
    let hit = &h.hit;
    // A record's size is that of a cacheable request of its class (0
    // without a block). Its block is out (`hit.out`) only when it is not
    // the cache's hot block, which `take_hot` checks. The header names the
    // record's site and a strategy still the current best (that hit did
    // not purge on put, or `free_hit` would not have put the block back as
    // hot).
    if size != hit.size
        || h.counters.hot_allocs.get() >= h.hot_limit
        || (site ^ hit.site) & hit.site_mask != 0
        || hit.epoch != evolution::epoch()
    {
        return None;
    }
    let p = hit.ptr;
    // SAFETY: a record is made only in a created context.
    if !unsafe { h.cache_set_up() }?.take_hot(p, hit.class_bytes) {
        return None;
    }
    debug_assert!(!h.hit.out);
    if crate::hardening::ENABLED {
        // SAFETY: a cached block's header (validated when it was freed).
        unsafe { (*((p - HEADER_SIZE) as *mut LargeHeader)).magic = block::MAGIC };
    }
    h.hit.out = true;
    h.counters.hot_allocs.add(1);
    h.reuse.hit();
    Some(p as *mut u8)
}

/// Adds up the hot path's tallies (`Counters::hot_allocs`, `hot_frees`,
/// counted against [`ThreadState::hit`]) where the general path counts
/// each call: the counters, the site's profile, the purge clock's operation
/// count, the band's sample countdown (unless a sample is in flight, which
/// only paths that settle first start or finish), the class's pending
/// frees. Every path that reads or changes one of those, or the record,
/// settles first; [`alloc_hot`] is then off until [`alloc_hit`] makes a
/// record again. Also called by the exit report before it prints the
/// profile table.
#[inline]
pub fn settle(h: &mut ThreadState) {
    h.hot_limit = 0;
    let (na, nf) = (h.counters.hot_allocs.get(), h.counters.hot_frees.get());
    if na | nf != 0 {
        settle_tallies(h, na, nf);
    }
}

#[cold]
#[inline(never)]
fn settle_tallies(h: &mut ThreadState, na: u64, nf: u64) {
    let hit = h.hit;
    let c = &h.counters;
    // Readers add the tallies: adding before clearing can count a call
    // twice for a moment, as reading the counters while the thread runs
    // can anyway (they are read one by one).
    c.large_allocs.add(na);
    c.bigcache_hits.add(na);
    c.large_bytes_allocated.add(na * hit.usable);
    c.large_frees.add(nf);
    c.bigcache_puts.add(nf);
    c.large_bytes_freed.add(nf * hit.usable);
    c.hot_allocs.add(na.wrapping_neg());
    c.hot_frees.add(nf.wrapping_neg());
    // Fewer than CLOCK_UNITS calls, and no more than the countdown.
    h.ops += na as u32;
    if h.sample.ptr == 0 {
        h.sample_countdown[hit.band as usize & (evolution::BANDS - 1)] -= na as u32;
    }
    h.reuse.add_pending(hit.class as usize, nf);
    if hit.slot != 0 && na != 0 {
        profile::record_hits(hit.slot, na, hit.size);
    }
}

/// The site's profiling table slot on a hit path: 0 without profiling, the
/// last site's slot for the same site, else None (the general path looks
/// the site up).
#[inline(always)]
fn hit_slot(h: &ThreadState, site: usize) -> Option<u32> {
    if !h.profiling {
        Some(0)
    } else if site == h.last_site {
        Some(h.last_slot)
    } else {
        None
    }
}

/// What the general path does on its way to a hit of size band `band`: the
/// purge clock's operation count, the band's sample countdown (unless a
/// sample is in flight), the reuse score.
#[inline(always)]
fn note_hit(h: &mut ThreadState, band: usize) {
    h.ops += OPS_UNIT;
    if h.sample.ptr == 0 {
        h.sample_countdown[band & (evolution::BANDS - 1)] -= 1;
    }
    h.reuse.hit();
}

/// The BigCache hit of thread mode when no sample is due (the call site the
/// same as last time, a block of the class at hand): the whole allocation,
/// or None for the general path, with nothing changed. The purge clock,
/// when due, runs here once the block is taken ([`clock`]): the hot hits
/// stop before it, and sending its call to the general path cost every
/// 64th pair a general allocation, a general free and this hit again
/// (about 15 of a hit loop's instructions a pair).
///
/// What it leaves out is the point: the general path computed the site's
/// table slot, the class and its size twice, and looked at sampling, the
/// clock and the tracer on every call (about 280 instructions for a hit
/// under callgrind). The hot block (`free_hit` put it back) is taken
/// first, then the slot of this site. A span block it hands out becomes
/// the thread's [`ThreadState::hit`].
///
/// The caller checked that the request is cacheable and needs no
/// clearing; a tracer is not attached, or the caller times the call
/// ([`alloc_hit_traced`], with `traced`: the strategy choice is then timed
/// as ELO selection).
#[inline(always)]
fn alloc_hit(
    h: &mut ThreadState,
    size: usize,
    site: usize,
    traced: bool,
    state: impl StateOf,
) -> Option<*mut u8> {
    settle(h);
    let band = evolution::band_of(size);
    if h.mode != BigCacheMode::Thread
        || (h.sample.ptr == 0 && h.sample_countdown[band & (evolution::BANDS - 1)] == 0)
    {
        return None;
    }
    let slot = hit_slot(h, site)?;
    let k = bigcache::class_of(size);
    let mut c = h.cache()?;
    // The hot block is a span block (`free_hit` put it there); a slot's may not be.
    let (p, hot) = match c.hot_block(k) {
        Some(p) => (p, true),
        None => (c.top(k, slot)?, false),
    };
    let hdr = (p - HEADER_SIZE) as *mut LargeHeader;
    // SAFETY: a cached block's header (validated when it was freed).
    let (pages, word0) = unsafe { ((*hdr).len_pages, (*hdr).site) };
    let usable = block::usable_size(hdr);
    // Before the strategy it vouches for (see `evolution::epoch`).
    let epoch = evolution::epoch();
    // A band not set up yet is the general path's (nothing taken so far).
    let best = evolution::hit_strategy(usable, traced)?;
    if hot {
        c.take_hot(p, bigcache::class_bytes(k));
    } else {
        c.take_top(k, slot);
    }
    drop(c);
    note_hit(h, band);
    if h.ops >= CLOCK_UNITS {
        // After the block is taken: its aging pass cannot release it. The
        // request is scored as the general path scored it at its clock
        // (else a class whose score fell stayed down: its frees took the
        // general path from then on).
        h.reuse.rescore(k);
        clock(h, state);
    }
    let (word, purge) = claim_cached(hdr, word0, slot, best);
    // Only a span block: its free reads the page map without looking the
    // arena up (a block with a mapping of its own may be unmapped by then).
    if !purge && (hot || block::in_span(p)) {
        let usable = pages as u64 * os::OS_PAGE as u64 - HEADER_SIZE as u64;
        h.hit = Hit {
            ptr: p,
            size,
            site,
            site_mask: if h.profiling { usize::MAX } else { 0 },
            meta: span_heap::meta_at_known(p - HEADER_SIZE),
            usable,
            class_bytes: bigcache::class_bytes(k),
            span_pages: block::span_pages(pages as usize) as u32,
            owner: block::owner_tag(h as *const ThreadState as usize),
            pages,
            slot,
            class: k as u32,
            word,
            epoch,
            band: band as u8,
            out: true,
        };
        h.counters
            .hot_usable
            .add(usable.wrapping_sub(h.counters.hot_usable.get()));
        // The hot path's allowance: its calls until the purge clock is
        // due (each counts 1 of CLOCK_UNITS) and, with no sample in
        // flight, until the band's next sample.
        let clock = (CLOCK_UNITS - 1).saturating_sub(h.ops);
        let sample = if h.sample.ptr == 0 {
            h.sample_countdown[band & (evolution::BANDS - 1)]
        } else {
            u32::MAX
        };
        h.hot_limit = clock.min(sample) as u64;
    }
    h.counters.bigcache_hits.add(1);
    finish_alloc(h, p as *mut u8, size, usable, slot, true, false, false);
    Some(p as *mut u8)
}

/// A block leaving the BigCache for an allocation at site `slot`: its
/// header now names that site and the current best strategy. Returns its
/// usable size, its site word before, and whether that strategy purges a
/// block as it enters the cache.
#[inline(always)]
fn take_cached(p: usize, slot: u32) -> (usize, u32, bool) {
    // Cached blocks have the default layout: the header just before the block.
    let hdr = (p - HEADER_SIZE) as *mut LargeHeader;
    let usable = block::usable_size(hdr);
    // SAFETY: a cached block's header (validated when it was freed).
    let word = unsafe { (*hdr).site };
    let (_, purge) = claim_cached(hdr, word, slot, evolution::best(usable));
    (usable, word, purge)
}

/// The header `hdr` of a block leaving the BigCache, its site word `word`
/// now, names site `slot` and `best`, the current best strategy for its
/// size. Returns the word it holds after, and whether that strategy purges
/// a block as it enters the cache.
#[inline(always)]
fn claim_cached(hdr: *mut LargeHeader, word: u32, slot: u32, best: u8) -> (u32, bool) {
    // The block now belongs to this site and to the current best
    // strategy: its free follows that strategy, and a sample is
    // charged to it. Keeping the strategy it was mapped with let one
    // block circulating in a loop charge every sample, and every
    // purge-on-put, to whatever strategy mapped it first (a run stuck
    // at 1.3 µs per hit on `purge-on-cache`).
    let want = block::site_word(slot, best);
    if word != want {
        // SAFETY: a cached block's header (validated when it was freed).
        unsafe { (*hdr).site = want };
    }
    if crate::hardening::ENABLED {
        // SAFETY: as above.
        unsafe { (*hdr).magic = block::MAGIC };
    }
    (want, bigcache::purges_on_put(best))
}

/// After a BigCache miss for `size`: a cached block of a larger class (at
/// most twice the size), trimmed in place to the request's class so the
/// rest goes back to the span level still resident. With sizes that vary,
/// that serves a miss from resident memory instead of mapping fresh pages
/// and faulting each in.
#[cold]
fn larger_hit(h: &mut ThreadState, mode: BigCacheMode, size: usize) -> Option<usize> {
    let k = bigcache::class_of(size);
    let p = match mode {
        BigCacheMode::Thread => h.cache()?.get_larger(k)?,
        _ => bigcache::global_get_larger(k)?,
    };
    if block::in_span(p) {
        let hdr = (p - HEADER_SIZE) as *mut LargeHeader;
        // SAFETY: a cached block's header (validated when it was freed); no
        // one uses the block, so cutting its tail off is allowed. If the
        // trim fails the block is used whole.
        unsafe { block::resize_in_place(p, hdr, bigcache::class_size(k)) };
    }
    h.counters.bigcache_larger_hits.add(1);
    Some(p)
}

/// The block at `p` is the one this thread measures; its allocation began at `t0`.
#[inline]
fn start_sample(h: &mut ThreadState, p: usize, t0: u64, faults0: Option<u64>, size: usize) {
    // A record of this block is stale: another thread freed the block its
    // last hit handed out, and the general path mapped the same span again.
    // The hot free must not take the sampled block (its sample would never
    // finish, and this thread would sample nothing more). The caller
    // settled the tallies.
    if h.hit.ptr == p {
        h.hit = Hit::NONE;
    }
    h.sample = Sample {
        ptr: p,
        alloc_cycles: probe::now() - t0,
        faults0,
        size,
    };
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn finish_alloc(
    h: &mut ThreadState,
    p: *mut u8,
    size: usize,
    usable: usize,
    slot: u32,
    hit: bool,
    zero: bool,
    zeroed: bool,
) {
    if zero && !zeroed {
        // SAFETY: a block of at least `size` bytes that nobody else uses.
        unsafe { ptr::write_bytes(p, 0, size) };
    }
    h.counters.large_allocs.add(1);
    h.counters.large_bytes_allocated.add(usable as u64);
    if slot != 0 {
        profile::record_alloc(slot, size, hit);
    }
}

fn header_of(p: usize) -> *mut LargeHeader {
    let r = crate::segment_map::lookup(p);
    // SAFETY: `p` was just produced by map_block.
    unsafe { block::header(p, r) }.expect("fresh large block has a header")
}

/// Frees `a` if it is the block this thread's last BigCache hit on the hit
/// paths handed out ([`ThreadState::hit`]) and it goes back to the cache;
/// false (nothing done) otherwise. Called before the header is validated:
/// what the free needs was noted at the hit, and the page map shows that
/// a span of the noted length and owner still starts there (so a block
/// another thread freed meanwhile, or a double free, takes the general
/// path and its checks). In a malloc/free loop on one large block this
/// skips the header validation, the class computation and the checks of
/// [`free_put`].
#[inline(always)]
pub fn free_hit(a: usize, state: impl StateOf) -> bool {
    if probe::enabled() {
        return free_hit_traced(a, state);
    }
    free_hit_untraced(a, state)
}

/// [`free_hit`] while a tracer is attached: the same code, timed as one
/// BigCache put (as [`alloc_hit_traced`] does for the hit).
#[cold]
#[inline(never)]
fn free_hit_traced(a: usize, state: impl StateOf) -> bool {
    if !probe::tracing() {
        return false;
    }
    let t = probe::stamp();
    let done = free_hit_untraced(a, state);
    if done {
        probe::emit(Component::BigCachePut, t, 1);
    }
    done
}

/// [`free_hit`]'s work, for a caller that saw no tracer attached, or
/// times the call.
#[inline(always)]
pub fn free_hit_untraced(a: usize, state: impl StateOf) -> bool {
    let Some(ts) = state.state_without_call() else {
        return false;
    };
    // SAFETY: this thread's state, used only by this thread.
    let h = unsafe { &mut *ts };
    let hit = &h.hit;
    if hit.ptr != a || !hit.out {
        return false;
    }
    // A sampled block was handed out by the general path, which makes no
    // record: a record's block that is out is not one.
    debug_assert!(h.sample.ptr != a);
    debug_assert!(hit.owner == block::owner_tag(ts as usize));
    // Whatever happens now, the program gave it up: a second free of it
    // must not come here.
    h.hit.out = false;
    let hit = &h.hit;
    let k = hit.class as usize;
    // `hit.ptr` was a span block when the cache handed it out.
    if span_heap::live_span_in(hit.meta) != Some((hit.span_pages as usize, hit.owner))
        || !h.reuse.cached(k)
    {
        return false;
    }
    // SAFETY: a record is made only in a created context.
    let Some(mut c) = (unsafe { h.cache_set_up() }) else {
        return false;
    };
    let cached = c.push_hot(a, k, hit.class_bytes) || c.push(a, k, block::site_of(hit.word));
    drop(c);
    if !cached {
        return false;
    }
    h.reuse.freed_now(k);
    if crate::hardening::ENABLED {
        // SAFETY: a live span block's header; the block is the cache's now.
        unsafe { (*((a - HEADER_SIZE) as *mut LargeHeader)).magic = block::FREED_MAGIC };
    }
    h.counters.hot_frees.add(1);
    // No `background::notify`: the put used budget this cache reserved
    // earlier, and has held since, through a put that notified; the purge
    // thread does not park while any cache holds budget (`has_work`).
    true
}

/// Frees the large block at `a`.
///
/// A block that goes back to its slot of this thread's BigCache takes
/// [`free_put`]; everything else [`free_general`].
///
/// # Safety
/// `hdr` is the validated header of the block at `a` (`block::header`), a
/// block the caller no longer uses.
#[inline(never)]
pub unsafe fn free(a: usize, hdr: *mut LargeHeader, state: impl StateOf) {
    if !probe::tracing() {
        if let Some(ts) = state.state() {
            // SAFETY: this thread's state.
            settle(unsafe { &mut *ts });
            // SAFETY: this thread's state; the caller's contract.
            if unsafe { free_put(&mut *ts, ts as usize, a, hdr) } {
                return;
            }
        }
    }
    // SAFETY: the caller's contract.
    unsafe { free_general(a, hdr, state) }
}

/// The put of a hit loop: a block this thread allocated, of a class it
/// reuses, into a slot of its site with room and budget already reserved,
/// with nothing to measure, trace or purge. False = nothing done.
///
/// # Safety
/// As [`free`]; `h` is this thread's state at address `ts`.
#[inline(always)]
unsafe fn free_put(h: &mut ThreadState, ts: usize, a: usize, hdr: *mut LargeHeader) -> bool {
    // SAFETY: validated header.
    let (len_pages, offset, word) = unsafe { ((*hdr).len_pages, (*hdr).offset, (*hdr).site) };
    if h.hit.ptr == a {
        h.hit = Hit::NONE;
    }
    // SAFETY: validated header.
    let magic = unsafe { (*hdr).magic };
    if h.mode != BigCacheMode::Thread
        || h.sample.ptr == a
        || offset as usize != HEADER_SIZE
        || (crate::hardening::ENABLED && magic == block::FREED_MAGIC)
        || bigcache::purges_on_put(block::strategy_of(word))
        || !block::in_span(a)
        || block::span_owner(a) != block::owner_tag(ts)
    {
        return false;
    }
    let usable = len_pages as usize * os::OS_PAGE - HEADER_SIZE;
    let Some(k) = bigcache::floor_class(usable) else {
        return false;
    };
    // The score is noted only once the block is in: else the general path notes it.
    if !h.reuse.cached(k)
        || !h
            .cache()
            .is_some_and(|mut c| c.push(a, k, block::site_of(word)))
    {
        return false;
    }
    // SAFETY: validated header; the block is the cache's now.
    unsafe { note_fast_put(h, hdr, k, usable) };
    // The purge thread does not park while a cache holds budget, but this
    // (one put in [`OPS_PER_CLOCK_CHECK`] of a hit loop) starts it in a
    // forked child, where it did not survive the fork.
    crate::background::notify();
    true
}

/// What [`free_put`] notes once the block of class `k` is in this thread's
/// cache: the reuse score, the freed-block magic (hardened), the counters
/// ([`free_hit`] tallies them for [`settle`]).
///
/// # Safety
/// `hdr` is the header of the block just cached, which the cache now owns.
#[inline(always)]
unsafe fn note_fast_put(h: &mut ThreadState, hdr: *mut LargeHeader, k: usize, usable: usize) {
    h.reuse.freed(k);
    if crate::hardening::ENABLED {
        // SAFETY: the caller's contract: the block is ours until the cache hands it out.
        unsafe { (*hdr).magic = block::FREED_MAGIC };
    }
    h.counters.large_frees.add(1);
    h.counters.large_bytes_freed.add(usable as u64);
    h.counters.bigcache_puts.add(1);
}

/// [`free`] in full.
///
/// # Safety
/// As [`free`].
#[cold]
#[inline(never)]
unsafe fn free_general(a: usize, hdr: *mut LargeHeader, state: impl StateOf) {
    // SAFETY: validated header.
    if crate::hardening::ENABLED && unsafe { (*hdr).magic } == block::FREED_MAGIC {
        crate::diag::double_free(a, None);
    }
    let usable = block::usable_size(hdr);
    let Some(ts) = state.state() else {
        // SAFETY: the caller's contract.
        unsafe { block::unmap_block(a, hdr) };
        return;
    };
    // SAFETY: this thread's state.
    let h = unsafe { &mut *ts };
    settle(h);
    if h.hit.ptr == a {
        h.hit = Hit::NONE;
    }
    h.counters.large_frees.add(1);
    h.counters.large_bytes_freed.add(usable as u64);
    let measuring = h.sample.ptr == a;
    let t0 = if measuring || probe::tracing() {
        probe::stamp()
    } else {
        0
    };
    // SAFETY: validated header.
    let (word, offset) = unsafe { ((*hdr).site, (*hdr).offset as usize) };
    let strategy = block::strategy_of(word);
    let mode = h.mode;
    // A block another thread allocated goes to the shared span level, where
    // that thread's next miss finds it resident (tcmalloc's transfer cache
    // plays this part there): in this thread's slots it would only wait for
    // the purge while its owner maps fresh memory.
    let foreign = mode == BigCacheMode::Thread
        && block::in_span(a)
        && block::span_owner(a) != block::owner_tag(ts as usize);
    // A block of a class this thread does not reuse soon (`reuse`) joins
    // the span level, coalescing with its neighbours, rather than waiting in
    // the cache, as long as the span level holds at least its size of
    // resident free memory: a miss of any size is then served from that
    // memory anyway, and cached blocks, handed out spans the heap cannot
    // coalesce across, fragmented it so that misses took fresh memory.
    let class = if mode == BigCacheMode::Off {
        None
    } else {
        bigcache::floor_class(usable)
    };
    let reused = class.is_some_and(|k| h.reuse.freed(k));
    let spans_hold_enough =
        !reused && block::in_span(a) && span_heap::dirty_bytes() >= usable as u64;
    let put = if mode == BigCacheMode::Off || offset != HEADER_SIZE || foreign || spans_hold_enough
    {
        if spans_hold_enough && mode != BigCacheMode::Off {
            h.counters.bigcache_bypassed.add(1);
        }
        if foreign {
            span_heap::COUNTERS
                .cross_thread_frees
                .fetch_add(1, Ordering::Relaxed);
        }
        Put::Refused
    } else if mode == BigCacheMode::Thread {
        match h.cache() {
            Some(mut c) => c.put(
                a,
                usable,
                block::site_of(word),
                bigcache::purges_on_put(strategy),
            ),
            None => Put::Refused,
        }
    } else {
        bigcache::global_put(a, usable, bigcache::purges_on_put(strategy))
    };
    match put {
        Put::Cached { evicted } => {
            if crate::hardening::ENABLED {
                // SAFETY: the block is ours until the cache hands it out again.
                unsafe { (*hdr).magic = block::FREED_MAGIC };
            }
            h.counters.bigcache_puts.add(1);
            h.counters.bigcache_evictions.add(evicted as u64);
            // The cache now holds resident memory the purge thread gives
            // back if this thread goes idle (the cache's guard is dropped).
            crate::background::notify();
        }
        Put::Refused => {
            if mode != BigCacheMode::Off
                && offset == HEADER_SIZE
                && usable >= bigcache::MIN_SIZE
                && !foreign
                && !spans_hold_enough
            {
                h.counters.bigcache_refused.add(1);
            }
            // SAFETY: the caller's contract; the cache did not take the block.
            unsafe { block::unmap_block(a, hdr) };
        }
    }
    if t0 != 0 && probe::tracing() {
        probe::emit(
            Component::BigCachePut,
            t0,
            matches!(put, Put::Cached { .. }) as u64,
        );
    }
    if measuring {
        let sample = h.sample;
        h.sample = Sample::NONE;
        let purged = match put {
            Put::Cached { .. } if bigcache::purges_on_put(strategy) => {
                bigcache::purged_pages_on_put(a, usable)
            }
            _ => 0,
        };
        evolution::finish_sample(sample, strategy, probe::now() - t0, purged, &mut h.rng);
    }
}

/// Tries to grow the large block at `a` to `size` bytes without moving it.
///
/// # Safety
/// `h` is the validated header of the live block at `a` (`block::header`).
pub unsafe fn grow_in_place(
    a: usize,
    h: *mut LargeHeader,
    size: usize,
    state: impl StateOf,
) -> bool {
    let old = block::usable_size(h);
    // SAFETY: the caller's contract; growing cuts nothing off.
    if size <= old || !unsafe { block::resize_in_place(a, h, size) } {
        return false;
    }
    if let Some(ts) = state.state() {
        let new = block::usable_size(h);
        // SAFETY: this thread's state.
        let h = unsafe { &mut *ts };
        settle(h);
        h.counters
            .large_bytes_allocated
            .add(new.saturating_sub(old) as u64);
        if h.hit.ptr == a {
            h.hit = Hit::NONE;
        }
    }
    true
}

/// When the global cache was last aged.
static GLOBAL_AGED_NS: AtomicU64 = AtomicU64::new(0);

/// Purge passes owed for the time since `last`: one per half purge delay,
/// at most three (after three a slot is released anyway).
fn passes_since(last: u64, now: u64, delay_ns: u64) -> u32 {
    (now.saturating_sub(last) / (delay_ns / 2).max(1)).min(3) as u32
}

/// Ages this thread's BigCache (and the global one) by the purge passes the
/// time since the last one calls for; `delay_ns == 0` releases everything now.
pub fn purge_thread(h: &mut ThreadState, now: u64, delay_ns: u64) {
    age_thread_cache(h, now, delay_ns, 3)
}

/// [`purge_thread`] with at most `max_passes` passes over this thread's cache.
fn age_thread_cache(h: &mut ThreadState, now: u64, delay_ns: u64, max_passes: u32) {
    let mut released = 0;
    if delay_ns == 0 {
        released += h.cache().map_or(0, |mut c| c.flush()) + bigcache::global_purge(true);
        span_heap::purge(0, true);
    } else {
        for _ in 0..passes_since(h.aged_ns, now, delay_ns).min(max_passes) {
            h.aged_ns = now;
            released += h.cache().map_or(0, |mut c| c.purge());
        }
        let last = GLOBAL_AGED_NS.load(Ordering::Relaxed);
        // The first call only starts the clock.
        let passes = if last == 0 {
            0
        } else {
            passes_since(last, now, delay_ns)
        };
        if last == 0 {
            let _ = GLOBAL_AGED_NS.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
        if passes > 0
            && GLOBAL_AGED_NS
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            for _ in 0..passes {
                released += bigcache::global_purge(false);
            }
        }
    }
    h.counters.bigcache_purged.add(released as u64);
    if delay_ns != 0 {
        // Spans that waited the delay (with what the cache just released
        // after waiting it there); skipped if another thread holds the lock.
        span_heap::purge(delay_ns / 1_000_000, false);
    }
}

/// Thread exit: the thread's cached blocks go back to the OS.
pub fn thread_exit(h: &mut ThreadState) {
    settle(h);
    h.hit = Hit::NONE;
    // The context is pooled for the next thread: its first large operation
    // must check the clock and learn its own id (`span_heap::idle`).
    h.tid = 0;
    h.ops = 0;
    let released = h.cache_for_exit().map_or(0, |mut c| c.flush());
    h.counters.bigcache_purged.add(released as u64);
    h.sample = Sample::NONE;
}
