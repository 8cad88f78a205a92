//! A tracer's registration in a target's hakmem: the reference-counted trace
//! flag, held by an RAII guard so that no exit path leaves a foreign process
//! timing itself.
//!
//! `hakmem_trace_enabled` counts the tracers attached and `hakmem_tracers` holds
//! their pids (see `hakmem::probe`). Tracers update both under an exclusive
//! `flock` of the file hakmem lives in (advisory: the target never sees it), so
//! two probe-cli processes never interleave their read-modify-write. A slot
//! whose pid is dead belongs to a tracer that was killed before it could
//! detach: the next registration takes its count back.
//!
//! Every exit path releases: `Drop` (normal end, errors), a panic hook (the
//! release profile aborts on panic, so no destructor would run), and SIGINT /
//! SIGTERM, which only set the stop flag the loops poll (see `trace::stop_flag`).

use crate::error::{Error, Result};
use crate::target::{proc_error, Target};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Mutex, Once};

/// Slots of `hakmem_tracers` (hakmem::probe::MAX_TRACERS).
const SLOTS: usize = hakmem::probe::MAX_TRACERS;

/// What a release needs, kept where the panic hook finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    pid: u32,
    flag: u64,
    slots: Option<u64>,
    lock: PathBuf,
}

/// Registrations not yet released, for the panic hook.
static ACTIVE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// One tracer counted in one target's flag until dropped.
pub struct Registration {
    entry: Option<Entry>,
}

/// An exclusive flock on `path`, released when the file closes.
fn lock(path: &PathBuf) -> std::io::Result<File> {
    let f = File::open(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(f)
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid != 0
        && (unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

/// The target's memory, for reading and writing.
fn mem(pid: u32) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(|e| proc_error(pid, e))
}

fn read_u32(mem: &File, at: u64) -> std::io::Result<u32> {
    let mut v = [0u8; 4];
    mem.read_exact_at(&mut v, at)?;
    Ok(u32::from_ne_bytes(v))
}

fn write_u32(mem: &File, at: u64, v: u32) -> std::io::Result<()> {
    mem.write_all_at(&v.to_ne_bytes(), at)
}

fn io_error(pid: u32) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Other(format!("updating the trace flag of process {pid}: {e}"))
}

impl Registration {
    /// Counts this tracer in `target`'s flag (switching hakmem's timing on if it
    /// was the first). Returns the registration and how many other tracers are
    /// attached.
    pub fn register(target: &Target) -> Result<(Registration, u32)> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                release_all();
                previous(info);
            }));
        });
        let entry = entry_of(target);
        let me = std::process::id();
        let _lock = lock(&entry.lock).map_err(Error::other("locking the hakmem file"))?;
        let mem = mem(entry.pid)?;
        let err = io_error(entry.pid);
        let mut count = read_u32(&mem, entry.flag).map_err(&err)?;
        if let Some(slots) = entry.slots {
            let mut claimed = false;
            for i in 0..SLOTS as u64 {
                let at = slots + 4 * i;
                let pid = read_u32(&mem, at).map_err(&err)?;
                if pid != 0 && !pid_alive(pid) {
                    // A tracer killed before it could detach: take its count back.
                    count = count.saturating_sub(1);
                    write_u32(&mem, at, 0).map_err(&err)?;
                }
                if !claimed && (pid == 0 || !pid_alive(pid)) {
                    write_u32(&mem, at, me).map_err(&err)?;
                    claimed = true;
                }
            }
        }
        let others = count;
        write_u32(&mem, entry.flag, count + 1).map_err(&err)?;
        ACTIVE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry.clone());
        Ok((Registration { entry: Some(entry) }, others))
    }

    /// The registration a forked child inherited from its parent (its copy of
    /// the flag already counts this tracer, and its copy of the slots names it).
    pub fn inherited(target: &Target) -> Registration {
        Registration {
            entry: Some(entry_of(target)),
        }
    }

    /// Takes this tracer out of the count (switching timing off if it was the
    /// last). A target that is gone is not an error.
    pub fn release(&mut self) -> Result<()> {
        let Some(entry) = self.entry.take() else {
            return Ok(());
        };
        ACTIVE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| *e != entry);
        match release_entry(&entry) {
            Err(_) if !crate::target::alive(entry.pid) => Ok(()),
            r => r,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

fn entry_of(target: &Target) -> Entry {
    Entry {
        pid: target.pid,
        flag: target.flag_address,
        slots: target.elf.tracer_slots.map(|s| target.load_bias + s),
        lock: target.open_path.clone(),
    }
}

fn release_entry(entry: &Entry) -> Result<()> {
    let _lock = lock(&entry.lock).map_err(Error::other("locking the hakmem file"))?;
    let mem = mem(entry.pid)?;
    let err = io_error(entry.pid);
    if let Some(slots) = entry.slots {
        let me = std::process::id();
        for i in 0..SLOTS as u64 {
            if read_u32(&mem, slots + 4 * i).map_err(&err)? == me {
                write_u32(&mem, slots + 4 * i, 0).map_err(&err)?;
                break;
            }
        }
    }
    let count = read_u32(&mem, entry.flag).map_err(&err)?;
    write_u32(&mem, entry.flag, count.saturating_sub(1)).map_err(&err)
}

/// Releases every registration still held (the panic hook's job).
fn release_all() {
    let entries = std::mem::take(&mut *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()));
    for e in entries {
        let _ = release_entry(&e);
    }
}
