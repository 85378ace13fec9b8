//! The token-level generate loop, mirroring mlx-lm's `generate_step` so that greedy
//! output is identical to it:
//!
//! - prefill: all prompt tokens but the last go through the model in chunks of
//!   `prefill_step_size`, evaluating only the caches (the logits of those positions are
//!   never computed) and freeing MLX's buffer cache after each chunk;
//! - the last prompt token is the first decode step: logits → log-probs → sampler (a
//!   greedy sampler skips the log-softmax when it cannot change the token: `Queued`);
//! - pipelining: step n+1's graph is built and queued with `async_eval` before token n is
//!   read back, so the device never waits for the host between tokens. (With a
//!   repetition penalty the next step needs token n on the host, so those calls read
//!   each token before building the next step.)
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::metrics::Metrics;
use super::sampler::{greedy_unchecked, SampleOut, SampledToken, Sampler, SamplerParams};
use super::utilization::UtilizationSampler;
use crate::error::{Error, Result};
use crate::mlx::{async_eval, eval, memory, Array, Dtype};
use crate::models::LanguageModel;
use crate::nn::{KvCache, KvQuantization};

/// mlx-lm's default prefill chunk.
pub const DEFAULT_PREFILL_STEP: usize = 2048;

/// Token-level generation settings.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Most tokens to generate (a stop token counts).
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Token ids that end generation, besides the model's end-of-sequence ids.
    pub stop_tokens: Vec<u32>,
    /// Strings that end generation; the text up to the stop string is kept.
    pub stop_strings: Vec<String>,
    /// Keep going through end-of-sequence tokens (benchmarks, comparisons).
    pub ignore_eos: bool,
    /// Prompt tokens per prefill chunk.
    pub prefill_step_size: usize,
    /// Store the KV cache quantized (mlx-lm's `kv_bits`, `kv_group_size`,
    /// `quantized_kv_start`); `None`: full precision.
    pub kv_quantization: Option<KvQuantization>,
    /// Longest prompt + generation allowed, in tokens: a longer prompt is an error and
    /// `max_tokens` is cut to what fits. `None`: no limit.
    pub context_length: Option<usize>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            sampler: SamplerParams::default(),
            stop_tokens: vec![],
            stop_strings: vec![],
            ignore_eos: false,
            prefill_step_size: DEFAULT_PREFILL_STEP,
            kv_quantization: None,
            context_length: None,
        }
    }
}

impl GenerateParams {
    pub fn validate(&self) -> Result<()> {
        if self.prefill_step_size == 0 {
            return Err(Error::invalid("prefill_step_size must be at least 1"));
        }
        if let Some(q) = &self.kv_quantization {
            q.validate()?;
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return Err(Error::invalid("stop_strings must not contain an empty string"));
        }
        self.sampler.validate()
    }
}

/// Requests that a running generation stop before its next token. Cheap to clone and
/// safe to use from any thread.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// One decoded step as the loop hands it to its consumer.
pub type StepFn<'a> = dyn FnMut(&SampledToken) -> Result<bool> + 'a;

/// Why the token loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopEnd {
    /// `max_tokens` were produced.
    MaxTokens,
    /// The consumer returned `false` (a stop token or string, or the caller's callback).
    Consumer,
    /// The cancel token was set.
    Cancelled,
}

/// Runs prefill over `prompt` (appending to `caches`, which may already hold earlier
/// positions) and decodes up to `max_tokens` tokens, handing each to `on_token`, which
/// returns `false` to stop. Returns the metrics and why it ended; token ids reach the
/// caller through `on_token` only.
pub fn generate_tokens(
    model: &dyn LanguageModel,
    caches: &mut [KvCache],
    prompt: &[u32],
    max_tokens: usize,
    sampler_params: &SamplerParams,
    prefill_step_size: usize,
    cancel: Option<&CancelToken>,
    on_token: &mut StepFn<'_>,
) -> Result<(Metrics, LoopEnd)> {
    generate_tokens_after(model, caches, &[], prompt, max_tokens, sampler_params, prefill_step_size, cancel, on_token)
}

/// `generate_tokens` for caches that hold the positions of `cached`, the tokens that came
/// before `prompt` (a conversation's earlier turns). Only `prompt` is computed; `cached`
/// is still part of the history the repetition penalty looks at, so the result is the
/// one a run over `cached` + `prompt` from empty caches gives. The metrics count the
/// whole prompt in `prompt_tokens` and `cached` in `cached_prompt_tokens`.
#[allow(clippy::too_many_arguments)]
pub fn generate_tokens_after(
    model: &dyn LanguageModel,
    caches: &mut [KvCache],
    cached: &[u32],
    prompt: &[u32],
    max_tokens: usize,
    sampler_params: &SamplerParams,
    prefill_step_size: usize,
    cancel: Option<&CancelToken>,
    on_token: &mut StepFn<'_>,
) -> Result<(Metrics, LoopEnd)> {
    if prompt.is_empty() {
        return Err(Error::invalid("the prompt has no tokens"));
    }
    if !cached.is_empty() {
        if let Some(c) = caches.iter().find(|c| c.offset() as usize != cached.len()) {
            return Err(Error::invalid(format!(
                "the caches hold {} positions but {} cached tokens were given",
                c.offset(),
                cached.len()
            )));
        }
    }
    let vocab = model.info().vocab_size as u32;
    if let Some(&bad) = prompt.iter().find(|&&t| t >= vocab) {
        return Err(Error::invalid(format!("prompt token {bad} is outside the vocabulary of {vocab}")));
    }
    let cancelled = || cancel.is_some_and(CancelToken::is_cancelled);
    let mut sampler = Sampler::new(sampler_params.clone())?;
    let mut metrics =
        Metrics { prompt_tokens: cached.len() + prompt.len(), cached_prompt_tokens: cached.len(), ..Metrics::default() };
    memory::reset_peak_memory();
    let start = Instant::now();
    let gpu = UtilizationSampler::start();

    // Prefill everything but the last prompt token.
    let mut rest = prompt;
    while rest.len() > 1 {
        if cancelled() {
            metrics.prefill = start.elapsed();
            metrics.finish_memory();
            UtilizationSampler::finish_into(gpu, &mut metrics);
            return Ok((metrics, LoopEnd::Cancelled));
        }
        let n = prefill_step_size.min(rest.len() - 1);
        let chunk = ids_array(&rest[..n])?;
        model.forward(&chunk, caches)?;
        let state: Vec<&Array> = caches.iter().flat_map(|c| c.state()).collect();
        eval(&state)?;
        rest = &rest[n..];
        memory::clear_cache();
    }

    // History for the repetition penalty: prompt plus what has been generated.
    let needs_history = sampler_params.repetition_penalty != 1.0;
    let mut history: Vec<u32> = if needs_history { [cached, prompt].concat() } else { vec![] };
    let step = |input: &Array, sampler: &mut Sampler, history: &[u32], caches: &mut [KvCache]| -> Result<Queued> {
        let logits = model.forward(input, caches)?;
        let last = logits.slice_axis(1, -1 + logits.dim(1)?, logits.dim(1)?)?.squeeze(&[1])?;
        if !needs_history && sampler.greedy_shortcut_applies(&last) {
            let (token, unsure) = greedy_unchecked(&last)?;
            let out = SampleOut { token: token.reshape(&[])?, logprob: None, top_ids: None, top_logprobs: None, nan: None };
            return Ok(Queued { out, check: Some((unsure, last)) });
        }
        Ok(Queued { out: sampler.sample_lazy(&last, history)?, check: None })
    };

    let mut current = step(&ids_array(rest)?, &mut sampler, &history, caches)?;
    async_eval(&current.arrays())?;
    let mut n = 0usize;
    let end = loop {
        // Queue step n+1 before reading token n (unless the sampler must see token n).
        let mut next = None;
        if n + 1 < max_tokens && !needs_history {
            let input = current.out.token.reshape(&[1, 1])?;
            let out = step(&input, &mut sampler, &history, caches)?;
            async_eval(&out.arrays())?;
            next = Some(out);
        }
        if n >= max_tokens {
            break LoopEnd::MaxTokens;
        }
        let tok = current.confirm(&mut sampler, &mut next, caches)?;
        if n == 0 {
            metrics.prefill = start.elapsed();
        }
        n += 1;
        metrics.generated_tokens = n;
        if !on_token(&tok)? {
            break LoopEnd::Consumer;
        }
        if n >= max_tokens {
            break LoopEnd::MaxTokens;
        }
        if cancelled() {
            break LoopEnd::Cancelled;
        }
        if n % 256 == 0 {
            memory::clear_cache();
        }
        current = match next {
            Some(out) => out,
            None => {
                history.push(tok.token);
                let input = Array::from_slice(&[tok.token], &[1, 1])?;
                let out = step(&input, &mut sampler, &history, caches)?;
                async_eval(&out.arrays())?;
                out
            }
        };
    };
    // The step queued for a token that will not be read is still running on MLX's stream:
    // wait for it, so that no work outlives the call (a process that exits with a matmul
    // in flight crashes in OpenBLAS's teardown, which frees the buffers under it).
    settle()?;
    metrics.decode = start.elapsed().saturating_sub(metrics.prefill);
    metrics.finish_memory();
    UtilizationSampler::finish_into(gpu, &mut metrics);
    Ok((metrics, end))
}

/// A queued step's sample. A greedy sampler without log-probabilities takes the argmax of
/// the logits instead of mlx-lm's argmax of their log-softmax, whose vocabulary-wide `exp`
/// is a large part of a small model's decode step on the CPU. The two can differ only
/// when an earlier entry lies within rounding of the maximum: `check` holds that flag and
/// the logits, and `confirm` redoes such a step the exact way.
struct Queued {
    out: SampleOut,
    check: Option<(Array, Array)>,
}

impl Queued {
    fn arrays(&self) -> Vec<&Array> {
        let mut v = self.out.arrays();
        v.extend(self.check.as_ref().map(|(unsure, _)| unsure));
        v
    }

    /// Reads the token. When the shortcut was unsure and the exact token differs, the
    /// step already queued after it (fed the wrong token) is dropped and its cache
    /// position taken back, so the caller queues it again from the right token.
    fn confirm(&self, sampler: &mut Sampler, next: &mut Option<Queued>, caches: &mut [KvCache]) -> Result<SampledToken> {
        eval(&self.arrays())?;
        let none = || Error::Mlx("sampler returned no token".into());
        let tok = self.out.read()?.pop().ok_or_else(none)?;
        let Some((unsure, logits)) = &self.check else { return Ok(tok) };
        if !unsure.to_vec::<bool>()?.first().copied().unwrap_or(false) {
            return Ok(tok);
        }
        let exact = sampler.sample_lazy(logits, &[])?.read()?.pop().ok_or_else(none)?;
        if exact.token != tok.token && next.take().is_some() {
            for (i, c) in caches.iter_mut().enumerate() {
                if !c.rewind_step() {
                    return Err(Error::Mlx(format!("layer {i}'s cache cannot take back a decode step")));
                }
            }
        }
        Ok(exact)
    }
}

/// Waits for everything queued on the default device's stream.
pub(crate) fn settle() -> Result<()> {
    crate::mlx::Device::default_device()?.synchronize()
}

/// Token ids as the `[1, n]` int32 array the models take.
fn ids_array(ids: &[u32]) -> Result<Array> {
    let v: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    Array::from_slice(&v, &[1, v.len() as i32])
}

/// Logits of a full forward pass over `tokens` (no cache reuse): `[len, vocab]` in f32.
pub fn forward_logits(model: &dyn LanguageModel, tokens: &[u32]) -> Result<Array> {
    let mut caches = model.new_caches();
    let logits = model.forward(&ids_array(tokens)?, &mut caches)?;
    logits.squeeze(&[0])?.astype(Dtype::F32)
}
