//! `espresso`: the objects of a symbolic program (after espresso, the logic
//! minimiser).
//!
//! A cover is a growing array of cubes; a cube is a bit set of 16–256 bytes
//! (sized by the number of variables of the problem, which changes per
//! phase). Each phase builds a cover cube by cube (the array grows by
//! `realloc`), derives a second cover from it (cube by cube: intersections,
//! half of them dropped at once as empty), frees the first and keeps the
//! second as the next phase's input. Objects of one size live together and
//! die together; sizes change between phases. One thread; one operation: one
//! cube allocated (and, in time, freed).

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "espresso",
    about: "symbolic program: covers of bit-set cubes built, derived, dropped per phase",
    threaded: false,
    run,
    baseline: None,
};

const SEED: u64 = 0xe5b7e550;
/// Cubes of a cover at the start of a phase.
const COVER: usize = 2000;
const BASE_PHASES: u64 = 400;
const BATCH: u32 = 256;

/// A cover: its cubes and the array that holds them (grown by realloc).
struct Cover {
    cubes: Vec<Block>,
    array: Block,
}

impl Cover {
    fn new() -> Cover {
        Cover {
            cubes: Vec::with_capacity(COVER * 2),
            array: Block::new(64),
        }
    }

    fn push(&mut self, cube: Block) {
        self.cubes.push(cube);
        let needed = self.cubes.len() * 8;
        if needed > self.array.size() {
            self.array.resize(needed * 2);
        }
    }
}

fn run(params: &Params) -> Outcome {
    let phases = params.scaled(BASE_PHASES, 4);
    let mut rng = Rng::new(SEED);
    let mut recorder = Recorder::new(BATCH);
    recorder.start();
    let mut input = Cover::new();
    for phase in 0..phases {
        // The problem's width: 16..=256-byte cubes, the same within a phase.
        let cube_bytes = 16 << (phase % 5);
        let mut built = Cover::new();
        for _ in 0..COVER {
            let mut cube = Block::new(cube_bytes);
            cube.scribble(cube_bytes, 1, phase as u8);
            built.push(cube);
            recorder.op();
        }
        // The previous phase's result is consumed now.
        drop(std::mem::replace(&mut input, Cover::new()));
        let mut derived = Cover::new();
        for i in 0..built.cubes.len() {
            let mut cube = Block::new(cube_bytes);
            cube.scribble(cube_bytes.min(64), 1, i as u8);
            recorder.op();
            // Half the intersections are empty and dropped at once.
            if rng.below(2) == 0 {
                derived.push(cube);
            }
        }
        drop(built);
        input = derived;
    }
    drop(input);
    Outcome::from_recorders(1, [recorder])
}
