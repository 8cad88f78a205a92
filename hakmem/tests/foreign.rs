//! Foreign pointers under `#[global_allocator]`: `hakmem::owns` tells hakmem's
//! blocks from stack, static and glibc-malloc'd memory; a foreign pointer
//! passed to `free` is left alone and counted in release builds, and aborts
//! with the pointer in the message in debug builds. (Only the Rust allocator
//! is replaced here, so `libc::malloc` is glibc's.)
//!
//! Tests that abort run in a child process: this binary re-executed with one
//! `#[ignore]`d test selected.

use std::alloc::{alloc, dealloc, Layout};
use std::process::Command;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

static STATIC_BYTES: [u8; 64] = [0; 64];

/// Runs the `#[ignore]`d test `name` in a child process; returns (success, stderr).
fn run_child(name: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HAKMEM_TEST_CHILD", "1")
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.success() && stdout.contains("1 passed"),
        format!("{stdout}\n{stderr}"),
    )
}

fn in_child() -> bool {
    std::env::var_os("HAKMEM_TEST_CHILD").is_some()
}

#[test]
fn owns_tells_our_blocks_from_everything_else() {
    let local = 5u64;
    assert!(
        !hakmem::owns(&local as *const u64 as *const u8),
        "a stack address"
    );
    assert!(!hakmem::owns(STATIC_BYTES.as_ptr()), "a static");
    assert!(!hakmem::owns(std::ptr::null()), "null");
    assert!(
        !hakmem::owns(owns_tells_our_blocks_from_everything_else as *const u8),
        "code"
    );
    assert!(
        !hakmem::owns(usize::MAX as *const u8),
        "the top of the address space"
    );
    for size in [1usize, 100, 10_000, 1 << 20, 10 << 20] {
        // SAFETY: plain libc allocation, freed below.
        let p = unsafe { libc::malloc(size) } as *mut u8;
        assert!(!p.is_null());
        assert!(
            !hakmem::owns(p),
            "glibc malloc({size}) = {p:p} reported as hakmem's"
        );
        // SAFETY: from libc::malloc.
        unsafe { libc::free(p as *mut libc::c_void) };
    }

    let mut ours: Vec<(*mut u8, Layout)> = Vec::new();
    for (size, align) in [
        (1, 1),
        (100, 8),
        (5000, 16),
        (100_000, 8),
        (600 << 10, 8),
        (3 << 20, 64),
        (64, 4 << 20),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(hakmem::owns(p), "our {layout:?} block {p:p} not recognised");
        // SAFETY: the block holds `size` bytes, so its last byte is inside it.
        assert!(
            hakmem::owns(unsafe { p.add(size - 1) }),
            "last byte of {layout:?}"
        );
        ours.push((p, layout));
    }
    let boxed = Box::new([7u8; 48]);
    assert!(hakmem::owns(boxed.as_ptr()));
    let s = String::from("owned by hakmem");
    assert!(hakmem::owns(s.as_ptr()));
    for (p, layout) in ours {
        // SAFETY: allocated above with `layout`.
        unsafe { dealloc(p, layout) };
    }
}

#[test]
fn freeing_a_foreign_pointer_leaves_it_alone() {
    let (ok, output) = run_child("child_free_foreign");
    // hakmem's checks are on in debug builds and with the debug-checks feature.
    if cfg!(any(debug_assertions, feature = "debug-checks")) {
        assert!(
            !ok,
            "debug build: free of a foreign pointer did not abort\n{output}"
        );
        assert!(
            output.contains("pointer not allocated by hakmem") && output.contains("aborting"),
            "debug build: the abort does not say why\n{output}"
        );
        assert!(
            output.contains("free(0x"),
            "the message does not name the pointer\n{output}"
        );
    } else {
        assert!(
            ok,
            "release build: free of a foreign pointer was not survived\n{output}"
        );
        assert_eq!(
            output.matches("pointer not allocated by hakmem").count(),
            1,
            "release build: report once\n{output}"
        );
    }
}

#[test]
#[ignore = "run in a child process by freeing_a_foreign_pointer_leaves_it_alone"]
fn child_free_foreign() {
    if !in_child() {
        return;
    }
    let before = hakmem::stats();
    // SAFETY: plain libc allocation.
    let p = unsafe { libc::malloc(200) } as *mut u8;
    // SAFETY: 200 writable bytes.
    unsafe { p.write_bytes(0x5a, 200) };
    let mut local = [0x33u8; 32];
    // SAFETY: hakmem must recognise both as foreign and touch neither
    // (a debug build aborts here).
    unsafe {
        hakmem::free(p);
        hakmem::free(local.as_mut_ptr());
        hakmem::free(STATIC_BYTES.as_ptr() as *mut u8);
        assert_eq!(hakmem::usable_size(p), 0);
    }
    let after = hakmem::stats();
    assert_eq!(after.foreign_frees, before.foreign_frees + 4);
    // SAFETY: still glibc's block, untouched.
    let bytes = unsafe { std::slice::from_raw_parts(p, 200) };
    assert!(
        bytes.iter().all(|&b| b == 0x5a),
        "hakmem wrote into a foreign block"
    );
    assert!(
        local.iter().all(|&b| b == 0x33),
        "hakmem wrote into a foreign stack buffer"
    );
    // SAFETY: glibc's block, freed by glibc.
    unsafe { libc::free(p as *mut libc::c_void) };
    // hakmem still works afterwards.
    let v: Vec<u64> = (0..10_000).collect();
    assert_eq!(v.iter().sum::<u64>(), 49_995_000);
}

#[test]
fn debug_builds_catch_bad_frees_of_our_blocks() {
    if !cfg!(any(debug_assertions, feature = "debug-checks")) {
        return; // release builds trust the pointer past the region lookup
    }
    let (ok, output) = run_child("child_free_interior");
    assert!(
        !ok && output.contains("not the start of a block"),
        "interior free not caught\n{output}"
    );
    let (ok, output) = run_child("child_double_free");
    assert!(
        !ok && output.contains("double free"),
        "double free not caught\n{output}"
    );
}

#[test]
#[ignore = "run in a child process by debug_builds_catch_bad_frees_of_our_blocks"]
fn child_free_interior() {
    if !in_child() {
        return;
    }
    let b = Box::into_raw(Box::new([0u64; 8])) as *mut u8;
    // SAFETY: deliberately wrong: a pointer into the middle of a block.
    unsafe { hakmem::free(b.add(16)) };
}

#[test]
#[ignore = "run in a child process by debug_builds_catch_bad_frees_of_our_blocks"]
fn child_double_free() {
    if !in_child() {
        return;
    }
    let p = hakmem::alloc_here(100);
    // SAFETY: deliberately wrong: the second free is of a freed block.
    unsafe {
        hakmem::free(p);
        hakmem::free(p);
    }
}

#[test]
fn owns_is_false_for_glibc_mappings_next_to_large_blocks() {
    // A large block maps only what it needs of its 4 MiB region; the kernel
    // may place other mappings (here glibc's mmap-backed mallocs) in the rest.
    let ours: Vec<Vec<u8>> = (0..8).map(|_| vec![1u8; 600 << 10]).collect();
    let theirs: Vec<*mut u8> = (0..32)
        // SAFETY: plain libc allocations, freed below.
        .map(|_| unsafe { libc::malloc(256 << 10) } as *mut u8)
        .collect();
    let wrong: Vec<*mut u8> = theirs
        .iter()
        .copied()
        .filter(|&p| hakmem::owns(p))
        .collect();
    for p in theirs {
        // SAFETY: from libc::malloc.
        unsafe { libc::free(p as *mut libc::c_void) };
    }
    drop(ours);
    assert!(
        wrong.is_empty(),
        "glibc blocks reported as hakmem's: {wrong:?}"
    );
}
