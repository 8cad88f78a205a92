//! Whether the kernel gives transparent huge pages to this process, measured
//! once, lazily, before any strategy relies on them.
//!
//! The answer decides whether the large-block strategies that ask for huge
//! pages (`large::elo`) may be the default and may be explored: advice the
//! kernel ignores only costs a `madvise`, and an unmeasured default is a guess.
//!
//! How it is measured (in this order, the first answer wins):
//! 1. `HAKMEM_THP=grant` or `refuse` ([`crate::options`]) forces the answer
//!    (tests inject a refusing kernel this way).
//! 2. `/sys/kernel/mm/transparent_hugepage/enabled` reading `[never]`: refused,
//!    with no probe. A missing file (a kernel without THP) is also a refusal.
//! 3. The probe: map 4 MiB, take its 2 MiB-aligned half, `MADV_HUGEPAGE` it,
//!    write one byte, and ask `mincore` how many of its 512 pages are now
//!    resident. One write fault on private anonymous memory maps exactly one
//!    4 KiB page (fault-around is for file pages only) unless the kernel put a
//!    huge page there, so 512 resident pages after one touch is a huge page,
//!    and anything less is not (a smaller multi-size THP folio counts as
//!    refused: the strategies ask for 2 MiB). This is what the sysfs setting
//!    cannot say: `madvise` mode with no free 2 MiB block, `defrag` settings,
//!    a container's limits. The time of that first fault is kept for the stats
//!    (here: ~100 µs for the 2 MiB zeroing, against ~3 µs for a 4 KiB fault).
//!    Chosen over reading `AnonHugePages` from `/proc/self/smaps` (a long
//!    file to parse on the stack) and over timing alone (noisy on a shared
//!    VM): `mincore` gives an exact page count in one syscall.
//!
//! Cost: one `open`+`read` of sysfs, and for the probe `mmap` + `madvise` +
//! one fault that zeroes 2 MiB + `mincore` + `munmap`, about 0.1–0.3 ms once
//! per process, at its first large-block strategy choice. Nothing here
//! allocates through std or takes a lock: racing first callers each measure
//! and store the same kind of answer.

use crate::layout::HUGE_PAGE;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// Where the answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `HAKMEM_THP=grant|refuse`, or a test hook.
    Option,
    /// The sysfs setting (`never`, or no THP support at all).
    Sysfs,
    /// The probe's page count.
    Probe,
}

/// The measured answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// True if a 2 MiB range advised `MADV_HUGEPAGE` gets a huge page.
    pub granted: bool,
    /// How that was found out.
    pub source: Source,
    /// Pages of the probe's 2 MiB range resident after its one write (512 =
    /// a huge page); 0 when there was no probe.
    pub probe_pages: u32,
    /// Nanoseconds the probe's first write took (0 when there was no probe).
    pub first_fault_ns: u64,
}

/// 0 = not measured yet; else `1 + granted + 2 × source`.
static STATE: AtomicU8 = AtomicU8::new(0);
static PROBE_PAGES: AtomicU64 = AtomicU64::new(0);
static FIRST_FAULT_NS: AtomicU64 = AtomicU64::new(0);

/// True if the kernel gives huge pages (measured on the first call).
#[inline]
pub fn granted() -> bool {
    verdict().granted
}

/// The measured answer (measured on the first call).
pub fn verdict() -> Verdict {
    let mut s = STATE.load(Relaxed);
    if s == 0 {
        s = measure();
    }
    decode(s)
}

/// The part of `[start, end)` made of whole huge pages where the kernel gives
/// them (`[start, end)` itself where it does not): what a purge of a range
/// that may hold huge pages covers so as not to split one. A purge of part
/// of a 2 MiB page splits it, and the kernel then faults the rest of that
/// range in 4 KiB at a time (until khugepaged collapses it again): a span
/// purged while the program was busy made `large-varied` refault ranges 512
/// faults at a time. Empty (`start >= end`) when no whole huge page lies inside.
pub fn whole_huge_pages(start: usize, end: usize) -> (usize, usize) {
    if !granted() {
        return (start, end);
    }
    (
        (start + HUGE_PAGE - 1) & !(HUGE_PAGE - 1),
        end & !(HUGE_PAGE - 1),
    )
}

/// The answer if it has been measured, without measuring (for reports).
pub fn measured() -> Option<Verdict> {
    match STATE.load(Relaxed) {
        0 => None,
        s => Some(decode(s)),
    }
}

fn encode(granted: bool, source: Source) -> u8 {
    1 + granted as u8 + 2 * source as u8
}

fn decode(s: u8) -> Verdict {
    let v = s - 1;
    Verdict {
        granted: v & 1 != 0,
        source: match v >> 1 {
            0 => Source::Option,
            1 => Source::Sysfs,
            _ => Source::Probe,
        },
        probe_pages: PROBE_PAGES.load(Relaxed) as u32,
        first_fault_ns: FIRST_FAULT_NS.load(Relaxed),
    }
}

#[cold]
fn measure() -> u8 {
    // A missing sysfs file or a refused madvise must not leave errno set
    // under a malloc that succeeds.
    crate::os::keep_errno(measure_inner)
}

fn measure_inner() -> u8 {
    use crate::options::Thp;
    let s = match crate::options::get().thp {
        Thp::Grant => encode(true, Source::Option),
        Thp::Refuse => encode(false, Source::Option),
        Thp::Probe => match sysfs_allows() {
            false => encode(false, Source::Sysfs),
            true => encode(probe(), Source::Probe),
        },
    };
    STATE.store(s, Relaxed);
    s
}

/// False if sysfs says `[never]` or has no THP setting at all.
fn sysfs_allows() -> bool {
    let mut buf = [0u8; 64];
    let Some(n) = crate::os::read_file(c"/sys/kernel/mm/transparent_hugepage/enabled", &mut buf)
    else {
        return false;
    };
    !buf[..n].windows(7).any(|w| w == b"[never]")
}

/// The probe (see the module docs). False if any step fails.
fn probe() -> bool {
    let Some(raw) = crate::vm::map_transient(2 * HUGE_PAGE) else {
        return false;
    };
    let a = (raw as usize + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
    let mut pages = 0;
    let mut ns = 0;
    if crate::vm::advise_thp(a as *mut u8, HUGE_PAGE, true) {
        let t = crate::os::monotonic_ns();
        // SAFETY: the first byte of the fresh mapping's aligned half.
        unsafe { (a as *mut u8).write_volatile(1) };
        ns = crate::os::monotonic_ns() - t;
        let mut vec = [0u8; HUGE_PAGE / crate::os::OS_PAGE];
        pages = crate::os::resident_pages(a as *mut u8, HUGE_PAGE, &mut vec).unwrap_or(0);
    }
    // SAFETY: the probe's own mapping, used by nothing else.
    unsafe { crate::vm::unmap_transient(raw, 2 * HUGE_PAGE) };
    PROBE_PAGES.store(pages as u64, Relaxed);
    FIRST_FAULT_NS.store(ns, Relaxed);
    pages == HUGE_PAGE / crate::os::OS_PAGE
}

/// Test hook: answer `granted` from now on, as `HAKMEM_THP` would.
#[doc(hidden)]
pub fn set_for_test(granted: bool) {
    STATE.store(encode(granted, Source::Option), Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        for granted in [false, true] {
            for source in [Source::Option, Source::Sysfs, Source::Probe] {
                let v = decode(encode(granted, source));
                assert_eq!((v.granted, v.source), (granted, source));
            }
        }
    }

    #[test]
    fn the_probe_agrees_with_the_kernel_setting() {
        // Whatever this machine answers, a probe that grants must have seen
        // the whole 2 MiB resident, and `never` must never be granted.
        let granted = probe();
        let pages = PROBE_PAGES.load(Relaxed);
        assert_eq!(granted, pages == 512, "{pages} pages resident");
        if !sysfs_allows() {
            assert!(!granted, "sysfs says never but the probe got a huge page");
        }
    }
}
