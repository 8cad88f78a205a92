//! Memory going back to the OS under `#[global_allocator]`: freed small and
//! medium blocks are purged (RSS falls), after `HAKMEM_PURGE_DELAY_MS` and not
//! before, and freed large blocks are unmapped.
//!
//! Options are read once per process, so the tests that need particular
//! `HAKMEM_*` values run in a child process (this binary re-executed with the
//! variables set and one `#[ignore]`d test selected).

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MIB: u64 = 1 << 20;

/// RSS is process-wide: the tests in this binary run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the `#[ignore]`d test `name` in a child process with `env` set.
fn run_child(name: &str, env: &[(&str, &str)]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HAKMEM_TEST_CHILD", "1")
        .envs(env.iter().copied())
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {name} with {env:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

fn in_child() -> bool {
    std::env::var_os("HAKMEM_TEST_CHILD").is_some()
}

/// Owned blocks of one size band.
type Blocks = Vec<Box<[u8]>>;

/// About `mib` MiB of small (1000 B) and medium (50 KB) blocks, every byte written.
fn fill_small_and_medium(mib: usize) -> (Blocks, Blocks) {
    let half = mib << 19;
    let small = (0..half / 1000)
        .map(|i| vec![i as u8 | 1; 1000].into_boxed_slice())
        .collect();
    let medium = (0..half / 50_000)
        .map(|i| vec![i as u8 | 1; 50_000].into_boxed_slice())
        .collect();
    (small, medium)
}

#[test]
fn freed_small_and_medium_blocks_are_purged_by_collect() {
    let _serial = serial();
    // More than 64 segments' worth: a forced collect must purge all of them.
    const TOTAL: u64 = 320;
    hakmem::collect(true);
    let base = hakmem::stats();
    let blocks = fill_small_and_medium(TOTAL as usize);
    let peak = hakmem::stats();
    assert!(
        peak.resident >= base.resident + (TOTAL - 20) * MIB,
        "{TOTAL} MiB of written blocks raised RSS by only {} MiB",
        peak.resident.saturating_sub(base.resident) / MIB
    );
    drop(blocks);
    hakmem::collect(true);
    let after = hakmem::stats();
    eprintln!(
        "purge: resident {} -> {} -> {} MiB, purges +{} ({} MiB)",
        base.resident / MIB,
        peak.resident / MIB,
        after.resident / MIB,
        after.purges - peak.purges,
        (after.purged_bytes - peak.purged_bytes) / MIB
    );
    assert!(after.purges > peak.purges, "collect(true) purged nothing");
    assert!(
        after.purged_bytes >= peak.purged_bytes + (TOTAL - 40) * MIB,
        "collect(true) purged only {} MiB of {TOTAL} MiB freed",
        (after.purged_bytes - peak.purged_bytes) / MIB
    );
    assert!(
        after.resident + (TOTAL - 40) * MIB <= peak.resident,
        "RSS fell only from {} to {} MiB after freeing {TOTAL} MiB",
        peak.resident / MIB,
        after.resident / MIB
    );
}

#[test]
fn freed_blocks_are_purged_after_the_delay_and_not_before() {
    run_child("child_purge_delay", &[("HAKMEM_PURGE_DELAY_MS", "50")]);
}

#[test]
#[ignore = "run in a child process by freed_blocks_are_purged_after_the_delay_and_not_before"]
fn child_purge_delay() {
    if !in_child() {
        return;
    }
    // Free small-block memory waits 8 purge delays (`small/purge.rs`): 400 ms.
    assert_eq!(hakmem::options().purge_delay_ms, 50);
    let blocks = fill_small_and_medium(64);
    let peak = hakmem::stats();
    drop(blocks);
    // Too young: nothing freed just now may go back yet.
    hakmem::collect(false);
    let early = hakmem::stats();
    assert!(
        early.purged_bytes - peak.purged_bytes < 8 * MIB,
        "{} MiB purged before the 400 ms wait",
        (early.purged_bytes - peak.purged_bytes) / MIB
    );
    assert!(
        early.resident + 16 * MIB > peak.resident,
        "RSS fell before the delay"
    );
    std::thread::sleep(Duration::from_millis(500));
    // No explicit collect: the thread keeps allocating (small, short-lived
    // blocks) and its slow path does the purging once the delay has passed.
    for round in 0..200 {
        let v: Vec<Box<[u8]>> = (1..400)
            .map(|i| vec![round as u8; i * 8].into_boxed_slice())
            .collect();
        drop(v);
    }
    let late = hakmem::stats();
    eprintln!(
        "purge delay: resident {} -> {} -> {} MiB",
        peak.resident / MIB,
        early.resident / MIB,
        late.resident / MIB
    );
    assert!(
        late.purged_bytes - early.purged_bytes >= 48 * MIB,
        "only {} MiB purged after the delay had passed",
        (late.purged_bytes - early.purged_bytes) / MIB
    );
    assert!(
        late.resident + 40 * MIB <= peak.resident,
        "RSS did not fall after the delay"
    );
}

#[test]
fn freed_large_blocks_go_back_to_the_os() {
    let _serial = serial();
    let base = hakmem::stats();
    let blocks: Vec<Vec<u8>> = (0..24)
        .map(|i| vec![i as u8 | 1; (4 << 20) + i * 4096])
        .collect();
    let peak = hakmem::stats();
    // Arena space with nothing behind it (purged, never touched) is not memory.
    let held = |s: &hakmem::Stats| s.mapped - s.large.span_clean_bytes;
    assert!(held(&peak) >= held(&base) + 96 * MIB);
    drop(blocks);
    // A cache of freed large blocks may keep some, the span heap keeps them
    // resident for the purge delay; a forced collect empties both.
    hakmem::collect(true);
    let after = hakmem::stats();
    let purged = after.large.span_purged_bytes - peak.large.span_purged_bytes;
    let unmaps = after.os_unmaps - peak.os_unmaps;
    assert!(
        purged >= 96 * MIB || unmaps >= 24,
        "{} MiB purged, {unmaps} unmaps for 24 freed large blocks",
        purged >> 20
    );
    assert!(
        held(&after) + 96 * MIB <= held(&peak),
        "held memory fell only from {} to {} MiB",
        held(&peak) / MIB,
        held(&after) / MIB
    );
    assert!(
        after.resident + 80 * MIB <= peak.resident,
        "RSS did not fall"
    );
}

#[test]
fn without_bigcache_large_blocks_go_to_spans_and_back_to_the_os() {
    run_child("child_no_bigcache", &[("HAKMEM_BIGCACHE", "off")]);
}

#[test]
#[ignore = "run in a child process by without_bigcache_large_blocks_go_to_spans_and_back_to_the_os"]
fn child_no_bigcache() {
    if !in_child() {
        return;
    }
    for i in 0..16usize {
        let v = vec![1u8; (1 << 20) + i * 100_000];
        let p = v.as_ptr();
        assert!(hakmem::owns(p));
        let before = hakmem::stats();
        drop(v);
        let after = hakmem::stats();
        assert!(
            after.large.span_dirty_bytes > before.large.span_dirty_bytes
                || after.large.span_purged_bytes > before.large.span_purged_bytes,
            "block {i} did not go to the span level at free"
        );
        assert!(
            after.large_live_bytes < before.large_live_bytes,
            "block {i}: live bytes did not fall"
        );
    }
    // The background thread purges them after the delay, with no call here.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        hakmem::stats().large.span_dirty_bytes,
        0,
        "dirty spans left after 200 ms"
    );
}

/// How many of the OS pages under `blocks` are resident (mincore), and how
/// many pages they cover.
fn resident_pages(blocks: &[(usize, usize)]) -> (usize, usize) {
    const PAGE: usize = 4096;
    let pages: std::collections::BTreeSet<usize> = blocks
        .iter()
        .flat_map(|&(p, len)| (p / PAGE)..(p + len).div_ceil(PAGE))
        .collect();
    let mut resident = 0;
    for &page in &pages {
        let mut v = 0u8;
        // SAFETY: mincore only reads the page table entry of one page that
        // stays mapped (segments are never unmapped) into one byte.
        let r = unsafe { libc::mincore((page * PAGE) as *mut libc::c_void, PAGE, &mut v) };
        assert_eq!(r, 0, "mincore");
        resident += (v & 1) as usize;
    }
    (resident, pages.len())
}

#[test]
fn a_thread_that_moved_on_to_large_blocks_gives_its_small_pages_back() {
    run_child("child_quiet_small_side", &[("HAKMEM_PURGE_DELAY_MS", "10")]);
}

#[test]
#[ignore = "run in a child process by a_thread_that_moved_on_to_large_blocks_gives_its_small_pages_back"]
fn child_quiet_small_side() {
    if !in_child() {
        return;
    }
    // A thread of its own: its small side is what this checks.
    std::thread::spawn(|| {
        // large-phase's first phase: 24 KiB blocks, 256 live, every page written.
        let mut live: Vec<Option<Box<[u8]>>> = (0..256).map(|_| None).collect();
        let mut freed = Vec::new();
        for i in 0..4096usize {
            let b = vec![i as u8 | 1; (24 << 10) - (i * 37) % 4096].into_boxed_slice();
            freed.push((b.as_ptr() as usize, b.len()));
            live[(i * 7919) % 256] = Some(b);
        }
        drop(live);
        let (before, pages) = resident_pages(&freed);
        assert!(
            before * 10 >= pages * 9,
            "only {before} of {pages} pages resident after the small phase"
        );
        // Then large blocks only, for several purge delays: the large path's
        // purge clock sees the small side quiet and gives its pages back
        // without a small allocation (the test harness allocates nothing
        // meanwhile on this thread).
        let start = std::time::Instant::now();
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        let mut i = 0usize;
        while start.elapsed() < Duration::from_millis(100) || i < 1000 {
            let mut v = Vec::<u8>::with_capacity((1 << 20) - (i * 97) % 4096);
            v.push(i as u8);
            if blocks.len() == 4 {
                blocks.remove(i % 4);
            }
            blocks.push(v);
            i += 1;
        }
        drop(blocks);
        let (after, _) = resident_pages(&freed);
        eprintln!("quiet small side: {before} -> {after} resident pages under the freed blocks");
        assert!(
            after * 10 < before,
            "{after} of {before} pages still resident after 100 ms of large blocks only"
        );
    })
    .join()
    .unwrap();
}

/// Page faults of the calling thread so far.
fn thread_faults() -> i64 {
    // SAFETY: getrusage writes one rusage into the zeroed value it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
        u.ru_minflt
    }
}

#[test]
fn a_thread_still_allocating_small_blocks_among_large_ones_keeps_its_pages() {
    run_child(
        "child_small_side_in_use",
        &[("HAKMEM_PURGE_DELAY_MS", "10")],
    );
}

#[test]
#[ignore = "run in a child process by a_thread_still_allocating_small_blocks_among_large_ones_keeps_its_pages"]
fn child_small_side_in_use() {
    if !in_child() {
        return;
    }
    std::thread::spawn(|| {
        // One 300 KiB block (a 2 MiB page of 6) allocated and freed again
        // between large blocks: the small side pops it from the page it
        // keeps and never refills, but it is not quiet, and its page must
        // stay resident (`large-varied` faulted it in again and again when
        // quiet meant no refill).
        let step = |i: usize| {
            let small = vec![i as u8 | 1; 300 << 10];
            drop(std::hint::black_box(small));
            let mut large = Vec::<u8>::with_capacity(1 << 20);
            large.push(i as u8);
            std::hint::black_box(&large);
        };
        for i in 0..1000 {
            step(i);
        }
        let faults = thread_faults();
        let purges = hakmem::stats().purges;
        let start = std::time::Instant::now();
        let mut i = 0;
        while start.elapsed() < Duration::from_millis(100) || i < 1000 {
            step(i);
            i += 1;
        }
        let faults = thread_faults() - faults;
        let purges = hakmem::stats().purges - purges;
        eprintln!("small side in use: {faults} faults, {purges} purges in {i} steps");
        // 75 pages a purged block faults in again; one purge a delay
        // (10 ms) would be 750 in 100 ms.
        assert!(faults < 150, "{faults} faults in 100 ms of reused blocks");
    })
    .join()
    .unwrap();
}
