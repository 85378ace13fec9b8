//! `mlxrun train --plot FILE.svg`: the training and validation losses against the
//! iteration, drawn with plotters' SVG backend. Its text goes out as SVG `<text>` elements
//! (sans-serif, placed with plotters' built-in estimate of glyph widths), so drawing reads
//! no font files and needs no font library.
use std::fs::OpenOptions;
use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};

/// Plot size in pixels.
const SIZE: (u32, u32) = (800, 500);
/// matplotlib's first two colours: blue for training, orange for validation.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);

/// Checks before any work that `path` can take the plot: a name ending in `.svg`, in a
/// folder that exists, that we may write. The error names the path. Leaves no file that was
/// not there before.
pub fn check_path(path: &Path) -> Result<()> {
    let fail = |why: String| Error::invalid(format!("--plot {}: {why}", path.display()));
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
        return Err(fail("the plot is an SVG: name a .svg file".into()));
    }
    if path.is_dir() {
        return Err(fail("is a folder".into()));
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !folder.is_dir() {
        return Err(fail(format!("no folder {}", folder.display())));
    }
    let existed = path.exists();
    // Opened without truncating: an existing plot stays as it is until the new one is drawn.
    OpenOptions::new().write(true).create(true).truncate(false).open(path).map_err(|e| fail(format!("cannot be written: {e}")))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Draws the training losses `train` and validation losses `val` (each `(iteration, loss)`)
/// as two labelled lines with a legend into the SVG file `path`, under `title`. Points with
/// a loss that is not finite are left out.
pub fn draw(path: &Path, title: &str, train: &[(usize, f32)], val: &[(usize, f32)]) -> Result<()> {
    let finite = |pts: &[(usize, f32)]| -> Vec<(u32, f64)> {
        pts.iter().filter(|(_, l)| l.is_finite()).map(|&(i, l)| (i as u32, l as f64)).collect()
    };
    let (train, val) = (finite(train), finite(val));
    let all = || train.iter().chain(&val);
    // A little room right of the last point, so that its marker is drawn whole.
    let x_max = all().map(|p| p.0).max().unwrap_or(0).max(1);
    let x_max = x_max + (x_max / 50).max(1);
    let y_max = all().map(|p| p.1).fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };
    let fail = |e: String| Error::Io(format!("--plot {}: {e}", path.display()));

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0..x_max, 0.0..y_max)
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("loss")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 19))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    for (pts, color, label) in [(&train, TRAIN, "train"), (&val, VAL, "validation")] {
        if pts.is_empty() {
            continue;
        }
        let line = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), line))
            .map_err(|e| fail(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], line));
        chart
            .draw_series(PointSeries::of_element(pts.iter().copied(), 3, color.filled(), &|c, s, st| Circle::new(c, s, st)))
            .map_err(|e| fail(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mlxrun-plot-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn draws_both_series_with_a_legend() {
        let p = scratch("draw").join("loss.svg");
        let train = [(5, 3.2), (10, 2.1), (15, f32::NAN), (20, 0.4)];
        let val = [(0, 3.5), (9, 2.5), (19, 0.6)];
        draw(&p, "LoRA: a <model> on data", &train, &val).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        // Each text on a line of its own between its <text> tags.
        for text in ["train", "validation", "iteration", "loss", "LoRA: a &lt;model&gt; on data"] {
            assert!(svg.lines().any(|l| l == text), "no {text:?} in the plot");
        }
        // A line per series (the NaN left out), and one of each colour in the legend.
        let lines: Vec<&str> = svg.lines().filter(|l| l.starts_with("<polyline")).collect();
        for (colour, points) in [("#1F77B4", 3), ("#FF7F0E", 3)] {
            let of: Vec<&&str> = lines.iter().filter(|l| l.contains(colour)).collect();
            assert_eq!(of.len(), 2, "{colour}: {of:?}");
            assert_eq!(of[0].split("points=\"").nth(1).unwrap().split_whitespace().count(), points + 1, "{}", of[0]);
        }
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn bad_paths_are_named() {
        let d = scratch("paths");
        let missing = d.join("no-such-folder").join("loss.svg");
        let e = check_path(&missing).unwrap_err().to_string();
        assert!(e.contains(&missing.display().to_string()) && e.contains("no folder"), "{e}");
        let e = check_path(&d.join("loss.png")).unwrap_err().to_string();
        assert!(e.contains("loss.png") && e.contains(".svg"), "{e}");
        let fine = d.join("loss.svg");
        check_path(&fine).unwrap();
        assert!(!fine.exists(), "the check leaves no file");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
