//! A thread's BigCache behind a try-lock, so that the background purge
//! thread can age it while the program is idle.
//!
//! Without this, the blocks a thread cached stayed resident until that thread
//! made another large-block call: `large-realloc` held its last 32 MiB block,
//! `large-phase` its last blocks, for as long as the program ran on
//! (RSS after 1.5 s idle: 40.5 and 25.8 MiB, glibc 4.6).
//!
//! The owner takes the lock with one uncontended swap around each cache
//! operation and never waits: if the lock is taken (the purge thread is
//! inside, for a few microseconds, only after the program has been idle),
//! the cache counts as a miss or a refusal and the span level serves. The
//! purge thread only tries the lock too. Nobody ever blocks on it, so a
//! forked child can never hang on it; a cache whose lock was held by the
//! purge thread at the fork stays locked in the child, which then simply
//! runs without a cache on that thread, and `fork_gate` makes that rare:
//! the fork waits until the purge thread is outside every cache.
//!
//! Each cache lives in the thread context beside (not inside) the thread's
//! `ThreadState`, which holds a pointer to it: the owner's `&mut ThreadState`
//! never covers memory the purge thread touches.

use crate::large::bigcache::ThreadCache;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};

/// One thread's cache and its lock.
pub struct SharedCache {
    locked: AtomicBool,
    cache: UnsafeCell<ThreadCache>,
    /// Next cache in the registry (set once, when registered).
    next: AtomicPtr<SharedCache>,
    registered: AtomicBool,
}

// SAFETY: `cache` is only reached through `Guard`, which exists only while
// `locked` was swapped from false to true by its creator.
unsafe impl Sync for SharedCache {}

/// Every cache ever registered (thread contexts are pooled, never unmapped).
static REGISTRY: AtomicPtr<SharedCache> = AtomicPtr::new(ptr::null_mut());
/// Held by the purge thread while it is inside some cache, and by a fork
/// between its prepare and parent/child handlers.
static GATE: AtomicBool = AtomicBool::new(false);

impl SharedCache {
    /// An empty, unlocked, unregistered cache.
    pub const fn new() -> Self {
        SharedCache {
            locked: AtomicBool::new(false),
            cache: UnsafeCell::new(ThreadCache::new()),
            next: AtomicPtr::new(ptr::null_mut()),
            registered: AtomicBool::new(false),
        }
    }

    /// The cache, unless another thread is inside it.
    #[inline]
    pub fn try_lock(&self) -> Option<Guard<'_>> {
        // Not `then_some`: it would build (and drop, unlocking) the guard
        // even when the swap failed.
        if self.locked.swap(true, Acquire) {
            None
        } else {
            Some(Guard(self))
        }
    }

    /// The cache, waiting for the purge thread to leave it (thread exit:
    /// the blocks must not be lost). Gives up after about a second, which
    /// only a lock inherited held across a fork can take.
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

    /// Adds this cache to the registry the purge thread walks (once).
    pub fn register(&'static self) {
        if self.registered.swap(true, AcqRel) {
            return;
        }
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

/// Exclusive access to a thread's cache; unlocks on drop.
pub struct Guard<'a>(&'a SharedCache);

impl Deref for Guard<'_> {
    type Target = ThreadCache;
    fn deref(&self) -> &ThreadCache {
        // SAFETY: this guard holds the lock: no other reference to the cache.
        unsafe { &*self.0.cache.get() }
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut ThreadCache {
        // SAFETY: as above.
        unsafe { &mut *self.0.cache.get() }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.locked.store(false, Release);
    }
}

/// The purge thread, while the program is idle: one aging pass over every
/// cache it can lock (a cache's blocks leave after three passes without a
/// put). Returns blocks released. Skipped while a fork is in progress.
pub fn age_all() -> u32 {
    if GATE.swap(true, Acquire) {
        return 0;
    }
    let mut released = 0;
    let mut c = REGISTRY.load(Acquire);
    while !c.is_null() {
        // SAFETY: registered caches live in thread contexts, never unmapped.
        let cache = unsafe { &*c };
        if let Some(mut g) = cache.try_lock() {
            if g.held() > 0 {
                released += g.purge();
            }
        }
        c = cache.next.load(Relaxed);
    }
    GATE.store(false, Release);
    released
}

/// Fork prepare: wait until the purge thread is outside every cache (its
/// pass is bounded), and keep it out until [`fork_done`].
pub fn fork_gate() {
    while GATE.swap(true, Acquire) {
        core::hint::spin_loop();
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
    fn a_held_lock_is_refused_not_waited_for() {
        let c = SharedCache::new();
        let g = c.try_lock().expect("free lock");
        assert!(c.try_lock().is_none());
        drop(g);
        assert!(c.try_lock().is_some());
    }
}
