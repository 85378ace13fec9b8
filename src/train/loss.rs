//! The training loss: mean next-token cross-entropy over the positions a batch's lengths
//! select, computed as mlx-lm's `default_loss` computes it (same ops, same mask).
use crate::error::Result;
use crate::mlx::{fast, Array, Device, Dtype};
use crate::models::LanguageModel;
use crate::nn::KvCache;

/// `logsumexp(logits) - logits[target]` per position, as `mlx.nn.losses.cross_entropy`
/// computes it: on a GPU MLX's fused kernel (it never materialises the vocabulary-wide
/// softmax: less memory and time), elsewhere with the max subtracted first (and kept out
/// of the gradient).
pub fn cross_entropy(logits: &Array, targets: &Array) -> Result<Array> {
    if Device::default_device()? != Device::cpu() && logits.dtype().is_float() && !targets.dtype().is_float() {
        return fast::cross_entropy(logits, targets)?.astype(logits.dtype());
    }
    let shifted = logits.sub(&logits.max(Some(&[-1]), true)?.stop_gradient()?)?;
    let score = shifted.take_along_axis(&targets.expand_dims(&[-1])?, -1)?.squeeze(&[-1])?;
    shifted.logsumexp(Some(&[-1]), false)?.sub(&score)
}

/// `(mean loss, token count)` of a batch (`tokens: [batch, width]`, `lengths: [batch, 2]`
/// as [`super::batch::make_batch`] makes them). The model reads `tokens[:, :-1]` and is
/// scored on `tokens[:, 1:]` at target steps `s` (1-based) with `offset ≤ s ≤ length` —
/// mlx-lm's mask, which also counts the step after a row's last token (its first padding
/// zero, or nothing when the row fills the batch); kept as it is so that losses match.
pub fn loss(model: &dyn LanguageModel, tokens: &Array, lengths: &Array) -> Result<(Array, Array)> {
    let width = tokens.dim(1)?;
    let inputs = tokens.slice_axis(1, 0, width - 1)?;
    let targets = tokens.slice_axis(1, 1, width)?;
    // No cache: each layer attends over the whole sequence with a causal mask (a sliding
    // layer with its window), as mlx-lm's models do when called without one.
    let mut caches: Vec<KvCache> = (0..model.info().num_layers).map(|_| KvCache::uncached()).collect();
    let logits = model.forward(&inputs, &mut caches)?;
    let steps = Array::arange(1.0, width as f64, 1.0, Dtype::I32)?;
    let mask = steps
        .greater_equal(&lengths.slice_axis(1, 0, 1)?)?
        .logical_and(&steps.less_equal(&lengths.slice_axis(1, 1, 2)?)?)?;
    let ce = cross_entropy(&logits, &targets)?.mul(&mask)?;
    let ntoks = mask.sum(None, false)?;
    let mean = ce.astype(Dtype::F32)?.sum(None, false)?.div(&ntoks)?;
    Ok((mean, ntoks))
}
