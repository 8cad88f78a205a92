//! Free large memory goes back to the OS while the program is idle, with no
//! allocator call (issue 13, item 5: the background purge thread), and stays
//! when `HAKMEM_BACKGROUND_PURGE=0`: free spans, and blocks in the BigCache of
//! a thread that makes no further call. Each case runs in a child process.

mod common;

use std::time::Duration;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const PAGE: usize = 4096;

/// Allocates `n` blocks of 768 KiB at call site `site`, below the
/// BigCache's range (so they go to the span level when freed), writes every
/// page of each, then frees them all.
fn write_and_free(n: usize, site: usize) {
    let blocks: Vec<usize> = (0..n)
        .map(|_| {
            let p = hakmem::alloc_at(768 << 10, site);
            assert!(!p.is_null());
            for off in (0..(768 << 10)).step_by(PAGE) {
                // SAFETY: inside the block.
                unsafe { p.add(off).write_volatile(1) };
            }
            p as usize
        })
        .collect();
    for &p in &blocks {
        // SAFETY: live blocks.
        unsafe { hakmem::free(p as *mut u8) };
    }
}

/// Frees 48 MiB of written blocks below the BigCache's range (so they go to
/// the span level at once), then sleeps without allocating.
fn idle() -> (u64, u64) {
    write_and_free(64, 0x1d);
    let before = hakmem::os::process_rss();
    std::thread::sleep(Duration::from_millis(600));
    let after = hakmem::os::process_rss();
    (before >> 20, after >> 20)
}

/// A few large blocks written and freed (fewer operations than the purge
/// clock's period), then computing without an allocator call for 60 ms
/// (three times the 20 ms after which a sleeping program is idle, less than
/// the busy hold of whole huge pages, `span_heap::HUGE_HOLD_MS`): the span
/// level's purged bytes before and after. The thread runs all the time, so
/// the program is busy and the free spans stay resident. Before a thread's
/// first large operation told the span level who was active, the active
/// thread was unknown for its first 63 operations and any 20 ms without one
/// looked idle: a program faulting cold memory in had its free spans purged
/// mid-run, huge pages split, and faulted them in again in 4 KiB pages.
fn busy() -> (u64, u64) {
    write_and_free(8, 0x3d);
    let before = hakmem::stats().large.span_purged_bytes;
    let start = std::time::Instant::now();
    let mut x = 1u64;
    let spin = Duration::from_millis(hakmem::large::span_heap::HUGE_HOLD_MS * 3 / 5);
    while start.elapsed() < spin {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    let after = hakmem::stats().large.span_purged_bytes;
    (before >> 10, after >> 10)
}

/// A 32 MiB block written and freed a few times (the BigCache keeps it for
/// its next use), then a sleep without allocating.
fn idle_cached() -> (u64, u64) {
    const SIZE: usize = 32 << 20;
    for _ in 0..4 {
        let p = hakmem::alloc_at(SIZE, 0x2d);
        assert!(!p.is_null());
        for off in (0..SIZE).step_by(PAGE) {
            // SAFETY: inside the block.
            unsafe { p.add(off).write_volatile(1) };
        }
        // SAFETY: a live block.
        unsafe { hakmem::free(p) };
    }
    let before = hakmem::os::process_rss();
    std::thread::sleep(Duration::from_millis(600));
    let after = hakmem::os::process_rss();
    (before >> 20, after >> 20)
}

/// Two threads reuse cached blocks while a third runs the purge thread's
/// aging pass over their caches every few tens of microseconds. Every page of
/// a block carries a stamp checked before it is freed: a cache both sides
/// changed at once hands a block out twice, or a released block is zeroed
/// under its owner.
fn owners_and_the_purge_thread() {
    const MIB: usize = 1 << 20;
    const SIZE: usize = 2 * MIB;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ager = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut entered = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                entered += hakmem::large::age_caches_for_test() as u64;
                // A pause: claimed back to back, the caches refused every
                // owner and never held a block.
                std::thread::sleep(Duration::from_micros(30));
            }
            entered
        })
    };
    let workers: Vec<_> = (0..2u64)
        .map(|t| {
            std::thread::spawn(move || {
                let stamp_all = |p: *mut u64, stamp: u64| {
                    for off in (0..SIZE / 8).step_by(MIB / 64) {
                        // SAFETY: inside the block.
                        unsafe { p.add(off).write_volatile(stamp) };
                    }
                };
                let check = |p: *mut u64, stamp: u64| {
                    for off in (0..SIZE / 8).step_by(MIB / 64) {
                        // SAFETY: inside the block.
                        let v = unsafe { p.add(off).read_volatile() };
                        assert_eq!(v, stamp, "a held block changed at word {off}");
                    }
                };
                let alloc = |stamp: u64| {
                    let p = hakmem::alloc_at(SIZE, 0x3d) as *mut u64;
                    assert!(!p.is_null());
                    stamp_all(p, stamp);
                    p
                };
                for i in 0..3_000u64 {
                    let stamp = t << 40 | i << 8;
                    let (a, b) = (alloc(stamp), alloc(stamp | 1));
                    // SAFETY: a live block.
                    unsafe { hakmem::free(a as *mut u8) };
                    // `a` waits in the cache while aging passes run.
                    std::thread::sleep(Duration::from_micros(100));
                    let c = alloc(stamp | 2);
                    check(b, stamp | 1);
                    check(c, stamp | 2);
                    // SAFETY: live blocks.
                    unsafe {
                        hakmem::free(b as *mut u8);
                        hakmem::free(c as *mut u8);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    println!("RESULT entered={}", ager.join().unwrap());
}

/// Four threads each write 24 MiB of small blocks (48-1,000 bytes), hand
/// one in a hundred to the main thread and free the rest, and exit; the main
/// thread frees what they handed over (remote frees into the segments they
/// abandoned), then sleeps without an allocator call. Nothing owns that
/// memory any more: only the background pass can give it back.
fn idle_small() -> (u64, u64) {
    let survivors = exited_threads_small_blocks();
    for &p in survivors.iter().flatten() {
        // SAFETY: live blocks, handed over by their exited threads.
        unsafe { hakmem::free(p as *mut u8) };
    }
    let before = hakmem::os::process_rss();
    std::thread::sleep(Duration::from_millis(600));
    let after = hakmem::os::process_rss();
    let s = hakmem::stats();
    // SAFETY: a zeroed rusage for getrusage to fill.
    let peak_kib = unsafe {
        let mut u: libc::rusage = core::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss as u64
    };
    println!(
        "RESULT pooled={} purged_kib={} peak={}",
        s.segments_unowned_pooled,
        s.unowned_purged_bytes >> 10,
        peak_kib >> 10
    );
    (before >> 20, after >> 20)
}

/// [`idle_small`]'s threads, but the survivors stay alive: their segments
/// stay abandoned with free pages a purge cannot take (the header half of a
/// huge-page segment). The background thread's passes over the second
/// window of idleness (it must have parked).
fn idle_survivors() -> (u64, u64) {
    let survivors = exited_threads_small_blocks();
    std::thread::sleep(Duration::from_millis(600));
    let t0 = hakmem::stats().large.background_ticks;
    std::thread::sleep(Duration::from_millis(300));
    let t1 = hakmem::stats().large.background_ticks;
    drop(survivors);
    (t0, t1)
}

/// Four threads each write 24 MiB of small blocks, free 99% of them and
/// exit; returns the 1% they handed over.
fn exited_threads_small_blocks() -> Vec<Vec<usize>> {
    (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut blocks = Vec::with_capacity(50_000);
                let mut bytes = 0;
                let mut i = 0usize;
                while bytes < 24 << 20 {
                    let size = 48 + (i * 7919 + t * 13) % 953;
                    let p = hakmem::alloc_at(size, 0x5d);
                    assert!(!p.is_null());
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { p.write_bytes(1, size) };
                    blocks.push(p as usize);
                    bytes += size;
                    i += 1;
                }
                let mut kept = Vec::with_capacity(blocks.len() / 100 + 1);
                for (i, &p) in blocks.iter().enumerate() {
                    if i % 100 == 0 {
                        kept.push(p);
                    } else {
                        // SAFETY: a live block of this thread.
                        unsafe { hakmem::free(p as *mut u8) };
                    }
                }
                kept
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn child_entry() {
    let (before, after) = match std::env::var("IDLE_PURGE_CHILD").as_deref() {
        Ok("spans") => idle(),
        Ok("cached") => idle_cached(),
        Ok("small") => idle_small(),
        Ok("survivors") => idle_survivors(),
        Ok("busy") => busy(),
        Ok("busy-reused") => {
            // A thread that did large-block work exits; its context goes
            // back to the pool and the next thread takes it.
            std::thread::spawn(|| {
                let p = hakmem::alloc_at(768 << 10, 0x4d);
                assert!(!p.is_null());
                // SAFETY: a live block.
                unsafe { hakmem::free(p) };
            })
            .join()
            .unwrap();
            std::thread::spawn(busy).join().unwrap()
        }
        Ok("handshake") => {
            owners_and_the_purge_thread();
            (0, 0)
        }
        _ => return,
    };
    println!("RESULT before={before} after={after}");
}

fn run(env: &[(&str, &str)]) -> (u64, u64) {
    run_case("spans", env)
}

fn run_case(case: &str, env: &[(&str, &str)]) -> (u64, u64) {
    let c = common::run_child(("IDLE_PURGE_CHILD", case), env);
    c.assert_success(case);
    (c.num("before"), c.num("after"))
}

#[test]
fn idle_memory_goes_back_without_an_allocator_call() {
    let (before, after) = run(&[]);
    assert!(
        before >= after + 40,
        "RSS {before} MiB -> {after} MiB while idle"
    );
}

#[test]
fn without_the_background_thread_it_stays_until_the_next_call() {
    let (before, after) = run(&[("HAKMEM_BACKGROUND_PURGE", "0")]);
    assert!(
        after + 8 >= before,
        "RSS {before} MiB -> {after} MiB with the thread off"
    );
}

#[test]
fn a_computing_thread_keeps_its_free_spans_from_its_first_operation() {
    let (before, after) = run_case("busy", &[]);
    assert_eq!(
        before, after,
        "KiB purged from spans while the only thread computed"
    );
}

#[test]
fn a_thread_in_a_reused_context_is_known_from_its_first_operation() {
    // The context kept the exited thread's id: the span level asked whether
    // a thread that no longer exists runs, and took the program for idle.
    let (before, after) = run_case("busy-reused", &[]);
    assert_eq!(
        before, after,
        "KiB purged from spans while the only working thread computed"
    );
}

#[test]
fn a_cached_block_goes_back_while_its_thread_is_idle() {
    // The thread that cached it never calls the allocator again: the purge
    // thread ages its cache (before: RSS stayed up until the next call).
    let (before, after) = run_case("cached", &[]);
    assert!(
        before >= after + 24,
        "RSS {before} MiB -> {after} MiB while idle"
    );
    let (before, after) = run_case("cached", &[("HAKMEM_BACKGROUND_PURGE", "0")]);
    assert!(
        after + 8 >= before,
        "RSS {before} MiB -> {after} MiB with the thread off"
    );
}

#[test]
fn the_purge_thread_and_a_cache_owner_never_meet_inside() {
    let c = common::run_child(("IDLE_PURGE_CHILD", "handshake"), &[]);
    c.assert_success("handshake");
    assert!(
        c.num("entered") > 0,
        "the aging pass entered caches holding blocks: {:?}",
        c.results
    );
}

#[test]
fn small_memory_of_exited_threads_goes_back_without_an_allocator_call() {
    // Pooled segments and abandoned segments' free pages: nobody allocates,
    // so before the background pass reached them they stayed resident for
    // the life of the process (as with mimalloc, tcmalloc and glibc).
    let c = common::run_child(("IDLE_PURGE_CHILD", "small"), &[]);
    c.assert_success("small");
    // Against the peak: under load the threads end at different times, and
    // the pass may take what the first left before the last is done.
    let (peak, after) = (c.num("peak"), c.num("after"));
    assert!(
        peak >= after + 60,
        "RSS peak {peak} MiB -> {after} MiB while idle"
    );
    assert!(
        c.num("pooled") > 0,
        "the pass pooled the segments the main thread's frees emptied: {c:?}"
    );
    let c = common::run_child(
        ("IDLE_PURGE_CHILD", "small"),
        &[("HAKMEM_BACKGROUND_PURGE", "0")],
    );
    c.assert_success("small, thread off");
    let (before, after) = (c.num("before"), c.num("after"));
    assert!(
        after + 8 >= before,
        "RSS {before} MiB -> {after} MiB with the thread off"
    );
    assert_eq!(c.num("pooled"), 0, "no pass ran");
}

#[test]
fn the_background_thread_parks_beside_exited_threads_survivors() {
    // Their segments keep free pages no purge takes; before, every pass
    // counted them as work left, and the thread ticked every purge delay
    // for as long as the survivors lived.
    let (before, after) = run_case("survivors", &[]);
    assert_eq!(
        before, after,
        "background passes in 300 ms of idleness, 600 ms after the threads ended"
    );
}
