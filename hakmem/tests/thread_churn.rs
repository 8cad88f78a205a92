//! Thread churn under `#[global_allocator]`: 2,000 short-lived threads, each
//! leaving blocks behind for the main thread to free after it exited. Exited
//! threads' heaps must be reused and their segments reclaimed, so memory stays
//! bounded instead of growing with the number of threads ever started.

use std::sync::{Mutex, MutexGuard};
use std::thread;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const THREADS: usize = 2_000;
const BATCH: usize = 8;
const MIB: u64 = 1 << 20;

/// The tests measure process-wide counters, so they run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn pattern(tag: usize, i: usize) -> u8 {
    (tag.wrapping_mul(0x9e37_79b9) ^ i.wrapping_mul(7)) as u8
}

/// Blocks a worker leaves behind: checked and freed by the main thread.
type Leftovers = Vec<(usize, Box<[u8]>)>;

/// What each thread does: allocate a mix of sizes, free most of them (some in
/// a different order than allocated), return the rest.
fn work(tag: usize) -> Leftovers {
    let mut live: Vec<(usize, Box<[u8]>)> = Vec::new();
    let mut out = Vec::new();
    for i in 0..300usize {
        let size = match i % 10 {
            0..=5 => 1 + (i * 37 + tag) % 256,
            6..=8 => 257 + (i * 997 + tag * 13) % 16_000,
            _ => 16_000 + (i * 7919 + tag) % 100_000,
        };
        let t = tag * 1000 + i;
        live.push((t, (0..size).map(|j| pattern(t, j)).collect()));
        if i % 3 == 2 {
            // Free one from the middle: the free lists get interleaved.
            let k = live.len() / 2;
            let (t, b) = live.swap_remove(k);
            assert!(b.iter().enumerate().all(|(j, &x)| x == pattern(t, j)));
        }
    }
    // A large block now and then, left to the main thread too.
    if tag % 50 == 0 {
        let t = tag * 1000 + 999;
        out.push((t, (0..(1usize << 20)).map(|j| pattern(t, j)).collect()));
    }
    // Keep one block in ten for the main thread; free the rest here.
    for (n, entry) in live.into_iter().enumerate() {
        if n % 10 == 0 {
            out.push(entry);
        }
    }
    out
}

fn check_and_free(blocks: Leftovers) {
    for (t, b) in blocks {
        if let Some(j) = b.iter().enumerate().position(|(j, &x)| x != pattern(t, j)) {
            panic!(
                "block {t} ({} bytes) corrupt at byte {j} after its thread exited",
                b.len()
            );
        }
    }
}

/// Runs `n` threads, `BATCH` at a time. Each batch's leftovers are freed by
/// the main thread only after the next batch has run, so the blocks' owners
/// are long gone and their segments abandoned (or already reclaimed).
fn churn(n: usize, first_tag: usize) {
    let mut pending: Leftovers = Vec::new();
    for batch in 0..n / BATCH {
        let handles: Vec<_> = (0..BATCH)
            .map(|k| {
                let tag = first_tag + batch * BATCH + k;
                thread::Builder::new()
                    .stack_size(128 << 10)
                    .spawn(move || work(tag))
                    .expect("spawn")
            })
            .collect();
        let mut this_batch = Vec::new();
        for h in handles {
            this_batch.extend(h.join().expect("worker"));
        }
        check_and_free(std::mem::replace(&mut pending, this_batch));
    }
    check_and_free(pending);
}

#[test]
fn two_thousand_short_lived_threads_keep_memory_bounded() {
    let _serial = serial();
    // Warm-up: the thread-stack cache, the heap pool and the segment pool
    // reach their steady size.
    churn(100, 1_000_000);
    hakmem::collect(true);
    let base = hakmem::stats();

    churn(THREADS, 0);
    hakmem::collect(true);
    let end = hakmem::stats();

    eprintln!(
        "thread churn: heaps created {} -> {}, segments abandoned {} reclaimed {}, \
         mapped {} -> {} MiB, resident {} -> {} MiB",
        base.heaps_created,
        end.heaps_created,
        end.segments_abandoned,
        end.segments_reclaimed,
        base.mapped / MIB,
        end.mapped / MIB,
        base.resident / MIB,
        end.resident / MIB
    );

    // Exited threads' heaps are reused: at most a batch's worth of new ones.
    let new_heaps = end.heaps_created - base.heaps_created;
    assert!(
        new_heaps <= 4 * BATCH as u64,
        "{new_heaps} heaps created for {THREADS} threads run {BATCH} at a time"
    );
    // Threads exited holding live blocks, and later threads took their segments over.
    assert!(
        end.segments_abandoned > base.segments_abandoned,
        "no segment abandoned although every thread exited holding blocks"
    );
    assert!(
        end.segments_reclaimed > base.segments_reclaimed,
        "abandoned segments were never reclaimed"
    );
    // Nothing leaks: what is mapped and resident does not grow with the
    // number of threads ever started.
    let mapped_growth = end.mapped.saturating_sub(base.mapped);
    assert!(
        // A leak of one segment per thread would be 8 GiB; the peak number of
        // segments in flight (8 threads, abandoned ones waiting for adoption)
        // varies from run to run between about 20 and 80 MiB here.
        mapped_growth < 128 * MIB,
        "mapped memory grew by {} MiB over {THREADS} threads",
        mapped_growth / MIB
    );
    let rss_growth = end.resident.saturating_sub(base.resident);
    assert!(
        rss_growth < 64 * MIB,
        "resident memory grew by {} MiB over {THREADS} threads",
        rss_growth / MIB
    );
    // Every block is freed: the live byte count is back where it was.
    assert!(
        end.allocated < base.allocated + 4 * MIB,
        "allocated grew from {} to {} bytes although every block was freed",
        base.allocated,
        end.allocated
    );
}

#[test]
fn a_thread_that_only_frees_and_exits() {
    let _serial = serial();
    let before = hakmem::stats();
    // Blocks allocated here, freed by a thread that never allocates itself
    // (its first call into hakmem is a free), many times over.
    for round in 0..200usize {
        let blocks: Leftovers = (0..50)
            .map(|i| {
                let t = round * 100 + i;
                (t, (0..(i * 40 + 1)).map(|j| pattern(t, j)).collect())
            })
            .collect();
        thread::spawn(move || check_and_free(blocks))
            .join()
            .expect("freeing thread");
    }
    let after = hakmem::stats();
    assert!(
        after.remote_frees >= before.remote_frees + 200 * 50,
        "frees by another thread were not counted as remote: {} -> {}",
        before.remote_frees,
        after.remote_frees
    );
}
