//! `large-realloc`: buffers grown by doubling `realloc` from 64 KiB to 32 MiB
//! (a vector, a read-whole-file buffer), every new page written.
//!
//! An allocator can grow a large block in place (free pages after it,
//! `mremap`) or must copy it; a block grown to 32 MiB and freed should serve
//! the next buffer's early sizes without new page faults.
//! One operation: one `realloc` to twice the size, then a write to every page
//! of the block (the first allocation of each buffer counts as one too).

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "large-realloc",
    about: "buffers grown by doubling realloc from 64 KiB to 32 MiB, new pages written",
    threaded: false,
    run,
    baseline: None,
};

const BASE_BUFFERS: u64 = 200;
const START: usize = 64 << 10;
const END: usize = 32 << 20;

fn run(params: &Params) -> Outcome {
    let buffers = params.scaled(BASE_BUFFERS, 4);
    let mut recorder = Recorder::new(1);
    recorder.start();
    for _ in 0..buffers {
        let mut block = Block::new(START);
        block.touch_pages();
        recorder.op();
        while block.size() < END {
            block.resize(block.size() * 2);
            // Every page again: the old half is resident (a few ns a page),
            // the new half faults unless the allocator reused resident memory.
            block.touch_pages();
            recorder.op();
        }
    }
    Outcome::from_recorders(1, [recorder])
}
