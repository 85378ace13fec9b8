//! The `mlxrun` command-line program: its options (clap's derive API) and subcommands.
pub mod backends;
pub mod bench;
pub mod chat;
pub mod completions;
pub mod convert;
pub mod discover;
pub mod fuse;
pub mod generate;
pub mod info;
pub mod launch;
pub mod plot;
pub mod progress;
pub mod smoke;
pub mod train;

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::engine::Model;
use crate::error::{Error, Result};
use crate::mlx::{Device, Dtype};

/// LLM inference on Apple's MLX: generate, chat, inspect, convert and benchmark models.
#[derive(Parser, Debug)]
#[command(
    name = "mlxrun",
    bin_name = "mlxrun",
    version,
    // A repeated option takes its last value.
    args_override_self = true,
    after_help = "MODEL is an HF folder (config.json + safetensors), a GGUF file, or a folder holding one.\n\n\
                  Loading and converting show a progress bar when stderr is a terminal. Errors go to stderr \
                  and exit with status 1."
)]
pub struct Cli {
    /// The device to compute on [default: the GPU where this MLX build has one, else the CPU]
    #[arg(long, global = true, value_enum, value_name = "DEVICE", display_order = 900)]
    pub device: Option<DeviceArg>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stream a continuation of a prompt and print metrics
    Generate(generate::GenerateArgs),
    /// Chat with a model through its chat template
    #[command(after_help = "Interactive by default: one user message per stdin line, replies streamed; /reset \
                            starts over, /exit (or end of input) quits. With --message, sends those messages \
                            instead, prints the replies and exits.")]
    Chat(chat::ChatArgs),
    /// Architecture, sizes, tokenizer and chat template of a model
    Info(info::InfoArgs),
    /// Find the models (HF folders and GGUF files) under a folder, reading headers only
    #[command(after_help = "Lists each model's path, architecture, quantization, dtype, parameter count, size on \
                            disk and the backends that can load it. Broken models are listed with their error. \
                            --json prints one JSON array of objects (fields: path, format, model_type, \
                            quantization, dtype, params, size_bytes, num_files, has_tokenizer, has_chat_template, \
                            backends, error).")]
    Discover(discover::DiscoverArgs),
    /// The backends that can run models here (native, mlx_lm), or why not
    Backends(backends::BackendsArgs),
    /// Write a GGUF model as an HF folder (safetensors, config, tokenizer)
    Convert(convert::ConvertArgs),
    /// Prompt-processing and generation tok/s and peak memory of a model
    Bench(bench::BenchArgs),
    /// Fine-tune a LoRA adapter on a JSONL dataset, as mlx_lm.lora --train does
    #[command(after_help = "DATA is a folder with train.jsonl (and optionally valid.jsonl and test.jsonl), each line \
                            {\"text\": ...}, {\"prompt\": ..., \"completion\": ...} or {\"messages\": [...]}. \
                            The adapter folder loads with --adapter-path here and in mlx_lm.")]
    Train(train::TrainArgs),
    /// Fuse a LoRA adapter into its base model's weights, as mlx_lm.fuse does
    Fuse(fuse::FuseArgs),
    /// Exercise MLX through the engine and print timings
    Smoke(smoke::SmokeArgs),
    /// Serve the model over HTTP with OpenAI's API (chat and text completions, streaming), batching concurrent requests
    #[command(after_help = "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health. \
                            Concurrent requests share one continuously batched decode. SIGINT or SIGTERM stops \
                            taking requests, lets running ones finish for --shutdown-timeout seconds, then \
                            cancels them.")]
    Serve(crate::serve::ServeArgs),
    /// Start the ranks of a distributed run on this machine: N copies of an mlxrun command
    #[command(after_help = "For example: mlxrun launch -n 2 -- generate --model M --prompt hi\n\n\
                            Each rank runs the command with --distributed added, over the ring backend on \
                            127.0.0.1 with free ports (MLX_RANK and MLX_HOSTFILE set for it), or with \
                            --backend nccl over NCCL, one GPU per rank (MLX_RANK, MLX_WORLD_SIZE, NCCL_HOST_IP, \
                            NCCL_PORT and CUDA_VISIBLE_DEVICES set for it). Rank 0's output \
                            is printed; the other ranks' stderr is printed with a [rank R] prefix. The exit \
                            status is the first failing rank's. Across machines, start the ranks with mlx.launch \
                            (see docs/distributed.md).")]
    Launch(launch::LaunchArgs),
    /// Print a shell completion script to stdout
    #[command(after_help = "For example: mlxrun completions bash > ~/.local/share/bash-completion/completions/mlxrun")]
    Completions(completions::CompletionsArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    Gpu,
}

impl DeviceArg {
    pub fn device(self) -> Device {
        match self {
            DeviceArg::Cpu => Device::cpu(),
            DeviceArg::Gpu => Device::gpu(),
        }
    }
}

/// The model and how to load it: what generate, chat, info and bench share.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// The model: an HF folder (config.json + safetensors), a GGUF file, or a folder holding one
    #[arg(long, value_name = "MODEL")]
    pub model: String,

    /// Compute dtype: float32, bfloat16 or float16 (or f32, fp16, bf16, ...) [default: float32 on
    /// the CPU, the checkpoint's on a GPU]
    #[arg(long, value_name = "DTYPE", value_parser = dtype_arg)]
    pub dtype: Option<Dtype>,

    /// Quantize a dense checkpoint at load to BITS bits, as mlx-lm's convert -q [default: off]
    #[arg(long, value_name = "BITS", allow_negative_numbers = true)]
    pub quantize: Option<i32>,

    /// Group size of --quantize [default: the mode's: 64 for affine, 32 for mxfp4 and mxfp8, 16
    /// for nvfp4]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub q_group_size: Option<i32>,

    /// Mode of --quantize [default: affine]
    #[arg(long, value_name = "MODE", value_parser = ["affine", "mxfp4", "mxfp8", "nvfp4"])]
    pub q_mode: Option<String>,

    /// Keep packed (quantized) weights packed and use quantized matmuls [default on a GPU, and
    /// on the CPU for affine 4/8-bit weights in groups of 32/64/128 computing in float32]
    #[arg(long)]
    pub keep_quantized: bool,

    /// Unpack packed weights into the compute dtype at load [default on the CPU for other
    /// quantizations]
    #[arg(long)]
    pub dequantize: bool,

    /// Stack each layer's q/k/v and gate/up matrices into one for decode steps: on or off
    /// [default on a GPU, where it saves kernel launches]
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub stack_projections: Option<bool>,

    /// On the CPU, quantize each activation row to int8 (per block of 32) for one-row
    /// products with packed 4/8-bit weights and multiply in integers, as llama.cpp does:
    /// about twice the kernels' speed, but the rounding of the activations can change
    /// greedy tokens against mlx-lm. For the whole process (also MLXRUN_CPU_QMM_ACT=int8)
    /// [default: off, f32 activations]
    #[arg(long)]
    pub int8_activations: bool,

    /// A LoRA adapter folder (adapters.safetensors + adapter_config.json, as mlx-lm writes
    /// them) to put on the model; for train, where to write the adapter [default: none; for
    /// train, adapters]
    #[arg(long, value_name = "DIR")]
    pub adapter_path: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub distributed: DistributedArgs,
}

/// Running one rank of a model sharded over several processes (tensor parallelism).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Distributed")]
pub struct DistributedArgs {
    /// Run as one rank of a group and shard the model over the group's ranks. The group is
    /// the one MLX's environment describes: for the ring backend MLX_RANK (this rank) and
    /// MLX_HOSTFILE (a JSON list, one entry per rank, each a list of "ip:port" strings).
    /// Every rank runs the same command; rank 0 prints the output. `mlxrun launch` starts
    /// the ranks on this machine; `mlx.launch` starts them across machines
    #[arg(long)]
    pub distributed: bool,

    /// MLX's distributed backend: ring (TCP), jaccl (Thunderbolt), mpi, nccl or any
    #[arg(long, value_name = "NAME", default_value = "ring", requires = "distributed")]
    pub dist_backend: String,

    /// Seconds to wait for every rank to connect; then also the longest this rank may wait on
    /// the others without computing before it fails (a peer gone or stuck)
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, requires = "distributed")]
    pub dist_timeout: f64,
}

impl DistributedArgs {
    /// Joins the group when --distributed is given.
    pub fn group(&self) -> Result<Option<crate::mlx::distributed::Group>> {
        if !self.distributed {
            return Ok(None);
        }
        if !(self.dist_timeout.is_finite() && self.dist_timeout > 0.0) {
            return Err(Error::invalid(format!("--dist-timeout must be a number of seconds > 0, got {}", self.dist_timeout)));
        }
        let timeout = std::time::Duration::from_secs_f64(self.dist_timeout);
        crate::mlx::distributed::Group::init(&self.dist_backend, timeout).map(Some)
    }
}

/// `on` or `off`, as a switch's value.
fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

impl ModelArgs {
    /// The engine's load options, checked.
    pub fn options(&self) -> Result<crate::models::LoadOptions> {
        if self.quantize.is_none() && (self.q_group_size.is_some() || self.q_mode.is_some()) {
            return Err(Error::invalid("--q-group-size and --q-mode go with --quantize BITS"));
        }
        let quantize = match self.quantize {
            Some(b) => Some(crate::mlx::quant::QuantParams::parse(
                self.q_mode.as_deref().unwrap_or("affine"),
                self.q_group_size,
                Some(b),
            )?),
            None => None,
        };
        let keep_quantized = match (self.keep_quantized, self.dequantize) {
            (true, true) => return Err(Error::invalid("--keep-quantized and --dequantize exclude each other")),
            (true, false) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        };
        if self.int8_activations {
            crate::mlx::cpu_qmm::set_int8_activations(true);
        }
        Ok(crate::models::LoadOptions { dtype: self.dtype, quantize, keep_quantized, adapter_path: self.adapter_path.clone(), stack_projections: self.stack_projections, group: self.distributed.group()? })
    }

    /// Loads the model with a progress bar (see [`progress::load_model`]).
    pub fn load(&self, opts: &crate::models::LoadOptions) -> Result<Model> {
        progress::load_model(&self.model, opts)
    }
}

/// A dtype by name: MLX's names (float32, bfloat16, float16, ...) and f32, fp32, f16, fp16, bf16.
pub fn parse_dtype(name: &str) -> Result<Dtype> {
    let d = match name {
        "f32" | "fp32" => Dtype::F32,
        "f16" | "fp16" => Dtype::F16,
        "bf16" => Dtype::Bf16,
        other => Dtype::from_name(other).ok_or_else(|| Error::invalid(format!("--dtype: unknown dtype {other:?}")))?,
    };
    Ok(d)
}

/// [`parse_dtype`] as clap's value parser (clap names the option in its message).
fn dtype_arg(name: &str) -> std::result::Result<Dtype, String> {
    parse_dtype(name).map_err(|_| format!("unknown dtype {name:?} (float32, bfloat16, float16, ...)"))
}

/// Runs the program with its arguments (the program name first) and returns the exit
/// status: 0, or 1 after printing `mlxrun: ` and the problem to stderr. `--help` and
/// `--version` print to stdout.
pub fn main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mlxrun: {e}");
            1
        }
    }
}

/// What a parse error prints, and the exit status.
fn usage_error(e: clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // To stdout; a closed stdout is nobody's problem.
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            eprintln!("mlxrun: no command given\n\n{}", Cli::command().render_help());
            1
        }
        _ => {
            let text = e.to_string();
            eprint!("mlxrun: {}", text.strip_prefix("error: ").unwrap_or(&text));
            1
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(d) = cli.device {
        d.device().set_default()?;
    }
    match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Launch(a) => launch::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Info(a) => info::run(a),
        Command::Discover(a) => discover::run(a),
        Command::Backends(a) => backends::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Train(a) => train::run(a),
        Command::Fuse(a) => fuse::run(a),
        Command::Serve(a) => crate::serve::run(a),
        Command::Smoke(a) => smoke::run(a.json),
        Command::Completions(a) => completions::run(a),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
