//! `small-churn`: malloc/free pairs of 8–1024 B on one thread (issue 2's first
//! microbenchmark), with a window of 256 live objects.
//!
//! Like cfrac or espresso: many short-lived small objects, each replacing a
//! random older one, so frees happen in an order different from allocations but
//! the live set stays small and hot. One operation: free a random live object,
//! allocate a new one of a random size in 8..=1024 bytes.

use super::{Outcome, Params, Scenario};
use crate::block::{Block, Pool};
use crate::rng::Rng;
use crate::timing::Recorder;
use std::hint::black_box;
use std::time::Instant;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "small-churn",
    about: "malloc/free pairs of 8-1024 B on one thread, 256 live",
    threaded: false,
    run,
    baseline: Some(baseline),
};

const SEED: u64 = 0x5c;
const BASE_OPS: u64 = 4_000_000;
const WINDOW: usize = 256;
/// Clock reads per operation are 1/1024: negligible next to ~20 ns per op.
const BATCH: u32 = 1024;

fn run(params: &Params) -> Outcome {
    let recorder = churn(Rng::new(SEED), params.scaled(BASE_OPS, 1024));
    Outcome::from_recorders(1, [recorder])
}

/// The loop without the allocator: each new block is the pool's spare one,
/// and the replaced one becomes the spare.
fn baseline(params: &Params) -> Outcome {
    let setup = Instant::now();
    let mut rng = Rng::new(SEED);
    let mut pool = Pool::new(WINDOW + 1, 1024, true);
    let mut live: Vec<(usize, usize)> = (0..WINDOW)
        .map(|i| {
            let size = rng.range(8, 1024);
            pool.fill(i, size, false);
            (i, size)
        })
        .collect();
    let mut spare = WINDOW;
    let mut recorder = Recorder::new(BATCH);
    let setup = setup.elapsed();
    recorder.start();
    for _ in 0..params.scaled(BASE_OPS, 1024) {
        let slot = rng.below(WINDOW);
        let size = rng.range(8, 1024);
        pool.fill(spare, size, false);
        let old = std::mem::replace(&mut live[slot], (spare, size));
        spare = black_box(old).0;
        recorder.op();
    }
    drop(live);
    Outcome::from_recorders(1, [recorder]).after_setup(setup)
}

/// The churn loop shared with `small-churn-mt`: `ops` replace operations.
pub fn churn(mut rng: Rng, ops: u64) -> Recorder {
    let mut live: Vec<Block> = (0..WINDOW)
        .map(|_| Block::new(rng.range(8, 1024)))
        .collect();
    let mut recorder = Recorder::new(BATCH);
    recorder.start();
    for _ in 0..ops {
        let slot = rng.below(WINDOW);
        // Assigning drops (frees) the old block after the new one is allocated,
        // which is the order a program replacing an object uses.
        live[slot] = Block::new(rng.range(8, 1024));
        recorder.op();
    }
    drop(live);
    recorder
}
