//! The allocator's memory calls: `os`'s system calls, each counted in
//! [`crate::counters::GLOBAL`] and reported to an attached tracer.

use crate::counters::GLOBAL;
use crate::os::{self, OS_PAGE};
use crate::probe::{self, Component};
use core::sync::atomic::Ordering::Relaxed;

/// Maps `len` bytes (a multiple of [`OS_PAGE`]) of zeroed, private, anonymous memory.
pub fn map(len: usize) -> Option<*mut u8> {
    let t = probe::now();
    let p = os::map_anonymous(len)?;
    GLOBAL.os_maps.fetch_add(1, Relaxed);
    GLOBAL.mapped.fetch_add(len as u64, Relaxed);
    if probe::tracing() {
        probe::emit(Component::OsMap, t, len as u64);
    }
    Some(p)
}

/// Maps `len` bytes whose start is aligned to `align` (a power of two ≥ OS_PAGE):
/// over-maps by `align` and unmaps the unaligned head and the tail.
pub fn map_aligned(len: usize, align: usize) -> Option<*mut u8> {
    debug_assert!(align.is_power_of_two() && align >= OS_PAGE && len % OS_PAGE == 0);
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

/// Unmaps `[p, p+len)`. Failure (only possible on a caller bug) is ignored:
/// the memory stays mapped, which is safe.
///
/// # Safety
/// `[p, p+len)` was mapped by hakmem and holds nothing anyone still uses.
pub unsafe fn unmap(p: *mut u8, len: usize) {
    let t = probe::now();
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
    let t = probe::now();
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
