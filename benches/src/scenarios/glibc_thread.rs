//! `glibc-thread`: glibc's bench-malloc-thread — every thread frees and
//! allocates random blocks of a private working set.
//!
//! Each thread keeps 2,048 slots; a step frees the block of a random slot and
//! allocates a new one of a random size in its place. Sizes follow the
//! benchmark's distribution: mostly small (up to 256 B), fewer up to 4 KiB,
//! rarely up to 32 KiB. No block crosses threads, so this measures the
//! per-thread paths under contention for nothing but the allocator's own
//! shared state. One operation: one free plus one malloc.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "glibc-thread",
    about: "glibc bench-malloc-thread: random replace in a private working set",
    threaded: true,
    run,
    baseline: None,
};

const SEED: u64 = 0x91bc;
const SLOTS: usize = 2048;
const BASE_OPS: u64 = 2_000_000;
const BATCH: u32 = 256;

/// 75% 1..=256 B, 20% up to 4 KiB, 5% up to 32 KiB.
fn size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=4 => rng.range(4096, 32 << 10),
        5..=24 => rng.range(256, 4096),
        _ => rng.range(1, 256),
    }
}

fn run(params: &Params) -> Outcome {
    let threads = params.threads.max(1);
    let ops = params.scaled(BASE_OPS, 1024);
    let recorders = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut rng = Rng::new(SEED + t as u64);
                    let mut slots: Vec<Option<Block>> = (0..SLOTS)
                        .map(|_| Some(Block::new(size(&mut rng))))
                        .collect();
                    let mut recorder = Recorder::new(BATCH);
                    recorder.start();
                    for _ in 0..ops {
                        let i = rng.below(SLOTS);
                        // The old block is freed before its replacement exists.
                        slots[i] = None;
                        slots[i] = Some(Block::new(size(&mut rng)));
                        recorder.op();
                    }
                    drop(slots);
                    recorder
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect::<Vec<_>>()
    });
    Outcome::from_recorders(threads, recorders)
}
