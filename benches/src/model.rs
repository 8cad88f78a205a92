//! The result records that cross process boundaries and land in `--json`.
//!
//! A child writes a [`ChildReport`] as one JSON line; the parent wraps it in a
//! [`RunReport`] with what only the parent can see (syscall counts); `compare`
//! folds the runs of one allocator into a [`Row`]. Times are nanoseconds per
//! operation per thread; memory is KiB.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// What one measured child process reports about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildReport {
    /// Scenario name.
    pub scenario: String,
    /// Allocator name as requested (`hakmem-frozen`, `preload:/x.so`, …).
    pub allocator: String,
    /// The linked backend the dispatcher used (`system` for preload children).
    pub backend: String,
    /// Threads that did the work.
    pub threads: usize,
    /// Operations performed.
    pub ops: u64,
    /// Wall time of the workload, ns.
    pub elapsed_ns: u64,
    /// Thread-time per operation: elapsed × threads / ops, ns.
    pub ns_per_op: f64,
    /// Median of per-batch time per operation, ns.
    pub p50_ns: f64,
    /// 99th percentile of per-batch time per operation, ns.
    pub p99_ns: f64,
    /// Slowest batch, ns per operation.
    pub max_ns: f64,
    /// Minor page faults during the workload (getrusage, all threads), less
    /// the latency histograms' own (`timing::new_histogram`).
    pub minflt: u64,
    /// Major page faults during the workload.
    pub majflt: u64,
    /// Peak resident set of the process (ru_maxrss), KiB.
    pub peak_rss_kb: u64,
    /// Resident set right after the workload freed everything, KiB.
    pub rss_after_kb: u64,
    /// Resident set after `idle_ms` of sleep and one more malloc/free, KiB:
    /// what is left once delayed purges had their chance.
    pub rss_idle_kb: u64,
    /// How long the child idled before `rss_idle_kb`, ms.
    pub idle_ms: u64,
    /// The allocator's own figures (jemalloc's allocated/resident/mapped,
    /// hakmem's stats), read after the workload; empty when it has none.
    pub allocator_stats: BTreeMap<String, u64>,
    /// The shared object that `malloc` resolves to in this process: proof of
    /// which library served the C heap (the preloaded one, or libc).
    pub malloc_provider: Option<String>,
    /// For preload runs: whether the library appears in /proc/self/maps.
    pub preload_mapped: Option<bool>,
}

/// Syscall counts of one child, counted by the parent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Syscalls {
    /// `perf` (tracepoint counters on the child's threads), `strace`, or `n/a`.
    pub source: String,
    /// Calls by name (mmap, munmap, madvise, mremap, brk); empty when n/a.
    pub counts: BTreeMap<String, u64>,
}

/// One child run: its own report plus what the parent measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// The child's report.
    #[serde(flatten)]
    pub child: ChildReport,
    /// Syscalls made by the child.
    pub syscalls: Syscalls,
}

/// One allocator on one scenario, folded over its measured runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Allocator name.
    pub allocator: String,
    /// Measured runs that completed (warm-up not included).
    pub runs: usize,
    /// Why runs failed, if any did.
    pub error: Option<String>,
    /// Threads that did the work.
    pub threads: usize,
    /// Operations per run.
    pub ops: u64,
    /// Median over runs of each run's median batch time per operation, ns:
    /// the typical cost of one operation.
    pub median_ns: Option<f64>,
    /// Median over runs of each run's mean (wall × threads / ops), ns: the
    /// throughput view, which includes rare stalls and bursts.
    pub mean_ns: Option<f64>,
    /// Median over runs of each run's p99 batch latency, ns per operation.
    pub p99_ns: Option<f64>,
    /// median_ns / mimalloc's median_ns on the same scenario.
    pub vs_mimalloc: Option<f64>,
    /// Median minor + major page faults.
    pub page_faults: Option<u64>,
    /// Median syscall counts by name; absent when they could not be counted.
    pub syscalls: BTreeMap<String, u64>,
    /// Where the syscall counts came from.
    pub syscall_source: String,
    /// Median peak RSS, KiB.
    pub peak_rss_kb: Option<u64>,
    /// Median RSS after the workload and a short idle, KiB.
    pub rss_after_kb: Option<u64>,
    /// Allocator figures from the last run.
    pub allocator_stats: BTreeMap<String, u64>,
    /// Every measured run.
    pub samples: Vec<RunReport>,
}

/// The whole `compare` result, as written by `--json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The command line that produced it.
    pub command: String,
    /// Cores, kernel, CPU model.
    pub machine: BTreeMap<String, String>,
    /// Size preset.
    pub size: String,
    /// Measured runs per allocator (plus uncounted warm-up).
    pub runs: usize,
    /// Warm-up runs per allocator, not counted.
    pub warmup: usize,
    /// One row per scenario × allocator.
    pub rows: Vec<Row>,
}
