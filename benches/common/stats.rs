//! The few statistics the suite reports. Its runs are few (5 by default) and a shared
//! machine disturbs some of them a lot, so it reports the median (which a disturbed run
//! moves little) with the spread, never a mean or a best run.

/// The middle value (the mean of the two middle ones for an even count); NaN for none.
pub fn median(xs: &[f64]) -> f64 {
    quantile(xs, 0.5)
}

/// The `q`-quantile (0..=1), linear between the two nearest order statistics (the
/// definition numpy's default and most spreadsheets use); NaN for no values.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// The spread of a few values: median, smallest, largest, and the interquartile range
/// (only from 4 values up; with fewer its quartiles are the extremes themselves).
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub iqr: Option<f64>,
}

impl Spread {
    pub fn of(xs: &[f64]) -> Spread {
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let iqr = (xs.len() >= 4).then(|| quantile(xs, 0.75) - quantile(xs, 0.25));
        Spread { median: median(xs), min, max, iqr }
    }
}

/// Per-pair ratios `a[i] / b[i]`: run i of each side ran back to back, so the ratio of a
/// pair cancels what disturbed both.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}
