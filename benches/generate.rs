//! Prefill and decode speed of our engine beside mlx-lm's on the same model folder, in one
//! run, greedy, with the same prompt tokens. Prints tok/s and the ratios; asserts nothing.
//!
//! `cargo bench --bench generate -- [MODEL_DIR ...] [--prompt N] [--gen N]`
//! Without folders it measures the project's fixtures (and `.deps/fixtures/bench-*` when
//! present). The reference runs in a subprocess with the same OpenBLAS preloaded, so both
//! sides use the same BLAS. `MLXRUN_BENCH_PYTHON` names the Python with mlx-lm (default
//! `.deps/venv/bin/python`); on a GPU both sides compute in the checkpoint's dtype.
use std::path::{Path, PathBuf};

mod common;

use mlxrun::engine::generate::{generate_tokens, DEFAULT_PREFILL_STEP};
use mlxrun::engine::SamplerParams;
use mlxrun::mlx::{memory, Device, Dtype};
use mlxrun::models::{load, LoadOptions};

/// Timed runs per side (after one warm-up run).
const REPEAT: usize = 5;

/// Our side's figures: best prefill tok/s, best decode tok/s, peak bytes, and the dtype it
/// computed in (the reference is asked to compute in the same one).
fn ours(dir: &Path, n_prompt: usize, n_gen: usize) -> mlxrun::Result<(f64, f64, usize, Dtype)> {
    let model = load(dir, &LoadOptions::default())?;
    let dtype = model.info().dtype;
    let vocab = model.info().vocab_size as usize;
    let prompt = common::prompt_ids(n_prompt, vocab);
    let run = || {
        let mut caches = model.new_caches();
        generate_tokens(
            model.as_ref(),
            &mut caches,
            &prompt,
            n_gen,
            &SamplerParams::default(),
            DEFAULT_PREFILL_STEP,
            None,
            &mut |_| Ok(true),
        )
    };
    run()?; // warm-up, as the reference does
    // Best of several runs for each figure: the machine may be shared, and the best run is
    // the one least disturbed. The reference is timed the same way.
    let (mut prefill, mut decode, mut peak) = (0.0f64, 0.0f64, 0usize);
    for _ in 0..REPEAT {
        memory::clear_cache();
        let (m, _) = run()?;
        prefill = prefill.max(m.prefill_tok_s());
        decode = decode.max(m.decode_tok_s());
        peak = peak.max(m.peak_memory);
    }
    Ok((prefill, decode, peak, dtype))
}

fn reference(dir: &Path, n_prompt: usize, n_gen: usize, dtype: Dtype) -> Option<serde_json::Value> {
    let args = [dir.display().to_string(), n_prompt.to_string(), n_gen.to_string(), REPEAT.to_string()];
    let dtype = ["--dtype".to_string(), dtype.name().to_string()];
    common::run_reference("bench_reference.py", &[&args[..], &dtype[..]].concat())
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut take = |flag: &str, default: usize| -> usize {
        match args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < args.len() => {
                let v = args.remove(i + 1).parse().expect("a number");
                args.remove(i);
                v
            }
            _ => default,
        }
    };
    let (n_prompt, n_gen) = (take("--prompt", 128), take("--gen", 64));
    let mut dirs: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
    if dirs.is_empty() {
        let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/fixtures");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&fx).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        found.sort();
        dirs = found.into_iter().filter(|p| p.join("config.json").exists()).collect();
    }
    let device = if Device::default_device().is_ok_and(|d| d == Device::cpu()) { "CPU" } else { "GPU" };
    println!("greedy, {n_prompt}-token prompt, {n_gen} generated tokens, on this machine's {device} (both sides in the dtype shown), best of {REPEAT} runs each");
    println!("{:<28} {:>14} {:>14} {:>14} {:>14} {:>8} {:>8}", "model", "prefill ours", "prefill mlx-lm", "decode ours", "decode mlx-lm", "prefill", "decode");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (p, d, peak, dtype) = match ours(&dir, n_prompt, n_gen) {
            Ok(v) => v,
            Err(e) => {
                println!("{name:<28} failed: {e}");
                continue;
            }
        };
        let name = format!("{name} ({})", dtype.name());
        match reference(&dir, n_prompt, n_gen, dtype) {
            Some(r) => {
                let (rp, rd) = (r["prefill_tok_s"].as_f64().unwrap_or(0.0), r["decode_tok_s"].as_f64().unwrap_or(0.0));
                println!(
                    "{name:<28} {p:>10.1} t/s {rp:>10.1} t/s {d:>10.1} t/s {rd:>10.1} t/s {:>7.2}x {:>7.2}x   peak MiB ours {:.1} / mlx-lm {:.1}",
                    p / rp,
                    d / rd,
                    peak as f64 / 1048576.0,
                    r["peak_memory"].as_f64().unwrap_or(0.0) / 1048576.0
                );
            }
            None => println!("{name:<28} {p:>10.1} t/s {:>14} {d:>10.1} t/s   (reference unavailable: run scripts/setup.sh)", "-"),
        }
    }
}
