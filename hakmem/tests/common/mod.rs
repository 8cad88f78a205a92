//! Shared by the tests that measure in a child process: the test binary runs
//! its own `child_entry` test again with a marker variable set, and the child
//! prints `RESULT key=value ...` lines.

use std::collections::HashMap;
use std::process::Command;

/// What a child run printed and how it ended.
pub struct Child {
    /// Every `key=value` of its `RESULT` lines.
    pub results: HashMap<String, String>,
    /// Its standard output and error.
    pub stdout: String,
    pub stderr: String,
    /// Its exit code (None if a signal ended it).
    pub code: Option<i32>,
}

/// Runs this binary's `child_entry` with `marker` (name, value) and `env` set.
/// Every `HAKMEM_*` variable of the caller's environment is removed first, so
/// a user's options never change what a test measures.
pub fn run_child(marker: (&str, &str), env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("HAKMEM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env(marker.0, marker.1);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut results = HashMap::new();
    for line in stdout.lines() {
        // libtest may print "test child_entry ... " on the same line first.
        if let Some(rest) = line.find("RESULT ").map(|i| &line[i + 7..]) {
            for kv in rest.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    results.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    Child {
        results,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// False, with a skip line, where the kernel is set never to give
/// transparent huge pages (or has none): the huge-page tests' first check.
#[allow(dead_code)] // each test file uses its own part of this module
pub fn kernel_may_give_huge_pages() -> bool {
    let enabled =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let may = !enabled.is_empty() && !enabled.contains("[never]");
    if !may {
        eprintln!("skipped: this kernel gives no transparent huge pages ({enabled:?})");
    }
    may
}

#[allow(dead_code)] // each test file uses its own part of this module
impl Child {
    /// False, with a skip line, unless the child reported `granted=1`:
    /// hakmem's probe got a huge page in it.
    pub fn probe_granted(&self) -> bool {
        let granted = self.num("granted") != 0;
        if !granted {
            eprintln!("skipped: the kernel gave no huge page to hakmem's probe");
        }
        granted
    }

    /// Panics with the child's output unless it exited with 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.code == Some(0),
            "{what}: {}\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// The reported value of `k`.
    pub fn str(&self, k: &str) -> &str {
        self.results
            .get(k)
            .unwrap_or_else(|| panic!("child did not report {k}: {:?}", self.results))
    }

    /// The reported value of `k` as a number.
    pub fn num(&self, k: &str) -> u64 {
        self.str(k).parse().unwrap()
    }
}

impl std::fmt::Debug for Child {
    /// The reported values (what assertion messages show).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.results.fmt(f)
    }
}
