//! `rptest`: random sizes and lifetimes across threads, with realloc (after
//! rpmalloc's benchmark).
//!
//! Each thread keeps a table of slots. A step picks a slot: an empty one gets
//! a new block (sizes weighted to the small end: 16 B–1 KiB mostly, up to
//! 16 KiB, a few to 64 KiB), a full one is freed, or (one step in eight)
//! resized by `realloc` to a new random size. Every 1,000 steps a thread
//! hands a batch of its live blocks to the next thread, which frees them:
//! lifetimes cross threads, as in a server whose requests migrate. Peak RSS
//! against the live size is what separates allocators here.
//! One operation: one step.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;
use std::sync::{Barrier, Mutex};
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "rptest",
    about: "random sizes and lifetimes, realloc, blocks handed to other threads",
    threaded: true,
    run,
    baseline: None,
};

const SEED: u64 = 0x7e57;
const SLOTS: usize = 4096;
const BASE_STEPS: u64 = 1_000_000;
/// Steps between hand-overs.
const HAND_OVER_EVERY: u64 = 1000;
/// Blocks per hand-over.
const HAND_OVER: usize = 64;
const BATCH: u32 = 256;

/// 80% 16..=1024 B, 17% up to 16 KiB, 3% up to 64 KiB.
fn size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=2 => rng.range(16 << 10, 64 << 10),
        3..=19 => rng.range(1024, 16 << 10),
        _ => rng.range(16, 1024),
    }
}

fn run(params: &Params) -> Outcome {
    let threads = params.threads.max(1);
    let steps = params.scaled(BASE_STEPS, 2048);
    let rounds = steps.div_ceil(HAND_OVER_EVERY);
    // Mailbox t: blocks handed to thread t, freed by it.
    let mailboxes: Vec<Mutex<Vec<Block>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    let barrier = Barrier::new(threads);
    let recorders = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (mailboxes, barrier) = (&mailboxes, &barrier);
                scope.spawn(move || {
                    let mut rng = Rng::new(SEED + t as u64);
                    let mut slots: Vec<Option<Block>> = (0..SLOTS).map(|_| None).collect();
                    let mut outgoing: Vec<Block> = Vec::with_capacity(HAND_OVER);
                    barrier.wait();
                    let mut recorder = Recorder::new(BATCH);
                    recorder.start();
                    for _ in 0..rounds {
                        for _ in 0..HAND_OVER_EVERY {
                            let slot = &mut slots[rng.below(SLOTS)];
                            match slot {
                                None => *slot = Some(Block::new(size(&mut rng))),
                                Some(block) if rng.below(8) == 0 => block.resize(size(&mut rng)),
                                Some(_) => *slot = None,
                            }
                            recorder.op();
                        }
                        // Live blocks leave for the next thread.
                        let start = rng.below(SLOTS);
                        for i in 0..SLOTS {
                            if outgoing.len() == HAND_OVER {
                                break;
                            }
                            if let Some(b) = slots[(start + i) % SLOTS].take() {
                                outgoing.push(b);
                            }
                        }
                        mailboxes[(t + 1) % threads]
                            .lock()
                            .unwrap()
                            .append(&mut outgoing);
                        // What others handed us is freed here (outside the lock).
                        let incoming = std::mem::take(&mut *mailboxes[t].lock().unwrap());
                        drop(incoming);
                    }
                    barrier.wait();
                    drop(std::mem::take(&mut *mailboxes[t].lock().unwrap()));
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
