//! `mlxrun generate`: streams a continuation of a prompt, then prints the metrics.
use std::io::{Read, Write};

use clap::{ArgGroup, Args};

use super::ModelArgs;
use crate::engine::{FinishReason, GenerateParams, SamplerParams};
use crate::error::{Error, Result};
use crate::nn::quantized_kv_cache::KvQuantization;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("input").required(true).args(["prompt", "prompt_file"])))]
pub struct GenerateArgs {
    /// The prompt
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub prompt: Option<String>,

    /// Read the prompt from a file instead (- for stdin)
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub prompt_file: Option<String>,

    /// Print one JSON object (text, tokens, finish reason, metrics) instead of streaming the text
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub backend: super::backends::BackendArgs,

    #[command(flatten)]
    pub generation: GenerationArgs,
}

/// The generation options `generate` and `chat` share: sampling, limits, stops, KV cache.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Generation")]
pub struct GenerationArgs {
    /// The most tokens to generate
    #[arg(
        long,
        value_name = "N",
        default_value_t = GenerateParams::default().max_tokens,
        allow_negative_numbers = true
    )]
    pub max_tokens: usize,

    /// Sampling temperature (0 = greedy)
    #[arg(
        long,
        value_name = "T",
        default_value_t = SamplerParams::default().temperature,
        allow_negative_numbers = true
    )]
    pub temp: f32,

    /// Sample from the K most likely tokens only (0 = all)
    #[arg(
        long,
        value_name = "K",
        default_value_t = SamplerParams::default().top_k,
        allow_negative_numbers = true
    )]
    pub top_k: i32,

    /// Nucleus sampling: the most likely tokens whose probabilities add up to P (1 = all)
    #[arg(
        long,
        value_name = "P",
        default_value_t = SamplerParams::default().top_p,
        allow_negative_numbers = true
    )]
    pub top_p: f32,

    /// Only tokens at least P times as likely as the most likely one (0 = all)
    #[arg(
        long,
        value_name = "P",
        default_value_t = SamplerParams::default().min_p,
        allow_negative_numbers = true
    )]
    pub min_p: f32,

    /// Penalty for tokens among the recent ones; above 1 discourages repeats (1 = off)
    #[arg(
        long,
        value_name = "R",
        default_value_t = SamplerParams::default().repetition_penalty,
        allow_negative_numbers = true
    )]
    pub repetition_penalty: f32,

    /// How many recent tokens the repetition penalty looks at
    #[arg(
        long,
        value_name = "N",
        default_value_t = SamplerParams::default().repetition_context_size,
        allow_negative_numbers = true
    )]
    pub repetition_context: usize,

    /// Seed of a private random generator for sampling [default: MLX's global generator]
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub seed: Option<u64>,

    /// Stop when the text contains STRING (repeatable)
    #[arg(long, value_name = "STRING", allow_hyphen_values = true)]
    pub stop: Vec<String>,

    /// Do not stop at end-of-sequence tokens
    #[arg(long)]
    pub ignore_eos: bool,

    /// Prompt tokens processed per step
    #[arg(
        long,
        value_name = "N",
        default_value_t = GenerateParams::default().prefill_step_size,
        allow_negative_numbers = true
    )]
    pub prefill_step: usize,

    /// Quantize the KV cache to BITS bits (2, 3, 4, 5, 6 or 8), as mlx-lm's --kv-bits [default: off]
    #[arg(long, value_name = "BITS", allow_negative_numbers = true)]
    pub kv_bits: Option<i32>,

    /// Group size of the quantized KV cache (32, 64 or 128) [default: 64]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub kv_group_size: Option<i32>,

    /// Keep the KV cache dense for the first N tokens [default: 5000]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub quantized_kv_start: Option<i32>,
}

impl GenerationArgs {
    /// The engine's generation parameters (not yet validated: see `GenerateParams::validate`).
    pub fn params(&self) -> Result<GenerateParams> {
        let sampler = SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            repetition_context_size: self.repetition_context,
            seed: self.seed,
            ..SamplerParams::default()
        };
        // mlx-lm's --kv-bits, --kv-group-size and --quantized-kv-start.
        if self.kv_bits.is_none() && (self.kv_group_size.is_some() || self.quantized_kv_start.is_some()) {
            return Err(Error::invalid("--kv-group-size and --quantized-kv-start go with --kv-bits BITS"));
        }
        let kv_quantization = self.kv_bits.map(|b| {
            let d = KvQuantization::new(b);
            KvQuantization {
                group_size: self.kv_group_size.unwrap_or(d.group_size),
                start: self.quantized_kv_start.unwrap_or(d.start),
                ..d
            }
        });
        if let Some(q) = &kv_quantization {
            q.validate()?;
        }
        Ok(GenerateParams {
            max_tokens: self.max_tokens,
            sampler,
            stop_strings: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            prefill_step_size: self.prefill_step,
            kv_quantization,
            ..GenerateParams::default()
        })
    }
}

/// The metrics of a generation as `--json` prints them.
pub(super) fn metrics_json(m: &crate::engine::Metrics) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": m.prompt_tokens,
        "generated_tokens": m.generated_tokens,
        "prefill_seconds": m.prefill.as_secs_f64(),
        "decode_seconds": m.decode.as_secs_f64(),
        "prefill_tok_s": m.prefill_tok_s(),
        "decode_tok_s": m.decode_tok_s(),
        "peak_memory_bytes": m.peak_memory,
        "active_memory_bytes": m.active_memory,
    })
}

/// The one-line summary printed to stderr after a generation.
pub(super) fn metrics_line(m: &crate::engine::Metrics, finish: FinishReason) -> String {
    let why = match finish {
        FinishReason::Stop => "end of sequence",
        FinishReason::StopString => "stop string",
        FinishReason::Length => "max tokens",
        FinishReason::Callback => "output closed",
        FinishReason::Cancelled => "cancelled",
    };
    format!(
        "prompt: {} tokens, {:.1} tok/s | generation: {} tokens, {:.1} tok/s | peak memory {:.1} MiB | stopped: {why}",
        m.prompt_tokens,
        m.prefill_tok_s(),
        m.generated_tokens,
        m.decode_tok_s(),
        m.peak_memory as f64 / 1048576.0
    )
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let prompt = match (args.prompt, args.prompt_file) {
        (Some(p), None) => p,
        (None, Some(f)) if f == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| Error::Io(format!("stdin: {e}")))?;
            s
        }
        (None, Some(f)) => std::fs::read_to_string(&f).map_err(|e| Error::Io(format!("{f}: {e}")))?,
        // clap's group makes them exclusive and one of them required.
        (Some(_), Some(_)) => return Err(Error::invalid("give either --prompt or --prompt-file, not both")),
        (None, None) => return Err(Error::invalid("generate needs --prompt TEXT or --prompt-file FILE")),
    };
    let params = args.generation.params()?;
    params.validate()?;
    let load = args.model.options()?;
    let json = args.json;
    // Every rank generates the same tokens; rank 0 alone prints them.
    let quiet = load.group.as_ref().is_some_and(|g| g.rank() != 0);

    let mut model = args.backend.load(&args.model.model, &load)?;
    if let Some(g) = &load.group {
        // What this rank's share of the model holds (the weights: nothing else is allocated
        // yet), so that the split can be seen.
        let mib = crate::mlx::memory::active_memory() as f64 / 1048576.0;
        eprintln!("rank {} of {}: the model's weights hold {mib:.1} MiB here", g.rank(), g.size());
    }
    let stdout = std::io::stdout();
    let gen = model.generate(&prompt, &params, |ev| {
        if !json && !quiet {
            let mut out = stdout.lock();
            // A closed stdout (e.g. piped into `head`) stops generation quietly.
            out.write_all(ev.text.as_bytes()).and_then(|_| out.flush()).is_ok()
        } else {
            true
        }
    })?;
    let m = &gen.metrics;
    if quiet {
        // The other ranks' metrics go to stderr (`mlxrun launch` shows them with the rank).
        eprintln!("{}", metrics_line(m, gen.finish_reason));
        return Ok(());
    }
    if json {
        let v = serde_json::json!({
            "text": gen.text,
            "prompt_tokens": gen.prompt_tokens,
            "tokens": gen.tokens,
            "finish_reason": format!("{:?}", gen.finish_reason).to_lowercase(),
            "metrics": metrics_json(m),
            "model": { "type": model.info().model_type, "dtype": model.info().dtype.name(), "backend": model.backend() },
        });
        // A closed stdout is not an error here (see the callback above).
        let _ = writeln!(stdout.lock(), "{v}");
    } else {
        let _ = writeln!(stdout.lock());
        eprintln!("{}", metrics_line(m, gen.finish_reason));
    }
    Ok(())
}

