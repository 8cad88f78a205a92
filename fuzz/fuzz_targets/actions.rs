//! libFuzzer target: a sequence of hakmem actions (the `Action` enum of
//! `hakmem/tests/actions/mod.rs`, shared with the proptest model test), run
//! against hakmem's API with every block's alignment, usable size, overlap
//! and contents checked. hakmem is built with `debug-checks`, so its page
//! invariants and free-list checks run too.
//!
//! The fuzzer's own memory comes from the system allocator; hakmem serves
//! only the actions.

#![no_main]

#[path = "../../hakmem/tests/actions/mod.rs"]
mod actions;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: Vec<actions::Action>| {
    // Long inputs only repeat what short ones do, slower.
    let n = input.len().min(512);
    actions::Model::run(&input[..n]);
});
