//! hakmem-bench as the breakdown's workload: finding the binary, and running one
//! scenario in one untraced child process with hakmem linked in and one
//! configuration's options.
//!
//! The child is hakmem-bench's own measured-child mode (`HAKMEM_BENCH_CHILD=1`,
//! `HAKMEM_BENCH_ALLOCATOR=hakmem`): it times the workload itself and prints one
//! JSON report. With `HAKMEM_BENCH_GATE=1` it waits after start-up until told to
//! go, so the syscall counters see the workload and not the loader.

use super::configs::{self, Config};
use super::syscount::Syscalls;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
        let mut a: Vec<String> = [
            "run",
            "--scenario",
            &self.scenario,
            "--allocator",
            "hakmem",
            "--json",
            "--size",
            size,
            "--idle-ms",
            "0",
            "--syscalls",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(t) = self.threads {
            a.extend(["--threads".to_string(), t.to_string()]);
        }
        a
    }

    /// The variables that make a process a measured hakmem child of `config`.
    pub fn env(&self, config: &Config) -> Vec<(String, Option<String>)> {
        let mut env = configs::env_changes(config);
        env.push(("HAKMEM_BENCH_CHILD".into(), Some("1".into())));
        env.push(("HAKMEM_BENCH_ALLOCATOR".into(), Some("hakmem".into())));
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

/// The last `{`-line of a child's stdout as its report.
pub fn parse_report(stdout: &str) -> Option<ChildReport> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
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
    command
        .args(workload.args(size))
        .env("HAKMEM_BENCH_GATE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in workload.env(config) {
        match v {
            Some(v) => command.env(k, v),
            None => command.env_remove(k),
        };
    }
    let what = format!("{} with {}", workload.scenario, config.name);
    let mut child = command
        .spawn()
        .map_err(|e| Error::Target(format!("starting {}: {e}", workload.bench.display())))?;
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut stderr = child.stderr.take().expect("piped");
    // Drained on its own thread so a chatty child cannot block on a full pipe.
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    let mut counters = None;
    if line.trim() == "ready" {
        counters = Some(syscalls.attach(child.id()));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let status = child
        .wait()
        .map_err(|e| Error::Other(format!("wait: {e}")))?;
    let stderr_text = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(child_failed(&what, status, &stderr_text));
    }
    let counters =
        counters.ok_or_else(|| Error::Target(format!("{what}: the child never said ready")))??;
    let report = parse_report(&rest)
        .ok_or_else(|| Error::Target(format!("{what}: no report on the child's stdout")))?;
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
