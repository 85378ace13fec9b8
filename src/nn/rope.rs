//! Rotary position embeddings and the scaling variants HF configs name in `rope_scaling`.
use serde_json::Value;

use crate::error::Error;
use crate::mlx::fast::{self, RopeFreqs, RopeOffset};
use crate::mlx::{Array, Dtype};
use crate::Result;

/// A rotary embedding over the first `dims` features of each head.
#[derive(Clone)]
pub struct Rope {
    pub dims: i32,
    pub traditional: bool,
    kind: RopeKind,
}

#[derive(Clone)]
enum RopeKind {
    /// `base^(-2i/dims)`, positions multiplied by `scale` (linear scaling: 1/factor).
    Base { base: f32, scale: f32 },
    /// Precomputed per-pair periods (Llama 3's frequency-dependent scaling).
    Freqs(Array),
}

impl Rope {
    pub fn new(dims: i32, base: f32, traditional: bool) -> Rope {
        Rope { dims, traditional, kind: RopeKind::Base { base, scale: 1.0 } }
    }

    /// Builds the rotary embedding a config describes: `rope_scaling` absent, `default`,
    /// `linear` or `llama3` (HF's `type` or `rope_type` key), or `freq_factors` (a GGUF
    /// file's per-frequency factors, `factors`: frequency i divided by factor i). Other
    /// kinds are refused by name.
    pub fn from_config(dims: i32, base: f32, traditional: bool, scaling: Option<&Value>) -> Result<Rope> {
        let Some(cfg) = scaling.filter(|v| !v.is_null()) else {
            return Ok(Rope::new(dims, base, traditional));
        };
        let kind = cfg
            .get("type")
            .and_then(Value::as_str)
            .or_else(|| cfg.get("rope_type").and_then(Value::as_str))
            .unwrap_or("default");
        let num = |key: &str, default: Option<f64>| -> Result<f64> {
            let v = cfg.get(key).and_then(Value::as_f64).or(default).ok_or_else(|| {
                Error::Config(format!("rope_scaling of type {kind:?} needs a numeric {key:?}"))
            })?;
            // Every one of them divides or scales positions: 0 or less gives inf or NaN.
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Config(format!("rope_scaling {key:?} is {v}; it must be a finite number > 0")));
            }
            Ok(v)
        };
        match kind {
            "default" => Ok(Rope::new(dims, base, traditional)),
            "linear" => {
                let factor = num("factor", None)?;
                Ok(Rope { dims, traditional, kind: RopeKind::Base { base, scale: (1.0 / factor) as f32 } })
            }
            "llama3" => {
                let freqs = llama3_freqs(
                    dims,
                    base,
                    num("factor", None)?,
                    num("low_freq_factor", Some(1.0))?,
                    num("high_freq_factor", Some(4.0))?,
                    num("original_max_position_embeddings", Some(8192.0))?,
                )?;
                Ok(Rope { dims, traditional, kind: RopeKind::Freqs(freqs) })
            }
            "freq_factors" => {
                let factors: Vec<f32> = cfg
                    .get("factors")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                    .unwrap_or_default();
                if factors.len() as i32 * 2 != dims {
                    return Err(Error::Config(format!(
                        "rope_scaling freq_factors needs {} factors (one per rotary pair), found {}",
                        dims / 2,
                        factors.len()
                    )));
                }
                Ok(Rope { dims, traditional, kind: RopeKind::Freqs(factor_freqs(dims, base, &factors)?) })
            }
            other => Err(Error::Config(format!(
                "rope_scaling type {other:?} is not supported (supported: default, linear, llama3)"
            ))),
        }
    }

    /// Rotates `x: [batch, heads, seq, head_dim]` for positions `offset..offset+seq`.
    pub fn forward(&self, x: &Array, offset: RopeOffset<'_>) -> Result<Array> {
        match &self.kind {
            RopeKind::Base { base, scale } => {
                fast::rope(x, self.dims, self.traditional, RopeFreqs::Base(*base), *scale, offset)
            }
            RopeKind::Freqs(f) => fast::rope(x, self.dims, self.traditional, RopeFreqs::Custom(f), 1.0, offset),
        }
    }
}

/// The exponent part of every period: `base^(2i/dims)`, as mlx-lm computes it.
fn base_periods(dims: i32, base: f32) -> Result<Array> {
    let exponents =
        Array::arange(0.0, dims as f64, 2.0, Dtype::I32)?.astype(Dtype::F32)?.div(&Array::scalar(dims as f32)?)?;
    Array::scalar(base)?.power(&exponents)
}

/// Periods stretched by per-frequency factors (llama.cpp's `rope_freqs`: the frequency is
/// divided by the factor). Where a factor is 1 or Llama 3's `factor`, the period is the one
/// `llama3_freqs` computes, to the bit.
fn factor_freqs(dims: i32, base: f32, factors: &[f32]) -> Result<Array> {
    let out = base_periods(dims, base)?.mul(&Array::from_slice(factors, &[factors.len() as i32])?)?;
    out.eval()?;
    Ok(out)
}

/// Llama 3's periods: long wavelengths stretched by `factor`, short ones kept, the band
/// between blended smoothly. Computed with MLX ops in f32 in the same order as mlx-lm so
/// the result is bit-identical.
fn llama3_freqs(dims: i32, base: f32, factor: f64, low: f64, high: f64, old_ctx: f64) -> Result<Array> {
    let f32s = |v: f64| Array::scalar(v as f32);
    let low_wavelen = old_ctx / low;
    let high_wavelen = old_ctx / high;
    let freqs = base_periods(dims, base)?;
    let wavelens = f32s(2.0 * std::f64::consts::PI)?.mul(&freqs)?;
    let freqs = crate::mlx::where_(&wavelens.greater(&f32s(low_wavelen)?)?, &freqs.mul(&f32s(factor)?)?, &freqs)?;
    let medium = wavelens.greater(&f32s(high_wavelen)?)?.logical_and(&wavelens.less(&f32s(low_wavelen)?)?)?;
    let smooth = f32s(old_ctx)?.div(&wavelens)?.sub(&f32s(low)?)?.div(&f32s(high - low)?)?;
    let denom = f32s(1.0)?.sub(&smooth)?.div(&f32s(factor)?)?.add(&smooth)?;
    let smooth_freqs = freqs.div(&denom)?;
    let out = crate::mlx::where_(&medium, &smooth_freqs, &freqs)?;
    out.eval()?;
    Ok(out)
}
