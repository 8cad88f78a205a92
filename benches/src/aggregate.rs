//! Folding the measured runs of one allocator on one scenario into a table row.
//!
//! Medians everywhere (see `stats`).

use crate::model::{Row, RunReport};
use crate::stats::{median, median_u64};
use std::collections::BTreeMap;

/// The allocator every other is compared against, as in the origin analysis.
pub const BASELINE: &str = "mimalloc";

/// One row from the runs that completed and the errors of those that did not.
pub fn fold(scenario: &str, allocator: &str, samples: Vec<RunReport>, errors: Vec<String>) -> Row {
    let pick = |f: fn(&RunReport) -> u64| median_u64(&samples.iter().map(f).collect::<Vec<_>>());
    let counted: Vec<&RunReport> = samples
        .iter()
        .filter(|s| !s.syscalls.counts.is_empty())
        .collect();
    let mut syscalls = BTreeMap::new();
    if let Some(first) = counted.first() {
        for name in first.syscalls.counts.keys() {
            let values: Vec<u64> = counted
                .iter()
                .map(|s| s.syscalls.counts.get(name).copied().unwrap_or(0))
                .collect();
            syscalls.insert(name.clone(), median_u64(&values).unwrap_or(0));
        }
    }
    Row {
        scenario: scenario.to_string(),
        allocator: allocator.to_string(),
        runs: samples.len(),
        error: errors.first().cloned(),
        threads: samples.first().map_or(0, |s| s.child.threads),
        ops: samples.first().map_or(0, |s| s.child.ops),
        // The typical operation: robust to a run losing its core for a few ms
        // to another process, which moves a mean by tens of percent on a
        // shared 2-core machine. Costs paid in bursts are in p99 and mean_ns.
        median_ns: median(&samples.iter().map(|s| s.child.p50_ns).collect::<Vec<_>>()),
        mean_ns: median(
            &samples
                .iter()
                .map(|s| s.child.ns_per_op)
                .collect::<Vec<_>>(),
        ),
        p99_ns: median(&samples.iter().map(|s| s.child.p99_ns).collect::<Vec<_>>()),
        vs_mimalloc: None,
        page_faults: pick(|s| s.child.minflt + s.child.majflt),
        syscalls,
        syscall_source: samples
            .first()
            .map_or_else(|| "n/a".to_string(), |s| s.syscalls.source.clone()),
        peak_rss_kb: pick(|s| s.child.peak_rss_kb),
        rss_after_kb: pick(|s| s.child.rss_idle_kb),
        allocator_stats: samples
            .last()
            .map(|s| s.child.allocator_stats.clone())
            .unwrap_or_default(),
        samples,
    }
}

/// Fill `vs_mimalloc` on every row of every scenario that has a mimalloc row.
pub fn set_ratios(rows: &mut [Row]) {
    let baselines: BTreeMap<String, f64> = rows
        .iter()
        .filter(|r| r.allocator == BASELINE)
        .filter_map(|r| r.median_ns.map(|m| (r.scenario.clone(), m)))
        .collect();
    for row in rows {
        if let (Some(base), Some(m)) = (baselines.get(&row.scenario), row.median_ns) {
            row.vs_mimalloc = Some(m / base);
        }
    }
}
