//! The pre-norm decoder stack that Llama, Qwen2 and Qwen3 share:
//! `h += attn(norm(h)); h += mlp(norm(h))` per layer, a final norm, and an output head
//! (its own matrix, or the embedding table when tied). A family file describes its
//! variant with a `DecoderSpec`; the differences are data, not code.
use serde_json::Value;

use super::block::{self, Block};
use super::dims::Dims;
use super::shard::{self, AttentionShape};
use super::weights::Weights;
use super::{LayerLinears, ModelInfo};
use crate::mlx::Array;
use crate::nn::attention::Mask;
use crate::nn::mlp::Activation;
use crate::nn::{Attention, Embedding, KvCache, Linear, RmsNorm, Rope, SwiGlu};
use crate::Result;

/// What distinguishes one Llama-style family from another.
#[derive(Clone, Debug)]
pub struct DecoderSpec {
    pub model_type: String,
    pub hidden: i32,
    pub intermediate: i32,
    pub layers: i32,
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub head_dim: i32,
    /// True when `head_dim` is `hidden / n_heads` rather than a config field.
    pub head_dim_derived: bool,
    pub vocab: i32,
    pub norm_eps: f32,
    pub rope_base: f32,
    pub rope_traditional: bool,
    pub rope_scaling: Option<Value>,
    /// Biases on the q, k and v projections (Qwen2; Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama's `attention_bias` covers it too).
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-head RMS norms on queries and keys (Qwen3).
    pub qk_norm: bool,
    pub tie_embeddings: bool,
    pub max_position_embeddings: Option<i32>,
}

impl DecoderSpec {
    /// The dimensions the shared checks look at.
    pub fn dims(&self) -> Dims {
        Dims {
            hidden: self.hidden,
            intermediate: self.intermediate,
            layers: self.layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            head_dim_derived: self.head_dim_derived,
            vocab: self.vocab,
            norm_eps: self.norm_eps,
            ropes: vec![("rope_theta", self.rope_base, self.rope_scaling.clone())],
        }
    }
}

#[derive(Clone)]
struct Layer {
    input_norm: RmsNorm,
    attn: Attention,
    post_attn_norm: RmsNorm,
    mlp: SwiGlu,
}

impl Block for Layer {
    fn forward(&self, h: &Array, mask: &Mask, cache: &mut KvCache) -> Result<Array> {
        let r = self.attn.forward(&self.input_norm.forward(h)?, mask, cache)?;
        let h2 = h.add(&r)?;
        let r = self.mlp.forward(&self.post_attn_norm.forward(&h2)?)?;
        h2.add(&r)
    }
    fn parts_mut(&mut self) -> (&mut Attention, &mut SwiGlu) {
        (&mut self.attn, &mut self.mlp)
    }
}

pub struct Decoder {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    info: ModelInfo,
    grad_checkpoint: bool,
}

impl Decoder {
    pub fn load(spec: &DecoderSpec, w: &mut Weights) -> Result<Decoder> {
        let s = spec;
        let embed = w.embedding("model.embed_tokens", s.vocab, s.hidden)?;
        let mut layers = Vec::with_capacity(s.layers as usize);
        for i in 0..s.layers {
            let p = format!("model.layers.{i}");
            let parts = shard::attention(
                w,
                &format!("{p}.self_attn"),
                &AttentionShape {
                    hidden: s.hidden,
                    n_heads: s.n_heads,
                    n_kv_heads: s.n_kv_heads,
                    head_dim: s.head_dim,
                    qkv_bias: s.qkv_bias,
                    o_bias: s.o_bias,
                },
            )?;
            let a = format!("{p}.self_attn");
            let attn = Attention {
                cfg: parts.config(s.head_dim, (s.head_dim as f32).powf(-0.5)),
                q_norm: if s.qk_norm { Some(w.rms_norm(&format!("{a}.q_norm"), s.head_dim, s.norm_eps)?) } else { None },
                k_norm: if s.qk_norm { Some(w.rms_norm(&format!("{a}.k_norm"), s.head_dim, s.norm_eps)?) } else { None },
                rope: Rope::from_config(s.head_dim, s.rope_base, s.rope_traditional, s.rope_scaling.as_ref())?,
                q_proj: parts.q,
                k_proj: parts.k,
                v_proj: parts.v,
                o_proj: parts.o,
                qkv: None,
            };
            let [gate, up, down] = shard::mlp(w, &format!("{p}.mlp"), s.hidden, s.intermediate, s.mlp_bias)?;
            layers.push(Layer {
                input_norm: w.rms_norm(&format!("{p}.input_layernorm"), s.hidden, s.norm_eps)?,
                attn,
                post_attn_norm: w.rms_norm(&format!("{p}.post_attention_layernorm"), s.hidden, s.norm_eps)?,
                mlp: SwiGlu { gate, up, down, activation: Activation::Silu, gate_up: None },
            });
            if w.stack_projections {
                block::stack_projections(layers.last_mut().expect("a layer was just pushed"))?;
            }
        }
        let norm_out = w.rms_norm("model.norm", s.hidden, s.norm_eps)?;
        let lm_head = if s.tie_embeddings {
            // A tied checkpoint may still carry a copy of the head; it is not used.
            w.discard(|k| k == "lm_head.weight");
            None
        } else {
            Some(w.linear("lm_head", s.vocab, s.hidden, false)?)
        };
        // Precomputed rotary tables some exporters include; the model computes its own.
        w.discard(|k| k.contains("self_attn.rotary_emb.inv_freq"));
        let info = ModelInfo {
            model_type: s.model_type.clone(),
            vocab_size: s.vocab,
            hidden_size: s.hidden,
            num_layers: s.layers,
            num_heads: s.n_heads,
            num_kv_heads: s.n_kv_heads,
            head_dim: s.head_dim,
            max_position_embeddings: s.max_position_embeddings,
            tied_embeddings: s.tie_embeddings,
            dtype: embed.dtype(),
            quantization: w.quant_info(),
        };
        Ok(Decoder { embed, layers, norm: norm_out, lm_head, info, grad_checkpoint: false })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn layer_linears(&mut self) -> Vec<LayerLinears<'_>> {
        let layers = self.layers.iter_mut().enumerate();
        layers.map(|(i, l)| l.linears(format!("model.layers.{i}"))).collect()
    }

    pub fn set_grad_checkpoint(&mut self, on: bool) {
        self.grad_checkpoint = on;
    }

    pub fn new_caches(&self) -> Vec<KvCache> {
        self.layers.iter().map(|_| KvCache::new()).collect()
    }

    /// `tokens: [batch, seq]` (integer ids) → final-normed hidden states
    /// `[batch, seq, hidden]`.
    pub fn forward_hidden(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        let mut h = self.embed.forward(tokens)?;
        // The cache knows what to mask: nothing for one new position of one sequence,
        // causal for several, padding too for a left-padded batch.
        let mask = match caches.first() {
            Some(c) => c.make_mask(tokens.shape()[1], None)?,
            None => Mask::None,
        };
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            h = block::run(layer, &h, &mask, cache, self.grad_checkpoint)?;
        }
        self.norm.forward(&h)
    }

    /// The output head: hidden states `[..., hidden]` → logits `[..., vocab]`.
    pub fn logits(&self, h: &Array) -> Result<Array> {
        match &self.lm_head {
            Some(head) => head.forward(h),
            None => self.embed.as_linear(h),
        }
    }

    /// `tokens: [batch, seq]` (integer ids) → logits `[batch, seq, vocab]`.
    pub fn forward(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        self.logits(&self.forward_hidden(tokens, caches)?)
    }
}
