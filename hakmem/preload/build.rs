//! Links libhakmem.so with `-Bsymbolic`: its own exported symbols bind
//! locally, so the fast path reads `hakmem_trace_enabled` with one
//! rip-relative load instead of through the GOT (`probe::trace_count`).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic");
}
