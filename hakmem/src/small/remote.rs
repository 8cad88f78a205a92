//! Remote frees in batches: a thread's frees of blocks another heap owns
//! wait in its outbox, then travel to the owner's inbox as one message
//! written into one of them (the carrier). The other blocks are not written
//! at all on the way.
//!
//! ```text
//! freeing thread: outbox [a b c d …]  (addresses, all of one owner heap)
//!   flush: carrier = the largest; carrier words: [next message, k, a, b, …]
//!          one CAS pushes the carrier on the owner's inbox
//! owner (refill, collect, exit): swap the inbox, free each address here
//! ```
//!
//! Why: a remote free that links the block into its page's list writes the
//! block, so the block's line goes to the freeing thread and back to the
//! owner, whose pop reads the link (a miss per block, in a chain); and the
//! CAS after the write waits for that line. On xthread those were the
//! freeing thread's CAS and the owner's pop, 40% of the allocator's samples.
//! A message moves eight addresses per line and leaves the blocks' lines
//! where they are; the owner links the blocks into their pages itself.
//!
//! Bounds: only blocks up to [`OUTBOX_MAX_BLOCK`] bytes wait, at most
//! [`OUTBOX_BLOCKS`] of them, so a thread that stops freeing keeps at most
//! 32 KiB of blocks from their owners (their pages stay in use) until it
//! frees again, exits or calls `collect`. Larger blocks, blocks of segments
//! without an owner, hardened builds (whose double-free tag shares the
//! carrier's words) and messages to a heap whose thread has exited take the
//! page's remote list directly ([`push_direct`]).
//!
//! A heap's address stays valid forever: heaps live in thread contexts,
//! which are pooled, never unmapped (`thread/life.rs`). An inbox is closed
//! (CLOSED) from its thread's exit until the context is taken again; a
//! message that reaches a reused heap is still right, because the drain
//! frees each block according to the segment's owner at that time.

use crate::hardening;
use crate::small::free::free_local_slow;
use crate::small::heap::Heap;
use crate::small::page::Block;
use crate::small::segment::Segment;
use crate::small::size_class::block_size;
use core::ptr;
use core::sync::atomic::Ordering;

/// Most blocks an outbox holds.
pub(crate) const OUTBOX_BLOCKS: usize = 32;
/// Largest block that waits in an outbox (larger ones are freed directly).
pub(crate) const OUTBOX_MAX_BLOCK: usize = 1024;
/// An inbox whose heap has no thread: senders free directly.
const CLOSED: usize = 1;
/// Words of a carrier before the addresses: the inbox link and the count.
const CARRIER_HEADER_WORDS: usize = 2;
/// The classes whose blocks wait in outboxes: `0..OUTBOX_CLASSES`, the
/// blocks of at most [`OUTBOX_MAX_BLOCK`] bytes.
const OUTBOX_CLASSES: usize = {
    let mut c = 0;
    while block_size(c) <= OUTBOX_MAX_BLOCK {
        c += 1;
    }
    c
};
/// Per class that waits in outboxes: how many addresses one of its blocks
/// can carry (its words less the header; 0 for blocks of 8 and 16 bytes).
/// A table, so that a remote free computes no block size.
static CARRIER_ROOM: [u8; OUTBOX_CLASSES] = {
    let mut t = [0u8; OUTBOX_CLASSES];
    let mut c = 0;
    while c < OUTBOX_CLASSES {
        let words = block_size(c) / 8;
        t[c] = if words > CARRIER_HEADER_WORDS {
            (words - CARRIER_HEADER_WORDS) as u8
        } else {
            0
        };
        c += 1;
    }
    t
};

/// The remote frees of one thread waiting to travel to their owner.
pub(crate) struct Outbox {
    /// The owner heap (its address) of every waiting block; 0 when empty.
    dest: usize,
    /// Waiting blocks.
    n: u32,
    /// Index in `blocks` of the carrier: the largest waiting block.
    carrier: u32,
    /// Addresses the carrier can hold (its words less the header).
    carrier_room: u32,
    /// Addresses of the waiting blocks.
    blocks: [usize; OUTBOX_BLOCKS],
}

impl Outbox {
    /// An empty outbox.
    pub(crate) const fn new() -> Outbox {
        Outbox {
            dest: 0,
            n: 0,
            carrier: 0,
            carrier_room: 0,
            blocks: [0; OUTBOX_BLOCKS],
        }
    }
}

/// Frees `addr`, a block of class `class` whose segment heap `dest` owns,
/// by the calling thread, whose heap `h` is another: into `h`'s outbox.
/// False when the block must be freed directly instead ([`push_direct`]).
///
/// # Safety
/// `addr` is a block of a live size-class segment that the caller no longer
/// uses; `h` is the calling thread's heap (not the empty one).
#[inline]
pub(crate) unsafe fn post(h: &mut Heap, dest: usize, addr: usize, class: usize) -> bool {
    if hardening::ENABLED || dest == 0 || class >= OUTBOX_CLASSES {
        return false;
    }
    let o = &mut h.outbox;
    if o.dest != dest && o.n != 0 {
        flush(o);
    }
    o.dest = dest;
    let i = o.n;
    o.blocks[i as usize] = addr;
    o.n += 1;
    let room = u32::from(CARRIER_ROOM[class]);
    if i == 0 || room > o.carrier_room {
        o.carrier = i;
        o.carrier_room = room;
    }
    if o.n as usize == OUTBOX_BLOCKS || (o.carrier_room > 0 && o.n > o.carrier_room) {
        flush(o);
    }
    true
}

/// Sends the waiting blocks to their owner: as many as the carrier holds in
/// one message, the rest directly. The outbox is empty after.
pub(crate) fn flush(o: &mut Outbox) {
    let n = o.n as usize;
    if n == 0 {
        return;
    }
    // The carrier first; blocks[1..=carried] ride in it.
    o.blocks.swap(0, o.carrier as usize);
    let carrier = o.blocks[0];
    let carried = (o.carrier_room as usize).min(n - 1);
    let mut sent = 0;
    if carried > 0 {
        let words = carrier as *mut usize;
        // SAFETY: the carrier is a waiting block nobody uses, with room for
        // its header and `carried` addresses.
        unsafe {
            ptr::copy_nonoverlapping(
                o.blocks.as_ptr().add(1),
                words.add(CARRIER_HEADER_WORDS),
                carried,
            );
            *words.add(1) = carried;
        }
        // SAFETY: `dest` is a heap's address, valid forever (module doc).
        let inbox = unsafe { &(*(o.dest as *const Heap)).inbox };
        let mut cur = inbox.load(Ordering::Relaxed);
        while cur != CLOSED {
            // SAFETY: as above: word 0 of the carrier is the inbox link.
            unsafe { *words = cur };
            // Release (in SeqCst): the owner's swap sees the words above.
            match inbox.compare_exchange_weak(cur, carrier, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => {
                    sent = 1 + carried;
                    break;
                }
                Err(now) => cur = now,
            }
        }
    }
    for &b in &o.blocks[sent..n] {
        // SAFETY: a waiting block of a live segment nobody uses.
        unsafe { push_direct(b) };
    }
    o.n = 0;
    o.dest = 0;
    o.carrier = 0;
    o.carrier_room = 0;
}

/// Frees `addr` onto its page's remote list and raises its segment's flag
/// (the owner collects it in its slow path).
///
/// # Safety
/// `addr` is a block of a live size-class segment that the caller no longer
/// uses and that the calling thread does not own (or does not touch as owner).
#[inline]
pub(crate) unsafe fn push_direct(addr: usize) {
    let seg = Segment::of(addr);
    // SAFETY: the caller's contract; the block lies in `seg`'s 4 MiB, above
    // its base; the flag is raised after the push (see segment.rs).
    unsafe {
        (*Segment::remote_of(seg, addr)).push(seg as usize, addr as *mut Block);
        if (*seg).remote_pending.load(Ordering::SeqCst) == 0 {
            (*seg).remote_pending.store(1, Ordering::SeqCst);
        }
    }
}

impl Heap {
    /// Frees here the blocks of the messages other threads sent this heap.
    /// Returns true if there were any.
    pub(crate) fn drain_inbox(&mut self) -> bool {
        let cur = self.inbox.load(Ordering::Relaxed);
        if cur == 0 || cur == CLOSED {
            return false;
        }
        // Acquire (in SeqCst): the carriers' words are visible.
        let list = self.inbox.swap(0, Ordering::SeqCst);
        self.drain_list(list);
        true
    }

    /// Thread exit: sends this thread's waiting remote frees, closes the
    /// inbox (senders then free directly) and frees what it held.
    pub(crate) fn close_mail(&mut self) {
        self.live = false;
        flush(&mut self.outbox);
        let list = self.inbox.swap(CLOSED, Ordering::SeqCst);
        if list != CLOSED {
            self.drain_list(list);
        }
    }

    /// A thread takes this heap (fresh or pooled): its inbox opens.
    pub fn open_mail(&mut self) {
        self.live = true;
        self.inbox.store(0, Ordering::SeqCst);
    }

    /// Sends this thread's waiting remote frees now (its slow path, `collect`).
    pub(crate) fn flush_outbox(&mut self) {
        flush(&mut self.outbox);
    }

    fn drain_list(&mut self, mut m: usize) {
        while m != 0 {
            let words = m as *const usize;
            // SAFETY: a carrier pushed by `flush`: its header and `k`
            // addresses were written before the push; read all before the
            // carrier itself is freed below.
            let (next, k) = unsafe { (*words, *words.add(1)) };
            for j in 0..k {
                // SAFETY: as above.
                let b = unsafe { *words.add(CARRIER_HEADER_WORDS + j) };
                self.free_here(b);
            }
            self.free_here(m);
            m = next;
        }
    }

    /// Frees `addr`, a block another thread freed: into its page if this heap
    /// owns the segment now, else onto the page's remote list.
    fn free_here(&mut self, addr: usize) {
        let seg = Segment::of(addr);
        // SAFETY: `addr` is a block of a live size-class segment that its
        // freeing thread no longer uses (it sent it); only the owner's thread
        // changes the owner field away from itself, so `local` stays true
        // while this thread uses the page.
        unsafe {
            if (*seg).owner.load(Ordering::Relaxed) == self.id() {
                let page = Segment::page_of(seg, addr);
                if (*page).push_local(addr as *mut Block) {
                    free_local_slow(addr, self, seg);
                }
            } else {
                push_direct(addr);
            }
        }
    }
}
