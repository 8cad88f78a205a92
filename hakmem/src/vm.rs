//! The allocator's memory calls: `os`'s system calls, each counted in
//! [`crate::counters::GLOBAL`] and reported to an attached tracer.
//!
//! Every memory system call hakmem makes goes through here, so that a
//! tracer's in-process syscall counts ([`probe::SYSCALL_COMPONENTS`]) are
//! exact: one component instance per call, failed calls with `arg` 0. Not
//! traced, a call costs one load and a branch more than the bare system call
//! ([`traced`]).

use crate::counters::GLOBAL;
use crate::os::{self, OS_PAGE};
use crate::probe::{self, Component};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Maps `len` bytes (a multiple of [`OS_PAGE`]) of zeroed, private, anonymous memory.
pub fn map(len: usize) -> Option<*mut u8> {
    map_at(0, len)
}

/// Runs one system call (`call`, true if it succeeded) on `len` bytes and,
/// while a tracer is attached, records it as an instance of `component`,
/// timed, with `arg` `len` or 0 if it failed. Untraced: one load of the
/// trace flag and a branch (no clock read).
///
/// The flag alone decides ([`probe::enabled`], not [`probe::tracing`]): a
/// system call hakmem makes while it allocates for itself
/// ([`probe::untraced`]) is still one of hakmem's.
#[inline(always)]
fn traced<T>(component: Component, len: usize, call: impl FnOnce() -> (T, bool)) -> T {
    if !probe::enabled() {
        return call().0;
    }
    let t = probe::stamp();
    let (r, ok) = call();
    probe::emit(component, t, if ok { len as u64 } else { 0 });
    r
}

/// [`traced`] for a call whose result is whether it succeeded.
#[inline(always)]
fn traced_ok(component: Component, len: usize, call: impl FnOnce() -> bool) -> bool {
    traced(component, len, || {
        let ok = call();
        (ok, ok)
    })
}

/// [`map`] placed at `hint` if that range is free (`os::map_anonymous_at`).
fn map_at(hint: usize, len: usize) -> Option<*mut u8> {
    let p = traced(Component::OsMap, len, || {
        let p = os::map_anonymous_at(hint, len);
        (p, p.is_some())
    })?;
    GLOBAL.os_maps.fetch_add(1, Relaxed);
    GLOBAL.mapped.fetch_add(len as u64, Relaxed);
    Some(p)
}

/// Maps `len` bytes for a moment, outside the allocator's statistics (the
/// huge-page probe's range): traced like every mapping of hakmem's, not in
/// [`GLOBAL`]'s maps and mapped bytes. Give it back with [`unmap_transient`].
pub fn map_transient(len: usize) -> Option<*mut u8> {
    traced(Component::OsMap, len, || {
        let p = os::map_anonymous(len);
        (p, p.is_some())
    })
}

/// Unmaps what [`map_transient`] mapped.
///
/// # Safety
/// `[p, p+len)` was mapped by [`map_transient`] and nobody uses it any more.
pub unsafe fn unmap_transient(p: *mut u8, len: usize) {
    traced(Component::OsUnmap, len, || {
        // SAFETY: the caller's contract.
        ((), unsafe { os::unmap(p, len) })
    })
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
    let ok = traced_ok(Component::OsUnmap, len, || {
        // SAFETY: the caller's contract.
        unsafe { os::unmap(p, len) }
    });
    if ok {
        GLOBAL.os_unmaps.fetch_add(1, Relaxed);
        GLOBAL.mapped.fetch_sub(len as u64, Relaxed);
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
    let ok = traced_ok(Component::OsPurge, len, || {
        // SAFETY: the caller's contract.
        unsafe { os::discard(p, len) }
    });
    if ok {
        GLOBAL.purges.fetch_add(1, Relaxed);
        GLOBAL.purged_bytes.fetch_add(len as u64, Relaxed);
    }
    ok
}

/// Faults `[p, p+len)` in now, in one call (`os::populate`). False if the
/// kernel refused (or lacks `MADV_POPULATE_WRITE`).
pub fn populate(p: *mut u8, len: usize) -> bool {
    traced_ok(Component::OsAdvise, len, || os::populate(p, len))
}

/// Asks for (`on`) or against transparent huge pages on `[p, p+len)` (`os::advise_thp`).
pub fn advise_thp(p: *mut u8, len: usize, on: bool) -> bool {
    traced_ok(Component::OsAdvise, len, || os::advise_thp(p, len, on))
}

/// Makes `[p, p+len)` inaccessible: a guard page (hardened builds). False
/// if the kernel refused.
///
/// # Safety
/// `[p, p+len)` is mapped by hakmem, and nothing will ever be stored there.
pub unsafe fn guard(p: *mut u8, len: usize) -> bool {
    traced_ok(Component::OsProtect, len, || {
        // SAFETY: the caller's contract.
        unsafe { os::protect_none(p, len) }
    })
}

/// Makes a [`guard`] at `[p, p+len)` ordinary memory again (a span block's
/// guard page, before the span goes back to be reused at any size). False if
/// the kernel refused.
///
/// # Safety
/// `[p, p+len)` is mapped by hakmem.
pub unsafe fn unguard(p: *mut u8, len: usize) -> bool {
    traced_ok(Component::OsProtect, len, || {
        // SAFETY: the caller's contract.
        unsafe { os::protect_read_write(p, len) }
    })
}

/// Tries to grow or shrink the mapping `[p, p+old)` to `new` bytes without moving it.
///
/// # Safety
/// `[p, p+old)` is one mapping of hakmem's; when shrinking, the part cut off holds nothing live.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    let ok = traced_ok(Component::OsRemap, new, || {
        // SAFETY: the caller's contract.
        unsafe { os::remap_in_place(p, old, new) }
    });
    if !ok {
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

    /// (calls, sum of `arg`, calls with a non-zero `arg`) of each OS
    /// component in the calling thread's record.
    fn os_counts() -> [[u64; 3]; 6] {
        let r = probe::own_record();
        [
            Component::OsMap,
            Component::OsUnmap,
            Component::OsPurge,
            Component::OsAdvise,
            Component::OsRemap,
            Component::OsProtect,
        ]
        .map(|c| {
            let c = &r.components[c as usize];
            [&c.calls, &c.sum_arg, &c.nonzero_arg].map(|f| f.load(Relaxed))
        })
    }

    #[test]
    fn every_memory_call_is_one_traced_instance_and_none_untraced() {
        use probe::hakmem_trace_enabled;
        // A thread of its own: its slot counts only what it does.
        std::thread::spawn(|| {
            let len = 4 * OS_PAGE;
            let calls = || {
                let p = map(len).expect("map");
                // SAFETY: mapped above, used by nobody; every range is inside it.
                unsafe {
                    assert!(purge(p, len));
                    populate(p, len);
                    advise_thp(p, len, true);
                    advise_thp(p, len, false);
                    assert!(remap_in_place(p, len, len / 2), "a shrink cannot fail");
                    guard(p.add(OS_PAGE), OS_PAGE);
                    unmap(p.add(1), OS_PAGE); // misaligned: refused
                    unmap(p, len / 2);
                }
            };
            calls(); // untraced
            let before = os_counts();
            hakmem_trace_enabled.fetch_add(1, Relaxed);
            calls();
            hakmem_trace_enabled.fetch_sub(1, Relaxed);
            let traced = os_counts();
            calls();
            assert_eq!(os_counts(), traced, "untraced calls count nothing");
            let d: Vec<[u64; 3]> = traced
                .iter()
                .zip(&before)
                .map(|(a, b)| core::array::from_fn(|i| a[i] - b[i]))
                .collect();
            let len = len as u64;
            assert_eq!(d[0], [1, len, 1], "mmap");
            assert_eq!(d[1], [2, len / 2, 1], "munmap: one refused (arg 0)");
            assert_eq!(d[2], [1, len, 1], "madvise(DONTNEED)");
            assert_eq!(d[3][0], 3, "other madvise");
            assert_eq!(d[4], [1, len / 2, 1], "mremap");
            assert_eq!(d[5][0], 1, "mprotect");
        })
        .join()
        .unwrap();
    }

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
