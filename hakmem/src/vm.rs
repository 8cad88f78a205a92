//! The allocator's memory calls: `os`'s system calls, each counted in
//! [`crate::counters::GLOBAL`] and reported to an attached tracer.

use crate::counters::GLOBAL;
use crate::os::{self, OS_PAGE};
use crate::probe::{self, Component};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Maps `len` bytes (a multiple of [`OS_PAGE`]) of zeroed, private, anonymous memory.
pub fn map(len: usize) -> Option<*mut u8> {
    map_at(0, len)
}

/// [`map`] placed at `hint` if that range is free (`os::map_anonymous_at`).
fn map_at(hint: usize, len: usize) -> Option<*mut u8> {
    let t = probe::stamp_if_tracing();
    let p = os::map_anonymous_at(hint, len)?;
    GLOBAL.os_maps.fetch_add(1, Relaxed);
    GLOBAL.mapped.fetch_add(len as u64, Relaxed);
    if probe::tracing() {
        probe::emit(Component::OsMap, t, len as u64);
    }
    Some(p)
}

/// Maps `len` bytes whose start is aligned to `align` (a power of two ≥ OS_PAGE).
///
/// First at the next aligned hint ([`map_at_hint`]): one `mmap` where the
/// kernel takes it. Otherwise (the hinted range is taken, or hints are used
/// up) over-maps by `align` and unmaps the unaligned head and the tail: one
/// `mmap` and up to two `munmap`s.
pub fn map_aligned(len: usize, align: usize) -> Option<*mut u8> {
    debug_assert!(align.is_power_of_two() && align >= OS_PAGE && len % OS_PAGE == 0);
    if let Some(p) = map_at_hint(len, align) {
        return Some(p);
    }
    let over = len.checked_add(align - OS_PAGE)?;
    let raw = map(over)? as usize;
    let start = (raw + align - 1) & !(align - 1);
    let head = start - raw;
    let tail = over - head - len;
    if head > 0 {
        // SAFETY: the head of the mapping just made, which nobody has seen.
        unsafe { unmap(raw as *mut u8, head) };
    }
    if tail > 0 {
        // SAFETY: the tail of the mapping just made, which nobody has seen.
        unsafe { unmap((start + len) as *mut u8, tail) };
    }
    Some(start as *mut u8)
}

/// The next address [`map_at_hint`] asks for; 0 until the first call picks
/// the start.
static NEXT_HINT: AtomicUsize = AtomicUsize::new(0);
/// Hints start in [2 TiB, 3 TiB) and stop at 4 TiB: far below where the
/// kernel places mappings top-down (near 128 TiB), so the range is free in
/// practice (mimalloc takes its aligned hints from the same area).
const HINT_BASE: usize = 2 << 40;
const HINT_SPAN: usize = 1 << 40;
const HINT_STEP: usize = 4 << 20;

/// One `mmap` at the next address of hakmem's hint area, kept only if the
/// kernel placed it there aligned to `align`; None after unmapping a
/// misplaced result (or when maps fail, or hints are used up). The start in
/// the area is taken from the library's load address, so ASLR still varies
/// where the heap lies between runs.
fn map_at_hint(len: usize, align: usize) -> Option<*mut u8> {
    let step = len.checked_add(align.max(HINT_STEP) - 1)? & !(align.max(HINT_STEP) - 1);
    let mut hint = NEXT_HINT.load(Relaxed);
    loop {
        if hint == 0 {
            // The address of a static varies with ASLR: 2^18 starts, 4 MiB apart.
            let entropy = (&raw const NEXT_HINT as usize >> 12) % (HINT_SPAN / HINT_STEP);
            let start = HINT_BASE + entropy * HINT_STEP;
            hint = match NEXT_HINT.compare_exchange(0, start, Relaxed, Relaxed) {
                Ok(_) => start,
                Err(now) => now,
            };
            continue;
        }
        let at = (hint + align - 1) & !(align - 1);
        let next = at.checked_add(step)?;
        if next > HINT_BASE + 2 * HINT_SPAN {
            return None;
        }
        match NEXT_HINT.compare_exchange_weak(hint, next, Relaxed, Relaxed) {
            Ok(_) => {
                hint = at;
                break;
            }
            Err(now) => hint = now,
        }
    }
    let p = map_at(hint, len)?;
    if p as usize % align != 0 {
        // SAFETY: the mapping just made, which nobody has seen.
        unsafe { unmap(p, len) };
        return None;
    }
    Some(p)
}

/// Unmaps `[p, p+len)`. Failure (only possible on a caller bug) is ignored:
/// the memory stays mapped, which is safe.
///
/// # Safety
/// `[p, p+len)` was mapped by hakmem and holds nothing anyone still uses.
pub unsafe fn unmap(p: *mut u8, len: usize) {
    let t = probe::stamp_if_tracing();
    // SAFETY: the caller's contract.
    if unsafe { os::unmap(p, len) } {
        GLOBAL.os_unmaps.fetch_add(1, Relaxed);
        GLOBAL.mapped.fetch_sub(len as u64, Relaxed);
    }
    if probe::tracing() {
        probe::emit(Component::OsUnmap, t, len as u64);
    }
}

/// Gives the physical pages of `[p, p+len)` back to the OS; the range stays
/// mapped and reads back as zeroes. Returns false if the kernel refused.
///
/// # Safety
/// `[p, p+len)` is mapped by hakmem and holds no live block.
pub unsafe fn purge(p: *mut u8, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    let t = probe::stamp_if_tracing();
    // SAFETY: the caller's contract.
    let ok = unsafe { os::discard(p, len) };
    if ok {
        GLOBAL.purges.fetch_add(1, Relaxed);
        GLOBAL.purged_bytes.fetch_add(len as u64, Relaxed);
    }
    if probe::tracing() {
        probe::emit(Component::OsPurge, t, len as u64);
    }
    ok
}

/// Tries to grow or shrink the mapping `[p, p+old)` to `new` bytes without moving it.
///
/// # Safety
/// `[p, p+old)` is one mapping of hakmem's; when shrinking, the part cut off holds nothing live.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: the caller's contract.
    if !unsafe { os::remap_in_place(p, old, new) } {
        return false;
    }
    if new > old {
        GLOBAL.mapped.fetch_add((new - old) as u64, Relaxed);
    } else {
        GLOBAL.mapped.fetch_sub((old - new) as u64, Relaxed);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::SEGMENT_SIZE;

    #[test]
    fn aligned_maps_take_one_mmap_at_the_hint_or_fall_back() {
        let mut hinted = 0;
        let mut maps = [core::ptr::null_mut(); 8];
        for m in maps.iter_mut() {
            if let Some(p) = map_at_hint(SEGMENT_SIZE, SEGMENT_SIZE) {
                assert_eq!(p as usize % SEGMENT_SIZE, 0);
                assert!(p as usize >= HINT_BASE && (p as usize) < HINT_BASE + 2 * HINT_SPAN);
                hinted += 1;
                *m = p;
            }
        }
        // The hint area is free in a test process: every map lands there.
        assert_eq!(hinted, maps.len(), "hinted maps fell back to over-mapping");
        for p in maps {
            // SAFETY: mapped above, used by nobody.
            unsafe { unmap(p, SEGMENT_SIZE) };
        }

        // (In the same test: a range taken at the hint makes the first part
        // fail.) Occupy the next hinted range: the hinted map lands elsewhere
        // (or misaligned), and map_aligned still returns an aligned mapping.
        let first = map_aligned(SEGMENT_SIZE, SEGMENT_SIZE).expect("map");
        // SAFETY: mapped above, used by nobody.
        unsafe { unmap(first, SEGMENT_SIZE) };
        let next = NEXT_HINT.load(Relaxed);
        let at = (next + SEGMENT_SIZE - 1) & !(SEGMENT_SIZE - 1);
        let blocker = os::map_anonymous_at(at, 64 * SEGMENT_SIZE).expect("map");
        let p = map_aligned(3 * SEGMENT_SIZE, SEGMENT_SIZE).expect("map_aligned");
        assert_eq!(p as usize % SEGMENT_SIZE, 0);
        // SAFETY: both mapped above, used by nobody.
        unsafe {
            unmap(p, 3 * SEGMENT_SIZE);
            os::unmap(blocker, 64 * SEGMENT_SIZE);
        }
    }
}
