//! Llama (2, 3, 3.1, 3.2 and Llama-architecture models such as SmolLM): the plain
//! pre-norm decoder, with optional attention/MLP biases and Llama 3 or linear rotary
//! scaling.
use super::config::ConfigFile;
use super::decoder::DecoderSpec;
use crate::Result;

pub fn spec(cfg: &ConfigFile) -> Result<DecoderSpec> {
    let hidden = cfg.dim("hidden_size")?;
    let n_heads = cfg.dim("num_attention_heads")?;
    let attention_bias = cfg.bool_or("attention_bias", false)?;
    Ok(DecoderSpec {
        model_type: "llama".into(),
        hidden,
        intermediate: cfg.dim("intermediate_size")?,
        layers: cfg.dim("num_hidden_layers")?,
        n_heads,
        n_kv_heads: cfg.opt_dim("num_key_value_heads")?.unwrap_or(n_heads),
        head_dim: cfg.opt_dim("head_dim")?.unwrap_or(hidden / n_heads),
        head_dim_derived: cfg.get("head_dim").is_none(),
        vocab: cfg.dim("vocab_size")?,
        norm_eps: cfg.f64("rms_norm_eps")? as f32,
        rope_base: cfg.rope_theta(Some(10000.0))? as f32,
        rope_traditional: cfg.bool_or("rope_traditional", false)?,
        rope_scaling: cfg.rope_scaling().cloned(),
        qkv_bias: attention_bias,
        o_bias: attention_bias,
        mlp_bias: cfg.bool_or("mlp_bias", false)?,
        qk_norm: false,
        // mlx-lm's default when the field is absent.
        tie_embeddings: cfg.bool_or("tie_word_embeddings", true)?,
        max_position_embeddings: cfg.opt_dim("max_position_embeddings")?,
    })
}
