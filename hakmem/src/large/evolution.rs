//! The evolution lifecycle: learn, then freeze on the best strategy.
//!
//! ```text
//!   learn ──(converged)──► frozen ──(workload shift)──► learn …
//! ```
//!
//! * **learn**: a BigCache miss chooses its strategy epsilon-greedy (`elo.rs`);
//!   a hit takes the cached best ([`best`]); one large allocation in
//!   [`LEARN_SAMPLE_EVERY`] per thread is measured.
//! * **converged** (the freeze criterion): at least [`MIN_MATCHES`] rated
//!   matches, the cached best unchanged for the last [`STABLE_MATCHES`], and its
//!   rating ahead of every other by [`MIN_LEAD`] points — or [`MAX_MATCHES`]
//!   played, after which more learning is not worth its cost — or 4 ×
//!   [`MAX_MATCHES`] samples with fewer than [`MIN_MATCHES`] matches (only one
//!   strategy is ever exercised, typically because the BigCache serves every
//!   block: nothing to compare, so freeze on the current best).
//! * **frozen**: selection is one load. One allocation in
//!   [`FROZEN_SAMPLE_EVERY`] is still measured to watch for a shift.
//! * **shift** (the detector): the first 8 frozen samples set a baseline; after
//!   that, the moving average cost leaves [½×, 2×] of the baseline (and moves
//!   by more than [`SHIFT_FLOOR_CYCLES`]), or the
//!   moving average of log2(size) moves by 2 or more (sizes 4× larger or
//!   smaller). Then back to learn, with the match counters restarted.
//!
//! `HAKMEM_EVO_POLICY=frozen` and `HAKMEM_DISABLE_ELO=1` (and `HAKMEM_MINIMAL=1`)
//! lock the lifecycle: frozen on the default strategy for the whole run, no
//! sampling at all.

use crate::large::elo::{self, Rng, RATINGS};
use crate::os;
use crate::probe::{self, Component};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

/// While learning, one large allocation in this many is measured.
pub const LEARN_SAMPLE_EVERY: u32 = 4;
/// A sample is two `getrusage(RUSAGE_THREAD)` calls (~0.4 µs each on these VMs):
/// at 1 in 64 that was 12 ns on every BigCache-hit malloc+free pair (24 → 36 ns);
/// at 1 in 1024 it is under 1 ns, and a shift is still seen within ~8,000 large
/// allocations.
pub const FROZEN_SAMPLE_EVERY: u32 = 1024;
/// Matches before learning may freeze.
pub const MIN_MATCHES: u64 = 64;
/// Matches the best must have stayed best to freeze.
pub const STABLE_MATCHES: u64 = 32;
/// Rating lead over the runner-up needed to freeze.
pub const MIN_LEAD: f32 = 30.0;
/// Matches after which learning freezes on the best whatever the lead.
pub const MAX_MATCHES: u64 = 1024;
const DRIFT_MIN_SAMPLES: u32 = 8;
/// Cost changes smaller than this (about 2 us) are noise, whatever the ratio:
/// a BigCache hit costs a few hundred cycles give or take a cache miss.
pub const SHIFT_FLOOR_CYCLES: f32 = 6000.0;

/// Lifecycle phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Exploring: strategies are chosen epsilon-greedy and rated.
    Learn = 0,
    /// Settled on one strategy; a cost-shift detector may thaw it.
    Frozen = 1,
    /// Frozen for the whole run by an option (no sampling, no detector).
    Locked = 2,
}

const UNINIT: u8 = 255;
static PHASE: AtomicU8 = AtomicU8::new(UNINIT);
static FROZEN_ON: AtomicU8 = AtomicU8::new(elo::PLAIN);
static TRANSITIONS: AtomicU64 = AtomicU64::new(0);
static FROZEN_COST: AtomicU32 = AtomicU32::new(0);
static FROZEN_SIZE_LOG: AtomicU32 = AtomicU32::new(0);
static DRIFT_COST: AtomicU32 = AtomicU32::new(0);
static DRIFT_SIZE_LOG: AtomicU32 = AtomicU32::new(0);
static DRIFT_N: AtomicU32 = AtomicU32::new(0);
/// Samples since learning (re)started.
static LEARN_SAMPLES: AtomicU64 = AtomicU64::new(0);

fn load_f(a: &AtomicU32) -> f32 {
    f32::from_bits(a.load(Relaxed))
}

fn store_f(a: &AtomicU32, v: f32) {
    a.store(v.to_bits(), Relaxed)
}

/// The current phase.
#[inline]
pub fn phase() -> Phase {
    match PHASE.load(Relaxed) {
        0 => Phase::Learn,
        1 => Phase::Frozen,
        2 => Phase::Locked,
        _ => init(),
    }
}

#[cold]
fn init() -> Phase {
    let o = crate::options::get();
    // Huge-page strategies only where the kernel gives huge pages (measured
    // here, once): otherwise they are neither the default nor explored.
    let default = elo::default_strategy();
    RATINGS.configure(elo::eligible_mask(), default);
    FROZEN_ON.store(default, Relaxed);
    let p = if o.disable_elo || o.evo_frozen {
        Phase::Locked
    } else {
        Phase::Learn
    };
    // Racing initialisers compute the same value.
    let _ = PHASE.compare_exchange(UNINIT, p as u8, Relaxed, Relaxed);
    phase()
}

/// Number of learn↔frozen transitions so far.
pub fn transitions() -> u64 {
    TRANSITIONS.load(Relaxed)
}

/// The strategy frozen on (meaningful when not learning).
pub fn frozen_on() -> u8 {
    FROZEN_ON.load(Relaxed)
}

/// The strategy for a newly mapped block: one load when frozen,
/// epsilon-greedy while learning.
#[inline]
pub fn select(rng: &mut Rng) -> u8 {
    choose(|| elo::select_learning(&RATINGS, rng))
}

/// The strategy a BigCache hit takes: the current best, one load, never an
/// exploration. Strategies differ in how a block is mapped, so they are
/// explored on misses; exploring on a hit would only apply, say,
/// purge-on-cache to a block in steady reuse (a `vm` run went from 3.7 to
/// 13.8 µs per operation that way: a 2 MiB purge and 512 faults per explored hit).
#[inline]
pub fn best() -> u8 {
    choose(|| RATINGS.best())
}

/// The frozen strategy, or `learning`'s choice timed as ELO selection (and
/// slowed by the `test-delay` feature): every strategy choice is one.
#[inline(always)]
fn choose(learning: impl FnOnce() -> u8) -> u8 {
    match phase() {
        Phase::Frozen | Phase::Locked => FROZEN_ON.load(Relaxed),
        Phase::Learn => {
            let t = if probe::tracing() { probe::stamp() } else { 0 };
            let s = learning();
            #[cfg(feature = "test-delay")]
            crate::test_delay::elo();
            if t != 0 {
                probe::emit(Component::EloSelect, t, s as u64);
            }
            s
        }
    }
}

/// The one large allocation a thread is measuring.
#[derive(Clone, Copy)]
pub struct Sample {
    /// The block (0 = no sample in flight).
    pub ptr: usize,
    /// Cycles spent in hakmem allocating it.
    pub alloc_cycles: u64,
    /// The thread's minor faults when it was allocated; `None` for a block
    /// that cannot fault (see [`begin_sample`]).
    pub faults0: Option<u64>,
    /// The requested size.
    pub size: usize,
}

impl Sample {
    /// No allocation being measured.
    pub const NONE: Sample = Sample {
        ptr: 0,
        alloc_cycles: 0,
        faults0: None,
        size: 0,
    };
}

/// Whether this allocation should be measured (and starts the countdown again).
#[inline]
pub fn should_sample(ts: &mut crate::large::thread::ThreadState) -> bool {
    if ts.sample.ptr != 0 {
        return false;
    }
    if ts.sample_countdown > 0 {
        ts.sample_countdown -= 1;
        return false;
    }
    ts.sample_countdown = match phase() {
        Phase::Learn => LEARN_SAMPLE_EVERY - 1,
        Phase::Frozen => FROZEN_SAMPLE_EVERY - 1,
        Phase::Locked => return false,
    };
    true
}

/// Starts measuring: the faults baseline (taken before the allocation), or
/// `None` when the block's life cannot fault (a BigCache hit no purge
/// emptied): the two `getrusage` calls (~0.4 µs each here) are then skipped.
/// They made learning cost 86 ns per operation on a BigCache-hit loop and
/// 230 ns on `vm`.
pub fn begin_sample(may_fault: bool) -> Option<u64> {
    may_fault.then(os::thread_minor_faults)
}

/// The block `p` being measured was freed; `free_cycles` were spent freeing it.
pub fn finish_sample(sample: Sample, strategy: u8, free_cycles: u64, rng: &mut Rng) {
    let faults = sample
        .faults0
        .map_or(0, |f0| os::thread_minor_faults().saturating_sub(f0));
    let cost = sample.alloc_cycles + free_cycles + faults * elo::FAULT_CYCLES;
    record(strategy as usize, cost, sample.size, rng);
}

fn size_log(size: usize) -> f32 {
    (usize::BITS - size.max(1).leading_zeros()) as f32
}

fn ewma(a: &AtomicU32, v: f32, w: f32) -> f32 {
    let old = load_f(a);
    let new = if old == 0.0 { v } else { old + (v - old) * w };
    store_f(a, new);
    new
}

/// Feeds one measured cost into the lifecycle.
pub fn record(strategy: usize, cost: u64, size: usize, rng: &mut Rng) {
    match phase() {
        Phase::Locked => {}
        Phase::Learn => {
            LEARN_SAMPLES.store(LEARN_SAMPLES.load(Relaxed) + 1, Relaxed);
            let opp = RATINGS.random_opponent(strategy, rng.next());
            RATINGS.record(strategy, cost, opp);
            if converged() {
                freeze(RATINGS.best());
            }
        }
        Phase::Frozen => {
            let n = DRIFT_N.load(Relaxed) + 1;
            DRIFT_N.store(n, Relaxed);
            if n <= DRIFT_MIN_SAMPLES {
                // The first frozen samples set the baseline: measured the same
                // way as everything the detector will compare with it.
                let w = 1.0 / n as f32;
                let base = load_f(&FROZEN_COST);
                store_f(
                    &FROZEN_COST,
                    if n == 1 {
                        cost as f32
                    } else {
                        base + (cost as f32 - base) * w
                    },
                );
                let sb = load_f(&FROZEN_SIZE_LOG);
                let sl = size_log(size);
                store_f(
                    &FROZEN_SIZE_LOG,
                    if n == 1 { sl } else { sb + (sl - sb) * w },
                );
                store_f(&DRIFT_COST, load_f(&FROZEN_COST));
                store_f(&DRIFT_SIZE_LOG, load_f(&FROZEN_SIZE_LOG));
                return;
            }
            // One outlier (a preemption, a fault storm) must not look like a
            // shift: each sample counts at most 4× the baseline either way.
            let base = load_f(&FROZEN_COST);
            let clamped = (cost as f32).clamp(base / 4.0, base * 4.0);
            let c = ewma(&DRIFT_COST, clamped, 1.0 / 8.0);
            let s = ewma(&DRIFT_SIZE_LOG, size_log(size), 1.0 / 8.0);
            if shifted(c, s) {
                thaw();
            }
        }
    }
}

/// The freeze criterion (see the module docs).
pub fn converged() -> bool {
    let m = RATINGS.matches.load(Relaxed);
    // Samples that played no match: only one strategy ever gets measured
    // (e.g. every block comes from the BigCache), so there is nothing to learn.
    let unmatched = LEARN_SAMPLES.load(Relaxed) >= MAX_MATCHES * 4 && m < MIN_MATCHES;
    unmatched
        || m >= MAX_MATCHES
        || (m >= MIN_MATCHES
            && RATINGS.best_stable_for.load(Relaxed) >= STABLE_MATCHES
            && RATINGS.lead() >= MIN_LEAD)
}

/// The shift detector (see the module docs).
pub fn shifted(cost_avg: f32, size_log_avg: f32) -> bool {
    let frozen = load_f(&FROZEN_COST);
    let by_cost = frozen > 0.0
        && (cost_avg > 2.0 * frozen || cost_avg < 0.5 * frozen)
        && (cost_avg - frozen).abs() > SHIFT_FLOOR_CYCLES;
    let by_size = (size_log_avg - load_f(&FROZEN_SIZE_LOG)).abs() >= 2.0;
    by_cost || by_size
}

fn freeze(best: u8) {
    FROZEN_ON.store(best, Relaxed);
    store_f(&FROZEN_COST, 0.0);
    store_f(&FROZEN_SIZE_LOG, 0.0);
    store_f(&DRIFT_COST, 0.0);
    store_f(&DRIFT_SIZE_LOG, 0.0);
    DRIFT_N.store(0, Relaxed);
    if PHASE
        .compare_exchange(Phase::Learn as u8, Phase::Frozen as u8, Relaxed, Relaxed)
        .is_ok()
    {
        transition(Phase::Frozen);
    }
}

fn thaw() {
    LEARN_SAMPLES.store(0, Relaxed);
    RATINGS.matches.store(0, Relaxed);
    RATINGS.best_stable_for.store(0, Relaxed);
    if PHASE
        .compare_exchange(Phase::Frozen as u8, Phase::Learn as u8, Relaxed, Relaxed)
        .is_ok()
    {
        transition(Phase::Learn);
    }
}

fn transition(to: Phase) {
    TRANSITIONS.fetch_add(1, Relaxed);
    if probe::tracing() {
        probe::emit_cycles(Component::EvoTransition, 0, to as u64);
    }
}

/// Test hook: lock the lifecycle on strategy `s` (as `HAKMEM_EVO_POLICY=frozen`
/// does on the default), so a test can change the strategy mid-run.
#[doc(hidden)]
pub fn lock_on_for_test(s: u8) {
    FROZEN_ON.store(s, Relaxed);
    PHASE.store(Phase::Locked as u8, Relaxed);
}

/// Test hook: put the lifecycle in `p` with fresh ratings, the eligible
/// strategies and the default taken again from the kernel's answer
/// (`thp::set_for_test` changes it).
#[doc(hidden)]
pub fn reset_for_test(p: Phase) {
    RATINGS.reset();
    let default = elo::default_strategy();
    RATINGS.configure(elo::eligible_mask(), default);
    PHASE.store(p as u8, Relaxed);
    FROZEN_ON.store(default, Relaxed);
    store_f(&FROZEN_COST, 0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lifecycle is process-wide: one test walks it end to end.
    #[test]
    fn learns_freezes_on_the_cheapest_and_thaws_on_a_shift() {
        reset_for_test(Phase::Learn);
        let mut rng = Rng(99);
        let t0 = transitions();
        let mut rounds = 0;
        while phase() == Phase::Learn {
            let s = (rng.next() % elo::N as u64) as usize;
            let cost = if s == 1 {
                2_000
            } else {
                20_000 + rng.next() % 1000
            };
            record(s, cost, 2 << 20, &mut rng);
            rounds += 1;
            assert!(rounds < 20_000, "never converged");
        }
        assert_eq!(phase(), Phase::Frozen);
        assert_eq!(frozen_on(), 1, "froze on the cheapest strategy");
        assert_eq!(transitions(), t0 + 1);
        // Steady costs keep it frozen.
        for _ in 0..50 {
            record(1, 21_000, 2 << 20, &mut rng);
        }
        assert_eq!(phase(), Phase::Frozen);
        // Costs jump 10×: the detector sends it back to learn.
        let mut n = 0;
        while phase() == Phase::Frozen {
            record(1, 200_000, 2 << 20, &mut rng);
            n += 1;
            assert!(n <= 20, "the shift went unnoticed");
        }
        assert_eq!(transitions(), t0 + 2);
        assert_eq!(RATINGS.matches.load(Relaxed), 0, "match counters restart");
        // A size shift alone also counts, once frozen again (after the
        // baseline samples).
        freeze(1);
        for _ in 0..DRIFT_MIN_SAMPLES {
            record(1, 20_000, 2 << 20, &mut rng);
        }
        assert_eq!(phase(), Phase::Frozen);
        for _ in 0..20 {
            record(1, 20_000, 64 << 20, &mut rng);
        }
        assert_eq!(phase(), Phase::Learn);
        reset_for_test(Phase::Learn);
    }
}
