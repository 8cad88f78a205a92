//! Running one real program and measuring it from outside: wall time, peak
//! and final resident set, exit status — without the measuring process (and
//! its own allocator) ever being part of the figures.
//!
//! Peak RSS comes from `wait4`'s `ru_maxrss` for a program run to its end, and
//! from `/proc/PID/status` (`VmHWM`) sampled every 10 ms for a server that is
//! stopped by us; the last sampled `VmRSS` is the final RSS.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the RSS sampler reads `/proc/PID/status`.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Memory figures of one process, KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Highest resident set seen (VmHWM, or ru_maxrss at exit).
    pub peak_kb: u64,
    /// The last resident set seen while it was alive.
    pub last_kb: u64,
}

/// Polls a process's VmRSS / VmHWM until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    memory: Arc<Mutex<Memory>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid: u32,
}

/// `(VmRSS, VmHWM)` of `pid` in KiB; `None` once it is gone or a zombie.
fn read_status(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let (rss, hwm) = (field("VmRSS:")?, field("VmHWM:")?);
    // A zombie has no memory map any more: keep the last live figures.
    (rss > 0).then_some((rss, hwm))
}

impl Sampler {
    /// Start sampling `pid`.
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let memory = Arc::new(Mutex::new(Memory::default()));
        let (s, m) = (stop.clone(), memory.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                Self::sample(pid, &m);
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Sampler {
            stop,
            memory,
            thread: Some(thread),
            pid,
        }
    }

    fn sample(pid: u32, memory: &Mutex<Memory>) {
        if let Some((rss, hwm)) = read_status(pid) {
            let mut m = memory.lock().unwrap_or_else(|e| e.into_inner());
            m.last_kb = rss;
            m.peak_kb = m.peak_kb.max(hwm);
        }
    }

    /// Take one sample now (e.g. after a server went idle).
    pub fn sample_now(&self) {
        Self::sample(self.pid, &self.memory);
    }

    /// Stop and return what was seen.
    pub fn finish(mut self) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A program as it is started: argv, environment changes, working directory.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables set (`Some`) or removed (`None`).
    pub env: Vec<(String, Option<String>)>,
    /// Working directory.
    pub dir: std::path::PathBuf,
    /// A file (in `dir`) for the program's stdout; discarded when `None`.
    pub stdout: Option<&'static str>,
}

impl Invocation {
    /// `argv` run in the program's work directory with its environment,
    /// stdout discarded.
    pub fn new(cx: &super::Context, argv: &[&str]) -> Invocation {
        Invocation {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: cx.env.clone(),
            dir: cx.dir.to_path_buf(),
            stdout: None,
        }
    }

    /// The `Command`: stdin closed, stdout discarded, stderr captured, and
    /// SIGTERM to the program if this process dies first (a server must never
    /// outlive its benchmark).
    pub fn command(&self) -> std::io::Result<Command> {
        let mut c = Command::new(&self.argv[0]);
        let stdout = match self.stdout {
            Some(file) => Stdio::from(std::fs::File::create(self.dir.join(file))?),
            None => Stdio::null(),
        };
        c.args(&self.argv[1..])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of ours;
        // nothing else runs between fork and exec here.
        unsafe {
            c.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(c)
    }
}

/// One finished batch program.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    /// Wall time from spawn to exit, s.
    pub wall_s: f64,
    /// Peak RSS (ru_maxrss from wait4) and the last sampled RSS.
    pub memory: Memory,
}

/// Wait for `child` with `wait4` (its own rusage, not ours), killing it after
/// `timeout`. Returns the exit code (or 128 + signal) and ru_maxrss in KiB.
fn wait4(child: &mut Child, timeout: Duration) -> std::io::Result<(i32, u64)> {
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if start.elapsed() > timeout {
                    // SAFETY: kill has no memory preconditions; the pid is
                    // our unreaped child, so it cannot have been reused.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut status = 0;
    // SAFETY: rusage is plain data filled by the kernel; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = loop {
        // SAFETY: valid pointers to our locals; pid is our child.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break rc;
    };
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage.ru_maxrss as u64))
}

/// Run `invocation` to its end (killed after `timeout`).
pub fn run_to_end(invocation: &Invocation, timeout: Duration) -> Result<Finished, String> {
    let name = &invocation.argv[0];
    let start = Instant::now();
    let mut child = invocation
        .command()
        .and_then(|mut c| c.spawn())
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let sampler = Sampler::start(child.id());
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let waited = wait4(&mut child, timeout);
    let wall_s = start.elapsed().as_secs_f64();
    let sampled = sampler.finish();
    let err = reader.join().unwrap_or_default();
    let (code, maxrss) = waited.map_err(|e| format!("waiting for {name}: {e}"))?;
    if code != 0 {
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("{name} exited with {code}: {last}"));
    }
    Ok(Finished {
        wall_s,
        memory: Memory {
            peak_kb: maxrss.max(sampled.peak_kb),
            last_kb: sampled.last_kb,
        },
    })
}
