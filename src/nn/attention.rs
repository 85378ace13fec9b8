//! Multi-head attention with grouped-query heads, optional q/k norms and projection
//! biases, rotary positions and a KV cache — the attention of Llama, Qwen2, Qwen3 and
//! Gemma 3 — and the causal masks it uses.
use super::banded;
use super::quantized_kv_cache::{quantized_sdpa, Fetched};
use super::stacked::Stacked;
use super::{KvCache, Linear, RmsNorm, Rope};
use crate::mlx::{Array, Dtype};
use crate::Result;

#[derive(Clone, Debug)]
pub struct AttentionConfig {
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub head_dim: i32,
    /// Multiplies q·k (usually head_dim^-0.5).
    pub scale: f32,
}

#[derive(Clone)]
pub struct Attention {
    pub cfg: AttentionConfig,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// Per-head RMS norms applied to queries and keys before rotary (Qwen3, Gemma3).
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub rope: Rope,
    /// q, k and v stacked for single-position steps on a GPU (see `stacked`); dropped
    /// whenever the projections are handed out for changes (`linears_mut`).
    pub qkv: Option<Stacked>,
}

/// How a forward pass masks attention; `Causal` also covers a chunk that follows cached
/// positions (the mask aligns to the end of the keys).
#[derive(Clone)]
pub enum Mask {
    None,
    Causal,
    /// `causal_mask(n, offset, Some(window))` for `n` queries over `offset + n` keys, kept
    /// as numbers so that attention can leave out the keys outside a block of queries'
    /// band (see `banded`) instead of scoring them and masking afterwards.
    Window { offset: i32, window: i32 },
    /// Boolean (true = attend) or additive, broadcastable to `[batch, heads, queries, keys]`.
    Array(Array),
}

/// The boolean `[n, offset + n]` mask of `n` queries at positions `offset..offset + n` over
/// keys at `0..offset + n`: each query sees the keys at or before it, and with a `window`
/// only the last `window` of those (itself included). Built with the same ops as mlx-lm's
/// `create_causal_mask`.
pub fn causal_mask(n: i32, offset: i32, window: Option<i32>) -> Result<Array> {
    band_mask(offset, n, 0, offset + n, window)
}

/// The causal (and with a `window`, banded) mask of `n` queries at positions
/// `first_query..first_query + n` over the keys at positions `key_start..key_end`.
pub(super) fn band_mask(first_query: i32, n: i32, key_start: i32, key_end: i32, window: Option<i32>) -> Result<Array> {
    let keys = Array::arange(key_start as f64, key_end as f64, 1.0, Dtype::I32)?.expand_dims(&[0])?;
    let queries = Array::arange(first_query as f64, (first_query + n) as f64, 1.0, Dtype::I32)?.expand_dims(&[1])?;
    let mask = queries.greater_equal(&keys)?;
    match window {
        Some(w) => mask.logical_and(&queries.less(&keys.add_scalar(w as f64)?)?),
        None => Ok(mask),
    }
}

impl Attention {
    /// `x: [batch, seq, hidden]` → `[batch, seq, hidden]`, appending to `cache`.
    pub fn forward(&self, x: &Array, mask: &Mask, cache: &mut KvCache) -> Result<Array> {
        let shape = x.shape();
        let (b, l) = (shape[0], shape[1]);
        let one = l == 1;
        let c = &self.cfg;
        let norm = |h: Array, norm: Option<&RmsNorm>| match norm {
            Some(n) => n.forward(&h),
            None => Ok(h),
        };
        // One position through stacked projections: q, k and v come out head-shaped from one
        // reshape and one split (see `Stacked::forward_heads`).
        let stacked_heads = match &self.qkv {
            Some(s) if one => s.forward_heads(x, &[c.n_heads, c.n_kv_heads, c.n_kv_heads])?,
            _ => None,
        };
        let (q, k, v) = match stacked_heads {
            Some(parts) => {
                let [q, k, v]: [Array; 3] =
                    parts.try_into().map_err(|_| crate::Error::Mlx("stacked q/k/v did not give three parts".into()))?;
                (norm(q, self.q_norm.as_ref())?, norm(k, self.k_norm.as_ref())?, v)
            }
            None => {
                // `[b, l, n·d]` → `[b, n, l, d]`. For one position the two layouts hold the
                // same bytes in the same order, so a reshape alone does it: one graph node
                // instead of two, and at decode sizes each node's bookkeeping costs more
                // than its arithmetic.
                let heads = |h: Array, n: i32, nrm: Option<&RmsNorm>| -> Result<Array> {
                    if one {
                        norm(h.reshape(&[b, n, 1, -1])?, nrm)
                    } else {
                        norm(h.reshape(&[b, l, n, -1])?, nrm)?.transpose(&[0, 2, 1, 3])
                    }
                };
                let [q, k, v] = Stacked::project(self.qkv.as_ref(), [&self.q_proj, &self.k_proj, &self.v_proj], x)?;
                (heads(q, c.n_heads, self.q_norm.as_ref())?, heads(k, c.n_kv_heads, self.k_norm.as_ref())?, heads(v, c.n_kv_heads, None)?)
            }
        };
        // And back: `[b, n, l, d]` → `[b, l, n·d]`.
        let merge = |o: Array| -> Result<Array> {
            if one {
                o.reshape(&[b, 1, -1])
            } else {
                o.transpose(&[0, 2, 1, 3])?.reshape(&[b, l, -1])
            }
        };
        // A batch cache gives one offset per row (rows are left-padded differently).
        let offset = cache.rope_offset();
        let q = self.rope.forward(&q, offset)?;
        let k = self.rope.forward(&k, offset)?;
        // For Model::inspect_attention: every position, before a rotating cache drops any.
        super::capture::record(&q, &k);
        let (k, v) = match cache {
            // Once quantized, the cache is read by mlx-lm's quantized attention.
            KvCache::Quantized(qc) => match qc.update_and_fetch(&k, &v)? {
                Fetched::Packed(k, v) => {
                    let o = quantized_sdpa(&q, &k, &v, c.scale, mask, qc.params)?;
                    return self.o_proj.forward(&merge(o)?);
                }
                Fetched::Dense(k, v) => (k, v),
            },
            _ => cache.update_and_fetch(&k, &v)?,
        };
        let o = banded::attention(&q, &k, &v, c.scale, mask)?;
        self.o_proj.forward(&merge(o)?)
    }
}

impl Attention {
    /// Stacks q, k and v for single-position steps where that pays (see `stacked`).
    pub fn stack_projections(&mut self) -> Result<()> {
        self.qkv = Stacked::new(&mut [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj])?;
        Ok(())
    }

    /// The projections by the names mlx-lm gives them inside a decoder layer. Whoever takes
    /// them may change them (adapters, fusing), so the stacked copy is dropped.
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 4] {
        self.qkv = None;
        [
            ("self_attn.q_proj", &mut self.q_proj),
            ("self_attn.k_proj", &mut self.k_proj),
            ("self_attn.v_proj", &mut self.v_proj),
            ("self_attn.o_proj", &mut self.o_proj),
        ]
    }
}
