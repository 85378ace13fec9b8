//! Qwen2 and Qwen2.5: the Llama decoder with biases on the q, k and v projections; the
//! head size is always hidden / heads.
use super::config::ConfigFile;
use super::decoder::DecoderSpec;
use crate::Result;

pub fn spec(cfg: &ConfigFile) -> Result<DecoderSpec> {
    let hidden = cfg.dim("hidden_size")?;
    let n_heads = cfg.dim("num_attention_heads")?;
    Ok(DecoderSpec {
        model_type: "qwen2".into(),
        hidden,
        intermediate: cfg.dim("intermediate_size")?,
        layers: cfg.dim("num_hidden_layers")?,
        n_heads,
        n_kv_heads: cfg.dim("num_key_value_heads")?,
        head_dim: hidden / n_heads,
        head_dim_derived: true,
        vocab: cfg.dim("vocab_size")?,
        norm_eps: cfg.f64("rms_norm_eps")? as f32,
        rope_base: cfg.rope_theta(Some(1_000_000.0))? as f32,
        rope_traditional: cfg.bool_or("rope_traditional", false)?,
        rope_scaling: cfg.get("rope_scaling").cloned(),
        qkv_bias: true,
        o_bias: false,
        mlp_bias: false,
        qk_norm: false,
        tie_embeddings: cfg.bool_or("tie_word_embeddings", true)?,
        max_position_embeddings: cfg.opt_dim("max_position_embeddings")?,
    })
}
