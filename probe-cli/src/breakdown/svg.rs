//! The breakdown as an SVG chart: per component, the probe estimate and the
//! isolation delta side by side (horizontal bars, ns per operation), each with
//! its noise as a whisker and its value written next to it.
//!
//! The axis is a signed log scale (sign(v) · log10(1 + |v|/ns)): a feature's
//! net saving of milliseconds and a selection cost of a few ns must both stay
//! readable on one chart.

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

/// Signed log: 0 at 0, one unit per decade of ns either way.
fn symlog(v: f64) -> f64 {
    v.signum() * (1.0 + v.abs()).log10()
}

/// A decade tick's label ("100 ns", "-1.00 µs"): the inverse of `symlog` at integers.
fn tick(x: f64) -> String {
    let k = x.round();
    if (x - k).abs() > 1e-6 {
        return String::new();
    }
    if k == 0.0 {
        return "0".into();
    }
    let v = k.signum() * 10f64.powf(k.abs());
    let text = ns(v);
    // "100.0 ns" -> "100 ns", "1.00 µs" -> "1 µs".
    text.replace(".00 ", " ").replace(".0 ", " ")
}

/// Writes the chart to `path`.
pub fn write(path: &Path, b: &Breakdown) -> Result<(), String> {
    let bars = bars(b);
    let n = bars.len().max(1);
    let values = bars
        .iter()
        .flat_map(|(_, p, i)| [*p, *i])
        .flatten()
        .flat_map(|(v, e)| [symlog(v - e), symlog(v + e)]);
    let (lo, hi) = values.fold((0f64, 1f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Room for the value labels on both sides, whole decades at the ends.
    let x_range = (if lo < 0.0 { (lo - 1.2).floor() } else { 0.0 })..(hi + 1.2).ceil();
    let decades = (x_range.end - x_range.start) as usize;

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
    let x_formatter = |x: &f64| tick(*x);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(2 * n + 1)
        .x_labels(decades + 1)
        .y_label_formatter(&y_formatter)
        .x_label_formatter(&x_formatter)
        .x_desc("per operation, signed log scale (whisker: noise across runs)")
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
                    [(0.0, y - thickness / 2.0), (symlog(v), y + thickness / 2.0)],
                    colour.filled(),
                )
            }))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
        chart
            .draw_series(items.iter().map(|&(y, v, e)| {
                PathElement::new(
                    vec![(symlog(v - e), y), (symlog(v + e), y)],
                    BLACK.stroke_width(1),
                )
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(items.iter().map(|&(y, v, e)| {
                let right = v >= 0.0;
                let x = if right {
                    symlog(v + e).max(symlog(v))
                } else {
                    symlog(v - e).min(symlog(v))
                };
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
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_signed_and_logarithmic() {
        assert_eq!(symlog(0.0), 0.0);
        assert!((symlog(99.0) - 2.0).abs() < 1e-12);
        assert!((symlog(-99.0) + 2.0).abs() < 1e-12);
        assert_eq!(tick(3.0), "1 µs");
        assert_eq!(tick(-2.0), "-100 ns");
        assert_eq!(tick(0.5), "");
    }
}
