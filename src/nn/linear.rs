//! Dense linear layer `y = x Wᵀ + b` with weights in HF's `[out, in]` layout.
use crate::mlx::Array;
use crate::Result;

pub struct Linear {
    pub weight: Array,
    pub bias: Option<Array>,
}

impl Linear {
    pub fn new(weight: Array, bias: Option<Array>) -> Linear {
        Linear { weight, bias }
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let wt = self.weight.transpose(&[])?;
        match &self.bias {
            // One fused kernel, as mlx.nn.Linear does (and the same rounding).
            Some(b) => b.addmm(x, &wt, 1.0, 1.0),
            None => x.matmul(&wt),
        }
    }
}
