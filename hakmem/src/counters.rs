//! Counters: the process-wide ones of rare events (OS calls, purges, heaps,
//! segments), and [`Counter`], the single-writer counter every per-thread
//! counter set is made of. Read by the statistics snapshot (`stats.rs`).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Process-wide counters of rare events.
pub struct GlobalCounters {
    /// Successful mmap calls.
    pub os_maps: AtomicU64,
    /// Successful munmap calls.
    pub os_unmaps: AtomicU64,
    /// Bytes currently mapped from the OS.
    pub mapped: AtomicU64,
    /// Successful purges (madvise DONTNEED) and the bytes they covered.
    pub purges: AtomicU64,
    /// See `purges`.
    pub purged_bytes: AtomicU64,
    /// Thread contexts mapped from the OS (reused ones are not counted again).
    pub heaps_created: AtomicU64,
    /// Segments left behind by exiting threads.
    pub segments_abandoned: AtomicU64,
    /// Abandoned segments adopted by another thread.
    pub segments_reclaimed: AtomicU64,
    /// Abandoned segments the background pass found empty and pooled.
    pub segments_unowned_pooled: AtomicU64,
    /// Bytes of abandoned segments' free pages the background pass purged.
    pub unowned_purged_bytes: AtomicU64,
}

/// The process-wide counters.
pub static GLOBAL: GlobalCounters = GlobalCounters {
    os_maps: AtomicU64::new(0),
    os_unmaps: AtomicU64::new(0),
    mapped: AtomicU64::new(0),
    purges: AtomicU64::new(0),
    purged_bytes: AtomicU64::new(0),
    heaps_created: AtomicU64::new(0),
    segments_abandoned: AtomicU64::new(0),
    segments_reclaimed: AtomicU64::new(0),
    segments_unowned_pooled: AtomicU64::new(0),
    unowned_purged_bytes: AtomicU64::new(0),
};

/// A counter written by one thread and read by any: relaxed load + store.
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    /// Adds `n`; only the owning thread may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    /// The current value (any thread).
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
