//! Small blocks (up to `size_class::MAX_CLASS_SIZE`): size classes, pages of
//! one class with intrusive free lists, 4 MiB segments of pages, and the
//! per-thread heap that hands them out (its concerns one file each).
//!
//! Imports nothing of `large`; the thread context above holds a [`heap::Heap`].

pub(crate) mod alloc;
pub(crate) mod free;
pub(crate) mod heap;
pub(crate) mod page;
pub(crate) mod purge;
pub(crate) mod queue;
pub(crate) mod reclaim;
pub(crate) mod remote;
pub(crate) mod segment;
pub(crate) mod size_class;
