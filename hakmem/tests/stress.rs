//! Multi-threaded stress under `#[global_allocator]`: objects of 1 B – 2 MiB
//! pass between threads, each filled with a pattern its receiver checks before
//! freeing it, so a block handed out twice, freed into the wrong page or
//! corrupted by a free-list link shows up as a pattern mismatch.

use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

/// The tests measure process-wide counters, so they run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift64*: a reproducible stream of sizes and choices per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Mostly small, some medium, a few large (> 512 KiB) sizes up to 2 MiB.
    fn size(&mut self) -> usize {
        let r = self.below(1000);
        let (lo, hi) = match r {
            0..=699 => (1, 256),
            700..=899 => (257, 8 << 10),
            900..=989 => (8 << 10, 512 << 10),
            _ => (512 << 10, 2 << 20),
        };
        // Log-uniform inside the band, so every class in it gets traffic.
        let lo_bits = (lo as f64).ln();
        let hi_bits = (hi as f64).ln();
        let x = lo_bits + (hi_bits - lo_bits) * (self.below(1 << 20) as f64 / (1 << 20) as f64);
        (x.exp() as usize).clamp(lo, hi)
    }
}

fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9e37_79b9) as usize ^ i.wrapping_mul(131) ^ (i >> 8)) as u8
}

/// An object whose every byte is a function of its id.
struct Obj {
    id: u64,
    data: Vec<u8>,
}

impl Obj {
    fn new(id: u64, size: usize) -> Obj {
        let data = (0..size).map(|i| pattern(id, i)).collect();
        Obj { id, data }
    }

    fn verify(&self, who: &str) {
        if let Some(i) = (0..self.data.len()).find(|&i| self.data[i] != pattern(self.id, i)) {
            panic!(
                "{who}: object {} ({} bytes at {:p}) corrupt at byte {i}: {:#x} != {:#x}",
                self.id,
                self.data.len(),
                self.data.as_ptr(),
                self.data[i],
                pattern(self.id, i)
            );
        }
    }

    /// Resizes the object on a thread that did not allocate it (a realloc of
    /// a remote block) and re-establishes the pattern over the new length.
    fn resize(&mut self, new_len: usize) {
        let old = self.data.len();
        if new_len > old {
            self.data
                .extend((old..new_len).map(|i| pattern(self.id, i)));
        } else {
            self.data.truncate(new_len);
            self.data.shrink_to_fit();
        }
    }
}

const THREADS: usize = 4;
const PER_THREAD: u64 = if cfg!(debug_assertions) {
    15_000
} else {
    40_000
};

#[test]
fn objects_passed_between_threads_keep_their_contents() {
    let _serial = serial();
    let before = hakmem::stats();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Obj>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(me, rx)| {
            let txs: Vec<mpsc::Sender<Obj>> = txs.clone();
            thread::spawn(move || {
                let mut rng = Rng(0x1234_5678_9abc_def1 ^ ((me as u64 + 1) * 0x1000_0001));
                let mut kept: Vec<Obj> = Vec::new(); // freed later by this thread
                let mut held: Vec<Obj> = Vec::new(); // received, freed later, out of order
                let mut received = 0u64;
                let mut handle = |o: Obj, held: &mut Vec<Obj>, rng: &mut Rng| {
                    o.verify("receiver");
                    received += 1;
                    let mut o = o;
                    match rng.below(4) {
                        0 => drop(o),
                        1 => {
                            let new_len = rng.size();
                            o.resize(new_len);
                            o.verify("after resize");
                            held.push(o);
                        }
                        _ => held.push(o),
                    }
                    if held.len() > 200 {
                        // Free a random half, in random order.
                        for _ in 0..100 {
                            let i = rng.below(held.len() as u64) as usize;
                            let o = held.swap_remove(i);
                            o.verify("held");
                        }
                    }
                };
                for n in 0..PER_THREAD {
                    let id = (me as u64) << 40 | n;
                    let o = Obj::new(id, rng.size());
                    if rng.below(8) == 0 {
                        kept.push(o);
                        if kept.len() > 64 {
                            let i = rng.below(kept.len() as u64) as usize;
                            kept.swap_remove(i).verify("kept");
                        }
                    } else {
                        let to = (me + 1 + rng.below(THREADS as u64 - 1) as usize) % THREADS;
                        txs[to].send(o).expect("receiver alive");
                    }
                    while let Ok(o) = rx.try_recv() {
                        handle(o, &mut held, &mut rng);
                    }
                }
                drop(txs);
                while let Ok(o) = rx.recv() {
                    handle(o, &mut held, &mut rng);
                }
                for o in kept.iter().chain(held.iter()) {
                    o.verify("at end");
                }
                received
            })
        })
        .collect();
    drop(txs);
    let received: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("stress thread"))
        .sum();
    let sent_estimate = THREADS as u64 * PER_THREAD * 7 / 8;
    assert!(
        received > sent_estimate * 9 / 10 && received <= THREADS as u64 * PER_THREAD,
        "objects lost in transit: received {received}, expected about {sent_estimate}"
    );

    let after = hakmem::stats();
    let remote = after.remote_frees - before.remote_frees;
    assert!(
        remote > received / 4,
        "only {remote} remote frees for {received} objects freed by their receivers"
    );
    assert!(
        after.large_allocs > before.large_allocs,
        "no large block in the mix"
    );
    // Everything the threads allocated is freed again (the test harness may
    // hold a little on the side).
    assert!(
        after.allocated < before.allocated + (4 << 20),
        "allocated grew from {} to {} although every object was freed",
        before.allocated,
        after.allocated
    );
}

#[test]
fn blocks_outlive_the_thread_that_allocated_them() {
    // A thread fills blocks and exits; another thread and the main thread free
    // them after its heap was abandoned.
    for round in 0..20u64 {
        let objs = thread::spawn(move || {
            let mut rng = Rng(round + 77);
            (0..500)
                .map(|n| Obj::new(round << 32 | n, rng.size() % 20_000 + 1))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        let (first, second) = objs.split_at(250);
        let second: Vec<Obj> = second
            .iter()
            .map(|o| Obj {
                id: o.id,
                data: o.data.clone(),
            })
            .collect();
        thread::spawn(move || {
            for o in second {
                o.verify("other thread");
            }
        })
        .join()
        .unwrap();
        for o in first {
            o.verify("main thread");
        }
        drop(objs);
    }
}

#[test]
fn producer_consumer_with_remote_frees_reuses_memory() {
    let _serial = serial();
    // One producer, one consumer that frees everything: the producer's pages
    // must get the blocks back (through remote frees) instead of growing.
    let (tx, rx) = mpsc::sync_channel::<Box<[u64]>>(256);
    let consumer = thread::spawn(move || {
        let mut n = 0u64;
        while let Ok(b) = rx.recv() {
            assert!(b.iter().all(|&w| w == b[0]), "block {n} corrupt");
            n += 1;
        }
        n
    });
    let rounds = if cfg!(debug_assertions) {
        400_000u64
    } else {
        1_000_000
    };
    let mapped_before = hakmem::stats().mapped;
    let mut peak = 0;
    for i in 0..rounds {
        let words = 1 + (i % 64) as usize;
        tx.send(vec![i; words].into_boxed_slice()).unwrap();
        if i % 10_000 == 0 {
            peak = peak.max(hakmem::stats().mapped);
        }
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), rounds);
    let growth = peak
        .max(hakmem::stats().mapped)
        .saturating_sub(mapped_before);
    eprintln!("producer/consumer: mapped grew by {} KiB", growth >> 10);
    // At most ~256 blocks are live at a time: the producer's pages must get
    // the consumer's frees back. Were remote frees lost, the ~100 MB sent
    // would all stay mapped.
    assert!(
        growth < 16 << 20,
        "mapped memory grew by {} MiB for at most 256 live blocks of <= 512 bytes",
        growth >> 20
    );
}
