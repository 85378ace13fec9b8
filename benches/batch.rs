//! Batched inference beside mlx-lm's `batch_generate`, in one run on the same prompts:
//! Classify prompts/s (ours: one prefill per batch, head at the last position; mlx-lm:
//! `batch_generate` with max_tokens=1, its closest call) and BatchGenerate's aggregate
//! generated tokens/s. Prints both sides and the ratios; asserts nothing.
//!
//! `cargo bench --bench batch`, set by environment variables:
//! - `MLXRUN_BENCH_MODEL`: model folder (default: the gemma3 fixture);
//! - `MLXRUN_BENCH_PROMPTS`: number of prompts (default 256);
//! - `MLXRUN_BENCH_GEN_PROMPTS`: how many of them BatchGenerate runs (default: all);
//! - `MLXRUN_BENCH_PROMPT_LEN`: longest prompt in tokens; lengths run from half of it up
//!   (default 16);
//! - `MLXRUN_BENCH_BATCH`: rows computed together, both sides (default 64);
//! - `MLXRUN_BENCH_MAX_TOKENS`: tokens per prompt for BatchGenerate (default 32);
//! - `MLXRUN_BENCH_REPEAT`: timed runs per figure, best kept (default 3);
//! - `MLXRUN_BENCH_NO_REFERENCE=1`: skip mlx-lm;
//! - `MLXRUN_BENCH_PYTHON`: the Python with mlx-lm (default: `.deps/venv/bin/python`).
//!
//! Both benches read the reference scripts from the repository they were built in, or
//! from the current directory when that is gone (a binary taken to another machine).
//!
//! Both sides compute in the dtype the engine would pick (f32 on the CPU, the checkpoint's
//! own on a GPU). The reference runs in a subprocess with the same OpenBLAS preloaded.
use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;

use mlxrun::engine::{BatchParams, GenerateParams, Model};
use mlxrun::mlx::{memory, Dtype};
use mlxrun::models::{default_dtype, LoadOptions};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Figures {
    classify_prompts_s: f64,
    generate_tok_s: f64,
    peak: usize,
}

fn ours(model: &mut Model, prompts: &[Vec<u32>], n_gen: usize, batch: usize, max_tokens: usize, repeat: usize) -> mlxrun::Result<Figures> {
    let bp = BatchParams { max_batch_size: batch, ..BatchParams::default() };
    let classify = GenerateParams::default();
    let generate = GenerateParams { max_tokens, ..GenerateParams::default() };
    model.classify_ids(prompts, &classify, &bp)?; // warm-up
    memory::reset_peak_memory();
    let mut best = f64::MAX;
    for _ in 0..repeat {
        let t = Instant::now();
        let out = model.classify_ids(prompts, &classify, &bp)?;
        best = best.min(t.elapsed().as_secs_f64());
        assert!(out.iter().all(|r| r.is_ok()));
    }
    let classify_prompts_s = prompts.len() as f64 / best;
    let prompts = &prompts[..n_gen];
    model.batch_generate_ids(prompts, &generate, &bp, |_, _| true)?;
    let mut generate_tok_s = 0f64;
    for _ in 0..repeat {
        let t = Instant::now();
        let out = model.batch_generate_ids(prompts, &generate, &bp, |_, _| true)?;
        let secs = t.elapsed().as_secs_f64();
        let toks: usize = out.iter().map(|r| r.as_ref().map_or(0, |g| g.tokens.len())).sum();
        generate_tok_s = generate_tok_s.max(toks as f64 / secs);
    }
    Ok(Figures { classify_prompts_s, generate_tok_s, peak: memory::peak_memory() })
}

#[allow(clippy::too_many_arguments)]
fn reference(dir: &Path, n: usize, n_gen: usize, len: usize, batch: usize, max_tokens: usize, repeat: usize, native: bool) -> Option<serde_json::Value> {
    let mut args = vec![dir.display().to_string()];
    args.extend([n, len, batch, max_tokens, repeat].iter().map(|v| v.to_string()));
    args.extend(["--dtype".into(), if native { "native" } else { "float32" }.into(), "--gen-prompts".into(), n_gen.to_string()]);
    common::run_reference("bench_batch_reference.py", &args)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var("MLXRUN_BENCH_MODEL").map(PathBuf::from).unwrap_or_else(|_| root.join(".deps/fixtures/gemma3"));
    let n = env_or("MLXRUN_BENCH_PROMPTS", 256).max(1);
    let n_gen = env_or("MLXRUN_BENCH_GEN_PROMPTS", n).clamp(1, n);
    let len = env_or("MLXRUN_BENCH_PROMPT_LEN", 16).max(1);
    let batch = env_or("MLXRUN_BENCH_BATCH", 64).max(1);
    let max_tokens = env_or("MLXRUN_BENCH_MAX_TOKENS", 32);
    let repeat = env_or("MLXRUN_BENCH_REPEAT", 3).max(1);
    let mut model = Model::load(&dir, &LoadOptions::default()).expect("load the model");
    let dtype = model.info().dtype;
    let native = default_dtype().map(|d| d != Dtype::F32).unwrap_or(false);
    let prompts = common::batch_prompts(n, len, model.info().vocab_size as usize);
    println!(
        "{}: {n} prompts of {}..{len} tokens (BatchGenerate: the first {n_gen}), batch {batch}, {max_tokens} tokens each, {dtype}, best of {repeat}",
        dir.display(),
        len / 2
    );
    let f = ours(&mut model, &prompts, n_gen, batch, max_tokens, repeat).expect("our batch run");
    drop(model);
    memory::clear_cache();
    let r = if std::env::var("MLXRUN_BENCH_NO_REFERENCE").is_ok() {
        None
    } else {
        reference(&dir, n, n_gen, len, batch, max_tokens, repeat, native)
    };
    let get = |k: &str| r.as_ref().and_then(|r| r[k].as_f64());
    let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.2}x", a / b));
    let show = |b: Option<f64>| b.map_or("-".to_string(), |b| format!("{b:.1}"));
    println!("{:<26} {:>12} {:>12} {:>8}", "", "ours", "mlx-lm", "ratio");
    let rc = get("classify_prompts_s");
    println!("{:<26} {:>12.1} {:>12} {:>8}", "classify prompts/s", f.classify_prompts_s, show(rc), ratio(f.classify_prompts_s, rc));
    let rg = get("generate_tok_s");
    println!("{:<26} {:>12.1} {:>12} {:>8}", "batch generate tok/s", f.generate_tok_s, show(rg), ratio(f.generate_tok_s, rg));
    println!(
        "{:<26} {:>12.1} {:>12}",
        "peak memory MiB",
        f.peak as f64 / 1048576.0,
        get("peak_memory").map_or("-".to_string(), |p| format!("{:.1}", p / 1048576.0))
    );
}
