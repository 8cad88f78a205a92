//! `--features test-delay` only: known costs that probe-cli's breakdown tests
//! must find. ELO selection spins `HAKMEM_TEST_DELAY_NS` ns, a small
//! allocation served from the free list `HAKMEM_TEST_SMALL_DELAY_NS` ns (both
//! read once, without allocating; unset or 0: no delay).

use crate::{options, os};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A delay read from the environment variable `name` (0 when unset or not
/// a number), cached in `cache` (`u64::MAX` until read).
fn configured(name: &str, cache: &AtomicU64) -> u64 {
    let mut ns = cache.load(Relaxed);
    if ns == u64::MAX {
        ns = options::getenv(name)
            .and_then(options::parse_u64)
            .unwrap_or(0);
        cache.store(ns, Relaxed);
    }
    ns
}

/// ELO selection's delay: spins on the monotonic clock (microseconds).
pub fn elo() {
    static NS: AtomicU64 = AtomicU64::new(u64::MAX);
    let ns = configured("HAKMEM_TEST_DELAY_NS", &NS);
    let end = os::monotonic_ns().saturating_add(ns);
    while os::monotonic_ns() < end {
        core::hint::spin_loop();
    }
}

/// TSC cycles per 1024 ns, measured once over 2 ms (0: not yet).
static CYCLES_PER_US: AtomicU64 = AtomicU64::new(0);

fn cycles_per_1024_ns() -> u64 {
    let c = CYCLES_PER_US.load(Relaxed);
    if c != 0 {
        return c;
    }
    let (t0, c0) = (os::monotonic_ns(), crate::probe::now());
    while os::monotonic_ns() < t0 + 2_000_000 {
        core::hint::spin_loop();
    }
    let (t1, c1) = (os::monotonic_ns(), crate::probe::now());
    let c = ((c1 - c0) * 1024 / (t1 - t0).max(1)).max(1);
    CYCLES_PER_US.store(c, Relaxed);
    c
}

/// A small allocation's delay: tens of ns, spun on the TSC (a clock_gettime
/// call alone costs about that much). x86-64 only, like the probes' timing.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub fn small() {
    static NS: AtomicU64 = AtomicU64::new(u64::MAX);
    let ns = configured("HAKMEM_TEST_SMALL_DELAY_NS", &NS);
    if ns == 0 {
        return;
    }
    // A bare rdtsc: the spin ends within one TSC step (~10 ns here) of the
    // target; the serialised probe::now() costs ~30 ns an iteration.
    // SAFETY: rdtsc has no preconditions on x86-64.
    let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
    let end = tsc() + ns * cycles_per_1024_ns() / 1024;
    while tsc() < end {
        core::hint::spin_loop();
    }
}
