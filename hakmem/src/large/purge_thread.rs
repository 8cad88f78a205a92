//! The background purge thread: free memory goes back to the OS while the
//! program is idle, without it calling anything (jemalloc's
//! `background_thread` is the precedent).
//!
//! Started lazily, by the first large free that leaves resident free memory
//! (never while a lock is held; `pthread_create` may call malloc, which is
//! fine then). It runs with every signal blocked and never allocates: it only
//! calls [`tick`], which purges spans through `os`. When nothing is left to purge it parks on a
//! futex and costs nothing; the next free that leaves memory behind wakes it
//! (one relaxed load on every free, a syscall only when it was parked).
//!
//! Fork: the child has no such thread; `after_fork_in_child` resets the state
//! so the child starts its own on its first large free.
//! `HAKMEM_BACKGROUND_PURGE=0` turns it off.

use crate::large::{bigcache, shared_cache, span_heap};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::*};

/// Between two purge passes while there is something to purge: the purge
/// delay (so memory leaves at most two delays after its free), at least 5 ms
/// (at the default 10 ms, 100 wake-ups a second cost about 0.1% of a core,
/// and only while free memory is resident), at most 500 ms.
fn tick_ms() -> u64 {
    crate::options::get().purge_delay_ms.clamp(5, 500)
}

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const OFF: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(NOT_STARTED);
/// 1 while the thread sleeps on the futex.
static PARKED: AtomicU32 = AtomicU32::new(0);
/// Passes run (tests and stats).
pub static TICKS: AtomicU64 = AtomicU64::new(0);
/// Cached blocks this thread released from idle threads' caches (stats).
pub static BACKGROUND_RELEASED: AtomicU64 = AtomicU64::new(0);

/// Called after a free that left resident free memory: starts the thread
/// the first time, wakes it if parked.
#[inline(always)]
pub fn notify() {
    match STATE.load(Relaxed) {
        RUNNING if PARKED.load(SeqCst) == 1 => wake(),
        NOT_STARTED => start(),
        _ => {}
    }
}

#[cold]
fn wake() {
    if PARKED.swap(0, SeqCst) == 1 {
        futex_wake();
    }
}

#[cold]
fn start() {
    if !crate::options::get().background_purge {
        STATE.store(OFF, Relaxed);
        return;
    }
    if STATE
        .compare_exchange(NOT_STARTED, RUNNING, AcqRel, Relaxed)
        .is_err()
    {
        return;
    }
    // The fork handlers keep this thread out of the caches during a fork.
    span_heap::ensure_atfork();
    // SAFETY: plain libc calls on local, initialised values. Every signal is
    // blocked while the thread is created, so it starts with all blocked (a
    // program's signal handlers never run on it).
    let ok = unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 64 << 10);
        let mut t: libc::pthread_t = 0;
        // Its TLS vector is calloc'ed through us: not the program's allocation.
        let r = crate::probe::untraced(|| {
            libc::pthread_create(&mut t, &attr, run, core::ptr::null_mut())
        });
        libc::pthread_attr_destroy(&mut attr);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        r == 0
    };
    if !ok {
        // No thread (out of resources): purging stays on allocator activity.
        STATE.store(OFF, Relaxed);
    }
}

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        sleep_ms(tick_ms());
        TICKS.fetch_add(1, Relaxed);
        if tick() {
            continue;
        }
        // Nothing left to purge: park, re-checking after announcing it so a
        // free racing with us either sees PARKED or left work we now see.
        PARKED.store(1, SeqCst);
        if has_work() {
            PARKED.store(0, SeqCst);
            continue;
        }
        futex_wait();
    }
}

/// One pass: while the program is idle, ages every thread's BigCache and
/// empties the global one (what they release goes to the span level); then purges
/// the spans that waited the purge delay. True if resident free memory is
/// left (so the thread should keep ticking).
fn tick() -> bool {
    let delay = crate::options::get().purge_delay_ms;
    if span_heap::idle(delay) {
        let released = shared_cache::age_all().1 + bigcache::global_purge(true);
        BACKGROUND_RELEASED.fetch_add(released as u64, Relaxed);
    }
    span_heap::purge(delay, true);
    has_work()
}

/// Resident free memory is left: free spans, or blocks in some cache (its
/// budget is reserved while it holds any).
fn has_work() -> bool {
    span_heap::dirty_bytes() > 0 || bigcache::reserved_bytes() > 0
}

fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; an interrupted sleep just ends early.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

fn futex_wait() {
    // SAFETY: futex on a static word; returns at once if it is no longer 1.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            PARKED.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            1u32,
            core::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake() {
    // SAFETY: futex on a static word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            PARKED.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1i32,
        )
    };
}

/// In a forked child: the thread did not survive the fork; start a new one lazily.
pub fn after_fork_in_child() {
    if STATE.load(Relaxed) == RUNNING {
        STATE.store(NOT_STARTED, Relaxed);
    }
    PARKED.store(0, Relaxed);
}
