//! The evolution lifecycle: learn, then freeze on the best strategy — in each
//! size band on its own.
//!
//! Strategies pay off by size: huge pages and pre-faulting are paid up front
//! per block, faults are paid per page, and a program's 512 KiB buffers and
//! its 32 MiB ones are reused differently. So the blocks are split into
//! [`BANDS`] size bands ([`band_of`]), each with its own ratings (`elo.rs`),
//! phase, frozen strategy and shift detector; a sample is charged to the band
//! of its block's size, and a band with no blocks stays learning at no cost.
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
//!   smaller: within a band only the open-ended top one can move that far;
//!   across bands, each band follows its own blocks). Then back to learn,
//!   with the band's match counters restarted.
//!
//! `HAKMEM_EVO_POLICY=frozen` and `HAKMEM_DISABLE_ELO=1` (and `HAKMEM_MINIMAL=1`)
//! lock the lifecycle: frozen on the default strategy for the whole run, no
//! sampling at all.

use crate::large::elo::{self, Ratings, Rng};
use crate::os;
use crate::probe::{self, Component};
use core::sync::atomic::{
    AtomicU32, AtomicU64, AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
};

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

/// Size bands, each learning on its own.
pub const BANDS: usize = 4;
/// The bands' names in reports.
pub const BAND_NAMES: [&str; BANDS] = ["<2 MiB", "2-8 MiB", "8-32 MiB", ">=32 MiB"];

/// The band of a block of `size` bytes: below 2 MiB (no whole huge page in
/// it), 2–8 MiB, 8–32 MiB, 32 MiB and more.
#[inline(always)]
pub fn band_of(size: usize) -> usize {
    // Branch-free (it is on the BigCache hit path); always below BANDS.
    let m = size >> 21;
    (m != 0) as usize + (m >= 4) as usize + (m >= 16) as usize
}

/// `BAND[b]` without a bounds check the compiler cannot drop (BANDS is a
/// power of two and `b` came from [`band_of`]).
#[inline(always)]
fn band(b: usize) -> &'static Band {
    &BAND[b & (BANDS - 1)]
}

const _: () = assert!(BANDS.is_power_of_two());

/// One band's lifecycle.
struct Band {
    phase: AtomicU8,
    frozen_on: AtomicU8,
    frozen_cost: AtomicU32,
    frozen_size_log: AtomicU32,
    drift_cost: AtomicU32,
    drift_size_log: AtomicU32,
    drift_n: AtomicU32,
    /// Samples since learning (re)started.
    learn_samples: AtomicU64,
    ratings: Ratings,
}

impl Band {
    const fn new() -> Self {
        Band {
            phase: AtomicU8::new(UNINIT),
            frozen_on: AtomicU8::new(elo::PLAIN),
            frozen_cost: AtomicU32::new(0),
            frozen_size_log: AtomicU32::new(0),
            drift_cost: AtomicU32::new(0),
            drift_size_log: AtomicU32::new(0),
            drift_n: AtomicU32::new(0),
            learn_samples: AtomicU64::new(0),
            ratings: Ratings::new(),
        }
    }
}

static BAND: [Band; BANDS] = [const { Band::new() }; BANDS];
static TRANSITIONS: AtomicU64 = AtomicU64::new(0);
/// Advanced after every change of what [`best`] answers for some band (a
/// band set up, frozen, thawed, or a new best while learning): a BigCache
/// hit that saw the same value when it last stamped a block knows the
/// stamp is still current without looking at the bands ([`epoch`]).
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// The current [`EPOCH`]. Read it before the strategy it is to vouch for:
/// a change made after that read advances it again.
#[inline(always)]
pub fn epoch() -> u32 {
    EPOCH.load(Acquire)
}

/// After a change of what [`best`] answers (the change's stores come first).
fn changed() {
    EPOCH.fetch_add(1, Release);
}

/// Each band's phase and current strategy for a tracer, which reads them
/// from the process's memory by this symbol (`probe-cli trace` shows which
/// band chose which strategy): [`PUBLISHED`] | strategy << 8 | phase, or 0
/// while the band has seen no large block. Written on every change of
/// either ([`publish`]); decoded by [`published`].
#[no_mangle]
pub static hakmem_evolution_bands: [AtomicU32; BANDS] = [const { AtomicU32::new(0) }; BANDS];

/// Set in a [`hakmem_evolution_bands`] word once its band is initialised.
pub const PUBLISHED: u32 = 1 << 31;

/// Band `b`'s phase and current choice into [`hakmem_evolution_bands`].
fn publish(b: usize) {
    let p = band(b).phase.load(Relaxed);
    if p == UNINIT {
        return;
    }
    let word = PUBLISHED | u32::from(current(b)) << 8 | u32::from(p);
    let slot = &hakmem_evolution_bands[b & (BANDS - 1)];
    if slot.load(Relaxed) != word {
        slot.store(word, Relaxed);
    }
}

/// Decodes a [`hakmem_evolution_bands`] word: the band's phase and current
/// strategy, or `None` for a band that has seen no large block.
pub fn published(word: u32) -> Option<(Phase, u8)> {
    if word & PUBLISHED == 0 {
        return None;
    }
    let phase = match word & 0xff {
        0 => Phase::Learn,
        1 => Phase::Frozen,
        2 => Phase::Locked,
        _ => return None,
    };
    Some((phase, (word >> 8) as u8))
}

/// Band `b`'s ratings.
pub fn ratings(b: usize) -> &'static Ratings {
    &BAND[b].ratings
}

fn load_f(a: &AtomicU32) -> f32 {
    f32::from_bits(a.load(Relaxed))
}

fn store_f(a: &AtomicU32, v: f32) {
    a.store(v.to_bits(), Relaxed)
}

/// Band `b`'s phase.
#[inline]
pub fn phase(b: usize) -> Phase {
    match band(b).phase.load(Relaxed) {
        0 => Phase::Learn,
        1 => Phase::Frozen,
        2 => Phase::Locked,
        _ => init(b),
    }
}

#[cold]
fn init(b: usize) -> Phase {
    let o = crate::options::get();
    // Huge-page strategies only where the kernel gives huge pages (measured
    // here, once): otherwise they are neither the default nor explored.
    let default = elo::default_strategy();
    let band = &BAND[b];
    band.ratings.configure(elo::eligible_mask(), default);
    band.frozen_on.store(default, Relaxed);
    let p = if o.disable_elo || o.evo_frozen {
        Phase::Locked
    } else {
        Phase::Learn
    };
    // Racing initialisers compute the same value.
    let _ = band
        .phase
        .compare_exchange(UNINIT, p as u8, Relaxed, Relaxed);
    changed();
    publish(b);
    phase(b)
}

/// Number of learn↔frozen transitions so far, every band.
pub fn transitions() -> u64 {
    TRANSITIONS.load(Relaxed)
}

/// The strategy band `b` is frozen on (meaningful when not learning).
pub fn frozen_on(b: usize) -> u8 {
    BAND[b].frozen_on.load(Relaxed)
}

/// Band `b`'s current choice: the frozen strategy, or the best rated one
/// while learning.
pub fn current(b: usize) -> u8 {
    match phase(b) {
        Phase::Learn => BAND[b].ratings.best(),
        _ => frozen_on(b),
    }
}

/// The strategy for a newly mapped block of `size` bytes: one load when its
/// band is frozen, epsilon-greedy while it learns.
#[inline]
pub fn select(size: usize, rng: &mut Rng) -> u8 {
    let b = band_of(size);
    choose(b, || elo::select_learning(&BAND[b].ratings, rng))
}

/// The strategy a BigCache hit of `size` bytes takes: its band's current
/// best, one load, never an exploration. Strategies differ in how a block is
/// mapped, so they are explored on misses; exploring on a hit would only
/// apply, say, purge-on-cache to a block in steady reuse (a `vm` run went
/// from 3.7 to 13.8 µs per operation that way: a 2 MiB purge and 512 faults
/// per explored hit).
#[inline]
pub fn best(size: usize) -> u8 {
    let b = band_of(size);
    choose(b, || band(b).ratings.best())
}

/// [`best`] for the BigCache hit paths, which must not call anything
/// untraced: None while the band of `size` is not set up yet (the caller
/// then takes [`best`]). With `traced` (a constant at each call site:
/// `path::alloc_hit_traced`), a choice while learning is timed as ELO
/// selection, as [`choose`] times it, so a traced hit counts the strategy
/// selections the untraced one makes.
#[inline(always)]
pub fn hit_strategy(size: usize, traced: bool) -> Option<u8> {
    let band = band(band_of(size));
    match band.phase.load(Relaxed) {
        0 => {
            let t = if traced { probe::stamp() } else { 0 };
            let s = band.ratings.best();
            // A choice while learning, as in `choose` (the breakdown test
            // times this delay untraced against traced).
            #[cfg(feature = "test-delay")]
            crate::test_delay::elo();
            if traced {
                probe::emit(Component::EloSelect, t, s as u64);
            }
            Some(s)
        }
        1 | 2 => Some(band.frozen_on.load(Relaxed)),
        _ => None,
    }
}

/// Band `b`'s frozen strategy, or `learning`'s choice timed as ELO selection
/// (and slowed by the `test-delay` feature): every strategy choice is one.
#[inline(always)]
fn choose(b: usize, learning: impl FnOnce() -> u8) -> u8 {
    match phase(b) {
        Phase::Frozen | Phase::Locked => band(b).frozen_on.load(Relaxed),
        Phase::Learn => {
            let t = probe::stamp_if_tracing();
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

/// Whether this allocation of `size` bytes should be measured (and starts
/// its band's countdown again).
#[inline]
pub fn should_sample(ts: &mut crate::large::thread::ThreadState, size: usize) -> bool {
    if ts.sample.ptr != 0 {
        return false;
    }
    let b = band_of(size);
    let countdown = &mut ts.sample_countdown[b & (BANDS - 1)];
    if *countdown > 0 {
        *countdown -= 1;
        return false;
    }
    *countdown = match phase(b) {
        Phase::Learn => LEARN_SAMPLE_EVERY - 1,
        Phase::Frozen => FROZEN_SAMPLE_EVERY - 1,
        // Nothing to measure; a countdown left at 0 sent every BigCache
        // hit of the band to the general path (which looks here again).
        Phase::Locked => {
            *countdown = u32::MAX;
            return false;
        }
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

/// The block `p` being measured was freed; `free_cycles` were spent freeing
/// it, and its free purged `deferred_faults` pages that the next user of
/// the memory faults in again (a `purge-on-cache` put, else 0).
///
/// Charging those here is what makes `purge-on-cache` cost what it costs:
/// its refaults land on whichever block reuses the memory next, so its own
/// samples saw none, and it measured cheaper than it is (a purged 32 MiB
/// block is 15 huge pages, ~2 ms of zeroing, for its next user).
pub fn finish_sample(
    sample: Sample,
    strategy: u8,
    free_cycles: u64,
    deferred_faults: u64,
    rng: &mut Rng,
) {
    let faults = sample
        .faults0
        .map_or(0, |f0| os::thread_minor_faults().saturating_sub(f0));
    let cost = sample_cost(sample.alloc_cycles + free_cycles, faults + deferred_faults);
    record(strategy as usize, cost, sample.size, rng);
}

/// A sample's cost: `cycles` in hakmem plus `faults` priced at
/// [`elo::fault_cycles`] (measured on this machine where the probe ran).
pub fn sample_cost(cycles: u64, faults: u64) -> u64 {
    cycles.saturating_add(faults.saturating_mul(elo::fault_cycles()))
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

/// Feeds one measured cost of a block of `size` bytes into its band's lifecycle.
pub fn record(strategy: usize, cost: u64, size: usize, rng: &mut Rng) {
    let b = band_of(size);
    let band = &BAND[b];
    match phase(b) {
        Phase::Locked => {}
        Phase::Learn => {
            band.learn_samples
                .store(band.learn_samples.load(Relaxed) + 1, Relaxed);
            let opp = band.ratings.random_opponent(strategy, rng.next());
            let before = band.ratings.best();
            band.ratings.record(strategy, cost, opp);
            if converged(b) {
                freeze(b, band.ratings.best());
            } else {
                if band.ratings.best() != before {
                    changed();
                }
                publish(b);
            }
        }
        Phase::Frozen => {
            let n = band.drift_n.load(Relaxed) + 1;
            band.drift_n.store(n, Relaxed);
            if n <= DRIFT_MIN_SAMPLES {
                // The first frozen samples set the baseline: measured the same
                // way as everything the detector will compare with it.
                let w = 1.0 / n as f32;
                let base = load_f(&band.frozen_cost);
                store_f(
                    &band.frozen_cost,
                    if n == 1 {
                        cost as f32
                    } else {
                        base + (cost as f32 - base) * w
                    },
                );
                let sb = load_f(&band.frozen_size_log);
                let sl = size_log(size);
                store_f(
                    &band.frozen_size_log,
                    if n == 1 { sl } else { sb + (sl - sb) * w },
                );
                store_f(&band.drift_cost, load_f(&band.frozen_cost));
                store_f(&band.drift_size_log, load_f(&band.frozen_size_log));
                return;
            }
            // One outlier (a preemption, a fault storm) must not look like a
            // shift: each sample counts at most 4× the baseline either way.
            let base = load_f(&band.frozen_cost);
            let clamped = (cost as f32).clamp(base / 4.0, base * 4.0);
            let c = ewma(&band.drift_cost, clamped, 1.0 / 8.0);
            let s = ewma(&band.drift_size_log, size_log(size), 1.0 / 8.0);
            if shifted(b, c, s) {
                thaw(b);
            }
        }
    }
}

/// Band `b`'s freeze criterion (see the module docs).
pub fn converged(b: usize) -> bool {
    let band = &BAND[b];
    let m = band.ratings.matches.load(Relaxed);
    // Samples that played no match: only one strategy ever gets measured
    // (e.g. every block comes from the BigCache), so there is nothing to learn.
    let unmatched = band.learn_samples.load(Relaxed) >= MAX_MATCHES * 4 && m < MIN_MATCHES;
    unmatched
        || m >= MAX_MATCHES
        || (m >= MIN_MATCHES
            && band.ratings.best_stable_for.load(Relaxed) >= STABLE_MATCHES
            && band.ratings.lead() >= MIN_LEAD)
}

/// Band `b`'s shift detector (see the module docs).
pub fn shifted(b: usize, cost_avg: f32, size_log_avg: f32) -> bool {
    let band = &BAND[b];
    let frozen = load_f(&band.frozen_cost);
    let by_cost = frozen > 0.0
        && (cost_avg > 2.0 * frozen || cost_avg < 0.5 * frozen)
        && (cost_avg - frozen).abs() > SHIFT_FLOOR_CYCLES;
    let by_size = (size_log_avg - load_f(&band.frozen_size_log)).abs() >= 2.0;
    by_cost || by_size
}

fn freeze(b: usize, best: u8) {
    let band = &BAND[b];
    band.frozen_on.store(best, Relaxed);
    store_f(&band.frozen_cost, 0.0);
    store_f(&band.frozen_size_log, 0.0);
    store_f(&band.drift_cost, 0.0);
    store_f(&band.drift_size_log, 0.0);
    band.drift_n.store(0, Relaxed);
    if band
        .phase
        .compare_exchange(Phase::Learn as u8, Phase::Frozen as u8, Relaxed, Relaxed)
        .is_ok()
    {
        transition(Phase::Frozen);
    }
    changed();
    publish(b);
}

fn thaw(b: usize) {
    let band = &BAND[b];
    band.learn_samples.store(0, Relaxed);
    band.ratings.matches.store(0, Relaxed);
    band.ratings.best_stable_for.store(0, Relaxed);
    if band
        .phase
        .compare_exchange(Phase::Frozen as u8, Phase::Learn as u8, Relaxed, Relaxed)
        .is_ok()
    {
        transition(Phase::Learn);
    }
    changed();
    publish(b);
}

fn transition(to: Phase) {
    TRANSITIONS.fetch_add(1, Relaxed);
    if probe::tracing() {
        probe::emit_cycles(Component::EvoTransition, 0, to as u64);
    }
}

/// Test hook: lock every band on strategy `s` (as `HAKMEM_EVO_POLICY=frozen`
/// does on the default), so a test can change the strategy mid-run.
#[doc(hidden)]
pub fn lock_on_for_test(s: u8) {
    for (b, band) in BAND.iter().enumerate() {
        band.frozen_on.store(s, Relaxed);
        band.phase.store(Phase::Locked as u8, Relaxed);
        changed();
        publish(b);
    }
}

/// Test hook: put every band in `p` with fresh ratings, the eligible
/// strategies and the default taken again from the kernel's answer
/// (`thp::set_for_test` changes it).
#[doc(hidden)]
pub fn reset_for_test(p: Phase) {
    for band in &BAND {
        band.ratings.reset();
        let default = elo::default_strategy();
        band.ratings.configure(elo::eligible_mask(), default);
        band.phase.store(p as u8, Relaxed);
        band.frozen_on.store(default, Relaxed);
        store_f(&band.frozen_cost, 0.0);
        band.learn_samples.store(0, Relaxed);
    }
    changed();
    for b in 0..BANDS {
        publish(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_split_at_2_8_and_32_mib() {
        assert_eq!(band_of(1 << 20), 0);
        assert_eq!(band_of((2 << 20) - 1), 0);
        assert_eq!(band_of(2 << 20), 1);
        assert_eq!(band_of((8 << 20) - 1), 1);
        assert_eq!(band_of(8 << 20), 2);
        assert_eq!(band_of((32 << 20) - 1), 2);
        assert_eq!(band_of(32 << 20), 3);
        assert_eq!(band_of(usize::MAX), 3);
    }

    /// The lifecycle is process-wide: one test walks it end to end, in two
    /// bands whose cheapest strategies differ.
    #[test]
    fn each_band_learns_freezes_on_its_cheapest_and_thaws_on_a_shift() {
        reset_for_test(Phase::Learn);
        let mut rng = Rng(99);
        let t0 = transitions();
        let (small, big) = (1 << 20, 40 << 20);
        let (bs, bb) = (band_of(small), band_of(big));
        let mut rounds = 0;
        while phase(bs) == Phase::Learn || phase(bb) == Phase::Learn {
            let s = (rng.next() % elo::N as u64) as usize;
            // Strategy 1 is cheapest for 1 MiB blocks, strategy 5 for 40 MiB ones.
            for (size, cheapest) in [(small, 1), (big, 5)] {
                let cost = if s == cheapest {
                    2_000
                } else {
                    20_000 + rng.next() % 1000
                };
                record(s, cost, size, &mut rng);
            }
            rounds += 1;
            assert!(rounds < 20_000, "never converged");
        }
        assert_eq!(
            frozen_on(bs),
            1,
            "the 1 MiB band froze on its cheapest strategy"
        );
        assert_eq!(
            frozen_on(bb),
            5,
            "the 40 MiB band froze on its cheapest strategy"
        );
        assert_eq!(select(small, &mut rng), 1);
        assert_eq!(best(big), 5);
        // What a tracer reads from the process's memory says the same.
        let read = |b: usize| published(hakmem_evolution_bands[b].load(Relaxed));
        assert_eq!(read(bs), Some((Phase::Frozen, 1)));
        assert_eq!(read(bb), Some((Phase::Frozen, 5)));
        assert_eq!(transitions(), t0 + 2);
        let other = band_of(4 << 20);
        assert_eq!(
            phase(other),
            Phase::Learn,
            "a band without blocks still learns"
        );
        // Steady costs keep it frozen.
        for _ in 0..50 {
            record(1, 21_000, small, &mut rng);
        }
        assert_eq!(phase(bs), Phase::Frozen);
        // Costs jump 10×: the detector sends that band, and only it, back to learn.
        let mut n = 0;
        while phase(bs) == Phase::Frozen {
            record(1, 200_000, small, &mut rng);
            n += 1;
            assert!(n <= 20, "the shift went unnoticed");
        }
        assert_eq!(phase(bb), Phase::Frozen, "the other band stays frozen");
        assert_eq!(read(bs).map(|(p, _)| p), Some(Phase::Learn));
        assert_eq!(transitions(), t0 + 3);
        assert_eq!(
            ratings(bs).matches.load(Relaxed),
            0,
            "match counters restart"
        );
        // A size shift alone also counts (in the open-ended top band: the
        // others span 4x), once frozen again (after the baseline samples).
        freeze(bb, 5);
        for _ in 0..DRIFT_MIN_SAMPLES {
            record(5, 20_000, 40 << 20, &mut rng);
        }
        assert_eq!(phase(bb), Phase::Frozen);
        for _ in 0..20 {
            record(5, 20_000, 320 << 20, &mut rng);
        }
        assert_eq!(phase(bb), Phase::Learn);
        reset_for_test(Phase::Learn);
    }
}
