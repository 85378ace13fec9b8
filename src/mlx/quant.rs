//! MLX quantization: weights packed into uint32 words with per-group scales (and biases
//! for the affine mode), and matmul directly on the packed form.
use std::ffi::CString;
use std::os::raw::c_int;

use super::array::{check, new_array, opt_ptr, Array, ArrayVec};
use super::dtype::Dtype;
use super::ffi;
use crate::error::{Error, Result};

/// The quantization schemes MLX offers. `Affine` is what mlx-lm's 2–8 bit checkpoints
/// use; the floating-point modes have fixed group sizes and no biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantMode {
    Affine,
    Mxfp4,
    Mxfp8,
    Nvfp4,
}

impl QuantMode {
    pub fn name(self) -> &'static str {
        match self {
            QuantMode::Affine => "affine",
            QuantMode::Mxfp4 => "mxfp4",
            QuantMode::Mxfp8 => "mxfp8",
            QuantMode::Nvfp4 => "nvfp4",
        }
    }

    pub fn from_name(name: &str) -> Option<QuantMode> {
        [QuantMode::Affine, QuantMode::Mxfp4, QuantMode::Mxfp8, QuantMode::Nvfp4]
            .into_iter()
            .find(|m| m.name() == name)
    }

    fn c_name(self) -> CString {
        CString::new(self.name()).expect("mode names have no NUL")
    }
}

/// How a matrix is quantized: the settings mlx-lm's `quantization` config entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantParams {
    pub group_size: i32,
    pub bits: i32,
    pub mode: QuantMode,
}

impl QuantParams {
    /// mlx-lm's defaults for a mode when the caller leaves group size or bits out
    /// (`quantize_model`'s `defaults_for_mode`).
    pub fn with_defaults(mode: QuantMode, group_size: Option<i32>, bits: Option<i32>) -> QuantParams {
        let (g, b) = match mode {
            QuantMode::Affine => (64, 4),
            QuantMode::Mxfp4 => (32, 4),
            QuantMode::Nvfp4 => (16, 4),
            QuantMode::Mxfp8 => (32, 8),
        };
        QuantParams { group_size: group_size.unwrap_or(g), bits: bits.unwrap_or(b), mode }
    }
}

impl std::fmt::Display for QuantParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}-bit, group size {}", self.mode.name(), self.bits, self.group_size)
    }
}

/// A quantized matrix: packed weights, scales and (affine only) biases.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub weight: Array,
    pub scales: Array,
    pub biases: Option<Array>,
    pub group_size: i32,
    pub bits: i32,
    pub mode: QuantMode,
}

/// Quantizes `w` along its last axis in groups of `group_size`.
pub fn quantize(w: &Array, group_size: i32, bits: i32, mode: QuantMode) -> Result<Quantized> {
    let mut v = ArrayVec::new()?;
    check(unsafe { ffi::shim_quantize(w.as_ptr(), group_size, bits, mode.c_name().as_ptr(), v.as_mut_ptr()) })?;
    let mut parts = v.into_arrays()?.into_iter();
    let (weight, scales) = match (parts.next(), parts.next()) {
        (Some(w), Some(s)) => (w, s),
        _ => return Err(Error::Mlx("quantize returned fewer than two arrays".into())),
    };
    Ok(Quantized { weight, scales, biases: parts.next(), group_size, bits, mode })
}

impl Quantized {
    pub fn params(&self) -> QuantParams {
        QuantParams { group_size: self.group_size, bits: self.bits, mode: self.mode }
    }

    /// Unpacks to a dense matrix (of `dtype`, or the scales' dtype when `None`).
    pub fn dequantize(&self, dtype: Option<Dtype>) -> Result<Array> {
        dequantize(&self.weight, &self.scales, self.biases.as_ref(), self.group_size, self.bits, self.mode, dtype)
    }

    /// `x @ Wᵀ` (when `transpose`) or `x @ W` on the packed weights: `x @ Wᵀ` on the
    /// project's CPU kernels where they apply (see `cpu_qmm::takes`), else MLX's.
    pub fn matmul(&self, x: &Array, transpose: bool) -> Result<Array> {
        if let (true, Some(b)) = (transpose, &self.biases) {
            if super::cpu_qmm::takes(self, x)? {
                return super::cpu_qmm::matmul(x, &self.weight, &self.scales, b, self.group_size, self.bits);
            }
        }
        // Scales the CPU kernels keep narrower than the activations (see cpu_qmm) are widened
        // for MLX's kernel, which would otherwise compute in their dtype.
        if x.dtype() == Dtype::F32 && self.scales.dtype() != Dtype::F32 {
            let biases = self.biases.as_ref().map(|b| widened(b, Dtype::F32)).transpose()?;
            let scales = widened(&self.scales, Dtype::F32)?;
            return quantized_matmul(x, &self.weight, &scales, biases.as_ref(), transpose, self.group_size, self.bits, self.mode);
        }
        quantized_matmul(x, &self.weight, &self.scales, self.biases.as_ref(), transpose, self.group_size, self.bits, self.mode)
    }
}

/// Floating scales or biases in `dtype`: those the CPU kernels keep narrower than the
/// compute dtype (see `cpu_qmm::exact_scale_dtype`) are cast, before anything other than
/// those kernels reads them; the rest (already `dtype`, or integer exponents) as they are.
pub fn widened(a: &Array, dtype: Dtype) -> Result<Array> {
    if a.dtype().is_float() && a.dtype() != dtype {
        a.astype(dtype)
    } else {
        Ok(a.clone())
    }
}

pub fn dequantize(
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    group_size: i32,
    bits: i32,
    mode: QuantMode,
    dtype: Option<Dtype>,
) -> Result<Array> {
    let dt = dtype.map_or(-1, |d| d as c_int);
    new_array(|out| unsafe {
        ffi::shim_dequantize(w.as_ptr(), scales.as_ptr(), opt_ptr(biases), group_size, bits, mode.c_name().as_ptr(), dt, out)
    })
}

#[allow(clippy::too_many_arguments)]
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    transpose: bool,
    group_size: i32,
    bits: i32,
    mode: QuantMode,
) -> Result<Array> {
    new_array(|out| unsafe {
        ffi::shim_quantized_matmul(
            x.as_ptr(), w.as_ptr(), scales.as_ptr(), opt_ptr(biases), transpose as c_int, group_size, bits,
            mode.c_name().as_ptr(), out,
        )
    })
}
