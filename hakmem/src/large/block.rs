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

use crate::large::span_heap;
use crate::layout::SEGMENT_SIZE;
use crate::os::OS_PAGE;
use crate::probe::{self, Component};
use crate::segment_map::{self, Region};
use crate::vm;

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
/// Hardened builds: a PROT_NONE page after every large block (not counted in
/// len_pages). A span block's span holds it as its last page
/// ([`span_pages`]); it becomes ordinary memory again when the span is freed.
const GUARD: usize = if crate::hardening::ENABLED {
    OS_PAGE
} else {
    0
};
/// [`GUARD`] in pages.
const GUARD_PAGES: usize = GUARD / OS_PAGE;

/// The length in pages of the span that holds a span block of `block_pages`
/// pages (its header's `len_pages`): the block, plus its guard page in
/// hardened builds.
#[inline(always)]
pub const fn span_pages(block_pages: usize) -> usize {
    block_pages + GUARD_PAGES
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
        crate::diag::corrupt_header(p);
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
    if hdr.offset as usize != HEADER_SIZE || span_pages(hdr.len_pages as usize) != pages {
        return None;
    }
    if cfg!(any(debug_assertions, feature = "debug-checks"))
        && hdr.magic != MAGIC
        && hdr.magic != FREED_MAGIC
    {
        crate::diag::corrupt_header(p);
    }
    Some(h)
}

/// The owner tag of a thread's large-block state at address `state` (for
/// [`span_heap::owner`]): two live threads' tags differ unless their states
/// lie a multiple of 64 GiB apart (then a cross-thread free is only treated
/// as a local one: it waits in the freeing thread's cache).
pub fn owner_tag(state: usize) -> u32 {
    (state >> 4) as u32
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
    if align <= 16 {
        let pages = page_round(mapped.checked_add(HEADER_SIZE)?)? / OS_PAGE;
        if span_pages(pages) <= span_heap::MAX_SPAN_PAGES {
            let populate = s.populate && up_front;
            if let Some(b) = map_span(pages, size, site_word(site, strategy), populate, owner) {
                return Some(b);
            }
            // No arena could be reserved (RLIMIT_AS, address space): a
            // mapping of its own needs less.
        }
    }
    let (word, hugepage) = (site_word(site, strategy), s.hugepage && up_front);
    let block = match map_raw(mapped, align, word, hugepage) {
        Some(b) => b,
        // The strategy's slack did not fit (RLIMIT_AS, address space) where
        // the block alone may: slack is room to grow, never a reason for
        // ENOMEM (`fault_injection`'s RLIMIT_AS child failed about 1 run in
        // 30 when the learner explored `slack` for a 64 MiB block).
        None if mapped > size => map_raw(size, align, word, hugepage)?,
        None => return None,
    };
    if s.populate && up_front {
        vm::populate(block.ptr, size);
    }
    Some(block)
}

/// A block in a span of `pages` pages: resident memory freed at any size is
/// reused first (no fault, no syscall); `populate` applies only to pages
/// fresh from the OS. Huge-page advice is not given per span (it would split
/// the arena's mapping): the arena is advised as a whole where the kernel
/// gives huge pages (`span_heap::grow`).
fn map_span(pages: usize, size: usize, site: u32, populate: bool, owner: u32) -> Option<Block> {
    let t = probe::stamp_if_tracing();
    let span = span_heap::alloc(span_pages(pages), owner)?;
    if crate::hardening::ENABLED {
        // SAFETY: the span's last page, past the block's own pages, in an
        // arena of ours; nothing is stored there while the block lives.
        if !unsafe { vm::guard((span.start + pages * OS_PAGE) as *mut u8, GUARD) } {
            // No guard (the kernel's mapping count is exhausted): the span
            // goes back, and the block gets a mapping of its own.
            span_heap::free(span.start);
            return None;
        }
    }
    // A header written at the start of a clean, advised 2 MiB faults in a
    // huge page: timed for the cost meter (`thp.rs`).
    let first_touch = !span.dirty
        && span.start % crate::layout::HUGE_PAGE == 0
        && span.pages * OS_PAGE >= crate::layout::HUGE_PAGE
        && span_heap::advised();
    let header = || {
        write_header(
            span.start as *mut LargeHeader,
            pages * OS_PAGE,
            HEADER_SIZE,
            site,
        )
    };
    if first_touch {
        crate::thp::time_first_touch(header);
    } else {
        header();
    }
    let p = span.start + HEADER_SIZE;
    if populate && !span.dirty {
        vm::populate(p as *mut u8, size);
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
    let t = probe::stamp_if_tracing();
    let p = if align < SEGMENT_SIZE {
        let offset = align.max(HEADER_SIZE);
        let len = page_round(offset.checked_add(size)?)?;
        let base = vm::map_aligned(len + GUARD, SEGMENT_SIZE)? as usize;
        if hugepage {
            vm::advise_thp(base as *mut u8, len, true);
        }
        if crate::hardening::ENABLED {
            // SAFETY: the guard page just past the block's own pages, in the fresh mapping.
            unsafe { vm::guard((base + len) as *mut u8, GUARD) };
        }
        write_header(base as *mut LargeHeader, len, offset, site);
        segment_map::set(base, Region::LargeHeaderAtBase);
        base + offset
    } else {
        // The block starts a 4 MiB region; one OS page in front holds the header.
        let len = page_round(size.checked_add(OS_PAGE)?)?;
        let over = len.checked_add(align)?.checked_add(GUARD)?;
        let raw = vm::map(over)? as usize;
        let p = (raw + OS_PAGE + align - 1) & !(align - 1);
        let start = p - OS_PAGE;
        if start > raw {
            // SAFETY: the unused head of the fresh mapping.
            unsafe { vm::unmap(raw as *mut u8, start - raw) };
        }
        let tail = raw + over - (start + len + GUARD);
        if tail > 0 {
            // SAFETY: the unused tail of the fresh mapping.
            unsafe { vm::unmap((start + len + GUARD) as *mut u8, tail) };
        }
        if crate::hardening::ENABLED {
            // SAFETY: the guard page just past the block's own pages, in the fresh mapping.
            unsafe { vm::guard((start + len) as *mut u8, GUARD) };
        }
        if hugepage {
            vm::advise_thp(start as *mut u8, len, true);
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
///
/// # Safety
/// `h` is the validated header of the block at `p` ([`header`]), and nobody uses the block any more.
pub(crate) unsafe fn unmap_block(p: usize, h: *mut LargeHeader) {
    // SAFETY: the caller's contract: a validated header.
    let (len, offset) = unsafe { ((*h).len_pages as usize * OS_PAGE, (*h).offset as usize) };
    let start = p - offset;
    if in_span(p) {
        if unguard_span(start, len) {
            span_heap::free(start);
            crate::background::notify();
        }
        return;
    }
    // SAFETY: not a span block: its own mapping, unused by the caller's contract.
    unsafe { unmap_direct(p, start, len) };
}

/// Gives up the block at `p` like [`unmap_block`]; `aged` = it already waited
/// the purge delay (in the BigCache), so a span may be purged at the next pass.
///
/// # Safety
/// As [`unmap_block`].
pub(crate) unsafe fn release(p: usize, h: *mut LargeHeader, aged: bool) {
    if !aged || !in_span(p) {
        // SAFETY: the caller's contract.
        return unsafe { unmap_block(p, h) };
    }
    // SAFETY: the caller's contract: a validated header.
    let len = unsafe { (*h).len_pages } as usize * OS_PAGE;
    if !unguard_span(p - HEADER_SIZE, len) {
        return;
    }
    span_heap::free_aged(p - HEADER_SIZE);
    crate::background::notify();
}

/// Hardened builds: turns the guard page after the span block at `start`
/// (`len` bytes, header included) back into ordinary memory, so the span can
/// serve any later request. False if the kernel refused: the span is then
/// never freed (a span handed out again with a guard inside would fault).
fn unguard_span(start: usize, len: usize) -> bool {
    if !crate::hardening::ENABLED {
        return true;
    }
    // SAFETY: the guard page map_span put after this live span's block.
    let ok = unsafe { vm::unguard((start + len) as *mut u8, GUARD) };
    if !ok {
        crate::diag::warn(format_args!(
            "a large block's guard page could not be lifted; its span is kept"
        ));
    }
    ok
}

/// Resizes the span block at `start` from `old_len` to `new_len` bytes
/// (header included); hardened builds move its guard page along. A span
/// grows by taking the pages after its guard first, and shrinks only once
/// the pages it gives up hold no guard, so a span that goes back to the free
/// lists is ordinary memory. False (nothing changed) if it cannot.
fn resize_span(start: usize, old_len: usize, new_len: usize) -> bool {
    let (old_pages, new_pages) = (old_len / OS_PAGE, new_len / OS_PAGE);
    if !crate::hardening::ENABLED {
        return span_heap::resize(start, new_pages);
    }
    let grow = new_len > old_len;
    if grow && !span_heap::resize(start, span_pages(new_pages)) {
        return false;
    }
    if !move_guard(start + old_len, start + new_len) {
        if grow {
            // The pages just taken are ordinary memory: they go back as they came.
            span_heap::resize(start, span_pages(old_pages));
        }
        return false;
    }
    grow || span_heap::resize(start, span_pages(new_pages))
}

/// Hardened builds: puts the guard page at `from` at `to` instead (both in a
/// live span block's span): the new guard first, so the block is never
/// without one. False if the kernel refused: then neither page changed, or
/// (both refusals at once, never seen) a warning says a guard stays behind.
fn move_guard(from: usize, to: usize) -> bool {
    // SAFETY: `to` is a page of the span past the block's new end: nothing is
    // stored there while the block lives.
    if !unsafe { vm::guard(to as *mut u8, GUARD) } {
        return false;
    }
    // SAFETY: the block's guard page, in its span.
    if unsafe { vm::unguard(from as *mut u8, GUARD) } {
        return true;
    }
    // SAFETY: the guard just put at `to`, in the span.
    if !unsafe { vm::unguard(to as *mut u8, GUARD) } {
        crate::diag::warn(format_args!(
            "a large block's guard page could not be moved; a second one stays"
        ));
    }
    false
}

/// Unmaps a block that has a mapping of its own.
///
/// # Safety
/// `[start, start+len+GUARD)` is that mapping, unused.
unsafe fn unmap_direct(p: usize, start: usize, len: usize) {
    segment_map::clear(p & !(SEGMENT_SIZE - 1));
    // SAFETY: the block's whole mapping (header, pages, guard), unused by contract.
    unsafe { vm::unmap(start as *mut u8, len + GUARD) };
}

/// Grows or shrinks the block at `p` in place to at least `new_size` usable
/// bytes. Returns false if the mapping cannot change without moving.
///
/// # Safety
/// `h` is the validated header of the live block at `p` ([`header`]), and no
/// byte past `new_size` is in use.
pub(crate) unsafe fn resize_in_place(p: usize, h: *mut LargeHeader, new_size: usize) -> bool {
    if crate::hardening::ENABLED && !in_span(p) {
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
        let start = p - offset;
        if !resize_span(start, old_len, new_len) {
            return false;
        }
        hdr.len_pages = (new_len / OS_PAGE) as u32;
        return true;
    }
    // SAFETY: the block's own mapping; what a shrink cuts off is unused by contract.
    if !unsafe { vm::remap_in_place((p - offset) as *mut u8, old_len, new_len) } {
        return false;
    }
    hdr.len_pages = (new_len / OS_PAGE) as u32;
    true
}
