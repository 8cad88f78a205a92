//! Counters of the large-block machinery (BigCache, ELO, evolution) in [`crate::Stats`].

use crate::large::elo::{self, STRATEGIES};
use crate::large::evolution::{self, Phase};
use core::sync::atomic::Ordering::Relaxed;

/// Large-block counters.
#[derive(Clone, Copy, Debug)]
pub struct LargeStats {
    /// BigCache lookups that found a block.
    pub bigcache_hits: u64,
    /// BigCache lookups that did not.
    pub bigcache_misses: u64,
    /// Hits (counted in `bigcache_hits`) served by a block of a larger class, trimmed.
    pub bigcache_larger_hits: u64,
    /// Frees sent to the span level instead of the cache: it already held
    /// that much resident free memory.
    pub bigcache_bypassed: u64,
    /// Blocks that entered the cache on free.
    pub bigcache_puts: u64,
    /// Blocks the cache turned away (full, over budget), unmapped instead.
    pub bigcache_refused: u64,
    /// Older blocks unmapped to make room in a full slot.
    pub bigcache_evictions: u64,
    /// Blocks released because they waited too long (or at thread exit / collect).
    pub bigcache_purged: u64,
    /// Bytes the caches may hold right now (reserved budget, all threads).
    pub bigcache_reserved_bytes: u64,
    /// Learn↔frozen transitions, every size band.
    pub evo_transitions: u64,
    /// Evolution and ratings per size band (`evolution::BAND_NAMES`).
    pub bands: [BandStats; evolution::BANDS],
    /// Blocks mapped with each strategy.
    pub uses: [u64; elo::N],
    /// Span heap (`span_heap.rs`): bytes of address space reserved in arenas.
    pub span_arena_bytes: u64,
    /// ... in spans handed out as blocks.
    pub span_used_bytes: u64,
    /// ... free and possibly resident (waiting for reuse or the purge).
    pub span_dirty_bytes: u64,
    /// ... free and purged or never touched: mapped, but no memory behind it.
    pub span_clean_bytes: u64,
    /// Spans handed out.
    pub span_allocs: u64,
    /// ... of which reused resident memory (no new faults).
    pub span_dirty_reuses: u64,
    /// ... of those, resident memory extended into the clean span after it.
    pub span_mixed_reuses: u64,
    /// Large blocks freed by another thread than their owner (thread mode),
    /// sent to the span level instead of the freeing thread's BigCache.
    pub span_cross_thread_frees: u64,
    /// Bytes purged from dirty spans.
    pub span_purged_bytes: u64,
    /// Blocks grown or shrunk in place by realloc.
    pub span_resized_in_place: u64,
    /// Passes of the background purge thread.
    pub background_ticks: u64,
    /// Whether the kernel gives huge pages (`thp.rs`); None until the first
    /// large allocation measured it.
    pub thp: Option<crate::thp::Verdict>,
    /// What huge pages cost here lately (`thp.rs`'s cost meter).
    pub thp_cost: crate::thp::Cost,
}

/// One size band's evolution and ratings.
#[derive(Clone, Copy, Debug)]
pub struct BandStats {
    /// Evolution phase.
    pub phase: Phase,
    /// Strategy in use when frozen; the cached best while learning.
    pub strategy: u8,
    /// Rated matches played since learning (re)started.
    pub elo_matches: u64,
    /// ELO rating per strategy.
    pub ratings: [f32; elo::N],
    /// Mean measured cost per strategy (cycles; 0 = never measured).
    pub mean_cost: [f32; elo::N],
    /// Samples measured per strategy.
    pub samples: [u64; elo::N],
}

impl BandStats {
    fn of(b: usize) -> Self {
        let r = evolution::ratings(b);
        let mut s = BandStats {
            phase: evolution::phase(b),
            strategy: evolution::current(b),
            elo_matches: r.matches.load(Relaxed),
            ratings: [0.0; elo::N],
            mean_cost: [0.0; elo::N],
            samples: [0; elo::N],
        };
        for i in 0..elo::N {
            s.ratings[i] = r.rating(i);
            s.mean_cost[i] = r.mean_cost(i);
            s.samples[i] = r.samples(i);
        }
        s
    }
}

impl LargeStats {
    /// The process-wide part (cache budget, evolution, ratings); the
    /// per-thread counters are added with [`LargeStats::add`].
    pub(crate) fn global() -> Self {
        let mut s = LargeStats {
            bigcache_hits: 0,
            bigcache_misses: 0,
            bigcache_larger_hits: 0,
            bigcache_bypassed: 0,
            bigcache_puts: 0,
            bigcache_refused: 0,
            bigcache_evictions: 0,
            // Blocks the background purge thread released from idle caches.
            bigcache_purged: crate::large::purge_thread::BACKGROUND_RELEASED.load(Relaxed),
            bigcache_reserved_bytes: crate::large::bigcache::reserved_bytes(),
            evo_transitions: evolution::transitions(),
            bands: core::array::from_fn(BandStats::of),
            uses: [0; elo::N],
            span_arena_bytes: 0,
            span_used_bytes: 0,
            span_dirty_bytes: 0,
            span_clean_bytes: 0,
            span_allocs: 0,
            span_dirty_reuses: 0,
            span_mixed_reuses: 0,
            span_cross_thread_frees: 0,
            span_purged_bytes: 0,
            span_resized_in_place: 0,
            background_ticks: crate::background::TICKS.load(Relaxed),
            thp: crate::thp::measured(),
            thp_cost: crate::thp::cost(),
        };
        {
            use crate::large::span_heap::{self as sh, COUNTERS as C};
            let page = crate::os::OS_PAGE as u64;
            s.span_arena_bytes = sh::arenas() as u64 * sh::ARENA_SIZE as u64;
            s.span_used_bytes = C.used_pages.load(Relaxed) * page;
            s.span_dirty_bytes = C.dirty_pages.load(Relaxed) * page;
            let meta = sh::arenas() as u64 * sh::META_PAGES as u64 * page;
            s.span_clean_bytes = s
                .span_arena_bytes
                .saturating_sub(meta + s.span_used_bytes + s.span_dirty_bytes);
            s.span_allocs = C.allocs.load(Relaxed);
            s.span_dirty_reuses = C.dirty_reuses.load(Relaxed);
            s.span_mixed_reuses = C.mixed_reuses.load(Relaxed);
            s.span_cross_thread_frees = C.cross_thread_frees.load(Relaxed);
            s.span_purged_bytes = C.purged_bytes.load(Relaxed);
            s.span_resized_in_place = C.resized_in_place.load(Relaxed);
        }
        s
    }
}

impl LargeStats {
    /// Adds one thread's counters.
    pub(crate) fn add(&mut self, c: &crate::large::thread::Counters) {
        self.bigcache_hits += c.hits();
        self.bigcache_misses += c.bigcache_misses.get();
        self.bigcache_larger_hits += c.bigcache_larger_hits.get();
        self.bigcache_bypassed += c.bigcache_bypassed.get();
        self.bigcache_puts += c.puts();
        self.bigcache_refused += c.bigcache_refused.get();
        self.bigcache_evictions += c.bigcache_evictions.get();
        self.bigcache_purged += c.bigcache_purged.get();
        for i in 0..elo::N {
            self.uses[i] += c.strategy_uses[i].get();
        }
    }
}

/// Writes the large-block part of the statistics report.
pub fn print(s: &LargeStats) {
    use core::fmt::Write;
    let mut w = crate::report::StackWriter::<1024>::new();
    let _ = writeln!(
        w,
        "hakmem stats: bigcache hits {} ({} from a larger class), misses {}, puts {}, sent to spans {}, refused {}, evictions {}, purged {}, reserved {:.1} MiB",
        s.bigcache_hits,
        s.bigcache_larger_hits,
        s.bigcache_misses,
        s.bigcache_puts,
        s.bigcache_bypassed,
        s.bigcache_refused,
        s.bigcache_evictions,
        s.bigcache_purged,
        s.bigcache_reserved_bytes as f64 / 1048576.0
    );
    let _ = write!(
        w,
        "hakmem stats: evolution transitions {}",
        s.evo_transitions
    );
    for (b, band) in s.bands.iter().enumerate() {
        let _ = write!(
            w,
            "; {} {:?} {} ({} matches)",
            evolution::BAND_NAMES[b],
            band.phase,
            STRATEGIES[band.strategy as usize].name,
            band.elo_matches
        );
    }
    let _ = writeln!(w);
    if let Some(v) = s.thp {
        use crate::thp::Source;
        let _ = write!(
            w,
            "hakmem stats: huge pages {}",
            if v.granted { "granted" } else { "refused" }
        );
        let _ = match v.source {
            Source::Option => writeln!(w, " (HAKMEM_THP)"),
            Source::Sysfs => writeln!(w, " (sysfs: never, or no THP)"),
            Source::Probe => writeln!(
                w,
                " (probe: {} of 512 pages resident after one write to a MADV_HUGEPAGE 2 MiB range, first fault {:.1} us)",
                v.probe_pages,
                v.first_fault_ns as f64 / 1000.0
            ),
        };
        let c = s.thp_cost;
        if v.granted && c.small_fault_ns != 0 {
            let _ = writeln!(
                w,
                "hakmem stats: huge-page cost: first fault {:.1} us (mean of {} timed) against {:.1} us for its 512 pages in 4 KiB faults: {} (turned too costly {} times, probed again {} times); the ELO learner charges a fault {} cycles",
                c.huge_fault_ns as f64 / 1000.0,
                c.samples,
                (c.small_fault_ns * 512) as f64 / 1000.0,
                if c.costly { "too costly, 4 KiB pages" } else { "worth asking for" },
                c.turned_costly,
                c.reprobes,
                crate::large::elo::fault_cycles()
            );
        }
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    let _ = writeln!(
        w,
        "hakmem stats: spans: arenas {:.0} MiB, used {:.1} MiB, dirty {:.1} MiB, allocs {} ({} reused resident memory, {} of them extended into clean), cross-thread frees {}, purged {:.1} MiB, resized in place {}, background purge passes {}",
        mib(s.span_arena_bytes),
        mib(s.span_used_bytes),
        mib(s.span_dirty_bytes),
        s.span_allocs,
        s.span_dirty_reuses,
        s.span_mixed_reuses,
        s.span_cross_thread_frees,
        mib(s.span_purged_bytes),
        s.span_resized_in_place,
        s.background_ticks
    );
    w.flush_stderr();
    for (i, strategy) in STRATEGIES.iter().enumerate() {
        if s.uses[i] != 0 {
            let _ = writeln!(
                w,
                "hakmem stats:   strategy {:18} blocks mapped {}",
                strategy.name, s.uses[i]
            );
            w.flush_stderr();
        }
    }
    for (b, band) in s.bands.iter().enumerate() {
        for (i, strategy) in STRATEGIES.iter().enumerate() {
            if band.samples[i] == 0 {
                continue;
            }
            let _ = writeln!(
                w,
                "hakmem stats:   band {:8} strategy {:18} rating {:7.1}  mean cost {:10.0} cycles  samples {:6}",
                evolution::BAND_NAMES[b],
                strategy.name,
                band.ratings[i],
                band.mean_cost[i],
                band.samples[i]
            );
            w.flush_stderr();
        }
    }
}
