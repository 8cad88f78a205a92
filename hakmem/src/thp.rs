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
//! one fault that zeroes 2 MiB + 8 faults of 4 KiB + `mincore` + `munmap`,
//! about 0.1–0.3 ms once per process, at its first large-block strategy
//! choice. Nothing here allocates through std or takes a lock: racing first
//! callers each measure and store the same kind of answer.
//!
//! # Whether they are worth asking for ([`worth_it`])
//!
//! Given is not cheap. On this project's VMs a huge page is often the
//! dearer way to fault memory in: the hypervisor takes back free guest
//! memory in 2 MiB blocks (free page reporting), exactly the blocks a huge
//! page needs, so a huge page's first write can pay 512 host faults. Timed
//! here (`MADV_HUGEPAGE`, one write per 4 KiB over 512 MiB): 0.9–3.0 ms a
//! MiB in huge pages against 0.57–0.66 ms in 4 KiB pages, single huge
//! faults of 0.2 ms (memory the host still backs) up to 11 ms; `perl`
//! building a 600 MiB hash under `LD_PRELOAD` spent 2.3 s in the kernel
//! with huge pages against 0.45 s without (6.3–7.7 s against 5.9–6.3 s).
//! So the cost is measured as the process goes: the probe times one huge
//! fault and 4 KiB faults beside it, and every first write hakmem itself
//! makes into memory advised for huge pages (a segment header, a span's
//! block header) is timed ([`note_first_touch`]; writes under 30 µs were
//! not huge faults and are left out). Timed in the thread's CPU time, so
//! that a thread preempted mid-fault does not count its wait; the host's
//! work on the fault counts (the vCPU runs it). Huge pages are worth asking for while
//! a huge fault costs at most half of what its 512 pages cost in 4 KiB
//! faults (half: a huge page is resident whole, 4 KiB pages only where
//! written); once the running mean (the newest weighing half) passes that
//! they are not, until it drops under a third (hysteresis), measured again
//! by a probe at most once a second while nothing else asks for them.

use crate::layout::HUGE_PAGE;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

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
/// Running mean of a huge page's first fault, ns (0 = none timed yet).
static HUGE_FAULT_NS: AtomicU64 = AtomicU64::new(0);
/// One 4 KiB fault, ns, timed by the probe (0 = not measured).
static SMALL_FAULT_NS: AtomicU64 = AtomicU64::new(0);
/// True while huge faults cost more than [`worth_it`] accepts.
static COSTLY: AtomicBool = AtomicBool::new(false);
/// When a huge fault was last timed (for the re-probe while costly), ns.
static LAST_SAMPLE_NS: AtomicU64 = AtomicU64::new(0);
/// Huge faults timed, and times the verdict turned costly (for the stats).
static SAMPLES: AtomicU64 = AtomicU64::new(0);
static TURNED_COSTLY: AtomicU64 = AtomicU64::new(0);
/// Probes run again while costly.
static REPROBES: AtomicU64 = AtomicU64::new(0);

/// A timed first write shorter than this was no huge fault (a 4 KiB fault
/// with its page table takes a few µs; zeroing 2 MiB alone takes ~100).
const HUGE_FAULT_MIN_NS: u64 = 30_000;
/// While costly, a probe measures again at most this often.
const REPROBE_NS: u64 = 1_000_000_000;
/// 4 KiB faults the probe times.
const SMALL_PROBE_PAGES: usize = 8;
/// TSC cycles per 1,024 ns (`probe::now` units), calibrated across the
/// probe against the monotonic clock (0: no probe ran).
static TSC_PER_1024_NS: AtomicU64 = AtomicU64::new(0);

/// True if the kernel gives huge pages (measured on the first call).
#[inline]
pub fn granted() -> bool {
    verdict().granted
}

/// True if huge pages are worth asking for now: the kernel gives them, and
/// lately a huge fault cost at most half of its 512 pages in 4 KiB faults
/// (see the module docs). While they cost more, a probe measures again at
/// most once a second, from whichever caller comes first.
/// `HAKMEM_THP=grant` takes them as worth it too, without measuring.
pub fn worth_it() -> bool {
    let v = verdict();
    if !v.granted {
        return false;
    }
    if v.source == Source::Option || !COSTLY.load(Relaxed) {
        return true;
    }
    let now = crate::os::monotonic_ns();
    let last = LAST_SAMPLE_NS.load(Relaxed);
    if now.saturating_sub(last) >= REPROBE_NS
        && LAST_SAMPLE_NS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    {
        REPROBES.fetch_add(1, Relaxed);
        if let Some(ns) = crate::os::keep_errno(sample_huge_fault) {
            note_first_touch(ns);
        }
    }
    !COSTLY.load(Relaxed)
}

/// Runs `write`, hakmem's first write into memory advised for huge pages
/// that nothing made resident (a segment's header, a span's block header),
/// and notes its time in the thread's CPU time ([`note_first_touch`]).
pub fn time_first_touch(write: impl FnOnce()) {
    note_first_touch(timed(write));
}

/// Notes the time of a first write into memory advised for huge pages that
/// nothing had made resident: a huge fault if it took
/// [`HUGE_FAULT_MIN_NS`] or more (shorter ones are left out).
pub fn note_first_touch(ns: u64) {
    if ns < HUGE_FAULT_MIN_NS {
        return;
    }
    SAMPLES.fetch_add(1, Relaxed);
    LAST_SAMPLE_NS.store(crate::os::monotonic_ns(), Relaxed);
    // Racing updates may lose one sample: a statistic, not a count.
    let mean = running_mean(HUGE_FAULT_NS.load(Relaxed), ns);
    HUGE_FAULT_NS.store(mean, Relaxed);
    let costly = COSTLY.load(Relaxed);
    let now = too_costly(costly, mean, SMALL_FAULT_NS.load(Relaxed));
    if now != costly {
        COSTLY.store(now, Relaxed);
        if now {
            TURNED_COSTLY.fetch_add(1, Relaxed);
        }
    }
}

/// The running mean after `ns`: the newest weighs half (0 = none yet), so
/// that a few cheap faults after a costly spell bring huge pages back.
fn running_mean(old: u64, ns: u64) -> u64 {
    if old == 0 {
        ns
    } else {
        old / 2 + ns / 2
    }
}

/// Whether huge faults of `mean` ns are too costly beside 4 KiB faults of
/// `small` ns (0: not measured, so never), given whether they were: they
/// turn so above half of 512 small faults and back under a third.
fn too_costly(was: bool, mean: u64, small: u64) -> bool {
    if small == 0 {
        return false;
    }
    let pages = (HUGE_PAGE / crate::os::OS_PAGE) as u64;
    if was {
        mean * 3 > small * pages
    } else {
        mean * 2 > small * pages
    }
}

/// One 4 KiB fault in `probe::now` units (TSC cycles), as the probe timed
/// it: what the ELO learner charges a page fault (`large::elo::fault_cycles`).
/// None where no probe ran (a kernel without huge pages, `HAKMEM_THP`).
pub fn small_fault_cycles() -> Option<u64> {
    let ns = SMALL_FAULT_NS.load(Relaxed);
    let rate = TSC_PER_1024_NS.load(Relaxed);
    (ns != 0 && rate != 0).then(|| (ns * rate / 1024).max(1))
}

/// What the cost meter has seen (for the stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Running mean of a huge page's first fault, ns (0: none timed).
    pub huge_fault_ns: u64,
    /// One 4 KiB fault, ns, as the probe timed it (0: no probe).
    pub small_fault_ns: u64,
    /// Huge faults timed.
    pub samples: u64,
    /// Times huge pages turned too costly to ask for.
    pub turned_costly: u64,
    /// Probes run again while they were.
    pub reprobes: u64,
    /// True while they are.
    pub costly: bool,
}

/// The cost meter's readings.
pub fn cost() -> Cost {
    Cost {
        huge_fault_ns: HUGE_FAULT_NS.load(Relaxed),
        small_fault_ns: SMALL_FAULT_NS.load(Relaxed),
        samples: SAMPLES.load(Relaxed),
        turned_costly: TURNED_COSTLY.load(Relaxed),
        reprobes: REPROBES.load(Relaxed),
        costly: COSTLY.load(Relaxed),
    }
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
    let (ns0, tsc0) = (crate::os::monotonic_ns(), crate::probe::now());
    let Some((pages, ns)) = with_probe_mapping(|raw, a| {
        let mut pages = 0;
        let mut ns = 0;
        if crate::vm::advise_thp(a as *mut u8, HUGE_PAGE, true) {
            ns = first_write_ns(a);
            let mut vec = [0u8; HUGE_PAGE / crate::os::OS_PAGE];
            pages = crate::os::resident_pages(a as *mut u8, HUGE_PAGE, &mut vec).unwrap_or(0);
        }
        // 4 KiB faults beside it, in the mapping's other part, advised off
        // so that `always` mode cannot make them huge.
        let len = SMALL_PROBE_PAGES * crate::os::OS_PAGE;
        let other = if a - raw >= len { raw } else { a + HUGE_PAGE };
        if crate::vm::advise_thp(other as *mut u8, len, false) {
            let took = timed(|| {
                for i in 0..SMALL_PROBE_PAGES {
                    // SAFETY: inside the probe's mapping: the part before the
                    // aligned half if it holds `len` bytes, else the part
                    // after it, which then holds more than 2 MiB less `len`.
                    unsafe { ((other + i * crate::os::OS_PAGE) as *mut u8).write_volatile(1) };
                }
            });
            SMALL_FAULT_NS.store((took / SMALL_PROBE_PAGES as u64).max(1), Relaxed);
        }
        (pages, ns)
    }) else {
        return false;
    };
    // The probe's 0.1 ms or more calibrates the TSC to ~0.1%.
    let (ns1, tsc1) = (crate::os::monotonic_ns(), crate::probe::now());
    if ns1 > ns0 && tsc1 > tsc0 {
        TSC_PER_1024_NS.store(((tsc1 - tsc0) * 1024 / (ns1 - ns0)).max(1), Relaxed);
    }
    PROBE_PAGES.store(pages as u64, Relaxed);
    FIRST_FAULT_NS.store(ns, Relaxed);
    let granted = pages == HUGE_PAGE / crate::os::OS_PAGE;
    if granted {
        note_first_touch(ns);
    }
    granted
}

/// A fresh 2 MiB range advised for huge pages, written once and timed, then
/// unmapped: the re-probe while huge pages are costly. None if a step
/// failed.
fn sample_huge_fault() -> Option<u64> {
    with_probe_mapping(|_, a| {
        crate::vm::advise_thp(a as *mut u8, HUGE_PAGE, true).then(|| first_write_ns(a))
    })
    .flatten()
}

/// Maps 4 MiB for a probe, runs `f` with its start and its 2 MiB-aligned
/// half, and unmaps it. None if the mapping failed.
fn with_probe_mapping<T>(f: impl FnOnce(usize, usize) -> T) -> Option<T> {
    let raw = crate::vm::map_transient(2 * HUGE_PAGE)?;
    let a = (raw as usize + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
    let r = f(raw as usize, a);
    // SAFETY: the probe's own mapping, used by nothing else.
    unsafe { crate::vm::unmap_transient(raw, 2 * HUGE_PAGE) };
    Some(r)
}

/// Nanoseconds one write to the untouched byte at `a` takes.
fn first_write_ns(a: usize) -> u64 {
    // SAFETY: the callers pass the first byte of the aligned half of their
    // own fresh mapping.
    timed(|| unsafe { (a as *mut u8).write_volatile(1) })
}

/// The thread CPU time `f` takes, ns.
fn timed(f: impl FnOnce()) -> u64 {
    let t = crate::os::thread_cpu_ns();
    f();
    crate::os::thread_cpu_ns() - t
}

/// Test hook: answer `granted` from now on, as `HAKMEM_THP` would.
#[doc(hidden)]
pub fn set_for_test(granted: bool) {
    STATE.store(encode(granted, Source::Option), Relaxed);
}

/// Test hook: a 4 KiB fault costs `small_ns`, and the huge faults timed so
/// far are forgotten (the next [`note_first_touch`] sets the mean).
#[doc(hidden)]
pub fn set_fault_costs_for_test(small_ns: u64) {
    SMALL_FAULT_NS.store(small_ns, Relaxed);
    HUGE_FAULT_NS.store(0, Relaxed);
    COSTLY.store(false, Relaxed);
    LAST_SAMPLE_NS.store(crate::os::monotonic_ns(), Relaxed);
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
    fn huge_faults_turn_too_costly_above_half_their_small_faults_and_back_under_a_third() {
        // 4 KiB faults of 2 us: 512 of them cost 1,024 us.
        let small = 2_000;
        assert!(!too_costly(false, 512_000, small), "half: still worth it");
        assert!(too_costly(false, 512_001, small));
        assert!(too_costly(true, 400_000, small), "hysteresis: stays costly");
        assert!(too_costly(true, 341_334, small));
        assert!(!too_costly(true, 341_333, small), "a third: worth it again");
        assert!(
            !too_costly(false, u64::MAX / 8, 0),
            "no 4 KiB cost measured"
        );
        // The mean: the first sample, then half of each new one.
        assert_eq!(running_mean(0, 300_000), 300_000);
        assert_eq!(running_mean(300_000, 8_300_000), 4_300_000);
        // A slow fault after a fast probe turns it costly; after two slow
        // ones, seven cheap ones bring it back (this VM: 0.2-0.3 ms when the host backs the memory,
        // 3-11 ms when it took it back).
        let (mut mean, mut costly) = (running_mean(0, 250_000), false);
        let mut seen = Vec::new();
        let cheap = [250_000; 7];
        for ns in [9_000_000, 8_000_000].into_iter().chain(cheap) {
            mean = running_mean(mean, ns);
            costly = too_costly(costly, mean, small);
            seen.push(costly);
        }
        assert_eq!(
            seen,
            [true, true, true, true, true, true, true, true, false]
        );
    }

    #[test]
    fn the_probe_prices_a_small_fault_in_tsc_cycles() {
        probe();
        let ns = SMALL_FAULT_NS.load(Relaxed);
        assert!(ns > 0, "the probe timed no 4 KiB fault");
        let cycles = small_fault_cycles().expect("calibrated");
        // TSC cycles per ns: a 0.5-6 GHz TSC, or 1 where `probe::now` is
        // the monotonic clock itself.
        let per_ns = cycles as f64 / ns as f64;
        assert!((0.4..8.0).contains(&per_ns), "{cycles} cycles for {ns} ns");
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
