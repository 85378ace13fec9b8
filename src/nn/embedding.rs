//! Token embedding table `[vocab, hidden]`, dense or quantized, also usable as the output
//! projection when a model ties its input and output embeddings.
use super::linear::{prepare_transpose, transpose_of};
use super::quantized::Weight;
use crate::mlx::{Array, Dtype};
use crate::Result;

pub struct Embedding {
    pub weight: Weight,
    /// A dense table's transpose, made once by [`Embedding::prepared`] for the tied output
    /// head (as `Linear::prepare` makes a projection's), with the table it was made from.
    transposed: Option<(Array, Array)>,
}

impl Embedding {
    pub fn new(weight: Array) -> Embedding {
        Embedding { weight: Weight::Dense(weight), transposed: None }
    }

    /// A table (dense or packed) with the transpose a tied head multiplies by made now: one
    /// graph node fewer in every decode step's head (see `Linear::prepare`).
    pub fn prepared(weight: Weight) -> Result<Embedding> {
        let transposed = prepare_transpose(&weight)?;
        Ok(Embedding { weight, transposed })
    }

    /// Rows of the table for integer `ids` of any shape (result `[..., hidden]`).
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        self.weight.rows(ids)
    }

    /// `x Eᵀ`: hidden states to vocabulary logits (a quantized matmul when packed).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        match &self.weight {
            Weight::Dense(w) => x.matmul(&transpose_of(&self.transposed, w)?),
            packed => packed.matmul_t(x),
        }
    }

    /// The dtype of the embeddings it returns.
    pub fn dtype(&self) -> Dtype {
        self.weight.dtype()
    }
}
