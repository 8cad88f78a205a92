//! Long stress of hakmem as the `#[global_allocator]`: worker threads allocate,
//! check, realloc and free blocks of 1 B – 8 MiB (some over-aligned), pass
//! blocks to each other (remote frees), and end and get replaced every few
//! thousand operations (a successor inherits the table of live blocks, so
//! blocks outlive the thread that allocated them: abandoned segments,
//! reclaim). Every block carries a pattern derived from its tag, checked
//! before each realloc, hand-off and free; a mismatch stops the run with exit
//! status 1. Deterministic but for scheduling: each worker's operations come
//! from `seed` and its index (with `--ops`, exactly reproducible per worker).
//!
//! ```text
//! cargo run --release -p hakmem --example stress -- --threads 4 --seconds 20 --seed 1
//! cargo run --release -p hakmem --example stress -- --threads 8 --seconds 3600   # long form
//! ```
//!
//! Options: `--threads N` (4), `--seconds S` (20), `--ops N` per worker slot
//! instead of a time limit, `--seed X` (1), `--max-live-mib M` (128: live
//! bytes per run; allocation beyond it frees first), `--rss-limit-mib M`
//! (fail if RSS ever exceeds it; default 3 × max-live + 512), `--stats`.
//! Prints a progress line every 5 s and a summary with thread-seconds.

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Live-block slots per worker.
const SLOTS: usize = 2048;

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A live block.
struct Obj {
    ptr: usize,
    layout: Layout,
    tag: u64,
}

// SAFETY: a block is owned by whoever holds its Obj; hakmem blocks may be
// freed by any thread.
unsafe impl Send for Obj {}

fn pattern(tag: u64, i: usize) -> u8 {
    let h = tag.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (i as u8).wrapping_mul((h >> 56) as u8 | 1) ^ (i >> 8) as u8 ^ (h >> 40) as u8
}

/// Offsets that carry the pattern: all of a block up to 4 KiB, else the first
/// and last KiB and one byte per 509 (above 64 KiB: per 4093) in between.
fn offsets(size: usize) -> impl Iterator<Item = usize> {
    let (dense, stride) = if size <= 4 * KIB {
        (size, 1)
    } else if size <= 64 * KIB {
        (KIB, 509)
    } else {
        (KIB, 4093)
    };
    let tail = size.saturating_sub(dense).max(dense);
    (0..dense)
        .chain((dense..tail).step_by(stride))
        .chain(tail..size)
}

fn fill(o: &Obj) {
    let p = o.ptr as *mut u8;
    for i in offsets(o.layout.size()) {
        // SAFETY: inside the live block.
        unsafe { p.add(i).write(pattern(o.tag, i)) };
    }
}

/// Checks the first `len` patterned bytes (patterned for `written` bytes).
fn check(o: &Obj, written: usize, len: usize, what: &str) {
    let p = o.ptr as *const u8;
    for i in offsets(written).take_while(|&i| i < len) {
        // SAFETY: inside the live block.
        let got = unsafe { p.add(i).read() };
        if got != pattern(o.tag, i) {
            eprintln!(
                "stress: CORRUPT {what}: block tag {:#x} at {:#x} ({} bytes, align {}): byte {i} is {got:#04x}, want {:#04x}",
                o.tag,
                o.ptr,
                o.layout.size(),
                o.layout.align(),
                pattern(o.tag, i)
            );
            std::process::exit(1);
        }
    }
}

fn free(o: Obj, what: &str) {
    check(&o, o.layout.size(), o.layout.size(), what);
    // SAFETY: a live block with this layout.
    unsafe { dealloc(o.ptr as *mut u8, o.layout) };
}

/// A size: mostly small, a tail of big and large blocks.
fn size(rng: &mut Rng) -> usize {
    let r = rng.below(1000);
    1 + match r {
        0..=599 => rng.below(128),
        600..=849 => rng.below(8 * KIB as u64),
        850..=949 => rng.below(64 * KIB as u64),
        950..=992 => rng.below(512 * KIB as u64),
        _ => rng.below(8 * MIB as u64),
    } as usize
}

fn align(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=89 => 8,
        90..=98 => 16 << rng.below(9), // 16 B – 4 KiB
        _ => 1 << (13 + rng.below(9)), // 8 KiB – 2 MiB
    }
}

/// Shared counters.
struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
    live_bytes: AtomicUsize,
    max_live: usize,
    handoffs: AtomicU64,
    generations: AtomicU64,
}

/// One worker slot's state; a thread runs it for a while and hands it back.
struct Worker {
    index: usize,
    rng: Rng,
    table: Vec<Option<Obj>>,
    rx: Receiver<Obj>,
    peers: Vec<SyncSender<Obj>>,
    next_tag: u64,
    ops: u64,
    ops_limit: u64,
}

impl Worker {
    fn alloc(&mut self, sh: &Shared) -> Option<Obj> {
        let (size, align) = (size(&mut self.rng), align(&mut self.rng));
        if sh.live_bytes.load(Relaxed) + size > sh.max_live {
            return None;
        }
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "allocation of {size} bytes failed");
        assert_eq!(p as usize % align, 0, "misaligned block");
        sh.live_bytes.fetch_add(size, Relaxed);
        self.next_tag += 1;
        let o = Obj {
            ptr: p as usize,
            layout,
            tag: (self.index as u64) << 48 | self.next_tag,
        };
        fill(&o);
        Some(o)
    }

    fn release(&mut self, o: Obj, sh: &Shared, what: &str) {
        sh.live_bytes.fetch_sub(o.layout.size(), Relaxed);
        free(o, what);
    }

    /// One generation: up to `n` operations or until told to stop.
    fn run(mut self, n: u64, sh: &Shared) -> Worker {
        for _ in 0..n {
            if sh.stop.load(Relaxed) || self.ops >= self.ops_limit {
                break;
            }
            self.ops += 1;
            // Blocks from other workers: keep some (freed later, remotely).
            for _ in 0..4 {
                let Ok(o) = self.rx.try_recv() else { break };
                check(&o, o.layout.size(), o.layout.size(), "received");
                let k = self.rng.below(SLOTS as u64) as usize;
                if let Some(old) = self.table[k].replace(o) {
                    self.release(old, sh, "before free (replaced by a received block)");
                }
            }
            let k = self.rng.below(SLOTS as u64) as usize;
            let op = self.rng.below(100);
            match self.table[k].take() {
                None => self.table[k] = self.alloc(sh),
                Some(o) if op < 55 => self.release(o, sh, "before free"),
                Some(o) if op < 80 => {
                    let new = size(&mut self.rng);
                    let old = o.layout.size();
                    if sh.live_bytes.load(Relaxed) + new > sh.max_live + old {
                        self.table[k] = Some(o);
                        continue;
                    }
                    check(&o, old, old, "before realloc");
                    // SAFETY: a live block with this layout; non-zero size.
                    let q = unsafe { realloc(o.ptr as *mut u8, o.layout, new) };
                    assert!(!q.is_null(), "realloc to {new} bytes failed");
                    let moved = Obj {
                        ptr: q as usize,
                        layout: Layout::from_size_align(new, o.layout.align()).unwrap(),
                        tag: o.tag,
                    };
                    assert_eq!(q as usize % o.layout.align(), 0, "realloc misaligned");
                    check(&moved, old, old.min(new), "kept by realloc");
                    sh.live_bytes.fetch_add(new, Relaxed);
                    sh.live_bytes.fetch_sub(old, Relaxed);
                    self.next_tag += 1;
                    let o = Obj {
                        tag: (self.index as u64) << 48 | self.next_tag,
                        ..moved
                    };
                    fill(&o);
                    self.table[k] = Some(o);
                }
                Some(o) => {
                    let to = self.rng.below(self.peers.len() as u64) as usize;
                    match self.peers[to].try_send(o) {
                        Ok(()) => {
                            sh.handoffs.fetch_add(1, Relaxed);
                        }
                        Err(TrySendError::Full(o)) | Err(TrySendError::Disconnected(o)) => {
                            self.release(o, sh, "before free (peer busy)")
                        }
                    }
                }
            }
        }
        self
    }

    fn drain(mut self, sh: &Shared) {
        while let Ok(o) = self.rx.try_recv() {
            self.release(o, sh, "at the end (in flight)");
        }
        for o in std::mem::take(&mut self.table).into_iter().flatten() {
            self.release(o, sh, "at the end");
        }
    }
}

struct Args {
    threads: usize,
    seconds: u64,
    ops: Option<u64>,
    seed: u64,
    max_live_mib: usize,
    rss_limit_mib: Option<u64>,
    stats: bool,
}

fn parse() -> Args {
    let mut a = Args {
        threads: 4,
        seconds: 20,
        ops: None,
        seed: 1,
        max_live_mib: 128,
        rss_limit_mib: None,
        stats: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--stats" {
            a.stats = true;
            continue;
        }
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let n: u64 = value
            .parse()
            .unwrap_or_else(|_| usage(&format!("{flag} {value}: not a number")));
        match flag.as_str() {
            "--threads" => a.threads = n.max(1) as usize,
            "--seconds" => a.seconds = n,
            "--ops" => a.ops = Some(n),
            "--seed" => a.seed = n,
            "--max-live-mib" => a.max_live_mib = n as usize,
            "--rss-limit-mib" => a.rss_limit_mib = Some(n),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    a
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "stress: {msg}\nusage: stress [--threads N] [--seconds S | --ops N] [--seed X] \
         [--max-live-mib M] [--rss-limit-mib M] [--stats]"
    );
    std::process::exit(2)
}

fn main() {
    let args = parse();
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        live_bytes: AtomicUsize::new(0),
        max_live: args.max_live_mib * MIB,
        handoffs: AtomicU64::new(0),
        generations: AtomicU64::new(0),
    });
    let rss_limit = args
        .rss_limit_mib
        .unwrap_or(3 * args.max_live_mib as u64 + 512)
        << 20;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..args.threads).map(|_| sync_channel::<Obj>(64)).unzip();
    let mut slots: Vec<Option<Worker>> = rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            Some(Worker {
                index: i,
                rng: Rng::new(args.seed ^ (i as u64 + 1) << 32),
                table: (0..SLOTS).map(|_| None).collect(),
                rx,
                peers: txs.clone(),
                next_tag: 0,
                ops: 0,
                ops_limit: args.ops.unwrap_or(u64::MAX),
            })
        })
        .collect();
    drop(txs);
    println!(
        "stress: {} threads, {}, seed {}, live ≤ {} MiB, RSS limit {} MiB",
        args.threads,
        args.ops.map_or(format!("{} s", args.seconds), |n| format!(
            "{n} ops per worker"
        )),
        args.seed,
        args.max_live_mib,
        rss_limit >> 20
    );

    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut running: Vec<Option<thread::JoinHandle<Worker>>> =
        (0..args.threads).map(|_| None).collect();
    let mut gen_rng = Rng::new(args.seed);
    let mut peak_rss = 0u64;
    let mut last_report = start;
    let mut thread_secs = 0f64;
    let mut started: Vec<Instant> = vec![start; args.threads];
    loop {
        let timed_out = args.ops.is_none() && Instant::now() >= deadline;
        if timed_out {
            sh.stop.store(true, Relaxed);
        }
        let mut all_done = true;
        for i in 0..args.threads {
            if running[i].as_ref().is_some_and(|h| !h.is_finished()) {
                all_done = false;
                continue;
            }
            if let Some(h) = running[i].take() {
                let w = h.join().unwrap_or_else(|_| {
                    eprintln!("stress: FAIL: worker {i} panicked");
                    std::process::exit(1)
                });
                thread_secs += started[i].elapsed().as_secs_f64();
                slots[i] = Some(w);
            }
            let w = slots[i].take().unwrap();
            if sh.stop.load(Relaxed) || w.ops >= w.ops_limit {
                slots[i] = Some(w);
                continue;
            }
            all_done = false;
            // A generation of 4k – 256k operations, then the thread ends.
            let n = 4096 << gen_rng.below(7);
            let s = Arc::clone(&sh);
            sh.generations.fetch_add(1, Relaxed);
            started[i] = Instant::now();
            running[i] = Some(
                thread::Builder::new()
                    .name(format!("stress-{i}"))
                    .spawn(move || {
                        let before = w.ops;
                        let w = w.run(n, &s);
                        s.ops.fetch_add(w.ops - before, Relaxed);
                        w
                    })
                    .expect("spawn a worker"),
            );
        }
        if all_done {
            break;
        }
        let rss = hakmem::os::process_rss();
        peak_rss = peak_rss.max(rss);
        if rss > rss_limit {
            eprintln!(
                "stress: FAIL: RSS {} MiB above the limit {} MiB (live {} MiB)",
                rss >> 20,
                rss_limit >> 20,
                sh.live_bytes.load(Relaxed) >> 20
            );
            std::process::exit(1);
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            println!(
                "stress: t={:>5.0}s ops={:>11} live={:>4} MiB rss={:>4} MiB threads started={}",
                start.elapsed().as_secs_f64(),
                sh.ops.load(Relaxed),
                sh.live_bytes.load(Relaxed) >> 20,
                rss >> 20,
                sh.generations.load(Relaxed)
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed().as_secs_f64();
    for w in slots.into_iter().flatten() {
        w.drain(&sh);
    }
    assert_eq!(sh.live_bytes.load(Relaxed), 0, "live-byte accounting");
    hakmem::collect(true);
    let ops = sh.ops.load(Relaxed);
    println!(
        "stress: ok: {} threads x {:.1} s = {:.4} thread-hours, {} ops ({:.2} M/s), {} hand-offs, \
         {} worker threads started and ended, peak RSS {} MiB, no corruption",
        args.threads,
        elapsed,
        thread_secs / 3600.0,
        ops,
        ops as f64 / elapsed / 1e6,
        sh.handoffs.load(Relaxed),
        sh.generations.load(Relaxed),
        peak_rss >> 20
    );
    if args.stats {
        hakmem::print_stats();
    }
}
