//! `probe-cli breakdown` end to end, as root: every row with both estimates and JSON
//! that parses on a tiny scenario; and the proof that the method measures what it
//! claims — a hakmem-bench built with `--features hakmem/test-delay` spins a known
//! time in ELO selection, and both estimates must find about that much.
//!
//! `scripts/test-breakdown.sh` builds hakmem-bench (and the slowed variant, in its
//! own target directory) and runs these; without root, or without the binaries,
//! each test prints why it skips.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROBE_CLI: &str = env!("CARGO_BIN_EXE_probe-cli");

/// Every row of the table, in order.
const ROWS: &[&str] = &[
    "elo_select",
    "evolution",
    "bigcache",
    "bigcache_global",
    "header",
    "features",
    "os",
    "large",
    "small",
    "hakmem",
];
/// Rows that have a probe estimate and an isolation estimate.
const BOTH: &[&str] = &[
    "elo_select",
    "bigcache",
    "bigcache_global",
    "features",
    "hakmem",
];
const CONFIGS: &[&str] = &[
    "default",
    "global",
    "no_bigcache",
    "no_elo",
    "frozen",
    "minimal",
    "baseline",
];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIP: not root: the breakdown loads BPF programs (scripts/test-breakdown.sh runs as root)");
            return;
        }
    };
}

/// hakmem-bench: $HAKMEM_BENCH, else next to probe-cli's target directory.
fn bench() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HAKMEM_BENCH") {
        return Some(PathBuf::from(p));
    }
    let dir = Path::new(PROBE_CLI).parent()?.parent()?;
    [
        dir.join("release/hakmem-bench"),
        dir.join("debug/hakmem-bench"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn breakdown(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(PROBE_CLI);
    c.arg("breakdown").args(args);
    run(c, env)
}

/// As [`breakdown`], with `--realtime`. On a machine shared with builds, a
/// time-sharing task is preempted for a few ms every few ms, and a preemption
/// that lands inside the known delay stretches it: both estimates would see
/// 1.5-2x the delay (rightly), not the delay.
fn breakdown_prioritised(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(PROBE_CLI);
    c.args(["breakdown", "--realtime"]).args(args);
    run(c, env)
}

fn run(mut c: Command, env: &[(&str, &str)]) -> Output {
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("probe-cli runs")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "probe-cli breakdown failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the JSON parses")
}

fn row<'a>(b: &'a Value, key: &str) -> &'a Value {
    b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("row {key} missing"))
}

fn num(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite(), "{what} = {x}");
    x
}

#[test]
fn a_tiny_scenario_gives_every_row_both_estimates_and_parsable_json() {
    require_root!();
    let Some(bench) = bench() else {
        eprintln!("SKIP: hakmem-bench not built (cargo build --release -p hakmem-bench)");
        return;
    };
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("breakdown-tiny");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = breakdown(
        &[
            "--scenario",
            "vm",
            "--size",
            "tiny",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--trace-runs",
            "1",
            "--json",
            "--bench",
            bench.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    let b = json(&out);
    assert_eq!(b["schema_version"], 1);
    assert_eq!(b["scenario"], "vm");
    let keys: Vec<&str> = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ROWS, "every row, in order");
    for key in ROWS {
        let r = row(&b, key);
        assert!(
            r["component"].is_string() && r["mitigable"].is_string(),
            "{r}"
        );
        let both = BOTH.contains(key);
        if both || !["evolution"].contains(key) {
            num(&r["probe"]["ns_per_op"], &format!("{key} probe"));
            num(&r["probe"]["noise_ns"], &format!("{key} probe noise"));
        }
        if both || *key == "evolution" {
            num(&r["isolation"]["ns_per_op"], &format!("{key} isolation"));
            num(
                &r["isolation"]["noise_ns"],
                &format!("{key} isolation noise"),
            );
        }
        if both {
            assert!(r["disagree"].is_boolean(), "{key}: {r}");
            assert!(r["close"].is_boolean(), "{key}: {r}");
        }
    }
    // vm makes one large allocation per operation: the probes saw each.
    let elo = &row(&b, "elo_select")["probe"];
    assert!(num(&elo["calls_per_op"], "ELO calls/op") > 0.5, "{elo}");
    let large = &row(&b, "large")["probe"];
    assert!((num(&large["calls_per_op"], "large calls/op") - 1.0).abs() < 0.2);

    let configs: Vec<&str> = b["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(configs, CONFIGS);
    let config = |name: &str| {
        b["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    for name in CONFIGS {
        let c = config(name);
        assert_eq!(c["runs"], 2);
        assert!(num(&c["ns_per_op"], "ns/op") > 0.0);
        assert!(
            c["syscalls"]["mmap"].is_u64() && c["page_faults"].is_u64(),
            "{c}"
        );
    }
    // Without the BigCache a freed block goes to the span heap, which serves
    // the next one: no mapping and unmapping per operation (before the span
    // heap, every operation unmapped its block).
    let ops = config("no_bigcache")["ops"].as_u64().unwrap();
    let munmaps = config("no_bigcache")["syscalls"]["munmap"]
        .as_u64()
        .unwrap();
    assert!(munmaps < ops, "{munmaps} munmap for {ops} operations");
    let traces = b["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 2, "default and global traced");
    // Calls are counted in the target: the only probe hits are at exit.
    let hits = num(&traces[0]["probe_hits_per_op"], "hits/op");
    assert!(hits > 0.0 && hits < 1.0, "{hits} probe hits per operation");

    // The files: the same table for people, Markdown, and a chart.
    let text = std::fs::read_to_string(out_dir.join("breakdown.txt")).unwrap();
    for r in b["rows"].as_array().unwrap() {
        assert!(text.contains(r["component"].as_str().unwrap()), "{text}");
    }
    let md = std::fs::read_to_string(out_dir.join("breakdown.md")).unwrap();
    assert!(md.contains("| ELO strategy selection"), "{md}");
    let svg = std::fs::read_to_string(out_dir.join("breakdown.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("BigCache lookup + put"));
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("breakdown.json")).unwrap())
            .unwrap();
    assert_eq!(again["rows"].as_array().unwrap().len(), ROWS.len());
}

#[test]
fn a_known_delay_in_elo_selection_shows_in_both_estimates() {
    require_root!();
    let Some(slowed) = std::env::var_os("HAKMEM_TEST_DELAY_BENCH") else {
        eprintln!(
            "SKIP: HAKMEM_TEST_DELAY_BENCH unset (scripts/test-breakdown.sh builds hakmem-bench \
             with --features hakmem/test-delay and sets it)"
        );
        return;
    };
    // Large next to ELO selection's own cost (tens of ns) and to the noise of
    // vm's time per operation; small next to the workload.
    const DELAY_NS: f64 = 20_000.0;
    // Timings on a shared 2-core machine: one more attempt when a check fails
    // (a stall inside a timed region, e.g. RT throttling, can land in any
    // component), and the second attempt must pass every check.
    let mut last = String::new();
    for attempt in 1..=2 {
        let out = breakdown_prioritised(
            &[
                "--scenario",
                "vm",
                "--size",
                "small",
                "--runs",
                "5",
                "--trace-runs",
                "3",
                "--json",
                "--bench",
                slowed.to_str().unwrap(),
            ],
            &[("HAKMEM_TEST_DELAY_NS", &format!("{DELAY_NS}"))],
        );
        match delay_checks(&json(&out), DELAY_NS) {
            Ok(()) => return,
            Err(e) => {
                eprintln!("attempt {attempt}: {e}");
                last = e;
            }
        }
    }
    panic!("{last}");
}

#[test]
fn a_known_small_delay_shows_in_the_traced_small_path_as_untraced() {
    require_root!();
    let Some(slowed) = std::env::var_os("HAKMEM_TEST_DELAY_BENCH") else {
        eprintln!("SKIP: HAKMEM_TEST_DELAY_BENCH unset (see the ELO delay test)");
        return;
    };
    // A few times a small malloc's own cost, far below the ~30 ns a
    // serialised timestamp pair reads: the floors must come off exactly for
    // the traced figure to show it (a bare rdtsc pair read a few-ns pop as 0).
    const DELAY_NS: u32 = 50;
    let figures = |delay: u32| {
        let out = breakdown_prioritised(
            &[
                "--scenario",
                "small-churn",
                "--runs",
                "3",
                "--warmup",
                "0",
                "--trace-runs",
                "3",
                "--json",
                "--bench",
                slowed.to_str().unwrap(),
            ],
            &[("HAKMEM_TEST_SMALL_DELAY_NS", &delay.to_string())],
        );
        let b = json(&out);
        let small = row(&b, "small");
        let traced = num(&small["probe"]["ns_per_call"], "small path per call");
        let untraced = num(&b["total_ns_per_op"], "untraced ns/op");
        let noise = num(&b["total_noise_ns"], "untraced noise");
        (traced, untraced, noise)
    };
    let mut last = String::new();
    for attempt in 1..=2 {
        let (t0, u0, n0) = figures(0);
        let (t1, u1, n1) = figures(DELAY_NS);
        // small-churn makes one small malloc per operation: the untraced
        // difference is what the delay really costs (the spin's call and
        // clock reads add ~20 ns to the 50: measured +69 ns/op), the
        // isolation figure of the small path's added cost; the traced
        // difference must be within 20% of it.
        let (traced, untraced) = (t1 - t0, u1 - u0);
        let noise = n0.hypot(n1);
        eprintln!(
            "delay {DELAY_NS} ns: traced small path {t0:.1} -> {t1:.1} ns/call (+{traced:.1}); \
             untraced {u0:.1} -> {u1:.1} ns/op (+{untraced:.1} ± {noise:.1})"
        );
        let known = f64::from(DELAY_NS);
        if untraced < 0.8 * known - noise || untraced > 2.0 * known + noise {
            last = format!("the untraced runs do not show the delay: +{untraced:.1} ns/op");
        } else if (traced - untraced).abs() > 0.2 * untraced + noise {
            last = format!(
                "traced +{traced:.1} ns/call vs untraced +{untraced:.1} ± {noise:.1} ns/op"
            );
        } else {
            return;
        }
        eprintln!("attempt {attempt}: {last}");
    }
    panic!("{last}");
}

/// Every way the known delay must show, or the first that does not.
fn delay_checks(b: &Value, delay_ns: f64) -> Result<(), String> {
    let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    let elo = row(b, "elo_select");
    let calls = num(&elo["probe"]["calls_per_op"], "ELO calls/op");
    check(
        calls > 0.9,
        format!("vm selects a strategy per operation: {elo}"),
    )?;
    // Without the delay ELO selection costs tens of ns: the rest is the delay.
    let added = delay_ns * calls;
    let probe = num(&elo["probe"]["ns_per_op"], "probe");
    let isolation = num(&elo["isolation"]["ns_per_op"], "isolation");
    let noise = num(&elo["isolation"]["noise_ns"], "isolation noise");
    eprintln!(
        "added {added:.0} ns/op; probes {probe:.0} ns/op; isolation {isolation:.0} ± {noise:.0} ns/op"
    );
    check(
        (probe - added).abs() < 0.15 * added,
        format!("the probes see the delay: {probe} vs {added}"),
    )?;
    check(
        isolation > 0.7 * added - noise && isolation < 1.5 * added + noise,
        format!("the isolation delta sees the delay: {isolation} ± {noise} vs {added}"),
    )?;
    // The delay is charged to ELO selection, not to its neighbours.
    let bigcache = num(&row(b, "bigcache")["probe"]["ns_per_op"], "BigCache probe");
    check(
        bigcache < 0.2 * added,
        format!("BigCache probe {bigcache} ns/op: the delay leaked into a neighbour"),
    )?;
    let evolution = num(&row(b, "evolution")["isolation"]["ns_per_op"], "frozen");
    check(
        evolution > 0.7 * added - noise && evolution < 1.5 * added + noise,
        format!("frozen stops ELO selection too: {evolution}"),
    )
}
#[test]
fn bad_arguments_exit_2_and_a_missing_bench_exits_4() {
    let out = breakdown(&["--scenario", "vm", "--size", "huge"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = breakdown(&["--scenario", "vm", "--runs", "0"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    require_root!();
    let out = breakdown(
        &["--scenario", "vm", "--bench", "/nonexistent/hakmem-bench"],
        &[],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let Some(bench) = bench() else {
        return;
    };
    let out = breakdown(
        &[
            "--scenario",
            "no-such-scenario",
            "--runs",
            "1",
            "--bench",
            bench.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-scenario"));
}
