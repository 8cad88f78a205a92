//! `small-churn-mt`: `small-churn` on every thread at once (issue 2's second
//! microbenchmark: the same malloc/free pairs across threads).
//!
//! Each thread has its own window and seed and never frees another thread's
//! objects, so an allocator with per-thread heaps scales linearly and one with
//! a shared lock does not. One operation: as in `small-churn`.

use super::{small_churn, Outcome, Params, Scenario};
use crate::rng::Rng;
use std::thread;

/// The scenario table entry.
pub const SCENARIO: Scenario = Scenario {
    name: "small-churn-mt",
    about: "small-churn on every thread at once (no cross-thread frees)",
    threaded: true,
    run,
    baseline: None,
};

const SEED: u64 = 0x5c37;
/// Per thread, so the work per thread matches `small-churn` at the same size.
const BASE_OPS: u64 = 4_000_000;

fn run(params: &Params) -> Outcome {
    let threads = params.threads.max(1);
    let ops = params.scaled(BASE_OPS, 1024);
    let recorders = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || small_churn::churn(Rng::new(SEED + t as u64), ops)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect::<Vec<_>>()
    });
    Outcome::from_recorders(threads, recorders)
}
