//! The span heap under threads: allocations, frees, in-place resizes and
//! both kinds of purge (waiting for the lock, and skipping a busy heap) from
//! four threads at once, spans handed between threads. Every span carries its
//! owner's stamp in its first and last page; a span handed out twice, or
//! lists changed by two threads at once, shows up as a wrong stamp, an
//! overlap, or a broken invariant in the final walk (and, with
//! `--features debug-checks`, in the walk after every change).
//!
//! A failed `try_lock` once dropped a guard it never held and released the
//! holder's lock; `fork_churn.c` then crashed in about one run in four.

use hakmem::large::span_heap;
use std::sync::atomic::{AtomicUsize, Ordering::*};

const THREADS: usize = 4;
const OPS: usize = 20_000;
const SHARED: usize = 16;

static HANDOFF: [AtomicUsize; SHARED] = [const { AtomicUsize::new(0) }; SHARED];

fn stamp(start: usize, pages: usize, v: u64) {
    // SAFETY: a live span of `pages` pages that this thread owns.
    unsafe {
        (start as *mut u64).write(v);
        ((start + pages * 4096 - 8) as *mut u64).write(v);
    }
}

fn stamped(start: usize, pages: usize) -> (u64, u64) {
    // SAFETY: as in `stamp`.
    unsafe {
        (
            (start as *const u64).read(),
            ((start + pages * 4096 - 8) as *const u64).read(),
        )
    }
}

#[test]
fn threads_share_the_span_heap_without_breaking_it() {
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t as u64 + 1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                // (start, pages, stamp)
                let mut live: Vec<(usize, usize, u64)> = Vec::new();
                for i in 0..OPS {
                    match next() % 10 {
                        0..=2 => {
                            let pages = 1 + (next() % 700) as usize;
                            let s = span_heap::alloc(pages, t as u32).expect("span");
                            let v = next();
                            stamp(s.start, pages, v);
                            live.push((s.start, pages, v));
                        }
                        3..=5 if !live.is_empty() => {
                            let (start, pages, v) = live.swap_remove(next() as usize % live.len());
                            assert_eq!(stamped(start, pages), (v, v), "span contents kept");
                            assert_eq!(span_heap::used_span_at(start), Some(pages));
                            span_heap::free(start);
                        }
                        6 if !live.is_empty() => {
                            let k = next() as usize % live.len();
                            let (start, pages, v) = live[k];
                            let want = 1 + (next() % 900) as usize;
                            if span_heap::resize(start, want) {
                                stamp(start, want, v);
                                live[k].1 = want;
                            } else {
                                assert_eq!(span_heap::used_span_at(start), Some(pages));
                            }
                        }
                        7 if !live.is_empty() => {
                            // Hand a span to whichever thread takes the slot next.
                            let (start, pages, v) = live.swap_remove(next() as usize % live.len());
                            let _ = (pages, v);
                            let got = HANDOFF[next() as usize % SHARED].swap(start, AcqRel);
                            if got != 0 {
                                let pages = span_heap::used_span_at(got).expect("a live span");
                                let (a, b) = stamped(got, pages);
                                assert_eq!(a, b, "a handed-over span's stamps agree");
                                live.push((got, pages, a));
                            }
                        }
                        8 => {
                            span_heap::purge(if i % 5 == 0 { 0 } else { 1 }, false);
                        }
                        _ => {
                            span_heap::purge(1, true);
                        }
                    }
                }
                for (start, pages, v) in live {
                    assert_eq!(stamped(start, pages), (v, v));
                    span_heap::free(start);
                }
            })
        })
        .collect();
    // Lists corrupted by two writers at once can hold a cycle: fail, not hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !workers.iter().all(|w| w.is_finished()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the span heap hung (a cycle in a free list?)"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for w in workers {
        w.join().expect("a worker failed");
    }
    for slot in &HANDOFF {
        let s = slot.swap(0, AcqRel);
        if s != 0 {
            span_heap::free(s);
        }
    }
    span_heap::check();
    span_heap::purge(0, true);
    span_heap::check();
    assert_eq!(span_heap::dirty_bytes(), 0);
}
