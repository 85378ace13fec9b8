//! RMS normalisation over the last axis.
use crate::mlx::{fast, Array};
use crate::Result;

#[derive(Clone)]
pub struct RmsNorm {
    pub weight: Array,
    pub eps: f32,
}

impl RmsNorm {
    /// Gemma's variant, which scales by `1 + weight` (its checkpoints store the offset
    /// from 1). The sum is taken once here, in the weight's dtype — the value mlx-lm
    /// computes on every call.
    pub fn one_plus(weight: &Array, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: weight.add_scalar(1.0)?, eps })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        fast::rms_norm(x, Some(&self.weight), self.eps)
    }
}
