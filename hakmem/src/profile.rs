//! Call-site profiling: a bounded, lock-free table of allocation sites.

/// The table slot of `site` (0 = unknown site).
pub fn site_slot(site: usize) -> u32 {
    let _ = site;
    0
}
pub fn print() {}
/// The site number of a Rust source location.
pub fn rust_site(loc: &'static core::panic::Location<'static>) -> usize {
    loc as *const _ as usize
}
