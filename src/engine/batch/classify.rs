//! `Model::classify`: one prefill per batch, the next token after each prompt.
use std::time::Instant;

use super::rows::Padded;
use super::{check_prompt, length_buckets, BatchParams};
use crate::engine::generate::GenerateParams;
use crate::engine::metrics::Metrics;
use crate::engine::model::Model;
use crate::engine::sampler::Sampler;
use crate::error::{Error, Result};
use crate::mlx::{eval, memory, Array, Dtype};

/// The next token after one prompt.
#[derive(Clone, Debug)]
pub struct Classification {
    /// Prompt ids as encoded.
    pub prompt_tokens: Vec<u32>,
    /// The chosen token (greedy or sampled per the sampler settings).
    pub token: u32,
    /// Its log-probability, when the sampler settings ask for log-probabilities.
    pub logprob: Option<f32>,
    /// The last position's logits over the whole vocabulary (f32), when asked for.
    pub logits: Option<Vec<f32>>,
}

impl Model {
    /// The next token after each prompt (encoded as `generate` encodes one), computed in
    /// batches: prompts are sorted by length, left-padded, and each batch is one prefill
    /// whose output head runs at the last position only. `params.sampler` chooses the
    /// token; `max_tokens` and the stop settings are not used. One result per prompt, in
    /// order: a prompt that cannot run fails alone; an error of the whole call (MLX
    /// refusing a computation) is returned as such.
    pub fn classify(&mut self, prompts: &[&str], params: &GenerateParams, batch: &BatchParams) -> Result<Vec<Result<Classification>>> {
        self.begin_call();
        let encoded = self.tokenizer().encode_prompts(prompts);
        self.classify_encoded(encoded, params, batch)
    }

    /// `classify` for prompts given as token ids.
    pub fn classify_ids(&mut self, prompts: &[Vec<u32>], params: &GenerateParams, batch: &BatchParams) -> Result<Vec<Result<Classification>>> {
        self.begin_call();
        self.classify_encoded(prompts.iter().cloned().map(Ok).collect(), params, batch)
    }

    fn classify_encoded(
        &mut self,
        encoded: Vec<Result<Vec<u32>>>,
        params: &GenerateParams,
        batch: &BatchParams,
    ) -> Result<Vec<Result<Classification>>> {
        params.validate()?;
        let info = self.info().clone();
        let cancel = self.canceller();
        memory::reset_peak_memory();
        let start = Instant::now();
        let gpu = crate::engine::utilization::UtilizationSampler::start();
        let mut results: Vec<Result<Classification>> = Vec::with_capacity(encoded.len());
        let mut ok: Vec<(usize, usize)> = Vec::new();
        for (i, e) in encoded.into_iter().enumerate() {
            let checked = e.and_then(|ids| check_prompt(&ids, i, &info, batch.context_length, 0).map(|_| ids));
            if let Ok(ids) = &checked {
                ok.push((i, ids.len()));
            }
            results.push(checked.map(|ids| Classification { prompt_tokens: ids, token: 0, logprob: None, logits: None }));
        }
        let mut sampler = Sampler::new(self.shared_sampler(&params.sampler)?)?;
        let step = params.prefill_step_size;
        let mut prompt_tokens = 0;
        for group in length_buckets(&ok, &info, step, batch.max_batch_size) {
            // The ranks of a sharded model decide together, so that all skip the same buckets.
            let cancelled = match self.group() {
                Some(g) => !g.all_continue(!cancel.is_cancelled())?,
                None => cancel.is_cancelled(),
            };
            if cancelled {
                for &i in &group {
                    results[i] = Err(Error::invalid(format!("prompt {i} was not classified: the call was cancelled")));
                }
                continue;
            }
            let rows: Vec<&[u32]> = group
                .iter()
                .map(|&i| results[i].as_ref().map(|c| c.prompt_tokens.as_slice()).unwrap_or_default())
                .collect();
            prompt_tokens += rows.iter().map(|r| r.len()).sum::<usize>();
            let out = self.classify_rows(&rows, &mut sampler, params, batch.return_logits)?;
            let Some((tokens, logprobs, logits)) = out else {
                for &i in &group {
                    results[i] = Err(Error::invalid(format!("prompt {i} was not classified: the call was cancelled")));
                }
                continue;
            };
            let vocab = info.vocab_size as usize;
            for (r, &i) in group.iter().enumerate() {
                if let Ok(c) = &mut results[i] {
                    c.token = tokens[r];
                    c.logprob = logprobs.as_ref().map(|l| l[r]);
                    c.logits = logits.as_ref().map(|l| l[r * vocab..(r + 1) * vocab].to_vec());
                }
            }
        }
        let mut metrics = Metrics { prompt_tokens, prefill: start.elapsed(), ..Metrics::default() };
        metrics.finish_memory();
        crate::engine::utilization::UtilizationSampler::finish_into(gpu, &mut metrics);
        self.set_last_metrics(metrics);
        Ok(results)
    }

    /// One batch: the chosen tokens, their log-probabilities, and the f32 logits
    /// (`rows × vocab`, row-major) when asked for. `None` when cancelled.
    #[allow(clippy::type_complexity)]
    fn classify_rows(
        &self,
        rows: &[&[u32]],
        sampler: &mut Sampler,
        params: &GenerateParams,
        want_logits: bool,
    ) -> Result<Option<(Vec<u32>, Option<Vec<f32>>, Option<Vec<f32>>)>> {
        let lm = self.language_model();
        let padded = Padded::new(rows, |len| len)?;
        let mut caches = lm.new_batch_caches(&padded.left_padding)?;
        // Everything but the last chunk (which must hold the last column) is prefilled.
        let step = params.prefill_step_size.max(1) as i32;
        let last = ((padded.columns - 1) / step) * step;
        if !padded.prefill(lm, &mut caches, 0, last, step as usize, &self.canceller())? {
            return Ok(None);
        }
        let logits = lm.forward_last(&padded.tokens.slice_axis(1, last, padded.columns)?, &mut caches)?;
        let histories: Vec<&[u32]> = if params.sampler.repetition_penalty != 1.0 { rows.to_vec() } else { vec![] };
        let out = sampler.sample_batch_lazy(&logits, &histories)?;
        let f32_logits = if want_logits { Some(logits.astype(Dtype::F32)?) } else { None };
        let mut arrays: Vec<&Array> = out.arrays();
        arrays.extend(f32_logits.iter());
        eval(&arrays)?;
        drop(caches);
        out.check_nan()?;
        let tokens = out.token.to_vec::<u32>()?;
        let logprobs = out.logprob.as_ref().map(|a| a.to_vec::<f32>()).transpose()?;
        let logits = f32_logits.map(|a| a.to_vec::<f32>()).transpose()?;
        // MLX's buffer cache is kept: the next batch reuses its buffers.
        Ok(Some((tokens, logprobs, logits)))
    }
}
