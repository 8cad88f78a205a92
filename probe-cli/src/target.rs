//! The traced process: where hakmem lives in it, and switching hakmem's tracing on and off.

use crate::elf::{self, ElfInfo};
use crate::error::{Error, Result};
use serde::Serialize;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How hakmem got into the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Linkage {
    /// `libhakmem.so` through `LD_PRELOAD`.
    Preloaded,
    /// A shared library that is not in `LD_PRELOAD` (linked or dlopen'ed).
    SharedLibrary,
    /// Linked into the executable (`#[global_allocator]`).
    Executable,
}

/// A process with hakmem in it.
#[derive(Clone, Debug)]
pub struct Target {
    /// Process id (thread group id).
    pub pid: u32,
    /// Its command line, space separated.
    pub command: String,
    /// The file hakmem's code is in, as the process maps it.
    pub hakmem_path: PathBuf,
    /// The same file, openable from probe-cli's mount namespace.
    pub open_path: PathBuf,
    /// How hakmem got there.
    pub linkage: Linkage,
    /// hakmem's options from the process's initial environment (`HAKMEM_*`).
    pub options: Vec<String>,
    /// The file's probe addresses.
    pub elf: ElfInfo,
    /// Run-time address of `hakmem_trace_enabled`.
    pub flag_address: u64,
    /// What to add to the file's virtual addresses to get run-time addresses.
    pub load_bias: u64,
}

/// One line of `/proc/PID/maps`.
struct Mapping {
    start: u64,
    /// `start-end` as in the maps line (names the /proc/PID/map_files entry).
    range: String,
    offset: u64,
    executable: bool,
    path: String,
}

fn read_maps(pid: u32) -> Result<Vec<Mapping>> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| proc_error(pid, e))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            let _dev = fields.next()?;
            let _inode = fields.next()?;
            let path = fields.next()?.trim_start();
            if !path.starts_with('/') {
                return None;
            }
            let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
            Some(Mapping {
                start,
                range: range.to_string(),
                offset,
                executable: perms.contains('x'),
                path: path.to_string(),
            })
        })
        .collect())
}

/// Maps a /proc read failure of `pid` to "no such process" or "not permitted".
pub fn proc_error(pid: u32, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoProcess(pid),
        std::io::ErrorKind::PermissionDenied => Error::NotPermitted(format!(
            "cannot read /proc/{pid}: needs root or CAP_SYS_PTRACE"
        )),
        _ => Error::Other(format!("/proc/{pid}: {e}")),
    }
}

/// The process's initial environment variable `name`, if set.
fn environ(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Finds hakmem in process `pid`: the executable or a mapped library carrying
/// hakmem's probe symbols (libhakmem.so is looked at first).
pub fn locate(pid: u32) -> Result<Target> {
    if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(Error::NoProcess(pid));
    }
    let maps = read_maps(pid)?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| proc_error(pid, e))?;

    let mut candidates: Vec<&str> = Vec::new();
    for m in maps.iter().filter(|m| m.executable) {
        if !candidates.contains(&m.path.as_str()) {
            candidates.push(&m.path);
        }
    }
    // Cheapest likely hits first: libhakmem*, then the executable, then the rest.
    candidates.sort_by_key(|p| {
        let name = Path::new(p)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if name.starts_with("libhakmem") {
            0
        } else if Path::new(p) == exe {
            1
        } else {
            2
        }
    });

    for path in candidates {
        let first = maps
            .iter()
            .find(|m| m.path == path)
            .expect("candidates come from maps");
        let open_path = openable(pid, path, &first.range);
        let Ok(info) = elf::inspect(&open_path) else {
            continue;
        };
        if !info.has_hakmem() {
            continue;
        }
        let flag = info.trace_flag.expect("has_hakmem checked it");
        let Some(base) = maps.iter().find(|m| m.path == path && m.offset == 0) else {
            continue;
        };
        let env = environ(pid);
        let linkage = if Path::new(path) == exe {
            Linkage::Executable
        } else if env
            .iter()
            .any(|v| v.starts_with("LD_PRELOAD=") && v.contains(file_name(path)))
        {
            Linkage::Preloaded
        } else {
            Linkage::SharedLibrary
        };
        return Ok(Target {
            pid,
            command: command_line(pid),
            hakmem_path: PathBuf::from(path),
            open_path,
            linkage,
            options: env
                .into_iter()
                .filter(|v| v.starts_with("HAKMEM_"))
                .collect(),
            flag_address: base.start - info.base_vaddr + flag,
            load_bias: base.start - info.base_vaddr,
            elf: info,
        });
    }
    Err(Error::NoHakmem(format!(
        "process {pid} ({}) maps no file with the {} and {} symbols of this probe-cli's hakmem (neither libhakmem.so nor a binary linking hakmem, or one of a build whose records differ: use the probe-cli built with it)",
        command_line(pid),
        elf::TRACE_FLAG,
        elf::PROBE_FUNCTION
    )))
}

fn file_name(path: &str) -> &str {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// `path` as the process sees it, reachable from here even across mount
/// namespaces or after the file was replaced on disk.
fn openable(pid: u32, path: &str, range: &str) -> PathBuf {
    // A library rebuilt since the process loaded it shows as "... (deleted)": its
    // map_files link still reaches the old inode, for reading and for the uprobe.
    if path.ends_with(" (deleted)") {
        return PathBuf::from(format!("/proc/{pid}/map_files/{range}"));
    }
    let via_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
    if via_root.exists() {
        via_root
    } else {
        PathBuf::from(path)
    }
}

/// The process's command line, space separated (its comm if that is unreadable).
pub fn command_line(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if cmd.is_empty() {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        cmd
    }
}

/// True while `pid` exists and has not exited (a zombie counts as exited).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised comm, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

impl Target {
    /// Writes a `u32` symbol of hakmem's (virtual address `vaddr` in its file).
    pub fn write_u32(&self, vaddr: u64, v: u32) -> Result<()> {
        let mem = fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/mem", self.pid))
            .map_err(|e| proc_error(self.pid, e))?;
        mem.write_all_at(&v.to_ne_bytes(), self.load_bias + vaddr)
            .map_err(|e| Error::Other(format!("writing process {}'s memory: {e}", self.pid)))
    }

    /// Reads a `u32` symbol of hakmem's.
    pub fn read_u32(&self, vaddr: u64) -> Result<u32> {
        let mut v = [0u8; 4];
        self.read(vaddr, &mut v)?;
        Ok(u32::from_ne_bytes(v))
    }

    /// Reads `buf.len()` bytes of hakmem's memory at virtual address `vaddr`.
    pub fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<()> {
        let mem = fs::File::open(format!("/proc/{}/mem", self.pid))
            .map_err(|e| proc_error(self.pid, e))?;
        mem.read_exact_at(buf, self.load_bias + vaddr)
            .map_err(|e| Error::Other(format!("reading process {}'s memory: {e}", self.pid)))
    }
}
