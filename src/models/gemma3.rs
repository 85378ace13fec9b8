//! Gemma 3 text models: `gemma3_text` checkpoints (1B), and the language model inside the
//! multimodal `gemma3` ones (4B and up: settings under `text_config`, tensors under
//! `language_model.`; the vision tower and projector are skipped).
//!
//! How it differs from the Llama-style decoder:
//! - the embeddings are multiplied by sqrt(hidden), a factor first rounded to bfloat16;
//! - every RMS norm scales by (1 + weight); each layer has four — before and after
//!   attention, before and after the MLP — so block outputs are normalised before they are
//!   added to the residual stream; queries and keys are normalised per head too;
//! - the MLP is gated by the tanh-approximated GELU;
//! - attention is scaled by query_pre_attn_scalar^-0.5 rather than head_dim^-0.5;
//! - most layers attend within a sliding window (a rotating KV cache bounds their memory)
//!   with their own rotary base, `rope_local_base_freq`; the others are global, with
//!   `rope_theta` and the config's rotary scaling;
//! - the output head is the embedding unless the checkpoint has its own `lm_head`, and
//!   logits may be soft-capped (`final_logit_softcapping`).
//!
//! Absent fields take the defaults mlx-lm (and transformers) give them: the released
//! multimodal configs list only what differs from those.
use serde_json::Value;

use super::block::{self, Block};
use super::config::ConfigFile;
use super::dims::Dims;
use super::shard::{self, AttentionShape};
use super::weights::Weights;
use super::{LanguageModel, LayerLinears, ModelInfo};
use crate::error::{Error, Result};
use crate::mlx::{Array, Dtype};
use crate::nn::{Activation, Attention, Embedding, KvCache, Linear, Mask, RmsNorm, Rope, SwiGlu};

/// The settings of a Gemma 3 language model, from its config.
#[derive(Clone, Debug)]
pub struct Gemma3Spec {
    pub model_type: String,
    /// Tensors live under `language_model.` next to vision tensors (the `gemma3` layout).
    pub multimodal: bool,
    pub hidden: i32,
    pub intermediate: i32,
    pub layers: i32,
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub head_dim: i32,
    pub vocab: i32,
    pub norm_eps: f32,
    pub query_pre_attn_scalar: f64,
    pub sliding_window: i32,
    /// Per layer: true for sliding-window (local) attention, false for global.
    pub sliding: Vec<bool>,
    pub rope_local_base: f32,
    pub rope_local_scaling: Option<Value>,
    pub rope_global_base: f32,
    pub rope_global_scaling: Option<Value>,
    pub final_logit_softcapping: Option<f64>,
    pub max_position_embeddings: Option<i32>,
}

/// Reads a `gemma3_text` config, or the `text_config` of a `gemma3` one.
pub fn spec(cfg: &ConfigFile) -> Result<Gemma3Spec> {
    let model_type = cfg.str("model_type").unwrap_or("gemma3_text").to_string();
    let multimodal = model_type == "gemma3";
    let section;
    let text = if multimodal {
        section = cfg.section("text_config")?.ok_or_else(|| {
            Error::Config(format!(
                "{}: required field \"text_config\" is missing (a gemma3 config keeps the language model's settings there)",
                cfg.path.display()
            ))
        })?;
        &section
    } else {
        cfg
    };

    // Refused rather than silently computed differently.
    if let Some(v) = text.get("attn_logit_softcapping") {
        return Err(Error::Config(format!(
            "{}: field {:?} is {v}; attention-logit soft-capping is not supported (Gemma 3 releases set it to null)",
            text.path.display(),
            text.field("attn_logit_softcapping")
        )));
    }
    if let Some(v) = text.get("hidden_activation") {
        if v.as_str() != Some("gelu_pytorch_tanh") {
            return Err(text.bad("hidden_activation", "\"gelu_pytorch_tanh\" (the only activation Gemma 3 uses)", v));
        }
    }
    if text.bool_or("use_bidirectional_attention", false)? {
        return Err(Error::Config(format!(
            "{}: field {:?} is true; only causal (generative) Gemma 3 models are supported",
            text.path.display(),
            text.field("use_bidirectional_attention")
        )));
    }

    let layers = text.dim("num_hidden_layers")?;
    // mlx-lm's defaults; a multimodal config's text model defaults to 8 / 4 heads.
    let n_heads = text.opt_dim("num_attention_heads")?.unwrap_or(if multimodal { 8 } else { 4 });
    let n_kv_heads = text.opt_dim("num_key_value_heads")?.unwrap_or(if multimodal { 4 } else { 1 });
    // A multimodal model's vocabulary (with the image tokens' rows) is a top-level field.
    let vocab = if multimodal {
        match cfg.opt_dim("vocab_size")? {
            Some(v) => v,
            None => text.opt_dim("vocab_size")?.unwrap_or(262_208),
        }
    } else {
        text.opt_dim("vocab_size")?.unwrap_or(262_144)
    };
    let query_pre_attn_scalar = text.f64_or("query_pre_attn_scalar", 256.0)?;
    if query_pre_attn_scalar <= 0.0 {
        return Err(text.bad("query_pre_attn_scalar", "a positive number", &query_pre_attn_scalar.into()));
    }
    let final_logit_softcapping = text.opt_f64("final_logit_softcapping")?;
    if let Some(c) = final_logit_softcapping.filter(|c| *c <= 0.0) {
        return Err(text.bad("final_logit_softcapping", "a positive number or null", &c.into()));
    }

    // Rotary settings: Gemma 3's own fields, else transformers 5's per-kind
    // `rope_parameters` ({"full_attention": {...}, "sliding_attention": {...}}).
    let per_kind = text.get("rope_parameters").filter(|p| p.get("full_attention").is_some() || p.get("sliding_attention").is_some());
    let kind = |k: &str| per_kind.and_then(|p| p.get(k)).filter(|v| !v.is_null());
    let theta = |k: &str| kind(k).and_then(|v| v.get("rope_theta")).and_then(Value::as_f64);
    let rope_global_base = text.opt_f64("rope_theta")?.or(theta("full_attention")).unwrap_or(1_000_000.0);
    let rope_local_base = text.opt_f64("rope_local_base_freq")?.or(theta("sliding_attention")).unwrap_or(10_000.0);
    let rope_global_scaling = text.get("rope_scaling").or(kind("full_attention")).cloned();
    let rope_local_scaling = kind("sliding_attention").cloned();

    let (hidden, intermediate) = (text.dim("hidden_size")?, text.dim("intermediate_size")?);
    let head_dim = text.opt_dim("head_dim")?.unwrap_or(256);
    let norm_eps = text.f64_or("rms_norm_eps", 1e-6)? as f32;
    // The shared checks, before `layer_kinds` sizes a list by the layer count.
    Dims {
        hidden,
        intermediate,
        layers,
        n_heads,
        n_kv_heads,
        head_dim,
        head_dim_derived: false,
        vocab,
        norm_eps,
        ropes: vec![
            ("rope_theta", rope_global_base as f32, rope_global_scaling.clone()),
            ("rope_local_base_freq", rope_local_base as f32, rope_local_scaling.clone()),
        ],
    }
    .check(text)?;

    Ok(Gemma3Spec {
        model_type,
        multimodal,
        hidden,
        intermediate,
        layers,
        n_heads,
        n_kv_heads,
        head_dim,
        vocab,
        norm_eps,
        query_pre_attn_scalar,
        sliding_window: text.opt_dim("sliding_window")?.unwrap_or(512),
        sliding: layer_kinds(text, layers)?,
        rope_local_base: rope_local_base as f32,
        rope_local_scaling,
        rope_global_base: rope_global_base as f32,
        rope_global_scaling,
        final_logit_softcapping,
        max_position_embeddings: text.opt_dim("max_position_embeddings")?,
    })
}

/// Which layers are sliding: every layer but each `sliding_window_pattern`-th (default 6),
/// or as listed in `layer_types`. When a config gives both they must agree: mlx-lm follows
/// the pattern, transformers the list.
fn layer_kinds(text: &ConfigFile, layers: i32) -> Result<Vec<bool>> {
    let pattern = text.opt_dim("sliding_window_pattern")?;
    let by_pattern = |p: i32| (0..layers).map(|i| (i + 1) % p != 0).collect::<Vec<bool>>();
    let Some(v) = text.get("layer_types") else { return Ok(by_pattern(pattern.unwrap_or(6))) };
    let want = format!("a list of {layers} \"sliding_attention\" / \"full_attention\" entries (one per layer)");
    let list = v.as_array().filter(|a| a.len() == layers as usize).ok_or_else(|| text.bad("layer_types", &want, v))?;
    let kinds = list
        .iter()
        .map(|t| match t.as_str() {
            Some("sliding_attention") => Ok(true),
            Some("full_attention") => Ok(false),
            _ => Err(text.bad("layer_types", &want, v)),
        })
        .collect::<Result<Vec<bool>>>()?;
    if let Some(p) = pattern {
        if kinds != by_pattern(p) {
            return Err(Error::Config(format!(
                "{}: {:?} does not follow {:?} = {p} (every {p}th layer global); which one holds is ambiguous",
                text.path.display(),
                text.field("layer_types"),
                text.field("sliding_window_pattern")
            )));
        }
    }
    Ok(kinds)
}

#[derive(Clone)]
struct Layer {
    input_norm: RmsNorm,
    attn: Attention,
    post_attn_norm: RmsNorm,
    pre_ff_norm: RmsNorm,
    mlp: SwiGlu,
    post_ff_norm: RmsNorm,
    sliding: bool,
}

impl Block for Layer {
    fn forward(&self, h: &Array, mask: &Mask, cache: &mut KvCache) -> Result<Array> {
        let r = self.attn.forward(&self.input_norm.forward(h)?, mask, cache)?;
        let h2 = residual(h, &self.post_attn_norm.forward(&r)?)?;
        let r = self.mlp.forward(&self.pre_ff_norm.forward(&h2)?)?;
        residual(&h2, &self.post_ff_norm.forward(&r)?)
    }
    fn parts_mut(&mut self) -> (&mut Attention, &mut SwiGlu) {
        (&mut self.attn, &mut self.mlp)
    }
}

pub struct Gemma3 {
    embed: Embedding,
    /// sqrt(hidden) rounded to bfloat16, in the compute dtype.
    embed_scale: Array,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    sliding_window: i32,
    final_logit_softcapping: Option<f64>,
    info: ModelInfo,
    /// `language_model.` in the multimodal checkpoints' key names, else empty.
    root: &'static str,
    grad_checkpoint: bool,
}

/// Gemma's `(1 + weight)` norm over `name.weight: [dim]`.
fn norm(w: &mut Weights, name: &str, dim: i32, eps: f32) -> Result<RmsNorm> {
    RmsNorm::one_plus(&w.take(&format!("{name}.weight"), &[dim])?, eps)
}

impl Gemma3 {
    pub fn load(s: &Gemma3Spec, w: &mut Weights) -> Result<Gemma3> {
        let root = if s.multimodal { "language_model." } else { "" };
        let eps = s.norm_eps;
        let embed = w.embedding(&format!("{root}model.embed_tokens"), s.vocab, s.hidden)?;
        let mut layers = Vec::with_capacity(s.layers as usize);
        for (i, &sliding) in s.sliding.iter().enumerate() {
            let p = format!("{root}model.layers.{i}");
            let a = format!("{p}.self_attn");
            let rope = if sliding {
                Rope::from_config(s.head_dim, s.rope_local_base, false, s.rope_local_scaling.as_ref())?
            } else {
                Rope::from_config(s.head_dim, s.rope_global_base, false, s.rope_global_scaling.as_ref())?
            };
            let shape = AttentionShape {
                hidden: s.hidden,
                n_heads: s.n_heads,
                n_kv_heads: s.n_kv_heads,
                head_dim: s.head_dim,
                qkv_bias: false,
                o_bias: false,
            };
            let parts = shard::attention(w, &a, &shape)?;
            let attn = Attention {
                // The scale in double precision, then rounded, as the reference computes it.
                cfg: parts.config(s.head_dim, s.query_pre_attn_scalar.powf(-0.5) as f32),
                q_proj: parts.q,
                k_proj: parts.k,
                v_proj: parts.v,
                o_proj: parts.o,
                q_norm: Some(norm(w, &format!("{a}.q_norm"), s.head_dim, eps)?),
                k_norm: Some(norm(w, &format!("{a}.k_norm"), s.head_dim, eps)?),
                rope,
                qkv: None,
            };
            let [gate, up, down] = shard::mlp(w, &format!("{p}.mlp"), s.hidden, s.intermediate, false)?;
            layers.push(Layer {
                input_norm: norm(w, &format!("{p}.input_layernorm"), s.hidden, eps)?,
                attn,
                post_attn_norm: norm(w, &format!("{p}.post_attention_layernorm"), s.hidden, eps)?,
                pre_ff_norm: norm(w, &format!("{p}.pre_feedforward_layernorm"), s.hidden, eps)?,
                mlp: SwiGlu { gate, up, down, activation: Activation::GeluTanh, gate_up: None },
                post_ff_norm: norm(w, &format!("{p}.post_feedforward_layernorm"), s.hidden, eps)?,
                sliding,
            });
            if w.stack_projections {
                block::stack_projections(layers.last_mut().expect("a layer was just pushed"))?;
            }
        }
        let norm_out = norm(w, &format!("{root}model.norm"), s.hidden, eps)?;
        // As mlx-lm decides it: tied exactly when the checkpoint has no head of its own.
        let lm_head = w.linear_opt(&format!("{root}lm_head"), s.vocab, s.hidden, false)?;
        if s.multimodal {
            w.discard(|k| k.starts_with("vision_tower.") || k.starts_with("multi_modal_projector."));
        }
        let dtype = embed.dtype();
        let embed_scale = Array::full(&[], (s.hidden as f64).sqrt(), Dtype::Bf16)?.astype(dtype)?;
        embed_scale.eval()?;
        let info = ModelInfo {
            model_type: s.model_type.clone(),
            vocab_size: s.vocab,
            hidden_size: s.hidden,
            num_layers: s.layers,
            num_heads: s.n_heads,
            num_kv_heads: s.n_kv_heads,
            head_dim: s.head_dim,
            max_position_embeddings: s.max_position_embeddings,
            tied_embeddings: lm_head.is_none(),
            dtype,
            quantization: w.quant_info(),
        };
        Ok(Gemma3 {
            embed,
            embed_scale,
            layers,
            norm: norm_out,
            lm_head,
            sliding_window: s.sliding_window,
            final_logit_softcapping: s.final_logit_softcapping,
            info,
            root,
            grad_checkpoint: false,
        })
    }

    /// The mask every layer of one kind uses for `n` new positions, built (as mlx-lm
    /// builds it) from the first such layer's cache before the positions are added.
    fn mask(&self, caches: &[KvCache], sliding: bool, n: i32) -> Result<Mask> {
        let window = if sliding { Some(self.sliding_window) } else { None };
        match self.layers.iter().zip(caches).find(|(l, _)| l.sliding == sliding) {
            Some((_, cache)) => cache.make_mask(n, window),
            None => Ok(Mask::None),
        }
    }
}

/// `x + y`; in float16, summed in float32 and clipped to float16's range, since Gemma's
/// residual stream can exceed it (as mlx-lm does).
fn residual(x: &Array, y: &Array) -> Result<Array> {
    if x.dtype() != Dtype::F16 {
        return x.add(y);
    }
    let bound = 65504.0f32;
    let sum = x.astype(Dtype::F32)?.add(&y.astype(Dtype::F32)?)?;
    sum.clip(Some(&Array::scalar(-bound)?), Some(&Array::scalar(bound)?))?.astype(Dtype::F16)
}

impl LanguageModel for Gemma3 {
    fn forward_hidden(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        if caches.len() != self.layers.len() {
            return Err(Error::invalid(format!("{} KV caches given for {} layers", caches.len(), self.layers.len())));
        }
        let n = tokens.dim(1)?;
        let mut h = self.embed.forward(tokens)?.mul(&self.embed_scale)?;
        let global_mask = self.mask(caches, false, n)?;
        let sliding_mask = self.mask(caches, true, n)?;
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            let mask = if layer.sliding { &sliding_mask } else { &global_mask };
            h = block::run(layer, &h, mask, cache, self.grad_checkpoint)?;
        }
        self.norm.forward(&h)
    }

    fn logits(&self, h: &Array) -> Result<Array> {
        let logits = match &self.lm_head {
            Some(head) => head.forward(h)?,
            None => self.embed.as_linear(h)?,
        };
        match self.final_logit_softcapping {
            // tanh(logits / cap) * cap, in the compute dtype.
            Some(cap) => logits.div(&logits.scalar_like(cap)?)?.tanh()?.mul(&logits.scalar_like(cap)?),
            None => Ok(logits),
        }
    }

    /// A rotating cache of `sliding_window` positions for each sliding layer, a full one
    /// for each global layer.
    fn new_caches(&self) -> Vec<KvCache> {
        self.layers
            .iter()
            .map(|l| if l.sliding { KvCache::rotating(self.sliding_window, 0) } else { KvCache::new() })
            .collect()
    }

    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn layer_linears(&mut self) -> Vec<LayerLinears<'_>> {
        let root = self.root;
        let layers = self.layers.iter_mut().enumerate();
        layers.map(|(i, l)| l.linears(format!("{root}model.layers.{i}"))).collect()
    }

    fn set_grad_checkpoint(&mut self, on: bool) {
        self.grad_checkpoint = on;
    }
}
