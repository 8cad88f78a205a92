//! The report's syscall section, from one of two sources: hakmem's own
//! memory syscalls, counted in the process (the default: it costs the
//! machine nothing), or the kernel's view of every memory syscall of the
//! traced processes (`--kernel-syscalls`: the raw_syscalls tracepoints,
//! which put every syscall of the machine on the kernel's slow path).

use crate::tsc::Tsc;
use hakmem_ebpf::layout::SYSCALLS;
use hakmem_ebpf::{ComponentStats, SyscallStats};
use serde::Serialize;

/// Where the syscall rows come from (`syscall_source` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyscallSource {
    /// hakmem's own mmap, munmap, madvise, mremap and mprotect calls, counted
    /// in the process ([`hakmem::probe::SYSCALL_COMPONENTS`]): exact, timed
    /// with the TSC around the call; what other code in the process calls is
    /// not in them.
    Hakmem,
    /// Every watched syscall of the traced processes, whoever in them makes
    /// it, counted and timed by the kernel's tracepoints.
    Kernel,
}

impl SyscallSource {
    /// The source in words, for the text report's section title.
    pub fn describe(self) -> &'static str {
        match self {
            SyscallSource::Hakmem => {
                "hakmem's own mmap/munmap/madvise/mremap/mprotect, counted in the process \
                 (exact; time between TSC reads around the call, less the timing floor); \
                 syscalls other code in the process makes are not in it \
                 (--kernel-syscalls counts those too, at a cost)"
            }
            SyscallSource::Kernel => {
                "every memory syscall of the traced processes, whoever in them makes it, \
                 from the kernel's raw_syscalls tracepoints (--kernel-syscalls)"
            }
        }
    }
}

/// One syscall's line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct SyscallRow {
    pub syscall: &'static str,
    /// Calls, exact.
    pub count: u64,
    pub total_ns: u64,
    pub mean_ns: f64,
    pub max_ns: u64,
    /// Calls that returned an error.
    pub failed: u64,
    /// Sum of the length argument of the successful calls (mremap: the new length).
    pub bytes: u64,
}

/// The kernel's view: one row per watched syscall (`hakmem_ebpf::layout::SYSCALLS`).
pub fn kernel_rows(stats: &[SyscallStats]) -> Vec<SyscallRow> {
    SYSCALLS
        .iter()
        .zip(stats)
        .map(|(sc, s)| SyscallRow {
            syscall: sc.name,
            count: s.count,
            total_ns: s.sum_ns,
            mean_ns: if s.count > 0 {
                s.sum_ns as f64 / s.count as f64
            } else {
                0.0
            },
            max_ns: s.max_ns,
            failed: s.failed,
            bytes: s.sum_bytes,
        })
        .collect()
}

/// hakmem's own calls: one row per syscall it makes, summed over the
/// components that count it (a failed call has `arg` 0); means net of
/// `floor_ns`, what timing an empty component records.
pub fn hakmem_rows(components: &[ComponentStats], tsc: Tsc, floor_ns: f64) -> Vec<SyscallRow> {
    hakmem::probe::SYSCALL_COMPONENTS
        .iter()
        .map(|&(name, ids)| {
            let mut total = ComponentStats::default();
            for &c in ids {
                if let Some(s) = components.get(c as usize) {
                    crate::probes::add_components(std::slice::from_mut(&mut total), &[*s]);
                }
            }
            // Timed on every call (weight 1): the histogram counts the timed ones.
            let timed: u64 = total.hist.iter().sum();
            let mean_ns = if timed > 0 {
                (tsc.ns(total.sum_cycles as f64) / timed as f64 - floor_ns).max(0.0)
            } else {
                0.0
            };
            SyscallRow {
                syscall: name,
                count: total.calls,
                total_ns: (mean_ns * total.calls as f64) as u64,
                mean_ns,
                max_ns: tsc.ns(total.max_cycles as f64) as u64,
                failed: total.calls.saturating_sub(total.nonzero_arg),
                bytes: total.sum_arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakmem::probe::Component;

    #[test]
    fn hakmem_rows_sum_the_components_of_each_syscall() {
        let mut c = vec![ComponentStats::default(); hakmem_ebpf::layout::MAX_COMPONENTS];
        let set = |c: &mut Vec<ComponentStats>, id: Component, calls, arg, nonzero| {
            let s = &mut c[id as usize];
            s.calls = calls;
            s.sum_arg = arg;
            s.nonzero_arg = nonzero;
            s.timed = calls;
            s.sum_cycles = 1000 * calls;
            s.max_cycles = 3000;
            s.hist[9] = calls;
        };
        set(&mut c, Component::OsMap, 3, 3 << 20, 3);
        set(&mut c, Component::OsPurge, 2, 8192, 2);
        set(&mut c, Component::OsAdvise, 4, 4096, 1);
        set(&mut c, Component::OsUnmap, 1, 0, 0);
        let tsc = Tsc { ticks_per_ns: 1.0 };
        let rows = hakmem_rows(&c, tsc, 100.0);
        let row = |n: &str| rows.iter().find(|r| r.syscall == n).unwrap();
        assert_eq!(row("mmap").count, 3);
        assert_eq!(row("mmap").bytes, 3 << 20);
        assert_eq!(
            row("mmap").mean_ns,
            900.0,
            "1,000 cycles at 1 GHz less the floor"
        );
        assert_eq!(row("madvise").count, 6, "purges and other advice");
        assert_eq!(row("madvise").bytes, 12288);
        assert_eq!(row("madvise").failed, 3);
        assert_eq!(row("munmap").failed, 1);
        assert_eq!(row("mremap").count, 0);
        assert!(
            rows.iter().all(|r| r.syscall != "brk"),
            "hakmem never calls brk"
        );
    }
}
