//! Counters of the large-block machinery (BigCache, ELO, evolution) in [`crate::Stats`].

use crate::large::elo::{self, RATINGS, STRATEGIES};
use crate::large::evolution::{self, Phase};

/// Large-block counters.
#[derive(Clone, Copy, Debug)]
pub struct LargeStats {
    pub bigcache_hits: u64,
    pub bigcache_misses: u64,
    /// Blocks that entered the cache on free.
    pub bigcache_puts: u64,
    /// Blocks the cache turned away (full, over budget), unmapped instead.
    pub bigcache_refused: u64,
    /// Older blocks unmapped to make room in a full slot.
    pub bigcache_evictions: u64,
    /// Blocks released because they waited too long (or at thread exit / collect).
    pub bigcache_purged: u64,
    /// Bytes the caches may hold right now (reserved budget, all threads).
    pub bigcache_reserved_bytes: u64,
    /// Evolution phase.
    pub phase: Phase,
    /// Learn↔frozen transitions.
    pub evo_transitions: u64,
    /// Strategy in use when frozen; the cached best while learning.
    pub strategy: u8,
    /// Rated matches played since learning (re)started.
    pub elo_matches: u64,
    pub ratings: [f32; elo::N],
    /// Mean measured cost per strategy (cycles; 0 = never measured).
    pub mean_cost: [f32; elo::N],
    pub samples: [u64; elo::N],
    /// Blocks mapped with each strategy.
    pub uses: [u64; elo::N],
}

impl LargeStats {
    /// The process-wide part (cache budget, evolution, ratings); the
    /// per-thread counters are added with [`LargeStats::add`].
    pub(crate) fn global() -> Self {
        let mut s = LargeStats {
            bigcache_hits: 0,
            bigcache_misses: 0,
            bigcache_puts: 0,
            bigcache_refused: 0,
            bigcache_evictions: 0,
            bigcache_purged: 0,
            bigcache_reserved_bytes: crate::large::bigcache::reserved_bytes(),
            phase: evolution::phase(),
            evo_transitions: evolution::transitions(),
            strategy: match evolution::phase() {
                Phase::Learn => RATINGS.best(),
                _ => evolution::frozen_on(),
            },
            elo_matches: RATINGS.matches.load(core::sync::atomic::Ordering::Relaxed),
            ratings: [0.0; elo::N],
            mean_cost: [0.0; elo::N],
            samples: [0; elo::N],
            uses: [0; elo::N],
        };
        for i in 0..elo::N {
            s.ratings[i] = RATINGS.rating(i);
            s.mean_cost[i] = RATINGS.mean_cost(i);
            s.samples[i] = RATINGS.samples(i);
        }
        s
    }
}

impl LargeStats {
    /// Adds one thread's counters.
    pub(crate) fn add(&mut self, c: &crate::large::thread::Counters) {
        self.bigcache_hits += c.bigcache_hits.get();
        self.bigcache_misses += c.bigcache_misses.get();
        self.bigcache_puts += c.bigcache_puts.get();
        self.bigcache_refused += c.bigcache_refused.get();
        self.bigcache_evictions += c.bigcache_evictions.get();
        self.bigcache_purged += c.bigcache_purged.get();
        for i in 0..elo::N {
            self.uses[i] += c.strategy_uses[i].get();
        }
    }
}

/// Writes the large-block part of the statistics report.
pub fn print(s: &LargeStats) {
    use core::fmt::Write;
    let mut w = crate::report::StackWriter::<1024>::new();
    let _ = writeln!(
        w,
        "hakmem stats: bigcache hits {}, misses {}, puts {}, refused {}, evictions {}, purged {}, reserved {:.1} MiB",
        s.bigcache_hits,
        s.bigcache_misses,
        s.bigcache_puts,
        s.bigcache_refused,
        s.bigcache_evictions,
        s.bigcache_purged,
        s.bigcache_reserved_bytes as f64 / 1048576.0
    );
    let _ = writeln!(
        w,
        "hakmem stats: evolution {:?}, transitions {}, strategy {}, matches {}",
        s.phase, s.evo_transitions, STRATEGIES[s.strategy as usize].name, s.elo_matches
    );
    w.flush_stderr();
    for (i, strategy) in STRATEGIES.iter().enumerate() {
        if s.samples[i] == 0 && s.uses[i] == 0 {
            continue;
        }
        let _ = writeln!(
            w,
            "hakmem stats:   strategy {:18} rating {:7.1}  mean cost {:10.0} cycles  samples {:6}  blocks mapped {}",
            strategy.name, s.ratings[i], s.mean_cost[i], s.samples[i], s.uses[i]
        );
        w.flush_stderr();
    }
}
