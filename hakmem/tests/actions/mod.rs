//! The allocator model shared by the proptest model test (`tests/model.rs`)
//! and the libFuzzer target (`fuzz/fuzz_targets/actions.rs`): an action
//! language over hakmem's API and a checker that runs a sequence of actions.
//!
//! Every live block carries a fill pattern derived from its id. After each
//! allocation the checker verifies that the block is aligned, at least as big
//! as asked and not absurdly bigger (usable size), owned by hakmem, disjoint
//! from every other live block, and zeroed when it should be; before a block
//! is freed, reallocated or handed to another thread, that its contents are
//! intact. A NULL result is a failure unless the test-only map-failure
//! injector (`hakmem::os::FAIL_NEXT_MAPS`) was armed, and then it must come
//! with ENOMEM and, for realloc, leave the old block as it was.
//!
//! Blocks are reached through hakmem's API directly (`hakmem::api` for the C
//! family, `hakmem::Hakmem`'s `GlobalAlloc` methods for the Rust family), so
//! the checker's own bookkeeping never goes through hakmem.
//!
//! The injector is process-wide: a process running this model must not run
//! anything else that allocates with hakmem at the same time.

#![allow(dead_code)]

use arbitrary::Arbitrary;
use hakmem::api;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::thread;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Requests above this many bytes are large blocks (hakmem's last size class).
pub const LARGE_ABOVE: usize = 512 * KIB;

/// Bytes the model keeps live at most: beyond it, allocations are skipped, so
/// that a long run of `Alloc` actions cannot exhaust the machine.
pub const LIVE_BYTES_LIMIT: usize = 256 * MIB;

/// Sizes at the edges of size classes, page kinds, the large-block threshold
/// and the BigCache range.
pub const BOUNDARY_SIZES: &[usize] = &[
    0,
    1,
    7,
    8,
    9,
    15,
    16,
    17,
    127,
    128,
    129,
    1024,
    8 * KIB - 1,
    8 * KIB,
    8 * KIB + 1,
    64 * KIB - 1,
    64 * KIB,
    64 * KIB + 1,
    512 * KIB - 1,
    512 * KIB,
    512 * KIB + 1,
    MIB - 16 * KIB,
    MIB - 1,
    MIB,
    MIB + 1,
    4 * MIB - 16,
    4 * MIB,
    4 * MIB + 1,
    64 * MIB,
    64 * MIB + 1,
];

/// A request size, by band (so that every band is reached, not just tiny ones).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 0 – 255 bytes.
    Tiny(u8),
    /// Up to 8 KiB (small pages).
    Small(u16),
    /// 8 – 64 KiB (medium pages).
    Medium(u16),
    /// 64 – 512 KiB (big pages, the last size class).
    Big(u32),
    /// 512 KiB – 6 MiB (large blocks; the BigCache from 1 MiB).
    Large(u32),
    /// 6 – 40 MiB, page-aligned sizes (large blocks of the span heap above
    /// the BigCache's range: split from and coalesced into its arenas).
    Huge(u16),
    /// One of [`BOUNDARY_SIZES`].
    Boundary(u8),
}

impl Size {
    /// The size in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Size::Tiny(n) => n as usize,
            Size::Small(n) => n as usize % (8 * KIB + 1),
            Size::Medium(n) => 8 * KIB + n as usize % (56 * KIB + 1),
            Size::Big(n) => 64 * KIB + n as usize % (448 * KIB + 1),
            Size::Large(n) => 512 * KIB + n as usize % (5 * MIB + 512 * KIB),
            Size::Huge(n) => 6 * MIB + (n as usize % (34 * 256 + 1)) * 4 * KIB,
            Size::Boundary(i) => BOUNDARY_SIZES[i as usize % BOUNDARY_SIZES.len()],
        }
    }
}

/// An alignment: `1 << (log2 % 24)`, so 1 B – 8 MiB.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Align(pub u8);

impl Align {
    /// The alignment in bytes.
    pub fn bytes(self) -> usize {
        1 << (self.0 % 24)
    }
}

/// Which entry point allocates.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `malloc(size)` (the alignment is ignored).
    Malloc,
    /// `calloc(1, size)`: zeroed.
    Calloc,
    /// `aligned_alloc(align, size)`.
    Aligned,
    /// `GlobalAlloc::alloc(Layout(size, align))`.
    RustAlloc,
    /// `GlobalAlloc::alloc_zeroed(Layout(size, align))`: zeroed.
    RustZeroed,
}

/// One step of a test sequence. Indices pick a live block modulo the number
/// of live blocks (a no-op when there is none).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Allocate a block and fill it.
    Alloc { how: How, size: Size, align: Align },
    /// Check a block and free it.
    Free { idx: u16 },
    /// Check a block, realloc it (size 0 frees, C family), check the kept prefix, refill.
    Realloc { idx: u16, size: Size },
    /// Hand a block to another thread, which checks it and frees it (a remote free).
    HandOff { idx: u16 },
    /// Another thread allocates and fills a block and hands it here; this
    /// thread frees it later (a remote free the other way).
    Adopt { size: Size },
    /// A short-lived thread allocates `count % 16 + 1` blocks and exits; they
    /// live on here (its segments are abandoned, then reclaimed).
    Orphans { count: u8, size: Size },
    /// The next `n % 4 + 1` OS maps fail (`n == 255`: every map until the next
    /// `Collect`); allocations that need memory from the OS return NULL.
    FailMaps { n: u8 },
    /// Maps succeed again; `hakmem::collect(force)` (with debug checks: the
    /// page invariants of this thread's heap are checked).
    Collect { force: bool },
    /// A request nothing can serve: NULL with ENOMEM, and nothing else changes.
    Absurd { which: u8 },
    /// One pass of the background purge thread now (as when the program
    /// has gone idle): every thread's BigCache goes back to the span level as
    /// aged memory, which later requests of any size reuse; and the memory
    /// of exited threads (their abandoned segments, whose live blocks this
    /// thread still holds, and the segment pool) has its remote frees
    /// collected and its free pages purged at once.
    AgeCaches,
    /// A pipeline: the peer thread allocates `count % 4 + 1` large blocks of
    /// `size` and hands them here, and this thread frees them at once (every
    /// free a cross-thread large free, back to the allocating thread's side).
    Pipeline { count: u8, size: Size },
}

/// The entry-point family a block came from, and so the one that frees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    C,
    Rust,
}

/// A live block.
#[derive(Clone, Copy, Debug)]
struct Block {
    id: u64,
    ptr: usize,
    /// Bytes asked for (the patterned bytes).
    size: usize,
    /// Alignment asked for (Rust: the layout's).
    align: usize,
    family: Family,
}

impl Block {
    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size.max(1), self.align).expect("valid layout")
    }
}

/// The pattern byte `i` of block `id` holds.
#[inline]
fn pattern(id: u64, i: usize) -> u8 {
    let h = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((i as u8).wrapping_mul((h >> 56) as u8 | 1) ^ (i >> 8) as u8 ^ (h >> 40) as u8) | 1
}

/// The offsets of a block of `size` bytes that get patterned: every byte of
/// blocks up to 16 KiB; of bigger ones the first and last 4 KiB and a byte
/// every ~4 KiB (every ~64 KiB from 1 MiB) in between, so that big blocks
/// cost no more than a few thousand writes.
fn offsets(size: usize) -> impl Iterator<Item = usize> {
    let (dense, stride) = if size <= 16 * KIB {
        (size, 1)
    } else if size < MIB {
        (4 * KIB, 4093)
    } else {
        (4 * KIB, 65_521)
    };
    let tail = size.saturating_sub(dense).max(dense);
    (0..dense)
        .chain((dense..tail).step_by(stride))
        .chain(tail..size)
}

/// Checks the `len` patterned bytes of block `id` at `ptr`.
fn check_prefix(id: u64, ptr: usize, len: usize, what: &str) {
    check_kept(id, ptr, len, len, what)
}

fn fill(b: &Block) {
    let p = b.ptr as *mut u8;
    for i in offsets(b.size) {
        // SAFETY: `i < b.size`, inside the live block.
        unsafe { p.add(i).write(pattern(b.id, i)) };
    }
}

/// Checks the first `len` bytes of block `id` (patterned when it had
/// `written` bytes) now at `ptr`.
fn check_kept(id: u64, ptr: usize, written: usize, len: usize, what: &str) {
    let p = ptr as *const u8;
    for i in offsets(written).take_while(|&i| i < len) {
        // SAFETY: `i < len`, inside a live block of at least `len` bytes.
        let got = unsafe { p.add(i).read() };
        let want = pattern(id, i);
        assert!(
            got == want,
            "{what}: block {id} at {ptr:#x}: byte {i} of {len} is {got:#04x}, want {want:#04x}"
        );
    }
}

fn check_zeroed(ptr: usize, size: usize, what: &str) {
    let p = ptr as *const u8;
    for i in offsets(size) {
        // SAFETY: inside the fresh block.
        let got = unsafe { p.add(i).read() };
        assert!(
            got == 0,
            "{what}: zeroed block at {ptr:#x} has {got:#04x} at byte {i} of {size}"
        );
    }
}

fn errno() -> i32 {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn clear_errno() {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = 0 };
}

fn injector_armed() -> bool {
    hakmem::os::FAIL_NEXT_MAPS.load(Relaxed) != 0
}

/// The alignment malloc guarantees for `size` bytes.
fn malloc_align(size: usize) -> usize {
    if size <= 8 {
        8
    } else {
        api::MIN_ALIGN
    }
}

/// Allocates with `how`; returns (pointer, family, alignment to expect, zeroed).
fn raw_alloc(how: How, size: usize, align: usize) -> (usize, Family, usize, bool) {
    match how {
        How::Malloc => (
            api::malloc(size) as usize,
            Family::C,
            malloc_align(size),
            false,
        ),
        How::Calloc => (
            api::calloc_at(1, size, 0) as usize,
            Family::C,
            malloc_align(size),
            true,
        ),
        How::Aligned => (
            api::aligned_at(align, size, 0) as usize,
            Family::C,
            align.max(malloc_align(size)),
            false,
        ),
        How::RustAlloc | How::RustZeroed => {
            let layout = Layout::from_size_align(size.max(1), align).expect("valid layout");
            // SAFETY: non-zero size.
            let p = unsafe {
                if how == How::RustZeroed {
                    hakmem::Hakmem.alloc_zeroed(layout)
                } else {
                    hakmem::Hakmem.alloc(layout)
                }
            };
            (p as usize, Family::Rust, align, how == How::RustZeroed)
        }
    }
}

/// Frees a block; free must leave errno alone (POSIX.1-2024).
fn raw_free(b: &Block) {
    const SENTINEL: i32 = 4242;
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = SENTINEL };
    // SAFETY: a live block of this family, checked and no longer used.
    unsafe {
        match b.family {
            Family::C => api::free(b.ptr as *mut u8),
            Family::Rust => hakmem::Hakmem.dealloc(b.ptr as *mut u8, b.layout()),
        }
    }
    assert_eq!(errno(), SENTINEL, "free of a {b:?} changed errno");
}

/// What the other thread is asked to do.
enum Request {
    /// Check block and free it.
    CheckAndFree(Block),
    /// Allocate a block of this size with this id, fill it, send it back.
    Alloc { size: usize, id: u64 },
}

/// A long-lived second thread for hand-offs in both directions.
struct Peer {
    to: mpsc::Sender<Request>,
    from: mpsc::Receiver<Result<Option<Block>, String>>,
    handle: thread::JoinHandle<()>,
}

impl Peer {
    fn spawn() -> Peer {
        let (to, rx) = mpsc::channel::<Request>();
        let (tx, from) = mpsc::channel();
        let handle = thread::Builder::new()
            .name("model-peer".into())
            .spawn(move || {
                for req in rx {
                    let reply = std::panic::catch_unwind(|| match req {
                        Request::CheckAndFree(b) => {
                            check_prefix(b.id, b.ptr, b.size, "peer thread, before a remote free");
                            raw_free(&b);
                            None
                        }
                        Request::Alloc { size, id } => {
                            let armed = injector_armed();
                            clear_errno();
                            let p = api::malloc(size) as usize;
                            if p == 0 {
                                assert!(armed, "peer: malloc({size}) = NULL with maps succeeding");
                                assert_eq!(
                                    errno(),
                                    libc::ENOMEM,
                                    "peer: malloc({size}) = NULL without ENOMEM"
                                );
                                return None;
                            }
                            let b = Block {
                                id,
                                ptr: p,
                                size,
                                align: malloc_align(size),
                                family: Family::C,
                            };
                            fill(&b);
                            Some(b)
                        }
                    })
                    .map_err(|e| panic_message(&e));
                    if tx.send(reply).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the peer thread");
        Peer { to, from, handle }
    }

    fn call(&self, req: Request) -> Option<Block> {
        self.to.send(req).expect("peer alive");
        match self.from.recv().expect("peer replies") {
            Ok(b) => b,
            Err(msg) => panic!("{msg}"),
        }
    }
}

fn panic_message(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Runs actions against hakmem and checks every result. Dropping it (or
/// [`Model::finish`]) frees everything that is still live.
pub struct Model {
    live: Vec<Block>,
    /// Usable ranges of live blocks: start → (end, id).
    ranges: BTreeMap<usize, (usize, u64)>,
    live_bytes: usize,
    next_id: u64,
    peer: Option<Peer>,
    /// Counts of what happened, for reports.
    pub stats: ModelStats,
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ModelStats {
    pub actions: u64,
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub remote_frees: u64,
    pub injected_nulls: u64,
    /// Cross-thread frees of large blocks (`HandOff` of one, `Pipeline`).
    pub large_remote_frees: u64,
    /// BigCache aging passes that entered at least one cache holding blocks.
    pub caches_aged: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    pub fn new() -> Model {
        hakmem::os::FAIL_NEXT_MAPS.store(0, Relaxed);
        Model {
            live: Vec::new(),
            ranges: BTreeMap::new(),
            live_bytes: 0,
            next_id: 1,
            peer: None,
            stats: ModelStats::default(),
        }
    }

    /// Runs every action, then frees everything.
    pub fn run(actions: &[Action]) -> ModelStats {
        let mut m = Model::new();
        for a in actions {
            m.step(a);
        }
        m.finish();
        m.stats
    }

    fn pick(&self, idx: u16) -> Option<usize> {
        (!self.live.is_empty()).then(|| idx as usize % self.live.len())
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Checks a fresh block and records it.
    fn admit(&mut self, b: Block, what: &str) {
        let p = b.ptr;
        // errno was cleared before the call: success leaves it alone.
        assert_eq!(errno(), 0, "{what} succeeded but set errno");
        assert!(
            p % b.align == 0,
            "{what}: {p:#x} not aligned to {} ({b:?})",
            b.align
        );
        assert!(
            hakmem::owns(p as *const u8),
            "{what}: {p:#x} not owned by hakmem"
        );
        // SAFETY: a live block.
        let usable = unsafe { hakmem::usable_size(p as *mut u8) };
        assert!(
            usable >= b.size,
            "{what}: usable size {usable} < {} asked",
            b.size
        );
        let bound = 3 * b.size.max(b.align).max(16) + 64 * KIB;
        assert!(
            usable <= bound,
            "{what}: usable size {usable} for {} bytes aligned {} (more than {bound})",
            b.size,
            b.align
        );
        let end = p + usable;
        if let Some((&s, &(e, id))) = self.ranges.range(..end).next_back() {
            assert!(
                e <= p || s >= end,
                "{what}: block {p:#x}..{end:#x} overlaps live block {id} at {s:#x}..{e:#x}"
            );
        }
        self.ranges.insert(p, (end, b.id));
        // Writable up to its usable size: the last byte is the block's own.
        assert!(usable > 0, "{what}: usable size 0");
        // SAFETY: usable bytes of a live block.
        unsafe { (p as *mut u8).add(usable - 1).write(0xa5) };
        fill(&b);
        self.live_bytes += b.size;
        self.live.push(b);
    }

    /// Takes block `i` out of the records (after checking its contents).
    fn remove(&mut self, i: usize, what: &str) -> Block {
        let b = self.live.swap_remove(i);
        check_prefix(b.id, b.ptr, b.size, what);
        let r = self.ranges.remove(&b.ptr);
        assert!(
            r.is_some(),
            "{what}: block {} missing from the range map",
            b.id
        );
        self.live_bytes -= b.size;
        b
    }

    /// Asserts that a NULL result is allowed: the injector was armed, errno is ENOMEM.
    fn null_ok(&mut self, armed: bool, what: &str) {
        assert!(armed, "{what} returned NULL while maps succeed");
        assert_eq!(errno(), libc::ENOMEM, "{what} returned NULL without ENOMEM");
        self.stats.injected_nulls += 1;
    }

    /// Runs one action.
    pub fn step(&mut self, a: &Action) {
        self.stats.actions += 1;
        match *a {
            Action::Alloc { how, size, align } => {
                let (size, align) = (size.bytes(), align.bytes());
                if self.live_bytes + size > LIVE_BYTES_LIMIT {
                    return;
                }
                let armed = injector_armed();
                clear_errno();
                let (p, family, expect_align, zeroed) = raw_alloc(how, size, align);
                let what = format!("{how:?}(size {size}, align {align})");
                if p == 0 {
                    return self.null_ok(armed, &what);
                }
                if zeroed {
                    check_zeroed(p, size, &what);
                }
                let b = Block {
                    id: self.new_id(),
                    ptr: p,
                    size,
                    align: if family == Family::Rust {
                        align
                    } else {
                        expect_align
                    },
                    family,
                };
                self.stats.allocs += 1;
                self.admit(b, &what);
            }
            Action::Free { idx } => {
                if let Some(i) = self.pick(idx) {
                    let b = self.remove(i, "before free");
                    raw_free(&b);
                    self.stats.frees += 1;
                }
            }
            Action::Realloc { idx, size } => {
                let Some(i) = self.pick(idx) else { return };
                let new = size.bytes();
                let old = self.live[i];
                if self.live_bytes + new > LIVE_BYTES_LIMIT + old.size {
                    return;
                }
                let what = format!(
                    "realloc({:?} block of {} aligned {}, {new})",
                    old.family, old.size, old.align
                );
                check_prefix(old.id, old.ptr, old.size, &format!("{what}, before"));
                let armed = injector_armed();
                clear_errno();
                let q = match old.family {
                    // SAFETY: a live C-family block.
                    Family::C => unsafe { api::realloc_at(old.ptr as *mut u8, new, 0) as usize },
                    // SAFETY: a live Rust block with this layout; non-zero new size.
                    Family::Rust => unsafe {
                        hakmem::Hakmem.realloc(old.ptr as *mut u8, old.layout(), new.max(1))
                            as usize
                    },
                };
                self.stats.reallocs += 1;
                if q == 0 {
                    if old.family == Family::C && new == 0 {
                        // realloc(p, 0) freed p (as glibc); it was checked above.
                        self.remove_unchecked(i);
                        self.stats.frees += 1;
                        return;
                    }
                    // The old block must be untouched and still live.
                    check_prefix(
                        old.id,
                        old.ptr,
                        old.size,
                        &format!("{what} failed; old block"),
                    );
                    return self.null_ok(armed, &what);
                }
                let b = self.remove_unchecked(i);
                let kept = b.size.min(new);
                check_kept(b.id, q, b.size, kept, &format!("{what}: the kept prefix"));
                let nb = Block {
                    id: self.new_id(),
                    ptr: q,
                    size: if b.family == Family::Rust {
                        new.max(1)
                    } else {
                        new
                    },
                    align: if b.family == Family::Rust {
                        b.align
                    } else {
                        malloc_align(new)
                    },
                    family: b.family,
                };
                self.admit(nb, &what);
            }
            Action::HandOff { idx } => {
                let Some(i) = self.pick(idx) else { return };
                let b = self.remove(i, "before a hand-off");
                if b.size > LARGE_ABOVE {
                    self.stats.large_remote_frees += 1;
                }
                self.peer().call(Request::CheckAndFree(b));
                self.stats.remote_frees += 1;
            }
            Action::Adopt { size } => {
                let size = size.bytes();
                if self.live_bytes + size > LIVE_BYTES_LIMIT {
                    return;
                }
                let id = self.new_id();
                if let Some(b) = self.peer().call(Request::Alloc { size, id }) {
                    self.stats.allocs += 1;
                    self.admit_filled(b, "a block adopted from the peer");
                } else {
                    self.stats.injected_nulls += 1;
                }
            }
            Action::Orphans { count, size } => {
                let n = count as usize % 16 + 1;
                let size = size.bytes();
                if self.live_bytes + n * size > LIVE_BYTES_LIMIT {
                    return;
                }
                let first = self.next_id + 1;
                self.next_id += n as u64;
                let got = thread::spawn(move || {
                    let mut out = Vec::new();
                    for k in 0..n {
                        let armed = injector_armed();
                        clear_errno();
                        let p = api::malloc(size) as usize;
                        if p == 0 {
                            assert!(
                                armed,
                                "orphan thread: malloc({size}) = NULL with maps succeeding"
                            );
                            assert_eq!(errno(), libc::ENOMEM);
                            continue;
                        }
                        let b = Block {
                            id: first + k as u64,
                            ptr: p,
                            size,
                            align: malloc_align(size),
                            family: Family::C,
                        };
                        fill(&b);
                        out.push(b);
                    }
                    out
                })
                .join()
                .unwrap_or_else(|e| panic!("{}", panic_message(&e)));
                for b in got {
                    self.stats.allocs += 1;
                    self.admit_filled(b, "a block of an exited thread");
                }
            }
            Action::AgeCaches => {
                if hakmem::large::age_caches_for_test() > 0 {
                    self.stats.caches_aged += 1;
                }
                hakmem::purge_unowned_for_test();
            }
            Action::Pipeline { count, size } => {
                let n = count as usize % 4 + 1;
                let size = size.bytes().max(LARGE_ABOVE + 1);
                if self.live_bytes + n * size > LIVE_BYTES_LIMIT {
                    return;
                }
                let mut got = Vec::new();
                for _ in 0..n {
                    let id = self.new_id();
                    match self.peer().call(Request::Alloc { size, id }) {
                        Some(b) => got.push(b),
                        None => self.stats.injected_nulls += 1,
                    }
                }
                for b in got {
                    self.stats.allocs += 1;
                    self.admit_filled(b, "a pipeline block from the peer");
                    let i = self.live.len() - 1;
                    let b = self.remove(i, "before freeing a pipeline block");
                    raw_free(&b);
                    self.stats.frees += 1;
                    self.stats.remote_frees += 1;
                    self.stats.large_remote_frees += 1;
                }
            }
            Action::FailMaps { n } => {
                let n = if n == 255 {
                    usize::MAX
                } else {
                    n as usize % 4 + 1
                };
                hakmem::os::FAIL_NEXT_MAPS.store(n, Relaxed);
            }
            Action::Collect { force } => {
                hakmem::os::FAIL_NEXT_MAPS.store(0, Relaxed);
                hakmem::collect(force);
            }
            Action::Absurd { which } => {
                clear_errno();
                let (p, what) = match which % 5 {
                    0 => (
                        api::malloc(usize::MAX - 4095) as usize,
                        "malloc(SIZE_MAX - 4095)",
                    ),
                    1 => (
                        api::malloc(isize::MAX as usize) as usize,
                        "malloc(PTRDIFF_MAX)",
                    ),
                    2 => (
                        api::calloc_at(usize::MAX / 2, 3, 0) as usize,
                        "calloc overflowing size_t",
                    ),
                    3 => (
                        api::aligned_at(4096, usize::MAX - 8191, 0) as usize,
                        "aligned_alloc(4096, SIZE_MAX - 8191)",
                    ),
                    _ => {
                        let b = self.pick(0).map(|i| self.live[i]);
                        match b {
                            Some(b) if b.family == Family::C => {
                                // SAFETY: a live C block; on failure it is left alone.
                                let q = unsafe {
                                    api::realloc_at(b.ptr as *mut u8, usize::MAX - 4095, 0)
                                };
                                check_prefix(b.id, b.ptr, b.size, "after a failed huge realloc");
                                (q as usize, "realloc(p, SIZE_MAX - 4095)")
                            }
                            _ => (api::malloc(usize::MAX) as usize, "malloc(SIZE_MAX)"),
                        }
                    }
                };
                assert_eq!(p, 0, "{what} returned a block");
                assert_eq!(errno(), libc::ENOMEM, "{what}: errno");
            }
        }
    }

    fn remove_unchecked(&mut self, i: usize) -> Block {
        let b = self.live.swap_remove(i);
        self.ranges.remove(&b.ptr);
        self.live_bytes -= b.size;
        b
    }

    /// Records a block another thread allocated and filled: the same checks
    /// as [`Model::admit`] but its pattern is checked, not written.
    fn admit_filled(&mut self, b: Block, what: &str) {
        check_prefix(b.id, b.ptr, b.size, what);
        clear_errno(); // this thread's errno says nothing about the other's call
        self.admit(b, what);
    }

    fn peer(&mut self) -> &Peer {
        self.peer.get_or_insert_with(Peer::spawn)
    }

    /// Frees every live block after the peer thread has exited (so blocks it
    /// allocated are freed into abandoned segments), then collects.
    pub fn finish(&mut self) {
        hakmem::os::FAIL_NEXT_MAPS.store(0, Relaxed);
        if let Some(peer) = self.peer.take() {
            drop(peer.to);
            peer.handle.join().expect("peer thread");
        }
        while !self.live.is_empty() {
            let b = self.remove(self.live.len() - 1, "at the end");
            raw_free(&b);
            self.stats.frees += 1;
        }
        hakmem::collect(false);
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        hakmem::os::FAIL_NEXT_MAPS.store(0, Relaxed);
        if std::thread::panicking() {
            // A failed check: leak the blocks rather than free possibly corrupt ones.
            return;
        }
        self.finish();
    }
}
