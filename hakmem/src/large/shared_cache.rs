//! A thread's BigCache behind a try-lock, so that the background purge
//! thread can age it while the program is idle.
//!
//! Without this, the blocks a thread cached stayed resident until that thread
//! made another large-block call: `large-realloc` held its last 32 MiB block,
//! `large-phase` its last blocks, for as long as the program ran on
//! (RSS after 1.5 s idle: 40.5 and 25.8 MiB, glibc 4.6).
//!
//! The owner's side costs two plain stores and a load per cache operation:
//! it marks itself inside (`busy`), and backs off, treating the cache as a
//! miss or a refusal, if the purge thread has claimed it (`claimed`). The
//! purge thread claims a cache, runs `membarrier(2)` (every running thread of
//! the process passes a full barrier: the owner's store is visible or the
//! owner will see the claim), and enters only if the owner is not inside.
//! This is the asymmetric Dekker handshake (the heavy fence on the rare
//! side). A lock swap on each side instead cost the hit path 14-17 ns
//! (`large-reuse` 73-83 -> 90-97 ns). Where the kernel has no membarrier,
//! the purge thread leaves the caches alone.
//!
//! Nobody ever waits on a cache except an exiting thread (for a bounded
//! time), so a forked child cannot hang on one, and `fork_gate` keeps the
//! purge thread outside every cache while a fork is in progress.
//!
//! Each cache lives in the thread context beside (not inside) the thread's
//! `ThreadState`, which holds a pointer to it: the owner's `&mut ThreadState`
//! never covers memory the purge thread touches.

use crate::large::bigcache::ThreadCache;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicPtr, AtomicU8, Ordering::*};

/// One thread's cache and the handshake that guards it.
pub struct SharedCache {
    /// The owner is inside (written by the owner only).
    busy: AtomicBool,
    /// The purge thread is inside or about to be (written by it only).
    claimed: AtomicBool,
    cache: UnsafeCell<ThreadCache>,
    /// Next cache in the registry (set once, when registered).
    next: AtomicPtr<SharedCache>,
}

// SAFETY: `cache` is only reached through a `Guard`. The owner's guard exists
// only between `busy = true` and `busy = false` with `claimed` seen false
// after the store; the purge thread's only with `claimed = true` and, after
// a process-wide barrier, `busy` seen false. `try_lock` explains why the two
// never overlap. Only the owner thread creates owner guards (one at a time).
unsafe impl Sync for SharedCache {}

/// Every cache ever registered (thread contexts are pooled, never unmapped).
static REGISTRY: AtomicPtr<SharedCache> = AtomicPtr::new(ptr::null_mut());
/// Held by the purge thread while it is inside some cache, and by a fork
/// between its prepare and parent/child handlers.
static GATE: AtomicBool = AtomicBool::new(false);
/// membarrier registration: 0 not tried, 1 registered, 2 unavailable.
static MEMBARRIER: AtomicU8 = AtomicU8::new(0);

impl SharedCache {
    /// An empty, unregistered cache nobody is inside.
    pub const fn new() -> Self {
        SharedCache {
            busy: AtomicBool::new(false),
            claimed: AtomicBool::new(false),
            cache: UnsafeCell::new(ThreadCache::new()),
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The owner's access: the cache, unless the purge thread is inside it.
    /// Only the owning thread may call this, and not while it holds a guard.
    #[inline(always)]
    pub fn try_lock(&self) -> Option<Guard<'_>> {
        self.busy.store(true, Relaxed);
        // With the purge thread's membarrier, a full barrier between the
        // store above and the load below: either it sees `busy` (and stays
        // out) or this load sees its claim (and this thread stays out).
        compiler_fence(SeqCst);
        if self.claimed.load(Acquire) {
            self.busy.store(false, Release);
            return None;
        }
        Some(Guard {
            cache: self,
            flag: &self.busy,
        })
    }

    /// The owner's access at thread exit, waiting for the purge thread to
    /// leave (the blocks must not be lost). Gives up after about a second,
    /// which only a claim inherited across a fork can take.
    pub fn lock_for_exit(&self) -> Option<Guard<'_>> {
        for _ in 0..100_000 {
            if let Some(g) = self.try_lock() {
                return Some(g);
            }
            // SAFETY: plain syscall.
            unsafe { libc::sched_yield() };
        }
        None
    }

    /// Adds this cache to the registry the purge thread walks. Called once
    /// per cache, when its thread context is created (contexts are pooled,
    /// never freed, so a cache is never registered twice).
    pub fn register(&'static self) {
        let me = self as *const SharedCache as *mut SharedCache;
        let mut head = REGISTRY.load(Acquire);
        loop {
            self.next.store(head, Relaxed);
            match REGISTRY.compare_exchange_weak(head, me, AcqRel, Acquire) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

impl Default for SharedCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Exclusive access to a thread's cache; leaves (clears its flag) on drop.
pub struct Guard<'a> {
    cache: &'a SharedCache,
    flag: &'a AtomicBool,
}

impl Deref for Guard<'_> {
    type Target = ThreadCache;
    fn deref(&self) -> &ThreadCache {
        // SAFETY: this guard is the only access to the cache (see `Sync`).
        unsafe { &*self.cache.cache.get() }
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut ThreadCache {
        // SAFETY: as above.
        unsafe { &mut *self.cache.cache.get() }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.flag.store(false, Release);
    }
}

/// The purge thread, once the program has been idle for two purge delays:
/// every cache whose owner is not inside gives its blocks to the span level
/// as aged memory, which the span purge then returns (aging them a pass at
/// a time instead, three passes, took the `large-realloc` block past the
/// benchmark's 50 ms idle). Skipped while a fork is in
/// progress, and where the kernel has no membarrier.
///
/// Every cache is claimed first and one barrier serves them all: one
/// syscall per pass, however many threads there are. An owner that meets
/// its claim meanwhile treats its cache as missing for that call.
///
/// Returns how many caches holding blocks it entered, and the blocks released.
pub fn age_all() -> (u32, u32) {
    match MEMBARRIER.load(Relaxed) {
        0 => {
            let ok = crate::os::membarrier_register();
            MEMBARRIER.store(if ok { 1 } else { 2 }, Relaxed);
            if !ok {
                return (0, 0);
            }
        }
        1 => {}
        _ => return (0, 0),
    }
    if GATE.swap(true, Acquire) {
        return (0, 0);
    }
    let each = |f: &mut dyn FnMut(&'static SharedCache)| {
        let mut c = REGISTRY.load(Acquire);
        while !c.is_null() {
            // SAFETY: registered caches live in thread contexts, which are
            // never unmapped.
            let cache: &'static SharedCache = unsafe { &*c };
            f(cache);
            c = cache.next.load(Relaxed);
        }
    };
    each(&mut |c| c.claimed.store(true, Relaxed));
    let barrier = crate::os::membarrier();
    let (mut entered, mut released) = (0, 0);
    each(&mut |c| {
        // After the barrier: an owner not seen inside now sees the claim
        // before it enters (see `try_lock`).
        if barrier && !c.busy.load(Acquire) {
            let mut g = Guard {
                cache: c,
                flag: &c.claimed,
            };
            if g.held() > 0 {
                entered += 1;
                released += g.flush();
            }
        } else {
            c.claimed.store(false, Release);
        }
    });
    GATE.store(false, Release);
    (entered, released)
}

/// Fork prepare: wait until the purge thread is outside every cache (its
/// pass is bounded), and keep it out until [`fork_done`].
pub fn fork_gate() {
    while GATE.swap(true, Acquire) {
        // The purge thread needs a CPU to finish its pass (2 here).
        // SAFETY: plain syscall.
        unsafe { libc::sched_yield() };
    }
}

/// Fork parent and child: the purge thread may enter caches again.
pub fn fork_done() {
    GATE.store(false, Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_cache_is_refused_not_waited_for() {
        let c = SharedCache::new();
        c.claimed.store(true, Relaxed);
        assert!(c.try_lock().is_none());
        assert!(!c.busy.load(Relaxed), "the owner backed off");
        c.claimed.store(false, Relaxed);
        let g = c.try_lock().expect("unclaimed");
        assert!(c.busy.load(Relaxed));
        drop(g);
        assert!(!c.busy.load(Relaxed));
    }
}
