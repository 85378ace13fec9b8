//! A KV cache whose keys and values are stored MLX-quantized, and the attention that reads
//! them — mlx-lm's `QuantizedKVCache` and `quantized_scaled_dot_product_attention`, as
//! `generate_step(..., kv_bits=, kv_group_size=, quantized_kv_start=)` uses them:
//!
//! - the cache starts as a full one; once it holds `start` positions (and at least one) it
//!   is converted, before the next positions are added — the state mlx-lm reaches by
//!   converting right after the forward pass that filled it. The conversion quantizes the
//!   whole buffer, unfilled capacity included, as mlx-lm's `to_quantized` does;
//! - after that, new keys and values are quantized (groups along the head dimension) and
//!   written into packed buffers grown in blocks of 256 positions;
//! - attention is two quantized matmuls with a softmax between them.
use super::attention::{causal_mask, Mask};
use super::kv_cache::KvCache;
use crate::error::{Error, Result};
use crate::mlx::quant::{quantize, quantized_matmul, QuantMode};
use crate::mlx::{concatenate, where_, Array, Dtype};
use crate::Result as R;

/// Positions allocated at a time (mlx-lm's `QuantizedKVCache.step`).
const STEP: i32 = 256;

/// mlx-lm's `kv_bits`, `kv_group_size` and `quantized_kv_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvQuantization {
    pub bits: i32,
    pub group_size: i32,
    /// Positions held before the cache is quantized (mlx-lm's default: 5000; 0 quantizes
    /// after the first forward pass).
    pub start: i32,
}

impl KvQuantization {
    /// mlx-lm's defaults for `kv_group_size` and `quantized_kv_start`.
    pub fn new(bits: i32) -> KvQuantization {
        KvQuantization { bits, group_size: 64, start: 5000 }
    }

    pub fn validate(&self) -> Result<()> {
        if ![2, 3, 4, 5, 6, 8].contains(&self.bits) || ![32, 64, 128].contains(&self.group_size) || self.start < 0 {
            return Err(Error::invalid(format!(
                "KV cache quantization: {} bits, group size {}, start {} (bits must be 2, 3, 4, 5, 6 or 8, \
                 the group size 32, 64 or 128, the start at least 0)",
                self.bits, self.group_size, self.start
            )));
        }
        Ok(())
    }
}

/// Turns a model's fresh caches into quantizing ones. mlx-lm quantizes full caches only
/// (its rotating cache's `to_quantized` raises), so a model with sliding-window layers
/// (Gemma 3) is refused, as mlx-lm refuses it.
pub fn quantize_caches(caches: &mut [KvCache], q: KvQuantization) -> Result<()> {
    q.validate()?;
    for (i, c) in caches.iter_mut().enumerate() {
        match c {
            KvCache::Full(_) if c.is_empty() => *c = KvCache::quantized(q),
            KvCache::Quantized(_) => {}
            KvCache::Rotating(_) => {
                return Err(Error::invalid(format!(
                    "KV cache quantization: layer {i} keeps a sliding-window cache, which cannot be quantized (mlx-lm does not either)"
                )))
            }
            KvCache::Full(_) => return Err(Error::invalid("KV cache quantization applies to empty caches only")),
            KvCache::Batch(_) => {
                return Err(Error::invalid("KV cache quantization is not available for batched generation"))
            }
            KvCache::Uncached => return Err(Error::invalid("KV cache quantization needs a cache, not an uncached pass")),
        }
    }
    Ok(())
}

/// Packed `[batch, kv_heads, positions, head_dim]`: words, scales, biases.
type Packed = [Array; 3];

#[derive(Clone)]
pub struct QuantizedKvCache {
    pub params: KvQuantization,
    /// The full cache used until `params.start` positions are held.
    dense: Option<Box<KvCache>>,
    keys: Option<Packed>,
    values: Option<Packed>,
    offset: i32,
}

/// What attention reads: plain keys and values before the conversion, packed after it.
pub enum Fetched {
    Dense(Array, Array),
    Packed(Packed, Packed),
}

impl QuantizedKvCache {
    pub fn new(params: KvQuantization) -> QuantizedKvCache {
        QuantizedKvCache { params, dense: Some(Box::new(KvCache::new())), keys: None, values: None, offset: 0 }
    }

    pub fn offset(&self) -> i32 {
        self.dense.as_ref().map_or(self.offset, |d| d.offset())
    }

    /// The buffers to evaluate after a prefill chunk.
    pub fn state(&self) -> Vec<&Array> {
        match &self.dense {
            Some(d) => d.state(),
            None => self.keys.iter().chain(self.values.iter()).flat_map(|p| p.iter()).collect(),
        }
    }

    /// Forgets the last `n` positions (`n` at most the offset).
    pub fn trim(&mut self, n: i32) -> i32 {
        match &mut self.dense {
            Some(d) => d.trim(n),
            None => {
                let n = n.min(self.offset).max(0);
                self.offset -= n;
                n
            }
        }
    }

    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<Fetched> {
        let p = self.params;
        if let Some(d) = &mut self.dense {
            if d.offset() < p.start.max(1) {
                let (k, v) = d.update_and_fetch(keys, values)?;
                return Ok(Fetched::Dense(k, v));
            }
            let q = |a: &Array| -> R<Packed> { pack(quantize(a, p.group_size, p.bits, QuantMode::Affine)?) };
            let state = d.state();
            self.keys = Some(q(state[0])?);
            self.values = Some(q(state[1])?);
            self.offset = d.offset();
            self.dense = None;
        }
        let n = keys.shape()[2];
        let prev = self.offset;
        let cap = self.keys.as_ref().map_or(0, |k| k[0].shape()[2]);
        if self.keys.is_none() || prev + n > cap {
            let new_steps = (STEP + n - 1) / STEP * STEP;
            let grow = |x: Packed| -> R<Packed> {
                let x = if prev % STEP != 0 { map(&x, |a| a.slice_axis(2, 0, prev))? } else { x };
                map(&x, |a| {
                    let mut shape = a.shape();
                    shape[2] = new_steps;
                    concatenate(&[a, &Array::zeros(&shape, a.dtype())?], 2)
                })
            };
            match (self.keys.take(), self.values.take()) {
                (Some(k), Some(v)) => {
                    self.keys = Some(grow(k)?);
                    self.values = Some(grow(v)?);
                }
                _ => {
                    self.keys = Some(empty(keys, new_steps, p)?);
                    self.values = Some(empty(values, new_steps, p)?);
                }
            }
        }
        self.offset += n;
        let qk = quantize(keys, p.group_size, p.bits, QuantMode::Affine)?;
        let qv = quantize(values, p.group_size, p.bits, QuantMode::Affine)?;
        let (Some(k), Some(v)) = (self.keys.take(), self.values.take()) else { unreachable!("buffers set above") };
        let write = |buf: &Packed, new: Packed| -> R<Packed> {
            let mut out = Vec::with_capacity(3);
            for (b, s) in buf.iter().zip(new.iter()) {
                let mut hi = b.shape();
                hi[2] = prev + n;
                out.push(b.slice_update(s, &[0, 0, prev, 0], &hi, &[1, 1, 1, 1])?);
            }
            to_packed(out)
        };
        let (k, v) = (write(&k, pack(qk)?)?, write(&v, pack(qv)?)?);
        let fetched = if self.offset == k[0].shape()[2] {
            (clone3(&k)?, clone3(&v)?)
        } else {
            let off = self.offset;
            (map(&k, |a| a.slice_axis(2, 0, off))?, map(&v, |a| a.slice_axis(2, 0, off))?)
        };
        self.keys = Some(k);
        self.values = Some(v);
        Ok(Fetched::Packed(fetched.0, fetched.1))
    }
}

fn pack(q: crate::mlx::quant::Quantized) -> R<Packed> {
    let biases = q.biases.ok_or_else(|| Error::Mlx("affine quantization returned no biases".into()))?;
    Ok([q.weight, q.scales, biases])
}

fn to_packed(v: Vec<Array>) -> R<Packed> {
    v.try_into().map_err(|_| Error::Mlx("a packed cache buffer needs three arrays".into()))
}

fn map(x: &Packed, f: impl Fn(&Array) -> R<Array>) -> R<Packed> {
    to_packed(x.iter().map(f).collect::<R<Vec<_>>>()?)
}

fn clone3(x: &Packed) -> R<Packed> {
    map(x, |a| Ok(a.clone()))
}

/// Zeroed packed buffers for `steps` positions of `like` (`[b, h, n, dim]`).
fn empty(like: &Array, steps: i32, p: KvQuantization) -> R<Packed> {
    let s = like.shape();
    let (b, h, dim) = (s[0], s[1], s[3]);
    let per_word = 32 / p.bits;
    Ok([
        Array::zeros(&[b, h, steps, dim / per_word], Dtype::U32)?,
        Array::zeros(&[b, h, steps, dim / p.group_size], like.dtype())?,
        Array::zeros(&[b, h, steps, dim / p.group_size], like.dtype())?,
    ])
}

/// The most negative finite value of `dtype` (`mx.finfo(dtype).min`).
fn finfo_min(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F16 => -65504.0,
        Dtype::Bf16 => -3.3895313892515355e38,
        _ => f32::MIN as f64,
    }
}

/// `softmax(q kᵀ · scale + mask) v` over packed keys and values, queries
/// `[batch, heads, L, head_dim]`, grouped-query heads included.
pub fn quantized_sdpa(q: &Array, keys: &Packed, values: &Packed, scale: f32, mask: &Mask, p: KvQuantization) -> Result<Array> {
    let s = q.shape();
    let (b, n_q, l, d) = (s[0], s[1], s[2], s[3]);
    let n_kv = keys[0].shape()[1];
    let repeats = n_q / n_kv;
    let mut queries = q.mul_scalar(scale as f64)?;
    let (mut keys, mut values) = (clone3(keys)?, clone3(values)?);
    if repeats > 1 {
        queries = queries.reshape(&[b, n_kv, repeats, l, d])?;
        keys = map(&keys, |a| a.expand_dims(&[-3]))?;
        values = map(&values, |a| a.expand_dims(&[-3]))?;
    }
    let qmm = |x: &Array, w: &Packed, transpose: bool| {
        quantized_matmul(x, &w[0], &w[1], Some(&w[2]), transpose, p.group_size, p.bits, QuantMode::Affine)
    };
    let mut scores = qmm(&queries, &keys, true)?;
    let sh = scores.shape();
    let (ql, kl) = (sh[sh.len() - 2], sh[sh.len() - 1]);
    let mask = match mask {
        Mask::None => None,
        Mask::Causal => Some(causal_mask(ql, kl - ql, None)?),
        Mask::Window { offset, window } => Some(causal_mask(ql, *offset, Some(*window))?),
        Mask::Array(m) if repeats > 1 && m.ndim() > 3 => Some(m.expand_dims(&[-3])?),
        Mask::Array(m) => Some(m.clone()),
    };
    if let Some(m) = mask {
        scores = if m.dtype() == Dtype::Bool {
            where_(&m, &scores, &scores.scalar_like(finfo_min(scores.dtype()))?)?
        } else {
            scores.add(&m)?
        };
    }
    let scores = scores.softmax(&[-1], true)?;
    let out = qmm(&scores, &values, false)?;
    if repeats > 1 {
        out.reshape(&[b, n_q, l, d])
    } else {
        Ok(out)
    }
}
