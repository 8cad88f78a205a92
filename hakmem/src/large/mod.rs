//! Large blocks (above the size classes): each its own mapping with a header
//! (`block`), a per-thread cache of freed blocks (`bigcache`), the strategies
//! and their ELO ratings ([`elo`], [`evolution`]), call-site profiling
//! (`profile`), their statistics ([`stats`]), the per-thread state (`thread`),
//! which classes a thread reuses (`reuse`: cache or span level on free), the
//! lock that lets the purge thread age an idle thread's cache (`shared_cache`) and
//! the alloc/free paths (`path`). Under the BigCache, freed memory of any
//! size waits in page-granular spans ([`span_heap`]) until a later request or
//! the purge (`purge_thread`: this side's share of the background thread's
//! pass, `crate::background`, which gives it back while the program is idle).
//!
//! Imports nothing of `small`; the thread context above holds a
//! `thread::ThreadState` and passes it to `path`.

pub(crate) mod bigcache;
pub(crate) mod block;
pub mod elo;
pub mod evolution;
pub(crate) mod path;
pub(crate) mod profile;
pub(crate) mod purge_thread;
pub(crate) mod reuse;
pub(crate) mod shared_cache;
/// Public for the span-invariant test (`tests/span_invariants.rs`).
pub mod span_heap;
pub mod stats;
pub(crate) mod thread;

/// Test hook: one pass of the background purge thread over every
/// thread's BigCache, now, idle or not (`tests/idle_purge.rs` runs it against
/// threads using their caches). Returns how many caches holding blocks it
/// entered.
#[doc(hidden)]
pub fn age_caches_for_test() -> u32 {
    shared_cache::age_all().0
}
