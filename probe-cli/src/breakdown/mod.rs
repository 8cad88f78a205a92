//! `probe-cli breakdown --scenario S`: the origin analysis's overhead table
//! (seed/phase-6.7-overhead-analysis.md, sections 2 and 8), measured two
//! independent ways and checked against each other.
//!
//! 1. Feature isolation: the hakmem-bench scenario runs untraced in its own
//!    process per configuration (`configs.rs`: default, global BigCache, no
//!    BigCache, no ELO, frozen, minimal), interleaved round by round, with its
//!    memory syscalls counted by perf tracepoint counters (`syscount.rs`).
//! 2. Probes: the default and global configurations run again under
//!    `probe-cli run`'s tracer (`traced.rs`), one traced run of each at the
//!    end of every measured round (then the rest, if `--trace-runs` is the
//!    larger); component totals per operation, calibrated (`estimate.rs`).
//!
//! `estimate.rs` turns both into rows; `render.rs` and `svg.rs` show them.

mod bench;
mod configs;
mod estimate;
mod model;
mod render;
mod svg;
mod syscount;
mod traced;

use crate::cli::BreakdownArgs;
use crate::error::{Error, Result};
use estimate::{PlainRun, TracedRun};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// hakmem-bench's sizes.
const SIZES: &[&str] = &["tiny", "small", "default", "large"];

/// Probe hits per round of the calibration made before the runs.
const CALIBRATION: (u32, u32) = (50_000, 3);

fn check_size(option: &str, size: &str) -> Result<()> {
    if SIZES.contains(&size) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--{option} must be one of {}, not {size}",
            SIZES.join(", ")
        )))
    }
}

/// A usage error unless `hakmem-bench list` names `scenario`: checked before
/// anything touches the kernel, so a typo exits 2 on any machine.
fn check_scenario(bench: &Path, scenario: &str) -> Result<()> {
    let out = std::process::Command::new(bench)
        .arg("list")
        .output()
        .map_err(|e| Error::Target(format!("running {} list: {e}", bench.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("scenarios:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if names.is_empty() || names.contains(&scenario) {
        // An unreadable list is not the user's mistake: the run will say more.
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "unknown scenario {scenario} (hakmem-bench list: {})",
            names.join(", ")
        )))
    }
}

/// Runs the breakdown command.
pub fn run(args: BreakdownArgs) -> Result<()> {
    if args.runs == 0 || args.trace_runs == 0 {
        return Err(Error::Usage(
            "--runs and --trace-runs must be at least 1".into(),
        ));
    }
    if args.threads == Some(0) {
        return Err(Error::Usage("--threads must be at least 1".into()));
    }
    check_size("size", &args.size)?;
    let trace_size = args.trace_size.clone().unwrap_or_else(|| args.size.clone());
    check_size("trace-size", &trace_size)?;
    let workload = bench::Workload {
        bench: bench::locate(args.bench.clone())?,
        scenario: args.scenario.clone(),
        threads: args.threads,
    };
    check_scenario(&workload.bench, &args.scenario)?;
    crate::privileges::check(true)?;
    if args.realtime {
        realtime()?;
    }
    let syscalls = syscount::Syscalls::open()?;
    let stop = crate::trace::stop_flag()?;

    let c = crate::calibrate::measure(CALIBRATION.0, CALIBRATION.1)?;
    let calibration = model::Calibration {
        probe_hit_ns: c.probe_hit_ns,
        empty_component_ns: c.empty_component_ns,
        empty_operation_ns: c.empty_operation_ns,
        nested_component_ns: c.nested_component_ns,
    };

    let has_baseline =
        hakmem_bench::scenarios::find(&args.scenario).is_some_and(|s| s.baseline.is_some());
    let run_configs = configs::for_scenario(has_baseline);
    let rounds = args.warmup + args.runs;
    let steps = run_configs.len() * rounds + configs::TRACED.len() * args.trace_runs;
    let progress = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    progress.set_prefix(format!("breakdown {}", args.scenario));
    // indicatif draws nothing when stderr is not a terminal (CI logs): one line
    // per round and per traced run there instead.
    let lines = !std::io::stderr().is_terminal();
    let say = |what: String| {
        if lines {
            eprintln!(
                "probe-cli: breakdown {}: {what} ({:.0} s)",
                args.scenario,
                progress.elapsed().as_secs_f64()
            );
        }
    };
    let interrupted = |stop: &AtomicBool| {
        if stop.load(Ordering::Relaxed) {
            Err(Error::Other("interrupted".into()))
        } else {
            Ok(())
        }
    };

    let mut plain: BTreeMap<&'static str, Vec<PlainRun>> = BTreeMap::new();
    let mut traces: BTreeMap<&'static str, Vec<TracedRun>> = BTreeMap::new();
    let mut threads = 0;
    let mut traced_done = 0;
    let trace_round = |traced_done: &mut usize,
                       traces: &mut BTreeMap<&'static str, Vec<TracedRun>>|
     -> Result<()> {
        let i = *traced_done;
        for config in configs::TRACED {
            interrupted(&stop)?;
            let what = format!("{} traced {}/{}", config.name, i + 1, args.trace_runs);
            say(what.clone());
            progress.set_message(what);
            let t = traced::run_once(&workload, config, &trace_size, &stop)
                .inspect_err(|_| progress.abandon())?;
            progress.inc(1);
            traces.entry(config.name).or_default().push(t.reduce());
        }
        *traced_done += 1;
        Ok(())
    };
    for round in 0..rounds {
        say(format!(
            "round {}/{rounds}{}",
            round + 1,
            if round < args.warmup {
                " (warm-up)"
            } else {
                ""
            }
        ));
        for config in &run_configs {
            interrupted(&stop)?;
            let label = if round < args.warmup {
                "warm-up"
            } else {
                "run"
            };
            progress.set_message(format!("{} {label}", config.name));
            let run = bench::run_once(&workload, config, &args.size, &syscalls)
                .inspect_err(|_| progress.abandon())?;
            progress.inc(1);
            threads = run.child.threads;
            if round >= args.warmup {
                plain.entry(config.name).or_default().push(PlainRun {
                    ops: run.child.ops,
                    ns_per_op: run.child.ns_per_op,
                    syscalls: run.syscalls,
                    page_faults: run.child.minflt + run.child.majflt,
                    peak_rss_kb: run.child.peak_rss_kb,
                    rss_after_kb: run.child.rss_after_kb,
                });
            }
        }
        // The traced runs take their turn in the same rounds: the machine's
        // state then meets both estimates alike. On this VM the first touch
        // of a huge page costs 0.3 ms on memory freed moments before and
        // 5-9 ms on memory the host has taken back, which happens to memory
        // left free for a second or two: traced runs batched after every
        // untraced one (each starting a tracer first) met the slow kind and
        // read `vm`'s header writes at 4.4 ms where the untraced runs' were
        // fast.
        if round >= args.warmup && traced_done < args.trace_runs {
            trace_round(&mut traced_done, &mut traces)?;
        }
    }
    while traced_done < args.trace_runs {
        trace_round(&mut traced_done, &mut traces)?;
    }
    progress.finish_and_clear();

    let summaries: Vec<model::ConfigSummary> = run_configs
        .iter()
        .map(|c| estimate::summarize_config(c, plain.get(c.name).map_or(&[][..], |v| v)))
        .collect();
    let default = &summaries[0];
    let rows = estimate::rows(&summaries, &traces);
    let hakmem_ns_per_op = rows
        .iter()
        .find(|r| r.key == "hakmem")
        .and_then(|r| r.probe.as_ref())
        .map(|p| p.ns_per_op);
    let breakdown = model::Breakdown {
        schema_version: model::SCHEMA_VERSION,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        scenario: args.scenario.clone(),
        size: args.size.clone(),
        trace_size,
        runs: args.runs,
        warmup: args.warmup,
        trace_runs: args.trace_runs,
        threads,
        bench: workload.bench.display().to_string(),
        realtime: args.realtime,
        calibration: calibration.clone(),
        total_ns_per_op: default.ns_per_op,
        total_noise_ns: default.noise_ns,
        hakmem_ns_per_op,
        rows,
        configs: summaries.clone(),
        traces: configs::TRACED
            .iter()
            .filter_map(|c| {
                traces
                    .get(c.name)
                    .map(|runs| estimate::summarize_trace(c.name, runs, &calibration))
            })
            .collect(),
    };
    write_outputs(&args, &breakdown)
}

/// Puts this process (and so every child it starts) in SCHED_FIFO at priority 1.
fn realtime() -> Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: plain syscall on this process with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) => {
                Error::NotPermitted("--realtime needs root or CAP_SYS_NICE".into())
            }
            _ => Error::Other(format!("--realtime: sched_setscheduler: {e}")),
        });
    }
    Ok(())
}

fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    std::fs::write(path, content)
        .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))
}

/// stdout (tables or JSON) and the requested files.
fn write_outputs(args: &BreakdownArgs, b: &model::Breakdown) -> Result<()> {
    let json = serde_json::to_string_pretty(b)
        .map_err(|e| Error::Other(format!("encoding JSON: {e}")))?
        + "\n";
    let text = render::text(b);
    let stdout = if args.json { &json } else { &text };
    // A closed pipe (probe-cli ... | head) is the reader's choice, not an error.
    let _ = std::io::stdout()
        .lock()
        .write_all(stdout.as_bytes())
        .and_then(|_| std::io::stdout().flush());
    if let Some(path) = &args.svg {
        svg::write(path, b).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = &args.markdown {
        write_file(path, render::markdown(b).as_bytes())?;
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Other(format!("creating {}: {e}", dir.display())))?;
        write_file(&dir.join("breakdown.txt"), text.as_bytes())?;
        write_file(&dir.join("breakdown.json"), json.as_bytes())?;
        write_file(&dir.join("breakdown.md"), render::markdown(b).as_bytes())?;
        let chart = dir.join("breakdown.svg");
        svg::write(&chart, b).map_err(|e| Error::Other(format!("{}: {e}", chart.display())))?;
        eprintln!(
            "probe-cli: wrote breakdown.{{txt,json,md,svg}} to {}",
            dir.display()
        );
    }
    Ok(())
}
