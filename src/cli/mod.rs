//! The `mlxrun` command-line program's subcommands.
pub mod args;
pub mod bench;
pub mod chat;
pub mod convert;
pub mod generate;
pub mod info;
pub mod progress;
pub mod smoke;

use crate::error::{Error, Result};
use crate::mlx::{Device, Dtype};
use args::Args;

pub const USAGE: &str = "\
usage: mlxrun <command> [options]

MODEL is an HF folder (config.json + safetensors), a GGUF file, or a folder holding one.

commands:
  generate --model MODEL --prompt TEXT stream a continuation and print metrics
      --prompt-file FILE (- for stdin)  read the prompt from a file instead
      --max-tokens N (256)  --temp T (0 = greedy)  --top-k K  --top-p P  --min-p P
      --repetition-penalty R  --repetition-context N (20)  --seed S
      --stop STRING (repeatable)  --ignore-eos  --prefill-step N (2048)
      --kv-bits N  --kv-group-size N (64)  --quantized-kv-start N (5000)   quantized KV cache
      --dtype float32|bfloat16|float16  --device cpu|gpu  --json
  chat --model MODEL                   interactive chat: one user message per stdin line,
                                       replies streamed; /reset starts over, /exit quits
      --message TEXT (repeatable)      send these messages instead, print replies, exit
      --system TEXT  --template NAME  --quiet (no metrics)  --json (with --message)
      and the sampling options of generate (greedy by default)
  info --model MODEL [--json]          architecture, sizes, tokenizer, chat template
  convert --gguf FILE --out DIR        write a GGUF model as an HF folder (safetensors)
      --dtype float32|bfloat16|float16 (float32)  --json
      --keep-quantized                 Q4_0/Q4_1/Q8_0 matrices packed, as mlx-lm's format
  bench --model MODEL                  prompt-processing and generation tok/s, peak memory
      --prompt-tokens N (128)  --gen-tokens N (64)  --runs N (3)  --warmup N (1)
      --dtype float32|bfloat16|float16  --json
  smoke [--device cpu|gpu] [--json]   exercise MLX through the engine and print timings

generate, chat, info and bench load the model with:
      --dtype float32|bfloat16|float16  compute dtype (float32 on the CPU, the checkpoint's on a GPU)
      --quantize BITS  --q-group-size N (64)  --q-mode affine|mxfp4|mxfp8|nvfp4
                                       quantize a dense checkpoint at load, as mlx-lm's convert -q
      --keep-quantized / --dequantize  keep packed weights packed (GPU default) or unpack them
                                       at load (CPU default)

Loading and converting show a progress bar when stderr is a terminal. Errors go to stderr
and exit with status 1.";

/// Runs the program with its arguments (without the program name).
pub fn run(argv: Vec<String>) -> Result<()> {
    let mut it = argv.into_iter();
    let cmd = it.next().unwrap_or_default();
    let mut args = Args::new(it.collect());
    if let Some(d) = args.value("--device")? {
        parse_device(&d)?.set_default()?;
    }
    match cmd.as_str() {
        "generate" => generate::run(args),
        "chat" => chat::run(args),
        "info" => info::run(args),
        "convert" => convert::run(args),
        "bench" => bench::run(args),
        "smoke" => {
            let json = args.switch("--json");
            args.finish()?;
            smoke::run(json)
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        "" => Err(Error::invalid(format!("no command given\n\n{USAGE}"))),
        other => Err(Error::invalid(format!("unknown command {other:?}\n\n{USAGE}"))),
    }
}

fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::cpu()),
        "gpu" => Ok(Device::gpu()),
        other => Err(Error::invalid(format!("--device: expected cpu or gpu, got {other:?}"))),
    }
}

/// The options every model-loading command takes: `--dtype`, `--quantize` (with
/// `--q-group-size`, `--q-mode`) and `--keep-quantized` / `--dequantize`.
pub fn load_options(args: &mut Args) -> Result<crate::models::LoadOptions> {
    let dtype = args.value("--dtype")?.map(|d| parse_dtype(&d)).transpose()?;
    let bits: Option<i32> = args.parsed("--quantize")?;
    let group: Option<i32> = args.parsed("--q-group-size")?;
    let mode = args.value("--q-mode")?;
    if bits.is_none() && (group.is_some() || mode.is_some()) {
        return Err(Error::invalid("--q-group-size and --q-mode go with --quantize BITS"));
    }
    let quantize = match bits {
        Some(b) => Some(crate::mlx::quant::QuantParams::parse(mode.as_deref().unwrap_or("affine"), group, Some(b))?),
        None => None,
    };
    let keep_quantized = match (args.switch("--keep-quantized"), args.switch("--dequantize")) {
        (true, true) => return Err(Error::invalid("--keep-quantized and --dequantize exclude each other")),
        (true, false) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    Ok(crate::models::LoadOptions { dtype, quantize, keep_quantized, ..Default::default() })
}

pub fn parse_dtype(name: &str) -> Result<Dtype> {
    let d = match name {
        "f32" | "fp32" => Dtype::F32,
        "f16" | "fp16" => Dtype::F16,
        "bf16" => Dtype::Bf16,
        other => Dtype::from_name(other).ok_or_else(|| Error::invalid(format!("--dtype: unknown dtype {other:?}")))?,
    };
    Ok(d)
}
