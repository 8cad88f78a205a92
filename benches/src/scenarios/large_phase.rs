//! `large-phase`: a workload that changes: 24 KiB blocks, then 1 MiB blocks,
//! then 3 MiB blocks, every page written.
//!
//! Tests whether large-block decisions learned in one phase survive the next:
//! memory freed at 1 MiB should serve the 3 MiB phase, and a strategy chosen
//! while blocks were cheap should be chosen again when they cost more. The
//! 24 KiB phase is set-up and not timed.
//! One operation (1 MiB and 3 MiB phases): allocate a block, write each of
//! its pages, free the block it replaces (four live).

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "large-phase",
    about: "24 KiB blocks, then 1 MiB, then 3 MiB, every page written (phase change)",
    threaded: false,
    run,
    baseline: None,
};

const SEED: u64 = 0x9a5e;
const BASE_OPS: u64 = 1500;
const LIVE: usize = 4;
const SMALL: usize = 24 << 10;
const SMALL_LIVE: usize = 256;

fn run(params: &Params) -> Outcome {
    let ops = params.scaled(BASE_OPS, 8);
    let mut rng = Rng::new(SEED);
    let mut small: Vec<Option<Block>> = (0..SMALL_LIVE).map(|_| None).collect();
    for _ in 0..ops * 8 {
        let mut block = Block::new(SMALL - rng.below(4096));
        block.touch_pages();
        small[rng.below(SMALL_LIVE)] = Some(block);
    }
    drop(small);
    let mut live: [Option<Block>; LIVE] = Default::default();
    let mut recorder = Recorder::new(1);
    recorder.start();
    for size in [1 << 20, 3 << 20] {
        for _ in 0..ops {
            let mut block = Block::new(size - rng.below(4096));
            block.touch_pages();
            live[rng.below(LIVE)] = Some(block);
            recorder.op();
        }
    }
    drop(live);
    Outcome::from_recorders(1, [recorder])
}
