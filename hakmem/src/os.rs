//! The only module that talks to the OS: the raw system calls (map, unmap,
//! madvise, mremap, mprotect, time, errno, stderr, resource usage).
//!
//! The bottom layer: it imports nothing of hakmem. Every call returns an error
//! value instead of panicking; callers turn a failed map into `NULL` + `ENOMEM`.
//! The memory calls as the allocator makes them, counted and traced, are `vm`'s.

use core::sync::atomic::Ordering::Relaxed;

/// The OS page size hakmem assumes (x86-64 and aarch64 4 KiB kernels).
pub const OS_PAGE: usize = 4096;

/// Test-only fault injection: when non-zero, this many future maps fail
/// (decremented per failure). `usize::MAX` = fail until reset.
pub static FAIL_NEXT_MAPS: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

fn injected_failure() -> bool {
    let n = FAIL_NEXT_MAPS.load(Relaxed);
    if n == 0 {
        return false;
    }
    if n != usize::MAX {
        FAIL_NEXT_MAPS.store(n - 1, Relaxed);
    }
    true
}

/// mmap: `len` bytes (a multiple of [`OS_PAGE`]) of zeroed, private,
/// anonymous memory, or None (also when [`FAIL_NEXT_MAPS`] says so).
pub fn map_anonymous(len: usize) -> Option<*mut u8> {
    map_anonymous_at(0, len)
}

/// [`map_anonymous`] placed at `hint` if that range is free (a hint only,
/// never `MAP_FIXED`: where the range is taken the kernel maps elsewhere,
/// and nothing already mapped is touched). `hint` 0: anywhere.
pub fn map_anonymous_at(hint: usize, len: usize) -> Option<*mut u8> {
    if injected_failure() {
        return None;
    }
    // SAFETY: anonymous private mapping without MAP_FIXED; no existing
    // memory is affected, whatever the hint.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p as *mut u8)
    }
}

/// munmap, errno kept; true on success.
///
/// # Safety
/// `[p, p+len)` is a range the caller mapped and nobody uses any more.
pub unsafe fn unmap(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller's contract.
    keep_errno(|| unsafe { libc::munmap(p as *mut libc::c_void, len) }) == 0
}

/// madvise(MADV_DONTNEED), errno kept: the range stays mapped and reads back
/// as zeroes. True on success.
///
/// # Safety
/// `[p, p+len)` is mapped by the caller and holds nothing anyone still reads.
pub unsafe fn discard(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller's contract.
    keep_errno(|| unsafe { libc::madvise(p as *mut libc::c_void, len, libc::MADV_DONTNEED) }) == 0
}

/// mremap without MREMAP_MAYMOVE, errno kept: the mapping keeps its address or the call fails.
///
/// # Safety
/// `[p, p+old)` is one mapping of the caller's; when shrinking, nobody uses the part cut off.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: the caller's contract.
    keep_errno(|| unsafe { libc::mremap(p as *mut libc::c_void, old, new, 0) }) != libc::MAP_FAILED
}

/// mprotect(PROT_NONE): makes `[p, p+len)` inaccessible. True on success.
///
/// # Safety
/// `[p, p+len)` is mapped by the caller and nobody will touch it again.
pub unsafe fn protect_none(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller's contract.
    keep_errno(|| unsafe { libc::mprotect(p as *mut libc::c_void, len, libc::PROT_NONE) }) == 0
}

/// mprotect(PROT_READ | PROT_WRITE): makes `[p, p+len)` ordinary memory
/// again (undoes [`protect_none`]). True on success.
///
/// # Safety
/// `[p, p+len)` is mapped by the caller.
pub unsafe fn protect_read_write(p: *mut u8, len: usize) -> bool {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: the caller's contract.
    keep_errno(|| unsafe { libc::mprotect(p as *mut libc::c_void, len, prot) }) == 0
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO, no syscall on x86-64).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The calling thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID:
/// a syscall, ~0.3 us): what a page fault costs the thread, without the
/// time it waited for a CPU while another thread ran.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// `clock` in nanoseconds (both clocks above always exist, so the call
/// cannot fail).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `membarrier(2)` commands (linux/membarrier.h).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Registers the process for [`membarrier`] (once; later calls are cheap).
/// False where the kernel lacks it.
pub fn membarrier_register() -> bool {
    // SAFETY: a syscall with integer arguments only.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
        ) == 0
    }
}

/// Every running thread of this process executes a full memory barrier
/// before this returns (the heavy side of an asymmetric fence: the other
/// side needs only a compiler fence). Requires [`membarrier_register`].
pub fn membarrier() -> bool {
    // SAFETY: a syscall with integer arguments only.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) == 0 }
}

/// Reads the start of a small file (sysfs, procfs) into `buf` with raw
/// `open`/`read` (no allocation). Returns the bytes read, or None. errno is
/// left as it was: these reads run inside malloc and free (the span heap
/// asks about a thread that may have exited: ENOENT), which must not change
/// it when they succeed.
pub fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: NUL-terminated path; fd closed below; the read is bounded by `buf`.
    let n = keep_errno(|| unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return -1;
        }
        let n = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
        libc::close(fd);
        n
    });
    (n > 0).then_some(n as usize)
}

/// How many pages of `[p, p+len)` are resident (`mincore`); `vec` needs one
/// byte per page. None if the kernel refused (unmapped range, `vec` short).
pub fn resident_pages(p: *mut u8, len: usize, vec: &mut [u8]) -> Option<usize> {
    if vec.len() < len.div_ceil(OS_PAGE) {
        return None;
    }
    // SAFETY: `vec` holds one byte per page of the range (checked above).
    let r = unsafe { libc::mincore(p as *mut libc::c_void, len, vec.as_mut_ptr()) };
    (r == 0).then(|| {
        vec[..len.div_ceil(OS_PAGE)]
            .iter()
            .filter(|&&b| b & 1 != 0)
            .count()
    })
}

/// The one-minute load average of the machine, times 100, from
/// /proc/loadavg (no allocation). None where /proc is not mounted.
pub(crate) fn load_average_x100() -> Option<u32> {
    let mut buf = [0u8; 64];
    let n = read_file(c"/proc/loadavg", &mut buf)?;
    parse_load_x100(&buf[..n])
}

/// The first field of /proc/loadavg ("7.86 6.80 5.22 3/456 1234"), times 100.
pub(crate) fn parse_load_x100(s: &[u8]) -> Option<u32> {
    let field = s.split(|&c| c == b' ').next()?;
    let mut parts = field.split(|&c| c == b'.');
    let whole = parse_decimal(parts.next()?)?;
    let frac = match parts.next() {
        Some(f) => {
            let f = &f[..f.len().min(2)];
            parse_decimal(f)? * if f.len() == 1 { 10 } else { 1 }
        }
        None => 0,
    };
    u32::try_from(whole.checked_mul(100)? + frac).ok()
}

/// A field of a /proc file that is a decimal number (digits only, at most
/// 19 of them: no overflow), for the parsers of such files.
pub(crate) fn parse_decimal(d: &[u8]) -> Option<u64> {
    (!d.is_empty() && d.len() <= 19 && d.iter().all(u8::is_ascii_digit))
        .then(|| d.iter().fold(0u64, |n, c| n * 10 + (c - b'0') as u64))
}

/// How many CPUs this process may run on (`sched_getaffinity`), at least 1.
pub(crate) fn cpus_allowed() -> u32 {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel fills it
    // (bounded by its size).
    let n = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        libc::CPU_COUNT(&set)
    };
    n.max(1) as u32
}

/// The calling thread's kernel id (a system call: cache it).
pub fn gettid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// The process's resident set in bytes, from /proc/self/statm (no allocation).
pub fn process_rss() -> u64 {
    let mut buf = [0u8; 128];
    let Some(n) = read_file(c"/proc/self/statm", &mut buf) else {
        return 0;
    };
    // statm: "size resident shared ..." in pages.
    let mut fields = buf[..n].split(|&c| c == b' ');
    fields.next();
    let resident = fields
        .next()
        .map(|d| {
            d.iter()
                .take_while(|c| c.is_ascii_digit())
                .fold(0u64, |n, c| n * 10 + (c - b'0') as u64)
        })
        .unwrap_or(0);
    resident * OS_PAGE as u64
}

/// Where diagnostics go: fd 2, or the copy of it [`keep_stderr`] made.
static DIAG_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(2);

/// Keeps a copy of stderr (close-on-exec, at fd 100 or above) for the exit
/// report: programs built on gnulib's `close_stdout` (coreutils, xz) close
/// fd 2 before the `.fini_array` report runs, which then went nowhere.
/// Called once, when `HAKMEM_STATS` or `HAKMEM_PROFILE` asks for a report.
pub fn keep_stderr() {
    // SAFETY: F_DUPFD_CLOEXEC only creates a descriptor; -1 if fd 2 is closed.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 100) };
    if fd >= 0 {
        DIAG_FD.store(fd, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes raw bytes to stderr, ignoring errors (diagnostics must never fail the host).
pub fn write_stderr(bytes: &[u8]) {
    let fd = DIAG_FD.load(core::sync::atomic::Ordering::Relaxed);
    // SAFETY: writing a valid buffer to a descriptor (a closed one fails with EBADF).
    unsafe { libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
}

/// Sets the calling thread's errno.
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Faults in `[p, p+len)` now, in one call (MADV_POPULATE_WRITE, Linux 5.14+),
/// instead of one page fault per page later. False if unsupported.
pub fn populate(p: *mut u8, len: usize) -> bool {
    const MADV_POPULATE_WRITE: i32 = 23;
    // madvise takes a page-aligned start (a block starts just past its
    // header): cover the pages holding the range.
    let start = p as usize & !(OS_PAGE - 1);
    let len = len + (p as usize - start);
    // SAFETY: callers pass a range they own; its pages are theirs too.
    keep_errno(|| unsafe {
        libc::madvise(start as *mut libc::c_void, len, MADV_POPULATE_WRITE) == 0
    })
}

/// Asks for (`on`) or against transparent huge pages on `[p, p+len)`.
pub fn advise_thp(p: *mut u8, len: usize, on: bool) -> bool {
    let advice = if on {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: callers pass a range they own; advice only.
    keep_errno(|| unsafe { libc::madvise(p as *mut libc::c_void, len, advice) == 0 })
}

/// Runs `f` (a syscall whose failure hakmem handles itself) and restores
/// errno: `free` must leave errno alone (POSIX.1-2024), and a malloc that
/// succeeds after, say, refused advice must not leave a stale error behind.
#[inline]
pub fn keep_errno<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: __errno_location returns this thread's errno slot.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *slot };
    let r = f();
    // SAFETY: as above.
    unsafe { *slot = saved };
    r
}

/// Minor page faults of the calling thread so far (getrusage: a syscall, so
/// only for sampled measurements).
pub fn thread_minor_faults() -> u64 {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_minflt as u64
}
