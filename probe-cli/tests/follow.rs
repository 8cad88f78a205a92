//! `probe-cli run` where people run it, as root (each test prints SKIP where
//! BPF cannot load): through `env`, `sh -c` and a start script that execs the
//! program, the program's own row has its exact counts; reports go to `-o FILE`
//! (one JSON object per line with --interval) and never into the program's
//! stdout; a realloc is one event whether its block stays or moves; and none
//! of it needs tracefs mounted.

mod common;

use common::workload;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

const PROBE_CLI: &str = env!("CARGO_BIN_EXE_probe-cli");
const TRACEFS: &str = "/sys/kernel/tracing";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Why BPF tests cannot run here, if they cannot.
fn bpf_unavailable() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            if !is_root() {
                return Some("not root: loading BPF programs needs root".into());
            }
            let out = Command::new(PROBE_CLI)
                .args(["calibrate", "--iterations", "1000", "--rounds", "1"])
                .output()
                .unwrap();
            match out.status.code() {
                Some(0) => None,
                Some(1) | Some(3) => Some(format!(
                    "the kernel refuses BPF here: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                _ => panic!(
                    "probe-cli calibrate failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        })
        .clone()
}

/// The tracefs test unmounts it: no other test of this file runs meanwhile.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

macro_rules! require_bpf {
    () => {
        let _serial = serial();
        if let Some(reason) = bpf_unavailable() {
            eprintln!("SKIP: {reason}");
            return;
        }
    };
}

fn libhakmem() -> PathBuf {
    let lib = Path::new(PROBE_CLI)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("release/libhakmem.so");
    assert!(
        lib.is_file(),
        "{} missing: run `cargo build --release -p hakmem-preload` first",
        lib.display()
    );
    lib
}

fn chatty() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/chatty.sh")
}

/// `probe-cli run --json -o FILE ARGS -- CMD...` with the BigCache off; returns
/// the output and every report line of FILE, parsed.
fn run_to_file(name: &str, args: &[&str], cmd: &[&str]) -> (Output, Vec<Value>) {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.json"));
    let _ = std::fs::remove_file(&file);
    let out = Command::new(PROBE_CLI)
        .args(["run", "--json", "--preload"])
        .arg(libhakmem())
        .arg("-o")
        .arg(&file)
        .args(args)
        .arg("--")
        .args(cmd)
        .env("HAKMEM_BIGCACHE", "off")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "probe-cli run {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).expect("-o FILE written");
    let reports = text
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l:?}: {e}"))
        })
        .collect();
    (out, reports)
}

fn component(report: &Value, name: &str) -> u64 {
    report["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == name)
        .map_or(0, |c| c["calls"].as_u64().unwrap())
}

/// The report's row of the process whose command is `comm`.
fn process<'a>(report: &'a Value, comm: &str) -> &'a Value {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["command"] == comm)
        .unwrap_or_else(|| panic!("no process {comm} in {}", report["processes"]))
}

#[test]
fn run_follows_env_sh_c_and_an_exec_script_with_exact_counts() {
    require_bpf!();
    let prog = workload("alloc_counts");
    let prog = prog.to_str().unwrap();
    let (large, small) = (3u64, 1500u64);
    let (l, s) = (large.to_string(), small.to_string());
    let line = format!("{prog} {l} {s}; true");
    let script = chatty();
    let script = script.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 4] = [
        ("direct", vec![prog, &l, &s]),
        ("env", vec!["env", "X=1", prog, &l, &s]),
        ("sh-c", vec!["sh", "-c", &line]),
        ("script", vec![script, prog, &l, &s]),
    ];
    for (name, cmd) in cases {
        let (_, reports) = run_to_file(name, &[], &cmd);
        let r = reports.last().unwrap();
        assert_eq!(r["final_report"], true, "{name}");
        assert_eq!(r["target"]["state"], "exited with status 0", "{name}");
        let p = process(r, "alloc_counts");
        assert_eq!(p["running"], false, "{name}");
        assert_eq!(p["malloc"], large + small, "{name}: {p}");
        assert_eq!(p["free"], large + small, "{name}: {p}");
        // The whole trace: the program, plus what its wrappers allocated.
        assert!(component(r, "malloc") >= large + small, "{name}");
        assert!(component(r, "large_alloc") >= large, "{name}");
        if name == "sh-c" {
            let sh = process(r, "sh");
            assert_eq!(p["parent"], sh["pid"], "sh forked the program");
        }
        eprintln!(
            "{name}: {} process(es), program malloc {}, whole trace malloc {}",
            r["processes"].as_array().unwrap().len(),
            p["malloc"],
            component(r, "malloc")
        );
    }
}

#[test]
fn reports_go_to_the_output_file_one_json_line_per_interval_never_to_the_programs_stdout() {
    require_bpf!();
    let prog = workload("alloc_counts");
    let (out, reports) = run_to_file(
        "interval",
        &["--interval", "0.05"],
        // Long enough for several 50 ms intervals on a fast machine (the span
        // heap reuses the 2 MiB blocks without faults: 400 of them take ~10 ms;
        // with time-bounded sampling 3,000,000 small ones once ended inside
        // one interval).
        &[
            chatty().to_str().unwrap(),
            prog.to_str().unwrap(),
            "400",
            "8000000",
        ],
    );
    // The program's stdout is the program's alone.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("chatty: starting {}\n", prog.display())
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("\"schema_version\""),
        "a report went to stderr although -o was given"
    );
    assert!(reports.len() >= 2, "{} report lines", reports.len());
    let (running, last) = reports.split_at(reports.len() - 1);
    assert!(running.iter().all(|r| r["final_report"] == false));
    assert_eq!(last[0]["final_report"], true);
    assert_eq!(component(&last[0], "malloc"), 400 + 8_000_000);

    // Without -o the report goes to stderr, still not stdout.
    let out = Command::new(PROBE_CLI)
        .args(["run", "--json", "--preload"])
        .arg(libhakmem())
        .arg("--")
        .arg(chatty())
        .arg(&prog)
        .args(["1", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("chatty: starting {}\n", prog.display())
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("report on stderr");
    let r: Value = serde_json::from_str(line).unwrap();
    assert_eq!(process(&r, "alloc_counts")["malloc"], 11);
}

#[test]
fn a_realloc_is_one_event_in_place_or_moved() {
    require_bpf!();
    let (in_place, moved) = (700u64, 300u64);
    let (out, reports) = run_to_file(
        "realloc",
        &[],
        &[
            workload("realloc_counts").to_str().unwrap(),
            &in_place.to_string(),
            &moved.to_string(),
        ],
    );
    // What really happened, as the pointers said.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("in_place {in_place} moved {moved}")
    );
    let r = reports.last().unwrap();
    let p = process(r, "realloc_counts");
    assert_eq!(p["realloc"], in_place + moved, "{p}");
    // A move's new block and the old one's free are inside the realloc, not
    // extra top-level calls (stdout's buffer is one more malloc).
    assert_eq!(p["malloc"], in_place + moved + 1, "{p}");
    assert_eq!(p["free"], in_place + moved, "{p}");
    // The moved ones went through the small allocator inside the realloc.
    assert!(component(r, "small_fast") + component(r, "small_refill") >= 2 * moved + in_place);
}

fn tracefs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(TRACEFS))
}

#[test]
fn run_needs_no_tracefs_and_breakdown_mounts_it() {
    require_bpf!();
    let was_mounted = tracefs_mounted();
    if was_mounted {
        // SAFETY: a NUL-terminated path; unmounting needs root, which we are.
        let r = unsafe { libc::umount2(c"/sys/kernel/tracing".as_ptr(), libc::MNT_DETACH) };
        assert_eq!(r, 0, "umount: {}", std::io::Error::last_os_error());
    }
    let result = std::panic::catch_unwind(|| {
        assert!(!tracefs_mounted());
        let (out, reports) = run_to_file(
            "no-tracefs",
            &[],
            &[workload("alloc_counts").to_str().unwrap(), "2", "500"],
        );
        let r = reports.last().unwrap();
        assert_eq!(component(r, "malloc"), 502);
        assert!(
            r["syscalls"][0]["count"].as_u64().unwrap() >= 2,
            "mmap counted"
        );
        assert!(
            !tracefs_mounted(),
            "run mounted tracefs although it needs none: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // breakdown's perf counters need tracepoint ids: it mounts tracefs and
        // says so (a bad scenario is still a usage error, checked before).
        let bad = Command::new(PROBE_CLI)
            .args(["breakdown", "--scenario", "no-such-scenario"])
            .output()
            .unwrap();
        assert_ne!(bad.status.code(), Some(1), "{bad:?}");
    });
    if was_mounted && !tracefs_mounted() {
        // SAFETY: NUL-terminated strings, no data.
        unsafe {
            libc::mount(
                c"nodev".as_ptr(),
                c"/sys/kernel/tracing".as_ptr(),
                c"tracefs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn trace_follow_takes_in_a_child_that_a_traced_shell_starts() {
    require_bpf!();
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    let prog = workload("alloc_counts");
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(format!("{} 2 500 --wait; true", prog.display()))
        .env("LD_PRELOAD", libhakmem())
        .env("HAKMEM_BIGCACHE", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(shell.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut tracer = Command::new(PROBE_CLI)
        .args([
            "trace",
            "--follow",
            "--json",
            "--pid",
            &shell.id().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(tracer.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("tracing pid") {
        said.clear();
        assert!(
            err.read_line(&mut said).unwrap() > 0,
            "probe-cli ended early"
        );
    }
    assert!(said.contains("and its children"), "{said}");
    // The program was started before the tracer: it is taken in at the next poll.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let mut stdin = shell.stdin.take().unwrap();
    stdin.write_all(b"g").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    drop(stdin);
    assert!(shell.wait().unwrap().success());
    let mut report = String::new();
    tracer
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut report)
        .unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    assert_eq!(tracer.wait().unwrap().code(), Some(0), "{rest}");
    let r: Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    assert_eq!(r["target"]["state"], "exited");
    let p = process(&r, "alloc_counts");
    assert_eq!(p["malloc"], 502, "{}", r["processes"]);
    assert_eq!(p["free"], 502, "{}", r["processes"]);
}
