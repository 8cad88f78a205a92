//! `large-varied`: random sizes from 256 KiB to 8 MiB, eight live, every page written.
//!
//! A server's or compressor's buffers: sizes differ from one request to the
//! next, so a cache that returns a block only to a request of its own size
//! class misses, and every miss that maps fresh memory faults every page in
//! again (2–3.5 µs per fault here). An allocator that reuses freed memory for
//! any size (page heaps, arenas, extents) pays neither.
//! One operation: allocate a block of a random size, write one byte in each of
//! its pages, free the block it replaces.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "large-varied",
    about: "random sizes 256 KiB-8 MiB, 8 live, every page written (reuse across sizes)",
    threaded: false,
    run,
    baseline: None,
};

const SEED: u64 = 0x7a12;
const BASE_OPS: u64 = 3000;
const LIVE: usize = 8;
const MIN: usize = 256 << 10;
const MAX: usize = 8 << 20;

fn run(params: &Params) -> Outcome {
    let ops = params.scaled(BASE_OPS, 16);
    let mut rng = Rng::new(SEED);
    let mut live: [Option<Block>; LIVE] = Default::default();
    let mut recorder = Recorder::new(1);
    recorder.start();
    for _ in 0..ops {
        let mut block = Block::new(rng.range(MIN, MAX));
        block.touch_pages();
        live[rng.below(LIVE)] = Some(block);
        recorder.op();
    }
    drop(live);
    Outcome::from_recorders(1, [recorder])
}
