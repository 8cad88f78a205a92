//! `larson`: server threads that replace random objects, then hand their object
//! set to the next thread (Larson & Krishnan's server simulation).
//!
//! Each thread owns an array of 1000 objects of 8..=1024 bytes and repeatedly
//! frees a random one and allocates a replacement. After every round the arrays
//! rotate between threads, so from then on each thread frees objects another
//! thread allocated — the cross-thread frees that break allocators whose free
//! path assumes the freeing thread is the owner. One operation: one replacement.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;
use std::sync::{Barrier, Mutex};
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "larson",
    about: "server threads replacing objects, arrays rotate between threads",
    threaded: true,
    run,
    baseline: None,
};

const SEED: u64 = 0x1a750;
const SLOTS: usize = 1000;
const ROUNDS: usize = 20;
/// Replacements per thread and round at the default size.
const BASE_OPS_PER_ROUND: u64 = 100_000;
const BATCH: u32 = 256;

fn run(params: &Params) -> Outcome {
    let threads = params.threads.max(1);
    let per_round = params.scaled(BASE_OPS_PER_ROUND, 64);
    // The hand-over board: slot t holds the array thread t passes on.
    let board: Vec<Mutex<Option<Vec<Block>>>> = (0..threads).map(|_| Mutex::new(None)).collect();
    let barrier = Barrier::new(threads);
    let recorders = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (board, barrier) = (&board, &barrier);
                scope.spawn(move || {
                    let mut rng = Rng::new(SEED + t as u64);
                    let mut objects: Vec<Block> =
                        (0..SLOTS).map(|_| Block::new(rng.range(8, 1024))).collect();
                    let mut recorder = Recorder::new(BATCH);
                    recorder.start();
                    for _ in 0..ROUNDS {
                        for _ in 0..per_round {
                            objects[rng.below(SLOTS)] = Block::new(rng.range(8, 1024));
                            recorder.op();
                        }
                        *board[t].lock().unwrap() = Some(objects);
                        barrier.wait();
                        objects = board[(t + 1) % threads].lock().unwrap().take().unwrap();
                        barrier.wait();
                    }
                    drop(objects);
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
