//! What the suite reports: each case's runs, their summary line as the suite goes, and at
//! the end results.json, results.md and one plot per figure.
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::plot::{self, Point, Series};
use super::stats::{ratios, Spread};

/// One figure a run gives.
pub struct Metric {
    /// Its name in results.json and the plot's file name.
    pub key: &'static str,
    pub label: &'static str,
    /// TTFT and peak memory: a ratio ours/mlx-lm below 1 is ours doing better.
    pub lower_is_better: bool,
}

/// A kind of case: what varies across its cases (x) and what each run gives.
pub struct Kind {
    pub name: &'static str,
    pub title: &'static str,
    pub x_label: &'static str,
    pub metrics: &'static [Metric],
}

const PEAK: Metric = Metric { key: "peak_mib", label: "peak MiB", lower_is_better: true };
pub static GENERATE: Kind = Kind {
    name: "generate",
    title: "single sequence",
    x_label: "prompt tokens",
    metrics: &[
        Metric { key: "prefill_tok_s", label: "prefill tok/s", lower_is_better: false },
        Metric { key: "decode_tok_s", label: "decode tok/s", lower_is_better: false },
        Metric { key: "ttft_ms", label: "TTFT ms", lower_is_better: true },
        PEAK,
    ],
};
pub static CLASSIFY: Kind = Kind {
    name: "classify",
    title: "Classify",
    x_label: "batch size",
    metrics: &[Metric { key: "prompts_s", label: "prompts/s", lower_is_better: false }, PEAK],
};
pub static BATCH: Kind = Kind {
    name: "batch",
    title: "BatchGenerate",
    x_label: "batch size",
    metrics: &[Metric { key: "tok_s", label: "tok/s", lower_is_better: false }, PEAK],
};

/// One case's runs: `ours[r][m]` is run r's value of metric m (as `kind.metrics`), and
/// `theirs` mlx-lm's, run r of each side having run back to back.
pub struct Outcome {
    pub model: String,
    pub dtype: String,
    pub kind: &'static Kind,
    pub x: usize,
    pub ours: Vec<Vec<f64>>,
    pub theirs: Vec<Vec<f64>>,
    /// Why a side stopped early or never ran.
    pub errors: Vec<String>,
}

/// One metric of a case: each side's spread, and that of the per-pair ratios ours/mlx-lm.
pub struct Summary {
    pub ours: Option<Spread>,
    pub theirs: Option<Spread>,
    pub ratio: Option<Spread>,
}

fn column(runs: &[Vec<f64>], m: usize) -> Vec<f64> {
    runs.iter().map(|r| r[m]).collect()
}

impl Outcome {
    pub fn summary(&self, m: usize) -> Summary {
        let (a, b) = (column(&self.ours, m), column(&self.theirs, m));
        let spread = |v: &[f64]| (!v.is_empty()).then(|| Spread::of(v));
        let r = ratios(&a, &b);
        Summary { ours: spread(&a), theirs: spread(&b), ratio: spread(&r) }
    }

    fn json(&self) -> Value {
        let mut metrics = serde_json::Map::new();
        for (m, metric) in self.kind.metrics.iter().enumerate() {
            let s = self.summary(m);
            let spread = |s: Option<Spread>| s.map(|s| json!({"median": s.median, "min": s.min, "max": s.max, "iqr": s.iqr}));
            metrics.insert(
                metric.key.into(),
                json!({
                    "ours": column(&self.ours, m), "mlx_lm": column(&self.theirs, m),
                    "ratios": ratios(&column(&self.ours, m), &column(&self.theirs, m)),
                    "ours_summary": spread(s.ours), "mlx_lm_summary": spread(s.theirs), "ratio_summary": spread(s.ratio),
                }),
            );
        }
        json!({"model": self.model, "dtype": self.dtype, "case": self.kind.name, self.kind.x_label: self.x,
               "metrics": metrics, "errors": self.errors})
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    }
}

fn ratio_text(r: &Option<Spread>) -> (String, String, String) {
    match r {
        Some(r) => (format!("{:.2}x", r.median), format!("{:.2}–{:.2}", r.min, r.max), r.iqr.map_or("-".into(), |i| format!("{i:.2}"))),
        None => ("-".into(), "-".into(), "-".into()),
    }
}

pub fn print_header() {
    println!(
        "{:<24} {:<9} {:>6} {:<14} {:>10} {:>10} {:>7} {:>11} {:>5}",
        "model", "case", "x", "figure", "ours", "mlx-lm", "ratio", "min–max", "IQR"
    );
}

/// Prints a case's lines (one per metric, medians, ratio ours/mlx-lm), flushed at once so
/// a long run shows its progress.
pub fn print(o: &Outcome) {
    let name = format!("{} ({})", o.model, o.dtype);
    for (m, metric) in o.kind.metrics.iter().enumerate() {
        let s = o.summary(m);
        let (ratio, range, iqr) = ratio_text(&s.ratio);
        println!(
            "{name:<24} {:<9} {:>6} {:<14} {:>10} {:>10} {ratio:>7} {range:>11} {iqr:>5}",
            o.kind.name,
            o.x,
            metric.label,
            num(s.ours.map(|s| s.median)),
            num(s.theirs.map(|s| s.median))
        );
    }
    for e in &o.errors {
        println!("{name:<24} {:<9} {:>6} error: {e}", o.kind.name, o.x);
    }
    let _ = std::io::stdout().flush();
}

pub fn json(outcomes: &[Outcome], machine: Value, args: Value) -> Value {
    json!({"machine": machine, "args": args, "results": outcomes.iter().map(Outcome::json).collect::<Vec<_>>()})
}

/// Markdown tables, one per figure of each kind of case: a row per model and x with both
/// sides' medians and the per-pair ratio's median, range and IQR.
pub fn markdown(outcomes: &[Outcome], heading: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{heading}\n");
    for kind in [&GENERATE, &CLASSIFY, &BATCH] {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind.name == kind.name).collect();
        if of.is_empty() {
            continue;
        }
        for (m, metric) in kind.metrics.iter().enumerate() {
            let better = if metric.lower_is_better { "lower" } else { "higher" };
            let _ = writeln!(md, "#### {}: {} ({better} is better)\n", kind.title, metric.label);
            let _ = writeln!(md, "| model | {} | ours | mlx-lm | ours / mlx-lm | min–max | IQR |", kind.x_label);
            let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            for o in &of {
                let s = o.summary(m);
                let (ratio, range, iqr) = ratio_text(&s.ratio);
                let _ = writeln!(
                    md,
                    "| {} ({}) | {} | {} | {} | {ratio} | {range} | {iqr} |",
                    o.model,
                    o.dtype,
                    o.x,
                    num(s.ours.map(|s| s.median)),
                    num(s.theirs.map(|s| s.median))
                );
            }
            md.push('\n');
        }
    }
    let errors: Vec<String> = outcomes.iter().flat_map(|o| o.errors.iter().map(move |e| format!("- {} {} {}: {e}", o.model, o.kind.name, o.x))).collect();
    if !errors.is_empty() {
        let _ = writeln!(md, "Errors:\n\n{}\n", errors.join("\n"));
    }
    md
}

/// One SVG per figure of each kind of case (`<kind>-<metric>.svg` in `dir`), every model
/// a colour, both sides. Returns the files written.
pub fn plots(outcomes: &[Outcome], dir: &Path) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    for kind in [&GENERATE, &CLASSIFY, &BATCH] {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind.name == kind.name).collect();
        let mut models: Vec<(&str, &str)> = of.iter().map(|o| (o.model.as_str(), o.dtype.as_str())).collect();
        models.dedup();
        if models.is_empty() {
            continue;
        }
        for (m, metric) in kind.metrics.iter().enumerate() {
            let mut series = Vec::new();
            for (i, &(model, dtype)) in models.iter().enumerate() {
                for reference in [false, true] {
                    let points: Vec<Point> = of
                        .iter()
                        .filter(|o| o.model == model)
                        .filter_map(|o| {
                            let s = o.summary(m);
                            let s = if reference { s.theirs } else { s.ours }?;
                            Some(Point { x: o.x as f64, median: s.median, min: s.min, max: s.max })
                        })
                        .collect();
                    if !points.is_empty() {
                        let side = if reference { "mlx-lm" } else { "ours" };
                        series.push(Series { label: format!("{model} ({dtype}) {side}"), colour: plot::colour(i), reference, points });
                    }
                }
            }
            let file = format!("{}-{}.svg", kind.name, metric.key);
            let title = format!("{}: {}", kind.title, metric.label);
            plot::draw(&dir.join(&file), &title, kind.x_label, metric.label, &series)?;
            files.push(file);
        }
    }
    Ok(files)
}
