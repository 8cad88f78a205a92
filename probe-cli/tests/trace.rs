//! probe-cli's eBPF integration tests: real workloads with known counts, traced by
//! the real binary, as root. Where the kernel or the user cannot load BPF programs
//! each test prints why and skips; on the project's machines they run.

mod common;

use common::workload;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PROBE_CLI: &str = env!("CARGO_BIN_EXE_probe-cli");

/// Why BPF tests cannot run here, if they cannot.
fn bpf_unavailable() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return Some(
                    "not root: loading BPF programs needs root (scripts/test-ebpf.sh runs as root)"
                        .into(),
                );
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

macro_rules! require_bpf {
    () => {
        if let Some(reason) = bpf_unavailable() {
            eprintln!("SKIP: {reason}");
            return;
        }
    };
}

/// The workspace's target directory (probe-cli lives in target/<profile>/).
fn target_dir() -> PathBuf {
    Path::new(PROBE_CLI)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// target/release/libhakmem.so, which `cargo build --release -p hakmem-preload` makes.
fn libhakmem() -> PathBuf {
    let lib = target_dir().join("release/libhakmem.so");
    assert!(
        lib.is_file(),
        "{} missing: run `cargo build --release -p hakmem-preload` first",
        lib.display()
    );
    lib
}

/// The last JSON report probe-cli printed.
fn last_report(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report in: {text}"));
    serde_json::from_str(line).expect("report is JSON")
}

fn component(report: &Value, name: &str) -> u64 {
    report["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == name)
        .map_or(0, |c| c["calls"].as_u64().unwrap())
}

fn syscall(report: &Value, name: &str) -> u64 {
    syscall_field(report, name, "count")
}

fn syscall_field(report: &Value, name: &str, field: &str) -> u64 {
    report["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["syscall"] == name)
        .unwrap_or_else(|| panic!("no {name} row in {}", report["syscalls"]))[field]
        .as_u64()
        .unwrap()
}

/// Whether process `pid` holds a BPF link to the raw tracepoint `name` (the
/// kernel names it in the link's fdinfo).
fn holds_raw_tracepoint(pid: u32, name: &str) -> bool {
    let want = format!("tp_name:\t{name}\n");
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .any(|fd| std::fs::read_to_string(fd.path()).is_ok_and(|info| info.contains(&want)))
}

fn perf(report: &Value, name: &str) -> Option<u64> {
    report["perf"]["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["value"]
        .as_u64()
}

/// Reads lines from `r` until one equals `want` (panics on EOF).
fn wait_line(r: &mut impl BufRead, want: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "EOF before {want:?}");
        if line.trim() == want {
            return;
        }
    }
}

/// Reads lines from `r` until one contains `want` (panics on EOF).
fn wait_line_containing(r: &mut impl BufRead, want: &str) {
    let mut line = String::new();
    while !line.contains(want) {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "EOF before {want:?}");
    }
}

/// Reads `hakmem_trace_enabled` of a process with a preloaded libhakmem.so.
fn trace_flag(pid: u32, lib: &Path) -> u32 {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(lib).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let vaddr = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok("hakmem_trace_enabled"))
        .unwrap()
        .address();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let lib = lib.canonicalize().unwrap();
    let base = maps
        .lines()
        .find(|l| {
            l.ends_with(lib.to_str().unwrap()) && l.split_whitespace().nth(2) == Some("00000000")
        })
        .map(|l| u64::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
        .unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut v = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut v, base + vaddr).unwrap();
    u32::from_ne_bytes(v)
}

/// A preloaded alloc_counts waiting for its go byte, with a tracer attached.
struct Attached {
    target: std::process::Child,
    target_out: BufReader<std::process::ChildStdout>,
    tracer: std::process::Child,
}

impl Attached {
    /// Lets the target run (its go byte), waits for its "done", lets
    /// `linger` pass, ends it (stdin closed) and returns the tracer's final
    /// report, the tracer having exited 0.
    fn finish(mut self, linger: std::time::Duration) -> Value {
        let mut stdin = self.target.stdin.take().unwrap();
        stdin.write_all(b"g").unwrap();
        wait_line(&mut self.target_out, "done");
        std::thread::sleep(linger);
        drop(stdin); // the target exits; the tracer sees it and prints its final report
        assert!(self.target.wait().unwrap().success());
        let out = self.tracer.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "probe-cli: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last_report(&out.stdout)
    }
}

fn start_traced(large: u32, small: u32, trace_args: &[&str]) -> Attached {
    let mut workload = Command::new(workload("alloc_counts"));
    workload.env("LD_PRELOAD", libhakmem());
    start_traced_command(workload, large, small, trace_args)
}

/// The Rust workload linking hakmem, built by cargo as an example of this package.
fn rust_workload() -> PathBuf {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let example = target_dir().join(profile).join("examples/rust_workload");
    assert!(
        example.is_file(),
        "{} missing (cargo test builds examples)",
        example.display()
    );
    example
}

fn start_traced_command(
    mut workload: Command,
    large: u32,
    small: u32,
    trace_args: &[&str],
) -> Attached {
    workload.args([large.to_string(), small.to_string()]);
    start_traced_waiting(workload, trace_args)
}

/// Starts `workload` with `--wait` added and BigCache off, and a tracer on it.
fn start_traced_waiting(mut workload: Command, trace_args: &[&str]) -> Attached {
    let mut target = workload
        .arg("--wait")
        .env("HAKMEM_BIGCACHE", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut target_out = BufReader::new(target.stdout.take().unwrap());
    wait_line(&mut target_out, "ready");
    let mut tracer = Command::new(PROBE_CLI)
        .args(["trace", "--pid", &target.id().to_string(), "--json"])
        .args(trace_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // probe-cli says "tracing pid N" on stderr once hakmem's flag is set.
    let mut err = BufReader::new(tracer.stderr.take().unwrap());
    wait_line_containing(&mut err, "tracing pid");
    // Keep reading stderr, so that an error at the end is seen, not a SIGPIPE.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        if !rest.is_empty() {
            eprintln!("probe-cli said: {rest}");
        }
    });
    Attached {
        target,
        target_out,
        tracer,
    }
}

#[test]
fn records_and_syscalls_count_a_traced_pid_exactly() {
    require_bpf!();
    let (large, small) = (16, 3000);
    // The tracer reads the target's memory every 100 ms: the size bands'
    // strategies are there only while it lives.
    let r = start_traced(large, small, &[]).finish(std::time::Duration::from_millis(600));
    // Its 2 MiB blocks initialised the 2-8 MiB band, and only that one.
    let bands = r["processes"][0]["evolution"].as_array().unwrap();
    assert_eq!(bands.len(), 1, "{bands:?}");
    assert_eq!(bands[0]["band"], "2-8 MiB");
    assert!(["learn", "frozen"].contains(&bands[0]["phase"].as_str().unwrap()));
    assert!(!bands[0]["strategy"].as_str().unwrap().is_empty());

    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["final_report"], true);
    assert_eq!(r["target"]["state"], "exited");
    assert_eq!(r["target"]["linkage"], "preloaded");
    // Every malloc and free between the go byte and "done" is counted once.
    assert_eq!(component(&r, "malloc"), u64::from(large + small));
    assert_eq!(component(&r, "free"), u64::from(large + small));
    assert!(component(&r, "large_alloc") >= u64::from(large));
    // BigCache off: the span heap serves every 2 MiB block from its arena,
    // reusing the freed one (before it, each block was mapped and unmapped).
    let (mmap, munmap) = (syscall(&r, "mmap"), syscall(&r, "munmap"));
    assert!(mmap < u64::from(large), "mmap {mmap} for {large} blocks");
    assert!(
        munmap < u64::from(large),
        "munmap {munmap} for {large} blocks"
    );
    assert!(
        perf(&r, "page_faults").unwrap() >= u64::from(large),
        "every block is touched"
    );
    assert!(perf(&r, "task_clock").unwrap() > 0);
    assert_eq!(r["correlation"]["allocations"], u64::from(large + small));
}

#[test]
fn trace_attaches_to_a_rust_binary_linking_hakmem() {
    require_bpf!();
    let (large, small) = (4, 2500);
    let r = start_traced_command(Command::new(rust_workload()), large, small, &[])
        .finish(std::time::Duration::ZERO);
    assert_eq!(r["target"]["linkage"], "executable");
    // The small vectors are plain allocations; the 2 MiB ones are zeroed
    // (alloc_zeroed), which hakmem reports as large_alloc only.
    assert!(
        component(&r, "malloc") >= u64::from(small),
        "malloc {}",
        component(&r, "malloc")
    );
    assert!(component(&r, "large_alloc") >= u64::from(large));
    // Memory calls are counted: the span heap maps 256 MiB arenas (not one
    // mapping per block) and gives freed spans back with madvise.
    assert!(
        syscall(&r, "mmap") + syscall(&r, "madvise") + syscall(&r, "munmap") >= 1,
        "no memory syscall counted"
    );
}

#[test]
fn trace_duration_reports_every_interval_detaches_and_writes_prometheus() {
    require_bpf!();
    let prom = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace.prom");
    let _ = std::fs::remove_file(&prom);
    let mut a = start_traced(
        2,
        100,
        &[
            "--duration",
            "0.6",
            "--interval",
            "0.2",
            "--prometheus",
            prom.to_str().unwrap(),
        ],
    );
    let out = a.tracer.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "probe-cli: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .count();
    assert!(
        reports >= 2,
        "{reports} reports: intervals and the final one"
    );
    let r = last_report(&out.stdout);
    assert_eq!(r["target"]["state"], "detached");
    // Detached cleanly: hakmem no longer times anything.
    assert_eq!(trace_flag(a.target.id(), &libhakmem()), 0);
    let text = std::fs::read_to_string(&prom).expect("prometheus file written");
    assert!(
        text.contains("# TYPE hakmem_syscalls_total counter"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "hakmem_syscalls_total{{pid=\"{}\",syscall=\"mmap\"}}",
        a.target.id()
    )));
    let _ = a.target.kill();
    let _ = a.target.wait();
}

/// `probe-cli run OPTS --preload libhakmem.so -- alloc_counts LARGE SMALL`
/// with `env` set; fails unless it exits 0.
fn run_alloc_counts(
    opts: &[&str],
    large: u32,
    small: u32,
    env: &[(&str, &str)],
) -> std::process::Output {
    let out = Command::new(PROBE_CLI)
        .arg("run")
        .args(opts)
        .arg("--preload")
        .arg(libhakmem())
        .arg("--")
        .arg(workload("alloc_counts"))
        .args([large.to_string(), small.to_string()])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "probe-cli: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn run_traces_a_preloaded_c_program_from_its_first_allocation() {
    require_bpf!();
    let (large, small): (u32, u32) = (12, 2000);
    let out = run_alloc_counts(&["--json"], large, small, &[("HAKMEM_BIGCACHE", "off")]);
    // run's reports go to stderr: stdout is the program's.
    assert!(out.stdout.is_empty());
    let r = last_report(&out.stderr);
    assert_eq!(r["target"]["state"], "exited with status 0");
    assert_eq!(r["target"]["linkage"], "preloaded");
    assert!(r["target"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "HAKMEM_BIGCACHE=off"));
    // From the very first allocation: exact.
    assert_eq!(component(&r, "malloc"), u64::from(large + small));
    assert_eq!(component(&r, "free"), u64::from(large + small));
    assert_eq!(component(&r, "large_alloc"), u64::from(large));
    // The span heap maps an arena once (not a mapping per block).
    assert!(syscall(&r, "mmap") >= 1);
    assert_eq!(r["probe"]["exit_probes"], 1, "{}", r["probe"]);
}

/// Runs `os_calls HUGE FOREIGN` preloaded, quiet but for its work (see
/// `os_calls.c`), under `probe-cli trace --pid` with `trace_args`: the final
/// report, and whether the tracer held a `sys_enter` raw tracepoint while
/// attached.
fn trace_os_calls(huge: u32, foreign: u32, trace_args: &[&str]) -> (Value, bool) {
    let mut workload = Command::new(workload("os_calls"));
    workload
        .args([huge.to_string(), foreign.to_string()])
        .env("LD_PRELOAD", libhakmem())
        .env("HAKMEM_THP", "refuse")
        .env("HAKMEM_DISABLE_ELO", "1")
        .env("HAKMEM_BACKGROUND_PURGE", "0");
    let a = start_traced_waiting(workload, trace_args);
    let tracepoint = holds_raw_tracepoint(a.tracer.id(), "sys_enter");
    (a.finish(std::time::Duration::ZERO), tracepoint)
}

#[test]
fn syscalls_are_hakmems_own_counted_in_the_process_by_default() {
    require_bpf!();
    let (huge, foreign) = (7, 5);
    let (r, tracepoint) = trace_os_calls(huge, foreign, &[]);
    assert!(
        !tracepoint,
        "the syscall tracepoints are attached by default"
    );
    assert_eq!(r["syscall_source"], "hakmem");
    assert_eq!(r["syscalls_counted"], true);
    // Exactly hakmem's calls: one mapping of its own per 80 MiB block, made
    // and given back; the workload's direct mmaps are not hakmem's.
    let huge = u64::from(huge);
    assert_eq!(syscall(&r, "mmap"), huge, "{}", r["syscalls"]);
    assert_eq!(syscall(&r, "munmap"), huge, "{}", r["syscalls"]);
    assert_eq!(syscall(&r, "madvise"), 0, "{}", r["syscalls"]);
    let bytes = syscall_field(&r, "mmap", "bytes");
    assert!(
        bytes >= huge * (80 << 20) && bytes < huge * (81 << 20),
        "mmap bytes {bytes}"
    );
    assert_eq!(
        syscall_field(&r, "munmap", "bytes"),
        bytes,
        "all given back"
    );
    assert_eq!(syscall_field(&r, "mmap", "failed"), 0);
    // Timed on every call: a mean, at most the longest.
    let mean = r["syscalls"][0]["mean_ns"].as_f64().unwrap();
    assert!(
        mean > 0.0 && mean <= r["syscalls"][0]["max_ns"].as_f64().unwrap(),
        "{}",
        r["syscalls"][0]
    );
    assert!(r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["syscall"] != "brk"));
    assert_eq!(component(&r, "malloc"), huge);
}

#[test]
fn kernel_syscalls_count_every_memory_syscall_of_the_process() {
    require_bpf!();
    let (huge, foreign) = (3, 9);
    let (r, tracepoint) = trace_os_calls(huge, foreign, &["--kernel-syscalls"]);
    assert!(
        tracepoint,
        "--kernel-syscalls attaches the syscall tracepoints"
    );
    assert_eq!(r["syscall_source"], "kernel");
    let (huge, foreign) = (u64::from(huge), u64::from(foreign));
    // The kernel sees hakmem's calls and the workload's own.
    assert!(syscall(&r, "mmap") >= huge + foreign, "{}", r["syscalls"]);
    assert!(syscall(&r, "munmap") >= huge + foreign, "{}", r["syscalls"]);
    assert!(r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["syscall"] == "brk"));
    // hakmem's own are still counted, as components.
    assert_eq!(component(&r, "os_map"), huge);
    assert_eq!(component(&r, "os_unmap"), huge);
}

#[test]
fn run_counts_hakmems_syscalls_exactly_from_the_first_allocation() {
    require_bpf!();
    let (large, small): (u32, u32) = (4, 1500);
    let dir = std::env::temp_dir().join(format!("probe-cli-run-sys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("report.json");
    run_alloc_counts(&["--json", "-o", file.to_str().unwrap()], large, small, &[]);
    let text = std::fs::read(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let r = last_report(&text);
    assert_eq!(r["syscall_source"], "hakmem");
    assert_eq!(component(&r, "malloc"), u64::from(large + small));
    assert_eq!(component(&r, "free"), u64::from(large + small));
    // The rows are the components' sums, call for call.
    assert_eq!(syscall(&r, "mmap"), component(&r, "os_map"));
    assert_eq!(syscall(&r, "munmap"), component(&r, "os_unmap"));
    assert_eq!(
        syscall(&r, "madvise"),
        component(&r, "os_purge") + component(&r, "os_advise")
    );
    assert!(syscall(&r, "mmap") >= 1, "the first segment and arena");
}

#[test]
fn run_traces_a_rust_program_linking_hakmem() {
    require_bpf!();
    let example = target_dir()
        .join(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        })
        .join("examples/rust_workload");
    assert!(
        example.is_file(),
        "{} missing (cargo test builds examples)",
        example.display()
    );
    let out = Command::new(PROBE_CLI)
        .args(["run", "--json", "--"])
        .arg(&example)
        .args(["6", "1500"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "probe-cli: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = last_report(&out.stderr);
    assert_eq!(r["target"]["linkage"], "executable");
    // 1500 small vectors from the first allocation on (the 2 MiB ones are zeroed:
    // large_alloc), the first segment and the span arena mapped: hakmem's own
    // mmaps (ld.so's and std's are not in them).
    assert!(
        component(&r, "malloc") >= 1500,
        "malloc {}",
        component(&r, "malloc")
    );
    assert!(component(&r, "large_alloc") >= 6);
    assert_eq!(r["syscall_source"], "hakmem");
    assert!(syscall(&r, "mmap") >= 2, "{}", r["syscalls"]);
    assert_eq!(syscall(&r, "mmap"), component(&r, "os_map"));
}

#[test]
fn calibrate_measures_the_exit_probe_and_the_counting() {
    require_bpf!();
    let out = Command::new(PROBE_CLI)
        .args([
            "calibrate",
            "--json",
            "--iterations",
            "20000",
            "--rounds",
            "3",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hit = c["probe_hit_ns"].as_f64().unwrap();
    assert!(hit > 10.0 && hit < 100_000.0, "probe hit {hit} ns");
    let counted = c["counted_event_ns"].as_f64().unwrap();
    assert!(counted > 0.0 && counted < hit, "counted event {counted} ns");
}

fn exit_code(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(PROBE_CLI).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_such_process_exits_4() {
    let (code, err) = exit_code(&["trace", "--pid", "999999999"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("no such process"), "{err}");
}

#[test]
fn process_without_hakmem_exits_4() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let (code, err) = exit_code(&["trace", "--pid", &sleeper.id().to_string()]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("hakmem not found"), "{err}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["trace"][..],
        &["trace", "--pid", "abc"],
        &["trace", "--pid", "1", "--duration", "-1"],
        &["trace", "--pid", "1", "--interval", "0"],
        &["run", "--", "/nonexistent/command"],
        &["run", "-o", "/nonexistent/dir/out.json", "--", "true"],
        &["run", "--interval", "0", "--", "true"],
        &["run"],
        &["breakdown"],
    ] {
        let (code, err) = exit_code(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
}

#[test]
fn unprivileged_user_exits_3_naming_what_is_missing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: dropping to an unprivileged user needs root");
        return;
    }
    use std::os::unix::process::CommandExt;
    let out = Command::new(PROBE_CLI)
        .arg("calibrate")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(126)
        || err.contains("Permission denied") && out.status.code() != Some(3)
    {
        eprintln!("SKIP: user 65534 cannot execute {PROBE_CLI}");
        return;
    }
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON") && err.contains("root"),
        "{err}"
    );
}

#[test]
fn target_exit_mid_trace_gives_a_final_report() {
    require_bpf!();
    // A target that allocates a little, then lives for a moment and exits on its own.
    let mut target = Command::new(workload("alloc_counts"))
        .args(["1", "10", "--wait"])
        .env("LD_PRELOAD", libhakmem())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(target.stdout.take().unwrap());
    wait_line(&mut out, "ready");
    let mut tracer = Command::new(PROBE_CLI)
        .args([
            "trace",
            "--pid",
            &target.id().to_string(),
            "--json",
            "--duration",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Attached first (a fixed sleep was too short on a loaded machine: the
    // target was gone before the uprobe went in).
    let mut err = BufReader::new(tracer.stderr.take().unwrap());
    wait_line_containing(&mut err, "tracing pid");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    drop(target.stdin.take()); // EOF before the go byte: the target exits with status 1
    let _ = target.wait();
    let done = tracer.wait_with_output().unwrap();
    let mut said = String::new();
    let _ = err.read_to_string(&mut said);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the tracer noticed the exit"
    );
    assert_eq!(done.status.code(), Some(0), "{said}");
    assert_eq!(last_report(&done.stdout)["target"]["state"], "exited");
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
}
