//! Diagnostics, all in one place: warnings, fatal errors and bad pointers.
//!
//! Everything here writes one line to stderr through a stack buffer (never
//! allocating: it runs inside malloc and free). A foreign pointer is counted
//! and reported once (every time with `HAKMEM_VERBOSE=1`; debug builds abort);
//! a corrupted heap aborts.

use crate::report::StackWriter;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Writes `hakmem: warning: <msg>` to stderr.
#[cold]
pub fn warn(msg: fmt::Arguments) {
    let mut w = StackWriter::<256>::new();
    let _ = writeln!(w, "hakmem: warning: {msg}");
    w.flush_stderr();
}

/// Writes `msg` to stderr and aborts the process.
#[cold]
pub fn fatal(msg: fmt::Arguments) -> ! {
    let mut w = StackWriter::<200>::new();
    let _ = writeln!(w, "{msg}");
    w.flush_stderr();
    // SAFETY: abort takes no arguments and never returns.
    unsafe { libc::abort() }
}

/// Pointers passed to free / realloc / malloc_usable_size that hakmem never handed out.
static FOREIGN: AtomicU64 = AtomicU64::new(0);
static FOREIGN_REPORTED: AtomicBool = AtomicBool::new(false);

/// How many foreign pointers reached hakmem so far (`Stats::foreign_frees`).
pub fn foreign_pointers() -> u64 {
    FOREIGN.load(Relaxed)
}

/// A pointer hakmem never handed out reached `op`: counted, reported once
/// (every time if `verbose`) and left alone; in debug builds, abort.
#[cold]
#[inline(never)]
pub fn foreign_pointer(op: &str, p: *mut u8, verbose: impl FnOnce() -> bool) {
    FOREIGN.fetch_add(1, Relaxed);
    let debug = cfg!(any(debug_assertions, feature = "debug-checks"));
    if debug || !FOREIGN_REPORTED.swap(true, Relaxed) || verbose() {
        let mut w = StackWriter::<200>::new();
        let _ = writeln!(
            w,
            "hakmem: {op}({p:p}): pointer not allocated by hakmem; {}",
            if debug {
                "aborting (debug build)"
            } else {
                "ignored (reported once; HAKMEM_VERBOSE=1 reports each)"
            }
        );
        w.flush_stderr();
    }
    if debug {
        // SAFETY: abort takes no arguments and never returns.
        unsafe { libc::abort() };
    }
}

/// Debug check: `p` lies in a hakmem page but is not the start of a block.
#[cold]
pub fn invalid_pointer(op: &str, p: usize, class: usize) -> ! {
    fatal(format_args!(
        "hakmem: {op}({p:#x}): not the start of a block (size class {class})"
    ))
}

/// `p` was freed twice; `class` is its size class, `None` for a large block.
#[cold]
pub fn double_free(p: usize, class: Option<usize>) -> ! {
    match class {
        Some(c) => fatal(format_args!(
            "hakmem: double free of {p:#x} (size class {c})"
        )),
        None => fatal(format_args!("hakmem: double free of {p:#x} (large block)")),
    }
}

/// A free-list link decoded outside its page (hardened builds).
#[cold]
pub fn corrupted_free_list(block: usize, class: usize) -> ! {
    fatal(format_args!("hakmem: corrupted free list at {block:#x} (size class {class}): heap overflow or use after free"))
}

/// Debug check: a large block's header magic is wrong.
#[cold]
pub fn corrupt_header(p: usize) -> ! {
    fatal(format_args!(
        "hakmem: corrupt large-block header before {p:#x}"
    ))
}
