//! Pages: a run of memory cut into blocks of one size class, with intrusive
//! free lists (no header on small blocks).
//!
//! Data model (the counting invariant, checked in debug builds):
//!
//! ```text
//! used + len(free) == capacity <= reserved
//! len(remote list) <= used
//! ```
//!
//! * `free` — blocks the owner thread can hand out (LIFO; local frees push here).
//! * the remote list ([`RemoteFrees`], beside the descriptor, not in it) —
//!   blocks freed by other threads, pushed with a CAS; the owner takes the
//!   whole list with one swap ("collect") and moves it to `free`.
//! * `used` — blocks handed out and not yet back in `free` (so it includes the
//!   blocks still waiting in the remote list). It shares a word with
//!   `in_full` ([`Page::used_and_full`]).
//! * `capacity` — blocks carved out of the page so far; pages are carved lazily
//!   ([`Page::extend`]) so that memory is touched only when it is needed.
//!
//! A page belongs to the heap that owns its segment. Only that heap's thread
//! touches the [`Page`] descriptor, one cache line that the fast path reads
//! and writes on every allocation. Other threads touch only the page's
//! [`RemoteFrees`], on other cache lines: when a remote free's CAS shared a
//! line with `free` and `used`, every cross-thread free took the line from
//! the owner and the owner's next pop took it back (xthread: the store to
//! `free` and the CAS were 60% of the allocation and remote-free samples).
//! A page given back to its segment keeps its descriptor's free list
//! ([`Page::close`]); taken again for the same class while its memory is
//! still resident, it hands out those blocks without carving ([`Page::reopen`]).
//!
//! Both are written only by [`Page::init`] / [`RemoteFrees::reset`], while the
//! page is not in use; the descriptor's `class`, `block_size`, `key` and
//! `start` stay fixed until every block of the page is back (the debug
//! block-start check of a remote free still reads them).

use crate::hardening;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

/// A free block: its first word links to the next free block.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
}

/// The bit of [`Page::used_and_full`] that says the page is full (its sign,
/// read as `i32`).
pub const FULL: u32 = 1 << 31;

/// How many bytes one [`Page::extend`] carves: small enough to touch memory
/// gradually, big enough to amortise the slow path.
const EXTEND_BYTES: usize = 16 * 1024;

/// One page of a segment (the descriptor lives in the segment header), one
/// cache line of its own: the owner's fast path writes `free` and `used`.
#[repr(C, align(64))]
pub struct Page {
    /// Blocks ready to hand out (owner only).
    pub free: *mut Block,
    /// Blocks handed out and not yet back in `free` ([`Page::used`]), plus
    /// [`FULL`] while the page is not in its class queue because it had
    /// nothing left to give ([`Page::in_full`]). One word, so that a local
    /// free learns "empty now, or was full" from its decrement alone: the
    /// word, read signed, is 0 or negative (`Page::push_local`).
    pub used_and_full: u32,
    /// Blocks carved so far.
    pub capacity: u32,
    /// Blocks that fit in the page.
    pub reserved: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// Size class of the blocks.
    pub class: u8,
    /// The page is carved into blocks of `class` (false: free span of the segment).
    pub in_use: bool,
    /// The blocks not carved yet (from `capacity` on) read zero: the page's
    /// memory was not written since the OS mapped or purged it. A block
    /// carved from them has only its free-list link to clear for `calloc`.
    pub zero_tail: bool,
    /// Was kept in its class queue when it became empty instead of going
    /// back to its segment; the heap's `kept_bytes` counts it until it
    /// leaves the queue (`queue.rs`).
    pub kept: bool,
    /// Links in the heap's queue of pages of this class.
    pub next: *mut Page,
    pub prev: *mut Page,
    /// Address of the first block.
    pub start: *mut u8,
    /// Secret that encodes this page's free-list links (hardened builds only).
    #[cfg(feature = "hardened")]
    pub key: usize,
}

impl Page {
    /// A page descriptor that is not in use (also the fast path's sentinel:
    /// its `free` is null, so popping from it falls into the slow path).
    /// A template copied into descriptors, never used in place: its atomics
    /// being fresh in each copy is the point.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const EMPTY: Page = Page {
        free: ptr::null_mut(),
        used_and_full: 0,
        capacity: 0,
        reserved: 0,
        block_size: 0,
        class: 0,
        in_use: false,
        zero_tail: false,
        kept: false,
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        start: ptr::null_mut(),
        #[cfg(feature = "hardened")]
        key: 0,
    };

    /// Makes this descriptor a fresh page of `class` over `[start, start+bytes)`;
    /// `zero`: that memory reads zero (see `zero_tail`).
    ///
    /// # Safety
    /// `[start, start+bytes)` is memory the page alone will use while it is
    /// in use: `pop`, `extend` and `collect` write links into it on the
    /// strength of this promise (and of the fields being changed only here
    /// and by those methods).
    pub(crate) unsafe fn init(
        &mut self,
        class: usize,
        block_size: usize,
        start: *mut u8,
        bytes: usize,
        zero: bool,
    ) {
        *self = Page::EMPTY;
        self.zero_tail = zero;
        self.class = class as u8;
        self.block_size = block_size as u32;
        self.start = start;
        self.reserved = (bytes / block_size) as u32;
        self.in_use = true;
        #[cfg(feature = "hardened")]
        {
            self.key = hardening::page_key(start as usize);
        }
    }

    /// Takes the page out of use once every block is back, keeping its free
    /// list: the blocks carved so far, their links written into the page's
    /// memory. While that memory stays resident, [`Page::reopen`] puts the
    /// page back in use for the same class without carving it again.
    pub(crate) fn close(&mut self) {
        debug_assert!(self.in_use && self.used() == 0);
        self.in_use = false;
        self.set_in_full(false);
        self.zero_tail = false;
        self.kept = false;
        self.next = ptr::null_mut();
        self.prev = ptr::null_mut();
    }

    /// Puts a [`Page::close`]d page back in use, its free list as it was.
    ///
    /// # Safety
    /// Nothing wrote the page's memory since it was closed (it was not
    /// purged, nor given to another class or page geometry): the links and,
    /// hardened, the freed tags its free list relies on are intact.
    pub(crate) unsafe fn reopen(&mut self) {
        debug_assert!(!self.in_use && self.used() == 0 && self.capacity > 0);
        self.in_use = true;
        self.check();
    }

    /// This page's link secret (0 unless hardened).
    #[inline(always)]
    pub(crate) fn key(&self) -> usize {
        #[cfg(feature = "hardened")]
        return self.key;
        #[cfg(not(feature = "hardened"))]
        0
    }

    /// The link stored in free block `b` (decoded; checked in hardened builds).
    #[inline(always)]
    pub(crate) fn next_of(&self, b: *mut Block) -> *mut Block {
        // SAFETY: `b` is a free block of this page; its first word is the link.
        let stored = unsafe { (*b).next } as usize;
        let next = hardening::decode(stored, b as usize, self.key());
        if hardening::ENABLED && next != 0 {
            let start = self.start as usize;
            let end = start + self.reserved as usize * self.block_size as usize;
            if next < start || next >= end {
                crate::diag::corrupted_free_list(b as usize, self.class as usize);
            }
        }
        next as *mut Block
    }

    /// Stores link `next` in free block `b` (encoded in hardened builds).
    #[inline(always)]
    fn set_next(&self, b: *mut Block, next: *mut Block) {
        // SAFETY: `b` is a block of this page nobody else uses.
        unsafe {
            (*b).next = hardening::encode(next as usize, b as usize, self.key()) as *mut Block
        };
    }

    /// Hardened builds: tag a block as free (second word), or abort if it already is.
    #[inline(always)]
    fn mark_freed(&self, b: *mut Block) {
        mark_freed(b, self.block_size >= 16, self.key(), self.class);
    }

    /// Hardened builds: a block handed out is no longer tagged free.
    #[inline(always)]
    fn clear_freed(&self, b: *mut Block) {
        if hardening::ENABLED && self.block_size >= 16 {
            // SAFETY: as in mark_freed.
            unsafe { *(b as *mut usize).add(1) = 0 };
        }
    }

    /// Pops a block from `free`, or null.
    #[inline(always)]
    pub fn pop(&mut self) -> *mut Block {
        let b = self.free;
        if !b.is_null() {
            self.free = self.next_of(b);
            // The count stays below FULL: a page holds fewer blocks.
            self.used_and_full += 1;
            self.clear_freed(b);
        }
        b
    }

    /// Pushes a block freed by the owner thread. Returns true when the page
    /// needs the owner's attention (it just became empty, or was full).
    ///
    /// # Safety
    /// The calling thread owns the page; `b` is a block of it handed out and
    /// no longer used.
    #[inline(always)]
    pub(crate) unsafe fn push_local(&mut self, b: *mut Block) -> bool {
        self.mark_freed(b);
        self.set_next(b, self.free);
        self.free = b;
        debug_assert!(self.used() > 0);
        // SAFETY: `b` was counted in `used`, so the count is at least 1 and
        // the word, read signed, is neither 0 nor i32::MIN (FULL alone): the
        // decrement does not overflow. Telling the compiler so lets it test
        // the decrement's own flags (`dec; jle`).
        let left = unsafe { (self.used_and_full as i32).unchecked_sub(1) };
        self.used_and_full = left as u32;
        left <= 0
    }

    /// Blocks handed out and not yet back in `free`.
    #[inline(always)]
    pub fn used(&self) -> u32 {
        self.used_and_full & !FULL
    }

    /// Not in its class queue because it had nothing left to give.
    #[inline(always)]
    pub fn in_full(&self) -> bool {
        self.used_and_full & FULL != 0
    }

    /// Marks the page as out of its queue for want of blocks (or back in).
    #[inline(always)]
    pub fn set_in_full(&mut self, full: bool) {
        self.used_and_full = (self.used_and_full & !FULL) | if full { FULL } else { 0 };
    }

    /// Moves every block of `remote` (this page's remote list, whose
    /// offsets count from `base`) to `free`. Returns how many moved.
    ///
    /// The list's length travels with it, so when `free` is empty (a refill:
    /// the common case) the list becomes `free` as it is, without a walk: the
    /// walk was a chain of cache misses on blocks the freeing thread had just
    /// written, each waiting for the last (85% of refill's samples on
    /// xthread). The pops that follow read those links one at a time, beside
    /// the program's own work.
    pub fn collect(&mut self, remote: &RemoteFrees, base: usize) -> u32 {
        let Some((list, n)) = remote.take(base) else {
            return 0;
        };
        if !self.free.is_null() {
            let mut tail = list;
            loop {
                let next = self.next_of(tail);
                if next.is_null() {
                    break;
                }
                tail = next;
            }
            self.set_next(tail, self.free);
        }
        self.free = list;
        debug_assert!(n <= self.used());
        self.used_and_full -= n;
        n
    }

    /// Carves up to [`EXTEND_BYTES`] of not-yet-used blocks onto `free`.
    /// Returns false when the page is fully carved.
    pub fn extend(&mut self) -> bool {
        let left = self.reserved - self.capacity;
        if left == 0 {
            return false;
        }
        let bs = self.block_size as usize;
        let n = left.min((EXTEND_BYTES / bs).max(1) as u32);
        // SAFETY: blocks capacity..capacity+n lie inside the page.
        unsafe {
            let first = self.start.add(self.capacity as usize * bs);
            let mut p = first;
            for _ in 1..n {
                let next = p.add(bs);
                self.set_next(p as *mut Block, next as *mut Block);
                p = next;
            }
            self.set_next(p as *mut Block, self.free);
            self.free = first as *mut Block;
        }
        self.capacity += n;
        true
    }

    /// Whether `addr` is the start of a block of this page (a division: debug and
    /// hardened checks only).
    pub fn is_block_start(&self, addr: usize) -> bool {
        let start = self.start as usize;
        self.in_use
            && addr >= start
            && addr < start + self.capacity as usize * self.block_size as usize
            && (addr - start) % self.block_size as usize == 0
    }

    /// Checks the counting invariant (debug builds).
    pub fn check(&self) {
        if !cfg!(any(debug_assertions, feature = "debug-checks")) || !self.in_use {
            return;
        }
        let mut n = 0u32;
        let mut b = self.free;
        while !b.is_null() {
            assert!(
                self.is_block_start(b as usize),
                "hakmem: corrupt free list in class {}",
                self.class
            );
            n += 1;
            assert!(
                n <= self.capacity,
                "hakmem: free list cycle in class {}",
                self.class
            );
            // SAFETY: checked to be a block of this page above.
            b = self.next_of(b);
        }
        assert_eq!(
            self.used() + n,
            self.capacity,
            "hakmem: page counting invariant broken"
        );
        assert!(self.capacity <= self.reserved);
    }
}

/// Hardened builds: tag block `b` as free (second word, if `two_words`), or
/// abort if it already is.
#[inline(always)]
fn mark_freed(b: *mut Block, two_words: bool, key: usize, class: u8) {
    if hardening::ENABLED && two_words {
        let tag = hardening::freed_tag(key);
        // SAFETY: blocks of 16 bytes or more have a second word; the caller
        // no longer uses the block.
        let second = unsafe { (b as *mut usize).add(1) };
        // SAFETY: as above.
        if unsafe { *second } == tag {
            crate::diag::double_free(b as usize, Some(class as usize));
        }
        // SAFETY: as above.
        unsafe { *second = tag };
    }
}

/// The blocks other threads freed into one page: a lock-free stack whose
/// length travels in the same word as its head, so that the owner takes
/// list and count with one swap and never walks the list for them.
///
/// It lives apart from the [`Page`] descriptor (the segment keeps an array of
/// them), so that a remote free touches neither the line the owner's fast
/// path writes nor anything else the owner writes while the page is in use.
#[repr(C)]
pub struct RemoteFrees {
    /// `count << 32 | offset | 1`: `offset` is the first block's distance
    /// from the base the caller names (the segment's address; blocks are
    /// 8-byte aligned, so bit 0 is free to mark a non-empty list), `count`
    /// the list's length; 0 when the list is empty. Pushed with a CAS,
    /// taken with a swap: no pop of one block, so no ABA.
    list: AtomicU64,
    /// The page's class (a copy of [`Page::class`], fixed while the page is
    /// in use): a remote free counts by class without reading the descriptor.
    pub class: u8,
    /// A copy of the page's link secret (hardened builds only).
    #[cfg(feature = "hardened")]
    key: usize,
}

impl RemoteFrees {
    /// An empty list (a template copied into segment headers, like [`Page::EMPTY`]).
    #[allow(clippy::declare_interior_mutable_const)]
    pub const EMPTY: RemoteFrees = RemoteFrees {
        list: AtomicU64::new(0),
        class: 0,
        #[cfg(feature = "hardened")]
        key: 0,
    };

    /// Empties the list for a fresh page of `page`'s class and secret. Only
    /// while no other thread can hold a block of the page (it was not in
    /// use): `&mut` says so.
    pub(crate) fn reset(&mut self, page: &Page) {
        *self = RemoteFrees::EMPTY;
        self.class = page.class;
        #[cfg(feature = "hardened")]
        {
            self.key = page.key();
        }
    }

    #[inline(always)]
    fn key(&self) -> usize {
        #[cfg(feature = "hardened")]
        return self.key;
        #[cfg(not(feature = "hardened"))]
        0
    }

    /// Pushes block `b`, freed by a thread that does not own the page.
    ///
    /// # Safety
    /// `b` is a block of this list's page handed out and no longer used, and
    /// lies less than 4 GiB above `base`, the base every user of this list names.
    #[inline]
    pub(crate) unsafe fn push(&self, base: usize, b: *mut Block) {
        mark_freed(b, self.class != 0, self.key(), self.class);
        let off = (b as usize - base) as u64;
        debug_assert!(off < 1 << 32 && off & 7 == 0);
        let mut cur = self.list.load(Ordering::Relaxed);
        loop {
            let head = if cur == 0 {
                0
            } else {
                base + (cur as u32 & !1) as usize
            };
            let stored = hardening::encode(head, b as usize, self.key());
            // SAFETY: the caller's contract: the block is ours to write.
            unsafe { (*b).next = stored as *mut Block };
            let new = ((cur >> 32) + 1) << 32 | off | 1;
            // SeqCst pairs with the segment's remote flag (see segment.rs);
            // its release half publishes the link just written to the owner.
            match self
                .list
                .compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Takes the whole list: its first block and length, or None if empty.
    pub(crate) fn take(&self, base: usize) -> Option<(*mut Block, u32)> {
        if self.list.load(Ordering::Relaxed) == 0 {
            return None;
        }
        // Acquire (in SeqCst): the links the pushers wrote are visible.
        let w = self.list.swap(0, Ordering::SeqCst);
        if w == 0 {
            return None;
        }
        let first = (base + (w as u32 & !1) as usize) as *mut Block;
        Some((first, (w >> 32) as u32))
    }

    /// How many blocks wait in the list (a snapshot: it may grow meanwhile,
    /// never shrink but by the owner's [`RemoteFrees::take`]).
    #[inline]
    pub fn len(&self) -> u32 {
        (self.list.load(Ordering::Relaxed) >> 32) as u32
    }

    /// Whether blocks wait in the list (a racy snapshot).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.list.load(Ordering::Relaxed) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_over(buf: &mut [u64], bs: usize) -> Page {
        let mut p = Page::EMPTY;
        // SAFETY: the test's buffer outlives the page and nothing else uses it.
        unsafe { p.init(3, bs, buf.as_mut_ptr() as *mut u8, buf.len() * 8, false) };
        p
    }

    #[test]
    fn a_full_page_wants_attention_on_each_local_free_and_counts_without_its_flag() {
        let mut buf = vec![0u64; 1024];
        let mut p = page_over(&mut buf, 64);
        assert!(p.extend());
        let (a, b, c) = (p.pop(), p.pop(), p.pop());
        p.set_in_full(true);
        assert!(p.in_full());
        assert_eq!(p.used(), 3, "the flag is not counted");
        // SAFETY: blocks of this page, handed out above.
        unsafe {
            assert!(p.push_local(a), "not empty, but full: the owner must look");
            assert_eq!(p.used(), 2);
            assert!(p.in_full(), "a push keeps the flag");
            p.set_in_full(false);
            assert_eq!(p.used(), 2, "clearing the flag keeps the count");
            assert!(!p.push_local(b), "neither empty nor full");
            assert!(p.push_local(c), "empty");
        }
        assert_eq!(p.used(), 0);
        assert!(!p.in_full());
        p.check();
    }

    #[test]
    fn extend_pop_push_keep_the_counting_invariant() {
        let mut buf = vec![0u64; 8192];
        let mut p = page_over(&mut buf, 48);
        assert_eq!(p.reserved, 8192 * 8 / 48);
        assert!(p.pop().is_null());
        assert!(p.extend());
        let mut got = Vec::new();
        loop {
            let b = p.pop();
            if b.is_null() {
                if !p.extend() {
                    break;
                }
                continue;
            }
            assert!(p.is_block_start(b as usize));
            got.push(b);
            p.check();
        }
        assert_eq!(got.len() as u32, p.reserved);
        assert_eq!(p.used(), p.reserved);
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "a block was handed out twice");
        for (i, b) in got.iter().enumerate() {
            // SAFETY: a block of this page, handed out above.
            let wants_attention = unsafe { p.push_local(*b) };
            assert_eq!(wants_attention, i + 1 == got.len());
        }
        p.check();
        assert_eq!(p.used(), 0);
    }

    #[test]
    fn remote_frees_are_collected_by_the_owner() {
        let mut buf = vec![0u64; 1024];
        let base = buf.as_ptr() as usize;
        let mut p = page_over(&mut buf, 64);
        let mut r = RemoteFrees::EMPTY;
        r.reset(&p);
        p.extend();
        let a = p.pop();
        let b = p.pop();
        let c = p.pop();
        let d = p.pop();
        let used = p.used();
        // SAFETY: blocks of this page, handed out above.
        unsafe {
            r.push(base, a);
            r.push(base, b);
        }
        assert_eq!(
            p.used(),
            used,
            "remote frees are counted only when collected"
        );
        assert_eq!(p.collect(&r, base), 2);
        assert_eq!(p.used(), used - 2);
        assert_eq!(p.collect(&r, base), 0);
        p.check();
        // Collected into an empty free list: taken as it is, no walk.
        while !p.free.is_null() {
            p.pop();
        }
        // SAFETY: as above.
        unsafe {
            r.push(base, c);
            r.push(base, d);
        }
        assert!(!r.is_empty());
        assert_eq!(p.collect(&r, base), 2);
        assert!(r.is_empty());
        assert_eq!(p.pop(), d);
        assert_eq!(p.pop(), c);
        assert!(p.pop().is_null());
        p.check();
    }

    #[test]
    fn concurrent_remote_pushes_lose_nothing() {
        let mut buf = vec![0u64; 64 * 1024];
        let base = buf.as_ptr() as usize;
        let mut p = page_over(&mut buf, 16);
        let mut r = RemoteFrees::EMPTY;
        r.reset(&p);
        let mut blocks = Vec::new();
        while blocks.len() < 4000 {
            let b = p.pop();
            if b.is_null() {
                assert!(p.extend());
            } else {
                blocks.push(b as usize);
            }
        }
        let remote = &r;
        std::thread::scope(|s| {
            for chunk in blocks.chunks(1000) {
                s.spawn(move || {
                    for &b in chunk {
                        // SAFETY: blocks of this page, each pushed once.
                        unsafe { remote.push(base, b as *mut Block) };
                    }
                });
            }
        });
        assert_eq!(p.collect(&r, base), 4000);
        p.check();
    }
}
