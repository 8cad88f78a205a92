//! Remote frees that travel in batches (`small/remote.rs`): blocks one thread
//! allocates and another frees must come back to their owner, whether the
//! freeing thread keeps freeing, calls `collect`, or exits with blocks still
//! waiting in its outbox; and their contents must be untouched on the way.

use std::alloc::Layout;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

/// The tests read process-wide figures and the reuse of blocks, so they run
/// one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sizes 8..=2048 bytes: most wait in outboxes, those above 1 KiB go directly.
fn size(i: usize) -> usize {
    8 + (i * 7919) % 2041
}

fn filled(i: usize) -> Vec<u8> {
    vec![i as u8; size(i)]
}

/// A producer allocates, a consumer checks and frees, round after round: if
/// the producer never got the blocks back, each round would take fresh pages.
#[test]
fn a_producer_gets_its_blocks_back_round_after_round() {
    let _serial = serial();
    let (tx, rx) = mpsc::sync_channel::<Vec<Vec<u8>>>(2);
    let consumer = thread::spawn(move || {
        for batch in rx {
            for (i, b) in batch.iter().enumerate() {
                assert!(b.iter().all(|&x| x == i as u8), "block {i} changed");
            }
            drop(batch);
        }
    });
    let mut resident_after_warmup = 0;
    for round in 0..60 {
        let batch: Vec<Vec<u8>> = (0..2000).map(filled).collect();
        tx.send(batch).unwrap();
        if round == 10 {
            hakmem::collect(false);
            resident_after_warmup = hakmem::stats().resident;
        }
    }
    drop(tx);
    consumer.join().unwrap();
    hakmem::collect(false);
    let resident = hakmem::stats().resident;
    assert!(
        resident < resident_after_warmup + (8 << 20),
        "resident grew from {resident_after_warmup} to {resident} bytes: remote frees did not come back"
    );
}

/// A consumer that collects, or exits, with blocks still in its outbox
/// sends them: after the owner's next collect, its next allocations of the
/// class are those very blocks.
#[test]
fn blocks_waiting_in_an_outbox_leave_at_collect_and_at_exit() {
    let _serial = serial();
    let layout = Layout::from_size_align(1000, 8).unwrap();
    for exit in [false, true] {
        // SAFETY: a non-zero layout.
        let mut sent: Vec<usize> = (0..5)
            .map(|_| unsafe { std::alloc::alloc(layout) } as usize)
            .collect();
        assert!(sent.iter().all(|&p| p != 0));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (hold_tx, hold_rx) = mpsc::channel::<()>();
        let to_free = sent.clone();
        let consumer = thread::spawn(move || {
            for p in to_free {
                // SAFETY: allocated above with `layout`, freed once, here.
                unsafe { std::alloc::dealloc(p as *mut u8, layout) };
            }
            if !exit {
                hakmem::collect(false);
                done_tx.send(()).unwrap();
                hold_rx.recv().unwrap();
            }
        });
        let consumer = if exit {
            consumer.join().unwrap();
            None
        } else {
            done_rx.recv().unwrap();
            Some(consumer)
        };
        hakmem::collect(false);
        // SAFETY: as above.
        let mut again: Vec<usize> = (0..5)
            .map(|_| unsafe { std::alloc::alloc(layout) } as usize)
            .collect();
        sent.sort();
        again.sort();
        assert_eq!(
            sent, again,
            "exit={exit}: the freed blocks did not come back"
        );
        for p in again {
            // SAFETY: as above.
            unsafe { std::alloc::dealloc(p as *mut u8, layout) };
        }
        if let Some(consumer) = consumer {
            hold_tx.send(()).unwrap();
            consumer.join().unwrap();
        }
    }
}
