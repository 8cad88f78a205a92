//! Large blocks freed by another thread come back to the thread that
//! allocated them, with the per-thread and with the global BigCache
//! (issue 13, item 2). Each mode runs in a child process (options are read once).

mod common;

use std::sync::mpsc::sync_channel;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn touch(p: *mut u8, len: usize) {
    for off in (0..len).step_by(PAGE) {
        // SAFETY: inside a live block of `len` bytes.
        unsafe { p.add(off).write_volatile(1) };
    }
}

/// The pipeline: this thread allocates and writes buffers of 1-4 MiB, a
/// consumer frees them. After the first rounds, this thread's allocations
/// must reuse what the consumer freed: few faults per buffer, no new mappings.
fn pipeline() -> (u64, u64, u64) {
    let (tx, rx) = sync_channel::<usize>(2);
    let consumer = std::thread::spawn(move || {
        for p in rx {
            // SAFETY: a live block handed over by the producer.
            unsafe { hakmem::free(p as *mut u8) };
        }
    });
    let sizes = [MIB + 5000, 4 * MIB - 9000, 2 * MIB, 3 * MIB + 777];
    let mut warm = (0, 0);
    let mut pages = 0u64;
    for i in 0..200 {
        if i == 40 {
            warm = (hakmem::os::thread_minor_faults(), hakmem::stats().os_maps);
        }
        let size = sizes[i % sizes.len()];
        let p = hakmem::alloc_at(size, 0x77);
        assert!(!p.is_null());
        touch(p, size);
        if i >= 40 {
            pages += (size / PAGE) as u64;
        }
        tx.send(p as usize).unwrap();
    }
    drop(tx);
    consumer.join().unwrap();
    let faults = hakmem::os::thread_minor_faults() - warm.0;
    let maps = hakmem::stats().os_maps - warm.1;
    (faults, maps, pages)
}

#[test]
fn child_entry() {
    if std::env::var_os("CROSS_THREAD_CHILD").is_none() {
        return;
    }
    let (faults, maps, pages) = pipeline();
    println!("RESULT faults={faults} maps={maps} pages={pages}");
}

fn run(mode: &str) {
    let c = common::run_child(("CROSS_THREAD_CHILD", "1"), &[("HAKMEM_BIGCACHE", mode)]);
    c.assert_success(mode);
    let (faults, maps, pages) = (c.num("faults"), c.num("maps"), c.num("pages"));
    // Without reuse every page of every buffer faults (`pages`); with it
    // only the few the consumer's lag leaves fresh.
    assert!(
        faults * 20 < pages,
        "{mode}: {faults} faults for {pages} pages written"
    );
    assert!(maps <= 2, "{mode}: {maps} new mappings after warm-up");
}

#[test]
fn cross_thread_frees_come_back_with_per_thread_caches() {
    run("thread");
}

#[test]
fn cross_thread_frees_come_back_with_the_global_cache() {
    run("global");
}
