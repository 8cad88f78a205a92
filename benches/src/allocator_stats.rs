//! The allocators' own accounting, read after the workload for the report.
//!
//! Only the allocator actually serving this process is asked: calling
//! jemalloc's `mallctl` in a process that uses another allocator would start
//! an idle jemalloc just to report zeros. A preloaded jemalloc (Debian's
//! library, the `jemalloc` row without the `linked-jemalloc` feature) is
//! found by its `mallctl` symbol, which only jemalloc exports.

use crate::dispatch::{backend, Backend};
use std::collections::BTreeMap;

/// Figures by name (`jemalloc.resident`, `hakmem.purges`, …), bytes or counts.
pub fn read() -> BTreeMap<String, u64> {
    let mut stats = BTreeMap::new();
    match backend() {
        #[cfg(feature = "linked-jemalloc")]
        Backend::Jemalloc => jemalloc(&mut stats),
        Backend::Hakmem => hakmem(&mut stats),
        Backend::System => preloaded_jemalloc(&mut stats),
        Backend::Mimalloc => {}
    }
    stats
}

/// jemalloc's `int mallctl(const char *name, void *oldp, size_t *oldlenp,
/// void *newp, size_t newlen)`.
type Mallctl = unsafe extern "C" fn(
    *const libc::c_char,
    *mut libc::c_void,
    *mut libc::size_t,
    *mut libc::c_void,
    libc::size_t,
) -> libc::c_int;

/// The figures of a jemalloc that `LD_PRELOAD` put in front of libc, if any.
fn preloaded_jemalloc(stats: &mut BTreeMap<String, u64>) {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the
    // objects loaded in this process.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallctl".as_ptr()) };
    if sym.is_null() {
        return;
    }
    // SAFETY: the only library that exports `mallctl` is jemalloc, whose
    // `mallctl` has this signature.
    let mallctl: Mallctl = unsafe { std::mem::transmute::<*mut libc::c_void, Mallctl>(sym) };
    // jemalloc caches its statistics; writing the epoch refreshes them.
    let mut epoch: u64 = 1;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: "epoch" reads and writes a uint64_t; the pointers and lengths
    // describe `epoch` and `len`.
    let rc = unsafe {
        mallctl(
            c"epoch".as_ptr(),
            (&raw mut epoch).cast(),
            &mut len,
            (&raw mut epoch).cast(),
            len,
        )
    };
    if rc != 0 {
        return;
    }
    for (name, key) in [
        ("jemalloc.allocated", c"stats.allocated"),
        ("jemalloc.resident", c"stats.resident"),
        ("jemalloc.mapped", c"stats.mapped"),
    ] {
        let mut value: libc::size_t = 0;
        let mut len = std::mem::size_of::<libc::size_t>();
        // SAFETY: these statistics are size_t; reading only (no new value).
        let rc = unsafe {
            mallctl(
                key.as_ptr(),
                (&raw mut value).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc == 0 {
            stats.insert(name.to_string(), value as u64);
        }
    }
}

#[cfg(feature = "linked-jemalloc")]
fn jemalloc(stats: &mut BTreeMap<String, u64>) {
    use tikv_jemalloc_ctl::{epoch, stats as je};
    // jemalloc caches its statistics; advancing the epoch refreshes them.
    if epoch::advance().is_err() {
        return;
    }
    let figures = [
        ("jemalloc.allocated", je::allocated::read()),
        ("jemalloc.resident", je::resident::read()),
        ("jemalloc.mapped", je::mapped::read()),
    ];
    for (name, value) in figures {
        if let Ok(value) = value {
            stats.insert(name.to_string(), value as u64);
        }
    }
}

fn hakmem(stats: &mut BTreeMap<String, u64>) {
    let s = hakmem::stats();
    let figures = [
        ("hakmem.allocated", s.allocated),
        ("hakmem.resident", s.resident),
        ("hakmem.mapped", s.mapped),
        ("hakmem.remote_frees", s.remote_frees),
        ("hakmem.purges", s.purges),
        ("hakmem.purged_bytes", s.purged_bytes),
        ("hakmem.os_maps", s.os_maps),
        ("hakmem.os_unmaps", s.os_unmaps),
        ("hakmem.large_allocs", s.large_allocs),
    ];
    for (name, value) in figures {
        stats.insert(name.to_string(), value);
    }
}
