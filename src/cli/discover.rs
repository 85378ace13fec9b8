//! `mlxrun discover DIR`: the models under a folder — HF folders and GGUF files — with
//! their architecture, quantization, dtype, size and the backends that can load them,
//! read from headers only. `--json` prints one JSON array for scripts.
use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::engine::discover::{discover, DiscoverOptions, DiscoveredModel, DEFAULT_MAX_DEPTH};

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// The folder to search
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// How many folder levels below DIR to search (0: DIR itself only)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_DEPTH)]
    pub depth: usize,

    /// Print one JSON array (an object per model) instead of a table
    #[arg(long)]
    pub json: bool,

    /// The Python whose mlx-lm judges the mlx_lm backend [default: --venv's, else
    /// $MLXRUN_PYTHON, else $VIRTUAL_ENV's, else python3]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// A virtualenv whose bin/python judges the mlx_lm backend
    #[arg(long, value_name = "DIR")]
    pub venv: Option<PathBuf>,
}

pub fn run(args: DiscoverArgs) -> Result<()> {
    let found = discover(&args.dir, &DiscoverOptions {
        max_depth: args.depth,
        mlx_lm: crate::engine::backend::MlxLmOptions { python: args.python, venv: args.venv, ..Default::default() },
    })?;
    let text = if args.json {
        serde_json::Value::Array(found.iter().map(DiscoveredModel::to_json).collect()).to_string() + "\n"
    } else {
        table(&args.dir, &found)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(|e| Error::Io(format!("stdout: {e}")))
}

/// One row per model, paths relative to the folder searched; a broken model's error on
/// the line below its row.
fn table(dir: &std::path::Path, found: &[DiscoveredModel]) -> String {
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let header = ["PATH", "ARCH", "QUANT", "DTYPE", "PARAMS", "SIZE", "BACKENDS"].map(String::from);
    let rows: Vec<[String; 7]> = found
        .iter()
        .map(|m| {
            let rel = m.path.strip_prefix(&base).unwrap_or(&m.path);
            let path = if rel.as_os_str().is_empty() { ".".to_string() } else { rel.display().to_string() };
            let ok: Vec<&str> = m.backends.iter().filter(|b| b.ok).map(|b| b.backend.as_str()).collect();
            [
                path,
                m.model_type.clone().unwrap_or_else(|| "-".into()),
                m.quantization.as_ref().map_or("-".into(), |q| format!("{}-bit/{} {}", q.bits, q.group_size, q.mode)),
                m.dtype.clone().unwrap_or_else(|| "-".into()),
                m.params.map_or("-".into(), count),
                if m.format.is_some() { bytes(m.size_bytes) } else { "-".into() },
                match (m.format, &m.error) {
                    (None, _) => "-".into(),
                    (_, Some(_)) => "broken".into(),
                    _ if ok.is_empty() => "none".into(),
                    _ => ok.join(","),
                },
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 7]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let n = found.iter().filter(|m| m.format.is_some()).count();
    let mut out = format!("{n} model{} under {}\n", if n == 1 { "" } else { "s" }, base.display());
    if found.is_empty() {
        return out;
    }
    out.push_str(&line(&header));
    // Why a backend refuses is mostly the same for many models (mlx-lm missing, GGUF
    // files): said once under the table, with how many models it concerns.
    let mut refusals: Vec<(String, usize)> = Vec::new();
    for (m, r) in found.iter().zip(&rows) {
        out.push_str(&line(r));
        if let Some(e) = &m.error {
            out.push_str(&format!("    error: {e}\n"));
            continue;
        }
        for b in m.backends.iter().filter(|b| !b.ok) {
            let why = format!("{}: {}", b.backend, b.reason.as_deref().unwrap_or("no reason given"));
            match refusals.iter_mut().find(|(w, _)| *w == why) {
                Some((_, n)) => *n += 1,
                None => refusals.push((why, 1)),
            }
        }
    }
    if !refusals.is_empty() {
        out.push_str("\nnot loadable by:\n");
        for (why, n) in refusals {
            out.push_str(&format!("  {why} ({n} model{})\n", if n == 1 { "" } else { "s" }));
        }
    }
    out
}

/// 9908864 → "9.9M".
fn count(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}

/// 6195200 → "5.9 MiB".
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::count(950), "950");
        assert_eq!(super::count(9_908_864), "9.9M");
        assert_eq!(super::count(134_515_008), "134.5M");
        assert_eq!(super::count(7_615_616_512), "7.62B");
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(6_195_200), "5.9 MiB");
    }
}
