//! Layout constants shared by the small-block and large-block sides: both cut
//! the address space into 4 MiB regions (`segment_map` records which side a
//! region belongs to), and both refuse requests beyond [`MAX_REQUEST`].

/// log2 of [`SEGMENT_SIZE`].
pub const SEGMENT_SHIFT: u32 = 22;
/// A segment, and a region of the segment map: 4 MiB, aligned to its size.
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// A transparent huge page (x86-64: 2 MiB): a small-object segment holds two,
/// and only a whole, aligned one can be faulted in or purged as one.
pub const HUGE_PAGE: usize = 2 << 20;

/// Alignment every `malloc` result has (for blocks of more than 8 bytes).
pub const MIN_ALIGN: usize = 16;
/// Largest request hakmem tries to serve (as glibc: PTRDIFF_MAX, minus room
/// for alignment and headers).
pub const MAX_REQUEST: usize = isize::MAX as usize - 2 * SEGMENT_SIZE;

/// Whether `size` is beyond anything hakmem will try to map.
#[inline]
pub const fn too_big(size: usize) -> bool {
    size > MAX_REQUEST
}
