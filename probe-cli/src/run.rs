//! `probe-cli run -- CMD`: start CMD with hakmem (preloaded unless CMD links
//! it) and trace it through exec and into every child until the last exit.
//!
//! No ptrace and no stop: the child is forked and waits on a pipe while the
//! programs load and the traced set gets its first pid; then it execs with
//! `HAKMEM_TRACE=1` in its environment, so every hakmem in the tree (the
//! command, what it execs, what it forks) counts from its first allocation.
//! probe-cli is a child subreaper: orphaned descendants are reaped here, and
//! the trace ends when no descendant is left. Reports go to stderr or `-o`,
//! never to the command's stdout.

use crate::cli::{seconds, OutputArgs, RunArgs};
use crate::elf::{self, ElfInfo};
use crate::error::{Error, Result};
use crate::perf::{PerfCounters, Scope};
use crate::probes::Probes;
use crate::session::{self, DefaultStream, Session};
use crate::target::{Linkage, Target};
use crate::trace::stop_flag;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Finds CMD like execvp does.
fn resolve_command(cmd: &str) -> Result<PathBuf> {
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Usage(format!("no such command: {cmd}")))
        };
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(cmd))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| Error::Usage(format!("command not found in PATH: {cmd}")))
}

/// The ELF that runs first: CMD itself, or its `#!` interpreter for a script.
fn entry_elf(path: &Path) -> Result<PathBuf> {
    let head = std::fs::read(path).map_err(Error::other("reading the command"))?;
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
        let interp = line
            .split(|b| *b == b' ' || *b == b'\t')
            .find(|w| !w.is_empty())
            .unwrap_or_default();
        return Ok(PathBuf::from(OsStr::from_bytes(interp)));
    }
    Ok(path.to_path_buf())
}

/// Where libhakmem.so is: --preload, next to probe-cli, or in a sibling
/// `release/` directory (probe-cli built in debug, the library in release).
fn find_library(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return p
            .canonicalize()
            .map_err(|e| Error::NoHakmem(format!("{}: {e}", p.display())));
    }
    let exe = std::env::current_exe().map_err(Error::other("locating probe-cli"))?;
    for dir in exe.ancestors().skip(1).take(4) {
        for candidate in [dir.join("libhakmem.so"), dir.join("release/libhakmem.so")] {
            if candidate.is_file() {
                return candidate
                    .canonicalize()
                    .map_err(Error::other("resolving libhakmem.so"));
            }
        }
    }
    Err(Error::NoHakmem(
        "libhakmem.so not found next to probe-cli or in target/release: build it with \
         `cargo build --release -p hakmem-preload` or pass --preload PATH"
            .into(),
    ))
}

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes)
        .map_err(|_| Error::Usage("arguments and environment cannot contain NUL bytes".into()))
}

/// A forked child waiting on a pipe before it execs.
struct Child {
    pid: libc::pid_t,
    go: libc::c_int,
    exec_error: libc::c_int,
}

/// Forks the child; it blocks until `release` and then execs `path` (with its
/// stdout on `stdout` when given).
fn spawn_suspended(
    path: &Path,
    argv: &[CString],
    envp: &[CString],
    stdout: Option<&OwnedFd>,
) -> Result<Child> {
    let stdout = stdout.map(|fd| fd.as_raw_fd());
    let path = cstring(path.as_os_str().as_bytes())?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());

    let mut go = [0; 2];
    let mut err = [0; 2];
    // SAFETY: plain pipe2 calls on local arrays.
    if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0
        || unsafe { libc::pipe2(err.as_mut_ptr(), libc::O_CLOEXEC) } != 0
    {
        return Err(Error::Other(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: the child only calls async-signal-safe functions (read, write,
    // execve, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::Other(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        unsafe {
            let mut byte = 0u8;
            libc::close(go[1]);
            libc::close(err[0]);
            if libc::read(go[0], (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(126);
            }
            if let Some(fd) = stdout {
                libc::dup2(fd, 1);
            }
            libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(err[1], (&errno as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    // SAFETY: closing the child's ends in the parent.
    unsafe {
        libc::close(go[0]);
        libc::close(err[1]);
    }
    Ok(Child {
        pid,
        go: go[1],
        exec_error: err[0],
    })
}

impl Child {
    /// Lets the child exec; returns the exec error if there was one.
    fn release(&mut self) -> Result<()> {
        let byte = 1u8;
        // SAFETY: writing one byte to and closing our own pipe ends.
        unsafe {
            libc::write(self.go, (&byte as *const u8).cast(), 1);
            libc::close(self.go);
        }
        self.go = -1;
        let mut errno = 0i32;
        // Blocks until the exec succeeded (the pipe closes) or failed (errno arrives).
        let n = unsafe { libc::read(self.exec_error, (&mut errno as *mut i32).cast(), 4) };
        unsafe { libc::close(self.exec_error) };
        if n == 4 {
            self.reap();
            return Err(Error::Usage(format!(
                "cannot execute the command: {}",
                std::io::Error::from_raw_os_error(errno)
            )));
        }
        Ok(())
    }

    /// Ends a child that never got released.
    fn abandon(&mut self) {
        if self.go >= 0 {
            // SAFETY: closing our pipe end makes the child's read fail and exit.
            unsafe { libc::close(self.go) };
            self.go = -1;
        }
        self.reap();
    }

    fn reap(&self) {
        let mut status = 0;
        // SAFETY: waiting on our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// What waitpid said about one child.
enum Event {
    /// No child changed state.
    Nothing,
    /// A child ended: its pid and how.
    Ended(libc::pid_t, String),
    /// No child is left.
    NoChildren,
}

/// Reaps one child, any child: with probe-cli a subreaper, the orphaned
/// descendants of the command come back here too.
fn poll_children() -> Event {
    let mut status = 0;
    // SAFETY: non-blocking wait on our own children.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if r < 0 {
        return Event::NoChildren;
    }
    if r == 0 {
        return Event::Nothing;
    }
    if libc::WIFEXITED(status) {
        Event::Ended(
            r,
            format!("exited with status {}", libc::WEXITSTATUS(status)),
        )
    } else if libc::WIFSIGNALED(status) {
        Event::Ended(r, format!("killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Event::Nothing
    }
}

/// Runs the run command.
pub fn run(args: RunArgs) -> Result<()> {
    let launch = Launch {
        duration: seconds("duration", args.duration)?,
        interval: seconds("interval", args.interval)?,
        command: args.command,
        env: Vec::new(),
        preload: args.preload,
        stdout: None,
        kernel_syscalls: args.kernel_syscalls,
    };
    let sink = session::open_sink(&args.output, DefaultStream::Stderr)?;
    let stop = stop_flag()?;
    let (mut session, state) = trace_launch(launch, args.output, sink, &stop)?;
    session.report(&state, true)
}

/// A command to start under the tracer.
pub struct Launch {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Changes to probe-cli's environment for the command: set, or remove (`None`).
    pub env: Vec<(String, Option<String>)>,
    /// libhakmem.so to preload (`None`: the default one) unless CMD links hakmem.
    pub preload: Option<PathBuf>,
    /// End the command (SIGTERM) after this long.
    pub duration: Option<Duration>,
    /// Attach the syscall programs (`--kernel-syscalls`): the report's
    /// syscalls are then the kernel's view, else hakmem's own counts.
    pub kernel_syscalls: bool,
    /// Print an intermediate report this often.
    pub interval: Option<Duration>,
    /// Where the command's stdout goes (default: probe-cli's).
    pub stdout: Option<OwnedFd>,
}

/// Starts `launch` under the probes and traces it, through every exec and
/// into every child, until the last of them ended (or `stop` is set, or its
/// duration is over). Returns the session, ready for its final report, and how
/// the command itself ended.
///
/// Every process of the tree runs with `HAKMEM_TRACE=1` (and libhakmem.so
/// preloaded unless the command links hakmem): each times itself from its
/// first allocation, whatever it execs keeps the environment, and the BPF
/// programs add each forked child to the traced set. No process is stopped or
/// written to.
pub fn trace_launch(
    launch: Launch,
    output: OutputArgs,
    sink: Box<dyn std::io::Write + Send>,
    stop: &AtomicBool,
) -> Result<(Session, String)> {
    let duration = launch.duration;
    let interval = launch.interval;
    let kernel_syscalls = launch.kernel_syscalls;
    let exe = resolve_command(&launch.command[0])?;
    let first_elf = entry_elf(&exe)?;
    let first_info = elf::inspect(&first_elf).map_err(Error::Usage)?;
    crate::privileges::check(false)?;

    // hakmem is in the executable, or comes from the preloaded library.
    let (hakmem_file, info, linkage, preload): (PathBuf, ElfInfo, Linkage, Option<PathBuf>) =
        if first_info.has_hakmem() {
            (
                first_elf.clone(),
                first_info.clone(),
                Linkage::Executable,
                None,
            )
        } else {
            let lib = find_library(launch.preload)?;
            let info = elf::inspect(&lib).map_err(Error::NoHakmem)?;
            if !info.has_hakmem() {
                return Err(Error::NoHakmem(format!(
                    "{} lacks the {} symbols of this probe-cli's hakmem (or is of a build whose records differ: use the probe-cli built with it)",
                    lib.display(),
                    elf::PROBE_FUNCTION
                )));
            }
            (lib.clone(), info, Linkage::Preloaded, Some(lib))
        };
    let probe_offset = info.probe_offset.expect("has_hakmem checked it");

    let argv = launch
        .command
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let mut env: Vec<(Vec<u8>, Vec<u8>)> = std::env::vars_os()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    let mut changes = launch.env.clone();
    changes.push(("HAKMEM_TRACE".into(), Some("1".into())));
    for (k, v) in &changes {
        let k = k.as_bytes().to_vec();
        env.retain(|(name, _)| *name != k);
        if let Some(v) = v {
            env.push((k, v.as_bytes().to_vec()));
        }
    }
    if let Some(lib) = &preload {
        let lib = lib.as_os_str().as_bytes().to_vec();
        match env.iter_mut().find(|(k, _)| k == b"LD_PRELOAD") {
            Some((_, v)) => {
                let mut joined = lib;
                joined.push(b':');
                joined.extend_from_slice(v);
                *v = joined;
            }
            None => env.push((b"LD_PRELOAD".to_vec(), lib)),
        }
    }
    let options: Vec<String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(b"HAKMEM_") && k.as_slice() != b"HAKMEM_TRACE")
        .map(|(k, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    let envp = env
        .iter()
        .map(|(k, v)| cstring(&[k.as_slice(), b"=", v.as_slice()].concat()))
        .collect::<Result<Vec<_>>>()?;

    let calibration = session::quick_calibration();
    // Orphaned descendants come back to us, so "the last exit" is ours to see.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut child = spawn_suspended(&exe, &argv, &envp, launch.stdout.as_ref())?;
    drop(launch.stdout);
    let pid = child.pid as u32;

    let attach = || -> Result<(Probes, PerfCounters)> {
        let mut probes = Probes::load(true)?;
        probes.watch(pid)?;
        if kernel_syscalls {
            probes.attach_syscalls()?;
        }
        probes.attach_lifetimes()?;
        probes.attach_final(&hakmem_file, probe_offset, None)?;
        Ok((probes, PerfCounters::open(pid, Scope::Inherited)))
    };
    let (probes, perf) = match attach() {
        Ok(v) => v,
        Err(e) => {
            child.abandon();
            return Err(e);
        }
    };
    let root = Target {
        pid,
        command: launch.command.join(" "),
        hakmem_path: hakmem_file.clone(),
        open_path: hakmem_file.clone(),
        linkage,
        options,
        elf: info,
        flag_address: 0,
        load_bias: 0,
    };
    let mut session = Session::new(
        root,
        probes,
        perf,
        Scope::Inherited,
        calibration,
        output,
        sink,
    );
    child.release()?;

    let start = Instant::now();
    let mut next_report = interval.map(|i| start + i);
    let mut state = None;
    let mut asked_to_end: Option<Instant> = None;
    loop {
        match poll_children() {
            Event::NoChildren => break,
            Event::Ended(p, how) => {
                if p == child.pid {
                    state = Some(how);
                }
                continue;
            }
            Event::Nothing => {}
        }
        let over = stop.load(Ordering::Relaxed) || duration.is_some_and(|d| start.elapsed() >= d);
        if over && asked_to_end.is_none() {
            // Counts up to now, for the processes that die without an exit probe.
            session.refresh();
            for p in session.running() {
                // SAFETY: signalling a process of the traced tree.
                unsafe { libc::kill(p as libc::pid_t, libc::SIGTERM) };
            }
            asked_to_end = Some(Instant::now());
        }
        if asked_to_end.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            for p in session.running() {
                // SAFETY: as above; it ignored SIGTERM.
                unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
            }
            asked_to_end = Some(Instant::now());
        }
        if let (Some(due), Some(every)) = (next_report, interval) {
            if Instant::now() >= due {
                session.report("running", false)?;
                next_report = Some(due + every);
            }
        }
        session.refresh_if_due();
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((session, state.unwrap_or_else(|| "exited".to_string())))
}
