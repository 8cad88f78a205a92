//! Large blocks (above the size classes): each its own mapping with a header
//! (`block`), a per-thread cache of freed blocks (`bigcache`), the strategies
//! and their ELO ratings (`elo`, `evolution`), call-site profiling
//! (`profile`), their statistics (`stats`) and the alloc/free paths (`path`).

#[allow(missing_docs)]
pub mod bigcache;
#[allow(missing_docs)]
pub mod block;
#[allow(missing_docs)]
pub mod elo;
#[allow(missing_docs)]
pub mod evolution;
pub(crate) mod path;
#[allow(missing_docs)]
pub mod profile;
#[allow(missing_docs)]
pub mod stats;
pub mod thread;
