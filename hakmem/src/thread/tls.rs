//! The thread's context pointer, beside a copy of its trace grants pointer:
//! two words of thread-local storage without a destructor.
//!
//! On x86-64 Linux the two words are a TLS symbol of hakmem's own
//! (`__hakmem_current`, hidden, defined below in assembly) read with the
//! initial-exec model, mimalloc's choice for its shared library: one load of
//! the symbol's offset from the thread pointer (from the GOT in the
//! LD_PRELOAD library; an immediate after the linker's relaxation in an
//! executable) and one `%fs`-relative load, no call and no branch. Rust's
//! `thread_local!` has no way to ask for that model: in a shared library it
//! is general-dynamic, a `__tls_get_addr` call per access, and measuring its
//! offset at the first heap set-up (what this module did before) left a load
//! of the measured offset and a branch on it on every malloc and free.
//! Initial-exec needs the library's TLS in the static block: true of a
//! library loaded at start-up (LD_PRELOAD, DT_NEEDED); a `dlopen`'ed one
//! gets a slot of glibc's surplus static TLS, which these 16 bytes fit.
//! Elsewhere the two words are a `thread_local!`.
//!
//! The grants pointer is `probe`'s, kept up to date through the hook
//! [`set_grants`]: the traced fast path reaches both with one offset.

use crate::probe::Grants;
use crate::thread::ThreadCtx;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use crate::probe::Grants;
    use crate::thread::ThreadCtx;

    // The TLS block's initial image: the empty context and no grants (the
    // dynamic linker relocates the image before it copies it for a thread).
    core::arch::global_asm!(
        ".pushsection .tdata.__hakmem_current,\"awT\",@progbits",
        ".p2align 4",
        ".globl __hakmem_current",
        ".hidden __hakmem_current",
        ".type __hakmem_current,@object",
        ".size __hakmem_current,16",
        "__hakmem_current:",
        ".quad {ctx}",
        ".quad {grants}",
        ".popsection",
        ctx = sym crate::thread::EMPTY_CTX,
        grants = sym crate::probe::NO_GRANTS,
    );

    /// The context pointer.
    #[inline(always)]
    pub fn get() -> *mut ThreadCtx {
        let v: usize;
        // SAFETY: `__hakmem_current` is this thread's 16-byte TLS block
        // defined above; its offset from the thread pointer is the same in
        // every thread (initial-exec), and %fs holds the thread pointer.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + __hakmem_current@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags, pure)
            )
        };
        v as *mut ThreadCtx
    }

    /// The context and grants pointers.
    #[inline(always)]
    pub fn get_both() -> (*mut ThreadCtx, *const Grants) {
        let (off, a, b): (usize, usize, usize);
        // SAFETY: as in `get`; the block is two words.
        unsafe {
            core::arch::asm!(
                "mov {off}, qword ptr [rip + __hakmem_current@GOTTPOFF]",
                "mov {a}, qword ptr fs:[{off}]",
                "mov {b}, qword ptr fs:[{off} + 8]",
                off = out(reg) off, a = out(reg) a, b = out(reg) b,
                options(nostack, readonly, preserves_flags, pure)
            )
        };
        let _ = off;
        (a as *mut ThreadCtx, b as *const Grants)
    }

    /// Stores `v` in word `word` (0: context, 1: grants) of the block.
    #[inline(always)]
    pub fn set_word(word: usize, v: usize) {
        let off: usize;
        // SAFETY: as in `get`; `word` < 2 keeps the store inside the block,
        // which only this thread reads and writes.
        unsafe {
            core::arch::asm!(
                "mov {off}, qword ptr [rip + __hakmem_current@GOTTPOFF]",
                "mov qword ptr fs:[{off} + {idx} * 8], {v}",
                off = out(reg) off, idx = in(reg) word & 1, v = in(reg) v,
                options(nostack, preserves_flags)
            )
        };
        let _ = off;
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use crate::probe::Grants;
    use crate::thread::ThreadCtx;
    use core::cell::Cell;

    thread_local! {
        static CURRENT: [Cell<usize>; 2] = const {
            [
                Cell::new(crate::thread::EMPTY_CTX_PTR as usize),
                Cell::new(crate::probe::NO_GRANTS_PTR as usize),
            ]
        };
    }

    #[inline(always)]
    pub fn get() -> *mut ThreadCtx {
        CURRENT.with(|c| c[0].get()) as *mut ThreadCtx
    }

    #[inline(always)]
    pub fn get_both() -> (*mut ThreadCtx, *const Grants) {
        CURRENT.with(|c| (c[0].get() as *mut ThreadCtx, c[1].get() as *const Grants))
    }

    #[inline(always)]
    pub fn set_word(word: usize, v: usize) {
        CURRENT.with(|c| c[word & 1].set(v));
    }
}

/// The calling thread's context pointer.
#[inline(always)]
pub fn get() -> *mut ThreadCtx {
    imp::get()
}

/// As [`get`], with the copy of the thread's trace grants pointer (see the
/// module docs): for the traced fast path, which must stay free of calls.
#[inline(always)]
pub fn get_with_grants() -> (*mut ThreadCtx, *const Grants) {
    imp::get_both()
}

/// Keeps the copy of the calling thread's trace grants pointer (the hook
/// `probe` calls whenever it changes; see the module docs).
pub fn set_grants(g: *const Grants) {
    imp::set_word(1, g as usize);
}

/// Sets the calling thread's context pointer.
pub fn set(h: *mut ThreadCtx) {
    imp::set_word(0, h as usize);
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_then_get_in_each_thread() {
        std::thread::spawn(|| {
            let h = 0x1000 as *mut crate::thread::ThreadCtx;
            let before = super::get();
            assert_eq!(before, crate::thread::EMPTY_CTX_PTR);
            super::set(h);
            assert_eq!(super::get(), h);
            assert_eq!(super::get_with_grants().1, crate::probe::NO_GRANTS_PTR);
            super::set(before);
        })
        .join()
        .unwrap();
        assert_ne!(super::get(), 0x1000 as *mut crate::thread::ThreadCtx);
    }
}
