//! The large blocks' share of a background pass (`crate::background`, the
//! thread that gives free memory back while the program is idle): idle
//! threads' BigCaches and the global one are emptied into the span level,
//! and free spans that waited the purge delay are purged.

use crate::large::{bigcache, shared_cache, span_heap};
use core::sync::atomic::{AtomicU64, Ordering::*};

/// Cached blocks the background thread released from idle threads' caches (stats).
pub static BACKGROUND_RELEASED: AtomicU64 = AtomicU64::new(0);

/// One pass: while the program is idle, ages every thread's BigCache and
/// empties the global one (what they release goes to the span level); then purges
/// the spans that waited the purge delay. True if resident free memory is
/// left (so the thread should keep ticking).
pub fn pass() -> bool {
    // The fork handlers keep this thread out of the span lock during a fork:
    // registered before its first lock (a no-op after the first time).
    span_heap::ensure_atfork();
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
pub fn has_work() -> bool {
    span_heap::dirty_bytes() > 0 || bigcache::reserved_bytes() > 0
}
