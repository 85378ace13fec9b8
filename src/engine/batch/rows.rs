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

    /// Runs columns `0..upto` through the model in chunks of `step`, evaluating the caches
    /// after each (the logits of these positions are never computed). Returns false when
    /// cancelled between chunks.
    pub fn prefill(
        &self,
        lm: &dyn LanguageModel,
        caches: &mut [KvCache],
        upto: i32,
        step: usize,
        cancel: &CancelToken,
    ) -> Result<bool> {
        let step = step.max(1) as i32;
        let mut col = 0;
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
/// joining it). Top-log-probability lists are not kept.
pub(super) fn join_rows(a: SampleOut, b: SampleOut) -> Result<SampleOut> {
    let cat = |x: Option<Array>, y: Option<Array>| -> Result<Option<Array>> {
        match (x, y) {
            (Some(x), Some(y)) => Ok(Some(concatenate(&[&x, &y], 0)?)),
            _ => Ok(None),
        }
    };
    Ok(SampleOut {
        token: concatenate(&[&a.token, &b.token], 0)?,
        logprob: cat(a.logprob, b.logprob)?,
        top_ids: None,
        top_logprobs: None,
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

/// The rows `keep` of a sampled batch.
pub(super) fn keep_rows(out: SampleOut, keep: &Array) -> Result<SampleOut> {
    Ok(SampleOut {
        token: out.token.take(keep, 0)?,
        logprob: out.logprob.map(|l| l.take(keep, 0)).transpose()?,
        top_ids: None,
        top_logprobs: None,
        nan: out.nan.map(|l| l.take(keep, 0)).transpose()?,
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
