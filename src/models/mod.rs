//! Model families and loading. One file per family describes its architecture; shared
//! pieces live in `decoder` (the Llama-style stack), `config` and `weights`.
pub mod block;
pub mod config;
pub mod decoder;
pub mod dims;
pub mod gemma3;
pub mod gguf;
pub mod llama;
pub mod progress;
pub mod qwen2;
pub mod quantization;
pub mod qwen3;
pub mod shard;
pub mod slice_read;
pub mod weights;

use std::path::Path;


use crate::error::{Error, Result};
use crate::mlx::quant::{QuantMode, QuantParams};
use crate::mlx::{eval, Array, Device, Dtype};
use crate::nn::{Attention, KvCache, Linear, SwiGlu};
use config::ConfigFile;
use decoder::Decoder;
use quantization::{QuantConfig, QuantInfo, QuantLoad};
use weights::Weights;

/// What a loaded model is.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub model_type: String,
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub num_layers: i32,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    pub max_position_embeddings: Option<i32>,
    pub tied_embeddings: bool,
    /// The dtype the model computes in.
    pub dtype: Dtype,
    /// How its linear layers and embeddings are quantized; `None` when all are dense.
    pub quantization: Option<QuantInfo>,
}

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Compute dtype for floating-point weights. `None`: f32 on the CPU (MLX's CPU
    /// half-precision matmuls are several times slower), the checkpoint's own dtype on a
    /// GPU.
    pub dtype: Option<Dtype>,
    /// Quantize the dense matrices of a bf16/f16/f32 checkpoint at load, choosing the layers
    /// mlx-lm's `convert -q` quantizes (input size divisible by the group size).
    pub quantize: Option<QuantParams>,
    /// Keep quantized matrices (an mlx-lm quantized checkpoint, GGUF
    /// Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K tensors, or `quantize`'s output) packed and use quantized
    /// matmuls. `None`: keep them on a GPU, and on the CPU when the project's CPU kernels take them all (affine
    /// 4/8-bit, group size 32/64/128, f32 compute dtype; see `mlx::cpu_qmm`); otherwise
    /// unpack them into the compute dtype on the CPU, where MLX's own quantized matmul is
    /// several times slower than a dense f32 one.
    pub keep_quantized: Option<bool>,
    /// An adapter folder in mlx-lm's layout (`adapters.safetensors` +
    /// `adapter_config.json`) to put on the model once it is loaded.
    pub adapter_path: Option<std::path::PathBuf>,
    /// Stack each layer's q/k/v and gate/up matrices, so that a single-position step
    /// multiplies its input once per group (see `nn::stacked`). `None`: on a GPU, where at
    /// decode sizes a product's launch costs more than its arithmetic; not on the CPU.
    pub stack_projections: Option<bool>,
    /// Share the model over this group's ranks by tensor parallelism (see `shard`): each
    /// rank loads and holds its slice of every layer, and every rank must load the same
    /// model with the same options and then run the same calls in step.
    pub group: Option<crate::mlx::distributed::Group>,
}

impl LoadOptions {
    /// Options that compute in `dtype` (or the device's default when `None`).
    pub fn with_dtype(dtype: Option<Dtype>) -> LoadOptions {
        LoadOptions { dtype, ..LoadOptions::default() }
    }
}

/// A causal language model: token ids in, next-token logits out.
/// One decoder layer's linear projections, where adapters go: the layer's key prefix in the
/// checkpoint and in adapter files (`model.layers.3`, `language_model.model.layers.3`) and
/// each projection by its key inside the layer (`self_attn.q_proj`, `mlp.down_proj`, …).
pub struct LayerLinears<'a> {
    pub prefix: String,
    pub linears: Vec<(&'static str, &'a mut Linear)>,
}

impl<'a> LayerLinears<'a> {
    /// The projections of a layer of attention and a gated MLP, in mlx-lm's names.
    pub fn of(prefix: String, attn: &'a mut Attention, mlp: &'a mut SwiGlu) -> LayerLinears<'a> {
        let mut linears: Vec<(&'static str, &'a mut Linear)> = attn.linears_mut().into_iter().collect();
        linears.extend(mlp.linears_mut());
        LayerLinears { prefix, linears }
    }
}

pub trait LanguageModel: Send {
    /// `tokens: [batch, seq]` integer ids → the final-normed hidden states
    /// `[batch, seq, hidden]`, extending `caches` (one per layer) with the new positions.
    fn forward_hidden(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array>;
    /// The output head over hidden states `[..., hidden]` → logits `[..., vocab]`.
    fn logits(&self, hidden: &Array) -> Result<Array>;
    /// Empty caches, one per layer.
    fn new_caches(&self) -> Vec<KvCache>;
    fn info(&self) -> &ModelInfo;
    /// Every decoder layer's projections, first layer first (adapters are put on them).
    fn layer_linears(&mut self) -> Vec<LayerLinears<'_>>;
    /// Gradient checkpointing on or off (see [`block::run`]): training turns it on for its
    /// forward passes, which then need empty caches.
    fn set_grad_checkpoint(&mut self, on: bool);

    /// `tokens: [batch, seq]` integer ids → logits `[batch, seq, vocab]`, extending
    /// `caches` (one per layer) with the new positions.
    fn forward(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        self.logits(&self.forward_hidden(tokens, caches)?)
    }

    /// Logits `[batch, vocab]` of the last position only: the head (a vocabulary-sized
    /// matmul) runs on one position per row instead of all of them.
    fn forward_last(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        let h = self.forward_hidden(tokens, caches)?;
        let n = h.dim(1)?;
        self.logits(&h.slice_axis(1, n - 1, n)?.squeeze(&[1])?)
    }

    /// Empty caches for a batch of rows left-padded by `left_padding` columns each: the
    /// batch kind of each layer's cache (a sliding-window layer keeps its window).
    fn new_batch_caches(&self, left_padding: &[i32]) -> Result<Vec<KvCache>> {
        self.new_caches().iter().map(|c| c.batch_like(left_padding)).collect()
    }
}

impl LanguageModel for Decoder {
    fn forward_hidden(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        Decoder::forward_hidden(self, tokens, caches)
    }
    fn logits(&self, hidden: &Array) -> Result<Array> {
        Decoder::logits(self, hidden)
    }
    fn new_caches(&self) -> Vec<KvCache> {
        Decoder::new_caches(self)
    }
    fn info(&self) -> &ModelInfo {
        Decoder::info(self)
    }
    fn layer_linears(&mut self) -> Vec<LayerLinears<'_>> {
        Decoder::layer_linears(self)
    }
    fn set_grad_checkpoint(&mut self, on: bool) {
        Decoder::set_grad_checkpoint(self, on)
    }
}

pub const SUPPORTED_MODEL_TYPES: &[&str] = &["gemma3", "gemma3_text", "llama", "qwen2", "qwen3"];

/// The architecture a config describes, read before any weight is.
enum Arch {
    /// The Llama-style decoder, in the variant its spec describes.
    Decoder(decoder::DecoderSpec),
    Gemma3(gemma3::Gemma3Spec),
}

/// The dtype to compute in when the caller did not choose one.
pub fn default_dtype() -> Result<Dtype> {
    Ok(if Device::default_device()? == Device::cpu() { Dtype::F32 } else { Dtype::Bf16 })
}

/// Loads a model: an HF-layout folder (config.json + safetensors weights), a GGUF file,
/// or a folder whose only model file is a GGUF file. All weights are read and converted
/// before this returns, so a bad file fails here.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Box<dyn LanguageModel>> {
    if let Some(file) = gguf::find_model_file(path)? {
        return load_gguf(&gguf::GgufFile::open(&file)?, opts);
    }
    if !path.is_dir() {
        return Err(Error::Config(format!(
            "{} is not a folder (a model folder) or a GGUF file",
            path.display()
        )));
    }
    let cfg = ConfigFile::read(path, "config.json")?;
    let arch = arch_of(&cfg)?;
    let dtype = compute_dtype(opts)?;
    let mut weights = Weights::open(path, Some(dtype))?;
    let config = QuantConfig::from_config(&cfg)?;
    let packed: Vec<QuantParams> = config
        .iter()
        .flat_map(|c| std::iter::once(c.default).chain(c.layers.values().flatten().copied()))
        .chain(opts.quantize)
        .collect();
    weights.quant = QuantLoad {
        keep: keep_quantized(opts, &packed, dtype)?,
        config,
        quantize: opts.quantize,
        source_dtype: conversion_dtype(&cfg),
    };
    weights.stack_projections = stack_projections(opts)?;
    weights.group = sharding_group(opts)?;
    crate::mlx::memory::check_fits(&format!("loading the weights of {}", path.display()), weights.estimated_bytes())?;
    build(arch, weights)
}

/// Loads the model of a parsed GGUF file.
pub fn load_gguf(file: &gguf::GgufFile, opts: &LoadOptions) -> Result<Box<dyn LanguageModel>> {
    let g = gguf::arch::read(file)?;
    let cfg = ConfigFile::from_json(&file.path, g.config.clone());
    let arch = arch_of(&cfg)?;
    // Packed GGUF matrices stay packed only when the model keeps them so; otherwise the
    // project's own dequantizers (bit-identical to llama.cpp's) unpack every tensor.
    let dtype = compute_dtype(opts)?;
    // Q4_0/Q4_1/Q4_K become affine 4-bit and Q5_0/Q5_1/Q5_K/Q8_0 affine 8-bit, in groups of 32.
    let packed: Vec<QuantParams> = [4, 8]
        .map(|bits| QuantParams { group_size: gguf::packed::GROUP_SIZE as i32, bits, mode: QuantMode::Affine })
        .into_iter()
        .chain(opts.quantize)
        .collect();
    let keep = keep_quantized(opts, &packed, dtype)?;
    // Checked before any tensor is read: reading a GGUF tensor copies it into MLX.
    crate::mlx::memory::check_fits(&format!("loading the weights of {}", file.path.display()), gguf::estimated_bytes(file, dtype, keep))?;
    let mut weights = gguf::weights(file, &g, Some(dtype), keep)?;
    weights.quant.quantize = opts.quantize;
    weights.stack_projections = stack_projections(opts)?;
    weights.group = sharding_group(opts)?;
    build(arch, weights)
}

/// The checks `load` makes on a folder's config.json before it reads any weight: the
/// family is supported, its fields describe a valid architecture, and its quantization
/// section is valid. (The fuzz target for config.json runs this.)
pub fn check_config(cfg: &ConfigFile) -> Result<()> {
    arch_of(cfg)?;
    QuantConfig::from_config(cfg)?;
    Ok(())
}

/// The architecture a config describes.
fn arch_of(cfg: &ConfigFile) -> Result<Arch> {
    let model_type = cfg
        .str("model_type")
        .ok_or_else(|| Error::Config(format!("{}: required field \"model_type\" is missing", cfg.path.display())))?
        .to_string();
    let decoder = |spec: decoder::DecoderSpec| -> Result<Arch> {
        spec.dims().check(cfg)?;
        Ok(Arch::Decoder(spec))
    };
    Ok(match model_type.as_str() {
        "llama" => decoder(llama::spec(cfg)?)?,
        "qwen2" => decoder(qwen2::spec(cfg)?)?,
        "qwen3" => decoder(qwen3::spec(cfg)?)?,
        // Gemma 3 checks its dimensions itself: they may sit in a `text_config` section.
        "gemma3" | "gemma3_text" => Arch::Gemma3(gemma3::spec(cfg)?),
        other => {
            return Err(Error::Config(format!(
                "{}: model_type {other:?} is not supported (supported: {})",
                cfg.path.display(),
                SUPPORTED_MODEL_TYPES.join(", ")
            )))
        }
    })
}

/// The group to shard over: none for a group of one (nothing to split), and adapters are
/// refused (their low-rank matrices are not split with the layers).
fn sharding_group(opts: &LoadOptions) -> Result<Option<crate::mlx::distributed::Group>> {
    match &opts.group {
        Some(g) if g.size() > 1 => {
            if opts.adapter_path.is_some() {
                return Err(Error::Unsupported("adapters on a model sharded over several ranks".into()));
            }
            Ok(Some(g.clone()))
        }
        _ => Ok(None),
    }
}

/// Whether quantized matrices stay packed: as asked; else on a GPU, and on the CPU when the
/// project's CPU kernels take every packed matrix (`packed`: their quantizations) in
/// `dtype` (see `mlx::cpu_qmm`): at decode sizes they beat a dense f32 matmul several
/// times over, while MLX's own CPU kernel for other settings is slower than one.
pub fn keep_quantized(opts: &LoadOptions, packed: &[QuantParams], dtype: Dtype) -> Result<bool> {
    let on_cpu_kernels = packed.iter().all(|p| crate::mlx::cpu_qmm::takes_params(*p, dtype));
    Ok(asked_else_on_gpu(opts.keep_quantized)? || (opts.keep_quantized.is_none() && on_cpu_kernels))
}

/// Whether each layer's projections are stacked: as asked, else on GPUs only.
pub fn stack_projections(opts: &LoadOptions) -> Result<bool> {
    asked_else_on_gpu(opts.stack_projections)
}

/// A load choice the caller made, or, left open, whether the default device is a GPU.
fn asked_else_on_gpu(asked: Option<bool>) -> Result<bool> {
    match asked {
        Some(on) => Ok(on),
        None => Ok(Device::default_device()? != Device::cpu()),
    }
}

/// The dtype mlx-lm's converter casts a checkpoint to before quantizing it: config.json's
/// `torch_dtype` (or the text config's `dtype`) when it names a float type.
pub(crate) fn conversion_dtype(cfg: &ConfigFile) -> Option<Dtype> {
    let name = cfg.str("torch_dtype").or_else(|| cfg.get("text_config").and_then(|t| t.get("dtype")).and_then(|v| v.as_str()))?;
    ["float16", "bfloat16", "float32"].contains(&name).then(|| Dtype::from_name(name)).flatten()
}

fn compute_dtype(opts: &LoadOptions) -> Result<Dtype> {
    match opts.dtype {
        Some(d) if !d.is_float() => Err(Error::invalid(format!("compute dtype must be a float type, got {d}"))),
        Some(d) => Ok(d),
        None => default_dtype(),
    }
}

/// Builds the model from its weights; every tensor must be used.
fn build(arch: Arch, mut weights: Weights) -> Result<Box<dyn LanguageModel>> {
    let model: Box<dyn LanguageModel> = match arch {
        Arch::Decoder(spec) => Box::new(Decoder::load(&spec, &mut weights)?),
        Arch::Gemma3(spec) => Box::new(gemma3::Gemma3::load(&spec, &mut weights)?),
    };
    weights.finish()?;
    materialize(model.as_ref())?;
    Ok(model)
}

/// Runs a one-token forward pass so every weight is read, converted and checked now
/// rather than during the first generation.
fn materialize(model: &dyn LanguageModel) -> Result<()> {
    let mut caches = model.new_caches();
    let logits = model.forward(&Array::from_slice(&[0i32], &[1, 1])?, &mut caches)?;
    eval(&[&logits])
}
