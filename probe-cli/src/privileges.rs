//! Checks up front that probe-cli may load BPF programs, so a missing privilege is
//! named once instead of surfacing as an EPERM from deep inside the loader.

use crate::error::{Error, Result};

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .unwrap_or(0)
}

/// Ok when root, or when CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) are effective,
/// plus CAP_SYS_PTRACE when another process's memory must be written
/// (`other_process`); otherwise a NotPermitted error naming what is missing.
pub fn check(other_process: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let caps = effective_caps();
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    if other_process && !has(CAP_SYS_PTRACE) {
        // Writing hakmem_trace_enabled through /proc/PID/mem needs ptrace rights.
        missing.push("CAP_SYS_PTRACE");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotPermitted(format!(
            "run as root, or grant {} (missing: {})",
            "CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE",
            missing.join(", ")
        )))
    }
}
