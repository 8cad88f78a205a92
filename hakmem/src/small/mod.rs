//! Small blocks (up to `size_class::MAX_CLASS_SIZE`): size classes, pages of
//! one class with intrusive free lists, 4 MiB segments of pages, and the
//! per-thread heap that hands them out (its concerns one file each).
//!
//! Imports nothing of `large`; the thread context above holds a [`heap::Heap`].

pub mod alloc;
pub mod free;
#[allow(missing_docs)]
pub mod heap;
#[allow(missing_docs)]
pub mod page;
pub(crate) mod purge;
pub(crate) mod queue;
pub(crate) mod reclaim;
#[allow(missing_docs)]
pub mod segment;
#[allow(missing_docs)]
pub mod size_class;
