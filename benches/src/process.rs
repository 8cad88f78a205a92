//! What this process can learn about itself: resource usage, resident memory,
//! and which shared object serves `malloc`.

use std::ffi::CStr;

/// Page faults and peak RSS from `getrusage(RUSAGE_SELF)` (all threads, live or exited).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Minor faults.
    pub minflt: u64,
    /// Major faults.
    pub majflt: u64,
    /// Peak resident set, KiB.
    pub maxrss_kb: u64,
}

/// Current resource usage of the whole process.
pub fn usage() -> Usage {
    // SAFETY: rusage is plain data; getrusage fills it and cannot fail for
    // RUSAGE_SELF with a valid pointer.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    Usage {
        minflt: ru.ru_minflt as u64,
        majflt: ru.ru_majflt as u64,
        maxrss_kb: ru.ru_maxrss as u64,
    }
}

/// Minor page faults of the calling thread so far (`RUSAGE_THREAD`).
pub fn thread_minflt() -> u64 {
    // SAFETY: as in `usage`, for the calling thread.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    ru.ru_minflt as u64
}

/// Resident set now, KiB, from /proc/self/statm (second field, in pages).
pub fn rss_kb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page / 1024
}

/// Path of the shared object that defines the `malloc` this process calls.
///
/// Asks the dynamic linker the way a call would resolve (`RTLD_DEFAULT`), then
/// which loaded object contains that address, so a preloaded allocator shows up
/// as itself and an unpreloaded process as libc.
pub fn malloc_provider() -> Option<String> {
    // SAFETY: dlsym and dladdr take NUL-terminated names / any address and
    // return NULL/0 on failure; dli_fname points into the linker's own data,
    // valid while the object stays loaded (libc and preloads never unload).
    unsafe {
        let malloc = libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr());
        if malloc.is_null() {
            return None;
        }
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(malloc, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let name = CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .into_owned();
        Some(std::fs::canonicalize(&name).map_or(name, |p| p.display().to_string()))
    }
}

/// Whether `library` (canonical path) is mapped into this process.
pub fn is_mapped(library: &str) -> bool {
    let canonical = std::fs::canonicalize(library)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| library.to_string());
    std::fs::read_to_string("/proc/self/maps")
        .map(|maps| {
            maps.lines()
                .any(|line| line.ends_with(&canonical) || line.ends_with(library))
        })
        .unwrap_or(false)
}
