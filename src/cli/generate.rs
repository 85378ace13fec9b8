//! `mlxrun generate`: streams a continuation of a prompt, then prints the metrics.
use std::io::{Read, Write};

use super::args::Args;
use crate::engine::{FinishReason, GenerateParams, SamplerParams};
use crate::error::{Error, Result};
use crate::nn::quantized_kv_cache::KvQuantization;

/// The generation options `generate` and `chat` share: sampling, limits, stops.
pub(super) fn generate_params(args: &mut Args) -> Result<GenerateParams> {
    let defaults = SamplerParams::default();
    let sampler = SamplerParams {
        temperature: args.parsed("--temp")?.unwrap_or(defaults.temperature),
        top_k: args.parsed("--top-k")?.unwrap_or(defaults.top_k),
        top_p: args.parsed("--top-p")?.unwrap_or(defaults.top_p),
        min_p: args.parsed("--min-p")?.unwrap_or(defaults.min_p),
        repetition_penalty: args.parsed("--repetition-penalty")?.unwrap_or(defaults.repetition_penalty),
        repetition_context_size: args.parsed("--repetition-context")?.unwrap_or(defaults.repetition_context_size),
        seed: args.parsed("--seed")?,
        ..defaults
    };
    let base = GenerateParams::default();
    // mlx-lm's --kv-bits, --kv-group-size and --quantized-kv-start.
    let kv_bits: Option<i32> = args.parsed("--kv-bits")?;
    let kv_group: Option<i32> = args.parsed("--kv-group-size")?;
    let kv_start: Option<i32> = args.parsed("--quantized-kv-start")?;
    if kv_bits.is_none() && (kv_group.is_some() || kv_start.is_some()) {
        return Err(Error::invalid("--kv-group-size and --quantized-kv-start go with --kv-bits BITS"));
    }
    let kv_quantization = kv_bits.map(|b| {
        let d = KvQuantization::new(b);
        KvQuantization { group_size: kv_group.unwrap_or(d.group_size), start: kv_start.unwrap_or(d.start), ..d }
    });
    if let Some(q) = &kv_quantization {
        q.validate()?;
    }
    Ok(GenerateParams {
        max_tokens: args.parsed("--max-tokens")?.unwrap_or(base.max_tokens),
        sampler,
        stop_strings: args.values("--stop")?,
        ignore_eos: args.switch("--ignore-eos"),
        prefill_step_size: args.parsed("--prefill-step")?.unwrap_or(base.prefill_step_size),
        kv_quantization,
        ..base
    })
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

pub fn run(mut args: Args) -> Result<()> {
    let model_dir = args.value("--model")?.ok_or_else(|| Error::invalid("generate needs --model PATH"))?;
    let prompt = match (args.value("--prompt")?, args.value("--prompt-file")?) {
        (Some(p), None) => p,
        (None, Some(f)) if f == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| Error::Io(format!("stdin: {e}")))?;
            s
        }
        (None, Some(f)) => std::fs::read_to_string(&f).map_err(|e| Error::Io(format!("{f}: {e}")))?,
        (Some(_), Some(_)) => return Err(Error::invalid("give either --prompt or --prompt-file, not both")),
        (None, None) => return Err(Error::invalid("generate needs --prompt TEXT or --prompt-file FILE")),
    };
    let params = generate_params(&mut args)?;
    let load = super::load_options(&mut args)?;
    let json = args.switch("--json");
    args.finish()?;
    params.validate()?;

    let mut model = super::progress::load_model(&model_dir, &load)?;
    let stdout = std::io::stdout();
    let gen = model.generate(&prompt, &params, |ev| {
        if !json {
            let mut out = stdout.lock();
            // A closed stdout (e.g. piped into `head`) stops generation quietly.
            out.write_all(ev.text.as_bytes()).and_then(|_| out.flush()).is_ok()
        } else {
            true
        }
    })?;
    let m = &gen.metrics;
    if json {
        let v = serde_json::json!({
            "text": gen.text,
            "prompt_tokens": gen.prompt_tokens,
            "tokens": gen.tokens,
            "finish_reason": format!("{:?}", gen.finish_reason).to_lowercase(),
            "metrics": metrics_json(m),
            "model": { "type": model.info().model_type, "dtype": model.info().dtype.name() },
        });
        println!("{v}");
    } else {
        println!();
        eprintln!("{}", metrics_line(m, gen.finish_reason));
    }
    Ok(())
}
