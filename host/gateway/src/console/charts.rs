//! Charts as inline SVG, drawn on the server from the host's own per-env history
//! ([`cloudfn_invoke::metrics::History`]): no chart library, no script, no external service,
//! and they show with JavaScript off.

use std::fmt::Write;

/// One line of a chart.
pub struct Series<'a> {
    /// Its name in the legend.
    pub label: &'a str,
    /// A CSS colour.
    pub color: &'a str,
    /// One value per x step; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

/// A small trend line, `width`×`height`, scaled to its own maximum.
pub fn sparkline(values: &[f64], width: u32, height: u32) -> String {
    let max = values.iter().copied().fold(0.0, f64::max);
    let mut points = String::new();
    let step = f64::from(width) / (values.len().max(2) - 1) as f64;
    for (i, v) in values.iter().enumerate() {
        let y =
            f64::from(height) - 1.0 - if max > 0.0 { v / max } else { 0.0 } * f64::from(height - 2);
        let _ = write!(points, "{:.1},{:.1} ", i as f64 * step, y);
    }
    format!(
        r##"<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="calls, last hour"><polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="{}"/></svg>"##,
        points.trim_end()
    )
}

/// A line chart of `series` over `minutes` (the last point is now), with its y maximum and
/// the time marks labelled.
pub fn line_chart(title: &str, unit: &str, minutes: u32, series: &[Series<'_>]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 150.0;
    const LEFT: f64 = 48.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 20.0;
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{title}"><title>{title}</title>"#
    );
    // Axes, the y maximum, and time marks every quarter.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" stroke="#999"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><text x="{tx}" y="{ty}" text-anchor="end" font-size="10">{top}{unit}</text><text x="{tx}" y="{b}" text-anchor="end" font-size="10">0</text>"##,
        b = TOP + plot_h,
        r = LEFT + plot_w,
        tx = LEFT - 4.0,
        ty = TOP + 8.0,
        top = trim(top),
    );
    for q in 0..=4 {
        let x = LEFT + plot_w * f64::from(q) / 4.0;
        let ago = minutes * (4 - q) / 4;
        let label = if ago == 0 {
            "now".to_string()
        } else if ago.is_multiple_of(60) && ago >= 120 {
            format!("-{} h", ago / 60)
        } else {
            format!("-{ago} min")
        };
        let _ = write!(
            svg,
            r##"<text x="{x:.0}" y="{y}" text-anchor="middle" font-size="10">{label}</text>"##,
            y = H - 4.0
        );
    }
    for s in series {
        let step = plot_w / (s.values.len().max(2) - 1) as f64;
        let mut path = String::new();
        let mut dots = String::new();
        let at = |i: usize, v: f64| {
            let x = LEFT + i as f64 * step;
            (
                x,
                TOP + plot_h - if top > 0.0 { v / top } else { 0.0 } * plot_h,
            )
        };
        for (i, v) in s.values.iter().enumerate() {
            let Some(v) = *v else { continue };
            let (x, y) = at(i, v);
            let joined = i > 0 && s.values[i - 1].is_some();
            let _ = write!(path, "{}{x:.1},{y:.1} ", if joined { "L" } else { "M" });
            // A point with no neighbour would draw nothing as a path: a dot shows it.
            let alone = !joined && s.values.get(i + 1).is_none_or(Option::is_none);
            if alone {
                let _ = write!(
                    dots,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2" fill="{}"/>"#,
                    s.color
                );
            }
        }
        if !path.is_empty() {
            let _ = write!(
                svg,
                r#"<path fill="none" stroke="{}" stroke-width="1.5" d="{}"><title>{}</title></path>"#,
                s.color,
                path.trim_end(),
                s.label
            );
            svg.push_str(&dots);
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (a readable axis maximum).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round_and_gaps_break_the_line() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.07), 0.1);
        assert_eq!(nice_ceiling(120.0), 200.0);
        let svg = line_chart(
            "p99",
            " ms",
            60,
            &[Series {
                label: "p99",
                color: "red",
                values: vec![Some(1.0), None, Some(2.0), Some(3.0)],
            }],
        );
        assert!(svg.contains(">5 ms</text>"), "{svg}");
        // Two runs: a move, then a move and a line; the lone first point is also a dot.
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
        assert_eq!(svg.matches('L').count(), 1, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        let spark = sparkline(&[0.0, 2.0, 1.0], 100, 20);
        assert!(
            spark.contains("points=\"0.0,19.0 50.0,1.0 100.0,10.0\""),
            "{spark}"
        );
    }
}
