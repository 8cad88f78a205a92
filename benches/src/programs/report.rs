//! Folding a program's rounds into a row, and the outputs: the table on
//! stdout, `--markdown`, `--json`, `--svg` — the same forms as `compare`.

use super::{Plan, Sample};
use crate::stats::{median, median_u64, spread};
use crate::table::{fmt_kib, new_table};
use comfy_table::{CellAlignment, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// The allocator every other is compared against: what most programs use.
pub const BASELINE: &str = "system";

/// One program with one allocator, folded over its rounds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Program name.
    pub program: String,
    /// Allocator name.
    pub allocator: String,
    /// The library the program's `malloc` bound to (`LD_DEBUG=bindings`).
    pub malloc_from: Option<String>,
    /// Rounds that completed.
    pub runs: usize,
    /// Why a round failed, if one did.
    pub error: Option<String>,
    /// Median wall time, s.
    pub wall_s: Option<f64>,
    /// (max − min) / median of the wall times.
    pub spread: f64,
    /// wall_s / the baseline's wall_s for the same program.
    pub vs_baseline: Option<f64>,
    /// Median peak RSS, KiB.
    pub peak_rss_kb: Option<u64>,
    /// Median final RSS, KiB.
    pub final_rss_kb: Option<u64>,
    /// Median of each program-specific figure.
    pub metrics: BTreeMap<String, f64>,
    /// Every round.
    pub samples: Vec<Sample>,
}

/// The whole `programs` result, as written by `--json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Programs {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The command line that produced it.
    pub command: String,
    /// Cores, kernel, CPU model.
    pub machine: BTreeMap<String, String>,
    /// Size preset.
    pub size: String,
    /// Measured rounds per cell.
    pub rounds: usize,
    /// Wall time of the whole comparison, s.
    pub seconds: f64,
    /// One row per program × allocator.
    pub rows: Vec<Row>,
}

/// One row from the rounds that completed.
pub fn fold(
    program: &str,
    allocator: &str,
    malloc_from: Option<String>,
    samples: Vec<Sample>,
    error: Option<String>,
) -> Row {
    let walls: Vec<f64> = samples.iter().map(|s| s.wall_s).collect();
    let mut metrics = BTreeMap::new();
    if let Some(first) = samples.first() {
        for name in first.metrics.keys() {
            let values: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.metrics.get(name))
                .copied()
                .collect();
            if let Some(m) = median(&values) {
                metrics.insert(name.clone(), m);
            }
        }
    }
    Row {
        program: program.into(),
        allocator: allocator.into(),
        malloc_from,
        runs: samples.len(),
        error,
        wall_s: median(&walls),
        spread: spread(&walls),
        vs_baseline: None,
        peak_rss_kb: median_u64(&samples.iter().map(|s| s.peak_kb).collect::<Vec<_>>()),
        final_rss_kb: median_u64(&samples.iter().map(|s| s.final_kb).collect::<Vec<_>>()),
        metrics,
        samples,
    }
}

/// Fill `vs_baseline` for every program that has a baseline row.
pub fn set_ratios(rows: &mut [Row]) {
    let base: BTreeMap<String, f64> = rows
        .iter()
        .filter(|r| r.allocator == BASELINE)
        .filter_map(|r| r.wall_s.map(|w| (r.program.clone(), w)))
        .collect();
    for row in rows {
        if let (Some(b), Some(w)) = (base.get(&row.program), row.wall_s) {
            row.vs_baseline = Some(w / b);
        }
    }
}

const HEADER: [&str; 8] = [
    "program",
    "allocator",
    "malloc from",
    "wall time",
    "vs glibc",
    "peak RSS",
    "final RSS",
    "details (medians)",
];

/// A figure with three significant digits and a k/M suffix.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Program-specific figures, one short cell: `114k ops/s`, or for redis
/// `SET 19k, GET 13k, … req/s` (p99 latencies are in the JSON).
fn details(row: &Row) -> String {
    let mut rates = Vec::new();
    let mut others = Vec::new();
    for (name, v) in &row.metrics {
        if let Some(test) = name.strip_suffix(" req/s") {
            rates.push(format!("{test} {}", short(*v)));
        } else if !name.ends_with(" p99 ms") {
            others.push(format!("{} {name}", short(*v)));
        }
    }
    if !rates.is_empty() {
        others.push(format!("{} req/s", rates.join(", ")));
    }
    others.join(", ")
}

fn cells(row: &Row) -> Vec<String> {
    let mut c = vec![row.program.clone(), row.allocator.clone()];
    if row.runs == 0 {
        c.push(format!(
            "failed: {}",
            row.error.as_deref().unwrap_or("no round completed")
        ));
        c.resize(HEADER.len(), String::new());
        return c;
    }
    c.push(row.malloc_from.clone().unwrap_or_else(|| "?".into()));
    c.push(row.wall_s.map_or("-".into(), |w| {
        format!("{w:.3} s ±{:.0}%", row.spread * 50.0)
    }));
    c.push(match row.vs_baseline {
        _ if row.allocator == BASELINE => "baseline".into(),
        Some(r) => format!("{:+.1}%", (r - 1.0) * 100.0),
        None => "-".into(),
    });
    c.push(fmt_kib(row.peak_rss_kb));
    c.push(fmt_kib(row.final_rss_kb));
    c.push(details(row));
    c
}

fn build(rows: &[Row], markdown: bool) -> Table {
    let mut table = new_table(markdown);
    table.set_header(HEADER.to_vec());
    for row in rows {
        table.add_row(cells(row));
    }
    for i in 3..7 {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// The line under the table: how the numbers were made.
fn caption(result: &Programs) -> String {
    format!(
        "Median of {} round(s) per cell (± half the range over the median), interleaved across \
         allocators after one warm-up run per program; size {}; {:.0} s in all. Peak RSS: the \
         program's (wait4, children included; redis: the server's VmHWM); final RSS: python \
         after freeing everything, redis idle after the benchmark, others the last 10 ms sample. \
         \"malloc from\": the library the program's malloc bound to (LD_DEBUG=bindings). \
         Command: `{}`.",
        result.rounds, result.size, result.seconds, result.command
    )
}

/// Print the table, write the files asked for.
pub fn write(plan: &Plan, result: &Programs) -> Result<(), String> {
    println!("{}\n{}", build(&result.rows, false), caption(result));
    if let Some(path) = &plan.markdown {
        let text = format!("{}\n\n{}\n", build(&result.rows, true), caption(result));
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &plan.json {
        let text = serde_json::to_string_pretty(result).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &plan.svg {
        let bars: Vec<crate::svg::Bar> = result
            .rows
            .iter()
            .map(|r| crate::svg::Bar {
                group: r.program.clone(),
                allocator: r.allocator.clone(),
                value: r.wall_s,
            })
            .collect();
        let groups: Vec<&str> = plan.programs.iter().map(|p| p.name).collect();
        crate::svg::write(
            path,
            &crate::svg::Chart {
                title: "hakmem-bench programs: wall time by program",
                measure: "wall time",
                baseline: BASELINE,
                baseline_label: "glibc",
            },
            &bars,
            &groups,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
