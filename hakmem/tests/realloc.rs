//! realloc under `#[global_allocator]`: growing and shrinking across size-class,
//! page-kind and large-block boundaries keeps the contents, for default and
//! over-aligned layouts, on the owning thread and on another one.

use std::alloc::{alloc, dealloc, realloc, Layout};

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

fn pattern(step: usize, i: usize) -> u8 {
    (step.wrapping_mul(73) ^ i ^ (i >> 9) ^ (i >> 17)) as u8
}

fn fill(p: *mut u8, len: usize, step: usize) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
    s.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = pattern(step, i));
}

fn check(p: *mut u8, len: usize, step: usize, what: &str) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    if let Some(i) = (0..len).find(|&i| s[i] != pattern(step, i)) {
        panic!(
            "{what}: byte {i} of {len} lost: {:#x} != {:#x}",
            s[i],
            pattern(step, i)
        );
    }
}

/// Reallocs one block through `sizes`, filling it completely after each step
/// and checking that each step kept `min(old, new)` bytes.
fn walk(align: usize, sizes: &[usize]) {
    let mut layout = Layout::from_size_align(sizes[0], align).unwrap();
    // SAFETY: non-zero size.
    let mut p = unsafe { alloc(layout) };
    assert!(!p.is_null());
    fill(p, layout.size(), 0);
    for (step, &new) in sizes.iter().enumerate().skip(1) {
        let old = layout.size();
        // SAFETY: `p` is live with `layout`; `new` is non-zero.
        let q = unsafe { realloc(p, layout, new) };
        let what = format!("align {align}: {old} -> {new} bytes");
        assert!(!q.is_null(), "{what} failed");
        assert_eq!(q as usize % align, 0, "{what}: misaligned {q:p}");
        // SAFETY: a live hakmem block.
        assert!(
            unsafe { hakmem::usable_size(q) } >= new,
            "{what}: usable size too small"
        );
        check(q, old.min(new), step - 1, &what);
        layout = Layout::from_size_align(new, align).unwrap();
        fill(q, new, step);
        p = q;
    }
    check(p, layout.size(), sizes.len() - 1, "final");
    // SAFETY: live with `layout`.
    unsafe { dealloc(p, layout) };
}

const BOUNDARIES: &[usize] = &[8, KIB, 600 * KIB, 3 * MIB, 100];

#[test]
fn growth_and_shrink_across_classes_keep_contents() {
    walk(8, BOUNDARIES);
    walk(
        1,
        &[
            1,
            2,
            8,
            9,
            16,
            17,
            128,
            129,
            8 * KIB,
            8 * KIB + 1,
            64 * KIB + 1,
            512 * KIB,
            512 * KIB + 1,
        ],
    );
    // Down again, through every kind.
    walk(
        16,
        &[
            5 * MIB,
            2 * MIB,
            700 * KIB,
            300 * KIB,
            40 * KIB,
            5000,
            200,
            9,
            3,
        ],
    );
    // Small steps up and down around the large-block threshold (in-place
    // growth of a mapping, and "keep the block" shrinks).
    walk(
        8,
        &[
            500 * KIB,
            513 * KIB,
            520 * KIB,
            1000 * KIB,
            1900 * KIB,
            1800 * KIB,
            950 * KIB,
            3 * KIB,
        ],
    );
}

#[test]
fn geometric_walk_through_every_class() {
    let mut sizes = Vec::new();
    let mut s = 1usize;
    while s < 4 * MIB {
        sizes.push(s);
        s = s + s / 7 + 1;
    }
    let down: Vec<usize> = sizes.iter().rev().copied().collect();
    sizes.extend(down);
    walk(8, &sizes);
}

#[test]
fn over_aligned_realloc_keeps_contents_and_alignment() {
    for align in [32, 64, 256, 4096, 8 * KIB, 64 * KIB, 2 * MIB, 4 * MIB] {
        walk(align, BOUNDARIES);
        walk(align, &[align, align + 1, 3 * align, align / 2 + 1, 1]);
    }
}

#[test]
fn vec_push_growth_to_tens_of_mib_keeps_contents() {
    let n = 5_000_000usize; // 40 MB of u64
    let mut v: Vec<u64> = Vec::new();
    let mut moves = 0;
    let mut last = v.as_ptr();
    for i in 0..n as u64 {
        v.push(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if v.as_ptr() != last {
            moves += 1;
            last = v.as_ptr();
        }
    }
    assert!(moves > 5, "the vector never moved");
    assert!(v
        .iter()
        .enumerate()
        .all(|(i, &x)| x == (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    // Shrink: truncate and shrink_to_fit (realloc down) keep the prefix.
    for keep in [n / 2, 100_000, 1000, 3] {
        v.truncate(keep);
        v.shrink_to_fit();
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    }

    let mut bytes: Vec<u8> = Vec::new();
    for i in 0..(24 * MIB) {
        bytes.push(pattern(1, i));
    }
    check(bytes.as_mut_ptr(), bytes.len(), 1, "Vec<u8> growth");

    let mut s = String::new();
    for i in 0..1_000_000u32 {
        s.push(char::from(b'a' + (i % 26) as u8));
    }
    assert!(s
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'a' + (i % 26) as u8));
}

#[test]
fn realloc_of_a_block_from_another_thread() {
    // The block's owner is another (live or exited) thread: realloc must copy
    // it out and free it remotely without losing a byte.
    for &(from, to) in &[
        (100, 5000),
        (5000, 100),
        (40 * KIB, 700 * KIB),
        (700 * KIB, 3 * MIB),
        (2 * MIB, 64),
    ] {
        let addr = std::thread::spawn(move || {
            let layout = Layout::from_size_align(from, 8).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout) };
            fill(p, from, 7);
            p as usize
        })
        .join()
        .unwrap();
        let layout = Layout::from_size_align(from, 8).unwrap();
        // SAFETY: live with `layout`, handed over by the joined thread.
        let q = unsafe { realloc(addr as *mut u8, layout, to) };
        check(q, from.min(to), 7, &format!("cross-thread {from} -> {to}"));
        // SAFETY: live with the new size.
        unsafe { dealloc(q, Layout::from_size_align(to, 8).unwrap()) };
    }
}
