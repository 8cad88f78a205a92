//! The dispatching `#[global_allocator]`: one binary, the allocator picked per process.
//!
//! `compare` re-executes this binary once per allocator, so the choice is made
//! from the environment (`HAKMEM_BENCH_ALLOCATOR`) on the very first allocation
//! and cached. Reading it must not allocate — we are inside the allocator — so it
//! goes through `libc::getenv` and compares raw bytes. Unknown or unset values
//! mean the system allocator, which is also what `LD_PRELOAD` children use
//! (their `malloc` is then the preloaded library's).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// Environment variable that selects the in-process allocator of a child.
pub const ENV_VAR: &str = "HAKMEM_BENCH_ALLOCATOR";
const ENV_VAR_C: &[u8] = b"HAKMEM_BENCH_ALLOCATOR\0";

/// The allocator linked into this binary that a process uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Backend {
    /// glibc `malloc` (or whatever `LD_PRELOAD` put in its place).
    System = 1,
    /// The `mimalloc` crate, version 2 (statically linked, `mi_` prefixed, no override).
    Mimalloc = 2,
    /// `tikv-jemallocator` (statically linked, `_rjem_` prefixed, no override;
    /// feature `linked-jemalloc`).
    #[cfg(feature = "linked-jemalloc")]
    Jemalloc = 3,
    /// `hakmem::Hakmem`, configured by its own `HAKMEM_*` variables.
    Hakmem = 4,
}

impl Backend {
    /// The value of `HAKMEM_BENCH_ALLOCATOR` that selects this backend.
    pub fn env_value(self) -> &'static str {
        match self {
            Backend::System => "system",
            Backend::Mimalloc => "mimalloc",
            #[cfg(feature = "linked-jemalloc")]
            Backend::Jemalloc => "jemalloc",
            Backend::Hakmem => "hakmem",
        }
    }

    fn from_env_bytes(value: &[u8]) -> Backend {
        match value {
            b"mimalloc" => Backend::Mimalloc,
            #[cfg(feature = "linked-jemalloc")]
            b"jemalloc" => Backend::Jemalloc,
            b"hakmem" => Backend::Hakmem,
            _ => Backend::System,
        }
    }
}

/// 0 = not decided yet; otherwise a `Backend` discriminant.
static SELECTED: AtomicU8 = AtomicU8::new(0);

/// The backend this process allocates with (decided on first use, then fixed).
#[inline]
pub fn backend() -> Backend {
    match SELECTED.load(Ordering::Relaxed) {
        1 => Backend::System,
        2 => Backend::Mimalloc,
        #[cfg(feature = "linked-jemalloc")]
        3 => Backend::Jemalloc,
        4 => Backend::Hakmem,
        _ => decide(),
    }
}

#[cold]
#[inline(never)]
fn decide() -> Backend {
    // SAFETY: the name is NUL-terminated; getenv returns NULL or a pointer to a
    // NUL-terminated string owned by the environment, which nothing in this
    // process modifies (the harness only sets variables on children).
    let backend = unsafe {
        let value = libc::getenv(ENV_VAR_C.as_ptr().cast());
        if value.is_null() {
            Backend::System
        } else {
            Backend::from_env_bytes(std::ffi::CStr::from_ptr(value).to_bytes())
        }
    };
    // Two threads racing here compute the same answer from the same environment,
    // so a plain store is enough: no allocation is ever routed inconsistently.
    SELECTED.store(backend as u8, Ordering::Relaxed);
    backend
}

/// Forwards every call to the backend chosen for this process.
pub struct Dispatch;

static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "linked-jemalloc")]
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static HAKMEM: hakmem::Hakmem = hakmem::Hakmem;

// SAFETY: every method forwards to exactly one underlying `GlobalAlloc`, and the
// backend never changes after the first call, so a block is always freed,
// resized or queried by the allocator that produced it.
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match backend() {
            Backend::System => System.alloc(layout),
            Backend::Mimalloc => MIMALLOC.alloc(layout),
            #[cfg(feature = "linked-jemalloc")]
            Backend::Jemalloc => JEMALLOC.alloc(layout),
            Backend::Hakmem => HAKMEM.alloc(layout),
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match backend() {
            Backend::System => System.alloc_zeroed(layout),
            Backend::Mimalloc => MIMALLOC.alloc_zeroed(layout),
            #[cfg(feature = "linked-jemalloc")]
            Backend::Jemalloc => JEMALLOC.alloc_zeroed(layout),
            Backend::Hakmem => HAKMEM.alloc_zeroed(layout),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match backend() {
            Backend::System => System.dealloc(ptr, layout),
            Backend::Mimalloc => MIMALLOC.dealloc(ptr, layout),
            #[cfg(feature = "linked-jemalloc")]
            Backend::Jemalloc => JEMALLOC.dealloc(ptr, layout),
            Backend::Hakmem => HAKMEM.dealloc(ptr, layout),
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match backend() {
            Backend::System => System.realloc(ptr, layout, new_size),
            Backend::Mimalloc => MIMALLOC.realloc(ptr, layout, new_size),
            #[cfg(feature = "linked-jemalloc")]
            Backend::Jemalloc => JEMALLOC.realloc(ptr, layout, new_size),
            Backend::Hakmem => HAKMEM.realloc(ptr, layout, new_size),
        }
    }
}
