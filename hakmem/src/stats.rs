//! The statistics snapshot ([`Stats`], `hakmem::stats()`) and its report.
//!
//! Hot-path counters live in each thread's context and are written only by
//! that thread (a relaxed load and store, never a locked add); [`collect`]
//! walks the registry of all contexts ever created and sums them, then adds
//! the process-wide counters of rare events (`counters.rs`) and the large-block
//! side's global state.

use crate::counters::GLOBAL;
use crate::small::size_class::{block_size, NUM_CLASSES};
use core::sync::atomic::Ordering::Relaxed;

/// One size class in [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Bytes per block of the class.
    pub block_size: u64,
    /// Blocks handed out.
    pub allocs: u64,
    /// Blocks freed.
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
    /// See `purges`.
    pub purged_bytes: u64,
    /// Successful mmap calls.
    pub os_maps: u64,
    /// Successful munmap calls.
    pub os_unmaps: u64,
    /// Large blocks allocated.
    pub large_allocs: u64,
    /// Large blocks freed.
    pub large_frees: u64,
    /// Bytes in live large blocks.
    pub large_live_bytes: u64,
    /// Pointers passed to free/realloc/malloc_usable_size that hakmem never handed out.
    pub foreign_frees: u64,
    /// Thread heaps created from the OS (reused heaps are not counted again).
    pub heaps_created: u64,
    /// Segments left behind by exiting threads.
    pub segments_abandoned: u64,
    /// Abandoned segments adopted by another thread.
    pub segments_reclaimed: u64,
    /// Abandoned segments the background pass found empty and pooled.
    pub segments_unowned_pooled: u64,
    /// Bytes of abandoned segments' free pages the background pass purged.
    pub unowned_purged_bytes: u64,
    /// Per size class.
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
        foreign_frees: crate::diag::foreign_pointers(),
        heaps_created: GLOBAL.heaps_created.load(Relaxed),
        segments_abandoned: GLOBAL.segments_abandoned.load(Relaxed),
        segments_reclaimed: GLOBAL.segments_reclaimed.load(Relaxed),
        segments_unowned_pooled: GLOBAL.segments_unowned_pooled.load(Relaxed),
        unowned_purged_bytes: GLOBAL.unowned_purged_bytes.load(Relaxed),
        classes: [ClassStats::default(); NUM_CLASSES],
        large: crate::large::stats::LargeStats::global(),
    };
    let (mut lba, mut lbf) = (0u64, 0u64);
    crate::thread::for_each(|c, l| {
        for i in 0..NUM_CLASSES {
            s.classes[i].allocs += c.allocs(i);
            s.classes[i].frees += c.counters().frees[i].get();
        }
        s.remote_frees += c.counters().remote_frees.get();
        s.large.add(l);
        let c = l;
        s.large_allocs += c.allocs();
        s.large_frees += c.frees();
        lba += c.bytes_allocated();
        lbf += c.bytes_freed();
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
         hakmem stats: large allocs {}, frees {}, live {:.1} MiB; heaps {}, segments abandoned {}, reclaimed {}\n\
         hakmem stats: exited threads' memory (background pass): segments emptied and pooled {}, free pages purged {:.1} MiB",
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
        s.segments_unowned_pooled,
        mib(s.unowned_purged_bytes),
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
