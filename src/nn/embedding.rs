//! Token embedding table `[vocab, hidden]`, also usable as the output projection when a
//! model ties its input and output embeddings.
use crate::mlx::Array;
use crate::Result;

pub struct Embedding {
    pub weight: Array,
}

impl Embedding {
    /// Rows of the table for integer `ids` of any shape (result `[..., hidden]`).
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        self.weight.take(ids, 0)
    }

    /// `x Eᵀ`: hidden states to vocabulary logits.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        x.matmul(&self.weight.transpose(&[])?)
    }
}
