//! Sampling: turns a step's logits into the next token.
//!
//! The chain, applied to each row of logits:
//!
//! 1. repetition penalty on the raw logits (the rule of mlx-lm and HF transformers:
//!    a recently seen token's positive logit is divided by the penalty, a negative one
//!    multiplied, so the penalty always makes the token less likely);
//! 2. log-softmax, `logits - logsumexp(logits)`, in the logits' dtype as mlx-lm computes it,
//!    so greedy decoding picks the same token as mlx-lm even where rounding ties two
//!    near-equal entries;
//! 3. top-k, top-p, min-p: filtered entries become `-inf`;
//! 4. temperature, then one categorical draw (temperature 0 takes the argmax instead and
//!    ignores the filters, which never remove the most likely token).
//!
//! Everything stays on the MLX side as a lazy graph: `sample_lazy` returns the token as an
//! unevaluated `Array`, so the decode loop can feed it into step n+1's graph before token n
//! has been read. `sample` is the eager convenience that evaluates and reads it.
//!
//! With a seed the sampler owns an MLX PRNG key and splits it on every draw, so its tokens
//! depend only on the seed and the logits it is given: not on MLX's global generator, and
//! not on other samplers drawing in the same process.
use crate::error::{Error, Result};
use crate::mlx::{random, transforms, where_, Array, Dtype};

/// How tokens are chosen. `Default` is greedy decoding with every filter off.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 turns the filter off. A value at or
    /// above the vocabulary size keeps everything.
    pub top_k: i32,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probability
    /// adds up to at least `top_p`; 1.0 turns the filter off.
    pub top_p: f32,
    /// Keep only tokens whose probability is at least `min_p` times the most likely one's;
    /// 0 turns the filter off.
    pub min_p: f32,
    /// The fewest tokens top-p and min-p may leave (at least 1).
    pub min_tokens_to_keep: usize,
    /// Penalty for tokens among the last `repetition_context_size` of the history;
    /// 1.0 turns it off, values above 1 discourage repeats.
    pub repetition_penalty: f32,
    /// How many of the most recent history tokens the repetition penalty looks at.
    pub repetition_context_size: usize,
    /// Seed for a private random generator; `None` draws from MLX's global generator
    /// (seeded with `mlx::random::seed`), as mlx-lm does.
    pub seed: Option<u64>,
    /// Also return the chosen token's log-probability.
    pub logprobs: bool,
    /// With `logprobs`, also return this many most likely alternatives and their
    /// log-probabilities (capped at the vocabulary size).
    pub top_logprobs: usize,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            min_tokens_to_keep: 1,
            repetition_penalty: 1.0,
            // mlx-lm's default window.
            repetition_context_size: 20,
            seed: None,
            logprobs: false,
            top_logprobs: 0,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding (the same as `Default`).
    pub fn greedy() -> Self {
        SamplerParams::default()
    }

    /// True when tokens are chosen by argmax rather than drawn.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every field, naming the first bad one and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: &dyn std::fmt::Display, want: &str| {
            Err(Error::InvalidArgument(format!("sampler {field} = {value} is invalid: {want}")))
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", &self.temperature, "it must be finite and >= 0 (0 = greedy)");
        }
        if self.top_k < 0 {
            return bad("top_k", &self.top_k, "it must be >= 0 (0 = off)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", &self.top_p, "it must be in (0, 1] (1 = off)");
        }
        if !(self.min_p >= 0.0 && self.min_p < 1.0) {
            return bad("min_p", &self.min_p, "it must be in [0, 1) (0 = off)");
        }
        if self.min_tokens_to_keep < 1 {
            return bad("min_tokens_to_keep", &self.min_tokens_to_keep, "it must be >= 1");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", &self.repetition_penalty, "it must be finite and > 0 (1 = off)");
        }
        if self.repetition_context_size < 1 {
            return bad("repetition_context_size", &self.repetition_context_size, "it must be >= 1");
        }
        if self.top_logprobs > 0 && !self.logprobs {
            return bad("top_logprobs", &self.top_logprobs, "it needs logprobs = true");
        }
        Ok(())
    }
}

/// One sampled token, read back from the device.
#[derive(Clone, Debug, PartialEq)]
pub struct SampledToken {
    pub token: u32,
    /// The token's log-probability under the (penalised) model distribution, before
    /// filters and temperature; present when `logprobs` is on.
    pub logprob: Option<f32>,
    /// The `top_logprobs` most likely tokens with their log-probabilities, most likely
    /// first (ties: lower id first); empty unless asked for.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// The result of a draw, not yet evaluated. For logits of shape `[..., vocab]` the token
/// has shape `[...]` (a scalar for `[vocab]`, `[1]` for `[1, vocab]`, `[batch]` for a batch).
#[derive(Debug)]
pub struct SampleOut {
    /// The chosen token ids, uint32.
    pub token: Array,
    /// float32 log-probabilities of the chosen tokens, same shape as `token`.
    pub logprob: Option<Array>,
    /// uint32 ids of the most likely tokens, shape `[..., top_logprobs]`, most likely first.
    pub top_ids: Option<Array>,
    /// float32 log-probabilities matching `top_ids`.
    pub top_logprobs: Option<Array>,
    /// bool, same shape as `token`: true where the row's logits held a NaN (a model with
    /// NaN weights, or activations that overflowed the compute dtype). Such a row's
    /// token is garbage (argmax picks a NaN entry), so `read` and `check_nan` refuse it.
    pub nan: Option<Array>,
}

/// The lazy half of the greedy shortcut (see `Sampler::sample_batch_greedy_now`) over
/// `[batch, vocab]` logits: each row's argmax, uint32 `[batch]`, and whether mlx-lm's
/// argmax of the log-softmax might differ from it, bool `[batch]`: an earlier entry lies
/// within rounding of the maximum, or the maximum is not finite (a NaN row among them).
pub(crate) fn greedy_unchecked(logits: &Array) -> Result<(Array, Array)> {
    let best = logits.argmax(-1, true)?;
    let max = logits.take_along_axis(&best, -1)?;
    // `x - c` with `m <= c <= m + ln(vocab)`: two entries round together only if they
    // differ by at most 2^-22 * |x - c| < 5e-6 (vocab < 2^24). `tol` is ten times
    // that, plus enough for `max - tol` itself to round.
    let tol = max.abs()?.mul_scalar(2f64.powi(-20))?.add_scalar(2f64.powi(-14))?;
    let first_near = logits.greater_equal(&max.sub(&tol)?)?.argmax(-1, false)?;
    let unsure = first_near.not_equal(&best.squeeze(&[-1])?)?.logical_or(&max.sub(&max)?.isnan()?.squeeze(&[-1])?)?;
    Ok((best.squeeze(&[-1])?.astype(Dtype::U32)?, unsure))
}

impl SampleOut {
    /// Every array of the result, for `eval` / `async_eval`.
    pub fn arrays(&self) -> Vec<&Array> {
        let mut v = vec![&self.token];
        v.extend(self.nan.iter());
        v.extend(self.logprob.iter());
        v.extend(self.top_ids.iter());
        v.extend(self.top_logprobs.iter());
        v
    }

    /// Evaluates the result and reads one `SampledToken` per row.
    pub fn read(&self) -> Result<Vec<SampledToken>> {
        transforms::eval(&self.arrays())?;
        self.check_nan()?;
        let tokens = self.token.to_vec::<u32>()?;
        let logprobs = self.logprob.as_ref().map(|a| a.to_vec::<f32>()).transpose()?;
        let top_ids = self.top_ids.as_ref().map(|a| a.to_vec::<u32>()).transpose()?.unwrap_or_default();
        let top_lps = self.top_logprobs.as_ref().map(|a| a.to_vec::<f32>()).transpose()?.unwrap_or_default();
        let rows = tokens.len();
        let n = top_ids.len().checked_div(rows).unwrap_or(0);
        Ok(tokens
            .iter()
            .enumerate()
            .map(|(r, &token)| {
                let mut top: Vec<(u32, f32)> = top_ids[r * n..(r + 1) * n]
                    .iter()
                    .copied()
                    .zip(top_lps[r * n..(r + 1) * n].iter().copied())
                    .collect();
                // MLX's sort is not promised stable; fix the order of equal entries.
                top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                SampledToken { token, logprob: logprobs.as_ref().map(|l| l[r]), top_logprobs: top }
            })
            .collect())
    }

    /// Fails when a row's logits held a NaN; evaluates the flag if it is not yet.
    pub fn check_nan(&self) -> Result<()> {
        self.check_nan_rows(|r| r)
    }

    /// `check_nan` for a result over a subset of a batch: `row` maps its rows to the
    /// batch's, which the error names.
    fn check_nan_rows(&self, row: impl Fn(usize) -> usize) -> Result<()> {
        let Some(nan) = &self.nan else { return Ok(()) };
        if let Some(r) = nan.to_vec::<bool>()?.iter().position(|&b| b) {
            return Err(Error::Weights(format!(
                "the logits contain NaN (batch row {}): the model's weights hold NaN or Inf, or its \
                 activations overflowed the compute dtype; no token was sampled",
                row(r)
            )));
        }
        Ok(())
    }
}

/// Chooses tokens from logits according to `SamplerParams`. Holds the PRNG key of a
/// seeded sampler, hence `&mut self` for every draw.
#[derive(Debug)]
pub struct Sampler {
    params: SamplerParams,
    key: Option<Array>,
}

impl Sampler {
    /// Validates `params` and, when seeded, makes the sampler's own PRNG key.
    pub fn new(params: SamplerParams) -> Result<Sampler> {
        params.validate()?;
        let key = params.seed.map(random::key).transpose()?;
        Ok(Sampler { params, key })
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Restarts a seeded sampler's random sequence from its seed (no-op when unseeded).
    pub fn reset(&mut self) -> Result<()> {
        self.key = self.params.seed.map(random::key).transpose()?;
        Ok(())
    }

    /// Samples one token from logits of shape `[vocab]` or `[1, vocab]` (f32, bf16 or f16),
    /// given the sequence's tokens so far (prompt and generated; only the repetition penalty
    /// reads it). Evaluates and reads the result.
    pub fn sample(&mut self, logits: &Array, history: &[u32]) -> Result<SampledToken> {
        let out = self.sample_lazy(logits, history)?;
        out.read()?
            .pop()
            .ok_or_else(|| Error::Mlx("sampling produced no token".into()))
    }

    /// `sample` without evaluating: the token comes back as a lazy uint32 array (a scalar
    /// for `[vocab]` logits, shape `[1]` for `[1, vocab]`).
    pub fn sample_lazy(&mut self, logits: &Array, history: &[u32]) -> Result<SampleOut> {
        let shape = logits.shape();
        match shape.as_slice() {
            [_] => {
                let rows = logits.reshape(&[1, -1])?;
                let out = self.draw(&rows, &[history])?;
                Ok(SampleOut {
                    token: out.token.reshape(&[])?,
                    logprob: out.logprob.map(|a| a.reshape(&[])).transpose()?,
                    top_ids: out.top_ids.map(|a| a.reshape(&[-1])).transpose()?,
                    top_logprobs: out.top_logprobs.map(|a| a.reshape(&[-1])).transpose()?,
                    nan: out.nan.map(|a| a.reshape(&[])).transpose()?,
                })
            }
            [1, _] => self.draw(logits, &[history]),
            _ => Err(Error::invalid(format!(
                "sample needs logits of shape [vocab] or [1, vocab], got {shape:?} (use sample_batch for several rows)"
            ))),
        }
    }

    /// Samples one token per row of `[batch, vocab]` logits. `histories` holds each row's
    /// tokens so far, or is empty when no row has any. One draw serves the whole batch, so
    /// a seeded sampler's rows are independent of each other yet reproducible together.
    pub fn sample_batch(&mut self, logits: &Array, histories: &[&[u32]]) -> Result<Vec<SampledToken>> {
        self.sample_batch_lazy(logits, histories)?.read()
    }

    /// `sample_batch` without evaluating: tokens of shape `[batch]`.
    pub fn sample_batch_lazy(&mut self, logits: &Array, histories: &[&[u32]]) -> Result<SampleOut> {
        let shape = logits.shape();
        if shape.len() != 2 {
            return Err(Error::invalid(format!(
                "sample_batch needs logits of shape [batch, vocab], got {shape:?}"
            )));
        }
        if !histories.is_empty() && histories.len() != shape[0] as usize {
            return Err(Error::invalid(format!(
                "{} histories given for a batch of {} rows",
                histories.len(),
                shape[0]
            )));
        }
        self.draw(logits, histories)
    }

    /// Whether `sample_batch_greedy_now` applies: greedy, no log-probabilities asked for,
    /// f32 logits over a vocabulary below 2^24 (the bound its tie check assumes).
    pub fn greedy_shortcut_applies(&self, logits: &Array) -> bool {
        let shape = logits.shape();
        self.params.is_greedy()
            && !self.params.logprobs
            && logits.dtype() == Dtype::F32
            && shape.len() == 2
            && shape[1] < 1 << 24
    }

    /// `sample_batch` for a greedy sampler, evaluated now, without the vocabulary-wide
    /// log-softmax when it cannot change the result. mlx-lm takes the argmax of
    /// `logits - logsumexp(logits)`; subtracting the same `c` from every entry keeps the
    /// order, except that rounding can merge entries within a few ulps of the maximum
    /// into a tie, which argmax resolves to the first. So the argmax of the logits is the
    /// answer unless an earlier entry lies within `tol` of the maximum (or the maximum is
    /// not finite): only then is the log-softmax computed, for those rows. On the CPU
    /// the log-softmax's `exp` over every logit is most of a small model's decode step.
    /// Tokens only; call it when `greedy_shortcut_applies`.
    pub fn sample_batch_greedy_now(&mut self, logits: &Array, histories: &[&[u32]]) -> Result<SampleOut> {
        let vocab = logits.dim(1)?;
        let logits = self.penalise(logits, histories, vocab)?;
        let (token, unsure) = greedy_unchecked(&logits)?;
        transforms::eval(&[&token, &unsure])?;
        let unsure: Vec<u32> = unsure.to_vec::<bool>()?.iter().enumerate().filter(|(_, &u)| u).map(|(r, _)| r as u32).collect();
        if unsure.is_empty() {
            return Ok(SampleOut { token, logprob: None, top_ids: None, top_logprobs: None, nan: None });
        }
        // Only the unsure rows take the full path (each row's log-softmax is its own); a
        // row with a NaN is always unsure (its maximum is NaN), so the check is there.
        let rows = Array::from_slice(&unsure, &[unsure.len() as i32])?;
        let out = self.draw(&logits.take(&rows, 0)?, &[])?;
        transforms::eval(&out.arrays())?;
        out.check_nan_rows(|r| unsure[r] as usize)?;
        let exact = out.token.to_vec::<u32>()?;
        let mut tokens = token.to_vec::<u32>()?;
        for (&r, &t) in unsure.iter().zip(&exact) {
            tokens[r as usize] = t;
        }
        let token = Array::from_slice(&tokens, &[tokens.len() as i32])?;
        Ok(SampleOut { token, logprob: None, top_ids: None, top_logprobs: None, nan: None })
    }

    /// The chain over `[batch, vocab]` logits; tokens of shape `[batch]`.
    fn draw(&mut self, logits: &Array, histories: &[&[u32]]) -> Result<SampleOut> {
        let dtype = logits.dtype();
        if !matches!(dtype, Dtype::F32 | Dtype::Bf16 | Dtype::F16) {
            return Err(Error::invalid(format!("logits must be float32, bfloat16 or float16, got {dtype}")));
        }
        let (batch, vocab) = (logits.dim(0)?, logits.dim(1)?);
        if batch < 1 || vocab < 1 {
            return Err(Error::invalid(format!("logits of shape [{batch}, {vocab}] hold nothing to sample")));
        }
        let p = self.params.clone();

        let logits = self.penalise(logits, histories, vocab)?;
        // One vocabulary-wide test per row, evaluated with the token (no extra sync); the
        // log-sum-exp cannot stand in for it, as a +inf logit makes it NaN too.
        let nan = logits.isnan()?.any(Some(&[-1]), false)?;
        let logprobs = logits.sub(&logits.logsumexp(Some(&[-1]), true)?)?;

        let token = if p.is_greedy() {
            logprobs.argmax(-1, false)?
        } else {
            // mlx-lm's order (top-p, then min-p, then top-k): the filters do not commute
            // when two of them are on, so any other order samples from another set.
            let mut filtered = logprobs.clone();
            let keep = p.min_tokens_to_keep.min(vocab as usize) as i32;
            if p.top_p < 1.0 {
                filtered = top_p(&filtered, p.top_p, keep)?;
            }
            if p.min_p > 0.0 {
                filtered = min_p(&filtered, p.min_p, keep)?;
            }
            if p.top_k > 0 && p.top_k < vocab {
                filtered = top_k(&filtered, p.top_k, batch, vocab)?;
            }
            // Scaled in f32: a small temperature would overflow float16.
            let scaled = filtered.astype(Dtype::F32)?.mul_scalar(1.0 / p.temperature as f64)?;
            let key = self.next_key()?;
            random::categorical(&scaled, -1, None, key.as_ref())?
        };
        let token = if token.dtype() == Dtype::U32 { token } else { token.astype(Dtype::U32)? };

        let (mut logprob, mut top_ids, mut top_logprobs) = (None, None, None);
        if self.params.logprobs {
            // Reported in f32 even for half-precision logits.
            let lp = if dtype == Dtype::F32 {
                logprobs
            } else {
                let l = logits.astype(Dtype::F32)?;
                l.sub(&l.logsumexp(Some(&[-1]), true)?)?
            };
            logprob = Some(lp.take_along_axis(&token.expand_dims(&[-1])?, -1)?.squeeze(&[-1])?);
            let n = self.params.top_logprobs.min(vocab as usize) as i32;
            if n > 0 {
                let part = lp.neg()?.argpartition(n - 1, -1)?.slice_axis(-1, 0, n)?;
                let vals = lp.take_along_axis(&part, -1)?;
                let order = vals.neg()?.argsort(-1)?;
                top_ids = Some(part.take_along_axis(&order, -1)?.astype(Dtype::U32)?);
                top_logprobs = Some(vals.take_along_axis(&order, -1)?);
            }
        }
        Ok(SampleOut { token, logprob, top_ids, top_logprobs, nan: Some(nan) })
    }

    /// The repetition penalty over each row's last `repetition_context_size` tokens. A token
    /// seen several times in the window is penalised once, as in mlx-lm.
    fn penalise(&self, logits: &Array, histories: &[&[u32]], vocab: i32) -> Result<Array> {
        let penalty = self.params.repetition_penalty;
        if penalty == 1.0 || histories.iter().all(|h| h.is_empty()) {
            return Ok(logits.clone());
        }
        let ctx = self.params.repetition_context_size;
        let mut windows = Vec::with_capacity(histories.len());
        for h in histories {
            let mut w = h[h.len().saturating_sub(ctx)..].to_vec();
            w.sort_unstable();
            w.dedup();
            if let Some(&t) = w.iter().find(|&&t| t >= vocab as u32) {
                return Err(Error::invalid(format!("history token {t} is outside the vocabulary of {vocab}")));
            }
            windows.push(w);
        }
        // Rows are padded to one width by repeating a token already in the row (the
        // scatter then writes the same value twice); an empty row points at token 0 and
        // writes its logit back unchanged.
        let width = windows.iter().map(Vec::len).max().unwrap_or(0);
        let rows = windows.len();
        let mut idx = Vec::with_capacity(rows * width);
        let mut live = Vec::with_capacity(rows * width);
        for w in &windows {
            let pad = w.first().copied();
            for j in 0..width {
                idx.push(w.get(j).copied().or(pad).unwrap_or(0) as i32);
                live.push(pad.is_some());
            }
        }
        let shape = [rows as i32, width as i32];
        let idx = Array::from_slice(&idx, &shape)?;
        let seen = logits.take_along_axis(&idx, -1)?;
        let zero = seen.scalar_like(0.0)?;
        let penalised = where_(
            &seen.less(&zero)?,
            &seen.mul_scalar(penalty as f64)?,
            &seen.div(&seen.scalar_like(penalty as f64)?)?,
        )?;
        let penalised = if live.iter().all(|&l| l) {
            penalised
        } else {
            where_(&Array::from_slice(&live, &shape)?, &penalised, &seen)?
        };
        logits.put_along_axis(&idx, &penalised, -1)
    }

    /// The key for this draw; the sampler keeps the other half of the split.
    fn next_key(&mut self) -> Result<Option<Array>> {
        let Some(key) = &self.key else { return Ok(None) };
        let pair = random::split(key, 2)?;
        let keep = pair.slice_axis(0, 0, 1)?.reshape(&[2])?;
        let draw = pair.slice_axis(0, 1, 2)?.reshape(&[2])?;
        self.key = Some(keep);
        Ok(Some(draw))
    }
}

/// Keeps exactly the `k` largest entries of each row (ties broken arbitrarily).
fn top_k(logprobs: &Array, k: i32, batch: i32, vocab: i32) -> Result<Array> {
    let rest = logprobs.neg()?.argpartition(k - 1, -1)?.slice_axis(-1, k, vocab)?;
    let ninf = Array::full(&[batch, vocab - k], f64::NEG_INFINITY, logprobs.dtype())?;
    logprobs.put_along_axis(&rest, &ninf, -1)
}

/// Keeps the smallest set of most likely entries whose probability reaches `top_p` of the
/// row's remaining mass (at least `keep` entries); entries equal to the last kept one stay.
fn top_p(logprobs: &Array, top_p: f32, keep: i32) -> Result<Array> {
    let desc = logprobs.neg()?.sort(-1)?.neg()?;
    let probs = desc.astype(Dtype::F32)?.exp()?;
    let mass_before = probs.cumsum(-1, false, false)?;
    let limit = probs.sum(Some(&[-1]), true)?.mul_scalar(top_p as f64)?;
    let count = mass_before.less(&limit)?.astype(Dtype::I32)?.sum(Some(&[-1]), true)?;
    let count = count.maximum(&Array::scalar(keep)?)?;
    let threshold = desc.take_along_axis(&count.sub(&Array::scalar(1i32)?)?, -1)?;
    mask_below(logprobs, &threshold)
}

/// Keeps entries whose probability is at least `min_p` times the row's largest (and at
/// least the `keep` most likely).
fn min_p(logprobs: &Array, min_p: f32, keep: i32) -> Result<Array> {
    let mut threshold = logprobs.max(Some(&[-1]), true)?.add_scalar((min_p as f64).ln())?;
    if keep > 1 {
        let kth = logprobs.neg()?.partition(keep - 1, -1)?.slice_axis(-1, keep - 1, keep)?.neg()?;
        threshold = threshold.minimum(&kth)?;
    }
    mask_below(logprobs, &threshold)
}

/// `-inf` where `logprobs < threshold` (broadcast per row).
fn mask_below(logprobs: &Array, threshold: &Array) -> Result<Array> {
    let ninf = logprobs.scalar_like(f64::NEG_INFINITY)?;
    where_(&logprobs.less(threshold)?, &ninf, logprobs)
}
