//! A weight matrix held either dense or MLX-quantized, so that `Linear` and `Embedding`
//! serve both kinds of checkpoint with no per-family code. The quantized forms compute
//! what mlx.nn.QuantizedLinear / QuantizedEmbedding compute, with the same ops.
use crate::mlx::quant::{dequantize, widened, QuantParams, Quantized};
use crate::mlx::{Array, Dtype};
use crate::Result;

/// A `[rows, cols]` matrix in HF's `[out, in]` layout.
#[derive(Clone)]
pub enum Weight {
    Dense(Array),
    /// Packed weights with their scales (and biases), and the dtype the layer computes in:
    /// the scales' dtype in the affine mode, the compute dtype in the floating-point modes
    /// (whose scales are uint8 exponents).
    Quantized { q: Quantized, dtype: Dtype },
}

impl Weight {
    /// The dtype the layer's outputs have.
    pub fn dtype(&self) -> Dtype {
        match self {
            Weight::Dense(w) => w.dtype(),
            Weight::Quantized { dtype, .. } => *dtype,
        }
    }

    /// The quantization of a packed matrix; `None` for a dense one.
    pub fn quantization(&self) -> Option<QuantParams> {
        match self {
            Weight::Dense(_) => None,
            Weight::Quantized { q, .. } => Some(q.params()),
        }
    }

    /// `x Wᵀ`.
    pub fn matmul_t(&self, x: &Array) -> Result<Array> {
        match self {
            Weight::Dense(w) => x.matmul(&w.transpose(&[])?),
            Weight::Quantized { q, .. } => q.matmul(x, true),
        }
    }

    /// Rows `ids` (any shape) → `[..., cols]`. Quantized: the packed rows, scales and
    /// biases are taken first and only those rows are unpacked.
    pub fn rows(&self, ids: &Array) -> Result<Array> {
        match self {
            Weight::Dense(w) => w.take(ids, 0),
            Weight::Quantized { q, dtype } => {
                // Scales the CPU kernels keep narrower than the compute dtype are widened
                // first: MLX would unpack in their dtype.
                let biases = q.biases.as_ref().map(|b| widened(&b.take(ids, 0)?, *dtype)).transpose()?;
                dequantize(
                    &q.weight.take(ids, 0)?,
                    &widened(&q.scales.take(ids, 0)?, *dtype)?,
                    biases.as_ref(),
                    q.group_size,
                    q.bits,
                    q.mode,
                    out_dtype(q, *dtype),
                )
            }
        }
    }
}

/// `dequantize`'s dtype argument: none in the affine mode (the scales' dtype, as mlx-lm
/// leaves it), the compute dtype in the floating-point modes.
pub fn out_dtype(q: &Quantized, dtype: Dtype) -> Option<Dtype> {
    if q.scales.dtype().is_float() {
        None
    } else {
        Some(dtype)
    }
}

impl Weight {
    /// Output rows `start..start + n` (a tensor-parallel shard of an all-to-sharded layer),
    /// copied out so that the whole matrix need not stay alive behind a view.
    pub fn slice_out(&self, start: i32, n: i32) -> Result<Weight> {
        let cut = |a: &Array| a.slice_axis(0, start, start + n)?.contiguous();
        Ok(match self {
            Weight::Dense(w) => Weight::Dense(cut(w)?),
            Weight::Quantized { q, dtype } => Weight::Quantized {
                q: Quantized {
                    weight: cut(&q.weight)?,
                    scales: cut(&q.scales)?,
                    biases: q.biases.as_ref().map(cut).transpose()?,
                    ..q.clone()
                },
                dtype: *dtype,
            },
        })
    }

    /// Input columns `start..start + n` (a shard of a sharded-to-all layer). A packed matrix
    /// is cut between its quantization groups, which must therefore fall on the cut.
    pub fn slice_in(&self, start: i32, n: i32) -> Result<Weight> {
        let cut = |a: &Array, s: i32, m: i32| a.slice_axis(1, s, s + m)?.contiguous();
        Ok(match self {
            Weight::Dense(w) => Weight::Dense(cut(w, start, n)?),
            Weight::Quantized { q, dtype } => {
                let (g, bits) = (q.group_size, q.bits);
                if start % g != 0 || n % g != 0 || (start * bits) % 32 != 0 || (n * bits) % 32 != 0 {
                    return Err(crate::Error::Weights(format!(
                        "cannot split a packed matrix's input columns at {start}..{}: its quantization groups of {g} \
                         ({bits} bits) do not fall on the cut",
                        start + n
                    )));
                }
                let (ws, wn) = (start * bits / 32, n * bits / 32);
                Weight::Quantized {
                    q: Quantized {
                        weight: cut(&q.weight, ws, wn)?,
                        scales: cut(&q.scales, start / g, n / g)?,
                        biases: q.biases.as_ref().map(|b| cut(b, start / g, n / g)).transpose()?,
                        ..q.clone()
                    },
                    dtype: *dtype,
                }
            }
        })
    }
}
