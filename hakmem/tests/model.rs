//! Model test of hakmem's API (proptest): random sequences of the action
//! language in `tests/actions/mod.rs` — malloc, calloc, aligned and Rust
//! allocations of every size band, frees, reallocs, hand-offs to and from
//! another thread, blocks left by exiting threads, large blocks through a
//! pipeline of two threads, aging of every BigCache, injected map failures,
//! collects and absurd requests — each checked for alignment, usable size,
//! overlap and contents. The same actions drive the libFuzzer target in
//! `fuzz/` (`scripts/test-fuzz.sh`); this test is its stable-Rust stand-in.
//!
//! `PROPTEST_CASES=n` sets the number of sequences (default 128), e.g.
//! `PROPTEST_CASES=2000 cargo test --release -p hakmem --test model` for a long run.

mod actions;

use actions::{Action, Align, How, Model, Size};
use proptest::prelude::*;
use std::sync::{Mutex, MutexGuard};

/// The map-failure injector is process-wide: one sequence at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        4 => any::<u8>().prop_map(Size::Tiny),
        4 => any::<u16>().prop_map(Size::Small),
        2 => any::<u16>().prop_map(Size::Medium),
        1 => any::<u32>().prop_map(Size::Big),
        1 => any::<u32>().prop_map(Size::Large),
        1 => any::<u16>().prop_map(Size::Huge),
        2 => any::<u8>().prop_map(Size::Boundary),
    ]
}

fn align() -> impl Strategy<Value = Align> {
    prop_oneof![
        6 => (0u8..=4).prop_map(Align),
        3 => (5u8..=13).prop_map(Align),
        1 => (14u8..=23).prop_map(Align),
    ]
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![
        Just(How::Malloc),
        Just(How::Calloc),
        Just(How::Aligned),
        Just(How::RustAlloc),
        Just(How::RustZeroed),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        12 => (how(), size(), align()).prop_map(|(how, size, align)| Action::Alloc { how, size, align }),
        7 => any::<u16>().prop_map(|idx| Action::Free { idx }),
        4 => (any::<u16>(), size()).prop_map(|(idx, size)| Action::Realloc { idx, size }),
        2 => any::<u16>().prop_map(|idx| Action::HandOff { idx }),
        2 => size().prop_map(|size| Action::Adopt { size }),
        1 => (any::<u8>(), size()).prop_map(|(count, size)| Action::Orphans { count, size }),
        1 => any::<u8>().prop_map(|n| Action::FailMaps { n }),
        1 => any::<bool>().prop_map(|force| Action::Collect { force }),
        1 => any::<u8>().prop_map(|which| Action::Absurd { which }),
        1 => Just(Action::AgeCaches),
        1 => (any::<u8>(), size()).prop_map(|(count, size)| Action::Pipeline { count, size }),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_action_sequence_keeps_every_block_intact(actions in prop::collection::vec(action(), 1..400)) {
        let _serial = serial();
        Model::run(&actions);
    }
}

/// Exhausting memory with every map failing, then getting it back: what was
/// freed meanwhile is reused without the OS, and once maps succeed everything works.
#[test]
fn allocation_under_persistent_map_failure_then_recovery() {
    let _serial = serial();
    let mut actions = vec![Action::FailMaps { n: 255 }];
    for i in 0..3000u16 {
        actions.push(Action::Alloc {
            how: [How::Malloc, How::Calloc, How::Aligned, How::RustAlloc][i as usize % 4],
            size: [
                Size::Small(i.wrapping_mul(7919)),
                Size::Medium(i),
                Size::Large(i as u32),
            ][i as usize % 3],
            align: Align((i % 14) as u8),
        });
        if i % 3 == 0 {
            actions.push(Action::Free {
                idx: i.wrapping_mul(31),
            });
        }
        if i % 5 == 0 {
            actions.push(Action::Realloc {
                idx: i,
                size: Size::Big(i as u32 * 977),
            });
        }
    }
    actions.push(Action::Collect { force: false });
    for i in 0..200u16 {
        actions.push(Action::Alloc {
            how: How::Malloc,
            size: Size::Boundary(i as u8),
            align: Align(0),
        });
    }
    let stats = Model::run(&actions);
    assert!(stats.injected_nulls > 0, "no allocation failed: {stats:?}");
}

/// Blocks crossing threads both ways and outliving their threads.
#[test]
fn blocks_cross_threads_and_outlive_them() {
    let _serial = serial();
    let mut actions = Vec::new();
    for i in 0..400u16 {
        actions.push(Action::Adopt {
            size: Size::Small(i * 13),
        });
        actions.push(Action::Orphans {
            count: i as u8,
            size: Size::Tiny(i as u8),
        });
        actions.push(Action::HandOff { idx: i * 7 });
        if i % 16 == 0 {
            actions.push(Action::Collect { force: i % 32 == 0 });
        }
    }
    let stats = Model::run(&actions);
    assert!(stats.remote_frees >= 400, "{stats:?}");
}

/// Large blocks of every size crossing threads both ways (a pipeline, and
/// hand-offs), reallocated in place and moved, with every BigCache aged now
/// and then: freed large memory is reused at other sizes, intact, and calloc
/// of reused memory is zeroed.
#[test]
fn large_blocks_cross_threads_and_age_out_of_the_caches() {
    let _serial = serial();
    let before = hakmem::stats().large;
    let mut actions = Vec::new();
    for i in 0..120u16 {
        let size = [Size::Large(i as u32 * 104_729), Size::Huge(i * 211)][i as usize % 2];
        actions.push(Action::Pipeline {
            count: i as u8,
            size,
        });
        actions.push(Action::Adopt { size });
        actions.push(Action::Alloc {
            how: [How::Malloc, How::Calloc, How::RustZeroed][i as usize % 3],
            size: Size::Large(i as u32 * 7_919),
            align: Align((i % 14) as u8),
        });
        actions.push(Action::Realloc {
            idx: i * 3,
            size: Size::Large(i as u32 * 31_337),
        });
        actions.push(Action::HandOff { idx: i * 5 });
        if i % 8 == 0 {
            actions.push(Action::AgeCaches);
        }
        if i % 4 == 3 {
            actions.push(Action::Free { idx: i });
        }
    }
    let stats = Model::run(&actions);
    let after = hakmem::stats().large;
    assert!(stats.large_remote_frees >= 120, "{stats:?}");
    // With per-thread caches (the default) and the span heap in use, a
    // large block freed by another thread goes back to its allocating
    // thread's side through the span level.
    let per_thread = hakmem::options::get().bigcache == hakmem::options::BigCacheMode::Thread;
    let spans = after.span_allocs > before.span_allocs;
    assert!(
        !(per_thread && spans) || after.span_cross_thread_frees > before.span_cross_thread_frees,
        "no large free crossed threads at the span level: {before:?} -> {after:?}"
    );
}
