//! The breakdown as tables for people: the terminal, and Markdown for a README.

use super::model::{Breakdown, Row};
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use hakmem_ebpf::layout::SYSCALLS;
use std::fmt::Write as _;

/// A signed duration: "41.2 ns", "-3.40 µs", "1.25 ms".
pub fn ns(v: f64) -> String {
    let a = v.abs();
    if a < 1e3 {
        format!("{v:.1} ns")
    } else if a < 1e6 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{:.2} ms", v / 1e6)
    }
}

/// "± 3.1 ns".
fn pm(v: f64) -> String {
    format!("± {}", ns(v))
}

fn dash() -> String {
    "-".into()
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(dash, |s| format!("{:.1}%", 100.0 * s))
}

fn flag(r: &Row) -> String {
    let base = match r.disagree {
        Some(true) => "DISAGREE",
        Some(false) => "agree",
        None => return dash(),
    };
    match (r.close, &r.probe, &r.isolation) {
        (Some(close), Some(p), Some(i)) => format!(
            "{base}, {} ({}{})",
            if close { "close" } else { "apart" },
            if p.ns_per_op >= i.ns_per_op { "+" } else { "" },
            ns(p.ns_per_op - i.ns_per_op)
        ),
        _ => base.into(),
    }
}

fn kib(v: u64) -> String {
    if v >= 10 * 1024 {
        format!("{:.1} MiB", v as f64 / 1024.0)
    } else {
        format!("{v} KiB")
    }
}

fn table(markdown: bool) -> Table {
    let mut t = Table::new();
    t.load_style(if markdown {
        presets::ASCII_MARKDOWN
    } else {
        presets::UTF8_FULL_CONDENSED
    })
    .set_content_arrangement(ContentArrangement::Disabled);
    t
}

fn right_align(t: &mut Table, from: usize, to: usize) {
    for i in from..to {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// The origin analysis's table with both estimates.
fn components(b: &Breakdown, markdown: bool) -> Table {
    let mut t = table(markdown);
    t.set_header(vec![
        "component",
        "probes ns/op",
        "noise",
        "per call",
        "calls/op",
        "isolation ns/op",
        "noise",
        "on - off",
        "share",
        "estimates",
        "mitigable?",
        "origin guess",
    ]);
    for r in &b.rows {
        let (p, pn, pc, calls) = match &r.probe {
            Some(p) => (
                ns(p.ns_per_op),
                pm(p.noise_ns),
                p.ns_per_call.map_or_else(dash, ns),
                format!("{:.2}", p.calls_per_op),
            ),
            None => (dash(), dash(), dash(), dash()),
        };
        let (i, inoise, pair) = match &r.isolation {
            Some(i) => (
                ns(i.ns_per_op),
                pm(i.noise_ns),
                format!("{} - {}", i.on, i.off),
            ),
            None => (dash(), dash(), dash()),
        };
        t.add_row(vec![
            r.component.to_string(),
            p,
            pn,
            pc,
            calls,
            i,
            inoise,
            pair,
            pct(r.share),
            flag(r),
            r.mitigable.to_string(),
            r.origin_guess_ns.map_or_else(dash, |g| format!("{g} ns")),
        ]);
    }
    right_align(&mut t, 1, 7);
    right_align(&mut t, 8, 9);
    t
}

/// Every configuration's untraced runs.
fn configurations(b: &Breakdown, markdown: bool) -> Table {
    let mut t = table(markdown);
    let mut header = vec![
        "config".to_string(),
        "options".to_string(),
        "ns/op".to_string(),
        "noise".to_string(),
    ];
    header.extend(SYSCALLS.iter().map(|s| s.name.to_string()));
    header.extend(["page faults", "peak RSS", "RSS after"].map(String::from));
    t.set_header(header);
    for c in &b.configs {
        let mut row = vec![
            c.name.to_string(),
            c.env.clone(),
            ns(c.ns_per_op),
            pm(c.noise_ns),
        ];
        row.extend(
            SYSCALLS
                .iter()
                .map(|s| c.syscalls.get(s.name).copied().unwrap_or(0).to_string()),
        );
        row.push(c.page_faults.to_string());
        row.push(kib(c.peak_rss_kb));
        row.push(kib(c.rss_after_kb));
        t.add_row(row);
    }
    right_align(&mut t, 2, 7 + SYSCALLS.len());
    t
}

/// Per probe component of each traced configuration.
fn traced(b: &Breakdown, markdown: bool) -> Table {
    let mut t = table(markdown);
    let mut header = vec!["probe component".to_string()];
    for tr in &b.traces {
        header.push(format!("{} calls/op", tr.config));
        header.push(format!("{} ns/op", tr.config));
        header.push(format!("{} ns/call", tr.config));
    }
    t.set_header(header);
    let mut names: Vec<&str> = b
        .traces
        .iter()
        .flat_map(|tr| tr.components.iter().map(|c| c.component.as_str()))
        .collect();
    // Probe id order (the report's order), not alphabetical.
    names.sort_by_key(|n| {
        hakmem::probe::COMPONENTS
            .iter()
            .position(|(_, name)| name == n)
            .unwrap_or(usize::MAX)
    });
    names.dedup();
    for name in names {
        let mut row = vec![name.to_string()];
        for tr in &b.traces {
            match tr.components.iter().find(|c| c.component == name) {
                Some(c) => row.extend([
                    format!("{:.3}", c.calls_per_op),
                    ns(c.ns_per_op),
                    ns(c.ns_per_call),
                ]),
                None => row.extend([dash(), dash(), dash()]),
            }
        }
        t.add_row(row);
    }
    right_align(&mut t, 1, 1 + 3 * b.traces.len());
    t
}

fn headline(b: &Breakdown) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "hakmem overhead breakdown: scenario {} ({} threads, size {}, {} runs per configuration + {} warm-up; {} traced run(s) of size {}{})",
        b.scenario,
        b.threads,
        b.size,
        b.runs,
        b.warmup,
        b.trace_runs,
        b.trace_size,
        if b.realtime { "; SCHED_FIFO" } else { "" }
    );
    let hakmem = b.hakmem_ns_per_op.map_or_else(String::new, |h| {
        format!(
            "; in hakmem (probes): {} = {:.1}%",
            ns(h),
            100.0 * h / b.total_ns_per_op.max(1e-9)
        )
    });
    let _ = writeln!(
        o,
        "total: {} per operation (default configuration, untraced, {}){hakmem}",
        ns(b.total_ns_per_op),
        pm(b.total_noise_ns)
    );
    if b.hakmem_ns_per_op.is_some_and(|h| h > b.total_ns_per_op) {
        let _ = writeln!(
            o,
            "warning: the probes see more time in hakmem than the untraced run takes in all: \
             the timed calls' clock reads (a TSC read costs ~18 ns on some VMs) and their \
             record updates are larger than the ns-scale fast paths they bracket, and what \
             is subtracted for them varies from run to run; read the probe column as an \
             upper bound here"
        );
    }
    o
}

fn footer(b: &Breakdown) -> String {
    let mut o = String::new();
    let c = &b.calibration;
    let added: Vec<String> = b
        .traces
        .iter()
        .map(|t| {
            format!(
                "{}: {:.0} a run, {} /op",
                t.config,
                t.probe_hits_per_op * t.ops as f64,
                ns(t.probe_added_ns_per_op)
            )
        })
        .collect();
    let floors: Vec<String> = b
        .traces
        .iter()
        .map(|t| {
            let whence = if t.floor_measurements > 0 {
                format!(
                    "measured by the target's threads after their samples, {} times a run",
                    t.floor_measurements
                )
            } else {
                format!(
                    "probe-cli's own from attach, operation {}",
                    ns(c.empty_operation_ns)
                )
            };
            format!(
                "{}: {} per component and operation, {} more per component timed inside an operation ({whence})",
                t.config,
                ns(t.floor_component_ns),
                ns(t.floor_nested_ns)
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "calibration: a probe hit costs {} (excluded from every figure); calls are counted and timed in the \
         target and read from its memory, which hits a probe only when a thread exits ({}); timed calls are sampled (a burst of 4, 2 measured, about one per 2^19 TSC cycles a thread) between serialised TSC reads; \
         subtracted per instance, what the same timing code records for empty work (medians over the runs): {}",
        ns(c.probe_hit_ns),
        added.join(", "),
        floors.join("; ")
    );
    let _ = writeln!(
        o,
        "noise: robust standard deviation across runs (1.4826 x median absolute deviation; isolation: sqrt(on^2 + off^2)); DISAGREE = the estimates differ by more than twice their combined noise; close = the probe figure is within 20% or 2 ns of the isolation figure, apart = it is not (probes minus isolation in brackets)"
    );
    o
}

fn notes(b: &Breakdown, bullet: &str) -> String {
    let mut o = String::new();
    for r in &b.rows {
        let _ = writeln!(o, "{bullet}{}: {}", r.component, r.note);
    }
    o
}

/// The breakdown for a terminal.
pub fn text(b: &Breakdown) -> String {
    let mut o = headline(b);
    let _ = writeln!(o, "\n{}", components(b, false));
    o.push_str(&footer(b));
    let _ = writeln!(o, "\nwhat the estimates include:");
    o.push_str(&notes(b, "  "));
    let _ = writeln!(
        o,
        "\nconfigurations (untraced, medians per run of {} ops)\n{}",
        b.configs.first().map_or(0, |c| c.ops),
        configurations(b, false)
    );
    let _ = writeln!(
        o,
        "\nprobe components (traced runs, calibrated)\n{}",
        traced(b, false)
    );
    o
}

/// The breakdown as Markdown.
pub fn markdown(b: &Breakdown) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## Overhead breakdown: `{}`\n", b.scenario);
    let _ = writeln!(o, "`{}`\n", b.command);
    o.push_str(&headline(b).replace('\n', "\n\n"));
    let _ = writeln!(o, "{}\n", components(b, true));
    o.push_str(&footer(b).replace('\n', "\n\n"));
    o.push_str(&notes(b, "- "));
    let _ = writeln!(
        o,
        "\n### Configurations (untraced, medians per run)\n\n{}\n",
        configurations(b, true)
    );
    let _ = writeln!(
        o,
        "### Probe components (traced, calibrated)\n\n{}",
        traced(b, true)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_their_sign_and_unit() {
        assert_eq!(ns(41.23), "41.2 ns");
        assert_eq!(ns(-3400.0), "-3.40 µs");
        assert_eq!(ns(1.25e6), "1.25 ms");
    }
}
