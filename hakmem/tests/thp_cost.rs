//! Huge pages only while they pay (`thp.rs`'s cost meter): while a huge
//! page's first fault costs at most half of its 512 pages in 4 KiB faults,
//! a thread's second small-page segment and the span arenas are advised for
//! huge pages; once huge faults cost more (injected: the meter is told that
//! a 4 KiB fault costs 1 ns and that a huge fault took 10 ms), new segments
//! are not, and the arenas are advised off (`MADV_NOHUGEPAGE`) at the next
//! span taken from clean memory. The advice is read back from the kernel
//! (`VmFlags` in `/proc/self/smaps`: `hg` advised, `nh` advised off). Runs
//! in a child process (fresh meter, fresh carved-bytes count).

mod common;

use std::thread;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MARKER: &str = "HAKMEM_TEST_THP_COST";
const BLOCK: usize = 512;
const BYTES: usize = 12 << 20;

/// The `VmFlags` of the mapping holding `addr`.
fn vm_flags(addr: usize) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = head.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = (a..b).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().map(str::to_string).collect();
            }
        }
    }
    panic!("{addr:#x} is in no mapping");
}

/// A fresh thread allocates and writes `BYTES` of small blocks (its second
/// small-page segment onwards asks for huge pages under `auto` if they are
/// worth it); returns the blocks, the last one first.
fn fill_a_thread() -> Vec<usize> {
    thread::spawn(|| {
        let mut blocks: Vec<usize> = (0..BYTES / BLOCK)
            .map(|i| {
                let p = hakmem::alloc_at(BLOCK, 0x7c);
                assert!(!p.is_null());
                // SAFETY: a live block of BLOCK bytes.
                unsafe { p.write_volatile(i as u8) };
                p as usize
            })
            .collect();
        blocks.reverse();
        blocks
    })
    .join()
    .unwrap()
}

/// A large block of `size` bytes, its first page written (a span of the arena).
fn large(size: usize) -> usize {
    let p = hakmem::alloc_at(size, 0x7d);
    assert!(!p.is_null());
    // SAFETY: a live block of `size` bytes.
    unsafe { p.write_volatile(1) };
    p as usize
}

fn has(flags: &[String], f: &str) -> u8 {
    flags.iter().any(|x| x == f) as u8
}

#[test]
fn child_entry() {
    if std::env::var(MARKER).is_err() {
        return;
    }
    if !hakmem::thp::verdict().granted {
        println!("RESULT granted=0");
        return;
    }
    // Cheap: a 4 KiB fault "costs" 1 ms, so any huge fault is worth it.
    hakmem::thp::set_fault_costs_for_test(1_000_000);
    hakmem::thp::note_first_touch(300_000);
    assert!(hakmem::thp::worth_it());
    let cheap_small = fill_a_thread();
    let cheap_large = large(4 << 20);
    let (a_small, a_large) = (vm_flags(cheap_small[0]), vm_flags(cheap_large));
    // Costly: a 4 KiB fault costs 1 ns, and a huge one took 10 ms.
    hakmem::thp::set_fault_costs_for_test(1);
    hakmem::thp::note_first_touch(10_000_000);
    assert!(!hakmem::thp::worth_it());
    let costly_small = fill_a_thread();
    let costly_large = large(8 << 20);
    let (b_small, b_large) = (vm_flags(costly_small[0]), vm_flags(costly_large));
    let cost = hakmem::thp::cost();
    println!(
        "RESULT granted=1 a_small_hg={} a_large_hg={} b_small_hg={} b_large_hg={} b_large_nh={} turned={}",
        has(&a_small, "hg"),
        has(&a_large, "hg"),
        has(&b_small, "hg"),
        has(&b_large, "hg"),
        has(&b_large, "nh"),
        cost.turned_costly,
    );
    eprintln!(
        "cheap: small {a_small:?} large {a_large:?}; costly: small {b_small:?} large {b_large:?}"
    );
    for p in cheap_small.into_iter().chain(costly_small) {
        // SAFETY: allocated above.
        unsafe { hakmem::free(p as *mut u8) };
    }
    // SAFETY: allocated above.
    unsafe {
        hakmem::free(cheap_large as *mut u8);
        hakmem::free(costly_large as *mut u8);
    }
}

#[test]
fn segments_and_arenas_ask_for_huge_pages_only_while_a_huge_fault_pays() {
    if !common::kernel_may_give_huge_pages() {
        return;
    }
    let c = common::run_child((MARKER, "1"), &[]);
    c.assert_success("child");
    if !c.probe_granted() {
        return;
    }
    eprintln!(
        "{}",
        c.stderr
            .lines()
            .find(|l| l.starts_with("cheap"))
            .unwrap_or("")
    );
    assert_eq!(c.num("a_small_hg"), 1, "cheap: a second small segment asks");
    assert_eq!(c.num("a_large_hg"), 1, "cheap: the arena asks");
    assert_eq!(c.num("b_small_hg"), 0, "costly: new segments do not ask");
    assert_eq!(c.num("b_large_hg"), 0, "costly: the arena no longer asks");
    assert_eq!(c.num("b_large_nh"), 1, "costly: the arena is advised off");
    // The injected turn (the probe's own measurement may have been another).
    assert!(c.num("turned") >= 1);
}
