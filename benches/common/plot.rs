//! The suite's plots: one SVG per figure (prefill tok/s, TTFT, ...) against the prompt
//! length or the batch size, every model a colour, ours a thick line with filled markers
//! and mlx-lm a thin one with hollow markers, each point the median with a bar from the
//! smallest to the largest run. Drawn with plotters' SVG backend as src/cli/plot.rs does:
//! text goes out as SVG <text> elements, so no font files or font libraries are read.
use std::path::Path;

use plotters::prelude::*;

/// Plot size in pixels; the right-hand `LEGEND` pixels of it take the legend, so that a
/// dozen series never cover the data.
const SIZE: (u32, u32) = (1020, 520);
const LEGEND: u32 = 300;

/// matplotlib's "tab10" colours, one per model.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One measured point: x (a prompt length or batch size) and the runs' median and range.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub x: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub struct Series {
    pub label: String,
    pub colour: RGBColor,
    /// mlx-lm's side: thin line, hollow markers, and drawn a little right of ours so the
    /// two range bars of one x stay apart.
    pub reference: bool,
    pub points: Vec<Point>,
}

/// Tick labels for a number of any size.
fn short(v: f64) -> String {
    match v.abs() {
        a if a == 0.0 => "0".into(),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// Draws `series` into the SVG file `path`. The x axis is log2 (prompt lengths and batch
/// sizes double); the y axis starts at 0, or is log10 when the values span more than 30x
/// (models of very different sizes on one plot).
pub fn draw(path: &Path, title: &str, x_desc: &str, y_desc: &str, series: &[Series]) -> Result<(), String> {
    let fail = |e: String| format!("plot {}: {e}", path.display());
    let pts = || series.iter().flat_map(|s| s.points.iter()).filter(|p| p.median.is_finite() && p.median > 0.0);
    if pts().next().is_none() {
        return Ok(()); // nothing measured: no plot
    }
    let (x_lo, x_hi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.x.log2()), hi.max(p.x.log2())));
    let (y_lo, y_hi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.min.min(p.median)), hi.max(p.max.max(p.median))));
    let log_y = y_lo > 0.0 && y_hi / y_lo > 30.0;
    // Coordinates: log2(x) across; y itself, or log10(y).
    let ty = move |v: f64| if log_y { v.max(f64::MIN_POSITIVE).log10() } else { v };
    let y_range = if log_y { (ty(y_lo) - 0.1)..(ty(y_hi) + 0.1) } else { 0.0..y_hi * 1.08 };
    let x_range = (x_lo - 0.4)..(x_hi + 0.6);
    let n_x = (x_hi - x_lo).round() as usize + 1;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - LEGEND);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, y_range)
        .map_err(|e| fail(e.to_string()))?;
    // log2 ticks at the powers of two only.
    let x_fmt = |v: &f64| if (v - v.round()).abs() < 1e-6 { format!("{}", 2f64.powi(v.round() as i32)) } else { String::new() };
    let y_fmt = move |v: &f64| short(if log_y { 10f64.powf(*v) } else { *v });
    let y_desc = if log_y { format!("{y_desc} (log scale)") } else { y_desc.to_string() };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(n_x.clamp(2, 16))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(|e| fail(e.to_string()))?;

    for s in series {
        let shift = if s.reference { 0.06 } else { 0.0 };
        let pts: Vec<(f64, f64, f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.median.is_finite() && p.median > 0.0)
            .map(|p| (p.x.log2() + shift, ty(p.median), ty(p.min), ty(p.max)))
            .collect();
        let width = if s.reference { 1 } else { 2 };
        let line = s.colour.stroke_width(width);
        chart.draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), line)).map_err(|e| fail(e.to_string()))?;
        // Range bars: the smallest to the largest run, with short caps.
        chart
            .draw_series(pts.iter().map(|&(x, _, lo, hi)| PathElement::new(vec![(x, lo), (x, hi)], s.colour.stroke_width(1))))
            .map_err(|e| fail(e.to_string()))?;
        for &(x, _, lo, hi) in &pts {
            for y in [lo, hi] {
                chart.draw_series(std::iter::once(PathElement::new(vec![(x - 0.03, y), (x + 0.03, y)], s.colour.stroke_width(1)))).map_err(|e| fail(e.to_string()))?;
            }
        }
        let style = if s.reference { s.colour.stroke_width(1) } else { s.colour.filled() };
        chart
            .draw_series(pts.iter().map(|&(x, m, _, _)| Circle::new((x, m), 4, style)))
            .map_err(|e| fail(e.to_string()))?;
    }

    // The legend, beside the plot.
    let font = ("sans-serif", 14).into_font().color(&BLACK);
    for (i, s) in series.iter().enumerate() {
        let y = 40 + 22 * i as i32;
        let width = if s.reference { 1 } else { 2 };
        legend_area.draw(&PathElement::new(vec![(4, y), (32, y)], s.colour.stroke_width(width))).map_err(|e| fail(e.to_string()))?;
        let style = if s.reference { s.colour.stroke_width(1) } else { s.colour.filled() };
        legend_area.draw(&Circle::new((18, y), 4, style)).map_err(|e| fail(e.to_string()))?;
        legend_area.draw(&Text::new(s.label.clone(), (40, y - 7), font.clone())).map_err(|e| fail(e.to_string()))?;
    }
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}
