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
}

/// Output options shared by the tracing commands.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print the reports as JSON (one object per report, with a schema_version).
    #[arg(long)]
    pub json: bool,
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
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Stop tracing after this many seconds and end the command (SIGTERM).
    #[arg(long, short, value_name = "S")]
    pub duration: Option<f64>,
    /// libhakmem.so to preload (default: next to probe-cli, or target/release/).
    #[arg(long, value_name = "PATH", env = "HAKMEM_PRELOAD_LIB")]
    pub preload: Option<PathBuf>,
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
