//! Size classes: which block size serves a request, and how big a page is.
//!
//! Classes 0..=8 are 8, 16, 32, …, 128 bytes (steps of 16: every block of
//! more than 8 bytes is 16-byte aligned, so nothing finer is possible there).
//! Above 128 bytes each doubling has 8 classes, so the waste above the request
//! is under 12.5%. Every power of two is a class, which the aligned API relies
//! on: a block whose size is a multiple of `align`, in a page aligned to at
//! least `align`, is aligned. The last class is [`MAX_CLASS_SIZE`] (512 KiB);
//! anything bigger is a large block (`large.rs`).

/// Number of size classes.
pub const NUM_CLASSES: usize = 105;
/// Largest size served by a size class.
pub const MAX_CLASS_SIZE: usize = 512 * 1024;
/// Largest block of a medium page; larger classes live in big pages (2 MiB
/// each), and their requests may go to the span heap instead (`api`).
pub const MAX_MEDIUM_SIZE: usize = 64 * 1024;
/// Largest alignment the class path can honour (page 0 of a segment starts
/// this far into the segment; see `segment.rs`). Larger alignments go large.
pub const MAX_CLASS_ALIGN: usize = 8 * 1024;

/// Sizes up to this are mapped to their class by one table load.
pub const TABLE_MAX: usize = 1024;

/// Slots of the class table and of the heap's direct page array: one per 8
/// bytes of request up to [`TABLE_MAX`] (`Heap::direct`).
pub const DIRECT_SLOTS: usize = TABLE_MAX / 8 + 1;

/// The slot of a request of `size <= TABLE_MAX` bytes, in the class table
/// and in the heap's direct array.
#[inline(always)]
pub const fn direct_slot(size: usize) -> usize {
    (size + 7) >> 3
}

/// `SMALL_CLASS[direct_slot(size)]` = class of `size`, for `size <= TABLE_MAX`.
static SMALL_CLASS: [u8; DIRECT_SLOTS] = {
    let mut t = [0u8; DIRECT_SLOTS];
    let mut i = 0;
    while i < t.len() {
        t[i] = class_of_computed(i * 8) as u8;
        i += 1;
    }
    t
};

/// `DIRECT_RANGE[c]` = the first and last direct slots of class `c` (empty,
/// first > last, for classes above [`TABLE_MAX`]).
static DIRECT_RANGE: [(u8, u8); NUM_CLASSES] = {
    let mut r = [(u8::MAX, 0u8); NUM_CLASSES];
    let mut w = 0;
    while w < DIRECT_SLOTS {
        let c = SMALL_CLASS[w] as usize;
        if (w as u8) < r[c].0 {
            r[c].0 = w as u8;
        }
        r[c].1 = w as u8;
        w += 1;
    }
    r
};

/// The direct slots that serve class `c` (empty for classes above [`TABLE_MAX`]).
#[inline]
pub fn direct_slots(c: usize) -> core::ops::RangeInclusive<usize> {
    let (lo, hi) = DIRECT_RANGE[c];
    lo as usize..=hi as usize
}

/// The class serving `size` bytes (`size <= MAX_CLASS_SIZE`).
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    if size <= TABLE_MAX {
        return class_of_table(size);
    }
    class_of_computed(size)
}

/// The class of `size <= TABLE_MAX` by one table load.
#[inline(always)]
pub fn class_of_table(size: usize) -> usize {
    debug_assert!(size <= TABLE_MAX);
    // SAFETY: direct_slot(TABLE_MAX) is the table's last index.
    unsafe { *SMALL_CLASS.get_unchecked(direct_slot(size)) as usize }
}

/// The class of `size` by arithmetic (the table is built from this).
#[inline(always)]
pub const fn class_of_computed(size: usize) -> usize {
    if size <= 128 {
        if size <= 8 {
            0
        } else {
            (size + 15) >> 4
        }
    } else {
        let w = size - 1;
        let b = (usize::BITS - 1 - w.leading_zeros()) as usize; // 2^b <= w < 2^(b+1)
        let q = (w >> (b - 3)) & 7;
        9 + (b - 7) * 8 + q
    }
}

/// The block size of class `c`.
#[inline(always)]
pub const fn block_size(c: usize) -> usize {
    if c <= 8 {
        if c == 0 {
            8
        } else {
            c * 16
        }
    } else {
        let k = c - 9;
        let b = 7 + k / 8;
        let q = k % 8;
        (1 << b) + (q + 1) * (1 << (b - 3))
    }
}

/// The smallest class whose blocks hold `size` bytes and are aligned to `align`
/// (a power of two ≤ [`MAX_CLASS_ALIGN`]), or `None` if that needs a large block.
pub fn class_for_aligned(size: usize, align: usize) -> Option<usize> {
    if size > MAX_CLASS_SIZE || align > MAX_CLASS_ALIGN {
        return None;
    }
    let mut c = class_of(size.max(align));
    while c < NUM_CLASSES {
        if block_size(c) % align == 0 {
            return Some(c);
        }
        c += 1;
    }
    None
}

/// The kind of segment (and so the page size) that serves class `c`.
#[inline]
pub const fn page_kind(c: usize) -> crate::small::segment::PageKind {
    use crate::small::segment::PageKind;
    let bs = block_size(c);
    if bs <= 8 * 1024 {
        PageKind::Small
    } else if bs <= MAX_MEDIUM_SIZE {
        PageKind::Medium
    } else {
        PageKind::Big
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_increasing_and_ends_at_the_max() {
        for c in 1..NUM_CLASSES {
            assert!(block_size(c) > block_size(c - 1), "class {c}");
            assert_eq!(
                block_size(c) % 16,
                0,
                "class {c} must keep 16-byte alignment"
            );
        }
        assert_eq!(block_size(NUM_CLASSES - 1), MAX_CLASS_SIZE);
    }

    #[test]
    fn every_size_maps_to_the_smallest_class_that_fits() {
        for size in 0..=MAX_CLASS_SIZE {
            let c = class_of(size);
            assert!(block_size(c) >= size, "size {size}");
            if c > 0 {
                assert!(
                    block_size(c - 1) < size.max(1),
                    "size {size} not in smallest class"
                );
            }
        }
    }

    #[test]
    fn direct_slots_cover_each_class_of_the_table() {
        for w in 0..DIRECT_SLOTS {
            assert!(direct_slots(class_of_table(w * 8)).contains(&w), "slot {w}");
        }
        for size in 0..=TABLE_MAX {
            assert!(direct_slots(class_of(size)).contains(&direct_slot(size)));
        }
        assert!(direct_slots(class_of(TABLE_MAX + 1)).is_empty());
    }

    #[test]
    fn waste_is_bounded() {
        for size in 129..=MAX_CLASS_SIZE {
            let waste = block_size(class_of(size)) - size;
            assert!(waste * 8 <= size, "size {size}: waste {waste} above 12.5%");
        }
        for size in 65..=128 {
            let waste = block_size(class_of(size)) - size;
            assert!(waste < 16, "size {size}");
        }
    }

    #[test]
    fn powers_of_two_are_classes() {
        let mut p = 8;
        while p <= MAX_CLASS_SIZE {
            assert_eq!(block_size(class_of(p)), p);
            p *= 2;
        }
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        for align in [16, 32, 64, 128, 1024, 4096, 8192] {
            for size in [1, 24, 48, 100, 1000, 5000, 100_000] {
                let c = class_for_aligned(size, align).unwrap();
                assert!(block_size(c) >= size && block_size(c) % align == 0);
            }
        }
        assert_eq!(class_for_aligned(10, 16 * 1024), None);
        assert_eq!(class_for_aligned(MAX_CLASS_SIZE + 1, 16), None);
    }
}
