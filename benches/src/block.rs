//! `Block`: one heap allocation owned by a workload, freed on drop.
//!
//! The workloads allocate through the process's global allocator exactly as a C
//! program calls `malloc(size)`: alignment 8, so every backend takes its plain
//! `malloc` path. Each new block is written to (real programs initialise what
//! they allocate) and passed through `black_box`, because LLVM may otherwise
//! delete an allocation whose memory is never observed.

use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::hint::black_box;
use std::ptr::NonNull;

/// Alignment of every block: what `malloc` callers assume.
const ALIGN: usize = 8;
/// The page size used when touching large blocks page by page.
pub const PAGE: usize = 4096;

/// An owned allocation of `size` bytes.
pub struct Block {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a Block is the sole owner of its memory, like a Box<[u8]>; freeing it
// on another thread is exactly the cross-thread free the workloads exercise.
unsafe impl Send for Block {}

impl Block {
    /// Allocate `size` bytes (at least 1) and write the first byte.
    #[inline]
    pub fn new(size: usize) -> Block {
        let layout = Self::layout(size);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(black_box(raw)) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the block is at least one byte long and exclusively ours.
        unsafe { ptr.as_ptr().write(size as u8) };
        Block {
            ptr,
            size: layout.size(),
        }
    }

    /// The block's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Write one byte in every page, as a program filling a buffer would fault them in.
    #[inline]
    pub fn touch_pages(&mut self) {
        let base = self.ptr.as_ptr();
        let mut offset = 0;
        while offset < self.size {
            // SAFETY: offset < size, inside the allocation.
            unsafe { base.add(offset).write_volatile(offset as u8) };
            offset += PAGE;
        }
    }

    /// Write `byte` to the first `len` bytes (clamped to the size) `times` times,
    /// through volatile stores so the writes really reach the cache line.
    #[inline]
    pub fn scribble(&mut self, len: usize, times: usize, byte: u8) {
        let base = self.ptr.as_ptr();
        let len = len.min(self.size);
        for t in 0..times {
            for i in 0..len {
                // SAFETY: i < len <= size.
                unsafe { base.add(i).write_volatile(byte.wrapping_add(t as u8)) };
            }
        }
    }

    /// Resize to `new_size` bytes with `realloc`, then write the last byte.
    #[inline]
    pub fn resize(&mut self, new_size: usize) {
        let old = Self::layout(self.size);
        let new_size = new_size.max(1);
        // SAFETY: ptr was allocated with `old` by the global allocator and
        // new_size is non-zero and far below isize::MAX.
        let raw = unsafe { realloc(self.ptr.as_ptr(), old, new_size) };
        let Some(ptr) = NonNull::new(black_box(raw)) else {
            handle_alloc_error(Self::layout(new_size))
        };
        // SAFETY: new_size - 1 is inside the resized block.
        unsafe { ptr.as_ptr().add(new_size - 1).write(1) };
        self.ptr = ptr;
        self.size = new_size;
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size.max(1), ALIGN).expect("block sizes are small")
    }
}

impl Drop for Block {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: ptr was allocated by the global allocator with this layout and
        // is freed exactly once, here.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.size)) }
    }
}

/// Memory for a scenario's allocation-free baseline (`hakmem-bench run
/// --baseline`): blocks allocated and, where asked, written page by page
/// before the clock starts. [`Pool::fill`] stands in for `Block::new` (and
/// the page touches after it) with the same writes and no allocator call, so
/// the baseline's time is the workload's own.
pub struct Pool {
    blocks: Vec<Block>,
}

impl Pool {
    /// `count` blocks of `size` bytes; with `resident`, every page written
    /// now, so the baseline pays no first-touch faults in its loop.
    pub fn new(count: usize, size: usize, resident: bool) -> Pool {
        let mut blocks: Vec<Block> = (0..count).map(|_| Block::new(size)).collect();
        if resident {
            blocks.iter_mut().for_each(Block::touch_pages);
        }
        Pool { blocks }
    }

    /// What `Block::new(size)` writes, into pool block `i` (then, with
    /// `pages`, one byte in every page of its first `size` bytes, as
    /// `Block::touch_pages`). The pointer goes through `black_box` as a new
    /// block's does.
    #[inline]
    pub fn fill(&mut self, i: usize, size: usize, pages: bool) {
        let block = &mut self.blocks[i];
        let size = size.clamp(1, block.size);
        let base = black_box(block.ptr.as_ptr());
        // SAFETY: the pool block holds at least `size` >= 1 bytes.
        unsafe { base.write(size as u8) };
        if pages {
            let mut offset = 0;
            while offset < size {
                // SAFETY: offset < size <= the block's size.
                unsafe { base.add(offset).write_volatile(offset as u8) };
                offset += PAGE;
            }
        }
    }
}
