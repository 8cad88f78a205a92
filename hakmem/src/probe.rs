//! Probe points: where a tracer (probe-cli, bpftrace, perf probe) watches hakmem.
//!
//! The contract with the tracer, written down once:
//!
//! * `hakmem_trace_enabled` is an exported `u32` in `.data`/`.bss`. While it is
//!   0 (nobody watching) every probe point costs one relaxed load and a branch
//!   that is never taken. A tracer sets it to a non-zero value by writing the
//!   process's memory (`/proc/PID/mem` at the symbol's address) when it attaches
//!   and back to 0 when it detaches.
//! * While it is non-zero, hakmem times its components with the TSC and calls
//!   `hakmem_probe_event(component, cycles, arg)` once per component instance.
//!   That function is written in assembly: its first instruction is the 5-byte
//!   nop `0f 1f 44 00 00`, which the kernel's optimised uprobe path handles
//!   without single-stepping (about 0.5 us a hit on the reference VMs, against
//!   10 us for a stepped instruction), then `ret`. The probe's own trap happens
//!   *after* the duration was measured, so it does not inflate the figures; it
//!   only slows the traced process, and `probe-cli calibrate` measures by how much.
//! * Arguments follow the SysV ABI: `component` (u32, one of [`Component`]) in
//!   `rdi`, `cycles` (u64, TSC ticks spent in the component) in `rsi`, `arg`
//!   (u64, meaning per component, see the table) in `rdx`.
//!
//! [`COMPONENTS`] is the one definition of the component ids; hakmem-ebpf's
//! build script generates its C header from it.

use core::sync::atomic::{AtomicU32, Ordering};

/// Non-zero while a tracer is attached (see the module docs).
#[no_mangle]
#[used]
pub static hakmem_trace_enabled: AtomicU32 = AtomicU32::new(0);

/// The components a probe event can name. Values are part of the tracer ABI:
/// append, never renumber.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// A whole `malloc`-family call. `arg` = requested size.
    Malloc = 0,
    /// A whole `free`. `arg` = usable size of the freed block.
    Free = 1,
    /// Small allocation served by popping a thread-local free list. `arg` = size class.
    SmallFast = 2,
    /// Small allocation that took the refill path. `arg` = size class.
    SmallRefill = 3,
    /// Free of a small block by another thread (remote list push). `arg` = size class.
    RemoteFree = 4,
    /// BigCache lookup. `arg` = 1 on a hit, 0 on a miss.
    BigCacheLookup = 5,
    /// BigCache insertion on free. `arg` = 1 if cached, 0 if refused.
    BigCachePut = 6,
    /// ELO strategy selection. `arg` = chosen strategy id.
    EloSelect = 7,
    /// Large-block header write (alloc) or check (free). `arg` = 0 write, 1 check.
    Header = 8,
    /// Memory mapped from the OS. `arg` = bytes.
    OsMap = 9,
    /// Memory unmapped. `arg` = bytes.
    OsUnmap = 10,
    /// Memory given back with madvise. `arg` = bytes.
    OsPurge = 11,
    /// Evolution lifecycle transition. `arg` = new state (0 learn, 1 frozen).
    EvoTransition = 12,
    /// A whole `realloc`. `arg` = new size.
    Realloc = 13,
    /// Large allocation (BigCache miss path included). `arg` = requested size.
    LargeAlloc = 14,
}

/// Every component with its report name, in id order.
pub const COMPONENTS: &[(Component, &str)] = &[
    (Component::Malloc, "malloc"),
    (Component::Free, "free"),
    (Component::SmallFast, "small_fast"),
    (Component::SmallRefill, "small_refill"),
    (Component::RemoteFree, "remote_free"),
    (Component::BigCacheLookup, "bigcache_lookup"),
    (Component::BigCachePut, "bigcache_put"),
    (Component::EloSelect, "elo_select"),
    (Component::Header, "header"),
    (Component::OsMap, "os_map"),
    (Component::OsUnmap, "os_unmap"),
    (Component::OsPurge, "os_purge"),
    (Component::EvoTransition, "evo_transition"),
    (Component::Realloc, "realloc"),
    (Component::LargeAlloc, "large_alloc"),
];

/// The probe site: a 5-byte nop (the optimised-uprobe site), then `ret`.
/// `#[no_mangle]` so that it is in the dynamic symbol table of libhakmem.so
/// (and survives `strip`), like `hakmem_trace_enabled`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn hakmem_probe_event(_component: u32, _cycles: u64, _arg: u64) {
    core::arch::naked_asm!(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00", "ret")
}

/// Elsewhere: an ordinary empty function a uprobe can still attach to.
#[cfg(not(target_arch = "x86_64"))]
#[no_mangle]
#[inline(never)]
pub extern "C" fn hakmem_probe_event(component: u32, cycles: u64, arg: u64) {
    core::hint::black_box((component, cycles, arg));
}

/// True while a tracer is attached. One relaxed load.
#[inline(always)]
pub fn tracing() -> bool {
    // `no-probes`: the build scripts/probe-overhead.sh compares against; every
    // probe point folds away, so its cost with nobody watching can be measured.
    !cfg!(feature = "no-probes") && hakmem_trace_enabled.load(Ordering::Relaxed) != 0
}

/// The TSC (x86-64) or a monotonic nanosecond clock elsewhere.
#[inline(always)]
pub fn now() -> u64 {
    raw_now().wrapping_sub(PROBE_CYCLES.with(|c| c.get()))
}

std::thread_local! {
    /// TSC cycles this thread spent inside probe calls: subtracted from `now`, so an
    /// outer component's duration excludes the probe hits of the components inside it.
    static PROBE_CYCLES: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

#[inline(always)]
fn raw_now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        crate::os::monotonic_ns()
    }
}

/// Emits one event: `component` ran from `start` (a [`now`] value) until now.
#[inline(never)]
#[cold]
pub fn emit(component: Component, start: u64, arg: u64) {
    let cycles = now().wrapping_sub(start);
    emit_cycles(component, cycles, arg)
}

/// Emits an event with a duration measured elsewhere (or 0 for pure counts).
#[inline(never)]
#[cold]
pub fn emit_cycles(component: Component, cycles: u64, arg: u64) {
    let before = raw_now();
    hakmem_probe_event(component as u32, cycles, arg);
    let spent = raw_now().wrapping_sub(before);
    PROBE_CYCLES.with(|c| c.set(c.get().wrapping_add(spent)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_table_is_in_id_order() {
        for (i, (c, _)) in COMPONENTS.iter().enumerate() {
            assert_eq!(*c as usize, i, "COMPONENTS must list ids in order");
        }
    }

    #[test]
    fn probe_function_starts_with_nop5() {
        let f = hakmem_probe_event as *const () as *const u8;
        // SAFETY: reading the first 6 bytes of our own code.
        let bytes = unsafe { core::slice::from_raw_parts(f, 6) };
        assert_eq!(bytes, &[0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3]);
    }

    #[test]
    fn emit_is_callable_when_nobody_listens() {
        let t = now();
        emit(Component::Malloc, t, 42);
        emit_cycles(Component::OsMap, 0, 4096);
    }
}
