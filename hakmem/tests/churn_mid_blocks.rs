//! A thread that churns large blocks gets its 64-512 KiB blocks (the
//! big-page classes) from the span heap, reusing the resident memory its
//! large frees left, instead of first-touching fresh big pages; a thread
//! that has not churned keeps them in the small heap, and so does one whose
//! bytes in such blocks are no longer a small share of its large ones.
//!
//! One test in this binary, so no other test allocates large blocks meanwhile.

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
/// One size in each of nine big-page classes.
const MID_SIZES: [usize; 9] = [
    72 << 10,
    100 << 10,
    130 << 10,
    170 << 10,
    200 << 10,
    260 << 10,
    330 << 10,
    420 << 10,
    500 << 10,
];

fn touch(p: *mut u8, len: usize) {
    for off in (0..len).step_by(PAGE) {
        // SAFETY: inside a live block of `len` bytes.
        unsafe { p.add(off).write_volatile(1) };
    }
}

/// Large allocations of the process so far.
fn large_allocs() -> u64 {
    hakmem::stats().large_allocs
}

/// Allocates, writes and frees one block of each big-page class, `rounds`
/// times; returns the page faults that took.
fn mid_rounds(rounds: usize) -> u64 {
    let faults0 = hakmem::os::thread_minor_faults();
    for _ in 0..rounds {
        for size in MID_SIZES {
            let p = hakmem::api::malloc(size);
            assert!(!p.is_null());
            touch(p, size);
            // SAFETY: a live block.
            unsafe { hakmem::api::free(p) };
        }
    }
    hakmem::os::thread_minor_faults() - faults0
}

#[test]
fn a_thread_churning_large_blocks_takes_big_page_classes_from_resident_spans() {
    std::thread::spawn(|| {
        // Not churning yet: the small heap serves them.
        let before = large_allocs();
        let cold_faults = mid_rounds(1);
        assert_eq!(large_allocs(), before, "a fresh thread keeps them small");

        // 128 MiB of large blocks written and freed (more than CHURN_BYTES).
        for _ in 0..16 {
            let p = hakmem::api::malloc(8 * MIB);
            assert!(!p.is_null());
            touch(p, 8 * MIB);
            // SAFETY: a live block.
            unsafe { hakmem::api::free(p) };
        }

        let before = large_allocs();
        let p = hakmem::api::malloc(128 << 10);
        assert_eq!(large_allocs(), before + 1, "now a span block");
        touch(p, 128 << 10);
        // A span block of a big-page class grows in place (its neighbour is free).
        // SAFETY: a live block.
        let q = unsafe { hakmem::api::realloc_at(p, 256 << 10, 0) };
        assert_eq!(q, p, "grown in place");
        // SAFETY: a live block.
        unsafe { hakmem::api::free(q) };

        // The freed 8 MiB block is resident: the classes cost (almost) no
        // faults now, where the small heap first-touched each class's page.
        // A background purge while this thread was descheduled for two
        // purge delays (a loaded machine) makes a round fault: up to three.
        let mut warm = Vec::new();
        for _ in 0..3 {
            let f = mid_rounds(2);
            warm.push(f);
            if f < 16 {
                break;
            }
        }
        assert!(
            warm.last() < Some(&16),
            "faults of 2 rounds of big-page classes from spans: {warm:?} (from the small heap, 1 round: {cold_faults})"
        );

        // A thread whose bytes in such blocks outgrow a small share of its
        // large bytes (python3's byte buffers) keeps them in the small heap.
        let mut held = Vec::new();
        for _ in 0..64 {
            let p = hakmem::api::malloc(500 << 10);
            assert!(!p.is_null());
            held.push(p as usize);
        }
        let before = large_allocs();
        let p = hakmem::api::malloc(200 << 10);
        assert_eq!(large_allocs(), before, "small again");
        for p in held.into_iter().chain([p as usize]) {
            // SAFETY: live blocks.
            unsafe { hakmem::api::free(p as *mut u8) };
        }
    })
    .join()
    .unwrap();
}
