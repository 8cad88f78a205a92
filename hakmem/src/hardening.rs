//! Hardened mode (`hardened` feature): what it adds, in one place.
//!
//! * Free-list links are stored encoded: `next ^ page_key ^ rotl(slot, 17)`,
//!   with a random key per page. An overflow that overwrites a free block's
//!   first word no longer hands the attacker a pointer of their choice: the
//!   decoded link lands outside the page and the pop aborts ("corrupted free list").
//! * Double free: a freed block (of 16 bytes or more) carries a tag derived
//!   from the page key in its second word, cleared when it is handed out; a
//!   free that finds the tag aborts. Large blocks get a freed marker in their
//!   header while they wait in the BigCache.
//! * Guard pages: the last OS page of every segment, and one after every large
//!   block, is mapped PROT_NONE, so a linear overflow faults instead of
//!   running into the next segment or mapping (`vm::guard`; a span block's
//!   guard is its span's last page, lifted with `vm::unguard` when the span
//!   is freed: `large/block.rs`).
//!
//! Without the feature every function here compiles to nothing.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Whether this build is hardened.
pub const ENABLED: bool = cfg!(feature = "hardened");

/// Process secret mixed into every page key (from getrandom, once).
#[cfg_attr(not(feature = "hardened"), allow(dead_code))]
static SECRET: AtomicU64 = AtomicU64::new(0);

#[cfg_attr(not(feature = "hardened"), allow(dead_code))]
fn secret() -> u64 {
    let s = SECRET.load(Relaxed);
    if s != 0 {
        return s;
    }
    let mut buf = [0u8; 8];
    // SAFETY: valid buffer; getrandom does not allocate.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr() as *mut libc::c_void, 8, 0) };
    let mut v = u64::from_ne_bytes(buf);
    if n != 8 {
        v = crate::probe::now().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    v |= 1;
    // Racing initialisers: the first store wins, everyone uses it.
    match SECRET.compare_exchange(0, v, Relaxed, Relaxed) {
        Ok(_) => v,
        Err(x) => x,
    }
}

/// A fresh key for the page starting at `start`.
#[cfg_attr(not(feature = "hardened"), allow(dead_code))]
pub fn page_key(start: usize) -> usize {
    if !ENABLED {
        return 0;
    }
    let mut x = secret() ^ (start as u64).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ crate::probe::now();
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 29;
    x as usize
}

/// The stored form of link `next` in the block at `at` (identity when not hardened).
#[inline(always)]
pub fn encode(next: usize, at: usize, key: usize) -> usize {
    if ENABLED {
        next ^ key ^ at.rotate_left(17)
    } else {
        next
    }
}

/// Inverse of [`encode`] (xor is its own inverse).
#[inline(always)]
pub fn decode(stored: usize, at: usize, key: usize) -> usize {
    encode(stored, at, key)
}

/// The double-free tag of a page.
#[inline(always)]
pub fn freed_tag(key: usize) -> usize {
    key.rotate_left(29) ^ 0x5a5a_a5a5_f00d_d00d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let key = page_key(0x7000_0000);
        for (next, at) in [(0usize, 0x1000usize), (0x7fff_1234_5670, 0x7fff_1234_5600)] {
            assert_eq!(decode(encode(next, at, key), at, key), next);
        }
        if ENABLED {
            assert_ne!(
                encode(0x1000, 0x2000, key),
                0x1000,
                "hardened links are not stored plain"
            );
            assert_ne!(
                page_key(0x7000_0000),
                page_key(0x7000_0000),
                "keys differ per page"
            );
        }
    }
}
