//! `cfrac`: the objects of a bignum program (after cfrac, which factors
//! integers with continued fractions).
//!
//! Numbers are arrays of 64-bit limbs behind a small header, 16–80 bytes.
//! Each step computes one arithmetic result from two operands of the working
//! set: the result is a fresh allocation one limb longer than the larger
//! operand (a product is the sum of the lengths, capped), its temporaries are
//! freed at once, and the result replaces a random member of the working set
//! (the old one is freed) — a steady churn of tiny objects whose sizes track
//! one another, almost all dying young. One thread; one operation: one step
//! (about three mallocs and three frees).

use super::{Outcome, Params, Scenario};
use crate::block::Block;
use crate::rng::Rng;
use crate::timing::Recorder;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "cfrac",
    about: "bignum program: tiny numbers computed, replaced, mostly dying young",
    threaded: false,
    run,
    baseline: None,
};

const SEED: u64 = 0xcf7ac;
/// Numbers alive at any time (cfrac keeps a few hundred).
const WORKING_SET: usize = 256;
/// Header (sign, length, capacity) plus limbs.
const HEADER: usize = 16;
const MAX_LIMBS: usize = 8;
const BASE_OPS: u64 = 2_000_000;
const BATCH: u32 = 256;

/// A number: its limb count and its memory.
struct Number {
    limbs: usize,
    block: Block,
}

impl Number {
    fn new(limbs: usize) -> Number {
        let limbs = limbs.clamp(1, MAX_LIMBS);
        let size = HEADER + 8 * limbs;
        let mut block = Block::new(size);
        // Written like a result is: every limb.
        block.scribble(size, 1, limbs as u8);
        Number { limbs, block }
    }
}

fn run(params: &Params) -> Outcome {
    let ops = params.scaled(BASE_OPS, 1024);
    let mut rng = Rng::new(SEED);
    let mut set: Vec<Number> = (0..WORKING_SET)
        .map(|_| Number::new(rng.range(1, 4)))
        .collect();
    let mut recorder = Recorder::new(BATCH);
    recorder.start();
    for _ in 0..ops {
        let (a, b) = (
            set[rng.below(WORKING_SET)].limbs,
            set[rng.below(WORKING_SET)].limbs,
        );
        let result_limbs = match rng.below(4) {
            // Multiplication: lengths add (then reduced modulo N: capped).
            0 => a + b,
            // Division and modulo shrink.
            1 => a.max(b).saturating_sub(rng.below(2)),
            // Addition, subtraction: one carry limb at most.
            _ => a.max(b) + rng.below(2),
        };
        // Temporaries of the operation (a carry buffer, a normalised copy).
        let t1 = Number::new(a.max(b));
        let t2 = Number::new(result_limbs);
        let result = Number::new(result_limbs);
        drop((t1, t2));
        // The new value replaces an old one, which dies.
        set[rng.below(WORKING_SET)] = result;
        recorder.op();
    }
    std::hint::black_box(set.iter().map(|n| n.block.size()).sum::<usize>());
    Outcome::from_recorders(1, [recorder])
}
