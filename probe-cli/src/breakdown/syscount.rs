//! Memory syscalls of an untraced child, counted from outside with perf
//! tracepoint counters (`syscalls:sys_enter_*`) on each of its threads, with
//! `inherit` so that threads it starts later are counted too. Read after the
//! child was reaped, when the kernel has folded exited threads into their parents.

use crate::error::{Error, Result};
use hakmem_ebpf::layout::SYSCALLS;
use perf_event::events::Tracepoint;
use perf_event::{Builder, Counter};
use std::collections::BTreeMap;

/// The tracepoint ids of the watched syscalls (the same list the BPF trace watches),
/// with counters on probe-cli itself kept open for its lifetime.
pub struct Syscalls {
    ids: Vec<(&'static str, u64)>,
    /// Holding a reference keeps the kernel from unregistering the tracepoints
    /// (and waiting for an RCU grace period, tens of ms) after every child.
    _keepalive: Vec<Counter>,
}

impl Syscalls {
    /// Finds the tracepoints and checks that counters may be opened on them.
    pub fn open() -> Result<Syscalls> {
        let root = crate::tracefs::root()?;
        if !root.join("events/syscalls").is_dir() {
            return Err(Error::Kernel(format!(
                "no syscall tracepoints in {} (CONFIG_FTRACE_SYSCALLS)",
                root.display()
            )));
        }
        let mut ids = Vec::new();
        let mut keepalive = Vec::new();
        for sc in SYSCALLS {
            let file = root.join(format!("events/syscalls/sys_enter_{}/id", sc.name));
            let id: u64 = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| Error::Kernel(format!("cannot read {}", file.display())))?;
            let counter = Builder::new(Tracepoint::with_id(id))
                .observe_self()
                .exclude_kernel(false)
                .build()
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EACCES) | Some(libc::EPERM) => Error::NotPermitted(format!(
                        "perf tracepoint counters: {e} (needs root or CAP_PERFMON)"
                    )),
                    _ => Error::Kernel(format!("perf tracepoint sys_enter_{}: {e}", sc.name)),
                })?;
            ids.push((sc.name, id));
            keepalive.push(counter);
        }
        Ok(Syscalls {
            ids,
            _keepalive: keepalive,
        })
    }

    /// Attaches counters to every current thread of `pid`.
    pub fn attach(&self, pid: u32) -> Result<Attached> {
        let mut counters = Vec::new();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|e| Error::Target(format!("/proc/{pid}/task: {e}")))?;
        for entry in tasks.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            for &(name, id) in &self.ids {
                let counter = Builder::new(Tracepoint::with_id(id))
                    .observe_pid(tid)
                    .any_cpu()
                    .inherit(true)
                    // Syscall tracepoints fire in kernel mode.
                    .exclude_kernel(false)
                    .enabled(true)
                    .build()
                    .map_err(|e| Error::Kernel(format!("perf counter on {tid}: {e}")))?;
                counters.push((name, counter));
            }
        }
        Ok(Attached { counters })
    }
}

/// Counters on one child.
pub struct Attached {
    counters: Vec<(&'static str, Counter)>,
}

impl Attached {
    /// Calls per syscall name; read after the child was reaped.
    pub fn read(mut self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> =
            SYSCALLS.iter().map(|s| (s.name.to_string(), 0)).collect();
        for (name, counter) in &mut self.counters {
            if let Some(n) = counts.get_mut(*name) {
                *n += counter.read().unwrap_or(0);
            }
        }
        counts
    }
}
