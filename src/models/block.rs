//! One decoder layer as the stacks run it: directly, or under gradient checkpointing, where
//! the backward pass recomputes the layer from its input instead of keeping everything it
//! computed (mlx-lm's `grad_checkpoint`). The families share this; each says what its layer
//! computes by implementing [`Block`].
use super::LayerLinears;
use crate::error::{Error, Result};
use crate::mlx::{random, Array, Compiled, Dtype};
use crate::nn::{Attention, KvCache, Mask, SwiGlu};

/// A decoder layer. `Clone` is cheap (arrays are shared handles): a checkpointed call runs
/// on a copy that the backward pass can call again after the forward pass has returned.
pub trait Block: Clone + Send + 'static {
    /// `h: [batch, seq, hidden]` → the layer's output, appending the new positions to `cache`.
    fn forward(&self, h: &Array, mask: &Mask, cache: &mut KvCache) -> Result<Array>;
    /// The layer's attention and MLP, where adapters sit.
    fn parts_mut(&mut self) -> (&mut Attention, &mut SwiGlu);

    /// The layer's projections by their mlx-lm names, under the layer's key `prefix`.
    fn linears(&mut self, prefix: String) -> LayerLinears<'_> {
        let (attn, mlp) = self.parts_mut();
        LayerLinears::of(prefix, attn, mlp)
    }
}

/// Stacks the layer's q/k/v and gate/up projections for single-position steps where that
/// pays (a GPU; see `nn::stacked`).
pub fn stack_projections<B: Block>(block: &mut B) -> Result<()> {
    let (attn, mlp) = block.parts_mut();
    attn.stack_projections()?;
    mlp.stack_projections()
}

/// Runs `block` on `h`; with `checkpoint`, as a checkpointed function of `h` and the
/// block's adapter weights (the only arrays training differentiates), so that gradients
/// still reach them. Checkpointing is for training's whole-sequence passes: `cache` must be
/// empty, and stays empty (the layer attends over the call's own keys, uncached).
pub fn run<B: Block>(block: &B, h: &Array, mask: &Mask, cache: &mut KvCache, checkpoint: bool) -> Result<Array> {
    if !checkpoint {
        return block.forward(h, mask, cache);
    }
    if !cache.is_empty() {
        return Err(Error::invalid(format!(
            "gradient checkpointing recomputes whole sequences (training); this layer's KV cache already holds {} positions",
            cache.offset()
        )));
    }
    let mut copy = block.clone();
    let mut params = Vec::new();
    for (_, linear) in copy.linears(String::new()).linears {
        if let Some(lora) = linear.lora.as_mut() {
            params.extend([lora.a.clone(), lora.b.clone()]);
            // Dropout draws its mask from a key fixed now, so that the backward pass's
            // recomputation drops the same elements the forward pass dropped.
            lora.dropout_key = if lora.training && lora.dropout > 0.0 {
                Some(random::randint(0, i32::MAX, &[2], Dtype::U32, None)?)
            } else {
                None
            };
        }
    }
    let mask = mask.clone();
    let f = Compiled::checkpoint(move |inputs| {
        let (h, ab) = inputs.split_first().ok_or_else(|| Error::invalid("a checkpointed layer called without its input"))?;
        let mut pairs = ab.chunks_exact(2);
        for (_, linear) in copy.linears(String::new()).linears {
            if let Some(lora) = linear.lora.as_mut() {
                let pair = pairs.next().ok_or_else(|| Error::invalid("a checkpointed layer called without its adapter weights"))?;
                (lora.a, lora.b) = (pair[0].clone(), pair[1].clone());
            }
        }
        Ok(vec![copy.forward(h, &mask, &mut KvCache::uncached())?])
    })?;
    let mut inputs = vec![h];
    inputs.extend(&params);
    f.call(&inputs)?.pop().ok_or_else(|| Error::invalid("a checkpointed layer returned nothing"))
}
