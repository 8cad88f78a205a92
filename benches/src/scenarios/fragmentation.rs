//! `fragmentation`: mixed lifetimes, where peak and final RSS matter more than time.
//!
//! Each phase allocates 20,000 small objects (16..=512 B), frees nine in ten
//! of them in random order and keeps the rest for the whole run, then
//! allocates 2,000 larger objects (1..=16 KiB) that cannot reuse the small
//! holes and frees half of those. Long-lived survivors pin partially used
//! pages, so an allocator that cannot reuse or return the holes shows a high
//! peak RSS and a high RSS after everything is freed.
//! One operation: one allocation or one free.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "fragmentation",
    about: "mixed lifetimes: 10% survivors pin pages; watch the RSS columns",
    threaded: false,
    run,
    baseline: None,
};

const SEED: u64 = 0xf4a9;
const BASE_PHASES: u64 = 24;
const SMALL: usize = 20_000;
const LARGE: usize = 2_000;
const BATCH: u32 = 256;

fn run(params: &Params) -> Outcome {
    let phases = params.scaled(BASE_PHASES, 1);
    // At tiny sizes a phase itself shrinks too, so tests stay fast.
    let shrink = params.scale.min(1.0);
    let small = ((SMALL as f64 * shrink) as usize).max(100);
    let large = ((LARGE as f64 * shrink) as usize).max(10);
    let mut rng = Rng::new(SEED);
    let mut survivors: Vec<Block> = Vec::new();
    let mut recorder = Recorder::new(BATCH);
    recorder.start();
    for _ in 0..phases {
        let mut young: Vec<Block> = Vec::with_capacity(small);
        for _ in 0..small {
            young.push(Block::new(rng.range(16, 512)));
            recorder.op();
        }
        // Free in random order; the survivors are whichever remain at the end.
        while young.len() > small / 10 {
            let victim = rng.below(young.len());
            drop(young.swap_remove(victim));
            recorder.op();
        }
        survivors.append(&mut young);
        let mut big: Vec<Block> = Vec::with_capacity(large);
        for _ in 0..large {
            big.push(Block::new(rng.range(1 << 10, 16 << 10)));
            recorder.op();
        }
        for _ in 0..large / 2 {
            let victim = rng.below(big.len());
            drop(big.swap_remove(victim));
            recorder.op();
        }
        survivors.append(&mut big);
    }
    drop(survivors);
    Outcome::from_recorders(1, [recorder])
}
