//! The thread's context pointer: a `const`-initialised thread local without a
//! destructor, plus, in the LD_PRELOAD library, a faster way to reach it.
//!
//! In a shared library Rust's thread locals use the general-dynamic TLS model:
//! every access calls `__tls_get_addr` (a few ns, on both malloc and free).
//! A library loaded at start-up (LD_PRELOAD, DT_NEEDED) has its TLS in the
//! static TLS block instead, at the same offset from the thread pointer in
//! every thread — what the initial-exec model (mimalloc's choice for its .so)
//! relies on. With the `static-tls` feature, the first heap set-up measures
//! that offset; if it points into the static block (negative and small, as
//! x86-64 lays it out), later reads are one `%fs`-relative load. Otherwise
//! (a library dlopen'ed into dynamic TLS) the offset stays unused.
//!
//! Beside the context pointer sits a copy of the thread's trace grants
//! pointer (`probe`'s, which keeps it up to date through the hook
//! [`set_grants`]): the traced fast path reaches both with the one offset.

use crate::probe::Grants;
use crate::thread::ThreadCtx;
use core::cell::Cell;

/// The thread's two pointers, the context first (the offset measured is its).
#[repr(C)]
struct Current {
    ctx: Cell<*mut ThreadCtx>,
    grants: Cell<*const Grants>,
}

thread_local! {
    static CURRENT: Current = const {
        Current {
            ctx: Cell::new(crate::thread::EMPTY_CTX_PTR),
            grants: Cell::new(crate::probe::NO_GRANTS_PTR),
        }
    };
}

#[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
mod fast {
    use core::sync::atomic::{AtomicIsize, Ordering};

    /// Offset of CURRENT from the thread pointer; 0 = not known to be static.
    pub static OFFSET: AtomicIsize = AtomicIsize::new(0);
    /// Static TLS blocks sit below the thread pointer; accept offsets within this.
    const MAX_STATIC_DISTANCE: isize = 1 << 20;

    #[inline(always)]
    pub fn read(off: isize) -> usize {
        let v: usize;
        // SAFETY: `off` was measured to be CURRENT's fixed offset in static TLS,
        // valid in every thread of the process.
        unsafe {
            core::arch::asm!("mov {v}, qword ptr fs:[{off}]", off = in(reg) off, v = out(reg) v,
                options(nostack, readonly, preserves_flags))
        };
        v
    }

    /// The two pointers of `Current` at `off`.
    #[inline(always)]
    pub fn read_both(off: isize) -> (usize, usize) {
        let (a, b): (usize, usize);
        // SAFETY: as in `read`; `Current` is two words from `off`.
        unsafe {
            core::arch::asm!("mov {a}, qword ptr fs:[{off}]", "mov {b}, qword ptr fs:[{off} + 8]",
                off = in(reg) off, a = out(reg) a, b = out(reg) b,
                options(nostack, readonly, preserves_flags))
        };
        (a, b)
    }

    pub fn measure(addr: usize) {
        let tp: usize;
        // SAFETY: on x86-64 glibc, %fs:0 holds the thread pointer itself.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
        };
        let off = addr.wrapping_sub(tp) as isize;
        if off < 0 && off > -MAX_STATIC_DISTANCE {
            OFFSET.store(off, Ordering::Relaxed);
        }
    }
}

/// The calling thread's context pointer.
#[inline(always)]
pub fn get() -> *mut ThreadCtx {
    #[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
    {
        let off = fast::OFFSET.load(core::sync::atomic::Ordering::Relaxed);
        if off != 0 {
            return fast::read(off) as *mut ThreadCtx;
        }
    }
    CURRENT.with(|c| c.ctx.get())
}

/// As [`get`] where that needs no call (in the LD_PRELOAD library, once the
/// static offset is known), else None, with the copy of the thread's trace
/// grants pointer (see the module docs): for a caller that must stay free
/// of calls (a function without a prologue, the traced fast path).
#[inline(always)]
pub fn get_with_grants_without_call() -> Option<(*mut ThreadCtx, *const Grants)> {
    #[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
    {
        let off = fast::OFFSET.load(core::sync::atomic::Ordering::Relaxed);
        if off == 0 {
            return None;
        }
        let (c, g) = fast::read_both(off);
        Some((c as *mut ThreadCtx, g as *const Grants))
    }
    #[cfg(not(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux")))]
    {
        Some(CURRENT.with(|c| (c.ctx.get(), c.grants.get())))
    }
}

/// Keeps the copy of the calling thread's trace grants pointer (the hook
/// `probe` calls whenever it changes; see the module docs).
pub fn set_grants(g: *const Grants) {
    CURRENT.with(|c| c.grants.set(g));
}

/// Sets the calling thread's context pointer.
pub fn set(h: *mut ThreadCtx) {
    CURRENT.with(|c| c.ctx.set(h));
    #[cfg(all(feature = "static-tls", target_arch = "x86_64", target_os = "linux"))]
    if fast::OFFSET.load(core::sync::atomic::Ordering::Relaxed) == 0 {
        fast::measure(CURRENT.with(|c| c as *const Current as usize));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_then_get_in_each_thread() {
        std::thread::spawn(|| {
            let h = 0x1000 as *mut crate::thread::ThreadCtx;
            let before = super::get();
            super::set(h);
            assert_eq!(super::get(), h);
            super::set(before);
        })
        .join()
        .unwrap();
    }
}
