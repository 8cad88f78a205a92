//! The background thread: free memory goes back to the OS while the program
//! is idle, without it calling anything (jemalloc's `background_thread` is
//! the precedent). This module is the thread itself: when it starts, how it
//! sleeps, parks and wakes, and what a fork does to it. What a pass purges
//! is registered from above ([`set_pass`], by `thread`): the span heap and
//! caches of `large`, the segment pool and abandoned segments of `small`.
//!
//! Started lazily, by the first free that leaves resident free memory it
//! could give back ([`notify`]; never while a lock is held, since
//! `pthread_create` may call malloc). It runs with every signal blocked and
//! never allocates. While a pass says memory is left to purge later it runs
//! one every [`tick_ms`]; otherwise it parks on a futex and costs nothing, and
//! the next [`notify`] wakes it (one load when it is awake, a syscall only
//! when it was parked).
//!
//! Fork: the child has no such thread; a child handler (registered before
//! the thread starts) resets the state so the child starts its own at its
//! first [`notify`]. `HAKMEM_BACKGROUND_PURGE=0` turns it off.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering::*};

/// What the thread runs: a pass over everything that may hold purgeable
/// memory, and the cheap check it makes before it parks.
pub struct Pass {
    /// One pass; true if resident free memory is left to purge later.
    pub run: fn() -> bool,
    /// Whether purgeable memory may be waiting (a free that raced with the
    /// last pass): read after the thread announced that it parks.
    pub has_work: fn() -> bool,
}

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const OFF: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(NOT_STARTED);
/// 1 while the thread sleeps on the futex.
static PARKED: AtomicU32 = AtomicU32::new(0);
/// Passes run (tests and stats).
pub static TICKS: AtomicU64 = AtomicU64::new(0);
/// The registered [`Pass`] (null: none yet, the thread does not start).
static PASS: AtomicPtr<Pass> = AtomicPtr::new(core::ptr::null_mut());
/// The fork child handler is registered.
static ATFORK: AtomicBool = AtomicBool::new(false);

/// Registers what a pass does (idempotent: the same pass every time).
pub fn set_pass(pass: &'static Pass) {
    // Every thread's set-up calls this: a load, not a store to a shared line.
    if PASS.load(Relaxed).is_null() {
        PASS.store(pass as *const Pass as *mut Pass, Release);
    }
}

fn pass() -> Option<&'static Pass> {
    // SAFETY: null, or stored from a `&'static Pass` by `set_pass` (never
    // written through).
    unsafe { PASS.load(Acquire).as_ref() }
}

/// Between two passes while there is something to purge: the purge delay
/// (so memory leaves at most two delays after its free), at least 5 ms (at
/// the default 10 ms, 100 wake-ups a second cost about 0.1% of a core, and
/// only while free memory is resident), at most 500 ms.
pub fn tick_ms() -> u64 {
    crate::options::get().purge_delay_ms.clamp(5, 500)
}

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

/// [`notify`] for a caller in the middle of an allocator operation: wakes
/// the thread if it runs and is parked, never starts it (`pthread_create`
/// calls malloc, which must not re-enter a heap being changed).
#[inline(always)]
pub fn wake_if_running() {
    if STATE.load(Relaxed) == RUNNING && PARKED.load(SeqCst) == 1 {
        wake();
    }
}

#[cold]
fn wake() {
    if PARKED.swap(0, SeqCst) == 1 {
        futex(libc::FUTEX_WAKE);
    }
}

#[cold]
fn start() {
    if !crate::options::get().background_purge {
        STATE.store(OFF, Relaxed);
        return;
    }
    if pass().is_none() {
        return; // nothing registered yet: a later notify starts it
    }
    if STATE
        .compare_exchange(NOT_STARTED, RUNNING, AcqRel, Relaxed)
        .is_err()
    {
        return;
    }
    if !ATFORK.swap(true, AcqRel) {
        // SAFETY: a valid handler that only touches atomics. No lock is held
        // here (glibc's pthread_atfork may allocate).
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    }
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
    let Some(pass) = pass() else {
        // `start` saw it registered, and it is never unregistered.
        STATE.store(OFF, Relaxed);
        return core::ptr::null_mut();
    };
    loop {
        sleep_ms(tick_ms());
        TICKS.fetch_add(1, Relaxed);
        if (pass.run)() {
            continue;
        }
        // Nothing left to purge: park, re-checking after announcing it so a
        // free racing with us either sees PARKED or left work we now see.
        PARKED.store(1, SeqCst);
        if (pass.has_work)() {
            PARKED.store(0, SeqCst);
            continue;
        }
        futex(libc::FUTEX_WAIT);
    }
}

fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; an interrupted sleep just ends early.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

/// `futex(op)` on [`PARKED`]: WAIT returns at once if it is no longer 1;
/// WAKE wakes the one waiter.
fn futex(op: i32) {
    // SAFETY: futex on a static word, no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            PARKED.as_ptr(),
            op | libc::FUTEX_PRIVATE_FLAG,
            1u32,
            core::ptr::null::<libc::timespec>(),
        )
    };
}

/// In a forked child: the thread did not survive the fork; start a new one lazily.
extern "C" fn after_fork_in_child() {
    if STATE.load(Relaxed) == RUNNING {
        STATE.store(NOT_STARTED, Relaxed);
    }
    PARKED.store(0, Relaxed);
}
