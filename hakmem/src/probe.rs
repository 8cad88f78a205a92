//! Probe points: where a tracer (probe-cli, bpftrace, perf probe) watches hakmem.
//!
//! The contract with the tracer, written down once:
//!
//! * `hakmem_trace_enabled` is an exported `u32` in `.data`/`.bss`. While it is
//!   0 (nobody watching) every probe point costs one relaxed load and a branch
//!   that is never taken. It counts the tracers attached: each adds 1 when it
//!   attaches and takes 1 away when it detaches, by writing the process's memory
//!   (`/proc/PID/mem` at the symbol's address), so two tracers come and go
//!   independently. `HAKMEM_TRACE=1` counts as one tracer from the start.
//! * `hakmem_tracers` holds the pids of the attached tracers (0 = free slot), so
//!   that a tracer killed before it could detach is found dead and its count
//!   taken back by the next one. hakmem itself never reads it; the tracers
//!   update both symbols under a lock of their own (see probe-cli).
//! * While tracing, every component instance is *counted* in the calling
//!   thread's [`ThreadRecord`], a slot of the exported array `hakmem_records`
//!   (no probe hit, no lock, no allocation: a few adds to memory only this
//!   thread writes), except the calls of the *granted fast path* below, which
//!   are counted by their slot of `hakmem_grants` ([`Grants`]). Counters only
//!   grow, so a tracer reads exact totals at any moment from `/proc/PID/mem`
//!   (the `hakmem_records_used` first slots of both arrays) and reports the
//!   difference since it attached. A slot outlives its thread (the next
//!   thread reuses it and keeps adding); a thread that finds no free slot
//!   adds to the last one with atomic read-modify-writes.
//! * The granted fast path: a small malloc served from the free list and a
//!   small free, while no sample is due, run the untraced code plus one
//!   decrement. Each thread's [`Grants`] hold, per operation ([`GrantOp`]),
//!   the calls granted so far (`granted`, only grows) and the calls of the
//!   current grant not taken yet (`left`); a call takes one (`left - 1`, a
//!   load, a test and a store) or, at 0, takes the full path. The calls
//!   taken are `granted - left`, which the reader adds to the components
//!   [`GRANTED`] names; the owner changes `granted` and `left` together
//!   inside a sequence count (odd while changing), so a reader can tell a
//!   consistent pair. Nothing else is counted on it: `malloc`'s `sum_arg` and
//!   `nonzero_arg` are those of the calls on the full path (the mean size of
//!   those).
//! * Timing is sampled: a top-level operation (malloc, free, realloc) is timed
//!   with the TSC, together with every component inside it, one in the
//!   calling thread's period on average, and always when it is about a large
//!   block (rare and costly: a sample would miss them). The period is
//!   adaptive, so that timing costs a thread a bounded share of its time
//!   whatever its allocation rate: it starts at `hakmem_sample_period` and
//!   doubles or halves (16..=2^20) at the end of each sample whose previous
//!   one ended less than half or more than twice `hakmem_sample_interval`
//!   TSC cycles ago (both written by a tracer if it wants; interval 0 fixes
//!   every thread's period at `hakmem_sample_period`, 1 times every call).
//!   After each sample a thread draws a random number N (mean the period
//!   minus a burst) and grants N/2 (rounded up) fast mallocs, as many fast
//!   frees and N operations on the full path; the next sample starts when
//!   one of the three runs out. A sample is a burst of [`SAMPLE_BURST`]
//!   consecutive operations whose first [`SAMPLE_WARMUP`] only warm the
//!   timed path up (weight 0: a lone timed operation every ~100 µs met cold
//!   caches and predictors); the others share the weight of the cycle it
//!   ends: the operations since the previous sample, counted, plus the
//!   burst, so that the weights of a thread's samples add up to its
//!   operations whatever their mix. Components outside the small paths
//!   (large blocks, OS calls, ELO) are timed on every call: they cost
//!   microseconds, two TSC reads do not. A timed instance counts for as many
//!   instances as it stands for (its weight): `sum_cycles` and `hist` are
//!   estimates of every instance's time, `timed` counts the instances behind
//!   them.
//! * At process exit (`.fini_array`) hakmem sums the slots, with the calls
//!   their grants counted, into `hakmem_records_final` and calls
//!   `hakmem_probe_final(record)` once: the tracer's uprobe there copies the totals before the memory disappears. The
//!   function starts with `push %rbp`, which the kernel emulates without a
//!   single-step and without the `[uprobes-trampoline]` page of an optimised
//!   nop5 site (a forked child inherits the call into it but not the page).
//! * `hakmem_trace_follow` (non-zero: a tracer follows children) keeps a forked
//!   child tracing; otherwise the child stops timing itself at once. Either way
//!   the child's records start from zero (the parent's counts stay the parent's).
//!
//! [`COMPONENTS`] is the one definition of the component ids; hakmem-ebpf's
//! build script generates its C header from it, and checks that its map
//! layout matches [`ComponentRecord`].

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Non-zero while a tracer is attached (see the module docs).
#[no_mangle]
#[used]
pub static hakmem_trace_enabled: AtomicU32 = AtomicU32::new(0);

/// Slots of [`hakmem_tracers`].
pub const MAX_TRACERS: usize = 8;

/// Pids of the attached tracers, 0 for a free slot (see the module docs).
#[no_mangle]
#[used]
pub static hakmem_tracers: [AtomicU32; MAX_TRACERS] = [const { AtomicU32::new(0) }; MAX_TRACERS];

/// The components a probe event can name. Values are part of the tracer ABI:
/// append, never renumber.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// A whole `malloc`-family call. `arg` = requested size.
    Malloc = 0,
    /// A whole `free`. `arg` = usable size of the freed block.
    Free = 1,
    /// Small allocation served by popping a thread-local free list. `arg` = size class.
    SmallFast = 2,
    /// Small allocation that took the refill path. `arg` = size class.
    SmallRefill = 3,
    /// Free of a small block by another thread (remote list push). `arg` = size class.
    RemoteFree = 4,
    /// BigCache lookup. `arg` = 1 on a hit, 0 on a miss.
    BigCacheLookup = 5,
    /// BigCache insertion on free. `arg` = 1 if cached, 0 if refused.
    BigCachePut = 6,
    /// ELO strategy selection. `arg` = chosen strategy id.
    EloSelect = 7,
    /// Large-block header write (alloc) or check (free). `arg` = 0 write, 1 check.
    Header = 8,
    /// One `mmap` of hakmem's. `arg` = bytes, 0 if it failed.
    OsMap = 9,
    /// One `munmap` of hakmem's. `arg` = bytes, 0 if it failed.
    OsUnmap = 10,
    /// One `madvise(MADV_DONTNEED)` of hakmem's: memory given back. `arg` =
    /// bytes, 0 if it failed.
    OsPurge = 11,
    /// Evolution lifecycle transition. `arg` = new state (0 learn, 1 frozen).
    EvoTransition = 12,
    /// A whole `realloc`. `arg` = new size.
    Realloc = 13,
    /// Large allocation (BigCache miss path included). `arg` = requested size.
    LargeAlloc = 14,
    /// The timing floor, measured where the figures are made: at the end of
    /// every sample, the thread times an empty component inside an empty
    /// operation with the very code that times real ones ([`measure_floor`]).
    /// Each instance is the empty component's figure; `arg` = the cycles the
    /// empty operation around it recorded. A tracer subtracts these means,
    /// not the components' figures: it is the tracer's cost.
    TimingFloor = 15,
    /// One `madvise` of hakmem's other than a purge: populate, or advice for
    /// or against huge pages. `arg` = bytes, 0 if it failed.
    OsAdvise = 16,
    /// One `mremap` of hakmem's (a block resized in place). `arg` = the new
    /// length in bytes, 0 if it failed.
    OsRemap = 17,
    /// One `mprotect` of hakmem's (a guard page of hardened builds). `arg` =
    /// bytes, 0 if it failed.
    OsProtect = 18,
}

/// Every component with its report name, in id order.
pub const COMPONENTS: &[(Component, &str)] = &[
    (Component::Malloc, "malloc"),
    (Component::Free, "free"),
    (Component::SmallFast, "small_fast"),
    (Component::SmallRefill, "small_refill"),
    (Component::RemoteFree, "remote_free"),
    (Component::BigCacheLookup, "bigcache_lookup"),
    (Component::BigCachePut, "bigcache_put"),
    (Component::EloSelect, "elo_select"),
    (Component::Header, "header"),
    (Component::OsMap, "os_map"),
    (Component::OsUnmap, "os_unmap"),
    (Component::OsPurge, "os_purge"),
    (Component::EvoTransition, "evo_transition"),
    (Component::Realloc, "realloc"),
    (Component::LargeAlloc, "large_alloc"),
    (Component::TimingFloor, "timing_floor"),
    (Component::OsAdvise, "os_advise"),
    (Component::OsRemap, "os_remap"),
    (Component::OsProtect, "os_protect"),
];

/// The memory system calls hakmem makes, each with the components that
/// count it (every call, whoever in hakmem makes it, through `vm`): the
/// in-process view of a tracer's syscall report. A failed call is counted
/// with `arg` 0, so its failures are `calls - nonzero_arg`. hakmem never
/// calls `brk`.
pub const SYSCALL_COMPONENTS: &[(&str, &[Component])] = &[
    ("mmap", &[Component::OsMap]),
    ("munmap", &[Component::OsUnmap]),
    ("madvise", &[Component::OsPurge, Component::OsAdvise]),
    ("mremap", &[Component::OsRemap]),
    ("mprotect", &[Component::OsProtect]),
];

/// log2 buckets of a component's cycle histogram (bucket `i` counts durations
/// `d` with `floor(log2(d)) == i`, bucket 0 also `d == 0`).
pub const HIST_BUCKETS: usize = 64;

/// Component slots of a [`ThreadRecord`] (room for appended components).
pub const RECORD_COMPONENTS: usize = 24;

/// Slots of `hakmem_records`: threads beyond share the last one.
pub const MAX_RECORDS: usize = 256;

/// Sampling period a thread starts at (see the module docs). A timed small
/// malloc costs about 150 ns more than a counted one on a VM whose TSC read
/// takes 18 ns (four reads, the record's histogram): at a fixed 1 in 256
/// that was 0.6 ns per operation, 4% of a 15 ns malloc+free pair on a
/// thread that does nothing else; the period adapts from here (see
/// [`hakmem_sample_interval`]).
pub const DEFAULT_SAMPLE_PERIOD: u32 = 256;

/// Default target time between two samples of one thread, in TSC cycles
/// (2^19: 175-260 µs at 2-3 GHz, so a thread takes at most ~5,000 samples a
/// second: a sample of [`SAMPLE_BURST`] operations costs 0.6 µs in a tight
/// loop and up to ~1.5 µs in a server whose timed path is cache-cold, so
/// under 1% of a core however fast the thread allocates).
pub const DEFAULT_SAMPLE_INTERVAL: u64 = 1 << 19;

/// Operations in a sample (a burst of consecutive operations, taken when a
/// grant is used up and the period is at least [`MIN_ADAPTIVE_PERIOD`]): the
/// first [`SAMPLE_WARMUP`] run the timed path without counting in the time
/// estimates (weight 0), the others are measured. One timed operation alone
/// every ~100 µs ran its timed path with cold caches and predictors
/// (small-churn: a traced malloc read 100-230 ns where 1 in 256 read 25 ns);
/// two warm-ups cover a malloc/free alternation.
pub const SAMPLE_BURST: u64 = 4;
/// See [`SAMPLE_BURST`].
pub const SAMPLE_WARMUP: u64 = 2;

/// Bounds of a thread's adaptive sampling period.
pub const MIN_ADAPTIVE_PERIOD: u64 = 1 << 4;
/// See [`MIN_ADAPTIVE_PERIOD`].
pub const MAX_ADAPTIVE_PERIOD: u64 = 1 << 20;

const _: () = assert!(COMPONENTS.len() <= RECORD_COMPONENTS);

/// What one thread (slot) counted of one component. Every field only grows.
#[repr(C)]
pub struct ComponentRecord {
    /// Instances (exact).
    pub calls: AtomicU64,
    /// Instances that were timed (sampled).
    pub timed: AtomicU64,
    /// TSC cycles of the timed instances, each times its weight: an estimate
    /// of all instances' cycles.
    pub sum_cycles: AtomicU64,
    /// Longest timed instance, TSC cycles.
    pub max_cycles: AtomicU64,
    /// Sum of the instances' `arg` (see [`Component`]). The counting fast
    /// path (see the module docs) adds malloc's size only: `free`'s block
    /// size and the small paths' class are summed on the full path alone.
    pub sum_arg: AtomicU64,
    /// Instances with a non-zero `arg`, on the full path (not the counting
    /// fast path): for `free`, the instances whose block size was looked up.
    pub nonzero_arg: AtomicU64,
    /// log2 histogram of the timed instances' cycles, each counted its weight
    /// times (so the buckets sum to an estimate of all instances).
    pub hist: [AtomicU64; HIST_BUCKETS],
}

/// One slot of `hakmem_records`: every component, by id.
#[repr(C)]
pub struct ThreadRecord {
    /// Indexed by [`Component`] id.
    pub components: [ComponentRecord; RECORD_COMPONENTS],
}

impl ThreadRecord {
    #[allow(clippy::declare_interior_mutable_const)]
    const ZERO_COMPONENT: ComponentRecord = ComponentRecord {
        calls: AtomicU64::new(0),
        timed: AtomicU64::new(0),
        sum_cycles: AtomicU64::new(0),
        max_cycles: AtomicU64::new(0),
        sum_arg: AtomicU64::new(0),
        nonzero_arg: AtomicU64::new(0),
        hist: [const { AtomicU64::new(0) }; HIST_BUCKETS],
    };
    #[allow(clippy::declare_interior_mutable_const)]
    const ZERO: ThreadRecord = ThreadRecord {
        components: [Self::ZERO_COMPONENT; RECORD_COMPONENTS],
    };

    fn clear(&self) {
        for c in &self.components {
            for f in [
                &c.calls,
                &c.timed,
                &c.sum_cycles,
                &c.max_cycles,
                &c.sum_arg,
                &c.nonzero_arg,
            ] {
                f.store(0, Ordering::Relaxed);
            }
            for b in &c.hist {
                b.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Adds `other` into `self` (owner-free: atomic adds).
    fn add(&self, other: &ThreadRecord) {
        for (a, b) in self.components.iter().zip(&other.components) {
            let pairs = [
                (&a.calls, &b.calls),
                (&a.timed, &b.timed),
                (&a.sum_cycles, &b.sum_cycles),
                (&a.sum_arg, &b.sum_arg),
                (&a.nonzero_arg, &b.nonzero_arg),
            ];
            for (x, y) in pairs {
                x.fetch_add(y.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            a.max_cycles
                .fetch_max(b.max_cycles.load(Ordering::Relaxed), Ordering::Relaxed);
            for (x, y) in a.hist.iter().zip(&b.hist) {
                x.fetch_add(y.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }
}

/// The per-thread slots a tracer reads (see the module docs).
#[no_mangle]
#[used]
pub static hakmem_records: [ThreadRecord; MAX_RECORDS] = [ThreadRecord::ZERO; MAX_RECORDS];

/// Slots ever handed out: a tracer reads `hakmem_records[..used]`.
#[no_mangle]
#[used]
pub static hakmem_records_used: AtomicU32 = AtomicU32::new(0);

/// The sum of every slot, written once at exit for `hakmem_probe_final`.
#[no_mangle]
#[used]
pub static hakmem_records_final: ThreadRecord = ThreadRecord::ZERO;

/// The operations of the granted fast path (see the module docs), indexing
/// [`Grants::ops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantOp {
    /// A small malloc served from the thread's free list.
    Malloc = 0,
    /// A small free.
    Free = 1,
}

/// Operations in [`Grants::ops`].
pub const GRANT_OPS: usize = 2;

/// The components one call taken from each operation's grant counts, by
/// [`GrantOp`] (a fast malloc is a `malloc` and a `small_fast`).
pub const GRANTED: [&[Component]; GRANT_OPS] = [
    &[Component::Malloc, Component::SmallFast],
    &[Component::Free],
];

/// One operation's grant in a [`Grants`].
#[repr(C)]
pub struct OpGrant {
    /// Calls granted so far (every grant added, what was not taken of the
    /// previous one taken back): only grows.
    pub granted: AtomicU64,
    /// Calls of the current grant not taken yet.
    pub left: AtomicU64,
}

/// A thread's grants (see the module docs): a slot of `hakmem_grants`, one
/// cache line, written by its thread only. The calls taken of operation `i`
/// are `ops[i].granted - ops[i].left`, read when `seq` is even and the same
/// before and after.
#[repr(C, align(64))]
pub struct Grants {
    /// Odd while the owner changes `granted` and `left` together.
    pub seq: AtomicU64,
    /// By [`GrantOp`].
    pub ops: [OpGrant; GRANT_OPS],
}

impl Grants {
    #[allow(clippy::declare_interior_mutable_const)]
    const ZERO: Grants = Grants {
        seq: AtomicU64::new(0),
        ops: [const {
            OpGrant {
                granted: AtomicU64::new(0),
                left: AtomicU64::new(0),
            }
        }; GRANT_OPS],
    };

    /// Replaces every operation's grant by `left` (the owner only): what was
    /// not taken of the previous one is taken back, so the calls taken stay.
    fn grant(&self, left: [u64; GRANT_OPS]) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Release);
        for (o, n) in self.ops.iter().zip(left) {
            let taken = o
                .granted
                .load(Ordering::Relaxed)
                .wrapping_sub(o.left.load(Ordering::Relaxed));
            o.granted.store(taken.wrapping_add(n), Ordering::Relaxed);
            o.left.store(n, Ordering::Relaxed);
        }
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// Calls not taken yet of every operation's grant (the owner only).
    fn left(&self) -> u64 {
        self.ops
            .iter()
            .map(|o| o.left.load(Ordering::Relaxed))
            .sum()
    }

    /// True when an operation's grant is used up (the owner only).
    fn used_up(&self) -> bool {
        self.ops.iter().any(|o| o.left.load(Ordering::Relaxed) == 0)
    }

    /// The calls taken of each operation, read consistently from any thread.
    pub fn taken(&self) -> [u64; GRANT_OPS] {
        loop {
            let s = self.seq.load(Ordering::Acquire);
            let t = self.ops.each_ref().map(|o| {
                o.granted
                    .load(Ordering::Relaxed)
                    .wrapping_sub(o.left.load(Ordering::Relaxed))
            });
            core::sync::atomic::fence(Ordering::Acquire);
            if s % 2 == 0 && self.seq.load(Ordering::Relaxed) == s {
                return t;
            }
            core::hint::spin_loop();
        }
    }

    fn clear(&self) {
        self.seq.store(0, Ordering::Relaxed);
        for o in &self.ops {
            o.granted.store(0, Ordering::Relaxed);
            o.left.store(0, Ordering::Relaxed);
        }
    }
}

/// u64 words a [`Grants`] holds (`seq`, then `granted` and `left` of each
/// operation), the rest of its cache line being padding.
pub const GRANT_WORDS: usize = 1 + 2 * GRANT_OPS;

/// The calls taken of each operation from a copy of a [`Grants`] read from
/// another process (`words`, its first [`GRANT_WORDS`] words), if the copy
/// is consistent: `seq_before` and `seq_after` are its `seq` read before and
/// after the copy was (see the module docs).
pub fn taken_in_copy(
    words: &[u64; GRANT_WORDS],
    seq_before: u64,
    seq_after: u64,
) -> Option<[u64; GRANT_OPS]> {
    if seq_before % 2 != 0 || seq_before != seq_after {
        return None;
    }
    Some(core::array::from_fn(|i| {
        words[1 + 2 * i].wrapping_sub(words[2 + 2 * i])
    }))
}

/// Per-thread grants (see the module docs), slot for slot with
/// `hakmem_records`.
#[no_mangle]
#[used]
pub static hakmem_grants: [Grants; MAX_RECORDS] = [Grants::ZERO; MAX_RECORDS];

/// The grants of a thread without a slot of its own (or counting nothing):
/// never granted anything, so every call takes the full path.
pub(crate) static NO_GRANTS: Grants = Grants::ZERO;

/// [`NO_GRANTS`]' address, every thread's grants until it has a slot.
pub(crate) const NO_GRANTS_PTR: *const Grants = &raw const NO_GRANTS;

/// The hook told about every change of a thread's grants pointer (0: none
/// yet): the thread layer keeps a copy beside its context pointer, where the
/// fast path reaches both at once (see [`on_grants_change`]).
static GRANTS_HOOK: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Sets the hook [`set_grants`] calls on the calling thread with its new
/// grants pointer. The thread layer sets it before it first copies a
/// pointer, so that a copy other than [`NO_GRANTS_PTR`] is always kept up
/// to date (a slot given back at thread exit, counting off in [`untraced`]).
pub fn on_grants_change(hook: fn(*const Grants)) {
    // Called on every traced full-path call: a store only the first time,
    // so threads do not keep writing a line they all read.
    if GRANTS_HOOK.load(Ordering::Relaxed) != hook as *mut () {
        GRANTS_HOOK.store(hook as *mut (), Ordering::Release);
    }
}

/// The calling thread's grants pointer ([`NO_GRANTS_PTR`] or its slot's).
pub fn grants() -> *const Grants {
    local().grants.get()
}

fn set_grants(l: &Local, g: *const Grants) {
    l.grants.set(g);
    let hook = GRANTS_HOOK.load(Ordering::Acquire);
    if !hook.is_null() {
        // SAFETY: only `on_grants_change` stores here, a `fn(*const Grants)`.
        let hook: fn(*const Grants) = unsafe { core::mem::transmute(hook) };
        hook(g);
    }
}

/// The sampling period a thread starts at (a power of two; 0 reads as 1);
/// with [`hakmem_sample_interval`] 0, every thread's fixed period (operations
/// timed with probability 1 / this).
#[no_mangle]
#[used]
pub static hakmem_sample_period: AtomicU32 = AtomicU32::new(DEFAULT_SAMPLE_PERIOD);

/// Target TSC cycles between two timed operations of one thread (0: no
/// adaptation, every thread keeps [`hakmem_sample_period`]). At the end of
/// each timed operation the thread doubles its period when the previous one
/// ended less than half this ago, halves it when more than twice this ago,
/// within [`MIN_ADAPTIVE_PERIOD`]..=[`MAX_ADAPTIVE_PERIOD`]: the time spent
/// timing is bounded by a budget, not by the allocation rate.
#[no_mangle]
#[used]
pub static hakmem_sample_interval: AtomicU64 = AtomicU64::new(DEFAULT_SAMPLE_INTERVAL);

/// Non-zero while a tracer follows children (see the module docs).
#[no_mangle]
#[used]
pub static hakmem_trace_follow: AtomicU32 = AtomicU32::new(0);

/// Slots in use, one bit each (a slot is free again when its thread exits).
static SLOT_BITS: [AtomicU64; MAX_RECORDS / 64] = [const { AtomicU64::new(0) }; MAX_RECORDS / 64];

/// The exit probe: `push %rbp` first (kernel-emulated, see the module docs),
/// then `ret`. `#[no_mangle]` keeps it in the dynamic symbol table.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn hakmem_probe_final(_record: *const ThreadRecord, _components: u32) {
    core::arch::naked_asm!("push rbp", "mov rbp, rsp", "pop rbp", "ret")
}

/// Elsewhere: an ordinary empty function a uprobe can still attach to.
#[cfg(not(target_arch = "x86_64"))]
#[no_mangle]
#[inline(never)]
pub extern "C" fn hakmem_probe_final(record: *const ThreadRecord, components: u32) {
    core::hint::black_box((record, components));
}

/// True while a tracer is attached. One relaxed load.
#[inline(always)]
pub fn tracing() -> bool {
    // `no-probes`: the build scripts/probe-overhead.sh compares against; every
    // probe point folds away, so its cost with nobody watching can be measured.
    !cfg!(feature = "no-probes")
        && hakmem_trace_enabled.load(Ordering::Relaxed) != 0
        && !local().internal.get()
}

/// True while a tracer is attached, whatever the calling thread does (one
/// relaxed load): the entry points' test before their counting fast path
/// ([`counting`]), which a thread allocating for hakmem itself never takes.
#[inline(always)]
pub fn enabled() -> bool {
    !cfg!(feature = "no-probes") && trace_count() != 0
}

/// `hakmem_trace_enabled`, read with one rip-relative load. Rust reaches a
/// static of another crate through the GOT (two dependent loads); in the
/// LD_PRELOAD library, linked with `-Bsymbolic` (`hakmem/preload/build.rs`),
/// and in executables the symbol binds locally, so the direct load links.
#[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn trace_count() -> u32 {
    let v: u32;
    // SAFETY: a 4-byte aligned load of a live static, atomic on x86-64 as a
    // relaxed load is; the asm writes nothing.
    unsafe {
        core::arch::asm!(
            "mov {v:e}, dword ptr [rip + {flag}]",
            flag = sym hakmem_trace_enabled,
            v = out(reg) v,
            options(nostack, readonly, preserves_flags)
        )
    };
    v
}

#[cfg(not(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux")))]
#[inline(always)]
fn trace_count() -> u32 {
    hakmem_trace_enabled.load(Ordering::Relaxed)
}

/// Runs `f` with this thread's counting off: the allocations hakmem itself
/// causes (glibc's `pthread_create` callocs the new thread's TLS vector when
/// the background purge thread starts) are not the program's and must not
/// show in its exact counts.
pub fn untraced<R>(f: impl FnOnce() -> R) -> R {
    let l = local();
    let was = l.internal.replace(true);
    // No granted fast path either (it does not look at `internal`).
    let grants = l.grants.get();
    set_grants(l, NO_GRANTS_PTR);
    let r = f();
    set_grants(l, grants);
    l.internal.set(was);
    r
}

/// The TSC (x86-64) or a monotonic nanosecond clock elsewhere: a timestamp for
/// components timed on every call (and for anything else that needs a clock).
///
/// Serialised: `lfence; rdtsc; lfence`, so that the work a pair of stamps
/// brackets neither starts before the first nor ends after the second. A
/// bare `rdtsc` (~20 ns on this project's VM) ran in parallel with the few-ns
/// pop or push it bracketed: the pair read the same whether the work was
/// there or not (a pop+push of 7 ns read 0.1 ns after the empty pair's
/// figure, 6.9 ns serialised). The fences cost ~10 ns a stamp, paid only
/// on timed calls.
#[inline(always)]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_lfence, _rdtsc};
        // SAFETY: lfence and rdtsc have no preconditions on x86-64 (SSE2 is
        // part of the baseline).
        unsafe {
            _mm_lfence();
            let t = _rdtsc();
            _mm_lfence();
            t
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        crate::os::monotonic_ns()
    }
}

/// The calling thread's probe state.
struct Local {
    /// Its slot (null until the first event).
    record: Cell<*const ThreadRecord>,
    /// True when the slot is shared (no free slot was left): atomic adds.
    shared: Cell<bool>,
    /// True inside a top-level operation chosen for timing.
    sampling: Cell<bool>,
    /// TSC cycles the timed operation in progress spent updating the records
    /// of the components timed inside it (taken out of its own figure).
    excluded: Cell<u64>,
    /// How many operations the timed one stands for (its share of the
    /// sample's cycle, 0 for a warm-up, or 1).
    weight: Cell<u64>,
    /// This thread's sampling period: the mean of its cycles (0 = not
    /// chosen yet, see [`hakmem_sample_interval`]).
    period: Cell<u64>,
    /// True while the timed operation in progress ends a sample: its end
    /// adapts the period and grants the next cycle.
    due: Cell<bool>,
    /// TSC at the end of this thread's previous sampled operation (0: none).
    last_sample: Cell<u64>,
    /// Operations of the current sample still to come after this one
    /// (see [`SAMPLE_BURST`]); 0 outside a sample.
    burst_left: Cell<u64>,
    /// xorshift state of the sampling decision (0 = not seeded).
    rng: Cell<u64>,
    /// The grants its fast path takes from ([`take_grant`]): its slot's in
    /// `hakmem_grants`, or [`NO_GRANTS`] while it has no slot of its own (no
    /// slot yet, or the shared one) or counts nothing ([`untraced`]).
    grants: Cell<*const Grants>,
    /// Operations on the full path ([`start_op`]) still granted before the
    /// next sample.
    slow_left: Cell<u64>,
    /// Operations granted in the current cycle, fast and full path together
    /// (what is left of them is not taken yet).
    cycle_granted: Cell<u64>,
    /// The weight of the sample in progress: the operations of the cycle it
    /// ends, burst included, shared by its measured operations.
    sample_total: Cell<u64>,
    /// True while hakmem allocates for itself ([`untraced`]).
    internal: Cell<bool>,
    /// Operations timed because they were forced (`start_op(true)`: large
    /// blocks), counting down to the next floor measurement after one
    /// ([`FLOOR_EVERY_FORCED`]).
    forced_left: Cell<u64>,
    /// True inside a forced timed operation.
    forced: Cell<bool>,
}

std::thread_local! {
    static LOCAL: Local = const {
        Local {
            record: Cell::new(ptr::null()),
            shared: Cell::new(false),
            sampling: Cell::new(false),
            excluded: Cell::new(0),
            weight: Cell::new(1),
            period: Cell::new(0),
            due: Cell::new(false),
            last_sample: Cell::new(0),
            burst_left: Cell::new(0),
            rng: Cell::new(0),
            grants: Cell::new(NO_GRANTS_PTR),
            slow_left: Cell::new(0),
            cycle_granted: Cell::new(0),
            sample_total: Cell::new(0),
            internal: Cell::new(false),
            forced_left: Cell::new(0),
            forced: Cell::new(false),
        }
    };
}

/// The calling thread's [`Local`]. In the LD_PRELOAD library (`static-tls`)
/// Rust's thread locals cost a `__tls_get_addr` call per access (a fifth of a
/// traced program's time went there); the first access measures the thread
/// local's offset from the thread pointer and, when it lies in the static TLS
/// block (the same in every thread), later accesses are one `%fs`-relative
/// address computation. (`thread/tls.rs` reaches the heap through a TLS
/// symbol of its own instead, which needs the initial image in assembly:
/// worth it for the untraced fast path's two words, not for this record,
/// which only traced operations read.)
#[inline(always)]
fn local() -> &'static Local {
    #[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
    {
        let off = LOCAL_OFFSET.load(Ordering::Relaxed);
        if off != 0 {
            // SAFETY: `off` was measured to be LOCAL's fixed offset in the static
            // TLS block, valid in every thread; the thread's TLS outlives its uses.
            return unsafe { &*(thread_pointer().wrapping_add(off as usize) as *const Local) };
        }
    }
    local_slow()
}

/// Offset of LOCAL from the thread pointer; 0 = not known to be static.
#[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
static LOCAL_OFFSET: core::sync::atomic::AtomicIsize = core::sync::atomic::AtomicIsize::new(0);

#[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 glibc, %fs:0 holds the thread pointer itself.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

#[cold]
#[inline(never)]
fn local_slow() -> &'static Local {
    let p = LOCAL.with(|l| l as *const Local);
    #[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
    {
        let off = (p as usize).wrapping_sub(thread_pointer()) as isize;
        // Static TLS blocks sit just below the thread pointer.
        if off < 0 && off > -(1 << 20) {
            LOCAL_OFFSET.store(off, Ordering::Relaxed);
        }
    }
    // SAFETY: this thread's LOCAL (no destructor: valid until the thread ends,
    // and only this thread ever holds the reference).
    unsafe { &*p }
}

/// One xorshift64 step (0 seeds from the TSC first).
#[inline(always)]
fn next_rng(mut x: u64) -> u64 {
    if x == 0 {
        x = now() | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The sampling period: a power of two, at least 1.
#[inline(always)]
fn period() -> u64 {
    (hakmem_sample_period.load(Ordering::Relaxed).max(1) as u64).next_power_of_two()
}

/// The N of the next cycle ([`rearm`]): uniform with mean `period - 1`, or
/// `period - burst` when samples are bursts (see [`burst`]: a sample then
/// takes `burst` operations), random so that no periodic
/// pattern of the program (malloc, free, malloc, ...) can line up with the
/// samples.
fn next_countdown(l: &Local) -> u64 {
    let x = next_rng(l.rng.get());
    l.rng.set(x);
    let p = thread_period(l);
    let mean = p - burst(p);
    // (x / 2^32) * n / 2^32: uniform in 0..n (n = 2 * mean + 1) without a division.
    ((x >> 32) * (2 * mean + 1)) >> 32
}

/// Operations in a sample at period `p`: [`SAMPLE_BURST`] from
/// [`MIN_ADAPTIVE_PERIOD`] on, else 1 (a small fixed period, 1 in particular,
/// times every operation on its own).
#[inline]
fn burst(p: u64) -> u64 {
    if p >= MIN_ADAPTIVE_PERIOD {
        SAMPLE_BURST
    } else {
        1
    }
}

/// This thread's sampling period (chosen on first use: the configured one,
/// inside the adaptive bounds unless adaptation is off).
#[inline]
fn thread_period(l: &Local) -> u64 {
    let p = l.period.get();
    if p != 0 {
        return p;
    }
    let p = if hakmem_sample_interval.load(Ordering::Relaxed) == 0 {
        period()
    } else {
        period().clamp(MIN_ADAPTIVE_PERIOD, MAX_ADAPTIVE_PERIOD)
    };
    l.period.set(p);
    p
}

/// At the end (TSC `end`) of a sample: adapts this thread's period to the
/// target interval (see [`hakmem_sample_interval`]) and grants the next
/// cycle ([`rearm`]).
fn adapt_and_rearm(l: &Local, end: u64) {
    let interval = hakmem_sample_interval.load(Ordering::Relaxed);
    if interval == 0 {
        l.period.set(period());
    } else {
        let last = l.last_sample.replace(end);
        let mut p = thread_period(l);
        if last != 0 {
            let elapsed = end.wrapping_sub(last);
            if elapsed < interval / 2 {
                p = (p * 2).min(MAX_ADAPTIVE_PERIOD);
            } else if elapsed > interval.saturating_mul(2) {
                p = (p / 2).max(MIN_ADAPTIVE_PERIOD);
            }
        }
        l.period.set(p);
    }
    rearm(l);
}

/// The calling thread's slot, claiming one if it has none (tests: a
/// thread's own counts, whatever other threads do meanwhile).
#[cfg(test)]
pub(crate) fn own_record() -> &'static ThreadRecord {
    let l = local();
    if l.record.get().is_null() {
        claim(l);
    }
    // SAFETY: slots are statics that live for the whole process.
    unsafe { &*l.record.get() }
}

/// This thread's own grants, if it has a slot of its own.
#[inline]
fn own_grants(l: &Local) -> Option<&'static Grants> {
    let r = l.record.get();
    if r.is_null() || l.shared.get() {
        return None;
    }
    let slot =
        (r as usize - hakmem_records.as_ptr() as usize) / core::mem::size_of::<ThreadRecord>();
    Some(&hakmem_grants[slot])
}

/// Starts a cycle: draws N operations ([`next_countdown`]) and grants N/2
/// (rounded up) fast mallocs, as many fast frees and N operations on the
/// full path; the next sample starts when one of them is used up.
fn rearm(l: &Local) {
    let n = next_countdown(l);
    let half = n.div_ceil(2);
    l.slow_left.set(n);
    l.cycle_granted.set(n + 2 * half);
    if let Some(g) = own_grants(l) {
        g.grant([half; GRANT_OPS]);
    }
}

/// Whether this thread's next full-path operation starts a sample: a grant
/// is used up (or none was given: no slot of its own yet).
#[inline]
fn cycle_over(l: &Local) -> bool {
    l.slow_left.get() == 0 || own_grants(l).is_none_or(Grants::used_up)
}

/// Whether the next [`start_op`] of this thread may be timed (when not
/// forced): a sample is in progress or due.
#[inline]
pub fn sampling_next() -> bool {
    let l = local();
    l.shared.get() || l.burst_left.get() > 0 || (!l.record.get().is_null() && cycle_over(l))
}

/// The granted fast path of a top-level operation (see the module docs):
/// takes one call of the calling thread's grant of `op` from `grants` (its
/// grants pointer, [`grants`] or the thread layer's copy of it), true if
/// there was one (the call is then counted and must not take [`start_op`];
/// if it turns out to need the full path after all, [`return_grant`]
/// first). False: take [`start_op`]. A load, a test and a store, no call
/// (the caller keeps its short prologue).
#[inline(always)]
pub(crate) fn take_grant_in(grants: *const Grants, op: GrantOp) -> bool {
    // SAFETY: a thread's grants pointer points at a static: NO_GRANTS (whose
    // `left` stays 0, so it is never written) or its own slot.
    let left = unsafe { &(*grants).ops[op as usize].left };
    let n = left.load(Ordering::Relaxed);
    if n == 0 {
        return false;
    }
    left.store(n - 1, Ordering::Relaxed);
    true
}

/// Gives back the call [`take_grant`] just took of `op` (the operation
/// takes the full path after all, which counts it).
#[cold]
pub(crate) fn return_grant(op: GrantOp) {
    let l = local();
    // SAFETY: as in `take_grant`; after a successful take, this thread's own slot.
    let left = unsafe { &(*l.grants.get()).ops[op as usize].left };
    left.store(left.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Starts a top-level operation (malloc, free, realloc): decides whether it is
/// timed (always when `always`: a large block, rare and costly, which a sample
/// would miss). Returns its start timestamp, or 0 when only counted.
#[inline]
pub fn start_op(always: bool) -> u64 {
    let l = local();
    l.forced.set(always);
    let timed = if always {
        l.weight.set(1);
        true
    } else {
        if l.record.get().is_null() {
            claim(l); // a slot of its own starts a cycle
        }
        if l.shared.get() {
            // The shared slot keeps no grants: a coin per operation.
            l.weight.set(period());
            let x = next_rng(l.rng.get());
            l.rng.set(x);
            x & (period() - 1) == 0
        } else if l.burst_left.get() == 0 && !cycle_over(l) {
            l.slow_left.set(l.slow_left.get() - 1);
            false
        } else {
            // A sample: `burst` operations, the grants used up or taken back.
            // The first warm the timed path up (weight 0), the others share
            // the cycle's operations. The end of the last ([`emit_timed`])
            // adapts the period and grants the next cycle, outside the timed
            // region.
            let p = thread_period(l);
            let b = burst(p);
            let left = match l.burst_left.get() {
                0 => {
                    let g = own_grants(l);
                    let not_taken = g.map_or(0, Grants::left) + l.slow_left.get();
                    let cycle = l.cycle_granted.get().saturating_sub(not_taken);
                    if let Some(g) = g {
                        g.grant([0; GRANT_OPS]);
                    }
                    l.slow_left.set(0);
                    l.cycle_granted.set(0);
                    l.sample_total.set(cycle + b);
                    b - 1
                }
                n => n - 1,
            };
            l.burst_left.set(left);
            let position = b - 1 - left;
            let warmup = if b > 1 { SAMPLE_WARMUP } else { 0 };
            let measured = b - warmup;
            let total = l.sample_total.get();
            // The last measured operation takes the remainder: the sample's
            // weights add up to its cycle exactly.
            l.weight.set(if position < warmup {
                0
            } else if left == 0 {
                total / measured + total % measured
            } else {
                total / measured
            });
            l.due.set(left == 0);
            true
        }
    };
    l.sampling.set(timed);
    l.excluded.set(0);
    if timed {
        now()
    } else {
        0
    }
}

/// Starts a component inside a top-level operation: its timestamp when the
/// operation is timed ([`stamp`]), 0 when it is only counted.
#[inline]
pub fn start() -> u64 {
    let l = local();
    if l.sampling.get() {
        stamp_in(l)
    } else {
        0
    }
}

/// The start timestamp of a component timed on every call ([`emit`] it at
/// the end): [`now`], less what the timed operation around it (if any) has
/// excluded so far, so that [`emit_timed`] leaves out of this component's
/// figure exactly the record updates of the components timed inside it.
#[inline]
pub fn stamp() -> u64 {
    stamp_in(local())
}

/// [`stamp`] while a tracer is attached, else 0 without reading the clock
/// (the untraced path pays one load): for components whose end [`emit`]s
/// only `if tracing()`.
#[inline(always)]
pub fn stamp_if_tracing() -> u64 {
    if tracing() {
        stamp()
    } else {
        0
    }
}

/// [`stamp`] on this thread's `l`.
#[inline(always)]
fn stamp_in(l: &Local) -> u64 {
    let t = now();
    if l.sampling.get() {
        t.wrapping_sub(l.excluded.get())
    } else {
        t
    }
}

/// Records one instance of `component` that started at `start` (a [`now`],
/// [`start`] or [`start_op`] value; 0 = counted, not timed). The counting is
/// inlined into the (cold, traced) caller: a few adds; timing is out of line.
#[inline(always)]
pub fn emit(component: Component, start: u64, arg: u64) {
    if start == 0 {
        count(local(), component, arg);
    } else {
        emit_timed(component, start, arg);
    }
}

/// Components timed only inside a sampled operation (they take [`start`] or
/// [`start_op`]): a timed instance stands for `weight` of them.
fn sampled(component: Component) -> bool {
    matches!(
        component,
        Component::Malloc
            | Component::Free
            | Component::Realloc
            | Component::SmallFast
            | Component::SmallRefill
            | Component::RemoteFree
    )
}

#[inline(never)]
fn emit_timed(component: Component, start: u64, arg: u64) {
    let end = now();
    let l = local();
    let top = matches!(
        component,
        Component::Malloc | Component::Free | Component::Realloc
    );
    // What the record updates of the components timed inside this one took
    // is the tracer's cost, not this component's: `start` was taken less
    // what the operation had excluded by then (`start`, `stamp`), so the
    // exclusions since then come off here, at every level of nesting.
    let inside = l.sampling.get();
    let excluded = if inside { l.excluded.get() } else { 0 };
    let cycles = end.wrapping_sub(excluded).saturating_sub(start);
    if top {
        l.excluded.set(0);
    }
    let weight = if !sampled(component) {
        1
    } else {
        match l.weight.get() {
            0 => 0, // a warm-up (see SAMPLE_BURST)
            w if cycles < OUTLIER_CYCLES => w,
            _ => 1,
        }
    };
    count(l, component, arg);
    time(l, component, cycles, weight);
    if top {
        l.sampling.set(false);
        if l.due.replace(false) {
            adapt_and_rearm(l, end);
            measure_floor(l);
        } else if l.forced.replace(false) {
            // A thread whose timed calls are all forced (large blocks) has
            // few samples: its floor is measured after its forced calls too.
            match l.forced_left.get() {
                0 => {
                    l.forced_left.set(FLOOR_EVERY_FORCED - 1);
                    measure_floor(l);
                }
                n => l.forced_left.set(n - 1),
            }
        }
    } else if l.sampling.get() {
        // Inside a timed operation: take this record update (and the clock
        // read that measures it) out of the operation's figure. What stays
        // in it per nested component is its pair of timestamps, about what
        // an empty component reads (the report subtracts that).
        l.excluded.set(l.excluded.get() + now().wrapping_sub(end));
    }
}

/// A floor measurement ([`measure_floor`]) follows one forced timed
/// operation in this many (a large block's calls take microseconds; the
/// measurement ~0.15 µs).
pub const FLOOR_EVERY_FORCED: u64 = 8;

/// Times an empty component inside an empty operation, as [`start_op`],
/// [`start`], [`emit`] and [`emit_timed`] time real ones, on this thread,
/// right after a sample (warm, like the sample's measured operations): the
/// [`Component::TimingFloor`] record. What a real figure holds beyond its
/// work is this: the two stamps, the call into the recording code, and for
/// an operation the timestamps of each component timed inside it.
#[cold]
#[inline(never)]
fn measure_floor(l: &Local) {
    l.sampling.set(true);
    l.excluded.set(0);
    let op = now(); // as start_op's
    let inner = start();
    emit(Component::TimingFloor, core::hint::black_box(inner), 0);
    floor_operation_end(core::hint::black_box(op));
    l.sampling.set(false);
}

/// The end of [`measure_floor`]'s empty operation: what [`emit_timed`] does
/// up to its stamp, then the operation's cycles (the inner record update
/// left out, as for a real operation) added to the floor's `sum_arg`.
#[inline(never)]
fn floor_operation_end(start: u64) {
    let end = now();
    let l = local();
    let cycles = end
        .wrapping_sub(start)
        .saturating_sub(l.excluded.replace(0));
    add(l, &slot(l, Component::TimingFloor).sum_arg, cycles);
}

/// A sampled instance that took this long (2^21 cycles, 0.5-1 ms) was
/// preempted or stalled with the machine, not typical of the calls it would
/// stand for: it counts for itself only (weight 1), else one scheduler tick
/// inside a sample, times the period, would outweigh millions of calls. Page
/// faults (a few µs) stay far below it.
pub const OUTLIER_CYCLES: u64 = 1 << 21;

/// Records an instance with a duration measured elsewhere (weight 1).
#[inline(never)]
pub fn emit_cycles(component: Component, cycles: u64, arg: u64) {
    let l = local();
    count(l, component, arg);
    time(l, component, cycles, 1);
}

/// floor(log2(v)), 0 for v == 0.
#[inline(always)]
fn bucket(v: u64) -> usize {
    (63 - (v | 1).leading_zeros()) as usize
}

/// The calling thread's record of `component` (claiming a slot on first use).
#[inline(always)]
fn slot(l: &Local, component: Component) -> &'static ComponentRecord {
    let mut r = l.record.get();
    if r.is_null() {
        r = claim(l);
    }
    // SAFETY: slots are statics that live for the whole process.
    unsafe { &(*r).components[component as usize] }
}

/// Adds `by` to a counter only this thread writes: a plain load and store,
/// no lock prefix (a reader sees the old or the new value, never a mix).
#[inline(always)]
fn bump(f: &AtomicU64, by: u64) {
    f.store(
        f.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    )
}

/// Adds `by` to a counter of this thread's slot: [`bump`], or an atomic
/// add where the slot is shared (threads beyond the slots).
#[inline(always)]
fn add(l: &Local, f: &AtomicU64, by: u64) {
    if l.shared.get() {
        f.fetch_add(by, Ordering::Relaxed);
    } else {
        bump(f, by);
    }
}

#[inline(always)]
fn count(l: &Local, component: Component, arg: u64) {
    let c = slot(l, component);
    add(l, &c.calls, 1);
    add(l, &c.sum_arg, arg);
    add(l, &c.nonzero_arg, (arg != 0) as u64);
}

fn time(l: &Local, component: Component, cycles: u64, weight: u64) {
    let c = slot(l, component);
    if l.shared.get() {
        c.timed.fetch_add((weight != 0) as u64, Ordering::Relaxed);
        c.sum_cycles.fetch_add(cycles * weight, Ordering::Relaxed);
        c.max_cycles
            .fetch_max(if weight != 0 { cycles } else { 0 }, Ordering::Relaxed);
        c.hist[bucket(cycles)].fetch_add(weight, Ordering::Relaxed);
    } else {
        // A warm-up (weight 0) runs through the same code and lines and
        // leaves every figure as it was.
        bump(&c.timed, (weight != 0) as u64);
        bump(&c.sum_cycles, cycles * weight);
        if weight != 0 && cycles > c.max_cycles.load(Ordering::Relaxed) {
            c.max_cycles.store(cycles, Ordering::Relaxed);
        }
        bump(&c.hist[bucket(cycles)], weight);
    }
}

/// Gives the calling thread a slot: a free one, else the shared last one.
#[cold]
#[inline(never)]
fn claim(l: &Local) -> *const ThreadRecord {
    for (w, word) in SLOT_BITS.iter().enumerate() {
        let mut bits = word.load(Ordering::Relaxed);
        while bits != u64::MAX {
            let bit = (!bits).trailing_zeros() as usize;
            let slot = w * 64 + bit;
            if slot == MAX_RECORDS - 1 {
                break; // the last slot is the shared one
            }
            match word.compare_exchange_weak(
                bits,
                bits | 1 << bit,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    hakmem_records_used.fetch_max(slot as u32 + 1, Ordering::Release);
                    let r: *const ThreadRecord = &hakmem_records[slot];
                    l.record.set(r);
                    l.shared.set(false);
                    l.period.set(0);
                    l.last_sample.set(0);
                    l.burst_left.set(0);
                    // What a previous owner left not taken is taken back
                    // (free_slot did; a forked child's slots were cleared).
                    let g = &hakmem_grants[slot];
                    g.grant([0; GRANT_OPS]);
                    set_grants(l, g);
                    rearm(l);
                    release_at_thread_exit(slot);
                    ensure_registered();
                    return r;
                }
                Err(now) => bits = now,
            }
        }
    }
    hakmem_records_used.store(MAX_RECORDS as u32, Ordering::Release);
    let r: *const ThreadRecord = &hakmem_records[MAX_RECORDS - 1];
    l.record.set(r);
    l.shared.set(true);
    set_grants(l, NO_GRANTS_PTR);
    l.slow_left.set(0);
    l.cycle_granted.set(0);
    r
}

/// pthread key whose destructor frees a thread's slot (0 = not created yet).
static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);

fn release_at_thread_exit(slot: usize) {
    let mut k = EXIT_KEY.load(Ordering::Acquire);
    if k == 0 {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: valid out-pointer and destructor; pthread_key_create does not allocate.
        if unsafe { libc::pthread_key_create(&mut key, Some(free_slot)) } != 0 {
            return; // the slot stays taken: harmless
        }
        k = match EXIT_KEY.compare_exchange(
            0,
            key as usize + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => key as usize + 1,
            Err(winner) => {
                // SAFETY: our key, unused.
                unsafe { libc::pthread_key_delete(key) };
                winner
            }
        };
    }
    // The slot is published in LOCAL before this: if setspecific allocates
    // (keys >= 32), the nested malloc finds it instead of claiming again.
    // SAFETY: a valid key; the value is the slot number + 1 (never null).
    unsafe {
        libc::pthread_setspecific(
            (k - 1) as libc::pthread_key_t,
            (slot + 1) as *const libc::c_void,
        )
    };
}

extern "C" fn free_slot(value: *mut libc::c_void) {
    let slot = value as usize - 1;
    LOCAL.with(|l| {
        // What it was granted and did not take goes back: its calls stay
        // counted exactly, and the slot's next owner starts from there.
        if let Some(g) = own_grants(l) {
            g.grant([0; GRANT_OPS]);
        }
        set_grants(l, NO_GRANTS_PTR);
        l.slow_left.set(0);
        l.cycle_granted.set(0);
        l.burst_left.set(0);
        l.due.set(false);
        l.record.set(ptr::null());
        l.shared.set(false);
    });
    // The slot's counts stay: the next thread to take it adds to them.
    SLOT_BITS[slot / 64].fetch_and(!(1u64 << (slot % 64)), Ordering::AcqRel);
}

/// In a forked child (called by the heap's atfork handler): the child's counts
/// start from zero, and it keeps tracing only if a tracer follows children.
pub fn after_fork_in_child() {
    let used = (hakmem_records_used.load(Ordering::Relaxed) as usize).min(MAX_RECORDS);
    for r in &hakmem_records[..used] {
        r.clear();
    }
    for g in &hakmem_grants[..used] {
        g.clear();
    }
    // The forking thread starts a sample at its next operation (its grants
    // are gone with the rest).
    LOCAL.with(|l| {
        l.slow_left.set(0);
        l.cycle_granted.set(0);
        l.burst_left.set(0);
        l.due.set(false);
    });
    // Only the forking thread lives on, in its own slot (if it had one).
    let mine = LOCAL.with(|l| {
        (!l.shared.get())
            .then(|| l.record.get())
            .filter(|r| !r.is_null())
    });
    for w in &SLOT_BITS {
        w.store(0, Ordering::Relaxed);
    }
    if let Some(r) = mine {
        let slot =
            (r as usize - hakmem_records.as_ptr() as usize) / core::mem::size_of::<ThreadRecord>();
        SLOT_BITS[slot / 64].fetch_or(1 << (slot % 64), Ordering::Relaxed);
    }
    if hakmem_trace_follow.load(Ordering::Relaxed) == 0 {
        hakmem_trace_enabled.store(0, Ordering::Relaxed);
    }
}

/// `HAKMEM_TRACE=1` (which `probe-cli run` gives every process it starts)
/// must count the very first allocation, the one that reads the options table:
/// this constructor looks at that one variable only (getenv, no allocation)
/// and raises the flag before `main`. options.rs still parses and checks it.
extern "C" fn trace_from_environment() {
    // SAFETY: a NUL-terminated name; getenv only reads the environment.
    let v = unsafe { libc::getenv(c"HAKMEM_TRACE".as_ptr()) };
    // SAFETY: getenv returned a NUL-terminated string (checked non-null).
    if !v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) } == c"1" {
        hakmem_trace_enabled.store(1, Ordering::Relaxed);
    }
}

#[used]
#[link_section = ".init_array"]
static TRACE_FROM_ENV: extern "C" fn() = trace_from_environment;

/// At exit: the totals of every slot, handed to the tracer's exit probe.
extern "C" fn at_exit() {
    if !tracing() {
        return;
    }
    let used = (hakmem_records_used.load(Ordering::Acquire) as usize).min(MAX_RECORDS);
    hakmem_records_final.clear();
    for (r, g) in hakmem_records[..used].iter().zip(&hakmem_grants[..used]) {
        hakmem_records_final.add(r);
        for (taken, components) in g.taken().into_iter().zip(GRANTED) {
            for &c in components {
                hakmem_records_final.components[c as usize]
                    .calls
                    .fetch_add(taken, Ordering::Relaxed);
            }
        }
    }
    hakmem_probe_final(&hakmem_records_final, COMPONENTS.len() as u32);
}

#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;

/// Keeps [`AT_EXIT`] in a link that references nothing else of this file's
/// statics (an object file nothing references may be dropped from an rlib).
#[inline]
pub fn ensure_registered() {
    core::hint::black_box(&AT_EXIT);
    core::hint::black_box(&TRACE_FROM_ENV);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_table_is_in_id_order() {
        for (i, (c, _)) in COMPONENTS.iter().enumerate() {
            assert_eq!(*c as usize, i, "COMPONENTS must list ids in order");
        }
    }

    #[test]
    fn final_probe_starts_with_push_rbp() {
        let f = hakmem_probe_final as *const () as *const u8;
        // SAFETY: reading the first byte of our own code.
        assert_eq!(unsafe { *f }, 0x55, "push %rbp");
    }

    /// The sampling settings are process-wide: one test at a time changes them.
    static SETTINGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn events_are_counted_exactly_and_timed_when_sampled() {
        let _settings = SETTINGS.lock().unwrap();
        let interval = hakmem_sample_interval.swap(0, Ordering::Relaxed);
        std::thread::spawn(|| {
            let before = hakmem_sample_period.load(Ordering::Relaxed);
            // A slot keeps the counts of the threads that had it before: deltas.
            emit_cycles(Component::EvoTransition, 0, 0);
            let r = LOCAL.with(|l| l.record.get());
            // SAFETY: this thread's slot, a static.
            let r = unsafe { &*r };
            let c = |x: Component| &r.components[x as usize];
            let load = |f: &AtomicU64| f.load(Ordering::Relaxed);
            let base: Vec<[u64; 4]> = [Component::Malloc, Component::SmallFast, Component::OsMap]
                .iter()
                .map(|&x| {
                    let h: u64 = c(x).hist.iter().map(load).sum();
                    [load(&c(x).calls), load(&c(x).sum_arg), load(&c(x).timed), h]
                })
                .collect();
            for _ in 0..1000 {
                let t = start_op(false);
                let inner = start();
                assert_eq!(t == 0, inner == 0, "inner components follow the operation");
                emit(Component::SmallFast, inner, 3);
                emit(Component::Malloc, t, 16);
            }
            emit_cycles(Component::OsMap, 100, 4096);
            assert_eq!(load(&c(Component::Malloc).calls) - base[0][0], 1000);
            assert_eq!(load(&c(Component::SmallFast).calls) - base[1][0], 1000);
            assert_eq!(load(&c(Component::Malloc).sum_arg) - base[0][1], 16_000);
            let timed = load(&c(Component::Malloc).timed) - base[0][2];
            assert!(
                timed > 0 && timed < 200,
                "1 in {before}: {timed} timed of 1000"
            );
            assert_eq!(load(&c(Component::SmallFast).timed) - base[1][2], timed);
            assert_eq!(load(&c(Component::OsMap).timed) - base[2][2], 1);
            // The measured operations of a sample share its cycle: the
            // weights add up to the operations up to the last sample, within
            // a cycle (at most 2 * period) of all of them.
            let hist: u64 = c(Component::Malloc).hist.iter().map(load).sum::<u64>() - base[0][3];
            let p = u64::from(before.next_power_of_two());
            assert!(
                hist <= 1000 + p && hist + 2 * p >= 1000,
                "weights {hist} for 1000 operations at period {p}"
            );
            let t = start_op(true);
            emit(Component::Malloc, t, 1 << 20);
            let hist_after: u64 =
                c(Component::Malloc).hist.iter().map(load).sum::<u64>() - base[0][3];
            assert_eq!(hist_after, hist + 1, "an operation timed always weighs 1");
        })
        .join()
        .unwrap();
        hakmem_sample_interval.store(interval, Ordering::Relaxed);
    }

    #[test]
    fn the_timing_floor_is_measured_after_samples_and_forced_calls() {
        let _settings = SETTINGS.lock().unwrap();
        let interval = hakmem_sample_interval.swap(0, Ordering::Relaxed);
        std::thread::spawn(|| {
            emit_cycles(Component::EvoTransition, 0, 0); // claims a slot
            let r = LOCAL.with(|l| l.record.get());
            // SAFETY: this thread's slot, a static.
            let f = unsafe { &(*r).components[Component::TimingFloor as usize] };
            let load = |x: &AtomicU64| x.load(Ordering::Relaxed);
            let read = || (load(&f.timed), load(&f.sum_cycles), load(&f.sum_arg));
            let base = read();
            for _ in 0..10_000 {
                let t = start_op(false);
                emit(Component::Malloc, t, 0);
            }
            let after = read();
            let n = after.0 - base.0;
            let p = u64::from(hakmem_sample_period.load(Ordering::Relaxed));
            assert!(
                n > 10_000 / p / 4 && n <= 10_000 / SAMPLE_BURST,
                "{n} floor measurements for 10,000 operations at period {p}"
            );
            // The empty operation holds the empty component and its stamps.
            assert!(
                after.2 - base.2 > after.1 - base.1,
                "operation {} cycles, component {}",
                after.2 - base.2,
                after.1 - base.1
            );
            for _ in 0..8 * FLOOR_EVERY_FORCED {
                let t = start_op(true);
                emit(Component::Malloc, t, 1 << 20);
            }
            assert_eq!(read().0 - after.0, 8, "one in FLOOR_EVERY_FORCED");
        })
        .join()
        .unwrap();
        hakmem_sample_interval.store(interval, Ordering::Relaxed);
    }

    /// Runs `ops` empty timed-or-counted operations on a new thread under
    /// `interval`: (calls, timed, weight sum) of Malloc, and the thread's
    /// final period.
    fn adaptive_run(interval: u64, ops: u64) -> (u64, u64, u64, u64) {
        let saved = hakmem_sample_interval.swap(interval, Ordering::Relaxed);
        let out = std::thread::spawn(move || {
            emit_cycles(Component::EvoTransition, 0, 0); // claims a slot
            let r = LOCAL.with(|l| l.record.get());
            // SAFETY: this thread's slot, a static.
            let c = unsafe { &(*r).components[Component::Malloc as usize] };
            let load = |f: &AtomicU64| f.load(Ordering::Relaxed);
            let hist = |c: &ComponentRecord| c.hist.iter().map(load).sum::<u64>();
            let base = (load(&c.calls), load(&c.timed), hist(c));
            for _ in 0..ops {
                let t = start_op(false);
                emit(Component::Malloc, t, 0);
            }
            (
                load(&c.calls) - base.0,
                load(&c.timed) - base.1,
                hist(c) - base.2,
                LOCAL.with(|l| l.period.get()),
            )
        })
        .join()
        .unwrap();
        hakmem_sample_interval.store(saved, Ordering::Relaxed);
        out
    }

    #[test]
    fn the_period_adapts_to_the_target_interval() {
        let _settings = SETTINGS.lock().unwrap();
        // A target far above what a loop of empty operations takes between
        // samples: the period doubles at each sample, up to the bound.
        let (calls, timed, weights, p) = adaptive_run(u64::MAX / 4, 3_000_000);
        assert_eq!(calls, 3_000_000, "counts stay exact");
        assert!(timed < 80, "{timed} timed: the period should have grown");
        assert!(p > u64::from(DEFAULT_SAMPLE_PERIOD), "period {p}");
        assert!(
            weights > timed * u64::from(DEFAULT_SAMPLE_PERIOD),
            "weights {weights}"
        );
        // A target of one cycle: every gap is longer, the period falls to the
        // lower bound and stays there.
        let (calls, timed, weights, p) = adaptive_run(1, 200_000);
        assert_eq!(calls, 200_000);
        assert_eq!(p, MIN_ADAPTIVE_PERIOD);
        let expected = 200_000 / MIN_ADAPTIVE_PERIOD * (SAMPLE_BURST - SAMPLE_WARMUP);
        assert!(
            timed > expected / 2 && timed < expected * 2,
            "{timed} timed, about {expected} expected"
        );
        // Every sample weighs the period its countdown was drawn with: the
        // weights estimate the operations (the first few at the start period).
        assert!(
            weights > calls / 2 && weights < calls * 2,
            "weights {weights} for {calls} operations"
        );
    }

    /// The granted fast path as api.rs takes it: a grant, else the full path.
    fn granted_or_full(op: GrantOp, component: Component) {
        if !take_grant_in(grants(), op) {
            let t = start_op(false);
            emit(component, t, 0);
        }
    }

    #[test]
    fn granted_calls_are_counted_exactly() {
        let _settings = SETTINGS.lock().unwrap();
        std::thread::spawn(|| {
            emit_cycles(Component::EvoTransition, 0, 0); // claims a slot
            let l = local();
            let g = own_grants(l).expect("a slot of its own");
            let r = l.record.get();
            // SAFETY: this thread's slot, a static.
            let calls =
                |x: Component| unsafe { (*r).components[x as usize].calls.load(Ordering::Relaxed) };
            let count = |x: Component| {
                let taken = g.taken();
                calls(x)
                    + GRANTED
                        .iter()
                        .zip(taken)
                        .filter(|(cs, _)| cs.contains(&x))
                        .map(|(_, n)| n)
                        .sum::<u64>()
            };
            let base = [Component::Malloc, Component::SmallFast, Component::Free].map(count);
            let taken_before = g.taken();
            let (mut fast, mut refills) = (0, 0);
            for i in 0..100_000u64 {
                // A mix like a program's: more mallocs than frees at times.
                let (op, c) = if i % 3 == 2 {
                    (GrantOp::Free, Component::Free)
                } else {
                    (GrantOp::Malloc, Component::Malloc)
                };
                let before = g.ops[op as usize].left.load(Ordering::Relaxed);
                granted_or_full(op, c);
                if g.ops[op as usize].left.load(Ordering::Relaxed) + 1 == before {
                    fast += 1;
                }
                // A refill: the grant taken and given back, the full path counts it.
                if i % 1000 == 0 && take_grant_in(grants(), GrantOp::Malloc) {
                    return_grant(GrantOp::Malloc);
                    let t = start_op(false);
                    emit(Component::Malloc, t, 0);
                    refills += 1;
                }
            }
            let now = [Component::Malloc, Component::SmallFast, Component::Free].map(count);
            assert_eq!(now[0] - base[0], 66_667 + refills, "malloc");
            assert_eq!(now[2] - base[2], 33_333, "free");
            assert_eq!(
                now[1] - base[1],
                g.taken()[0] - taken_before[0],
                "small_fast"
            );
            assert!(fast > 90_000, "{fast} of 100,000 calls on the granted path");
            assert!(refills > 50, "{refills} refills");
            // A thread's exit gives back what it did not take: counts stay.
            let taken = g.taken();
            let slot = (r as usize - hakmem_records.as_ptr() as usize)
                / core::mem::size_of::<ThreadRecord>();
            free_slot((slot + 1) as *mut libc::c_void);
            let key = EXIT_KEY.load(Ordering::Relaxed) - 1;
            // SAFETY: the key free_slot's destructor is registered under;
            // the slot is released already.
            unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, ptr::null()) };
            assert_eq!(g.taken(), taken);
            assert_eq!(g.left(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_copy_of_grants_is_read_only_when_consistent() {
        let w = [4, 10, 3, 7, 7];
        assert_eq!(taken_in_copy(&w, 4, 4), Some([7, 0]));
        assert_eq!(taken_in_copy(&w, 5, 5), None, "odd: being changed");
        assert_eq!(taken_in_copy(&w, 4, 6), None, "changed meanwhile");
        let g = Grants::ZERO;
        g.grant([5, 2]);
        g.ops[0].left.store(1, Ordering::Relaxed);
        assert_eq!(g.taken(), [4, 0]);
        g.grant([8, 8]);
        assert_eq!(g.taken(), [4, 0], "a new grant keeps what was taken");
        assert_eq!(g.seq.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn log2_buckets() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(1023), 9);
        assert_eq!(bucket(u64::MAX), 63);
    }

    #[test]
    fn emit_is_callable_when_nobody_listens() {
        let t = now();
        emit(Component::Malloc, t, 42);
        emit_cycles(Component::OsMap, 0, 4096);
    }
}
