//! One traced run: the scenario's child started under `probe-cli run`'s machinery
//! (probes attached before its first allocation, detached at its exit), its
//! stdout kept in a temporary file for the child's own report.

use super::bench::{self, ChildReport, Workload};
use super::configs::Config;
use super::estimate::TracedRun;
use crate::cli::OutputArgs;
use crate::error::{Error, Result};
use crate::report::Report;
use crate::run::{self, Launch};
use std::io::{Read, Seek};
use std::sync::atomic::AtomicBool;

/// What one traced run gives.
pub struct Traced {
    /// The trace's final report (components, syscalls, perf counters, probe cost).
    pub report: Report,
    /// The child's own report (its operation count is the per-op denominator).
    pub child: ChildReport,
}

/// An anonymous temporary file (unlinked at once) for the child's stdout.
fn scratch_file() -> Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!(
        "probe-cli-breakdown-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(Error::other("creating a temporary file"))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// Runs `workload` with `config` under the probes.
pub fn run_once(
    workload: &Workload,
    config: &Config,
    size: &str,
    stop: &AtomicBool,
) -> Result<Traced> {
    let mut out = scratch_file()?;
    let child_out = out
        .try_clone()
        .map_err(Error::other("duplicating a file descriptor"))?;
    let mut command = vec![workload.bench.display().to_string()];
    command.extend(workload.args(size));
    let launch = Launch {
        command,
        env: workload.env(config),
        preload: None,
        duration: None,
        interval: None,
        stdout: Some(child_out.into()),
        // The kernel's view, as the isolation runs' perf counters see them.
        kernel_syscalls: true,
    };
    let output = OutputArgs {
        json: false,
        output: None,
        prometheus: None,
    };
    let (mut session, state) = run::trace_launch(launch, output, Box::new(std::io::sink()), stop)?;
    let (report, _) = session.snapshot(&state, true)?;
    drop(session);

    let mut text = String::new();
    out.rewind()
        .and_then(|_| out.read_to_string(&mut text))
        .map_err(Error::other("reading the child's output"))?;
    let what = format!("{} with {} (traced)", workload.scenario, config.name);
    if !state.starts_with("exited with status 0") {
        return Err(Error::Target(format!("{what}: {state}")));
    }
    let child = bench::parse_report(&text)
        .ok_or_else(|| Error::Target(format!("{what}: no report on the child's stdout")))?;
    Ok(Traced { report, child })
}

impl Traced {
    /// What the estimates need of it.
    pub fn reduce(&self) -> TracedRun {
        let r = &self.report;
        TracedRun {
            ops: self.child.ops,
            components: r
                .components
                .iter()
                .map(|c| {
                    (
                        c.component.clone(),
                        (c.calls, c.total_ns, c.mean_ns * c.calls as f64),
                    )
                })
                .collect(),
            floors: (
                r.probe.empty_component_ns.unwrap_or(0.0),
                r.probe.nested_component_ns.unwrap_or(0.0),
                r.probe.floor_measurements.unwrap_or(0),
            ),
            hits: r.probe.exit_probes,
            syscalls: r
                .syscalls
                .iter()
                .map(|s| (s.syscall.to_string(), s.count))
                .collect(),
            page_faults: r
                .perf
                .counters
                .iter()
                .find(|c| c.name == "page_faults")
                .and_then(|c| c.value),
        }
    }
}
