//! The comparison as an SVG chart: grouped bars per scenario, one colour per
//! allocator, height = time per operation relative to mimalloc (lower is better).
//!
//! Relative rather than absolute because scenarios differ by three orders of
//! magnitude in ns/op; without a mimalloc row the fastest allocator of each
//! scenario is the reference. Bars taller than the axis are cut at the top and
//! keep their true value in the label.

use crate::aggregate::BASELINE;
use crate::model::Row;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Fixed colours for the named allocators, so charts stay comparable.
fn colour(allocator: &str, index: usize) -> RGBColor {
    match allocator {
        "hakmem" => RGBColor(214, 39, 40),
        "hakmem-frozen" => RGBColor(255, 127, 14),
        "hakmem-minimal" => RGBColor(188, 189, 34),
        "hakmem-global" => RGBColor(140, 86, 75),
        "mimalloc" => RGBColor(31, 119, 180),
        "jemalloc" => RGBColor(44, 160, 44),
        "tcmalloc" => RGBColor(148, 103, 189),
        "system" => RGBColor(127, 127, 127),
        _ => {
            let c = Palette99::pick(index + 20).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// (scenario, allocator, ratio) for every row with a time.
fn ratios(rows: &[Row], scenarios: &[&str]) -> (Vec<(usize, usize, f64)>, &'static str) {
    let has_baseline = scenarios.iter().all(|s| {
        rows.iter()
            .any(|r| r.scenario == *s && r.allocator == BASELINE && r.median_ns.is_some())
    });
    let mut allocators: Vec<&str> = Vec::new();
    for row in rows {
        if !allocators.contains(&row.allocator.as_str()) {
            allocators.push(&row.allocator);
        }
    }
    let mut bars = Vec::new();
    for (si, scenario) in scenarios.iter().enumerate() {
        let in_scenario: Vec<&Row> = rows.iter().filter(|r| r.scenario == *scenario).collect();
        let reference = if has_baseline {
            in_scenario
                .iter()
                .find(|r| r.allocator == BASELINE)
                .and_then(|r| r.median_ns)
        } else {
            in_scenario
                .iter()
                .filter_map(|r| r.median_ns)
                .min_by(|a, b| a.total_cmp(b))
        };
        for row in &in_scenario {
            if let (Some(m), Some(base)) = (row.median_ns, reference) {
                let ai = allocators.iter().position(|a| *a == row.allocator).unwrap();
                bars.push((si, ai, m / base));
            }
        }
    }
    let label = if has_baseline {
        "time per operation relative to mimalloc (lower is better)"
    } else {
        "time per operation relative to the fastest (lower is better)"
    };
    (bars, label)
}

/// Draw `rows` (scenarios in the given order) into an SVG file.
pub fn write(path: &Path, rows: &[Row], scenarios: &[&str]) -> Result<(), String> {
    let mut allocators: Vec<&str> = Vec::new();
    for row in rows {
        if !allocators.contains(&row.allocator.as_str()) {
            allocators.push(&row.allocator);
        }
    }
    let (bars, y_label) = ratios(rows, scenarios);
    let n = scenarios.len().max(1);
    let per_bar = 22u32;
    let width = (n as u32 * (allocators.len() as u32 * per_bar + 40) + 200).max(900);
    let height = 560u32;
    let top = bars.iter().map(|b| b.2).fold(1.0f64, f64::max);
    // Past 4× the detail that matters (who wins, by how much) is lost anyway.
    let y_max = (top * 1.15).clamp(1.2, 4.0);
    // Headroom above the tallest bar keeps the legend (top left) off the bars.
    let axis_max = y_max * 1.4;

    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "hakmem-bench: time per operation by scenario",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..axis_max)
        .map_err(|e| draw(&e))?;
    let names: Vec<String> = scenarios.iter().map(|s| s.to_string()).collect();
    let x_formatter = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&x_formatter)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(|e| draw(&e))?;

    // The reference line at 1.0: the baseline's own height.
    chart
        .draw_series(LineSeries::new(
            [(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            BLACK.mix(0.6).stroke_width(1),
        ))
        .map_err(|e| draw(&e))?;

    let group = 0.84;
    let slot = group / allocators.len().max(1) as f64;
    for (ai, allocator) in allocators.iter().enumerate() {
        let fill = colour(allocator, ai);
        let mine: Vec<(usize, f64)> = bars
            .iter()
            .filter(|b| b.1 == ai)
            .map(|b| (b.0, b.2))
            .collect();
        chart
            .draw_series(mine.iter().map(|&(si, ratio)| {
                let x0 = si as f64 - group / 2.0 + ai as f64 * slot;
                Rectangle::new(
                    [(x0, 0.0), (x0 + slot * 0.9, ratio.min(y_max))],
                    fill.filled(),
                )
            }))
            .map_err(|e| draw(&e))?
            .label(*allocator)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], fill.filled()));
        // Values read bottom to top just above each bar; a bar cut at the top
        // carries its value inside, in white, so it never runs into the title.
        let above = TextStyle::from(("sans-serif", 11).into_font())
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Left, VPos::Center));
        let inside = TextStyle::from(("sans-serif", 11).into_font())
            .color(&WHITE)
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Right, VPos::Center));
        chart
            .draw_series(mine.iter().map(|&(si, ratio)| {
                let x = si as f64 - group / 2.0 + ai as f64 * slot + slot * 0.45;
                if ratio > y_max {
                    Text::new(format!("{ratio:.1}× ↑"), (x, y_max * 0.99), inside.clone())
                } else {
                    Text::new(
                        format!("{ratio:.2}"),
                        (x, ratio + y_max * 0.01),
                        above.clone(),
                    )
                }
            }))
            .map_err(|e| draw(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}
