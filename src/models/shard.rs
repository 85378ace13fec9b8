//! Tensor parallelism across the ranks of a distributed group, as mlx-lm's models `shard()`
//! themselves: in every layer, q/k/v and gate/up are split by output rows
//! ("all-to-sharded": each rank computes its own heads and its own slice of the MLP's
//! hidden units from the full input), o and down by input columns ("sharded-to-all": each
//! rank's partial product is summed over the group, then the bias is added once). So a layer
//! costs two all-sums, and everything between them (rotary, attention, the KV cache) runs
//! on each rank's heads only. Embeddings, norms and the output head stay whole on every
//! rank, so each rank ends a step with the same logits and samples the same token.
//!
//! Each rank reads only its slice of a dense matrix from a safetensors file (`slice_read`:
//! whole rows, or a run of each row). Other matrices (packed, quantized at load, from a
//! GGUF file) are read whole, cut, copied out and evaluated, and the whole form is released
//! before the next one is read.
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::mlx::distributed::Group;
use crate::nn::linear::Parallel;
use crate::nn::{AttentionConfig, Linear, Weight};

/// Which heads of a layer's attention one rank holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadShard {
    pub q_start: i32,
    pub n_heads: i32,
    pub kv_start: i32,
    pub n_kv_heads: i32,
}

/// Rank `rank` of `size` gets a contiguous run of `n_heads / size` query heads. Key/value
/// heads split the same way when `size` divides their number; when there are fewer of them
/// than ranks (a multiple), each rank holds a copy of the one key/value head its query heads
/// read, so the grouping of query heads over key/value heads is the same as unsharded.
pub fn heads(n_heads: i32, n_kv_heads: i32, rank: i32, size: i32) -> Result<HeadShard> {
    if n_heads % size != 0 {
        return Err(Error::Config(format!(
            "tensor parallelism over {size} ranks needs a number of attention heads divisible by {size}; the model has {n_heads}"
        )));
    }
    let per = n_heads / size;
    let (kv_start, kv_per) = if n_kv_heads % size == 0 {
        let kv = n_kv_heads / size;
        (rank * kv, kv)
    } else if size % n_kv_heads == 0 {
        (rank * n_kv_heads / size, 1)
    } else {
        return Err(Error::Config(format!(
            "tensor parallelism over {size} ranks needs {size} to divide the number of key/value heads, or to be a \
             multiple of it; the model has {n_kv_heads}"
        )));
    };
    Ok(HeadShard { q_start: rank * per, n_heads: per, kv_start, n_kv_heads: kv_per })
}

/// A layer's attention projections in mlx-lm's order (q, k, v, o) and the head counts they
/// serve on this rank: all of it when the model is not sharded.
pub struct AttentionParts {
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
}

/// What a layer's attention looks like in the checkpoint.
pub struct AttentionShape {
    pub hidden: i32,
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub head_dim: i32,
    pub qkv_bias: bool,
    pub o_bias: bool,
}

impl AttentionParts {
    /// The config of the attention these parts make, with `scale`.
    pub fn config(&self, head_dim: i32, scale: f32) -> AttentionConfig {
        AttentionConfig { n_heads: self.n_heads, n_kv_heads: self.n_kv_heads, head_dim, scale }
    }
}

/// Reads the attention projections under `prefix` (`model.layers.3.self_attn`), sharded
/// when the weights are loaded for a group.
pub fn attention(w: &mut Weights, prefix: &str, s: &AttentionShape) -> Result<AttentionParts> {
    let (q_out, kv_out, d) = (s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim, s.head_dim);
    let name = |p: &str| format!("{prefix}.{p}");
    let Some(group) = w.group.clone() else {
        return Ok(AttentionParts {
            n_heads: s.n_heads,
            n_kv_heads: s.n_kv_heads,
            q: w.linear(&name("q_proj"), q_out, s.hidden, s.qkv_bias)?,
            k: w.linear(&name("k_proj"), kv_out, s.hidden, s.qkv_bias)?,
            v: w.linear(&name("v_proj"), kv_out, s.hidden, s.qkv_bias)?,
            o: w.linear(&name("o_proj"), s.hidden, q_out, s.o_bias)?,
        });
    };
    let h = heads(s.n_heads, s.n_kv_heads, group.rank(), group.size())?;
    Ok(AttentionParts {
        n_heads: h.n_heads,
        n_kv_heads: h.n_kv_heads,
        q: w.linear_rows(&name("q_proj"), q_out, s.hidden, s.qkv_bias, h.q_start * d, h.n_heads * d)?,
        k: w.linear_rows(&name("k_proj"), kv_out, s.hidden, s.qkv_bias, h.kv_start * d, h.n_kv_heads * d)?,
        v: w.linear_rows(&name("v_proj"), kv_out, s.hidden, s.qkv_bias, h.kv_start * d, h.n_kv_heads * d)?,
        o: w.linear_cols(&name("o_proj"), s.hidden, q_out, s.o_bias, h.q_start * d, h.n_heads * d, &group)?,
    })
}

/// Reads the gated MLP's gate, up and down projections under `prefix`
/// (`model.layers.3.mlp`), each rank taking `intermediate / size` hidden units.
pub fn mlp(w: &mut Weights, prefix: &str, hidden: i32, intermediate: i32, bias: bool) -> Result<[Linear; 3]> {
    let name = |p: &str| format!("{prefix}.{p}");
    let Some(group) = w.group.clone() else {
        return Ok([
            w.linear(&name("gate_proj"), intermediate, hidden, bias)?,
            w.linear(&name("up_proj"), intermediate, hidden, bias)?,
            w.linear(&name("down_proj"), hidden, intermediate, bias)?,
        ]);
    };
    let n = group.size();
    if intermediate % n != 0 {
        return Err(Error::Config(format!(
            "tensor parallelism over {n} ranks needs an MLP size divisible by {n}; the model's is {intermediate}"
        )));
    }
    let (per, start) = (intermediate / n, group.rank() * (intermediate / n));
    Ok([
        w.linear_rows(&name("gate_proj"), intermediate, hidden, bias, start, per)?,
        w.linear_rows(&name("up_proj"), intermediate, hidden, bias, start, per)?,
        w.linear_cols(&name("down_proj"), hidden, intermediate, bias, start, per, &group)?,
    ])
}

impl Weights {
    /// Rows `start..start + n` of the linear layer `name` (and of its bias).
    pub fn linear_rows(&mut self, name: &str, out: i32, inp: i32, bias: bool, start: i32, n: i32) -> Result<Linear> {
        let weight = match self.take_dense_slice(&format!("{name}.weight"), &[out, inp], 0, start, n)? {
            Some(a) => Weight::Dense(a),
            None => self.matrix(name, out, inp)?.slice_out(start, n)?,
        };
        let bias = match bias {
            true => Some(self.take(&format!("{name}.bias"), &[out])?.slice_axis(0, start, start + n)?.contiguous()?),
            false => None,
        };
        self.finish_shard(name, Linear { weight, bias, lora: None, transposed: None, parallel: Parallel::Sharded })
    }

    /// Input columns `start..start + n` of the linear layer `name`, its output summed over
    /// `group`; the bias stays whole.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_cols(&mut self, name: &str, out: i32, inp: i32, bias: bool, start: i32, n: i32, group: &Group) -> Result<Linear> {
        let weight = match self.take_dense_slice(&format!("{name}.weight"), &[out, inp], 1, start, n)? {
            Some(a) => Weight::Dense(a),
            None => self.matrix(name, out, inp)?.slice_in(start, n)?,
        };
        let bias = if bias { Some(self.take(&format!("{name}.bias"), &[out])?) } else { None };
        let parallel = Parallel::Reduced(group.clone());
        self.finish_shard(name, Linear { weight, bias, lora: None, transposed: None, parallel })
    }

    /// Evaluates a shard now and lets go of the whole tensors it was cut from, so that a
    /// rank never holds more than its slices and one whole matrix.
    fn finish_shard(&mut self, name: &str, mut linear: Linear) -> Result<Linear> {
        let mut arrays = match &linear.weight {
            Weight::Dense(w) => vec![w],
            Weight::Quantized { q, .. } => [Some(&q.weight), Some(&q.scales), q.biases.as_ref()].into_iter().flatten().collect(),
        };
        arrays.extend(linear.bias.as_ref());
        crate::mlx::eval(&arrays)?;
        self.release(&format!("{name}."));
        linear.prepare()?;
        Ok(linear)
    }
}
