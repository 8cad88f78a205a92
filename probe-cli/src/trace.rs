//! `probe-cli trace --pid`: attach to a running process that uses hakmem, report
//! every interval and at the end, detach cleanly.

use crate::cli::{seconds, TraceArgs};
use crate::error::{Error, Result};
use crate::perf::{PerfCounters, Scope};
use crate::probes::Probes;
use crate::registration::Registration;
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
    let sink = session::open_sink(&args.output, session::DefaultStream::Stdout)?;
    let target = target::locate(args.pid)?;
    crate::privileges::check(true)?;
    let offset = target
        .elf
        .probe_offset
        .expect("located targets have the probe function");

    let calibration = session::quick_calibration();
    let mut probes = Probes::load(args.follow)?;
    probes.watch(target.pid)?;
    probes.attach_syscalls()?;
    probes.attach_lifetimes()?;
    // Following, the children map the same file: one uprobe for every process
    // that maps it, the traced set filtering in the kernel.
    let scope = (!args.follow).then_some(target.pid);
    probes.attach_final(&target.open_path, offset, scope)?;
    let perf = PerfCounters::open(target.pid, Scope::PerThread);
    let stop = stop_flag()?;
    let mut session = Session::new(
        target,
        probes,
        perf,
        Scope::PerThread,
        calibration,
        args.output,
        sink,
    );
    // The zero of the report, taken before hakmem counts for us.
    session.set_baseline()?;
    let target = &session.target;
    let (mut registration, others) = Registration::register(target)?;
    if others > 0 {
        eprintln!(
            "probe-cli: pid {} is already being traced ({others} other tracer(s)); \
             hakmem times itself until the last one detaches",
            target.pid
        );
    }
    if args.follow {
        if let Some(follow) = target.elf.trace_follow {
            target.write_u32(follow, 1)?;
        }
    }
    eprintln!(
        "probe-cli: tracing pid {} (hakmem in {}){}; Ctrl-C to stop",
        target.pid,
        target.hakmem_path.display(),
        if args.follow { " and its children" } else { "" }
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
    // Switch hakmem's timing off (unless another tracer still watches) before
    // the probes go; followed children inherited our count: take it back too.
    if args.follow && state == "detached" {
        if let Some(follow) = session.target.elf.trace_follow {
            let _ = session.target.write_u32(follow, 0);
        }
    }
    let final_report = session.snapshot(state, true);
    if args.follow {
        for child in session.live_children() {
            let mut inherited = Registration::inherited(&child);
            let _ = inherited.release();
        }
    }
    // A target that exited has nothing left to switch off (its memory may
    // already be gone while /proc still lists it).
    if let Err(e) = registration.release() {
        if state != "exited" {
            return Err(e);
        }
    }
    session.print(final_report?)
}
