//! Call-site profiling: a bounded, lock-free table of allocation sites.
//!
//! A site is the caller's return address (C ABI) or a `std::panic::Location`
//! (Rust `#[track_caller]` API, tagged with the low bit). Sites are claimed in
//! a fixed table by CAS with linear probing; a full table sends new sites to
//! slot 0 ("other"). The table slot keys the BigCache and is stored in large
//! blocks' headers. Counters are per site, updated with relaxed loads and
//! stores (not locked adds, so a hit stays a few ns): under heavy concurrency
//! at one site a count can be lost, never corrupted.
//!
//! What is profiled: every large block, and every block from `alloc_at` /
//! `alloc_here`; small blocks from the C ABI are not (their fast path would pay
//! for it on every call).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Table size (a power of two).
pub const SLOTS: usize = 1024;
const PROBES: usize = 8;

struct Entry {
    site: AtomicUsize,
    allocs: AtomicU64,
    bytes: AtomicU64,
    bigcache_hits: AtomicU64,
}

static TABLE: [Entry; SLOTS] = [const {
    Entry {
        site: AtomicUsize::new(0),
        allocs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        bigcache_hits: AtomicU64::new(0),
    }
}; SLOTS];

/// The tag of a [`rust_site`]: the top bit, which no user-space address has
/// (47- or 48-bit address spaces). A return address can be odd (x86
/// instructions are not aligned), so the low bit, the tag before, sent odd
/// return addresses of C callers to be read as `Location`s at exit
/// (`HAKMEM_PROFILE=1` python3: a segfault in the report).
const RUST_SITE: usize = 1 << (usize::BITS - 1);

/// The site number of a Rust source location (tagged with [`RUST_SITE`], which
/// tells `print` how to name the site).
pub fn rust_site(loc: &'static core::panic::Location<'static>) -> usize {
    loc as *const _ as usize | RUST_SITE
}

fn hash(site: usize) -> usize {
    (site.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) & (SLOTS - 1)
}

/// The table slot of `site` (0 = unknown or table full).
#[inline]
pub fn site_slot(site: usize) -> u32 {
    if site == 0 {
        return 0;
    }
    let mut i = hash(site).max(1);
    for _ in 0..PROBES {
        let e = &TABLE[i];
        let cur = e.site.load(Relaxed);
        if cur == site {
            return i as u32;
        }
        if cur == 0
            && e.site
                .compare_exchange(0, site, Relaxed, Relaxed)
                .map_or_else(|x| x == site, |_| true)
        {
            return i as u32;
        }
        i = (i + 1) & (SLOTS - 1);
        if i == 0 {
            i = 1;
        }
    }
    0
}

fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Counts an allocation of `bytes` at table slot `slot`.
#[inline]
pub fn record_alloc(slot: u32, bytes: usize, bigcache_hit: bool) {
    record(slot, 1, bytes as u64, bigcache_hit as u64);
}

/// Counts `n` BigCache hits of `bytes` bytes each at table slot `slot`:
/// the hot hits a thread tallied (`path::settle`), which reach the table
/// at most 64 large operations after they happened.
pub fn record_hits(slot: u32, n: u64, bytes: usize) {
    record(slot, n, n.wrapping_mul(bytes as u64), n);
}

/// Counts `allocs` allocations of `bytes` bytes in all, `hits` of them
/// BigCache hits, at table slot `slot`.
#[inline]
fn record(slot: u32, allocs: u64, bytes: u64, hits: u64) {
    let e = &TABLE[slot as usize % SLOTS];
    bump(&e.allocs, allocs);
    bump(&e.bytes, bytes);
    if hits != 0 {
        bump(&e.bigcache_hits, hits);
    }
}

/// One row of the profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// The site number (0 = other/unknown).
    pub site: usize,
    pub allocs: u64,
    pub bytes: u64,
    pub bigcache_hits: u64,
}

/// The `N` sites with the most bytes allocated, largest first.
pub fn top<const N: usize>() -> [SiteStats; N] {
    let mut out = [SiteStats::default(); N];
    for (i, e) in TABLE.iter().enumerate() {
        let s = SiteStats {
            site: if i == 0 { 0 } else { e.site.load(Relaxed) },
            allocs: e.allocs.load(Relaxed),
            bytes: e.bytes.load(Relaxed),
            bigcache_hits: e.bigcache_hits.load(Relaxed),
        };
        if s.allocs == 0 {
            continue;
        }
        // Insertion into the sorted top-N.
        if let Some(pos) = out.iter().position(|o| o.allocs == 0 || s.bytes > o.bytes) {
            out.copy_within(pos..N - 1, pos + 1);
            out[pos] = s;
        }
    }
    out
}

/// Stats of one site (tests and tools).
#[cfg(test)]
pub fn site_stats(site: usize) -> Option<SiteStats> {
    let slot = site_slot(site);
    if slot == 0 {
        return None;
    }
    let e = &TABLE[slot as usize];
    Some(SiteStats {
        site,
        allocs: e.allocs.load(Relaxed),
        bytes: e.bytes.load(Relaxed),
        bigcache_hits: e.bigcache_hits.load(Relaxed),
    })
}

/// Writes `site` as `file:line:col` (Rust sites) or `symbol+0xoff (object)`
/// (return addresses; dladdr needs the binary's dynamic symbols).
fn describe(w: &mut impl core::fmt::Write, site: usize) {
    if site == 0 {
        let _ = write!(w, "(other sites / unknown)");
        return;
    }
    if site & RUST_SITE != 0 {
        // SAFETY: only `rust_site` sets the tag, on 'static Locations.
        let loc = unsafe { &*((site & !RUST_SITE) as *const core::panic::Location<'static>) };
        let _ = write!(w, "{}:{}:{}", loc.file(), loc.line(), loc.column());
        return;
    }
    // SAFETY: zeroed Dl_info is a valid out-parameter; dladdr reads loader tables only.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is a valid out-parameter; dladdr only reads loader tables.
    let found = unsafe { libc::dladdr(site as *const libc::c_void, &mut info) } != 0;
    let cstr = |p: *const libc::c_char| {
        if p.is_null() {
            "?"
        } else {
            // SAFETY: dladdr returns NUL-terminated strings owned by the loader.
            unsafe { core::ffi::CStr::from_ptr(p) }
                .to_str()
                .unwrap_or("?")
        }
    };
    if found && !info.dli_sname.is_null() {
        let _ = write!(
            w,
            "{}+{:#x}",
            cstr(info.dli_sname),
            site - info.dli_saddr as usize
        );
    } else {
        let _ = write!(w, "{site:#x}");
    }
    if found {
        let obj = cstr(info.dli_fname);
        let _ = write!(w, " ({})", obj.rsplit('/').next().unwrap_or(obj));
    }
}

/// Prints the top sites to stderr (`HAKMEM_PROFILE=1` at exit).
pub fn print() {
    use core::fmt::Write;
    let mut w = crate::report::StackWriter::<512>::new();
    let _ = writeln!(
        w,
        "hakmem profile: top call sites by bytes (allocs, MiB, BigCache hits, site)"
    );
    w.flush_stderr();
    for s in top::<20>().iter().filter(|s| s.allocs > 0) {
        let _ = write!(
            w,
            "hakmem profile: {:10} {:10.1} {:10}  ",
            s.allocs,
            s.bytes as f64 / 1048576.0,
            s.bigcache_hits
        );
        describe(&mut w, s.site);
        let _ = writeln!(w);
        w.flush_stderr();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_get_stable_distinct_slots_and_counts() {
        let a = site_slot(0x4000_1234);
        let b = site_slot(0x4000_5678);
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(site_slot(0x4000_1234), a);
        record_alloc(a, 100, false);
        record_alloc(a, 50, true);
        let s = site_stats(0x4000_1234).unwrap();
        assert_eq!((s.allocs, s.bytes, s.bigcache_hits), (2, 150, 1));
        assert_eq!(site_slot(0), 0);
        // The table is process-wide, so its bound is checked here, after the
        // lookups above (filling it first would send them to slot 0).
        for i in 0..(SLOTS * 2) {
            let s = site_slot(0x7000_0000 + i * 64);
            assert!((s as usize) < SLOTS);
        }
        assert_eq!(site_slot(0x4000_1234), a, "claimed sites keep their slot");
    }

    #[test]
    fn an_odd_return_address_is_described_as_an_address() {
        // A C caller's return address one byte into `print`: odd,
        // and not a Location (reading it as one crashed the exit report).
        let site = (print as fn() as usize) | 1;
        let mut w = crate::report::StackWriter::<256>::new();
        describe(&mut w, site);
        let text = core::str::from_utf8(w.as_bytes()).unwrap();
        assert!(!text.contains(".rs:"), "{text}");
    }

    #[test]
    fn rust_sites_are_tagged_and_described() {
        let site = rust_site(core::panic::Location::caller());
        assert_ne!(site & RUST_SITE, 0);
        let mut w = crate::report::StackWriter::<256>::new();
        describe(&mut w, site);
        let text = core::str::from_utf8(w.as_bytes()).unwrap();
        assert!(text.contains("profile.rs"), "{text}");
    }
}
