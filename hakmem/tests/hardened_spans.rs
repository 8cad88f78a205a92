//! Hardened builds keep a PROT_NONE page after every large block, span
//! blocks included: the guard is the span's last page, it moves when the
//! block grows in place, and it is ordinary memory again once the span is
//! free (a span reused at another size must not fault inside).
#![cfg(feature = "hardened")]

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// The protection field (`rw-p`, `---p`) of the mapping holding `addr`.
fn protection(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let range = f.next().unwrap();
        let perms = f.next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).unwrap(),
            usize::from_str_radix(hi, 16).unwrap(),
        );
        if (lo..hi).contains(&addr) {
            return perms.to_string();
        }
    }
    panic!("{addr:#x} is not mapped");
}

/// The first page past the block at `p`'s usable bytes: its guard.
fn guard_of(p: *mut u8) -> usize {
    // SAFETY: a live block of hakmem's.
    let end = p as usize + unsafe { hakmem::usable_size(p) };
    assert_eq!(end % PAGE, 0, "a large block ends on a page boundary");
    end
}

#[test]
fn span_blocks_carry_a_guard_that_moves_and_goes() {
    let layout = Layout::from_size_align(MIB + 100, 16).unwrap();
    // SAFETY: a non-zero size.
    let p = unsafe { A.alloc(layout) };
    assert!(!p.is_null());
    let before = hakmem::stats().large;
    assert!(
        before.span_allocs > 0,
        "a 1 MiB block is a span block: {before:?}"
    );
    let g1 = guard_of(p);
    assert_eq!(protection(g1), "---p", "guard after the block");
    assert_eq!(protection(g1 - PAGE), "rw-p");
    // SAFETY: the block's last usable byte.
    unsafe { p.add(g1 - p as usize - 1).write_volatile(7) };

    // Grown in place (the arena's pages after it are free): the guard moves.
    // SAFETY: `p` was allocated with `layout`.
    let q = unsafe { A.realloc(p, layout, 3 * MIB) };
    assert_eq!(q, p, "grown in place");
    let g2 = guard_of(q);
    assert!(g2 > g1);
    assert_eq!(protection(g2), "---p", "guard after the grown block");
    assert_eq!(protection(g1), "rw-p", "the old guard is block memory now");
    // SAFETY: inside the grown block: the old guard page and the new last byte.
    unsafe {
        q.add(g1 - q as usize).write_volatile(1);
        q.add(g2 - q as usize - 1).write_volatile(1);
    }

    // Freed and pushed out of the caches: the span is free, with no guard left.
    // SAFETY: live, allocated with this size.
    unsafe { A.dealloc(q, Layout::from_size_align(3 * MIB, 16).unwrap()) };
    hakmem::collect(true);
    assert_eq!(protection(g2), "rw-p", "a free span holds no guard");
}
