//! Linear layer `y = x Wᵀ + b` with weights in HF's `[out, in]` layout, dense or quantized,
//! optionally with a low-rank adapter on top.
use super::lora::Lora;
use super::quantized::Weight;
use crate::mlx::quant::Quantized;
use crate::mlx::Array;
use crate::Result;

#[derive(Clone)]
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Array>,
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn new(weight: Array, bias: Option<Array>) -> Linear {
        Linear { weight: Weight::Dense(weight), bias, lora: None }
    }

    /// A layer over packed weights computing in `dtype` (see [`Weight::Quantized`]).
    pub fn quantized(q: Quantized, dtype: crate::mlx::Dtype, bias: Option<Array>) -> Linear {
        Linear { weight: Weight::Quantized { q, dtype }, bias, lora: None }
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let y = self.forward_base(x)?;
        match &self.lora {
            Some(lora) => lora.add_to(&y, x),
            None => Ok(y),
        }
    }

    /// `(in, out)`: the sizes of the layer's input and output.
    pub fn dims(&self) -> (i32, i32) {
        match &self.weight {
            Weight::Dense(w) => (w.shape()[1], w.shape()[0]),
            // Packed: each uint32 holds 32 / bits values of a row.
            Weight::Quantized { q, .. } => (q.weight.shape()[1] * 32 / q.bits, q.weight.shape()[0]),
        }
    }

    fn forward_base(&self, x: &Array) -> Result<Array> {
        match (&self.weight, &self.bias) {
            // One fused kernel, as mlx.nn.Linear does (and the same rounding).
            (Weight::Dense(w), Some(b)) => b.addmm(x, &w.transpose(&[])?, 1.0, 1.0),
            // mlx.nn.QuantizedLinear adds its bias after the quantized matmul.
            (w, Some(b)) => w.matmul_t(x)?.add(b),
            (w, None) => w.matmul_t(x),
        }
    }
}
