//! The life cycle of thread contexts: creation, the pool of unused ones, the
//! registry of all (for statistics), the pthread key whose destructor runs at
//! thread exit, and the fork handler. Contexts are never unmapped: an exited
//! thread's context waits on a lock-free stack for the next new thread.

use super::{is_empty, tls, ThreadCtx, EMPTY_CTX_PTR};
use crate::counters::GLOBAL;
use crate::large::thread::{Counters as LargeCounters, ThreadState};
use crate::options;
use crate::os;
use crate::small::heap::CountersOf as SmallCounters;
use crate::stack::{StackNode, TaggedStack};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Unused contexts (of exited threads), for the next new thread.
static POOL: TaggedStack<ThreadCtx> = TaggedStack::new();
static REGISTRY: AtomicPtr<ThreadCtx> = AtomicPtr::new(ptr::null_mut());
/// pthread key + 1 (0 = not created yet).
static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);
/// The process-wide options were applied (once, with the first context).
static OPTIONS_APPLIED: AtomicBool = AtomicBool::new(false);

// SAFETY: contexts are mapped on their own pages (12 free low bits), `pool_next`
// is a field of the context, and contexts are never unmapped.
unsafe impl StackNode for ThreadCtx {
    const ALIGN_BITS: u32 = os::OS_PAGE.trailing_zeros();
    unsafe fn link(node: *mut Self) -> *const AtomicUsize {
        // SAFETY: the caller's contract: a live context.
        unsafe { &raw const (*node).pool_next }
    }
}

fn new_ctx() -> Option<*mut ThreadCtx> {
    let bytes = (core::mem::size_of::<ThreadCtx>() + os::OS_PAGE - 1) & !(os::OS_PAGE - 1);
    let ctx = crate::vm::map(bytes)? as *mut ThreadCtx;
    // SAFETY: fresh zeroed memory, sized and aligned for a context; written before publication.
    unsafe {
        ptr::copy_nonoverlapping(EMPTY_CTX_PTR as *const ThreadCtx, ctx, 1);
        (*ctx).large = ThreadState::new();
        (*ctx).large.cache = &raw const (*ctx).large_cache;
        (*ctx).large_cache.register();
    }
    GLOBAL.heaps_created.fetch_add(1, Ordering::Relaxed);
    let mut head = REGISTRY.load(Ordering::Relaxed);
    loop {
        // SAFETY: not yet published.
        unsafe { (*ctx).registry_next = head };
        match REGISTRY.compare_exchange_weak(head, ctx, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return Some(ctx),
            Err(x) => head = x,
        }
    }
}

fn exit_key() -> Option<libc::pthread_key_t> {
    let k = EXIT_KEY.load(Ordering::Acquire);
    if k != 0 {
        return Some((k - 1) as libc::pthread_key_t);
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out-pointer and destructor. pthread_key_create does not allocate.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } != 0 {
        return None;
    }
    match EXIT_KEY.compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // Once per process, with the first context (already published, so
            // an allocation inside pthread_atfork finds it).
            // SAFETY: a valid handler that only stores to an atomic.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
            Some(key)
        }
        Err(winner) => {
            // Another thread created one first: use theirs (no lock, so no
            // lock for a forked child to inherit).
            // SAFETY: our key, unused.
            unsafe { libc::pthread_key_delete(key) };
            Some((winner - 1) as libc::pthread_key_t)
        }
    }
}

/// In a forked child: reset the tracer's records (see
/// `probe::after_fork_in_child`), and make the forking thread's next large
/// operation learn its new thread id (the parent's names no thread here:
/// `span_heap::idle` would take the child for idle).
unsafe extern "C" fn after_fork_in_child() {
    crate::probe::after_fork_in_child();
    let c = super::current();
    if !super::is_empty(c) {
        // SAFETY: the calling thread's own context; the child has no other thread.
        unsafe { (*c).large.tid = 0 };
    }
}

/// Applies the process-wide options that act outside the contexts, once:
/// `HAKMEM_TRACE=1` starts timing as if a tracer had attached;
/// `HAKMEM_TRACE_INTERVAL` and `HAKMEM_TRACE_PERIOD` set how it samples.
fn apply_options(o: &options::Options) {
    if OPTIONS_APPLIED.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(i) = o.trace_interval {
        crate::probe::hakmem_sample_interval.store(i, Ordering::Relaxed);
    }
    if let Some(p) = o.trace_period {
        crate::probe::hakmem_sample_period.store(p, Ordering::Relaxed);
    }
    if o.trace_at_start {
        crate::probe::hakmem_trace_enabled.store(1, Ordering::Relaxed);
    }
}

#[cold]
#[inline(never)]
pub(super) fn init_current() -> Option<*mut ThreadCtx> {
    let ctx = POOL.pop().or_else(new_ctx)?;
    let o = options::get();
    apply_options(&o);
    // SAFETY: a context nobody else uses.
    unsafe {
        (*ctx).large.configure(&o);
        (*ctx).quiet = super::QuietWatch::new();
        // The context is this thread's from now on: its inbox opens.
        (*ctx).small.open_mail();
    }
    // Publish before pthread_setspecific: if that allocates (keys ≥ 32 in
    // glibc), the nested malloc must find this context, not recurse here.
    tls::set(ctx);
    if let Some(key) = exit_key() {
        // SAFETY: a valid key; the value is our context.
        unsafe { libc::pthread_setspecific(key, ctx as *const libc::c_void) };
    }
    crate::exit_report::ensure_registered();
    crate::background::set_pass(&super::background_pass::PASS);
    Some(ctx)
}

extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    let ctx = value as *mut ThreadCtx;
    if ctx.is_null() || is_empty(ctx) {
        return;
    }
    // Whatever this thread allocates after this (other TLS destructors) gets
    // a new context, and the key destructor runs again for it.
    tls::set(EMPTY_CTX_PTR);
    // SAFETY: the exiting thread's own context; no other thread uses it.
    unsafe {
        crate::large::path::thread_exit(&mut (*ctx).large);
        (*ctx).small.abandon();
    }
    // SAFETY: this thread's context, which it gives up here.
    unsafe { POOL.push(ctx) };
}

/// Calls `f` with the counters of every context ever created.
pub fn for_each(mut f: impl FnMut(&SmallCounters, &LargeCounters)) {
    let mut c = REGISTRY.load(Ordering::Acquire);
    while !c.is_null() {
        // SAFETY: registered contexts are never unmapped; counters are atomics,
        // and only the counter fields are borrowed.
        unsafe {
            f(
                &SmallCounters::new(&raw const (*c).small),
                &(*c).large.counters,
            );
            c = (*c).registry_next;
        }
    }
}
