//! The allocators' own accounting, read after the workload for the report.
//!
//! Only the allocator actually serving this process is asked: calling
//! jemalloc's `mallctl` in a process that uses another allocator would start
//! an idle jemalloc just to report zeros.

use crate::dispatch::{backend, Backend};
use std::collections::BTreeMap;

/// Figures by name (`jemalloc.resident`, `hakmem.purges`, …), bytes or counts.
pub fn read() -> BTreeMap<String, u64> {
    let mut stats = BTreeMap::new();
    match backend() {
        Backend::Jemalloc => jemalloc(&mut stats),
        Backend::Hakmem => hakmem(&mut stats),
        Backend::Mimalloc | Backend::System => {}
    }
    stats
}

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
