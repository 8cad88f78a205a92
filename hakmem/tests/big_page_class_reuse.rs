//! A fresh thread that asks for blocks of a big-page class (64-512 KiB) gets
//! the free page an exited thread last carved for that class, from the pool
//! of dirty segments, even when another segment sits on top of that pool
//! (`small::segment::acquire_resident`): the blocks it writes are the ones
//! the exited thread wrote, resident, and fault nothing. A page of another
//! class would fault one 4 KiB page at a time wherever the old blocks did
//! not reach (`mstress`: 2,900 of its 3,600 faults after the first round).
//! The case runs in a child process, with a purge delay long enough that
//! nothing is purged between the two threads.

mod common;

use std::thread;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MARKER: &str = "HAKMEM_TEST_BIG_PAGE_CLASS_REUSE";
/// Blocks of the class the second thread asks for, and how many.
const WANTED: usize = 192 << 10;
const BLOCKS: usize = 8;
/// Two other big-page classes, one block each, touched at their first byte:
/// they fill the segment that ends up on top of the pool.
const OTHERS: [usize; 2] = [144 << 10, 160 << 10];
/// And one more class beside `WANTED` in its segment.
const NEIGHBOUR: usize = 224 << 10;

/// Minor faults of the calling thread so far.
fn thread_faults() -> u64 {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    ru.ru_minflt as u64
}

/// `n` blocks of `size` bytes, each written in full (`fill`) or at its
/// first byte.
fn blocks(size: usize, n: usize, fill: bool) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let p = hakmem::alloc_at(size, 0xb1);
            assert!(!p.is_null());
            // SAFETY: a live block of `size` bytes.
            unsafe {
                if fill {
                    p.write_bytes(i as u8 | 1, size);
                } else {
                    p.write_volatile(1);
                }
            }
            p as usize
        })
        .collect()
}

fn free_all(blocks: Vec<usize>) {
    for p in blocks {
        // SAFETY: allocated by `blocks`, freed once.
        unsafe { hakmem::free(p as *mut u8) };
    }
}

/// Runs in the child: one thread carves four big-page classes in two
/// segments (`WANTED` and `NEIGHBOUR` in the first, written in full and at
/// its first byte, `OTHERS` in the second), frees everything and exits:
/// both segments go to the pool, the second on top. A second thread then
/// writes as many blocks of `WANTED`, and prints its page faults.
#[test]
fn child_entry() {
    if std::env::var(MARKER).is_err() {
        return;
    }
    thread::spawn(|| {
        let mut all = blocks(WANTED, BLOCKS, true);
        all.extend(blocks(NEIGHBOUR, 1, false));
        for size in OTHERS {
            all.extend(blocks(size, 1, false));
        }
        free_all(all);
    })
    .join()
    .unwrap();
    let faults = thread::spawn(|| {
        let before = thread_faults();
        let wanted = blocks(WANTED, BLOCKS, true);
        let faults = thread_faults() - before;
        free_all(wanted);
        faults
    })
    .join()
    .unwrap();
    println!("RESULT faults={faults}");
}

#[test]
fn a_fresh_thread_reuses_the_resident_big_page_of_its_class_from_the_pool() {
    let child = common::run_child(
        (MARKER, "1"),
        &[
            ("HAKMEM_PURGE_DELAY_MS", "10000"),
            ("HAKMEM_HUGEPAGES", "0"),
        ],
    );
    child.assert_success("child");
    let faults = child.num("faults");
    eprintln!(
        "{BLOCKS} blocks of {} KiB written in a fresh thread: {faults} faults",
        WANTED >> 10
    );
    // On the page of the 160 KiB class (the pool's top segment) the 1.5 MiB
    // of 192 KiB blocks faulted 383 times; on the page the first thread
    // wrote them in, none.
    assert!(
        faults < 32,
        "{faults} faults: the blocks did not land on the resident page of their class"
    );
}
