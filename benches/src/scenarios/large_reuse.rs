//! `large-reuse`: one ~2 MiB block allocated and freed again and again.
//!
//! The large-block cache's best case, and the cost of its bookkeeping alone: a
//! block that is freed and asked for again at once. An allocator that keeps
//! freed large blocks (hakmem's BigCache, glibc's raised mmap threshold,
//! tcmalloc's page heap) answers from memory it already holds; one that gives
//! them back to the OS pays an `mmap`/`munmap` pair (or a `madvise`) and a page
//! fault every time. Only the first byte is written, so page faults of a fresh
//! mapping do not hide the allocator's own cost (that is `vm`'s question).
//! One operation: one malloc of ~2 MiB plus its free.

use super::{Outcome, Params, Scenario};
use crate::block::{Block, Pool};
use crate::timing::Recorder;
use std::time::Instant;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "large-reuse",
    about: "one ~2 MiB block allocated and freed again: the large-block cache's hit path",
    threaded: false,
    run,
    baseline: Some(baseline),
};

const BASE_OPS: u64 = 50_000;
/// Just under 2 MiB, as a buffer with a small header would be.
const SIZE: usize = (2 << 20) - 4096;
/// Operations per timed batch: a hit takes tens of ns, a miss microseconds.
const BATCH: u32 = 64;

fn run(params: &Params) -> Outcome {
    let ops = params.scaled(BASE_OPS, BATCH as u64);
    let mut recorder = Recorder::new(BATCH);
    recorder.start();
    for _ in 0..ops {
        drop(Block::new(SIZE));
        recorder.op();
    }
    Outcome::from_recorders(1, [recorder])
}

/// The loop without the allocator: the first byte of one pool block written.
fn baseline(params: &Params) -> Outcome {
    let setup = Instant::now();
    let mut pool = Pool::new(1, SIZE, false);
    let mut recorder = Recorder::new(BATCH);
    let setup = setup.elapsed();
    recorder.start();
    for _ in 0..params.scaled(BASE_OPS, BATCH as u64) {
        pool.fill(0, SIZE, false);
        recorder.op();
    }
    Outcome::from_recorders(1, [recorder]).after_setup(setup)
}
