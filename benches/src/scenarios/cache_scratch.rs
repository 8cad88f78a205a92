//! `cache-scratch`: passive false sharing (Hoard's cache-scratch).
//!
//! The main thread allocates one small object per worker, back to back, and
//! hands them out; each worker frees its object and then repeatedly allocates
//! an 8-byte object, writes it many times and frees it. An allocator that gives
//! a worker memory from the cache line another worker writes makes both stall
//! on coherence traffic; one with per-thread heaps does not.
//! One operation: allocate, 100 passes of writes over 8 bytes, free.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::timing::Recorder;
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "cache-scratch",
    about: "passive false sharing: small objects handed out, freed, reused",
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
    // Allocated together by one thread, so with a naive allocator they share
    // cache lines — the "passive" in passive false sharing.
    let handed_out: Vec<Block> = (0..threads).map(|_| Block::new(OBJECT)).collect();
    let recorders = thread::scope(|scope| {
        let handles: Vec<_> = handed_out
            .into_iter()
            .enumerate()
            .map(|(t, first)| {
                scope.spawn(move || {
                    drop(first);
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
