//! The one definition of every map layout and constant shared by the BPF programs and userspace.
//!
//! This file is compiled twice: into the crate, where it gives userspace the
//! `#[repr(C)]` types it reads the maps with, and into `build.rs`, which prints the
//! very same structs and constants as the C header the BPF programs include
//! (`hakmem_layout.h`). A field added here therefore appears on both sides, and the
//! header carries `_Static_assert`s of the Rust sizes so that a padding difference
//! between the two compilers fails the build instead of corrupting the maps.

/// Buckets of every log2 histogram: bucket `i` counts values `v` with
/// `floor(log2(v)) == i` (bucket 0 also counts `v == 0`), so 64 buckets cover `u64`.
pub const HIST_BUCKETS: usize = 64;

/// Component slots of a process's record (`hakmem::probe::RECORD_COMPONENTS`:
/// larger than hakmem's component count, so that a newer hakmem that appended
/// components is still read by an older probe-cli; ids are append-only).
pub const MAX_COMPONENTS: usize = 24;

/// Processes a trace can follow (the `traced` and `finals` maps).
pub const MAX_TRACED: usize = 4096;

/// Threads that can be inside a watched syscall at the same time (the enter
/// timestamp waits in a hash map until the exit).
pub const MAX_INFLIGHT_SYSCALLS: usize = 4096;

/// A syscall the tracer watches in the target.
#[derive(Clone, Copy, Debug)]
pub struct WatchedSyscall {
    /// Report name.
    pub name: &'static str,
    /// x86-64 syscall number (x86-64 only, like hakmem's TSC timing).
    pub nr: i64,
    /// Which argument is the length in bytes, if one is.
    pub len_arg: Option<usize>,
}

/// The syscalls watched; the index is the slot in the `syscall_stats` map.
pub const SYSCALLS: &[WatchedSyscall] = &[
    WatchedSyscall {
        name: "mmap",
        nr: 9,
        len_arg: Some(1),
    },
    WatchedSyscall {
        name: "munmap",
        nr: 11,
        len_arg: Some(1),
    },
    WatchedSyscall {
        name: "madvise",
        nr: 28,
        len_arg: Some(1),
    },
    // mremap(old, old_len, new_len, ...): the size it leaves is new_len.
    WatchedSyscall {
        name: "mremap",
        nr: 25,
        len_arg: Some(2),
    },
    WatchedSyscall {
        name: "brk",
        nr: 12,
        len_arg: None,
    },
    WatchedSyscall {
        name: "mprotect",
        nr: 10,
        len_arg: Some(1),
    },
];

/// Kernel-side bookkeeping counters, by slot in the `misc` map.
pub const MISC_COUNTERS: &[&str] = &[
    // The exit probe could not read the process's record.
    "final_unreadable",
    // A syscall enter found the in-flight map full, so its latency was lost.
    "inflight_full",
    // A followed child or a final record found its map full.
    "traced_full",
    // Children that joined the traced set (with `follow`).
    "forks_followed",
];

/// Slot of `final_unreadable` in the `misc` map.
pub const MISC_FINAL_UNREADABLE: u32 = 0;
/// Slot of `inflight_full` in the `misc` map.
pub const MISC_INFLIGHT_FULL: u32 = 1;
/// Slot of `traced_full` in the `misc` map.
pub const MISC_TRACED_FULL: u32 = 2;
/// Slot of `forks_followed` in the `misc` map.
pub const MISC_FORKS_FOLLOWED: u32 = 3;

/// How a field type is spelled in C.
pub trait CType {
    /// The C declaration of a field of this type named `name`.
    fn c_decl(name: &str) -> String;
}

impl CType for u32 {
    fn c_decl(name: &str) -> String {
        format!("__u32 {name}")
    }
}

impl CType for u64 {
    fn c_decl(name: &str) -> String {
        format!("__u64 {name}")
    }
}

impl<T: CType, const N: usize> CType for [T; N] {
    fn c_decl(name: &str) -> String {
        T::c_decl(&format!("{name}[{N}]"))
    }
}

/// Declares structs once for both languages: the Rust `#[repr(C)]` type and
/// `c_structs()`, which prints the C definition with a size check.
macro_rules! shared_structs {
    ($(
        $(#[doc = $doc:literal])*
        struct $name:ident as $c_name:ident {
            $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ty, )*
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[repr(C)]
            #[derive(Clone, Copy, Debug)]
            pub struct $name {
                $( $(#[doc = $fdoc])* pub $field: $ty, )*
            }

            impl Default for $name {
                fn default() -> Self {
                    // SAFETY: every field is an integer or an array of integers,
                    // for which all-zero bytes are a valid value.
                    unsafe { core::mem::zeroed() }
                }
            }
        )*

        /// The C definitions of the shared structs, each followed by a check that
        /// clang lays it out in as many bytes as rustc.
        pub fn c_structs() -> String {
            let mut out = String::new();
            $(
                out.push_str(&format!("struct {} {{\n", stringify!($c_name)));
                $( out.push_str(&format!("\t{};\n", <$ty as CType>::c_decl(stringify!($field)))); )*
                out.push_str("};\n");
                out.push_str(&format!(
                    "_Static_assert(sizeof(struct {}) == {}, \"layout differs from Rust\");\n\n",
                    stringify!($c_name),
                    core::mem::size_of::<$name>()
                ));
            )*
            out
        }
    };
}

shared_structs! {
    /// What a process counted of one component: the very layout of
    /// `hakmem::probe::ComponentRecord` (build.rs checks every offset), read from
    /// the process's memory or from `finals`.
    struct ComponentStats as component_stats {
        /// Instances (exact).
        calls: u64,
        /// Instances that were timed (sampled; see `hakmem::probe`).
        timed: u64,
        /// Sum of the TSC cycles of the timed instances.
        sum_cycles: u64,
        /// Largest single duration, TSC cycles.
        max_cycles: u64,
        /// Sum of the events' `arg` (bytes, size classes, hits: see `hakmem::probe`).
        sum_arg: u64,
        /// Events whose `arg` was non-zero (BigCache hits, cached puts, ...).
        nonzero_arg: u64,
        /// log2 histogram of the durations in TSC cycles (see `HIST_BUCKETS`).
        hist: [u64; HIST_BUCKETS],
    }

    /// What one CPU saw of one watched syscall (map `syscall_stats`, per-CPU array
    /// indexed by the slot in `SYSCALLS`).
    struct SyscallStats as syscall_stats {
        /// Completed calls.
        count: u64,
        /// Sum of the enter-to-exit times, ns.
        sum_ns: u64,
        /// Longest call, ns.
        max_ns: u64,
        /// Calls that returned an error.
        failed: u64,
        /// Sum of the length argument of the successful calls (0 for brk).
        sum_bytes: u64,
        /// log2 histogram of the call times in ns.
        hist: [u64; HIST_BUCKETS],
    }

    /// A process's totals, every component by id (map `finals`, by tgid): the
    /// layout of `hakmem::probe::ThreadRecord`.
    struct ProcessTotals as process_totals {
        /// Indexed by component id.
        components: [ComponentStats; MAX_COMPONENTS],
    }

    /// A process in the traced set (map `traced`, by tgid).
    struct TracedProcess as traced_process {
        /// The tgid that forked it (0 for the first one).
        parent: u32,
        /// 1 once its leader exited.
        exited: u32,
        /// execs it made while traced.
        execs: u32,
        /// Keeps the size a multiple of 8 on both sides.
        pad: u32,
        /// Its command name (`comm`, NUL padded) after the last exec.
        comm: [u64; 2],
    }

    /// A syscall in flight (map `inflight`, keyed by thread id), from enter to exit.
    struct SyscallStart as syscall_start {
        /// `bpf_ktime_get_ns` at enter.
        start_ns: u64,
        /// Length argument at enter.
        bytes: u64,
        /// Slot in `SYSCALLS`.
        slot: u32,
        /// Keeps the size a multiple of 8 on both sides.
        pad: u32,
    }
}

impl CType for ComponentStats {
    fn c_decl(name: &str) -> String {
        format!("struct component_stats {name}")
    }
}

/// The C constants of this file, as `#define`s, and the syscall-number-to-slot
/// function the syscall programs use.
pub fn c_constants() -> String {
    let mut out = String::new();
    out.push_str(&format!("#define HAKMEM_HIST_BUCKETS {HIST_BUCKETS}\n"));
    out.push_str(&format!("#define HAKMEM_MAX_COMPONENTS {MAX_COMPONENTS}\n"));
    out.push_str(&format!(
        "#define HAKMEM_MAX_INFLIGHT {MAX_INFLIGHT_SYSCALLS}\n"
    ));
    out.push_str(&format!("#define HAKMEM_MAX_TRACED {MAX_TRACED}\n"));
    out.push_str(&format!(
        "#define HAKMEM_SYSCALL_SLOTS {}\n",
        SYSCALLS.len()
    ));
    out.push_str(&format!(
        "#define HAKMEM_MISC_SLOTS {}\n",
        MISC_COUNTERS.len()
    ));
    for (slot, name) in MISC_COUNTERS.iter().enumerate() {
        out.push_str(&format!(
            "#define HAKMEM_MISC_{} {slot}\n",
            name.to_ascii_uppercase()
        ));
    }
    out.push_str("\n/* Slot in syscall_stats of a syscall number, -1 if not watched. */\n");
    out.push_str("static __always_inline int hakmem_syscall_slot(long nr)\n{\n\tswitch (nr) {\n");
    for (slot, s) in SYSCALLS.iter().enumerate() {
        out.push_str(&format!(
            "\tcase {}: return {slot}; /* {} */\n",
            s.nr, s.name
        ));
    }
    out.push_str("\tdefault: return -1;\n\t}\n}\n\n");
    out.push_str("/* Index of the length argument of a watched syscall, -1 if none. */\n");
    out.push_str(
        "static __always_inline int hakmem_syscall_len_arg(int slot)\n{\n\tswitch (slot) {\n",
    );
    for (slot, s) in SYSCALLS.iter().enumerate() {
        let arg = s.len_arg.map_or(-1, |a| a as i64);
        out.push_str(&format!("\tcase {slot}: return {arg}; /* {} */\n", s.name));
    }
    out.push_str("\tdefault: return -1;\n\t}\n}\n\n");
    out
}
