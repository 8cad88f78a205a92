//! Per-thread latency recording: operations are timed in batches.
//!
//! Timing every single `malloc` would cost as much as the `malloc` itself (a
//! clock read is ~20 ns), so a thread reads the clock once per batch and records
//! the batch's mean time per operation, once for each operation in the batch.
//! The histogram is allocated before the workload and has fixed bounds, so
//! recording never allocates.

use crate::process;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Values are picoseconds per operation: small-object ops take ~10 ns, and
/// integer nanoseconds would round them to two significant digits.
pub const PICOS_PER_NANO: u64 = 1000;
/// Upper bound of the histogram: one second per operation.
const MAX_PICOS: u64 = 1_000_000_000_000;

/// Page faults the histograms took on their own memory, all threads.
static HISTOGRAM_FAULTS: AtomicU64 = AtomicU64::new(0);

/// An empty histogram with the bounds every recorder uses (so they can be
/// merged), its memory faulted in now.
///
/// Its ~250 KiB of counts are written once here, which faults them in: the
/// instrument's faults, not the workload's. Every allocator that does not
/// hand out huge pages paid ~62 a histogram (`large-reuse`: 65 of hakmem's
/// 76 a run, where mimalloc, taking them in huge pages, paid 0). They are
/// counted in [`histogram_faults`], which the child subtracts from the run's.
pub fn new_histogram() -> Histogram<u64> {
    // hdrhistogram allocates its counts and writes zeros over them, so the
    // pages fault in here; what the allocation itself faults in the allocator
    // (a segment header: 0-2 pages) is counted with them.
    let before = process::thread_minflt();
    let h = Histogram::new_with_bounds(1, MAX_PICOS, 3).expect("static histogram bounds are valid");
    HISTOGRAM_FAULTS.fetch_add(
        process::thread_minflt().saturating_sub(before),
        Ordering::Relaxed,
    );
    h
}

/// Page faults taken by [`new_histogram`] so far in this process.
pub fn histogram_faults() -> u64 {
    HISTOGRAM_FAULTS.load(Ordering::Relaxed)
}

/// Times one thread's operations in batches of `batch` operations.
pub struct Recorder {
    histogram: Histogram<u64>,
    batch: u32,
    in_batch: u32,
    batch_start: Instant,
    ops: u64,
}

impl Recorder {
    /// A recorder that reads the clock every `batch` operations (at least 1).
    pub fn new(batch: u32) -> Self {
        Recorder {
            histogram: new_histogram(),
            batch: batch.max(1),
            in_batch: 0,
            batch_start: Instant::now(),
            ops: 0,
        }
    }

    /// Restart the current batch's clock, e.g. after a thread finished setting up.
    pub fn start(&mut self) {
        self.in_batch = 0;
        self.batch_start = Instant::now();
    }

    /// Count one operation; closes the batch when it is full.
    #[inline]
    pub fn op(&mut self) {
        self.in_batch += 1;
        if self.in_batch == self.batch {
            self.close_batch();
        }
    }

    #[cold]
    fn close_batch(&mut self) {
        let now = Instant::now();
        let picos = now.duration_since(self.batch_start).as_nanos() as u64 * PICOS_PER_NANO
            / u64::from(self.in_batch);
        // Weighted by the batch's operations, so percentiles are over
        // operations, not batches: scenarios mixing batch sizes (glibc-simple
        // rounds of 25 and of 1600) would otherwise over-weight small batches.
        self.histogram
            .saturating_record_n(picos.max(1), u64::from(self.in_batch));
        self.ops += u64::from(self.in_batch);
        self.in_batch = 0;
        self.batch_start = now;
    }

    /// Close a partial last batch and hand back (operations, histogram).
    pub fn finish(mut self) -> (u64, Histogram<u64>) {
        if self.in_batch > 0 {
            self.close_batch();
        }
        (self.ops, self.histogram)
    }
}
