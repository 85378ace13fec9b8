//! The gated feed-forward block `down(act(gate(x)) * up(x))`: SwiGLU in Llama and Qwen,
//! GeGLU (the tanh-approximated GELU) in Gemma.
use std::cell::RefCell;

use super::stacked::Stacked;
use super::Linear;
use crate::mlx::{Array, Compiled, Device};
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
    /// gate and up stacked for single-position steps on a GPU (see `stacked`); dropped
    /// whenever the projections are handed out for changes (`linears_mut`).
    pub gate_up: Option<Stacked>,
}

impl Activation {
    /// `act(gate) * up`, the product the down projection reads.
    ///
    /// On a GPU every MLX op is a kernel launch, and at decode sizes (one row) a launch costs
    /// more than its arithmetic: the activation's ops (three for SiLU, eight for the tanh
    /// GELU) and the product run there as one compiled kernel. A compiled kernel rounds each
    /// intermediate to its op's dtype as the separate kernels do, so the result is the same
    /// (mlx-lm compiles the activation alone, and multiplies separately). On the CPU, MLX
    /// compiles by running a C++ compiler at run time, so there the shim computes the gate
    /// and the product as one node of its own (same values).
    pub fn gated(self, gate: &Array, up: &Array) -> Result<Array> {
        if Device::default_device()? == Device::cpu() {
            // The shim keeps MLX's ops where its node does not apply (shapes that broadcast).
            return match self {
                Activation::Silu => crate::mlx::ops::silu_mul(gate, up),
                Activation::GeluTanh => crate::mlx::ops::gelu_tanh_mul(gate, up),
            };
        }
        thread_local! {
            // One compiled function per activation and thread: MLX keeps its traces per
            // thread, and a compiled function is called only from the thread that made it.
            static GATED: RefCell<[Option<Compiled>; 2]> = const { RefCell::new([None, None]) };
        }
        GATED.with(|cell| {
            let mut fns = cell.borrow_mut();
            let slot = &mut fns[self as usize];
            if slot.is_none() {
                // Shapeless: the graph is elementwise, so one trace serves every shape.
                *slot = Some(Compiled::new(move |ins: &[Array]| Ok(vec![self.apply(&ins[0])?.mul(&ins[1])?]), true)?);
            }
            let out = slot.as_ref().map(|f| f.call(&[gate, up])).transpose()?;
            out.and_then(|mut v| v.pop()).ok_or_else(|| crate::Error::Mlx("the compiled activation returned nothing".into()))
        })
    }
}

impl SwiGlu {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let [g, u] = Stacked::project(self.gate_up.as_ref(), [&self.gate, &self.up], x)?;
        self.down.forward(&self.activation.gated(&g, &u)?)
    }

    /// Stacks gate and up for single-position steps where that pays (see `stacked`).
    pub fn stack_projections(&mut self) -> Result<()> {
        self.gate_up = Stacked::new(&mut [&mut self.gate, &mut self.up])?;
        Ok(())
    }
}

impl SwiGlu {
    /// The projections by the names mlx-lm gives them inside a decoder layer. Whoever takes
    /// them may change them (adapters, fusing), so the stacked copy is dropped.
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 3] {
        self.gate_up = None;
        [("mlp.gate_proj", &mut self.gate), ("mlp.up_proj", &mut self.up), ("mlp.down_proj", &mut self.down)]
    }
}
