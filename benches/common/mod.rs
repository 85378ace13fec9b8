//! What the benchmarks share: running the reference's side (a Python script over mlx-lm)
//! in a subprocess that uses the same BLAS as ours, once (`run_reference`) or as a
//! persistent worker (`worker::Worker`), and the interleaved suite's statistics, report
//! and plots (benches/suite.rs).
// Each bench uses part of this module.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod plot;
pub mod report;
pub mod stats;
pub mod worker;

/// The prompt of a single-sequence case: fixed ids, the same as the reference scripts'
/// `prompt_ids` (scripts/bench_reference.py).
pub fn prompt_ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// The prompts of a Classify or BatchGenerate case: lengths from `len / 2` to `len`, fixed
/// ids (as scripts/bench_batch_reference.py makes them).
pub fn batch_prompts(n: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            let n_tok = (len / 2 + (i * 7) % (len - len / 2 + 1)).max(1);
            (0..n_tok).map(|j| ((i * 31 + j * 7919 + 13) % vocab) as u32).collect()
        })
        .collect()
}

/// The repository the reference scripts are read from: where the bench was built, or —
/// for a bench binary taken to another machine (a GPU machine without cargo) — the
/// repository copy it is started in.
pub fn repo_root() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    if built.join("scripts").is_dir() {
        built.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| built.to_path_buf())
    }
}

/// A command that runs `scripts/<script>` under the Python that has mlx-lm
/// (`MLXRUN_BENCH_PYTHON`, default `.deps/venv/bin/python`) with our BLAS preloaded.
pub fn reference_command(script: &str) -> Command {
    let root = repo_root();
    let python = std::env::var("MLXRUN_BENCH_PYTHON").unwrap_or_else(|_| root.join(".deps/venv/bin/python").display().to_string());
    let mut cmd = Command::new(python);
    cmd.arg(root.join("scripts").join(script));
    // Our build links OpenBLAS ahead of MLX's reference BLAS; give the reference the same
    // library, or its CPU matmuls run ~30x slower and round differently.
    if let Some(lib) = option_env!("MLXRUN_OPENBLAS_LIB").filter(|l| Path::new(l).exists()) {
        let up = Path::new(lib).parent().and_then(Path::parent).map(|p| p.display().to_string()).unwrap_or_default();
        cmd.env("LD_PRELOAD", lib).env("LD_LIBRARY_PATH", up);
    }
    cmd
}

/// Runs `scripts/<script>` with `args` (see `reference_command`) and returns the JSON
/// object it prints, or None (with the reason on stderr) when it could not run.
pub fn run_reference(script: &str, args: &[String]) -> Option<serde_json::Value> {
    let out = match reference_command(script).args(args).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("reference could not start: {e}");
            return None;
        }
    };
    if !out.status.success() {
        eprintln!("reference failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
