//! Linear layer `y = x Wᵀ + b` with weights in HF's `[out, in]` layout, dense or quantized,
//! optionally with a low-rank adapter on top.
use super::lora::Lora;
use super::quantized::Weight;
use crate::mlx::quant::Quantized;
use crate::mlx::{eval, Array};
use crate::Result;

#[derive(Clone)]
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Array>,
    pub lora: Option<Lora>,
    /// A dense weight's transpose, made once by [`Linear::prepare`], with the weight it was
    /// made from (see `transposed`).
    pub(crate) transposed: Option<(Array, Array)>,
}

impl Linear {
    pub fn new(weight: Array, bias: Option<Array>) -> Linear {
        Linear { weight: Weight::Dense(weight), bias, lora: None, transposed: None }
    }

    /// A layer over packed weights computing in `dtype` (see [`Weight::Quantized`]).
    pub fn quantized(q: Quantized, dtype: crate::mlx::Dtype, bias: Option<Array>) -> Linear {
        Linear { weight: Weight::Quantized { q, dtype }, bias, lora: None, transposed: None }
    }

    /// Makes a dense weight's transpose now, evaluated: a view of the same bytes, which every
    /// later call multiplies by directly. Otherwise each call adds a transpose to the graph
    /// (as mlx.nn.Linear does), and at decode sizes each graph node's bookkeeping costs more
    /// than its arithmetic. The product is the same: the same strides reach the same kernel.
    pub fn prepare(&mut self) -> Result<()> {
        self.transposed = match &self.weight {
            Weight::Dense(w) => {
                let t = w.transpose(&[])?;
                eval(&[&t])?;
                Some((w.clone(), t))
            }
            Weight::Quantized { .. } => None,
        };
        Ok(())
    }

    /// `wᵀ` of a dense weight: the one `prepare` made while the weight is still the one it
    /// was made from (held, so that no other array can take its identity), else a new view.
    fn transposed(&self, w: &Array) -> Result<Array> {
        match &self.transposed {
            Some((from, t)) if from.id() == w.id() => Ok(t.clone()),
            _ => w.transpose(&[]),
        }
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
            (Weight::Dense(w), Some(b)) => b.addmm(x, &self.transposed(w)?, 1.0, 1.0),
            (Weight::Dense(w), None) => x.matmul(&self.transposed(w)?),
            // mlx.nn.QuantizedLinear adds its bias after the quantized matmul.
            (w, Some(b)) => w.matmul_t(x)?.add(b),
            (w, None) => w.matmul_t(x),
        }
    }
}
