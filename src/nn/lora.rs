//! Low-rank adapters on a linear layer: `y = base(x) + scale · (dropout(x) A) B`, as
//! mlx-lm's `LoRALinear` computes it. `A: [in, rank]` starts uniform in ±1/√in, `B:
//! [rank, out]` at zero, so a new adapter leaves the layer's output unchanged. The base
//! weights (dense or packed) are never touched: only `A` and `B` are trained.
use crate::mlx::{random, Array, Dtype};
use crate::Result;

#[derive(Clone)]
pub struct Lora {
    /// `[in, rank]`.
    pub a: Array,
    /// `[rank, out]`.
    pub b: Array,
    pub scale: f32,
    /// The probability of zeroing an input element while training (0: off).
    pub dropout: f32,
    /// Dropout applies only while training.
    pub training: bool,
    /// Draw dropout's mask from this key instead of MLX's global generator (a
    /// checkpointed layer's two passes must drop the same elements).
    pub dropout_key: Option<Array>,
}

impl Lora {
    /// A fresh adapter for a layer `in → out`, its weights in `dtype` (float32 for mixed
    /// precision: the adapter and its optimizer state stay in float32 whatever the model
    /// computes in).
    pub fn new(input_dims: i32, output_dims: i32, rank: i32, scale: f32, dropout: f32, dtype: Dtype) -> Result<Lora> {
        let bound = 1.0 / (input_dims as f32).sqrt();
        Ok(Lora {
            a: random::uniform(-bound, bound, &[input_dims, rank], dtype, None)?,
            b: Array::zeros(&[rank, output_dims], dtype)?,
            scale,
            dropout,
            training: false,
            dropout_key: None,
        })
    }

    /// What the adapter adds to the base layer's output `y` for input `x`.
    pub fn add_to(&self, y: &Array, x: &Array) -> Result<Array> {
        let x_in = if self.training && self.dropout > 0.0 { dropout(x, self.dropout, self.dropout_key.as_ref())? } else { x.clone() };
        let z = x_in.matmul(&self.a)?.matmul(&self.b)?;
        y.add(&z.mul_scalar(self.scale as f64)?.astype(x.dtype())?)
    }

}

/// Inverted dropout: keeps each element with probability `1 - p`, scaled by `1 / (1 - p)`.
fn dropout(x: &Array, p: f32, key: Option<&Array>) -> Result<Array> {
    let keep = random::uniform(0.0, 1.0, &x.shape(), Dtype::F32, key)?.less(&Array::scalar(1.0 - p)?)?;
    x.mul(&keep.astype(x.dtype())?)?.mul_scalar(1.0 / (1.0 - p as f64))
}
