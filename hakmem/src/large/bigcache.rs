//! BigCache: freed large blocks (1 MiB – 64 MiB) wait here for reuse, so the
//! next allocation of that size costs no syscall and no page fault.
//!
//! Thread mode (default): each thread has slots indexed directly by
//! `[call-site bucket][size class]`, each holding up to [`DEPTH`] blocks; a hit
//! is an array index, a compare and a pop — no hash table, no lock, no atomic.
//! A miss at the caller's own site falls back to the same class at another
//! site before giving up. Global mode (`HAKMEM_BIGCACHE=global`): one shared
//! array of slots per class taken and filled with CAS, to compare against.
//!
//! Bounds: bytes held by all caches stay under `HAKMEM_BIGCACHE_MAX_MB`.
//! Threads reserve budget from a process-wide counter in chunks, so the bound
//! costs an atomic only once per chunk, not per block. Age: a slot not
//! refilled for about `HAKMEM_PURGE_DELAY_MS` is emptied and its blocks go
//! back to the OS. Within a full slot the oldest block is evicted.

use crate::large::block::{self, LargeHeader};
use crate::large::elo::STRATEGIES;
use crate::os::OS_PAGE;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Smallest block the cache takes (the origin analysis's threshold).
pub const MIN_SIZE: usize = 1 << 20;
/// Largest block the cache takes.
pub const MAX_SIZE: usize = 64 << 20;
/// Size classes: 1 MiB, then 4 per doubling up to 64 MiB.
pub const NUM_CLASSES: usize = 25;
/// Call-site buckets per thread.
pub const SITE_BUCKETS: usize = 4;
/// Blocks per slot.
pub const DEPTH: usize = 4;
/// Budget a thread reserves from the process-wide bound at a time.
const CHUNK: u64 = 16 << 20;
/// Classes above its own a miss may take a cached block from (four classes
/// = one doubling): see [`ThreadCache::get_larger`].
pub const LARGER_CLASSES: usize = 4;
/// Slots per class in global mode.
const GLOBAL_DEPTH: usize = 8;

/// The class of a request of `size` bytes (`MIN_SIZE ..= MAX_SIZE`): the
/// smallest class whose blocks hold it.
#[inline]
pub fn class_of(size: usize) -> usize {
    if size <= MIN_SIZE {
        return 0;
    }
    let w = size - 1;
    let b = (usize::BITS - 1 - w.leading_zeros()) as usize;
    let q = (w >> (b - 2)) & 3;
    (b - 20) * 4 + q + 1
}

/// The block size of class `k`.
#[inline]
pub const fn class_size(k: usize) -> usize {
    if k == 0 {
        return MIN_SIZE;
    }
    let b = 20 + (k - 1) / 4;
    let q = (k - 1) % 4;
    (1 << b) + (q + 1) * (1 << (b - 2))
}

/// The largest class whose size is at most `usable` (what a block of that
/// usable size can serve), or None if it is outside the cache's range.
pub fn floor_class(usable: usize) -> Option<usize> {
    if !(MIN_SIZE..=MAX_SIZE + OS_PAGE * 1024).contains(&usable) {
        return None;
    }
    let k = class_of(usable.min(MAX_SIZE));
    if class_size(k) <= usable {
        Some(k)
    } else {
        Some(k - 1)
    }
}

/// Each class's size ([`class_size`]) as `u64`, padded to a power of two: the hot path's
/// lookup of a class it holds in a register, without a bounds check.
const CLASS_BYTES: [u64; 32] = {
    let mut t = [0; 32];
    let mut k = 0;
    while k < NUM_CLASSES {
        t[k] = class_size(k) as u64;
        k += 1;
    }
    t
};

/// The block size of class `k` (`< NUM_CLASSES`).
#[inline(always)]
pub fn class_bytes(k: usize) -> u64 {
    CLASS_BYTES[k & 31]
}

/// Whether a request can be served from the cache.
#[inline]
pub fn cacheable(size: usize, align: usize) -> bool {
    (MIN_SIZE - 4 * OS_PAGE..=MAX_SIZE).contains(&size) && align <= crate::layout::MIN_ALIGN
}

/// Bytes of budget reserved by all threads plus what global mode holds.
static RESERVED: AtomicU64 = AtomicU64::new(0);

fn max_bytes() -> u64 {
    crate::options::get().bigcache_max_mb << 20
}

fn reserve(bytes: u64) -> bool {
    let max = max_bytes();
    let mut cur = RESERVED.load(Ordering::Relaxed);
    loop {
        if cur + bytes > max {
            return false;
        }
        match RESERVED.compare_exchange_weak(cur, cur + bytes, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(x) => cur = x,
        }
    }
}

fn unreserve(bytes: u64) {
    RESERVED.fetch_sub(bytes, Ordering::Relaxed);
}

/// Bytes currently reserved for cached blocks, all threads and modes.
pub fn reserved_bytes() -> u64 {
    RESERVED.load(Ordering::Relaxed)
}

/// Header of a cached block (blocks in the cache are live mappings with a
/// valid header; the cache holds their user pointers).
fn header_of(p: usize) -> *mut LargeHeader {
    let r = crate::segment_map::lookup(p);
    // SAFETY: only blocks that passed header validation enter the cache.
    unsafe { block::header(p, r) }.expect("cached block has a header")
}

/// Keeps the mapping but drops the whole pages of a cached block (not the
/// page holding the header): the next user faults them in again.
/// Where the kernel gives huge pages, only the whole ones: the strategy
/// purges to save memory, and splitting a huge page would make every later
/// reuse of that range fault page by page.
fn purge_block_pages(p: usize, bytes: usize) {
    let (start, end) = purge_range(p, bytes);
    if end > start {
        // SAFETY: whole pages of a cached block (nobody uses it), past its header page.
        unsafe { crate::vm::purge(start as *mut u8, end - start) };
    }
}

/// The pages [`purge_block_pages`] drops from the block at `p` (`bytes`
/// long); empty when `start >= end`.
fn purge_range(p: usize, bytes: usize) -> (usize, usize) {
    let start = (p + OS_PAGE - 1) & !(OS_PAGE - 1);
    let end = (p + bytes) & !(OS_PAGE - 1);
    crate::thp::whole_huge_pages(start, end)
}

/// OS pages a purging put of the block at `p` (`usable` bytes) drops: the
/// block's next user faults them in again (the zeroing of a huge page is
/// 512 pages' worth). A sample of a `purge-on-cache` block is charged them
/// (`evolution::finish_sample`): the refaults land on whichever block
/// reuses the memory, never on the block whose put caused them.
pub fn purged_pages_on_put(p: usize, usable: usize) -> u64 {
    let Some(k) = floor_class(usable) else {
        return 0;
    };
    let (start, end) = purge_range(p, class_size(k));
    (end.saturating_sub(start) / OS_PAGE) as u64
}

/// Gives a block up (to the span level, or to the OS); `aged` = it waited
/// the purge delay in the cache, so the span level may purge it at once.
fn release_block(p: usize, aged: bool) {
    // SAFETY: a block leaving the cache: validated header, no user.
    unsafe { block::release(p, header_of(p), aged) };
}

// ---------------------------------------------------------------------------
// Thread mode
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Slot {
    /// Site slot the blocks were freed from (low 24 bits of the header's site word).
    site: u32,
    /// Cache generation of the last put (for age-based purging).
    gen: u32,
    count: u32,
    /// Oldest first.
    blocks: [usize; DEPTH],
}

const EMPTY_SLOT: Slot = Slot {
    site: 0,
    gen: 0,
    count: 0,
    blocks: [0; DEPTH],
};

/// One thread's cache.
pub struct ThreadCache {
    /// The block a BigCache hit handed out, freed again (0 = none): a loop
    /// on one block reuses it without indexing the slots.
    hot: usize,
    /// Its class.
    hot_class: u32,
    /// Cache generation of its put.
    hot_gen: u32,
    slots: [[Slot; NUM_CLASSES]; SITE_BUCKETS],
    /// Bytes held (class sizes) and reserved from the global bound.
    held: u64,
    budget: u64,
    /// Advanced by each purge pass.
    gen: u32,
}

/// What a put did with the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// Cached; `evicted` older blocks went back to the OS to make room.
    Cached { evicted: u32 },
    /// Not cached (out of range, over budget, or all slots busy); the caller unmaps it.
    Refused,
}

impl ThreadCache {
    pub const fn new() -> Self {
        ThreadCache {
            hot: 0,
            hot_class: 0,
            hot_gen: 0,
            slots: [[EMPTY_SLOT; NUM_CLASSES]; SITE_BUCKETS],
            held: 0,
            budget: 0,
            gen: 0,
        }
    }

    /// Bytes held by this thread's cache.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// A cached block for a request of `size` bytes from `site`, if any.
    #[inline]
    pub fn get(&mut self, size: usize, site: u32) -> Option<usize> {
        let k = class_of(size);
        self.pop(k, site).or_else(|| self.get_other_site(k))
    }

    /// The hit loop's lookup: the hot block, if it is of class `k`.
    #[inline(always)]
    pub fn pop_hot(&mut self, k: usize) -> Option<usize> {
        let p = self.hot_block(k)?;
        self.take_hot(p, class_bytes(k));
        Some(p)
    }

    /// The hot block, if it is of class `k`, left in place.
    #[inline(always)]
    pub fn hot_block(&self, k: usize) -> Option<usize> {
        (self.hot != 0 && self.hot_class as usize == k).then_some(self.hot)
    }

    /// The hot path's lookup: takes the hot block if it is `p` (not 0), of
    /// a class of `bytes` ([`class_bytes`]), as the thread's record of its
    /// last hit says.
    #[inline(always)]
    pub fn take_hot(&mut self, p: usize, bytes: u64) -> bool {
        if self.hot != p {
            return false;
        }
        debug_assert!(p != 0 && class_bytes(self.hot_class as usize) == bytes);
        self.hot = 0;
        self.held -= bytes;
        true
    }

    /// The hit loop's put: the block of the last hit, of class `k` (of
    /// `bytes`, [`class_bytes`]), as the hot block, if there is none and the
    /// budget already reserved holds it.
    #[inline(always)]
    pub fn push_hot(&mut self, p: usize, k: usize, bytes: u64) -> bool {
        debug_assert!(class_bytes(k) == bytes);
        if self.hot != 0 || self.held + bytes > self.budget {
            return false;
        }
        self.hot = p;
        self.hot_class = k as u32;
        self.hot_gen = self.gen;
        self.held += bytes;
        true
    }

    /// The hit path's lookup: the most recent block of class `k` (`< NUM_CLASSES`)
    /// that `site` freed, if its slot holds one.
    #[inline(always)]
    pub fn pop(&mut self, k: usize, site: u32) -> Option<usize> {
        let p = self.top(k, site)?;
        self.take_top(k, site);
        Some(p)
    }

    /// The block [`Self::pop`] would take, left in place.
    #[inline(always)]
    pub fn top(&self, k: usize, site: u32) -> Option<usize> {
        let slot = &self.slots[site as usize % SITE_BUCKETS][k];
        if slot.count == 0 || slot.site != site {
            return None;
        }
        Some(slot.blocks[(slot.count as usize - 1) % DEPTH])
    }

    /// Takes the block [`Self::top`] found.
    #[inline(always)]
    pub fn take_top(&mut self, k: usize, site: u32) {
        let slot = &mut self.slots[site as usize % SITE_BUCKETS][k];
        debug_assert!(slot.count > 0 && slot.site == site);
        slot.count -= 1;
        self.held -= class_bytes(k);
    }

    /// The free path's put of a block of class `k` freed at `site`, when it
    /// needs nothing else: a slot of that site with room, within the budget
    /// already reserved, no purge. False = nothing done (the caller takes [`Self::put`]).
    #[inline(always)]
    pub fn push(&mut self, p: usize, k: usize, site: u32) -> bool {
        let bytes = class_bytes(k);
        let gen = self.gen;
        let slot = &mut self.slots[site as usize % SITE_BUCKETS][k];
        let n = slot.count as usize;
        if n >= DEPTH || (n != 0 && slot.site != site) || self.held + bytes > self.budget {
            return false;
        }
        slot.site = site;
        slot.gen = gen;
        slot.blocks[n] = p;
        slot.count += 1;
        self.held += bytes;
        true
    }

    #[cold]
    fn get_other_site(&mut self, k: usize) -> Option<usize> {
        if let Some(p) = self.pop_hot(k) {
            return Some(p);
        }
        for b in 0..SITE_BUCKETS {
            let slot = &mut self.slots[b][k];
            if slot.count > 0 {
                slot.count -= 1;
                self.held -= class_bytes(k);
                return Some(slot.blocks[slot.count as usize]);
            }
        }
        None
    }

    /// After a miss for class `k`: a cached block of one of the next
    /// [`LARGER_CLASSES`] classes (at most twice the size), smallest first.
    /// Its pages are resident: the caller trims it to the request
    /// (`block::resize_in_place`, the rest goes back to the span level
    /// still resident) instead of mapping and faulting in fresh memory.
    pub fn get_larger(&mut self, k: usize) -> Option<usize> {
        if self.held == 0 {
            return None;
        }
        for j in k + 1..(k + 1 + LARGER_CLASSES).min(NUM_CLASSES) {
            if let Some(p) = self.get_other_site(j) {
                return Some(p);
            }
        }
        None
    }

    /// Offers a freed block (`usable` bytes, freed at `site`) to the cache.
    pub fn put(&mut self, p: usize, usable: usize, site: u32, purge: bool) -> Put {
        let Some(k) = floor_class(usable) else {
            return Put::Refused;
        };
        let bytes = class_size(k) as u64;
        if self.held + bytes > self.budget {
            // Chunks amortise the atomic; a small bound gets smaller chunks.
            let want = CHUNK.min(max_bytes()).max(bytes);
            if !reserve(want) {
                return Put::Refused;
            }
            self.budget += want;
        }
        let home = site as usize % SITE_BUCKETS;
        let b = if self.slots[home][k].count == 0 || self.slots[home][k].site == site {
            home
        } else {
            match (0..SITE_BUCKETS).find(|&b| self.slots[b][k].count == 0) {
                Some(b) => b,
                None => return Put::Refused,
            }
        };
        let gen = self.gen;
        let slot = &mut self.slots[b][k];
        let mut evicted = 0;
        if slot.count as usize == DEPTH {
            // Full: the oldest block goes back to the OS.
            let old = slot.blocks[0];
            slot.blocks.copy_within(1.., 0);
            slot.count -= 1;
            self.held -= bytes;
            release_block(old, false);
            evicted = 1;
        }
        slot.site = site;
        slot.gen = gen;
        slot.blocks[slot.count as usize] = p;
        slot.count += 1;
        self.held += bytes;
        if purge {
            purge_block_pages(p, bytes as usize);
        }
        Put::Cached { evicted }
    }

    /// Ages the cache by one purge pass: slots not refilled for three passes
    /// (at least one purge delay) are emptied. Returns blocks released.
    pub fn purge(&mut self) -> u32 {
        self.purge_pass(true)
    }

    fn purge_pass(&mut self, aged: bool) -> u32 {
        self.gen = self.gen.wrapping_add(1);
        let mut released = 0;
        if self.hot != 0 && self.gen.wrapping_sub(self.hot_gen) >= 3 {
            let p = self.hot;
            self.hot = 0;
            self.held -= class_bytes(self.hot_class as usize);
            release_block(p, aged);
            released += 1;
        }
        for b in 0..SITE_BUCKETS {
            for k in 0..NUM_CLASSES {
                let slot = &mut self.slots[b][k];
                if slot.count > 0 && self.gen.wrapping_sub(slot.gen) >= 3 {
                    released += slot.count;
                    self.held -= slot.count as u64 * class_size(k) as u64;
                    for &p in &slot.blocks[..slot.count as usize] {
                        release_block(p, aged);
                    }
                    slot.count = 0;
                }
            }
        }
        self.return_spare_budget();
        released
    }

    /// Releases every block and all budget (thread exit). Returns blocks released.
    pub fn flush(&mut self) -> u32 {
        self.flush_as(true)
    }

    /// [`Self::flush`] for reuse: the blocks go to the span level as freshly
    /// freed memory (kept resident for the purge delay), not as aged.
    pub fn flush_for_reuse(&mut self) -> u32 {
        self.flush_as(false)
    }

    fn flush_as(&mut self, aged: bool) -> u32 {
        if self.held == 0 {
            // No block to walk past; the budget a get left goes back.
            unreserve(self.budget);
            self.budget = 0;
            return 0;
        }
        self.gen = self.gen.wrapping_add(3);
        let released = self.purge_pass(aged);
        unreserve(self.budget);
        self.budget = 0;
        released
    }

    fn return_spare_budget(&mut self) {
        if self.held == 0 {
            // An empty cache keeps no budget: the bound is shared.
            unreserve(self.budget);
            self.budget = 0;
        } else if self.budget > self.held + CHUNK {
            let spare = (self.budget - self.held) / CHUNK * CHUNK;
            let spare = spare.min(self.budget - self.held);
            self.budget -= spare;
            unreserve(spare);
        }
    }
}

impl Default for ThreadCache {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------
// Global mode
// ---------------------------------------------------------------------------

static GLOBAL_SLOTS: [[AtomicUsize; GLOBAL_DEPTH]; NUM_CLASSES] =
    [const { [const { AtomicUsize::new(0) }; GLOBAL_DEPTH] }; NUM_CLASSES];
static GLOBAL_GEN_OF: [[AtomicU32; GLOBAL_DEPTH]; NUM_CLASSES] =
    [const { [const { AtomicU32::new(0) }; GLOBAL_DEPTH] }; NUM_CLASSES];
static GLOBAL_GEN: AtomicU32 = AtomicU32::new(0);

/// Takes a block for `size` bytes from the shared cache.
pub fn global_get(size: usize) -> Option<usize> {
    let k = class_of(size);
    for s in &GLOBAL_SLOTS[k] {
        let p = s.load(Ordering::Relaxed);
        if p != 0
            && s.compare_exchange(p, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            unreserve(class_size(k) as u64);
            return Some(p);
        }
    }
    None
}

/// [`ThreadCache::get_larger`] for the shared cache.
pub fn global_get_larger(k: usize) -> Option<usize> {
    for j in k + 1..(k + 1 + LARGER_CLASSES).min(NUM_CLASSES) {
        if let Some(p) = global_get(class_size(j)) {
            return Some(p);
        }
    }
    None
}

/// Offers a freed block to the shared cache.
pub fn global_put(p: usize, usable: usize, purge: bool) -> Put {
    let Some(k) = floor_class(usable) else {
        return Put::Refused;
    };
    let bytes = class_size(k) as u64;
    if !reserve(bytes) {
        return Put::Refused;
    }
    if purge {
        purge_block_pages(p, bytes as usize);
    }
    let gen = GLOBAL_GEN.load(Ordering::Relaxed);
    for (i, s) in GLOBAL_SLOTS[k].iter().enumerate() {
        if s.load(Ordering::Relaxed) == 0
            && s.compare_exchange(0, p, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            GLOBAL_GEN_OF[k][i].store(gen, Ordering::Relaxed);
            return Put::Cached { evicted: 0 };
        }
    }
    unreserve(bytes);
    Put::Refused
}

/// Ages the shared cache by one pass (rate-limited by the caller); releases
/// blocks that waited three passes. Returns blocks released.
pub fn global_purge(all: bool) -> u32 {
    global_release(all, true)
}

/// Moves every block of the shared cache to the span level as freshly freed
/// memory (for a miss that can reuse it). Returns blocks released.
pub fn global_flush_for_reuse() -> u32 {
    global_release(true, false)
}

fn global_release(all: bool, aged: bool) -> u32 {
    let gen = GLOBAL_GEN.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    let mut released = 0;
    for k in 0..NUM_CLASSES {
        for (i, s) in GLOBAL_SLOTS[k].iter().enumerate() {
            let p = s.load(Ordering::Relaxed);
            if p == 0 {
                continue;
            }
            let old = gen.wrapping_sub(GLOBAL_GEN_OF[k][i].load(Ordering::Relaxed)) >= 3;
            if (all || old)
                && s.compare_exchange(p, 0, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                unreserve(class_size(k) as u64);
                release_block(p, aged || !all);
                released += 1;
            }
        }
    }
    released
}

/// Bit `s` set: strategy `s` purges blocks as they enter the cache (one
/// shift on the hit path, where a load from `STRATEGIES` waited for the
/// strategy's own load).
const PURGES_ON_PUT: u32 = {
    assert!(STRATEGIES.len() <= 32);
    let mut m = 0;
    let mut s = 0;
    while s < STRATEGIES.len() {
        if STRATEGIES[s].purge_on_cache {
            m |= 1 << s;
        }
        s += 1;
    }
    m
};

/// Whether the strategy with this id purges blocks as they enter the cache.
#[inline(always)]
pub fn purges_on_put(strategy: u8) -> bool {
    PURGES_ON_PUT
        .checked_shr(u32::from(strategy))
        .is_some_and(|m| m & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_the_range_with_bounded_waste() {
        assert_eq!(class_size(0), MIN_SIZE);
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_SIZE);
        for k in 1..NUM_CLASSES {
            assert!(class_size(k) > class_size(k - 1));
            assert_eq!(class_of(class_size(k)), k);
            assert_eq!(class_of(class_size(k - 1) + 1), k);
        }
        let mut s = MIN_SIZE;
        while s <= MAX_SIZE {
            let k = class_of(s);
            assert!(class_size(k) >= s && (k == 0 || class_size(k - 1) < s));
            assert!((class_size(k) - s) * 4 <= s, "waste under 25% at {s}");
            s += 12_345;
        }
        assert_eq!(floor_class(2 << 20), Some(class_of(2 << 20)));
        assert_eq!(floor_class((2 << 20) + 4096), Some(class_of(2 << 20)));
        assert_eq!(floor_class(1000), None);
    }

    fn block(size: usize) -> usize {
        block::map_block(size, 16, 0, 0, 0).unwrap().ptr as usize
    }

    #[test]
    fn per_site_slots_hit_evict_and_fall_back() {
        let _s = crate::large::span_heap::test_serial();
        let mut c = ThreadCache::new();
        let size = 2 << 20;
        let blocks: Vec<usize> = (0..DEPTH + 1)
            .map(|_| block(class_size(class_of(size))))
            .collect();
        let usable = block::usable_size(header_of(blocks[0]));
        for &p in &blocks[..DEPTH] {
            assert_eq!(c.put(p, usable, 5, false), Put::Cached { evicted: 0 });
        }
        // A fifth block at the same site evicts the oldest.
        assert_eq!(
            c.put(blocks[DEPTH], usable, 5, false),
            Put::Cached { evicted: 1 }
        );
        assert_eq!(
            c.get(size, 5),
            Some(blocks[DEPTH]),
            "LIFO: most recent first"
        );
        // Another site falls back to site 5's blocks.
        assert_eq!(c.get(size, 6), Some(blocks[DEPTH - 1]));
        // A different class misses.
        assert_eq!(c.get(8 << 20, 5), None);
        assert!(c.held() > 0);
        let held_blocks = c.flush();
        assert_eq!(held_blocks, (DEPTH - 2) as u32);
        assert_eq!(c.held(), 0);
        for p in [blocks[DEPTH], blocks[DEPTH - 1]] {
            // SAFETY: a block the test mapped and no longer uses.
            unsafe { block::unmap_block(p, header_of(p)) };
        }
    }

    /// What a purge-on-cache sample is charged (`purged_pages_on_put`) is
    /// what the purge really drops: resident pages of the block before
    /// minus after, counted by `mincore`, huge pages or not.
    #[test]
    fn a_purging_put_is_charged_the_pages_it_drops() {
        let _s = crate::large::span_heap::test_serial();
        for size in [1 << 20, 6 << 20] {
            let p = block(class_size(class_of(size)));
            let usable = block::usable_size(header_of(p));
            let bytes = class_size(floor_class(usable).unwrap());
            let start = p & !(OS_PAGE - 1);
            let len = (p + bytes).next_multiple_of(OS_PAGE) - start;
            // SAFETY: the block's own bytes, past its header.
            unsafe { core::ptr::write_bytes(p as *mut u8, 1, usable) };
            let mut vec = vec![0u8; len / OS_PAGE];
            let resident = |vec: &mut [u8]| {
                crate::os::resident_pages(start as *mut u8, len, vec).unwrap() as u64
            };
            let before = resident(&mut vec);
            let mut c = ThreadCache::new();
            assert!(matches!(c.put(p, usable, 1, true), Put::Cached { .. }));
            let after = resident(&mut vec);
            let charged = purged_pages_on_put(p, usable);
            assert_eq!(before - after, charged, "{size}: dropped vs charged");
            if !crate::thp::granted() || size > 4 << 20 {
                assert!(charged > 0, "{size}: a purge that drops nothing");
            }
            c.flush();
        }
    }

    #[test]
    fn purge_releases_slots_after_three_passes() {
        let _s = crate::large::span_heap::test_serial();
        let mut c = ThreadCache::new();
        let p = block(1 << 20);
        let usable = block::usable_size(header_of(p));
        assert!(matches!(c.put(p, usable, 1, false), Put::Cached { .. }));
        assert_eq!(c.purge(), 0);
        assert_eq!(c.purge(), 0);
        assert_eq!(c.purge(), 1, "third pass releases it");
        assert_eq!(c.held(), 0);
        assert_eq!(c.get(1 << 20, 1), None);
        c.flush();
    }
}
