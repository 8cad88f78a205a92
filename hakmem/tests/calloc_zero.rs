//! `calloc` of small-object classes under `#[global_allocator]`: a block
//! carved from memory the OS zeroed is not cleared again (clearing a 256 KiB
//! block faulted in all 64 of its pages), and every other block is.

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::thread;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const PAGE: usize = 4096;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Minor faults of the calling thread so far.
fn thread_faults() -> u64 {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    ru.ru_minflt as u64
}

fn assert_zero(p: *const u8, size: usize, what: &str) {
    // SAFETY: a live block of `size` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p, size) };
    if let Some(i) = bytes.iter().position(|&b| b != 0) {
        panic!(
            "{what}: calloc'd block of {size} bytes reads {:#x} at {i}",
            bytes[i]
        );
    }
}

#[test]
fn calloc_of_fresh_memory_faults_in_only_what_is_written() {
    const SIZE: usize = 256 << 10;
    const BLOCKS: usize = 64;
    // A thread of its own: its fault count is its own.
    thread::spawn(|| {
        let before = thread_faults();
        let blocks: Vec<*mut u8> = (0..BLOCKS)
            // SAFETY: a non-zero size.
            .map(|_| unsafe { alloc_zeroed(layout(SIZE)) })
            .collect();
        let faults = thread_faults() - before;
        eprintln!(
            "{BLOCKS} calloc'd blocks of {} KiB: {faults} faults",
            SIZE >> 10
        );
        // Cleared page by page, they faulted 64 times each (4,096 here).
        assert!(
            faults < (BLOCKS * SIZE / PAGE / 4) as u64,
            "{faults} faults for {BLOCKS} calloc'd blocks of {} KiB: fresh memory was cleared",
            SIZE >> 10
        );
        for &p in &blocks {
            assert!(!p.is_null());
            assert_zero(p, SIZE, "fresh");
            // SAFETY: allocated above with this layout.
            unsafe { dealloc(p, layout(SIZE)) };
        }
    })
    .join()
    .unwrap();
}

#[test]
fn calloc_of_reused_blocks_reads_zero() {
    for size in [24, 1000, 8 << 10, 20 << 10, 100 << 10, 300 << 10] {
        for round in 0..3u8 {
            // Written all over, then freed: their pages are reused below.
            let dirty: Vec<*mut u8> = (0..48)
                .map(|_| {
                    // SAFETY: a non-zero size.
                    let p = unsafe { alloc(layout(size)) };
                    assert!(!p.is_null());
                    // SAFETY: a live block of `size` bytes.
                    unsafe { p.write_bytes(0xa5 ^ round, size) };
                    p
                })
                .collect();
            // Half freed here, half by another thread (remote frees).
            let (local, remote) = dirty.split_at(dirty.len() / 2);
            for &p in local {
                // SAFETY: allocated above with this layout.
                unsafe { dealloc(p, layout(size)) };
            }
            let remote: Vec<usize> = remote.iter().map(|&p| p as usize).collect();
            thread::spawn(move || {
                for p in remote {
                    // SAFETY: allocated above with this layout, no longer used.
                    unsafe { dealloc(p as *mut u8, layout(size)) };
                }
            })
            .join()
            .unwrap();
            let zeroed: Vec<*mut u8> = (0..64)
                // SAFETY: a non-zero size.
                .map(|_| unsafe { alloc_zeroed(layout(size)) })
                .collect();
            for &p in &zeroed {
                assert!(!p.is_null());
                assert_zero(p, size, "reused");
                // SAFETY: allocated above with this layout.
                unsafe { p.write_bytes(0x5a, size) };
            }
            for &p in &zeroed {
                // SAFETY: allocated above with this layout.
                unsafe { dealloc(p, layout(size)) };
            }
        }
    }
}
