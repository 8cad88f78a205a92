//! The command line: what the user can ask for, parsed by clap.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Watch hakmem's components live in a running process with eBPF.
#[derive(Parser, Debug)]
#[command(name = "probe-cli", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach to a running process that uses hakmem (preloaded or linked in) and report
    /// per-component latency, syscalls and perf counters until Ctrl-C, the duration, or
    /// the target's exit.
    Trace(TraceArgs),
    /// Start CMD with libhakmem.so preloaded (unless it links hakmem itself) and trace
    /// it from its first allocation to its exit.
    Run(RunArgs),
    /// Measure what one probe hit costs on this machine.
    Calibrate(CalibrateArgs),
    /// Reproduce the overhead-breakdown table of a hakmem-bench scenario: per-component
    /// cost from the probes, checked against feature-isolation runs, with the syscalls
    /// and page faults of each configuration.
    Breakdown(BreakdownArgs),
}

/// Output options shared by the tracing commands.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print the reports as JSON: one object per line and per report (with
    /// --interval, one line per interval), each with a schema_version.
    #[arg(long)]
    pub json: bool,
    /// Write the reports to FILE (created or truncated) instead of stdout
    /// (`trace`) or stderr (`run`: never into the program's stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the report in the Prometheus text exposition format to FILE
    /// (rewritten atomically at every report, for a textfile collector).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Process to trace.
    #[arg(long, short)]
    pub pid: u32,
    /// Stop after this many seconds (default: until Ctrl-C or the target exits).
    #[arg(long, short, value_name = "S")]
    pub duration: Option<f64>,
    /// Print an intermediate report every S seconds (cumulative since attach).
    #[arg(long, short, value_name = "S")]
    pub interval: Option<f64>,
    /// Take in the processes PID forks from now on (and theirs), each with its
    /// own row in the report.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Count the memory syscalls in the kernel (every mmap, munmap, madvise,
    /// mremap, brk and mprotect of the traced processes, whoever in them makes
    /// it) instead of hakmem's own, which it counts in the process at no cost.
    /// Costly: the raw_syscalls tracepoints put every syscall of every process
    /// on the machine on the kernel's slow path (redis-server keeps about
    /// 0.82-0.90 of its untraced requests/s with them, 0.95 without).
    #[arg(long)]
    pub kernel_syscalls: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Stop tracing after this many seconds and end the command (SIGTERM).
    #[arg(long, short, value_name = "S")]
    pub duration: Option<f64>,
    /// Print an intermediate report every S seconds (cumulative since the start).
    #[arg(long, short, value_name = "S")]
    pub interval: Option<f64>,
    /// libhakmem.so to preload (default: next to probe-cli, or target/release/).
    #[arg(long, value_name = "PATH", env = "HAKMEM_PRELOAD_LIB")]
    pub preload: Option<PathBuf>,
    /// Count the memory syscalls in the kernel (every mmap, munmap, madvise,
    /// mremap, brk and mprotect of the traced processes, whoever in them makes
    /// it) instead of hakmem's own, which it counts in the process at no cost.
    /// Costly: the raw_syscalls tracepoints put every syscall of every process
    /// on the machine on the kernel's slow path (redis-server keeps about
    /// 0.82-0.90 of its untraced requests/s with them, 0.95 without).
    #[arg(long)]
    pub kernel_syscalls: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Probe hits per measurement round.
    #[arg(long, default_value_t = 200_000)]
    pub iterations: u32,
    /// Measurement rounds (the report gives their median).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BreakdownArgs {
    /// hakmem-bench scenario (see `hakmem-bench list`).
    #[arg(long)]
    pub scenario: String,
    /// Measured runs per configuration (each its own process; the noise is their
    /// spread). On a VM a process's speed is bimodal: small-churn's runs of one
    /// configuration read 12-16 or 20-23 ns/op by the process, its baseline's
    /// 4.5-5.3 or 6-8.6, and the traced runs alike, so a median of a few runs
    /// jumps between the modes; 20 keep traced and isolation figures within 20%
    /// of each other in most breakdowns, 40 in nine of ten.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Uncounted warm-up runs per configuration.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Traced runs of the default (and the global-BigCache) configuration (see
    /// --runs for why this many).
    #[arg(long, default_value_t = 20)]
    pub trace_runs: usize,
    /// Amount of work per run, passed to hakmem-bench: tiny, small, default or large.
    #[arg(long, default_value = "default")]
    pub size: String,
    /// Amount of work of the traced runs [default: --size]. Every probe hit slows
    /// the traced run by the calibrated hit cost, so a smaller size keeps
    /// small-block scenarios quick; figures are per operation either way.
    #[arg(long)]
    pub trace_size: Option<String>,
    /// Worker threads for multi-threaded scenarios [default: hakmem-bench's].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run probe-cli and every measured process in the real-time class
    /// (SCHED_FIFO 1; root or CAP_SYS_NICE). On a machine shared with other work a
    /// time-shared process is preempted for milliseconds at a time, and every
    /// preemption that lands inside a timed region stretches it; the kernel's RT
    /// throttling still leaves other tasks 5% of each CPU.
    #[arg(long)]
    pub realtime: bool,
    /// The hakmem-bench binary [default: next to probe-cli, or target/release].
    #[arg(long, value_name = "PATH", env = "HAKMEM_BENCH")]
    pub bench: Option<PathBuf>,
    /// Print the breakdown as JSON (with a schema_version) instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Also write a chart of the two estimates per component as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also write the tables as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Also write breakdown.txt, .json, .md and .svg into DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// A positive, finite number of seconds, or a usage error naming the option.
pub fn seconds(
    name: &str,
    value: Option<f64>,
) -> crate::error::Result<Option<std::time::Duration>> {
    match value {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(std::time::Duration::from_secs_f64(s))),
        Some(s) => Err(crate::error::Error::Usage(format!(
            "--{name} must be a positive number of seconds, not {s}"
        ))),
    }
}
