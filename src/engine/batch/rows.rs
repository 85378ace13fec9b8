//! Left-padded batches: the token matrix, its caches, the chunked prefill, and the
//! sampled tokens of a batch (joined and filtered as rows come and go).
use super::super::generate::CancelToken;
use super::super::sampler::SampleOut;
use crate::error::Result;
use crate::mlx::{concatenate, eval, memory, Array, Dtype};
use crate::models::LanguageModel;
use crate::nn::KvCache;

/// Padding id: its positions are masked out, so any valid id does.
const PAD: i32 = 0;

/// Prompts left-padded into one `[rows, columns]` matrix.
pub(super) struct Padded {
    pub tokens: Array,
    pub columns: i32,
    /// Per row: padding columns before its first token.
    pub left_padding: Vec<i32>,
}

impl Padded {
    /// The first `keep(len)` tokens of each row, left-padded to the longest.
    pub fn new(rows: &[&[u32]], keep: impl Fn(usize) -> usize) -> Result<Padded> {
        let lens: Vec<usize> = rows.iter().map(|r| keep(r.len())).collect();
        let columns = lens.iter().copied().max().unwrap_or(0);
        let mut flat = Vec::with_capacity(rows.len() * columns);
        let mut left_padding = Vec::with_capacity(rows.len());
        for (r, &len) in rows.iter().zip(&lens) {
            left_padding.push((columns - len) as i32);
            flat.extend(std::iter::repeat(PAD).take(columns - len));
            flat.extend(r[..len].iter().map(|&t| t as i32));
        }
        let shape = [rows.len() as i32, columns as i32];
        Ok(Padded { tokens: Array::from_slice(&flat, &shape)?, columns: columns as i32, left_padding })
    }

    /// Runs columns `from..upto` through the model in chunks of `step`, evaluating the
    /// caches after each (the logits of these positions are never computed); the caches
    /// already hold columns `0..from`. Returns false when cancelled between chunks.
    pub fn prefill(
        &self,
        lm: &dyn LanguageModel,
        caches: &mut [KvCache],
        from: i32,
        upto: i32,
        step: usize,
        cancel: &CancelToken,
    ) -> Result<bool> {
        let step = step.max(1) as i32;
        let mut col = from;
        while col < upto {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            let end = (col + step).min(upto);
            lm.forward_hidden(&self.tokens.slice_axis(1, col, end)?, caches)?;
            let state: Vec<&Array> = caches.iter().flat_map(|c| c.state()).collect();
            eval(&state)?;
            memory::clear_cache();
            col = end;
        }
        Ok(true)
    }
}

/// `a` then `b` along the row axis (the sampled tokens of a running batch and of rows
/// joining it, or of groups of rows sampled apart). A side without log-probabilities
/// gets zeros, a narrower top list is padded (ids 0 at `-inf`, sorted last): each row
/// keeps only what it asked for when it is read.
pub(super) fn join_rows(a: SampleOut, b: SampleOut) -> Result<SampleOut> {
    let (na, nb) = (a.token.size() as i32, b.token.size() as i32);
    let logprob = match (a.logprob, b.logprob) {
        (None, None) => None,
        (x, y) => {
            let fill = |l: Option<Array>, n: i32| l.map_or_else(|| Array::zeros(&[n], Dtype::F32), Ok);
            Some(concatenate(&[&fill(x, na)?, &fill(y, nb)?], 0)?)
        }
    };
    let width = |t: &Option<Array>| t.as_ref().map_or(0, |t| t.shape().last().copied().unwrap_or(0));
    let w = width(&a.top_ids).max(width(&b.top_ids));
    let (top_ids, top_logprobs) = if w == 0 {
        (None, None)
    } else {
        let ids = concatenate(&[&pad_top(a.top_ids, na, w, 0.0, Dtype::U32)?, &pad_top(b.top_ids, nb, w, 0.0, Dtype::U32)?], 0)?;
        let ninf = f64::NEG_INFINITY;
        let lps = concatenate(&[&pad_top(a.top_logprobs, na, w, ninf, Dtype::F32)?, &pad_top(b.top_logprobs, nb, w, ninf, Dtype::F32)?], 0)?;
        (Some(ids), Some(lps))
    };
    Ok(SampleOut {
        token: concatenate(&[&a.token, &b.token], 0)?,
        logprob,
        top_ids,
        top_logprobs,
        // A side without the flag was checked when it was sampled (the greedy shortcut):
        // it joins as all-false, so the other side's flags are kept.
        nan: match (a.nan, b.nan) {
            (None, None) => None,
            (x, y) => {
                let flag = |f: Option<Array>, token: &Array| f.map_or_else(|| Array::zeros(&token.shape(), Dtype::Bool), Ok);
                Some(concatenate(&[&flag(x, &a.token)?, &flag(y, &b.token)?], 0)?)
            }
        },
    })
}

/// A `[rows, w]` top list: `top` widened with `fill`, or all `fill` when there is none.
fn pad_top(top: Option<Array>, rows: i32, w: i32, fill: f64, dtype: Dtype) -> Result<Array> {
    let have = top.as_ref().map_or(0, |t| t.shape().last().copied().unwrap_or(0));
    let pad = Array::full(&[rows, w - have], fill, dtype)?;
    match top {
        Some(t) if have == w => Ok(t),
        Some(t) => concatenate(&[&t, &pad], 1),
        None => Ok(pad),
    }
}

/// The rows `keep` of a sampled batch.
pub(super) fn keep_rows(out: SampleOut, keep: &Array) -> Result<SampleOut> {
    let take = |a: Option<Array>| a.map(|a| a.take(keep, 0)).transpose();
    Ok(SampleOut {
        token: out.token.take(keep, 0)?,
        logprob: take(out.logprob)?,
        top_ids: take(out.top_ids)?,
        top_logprobs: take(out.top_logprobs)?,
        nan: take(out.nan)?,
    })
}

/// Merges the caches of rows joining a running batch after its rows.
pub(super) fn extend_caches(running: &mut [KvCache], joining: Vec<KvCache>) -> Result<()> {
    for (a, b) in running.iter_mut().zip(joining) {
        match (a.as_batch_mut(), b) {
            (Some(a), KvCache::Batch(b)) => a.extend(b)?,
            _ => return Err(crate::Error::invalid("only batch KV caches can be merged")),
        }
    }
    Ok(())
}

/// Keeps the rows `keep` of every cache.
pub(super) fn filter_caches(caches: &mut [KvCache], keep: &[usize]) -> Result<()> {
    for c in caches.iter_mut() {
        match c.as_batch_mut() {
            Some(b) => b.filter(keep)?,
            None => return Err(crate::Error::invalid("only batch KV caches can drop rows")),
        }
    }
    Ok(())
}
