//! The measured child: runs one scenario in this process and reports on itself.
//!
//! The parent starts it with `HAKMEM_BENCH_CHILD=1`. With `HAKMEM_BENCH_GATE=1`
//! the child first prints `ready` and waits for a line on stdin, so the parent
//! can attach its syscall counters after process start-up (loader and runtime
//! `mmap`s are not the allocator's) but before the first workload allocation.

use crate::cli::RunPlan;
use crate::dispatch::backend;
use crate::model::ChildReport;
use crate::scenarios::Params;
use crate::{allocator_stats, process, timing};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

pub use crate::protocol::{CHILD_ENV, GATE_ENV, READY};

/// True when this process is a measured child.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

fn wait_for_go() -> Result<(), String> {
    if std::env::var_os(GATE_ENV).is_none() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{READY}")
        .and_then(|_| out.flush())
        .map_err(|e| format!("handshake: {e}"))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(())
}

/// Run the workload and build the report.
pub fn measure(plan: &RunPlan) -> Result<ChildReport, String> {
    let params = Params {
        threads: plan.common.threads.unwrap_or(1),
        scale: plan.common.size.scale(),
    };
    let preload = plan
        .allocator
        .preload_library()
        .map(|p| p.display().to_string());
    wait_for_go()?;

    let before = process::usage();
    let histogram_faults = timing::histogram_faults();
    let start = Instant::now();
    let run = match plan.scenario.baseline {
        Some(baseline) if plan.baseline => baseline,
        _ => plan.scenario.run,
    };
    let outcome = run(&params);
    let elapsed = start
        .elapsed()
        .saturating_sub(Duration::from_nanos(outcome.setup_ns));
    let after = process::usage();
    let rss_after_kb = process::rss_kb();
    let allocator_stats = allocator_stats::read();

    std::thread::sleep(Duration::from_millis(plan.common.idle_ms));
    // Allocators that purge lazily do it on their next call, not on a timer.
    drop(std::hint::black_box(Box::new([0u8; 64])));
    let rss_idle_kb = process::rss_kb();

    let ops = outcome.ops.max(1);
    let picos =
        |q: f64| outcome.latency.value_at_quantile(q) as f64 / timing::PICOS_PER_NANO as f64;
    Ok(ChildReport {
        scenario: plan.scenario.name.to_string(),
        allocator: plan.allocator.name.clone(),
        backend: backend().env_value().to_string(),
        threads: outcome.threads,
        ops: outcome.ops,
        elapsed_ns: elapsed.as_nanos() as u64,
        ns_per_op: elapsed.as_nanos() as f64 * outcome.threads as f64 / ops as f64,
        p50_ns: picos(0.5),
        p99_ns: picos(0.99),
        max_ns: outcome.latency.max() as f64 / timing::PICOS_PER_NANO as f64,
        // The latency histograms' own faults are the instrument's (timing.rs).
        minflt: (after.minflt - before.minflt)
            .saturating_sub(timing::histogram_faults() - histogram_faults),
        majflt: after.majflt - before.majflt,
        peak_rss_kb: after.maxrss_kb,
        rss_after_kb,
        rss_idle_kb,
        idle_ms: plan.common.idle_ms,
        allocator_stats,
        malloc_provider: process::malloc_provider(),
        preload_mapped: preload.as_deref().map(process::is_mapped),
    })
}
