//! `small-churn`: malloc/free pairs of 8–1024 B on one thread (issue 2's first
//! microbenchmark), with a window of 256 live objects.
//!
//! Like cfrac or espresso: many short-lived small objects, each replacing a
//! random older one, so frees happen in an order different from allocations but
//! the live set stays small and hot. One operation: free a random live object,
//! allocate a new one of a random size in 8..=1024 bytes.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "small-churn",
    about: "malloc/free pairs of 8-1024 B on one thread, 256 live",
    threaded: false,
    run,
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
