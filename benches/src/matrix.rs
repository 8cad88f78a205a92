//! The scenario × allocator matrix: every allocator's median time and peak
//! RSS on each scenario relative to one reference allocator, with the spread
//! of its runs, and the geometric means — the README's table.
//!
//! A cell is `ratio ±s%`: the allocator's median over its runs divided by the
//! reference's median on the same scenario (same run, interleaved), and `s`
//! half the range of the allocator's own runs over their median, so a reader
//! can tell a difference from noise.

use crate::model::{Row, RunReport};
use crate::stats::{geomean, median, spread};
use crate::table::{allocators_of, new_table};
use comfy_table::CellAlignment;

/// What a matrix compares.
#[derive(Clone, Copy, Debug)]
pub enum Measure {
    /// Median time per operation (each run's median batch).
    Time,
    /// Peak resident set of the process.
    PeakRss,
}

impl Measure {
    fn of(self, run: &RunReport) -> f64 {
        match self {
            Measure::Time => run.child.p50_ns,
            Measure::PeakRss => run.child.peak_rss_kb as f64,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Measure::Time => "time",
            Measure::PeakRss => "peak RSS",
        }
    }
}

/// One allocator on one scenario: its median and its runs' spread.
fn cell(rows: &[Row], scenario: &str, allocator: &str, measure: Measure) -> Option<(f64, f64)> {
    let row = rows
        .iter()
        .find(|r| r.scenario == scenario && r.allocator == allocator)?;
    let values: Vec<f64> = row.samples.iter().map(|s| measure.of(s)).collect();
    Some((median(&values)?, spread(&values)))
}

/// The matrix of `measure` relative to `reference` over `scenarios`, with a
/// last row of geometric means; `None` when the reference has no figure.
pub fn matrix(
    rows: &[Row],
    scenarios: &[&str],
    reference: &str,
    measure: Measure,
    markdown: bool,
) -> Option<String> {
    let allocators = allocators_of(rows);
    let mut table = new_table(markdown);
    let mut header = vec![format!("{} ÷ {reference}", measure.label())];
    header.extend(allocators.iter().map(|a| a.to_string()));
    table.set_header(header);

    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); allocators.len()];
    let mut any = false;
    for scenario in scenarios {
        let Some((base, _)) = cell(rows, scenario, reference, measure).filter(|(b, _)| *b > 0.0)
        else {
            continue;
        };
        any = true;
        let mut line = vec![scenario.to_string()];
        for (i, allocator) in allocators.iter().enumerate() {
            line.push(match cell(rows, scenario, allocator, measure) {
                Some((m, s)) => {
                    ratios[i].push(m / base);
                    format!("{:.2} ±{:.0}%", m / base, s * 50.0)
                }
                None => "-".into(),
            });
        }
        table.add_row(line);
    }
    if !any {
        return None;
    }
    let mut last = vec![format!("geometric mean ({} scenarios)", ratios[0].len())];
    last.extend(ratios.iter().map(|r| {
        geomean(r).map_or("-".into(), |g| {
            if markdown {
                format!("**{g:.3}**")
            } else {
                format!("{g:.3}")
            }
        })
    }));
    table.add_row(last);
    for i in 1..=allocators.len() {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    Some(table.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChildReport, Syscalls};

    fn run(scenario: &str, allocator: &str, p50: f64, rss: u64) -> RunReport {
        RunReport {
            child: ChildReport {
                scenario: scenario.into(),
                allocator: allocator.into(),
                backend: "system".into(),
                threads: 1,
                ops: 1,
                elapsed_ns: 1,
                ns_per_op: p50,
                p50_ns: p50,
                p99_ns: p50,
                max_ns: p50,
                minflt: 0,
                majflt: 0,
                peak_rss_kb: rss,
                rss_after_kb: rss,
                rss_idle_kb: rss,
                idle_ms: 0,
                allocator_stats: Default::default(),
                malloc_provider: None,
                preload_mapped: None,
            },
            syscalls: Syscalls::default(),
        }
    }

    fn row(scenario: &str, allocator: &str, runs: &[(f64, u64)]) -> Row {
        let samples = runs
            .iter()
            .map(|&(t, r)| run(scenario, allocator, t, r))
            .collect();
        crate::aggregate::fold(scenario, allocator, samples, Vec::new())
    }

    #[test]
    fn cells_are_ratios_to_the_reference_with_spread_and_a_geometric_mean() {
        let rows = vec![
            row("a", "ref", &[(10.0, 100), (10.0, 100), (10.0, 100)]),
            row("a", "x", &[(18.0, 50), (20.0, 50), (22.0, 50)]),
            row("b", "ref", &[(10.0, 100), (10.0, 100), (10.0, 100)]),
            row("b", "x", &[(5.0, 200), (5.0, 200), (5.0, 200)]),
        ];
        let time = matrix(&rows, &["a", "b"], "ref", Measure::Time, false).unwrap();
        assert!(time.contains("2.00 ±10%"), "{time}");
        assert!(time.contains("0.50 ±0%"), "{time}");
        // sqrt(2.0 × 0.5) = 1.
        assert!(time.contains("1.000"), "{time}");
        let rss = matrix(&rows, &["a", "b"], "ref", Measure::PeakRss, true).unwrap();
        assert!(
            rss.contains("0.50 ±0%") && rss.contains("2.00 ±0%"),
            "{rss}"
        );
        assert!(matrix(&rows, &["a"], "nobody", Measure::Time, false).is_none());
    }
}
