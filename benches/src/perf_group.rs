//! `hakmem-bench perf-group`: `perf report` self time grouped by hakmem
//! component (the module path of each symbol), for `scripts/perf-profile.sh`.
//!
//! Input (stdin): `perf report --no-children --sort sym -F overhead,sym -t TAB`
//! lines, `12.34%<TAB>[.] symbol`. Output: a text table on stdout and,
//! optionally, the same as Markdown. Code inlined into another function is
//! charged to that function's component: the grouping follows symbols.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::Path;

/// One rule: the component a symbol belongs to when it contains any of
/// `any` (and, if `kernel`, is a kernel symbol `[k]`). First match wins.
struct Rule {
    component: &'static str,
    kernel: bool,
    any: &'static [&'static str],
}

const RULES: &[Rule] = &[
    rule("probe", &["hakmem::probe", "hakmem_probe_"]),
    rule("bigcache", &["hakmem::large::bigcache"]),
    rule("elo", &["hakmem::large::elo"]),
    rule("evolution", &["hakmem::large::evolution"]),
    rule(
        "span heap",
        &["hakmem::large::span_heap", "hakmem::large::purge_thread"],
    ),
    rule("profile", &["hakmem::large::profile"]),
    rule("large_path", &["hakmem::large::"]),
    rule(
        "segment",
        &[
            "hakmem::small::segment",
            "hakmem::segment_map",
            "hakmem::stack",
        ],
    ),
    rule("os", &["hakmem::os::", "hakmem::vm::"]),
    rule(
        "heap (small blocks)",
        &["hakmem::small::", "hakmem::thread::"],
    ),
    // With LTO the small fast path is inlined into the global allocator's shims.
    rule(
        "api + inlined fast path",
        &[
            "hakmem::api",
            "hakmem::global_alloc",
            "<hakmem::Hakmem",
            "hakmem_bench::dispatch",
            "__rust_alloc",
            "__rust_dealloc",
            "__rust_realloc",
        ],
    ),
    rule("hakmem (other)", &["hakmem::"]),
    rule(
        "workload (hakmem-bench)",
        &["hakmem_bench::", "hdrhistogram"],
    ),
    Rule {
        component: "kernel: page faults",
        kernel: true,
        any: &[
            "fault",
            "clear_page",
            "folio",
            "pte",
            "lru",
            "memcg",
            "charge",
            "zap",
            "rmqueue",
            "alloc_pages",
            "huge",
            "anon",
        ],
    },
    Rule {
        component: "kernel: other",
        kernel: true,
        any: &[""],
    },
    rule("other (libc, loader, std)", &[""]),
];

const fn rule(component: &'static str, any: &'static [&'static str]) -> Rule {
    Rule {
        component,
        kernel: false,
        any,
    }
}

/// The component of a `perf report` symbol column (`[.] name` / `[k] name`).
pub fn component(sym: &str) -> &'static str {
    let kernel = sym.contains("[k]");
    RULES
        .iter()
        .find(|r| (!r.kernel || kernel) && r.any.iter().any(|s| sym.contains(s)))
        .map_or("other (libc, loader, std)", |r| r.component)
}

/// Self time per component, with each component's top symbols.
#[derive(Default)]
pub struct Groups {
    total: BTreeMap<&'static str, f64>,
    symbols: BTreeMap<&'static str, Vec<(f64, String)>>,
}

impl Groups {
    /// Adds one `overhead<TAB>symbol` line; other lines are ignored.
    pub fn add_line(&mut self, line: &str) {
        let mut parts = line.split('\t');
        let (Some(pct), Some(sym)) = (parts.next(), parts.next()) else {
            return;
        };
        let Ok(pct) = pct.trim().trim_end_matches('%').parse::<f64>() else {
            return;
        };
        let sym = sym.trim();
        let c = component(sym);
        *self.total.entry(c).or_default() += pct;
        let name = sym.split_once("] ").map_or(sym, |(_, n)| n);
        self.symbols
            .entry(c)
            .or_default()
            .push((pct, name.to_string()));
    }

    /// Components by self time, largest first: (component, percent, top symbols).
    pub fn rows(&self) -> Vec<(&'static str, f64, String)> {
        let mut rows: Vec<_> = self
            .total
            .iter()
            .map(|(&c, &p)| {
                let mut top = self.symbols[c].clone();
                top.sort_by(|a, b| b.0.total_cmp(&a.0));
                let top: Vec<String> = top
                    .iter()
                    .take(3)
                    .map(|(p, s)| format!("{} {p:.1}%", s.chars().take(60).collect::<String>()))
                    .collect();
                (c, p, top.join(", "))
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows
    }
}

/// Reads stdin, prints the table headed by `title`, writes Markdown to `md`.
pub fn run(title: &str, md: Option<&Path>) -> io::Result<()> {
    let mut g = Groups::default();
    for line in io::stdin().lock().lines() {
        g.add_line(&line?);
    }
    let rows = g.rows();
    let head = format!("perf self time by hakmem component: {title}");
    let mut out = io::stdout().lock();
    writeln!(out, "{head}")?;
    writeln!(out, "{:<28} {:>7}  top symbols", "component", "self")?;
    for (c, p, top) in &rows {
        writeln!(out, "{c:<28} {p:>6.1}%  {top}")?;
    }
    if let Some(md) = md {
        let mut s =
            format!("### {head}\n\n| component | self time | top symbols |\n|---|---:|---|\n");
        for (c, p, top) in &rows {
            s += &format!("| {c} | {p:.1}% | {} |\n", top.replace('|', "\\|"));
        }
        std::fs::write(md, s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_fall_into_their_components() {
        assert_eq!(
            component("[.] hakmem::large::bigcache::ThreadCache::get"),
            "bigcache"
        );
        assert_eq!(
            component("[.] hakmem::small::alloc::refill"),
            "heap (small blocks)"
        );
        assert_eq!(component("[.] __rust_alloc"), "api + inlined fast path");
        assert_eq!(component("[k] clear_page_erms"), "kernel: page faults");
        assert_eq!(component("[k] entry_SYSCALL_64"), "kernel: other");
        assert_eq!(component("[.] memcpy"), "other (libc, loader, std)");
        // A user-space symbol with a fault-like name is not a kernel fault.
        assert_eq!(
            component("[.] page_fault_handler_in_libfoo"),
            "other (libc, loader, std)"
        );
    }

    #[test]
    fn lines_are_summed_per_component_largest_first() {
        let mut g = Groups::default();
        for l in [
            "  10.00%\t[.] hakmem::small::alloc::refill",
            "   5.50%\t[.] hakmem::small::free::free_remote",
            "  20.00%\t[k] clear_page_erms",
            "# a comment",
            "",
        ] {
            g.add_line(l);
        }
        let rows = g.rows();
        assert_eq!(rows[0].0, "kernel: page faults");
        assert_eq!(rows[1].0, "heap (small blocks)");
        assert!((rows[1].1 - 15.5).abs() < 1e-9);
        assert!(rows[1].2.starts_with("hakmem::small::alloc::refill 10.0%"));
    }
}
