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

/// Takes in the followed processes seen since the last call: a forked child
/// already counts this tracer (its copy of the flag and of the slots), a
/// program a child exec'd starts untraced and is registered now (its
/// allocations before this poll are not in the report).
fn adopt(session: &mut Session, followed: &mut Vec<Registration>) {
    for t in session.new_images() {
        let counted = t
            .elf
            .tracer_slots
            .and_then(|s| {
                (0..hakmem::probe::MAX_TRACERS as u64)
                    .map(|i| t.read_u32(s + 4 * i).ok())
                    .collect::<Option<Vec<u32>>>()
            })
            .is_some_and(|slots| slots.contains(&std::process::id()));
        if counted {
            followed.push(Registration::inherited(&t));
        } else if let Ok((r, _)) = Registration::register(&t) {
            if let Some(follow) = t.elf.trace_follow {
                let _ = t.write_u32(follow, 1);
            }
            followed.push(r);
        }
    }
}

/// Every live descendant of `pid`, from `/proc/PID/task/TID/children`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
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
    if args.follow {
        // The children it already has, and theirs; later ones join in the kernel.
        for child in descendants(target.pid) {
            probes.watch(child)?;
        }
    }
    if args.kernel_syscalls {
        probes.attach_syscalls()?;
    }
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

    let mut followed = Vec::new();
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
        session.refresh_if_due();
        if args.follow {
            adopt(&mut session, &mut followed);
        }
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
    if args.follow {
        adopt(&mut session, &mut followed);
    }
    let final_report = session.snapshot(state, true);
    for mut child in followed {
        let _ = child.release();
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
