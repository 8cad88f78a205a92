//! Starting one measured child: this same binary, re-executed as
//! `hakmem-bench run … --json` with its allocator chosen through the
//! environment, and its syscalls counted from outside.

use crate::allocators::{Allocator, Kind};
use crate::cli::Common;
use crate::dispatch::{self, Backend};
use crate::model::{ChildReport, RunReport, Syscalls};
use crate::protocol::{self, ChildArgs};
use crate::scenarios::Scenario;
use crate::syscount::{self, Method, PerfCounters};
use std::path::PathBuf;
use std::process::Command;

/// Every child's argv and environment add up to this many bytes, in this many
/// variables, whatever its allocator's name and variables (see [`stack_padding`]).
const STACK_BYTES: usize = 1024;
const STACK_VARS: usize = 4;

/// Padding variables that give every child the same initial stack layout.
///
/// argv and the environment sit at the top of the initial stack, so their size
/// moves the alignment of everything below, and with it the speed of code that
/// takes a few ns per call (Mytkowicz et al., "Producing wrong data without doing
/// anything obviously wrong!", ASPLOS 2009). Measured here: the same libhakmem.so
/// ran small-churn 30% slower preloaded under a 2-byte longer file name.
fn stack_padding(name: &str, own: &[(&str, &str)]) -> Vec<(String, String)> {
    let used: usize = name.len()
        + own
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
    let vars = STACK_VARS.saturating_sub(own.len()).max(1);
    let mut left = STACK_BYTES.saturating_sub(used);
    (0..vars)
        .map(|i| {
            let key = format!("HAKMEM_BENCH_PAD{i}");
            let fill = if i + 1 == vars {
                left.saturating_sub(key.len() + 2)
            } else {
                0
            };
            left = left.saturating_sub(key.len() + 2 + fill);
            (key, "x".repeat(fill))
        })
        .collect()
}

/// Run `scenario` (its allocation-free baseline with `baseline`) with
/// `allocator` in a fresh child and collect its report.
pub fn run_child(
    scenario: &Scenario,
    allocator: &Allocator,
    common: &Common,
    method: &Method,
    baseline: bool,
) -> Result<RunReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let strace_output = tempfile_path("strace");
    let mut command = match method {
        Method::Strace(strace) => {
            let mut c = Command::new(strace);
            c.args(["-f", "-c", "-qq", "-o"])
                .arg(&strace_output)
                .arg("--")
                .arg(&exe);
            c
        }
        _ => Command::new(&exe),
    };
    let args = ChildArgs {
        scenario: scenario.name.to_string(),
        allocator: allocator.name.clone(),
        size: common.size.name().to_string(),
        idle_ms: common.idle_ms,
        threads: Some(common.threads.unwrap_or(1)),
    };
    command.args(args.argv());
    let mut own: Vec<(&str, &str)> = match &allocator.kind {
        Kind::Linked { backend, env } => {
            let mut v = vec![(dispatch::ENV_VAR, backend.env_value())];
            v.extend(env.iter().copied());
            v
        }
        Kind::Preload { library, .. } => vec![
            (dispatch::ENV_VAR, Backend::System.env_value()),
            ("LD_PRELOAD", library.to_str().unwrap_or_default()),
        ],
    };
    if baseline {
        own.push((protocol::BASELINE_ENV, "true"));
    }
    protocol::apply(&mut command, &protocol::environment(&own, true));
    command.envs(stack_padding(&allocator.name, &own));

    let what = format!("{} with {}", scenario.name, allocator.name);
    let finished = protocol::run_gated(&mut command, |pid| match method {
        // Under strace the pid is strace's, so perf only runs without it.
        Method::Perf(ids) => PerfCounters::attach(pid, ids)
            .map(Some)
            .map_err(|e| format!("perf: {e}")),
        _ => Ok(None),
    })
    .map_err(|e| format!("{what}: {e}"))?;
    if !finished.status.success() {
        return Err(format!(
            "{what}: {}: {}",
            finished.status,
            finished.last_error_line()
        ));
    }
    let json = finished.report_line().unwrap_or("");
    let child_report: ChildReport =
        serde_json::from_str(json).map_err(|e| format!("{what}: bad child report ({e})"))?;
    let counters = finished.attached.flatten();

    let syscalls = match (method, counters) {
        (Method::Perf(_), Some(mut counters)) => Syscalls {
            source: method.label().into(),
            counts: counters.read(),
        },
        (Method::Strace(_), _) => {
            let text = std::fs::read_to_string(&strace_output).unwrap_or_default();
            let _ = std::fs::remove_file(&strace_output);
            Syscalls {
                source: method.label().into(),
                counts: syscount::parse_strace_summary(&text),
            }
        }
        _ => Syscalls {
            source: Method::Off.label().into(),
            counts: Default::default(),
        },
    };
    Ok(RunReport {
        child: child_report,
        syscalls,
    })
}

/// A per-process, per-call unique path in the temp directory.
fn tempfile_path(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "hakmem-bench-{}-{}-{tag}.txt",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
