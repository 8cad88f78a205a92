//! The measured-child protocol, for every tool that starts one: `compare`,
//! `run`, and `probe-cli breakdown`.
//!
//! A measured child is `hakmem-bench run --scenario S --allocator A --json`
//! with [`CHILD_ENV`] set. Its environment starts clean: every variable of
//! hakmem's options table and `LD_PRELOAD` are removed, then the variant's
//! own variables are set — so `HAKMEM_HUGEPAGES=1` in the user's shell cannot
//! silently change a row. With [`GATE_ENV`] the child prints [`READY`] after
//! start-up and waits for a line on stdin, so the parent can attach counters
//! to it before the first workload allocation. The report is the last line
//! of stdout that starts with `{`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};

/// Set by the parent on a measured child.
pub const CHILD_ENV: &str = "HAKMEM_BENCH_CHILD";
/// Set by the parent when it wants the start-up handshake.
pub const GATE_ENV: &str = "HAKMEM_BENCH_GATE";
/// The child's handshake line.
pub const READY: &str = "ready";

/// Every variable removed from a child's environment before its own are set:
/// all of hakmem's options (`hakmem::options::TABLE`) and `LD_PRELOAD`.
pub fn cleared_variables() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = hakmem::options::TABLE.iter().map(|o| o.name).collect();
    names.push("LD_PRELOAD");
    names.push(BASELINE_ENV);
    names
}

/// Set to `true`, makes a child run its scenario's baseline (`run
/// --baseline`): how `probe-cli breakdown` asks for it, since an extra
/// argument would move the child's stack alignment against the other runs.
pub const BASELINE_ENV: &str = "HAKMEM_BENCH_BASELINE";

/// What a measured child is asked to do.
#[derive(Clone, Debug)]
pub struct ChildArgs {
    /// Scenario name.
    pub scenario: String,
    /// Allocator name (as `hakmem-bench list` spells it).
    pub allocator: String,
    /// Size preset (`tiny`, `small`, `default`, `large`).
    pub size: String,
    /// Idle time before "RSS after", ms.
    pub idle_ms: u64,
    /// Worker threads; the child's default (all cores) when `None`.
    pub threads: Option<usize>,
}

impl ChildArgs {
    /// The child's argv after the program name.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = [
            "run",
            "--scenario",
            &self.scenario,
            "--allocator",
            &self.allocator,
            "--json",
            "--size",
            &self.size,
            "--idle-ms",
            &self.idle_ms.to_string(),
            // The parent counts syscalls from outside; the child never does.
            "--syscalls",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(t) = self.threads {
            argv.extend(["--threads".to_string(), t.to_string()]);
        }
        argv
    }
}

/// The environment changes that make a process a measured child: `None`
/// removes a variable. `own` (the variant's variables, `LD_PRELOAD` of a
/// preload allocator) comes last and wins; `gate` asks for the handshake.
pub fn environment(own: &[(&str, &str)], gate: bool) -> Vec<(String, Option<String>)> {
    let mut env: Vec<(String, Option<String>)> = cleared_variables()
        .into_iter()
        .map(|name| (name.to_string(), None))
        .collect();
    env.push((CHILD_ENV.into(), Some("1".into())));
    if gate {
        env.push((GATE_ENV.into(), Some("1".into())));
    }
    env.extend(
        own.iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string()))),
    );
    env
}

/// Apply [`environment`]-style changes to a command.
pub fn apply(command: &mut Command, env: &[(String, Option<String>)]) {
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
}

/// A finished child: how it ended and what it printed.
pub struct Finished<T> {
    /// Exit status.
    pub status: ExitStatus,
    /// stdout after the handshake line.
    pub stdout: String,
    /// All of stderr.
    pub stderr: String,
    /// What `on_ready` returned, if the child said [`READY`].
    pub attached: Option<T>,
}

impl<T> Finished<T> {
    /// The last non-empty line of stderr (a failed child's reason).
    pub fn last_error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
    }

    /// The child's report line, see [`report_line`].
    pub fn report_line(&self) -> Option<&str> {
        report_line(&self.stdout)
    }
}

/// Start `command` (stdio is set here), wait for [`READY`], call `on_ready`
/// with the child's pid, tell it to go, and collect everything until it exits.
/// `on_ready` errors are returned after the child was killed and reaped.
pub fn run_gated<T, E>(
    command: &mut Command,
    on_ready: impl FnOnce(u32) -> Result<T, E>,
) -> Result<Finished<T>, GatedError<E>> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(GatedError::Spawn)?;
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut stderr = child.stderr.take().expect("piped");
    // Drained on its own thread so a chatty child cannot block on a full pipe.
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    let mut attached = None;
    if line.trim() == READY {
        match on_ready(child.id()) {
            Ok(t) => attached = Some(t),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stderr_reader.join();
                return Err(GatedError::Attach(e));
            }
        }
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }
    let mut rest = if attached.is_none() {
        line
    } else {
        String::new()
    };
    let _ = stdout.read_to_string(&mut rest);
    let status = child.wait().map_err(GatedError::Wait)?;
    Ok(Finished {
        status,
        stdout: rest,
        stderr: stderr_reader.join().unwrap_or_default(),
        attached,
    })
}

/// Why [`run_gated`] could not produce a [`Finished`].
#[derive(Debug)]
pub enum GatedError<E> {
    /// The child could not be started.
    Spawn(std::io::Error),
    /// `on_ready` failed (the child was killed).
    Attach(E),
    /// Waiting for the child failed.
    Wait(std::io::Error),
}

impl<E: std::fmt::Display> std::fmt::Display for GatedError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatedError::Spawn(e) => write!(f, "cannot start child: {e}"),
            GatedError::Attach(e) => write!(f, "{e}"),
            GatedError::Wait(e) => write!(f, "wait: {e}"),
        }
    }
}

/// The report: the last line of a child's stdout that starts with `{`.
pub fn report_line(stdout: &str) -> Option<&str> {
    stdout
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with('{'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hakmem_option_is_cleared_and_own_variables_win() {
        let env = environment(&[("HAKMEM_MINIMAL", "1")], true);
        for option in hakmem::options::TABLE {
            assert!(
                env.iter().any(|(k, v)| k == option.name && v.is_none()),
                "{} is not cleared",
                option.name
            );
        }
        let last = env.iter().rev().find(|(k, _)| k == "HAKMEM_MINIMAL");
        assert_eq!(last, Some(&("HAKMEM_MINIMAL".into(), Some("1".into()))));
        assert!(env.iter().any(|(k, v)| k == "LD_PRELOAD" && v.is_none()));
        assert!(env.iter().any(|(k, _)| k == GATE_ENV));
    }

    #[test]
    fn the_last_json_line_is_the_report() {
        assert_eq!(
            report_line("ready\n{\"a\":1}\nnoise\n{\"b\":2}\n"),
            Some("{\"b\":2}")
        );
        assert_eq!(report_line("no json"), None);
    }
}
