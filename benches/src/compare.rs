//! `compare`: every scenario × allocator, one child process per run, with a
//! progress bar; then the table, and the files asked for.
//!
//! Runs are interleaved — round 1 of every allocator, then round 2, … — so a
//! slow drift of the machine (thermal, a background job) spreads over all
//! allocators instead of penalising whichever ran last.

use crate::aggregate::{self, BASELINE};
use crate::cli::ComparePlan;
use crate::launch::run_child;
use crate::matrix::{matrix, Measure};
use crate::model::{Comparison, Row, RunReport, SCHEMA_VERSION};
use crate::syscount;
use crate::{svg, table};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;

/// Run the plan; `Ok(true)` when every run succeeded.
pub fn compare(plan: ComparePlan) -> Result<bool, String> {
    let args = &plan.args;
    let method = syscount::choose(args.common.syscalls);
    let rounds = args.warmup + args.runs;
    let total = (plan.scenarios.len() * plan.allocators.len() * rounds) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .expect("static template"),
    );

    let mut rows: Vec<Row> = Vec::new();
    let mut all_ok = true;
    for scenario in &plan.scenarios {
        let mut samples: Vec<Vec<RunReport>> = vec![Vec::new(); plan.allocators.len()];
        let mut errors: Vec<Vec<String>> = vec![Vec::new(); plan.allocators.len()];
        for round in 0..rounds {
            let warm = round < args.warmup;
            for (i, allocator) in plan.allocators.iter().enumerate() {
                bar.set_message(format!(
                    "{} / {} {}",
                    scenario.name,
                    allocator.name,
                    if warm {
                        "warm-up".to_string()
                    } else {
                        format!("run {}", round - args.warmup + 1)
                    }
                ));
                match run_child(scenario, allocator, &args.common, &method, false) {
                    Ok(report) if !warm => samples[i].push(report),
                    Ok(_) => {}
                    Err(e) => {
                        all_ok = false;
                        bar.suspend(|| eprintln!("hakmem-bench: {e}"));
                        errors[i].push(e);
                    }
                }
                bar.inc(1);
            }
        }
        for (i, allocator) in plan.allocators.iter().enumerate() {
            rows.push(aggregate::fold(
                scenario.name,
                &allocator.name,
                std::mem::take(&mut samples[i]),
                std::mem::take(&mut errors[i]),
            ));
        }
    }
    bar.finish_and_clear();
    aggregate::set_ratios(&mut rows);

    // Markdown: the overview (matrices, geometric means) first, the
    // per-scenario tables after it; the terminal shows them the other way
    // round, so the overview is what stays on screen.
    let mut scenario_tables = String::new();
    for scenario in &plan.scenarios {
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .collect();
        let caption = table::caption(&mine, scenario.about, args.runs, args.warmup);
        println!("{caption}\n{}\n", table::terminal(&mine));
        scenario_tables.push_str(&format!("**{caption}**\n\n{}\n\n", table::markdown(&mine)));
    }

    let mut markdown = String::new();
    if plan.scenarios.len() > 1 {
        let names: Vec<&str> = plan.scenarios.iter().map(|s| s.name).collect();
        for measure in [Measure::Time, Measure::PeakRss] {
            if let Some(text) = matrix(&rows, &names, BASELINE, measure, false) {
                println!("{text}\n");
            }
            if let Some(text) = matrix(&rows, &names, BASELINE, measure, true) {
                markdown.push_str(&format!(
                    "**Per scenario, relative to {BASELINE}** (median over runs ÷ {BASELINE}'s \
                     median, ± half the range of the allocator's runs over their median)\n\n\
                     {text}\n\n"
                ));
            }
        }
        for reference in [BASELINE, "mimalloc3"] {
            if let Some(text) = table::summary(&rows, reference, false) {
                println!("Over all scenarios, relative to {reference}:\n{text}\n");
            }
            if let Some(text) = table::summary(&rows, reference, true) {
                markdown.push_str(&format!(
                    "**Over all scenarios, relative to {reference}** (geometric means of the \
                     per-scenario ratios of median time and of peak RSS)\n\n{text}\n\n"
                ));
            }
        }
        markdown.push_str("## Per scenario\n\n");
    }
    markdown.push_str(&scenario_tables);

    let comparison = Comparison {
        schema_version: SCHEMA_VERSION,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        size: args.common.size.name().into(),
        runs: args.runs,
        warmup: args.warmup,
        rows,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&comparison).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let names: Vec<&str> = plan.scenarios.iter().map(|s| s.name).collect();
        let bars: Vec<svg::Bar> = comparison
            .rows
            .iter()
            .map(|r| svg::Bar {
                group: r.scenario.clone(),
                allocator: r.allocator.clone(),
                value: r.median_ns,
            })
            .collect();
        let chart = svg::Chart {
            title: "hakmem-bench: time per operation by scenario",
            measure: "time per operation",
            baseline: aggregate::BASELINE,
            baseline_label: "mimalloc",
        };
        svg::write(path, &chart, &bars, &names).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(all_ok)
}

/// What a reader needs to judge the numbers: cores, kernel, CPU.
pub fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    m.insert("cores".into(), cores.to_string());
    if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        m.insert("kernel".into(), release.trim().into());
    }
    if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(model) = cpuinfo.lines().find(|l| l.starts_with("model name")) {
            if let Some((_, name)) = model.split_once(':') {
                m.insert("cpu".into(), name.trim().into());
            }
        }
    }
    m
}
