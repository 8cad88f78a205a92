//! End-to-end tests of the `hakmem-bench` binary: every scenario with every
//! allocator this machine has, the JSON contract, LD_PRELOAD proof, the
//! dispatching global allocator, syscall counting, and argument errors.
//!
//! Everything runs at `--size tiny`, so the whole file takes seconds.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hakmem-bench");

/// Run the binary; `HAKMEM_*` variant variables from the caller's shell are
/// cleared so they cannot change what a test measures.
fn bench(args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("HAKMEM_BENCH_CHILD");
    command.output().expect("hakmem-bench starts")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// A fresh path in a per-test temporary directory.
fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hakmem-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Scenario names from `list`.
fn scenarios() -> Vec<String> {
    section(&stdout(&bench(&["list"])), "scenarios:")
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// (allocator, status) from `list`.
fn allocators() -> Vec<(String, String)> {
    section(&stdout(&bench(&["list"])), "allocators:")
        .into_iter()
        .filter(|(name, _)| name != "preload:PATH")
        .collect()
}

fn available_allocators() -> Vec<String> {
    allocators()
        .into_iter()
        .filter(|(_, status)| status.starts_with("available"))
        .map(|(name, _)| name)
        .collect()
}

/// The indented lines under `title` as (first word, rest).
fn section(text: &str, title: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let l = l.trim();
            let (name, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name.to_string(), rest.trim().to_string())
        })
        .collect()
}

fn run_json(scenario: &str, allocator: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "run",
        "--scenario",
        scenario,
        "--allocator",
        allocator,
        "--size",
        "tiny",
        "--json",
    ];
    args.extend_from_slice(extra);
    let output = bench(&args);
    assert_ok(&output);
    serde_json::from_str(stdout(&output).trim()).expect("run --json prints one JSON object")
}

fn canonical(path: &str) -> String {
    std::fs::canonicalize(path).map_or(path.to_string(), |p| p.display().to_string())
}

#[test]
fn list_names_every_scenario_and_the_baseline_allocators() {
    let scenarios = scenarios();
    for expected in [
        "vm",
        "large-reuse",
        "small-churn",
        "larson",
        "xthread",
        "cache-scratch",
        "mstress",
        "realloc",
        "fragmentation",
        "glibc-simple",
    ] {
        assert!(
            scenarios.iter().any(|s| s == expected),
            "list lacks scenario {expected}"
        );
    }
    let available = available_allocators();
    for always in [
        "hakmem",
        "hakmem-frozen",
        "hakmem-minimal",
        "hakmem-global",
        "mimalloc",
        #[cfg(feature = "linked-jemalloc")]
        "jemalloc",
        "system",
    ] {
        assert!(
            available.iter().any(|a| a == always),
            "{always} is linked in, so always available"
        );
    }
    // A missing library is reported with the reason, not silently dropped.
    for (name, status) in allocators() {
        assert!(
            status.starts_with("available") || status.starts_with("missing: "),
            "{name}: unexpected status {status}"
        );
    }
}

#[test]
fn every_scenario_completes_with_every_available_allocator() {
    let scenarios = scenarios();
    let allocators = available_allocators();
    let json = temp("all.json");
    let output = bench(&[
        "compare",
        "--scenario",
        "all",
        "--allocators",
        &allocators.join(","),
        "--size",
        "tiny",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--idle-ms",
        "0",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_ok(&output);
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = result["rows"].as_array().unwrap();
    assert_eq!(rows.len(), scenarios.len() * allocators.len());
    for row in rows {
        let what = format!("{} with {}", row["scenario"], row["allocator"]);
        assert_eq!(row["runs"], 1, "{what}: {}", row["error"]);
        assert!(row["error"].is_null(), "{what}: {}", row["error"]);
        assert!(row["ops"].as_u64().unwrap() > 0, "{what} did no work");
        assert!(
            row["median_ns"].as_f64().unwrap() > 0.0,
            "{what} has no time"
        );
        assert!(
            row["peak_rss_kb"].as_u64().unwrap() > 0,
            "{what} has no RSS"
        );
    }
    // The terminal table has a line per allocator in each scenario's table,
    // and one more in each summary over all scenarios, which follow them.
    let table = stdout(&output);
    let (per_scenario, summary) = table
        .split_once("Over all scenarios")
        .expect("a summary over all scenarios follows the scenario tables");
    for allocator in &allocators {
        let rows = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("│ {allocator} ")))
                .count()
        };
        assert_eq!(
            rows(per_scenario),
            scenarios.len(),
            "table rows for {allocator}"
        );
        // One summary per reference (mimalloc, and mimalloc3 where built).
        let summaries = rows(summary);
        assert!(
            (1..=2).contains(&summaries),
            "{summaries} summary rows for {allocator}"
        );
    }
}

#[test]
fn compare_json_has_one_row_per_allocator_and_writes_markdown_and_svg() {
    let (json, markdown, svg) = (temp("vm.json"), temp("vm.md"), temp("vm.svg"));
    let output = bench(&[
        "compare",
        "--scenario",
        "vm,small-churn",
        "--allocators",
        "mimalloc,system,hakmem",
        "--size",
        "tiny",
        "--runs",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        markdown.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_ok(&output);
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(result["schema_version"], 1);
    assert_eq!(result["runs"], 2);
    let rows = result["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "2 scenarios x 3 allocators");
    for scenario in ["vm", "small-churn"] {
        let mine: Vec<&Value> = rows.iter().filter(|r| r["scenario"] == scenario).collect();
        let mut names: Vec<&str> = mine
            .iter()
            .map(|r| r["allocator"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["hakmem", "mimalloc", "system"],
            "one row per allocator in {scenario}"
        );
        for row in &mine {
            // The warm-up run is not counted.
            assert_eq!(row["samples"].as_array().unwrap().len(), 2);
            let ratio = row["vs_mimalloc"].as_f64().unwrap();
            let expected = row["median_ns"].as_f64().unwrap()
                / mine.iter().find(|r| r["allocator"] == "mimalloc").unwrap()["median_ns"]
                    .as_f64()
                    .unwrap();
            assert!((ratio - expected).abs() < 1e-9);
        }
        // Each run was its own process, with its own allocator.
        for row in &mine {
            let backends: Vec<&str> = row["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["backend"].as_str().unwrap())
                .collect();
            assert!(backends
                .iter()
                .all(|b| *b == row["allocator"].as_str().unwrap()));
        }
    }
    let md = std::fs::read_to_string(&markdown).unwrap();
    assert!(md.contains("| allocator"), "markdown table header");
    assert!(md.contains("vs mimalloc") && md.contains("baseline"));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.trim_end().ends_with("</svg>"));
    // Text nodes of the SVG: axis labels, legend entries, bar values.
    let texts: Vec<&str> = svg_text
        .split('>')
        .filter_map(|chunk| chunk.split('<').next())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    for label in ["vm", "small-churn", "hakmem", "mimalloc", "system"] {
        assert!(texts.contains(&label), "svg lacks label {label}: {texts:?}");
    }
}

#[test]
fn the_dispatching_global_allocator_uses_the_requested_backend() {
    for (allocator, backend, stat) in [
        ("mimalloc", "mimalloc", None),
        #[cfg(feature = "linked-jemalloc")]
        ("jemalloc", "jemalloc", Some("jemalloc.resident")),
        ("hakmem", "hakmem", Some("hakmem.mapped")),
        ("hakmem-frozen", "hakmem", Some("hakmem.mapped")),
        ("system", "system", None),
    ] {
        let report = run_json("small-churn", allocator, &[]);
        assert_eq!(report["backend"], backend, "{allocator}");
        assert_eq!(report["allocator"], allocator);
        if let Some(stat) = stat {
            // Only the allocator that served the process reports figures, and
            // a workload that ran must have made it map memory.
            assert!(
                report["allocator_stats"][stat].as_u64().unwrap() > 0,
                "{allocator}: {stat}"
            );
        } else {
            assert!(report["allocator_stats"].as_object().unwrap().is_empty());
        }
        // Linked-in allocators leave the C heap to libc.
        assert!(
            report["malloc_provider"].as_str().unwrap().contains("libc"),
            "{allocator}"
        );
    }
}

#[test]
fn a_preload_run_proves_the_preloaded_library_served_malloc() {
    let mut checked = 0;
    for (name, status) in allocators() {
        // (Without `linked-jemalloc`, the `jemalloc` row is Debian's library preloaded.)
        let jemalloc_preloaded = name == "jemalloc-preload"
            || (name == "jemalloc" && !cfg!(feature = "linked-jemalloc"));
        let is_preload = name == "tcmalloc"
            || name == "mimalloc3"
            || name.ends_with("-preload")
            || jemalloc_preloaded;
        if !is_preload {
            continue;
        }
        if !status.starts_with("available") {
            eprintln!("skipping {name}: {status}");
            continue;
        }
        let report = run_json("small-churn", &name, &[]);
        let provider = report["malloc_provider"].as_str().unwrap();
        assert!(
            !provider.contains("libc.so"),
            "{name}: malloc still came from libc"
        );
        assert_eq!(
            report["preload_mapped"], true,
            "{name}: library not in /proc/self/maps"
        );
        // A preloaded jemalloc is found and asked for its figures; no other
        // allocator reports jemalloc's.
        let resident = report["allocator_stats"]["jemalloc.resident"].as_u64();
        if jemalloc_preloaded {
            assert!(
                resident.unwrap_or(0) > 0,
                "{name}: {}",
                report["allocator_stats"]
            );
        } else {
            assert_eq!(resident, None, "{name}");
        }
        checked += 1;
    }
    // The generic form, with the library path given explicitly.
    let tcmalloc = allocators()
        .into_iter()
        .find(|(n, s)| n == "tcmalloc" && s.starts_with("available"));
    if tcmalloc.is_some() {
        let path = ["x86_64", "aarch64"]
            .iter()
            .map(|arch| format!("/usr/lib/{arch}-linux-gnu/libtcmalloc_minimal.so.4"))
            .find(|p| Path::new(p).exists())
            .unwrap();
        let report = run_json("vm", &format!("preload:{path}"), &[]);
        assert_eq!(
            report["malloc_provider"].as_str().unwrap(),
            canonical(&path)
        );
        assert_eq!(report["preload_mapped"], true);
        checked += 1;
    }
    // The control: without a preload, malloc is libc's.
    let system = run_json("vm", "system", &[]);
    assert!(system["malloc_provider"].as_str().unwrap().contains("libc"));
    assert!(system["preload_mapped"].is_null());
    if checked == 0 {
        eprintln!("no preloadable allocator installed: only the control ran");
    }
}

#[test]
fn syscalls_are_counted_by_the_harness() {
    // 2 MiB blocks: glibc has to get them from the kernel (mmap, or brk once
    // its threshold adapts), so the counts cannot all be zero.
    let report = run_json("vm", "system", &[]);
    let source = report["syscalls"]["source"].as_str().unwrap();
    if source == "n/a" {
        eprintln!("skipping: neither perf nor strace usable here");
        return;
    }
    let counts = &report["syscalls"]["counts"];
    let total: u64 = ["mmap", "munmap", "madvise", "brk", "mremap"]
        .iter()
        .map(|n| counts[n].as_u64().unwrap())
        .sum();
    assert!(total > 0, "no memory syscalls counted ({source}): {counts}");

    if Path::new("/usr/bin/strace").exists() {
        let traced = run_json("vm", "system", &["--syscalls", "strace"]);
        assert_eq!(traced["syscalls"]["source"], "strace");
        // strace sees the whole process, start-up included, so at least as many.
        assert!(traced["syscalls"]["counts"]["mmap"].as_u64().unwrap() > 0);
    }
    let off = run_json("vm", "system", &["--syscalls", "off"]);
    assert_eq!(off["syscalls"]["source"], "n/a");
}

#[test]
fn a_baseline_runs_the_same_operations_without_allocating() {
    for scenario in ["vm", "large-reuse", "small-churn"] {
        let full = run_json(scenario, "hakmem", &[]);
        let base = run_json(scenario, "hakmem", &["--baseline"]);
        assert_eq!(full["ops"], base["ops"], "{scenario}");
        if scenario == "vm" {
            let ops = full["ops"].as_u64().unwrap();
            let large = |v: &Value| {
                v["allocator_stats"]["hakmem.large_allocs"]
                    .as_u64()
                    .expect("hakmem's stats in the report")
            };
            // The harness' own large blocks are in both; the baseline adds
            // its pool's five, allocated before the clock, and none in the loop.
            assert!(large(&base) + ops <= large(&full) + 5, "{full}\n{base}");
        }
    }
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--scenario", "nope", "--allocator", "system"],
            "nope",
        ),
        (&["run", "--scenario", "vm", "--allocator", "nope"], "nope"),
        (&["compare", "--scenario", "vm,nope"], "nope"),
        (
            &[
                "compare",
                "--scenario",
                "vm",
                "--allocators",
                "mimalloc,nope",
            ],
            "nope",
        ),
        (&["compare", "--scenario", "vm", "--runs", "0"], "--runs"),
        (
            &["compare", "--scenario", "vm", "--threads", "0"],
            "--threads",
        ),
        (&["compare", "--scenario", "vm", "--size", "huge"], "huge"),
        (&["compare", "--scenario", "vm", "--runs", "many"], "many"),
        (
            &[
                "run",
                "--scenario",
                "vm",
                "--allocator",
                "preload:/no/such/lib.so",
            ],
            "/no/such/lib.so",
        ),
        (
            &[
                "run",
                "--scenario",
                "larson",
                "--allocator",
                "system",
                "--baseline",
            ],
            "larson",
        ),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let output = bench(args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line:\n{err}"
        );
        assert!(
            err.contains(needle),
            "{args:?}: message does not name {needle}: {err}"
        );
        assert!(stdout(&output).is_empty(), "{args:?} printed to stdout");
    }
}

#[test]
fn libmimalloc3_is_mimalloc_3() {
    // The library next to hakmem-bench, where `mimalloc3` looks for it. A
    // build that picked up libmimalloc-sys's unified `v2` sources would give
    // a mimalloc 2 under the mimalloc3 name (this happened once, the other
    // way round).
    let library = Path::new(BIN).with_file_name("libmimalloc3.so");
    if !library.is_file() {
        eprintln!(
            "skipping: {} not built (cargo build --release -p mimalloc3-preload)",
            library.display()
        );
        return;
    }
    let path = std::ffi::CString::new(library.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; RTLD_LOCAL keeps its malloc out of this
    // process's symbol lookups (everything here is already bound to libc's).
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen {}", library.display());
    // SAFETY: a valid handle and symbol name.
    let symbol = unsafe { libc::dlsym(handle, c"mimalloc3_version".as_ptr()) };
    assert!(!symbol.is_null(), "mimalloc3_version not exported");
    // SAFETY: the library defines it as `extern "C" fn() -> c_int`; it only
    // reads mimalloc's version constant.
    let version: extern "C" fn() -> libc::c_int = unsafe { std::mem::transmute(symbol) };
    let v = version();
    assert!(
        (30000..40000).contains(&v),
        "libmimalloc3.so reports mimalloc version {v}"
    );
}
