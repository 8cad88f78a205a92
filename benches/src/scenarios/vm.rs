//! `vm`: blocks of about 2 MiB, touched page by page, four live at once.
//!
//! The origin analysis's scenario (seed/phase-6.7-overhead-analysis.md): a
//! program that keeps a few large buffers, fills each one page by page and
//! replaces the oldest. An allocator that caches freed large blocks (mimalloc's
//! pages, hakmem's BigCache) avoids both the `mmap`/`munmap` pair and the 512
//! page faults of a fresh 2 MiB mapping; one that returns them to the OS pays
//! both on every operation.
//! One operation: allocate a block, touch each of its pages, free the oldest.

use super::{Outcome, Params, Scenario};
use crate::block::{Block, Pool};
use crate::rng::Rng;
use crate::timing::Recorder;
use std::time::Instant;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "vm",
    about: "~2 MiB blocks touched page by page, 4 live (origin analysis)",
    threaded: false,
    run,
    baseline: Some(baseline),
};

const SEED: u64 = 0x766d;
const BASE_OPS: u64 = 1500;
const LIVE: usize = 4;
const TWO_MIB: usize = 2 << 20;
/// Sizes vary a little below 2 MiB, as real buffers do, so exact-size caches
/// are not flattered; all stay within one 2 MiB size class.
const JITTER: usize = 64 << 10;

fn run(params: &Params) -> Outcome {
    let ops = params.scaled(BASE_OPS, 8);
    let mut rng = Rng::new(SEED);
    let mut live: [Option<Block>; LIVE] = Default::default();
    let mut recorder = Recorder::new(1);
    recorder.start();
    for i in 0..ops as usize {
        let mut block = Block::new(TWO_MIB - rng.below(JITTER));
        block.touch_pages();
        live[i % LIVE] = Some(block);
        recorder.op();
    }
    drop(live);
    Outcome::from_recorders(1, [recorder])
}

/// The loop without the allocator: the same sizes and page writes, into one
/// more resident pool block than are live, in turn.
fn baseline(params: &Params) -> Outcome {
    let setup = Instant::now();
    let mut pool = Pool::new(LIVE + 1, TWO_MIB, true);
    let mut rng = Rng::new(SEED);
    let mut recorder = Recorder::new(1);
    let setup = setup.elapsed();
    recorder.start();
    for i in 0..params.scaled(BASE_OPS, 8) as usize {
        pool.fill(i % (LIVE + 1), TWO_MIB - rng.below(JITTER), true);
        recorder.op();
    }
    Outcome::from_recorders(1, [recorder]).after_setup(setup)
}
