//! hakmem's BPF programs, embedded, and the map layouts userspace reads them with.
//!
//! The programs are restricted C (`bpf/hakmem.bpf.c`) compiled by clang in
//! `build.rs`; their maps' layouts are defined once, in Rust, in [`layout`], and
//! the build script prints them as the C header the programs include.

pub mod layout;

pub use layout::{ComponentStats, ProcessTotals, SyscallStart, SyscallStats, TracedProcess};

/// The compiled BPF object (programs `hakmem_probe_final`, `sys_enter`, `sys_exit`,
/// `follow_fork`, `follow_exec`, `follow_exit`; maps `traced`, `finals`,
/// `scratch`, `syscall_stats`, `inflight`, `misc`; global `follow`), aligned for
/// aya's loader.
pub static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hakmem.bpf.o"));

// SAFETY: the shared types are `#[repr(C)]`, made of integers only, with no
// padding (build.rs checks their C sizes match), so any bytes are a valid value.
unsafe impl aya::Pod for ComponentStats {}
// SAFETY: as above.
unsafe impl aya::Pod for SyscallStats {}
// SAFETY: as above.
unsafe impl aya::Pod for SyscallStart {}
// SAFETY: as above.
unsafe impl aya::Pod for ProcessTotals {}
// SAFETY: as above.
unsafe impl aya::Pod for TracedProcess {}

#[cfg(test)]
mod tests {
    use super::layout::*;

    #[test]
    fn misc_slots_match_their_names() {
        assert_eq!(
            MISC_COUNTERS[MISC_FINAL_UNREADABLE as usize],
            "final_unreadable"
        );
        assert_eq!(MISC_COUNTERS[MISC_INFLIGHT_FULL as usize], "inflight_full");
        assert_eq!(MISC_COUNTERS[MISC_TRACED_FULL as usize], "traced_full");
        assert_eq!(
            MISC_COUNTERS[MISC_FORKS_FOLLOWED as usize],
            "forks_followed"
        );
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
        for s in [
            "component_stats",
            "process_totals",
            "traced_process",
            "syscall_stats",
            "syscall_start",
        ] {
            assert!(c.contains(&format!("struct {s} {{")), "{s} missing");
        }
    }
}
