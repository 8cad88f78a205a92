//! Large blocks: BigCache modes, the HAKMEM_* switches, ELO/evolution, the
//! purge delay, the memory bound and call-site profiling.
//!
//! Options are read once per process, so each case re-runs this test binary
//! as a child with its own environment (`child` below) and reads back the
//! `RESULT key=value` lines the child prints.

mod common;

use std::collections::HashMap;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MIB: usize = 1 << 20;

/// Runs scenario `name` in a child process with `env`; returns its results.
fn child(name: &str, env: &[(&str, &str)]) -> (HashMap<String, String>, String, Option<i32>) {
    let c = common::run_child(("HAKMEM_TEST_SCENARIO", name), env);
    (c.results, c.stderr, c.code)
}

fn num(m: &HashMap<String, String>, k: &str) -> u64 {
    m.get(k)
        .unwrap_or_else(|| panic!("child did not report {k}: {m:?}"))
        .parse()
        .unwrap()
}

fn report() {
    let s = hakmem::stats();
    println!(
        "RESULT hits={} misses={} puts={} refused={} bypassed={} evictions={} purged={} reserved={} \
         maps={} unmaps={} mapped={} large_live={} phase={:?} transitions={} samples={} uses_default={} uses_total={}",
        s.large.bigcache_hits,
        s.large.bigcache_misses,
        s.large.bigcache_puts,
        s.large.bigcache_refused,
        s.large.bigcache_bypassed,
        s.large.bigcache_evictions,
        s.large.bigcache_purged,
        s.large.bigcache_reserved_bytes,
        s.os_maps,
        s.os_unmaps,
        // Arena space with no memory behind it (purged or never touched) is not counted.
        s.mapped - s.large.span_clean_bytes,
        s.large_live_bytes,
        // (Every band is locked together by the options; any band tells.)
        s.large.bands[0].phase,
        s.large.evo_transitions,
        s.large
            .bands
            .iter()
            .flat_map(|b| b.samples)
            .sum::<u64>(),
        s.large.uses[hakmem::large::elo::default_strategy() as usize],
        s.large.uses.iter().sum::<u64>(),
    );
}

/// The `vm` pattern: blocks of about 2 MiB, every page touched, 4 live at once.
fn vm_loop(iters: usize) {
    let mut live: Vec<Vec<u8>> = Vec::new();
    for i in 0..iters {
        let size = 2 * MIB - (i % 7) * 4096;
        let mut v = Vec::with_capacity(size);
        // SAFETY: u8 needs no initialisation; every page is written below and
        // nothing reads the rest (zeroing it would hide what a program that
        // fills its buffer page by page costs).
        #[allow(clippy::uninit_vec)]
        unsafe {
            v.set_len(size)
        };
        for off in (0..size).step_by(4096) {
            v[off] = i as u8;
        }
        if live.len() == 4 {
            live.remove(0);
        }
        live.push(v);
    }
}

/// Dispatches to the scenario named by HAKMEM_TEST_SCENARIO (children only).
#[test]
fn child_entry() {
    let Ok(name) = std::env::var("HAKMEM_TEST_SCENARIO") else {
        return;
    };
    match name.as_str() {
        "vm" => {
            // Warm-up: the first blocks' pages fault in once (1 to 512 faults
            // each, by the strategy learning tried); steady reuse after that.
            vm_loop(100);
            let faults0 = hakmem::os::thread_minor_faults();
            vm_loop(300);
            let faults = hakmem::os::thread_minor_faults() - faults0;
            println!("RESULT loop_faults={faults}");
            report();
        }
        "cross-thread" => {
            // Blocks allocated here, freed by another thread, repeatedly.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
            let freer = std::thread::spawn(move || {
                while let Ok(v) = rx.recv() {
                    assert!(v.iter().step_by(4096).all(|&b| b == 0xab));
                }
                hakmem::collect(true);
            });
            for _ in 0..200 {
                tx.send(vec![0xab; 3 * MIB]).unwrap();
            }
            drop(tx);
            freer.join().unwrap();
            hakmem::collect(true);
            report();
        }
        "hit-takes-strategy" => {
            // A block mapped and cached under purge-on-cache, then reused in a
            // loop while the strategy is plain: its frees must follow plain
            // (no madvise per free), not the strategy that first mapped it.
            let purge_on_cache = hakmem::large::elo::STRATEGIES
                .iter()
                .position(|s| s.purge_on_cache)
                .unwrap() as u8;
            hakmem::large::evolution::lock_on_for_test(purge_on_cache);
            drop(std::hint::black_box(vec![1u8; 2 * MIB]));
            hakmem::large::evolution::lock_on_for_test(0);
            let before = hakmem::stats();
            for _ in 0..100 {
                drop(std::hint::black_box(vec![1u8; 2 * MIB]));
            }
            let after = hakmem::stats();
            println!(
                "RESULT loop_purges={} loop_hits={}",
                after.purges - before.purges,
                after.large.bigcache_hits - before.large.bigcache_hits
            );
        }
        "purge-delay" => {
            vm_loop(50);
            let before = hakmem::stats();
            std::thread::sleep(std::time::Duration::from_millis(300));
            hakmem::collect(false);
            let after = hakmem::stats();
            println!(
                "RESULT held_before={} held_after={} mapped_before={} mapped_after={}",
                before.large.bigcache_reserved_bytes,
                after.large.bigcache_reserved_bytes,
                before.mapped - before.large.span_clean_bytes,
                after.mapped - after.large.span_clean_bytes
            );
            report();
        }
        "bound" => {
            // Ten distinct 2 MiB blocks freed together: more than a 4 MiB bound holds.
            let blocks: Vec<Vec<u8>> = (0..10).map(|_| vec![1u8; 2 * MIB]).collect();
            drop(blocks);
            report();
        }
        "profile" => {
            for _ in 0..3 {
                let p = hakmem::alloc_here(3 * MIB);
                assert!(!p.is_null());
                // SAFETY: from alloc_here.
                unsafe { hakmem::free(p) };
            }
            report();
        }
        "header-magic" => {
            // black_box: without it the optimiser may drop the whole allocation.
            let mut v = std::hint::black_box(vec![0u8; 2 * MIB]);
            // SAFETY: deliberately corrupt the 16-byte header before the block.
            unsafe { *(v.as_mut_ptr().sub(4) as *mut u32) = 0xdead_beef };
            drop(v);
            println!("RESULT survived=1");
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn bigcache_serves_the_vm_loop_without_syscalls() {
    // Without the background purge: in a slow (debug-checks) build it purges
    // an evicted block the loop then faults in again (511 faults, one block).
    let (m, _, _) = child("vm", &[("HAKMEM_BACKGROUND_PURGE", "0")]);
    assert!(num(&m, "hits") >= 390, "{m:?}");
    assert!(
        num(&m, "maps") < 40,
        "a few segments and blocks, not one map per block: {m:?}"
    );
    assert!(num(&m, "samples") > 0, "learning measures some allocations");
    // Steady reuse faults nothing in (0-9 here). While learning, a measured
    // purge-on-cache put costs its block one refault of 511-512 pages (3 runs
    // in 100 explore it once in this loop, by timing); before hits took the
    // current best strategy, such refaults added up to ~2,600 in 300
    // iterations.
    assert!(
        num(&m, "loop_faults") < 1100,
        "at most two whole-block refaults while learning: {m:?}"
    );
}

#[test]
fn switching_the_bigcache_off_maps_every_block() {
    for env in [
        [("HAKMEM_BIGCACHE", "off")],
        [("HAKMEM_DISABLE_BIGCACHE", "1")],
    ] {
        let (m, _, _) = child("vm", &env);
        assert_eq!(num(&m, "hits"), 0, "{env:?}: {m:?}");
        assert_eq!(num(&m, "puts"), 0);
        assert!(num(&m, "uses_total") >= 400, "every block mapped: {m:?}");
    }
}

#[test]
fn global_mode_hits_through_the_shared_cache() {
    let (m, _, _) = child("vm", &[("HAKMEM_BIGCACHE", "global")]);
    assert!(num(&m, "hits") >= 390, "{m:?}");
}

#[test]
fn elo_switches_lock_the_strategy() {
    for env in [
        vec![("HAKMEM_DISABLE_ELO", "1")],
        vec![("HAKMEM_EVO_POLICY", "frozen")],
        vec![("HAKMEM_MINIMAL", "1")],
    ] {
        let (m, _, _) = child("vm", &env);
        assert_eq!(m["phase"], "Locked", "{env:?}");
        assert_eq!(num(&m, "samples"), 0, "no measuring when locked: {env:?}");
        assert_eq!(
            num(&m, "uses_default"),
            num(&m, "uses_total"),
            "fixed strategy: {env:?}"
        );
    }
    let (m, _, _) = child("vm", &[("HAKMEM_MINIMAL", "1")]);
    assert_eq!(num(&m, "hits"), 0, "minimal turns the BigCache off");
    let (m, _, _) = child("vm", &[]);
    assert_ne!(m["phase"], "Locked", "the default learns");
}

#[test]
fn cross_thread_large_frees_leak_nothing_in_every_mode() {
    for mode in ["thread", "global", "off"] {
        let (m, _, _) = child("cross-thread", &[("HAKMEM_BIGCACHE", mode)]);
        assert_eq!(num(&m, "large_live"), 0, "{mode}: {m:?}");
        assert_eq!(
            num(&m, "reserved"),
            0,
            "{mode}: cache emptied by collect: {m:?}"
        );
        assert!(
            num(&m, "mapped") < 64 * MIB as u64,
            "{mode}: mapped back down: {m:?}"
        );
    }
}

#[test]
fn a_cache_hit_follows_the_strategy_selected_for_it() {
    let (r, err, code) = child("hit-takes-strategy", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(num(&r, "loop_hits"), 100, "{r:?}");
    assert_eq!(num(&r, "loop_purges"), 0, "{r:?}");
}

#[test]
fn cached_memory_goes_back_after_the_purge_delay() {
    let (m, _, _) = child("purge-delay", &[("HAKMEM_PURGE_DELAY_MS", "50")]);
    assert!(num(&m, "held_before") > 0, "blocks were cached: {m:?}");
    assert_eq!(
        num(&m, "held_after"),
        0,
        "and released after the delay: {m:?}"
    );
    assert!(
        num(&m, "mapped_after") + 4 * MIB as u64 <= num(&m, "mapped_before"),
        "{m:?}"
    );
    assert!(num(&m, "purged") >= 1);
}

#[test]
fn the_memory_bound_is_kept() {
    let (m, _, _) = child("bound", &[("HAKMEM_BIGCACHE_MAX_MB", "4")]);
    // Past the bound a block is refused, or (once the refused ones wait as
    // resident memory at the span level) sent there without asking the cache.
    assert!(num(&m, "refused") + num(&m, "bypassed") >= 6, "{m:?}");
    assert!(num(&m, "reserved") <= 4 * MIB as u64, "{m:?}");
    let (m, _, _) = child("bound", &[]);
    assert_eq!(
        num(&m, "refused"),
        0,
        "the default bound holds ten blocks: {m:?}"
    );
}

#[test]
fn profile_names_the_rust_call_site() {
    // A fixed strategy: while learning, the `slack` strategy maps a larger class,
    // whose block then waits in another slot and the next lookup misses.
    let (m, stderr, _) = child(
        "profile",
        &[("HAKMEM_PROFILE", "1"), ("HAKMEM_DISABLE_ELO", "1")],
    );
    assert!(num(&m, "hits") >= 2);
    let line = stderr
        .lines()
        .find(|l| l.contains("large_blocks.rs"))
        .unwrap_or_else(|| panic!("no site line in:\n{stderr}"));
    // allocs, MiB, hits: 3 allocations of 3 MiB, 2 of them BigCache hits.
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[2..5], &["3", "9.0", "2"], "{line}");
}

#[test]
fn header_magic_is_checked_in_debug_builds_only() {
    let (m, stderr, code) = child("header-magic", &[]);
    if cfg!(any(debug_assertions, feature = "debug-checks")) {
        assert_ne!(code, Some(0), "debug build must abort");
        assert!(stderr.contains("corrupt large-block header"), "{stderr}");
    } else {
        assert_eq!(
            m.get("survived").map(String::as_str),
            Some("1"),
            "release skips the check: {stderr}"
        );
    }
}
