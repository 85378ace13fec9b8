//! `mlxrun bench`: prompt-processing and generation speed of a model over several runs,
//! with peak memory; `--json` for scripts.
//!
//! Each run prefills a prompt of exactly `--prompt-tokens` tokens (a fixed English text
//! repeated as needed, so runs and models are comparable) and then generates
//! `--gen-tokens` tokens greedily, through end-of-sequence tokens. Warm-up runs (untimed)
//! come first, as MLX compiles and allocates on first use.
use std::time::Instant;

use clap::Args;

use super::generate::metrics_json;
use super::ModelArgs;
use crate::engine::{GenerateParams, Metrics, SamplerParams};
use crate::error::{Error, Result};
use crate::mlx::memory;

/// The text prompts are cut from.
const TEXT: &str = "The history of computing is a story of layers. At the bottom sit transistors, \
billions of them, switching on and off in patterns that nobody designs by hand anymore. Above them \
are logic gates, then arithmetic units, caches, and cores. Each layer hides the details of the one \
below, which is why a programmer can write a loop without knowing how an adder works. ";

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Tokens in each run's prompt
    #[arg(long, value_name = "N", default_value_t = 128, allow_negative_numbers = true)]
    pub prompt_tokens: usize,

    /// Tokens each run generates (greedily, through end-of-sequence tokens)
    #[arg(long, value_name = "N", default_value_t = 64, allow_negative_numbers = true)]
    pub gen_tokens: usize,

    /// Timed runs
    #[arg(long, value_name = "N", default_value_t = 3, allow_negative_numbers = true)]
    pub runs: usize,

    /// Untimed runs first (MLX compiles and allocates on first use)
    #[arg(long, value_name = "N", default_value_t = 1, allow_negative_numbers = true)]
    pub warmup: usize,

    /// Print one JSON object (with every run's metrics) instead of text
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs { prompt_tokens, gen_tokens, runs, warmup, json, .. } = args;
    let path = args.model.model.clone();
    let load = args.model.options()?;
    if prompt_tokens == 0 || gen_tokens == 0 || runs == 0 {
        return Err(Error::invalid("bench: --prompt-tokens, --gen-tokens and --runs must be at least 1"));
    }

    let t0 = Instant::now();
    let mut model = args.model.load(&load)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let prompt = bench_prompt(model.tokenizer(), prompt_tokens)?;
    let params = GenerateParams {
        max_tokens: gen_tokens,
        sampler: SamplerParams::default(),
        ignore_eos: true,
        ..GenerateParams::default()
    };

    let mut measured: Vec<Metrics> = Vec::new();
    for i in 0..warmup + runs {
        memory::reset_peak_memory();
        let gen = model.generate_ids(&prompt, &params, |_| true)?;
        if i >= warmup {
            if !json {
                eprintln!("run {}: {}", i - warmup + 1, summary(&gen.metrics));
            }
            measured.push(gen.metrics);
        }
    }
    let stats = |f: fn(&Metrics) -> f64| {
        let v: Vec<f64> = measured.iter().map(f).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (mean, min, max)
    };
    let prefill = stats(Metrics::prefill_tok_s);
    let decode = stats(Metrics::decode_tok_s);
    let peak = measured.iter().map(|m| m.peak_memory).max().unwrap_or(0);
    let info = model.info();
    if json {
        let v = serde_json::json!({
            "model": path,
            "model_type": info.model_type,
            "dtype": info.dtype.name(),
            "prompt_tokens": prompt_tokens,
            "gen_tokens": gen_tokens,
            "runs": runs,
            "warmup": warmup,
            "load_seconds": load_seconds,
            "prefill_tok_s": {"mean": prefill.0, "min": prefill.1, "max": prefill.2},
            "decode_tok_s": {"mean": decode.0, "min": decode.1, "max": decode.2},
            "peak_memory_bytes": peak,
            "per_run": measured.iter().map(metrics_json).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!("{} ({}, {}), loaded in {load_seconds:.2} s", path, info.model_type, info.dtype.name());
        println!("prompt {prompt_tokens} tokens, generate {gen_tokens}, {runs} runs after {warmup} warm-up");
        println!("  prompt processing  {:8.1} tok/s  (min {:.1}, max {:.1})", prefill.0, prefill.1, prefill.2);
        println!("  generation         {:8.1} tok/s  (min {:.1}, max {:.1})", decode.0, decode.1, decode.2);
        println!("  peak memory        {:8.1} MiB", peak as f64 / 1048576.0);
    }
    Ok(())
}

fn summary(m: &Metrics) -> String {
    format!(
        "prompt {:.1} tok/s, generation {:.1} tok/s, peak {:.1} MiB",
        m.prefill_tok_s(),
        m.decode_tok_s(),
        m.peak_memory as f64 / 1048576.0
    )
}

/// `n` prompt tokens: BOS if the tokenizer adds one, then the text's tokens, repeated.
fn bench_prompt(tok: &crate::tokenizer::Tokenizer, n: usize) -> Result<Vec<u32>> {
    let text = tok.encode(TEXT, false)?;
    if text.is_empty() {
        return Err(Error::invalid("bench: the tokenizer encodes the benchmark text to no tokens"));
    }
    let mut ids: Vec<u32> = tok.encode("", true)?;
    while ids.len() < n {
        ids.extend_from_slice(&text);
    }
    ids.truncate(n);
    Ok(ids)
}
