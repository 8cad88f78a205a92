//! probe-cli under stress, as root (each test prints SKIP where BPF cannot load):
//!
//! - a target that forks, starts and ends threads and exits on its own while
//!   traced: the tracer ends cleanly with the exit, and the target's children
//!   and threads are unharmed;
//! - tracers come and go independently: a second one attaching while the
//!   first is active is counted in hakmem's flag, the first detach leaves the
//!   second's tracing on, the last detach switches it off; a tracer killed
//!   with SIGKILL is found dead by the next one, and SIGTERM detaches cleanly;
//! - after detaching, the target runs at full speed again (allocation
//!   throughput before, during and after, from the target's own count);
//! - BPF maps are bounded: every map in `hakmem.bpf.c` has a `max_entries`,
//!   and the maps the kernel holds for a live trace stay within a fixed budget
//!   whatever the workload does.
//!
//! Each is `#[ignore]`d: the suite runs them once, in scripts/test-reliability.sh
//! (`-- --ignored --nocapture`, which prints their figures), not a second time
//! in the workspace tests.

mod common;

use common::workload;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PROBE_CLI: &str = env!("CARGO_BIN_EXE_probe-cli");

/// Why BPF tests cannot run here, if they cannot (as in tests/trace.rs).
fn bpf_unavailable() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
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

/// One test at a time: the throughput figures must not see the other tests' load.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
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

/// target/release/libhakmem.so (`cargo build --release -p hakmem-preload`).
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

/// Starts a workload with libhakmem.so preloaded, stdin and stdout piped.
fn spawn_target(name: &'static str, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(workload(name))
        .args(args)
        .env("LD_PRELOAD", libhakmem())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// Starts `probe-cli trace --pid PID --json ARGS` and waits until it says it
/// is tracing; returns it with its collected stderr so far.
fn attach(pid: u32, args: &[&str]) -> (Child, String) {
    let mut tracer = Command::new(PROBE_CLI)
        .args(["trace", "--pid", &pid.to_string(), "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(tracer.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "probe-cli ended before attaching: {seen}"
        );
        seen.push_str(&line);
        if line.contains("tracing pid") {
            break;
        }
    }
    // Keep draining stderr so that probe-cli never blocks on it.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    });
    (tracer, seen)
}

/// Waits for a child up to `limit`; kills it and panics if it takes longer.
fn wait_output(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

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

/// Reads `hakmem_trace_enabled` in a process with libhakmem.so preloaded.
fn trace_flag(pid: u32) -> u32 {
    use object::{Object, ObjectSymbol};
    let lib = libhakmem();
    let data = std::fs::read(&lib).unwrap();
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

// ---------------------------------------------------------------------------

#[test]
#[ignore = "stress: run once, with its figures, by scripts/test-reliability.sh (cargo test -- --ignored)"]
fn a_target_that_forks_churns_threads_and_exits_mid_trace() {
    require_bpf!();
    let (mut target, mut out) = spawn_target("churn_fork", &["2.5"]);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let (tracer, _) = attach(target.id(), &[]);
    target.stdin.take().unwrap().write_all(b"g").unwrap();
    // The target ends by itself; the tracer must notice and end too.
    let report = wait_output(tracer, Duration::from_secs(60), "probe-cli trace");
    line.clear();
    out.read_line(&mut line).unwrap();
    let status = target.wait().unwrap();
    assert!(
        status.success(),
        "the traced target failed ({status}): {line} \
         (a forked child of a traced process must not crash)"
    );
    assert!(
        line.starts_with("done") && line.contains("failures=0"),
        "{line}"
    );
    assert_eq!(
        report.status.code(),
        Some(0),
        "probe-cli: {}",
        String::from_utf8_lossy(&report.stderr)
    );
    let r = last_report(&report.stdout);
    assert_eq!(r["final_report"], true);
    assert_eq!(r["target"]["state"], "exited", "{}", r["target"]);
    assert!(component(&r, "malloc") > 10_000, "{}", r["components"]);
    eprintln!(
        "churn under trace: {} ({} malloc events)",
        line.trim(),
        component(&r, "malloc")
    );
}

/// The target's "ops N" lines (operations per 100 ms window).
struct Throughput {
    target: Child,
    out: BufReader<ChildStdout>,
}

impl Throughput {
    fn start() -> Throughput {
        let (target, out) = spawn_target("throughput", &[]);
        Throughput { target, out }
    }

    fn window(&mut self) -> u64 {
        let mut line = String::new();
        assert!(self.out.read_line(&mut line).unwrap() > 0, "target ended");
        line.trim()
            .strip_prefix("ops ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad line {line:?}"))
    }

    fn windows(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.window()).collect()
    }

    /// Windows until `child` exits.
    fn windows_while(&mut self, child: &mut Child) -> Vec<u64> {
        let mut v = Vec::new();
        while child.try_wait().unwrap().is_none() {
            v.push(self.window());
        }
        v
    }

    fn stop(mut self) {
        drop(self.target.stdin.take());
        let status = self.target.wait().unwrap();
        assert!(status.success(), "throughput target: {status}");
    }
}

fn median(v: &[u64]) -> u64 {
    hakmem_bench::stats::median_u64(v).expect("at least one sample")
}

#[test]
#[ignore = "stress: run once, with its figures, by scripts/test-reliability.sh (cargo test -- --ignored)"]
fn tracers_come_and_go_independently_and_every_exit_path_detaches() {
    require_bpf!();
    let mut t = Throughput::start();
    t.windows(3);
    let pid = t.target.id();
    let (mut first, _) = attach(pid, &["--duration", "1.5"]);
    assert_eq!(trace_flag(pid), 1);
    let (mut second, said) = attach(pid, &["--duration", "4"]);
    assert!(
        said.contains("already being traced"),
        "the second tracer does not say so: {said}"
    );
    assert_eq!(trace_flag(pid), 2, "two tracers counted");
    let during = t.windows_while(&mut first);
    let first = wait_output(first, Duration::from_secs(10), "first tracer");
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(trace_flag(pid), 1, "the second tracer still counts");
    assert!(
        second.try_wait().unwrap().is_none(),
        "second tracer ended early"
    );
    let after_first = t.windows_while(&mut second);
    let second = wait_output(second, Duration::from_secs(10), "second tracer");
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(trace_flag(pid), 0, "flag after both detached");
    let (r1, r2) = (last_report(&first.stdout), last_report(&second.stdout));
    assert_eq!(r1["target"]["state"], "detached");
    assert_eq!(r2["target"]["state"], "detached");
    // The second tracer kept seeing events after the first one left.
    assert!(
        component(&r2, "malloc") > component(&r1, "malloc"),
        "first {} second {}",
        component(&r1, "malloc"),
        component(&r2, "malloc")
    );

    // SIGTERM: a clean detach with a final report.
    let (third, _) = attach(pid, &[]);
    assert_eq!(trace_flag(pid), 1);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(third.id() as libc::pid_t, libc::SIGTERM) };
    let third = wait_output(third, Duration::from_secs(10), "SIGTERMed tracer");
    assert_eq!(third.status.code(), Some(0));
    assert_eq!(last_report(&third.stdout)["target"]["state"], "detached");
    assert_eq!(trace_flag(pid), 0, "flag after SIGTERM");

    // SIGKILL leaves the count behind; the next tracer takes it back.
    let (mut killed, _) = attach(pid, &[]);
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert_eq!(trace_flag(pid), 1, "a killed tracer cannot detach");
    let (next, _) = attach(pid, &["--duration", "0.3"]);
    assert_eq!(trace_flag(pid), 1, "the dead tracer's count was taken back");
    let next = wait_output(next, Duration::from_secs(10), "next tracer");
    assert_eq!(next.status.code(), Some(0));
    assert_eq!(trace_flag(pid), 0, "flag after the next tracer detached");

    let after = t.windows(5);
    t.stop();
    eprintln!(
        "two tracers: malloc events first {} second {}; ops/100 ms while both attached {}, \
         after the first detached {}, after all {}",
        component(&r1, "malloc"),
        component(&r2, "malloc"),
        median(&during),
        median(&after_first),
        median(&after)
    );
}

#[test]
#[ignore = "stress: run once, with its figures, by scripts/test-reliability.sh (cargo test -- --ignored)"]
fn after_detaching_the_target_runs_at_full_speed() {
    require_bpf!();
    // On a busy machine one measurement can be unlucky: three tries.
    let mut figures = Vec::new();
    for attempt in 1..=3 {
        let mut t = Throughput::start();
        t.windows(3); // warm-up
        let before = t.windows(15);
        let (mut tracer, _) = attach(t.target.id(), &["--duration", "1.5"]);
        let during = t.windows_while(&mut tracer);
        let out = wait_output(tracer, Duration::from_secs(10), "tracer");
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(trace_flag(t.target.id()), 0);
        t.windows(3); // the window holding the detach
        let after = t.windows(15);
        t.stop();
        let (b, d, a) = (median(&before), median(&during), median(&after));
        eprintln!(
            "attempt {attempt}: median ops per 100 ms: before {b}, while traced {d}, after detach {a} \
             ({:.0}% of before)",
            100.0 * a as f64 / b as f64
        );
        figures.push((b, d, a));
        if a * 100 >= b * 80 {
            return;
        }
    }
    panic!("after detaching, throughput stayed below 80% of before: {figures:?}");
}

/// One BPF map as the kernel reports it in /proc/PID/fdinfo.
#[derive(Debug, Default)]
struct MapInfo {
    map_type: u64,
    value_size: u64,
    max_entries: u64,
    memlock: u64,
}

fn bpf_maps_of(pid: u32) -> Vec<MapInfo> {
    let mut maps = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(link) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if link.to_str() != Some("anon_inode:bpf-map") {
            continue;
        }
        let name = fd.file_name();
        let Ok(info) =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", name.to_string_lossy()))
        else {
            continue;
        };
        let mut m = MapInfo::default();
        for l in info.lines() {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim().parse().unwrap_or(0);
            match k {
                "map_type" => m.map_type = v,
                "value_size" => m.value_size = v,
                "max_entries" => m.max_entries = v,
                "memlock" => m.memlock = v,
                _ => {}
            }
        }
        maps.push(m);
    }
    maps
}

#[test]
#[ignore = "stress: run once, with its figures, by scripts/test-reliability.sh (cargo test -- --ignored)"]
fn bpf_maps_are_bounded() {
    // In the source: every map declares max_entries, from hakmem-ebpf's constants.
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hakmem-ebpf/bpf/hakmem.bpf.c"),
    )
    .unwrap();
    let maps = src.matches("SEC(\".maps\")").count();
    let bounded = src.matches("__uint(max_entries,").count();
    assert!(maps >= 4, "{maps} maps found in hakmem.bpf.c");
    assert_eq!(bounded, maps, "a map without max_entries");
    assert!(
        !src.contains("BPF_MAP_TYPE_RINGBUF") && !src.contains("BPF_MAP_TYPE_PERF_EVENT_ARRAY"),
        "an event stream would grow with the workload"
    );
    use hakmem_ebpf::layout;
    for (what, n) in [
        ("components", layout::MAX_COMPONENTS),
        ("traced processes", layout::MAX_TRACED),
        ("in-flight syscalls", layout::MAX_INFLIGHT_SYSCALLS),
        ("syscall slots", layout::SYSCALLS.len()),
        ("misc counters", layout::MISC_COUNTERS.len()),
    ] {
        assert!((1..=4096).contains(&n), "{what}: {n} entries");
    }

    // In the kernel, while a busy target is traced.
    require_bpf!();
    let (mut target, mut out) = spawn_target("churn_fork", &["1.5"]);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let (tracer, _) = attach(target.id(), &[]);
    target.stdin.take().unwrap().write_all(b"g").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let live = bpf_maps_of(tracer.id());
    let report = wait_output(tracer, Duration::from_secs(60), "probe-cli trace");
    assert!(target.wait().unwrap().success());
    assert_eq!(report.status.code(), Some(0));
    assert!(
        live.len() >= maps,
        "probe-cli holds {} BPF maps, the object defines {maps}",
        live.len()
    );
    let total: u64 = live.iter().map(|m| m.memlock).sum();
    for m in &live {
        assert!(m.max_entries <= 4096, "{m:?}");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // Per-CPU arrays scale with the CPUs, nothing scales with the workload.
    let budget = (1 << 20) * cpus + (8 << 20);
    assert!(
        total <= budget,
        "BPF maps hold {total} bytes of kernel memory (budget {budget}): {live:?}"
    );
    eprintln!(
        "BPF maps of a live trace: {} maps, {} KiB of kernel memory on {cpus} CPUs, largest max_entries {}",
        live.len(),
        total >> 10,
        live.iter().map(|m| m.max_entries).max().unwrap_or(0)
    );
}
