//! The gated feed-forward block `down(act(gate(x)) * up(x))`: SwiGLU in Llama and Qwen,
//! GeGLU (the tanh-approximated GELU) in Gemma.
use super::Linear;
use crate::mlx::Array;
use crate::Result;

/// The activation applied to the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(x)` (SwiGLU: Llama, Qwen).
    Silu,
    /// GELU with the tanh approximation (GeGLU: Gemma).
    GeluTanh,
}

impl Activation {
    pub fn apply(self, x: &Array) -> Result<Array> {
        match self {
            Activation::Silu => x.mul(&x.sigmoid()?),
            Activation::GeluTanh => {
                // 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))): mlx.nn.gelu_approx's ops in
                // its order, constants rounded to x's dtype as Python scalars are. mlx-lm runs
                // it compiled (one fused kernel), which rounds every step to the dtype just as
                // the separate ops do: the results are the same bits (the op reference tests
                // check this with zero tolerance).
                let inner = x.add(&x.power(&x.scalar_like(3.0)?)?.mul_scalar(0.044715)?)?;
                let t = inner.mul_scalar((2.0 / std::f64::consts::PI).sqrt())?.tanh()?;
                x.mul_scalar(0.5)?.mul(&t.add_scalar(1.0)?)
            }
        }
    }
}

#[derive(Clone)]
pub struct SwiGlu {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    pub activation: Activation,
}

impl SwiGlu {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let g = self.activation.apply(&self.gate.forward(x)?)?;
        self.down.forward(&g.mul(&self.up.forward(x)?)?)
    }
}

impl SwiGlu {
    /// The projections by the names mlx-lm gives them inside a decoder layer.
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 3] {
        [("mlp.gate_proj", &mut self.gate), ("mlp.up_proj", &mut self.up), ("mlp.down_proj", &mut self.down)]
    }
}
