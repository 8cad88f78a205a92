//! Counting a child's memory syscalls from the parent: perf tracepoint
//! counters on every thread of the child, or `strace -f -c` when perf is not
//! permitted, or nothing ("n/a").
//!
//! perf counters are opened on each existing thread of the child with
//! `inherit`, so threads the workload starts later are counted too, and read
//! after the child has been reaped, when the kernel has folded every exited
//! thread's count into its parent's counter.

use crate::cli::SyscallMode;
use hakmem_ebpf::layout::SYSCALLS;
use perf_event::events::Tracepoint;
use perf_event::{Builder, Counter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The syscalls counted, in report order: the list probe-cli's BPF trace
/// watches (`hakmem_ebpf::layout::SYSCALLS`), so both tools count the same calls.
pub fn names() -> impl Iterator<Item = &'static str> {
    SYSCALLS.iter().map(|s| s.name)
}

/// Where tracefs may be mounted.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The counting method chosen for this machine.
#[derive(Clone, Debug)]
pub enum Method {
    /// Tracepoint ids of `syscalls:sys_enter_<name>`, by name.
    Perf(Vec<(&'static str, u64)>),
    /// Path of the strace binary.
    Strace(PathBuf),
    /// Not counted.
    Off,
}

impl Method {
    /// The label that goes into reports.
    pub fn label(&self) -> &'static str {
        match self {
            Method::Perf(_) => "perf",
            Method::Strace(_) => "strace",
            Method::Off => "n/a",
        }
    }
}

/// Why perf tracepoint counting is not available.
#[derive(Debug)]
pub enum PerfError {
    /// No tracefs with syscall tracepoints (not mounted, or no CONFIG_FTRACE_SYSCALLS).
    NoTracepoints(String),
    /// Opening a counter was refused (needs root or CAP_PERFMON).
    NotPermitted(String),
    /// Any other failure.
    Other(String),
}

impl std::fmt::Display for PerfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PerfError::NoTracepoints(m) | PerfError::NotPermitted(m) | PerfError::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

fn tracepoint_ids() -> Result<Vec<(&'static str, u64)>, PerfError> {
    let root = TRACEFS
        .iter()
        .map(Path::new)
        .find(|r| r.join("events/syscalls").is_dir())
        .ok_or_else(|| {
            PerfError::NoTracepoints(
                "no syscall tracepoints (tracefs at /sys/kernel/tracing, CONFIG_FTRACE_SYSCALLS)"
                    .into(),
            )
        })?;
    names()
        .map(|name| {
            let file = root.join(format!("events/syscalls/sys_enter_{name}/id"));
            let id = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| PerfError::Other(format!("cannot read {}", file.display())))?;
            Ok((name, id))
        })
        .collect()
}

/// The tracepoint ids of the counted syscalls, checked by opening a counter
/// on each (kept open, see below).
pub fn open_perf() -> Result<Vec<(&'static str, u64)>, PerfError> {
    let ids = tracepoint_ids()?;
    perf_works(&ids)?;
    Ok(ids)
}

/// Open one counter per tracepoint on this process and keep them for the
/// life of the harness; an error when that is not permitted (permissions,
/// kernel config, seccomp).
///
/// Keeping them open is deliberate: when the last user of a syscall
/// tracepoint closes, the kernel unregisters it and waits for an RCU grace
/// period (~35 ms per event here), which would add ~0.2 s to every child run.
/// With these holding a reference, a child's counters open and close cheaply.
fn perf_works(ids: &[(&'static str, u64)]) -> Result<(), PerfError> {
    let mut keepalive = Vec::new();
    for &(name, id) in ids {
        let counter = Builder::new(Tracepoint::with_id(id))
            .observe_self()
            .exclude_kernel(false)
            .build()
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => PerfError::NotPermitted(format!(
                    "perf tracepoint counters: {e} (needs root or CAP_PERFMON)"
                )),
                _ => PerfError::Other(format!("perf tracepoint sys_enter_{name}: {e}")),
            })?;
        keepalive.push(counter);
    }
    // Leaked on purpose, see above; the descriptors close at process exit.
    std::mem::forget(keepalive);
    Ok(())
}

fn find_strace() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("strace"))
            .find(|p| p.is_file())
    })
}

/// Pick the method for `mode`; `Auto` prefers perf, then strace.
pub fn choose(mode: SyscallMode) -> Method {
    let perf = || open_perf().ok().map(Method::Perf);
    let strace = || find_strace().map(Method::Strace);
    match mode {
        SyscallMode::Off => None,
        SyscallMode::Perf => perf(),
        SyscallMode::Strace => strace(),
        SyscallMode::Auto => perf().or_else(strace),
    }
    .unwrap_or(Method::Off)
}

/// Counters attached to every thread of one child process.
pub struct PerfCounters {
    counters: Vec<(&'static str, Counter)>,
}

impl PerfCounters {
    /// Attach counters for every id to every current thread of `pid`.
    pub fn attach(pid: u32, ids: &[(&'static str, u64)]) -> std::io::Result<PerfCounters> {
        let mut counters = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            for &(name, id) in ids {
                let counter = Builder::new(Tracepoint::with_id(id))
                    .observe_pid(tid)
                    .any_cpu()
                    .inherit(true)
                    // Syscall tracepoints fire in kernel mode.
                    .exclude_kernel(false)
                    .enabled(true)
                    .build()?;
                counters.push((name, counter));
            }
        }
        Ok(PerfCounters { counters })
    }

    /// Sum per syscall over all threads; call after the child was reaped.
    pub fn read(&mut self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = names().map(|n| (n.to_string(), 0)).collect();
        for (name, counter) in &mut self.counters {
            *counts.get_mut(*name).expect("name from names()") += counter.read().unwrap_or(0);
        }
        counts
    }
}

/// Counts from a `strace -c` summary (columns: % time, seconds, usecs/call,
/// calls, [errors], syscall).
pub fn parse_strace_summary(text: &str) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = names().map(|n| (n.to_string(), 0)).collect();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        let name = fields[fields.len() - 1];
        if let (Some(slot), Ok(calls)) = (counts.get_mut(name), fields[3].parse::<u64>()) {
            *slot += calls;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_summary_is_parsed_by_name() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                     40.00    0.000040           2        17           mmap\n\
                     10.00    0.000010           5         2         1 madvise\n\
                      5.00    0.000005           5         1           munmap\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                    100.00    0.000100                    20         1 total\n";
        let counts = parse_strace_summary(text);
        assert_eq!(counts["mmap"], 17);
        assert_eq!(counts["madvise"], 2);
        assert_eq!(counts["munmap"], 1);
        assert_eq!(counts["brk"], 0);
        assert_eq!(counts["mprotect"], 0, "every watched syscall has a count");
    }
}
