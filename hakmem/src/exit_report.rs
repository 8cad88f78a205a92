//! What hakmem prints when the process exits (`HAKMEM_STATS`, `HAKMEM_PROFILE`).
//!
//! Registered through `.fini_array` rather than `atexit`, which may allocate.

extern "C" fn at_exit() {
    let o = crate::options::get();
    if o.print_stats {
        crate::stats::print(&crate::stats::collect());
    }
    if o.print_profile {
        // The exiting thread's last hits may still be tallies (other live
        // threads' lag by up to 255 hot hits each).
        crate::thread::settle_current();
        crate::large::profile::print();
    }
}

#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;

/// Makes sure the linker keeps [`AT_EXIT`] (an object file nothing references
/// may be dropped from an rlib link).
#[inline]
pub fn ensure_registered() {
    core::hint::black_box(&AT_EXIT);
}
