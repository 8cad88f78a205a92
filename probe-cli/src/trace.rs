//! `probe-cli trace --pid`: attach to a running process that uses hakmem, report
//! every interval and at the end, detach cleanly.

use crate::cli::{seconds, TraceArgs};
use crate::error::{Error, Result};
use crate::perf::{PerfCounters, Scope};
use crate::probes::Probes;
use crate::session::{self, Session};
use crate::target;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the loop looks at Ctrl-C, the target and new threads.
const POLL: Duration = Duration::from_millis(50);

/// Sets the returned flag on SIGINT and SIGTERM, so the trace ends with a report.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(Error::other("installing the signal handler"))?;
    }
    Ok(flag)
}

/// Runs the trace command.
pub fn run(args: TraceArgs) -> Result<()> {
    let duration = seconds("duration", args.duration)?;
    let interval = seconds("interval", args.interval)?;
    let target = target::locate(args.pid)?;
    crate::privileges::check(true)?;
    let offset = target
        .elf
        .probe_offset
        .expect("located targets have the probe function");

    let hit_cost = session::quick_hit_cost();
    let mut probes = Probes::load(target.pid)?;
    probes.attach_syscalls()?;
    probes.attach_components(&target.open_path, offset)?;
    let perf = PerfCounters::open(target.pid, Scope::PerThread);
    if target.tracing().unwrap_or(false) {
        eprintln!("probe-cli: warning: hakmem in pid {} was already being traced; detaching will switch that off", target.pid);
    }
    target.set_tracing(true)?;
    eprintln!(
        "probe-cli: tracing pid {} (hakmem in {}); Ctrl-C to stop",
        target.pid,
        target.hakmem_path.display()
    );
    let stop = stop_flag()?;
    let mut session = Session::new(
        target,
        probes,
        perf,
        Scope::PerThread,
        hit_cost,
        args.output,
    );

    let start = Instant::now();
    let mut next_report = interval.map(|i| start + i);
    let state = loop {
        std::thread::sleep(POLL);
        if !target::alive(session.target.pid) {
            break "exited";
        }
        if stop.load(Ordering::Relaxed) || duration.is_some_and(|d| start.elapsed() >= d) {
            break "detached";
        }
        session.poll_threads();
        if let (Some(due), Some(every)) = (next_report, interval) {
            if Instant::now() >= due {
                session.report("running", false)?;
                next_report = Some(due + every);
            }
        }
    };
    // Switch hakmem's timing off before the probes go, so it never calls into a
    // probe that is half removed (harmless, but wasted work).
    if state == "detached" {
        if let Err(e) = session.target.set_tracing(false) {
            if target::alive(session.target.pid) {
                return Err(e);
            }
        }
    }
    session.report(state, true)
}
