//! A comparison as an SVG chart: grouped bars per scenario (or program), one
//! colour per allocator, height = time relative to a baseline allocator (lower
//! is better).
//!
//! Relative rather than absolute because scenarios differ by three orders of
//! magnitude in ns/op; without a baseline row in every group the fastest
//! allocator of each group is the reference. Bars taller than the axis are cut
//! at the top and keep their true value in the label.

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
        "mimalloc3" => RGBColor(23, 190, 207),
        "jemalloc" => RGBColor(44, 160, 44),
        "tcmalloc" => RGBColor(148, 103, 189),
        "system" => RGBColor(127, 127, 127),
        _ => {
            let c = Palette99::pick(index + 20).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// One bar: a group (scenario or program), an allocator, its time.
#[derive(Clone, Debug)]
pub struct Bar {
    /// Scenario or program.
    pub group: String,
    /// Allocator name.
    pub allocator: String,
    /// Time (any unit, the same in a group); `None` draws nothing.
    pub value: Option<f64>,
}

/// What the chart says about itself.
pub struct Chart<'a> {
    /// The title.
    pub title: &'a str,
    /// What the bars measure, for the axis ("time per operation").
    pub measure: &'a str,
    /// The reference allocator's name in the bars.
    pub baseline: &'a str,
    /// How the axis names it ("mimalloc", "glibc").
    pub baseline_label: &'a str,
}

/// (group, allocator, ratio) for every bar with a value, and the axis label.
fn ratios(bars: &[Bar], groups: &[&str], chart: &Chart) -> (Vec<(usize, usize, f64)>, String) {
    let has_baseline = groups.iter().all(|g| {
        bars.iter()
            .any(|b| b.group == *g && b.allocator == chart.baseline && b.value.is_some())
    });
    let mut allocators: Vec<&str> = Vec::new();
    for bar in bars {
        if !allocators.contains(&bar.allocator.as_str()) {
            allocators.push(&bar.allocator);
        }
    }
    let mut out = Vec::new();
    for (gi, group) in groups.iter().enumerate() {
        let in_group: Vec<&Bar> = bars.iter().filter(|b| b.group == *group).collect();
        let reference = if has_baseline {
            in_group
                .iter()
                .find(|b| b.allocator == chart.baseline)
                .and_then(|b| b.value)
        } else {
            in_group
                .iter()
                .filter_map(|b| b.value)
                .min_by(|a, b| a.total_cmp(b))
        };
        for bar in &in_group {
            if let (Some(v), Some(base)) = (bar.value, reference) {
                let ai = allocators.iter().position(|a| *a == bar.allocator).unwrap();
                out.push((gi, ai, v / base));
            }
        }
    }
    let label = if has_baseline {
        format!(
            "{} relative to {} (lower is better)",
            chart.measure, chart.baseline_label
        )
    } else {
        format!(
            "{} relative to the fastest (lower is better)",
            chart.measure
        )
    };
    (out, label)
}

/// Draw `bars` (groups in the given order) into an SVG file.
pub fn write(
    path: &Path,
    chart_info: &Chart,
    rows: &[Bar],
    scenarios: &[&str],
) -> Result<(), String> {
    let mut allocators: Vec<&str> = Vec::new();
    for row in rows {
        if !allocators.contains(&row.allocator.as_str()) {
            allocators.push(&row.allocator);
        }
    }
    let (bars, y_label) = ratios(rows, scenarios, chart_info);
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
        .caption(chart_info.title, ("sans-serif", 22))
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
        .y_desc(y_label.as_str())
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
