//! `large-pipeline`: buffers of 1–4 MiB filled on one thread, read and freed
//! on another (a data pipeline, a server's I/O thread).
//!
//! Every free is cross-thread: an allocator whose freed large memory stays
//! with the freeing thread (hakmem's per-thread BigCache before issue 13)
//! makes the producer map and fault fresh memory for every buffer; one with a
//! shared level (tcmalloc's transfer cache and page heap, mimalloc's arenas)
//! hands the consumer's frees back to the producer. With `--threads N`,
//! `N / 2` producer/consumer pairs (at least one).
//! One operation: one buffer allocated and written page by page by the
//! producer, then written page by page and freed by the consumer.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;
use std::sync::mpsc::sync_channel;
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "large-pipeline",
    about: "1-4 MiB buffers filled on one thread, freed on another (cross-thread large frees)",
    threaded: true,
    run,
    baseline: None,
};

const SEED: u64 = 0x919e;
const BASE_BUFFERS: u64 = 3000;
/// Buffers in flight between the two threads.
const DEPTH: usize = 4;
const MIN: usize = 1 << 20;
const MAX: usize = 4 << 20;

fn run(params: &Params) -> Outcome {
    let pairs = (params.threads / 2).max(1);
    let buffers = params.scaled(BASE_BUFFERS, 16);
    let recorders = thread::scope(|scope| {
        let producers: Vec<_> = (0..pairs)
            .map(|p| {
                let (tx, rx) = sync_channel::<Block>(DEPTH);
                scope.spawn(move || {
                    for mut buffer in rx {
                        buffer.touch_pages();
                        drop(buffer);
                    }
                });
                scope.spawn(move || {
                    let mut rng = Rng::new(SEED + p as u64);
                    let mut recorder = Recorder::new(1);
                    recorder.start();
                    for _ in 0..buffers {
                        let mut buffer = Block::new(rng.range(MIN, MAX));
                        buffer.touch_pages();
                        tx.send(buffer).expect("consumer alive");
                        recorder.op();
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
