//! `Model::batch_generate`: continuous batching.
//!
//! The running batch decodes one token per row per step, pipelined like the single-row
//! loop: step n+1 is queued with `async_eval` before step n's tokens are read. Each row
//! has its own `TextStream` (the detokenizer and stop logic of single generation), so it
//! stops where the same prompt generated alone stops. When rows finish they leave the
//! batch (their cache rows are dropped); when there is room, waiting prompts are
//! prefilled as a batch of their own, take their first step, and join the running batch
//! (their caches merged in, re-aligned on the last column). A prompt that starts like the
//! last one prefilled skips the shared part (`prefix`).
use std::collections::VecDeque;
use std::time::Instant;

use super::prefix::PrefixCache;
use super::rows::{extend_caches, filter_caches, join_rows, keep_rows, Padded};
use super::sampling::sample_rows;
use super::{batch_size_for, check_prompt, BatchParams};
use crate::engine::generate::GenerateParams;
use crate::engine::metrics::Metrics;
use crate::engine::model::{Generation, Model, TextStream, TokenEvent};
use crate::engine::sampler::{SampleOut, SampledToken, Sampler};
use crate::error::{Error, Result};
use crate::mlx::{async_eval, memory, Array};
use crate::models::LanguageModel;
use crate::nn::KvCache;

/// A prompt joining a continuously batched run (`Model::batch_stream`).
#[derive(Clone, Debug)]
pub struct RowRequest {
    /// The caller's name for the row, given back in `RowFeed`'s callbacks.
    pub id: usize,
    pub prompt: Vec<u32>,
    /// The row's own `max_tokens`, stop tokens and strings, `ignore_eos`,
    /// `context_length` and sampler settings (rows with different settings share the
    /// batch; see `sampling`).
    pub params: GenerateParams,
    /// Ids that end the row like EOS (a chat template's end-of-turn token).
    pub end_of_turn: Vec<u32>,
}

/// Where a continuously batched run gets its rows and sends their output.
pub trait RowFeed {
    /// Rows to join now, at most `room` (the rest stay with the feed). `running` is the
    /// number of rows in the batch; at 0 a feed may block until a request arrives.
    /// `None`: no more rows will come (the run ends when its rows finish).
    fn poll(&mut self, running: usize, room: usize) -> Option<Vec<RowRequest>>;
    /// On cancellation: the rows the feed still holds (they end as cancelled).
    fn drain(&mut self) -> Vec<RowRequest>;
    /// New text of row `id`; returning false stops that row (`FinishReason::Callback`).
    fn on_text(&mut self, id: usize, event: &TokenEvent<'_>) -> bool;
    /// Row `id` has ended (or could not start).
    fn on_done(&mut self, id: usize, result: Result<Generation>);
}

/// A row of the running batch.
struct Row<'t> {
    id: usize,
    prompt: Vec<u32>,
    stream: TextStream<'t>,
    generated: usize,
    max_tokens: usize,
    /// Prompt and sampled tokens, kept only for the repetition penalty.
    history: Vec<u32>,
    /// The row's own sampler (a seeded one holds the row's PRNG key).
    sampler: Sampler,
}

impl Row<'_> {
    fn needs_history(&self) -> bool {
        self.sampler.params().repetition_penalty != 1.0
    }

    /// Drops what a shared draw computed beyond what this row asked for: the
    /// log-probability, and top lists longer than its own (padded ones included).
    fn trim(&self, mut tok: SampledToken) -> SampledToken {
        let p = self.sampler.params();
        if !p.logprobs {
            tok.logprob = None;
        }
        tok.top_logprobs.truncate(if p.logprobs { p.top_logprobs } else { 0 });
        tok
    }
}

/// Each row's sampler with its history (empty histories when no row needs one).
fn samplers_and_histories<'a>(rows: &'a mut [Row<'_>]) -> (Vec<&'a mut Sampler>, Vec<&'a [u32]>) {
    let any = rows.iter().any(Row::needs_history);
    let (samplers, histories): (Vec<_>, Vec<_>) = rows.iter_mut().map(|r| (&mut r.sampler, r.history.as_slice())).unzip();
    (samplers, if any { histories } else { vec![] })
}

/// The running batch: its rows, their caches, and the sampled tokens not yet read.
struct Running<'t> {
    rows: Vec<Row<'t>>,
    caches: Vec<KvCache>,
    pending: Option<SampleOut>,
}

/// `batch_generate`'s feed: a fixed list of prompts, results collected by index.
struct ListFeed<'f, F> {
    waiting: VecDeque<RowRequest>,
    results: Vec<Option<Result<Generation>>>,
    on_text: &'f mut F,
}

impl<F: FnMut(usize, &TokenEvent<'_>) -> bool> RowFeed for ListFeed<'_, F> {
    fn poll(&mut self, _running: usize, room: usize) -> Option<Vec<RowRequest>> {
        if self.waiting.is_empty() {
            return None;
        }
        let n = room.min(self.waiting.len());
        Some(self.waiting.drain(..n).collect())
    }

    fn drain(&mut self) -> Vec<RowRequest> {
        self.waiting.drain(..).collect()
    }

    fn on_text(&mut self, id: usize, event: &TokenEvent<'_>) -> bool {
        (self.on_text)(id, event)
    }

    fn on_done(&mut self, id: usize, result: Result<Generation>) {
        self.results[id] = Some(result);
    }
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
        let info = self.info().clone();
        let mut feed = ListFeed { waiting: VecDeque::new(), results: Vec::with_capacity(encoded.len()), on_text: &mut on_text };
        let mut longest = 1;
        let row_params = GenerateParams { context_length: batch.context_length, ..params.clone() };
        for (i, e) in encoded.into_iter().enumerate() {
            match e.and_then(|ids| check_prompt(&ids, i, &info, batch.context_length, 1).map(|_| ids)) {
                Ok(ids) => {
                    longest = longest.max(ids.len());
                    feed.waiting.push_back(RowRequest { id: i, prompt: ids, params: row_params.clone(), end_of_turn: vec![] });
                    feed.results.push(None);
                }
                Err(e) => feed.results.push(Some(Err(e))),
            }
        }
        let max_rows = batch_size_for(&info, longest + params.max_tokens, params.prefill_step_size, batch.max_batch_size);
        self.run_batch(params.prefill_step_size, max_rows, &mut feed)?;
        Ok(feed
            .results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| Err(Error::invalid(format!("prompt {i} was not generated")))))
            .collect())
    }

    /// Continuous batching over rows that arrive while it runs: `feed` is polled between
    /// decode steps, its rows join the running batch (at most `max_rows` together, 0:
    /// automatic, sized for rows of 2048 positions) and leave it as they finish. Every row samples
    /// with its own settings; prompts are prefilled `prefill_step_size` tokens at a time.
    /// Returns when the feed has no more rows and the batch is empty, or, after ending
    /// every row as cancelled, when the model's cancel token fires.
    pub fn batch_stream(&mut self, prefill_step_size: usize, max_rows: usize, feed: &mut dyn RowFeed) -> Result<()> {
        self.begin_call();
        GenerateParams { prefill_step_size, ..GenerateParams::default() }.validate()?;
        let max_rows = if max_rows > 0 { max_rows } else { batch_size_for(self.info(), 2048, prefill_step_size, 0) };
        self.run_batch(prefill_step_size, max_rows, feed)
    }

    fn run_batch(&mut self, chunk: usize, max_rows: usize, feed: &mut dyn RowFeed) -> Result<()> {
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

        let mut first_token_at = None;
        let (mut prompt_total, mut generated_total, mut reused_total) = (0usize, 0usize, 0usize);
        let mut prefix = PrefixCache::default();
        let mut feed_open = true;

        let finish = |row: Row<'_>, cancelled: bool, feed: &mut dyn RowFeed| -> Result<()> {
            let Row { id, prompt, mut stream, generated, .. } = row;
            let reason = stream.end(cancelled, &mut |ev: &TokenEvent<'_>| feed.on_text(id, ev))?;
            let metrics = Metrics { prompt_tokens: prompt.len(), generated_tokens: generated, ..Metrics::default() };
            let tokens = std::mem::take(&mut stream.tokens);
            let text = std::mem::take(&mut stream.text);
            feed.on_done(id, Ok(Generation { prompt_tokens: prompt, tokens, text, finish_reason: reason, metrics }));
            Ok(())
        };
        // A request becomes a row, or fails alone.
        let admit = |req: RowRequest, feed: &mut dyn RowFeed| -> Option<Row<'_>> {
            let checked = req.params.validate().and_then(|_| check_prompt(&req.prompt, req.id, &info, req.params.context_length, 1));
            match checked.and_then(|_| Sampler::new(req.params.sampler.clone())) {
                Ok(sampler) => Some(new_row(req, &tokenizer, sampler)),
                Err(e) => {
                    feed.on_done(req.id, Err(e));
                    None
                }
            }
        };

        let mut run = Running { rows: Vec::new(), caches: Vec::new(), pending: None };
        loop {
            if cancel.is_cancelled() {
                for row in std::mem::take(&mut run.rows) {
                    finish(row, true, feed)?;
                }
                for req in feed.drain() {
                    if let Some(row) = admit(req, feed) {
                        finish(row, true, feed)?;
                    }
                }
                break;
            }
            // Waiting prompts join while there is room.
            if feed_open && run.rows.len() < max_rows {
                match feed.poll(run.rows.len(), max_rows - run.rows.len()) {
                    None => feed_open = false,
                    Some(reqs) => {
                        let rows: Vec<Row<'_>> = reqs.into_iter().filter_map(|r| admit(r, feed)).collect();
                        // A row allowed no token at all ends before it starts.
                        let (empty, live): (Vec<Row<'_>>, Vec<Row<'_>>) = rows.into_iter().partition(|r| r.max_tokens == 0);
                        for row in empty {
                            finish(row, false, feed)?;
                        }
                        if !live.is_empty() {
                            let mut live = live;
                            let Some((caches, out, reused)) = start_rows(lm, &mut live, &mut prefix, chunk, &cancel)? else {
                                // Cancelled while prefilling: they end as cancelled.
                                for row in live {
                                    finish(row, true, feed)?;
                                }
                                continue;
                            };
                            prompt_total += live.iter().map(|r| r.prompt.len()).sum::<usize>();
                            reused_total += reused;
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
                }
            }
            let Some(current) = run.pending.take() else {
                if !feed_open {
                    break;
                }
                continue;
            };
            // Queue the next step before reading this one (unless a sampler must see it).
            let needs_history = run.rows.iter().any(Row::needs_history);
            let mut next = None;
            if !needs_history {
                let (mut samplers, _) = samplers_and_histories(&mut run.rows);
                let out = decode_step(lm, &current.token, &mut run.caches, &mut samplers, &[])?;
                async_eval(&out.arrays())?;
                next = Some(out);
            }
            let toks = current.read()?;
            first_token_at.get_or_insert_with(|| start.elapsed());
            let mut keep = Vec::with_capacity(run.rows.len());
            let mut done = Vec::new();
            for (r, (row, tok)) in run.rows.iter_mut().zip(toks).enumerate() {
                row.generated += 1;
                generated_total += 1;
                if row.needs_history() {
                    row.history.push(tok.token);
                }
                let id = row.id;
                let tok = row.trim(tok);
                let go_on = row.stream.push(&tok, &mut |ev: &TokenEvent<'_>| feed.on_text(id, ev))?;
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
                        finish(row, false, feed)?;
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
                // Rows without a penalty keep no history: their last token is the stream's.
                let last: Vec<u32> = run.rows.iter().map(|r| *r.stream.tokens.last().or(r.history.last()).unwrap_or(&0)).collect();
                let input = Array::from_slice(&last, &[last.len() as i32])?;
                let (mut samplers, hist) = samplers_and_histories(&mut run.rows);
                let out = decode_step(lm, &input, &mut run.caches, &mut samplers, &hist)?;
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
            prompt_tokens: prompt_total,
            cached_prompt_tokens: reused_total,
            generated_tokens: generated_total,
            prefill,
            decode: elapsed.saturating_sub(prefill),
            ..Metrics::default()
        };
        metrics.finish_memory();
        crate::engine::utilization::UtilizationSampler::finish_into(gpu, &mut metrics);
        self.set_last_metrics(metrics);
        Ok(())
    }
}

/// The row for `req`: its budget is its `max_tokens`, capped so that prompt and
/// generation fit its context length.
fn new_row(req: RowRequest, tokenizer: &crate::tokenizer::Tokenizer, sampler: Sampler) -> Row<'_> {
    let max_tokens = match req.params.context_length {
        Some(ctx) => req.params.max_tokens.min(ctx.saturating_sub(req.prompt.len())),
        None => req.params.max_tokens,
    };
    Row {
        id: req.id,
        stream: TextStream::new(tokenizer, &req.params, &req.end_of_turn),
        generated: 0,
        max_tokens,
        history: if sampler.params().repetition_penalty != 1.0 { req.prompt.clone() } else { vec![] },
        prompt: req.prompt,
        sampler,
    }
}

/// Prefills new rows (all but their last token, as a batch of their own, from where the
/// kept prompt prefix leaves off) and takes their first step. Also returns how many
/// prompt tokens came from the kept prefix. `None` when cancelled during the prefill.
fn start_rows(
    lm: &dyn LanguageModel,
    rows: &mut [Row<'_>],
    prefix: &mut PrefixCache,
    chunk: usize,
    cancel: &crate::engine::CancelToken,
) -> Result<Option<(Vec<KvCache>, SampleOut, usize)>> {
    let prompts: Vec<&[u32]> = rows.iter().map(|r| r.prompt.as_slice()).collect();
    let padded = Padded::new(&prompts, |len| len - 1)?;
    let mut caches = lm.new_batch_caches(&padded.left_padding)?;
    let known = prefix.known_columns(&prompts, &padded.left_padding, &caches);
    if known > 0 {
        prefix.seed(&mut caches, &padded.left_padding, known)?;
    }
    if !padded.prefill(lm, &mut caches, known, padded.columns, chunk, cancel)? {
        return Ok(None);
    }
    let reused = padded.left_padding.iter().map(|&pad| (known - pad).max(0) as usize).sum();
    // The longest prompt (least padding) is the likeliest to cover later rows.
    let longest = (0..prompts.len()).min_by_key(|&r| padded.left_padding[r]).unwrap_or(0);
    prefix.keep(&caches, longest, prompts[longest], padded.left_padding[longest])?;
    let last: Vec<u32> = prompts.iter().map(|p| p[p.len() - 1]).collect();
    let input = Array::from_slice(&last, &[last.len() as i32])?;
    let (mut samplers, hist) = samplers_and_histories(rows);
    let out = decode_step(lm, &input, &mut caches, &mut samplers, &hist)?;
    async_eval(&out.arrays())?;
    Ok(Some((caches, out, reused)))
}

/// One decode step: `tokens: [rows]` (one per row) → the sampled next tokens, each row
/// by its own sampler.
fn decode_step(
    lm: &dyn LanguageModel,
    tokens: &Array,
    caches: &mut [KvCache],
    samplers: &mut [&mut Sampler],
    histories: &[&[u32]],
) -> Result<SampleOut> {
    let rows = tokens.size() as i32;
    let input = tokens.reshape(&[rows, 1])?;
    let logits = lm.forward_last(&input, caches)?;
    sample_rows(&logits, samplers, histories)
}
