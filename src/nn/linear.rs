//! Linear layer `y = x Wᵀ + b` with weights in HF's `[out, in]` layout, dense or quantized.
use super::quantized::Weight;
use crate::mlx::quant::Quantized;
use crate::mlx::Array;
use crate::Result;

pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Array>,
}

impl Linear {
    pub fn new(weight: Array, bias: Option<Array>) -> Linear {
        Linear { weight: Weight::Dense(weight), bias }
    }

    /// A layer over packed weights computing in `dtype` (see [`Weight::Quantized`]).
    pub fn quantized(q: Quantized, dtype: crate::mlx::Dtype, bias: Option<Array>) -> Linear {
        Linear { weight: Weight::Quantized { q, dtype }, bias }
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        match (&self.weight, &self.bias) {
            // One fused kernel, as mlx.nn.Linear does (and the same rounding).
            (Weight::Dense(w), Some(b)) => b.addmm(x, &w.transpose(&[])?, 1.0, 1.0),
            // mlx.nn.QuantizedLinear adds its bias after the quantized matmul.
            (w, Some(b)) => w.matmul_t(x)?.add(b),
            (w, None) => w.matmul_t(x),
        }
    }
}
