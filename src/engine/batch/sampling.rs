//! Per-row sampling in a running batch: every row has its own `Sampler`, and rows whose
//! settings allow it share one draw.
//!
//! Rows share a draw when their samplers would compute the same thing for each of them:
//! greedy rows with the same repetition penalty and log-probability settings (filters,
//! temperature and seed change nothing under argmax), and unseeded sampled rows with equal
//! settings (they draw from MLX's global generator anyway, as mlx-lm's batches do). A
//! seeded sampled row always draws alone with its own key, split once per token as in
//! single generation, so its random stream does not depend on which rows share the batch.
//! When every row shares one draw (the usual case: all greedy) the logits go through it
//! as they are, with no gather or reorder.
use super::rows::{join_rows, keep_rows};
use crate::engine::sampler::{SampleOut, Sampler, SamplerParams};
use crate::error::Result;
use crate::mlx::{Array, Device};

/// What decides whether two rows can share a draw; `None`: the row draws alone.
fn draw_key(p: &SamplerParams) -> Option<SamplerParams> {
    if p.is_greedy() {
        return Some(SamplerParams {
            repetition_penalty: p.repetition_penalty,
            repetition_context_size: p.repetition_context_size,
            logprobs: p.logprobs,
            top_logprobs: p.top_logprobs,
            ..SamplerParams::greedy()
        });
    }
    p.seed.is_none().then(|| p.clone())
}

/// Rows in groups that share a draw, in order of first appearance.
fn groups(samplers: &[&mut Sampler]) -> Vec<Vec<usize>> {
    let mut keys: Vec<Option<SamplerParams>> = Vec::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (r, s) in samplers.iter().enumerate() {
        let key = draw_key(s.params());
        match key.as_ref().and_then(|k| keys.iter().position(|g| g.as_ref() == Some(k))) {
            Some(g) => out[g].push(r),
            None => {
                keys.push(key);
                out.push(vec![r]);
            }
        }
    }
    out
}

/// One token per row of `[rows, vocab]` logits, row `r` sampled by `samplers[r]` with
/// history `histories[r]` (or no histories at all). Lazy, except greedy draws on the CPU
/// (see `draw`).
pub(super) fn sample_rows(logits: &Array, samplers: &mut [&mut Sampler], histories: &[&[u32]]) -> Result<SampleOut> {
    let groups = groups(samplers);
    if groups.len() == 1 {
        return draw(samplers[0], logits, histories);
    }
    let mut joined: Option<SampleOut> = None;
    let mut order: Vec<usize> = Vec::with_capacity(samplers.len());
    for rows in &groups {
        let idx: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let part = logits.take(&Array::from_slice(&idx, &[idx.len() as i32])?, 0)?;
        let hist: Vec<&[u32]> = if histories.is_empty() { vec![] } else { rows.iter().map(|&r| histories[r]).collect() };
        let out = draw(samplers[rows[0]], &part, &hist)?;
        joined = Some(match joined {
            None => out,
            Some(prev) => join_rows(prev, out)?,
        });
        order.extend(rows);
    }
    // Back to the batch's row order: row r sits at position `order⁻¹[r]` of the join.
    let mut inverse = vec![0i32; order.len()];
    for (pos, &r) in order.iter().enumerate() {
        inverse[r] = pos as i32;
    }
    let joined = joined.expect("a batch has at least one row");
    keep_rows(joined, &Array::from_slice(&inverse, &[inverse.len() as i32])?)
}

/// One group's draw. On the CPU a greedy draw that reports no log-probabilities is
/// evaluated here, through the sampler's shortcut that skips the log-softmax over the
/// vocabulary (same tokens). The pipelining it gives up gains nothing there: MLX's CPU
/// `async_eval` waits for the queued work anyway. On a GPU the draw stays lazy.
fn draw(sampler: &mut Sampler, logits: &Array, histories: &[&[u32]]) -> Result<SampleOut> {
    if sampler.greedy_shortcut_applies(logits) && Device::default_device()? == Device::cpu() {
        return sampler.sample_batch_greedy_now(logits, histories);
    }
    sampler.sample_batch_lazy(logits, histories)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(p: SamplerParams) -> Sampler {
        Sampler::new(p).unwrap()
    }

    #[test]
    fn greedy_rows_share_whatever_their_filters_and_seeds() {
        let mut a = sampler(SamplerParams { top_k: 5, seed: Some(3), ..SamplerParams::greedy() });
        let mut b = sampler(SamplerParams::greedy());
        let mut c = sampler(SamplerParams { logprobs: true, ..SamplerParams::greedy() });
        assert_eq!(groups(&[&mut a, &mut b, &mut c]), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn seeded_sampled_rows_draw_alone() {
        let warm = SamplerParams { temperature: 0.7, ..SamplerParams::default() };
        let mut a = sampler(SamplerParams { seed: Some(1), ..warm.clone() });
        let mut b = sampler(SamplerParams { seed: Some(1), ..warm.clone() });
        let mut c = sampler(warm.clone());
        let mut d = sampler(warm);
        assert_eq!(groups(&[&mut a, &mut b, &mut c, &mut d]), vec![vec![0], vec![1], vec![2, 3]]);
    }
}
