//! Starting one measured child: this same binary, re-executed as
//! `hakmem-bench run … --json` with its allocator chosen through the
//! environment, and its syscalls counted from outside.

use crate::allocators::{Allocator, Kind, HAKMEM_VARIANT_VARS};
use crate::child::{CHILD_ENV, GATE_ENV, READY};
use crate::cli::Common;
use crate::dispatch::{self, Backend};
use crate::model::{ChildReport, RunReport, Syscalls};
use crate::scenarios::Scenario;
use crate::syscount::{self, Method, PerfCounters};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

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

/// Run `scenario` with `allocator` in a fresh child and collect its report.
pub fn run_child(
    scenario: &Scenario,
    allocator: &Allocator,
    common: &Common,
    method: &Method,
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
    command
        .args([
            "run",
            "--scenario",
            scenario.name,
            "--allocator",
            &allocator.name,
            "--json",
        ])
        .args(["--size", common.size.name()])
        .args(["--idle-ms", &common.idle_ms.to_string()])
        .args(["--threads", &common.threads.unwrap_or(1).to_string()])
        .args(["--syscalls", "off"])
        .env(CHILD_ENV, "1")
        .env(GATE_ENV, "1")
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in HAKMEM_VARIANT_VARS {
        command.env_remove(var);
    }
    let own: Vec<(&str, &str)> = match &allocator.kind {
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
    command.envs(own.iter().copied());
    command.envs(stack_padding(&allocator.name, &own));

    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start child: {e}"))?;
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
    if line.trim() == READY {
        if let Method::Perf(ids) = method {
            // Under strace the pid is strace's, so perf only runs without it.
            counters =
                Some(PerfCounters::attach(child.id(), ids).map_err(|e| format!("perf: {e}"))?);
        }
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let stderr_text = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        let last = stderr_text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!(
            "{} with {}: {status}: {last}",
            scenario.name, allocator.name
        ));
    }
    let json = rest
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    let child_report: ChildReport = serde_json::from_str(json).map_err(|e| {
        format!(
            "{} with {}: bad child report ({e})",
            scenario.name, allocator.name
        )
    })?;

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
