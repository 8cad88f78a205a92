//! What the background thread (`crate::background`) does at each pass, over
//! both sides: the large blocks' caches and free spans
//! (`large::purge_thread`), and the small-block memory no thread owns, the
//! segment pool and abandoned segments (`small::reclaim::purge_unowned`).
//! A live thread's own heap is not touched: its thread alone changes its
//! pages (a thread that frees its blocks and sleeps keeps them).

use crate::background::Pass;
use crate::large::purge_thread;
use crate::options;
use crate::os;
use crate::small::reclaim;

/// The pass, registered at every thread's set-up (`life::init_current`).
pub(super) static PASS: Pass = Pass { run, has_work };

fn run() -> bool {
    let large = purge_thread::pass();
    let delay_ns = options::get().purge_delay_ms * 1_000_000;
    let small = reclaim::purge_unowned(os::monotonic_ns(), delay_ns);
    large || small
}

fn has_work() -> bool {
    purge_thread::has_work() || reclaim::unowned_work()
}
