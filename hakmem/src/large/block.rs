//! Large blocks (above the last size class): one mapping each, a 16-byte header.
//!
//! ```text
//! mapping (starts 4 MiB-aligned) ─ [LargeHeader 16 B][block …………][slack]
//!                                   ^ region start    ^ p = start + offset
//! ```
//!
//! The header sits at the start of the 4 MiB region holding the block start
//! (`segment_map` says `LargeHeaderAtBase`), or, for alignments of 4 MiB and
//! more where the block itself starts a region, in the 16 bytes just before
//! the block (`LargeHeaderBefore`). Either way `free` finds it from the pointer
//! alone and checks that the pointer is the block start the header describes.
//! The magic word is written always and checked only in debug builds (or with
//! the `debug-checks` feature), as the origin analysis asked.
//!
//! Freed large blocks go to the BigCache (`bigcache.rs`) when it takes them;
//! how a block is mapped and kept follows the strategy chosen by `elo.rs`.

use crate::os::{self, OS_PAGE};
use crate::probe::{self, Component};
use crate::small::segment::SEGMENT_SIZE;
use crate::large::span_heap;
use crate::segment_map::{self, Region};

/// The header of a large block.
#[repr(C)]
pub struct LargeHeader {
    /// Length of the whole mapping in OS pages.
    pub len_pages: u32,
    /// Distance from the mapping start to the block, in bytes.
    pub offset: u32,
    /// Low 24 bits: call-site slot of the allocation (`profile.rs`), for
    /// BigCache keying; high 8 bits: the ELO strategy it was mapped with.
    pub site: u32,
    /// `MAGIC` (checked in debug builds only).
    pub magic: u32,
}

pub const HEADER_SIZE: usize = core::mem::size_of::<LargeHeader>();
const _: () = assert!(HEADER_SIZE == 16);
pub const MAGIC: u32 = 0x4841_4b4d; // "HAKM"
/// Hardened builds: the magic of a block waiting in the BigCache.
pub const FREED_MAGIC: u32 = 0x4652_4545; // "FREE"
/// Hardened builds: a PROT_NONE page after every large block (not counted in len_pages).
const GUARD: usize = if crate::hardening::ENABLED {
    OS_PAGE
} else {
    0
};

/// Per-thread large-block state: BigCache slots, exploration RNG, the one
/// allocation being measured for ELO, and the purge clock.
pub struct ThreadState {
    pub cache: crate::large::bigcache::ThreadCache,
    pub rng: crate::large::elo::Rng,
    pub sample: crate::large::evolution::Sample,
    /// Large allocations until the next measured one.
    pub sample_countdown: u32,
    /// Large operations since the last purge-clock check.
    pub ops: u32,
    /// When this thread's BigCache was last aged, in monotonic ns.
    pub aged_ns: u64,
    /// Options this path needs, copied at heap set-up (they never change).
    pub mode: crate::options::BigCacheMode,
    pub profiling: bool,
    pub purge_delay_ns: u64,
}

impl ThreadState {
    pub const fn new() -> Self {
        ThreadState {
            cache: crate::large::bigcache::ThreadCache::new(),
            rng: crate::large::elo::Rng(0x9e37_79b9_7f4a_7c15),
            sample: crate::large::evolution::Sample::NONE,
            sample_countdown: 0,
            ops: 0,
            aged_ns: 0,
            mode: crate::options::BigCacheMode::Off,
            profiling: false,
            purge_delay_ns: 0,
        }
    }

    /// Copies the options into the thread's state (at heap set-up).
    pub fn configure(&mut self, o: &crate::options::Options) {
        self.mode = o.bigcache;
        self.profiling = o.profiling();
        self.purge_delay_ns = o.purge_delay_ms.saturating_mul(1_000_000);
        self.aged_ns = crate::os::monotonic_ns();
        // A different exploration sequence per thread.
        self.rng.0 ^= (self as *mut Self as u64).rotate_left(17) | 1;
    }
}

/// Packs a site slot and a strategy id into the header's site word.
pub fn site_word(site_slot: u32, strategy: u8) -> u32 {
    (site_slot & 0x00ff_ffff) | (strategy as u32) << 24
}

/// The site slot of a header's site word.
pub fn site_of(word: u32) -> u32 {
    word & 0x00ff_ffff
}

/// The strategy id of a header's site word.
pub fn strategy_of(word: u32) -> u8 {
    (word >> 24) as u8
}

impl Default for ThreadState {
    fn default() -> Self {
        Self::new()
    }
}

/// A mapped large block before it is handed out.
#[derive(Clone, Copy)]
pub struct Block {
    pub ptr: *mut u8,
    /// True when the memory is fresh from the OS (so already zero).
    pub zeroed: bool,
}

/// The header of the large block at `p`, validated, or None if `p` is not the
/// start of a live large block.
///
/// # Safety
/// `region` is `segment_map::lookup(p)` and is one of the large kinds.
#[inline]
pub unsafe fn header(p: usize, region: Region) -> Option<*mut LargeHeader> {
    let base = p & !(SEGMENT_SIZE - 1);
    if region == Region::Span {
        return span_header(p);
    }
    let (h, expected_offset) = match region {
        Region::LargeHeaderAtBase => (base as *mut LargeHeader, p - base),
        Region::LargeHeaderBefore if p == base => ((p - HEADER_SIZE) as *mut LargeHeader, OS_PAGE),
        _ => return None,
    };
    // SAFETY: the region is ours, so the header address is mapped.
    let hdr = unsafe { &*h };
    if hdr.offset as usize != expected_offset || p % 16 != 0 {
        return None;
    }
    if cfg!(any(debug_assertions, feature = "debug-checks"))
        && hdr.magic != MAGIC
        && hdr.magic != FREED_MAGIC
    {
        crate::api::corrupt_header(p as *mut u8);
    }
    Some(h)
}

/// The header of the span block at `p`: a live span must start at the page
/// holding `p - HEADER_SIZE` (the page map says so, not the header itself)
/// and the header must describe that span.
#[inline]
fn span_header(p: usize) -> Option<*mut LargeHeader> {
    let start = p.wrapping_sub(HEADER_SIZE);
    let pages = span_heap::used_span_at(start)?;
    let h = start as *mut LargeHeader;
    // SAFETY: a live span's first page is mapped and holds its header.
    let hdr = unsafe { &*h };
    if hdr.offset as usize != HEADER_SIZE || hdr.len_pages as usize != pages {
        return None;
    }
    if cfg!(any(debug_assertions, feature = "debug-checks"))
        && hdr.magic != MAGIC
        && hdr.magic != FREED_MAGIC
    {
        crate::api::corrupt_header(p as *mut u8);
    }
    Some(h)
}

/// The owner tag of the calling thread's heap (for [`span_heap::owner`]).
pub fn owner_tag(heap: *const crate::small::heap::Heap) -> u32 {
    (heap as usize >> 12) as u32
}

/// True if the block at `p` (validated) lives in a span.
#[inline]
pub fn in_span(p: usize) -> bool {
    segment_map::lookup(p) == Region::Span
}

/// The owner tag recorded for the span block at `p`.
pub fn span_owner(p: usize) -> u32 {
    span_heap::owner(p - HEADER_SIZE)
}

/// Bytes usable at `p` (a validated large block).
pub(crate) fn usable_size(h: *const LargeHeader) -> usize {
    // SAFETY: validated header.
    let hdr = unsafe { &*h };
    hdr.len_pages as usize * OS_PAGE - hdr.offset as usize
}

/// Maps a block of at least `size` usable bytes aligned to `align`, following
/// `strategy` (an index into `elo::STRATEGIES`); `site` is the header's site word.
pub fn map_block(size: usize, align: usize, site: u32, strategy: u8, owner: u32) -> Option<Block> {
    let s = &crate::large::elo::STRATEGIES[strategy as usize];
    let mapped = size.checked_add(size / 100 * s.slack_pct as usize)?;
    // Huge pages and pre-faulting pay up front for a block that is touched
    // whole and reused from the BigCache. A block too big to cache is more often
    // a reserve touched in part (`sort -S 256M`'s buffer): there, huge pages
    // meant zeroing and compacting 2 MiB per touch, and sort ran 20% slower
    // than on glibc.
    let up_front = size <= crate::large::bigcache::MAX_SIZE;
    if align <= 16 && !crate::hardening::ENABLED {
        let pages = page_round(mapped.checked_add(HEADER_SIZE)?)? / OS_PAGE;
        if pages <= span_heap::MAX_SPAN_PAGES {
            let populate = s.populate && up_front;
            if let Some(b) = map_span(pages, size, site_word(site, strategy), populate, owner) {
                return Some(b);
            }
            // No arena could be reserved (RLIMIT_AS, address space): a
            // mapping of its own needs less.
        }
    }
    let block = map_raw(
        mapped,
        align,
        site_word(site, strategy),
        s.hugepage && up_front,
    )?;
    if s.populate && up_front {
        os::populate(block.ptr, size);
    }
    Some(block)
}

/// A block in a span of `pages` pages: resident memory freed at any size is
/// reused first (no fault, no syscall); `populate` applies only to pages
/// fresh from the OS. Huge-page advice is not given on spans (it would split
/// the arena's mapping, and this kernel gives none: see `elo.rs`).
fn map_span(pages: usize, size: usize, site: u32, populate: bool, owner: u32) -> Option<Block> {
    let t = probe::now();
    let span = span_heap::alloc(pages, owner)?;
    write_header(span.start as *mut LargeHeader, pages * OS_PAGE, HEADER_SIZE, site);
    let p = span.start + HEADER_SIZE;
    if populate && !span.dirty {
        os::populate(p as *mut u8, size);
    }
    if probe::tracing() {
        probe::emit(Component::Header, t, 0);
    }
    Some(Block {
        ptr: p as *mut u8,
        zeroed: !span.dirty,
    })
}

/// Maps the block; `hugepage` asks for transparent huge pages *before* the
/// header is written (a 4 KiB page already present in a 2 MiB range keeps the
/// kernel from putting a huge page there at the first fault).
fn map_raw(size: usize, align: usize, site: u32, hugepage: bool) -> Option<Block> {
    let align = align.max(16);
    let t = probe::now();
    let p = if align < SEGMENT_SIZE {
        let offset = align.max(HEADER_SIZE);
        let len = page_round(offset.checked_add(size)?)?;
        let base = os::map_aligned(len + GUARD, SEGMENT_SIZE)? as usize;
        if hugepage {
            os::advise_hugepage(base as *mut u8, len);
        }
        if crate::hardening::ENABLED {
            crate::hardening::guard((base + len) as *mut u8, GUARD);
        }
        write_header(base as *mut LargeHeader, len, offset, site);
        segment_map::set(base, Region::LargeHeaderAtBase);
        base + offset
    } else {
        // The block starts a 4 MiB region; one OS page in front holds the header.
        let len = page_round(size.checked_add(OS_PAGE)?)?;
        let over = len.checked_add(align)?.checked_add(GUARD)?;
        let raw = os::map(over)? as usize;
        let p = (raw + OS_PAGE + align - 1) & !(align - 1);
        let start = p - OS_PAGE;
        if start > raw {
            os::unmap(raw as *mut u8, start - raw);
        }
        let tail = raw + over - (start + len + GUARD);
        if tail > 0 {
            os::unmap((start + len + GUARD) as *mut u8, tail);
        }
        if crate::hardening::ENABLED {
            crate::hardening::guard((start + len) as *mut u8, GUARD);
        }
        if hugepage {
            os::advise_hugepage(start as *mut u8, len);
        }
        write_header((p - HEADER_SIZE) as *mut LargeHeader, len, OS_PAGE, site);
        segment_map::set(p, Region::LargeHeaderBefore);
        p
    };
    if probe::tracing() {
        probe::emit(Component::Header, t, 0);
    }
    Some(Block {
        ptr: p as *mut u8,
        zeroed: true,
    })
}

fn page_round(n: usize) -> Option<usize> {
    Some(n.checked_add(OS_PAGE - 1)? & !(OS_PAGE - 1))
}

fn write_header(h: *mut LargeHeader, len: usize, offset: usize, site: u32) {
    // SAFETY: `h` is the first bytes of (or just before the block in) a fresh mapping.
    unsafe {
        h.write(LargeHeader {
            len_pages: (len / OS_PAGE) as u32,
            offset: offset as u32,
            site,
            magic: MAGIC,
        })
    };
}

/// Unmaps the large block at `p` whose header is `h`.
pub(crate) fn unmap_block(p: usize, h: *mut LargeHeader) {
    // SAFETY: validated header of a block nobody uses any more.
    let (len, offset) = unsafe { ((*h).len_pages as usize * OS_PAGE, (*h).offset as usize) };
    let start = p - offset;
    if in_span(p) {
        span_heap::free(start);
        crate::large::purge_thread::notify();
        return;
    }
    unmap_direct(p, start, len);
}

/// Gives up the block at `p` like [`unmap_block`]; `aged` = it already waited
/// the purge delay (in the BigCache), so a span may be purged at the next pass.
pub(crate) fn release(p: usize, h: *mut LargeHeader, aged: bool) {
    if !aged || !in_span(p) {
        return unmap_block(p, h);
    }
    span_heap::free_aged(p - HEADER_SIZE);
    crate::large::purge_thread::notify();
}

fn unmap_direct(p: usize, start: usize, len: usize) {
    segment_map::clear(p & !(SEGMENT_SIZE - 1));
    os::unmap(start as *mut u8, len + GUARD);
}

/// Grows or shrinks the block at `p` in place to at least `new_size` usable
/// bytes. Returns false if the mapping cannot change without moving.
pub(crate) fn resize_in_place(p: usize, h: *mut LargeHeader, new_size: usize) -> bool {
    if crate::hardening::ENABLED {
        return false; // the guard page sits right after the mapping
    }
    // SAFETY: validated header.
    let hdr = unsafe { &mut *h };
    let offset = hdr.offset as usize;
    let old_len = hdr.len_pages as usize * OS_PAGE;
    let Some(new_len) = offset.checked_add(new_size).and_then(page_round) else {
        return false;
    };
    if new_len == old_len {
        return true;
    }
    if new_len / OS_PAGE > u32::MAX as usize {
        return false;
    }
    if in_span(p) {
        if !span_heap::resize(p - offset, new_len / OS_PAGE) {
            return false;
        }
        hdr.len_pages = (new_len / OS_PAGE) as u32;
        return true;
    }
    if !os::remap_in_place((p - offset) as *mut u8, old_len, new_len) {
        return false;
    }
    hdr.len_pages = (new_len / OS_PAGE) as u32;
    true
}
