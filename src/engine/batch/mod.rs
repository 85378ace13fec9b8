//! Batched inference: many prompts through one forward pass at a time.
//!
//! - `classify`: prefill only, the next token after each prompt (and optionally its
//!   logits), the output head computed at each row's last position only;
//! - `generate`: continuous batching — rows that finish leave the running batch, waiting
//!   prompts are prefilled as a batch of their own and merged into it;
//! - `sampling`: each row of a running batch sampled with its own settings;
//! - `prefix`: the keys and values of the last prefilled prompt, reused by rows that
//!   start alike.
//!
//! Rows are left-padded (`rows`), so one column is every row's newest position; the batch
//! KV caches (`nn::batch_kv_cache`) turn each row's padding into its rotary offset and
//! attention mask. A prompt that cannot run (empty, too long, not encodable) gets its own
//! error and the others go on.
mod classify;
mod generate;
mod prefix;
mod rows;
mod sampling;

pub use classify::Classification;
pub use generate::{RowFeed, RowRequest};

use crate::error::{Error, Result};
use crate::mlx::memory;
use crate::models::ModelInfo;

/// How a batch call runs.
#[derive(Clone, Debug, Default)]
pub struct BatchParams {
    /// Most rows computed together; 0 chooses from MLX's memory limit and the prompt
    /// lengths.
    pub max_batch_size: usize,
    /// Classify: also return each prompt's last-position logits (f32, the whole
    /// vocabulary).
    pub return_logits: bool,
    /// Longest prompt (classify) or prompt + generation (generate) allowed; `None`:
    /// unlimited.
    pub context_length: Option<usize>,
}

/// The most rows an automatic batch takes: beyond this the device is busy anyway and a
/// bigger batch only delays the first results.
const AUTO_MAX_ROWS: usize = 512;

/// Bytes one row of `len` positions needs while its batch runs, roughly: its KV cache,
/// the activations of a layer (attention scores included) and its logits with the
/// sampler's temporaries. Used only to size batches, so generous.
fn row_bytes(info: &ModelInfo, len: usize, chunk: usize) -> usize {
    let d = info.dtype.size().max(2);
    let (layers, hidden) = (info.num_layers as usize, info.hidden_size as usize);
    let kv = 2 * layers * (info.num_kv_heads * info.head_dim) as usize * len * d;
    let q = chunk.min(len).max(1);
    // Residual stream, norms, q/k/v/o and an MLP about 8x hidden wide, per position.
    let act = q * hidden * 16 * d;
    let scores = info.num_heads as usize * q * len * 4 * 2;
    let logits = info.vocab_size as usize * 4 * 4;
    kv + act + scores + logits
}

/// The batch size for rows of up to `len` positions: what fits in half the memory MLX
/// may still use, capped by the caller's `max` (0: none) and `AUTO_MAX_ROWS`.
pub(crate) fn batch_size_for(info: &ModelInfo, len: usize, chunk: usize, max: usize) -> usize {
    if max > 0 && max <= AUTO_MAX_ROWS {
        // The caller's cap, unless memory is tighter still.
        return max.min(memory_rows(info, len, chunk)).max(1);
    }
    let cap = if max > 0 { max } else { AUTO_MAX_ROWS };
    memory_rows(info, len, chunk).min(cap).max(1)
}

fn memory_rows(info: &ModelInfo, len: usize, chunk: usize) -> usize {
    let limit = memory::memory_limit();
    let budget = limit.saturating_sub(memory::active_memory()) / 2;
    (budget / row_bytes(info, len, chunk).max(1)).max(1)
}

/// Checks one encoded prompt: not empty, within the context length and the vocabulary.
/// `room`: positions that must stay free after it (1 for generation).
fn check_prompt(ids: &[u32], index: usize, info: &ModelInfo, context: Option<usize>, room: usize) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::invalid(format!("prompt {index} encodes to no tokens")));
    }
    if let Some(ctx) = context {
        if ids.len() + room > ctx {
            return Err(Error::invalid(format!(
                "prompt {index} has {} tokens; the context length is {ctx}",
                ids.len()
            )));
        }
    }
    let vocab = info.vocab_size as u32;
    if let Some(&bad) = ids.iter().find(|&&t| t >= vocab) {
        return Err(Error::invalid(format!("prompt {index}: token {bad} is outside the vocabulary of {vocab}")));
    }
    Ok(())
}

/// Indices of `lens` in ascending length order, grouped into batches of at most the size
/// `batch_size_for` gives for the group's longest row (sorting keeps padding small).
fn length_buckets(lens: &[(usize, usize)], info: &ModelInfo, chunk: usize, max: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<(usize, usize)> = lens.to_vec();
    order.sort_by_key(|&(i, len)| (len, i));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    for &(i, len) in &order {
        if !cur.is_empty() && cur.len() + 1 > batch_size_for(info, len, chunk, max) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
