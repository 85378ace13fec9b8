//! Token embedding table `[vocab, hidden]`, dense or quantized, also usable as the output
//! projection when a model ties its input and output embeddings.
use super::quantized::Weight;
use crate::mlx::{Array, Dtype};
use crate::Result;

pub struct Embedding {
    pub weight: Weight,
}

impl Embedding {
    pub fn new(weight: Array) -> Embedding {
        Embedding { weight: Weight::Dense(weight) }
    }

    /// Rows of the table for integer `ids` of any shape (result `[..., hidden]`).
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        self.weight.rows(ids)
    }

    /// `x Eᵀ`: hidden states to vocabulary logits (a quantized matmul when packed).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        self.weight.matmul_t(x)
    }

    /// The dtype of the embeddings it returns.
    pub fn dtype(&self) -> Dtype {
        self.weight.dtype()
    }
}
