//! Qwen3 (dense): the Llama decoder with per-head RMS norms on queries and keys, no
//! biases, and an explicit head size that need not equal hidden / heads.
use super::config::ConfigFile;
use super::decoder::DecoderSpec;
use crate::Result;

pub fn spec(cfg: &ConfigFile) -> Result<DecoderSpec> {
    Ok(DecoderSpec {
        model_type: "qwen3".into(),
        hidden: cfg.dim("hidden_size")?,
        intermediate: cfg.dim("intermediate_size")?,
        layers: cfg.dim("num_hidden_layers")?,
        n_heads: cfg.dim("num_attention_heads")?,
        n_kv_heads: cfg.dim("num_key_value_heads")?,
        head_dim: cfg.dim("head_dim")?,
        head_dim_derived: false,
        vocab: cfg.dim("vocab_size")?,
        norm_eps: cfg.f64("rms_norm_eps")? as f32,
        rope_base: cfg.rope_theta(None)? as f32,
        rope_traditional: false,
        rope_scaling: cfg.rope_scaling().cloned(),
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        qk_norm: true,
        tie_embeddings: cfg.bool_or("tie_word_embeddings", true)?,
        max_position_embeddings: cfg.opt_dim("max_position_embeddings")?,
    })
}
