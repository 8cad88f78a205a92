//! Which BigCache classes this thread reuses: the decision, on free, between
//! keeping a block in the per-thread cache and handing it to the span level.
//!
//! A cached block serves only a later request of its class; a block at the
//! span level coalesces with its neighbours and serves a request of any size.
//! With varied sizes the cache mostly holds blocks nobody asks for again
//! (`large-varied`: 35,000–42,000 faults with the cache against 20,000
//! without it). Deciding by how much the span level holds alone was
//! self-perpetuating: once it held one block's worth, every free went there
//! and the cache never served again, even in a loop reusing one size; which
//! state a run fell into depended on timing.
//!
//! So each class keeps a small saturating score. A request of class `k` that
//! follows a free of class `k` within [`WINDOW`] requests is a reuse the cache
//! would have served (score up); a request with no such free is not (score
//! down). Blocks of classes scoring at least [`CACHE_AT`] go to the cache.
//! It depends only on the sequence of sizes, never on timing.

use super::bigcache::NUM_CLASSES;

/// Requests after a free within which a request of the same class counts as
/// reuse: a loop replacing one block, or a server's two buffers in turn.
/// Four let `large-varied`'s random sizes score (1,200 → 2,200-3,200 faults).
const WINDOW: u32 = 2;
/// Score from which a class's freed blocks are cached.
const CACHE_AT: u8 = 3;
/// Highest score (one request with no free before it takes a class out of
/// the cache).
const MAX: u8 = 3;

/// Frees of one class a later request can be matched with (a program's
/// few buffers of one class per request).
const MAX_PENDING: u8 = 4;

/// One thread's reuse scores.
pub struct Reuse {
    /// Cacheable requests so far (wraps; only differences are used).
    seq: u32,
    /// Per class: one 8-byte entry, so that one operation touches one word
    /// and reads its fields without unpacking them.
    class: [Class; NUM_CLASSES],
}

/// One class's reuse history.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Class {
    /// `seq` at the last free of a block of the class.
    freed_at: u32,
    /// Frees not yet matched by a request.
    pending: u8,
    /// The score ([`CACHE_AT`] and up: cached).
    score: u8,
}

impl Reuse {
    /// No history: every class starts uncached (the span level decides).
    pub const fn new() -> Self {
        Reuse {
            seq: 0,
            class: [Class {
                freed_at: 0,
                pending: 0,
                score: 0,
            }; NUM_CLASSES],
        }
    }

    /// The score of class `k` (tests).
    #[cfg(test)]
    fn score(&self, k: usize) -> u8 {
        self.class[k].score
    }

    /// Notes a request of class `k`: a reuse if it follows a free of the
    /// class by at most [`WINDOW`] requests (each free matches one request).
    #[inline(always)]
    pub fn requested(&mut self, k: usize) {
        self.seq = self.seq.wrapping_add(1);
        self.rescore(k);
    }

    /// The score part of [`Self::requested`] for a request [`Self::hit`]
    /// already noted: a hit that takes the purge clock's turn
    /// (`path::alloc_hit`) scores its class as the general path did every
    /// purge clock, so that a class whose score fell (its
    /// frees then go the general way) is scored up again.
    #[inline]
    pub fn rescore(&mut self, k: usize) {
        let c = &mut self.class[k];
        if c.pending > 0 && self.seq.wrapping_sub(c.freed_at) <= WINDOW {
            c.pending -= 1;
            c.score = (c.score + 1).min(MAX);
        } else {
            c.pending = 0;
            c.score = c.score.saturating_sub(1);
        }
    }

    /// Notes a request served by a BigCache hit in a loop (`path::alloc_hit`):
    /// a request, but the score is left as it is: a hit is a reuse of a
    /// class already cached, and checking the window costs the hit a
    /// fifth of its instructions. Its pending frees are not matched (the
    /// free after the hit adds one, up to [`MAX_PENDING`]).
    #[inline(always)]
    pub fn hit(&mut self) {
        self.seq = self.seq.wrapping_add(1);
    }

    /// Whether blocks of class `k` wait in the cache (what [`Self::freed`]
    /// returns), without noting anything.
    #[inline(always)]
    pub fn cached(&self, k: usize) -> bool {
        self.class[k].score >= CACHE_AT
    }

    /// Notes a free of a block of class `k`; returns whether the class is
    /// reused enough for the block to wait in the cache.
    #[inline(always)]
    pub fn freed(&mut self, k: usize) -> bool {
        self.freed_now(k);
        self.add_pending(k, 1);
        self.cached(k)
    }

    /// The part of [`Self::freed`] the hot free (`path::free_hit`) notes at
    /// once: the free's place in the sequence. Its pending free is added
    /// later with the others ([`Self::add_pending`]): nothing reads it
    /// before then.
    #[inline(always)]
    pub fn freed_now(&mut self, k: usize) {
        self.class[k].freed_at = self.seq;
    }

    /// Adds `n` frees of class `k` noted by [`Self::freed_now`] to its
    /// pending ones: with [`Self::freed_now`], `n` calls of [`Self::freed`].
    #[inline(always)]
    pub fn add_pending(&mut self, k: usize, n: u64) {
        let c = &mut self.class[k];
        c.pending = (c.pending as u64 + n).min(MAX_PENDING as u64) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_on_one_class_is_cached_after_three_reuses() {
        let mut r = Reuse::new();
        assert!(!r.freed(4));
        r.requested(4);
        assert!(!r.freed(4));
        r.requested(4);
        assert!(!r.freed(4));
        r.requested(4);
        assert!(r.freed(4));
        r.requested(4);
        assert!(r.freed(4));
    }

    #[test]
    fn two_buffers_in_turn_are_both_cached() {
        // A server's request: buffers of classes 3 and 6, both freed, both
        // asked for again.
        let mut r = Reuse::new();
        for _ in 0..4 {
            r.requested(3);
            r.requested(6);
            r.freed(3);
            r.freed(6);
        }
        assert!(r.freed(3) && r.freed(6));
    }

    #[test]
    fn two_buffers_of_one_class_are_cached() {
        let mut r = Reuse::new();
        for _ in 0..4 {
            r.requested(5);
            r.requested(5);
            r.freed(5);
            r.freed(5);
        }
        assert!(r.score(5) >= CACHE_AT);
    }

    #[test]
    fn classes_not_requested_again_soon_are_not_cached() {
        let mut r = Reuse::new();
        for i in 0..100 {
            // Frees of one class, requests of others.
            r.freed(i % 3);
            r.requested(3 + i % 5);
            r.requested(3 + (i + 1) % 5);
        }
        for k in 0..NUM_CLASSES {
            assert!(!r.freed(k), "class {k}");
        }
    }

    #[test]
    fn frees_noted_now_and_added_later_equal_frees() {
        let (mut a, mut b) = (Reuse::new(), Reuse::new());
        for r in [&mut a, &mut b] {
            for _ in 0..5 {
                r.requested(7);
                r.freed(7);
            }
        }
        // Three hits and three frees each: one noted in full, one in parts.
        for _ in 0..3 {
            a.hit();
            a.freed(7);
            b.hit();
            b.freed_now(7);
        }
        b.add_pending(7, 3);
        a.requested(7);
        b.requested(7);
        let (x, y) = (a.class[7], b.class[7]);
        assert_eq!(
            (x.freed_at, x.pending, x.score),
            (y.freed_at, y.pending, y.score)
        );
        assert_eq!(a.seq, b.seq);
    }

    #[test]
    fn a_class_that_stops_being_reused_leaves_the_cache() {
        let mut r = Reuse::new();
        for _ in 0..10 {
            r.freed(2);
            r.requested(2);
        }
        assert!(r.score(2) >= CACHE_AT);
        // Requests with no free before them: the program now keeps them.
        r.requested(2);
        r.requested(2);
        assert!(r.score(2) < CACHE_AT);
    }
}
