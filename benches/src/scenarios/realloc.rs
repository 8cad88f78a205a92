//! `realloc`: growing buffers, as string builders and vectors without
//! geometric growth do.
//!
//! Sixteen buffers grow interleaved by 16..=512 bytes per `realloc`; each is
//! freed when it reaches its own random target (1 KiB to 256 KiB) and a new one
//! starts at 16 bytes. Interleaving means a buffer's neighbour is usually in the
//! way, so the allocator must choose between growing in place, moving (a copy),
//! or remapping. One operation: one `realloc`.

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "realloc",
    about: "16 interleaved buffers grown by small reallocs up to 256 KiB",
    threaded: false,
    run,
    baseline: None,
};

const SEED: u64 = 0x4ea1;
const BUFFERS: usize = 16;
const BASE_OPS: u64 = 1_000_000;
const BATCH: u32 = 256;

struct Growing {
    block: Block,
    target: usize,
}

impl Growing {
    fn start(rng: &mut Rng) -> Growing {
        Growing {
            block: Block::new(16),
            target: rng.range(1 << 10, 256 << 10),
        }
    }
}

fn run(params: &Params) -> Outcome {
    let ops = params.scaled(BASE_OPS, 256);
    let mut rng = Rng::new(SEED);
    let mut buffers: Vec<Growing> = (0..BUFFERS).map(|_| Growing::start(&mut rng)).collect();
    let mut recorder = Recorder::new(BATCH);
    recorder.start();
    for _ in 0..ops {
        let buffer = &mut buffers[rng.below(BUFFERS)];
        let new_size = buffer.block.size() + rng.range(16, 512);
        buffer.block.resize(new_size);
        if new_size >= buffer.target {
            *buffer = Growing::start(&mut rng);
        }
        recorder.op();
    }
    drop(buffers);
    Outcome::from_recorders(1, [recorder])
}
