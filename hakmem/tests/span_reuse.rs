//! Freed large memory serves a later request of another size: no new mapping
//! and no new page faults (issue 13, item 1).
//!
//! One test in this binary, so no other test maps or faults meanwhile.

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

/// One round: (new mappings, page faults) while three other sizes reuse
/// a freed, resident 6 MiB block.
fn round(site: usize) -> (u64, u64) {
    // Sizes of different BigCache classes and below its range: each must
    // come from the memory the first block left, already resident.
    let first = hakmem::alloc_at(6 * MIB, site);
    assert!(!first.is_null());
    touch(first, 6 * MIB);
    // SAFETY: a live block.
    unsafe { hakmem::free(first) };
    let maps0 = hakmem::stats().os_maps;
    let faults0 = hakmem::os::thread_minor_faults();
    for (i, size) in [3 * MIB + 12_345, 700 << 10, 2 * MIB - 4096]
        .into_iter()
        .enumerate()
    {
        let p = hakmem::alloc_at(size, site + 1 + i);
        assert!(!p.is_null());
        touch(p, size);
        assert!(
            (p as usize) >= first as usize - PAGE && (p as usize) < first as usize + 6 * MIB,
            "size {size} was served from the freed 6 MiB block"
        );
        // SAFETY: a live block.
        unsafe { hakmem::free(p) };
    }
    (
        hakmem::stats().os_maps - maps0,
        hakmem::os::thread_minor_faults() - faults0,
    )
}

#[test]
fn a_block_freed_at_one_size_serves_other_sizes_without_faults() {
    // The background purge may give the freed block back if this thread is
    // descheduled for two purge delays in the middle of a round (a loaded
    // machine): up to three rounds, one of which must show the reuse.
    // 5.7 MiB written = 1,460 pages; a few faults for the test's own bookkeeping.
    let mut rounds = Vec::new();
    for r in 0..3 {
        let (maps, faults) = round(0x51 + 16 * r);
        rounds.push((maps, faults));
        if maps == 0 && faults < 16 {
            return;
        }
    }
    panic!("(new mappings, page faults) per round: {rounds:?}: the resident pages were not reused");
}
