//! The dependency order of `hakmem/src`, enforced: every `crate::` path in a
//! module must name a module lower in [`ORDER`] (or its own), and `small` and
//! `large` must not import each other. The order is the one `lib.rs` writes
//! down; a new module must be placed in it before this test passes.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom first. Modules on one line share a rank but must not import each
/// other (only `small` and `large` do so).
const ORDER: &[&[&str]] = &[
    &["os"],
    &["report"],
    &["diag"],
    &["options"],
    &["probe"],
    &["test_delay"],
    &["counters"],
    &["layout"],
    &["segment_map"],
    &["hardening"],
    &["vm"],
    &["thp"],
    &["stack", "list"],
    &["background"],
    &["small", "large"],
    &["thread"],
    &["stats"],
    &["exit_report"],
    &["api"],
    &["global_alloc"],
    &["lib"],
];

/// Edges against the order that are allowed, each with its reason.
const EXCEPTIONS: &[(&str, &str, &str)] = &[(
    "thread",
    "exit_report",
    "the first context set-up references the .fini_array entry so that the \
     linker keeps it: an object file nothing references is dropped from an rlib link",
)];

fn rank(module: &str) -> Option<usize> {
    ORDER.iter().position(|level| level.contains(&module))
}

/// The top-level module a source file belongs to (`small/page.rs` → `small`).
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules a file's code (comments stripped) names as `crate::X`.
fn imports(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in source.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if rest.starts_with('{') {
                // `use crate::{a, b::c}`: every first segment in the braces.
                let end = rest.find('}').unwrap_or(rest.len());
                for part in rest[1..end].split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::Stats` and other items re-exported at the root are the
            // root's (`lib`), which nothing below may use.
            if name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                out.insert("lib".to_string());
            } else if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The violations of one file's imports: `(from, to)` pairs.
fn violations(from: &str, imported: &BTreeSet<String>) -> Vec<String> {
    let mut bad = Vec::new();
    let Some(r_from) = rank(from) else {
        return vec![format!("module `{from}` is not in ORDER (place it)")];
    };
    for to in imported {
        if to == from || EXCEPTIONS.iter().any(|&(f, t, _)| f == from && t == to) {
            continue;
        }
        match rank(to) {
            None => bad.push(format!("`{from}` imports `{to}`, which is not in ORDER")),
            Some(r_to) if r_to >= r_from => bad.push(format!(
                "`{from}` (rank {r_from}) imports `{to}` (rank {r_to})"
            )),
            Some(_) => {}
        }
    }
    bad
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_crate_path_points_down_the_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found the sources: {files:?}");
    let mut bad = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let from = module_of(rel);
        seen.insert(from.clone());
        let source = std::fs::read_to_string(file).unwrap();
        for v in violations(&from, &imports(&source)) {
            bad.push(format!("{}: {v}", rel.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "edges against the order:\n{}",
        bad.join("\n")
    );
    // Every module of the order exists (a stale entry would hide a rename).
    for level in ORDER {
        for m in *level {
            assert!(
                seen.contains(*m),
                "ORDER names `{m}`, which has no source file"
            );
        }
    }
    // Exceptions stay few, and each is still needed.
    assert!(
        EXCEPTIONS.len() <= 3,
        "the exceptions list is for a few edges only"
    );
    for &(f, t, _) in EXCEPTIONS {
        let used = files.iter().any(|file| {
            module_of(file.strip_prefix(&src).unwrap()) == f
                && imports(&std::fs::read_to_string(file).unwrap()).contains(t)
        });
        assert!(used, "exception {f} → {t} is no longer needed: remove it");
    }
}

#[test]
fn the_checker_sees_back_edges_and_ignores_comments() {
    let src = "use crate::api;\n// crate::thread in a comment\nlet x = crate::Stats::default();\n\
               use crate::{large::path, os};";
    let got = imports(src);
    let want: BTreeSet<String> = ["api", "lib", "large", "os"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
    let v = violations("small", &got);
    assert_eq!(
        v.len(),
        3,
        "api, lib and large are above or beside small: {v:?}"
    );
    assert!(violations("api", &["small".to_string()].into()).is_empty());
    assert_eq!(violations("large", &["small".to_string()].into()).len(), 1);
    assert_eq!(violations("nowhere", &BTreeSet::new()).len(), 1);
}
