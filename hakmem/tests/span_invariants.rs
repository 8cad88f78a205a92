//! The span heap's coalescing invariants hold after every operation of a
//! random sequence of allocations, frees, resizes and purges (issue 13). With
//! `--features debug-checks` the span heap also checks them itself at every
//! state change.

use hakmem::large::span_heap::{self, Span};

#[test]
fn spans_tile_arenas_and_free_neighbours_are_coalesced() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: Vec<Span> = Vec::new();
    for i in 0..3000 {
        match next() % 8 {
            0..=3 => {
                let pages = 1 + (next() % 2048) as usize;
                let s = span_heap::alloc(pages, 7).expect("span");
                assert_eq!(span_heap::used_span_at(s.start), Some(pages));
                live.push(s);
            }
            4 | 5 if !live.is_empty() => {
                let s = live.swap_remove((next() as usize) % live.len());
                span_heap::free(s.start);
                assert_eq!(span_heap::used_span_at(s.start), None);
            }
            6 if !live.is_empty() => {
                let k = (next() as usize) % live.len();
                let pages = 1 + (next() % 4096) as usize;
                if span_heap::resize(live[k].start, pages) {
                    live[k].pages = pages;
                }
                assert_eq!(span_heap::used_span_at(live[k].start), Some(live[k].pages));
            }
            _ => {
                span_heap::purge(if i % 3 == 0 { 0 } else { 1000 }, true);
            }
        }
        span_heap::check();
    }
    // Live spans never overlap.
    live.sort_by_key(|s| s.start);
    for w in live.windows(2) {
        assert!(w[0].start + w[0].pages * 4096 <= w[1].start);
    }
    for s in live {
        span_heap::free(s.start);
    }
    span_heap::purge(0, true);
    span_heap::check();
    assert_eq!(span_heap::dirty_bytes(), 0);
}
