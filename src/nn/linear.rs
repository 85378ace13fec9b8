//! Linear layer `y = x Wᵀ + b` with weights in HF's `[out, in]` layout, dense or quantized,
//! optionally with a low-rank adapter on top.
use super::lora::Lora;
use super::quantized::Weight;
use crate::mlx::distributed::Group;
use crate::mlx::quant::Quantized;
use crate::mlx::{eval, Array};
use crate::{Error, Result};

/// How a layer takes part in tensor parallelism (mlx-lm's `shard_linear` kinds).
#[derive(Clone, Debug, Default)]
pub enum Parallel {
    /// The whole layer, on one rank or replicated on every rank.
    #[default]
    Whole,
    /// "all-to-sharded": this rank holds a slice of the output rows (and of the bias);
    /// a full input gives this rank's slice of the output.
    Sharded,
    /// "sharded-to-all": this rank holds a slice of the input columns; its partial products
    /// are summed over the group, then the (whole) bias is added once.
    Reduced(Group),
}

#[derive(Clone)]
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Array>,
    pub lora: Option<Lora>,
    /// A dense weight's transpose, made once by [`Linear::prepare`], with the weight it was
    /// made from (see `transposed`).
    pub(crate) transposed: Option<(Array, Array)>,
    /// Its part in tensor parallelism, if any.
    pub parallel: Parallel,
}

impl Linear {
    pub fn new(weight: Array, bias: Option<Array>) -> Linear {
        Linear { weight: Weight::Dense(weight), bias, lora: None, transposed: None, parallel: Parallel::Whole }
    }

    /// A layer over packed weights computing in `dtype` (see [`Weight::Quantized`]).
    pub fn quantized(q: Quantized, dtype: crate::mlx::Dtype, bias: Option<Array>) -> Linear {
        Linear { weight: Weight::Quantized { q, dtype }, bias, lora: None, transposed: None, parallel: Parallel::Whole }
    }

    /// Makes a dense weight's transpose now, evaluated: a view of the same bytes, which every
    /// later call multiplies by directly. Otherwise each call adds a transpose to the graph
    /// (as mlx.nn.Linear does), and at decode sizes each graph node's bookkeeping costs more
    /// than its arithmetic. The product is the same: the same strides reach the same kernel.
    pub fn prepare(&mut self) -> Result<()> {
        self.transposed = prepare_transpose(&self.weight)?;
        Ok(())
    }

    fn transposed(&self, w: &Array) -> Result<Array> {
        transpose_of(&self.transposed, w)
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        if let Parallel::Reduced(group) = &self.parallel {
            return self.forward_reduced(x, group);
        }
        let y = self.forward_base(x)?;
        match &self.lora {
            Some(_) if matches!(self.parallel, Parallel::Sharded) => {
                Err(Error::Unsupported("adapters on a tensor-parallel (sharded) model".into()))
            }
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

    /// A sharded-to-all layer: the bias goes on after the sum, so that it is added once.
    fn forward_reduced(&self, x: &Array, group: &Group) -> Result<Array> {
        if self.lora.is_some() {
            return Err(Error::Unsupported("adapters on a tensor-parallel (sharded) model".into()));
        }
        let partial = match &self.weight {
            Weight::Dense(w) => x.matmul(&self.transposed(w)?)?,
            w => w.matmul_t(x)?,
        };
        let y = group.all_sum(&partial)?;
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
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

/// A dense weight's transpose made now and evaluated (a view of the same bytes), with the
/// weight it was made from; `None` for packed weights (their matmul takes them as stored).
pub(crate) fn prepare_transpose(weight: &Weight) -> Result<Option<(Array, Array)>> {
    match weight {
        Weight::Dense(w) => {
            let t = w.transpose(&[])?;
            eval(&[&t])?;
            Ok(Some((w.clone(), t)))
        }
        Weight::Quantized { .. } => Ok(None),
    }
}

/// `wᵀ`: the one `prepared` holds while `w` is still the weight it was made from (held, so
/// that no other array can take its identity), else a new view.
pub(crate) fn transpose_of(prepared: &Option<(Array, Array)>, w: &Array) -> Result<Array> {
    match prepared {
        Some((from, t)) if from.id() == w.id() => Ok(t.clone()),
        _ => w.transpose(&[]),
    }
}
