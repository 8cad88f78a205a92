//! hakmem-bench as the breakdown's workload: finding the binary, and running one
//! scenario in one untraced child process with hakmem linked in and one
//! configuration's options.
//!
//! The child is hakmem-bench's own measured child, started through its
//! library's protocol (`hakmem_bench::protocol`: the arguments, the clean
//! environment — every `HAKMEM_*` option cleared but the configuration's —
//! the start-up handshake, the report line): it times the workload itself and
//! prints one JSON report; it waits after start-up until told to go, so the
//! syscall counters see the workload and not the loader.

use super::configs::{self, Config};
use super::syscount::Syscalls;
use crate::error::{Error, Result};
use hakmem_bench::dispatch::{Backend, ENV_VAR};
use hakmem_bench::protocol::{self, ChildArgs, GatedError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// What the breakdown reads of hakmem-bench's child report (it has more).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChildReport {
    /// Operations performed (the denominator of every per-op figure).
    pub ops: u64,
    /// Threads that did the work.
    pub threads: usize,
    /// Wall time of the workload, ns.
    pub elapsed_ns: u64,
    /// Thread-time per operation: elapsed × threads / ops, ns.
    pub ns_per_op: f64,
    /// Minor page faults during the workload.
    pub minflt: u64,
    /// Major page faults during the workload.
    pub majflt: u64,
    /// Peak resident set, KiB.
    pub peak_rss_kb: u64,
    /// Resident set after the workload, KiB.
    pub rss_after_kb: u64,
}

/// One untraced run of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The child's own report.
    pub child: ChildReport,
    /// Memory syscalls of the workload, by name.
    pub syscalls: BTreeMap<String, u64>,
}

/// How the scenario is run (the same for every configuration).
#[derive(Clone, Debug)]
pub struct Workload {
    /// The hakmem-bench binary.
    pub bench: PathBuf,
    /// Scenario name.
    pub scenario: String,
    /// Worker threads, if given.
    pub threads: Option<usize>,
}

impl Workload {
    /// hakmem-bench's arguments for a measured child of `size`.
    pub fn args(&self, size: &str) -> Vec<String> {
        ChildArgs {
            scenario: self.scenario.clone(),
            allocator: "hakmem".into(),
            size: size.into(),
            idle_ms: 0,
            threads: self.threads,
        }
        .argv()
    }

    /// The variables that make a process a measured hakmem child of `config`
    /// (`None` removes one), padded to the same size for every configuration.
    pub fn env(&self, config: &Config) -> Vec<(String, Option<String>)> {
        let mut own: Vec<(&str, &str)> = vec![(ENV_VAR, Backend::Hakmem.env_value())];
        own.extend(config.env.iter().copied());
        let mut env = protocol::environment(&own, false);
        env.push(configs::padding(config));
        env
    }
}

/// Finds hakmem-bench: `explicit`, else next to probe-cli (same target
/// directory), else `target/release/` under the current directory.
pub fn locate(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Target(format!(
                "hakmem-bench not found at {}",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe().map_err(Error::other("locating probe-cli"))?;
    let mut candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(3)
        .flat_map(|d| [d.join("hakmem-bench"), d.join("release/hakmem-bench")])
        .collect();
    candidates.push(PathBuf::from("target/release/hakmem-bench"));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::Target(
            "hakmem-bench not found next to probe-cli or in target/release: build it with \
             `cargo build --release -p hakmem-bench` or pass --bench PATH"
                .into(),
        )
    })
}

/// The child's report line (see `hakmem_bench::protocol::report_line`).
pub fn parse_report(stdout: &str) -> Option<ChildReport> {
    protocol::report_line(stdout).and_then(|l| serde_json::from_str(l).ok())
}

/// A failed child: a usage error when hakmem-bench refused the arguments
/// (exit 2: unknown scenario, bad size), a target error otherwise.
pub fn child_failed(what: &str, status: std::process::ExitStatus, stderr: &str) -> Error {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    if status.code() == Some(2) {
        Error::Usage(last.trim_start_matches("hakmem-bench: ").to_string())
    } else {
        Error::Target(format!("{what}: hakmem-bench {status}: {last}"))
    }
}

/// Runs `workload` once with `config`, untraced, counting its syscalls.
pub fn run_once(
    workload: &Workload,
    config: &Config,
    size: &str,
    syscalls: &Syscalls,
) -> Result<Run> {
    let mut command = Command::new(&workload.bench);
    command.args(workload.args(size));
    protocol::apply(&mut command, &workload.env(config));
    command.env(protocol::GATE_ENV, "1");
    let what = format!("{} with {}", workload.scenario, config.name);
    let finished =
        protocol::run_gated(&mut command, |pid| syscalls.attach(pid)).map_err(|e| match e {
            GatedError::Spawn(e) => {
                Error::Target(format!("starting {}: {e}", workload.bench.display()))
            }
            GatedError::Attach(e) => e,
            GatedError::Wait(e) => Error::Other(format!("wait: {e}")),
        })?;
    if !finished.status.success() {
        return Err(child_failed(&what, finished.status, &finished.stderr));
    }
    let report = parse_report(&finished.stdout)
        .ok_or_else(|| Error::Target(format!("{what}: no report on the child's stdout")))?;
    let counters = finished
        .attached
        .ok_or_else(|| Error::Target(format!("{what}: the child never said ready")))?;
    Ok(Run {
        child: report,
        syscalls: counters.read(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_json_line_is_the_report() {
        let out = "ready\n{\"ops\":8,\"threads\":1,\"elapsed_ns\":800,\"ns_per_op\":100.0,\
                   \"minflt\":3,\"majflt\":0,\"peak_rss_kb\":10,\"rss_after_kb\":9,\"extra\":1}\n";
        let r = parse_report(out).expect("parses");
        assert_eq!(r.ops, 8);
        assert_eq!(r.ns_per_op, 100.0);
        assert!(parse_report("no json here").is_none());
    }
}
