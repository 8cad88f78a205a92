//! hakmem's BPF programs, embedded, and the map layouts userspace reads them with.
//!
//! The programs are restricted C (`bpf/hakmem.bpf.c`) compiled by clang in
//! `build.rs`; their maps' layouts are defined once, in Rust, in [`layout`], and
//! the build script prints them as the C header the programs include.

pub mod layout;

pub use layout::{ComponentStats, SyscallStart, SyscallStats};

/// The compiled BPF object (programs `hakmem_probe_event`, `sys_enter`, `sys_exit`,
/// `hakmem_run_gate`; maps `component_stats`, `syscall_stats`, `inflight`, `misc`;
/// global `target_tgid`), aligned for aya's loader.
pub static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hakmem.bpf.o"));

// SAFETY: the shared types are `#[repr(C)]`, made of integers only, with no
// padding (build.rs checks their C sizes match), so any bytes are a valid value.
unsafe impl aya::Pod for ComponentStats {}
// SAFETY: as above.
unsafe impl aya::Pod for SyscallStats {}
// SAFETY: as above.
unsafe impl aya::Pod for SyscallStart {}

#[cfg(test)]
mod tests {
    use super::layout::*;

    #[test]
    fn misc_slots_match_their_names() {
        assert_eq!(
            MISC_COUNTERS[MISC_UNKNOWN_COMPONENT as usize],
            "unknown_component"
        );
        assert_eq!(MISC_COUNTERS[MISC_INFLIGHT_FULL as usize], "inflight_full");
        assert_eq!(MISC_COUNTERS[MISC_GATE_STOPS as usize], "gate_stops");
    }

    #[test]
    fn object_is_embedded_as_bpf_elf() {
        let obj = super::BPF_OBJECT;
        assert_eq!(&obj[..4], b"\x7fELF");
        // e_machine EM_BPF = 247.
        assert_eq!(u16::from_le_bytes([obj[18], obj[19]]), 247);
    }

    #[test]
    fn c_header_mentions_every_struct() {
        let c = c_structs();
        for s in ["component_stats", "syscall_stats", "syscall_start"] {
            assert!(c.contains(&format!("struct {s} {{")), "{s} missing");
        }
    }
}
