//! `mstress`: phases of short-lived threads whose survivors outlive them
//! (after mimalloc's stress test).
//!
//! Every round starts fresh threads. Each allocates objects of mixed sizes
//! (mostly small, some medium, a few up to 256 KiB), frees random ones, and
//! swaps objects with a shared transfer table, so objects migrate between
//! threads. When a thread ends, a tenth of its objects survive into the table
//! and are freed later by threads of the next rounds: thread churn plus
//! cross-thread frees of memory whose owner thread is gone.
//! One operation: one allocate, free or swap step.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;
use std::sync::Mutex;
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "mstress",
    about: "rounds of short-lived threads, survivors freed by later threads",
    threaded: true,
    run,
    baseline: None,
};

const SEED: u64 = 0x3573;
const ROUNDS: usize = 10;
const BASE_STEPS: u64 = 60_000;
const TRANSFER_SLOTS: usize = 1024;
const BATCH: u32 = 256;

/// 90% 8..=256 B, 9% up to 8 KiB, 1% up to 256 KiB.
fn object_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0 => rng.range(8 << 10, 256 << 10),
        1..=9 => rng.range(256, 8 << 10),
        _ => rng.range(8, 256),
    }
}

fn run(params: &Params) -> Outcome {
    let threads = params.threads.max(1);
    let steps = params.scaled(BASE_STEPS, 256);
    let transfer: Vec<Mutex<Option<Block>>> =
        (0..TRANSFER_SLOTS).map(|_| Mutex::new(None)).collect();
    let mut recorders = Vec::new();
    for round in 0..ROUNDS {
        let transfer = &transfer;
        let round_recorders = thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mut rng = Rng::new(SEED ^ ((round * 64 + t) as u64) << 8);
                        stress_thread(&mut rng, steps, transfer)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker panicked"))
                .collect::<Vec<_>>()
        });
        recorders.extend(round_recorders);
    }
    drop(transfer);
    Outcome::from_recorders(threads, recorders)
}

fn stress_thread(rng: &mut Rng, steps: u64, transfer: &[Mutex<Option<Block>>]) -> Recorder {
    let mut local: Vec<Block> = Vec::with_capacity(steps as usize / 4);
    let mut recorder = Recorder::new(BATCH);
    recorder.start();
    for _ in 0..steps {
        match rng.below(100) {
            0..=49 => local.push(Block::new(object_size(rng))),
            50..=84 if !local.is_empty() => {
                let victim = rng.below(local.len());
                drop(local.swap_remove(victim));
            }
            _ => {
                // Swap a fresh object into a random slot; whatever was there
                // (allocated by some other thread, maybe a dead one) is ours now.
                let slot = &transfer[rng.below(transfer.len())];
                let incoming = slot.lock().unwrap().replace(Block::new(object_size(rng)));
                if let Some(block) = incoming {
                    local.push(block);
                }
            }
        }
        recorder.op();
    }
    // A tenth survive the thread, overwriting (freeing) older survivors.
    let survivors = local.len() / 10;
    for block in local.drain(..survivors) {
        let slot = &transfer[rng.below(transfer.len())];
        drop(slot.lock().unwrap().replace(block));
    }
    drop(local);
    recorder
}
