//! `cache-thrash`: active false sharing (Hoard's cache-thrash).
//!
//! Every worker repeatedly allocates a small object of its own, writes it
//! many times and frees it. Nothing is shared by the program; an allocator
//! that hands threads neighbouring blocks of one cache line (one shared heap,
//! or one page split between threads) makes their writes fight over that
//! line — the "active" false sharing the allocator itself causes.
//! One operation: allocate, 100 passes of writes over 8 bytes, free.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::timing::Recorder;
use std::sync::Barrier;
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "cache-thrash",
    about: "active false sharing: each thread allocates, writes, frees its own objects",
    threaded: true,
    run,
    baseline: None,
};

const OBJECT: usize = 8;
const WRITES: usize = 100;
const BASE_OPS: u64 = 300_000;
const BATCH: u32 = 256;

fn run(params: &Params) -> Outcome {
    let threads = params.threads.max(1);
    let ops = params.scaled(BASE_OPS, 256);
    // All start together, so their first objects come from the allocator at
    // the same time (where a shared heap would interleave them).
    let barrier = Barrier::new(threads);
    let recorders = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let mut recorder = Recorder::new(BATCH);
                    recorder.start();
                    for _ in 0..ops {
                        let mut object = Block::new(OBJECT);
                        object.scribble(OBJECT, WRITES, t as u8);
                        drop(object);
                        recorder.op();
                    }
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
