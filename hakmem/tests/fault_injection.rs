//! Fault injection under `#[global_allocator]`: while the OS refuses memory
//! (the test-only injector `hakmem::os::FAIL_NEXT_MAPS`, or a real
//! `RLIMIT_AS`), every allocation entry point returns NULL with errno ENOMEM
//! instead of aborting, realloc leaves the old block intact, blocks already
//! handed out stay intact, freed memory is reused without the OS, and once
//! memory is back everything works again. For Rust users: `try_reserve`
//! returns `Err`, and an infallible allocation that fails ends the process
//! through `handle_alloc_error` ("memory allocation of N bytes failed", abort).
//!
//! Each case runs in a child process (this binary re-executed with one
//! `#[ignore]`d test selected): the injector and the rlimit are process-wide,
//! and the test harness allocates with hakmem too. While the injector is armed
//! the child itself must not allocate, so checks disarm it before panicking.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use hakmem::api;
use hakmem::os::FAIL_NEXT_MAPS;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Runs the `#[ignore]`d test `name` in a child process; returns (status, stdout, stderr).
fn run_child(name: &str) -> (std::process::ExitStatus, String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        name,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("HAKMEM_TEST_CHILD", "1")
    // libc's own mallocs stay glibc's here, and glibc gives a thread's first
    // malloc an arena of its own: 64 MiB of address space reserved at once,
    // which under RLIMIT_AS can take the room `child_rlimit_as` checks for
    // (a 63 MiB PROT_NONE mapping in /proc/self/maps beside a failed 64 MiB
    // reservation). One arena: no such reservations.
    .env("MALLOC_ARENA_MAX", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("HAKMEM_") && k != "HAKMEM_TEST_CHILD" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("re-run the test binary");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs child `name` and requires it to pass.
fn child_passes(name: &str) {
    let (status, stdout, stderr) = run_child(name);
    assert!(
        status.success() && stdout.contains("1 passed"),
        "child {name} failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("hakmem:"),
        "child {name}: hakmem complained:\n{stderr}"
    );
}

fn in_child() -> bool {
    std::env::var_os("HAKMEM_TEST_CHILD").is_some()
}

/// Every map fails from now on.
fn arm() {
    FAIL_NEXT_MAPS.store(usize::MAX, Relaxed);
}

fn disarm() {
    FAIL_NEXT_MAPS.store(0, Relaxed);
}

/// `assert!` that first lets memory back in, so that the panic can allocate its message.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            disarm();
            panic!($($msg)*);
        }
    };
}

fn errno() -> i32 {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn clear_errno() {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = 0 };
}

/// Marks block `i` of `size` bytes at `p`: first and last bytes.
fn mark(p: *mut u8, size: usize, i: usize) {
    // SAFETY: a live block of `size` ≥ 1 bytes.
    unsafe {
        p.write(i as u8 ^ 0x5a);
        p.add(size - 1).write((i >> 8) as u8 ^ 0xa5);
    }
}

fn marked(p: *mut u8, size: usize, i: usize) -> bool {
    // SAFETY: a live block of `size` ≥ 1 bytes.
    unsafe { p.read() == i as u8 ^ 0x5a && p.add(size - 1).read() == (i >> 8) as u8 ^ 0xa5 }
}

/// Allocates blocks of `size` until malloc returns NULL (at most `limit`
/// bytes' worth); marks each. Returns the blocks and whether NULL came.
fn exhaust(size: usize, limit: usize, out: &mut Vec<usize>) -> bool {
    let start = out.len();
    while (out.len() - start) * size < limit {
        if out.len() == out.capacity() {
            return false; // never grow `out` while maps fail
        }
        clear_errno();
        let p = api::malloc(size);
        if p.is_null() {
            ensure!(
                errno() == libc::ENOMEM,
                "malloc({size}) = NULL with errno {}",
                errno()
            );
            return true;
        }
        mark(p, size, out.len());
        out.push(p as usize);
    }
    false
}

/// Checks and frees blocks of `size` recorded from index `first` of `blocks`.
fn check_and_free(blocks: &mut Vec<usize>, size: usize, first: usize) {
    for (i, &p) in blocks.iter().enumerate().skip(first) {
        ensure!(
            marked(p as *mut u8, size, i),
            "block {i} of {size} bytes at {p:#x} changed while maps failed"
        );
        // SAFETY: a live block from api::malloc.
        unsafe { api::free(p as *mut u8) };
    }
    blocks.truncate(first);
}

// ---------------------------------------------------------------------------
// The injector
// ---------------------------------------------------------------------------

#[test]
fn small_blocks_fail_with_enomem_once_pages_run_out_and_come_back() {
    child_passes("child_small_exhaustion");
}

#[test]
#[ignore = "child process of small_blocks_fail_with_enomem_once_pages_run_out_and_come_back"]
fn child_small_exhaustion() {
    if !in_child() {
        return;
    }
    // Sizes of each page kind: small (64 KiB pages), medium, big.
    let mut blocks: Vec<usize> = Vec::with_capacity(4 << 20);
    for &size in &[1000usize, 20_000, 300_000] {
        // A block allocated before the failure: realloc must keep it.
        let old = api::malloc(100);
        mark(old, 100, 7);
        // The size's page kind has a segment before the maps fail.
        // SAFETY: a fresh block.
        unsafe { api::free(api::malloc(size)) };
        arm();
        let first = blocks.len();
        ensure!(
            exhaust(size, 1 << 30, &mut blocks),
            "malloc({size}) never failed with every map failing ({} blocks)",
            blocks.len() - first
        );
        let n = blocks.len() - first;
        // The same class (and the page kind's next class) fails the same way,
        // through every entry point.
        for (what, p) in [
            ("malloc", api::malloc(size)),
            ("calloc", api::calloc_at(1, size, 0)),
            ("aligned_alloc(64)", api::aligned_at(64, size, 0)),
        ] {
            ensure!(p.is_null(), "{what}({size}) succeeded after malloc failed");
        }
        clear_errno();
        let p = api::calloc_at(size, 1, 0);
        ensure!(
            p.is_null() && errno() == libc::ENOMEM,
            "calloc({size}, 1): {p:p}, errno {}",
            errno()
        );
        clear_errno();
        // SAFETY: `old` is live.
        let q = unsafe { api::realloc_at(old, size, 0) };
        ensure!(
            q.is_null() && errno() == libc::ENOMEM,
            "realloc(100 -> {size}) while maps fail: {q:p}, errno {}",
            errno()
        );
        ensure!(marked(old, 100, 7), "realloc failure changed the old block");
        // Memory freed meanwhile is reused without the OS.
        let half = first + n / 2;
        check_and_free(&mut blocks, size, half);
        ensure!(
            !exhaust(size, (n - n / 2) * size, &mut blocks),
            "malloc({size}) failed although {} blocks of it were just freed",
            n - n / 2
        );
        disarm();
        // And once maps succeed, more than before.
        let more = blocks.len();
        ensure!(
            !exhaust(size, (n + 16) * size, &mut blocks),
            "malloc({size}) still fails after maps succeed again ({} of {} blocks)",
            blocks.len() - more,
            n + 16
        );
        println!("malloc({size}): NULL + ENOMEM after {n} blocks; recovered");
        check_and_free(&mut blocks, size, first);
        // SAFETY: live.
        unsafe { api::free(old) };
    }
    // Rust: a small Box allocates again.
    let b = Box::new([7u8; 1000]);
    assert_eq!(b[999], 7);
}

#[test]
fn large_blocks_fail_with_enomem_and_come_back() {
    child_passes("child_large_failures");
}

#[test]
#[ignore = "child process of large_blocks_fail_with_enomem_and_come_back"]
fn child_large_failures() {
    if !in_child() {
        return;
    }
    let small = api::malloc(1000);
    mark(small, 1000, 3);
    let large = api::malloc(3 * MIB);
    mark(large, 3 * MIB, 4);
    // Empty the BigCache so that nothing large is served without a map.
    hakmem::collect(true);
    arm();
    // Blocks up to 64 MiB come from the span heap's reserved arena, which
    // has room without a new map: served, with no map attempted (hardened
    // builds too: their guard page is an mprotect inside the span).
    let maps = hakmem::stats().os_maps;
    for size in [600 * KIB, 2 * MIB] {
        let p = api::malloc(size);
        ensure!(!p.is_null(), "malloc({size}) from the arena's free spans");
        mark(p, size, 5);
        // SAFETY: live.
        unsafe { api::free(p) };
    }
    ensure!(hakmem::stats().os_maps == maps, "span blocks needed a map");
    // Above the span range every large block needs a map of its own.
    let cases: [(&str, *mut u8); 6] = [
        ("malloc(80 MiB)", api::malloc(80 * MIB)),
        ("malloc(100 MiB)", api::malloc(100 * MIB)),
        ("calloc(3, 30 MiB)", api::calloc_at(3, 30 * MIB, 0)),
        (
            "aligned_alloc(64 KiB, 700 KiB)",
            api::aligned_at(64 * KIB, 700 * KIB, 0),
        ),
        (
            "aligned_alloc(8 MiB, 1 MiB)",
            api::aligned_at(8 * MIB, MIB, 0),
        ),
        (
            "aligned_alloc(16 KiB, 100)",
            api::aligned_at(16 * KIB, 100, 0),
        ),
    ];
    for (what, p) in cases {
        ensure!(p.is_null(), "{what} succeeded with every map failing");
    }
    for size in [80 * MIB, 100 * MIB] {
        clear_errno();
        let p = api::malloc(size);
        ensure!(
            p.is_null() && errno() == libc::ENOMEM,
            "malloc({size}): errno {}",
            errno()
        );
    }
    // realloc that must move: small → large.
    clear_errno();
    // SAFETY: `small` is live.
    let q = unsafe { api::realloc_at(small, 80 * MIB, 0) };
    ensure!(
        q.is_null() && errno() == libc::ENOMEM,
        "realloc(1000 -> 80 MiB): {q:p}, errno {}",
        errno()
    );
    ensure!(marked(small, 1000, 3), "failed realloc changed the block");
    // Shrinking a large block below half moves it to a size class: also a
    // map, also refused, also keeps the block.
    clear_errno();
    // SAFETY: `large` is live.
    let q = unsafe { api::realloc_at(large, 200 * KIB, 0) };
    ensure!(
        q.is_null() || q != large,
        "realloc(3 MiB -> 200 KiB) kept the block in place"
    );
    let large = if q.is_null() {
        ensure!(errno() == libc::ENOMEM, "realloc shrink: errno {}", errno());
        ensure!(
            marked(large, 3 * MIB, 4),
            "failed realloc changed the block"
        );
        large
    } else {
        // A 200 KiB page was still free in an owned segment.
        mark(q, 200 * KIB, 4);
        q
    };
    // Rust: fallible reservations report the failure.
    let mut v: Vec<u8> = Vec::new();
    ensure!(
        v.try_reserve(64 * MIB).is_err(),
        "Vec::try_reserve(64 MiB) succeeded"
    );
    let mut s = String::new();
    ensure!(
        s.try_reserve(80 * MIB).is_err(),
        "String::try_reserve succeeded"
    );
    let mut m: HashMap<u64, [u64; 8]> = HashMap::new();
    ensure!(
        m.try_reserve(1 << 20).is_err(),
        "HashMap::try_reserve succeeded"
    );
    disarm();

    // Memory is back: everything works.
    for size in [600 * KIB, 2 * MIB, 100 * MIB] {
        let p = api::malloc(size);
        assert!(!p.is_null(), "malloc({size}) after recovery");
        mark(p, size, 1);
        // SAFETY: live.
        unsafe { api::free(p) };
    }
    let p = api::aligned_at(8 * MIB, MIB, 0);
    assert!(!p.is_null() && p as usize % (8 * MIB) == 0);
    // SAFETY: live.
    unsafe { api::free(p) };
    v.try_reserve(64 * MIB).expect("try_reserve after recovery");
    v.extend(std::iter::repeat_n(1u8, 64 * MIB));
    drop(v);

    // A block in the BigCache is served while maps fail: no OS needed.
    let p = api::malloc(2 * MIB);
    // SAFETY: live.
    unsafe { api::free(p) };
    arm();
    let q = api::malloc(2 * MIB);
    disarm();
    assert!(
        !q.is_null(),
        "a cached 2 MiB block was not reused while maps fail"
    );
    // SAFETY: all live.
    unsafe {
        api::free(q);
        let s2 = api::realloc_at(small, 8 * MIB, 0);
        assert!(!s2.is_null(), "realloc after recovery");
        assert!(marked(s2, 1000, 3), "realloc lost the contents");
        api::free(s2);
        api::free(large);
    }
}

#[test]
fn a_thread_whose_heap_cannot_be_made_gets_null_not_a_crash() {
    child_passes("child_new_thread_under_failure");
}

#[test]
#[ignore = "child process of a_thread_whose_heap_cannot_be_made_gets_null_not_a_crash"]
fn child_new_thread_under_failure() {
    if !in_child() {
        return;
    }
    static GO: AtomicBool = AtomicBool::new(false);
    let block = api::malloc(64) as usize;
    mark(block as *mut u8, 64, 9);
    // Spawned (allocating) before the maps fail; the thread's heap is made
    // at its first allocation, after they do.
    let t = std::thread::spawn(move || {
        while !GO.load(Relaxed) {
            std::hint::spin_loop();
        }
        clear_errno();
        let p = api::malloc(64);
        let e = errno();
        // A free from a thread that may have no heap: still a valid remote free.
        // SAFETY: the main thread handed `block` over and no longer uses it.
        unsafe {
            assert!(marked(block as *mut u8, 64, 9));
            api::free(block as *mut u8);
        }
        (p as usize, e)
    });
    arm();
    GO.store(true, Relaxed);
    while !t.is_finished() {
        std::hint::spin_loop();
    }
    disarm();
    let (p, e) = t.join().expect("thread");
    if p == 0 {
        assert_eq!(e, libc::ENOMEM, "NULL without ENOMEM in the new thread");
    } else {
        // It got a heap an exited thread had left (no map needed).
        // SAFETY: live.
        unsafe { api::free(p as *mut u8) };
    }
    hakmem::collect(true);
    let q = api::malloc(64);
    assert!(!q.is_null());
    // SAFETY: live.
    unsafe { api::free(q) };
}

// ---------------------------------------------------------------------------
// handle_alloc_error
// ---------------------------------------------------------------------------

/// An infallible allocation failing ends the process through
/// `handle_alloc_error`: the message names the size, then abort (SIGABRT).
fn aborts_with(child: &str, bytes: usize) {
    let (status, stdout, stderr) = run_child(child);
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "{child}: want SIGABRT, got {status}\n{stdout}\n{stderr}"
    );
    let want = format!("memory allocation of {bytes} bytes failed");
    assert!(
        stderr.contains(&want),
        "{child}: stderr lacks {want:?}:\n{stderr}"
    );
    assert!(
        stdout.contains("ARMED") && !stdout.contains("UNREACHABLE"),
        "{child}: {stdout}"
    );
}

#[test]
fn a_failing_large_vec_allocation_aborts_through_handle_alloc_error() {
    aborts_with("child_vec_with_capacity_aborts", 5 * MIB);
}

#[test]
#[ignore = "child process: aborts"]
fn child_vec_with_capacity_aborts() {
    if !in_child() {
        return;
    }
    hakmem::collect(true);
    println!("ARMED");
    arm();
    let v: Vec<u8> = Vec::with_capacity(5 * MIB);
    disarm();
    println!("UNREACHABLE {}", v.capacity());
}

#[test]
fn a_failing_small_box_aborts_through_handle_alloc_error() {
    aborts_with("child_small_box_aborts", 1000);
}

#[test]
#[ignore = "child process: aborts"]
fn child_small_box_aborts() {
    if !in_child() {
        return;
    }
    println!("ARMED");
    let mut blocks = Vec::with_capacity(1 << 20);
    arm();
    ensure!(
        exhaust(1000, 1 << 30, &mut blocks),
        "malloc(1000) never failed"
    );
    let b = std::hint::black_box(Box::new([1u8; 1000]));
    disarm();
    println!("UNREACHABLE {}", b[0]);
}

// ---------------------------------------------------------------------------
// A real address-space limit
// ---------------------------------------------------------------------------

/// The process's virtual size in bytes (/proc/self/statm, first field).
fn vm_size() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().next().unwrap().parse::<u64>().unwrap() * 4096
}

#[test]
fn rlimit_as_gives_null_and_enomem_and_memory_comes_back_when_freed() {
    child_passes("child_rlimit_as");
}

#[test]
#[ignore = "child process of rlimit_as_gives_null_and_enomem_and_memory_comes_back_when_freed"]
fn child_rlimit_as() {
    if !in_child() {
        return;
    }
    let mut blocks: Vec<(usize, usize)> = Vec::with_capacity(1 << 20);
    let limit = vm_size() + 512 * MIB as u64;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit; lowering the soft limit needs no privilege.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
    // Mixed sizes until the limit bites: each size class family in turn.
    let sizes = [100usize, 50_000, 3 * MIB, 300_000, 8 * KIB];
    let mut failed = 0;
    'outer: for round in 0.. {
        for &size in &sizes {
            clear_errno();
            let p = api::malloc(size);
            if p.is_null() {
                assert_eq!(errno(), libc::ENOMEM, "malloc({size}) NULL without ENOMEM");
                failed += 1;
                if failed >= sizes.len() * 2 {
                    break 'outer;
                }
                continue;
            }
            mark(p, size, blocks.len());
            blocks.push((p as usize, size));
            assert!(
                blocks.len() < blocks.capacity(),
                "no failure after {round} rounds"
            );
        }
    }
    let total = blocks.iter().map(|b| b.1).sum::<usize>();
    println!(
        "RLIMIT_AS {} MiB: {} blocks, {} MiB, before {failed} NULL + ENOMEM",
        limit >> 20,
        blocks.len(),
        total >> 20
    );
    assert!(total > 256 * MIB, "failed long before the limit");
    // Fallible Rust reservations fail, calloc and aligned too.
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(256 * MIB).is_err());
    clear_errno();
    assert!(api::calloc_at(64, MIB, 0).is_null() && errno() == libc::ENOMEM);
    clear_errno();
    assert!(api::aligned_at(8 * MIB, 8 * MIB, 0).is_null() && errno() == libc::ENOMEM);
    // realloc of a small block to a huge size keeps it.
    let (p0, s0) = blocks[0];
    clear_errno();
    // SAFETY: live block.
    let q = unsafe { api::realloc_at(p0 as *mut u8, 256 * MIB, 0) };
    assert!(q.is_null() && errno() == libc::ENOMEM);
    assert!(marked(p0 as *mut u8, s0, 0));
    // Every block intact; free half of each kind; allocation works again.
    for (i, &(p, size)) in blocks.iter().enumerate() {
        assert!(
            marked(p as *mut u8, size, i),
            "block {i} ({size} B) corrupt"
        );
    }
    // (Nothing here may allocate: the address space is still full.)
    for (i, b) in blocks.iter_mut().enumerate() {
        if i % 2 == 0 {
            // SAFETY: live.
            unsafe { api::free(b.0 as *mut u8) };
            b.0 = 0;
        }
    }
    hakmem::collect(true);
    for &size in &sizes {
        let p = api::malloc(size);
        assert!(!p.is_null(), "malloc({size}) after freeing half");
        mark(p, size, 1);
        // SAFETY: live.
        unsafe { api::free(p) };
    }
    let room = limit.saturating_sub(vm_size()) >> 20;
    let st = hakmem::stats();
    v.try_reserve(64 * MIB).unwrap_or_else(|e| {
        panic!("try_reserve after freeing half: {e:?}; {room} MiB of address space left; {st:?}")
    });
    for (i, &(p, size)) in blocks.iter().enumerate() {
        if p != 0 {
            assert!(marked(p as *mut u8, size, i));
            // SAFETY: live.
            unsafe { api::free(p as *mut u8) };
        }
    }
}
