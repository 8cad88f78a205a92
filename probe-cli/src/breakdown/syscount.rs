//! Memory syscalls of an untraced child, counted from outside with perf
//! tracepoint counters on each of its threads — hakmem-bench's counting
//! (`hakmem_bench::syscount`, the same list the BPF trace watches), with its
//! failures mapped to probe-cli's exit codes.

use crate::error::{Error, Result};
use hakmem_bench::syscount::{self, PerfCounters, PerfError};
use std::collections::BTreeMap;

/// The tracepoint ids of the watched syscalls, checked to be countable (the
/// check keeps counters open for probe-cli's lifetime, so the kernel does not
/// unregister the tracepoints after every child).
pub struct Syscalls {
    ids: Vec<(&'static str, u64)>,
}

impl Syscalls {
    /// Finds the tracepoints and checks that counters may be opened on them.
    pub fn open() -> Result<Syscalls> {
        // Mounts tracefs where it is not mounted yet (a fresh machine), so the
        // tracepoint ids can be read.
        crate::tracefs::root()?;
        syscount::open_perf()
            .map(|ids| Syscalls { ids })
            .map_err(|e| match e {
                PerfError::NotPermitted(m) => Error::NotPermitted(m),
                PerfError::NoTracepoints(m) | PerfError::Other(m) => Error::Kernel(m),
            })
    }

    /// Attaches counters to every current thread of `pid`.
    pub fn attach(&self, pid: u32) -> Result<Attached> {
        PerfCounters::attach(pid, &self.ids)
            .map(Attached)
            .map_err(|e| Error::Kernel(format!("perf counters on {pid}: {e}")))
    }
}

/// Counters on one child.
pub struct Attached(PerfCounters);

impl Attached {
    /// Calls per syscall name; read after the child was reaped.
    pub fn read(mut self) -> BTreeMap<String, u64> {
        self.0.read()
    }
}
