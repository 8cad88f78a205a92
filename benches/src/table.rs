//! The comparison table, for the terminal and as Markdown.
//!
//! Columns follow the origin analysis's table: allocator, median ns per
//! operation, vs mimalloc, p99, page faults, mmap, munmap, madvise, peak RSS,
//! RSS after the workload.

use crate::aggregate::BASELINE;
use crate::model::Row;
use comfy_table::presets::{ASCII_MARKDOWN, UTF8_FULL_CONDENSED};
use comfy_table::{CellAlignment, ContentArrangement, Table};

const HEADER: [&str; 10] = [
    "allocator",
    "median ns/op",
    "vs mimalloc",
    "p99 ns/op",
    "page faults",
    "mmap",
    "munmap",
    "madvise",
    "peak RSS",
    "RSS after",
];

/// ns with precision that fits its size: 8.53, 123.4, 37,602.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2}")
    } else if ns < 1000.0 {
        format!("{ns:.1}")
    } else {
        group_thousands(ns.round() as u64)
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The "vs mimalloc" cell: `baseline`, `+88.3%`, `-12.0%`.
pub fn fmt_ratio(row: &Row) -> String {
    match row.vs_mimalloc {
        _ if row.allocator == BASELINE && row.median_ns.is_some() => "baseline".into(),
        Some(r) => format!("{:+.1}%", (r - 1.0) * 100.0),
        None => "-".into(),
    }
}

/// KiB as MiB with one decimal.
pub fn fmt_kib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// glibc grows its heap with `brk`, which the fixed columns do not show; the
/// column appears only in scenarios where some allocator used it.
fn wants_brk(rows: &[&Row]) -> bool {
    rows.iter()
        .any(|r| r.syscalls.get("brk").is_some_and(|n| *n > 0))
}

fn cells(row: &Row, brk: bool) -> Vec<String> {
    if row.runs == 0 {
        let why = row
            .error
            .clone()
            .unwrap_or_else(|| "no run completed".into());
        let mut cells = vec![row.allocator.clone(), format!("failed: {why}")];
        cells.resize(HEADER.len() + usize::from(brk), String::new());
        return cells;
    }
    let syscall = |name: &str| {
        row.syscalls
            .get(name)
            .map_or_else(|| "n/a".to_string(), |n| group_thousands(*n))
    };
    let mut cells = vec![
        row.allocator.clone(),
        row.median_ns.map_or("-".into(), fmt_ns),
        fmt_ratio(row),
        row.p99_ns.map_or("-".into(), fmt_ns),
        row.page_faults.map_or("-".into(), group_thousands),
        syscall("mmap"),
        syscall("munmap"),
        syscall("madvise"),
        fmt_kib(row.peak_rss_kb),
        fmt_kib(row.rss_after_kb),
    ];
    if brk {
        cells.insert(8, syscall("brk"));
    }
    cells
}

/// An empty table in the terminal style, or in Markdown; columns never wrap.
pub fn new_table(markdown: bool) -> Table {
    let mut table = Table::new();
    table
        .load_style(if markdown {
            ASCII_MARKDOWN
        } else {
            UTF8_FULL_CONDENSED
        })
        .set_content_arrangement(ContentArrangement::Disabled);
    table
}

/// The allocators of `rows`, each once, in their first row's order.
pub fn allocators_of(rows: &[Row]) -> Vec<&str> {
    let mut allocators: Vec<&str> = Vec::new();
    for r in rows {
        if !allocators.contains(&r.allocator.as_str()) {
            allocators.push(&r.allocator);
        }
    }
    allocators
}

fn build(rows: &[&Row], markdown: bool) -> Table {
    let brk = wants_brk(rows);
    let mut header = HEADER.to_vec();
    if brk {
        header.insert(8, "brk");
    }
    let mut table = new_table(markdown);
    table.set_header(header.clone());
    for row in rows {
        table.add_row(cells(row, brk));
    }
    for i in 1..header.len() {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// The line above a scenario's table: what ran, how often, how syscalls were counted.
pub fn caption(rows: &[&Row], about: &str, runs: usize, warmup: usize) -> String {
    let first = rows.iter().find(|r| r.runs > 0).or(rows.first());
    let (scenario, threads, ops, source) = first.map_or(("?", 0, 0, "n/a"), |r| {
        (
            r.scenario.as_str(),
            r.threads,
            r.ops,
            r.syscall_source.as_str(),
        )
    });
    format!(
        "{scenario}: {about} — {threads} thread(s), {} ops/run, median of {runs} run(s) after {warmup} warm-up, syscalls: {source}",
        group_thousands(ops)
    )
}

/// Geometric means over scenarios, per allocator, of its median time and peak
/// RSS relative to `reference` on the same scenario (only scenarios where
/// both have a figure count). `None` when `reference` has no rows.
pub fn summary(rows: &[Row], reference: &str, markdown: bool) -> Option<String> {
    let base: Vec<&Row> = rows.iter().filter(|r| r.allocator == reference).collect();
    if base.iter().all(|r| r.median_ns.is_none()) {
        return None;
    }
    let allocators = allocators_of(rows);
    let mut table = new_table(markdown);
    table.set_header(vec![
        "allocator".to_string(),
        format!("time ÷ {reference} (geomean)"),
        format!("peak RSS ÷ {reference} (geomean)"),
        "scenarios".to_string(),
        "slowest scenario (÷ fastest allocator)".to_string(),
    ]);
    for allocator in allocators {
        let (mut time, mut rss, mut worst) = (Vec::new(), Vec::new(), None::<(f64, &str)>);
        for b in &base {
            let Some(r) = rows
                .iter()
                .find(|r| r.allocator == allocator && r.scenario == b.scenario)
            else {
                continue;
            };
            if let (Some(m), Some(bm)) = (r.median_ns, b.median_ns) {
                time.push(m / bm);
            }
            if let (Some(p), Some(bp)) = (r.peak_rss_kb, b.peak_rss_kb) {
                rss.push(p as f64 / bp.max(1) as f64);
            }
            let best = rows
                .iter()
                .filter(|x| x.scenario == b.scenario)
                .filter_map(|x| x.median_ns)
                .min_by(|a, b| a.total_cmp(b));
            if let (Some(m), Some(best)) = (r.median_ns, best) {
                if worst.is_none_or(|(w, _)| m / best > w) {
                    worst = Some((m / best, &b.scenario));
                }
            }
        }
        let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        table.add_row(vec![
            allocator.to_string(),
            fmt(crate::stats::geomean(&time)),
            fmt(crate::stats::geomean(&rss)),
            time.len().to_string(),
            worst.map_or("-".into(), |(w, s)| format!("{s} ({w:.2}×)")),
        ]);
    }
    for i in 1..4 {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    Some(table.to_string())
}

/// One scenario's table for the terminal.
pub fn terminal(rows: &[&Row]) -> String {
    build(rows, false).to_string()
}

/// One scenario's table as Markdown.
pub fn markdown(rows: &[&Row]) -> String {
    build(rows, true).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(fmt_ns(8.534), "8.53");
        assert_eq!(fmt_ns(123.44), "123.4");
        assert_eq!(fmt_ns(37602.2), "37,602");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_kib(Some(2048)), "2.0 MiB");
    }
}
