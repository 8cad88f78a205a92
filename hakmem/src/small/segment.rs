//! Segments: 4 MiB aligned chunks of memory from the OS, cut into pages of
//! one kind, with their page descriptors in a header at the start.
//!
//! ```text
//! segment (4 MiB, aligned)  ─ header (8 KiB): owner, flags, page descriptors
//!   ├── page 0   (starts after the header)
//!   ├── page 1 … page N-1   (64 KiB each for Small, 512 KiB Medium, 2 MiB Big)
//! ```
//!
//! Pointer → page is `(p & !(4 MiB-1))` then `(p - segment) >> page_shift`: no
//! per-block header, no search. `segment_map` says whether the region is one
//! of ours before anything reads the header.
//!
//! Ownership: a segment belongs to one heap (`owner`), whose thread alone
//! changes its pages. Other threads only push on a page's remote list (its
//! [`RemoteFrees`] in `remote`, on lines apart from the descriptors) and
//! then raise `remote_pending` (on a line of its own), in that order: the owner clears the flag
//! before scanning, so a push is either seen by the scan or re-raises the flag
//! (both sides use SeqCst). Because the flag is written after the push,
//! segment memory is never unmapped: a released segment goes to a pool and
//! only its physical pages go back to the OS (madvise), so a late flag write
//! always hits mapped memory. Pooled and abandoned segments sit on lock-free
//! stacks (no lock a forked child could inherit).

use crate::options::HugePages;
use crate::os;
use crate::segment_map::{self, Region};
use crate::small::page::{Page, RemoteFrees};
use crate::stack::{StackNode, TaggedStack};
use crate::vm;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::layout::HUGE_PAGE;
pub use crate::layout::SEGMENT_SIZE;
/// Bytes at the start of a segment taken by its header; page 0 starts here.
pub const SEGMENT_HEADER: usize = crate::small::size_class::MAX_CLASS_ALIGN;
/// Most pages a segment can have (Small kind).
pub const MAX_PAGES: usize = 64;
/// `carved_class` of a page whose last class is not known.
pub const NO_CLASS: u8 = u8::MAX;

/// The page size of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageKind {
    /// 64 KiB pages, blocks up to 8 KiB.
    Small = 0,
    /// 512 KiB pages, blocks up to 64 KiB.
    Medium = 1,
    /// 2 MiB pages, blocks up to 512 KiB.
    Big = 2,
}

impl PageKind {
    pub const fn page_shift(self) -> u32 {
        match self {
            PageKind::Small => 16,
            PageKind::Medium => 19,
            PageKind::Big => 21,
        }
    }

    pub const fn page_count(self) -> usize {
        SEGMENT_SIZE >> self.page_shift()
    }
}

/// A value on a cache line of its own (the fields after it start on the next).
#[repr(C, align(64))]
pub struct OwnLine<T>(pub T);

impl<T> core::ops::Deref for OwnLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The segment header. Three kinds of cache line: the first ones are read
/// by every free and written rarely (by the owner); `remote_pending` and
/// `remote` are written by other threads; each page descriptor is one line
/// the owner's fast path writes.
#[repr(C)]
pub struct Segment {
    /// Address of the owning heap; 0 while abandoned or pooled. Read by any thread.
    pub owner: AtomicUsize,
    /// `page_kind.page_shift()`, cached for the free path.
    pub page_shift: u32,
    pub kind: PageKind,
    /// The mapping is advised for transparent huge pages (survives pooling:
    /// pool purges keep the first OS page, where this field lives).
    pub thp: bool,
    /// Bit i: page i is not carved into blocks (owner only).
    pub free_pages: u64,
    /// Bit i: page i is free and its memory not yet given back (owner only).
    pub dirty_pages: u64,
    /// Bit i: page i's memory was not written since the OS mapped or purged
    /// it, so it reads zero (owner only; kept through pooling while the
    /// kind stays). `calloc` leaves the blocks carved from it uncleared.
    pub zero_pages: u64,
    /// When a page was last freed, in monotonic ns (purge clock).
    pub last_release_ns: u64,
    /// Per free dirty page: the class its memory was last carved for
    /// ([`NO_CLASS`]: none known). Carving it for that class again writes
    /// the same block starts, which are resident (and if the descriptor
    /// kept its free list, writes nothing); another class of blocks larger
    /// than an OS page writes elsewhere and faults.
    pub carved_class: [u8; MAX_PAGES],
    /// Links in the owning heap's list of segments of this kind.
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// Link in the pool / abandoned stacks (read racily by poppers, hence atomic).
    pub stack_next: AtomicUsize,
    /// When the segment entered the pool or the abandoned stack, in monotonic ns.
    pub pooled_at_ns: AtomicU64,
    /// Non-zero: a page may hold remote frees the owner has not collected.
    pub remote_pending: OwnLine<AtomicU32>,
    /// Per page: the blocks other threads freed into it.
    pub remote: [RemoteFrees; MAX_PAGES],
    /// The page descriptors, one cache line each.
    pub pages: [Page; MAX_PAGES],
}

const _: () = assert!(core::mem::size_of::<Segment>() <= SEGMENT_HEADER);

impl Segment {
    /// The segment holding `addr` (no check that it is one).
    #[inline(always)]
    pub fn of(addr: usize) -> *mut Segment {
        (addr & !(SEGMENT_SIZE - 1)) as *mut Segment
    }

    /// The index of the page holding `addr`.
    ///
    /// # Safety
    /// `seg` is a live segment and `addr` lies in its 4 MiB.
    #[inline(always)]
    unsafe fn index_of(seg: *mut Segment, addr: usize) -> usize {
        // SAFETY: the caller's contract; `addr` lies in this 4 MiB segment and
        // page_shift ≥ 16, so the index is below 64 = MAX_PAGES.
        let idx = unsafe { (addr - seg as usize) >> (*seg).page_shift };
        debug_assert!(idx < MAX_PAGES);
        idx
    }

    /// The remote list of page `i` of `seg`.
    ///
    /// # Safety
    /// `seg` is a live segment and `i < MAX_PAGES`.
    #[inline(always)]
    unsafe fn remote_at(seg: *mut Segment, i: usize) -> *const RemoteFrees {
        // SAFETY: the caller's contract: an element of the `remote` array.
        unsafe { (&raw const (*seg).remote).cast::<RemoteFrees>().add(i) }
    }

    /// The page descriptor holding `addr`.
    ///
    /// # Safety
    /// `seg` is a live segment and `addr` lies in its 4 MiB.
    #[inline(always)]
    pub unsafe fn page_of(seg: *mut Segment, addr: usize) -> *mut Page {
        // SAFETY: the caller's contract; the index is below MAX_PAGES.
        unsafe {
            (&raw mut (*seg).pages)
                .cast::<Page>()
                .add(Self::index_of(seg, addr))
        }
    }

    /// The remote list of the page holding `addr`.
    ///
    /// # Safety
    /// As [`Segment::page_of`].
    #[inline(always)]
    pub unsafe fn remote_of(seg: *mut Segment, addr: usize) -> *const RemoteFrees {
        // SAFETY: the caller's contract; the index is below MAX_PAGES.
        unsafe { Self::remote_at(seg, Self::index_of(seg, addr)) }
    }

    /// Moves every page's remote frees to its free list and gives the pages
    /// left empty back to the segment ([`Segment::free_page`]): what a
    /// thread's exit and the background pass do with a segment no heap will
    /// allocate from again before it is adopted.
    ///
    /// # Safety
    /// The calling thread owns `seg`: an exiting heap's (which clears its
    /// queues after), or one popped from the abandoned stack (its pages in
    /// no queue); no reference to it is held.
    pub unsafe fn collect_and_free_empty(seg: *mut Segment, now_ns: u64) {
        // SAFETY: the caller's contract; each statement reaches the segment
        // through `seg` only.
        unsafe {
            for i in 0..(*seg).kind.page_count() {
                let page: *mut Page = &raw mut (*seg).pages[i];
                if (*page).in_use {
                    Segment::collect(seg, page);
                    if (*page).used() == 0 {
                        (*seg).free_page(page, now_ns);
                    }
                }
            }
        }
    }

    /// Moves the remote frees of `page` to its free list ([`Page::collect`]).
    /// Returns how many moved.
    ///
    /// # Safety
    /// `page` is a descriptor of `seg`, a segment the calling thread owns.
    #[inline]
    pub unsafe fn collect(seg: *mut Segment, page: *mut Page) -> u32 {
        // SAFETY: the caller's contract; the remote list and the descriptor
        // are distinct fields, the descriptor the owner's alone.
        unsafe {
            let remote = &*Self::remote_at(seg, (*seg).page_index(page));
            (*page).collect(remote, seg as usize)
        }
    }

    fn base(&self) -> usize {
        self as *const Segment as usize
    }

    /// Index of `page` in this segment.
    pub fn page_index(&self, page: *const Page) -> usize {
        (page as usize - self.pages.as_ptr() as usize) / core::mem::size_of::<Page>()
    }

    fn all_pages(&self) -> u64 {
        let n = self.kind.page_count();
        if n == 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }

    /// True when no page is carved.
    pub fn is_empty(&self) -> bool {
        self.free_pages == self.all_pages()
    }

    pub fn has_free_page(&self) -> bool {
        self.free_pages != 0
    }

    /// Resets the header for `kind`, all pages free, owned by `owner`.
    /// `dirty`: the memory may be resident (a segment of the dirty pool).
    fn init(&mut self, kind: PageKind, owner: usize, dirty: bool) {
        let same_kind = self.kind == kind;
        self.kind = kind;
        self.page_shift = kind.page_shift();
        self.free_pages = self.all_pages();
        // Which free pages may be resident: from the dirty pool, the pages
        // the segment freed and did not purge when it kept its kind (its
        // `dirty_pages`, kept through pooling), all of them when it changes
        // kind. With transparent huge pages, the first touch of a page makes
        // its whole 2 MiB resident: count every page, so that purging gives
        // all of it back.
        self.dirty_pages = if self.thp || (dirty && !same_kind) {
            self.all_pages()
        } else if dirty {
            self.dirty_pages & self.all_pages()
        } else {
            0
        };
        if !(dirty && same_kind) {
            self.carved_class = [NO_CLASS; MAX_PAGES];
        }
        // A segment that is not dirty was mapped or purged (all but its first
        // OS page, inside the header) since it last held blocks; a dirty one
        // keeps what it knew if its pages keep their bounds.
        self.zero_pages = if !dirty {
            self.all_pages()
        } else if same_kind {
            self.zero_pages & self.all_pages()
        } else {
            0
        };
        self.last_release_ns = 0;
        self.next = ptr::null_mut();
        self.prev = ptr::null_mut();
        for p in self.pages.iter_mut() {
            *p = Page::EMPTY;
        }
        for r in self.remote.iter_mut() {
            *r = RemoteFrees::EMPTY;
        }
        self.remote_pending.store(0, Ordering::Relaxed);
        self.owner.store(owner, Ordering::Release);
    }

    /// Takes a free page for blocks of `class`; returns its descriptor.
    pub fn alloc_page(&mut self, class: usize) -> Option<*mut Page> {
        if self.free_pages == 0 {
            return None;
        }
        // A page whose memory may still be resident first, one last carved
        // for this class before any other: carving it costs no page faults
        // (2-3.5 us each here).
        let resident = self.free_pages & self.dirty_pages;
        let (i, same_class) = match self.resident_page_of_class(resident, class) {
            Some(i) => (i, true),
            None if resident != 0 => (resident.trailing_zeros() as usize, false),
            None => (self.free_pages.trailing_zeros() as usize, false),
        };
        self.free_pages &= !(1 << i);
        self.dirty_pages &= !(1 << i);
        let zero = self.zero_pages & (1 << i) != 0;
        self.zero_pages &= !(1 << i);
        let page_size = 1usize << self.page_shift;
        if self.kind != PageKind::Big {
            CARVED.fetch_add(page_size, Ordering::Relaxed);
        }
        if same_class && self.pages[i].capacity != 0 {
            // Resident, last carved for this class, and its descriptor kept
            // the free list (`free_page`; `init` and every purge forget it:
            // the purge clears the page's dirty bit): hand those blocks out
            // again. glibc-simple empties and refills 24 pages of 1 KiB
            // blocks a round; carving them again was 17 of its 110
            // instructions an operation.
            // SAFETY: nothing wrote the page since `free_page` closed it: it
            // is still dirty (not purged) and was not carved since.
            unsafe { self.pages[i].reopen() };
            self.remote[i].reset(&self.pages[i]);
            return Some(&mut self.pages[i]);
        }
        let (start, mut bytes) = if i == 0 {
            (self.base() + SEGMENT_HEADER, page_size - SEGMENT_HEADER)
        } else {
            (self.base() + i * page_size, page_size)
        };
        if crate::hardening::ENABLED && i == self.kind.page_count() - 1 {
            bytes -= os::OS_PAGE; // the segment's guard page
        }
        let bs = crate::small::size_class::block_size(class);
        // SAFETY: page i's own bytes of this segment (past the header, before
        // the guard page), free: its bit was set in `free_pages`; zero as
        // `zero_pages` said.
        unsafe { self.pages[i].init(class, bs, start as *mut u8, bytes, zero) };
        self.remote[i].reset(&self.pages[i]);
        Some(&mut self.pages[i])
    }

    /// Whether a free page of this segment may still be resident and was
    /// last carved for `class` (carving it again writes resident memory).
    pub fn has_resident_page_of_class(&self, class: usize) -> bool {
        self.resident_page_of_class(self.free_pages & self.dirty_pages, class)
            .is_some()
    }

    /// The first page of `resident` last carved for `class`.
    fn resident_page_of_class(&self, resident: u64, class: usize) -> Option<usize> {
        let mut bits = resident;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            if self.carved_class[i] as usize == class {
                return Some(i);
            }
            bits &= bits - 1;
        }
        None
    }

    /// Returns an empty page to the segment; its memory is purged later.
    /// Its descriptor keeps its free list ([`Page::close`]) for
    /// `alloc_page` of the same class until then.
    pub fn free_page(&mut self, page: *mut Page, now_ns: u64) {
        let i = self.page_index(page);
        self.carved_class[i] = self.pages[i].class;
        self.pages[i].close();
        if self.kind != PageKind::Big {
            CARVED.fetch_sub(1 << self.page_shift, Ordering::Relaxed);
        }
        self.free_pages |= 1 << i;
        self.dirty_pages |= 1 << i;
        self.last_release_ns = now_ns;
    }

    /// Gives the memory of free pages back to the OS once they have been free
    /// for `delay_ns`. Returns the bytes purged.
    ///
    /// In a segment with huge pages (`thp`) only whole 2 MiB halves go back
    /// (the second half once all its pages are free; never the first, which
    /// holds the header): a purge of part of a huge page splits it, and every
    /// later touch of the rest faults 4 KiB at a time again. The other free
    /// pages stay dirty until the segment empties and the pool purges it.
    pub fn purge_free_pages(&mut self, now_ns: u64, delay_ns: u64) -> usize {
        if self.dirty_pages == 0 || now_ns.saturating_sub(self.last_release_ns) < delay_ns {
            return 0;
        }
        let shift = self.page_shift;
        let mut bytes = 0;
        let mut bits = self.dirty_pages;
        while bits != 0 {
            // One madvise per run of adjacent dirty pages.
            let first = bits.trailing_zeros() as usize;
            let run = (!(bits >> first)).trailing_zeros() as usize;
            let (from, to) = if self.thp {
                huge_aligned_pages(first, first + run, shift)
            } else {
                (first, first + run)
            };
            if from < to {
                let mut start = self.base() + (from << shift);
                if from == 0 {
                    start += SEGMENT_HEADER;
                }
                let end = self.base() + (to << shift);
                // SAFETY: a run of free pages of this segment (past its header): no live block.
                if unsafe { vm::purge(start as *mut u8, end - start) } {
                    self.zero_pages |= page_bits(from, to);
                }
                bytes += end - start;
                self.dirty_pages &= !page_bits(from, to);
            }
            bits &= !page_bits(first, first + run);
        }
        bytes
    }
}

/// Bits `from..to` of a page mask (`to` ≤ 64).
fn page_bits(from: usize, to: usize) -> u64 {
    let high = if to >= 64 { u64::MAX } else { (1u64 << to) - 1 };
    high & !((1u64 << from) - 1)
}

/// The pages of `from..to` (pages of `1 << shift` bytes from the segment's
/// start) that make up whole 2 MiB huge pages, never the first huge page,
/// which holds the header; `from >= to` when there are none.
fn huge_aligned_pages(from: usize, to: usize, shift: u32) -> (usize, usize) {
    let per_huge = HUGE_PAGE >> shift;
    let from = from.div_ceil(per_huge).max(1) * per_huge;
    (from, to / per_huge * per_huge)
}

/// Bytes of carved small and medium pages (pages holding blocks, in every
/// thread's segments) from which `HAKMEM_HUGEPAGES=auto` asks for huge
/// pages: small programs keep 4 KiB pages and never pay the `thp` probe,
/// and segments that hold a few pages each (`glibc-thread`: ~10 MiB in 8
/// segments) do not fill 2 MiB with them. Big-page segments (blocks of
/// 128-512 KiB) never ask under `auto`: one block there made a whole 2 MiB
/// page resident, and with them python3 and gcc under LD_PRELOAD peaked
/// 10-19 MiB higher (131 vs 112, 87 vs 77 MiB).
pub const THP_MIN_CARVED: usize = 32 << 20;
/// Bytes of small and medium pages carved now (see [`THP_MIN_CARVED`]).
static CARVED: AtomicUsize = AtomicUsize::new(0);
/// Set once the process reached [`THP_MIN_CARVED`] with huge pages worth
/// asking for; from then on every segment asks while they are (the mark is
/// not left again as carved pages come and go, so that the advice does not
/// follow the count back and forth, splitting and refilling huge pages).
static THP_ON: AtomicBool = AtomicBool::new(false);

/// Whether a segment of `kind` acquired while `carved` bytes of small and
/// medium pages are carved asks for huge pages under `mode`; `another`: the
/// heap taking it already has a segment of this kind with no page left to
/// take. `granted()` (under `auto`: the kernel gives them and they are
/// worth it now, `thp::worth_it`) is called only when the answer depends
/// on it (small programs never pay the probe); `latch` keeps the process's
/// having reached [`THP_MIN_CARVED`].
///
/// Under `auto`, a heap's second small-page segment asks before that: a
/// thread that filled 4 MiB of 64 KiB pages of blocks up to 8 KiB packs
/// its next 2 MiB as densely, while threads that each hold a few pages keep
/// to their first, 4 KiB-page segment. In `mstress` the process reached
/// 32 MiB only in its second round of threads, and the segments taken
/// before that went on faulting in 4 KiB at a time for the rest of the run
/// (6,500 of its 8,200 faults in segments). Medium pages (512 KiB, a few
/// blocks of up to 64 KiB each) do not: with them `glibc-thread` peaked at
/// 24 MiB instead of 12.5 (16 with small pages alone), `rptest` once at
/// 262 MiB, and `mstress` faulted no less.
fn wants_thp(
    mode: HugePages,
    kind: PageKind,
    carved: usize,
    another: bool,
    latch: &AtomicBool,
    granted: impl FnOnce() -> bool,
) -> bool {
    match mode {
        HugePages::Off => false,
        HugePages::Always => granted(),
        HugePages::Auto if kind == PageKind::Big => false,
        HugePages::Auto => {
            if latch.load(Ordering::Relaxed) {
                return granted();
            }
            if carved >= THP_MIN_CARVED {
                let on = granted();
                if on {
                    latch.store(true, Ordering::Relaxed);
                }
                return on;
            }
            another && kind == PageKind::Small && granted()
        }
    }
}

/// A lock-free stack of segments (the pool, the abandoned list).
pub type SegmentStack = TaggedStack<Segment>;

// SAFETY: segments are 4 MiB aligned (22 free low bits), `stack_next` is a
// field of the segment, and segments are never unmapped (see the module doc).
unsafe impl StackNode for Segment {
    const ALIGN_BITS: u32 = crate::layout::SEGMENT_SHIFT;
    unsafe fn link(node: *mut Self) -> *const AtomicUsize {
        // SAFETY: the caller's contract: a live segment.
        unsafe { &raw const (*node).stack_next }
    }
}

/// Free segments whose memory may still be resident, by the kind they had:
/// a segment that keeps its kind reuses its resident pages exactly (a small
/// segment turned big touches a few OS pages of its resident 4 MiB, and the
/// next small one faults in fresh memory).
static POOL_DIRTY: [SegmentStack; 3] = [const { SegmentStack::new() }; 3];
/// Free segments whose memory went back to the OS.
static POOL_CLEAN: SegmentStack = SegmentStack::new();
/// Segments of exited threads that still hold live blocks.
pub static ABANDONED: SegmentStack = SegmentStack::new();
/// Earliest time the next pool purge is worth trying.
static NEXT_POOL_PURGE_NS: AtomicU64 = AtomicU64::new(0);

/// How many segments of the dirty pool of big pages [`acquire_resident`]
/// looks at for one with a page of the class asked for.
const RESIDENT_SEARCH: usize = 8;

/// A segment of big pages from the dirty pool with a free page last carved
/// for `class` (its blocks' first OS pages are resident), for `owner`; None
/// if none of the first [`RESIDENT_SEARCH`] pooled segments has one.
///
/// A big page holds 4-32 blocks of 64-512 KiB and a program touches few of
/// their 4 KiB pages (a block's first, its free-list link's), so a page
/// carved again for another class faults at every new block start: in
/// `mstress`, whose rounds of fresh threads take the segments of the last
/// round's from the pool, 2,900 of the 3,600 page faults after the first
/// round were in big pages last carved for another class.
pub fn acquire_resident(class: usize, owner: usize) -> Option<*mut Segment> {
    let pool = &POOL_DIRTY[PageKind::Big as usize];
    let mut looked: [*mut Segment; RESIDENT_SEARCH] = [ptr::null_mut(); RESIDENT_SEARCH];
    let mut n = 0;
    let mut found = None;
    while n < RESIDENT_SEARCH {
        let Some(seg) = pool.pop() else { break };
        // SAFETY: popped, so ours until pushed again; a pooled segment's
        // header fields outlive pooling (its first OS page is never purged).
        if unsafe { (*seg).has_resident_page_of_class(class) } {
            found = Some(seg);
            break;
        }
        looked[n] = seg;
        n += 1;
    }
    // The others go back in the order they came off.
    for &seg in looked[..n].iter().rev() {
        // SAFETY: popped above, so ours.
        unsafe { pool.push(seg) };
    }
    let seg = found?;
    // The pool never advises big pages for huge pages under `auto`; keep
    // whatever the segment has (its pages are resident as they are).
    // SAFETY: ours (popped above).
    let thp = unsafe { (*seg).thp };
    take(seg, PageKind::Big, owner, true, false, thp)
}

/// A segment for `owner`, from the pool or the OS; `another`: `owner`
/// already has a segment of this kind, with no page left to take.
pub fn acquire(kind: PageKind, owner: usize, another: bool) -> Option<*mut Segment> {
    let mode = crate::options::get().huge_pages;
    acquire_as(kind, owner, || {
        wants_thp(
            mode,
            kind,
            CARVED.load(Ordering::Relaxed),
            another,
            &THP_ON,
            // `always` is the user's word; `auto` asks only while they pay.
            || match mode {
                HugePages::Always => crate::thp::granted(),
                _ => crate::thp::worth_it(),
            },
        )
    })
}

/// [`acquire`], asking for huge pages where `want_thp()` says so.
fn acquire_as(
    kind: PageKind,
    owner: usize,
    want_thp: impl FnOnce() -> bool,
) -> Option<*mut Segment> {
    // Resident memory first: a dirty segment of this kind, then of another
    // kind (some of its resident pages get reused), then a purged one.
    let k = kind as usize;
    let dirty = POOL_DIRTY[k]
        .pop()
        .or_else(|| POOL_DIRTY[(k + 1) % 3].pop())
        .or_else(|| POOL_DIRTY[(k + 2) % 3].pop());
    let from_dirty = dirty.is_some();
    let mut fresh = false;
    let seg = match dirty.or_else(|| POOL_CLEAN.pop()) {
        Some(s) => s,
        None => {
            fresh = true;
            let p = vm::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE)? as *mut Segment;
            if crate::hardening::ENABLED {
                // A guard page ends every segment (it stays when the segment is pooled).
                // SAFETY: the last OS page of a fresh segment: `alloc_page` leaves it
                // out of the last page's blocks in hardened builds.
                unsafe {
                    vm::guard(
                        (p as usize + SEGMENT_SIZE - os::OS_PAGE) as *mut u8,
                        os::OS_PAGE,
                    )
                };
            }
            segment_map::set(p as usize, Region::ClassSegment);
            p
        }
    };
    // Transparent huge pages by HAKMEM_HUGEPAGES (`wants_thp`): by default
    // on small and medium pages once the process has THP_MIN_CARVED bytes
    // of them carved, and only where the kernel gives them. Advised before
    // the header is first touched, so that its first fault can be huge.
    take(seg, kind, owner, from_dirty, fresh, want_thp())
}

/// Sets up `seg`, popped from a pool (`from_dirty`: a dirty one) or mapped
/// just now (`fresh`), for `owner` with pages of `kind`, with huge pages
/// if `want_thp`.
fn take(
    seg: *mut Segment,
    kind: PageKind,
    owner: usize,
    mut from_dirty: bool,
    fresh: bool,
    want_thp: bool,
) -> Option<*mut Segment> {
    // SAFETY: a popped or fresh segment belongs to nobody else; a pooled
    // segment holds no live block, and the stack link in its header is not
    // read again once popped (the purge below may zero it).
    unsafe {
        // A read of an untouched page maps the shared zero page, and with it
        // a page table: a fresh or just-purged header is written first.
        let was_thp = !fresh && (*seg).thp;
        if want_thp && !fresh && !(from_dirty && was_thp) {
            // A 2 MiB range faults in a huge page only while it has no page
            // table (Linux 6.14+ frees one when a purge of its whole 2 MiB
            // leaves it empty; a purge of less keeps it). A purged segment
            // still maps its header page, and a segment that had 4 KiB
            // pages may map any: purge whole halves, so that the header
            // write and the first touch of the second half fault one huge
            // page each instead of up to 512 pages. The header fields that
            // outlive pooling are reset by `init` then (`from_dirty` false:
            // nothing of it is resident).
            let len = if from_dirty { SEGMENT_SIZE } else { HUGE_PAGE };
            // A purge that failed leaves a dirty segment's pages as they
            // were: still dirty, and not zero.
            if vm::purge(seg as *mut u8, len) {
                from_dirty = false;
            }
        }
        if was_thp != want_thp {
            vm::advise_thp(seg as *mut u8, SEGMENT_SIZE, want_thp);
        }
        // After the advice (the first touch of a fresh header) and after the
        // purge above (which zeroes it). That first write, into advised
        // memory nothing made resident, faults in a huge page: timed for
        // the cost meter (`thp.rs`).
        if want_thp && !from_dirty {
            crate::thp::time_first_touch(|| (*seg).thp = want_thp);
        } else {
            (*seg).thp = want_thp;
        }
        (*seg).init(kind, owner, from_dirty);
    }
    Some(seg)
}

/// Gives an empty segment back to the pool.
pub(crate) fn release(seg: *mut Segment, now_ns: u64) {
    // SAFETY: the caller owns `seg` and it holds no live block.
    unsafe {
        debug_assert!((*seg).is_empty());
        (*seg).owner.store(0, Ordering::Release);
        (*seg).pooled_at_ns.store(now_ns, Ordering::Relaxed);
    }
    // SAFETY: the caller's segment, now off every list.
    unsafe { POOL_DIRTY[(*seg).kind as usize].push(seg) };
    // The pool is purged on allocator activity, and by the background
    // thread when there is none (not started here: the caller may be in
    // the middle of a heap operation).
    crate::background::wake_if_running();
}

/// Whether a pooled segment may still hold resident memory.
pub fn pool_has_dirty() -> bool {
    POOL_DIRTY.iter().any(|p| !p.is_empty())
}

/// Purges pooled segments that have waited `delay_ns`; cheap to call often.
pub fn maintain_pool(now_ns: u64, delay_ns: u64) {
    // A forced pass (delay 0: `collect(true)`) purges the whole pool, whatever
    // the clock says and however many segments wait.
    let force = delay_ns == 0;
    if POOL_DIRTY.iter().all(|p| p.is_empty())
        || (!force && now_ns < NEXT_POOL_PURGE_NS.load(Ordering::Relaxed))
    {
        return;
    }
    NEXT_POOL_PURGE_NS.store(now_ns + delay_ns.max(1_000_000) / 2, Ordering::Relaxed);
    for pool in &POOL_DIRTY {
        purge_pool(pool, now_ns, delay_ns, force);
    }
}

/// Moves the segments of `pool` that have waited `delay_ns` to the clean
/// pool, their memory purged.
fn purge_pool(pool: &SegmentStack, now_ns: u64, delay_ns: u64, force: bool) {
    // Pop what is there now; keep the young ones for later. Bounded so one
    // periodic call never does unbounded work.
    let mut young: [*mut Segment; 32] = [ptr::null_mut(); 32];
    let mut n_young = 0;
    for _ in 0..if force { usize::MAX } else { 64 } {
        let Some(seg) = pool.pop() else { break };
        // SAFETY: popped, so ours until pushed again.
        let pooled_at = unsafe { (*seg).pooled_at_ns.load(Ordering::Relaxed) };
        if now_ns.saturating_sub(pooled_at) >= delay_ns {
            // Everything but the first OS page, which keeps the header's
            // fields that outlive pooling (`thp`, the stack link).
            // SAFETY: a pooled segment holds no live block; its first OS page is kept.
            let purged = unsafe {
                vm::purge(
                    (seg as usize + os::OS_PAGE) as *mut u8,
                    SEGMENT_SIZE - os::OS_PAGE,
                )
            };
            if purged {
                // SAFETY: popped above, so ours.
                unsafe { POOL_CLEAN.push(seg) };
                continue;
            }
            // The clean pool's pages read zero (`Segment::zero_pages`): a
            // segment whose purge failed stays in its dirty pool.
        }
        if n_young < young.len() {
            young[n_young] = seg;
            n_young += 1;
        } else {
            // SAFETY: popped above, so ours.
            unsafe { pool.push(seg) };
            break;
        }
    }
    for &seg in &young[..n_young] {
        // SAFETY: popped above, so ours.
        unsafe { pool.push(seg) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fits_and_kinds_cover_the_segment() {
        for k in [PageKind::Small, PageKind::Medium, PageKind::Big] {
            assert_eq!(k.page_count() << k.page_shift(), SEGMENT_SIZE);
            assert!(k.page_count() <= MAX_PAGES);
        }
    }

    #[test]
    fn pages_are_taken_and_returned_and_purged() {
        let seg = acquire(PageKind::Medium, 1, false).expect("map a segment");
        // SAFETY: we own it.
        let s = unsafe { &mut *seg };
        assert_eq!(
            segment_map::lookup(seg as usize + 12345),
            Region::ClassSegment
        );
        assert!(s.is_empty());
        let mut pages = Vec::new();
        while let Some(p) = s.alloc_page(60) {
            pages.push(p);
        }
        assert_eq!(pages.len(), PageKind::Medium.page_count());
        // Page 0 starts after the header; the others on their page boundary.
        // SAFETY: descriptors inside the header.
        unsafe {
            assert_eq!((*pages[0]).start as usize, seg as usize + SEGMENT_HEADER);
            assert_eq!((*pages[1]).start as usize, seg as usize + (512 << 10));
            assert_eq!(
                Segment::page_of(seg, (*pages[1]).start as usize + 100),
                pages[1]
            );
        }
        for p in &pages {
            s.free_page(*p, 1000);
        }
        assert!(s.is_empty());
        assert_eq!(s.purge_free_pages(1000, 5000), 0, "too young to purge");
        assert_eq!(
            s.purge_free_pages(9000, 5000),
            SEGMENT_SIZE - SEGMENT_HEADER
        );
        release(seg, 0);
    }

    #[test]
    fn a_page_taken_again_for_its_class_keeps_its_free_list_until_purged() {
        let seg = acquire_as(PageKind::Medium, 1, || false).expect("map a segment");
        // SAFETY: we own it; the pages are this segment's descriptors.
        let s = unsafe { &mut *seg };
        let a = s.alloc_page(60).expect("a page");
        // SAFETY: a page of this segment; its blocks go back before it is freed.
        let (carved, first) = unsafe {
            assert!((*a).extend());
            let blocks: Vec<_> = core::iter::from_fn(|| Some((*a).pop()))
                .take_while(|b| !b.is_null())
                .collect();
            for &b in blocks.iter().rev() {
                (*a).push_local(b);
            }
            ((*a).capacity, blocks[0])
        };
        assert!(carved > 0);
        s.free_page(a, 1000);
        let b = s.alloc_page(60).expect("a page");
        assert_eq!(b, a, "the resident page of the class");
        // SAFETY: as above.
        unsafe {
            assert!((*b).in_use);
            assert_eq!((*b).capacity, carved, "nothing carved again");
            assert_eq!((*b).used(), 0);
            assert_eq!((*b).pop(), first, "the kept free list, in its order");
            (*b).push_local(first);
        }
        // Another class writes other block starts: carved afresh.
        s.free_page(b, 1000);
        let c = s.alloc_page(61).expect("a page");
        assert_eq!(c, a);
        // SAFETY: as above.
        unsafe {
            assert_eq!((*c).capacity, 0, "another class: carved from scratch");
            assert!((*c).extend());
            let x = (*c).pop();
            (*c).push_local(x);
        }
        s.free_page(c, 1000);
        // Purged: its memory reads zero, the links are gone.
        assert!(s.purge_free_pages(u64::MAX, 0) > 0);
        let d = s.alloc_page(61).expect("a page");
        // SAFETY: as above.
        unsafe {
            assert_eq!((*d).capacity, 0, "purged: carved from scratch");
            assert!((*d).zero_tail);
        }
        s.free_page(d, 1000);
        release(seg, 0);
    }

    #[test]
    fn a_page_reads_zero_until_carved_and_again_once_purged() {
        let seg = acquire_as(PageKind::Medium, 1, || false).expect("map a segment");
        // SAFETY: we own it.
        let s = unsafe { &mut *seg };
        // Whatever the pool gave: every page carved, freed and purged.
        let pages: Vec<_> = core::iter::from_fn(|| s.alloc_page(60)).collect();
        assert_eq!(s.zero_pages, 0, "all carved");
        for p in pages {
            s.free_page(p, 1000);
        }
        assert_eq!(
            s.purge_free_pages(u64::MAX, 0),
            SEGMENT_SIZE - SEGMENT_HEADER
        );
        assert_eq!(s.zero_pages, s.all_pages(), "purged: all zero");
        let a = s.alloc_page(60).expect("a page");
        // SAFETY: a descriptor of this segment.
        assert!(unsafe { (*a).zero_tail });
        s.free_page(a, 1000);
        let b = s.alloc_page(60).expect("a page");
        assert_eq!(b, a, "the resident page first");
        // SAFETY: as above.
        assert!(unsafe { !(*b).zero_tail }, "carved before: written");
        s.free_page(b, 1000);
        assert!(s.purge_free_pages(u64::MAX, 0) > 0);
        assert_eq!(s.zero_pages, s.all_pages(), "purged: zero again");
        // A header written for a segment that is not dirty (mapped, or
        // purged in the clean pool): all zero.
        s.init(PageKind::Medium, 1, false);
        assert_eq!(s.zero_pages, s.all_pages());
        // Pooled dirty and taken back for another kind: nothing is known.
        let c = s.alloc_page(60).expect("a page");
        s.free_page(c, 1000);
        release(seg, 0);
        let again = acquire_as(PageKind::Small, 1, || false).expect("a segment");
        // SAFETY: ours again (or another pooled one: the same rule holds).
        let s = unsafe { &mut *again };
        if again == seg {
            assert_eq!(s.zero_pages, 0, "dirty, other page bounds: unknown");
        }
        release(again, 0);
    }

    #[test]
    fn auto_huge_pages_wait_for_32_mib_or_a_second_segment_skip_big_pages_and_stay_on_while_they_pay(
    ) {
        let latch = AtomicBool::new(false);
        let never = || -> bool { panic!("probed below the threshold") };
        let small = PageKind::Small;
        assert!(!wants_thp(
            HugePages::Auto,
            small,
            THP_MIN_CARVED - 1,
            false,
            &latch,
            never
        ));
        assert!(!wants_thp(
            HugePages::Auto,
            PageKind::Big,
            100,
            false,
            &latch,
            never
        ));
        assert!(!wants_thp(HugePages::Off, small, 100, false, &latch, never));
        // The kernel refuses: no advice, and nothing latched.
        assert!(!wants_thp(
            HugePages::Auto,
            small,
            THP_MIN_CARVED,
            false,
            &latch,
            || false
        ));
        assert!(!latch.load(Ordering::Relaxed));
        assert!(wants_thp(
            HugePages::Auto,
            PageKind::Medium,
            THP_MIN_CARVED,
            false,
            &latch,
            || true
        ));
        // A heap's second small-page segment asks below the threshold,
        // without latching; medium and big pages do not.
        let fresh = AtomicBool::new(false);
        assert!(!wants_thp(HugePages::Auto, small, 1, true, &fresh, || {
            false
        }));
        assert!(wants_thp(HugePages::Auto, small, 1, true, &fresh, || true));
        assert!(!fresh.load(Ordering::Relaxed));
        assert!(!wants_thp(HugePages::Auto, small, 1, false, &fresh, never));
        assert!(!wants_thp(
            HugePages::Auto,
            PageKind::Medium,
            1,
            true,
            &fresh,
            never
        ));
        assert!(!wants_thp(
            HugePages::Auto,
            PageKind::Big,
            1,
            true,
            &fresh,
            never
        ));
        assert!(!wants_thp(HugePages::Off, small, 1, true, &fresh, never));
        // Latched: on below the threshold too, while huge pages pay.
        assert!(wants_thp(HugePages::Auto, small, 1, false, &latch, || true));
        assert!(!wants_thp(HugePages::Auto, small, 1, false, &latch, || {
            false
        }));
        assert!(latch.load(Ordering::Relaxed));
        assert!(!wants_thp(
            HugePages::Auto,
            PageKind::Big,
            1,
            false,
            &latch,
            never
        ));
        assert!(!wants_thp(
            HugePages::Always,
            PageKind::Big,
            1,
            false,
            &latch,
            || false
        ));
        assert!(wants_thp(
            HugePages::Always,
            PageKind::Big,
            1,
            false,
            &latch,
            || true
        ));
    }

    #[test]
    fn whole_huge_pages_of_a_page_run_leave_out_the_header_half() {
        // Small pages (64 KiB): 32 to a huge page.
        assert_eq!(huge_aligned_pages(0, 64, 16), (32, 64));
        assert_eq!(huge_aligned_pages(1, 63, 16), (32, 32));
        assert_eq!(huge_aligned_pages(33, 64, 16), (64, 64));
        // Medium (512 KiB): 4; big (2 MiB): 1.
        assert_eq!(huge_aligned_pages(2, 8, 19), (4, 8));
        assert_eq!(huge_aligned_pages(0, 2, 21), (1, 2));
        assert_eq!(huge_aligned_pages(0, 1, 21), (1, 1));
        assert_eq!(page_bits(32, 64), 0xFFFF_FFFF_0000_0000);
        assert_eq!(page_bits(1, 3), 0b110);
    }

    #[test]
    fn a_huge_page_segment_faults_its_header_half_in_one_huge_page_and_purges_only_whole_halves() {
        let seg = acquire_as(PageKind::Small, 1, crate::thp::granted).expect("map");
        // SAFETY: we own it.
        let s = unsafe { &mut *seg };
        if s.thp {
            // The header was written after the advice, with no read before
            // it (a read maps the zero page, and the half faults 4 KiB pages).
            let mut vec = [0u8; 512];
            let resident = os::resident_pages(seg as *mut u8, HUGE_PAGE, &mut vec);
            assert_eq!(resident, Some(512), "the header half is one huge page");
        } else {
            eprintln!("the kernel gives no huge pages: the purge rule is checked alone");
            s.thp = true; // the purge rule does not depend on the advice
            s.dirty_pages = s.all_pages();
        }
        let pages: Vec<_> = core::iter::from_fn(|| s.alloc_page(3)).collect();
        assert_eq!(pages.len(), 64);
        // Every page but page 0 (header half) and page 40 (second half) free.
        for (i, p) in pages.iter().enumerate() {
            if i != 0 && i != 40 {
                s.free_page(*p, 1000);
            }
        }
        assert_eq!(s.purge_free_pages(u64::MAX, 0), 0, "no half is wholly free");
        assert_eq!(s.dirty_pages, !page_bits(40, 41) & !1);
        s.free_page(pages[40], 1000);
        assert_eq!(s.purge_free_pages(u64::MAX, 0), HUGE_PAGE);
        assert_eq!(s.dirty_pages, page_bits(1, 32), "the header half stays");
        s.free_page(pages[0], 1000);
        assert!(s.is_empty());
        release(seg, 0);
    }
}
