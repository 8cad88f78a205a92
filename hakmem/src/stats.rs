//! Statistics: process-wide counters and the per-thread counters summed on demand.
//!
//! Hot-path counters live in each thread's heap and are written only by that
//! thread (a relaxed load and store, never a locked add); [`collect`] walks the
//! registry of all heaps ever created and sums them. Rare events (OS calls,
//! purges) use process-wide atomics.

use crate::small::size_class::{block_size, NUM_CLASSES};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Process-wide counters of rare events.
pub struct GlobalCounters {
    pub os_maps: AtomicU64,
    pub os_unmaps: AtomicU64,
    /// Bytes currently mapped from the OS.
    pub mapped: AtomicU64,
    pub purges: AtomicU64,
    pub purged_bytes: AtomicU64,
    pub foreign_frees: AtomicU64,
    pub heaps_created: AtomicU64,
    pub segments_abandoned: AtomicU64,
    pub segments_reclaimed: AtomicU64,
}

pub static GLOBAL: GlobalCounters = GlobalCounters {
    os_maps: AtomicU64::new(0),
    os_unmaps: AtomicU64::new(0),
    mapped: AtomicU64::new(0),
    purges: AtomicU64::new(0),
    purged_bytes: AtomicU64::new(0),
    foreign_frees: AtomicU64::new(0),
    heaps_created: AtomicU64::new(0),
    segments_abandoned: AtomicU64::new(0),
    segments_reclaimed: AtomicU64::new(0),
};

/// A counter written by one thread and read by any: relaxed load + store.
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    /// Adds `n`; only the owning thread may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// The counters each heap keeps for its own thread.
pub struct HeapCounters {
    pub allocs: [Counter; NUM_CLASSES],
    /// Frees by this thread, of blocks of any thread.
    pub frees: [Counter; NUM_CLASSES],
    pub remote_frees: Counter,
    pub large_allocs: Counter,
    pub large_frees: Counter,
    pub large_bytes_allocated: Counter,
    pub large_bytes_freed: Counter,
    pub bigcache_hits: Counter,
    pub bigcache_misses: Counter,
    pub bigcache_puts: Counter,
    pub bigcache_refused: Counter,
    pub bigcache_evictions: Counter,
    pub bigcache_purged: Counter,
    /// Large blocks mapped with each ELO strategy.
    pub strategy_uses: [Counter; crate::large::elo::N],
}

impl HeapCounters {
    pub const fn new() -> Self {
        HeapCounters {
            allocs: [const { Counter::new() }; NUM_CLASSES],
            frees: [const { Counter::new() }; NUM_CLASSES],
            remote_frees: Counter::new(),
            large_allocs: Counter::new(),
            large_frees: Counter::new(),
            large_bytes_allocated: Counter::new(),
            large_bytes_freed: Counter::new(),
            bigcache_hits: Counter::new(),
            bigcache_misses: Counter::new(),
            bigcache_puts: Counter::new(),
            bigcache_refused: Counter::new(),
            bigcache_evictions: Counter::new(),
            bigcache_purged: Counter::new(),
            strategy_uses: [const { Counter::new() }; crate::large::elo::N],
        }
    }
}

impl Default for HeapCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// One size class in [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub block_size: u64,
    pub allocs: u64,
    pub frees: u64,
}

impl ClassStats {
    /// Blocks of this class currently allocated.
    pub fn live(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }
}

/// A snapshot of hakmem's statistics (`hakmem::stats()`).
///
/// Counters from other threads are read without stopping them, so a snapshot
/// taken while threads allocate is approximate; one taken at rest is exact.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Bytes in live blocks (block sizes for size classes, usable sizes for large blocks).
    pub allocated: u64,
    /// Resident set of the whole process (from /proc/self/statm), in bytes.
    pub resident: u64,
    /// Bytes hakmem has mapped from the OS right now.
    pub mapped: u64,
    /// malloc-family calls that returned a block.
    pub allocs: u64,
    /// Blocks freed.
    pub frees: u64,
    /// Small blocks freed by a thread other than their owner.
    pub remote_frees: u64,
    /// madvise calls that gave memory back, and the bytes they covered.
    pub purges: u64,
    pub purged_bytes: u64,
    pub os_maps: u64,
    pub os_unmaps: u64,
    pub large_allocs: u64,
    pub large_frees: u64,
    /// Bytes in live large blocks.
    pub large_live_bytes: u64,
    /// Pointers passed to free/realloc/malloc_usable_size that hakmem never handed out.
    pub foreign_frees: u64,
    /// Thread heaps created from the OS (reused heaps are not counted again).
    pub heaps_created: u64,
    pub segments_abandoned: u64,
    pub segments_reclaimed: u64,
    pub classes: [ClassStats; NUM_CLASSES],
    /// BigCache, ELO and evolution counters.
    pub large: crate::large::stats::LargeStats,
}

/// Sums the counters of every heap into a [`Stats`].
pub fn collect() -> Stats {
    let mut s = Stats {
        allocated: 0,
        resident: crate::os::process_rss(),
        mapped: GLOBAL.mapped.load(Relaxed),
        allocs: 0,
        frees: 0,
        remote_frees: 0,
        purges: GLOBAL.purges.load(Relaxed),
        purged_bytes: GLOBAL.purged_bytes.load(Relaxed),
        os_maps: GLOBAL.os_maps.load(Relaxed),
        os_unmaps: GLOBAL.os_unmaps.load(Relaxed),
        large_allocs: 0,
        large_frees: 0,
        large_live_bytes: 0,
        foreign_frees: GLOBAL.foreign_frees.load(Relaxed),
        heaps_created: GLOBAL.heaps_created.load(Relaxed),
        segments_abandoned: GLOBAL.segments_abandoned.load(Relaxed),
        segments_reclaimed: GLOBAL.segments_reclaimed.load(Relaxed),
        classes: [ClassStats::default(); NUM_CLASSES],
        large: crate::large::stats::LargeStats::collect(),
    };
    let (mut lba, mut lbf) = (0u64, 0u64);
    crate::small::heap::for_each_heap(|c| {
        for i in 0..NUM_CLASSES {
            s.classes[i].allocs += c.allocs[i].get();
            s.classes[i].frees += c.frees[i].get();
        }
        s.remote_frees += c.remote_frees.get();
        s.large_allocs += c.large_allocs.get();
        s.large_frees += c.large_frees.get();
        lba += c.large_bytes_allocated.get();
        lbf += c.large_bytes_freed.get();
    });
    s.large_live_bytes = lba.saturating_sub(lbf);
    for (i, cs) in s.classes.iter_mut().enumerate() {
        cs.block_size = block_size(i) as u64;
        s.allocs += cs.allocs;
        s.frees += cs.frees;
        s.allocated += cs.live() * cs.block_size;
    }
    s.allocs += s.large_allocs;
    s.frees += s.large_frees;
    s.allocated += s.large_live_bytes;
    s
}

/// Writes the statistics report (`HAKMEM_STATS=1`, `hak_stats_print`) to stderr.
pub fn print(s: &Stats) {
    use core::fmt::Write;
    let mut w = crate::report::StackWriter::<4096>::new();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let _ = writeln!(
        w,
        "hakmem stats: allocated {:.1} MiB, resident {:.1} MiB, mapped {:.1} MiB\n\
         hakmem stats: allocs {}, frees {}, remote frees {}, foreign pointers {}\n\
         hakmem stats: os maps {}, unmaps {}, purges {} ({:.1} MiB)\n\
         hakmem stats: large allocs {}, frees {}, live {:.1} MiB; heaps {}, segments abandoned {}, reclaimed {}",
        mib(s.allocated),
        mib(s.resident),
        mib(s.mapped),
        s.allocs,
        s.frees,
        s.remote_frees,
        s.foreign_frees,
        s.os_maps,
        s.os_unmaps,
        s.purges,
        mib(s.purged_bytes),
        s.large_allocs,
        s.large_frees,
        mib(s.large_live_bytes),
        s.heaps_created,
        s.segments_abandoned,
        s.segments_reclaimed,
    );
    w.flush_stderr();
    crate::large::stats::print(&s.large);
    let _ = writeln!(
        w,
        "hakmem stats: class  block_size      allocs       frees        live"
    );
    w.flush_stderr();
    for (i, c) in s.classes.iter().enumerate() {
        if c.allocs == 0 {
            continue;
        }
        let _ = writeln!(
            w,
            "hakmem stats: {:5} {:11} {:11} {:11} {:11}",
            i,
            c.block_size,
            c.allocs,
            c.frees,
            c.live()
        );
        w.flush_stderr();
    }
}
