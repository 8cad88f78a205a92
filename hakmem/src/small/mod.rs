//! Small blocks (up to `size_class::MAX_CLASS_SIZE`): size classes, pages of
//! one class with intrusive free lists, 4 MiB segments of pages, and the
//! thread-local heaps that hand them out.

#[allow(missing_docs)]
pub mod heap;
#[allow(missing_docs)]
pub mod page;
#[allow(missing_docs)]
pub mod segment;
#[allow(missing_docs)]
pub mod size_class;
