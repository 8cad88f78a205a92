//! `glibc-simple`: glibc's bench-malloc-simple — allocate N blocks of one size,
//! free them all, repeat.
//!
//! Runs every combination of N in {25, 100, 400, 1600} and sizes {16, 64, 256,
//! 1024} bytes with the same number of operations each, on one thread. It
//! rewards a short fast path and LIFO reuse; it is the friendliest possible
//! pattern for any size-class allocator. One operation: one malloc plus its free.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "glibc-simple",
    about: "glibc bench-malloc-simple: N mallocs of one size, then N frees",
    threaded: false,
    run,
    baseline: None,
};

const COUNTS: [usize; 4] = [25, 100, 400, 1600];
const SIZES: [usize; 4] = [16, 64, 256, 1024];
/// Operations per (count, size) combination at the default size.
const BASE_OPS_PER_CASE: u64 = 250_000;

fn run(params: &Params) -> Outcome {
    let per_case = params.scaled(BASE_OPS_PER_CASE, 1600) as usize;
    // One batch is one round (N mallocs + N frees), so the histogram shows
    // per-round cost per operation.
    let mut recorders = Vec::new();
    let mut blocks: Vec<Block> = Vec::with_capacity(*COUNTS.iter().max().unwrap());
    for &count in &COUNTS {
        let mut recorder = Recorder::new(count as u32);
        recorder.start();
        for &size in &SIZES {
            for _ in 0..per_case.div_ceil(count) {
                for _ in 0..count {
                    blocks.push(Block::new(size));
                    recorder.op();
                }
                blocks.clear();
            }
        }
        recorders.push(recorder);
    }
    Outcome::from_recorders(1, recorders)
}
