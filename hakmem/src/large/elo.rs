//! Large-block strategies rated by ELO from their measured cost.
//!
//! A strategy decides how a large block is mapped and kept (see [`STRATEGIES`]).
//! While learning, sampled allocations are charged their measured cost: TSC
//! cycles spent in hakmem for the block (map + free) plus the page faults the
//! thread took during the block's life, priced at [`fault_cycles`]. Each
//! finished sample plays one rated match against a random other strategy's
//! mean cost; lower cost wins. The best strategy is cached and recomputed only
//! when a rating changes; exploration is epsilon-greedy with an integer
//! random test. Selection when frozen (`evolution.rs`) is one load.
//!
//! Ratings and means are process-wide, updated with relaxed loads and stores
//! (no locks, no RMW): two threads finishing samples at the same instant may
//! lose one update, which only slows learning a little.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

/// How a large block is mapped and kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strategy {
    /// Short name for reports.
    pub name: &'static str,
    /// Fault the whole block in at map time (one madvise instead of a fault per page).
    pub populate: bool,
    /// Ask for transparent huge pages (one fault per 2 MiB).
    pub hugepage: bool,
    /// Give a block's memory back (MADV_DONTNEED) when it enters the BigCache:
    /// lower RSS, but faults again on reuse.
    pub purge_on_cache: bool,
    /// Extra mapping (percent of the size) so realloc can grow in place.
    pub slack_pct: u32,
}

/// The precomputed list of active strategies; index = strategy id.
pub const STRATEGIES: &[Strategy] = &[
    Strategy {
        name: "plain",
        populate: false,
        hugepage: false,
        purge_on_cache: false,
        slack_pct: 0,
    },
    Strategy {
        name: "populate",
        populate: true,
        hugepage: false,
        purge_on_cache: false,
        slack_pct: 0,
    },
    Strategy {
        name: "hugepage",
        populate: false,
        hugepage: true,
        purge_on_cache: false,
        slack_pct: 0,
    },
    Strategy {
        name: "populate+hugepage",
        populate: true,
        hugepage: true,
        purge_on_cache: false,
        slack_pct: 0,
    },
    Strategy {
        name: "purge-on-cache",
        populate: false,
        hugepage: false,
        purge_on_cache: true,
        slack_pct: 0,
    },
    Strategy {
        name: "slack",
        populate: false,
        hugepage: false,
        purge_on_cache: false,
        slack_pct: 100,
    },
];

/// Number of strategies.
pub const N: usize = STRATEGIES.len();
/// The default strategy where the kernel gives huge pages (`thp.rs`).
pub const HUGEPAGE: u8 = 2;
/// The default strategy where it gives none: nothing asked of the kernel
/// beyond the mapping, so nothing paid for advice it ignores.
pub const PLAIN: u8 = 0;
const _: () =
    assert!(STRATEGIES[HUGEPAGE as usize].hugepage && !STRATEGIES[PLAIN as usize].hugepage);

/// The fixed strategy (`HAKMEM_DISABLE_ELO=1`, `HAKMEM_MINIMAL=1`, and where
/// learning starts): `hugepage` only where the kernel was measured to give
/// huge pages, else `plain`.
pub fn default_strategy() -> u8 {
    if crate::thp::granted() {
        HUGEPAGE
    } else {
        PLAIN
    }
}

/// Bit s set = strategy s may be chosen: every strategy, less those asking
/// for huge pages when the kernel gives none, and less `purge-on-cache`
/// while the background purge thread runs.
///
/// Why not `purge-on-cache`: that thread already gives cached blocks back
/// once the program is idle, so purging at the put only saves memory while
/// the program is busy reusing it, and the next hit then faults the block
/// in again. Exploration keeps choosing it on one miss in sixty whatever its
/// rating: `large-realloc` took five 30 MiB purges and ~60 refaults a run
/// from it, each a 15-huge-page refault of ~2 ms (475 faults and p99 188 us
/// a run learning, 414 and 81 us frozen).
pub fn eligible_mask() -> u8 {
    let granted = crate::thp::granted();
    let background = crate::options::get().background_purge;
    STRATEGIES
        .iter()
        .enumerate()
        .filter(|(_, s)| (granted || !s.hugepage) && !(background && s.purge_on_cache))
        .fold(0, |m, (i, _)| m | 1 << i)
}
/// Price of one minor page fault in TSC cycles where nothing measured it
/// (about 0.25 us at 3 GHz: the kernel's anonymous-fault path with zeroing
/// of a 4 KiB page on bare metal); see [`fault_cycles`].
pub const FAULT_CYCLES: u64 = 750;

/// Price of one minor page fault in TSC cycles: what the `thp` probe timed
/// a 4 KiB fault at on this machine (2-3 us on this project's VMs, ten
/// times [`FAULT_CYCLES`]), else [`FAULT_CYCLES`].
pub fn fault_cycles() -> u64 {
    crate::thp::small_fault_cycles().unwrap_or(FAULT_CYCLES)
}
/// Exploration probability in percent (epsilon-greedy).
pub const EPSILON_PCT: u64 = 10;
/// ELO K-factor and starting rating.
const K: f32 = 24.0;
const START: f32 = 1500.0;
/// Samples a strategy needs before others play matches against its mean.
pub const MIN_OPPONENT_SAMPLES: u64 = 3;
/// Costs within this fraction of each other are a draw.
const DRAW_BAND: f32 = 0.05;

/// One size band's learning state (`evolution.rs` holds one per band).
pub struct Ratings {
    rating: [AtomicU32; N],
    /// Running mean cost (cycles) per strategy, f32 bits; 0 = no sample yet.
    mean_cost: [AtomicU32; N],
    samples: [AtomicU64; N],
    /// Rated matches played since learning (re)started.
    pub matches: AtomicU64,
    /// Cached best strategy id (argmax rating).
    best: AtomicU8,
    /// Matches since `best` last changed (for the freeze criterion).
    pub best_stable_for: AtomicU64,
    /// Strategies that may be chosen ([`eligible_mask`]); the others are
    /// never explored, played against or made best.
    eligible: AtomicU8,
    /// Where learning starts, and the best after a [`Ratings::reset`].
    default: AtomicU8,
}

impl Default for Ratings {
    fn default() -> Self {
        Self::new()
    }
}

impl Ratings {
    /// Every strategy at the start rating, nothing measured.
    pub const fn new() -> Self {
        Ratings {
            rating: [const { AtomicU32::new(START.to_bits()) }; N],
            mean_cost: [const { AtomicU32::new(0) }; N],
            samples: [const { AtomicU64::new(0) }; N],
            matches: AtomicU64::new(0),
            best: AtomicU8::new(PLAIN),
            best_stable_for: AtomicU64::new(0),
            eligible: AtomicU8::new(((1u32 << N) - 1) as u8),
            default: AtomicU8::new(PLAIN),
        }
    }

    /// Restricts the choice to the strategies of `mask` ([`eligible_mask`])
    /// and makes `default` (one of them) the best until ratings say otherwise.
    pub fn configure(&self, mask: u8, default: u8) {
        debug_assert!(mask & 1 << default != 0);
        self.eligible.store(mask, Relaxed);
        self.default.store(default, Relaxed);
        if mask & 1 << self.best() == 0 || self.matches.load(Relaxed) == 0 {
            self.best.store(default, Relaxed);
        }
        self.recompute_best();
    }

    /// Whether strategy `s` may be chosen.
    #[inline]
    pub fn is_eligible(&self, s: usize) -> bool {
        self.eligible.load(Relaxed) & 1 << s != 0
    }

    /// The `i`-th eligible strategy, counting from 0 and wrapping.
    fn nth_eligible(&self, i: u64) -> usize {
        let mask = self.eligible.load(Relaxed);
        let n = mask.count_ones() as u64;
        let mut k = i % n.max(1);
        for s in 0..N {
            if mask & 1 << s != 0 {
                if k == 0 {
                    return s;
                }
                k -= 1;
            }
        }
        PLAIN as usize
    }

    /// A uniformly random eligible strategy other than `s` (`s` itself if it
    /// is the only one).
    pub fn random_opponent(&self, s: usize, r: u64) -> usize {
        let mask = self.eligible.load(Relaxed) & !(1u8 << s);
        if mask == 0 {
            return s;
        }
        let mut k = r % mask.count_ones() as u64;
        for o in 0..N {
            if mask & 1 << o != 0 {
                if k == 0 {
                    return o;
                }
                k -= 1;
            }
        }
        s
    }

    /// The cached best strategy.
    #[inline(always)]
    pub fn best(&self) -> u8 {
        self.best.load(Relaxed)
    }

    /// The ELO rating of strategy `s`.
    pub fn rating(&self, s: usize) -> f32 {
        f32::from_bits(self.rating[s].load(Relaxed))
    }

    /// The running mean cost of strategy `s` in cycles (0 = never measured).
    pub fn mean_cost(&self, s: usize) -> f32 {
        f32::from_bits(self.mean_cost[s].load(Relaxed))
    }

    /// How many samples strategy `s` has had.
    pub fn samples(&self, s: usize) -> u64 {
        self.samples[s].load(Relaxed)
    }

    /// The rating lead of the best strategy over the runner-up.
    pub fn lead(&self) -> f32 {
        let best = self.best() as usize;
        let r = self.rating(best);
        (0..N)
            .filter(|&i| i != best && self.is_eligible(i))
            .map(|i| r - self.rating(i))
            .fold(f32::INFINITY, f32::min)
    }

    /// Records one finished sample of `s` costing `cost` cycles and plays its
    /// match against `opponent` (another strategy id). Returns true if the
    /// cached best changed.
    pub fn record(&self, s: usize, cost: u64, opponent: usize) -> bool {
        let cost = cost as f32;
        let n = self.samples[s].load(Relaxed) + 1;
        self.samples[s].store(n, Relaxed);
        let old_mean = self.mean_cost(s);
        // Running mean over the first 16 samples, then an EWMA (1/16) so the
        // rating follows a workload that changes.
        let w = 1.0 / (n.min(16) as f32);
        let mean = if old_mean == 0.0 {
            cost
        } else {
            old_mean + (cost - old_mean) * w
        };
        self.mean_cost[s].store(mean.to_bits(), Relaxed);

        let opp_mean = self.mean_cost(opponent);
        // Nothing to play against yet: a mean of one or two samples is mostly
        // luck (a strategy rated on one cheap sample was frozen on, on
        // `large-varied`, in 5 runs of 6).
        if opponent == s || self.samples(opponent) < MIN_OPPONENT_SAMPLES {
            return false;
        }
        let score = if cost < opp_mean * (1.0 - DRAW_BAND) {
            1.0
        } else if cost > opp_mean * (1.0 + DRAW_BAND) {
            0.0
        } else {
            0.5
        };
        let (rs, ro) = (self.rating(s), self.rating(opponent));
        let expected = 1.0 / (1.0 + libm_pow10((ro - rs) / 400.0));
        let delta = K * (score - expected);
        self.rating[s].store((rs + delta).to_bits(), Relaxed);
        self.rating[opponent].store((ro - delta).to_bits(), Relaxed);
        self.matches.store(self.matches.load(Relaxed) + 1, Relaxed);
        self.recompute_best()
    }

    /// Recomputes the cached best after a rating change.
    fn recompute_best(&self) -> bool {
        let mut best = self.default.load(Relaxed) as usize;
        for i in 0..N {
            if self.is_eligible(i) && self.rating(i) > self.rating(best) {
                best = i;
            }
        }
        if best as u8 != self.best() {
            self.best.store(best as u8, Relaxed);
            self.best_stable_for.store(0, Relaxed);
            true
        } else {
            self.best_stable_for
                .store(self.best_stable_for.load(Relaxed) + 1, Relaxed);
            false
        }
    }

    /// Back to the starting ratings (tests).
    pub fn reset(&self) {
        for i in 0..N {
            self.rating[i].store(START.to_bits(), Relaxed);
            self.mean_cost[i].store(0, Relaxed);
            self.samples[i].store(0, Relaxed);
        }
        self.matches.store(0, Relaxed);
        self.best.store(self.default.load(Relaxed), Relaxed);
        self.best_stable_for.store(0, Relaxed);
    }
}

/// 10^x for the ELO expectation, without std's float functions (no libm in core):
/// 10^x = 2^(x·log2 10), integer part by exponent bits, fraction by a short series.
fn libm_pow10(x: f32) -> f32 {
    let y = (x * core::f32::consts::LOG2_10).clamp(-60.0, 60.0);
    let i = if y < 0.0 { y as i32 - 1 } else { y as i32 };
    let f = y - i as f32; // in [0, 1)
                          // 2^f on [0,1): polynomial, error < 1e-4 (plenty for ratings).
    let ln2 = core::f32::consts::LN_2;
    let t = f * ln2;
    let p = 1.0 + t * (1.0 + t * (0.5 + t * (1.0 / 6.0 + t * (1.0 / 24.0 + t / 120.0))));
    p * f32::from_bits(((i + 127) as u32) << 23)
}

/// A per-thread xorshift generator for exploration (integer tests only).
#[derive(Clone, Copy)]
pub struct Rng(pub u64);

impl Rng {
    /// The next value. Not `Iterator::next`: the sequence never ends.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Epsilon-greedy choice while learning: the cached best, or with probability
/// EPSILON_PCT a uniformly random eligible strategy.
#[inline]
pub fn select_learning(ratings: &Ratings, rng: &mut Rng) -> u8 {
    let r = rng.next();
    if r % 100 < EPSILON_PCT {
        ratings.nth_eligible(r >> 32) as u8
    } else {
        ratings.best()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the background purge thread on (the default), `purge-on-cache`
    /// is never explored, never an opponent and never made best.
    #[test]
    fn purge_on_cache_is_not_explored_beside_the_background_purge() {
        assert!(crate::options::get().background_purge, "the default");
        let poc = STRATEGIES.iter().position(|s| s.purge_on_cache).unwrap();
        assert_eq!(eligible_mask() & 1 << poc, 0);
        let r = Ratings::new();
        r.configure(eligible_mask(), default_strategy());
        // Even if it measured cheapest, it is not taken.
        for i in 0..200u64 {
            let s = (i % N as u64) as usize;
            let cost = if s == poc { 100 } else { 10_000 };
            r.record(s, cost, r.random_opponent(s, i.wrapping_mul(0x9e37)));
        }
        assert_ne!(r.best() as usize, poc);
        let mut rng = Rng(3);
        for _ in 0..10_000 {
            let s = select_learning(&r, &mut rng) as usize;
            assert_ne!(s, poc, "explored purge-on-cache");
            assert_ne!(r.random_opponent(s, rng.next()), poc);
        }
    }

    #[test]
    fn pow10_is_close() {
        for &(x, want) in &[
            (0.0f32, 1.0f32),
            (1.0, 10.0),
            (-1.0, 0.1),
            (0.5, 3.1623),
            (2.3, 199.526),
        ] {
            let got = libm_pow10(x);
            assert!(
                (got - want).abs() / want < 1e-3,
                "10^{x} = {got}, want {want}"
            );
        }
    }

    #[test]
    fn cheaper_strategy_wins_rating_and_becomes_best() {
        let r = Ratings::new();
        assert_eq!(r.rating(0), 1500.0);
        // Strategy 2 costs 1,000 cycles, every other 10,000.
        let mut rng = Rng(42);
        for i in 0..600 {
            let s = i % N;
            let opp = (rng.next() % N as u64) as usize;
            let cost = if s == 2 {
                1_000
            } else {
                10_000 + (rng.next() % 500)
            };
            r.record(s, cost, opp);
        }
        assert_eq!(r.best(), 2);
        assert!(r.lead() > 100.0, "lead {}", r.lead());
        assert!(r.best_stable_for.load(Relaxed) > 50);
        // Ratings are zero-sum.
        let total: f32 = (0..N).map(|i| r.rating(i)).sum();
        assert!((total - 1500.0 * N as f32).abs() < 1.0);
    }

    #[test]
    fn equal_costs_draw_and_ratings_stay_put() {
        let r = Ratings::new();
        for i in 0..300 {
            r.record(i % N, 5_000, (i + 1) % N);
        }
        for i in 0..N {
            assert!((r.rating(i) - 1500.0).abs() < 1.0);
        }
    }

    #[test]
    fn exploration_rate_is_about_epsilon() {
        let mut rng = Rng(7);
        let r = Ratings::new();
        let n = 100_000;
        let mut not_best = 0;
        for _ in 0..n {
            if select_learning(&r, &mut rng) != r.best() {
                not_best += 1;
            }
        }
        // Random picks hit the best 1/N of the time.
        let expected = n as f64 * EPSILON_PCT as f64 / 100.0 * (N as f64 - 1.0) / N as f64;
        assert!(
            (not_best as f64 - expected).abs() < expected * 0.1,
            "{not_best} vs {expected}"
        );
    }
}
