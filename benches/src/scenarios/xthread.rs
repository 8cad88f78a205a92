//! `xthread`: producer/consumer pairs — every object is freed by a thread that
//! did not allocate it (issue 2's third microbenchmark).
//!
//! Half the threads produce batches of 64 objects of 8..=1024 bytes and send
//! them over a bounded channel; their partner frees them. The producer's
//! allocator must get the memory back from the consumer's frees (mimalloc's
//! thread-free lists, hakmem's remote frees), or it grows without bound.
//! At least one pair runs even with `--threads 1`. One operation: one object
//! allocated by the producer and freed by the consumer.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;
use std::sync::mpsc::sync_channel;
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "xthread",
    about: "producer/consumer pairs, every free is cross-thread",
    threaded: true,
    run,
    baseline: None,
};

const SEED: u64 = 0x87;
const BATCH_OBJECTS: usize = 64;
const BASE_BATCHES: u64 = 40_000;
/// Channel depth: enough to keep both sides busy, small enough that the
/// producer cannot run away from the consumer.
const DEPTH: usize = 16;

fn run(params: &Params) -> Outcome {
    let pairs = (params.threads / 2).max(1);
    let batches = params.scaled(BASE_BATCHES, 16);
    let recorders = thread::scope(|scope| {
        let producers: Vec<_> = (0..pairs)
            .map(|p| {
                let (tx, rx) = sync_channel::<Vec<Block>>(DEPTH);
                scope.spawn(move || {
                    for batch in rx {
                        drop(batch);
                    }
                });
                scope.spawn(move || {
                    let mut rng = Rng::new(SEED + p as u64);
                    let mut recorder = Recorder::new(BATCH_OBJECTS as u32);
                    recorder.start();
                    for _ in 0..batches {
                        let mut batch = Vec::with_capacity(BATCH_OBJECTS);
                        for _ in 0..BATCH_OBJECTS {
                            batch.push(Block::new(rng.range(8, 1024)));
                            recorder.op();
                        }
                        tx.send(batch).expect("consumer alive");
                    }
                    recorder
                })
            })
            .collect();
        producers
            .into_iter()
            .map(|h| h.join().expect("producer panicked"))
            .collect::<Vec<_>>()
    });
    Outcome::from_recorders(pairs * 2, recorders)
}
