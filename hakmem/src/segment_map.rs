//! Pointer → owner lookup in O(1) without trusting the pointer.
//!
//! One byte per 4 MiB of the 47-bit user address space (32 MiB of `.bss`;
//! only the pages covering addresses hakmem uses ever become resident). The
//! byte says what the segment-aligned 4 MiB region holding a pointer is:
//! nothing of ours (so the pointer is foreign), a size-class segment whose
//! header sits at the region's start, or the start of a large block whose
//! header sits at the region's start or just before it. `free` of a pointer
//! whose region is not ours is detected here without touching that memory.

use crate::layout::{SEGMENT_SHIFT, SEGMENT_SIZE};
use core::sync::atomic::{AtomicU8, Ordering};

/// User-space addresses on x86-64 / aarch64 (4-level page tables) are below 2^47.
const ADDRESS_BITS: u32 = 47;
const ENTRIES: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);

/// What a 4 MiB region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Region {
    /// Not hakmem's: a pointer here was not handed out by hakmem.
    Foreign = 0,
    /// A size-class segment; its `Segment` header is at the region start.
    ClassSegment = 1,
    /// A large block starts in this region; its header is at the region start.
    LargeHeaderAtBase = 2,
    /// A large block starts exactly at the region start (alignment ≥ 4 MiB);
    /// its header is the 16 bytes just before it.
    LargeHeaderBefore = 3,
    /// Part of a span arena (`span_heap.rs`): large blocks at page-granular
    /// spans, their headers at the span start, found through the arena's page map.
    Span = 4,
}

struct Map([AtomicU8; ENTRIES]);

// Zero-initialised, so it lives in .bss and costs nothing until touched.
static MAP: Map = Map([const { AtomicU8::new(0) }; ENTRIES]);

#[inline(always)]
fn index(addr: usize) -> Option<usize> {
    let i = region_number(addr);
    if i < ENTRIES {
        Some(i)
    } else {
        None
    }
}

/// `addr >> SEGMENT_SHIFT`, computed where the compiler cannot see the
/// shift: seeing it, LLVM rewrites `i < ENTRIES` as `addr >> 47 == 0` and
/// shifts a second copy of `addr` for the index (one more instruction on
/// every free than the shift, compare and branch here).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn region_number(addr: usize) -> usize {
    let mut i = addr;
    // SAFETY: shifts one register; no memory, no stack.
    unsafe {
        core::arch::asm!(
            "shr {i}, {s}",
            i = inout(reg) i,
            s = const SEGMENT_SHIFT,
            options(pure, nomem, nostack)
        )
    };
    i
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn region_number(addr: usize) -> usize {
    addr >> SEGMENT_SHIFT
}

/// The region kind of the 4 MiB region holding `addr`.
#[inline(always)]
pub fn lookup(addr: usize) -> Region {
    match index(addr) {
        // Relaxed is enough: a pointer handed out by hakmem was published to
        // this thread by whatever synchronisation passed the pointer, which
        // happened after the region was registered.
        Some(i) => match MAP.0[i].load(Ordering::Relaxed) {
            1 => Region::ClassSegment,
            2 => Region::LargeHeaderAtBase,
            3 => Region::LargeHeaderBefore,
            4 => Region::Span,
            _ => Region::Foreign,
        },
        None => Region::Foreign,
    }
}

/// Records what the region at `base` (segment-aligned) holds.
pub fn set(base: usize, kind: Region) {
    debug_assert_eq!(base % SEGMENT_SIZE, 0);
    if let Some(i) = index(base) {
        MAP.0[i].store(kind as u8, Ordering::Release);
    }
}

/// Forgets the region at `base` (before its memory goes back to the OS).
pub fn clear(base: usize) {
    set(base, Region::Foreign);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_out_of_range_addresses_are_foreign() {
        assert_eq!(lookup(0), Region::Foreign);
        assert_eq!(lookup(usize::MAX), Region::Foreign);
        assert_eq!(lookup(1 << 47), Region::Foreign);
        let local = 0u64;
        assert_eq!(lookup(&local as *const u64 as usize), Region::Foreign);
    }

    #[test]
    fn set_and_clear_cover_the_whole_region() {
        let base = 0x7e00_0000_0000usize; // segment-aligned, never mapped by the test
        set(base, Region::LargeHeaderAtBase);
        assert_eq!(lookup(base), Region::LargeHeaderAtBase);
        assert_eq!(lookup(base + SEGMENT_SIZE - 1), Region::LargeHeaderAtBase);
        assert_eq!(lookup(base + SEGMENT_SIZE), Region::Foreign);
        clear(base);
        assert_eq!(lookup(base), Region::Foreign);
    }
}
