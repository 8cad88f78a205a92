//! A trace in progress: the attached probes, the perf counters and the clock, and
//! the reports they make (printed, and written for Prometheus).

use crate::cli::OutputArgs;
use crate::error::{Error, Result};
use crate::perf::{PerfCounters, Scope};
use crate::probes::{KernelCounts, Probes};
use crate::report;
use crate::target::Target;
use crate::tsc::Tsc;
use std::io::Write;
use std::time::{Duration, Instant};

/// Probe hits of the short calibration every trace makes before attaching.
const QUICK_CALIBRATION: (u32, u32) = (20_000, 3);

/// The cost of one probe hit, measured quickly (None if the measurement failed:
/// the reports then just omit the overhead line).
pub fn quick_hit_cost() -> Option<f64> {
    crate::calibrate::measure(QUICK_CALIBRATION.0, QUICK_CALIBRATION.1)
        .ok()
        .map(|c| c.probe_hit_ns)
}

/// Everything a trace holds while it runs.
pub struct Session {
    /// The traced process.
    pub target: Target,
    /// The attached BPF programs.
    pub probes: Probes,
    perf: PerfCounters,
    scope: Scope,
    tsc: Tsc,
    hit_cost_ns: Option<f64>,
    started: Instant,
    output: OutputArgs,
}

impl Session {
    /// Starts the clock on attached probes and opened counters.
    pub fn new(
        target: Target,
        probes: Probes,
        perf: PerfCounters,
        scope: Scope,
        hit_cost_ns: Option<f64>,
        output: OutputArgs,
    ) -> Session {
        let tsc = Tsc::calibrate(Duration::from_millis(20));
        Session {
            target,
            probes,
            perf,
            scope,
            tsc,
            hit_cost_ns,
            started: Instant::now(),
            output,
        }
    }

    /// Opens counters on threads that appeared since the last poll.
    pub fn poll_threads(&mut self) {
        self.perf.refresh();
    }

    /// Reads everything into a report (without printing it).
    pub fn snapshot(
        &mut self,
        state: &str,
        final_report: bool,
    ) -> Result<(report::Report, KernelCounts)> {
        let counts = self.probes.read()?;
        let perf = self.perf.read();
        let r = report::build(report::Inputs {
            target: &self.target,
            state: state.to_string(),
            counts: &counts,
            perf,
            perf_scope: match self.scope {
                Scope::PerThread => "per_thread",
                Scope::Inherited => "inherited",
            },
            perf_threads: self.perf.threads(),
            tsc: self.tsc,
            hit_cost_ns: self.hit_cost_ns,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            final_report,
        });
        Ok((r, counts))
    }

    /// Reads everything and prints one report (and rewrites the Prometheus file).
    pub fn report(&mut self, state: &str, final_report: bool) -> Result<()> {
        let (r, counts) = self.snapshot(state, final_report)?;
        let text = if self.output.json {
            serde_json::to_string(&r).map_err(|e| Error::Other(format!("encoding JSON: {e}")))?
                + "\n"
        } else {
            report::text(&r) + "\n"
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (probe-cli ... | head) is the reader's choice, not an error.
        let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        if let Some(path) = &self.output.prometheus {
            let tmp = path.with_extension("prom.tmp");
            std::fs::write(&tmp, report::prometheus(&r, &counts, self.tsc))
                .and_then(|_| std::fs::rename(&tmp, path))
                .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))?;
        }
        Ok(())
    }
}
