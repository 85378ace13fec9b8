//! MLX's fused kernels (`mlx::core::fast`): the normalisations, rotary embedding and
//! attention that every transformer layer runs.
use std::ffi::CString;
use std::os::raw::c_int;

use super::array::{new_array, opt_ptr, Array};
use super::ffi;
use crate::error::{Error, Result};

/// `x / sqrt(mean(x²) + eps) * weight` over the last axis.
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    new_array(|out| unsafe { ffi::shim_rms_norm(x.as_ptr(), opt_ptr(weight), eps, out) })
}

/// Cross entropy of `logits: [..., classes]` against class indices `targets: [...]`, one
/// value per position, in one fused kernel (no softmax-sized intermediates on a GPU).
pub fn cross_entropy(logits: &Array, targets: &Array) -> Result<Array> {
    new_array(|out| unsafe { ffi::shim_cross_entropy(logits.as_ptr(), targets.as_ptr(), out) })
}

/// Layer normalisation over the last axis, with optional affine weight and bias.
pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f32) -> Result<Array> {
    new_array(|out| unsafe { ffi::shim_layer_norm(x.as_ptr(), opt_ptr(weight), opt_ptr(bias), eps, out) })
}

/// Where the rotary frequencies come from.
#[derive(Clone, Copy)]
pub enum RopeFreqs<'a> {
    /// `base^(-2i/dims)`, the standard schedule.
    Base(f32),
    /// Precomputed inverse frequencies (one per pair of dims), for scaled variants such as
    /// Llama 3's.
    Custom(&'a Array),
}

/// Position offset of the first row of `x`: a constant, or an array (a scalar, or one
/// offset per batch row) so that the graph does not change from step to step.
#[derive(Clone, Copy)]
pub enum RopeOffset<'a> {
    Fixed(i32),
    Dynamic(&'a Array),
}

/// Rotary position embedding over the first `dims` features of the last axis of `x`
/// (shape `[..., seq, features]`). `traditional` rotates adjacent pairs instead of the two
/// halves. Positions are `offset + i` scaled by `scale`.
pub fn rope(
    x: &Array,
    dims: i32,
    traditional: bool,
    freqs: RopeFreqs<'_>,
    scale: f32,
    offset: RopeOffset<'_>,
) -> Result<Array> {
    let (has_base, base, f) = match freqs {
        RopeFreqs::Base(b) => (1, b, std::ptr::null()),
        RopeFreqs::Custom(a) => (0, 0.0, a.as_ptr()),
    };
    new_array(|out| unsafe {
        match offset {
            RopeOffset::Fixed(o) => {
                ffi::shim_rope(x.as_ptr(), dims, traditional as c_int, has_base, base, scale, o, f, out)
            }
            RopeOffset::Dynamic(o) => ffi::shim_rope_dynamic(
                x.as_ptr(), dims, traditional as c_int, has_base, base, scale, o.as_ptr(), f, out,
            ),
        }
    })
}

/// How attention is masked.
#[derive(Clone, Copy)]
pub enum AttentionMask<'a> {
    None,
    /// Each query attends to keys at or before its position (aligned to the end of the
    /// keys, so it also serves a prefill that follows cached tokens).
    Causal,
    /// A boolean mask (true = attend) or an additive float mask, broadcastable to
    /// `[batch, heads, queries, keys]`.
    Array(&'a Array),
}

/// `softmax(q kᵀ · scale + mask) v` for `q: [B, Hq, L, D]`, `k, v: [B, Hkv, S, D]`;
/// grouped-query attention when `Hq` is a multiple of `Hkv`. `sinks` adds per-head
/// attention-sink logits when given.
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: AttentionMask<'_>,
    sinks: Option<&Array>,
) -> Result<Array> {
    let (mode, m) = match mask {
        AttentionMask::None => ("", std::ptr::null()),
        AttentionMask::Causal => ("causal", std::ptr::null()),
        AttentionMask::Array(a) => ("array", a.as_ptr()),
    };
    let mode = CString::new(mode).map_err(|e| Error::invalid(e.to_string()))?;
    new_array(|out| unsafe {
        ffi::shim_sdpa(q.as_ptr(), k.as_ptr(), v.as_ptr(), scale, mode.as_ptr(), m, opt_ptr(sinks), out)
    })
}
