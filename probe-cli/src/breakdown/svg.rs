//! The breakdown as an SVG chart: per component, the probe estimate and the
//! isolation delta side by side (horizontal bars, ns per operation), each with
//! its noise as a whisker and its value written next to it.

use super::model::Breakdown;
use super::render::ns;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const PROBE: RGBColor = RGBColor(31, 119, 180);
const ISOLATION: RGBColor = RGBColor(255, 127, 14);

/// (label, probe (value, noise), isolation (value, noise)) per charted row.
type Bars = Vec<(String, Option<(f64, f64)>, Option<(f64, f64)>)>;

fn bars(b: &Breakdown) -> Bars {
    b.rows
        .iter()
        .filter(|r| r.probe.is_some() || r.isolation.is_some())
        .map(|r| {
            let label = if r.disagree == Some(true) {
                format!("{} (disagree)", r.component)
            } else {
                r.component.to_string()
            };
            (
                label,
                r.probe.as_ref().map(|p| (p.ns_per_op, p.noise_ns)),
                r.isolation.as_ref().map(|i| (i.ns_per_op, i.noise_ns)),
            )
        })
        .collect()
}

/// Writes the chart to `path`.
pub fn write(path: &Path, b: &Breakdown) -> Result<(), String> {
    let bars = bars(b);
    let n = bars.len().max(1);
    let values = bars
        .iter()
        .flat_map(|(_, p, i)| [*p, *i])
        .flatten()
        .flat_map(|(v, e)| [v - e, v + e]);
    let (lo, hi) = values.fold((0f64, 1f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Room for the value labels on both sides.
    let pad = (hi - lo) * 0.22;
    let x_range = (if lo < 0.0 { lo - pad } else { 0.0 })..(hi + pad);

    let height = 140 + 56 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "hakmem overhead breakdown: {} (total {} per op)",
        b.scenario,
        ns(b.total_ns_per_op)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(300)
        .build_cartesian_2d(x_range.clone(), 0f64..n as f64)
        .map_err(|e| err(&e))?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let y_formatter = move |y: &f64| {
        // Row i is centred on n - i - 0.5.
        let i = n as f64 - y - 0.5;
        let r = i.round();
        if (i - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < labels.len() {
            labels[r as usize].clone()
        } else {
            String::new()
        }
    };
    let x_formatter = |x: &f64| ns(*x);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(2 * n + 1)
        .y_label_formatter(&y_formatter)
        .x_label_formatter(&x_formatter)
        .x_desc("ns per operation (whisker: noise across runs)")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;

    let thickness = 0.32;
    let label_style = |right: bool| {
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(
            if right { HPos::Left } else { HPos::Right },
            VPos::Center,
        ))
    };
    for (series, colour, offset, name) in [
        (0usize, PROBE, 0.0, "probes (calibrated)"),
        (1, ISOLATION, thickness, "isolation (on - off)"),
    ] {
        let items: Vec<(f64, f64, f64)> = bars
            .iter()
            .enumerate()
            .filter_map(|(i, bar)| {
                let v = if series == 0 { bar.1 } else { bar.2 };
                v.map(|(v, e)| (n as f64 - i as f64 - 0.5 + thickness / 2.0 - offset, v, e))
            })
            .collect();
        chart
            .draw_series(items.iter().map(|&(y, v, _)| {
                Rectangle::new(
                    [(0.0, y - thickness / 2.0), (v, y + thickness / 2.0)],
                    colour.filled(),
                )
            }))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
        chart
            .draw_series(items.iter().map(|&(y, v, e)| {
                PathElement::new(vec![(v - e, y), (v + e, y)], BLACK.stroke_width(1))
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(items.iter().map(|&(y, v, e)| {
                let right = v >= 0.0;
                let x = if right { v.max(0.0) + e } else { v - e };
                let gap = (x_range.end - x_range.start) * 0.005;
                Text::new(
                    ns(v),
                    (if right { x + gap } else { x - gap }, y),
                    label_style(right),
                )
            }))
            .map_err(|e| err(&e))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (0.0, n as f64)],
            BLACK.stroke_width(1),
        )))
        .map_err(|e| err(&e))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
