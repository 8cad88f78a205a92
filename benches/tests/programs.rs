//! `hakmem-bench programs` end to end on a small real program (GNU sort at
//! `--size tiny`): rows per allocator, medians over rounds, RSS, the proof of
//! which library served `malloc`, the JSON / Markdown / SVG outputs, and
//! argument errors.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hakmem-bench");

fn bench(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("HAKMEM_BENCH_CHILD")
        .output()
        .expect("hakmem-bench starts")
}

fn temp(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hakmem-bench-programs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A preloadable allocator besides glibc, with the library name its malloc
/// must then come from: libhakmem.so when it was built next to the binary,
/// else Debian's tcmalloc.
fn other_allocator() -> Option<(String, &'static str)> {
    let hakmem = Path::new(BIN).parent().unwrap().join("libhakmem.so");
    if hakmem.is_file() {
        return Some(("hakmem".into(), "libhakmem.so"));
    }
    ["x86_64", "aarch64"]
        .iter()
        .map(|arch| format!("/usr/lib/{arch}-linux-gnu/libtcmalloc_minimal.so.4"))
        .find(|p| Path::new(p).exists())
        .map(|p| (format!("preload:{p}"), "libtcmalloc_minimal.so.4"))
}

#[test]
fn sort_with_each_allocator_gives_rows_with_medians_rss_and_the_serving_library() {
    let (json, markdown, svg) = (temp("p.json"), temp("p.md"), temp("p.svg"));
    let mut allocators = vec![("system".to_string(), "libc.so.6")];
    allocators.extend(other_allocator());
    let names: Vec<&str> = allocators.iter().map(|(n, _)| n.as_str()).collect();
    let out = bench(&[
        "programs",
        "--program",
        "sort",
        "--allocators",
        &names.join(","),
        "--rounds",
        "2",
        "--size",
        "tiny",
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        markdown.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), allocators.len());
    for ((name, library), row) in allocators.iter().zip(rows) {
        assert_eq!(row["program"], "sort");
        assert_eq!(row["allocator"], name.as_str());
        assert_eq!(row["runs"], 2, "{row}");
        assert_eq!(row["samples"].as_array().unwrap().len(), 2);
        assert!(row["wall_s"].as_f64().unwrap() > 0.0);
        assert!(
            row["peak_rss_kb"].as_u64().unwrap() > 0,
            "{name}: no peak RSS"
        );
        // The dynamic linker's own account of who serves sort's malloc.
        assert_eq!(row["malloc_from"].as_str(), Some(*library), "{name}");
    }
    assert_eq!(rows[0]["vs_baseline"].as_f64(), Some(1.0));
    let md = std::fs::read_to_string(&markdown).unwrap();
    assert!(md.contains("| sort "), "{md}");
    assert!(md.contains("baseline"), "{md}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // The table goes to stdout, progress and errors to stderr.
    assert!(String::from_utf8_lossy(&out.stdout).contains("sort"));
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &["programs", "--program", "no-such-program"][..],
        &["programs", "--rounds", "0"],
        &[
            "programs",
            "--program",
            "sort",
            "--allocators",
            "no-such-allocator",
        ],
        &[
            "programs",
            "--program",
            "sort",
            "--allocators",
            "preload:/no/such/lib.so",
        ],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
