//! A thread that fills a small-page segment gets its next ones with huge
//! pages under `HAKMEM_HUGEPAGES=auto`, before the process has 32 MiB of
//! pages carved (`small::segment::wants_thp`): 12 MiB of 512-byte blocks
//! fault in the first segment 4 KiB at a time and the others 2 MiB at a
//! time. Each case runs in a child process (a fresh carved-bytes count).

mod common;

use std::thread;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MARKER: &str = "HAKMEM_TEST_THP_SECOND_SEGMENT";
const BLOCK: usize = 512;
const BYTES: usize = 12 << 20;

/// Minor faults of the calling thread so far.
fn thread_faults() -> u64 {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    ru.ru_minflt as u64
}

/// Runs in the child: a fresh thread allocates and writes `BYTES` of
/// small blocks, and prints its page faults.
#[test]
fn child_entry() {
    if std::env::var(MARKER).is_err() {
        return;
    }
    let faults = thread::spawn(|| {
        let before = thread_faults();
        let blocks: Vec<usize> = (0..BYTES / BLOCK)
            .map(|i| {
                let p = hakmem::alloc_at(BLOCK, 0x7e);
                assert!(!p.is_null());
                // SAFETY: a live block of BLOCK bytes.
                unsafe { p.add(BLOCK - 1).write_volatile(i as u8) };
                p as usize
            })
            .collect();
        let faults = thread_faults() - before;
        for p in blocks {
            // SAFETY: allocated above.
            unsafe { hakmem::free(p as *mut u8) };
        }
        faults
    })
    .join()
    .unwrap();
    // Measured when a segment first asked (never, with HAKMEM_HUGEPAGES=0).
    let granted = hakmem::stats().large.thp.is_some_and(|v| v.granted);
    println!("RESULT faults={faults} granted={}", granted as u8);
}

#[test]
fn a_thread_past_its_first_small_page_segment_gets_huge_pages() {
    if !common::kernel_may_give_huge_pages() {
        return;
    }
    let probe = common::run_child((MARKER, "1"), &[]);
    probe.assert_success("probe");
    if !probe.probe_granted() {
        return;
    }
    // Taken as worth it (`HAKMEM_THP=grant`): on a VM whose host took its
    // free memory back, the cost meter may rightly find huge faults dearer
    // than 4 KiB ones and ask for none (`tests/thp_cost.rs`).
    let auto = common::run_child((MARKER, "1"), &[("HAKMEM_THP", "grant")]);
    auto.assert_success("auto");
    let off = common::run_child((MARKER, "1"), &[("HAKMEM_HUGEPAGES", "0")]);
    off.assert_success("off");
    let (auto, off) = (auto.num("faults"), off.num("faults"));
    eprintln!(
        "{} MiB of {BLOCK}-byte blocks in one thread: {auto} faults (auto), {off} (off)",
        BYTES >> 20
    );
    // 4 KiB pages throughout: ~3,100 faults. The first segment alone:
    // ~1,050. Hardened builds end each segment with a guard page, so only
    // the first 2 MiB of the others can be a huge page: ~2,100.
    let bound = if cfg!(feature = "hardened") {
        off * 3 / 4
    } else {
        off / 2
    };
    assert!(
        auto < bound,
        "a thread's second and third small-page segments faulted {auto} times \
         against {off} with 4 KiB pages: no huge pages before 32 MiB"
    );
}
