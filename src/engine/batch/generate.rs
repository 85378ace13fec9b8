//! `Model::batch_generate`: continuous batching.
//!
//! The running batch decodes one token per row per step, pipelined like the single-row
//! loop: step n+1 is queued with `async_eval` before step n's tokens are read. Each row
//! has its own `TextStream` (the detokenizer and stop logic of single generation), so it
//! stops where the same prompt generated alone stops. When rows finish they leave the
//! batch (their cache rows are dropped); when there is room, waiting prompts are
//! prefilled as a batch of their own, take their first step, and join the running batch
//! (their caches merged in, re-aligned on the last column).
use std::collections::VecDeque;
use std::time::Instant;

use super::rows::{extend_caches, filter_caches, join_rows, keep_rows, Padded};
use super::{batch_size_for, check_prompt, BatchParams};
use crate::engine::generate::GenerateParams;
use crate::engine::metrics::Metrics;
use crate::engine::model::{Generation, Model, TextStream, TokenEvent};
use crate::engine::sampler::{SampleOut, Sampler};
use crate::error::{Error, Result};
use crate::mlx::{async_eval, memory, Array, Device};
use crate::models::LanguageModel;
use crate::nn::KvCache;

/// A row of the running batch.
struct Row<'t> {
    index: usize,
    stream: TextStream<'t>,
    generated: usize,
    max_tokens: usize,
    /// Prompt and sampled tokens, kept only for the repetition penalty.
    history: Vec<u32>,
}

/// The running batch: its rows, their caches, and the sampled tokens not yet read.
struct Running<'t> {
    rows: Vec<Row<'t>>,
    caches: Vec<KvCache>,
    pending: Option<SampleOut>,
}

impl Model {
    /// Generates a continuation of every prompt (encoded as `generate` encodes one) with
    /// `params`, at most `batch.max_batch_size` rows at a time (0: automatic). `on_text`
    /// receives `(prompt index, event)` as rows produce text; returning false stops that
    /// row only (`FinishReason::Callback`). The model's cancel token stops every row
    /// (`FinishReason::Cancelled`). One result per prompt, in order; a prompt that cannot
    /// run fails alone.
    pub fn batch_generate(
        &mut self,
        prompts: &[&str],
        params: &GenerateParams,
        batch: &BatchParams,
        on_text: impl FnMut(usize, &TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Result<Generation>>> {
        self.begin_call();
        let encoded = self.tokenizer().encode_prompts(prompts);
        self.batch_generate_encoded(encoded, params, batch, on_text)
    }

    /// `batch_generate` for prompts given as token ids.
    pub fn batch_generate_ids(
        &mut self,
        prompts: &[Vec<u32>],
        params: &GenerateParams,
        batch: &BatchParams,
        on_text: impl FnMut(usize, &TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Result<Generation>>> {
        self.begin_call();
        self.batch_generate_encoded(prompts.iter().cloned().map(Ok).collect(), params, batch, on_text)
    }

    fn batch_generate_encoded(
        &mut self,
        encoded: Vec<Result<Vec<u32>>>,
        params: &GenerateParams,
        batch: &BatchParams,
        mut on_text: impl FnMut(usize, &TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Result<Generation>>> {
        params.validate()?;
        if self.group().is_some() {
            // Each row may stop on its own callback, which runs on one rank: the ranks would
            // drift apart in which rows they compute. Not done yet.
            return Err(Error::Unsupported("batch generation on a model sharded over several ranks (generate, chat and classify are)".into()));
        }
        let info = self.info().clone();
        let cancel = self.canceller();
        memory::reset_peak_memory();
        let start = Instant::now();
        let gpu = crate::engine::utilization::UtilizationSampler::start();
        let tokenizer = self.tokenizer().clone();
        let lm = self.language_model();

        let mut prompts: Vec<Vec<u32>> = Vec::with_capacity(encoded.len());
        let mut results: Vec<Option<Result<Generation>>> = Vec::with_capacity(encoded.len());
        let mut waiting: VecDeque<usize> = VecDeque::new();
        for (i, e) in encoded.into_iter().enumerate() {
            match e.and_then(|ids| check_prompt(&ids, i, &info, batch.context_length, 1).map(|_| ids)) {
                Ok(ids) => {
                    waiting.push_back(i);
                    prompts.push(ids);
                    results.push(None);
                }
                Err(e) => {
                    prompts.push(vec![]);
                    results.push(Some(Err(e)));
                }
            }
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(1) + params.max_tokens;
        let max_rows = batch_size_for(&info, longest, params.prefill_step_size, batch.max_batch_size);
        let needs_history = params.sampler.repetition_penalty != 1.0;
        let mut sampler = Sampler::new(params.sampler.clone())?;
        let mut first_token_at = None;
        let mut generated_total = 0usize;

        let finish = |row: Row<'_>, cancelled: bool, on_text: &mut dyn FnMut(usize, &TokenEvent<'_>) -> bool| -> Result<(usize, Generation)> {
            let index = row.index;
            let mut stream = row.stream;
            let reason = stream.end(cancelled, &mut |ev: &TokenEvent<'_>| on_text(index, ev))?;
            let metrics = Metrics { prompt_tokens: prompts[index].len(), generated_tokens: row.generated, ..Metrics::default() };
            let tokens = std::mem::take(&mut stream.tokens);
            let text = std::mem::take(&mut stream.text);
            Ok((index, Generation { prompt_tokens: prompts[index].clone(), tokens, text, finish_reason: reason, metrics }))
        };

        let mut run = Running { rows: Vec::new(), caches: Vec::new(), pending: None };
        loop {
            if cancel.is_cancelled() {
                for row in std::mem::take(&mut run.rows) {
                    let (i, g) = finish(row, true, &mut on_text)?;
                    results[i] = Some(Ok(g));
                }
                for i in waiting.drain(..) {
                    let row = new_row(i, &tokenizer, params, &prompts[i], batch.context_length, needs_history);
                    let (i, g) = finish(row, true, &mut on_text)?;
                    results[i] = Some(Ok(g));
                }
                break;
            }
            // Waiting prompts join while there is room.
            if run.rows.len() < max_rows && !waiting.is_empty() {
                let n = (max_rows - run.rows.len()).min(waiting.len());
                let joining: Vec<usize> = waiting.drain(..n).collect();
                let mut rows: Vec<Row<'_>> = joining
                    .iter()
                    .map(|&i| new_row(i, &tokenizer, params, &prompts[i], batch.context_length, needs_history))
                    .collect();
                // A row allowed no token at all ends before it starts.
                let (empty, live): (Vec<Row<'_>>, Vec<Row<'_>>) = rows.drain(..).partition(|r| r.max_tokens == 0);
                for row in empty {
                    let (i, g) = finish(row, false, &mut on_text)?;
                    results[i] = Some(Ok(g));
                }
                if !live.is_empty() {
                    let ids: Vec<&[u32]> = live.iter().map(|r| prompts[r.index].as_slice()).collect();
                    let hist: Vec<&[u32]> = live.iter().map(|r| r.history.as_slice()).collect();
                    let Some((caches, out)) = start_rows(lm, &ids, &hist, &mut sampler, params, &cancel)? else {
                        // Cancelled while prefilling: they wait again, and end as cancelled.
                        live.iter().rev().for_each(|r| waiting.push_front(r.index));
                        continue;
                    };
                    if run.rows.is_empty() {
                        run.caches = caches;
                        run.pending = Some(out);
                    } else {
                        extend_caches(&mut run.caches, caches)?;
                        let prev = run.pending.take().ok_or_else(|| Error::Mlx("running batch without tokens".into()))?;
                        run.pending = Some(join_rows(prev, out)?);
                    }
                    run.rows.extend(live);
                }
            }
            let Some(current) = run.pending.take() else {
                if waiting.is_empty() {
                    break;
                }
                continue;
            };
            // Queue the next step before reading this one (unless the sampler must see it).
            let mut next = None;
            if !needs_history {
                let out = decode_step(lm, &current.token, &mut run.caches, &mut sampler, &[])?;
                async_eval(&out.arrays())?;
                next = Some(out);
            }
            let toks = current.read()?;
            first_token_at.get_or_insert_with(|| start.elapsed());
            let mut keep = Vec::with_capacity(run.rows.len());
            let mut done = Vec::new();
            for (r, (row, tok)) in run.rows.iter_mut().zip(&toks).enumerate() {
                row.generated += 1;
                generated_total += 1;
                if needs_history {
                    row.history.push(tok.token);
                }
                let index = row.index;
                let go_on = row.stream.push(tok, &mut |ev: &TokenEvent<'_>| on_text(index, ev))?;
                if go_on && row.generated < row.max_tokens {
                    keep.push(r);
                } else {
                    done.push(r);
                }
            }
            if !done.is_empty() {
                let rows = std::mem::take(&mut run.rows);
                for (r, row) in rows.into_iter().enumerate() {
                    if done.contains(&r) {
                        let (i, g) = finish(row, false, &mut on_text)?;
                        results[i] = Some(Ok(g));
                    } else {
                        run.rows.push(row);
                    }
                }
                if run.rows.is_empty() {
                    run.caches.clear();
                    next = None;
                } else {
                    filter_caches(&mut run.caches, &keep)?;
                    let idx: Vec<i32> = keep.iter().map(|&r| r as i32).collect();
                    let idx = Array::from_slice(&idx, &[idx.len() as i32])?;
                    next = next.map(|n| keep_rows(n, &idx)).transpose()?;
                }
                memory::clear_cache();
            }
            if needs_history && !run.rows.is_empty() {
                let last: Vec<u32> = run.rows.iter().map(|r| *r.history.last().unwrap_or(&0)).collect();
                let input = Array::from_slice(&last, &[last.len() as i32])?;
                let hist: Vec<&[u32]> = run.rows.iter().map(|r| r.history.as_slice()).collect();
                let out = decode_step(lm, &input, &mut run.caches, &mut sampler, &hist)?;
                async_eval(&out.arrays())?;
                next = Some(out);
            }
            run.pending = next;
        }

        // No queued step may outlive the call (see generate::settle).
        crate::engine::generate::settle()?;
        let elapsed = start.elapsed();
        let prefill = first_token_at.unwrap_or(elapsed);
        let mut metrics = Metrics {
            prompt_tokens: prompts.iter().map(Vec::len).sum(),
            generated_tokens: generated_total,
            prefill,
            decode: elapsed.saturating_sub(prefill),
            ..Metrics::default()
        };
        metrics.finish_memory();
        crate::engine::utilization::UtilizationSampler::finish_into(gpu, &mut metrics);
        self.set_last_metrics(metrics);
        Ok(results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| Err(Error::invalid(format!("prompt {i} was not generated")))))
            .collect())
    }
}

/// A row for prompt `index`: its budget is `max_tokens`, capped so that prompt and
/// generation fit the context length.
fn new_row<'t>(
    index: usize,
    tokenizer: &'t crate::tokenizer::Tokenizer,
    params: &GenerateParams,
    prompt: &[u32],
    context: Option<usize>,
    needs_history: bool,
) -> Row<'t> {
    let max_tokens = match context {
        Some(ctx) => params.max_tokens.min(ctx.saturating_sub(prompt.len())),
        None => params.max_tokens,
    };
    Row {
        index,
        stream: TextStream::new(tokenizer, params, &[]),
        generated: 0,
        max_tokens,
        history: if needs_history { prompt.to_vec() } else { vec![] },
    }
}

/// Prefills new rows (all but their last token, as a batch of their own) and takes their
/// first step. `None` when cancelled during the prefill.
fn start_rows(
    lm: &dyn LanguageModel,
    prompts: &[&[u32]],
    histories: &[&[u32]],
    sampler: &mut Sampler,
    params: &GenerateParams,
    cancel: &crate::engine::CancelToken,
) -> Result<Option<(Vec<KvCache>, SampleOut)>> {
    let padded = Padded::new(prompts, |len| len - 1)?;
    let mut caches = lm.new_batch_caches(&padded.left_padding)?;
    if !padded.prefill(lm, &mut caches, padded.columns, params.prefill_step_size, cancel)? {
        return Ok(None);
    }
    let last: Vec<u32> = prompts.iter().map(|p| p[p.len() - 1]).collect();
    let input = Array::from_slice(&last, &[last.len() as i32])?;
    let hist: &[&[u32]] = if params.sampler.repetition_penalty != 1.0 { histories } else { &[] };
    let out = decode_step(lm, &input, &mut caches, sampler, hist)?;
    async_eval(&out.arrays())?;
    Ok(Some((caches, out)))
}

/// One decode step: `tokens: [rows]` (one per row) → the sampled next tokens.
///
/// On the CPU a greedy step that reports no log-probabilities is evaluated here, through
/// the sampler's shortcut that skips the log-softmax over the vocabulary (same tokens).
/// The pipelining it gives up gains nothing there: MLX's CPU `async_eval` waits for the
/// queued work anyway. On a GPU the step stays lazy.
fn decode_step(
    lm: &dyn LanguageModel,
    tokens: &Array,
    caches: &mut [KvCache],
    sampler: &mut Sampler,
    histories: &[&[u32]],
) -> Result<SampleOut> {
    let rows = tokens.size() as i32;
    let input = tokens.reshape(&[rows, 1])?;
    let logits = lm.forward_last(&input, caches)?;
    if sampler.greedy_shortcut_applies(&logits) && Device::default_device()? == Device::cpu() {
        return sampler.sample_batch_greedy_now(&logits, histories);
    }
    sampler.sample_batch_lazy(&logits, histories)
}
