//! tracefs, for the one part of probe-cli that needs it: the perf tracepoint
//! counters of `breakdown` (a tracepoint's id is only published there). The
//! eBPF trace itself uses raw tracepoints and uprobes, which need no mount.
//!
//! A fresh machine has tracefs unmounted; as root probe-cli mounts it where the
//! kernel expects it and says so on stderr.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where tracefs may already be mounted.
const MOUNTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs root with its `events/` directory, mounting it first when
/// nothing is mounted and probe-cli runs as root.
pub fn root() -> Result<PathBuf> {
    if let Some(found) = find() {
        return Ok(found);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::NotPermitted(
            "tracefs is not mounted at /sys/kernel/tracing and only root may mount it \
             (mount -t tracefs nodev /sys/kernel/tracing)"
                .into(),
        ));
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings and no mount data.
    let r = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(Error::Kernel(format!(
            "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    eprintln!("probe-cli: mounted tracefs at /sys/kernel/tracing (it was not mounted)");
    find().ok_or_else(|| {
        Error::Kernel("tracefs mounted but has no events/ (CONFIG_FTRACE_SYSCALLS?)".into())
    })
}

fn find() -> Option<PathBuf> {
    MOUNTS
        .iter()
        .map(Path::new)
        .find(|r| r.join("events").is_dir())
        .map(Path::to_path_buf)
}
