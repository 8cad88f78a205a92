//! Converts hakmem's TSC cycle counts to nanoseconds, calibrated against CLOCK_MONOTONIC.

use std::time::{Duration, Instant};

/// TSC ticks per nanosecond on this machine.
#[derive(Clone, Copy, Debug)]
pub struct Tsc {
    /// Ticks per ns (the TSC frequency in GHz).
    pub ticks_per_ns: f64,
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl Tsc {
    /// Measures the TSC frequency over `window` of monotonic time (20 ms gives
    /// about 0.01% on an invariant TSC, which is what hakmem's figures need).
    pub fn calibrate(window: Duration) -> Tsc {
        let (t0, c0) = (Instant::now(), rdtsc());
        std::thread::sleep(window);
        let (c1, t1) = (rdtsc(), Instant::now());
        let ns = t1.duration_since(t0).as_nanos().max(1) as f64;
        Tsc {
            ticks_per_ns: (c1.wrapping_sub(c0)) as f64 / ns,
        }
    }

    /// `cycles` TSC ticks in ns.
    pub fn ns(&self, cycles: f64) -> f64 {
        if self.ticks_per_ns > 0.0 {
            cycles / self.ticks_per_ns
        } else {
            0.0
        }
    }
}
