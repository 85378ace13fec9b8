//! `Model`: a loaded language model with its tokenizer — what applications hold. It
//! turns text in into streamed text out: encoding, the token loop, incremental
//! detokenizing, stop tokens and stop strings, cancellation and metrics.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::generate::{generate_tokens_after, CancelToken, GenerateParams, LoopEnd};
use super::metrics::Metrics;
use crate::chat::TemplateCache;
use crate::error::{Error, Result};
use crate::models::gguf::GgufFile;
use crate::models::{self, LanguageModel, LoadOptions, ModelInfo};
use crate::nn::KvCache;
use crate::tokenizer::{gguf_template_variables, Tokenizer};

/// One piece of streamed output.
#[derive(Debug)]
pub struct TokenEvent<'a> {
    /// The token that produced this text; `None` for the final flush of text that was
    /// held back (an incomplete stop-string match, or trailing bytes).
    pub token: Option<u32>,
    /// New text, possibly empty: text is held back while it might still become part of a
    /// stop string or a multi-token character, and never splits a UTF-8 character.
    pub text: &'a str,
    pub logprob: Option<f32>,
    pub top_logprobs: &'a [(u32, f32)],
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence or stop token.
    Stop,
    /// A stop string appeared; the text ends before it.
    StopString,
    /// `max_tokens` were generated.
    Length,
    /// The callback returned `false`.
    Callback,
    /// `CancelToken::cancel` was called.
    Cancelled,
}

/// The result of a generation call.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Prompt ids as encoded.
    pub prompt_tokens: Vec<u32>,
    /// Generated ids, without a final stop token.
    pub tokens: Vec<u32>,
    /// Generated text, as streamed (without a stop token's or stop string's text).
    pub text: String,
    pub finish_reason: FinishReason,
    pub metrics: Metrics,
}

pub struct Model {
    lm: Box<dyn LanguageModel>,
    tokenizer: Tokenizer,
    dir: PathBuf,
    cancel: CancelToken,
    last_metrics: Option<Metrics>,
    /// Identifies this loaded instance, so that a chat session's caches are never fed to
    /// another model.
    id: u64,
    /// Chat templates loaded so far (read and compiled on first use: a model without a
    /// template, or with a broken one, still loads and generates).
    pub(crate) chat_templates: TemplateCache,
    /// The chat templates a GGUF file carries in its metadata; `None` for a model folder,
    /// whose templates are read from its files.
    pub(crate) embedded_templates: Option<EmbeddedTemplates>,
    /// The LoRA adapter on the model's projections, if any.
    adapter: Option<crate::train::Adapter>,
    /// The group the model is sharded over, when it is (see `models::shard`).
    group: Option<crate::mlx::distributed::Group>,
}

/// Chat templates stored in a model file rather than beside it (GGUF metadata
/// `tokenizer.chat_template` and `tokenizer.chat_template.NAME`), with the special-token
/// variables they are rendered with.
#[derive(Clone, Debug)]
pub(crate) struct EmbeddedTemplates {
    pub(crate) file: PathBuf,
    /// (name, source); the default template is named `default`.
    pub(crate) templates: Vec<(String, String)>,
    pub(crate) variables: Vec<(String, String)>,
}

impl EmbeddedTemplates {
    fn from_gguf(f: &GgufFile) -> EmbeddedTemplates {
        let mut templates = Vec::new();
        for (key, value) in &f.metadata {
            let name = match key.as_str() {
                "tokenizer.chat_template" => crate::chat::DEFAULT_TEMPLATE,
                k => match k.strip_prefix("tokenizer.chat_template.") {
                    Some(n) => n,
                    None => continue,
                },
            };
            if let Some(source) = value.as_str() {
                templates.push((name.to_string(), source.to_string()));
            }
        }
        EmbeddedTemplates { file: f.path.clone(), templates, variables: gguf_template_variables(f) }
    }
}

static NEXT_MODEL_ID: AtomicU64 = AtomicU64::new(1);

impl Model {
    /// Loads a model with its tokenizer: an HF-layout folder, a GGUF file, or a folder
    /// whose only model file is a GGUF file (see [`Model::load_gguf`]).
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
        let dir = path.as_ref();
        if let Some(file) = models::gguf::find_model_file(dir)? {
            return Model::load_gguf(file, opts);
        }
        if !dir.is_dir() {
            return Err(Error::Config(format!("{} is not a folder", dir.display())));
        }
        // The small files first, so that a bad one fails before any weight is read: the
        // config before the tokenizer, which reads config.json too (for EOS ids) and would
        // otherwise report a malformed config as a tokenizer error.
        models::config::ConfigFile::read(dir, "config.json")?;
        let tokenizer = Tokenizer::load(dir)?;
        let lm = models::load(dir, opts)?;
        Model {
            lm,
            tokenizer,
            dir: dir.to_path_buf(),
            cancel: CancelToken::new(),
            last_metrics: None,
            id: NEXT_MODEL_ID.fetch_add(1, Ordering::Relaxed),
            chat_templates: TemplateCache::default(),
            embedded_templates: None,
            adapter: None,
            group: opts.group.clone().filter(|g| g.size() > 1),
        }
        .with_adapter_from(opts)
    }

    /// Loads a GGUF model file. The tokenizer is the one its metadata describes, or a
    /// `tokenizer.json` beside the file when there is one (that wins: it is how a
    /// vocabulary the metadata route does not cover is supplied); the chat templates are
    /// those in the metadata, else the folder's. `dir()` is then the file's path.
    pub fn load_gguf(file: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
        let file = file.as_ref();
        let g = GgufFile::open(file)?;
        let beside = file.parent().map(|d| d.join("tokenizer.json")).is_some_and(|p| p.is_file());
        let tokenizer = if beside { Tokenizer::beside_gguf(&g)? } else { Tokenizer::from_gguf(&g)? };
        let lm = models::load_gguf(&g, opts)?;
        let templates = EmbeddedTemplates::from_gguf(&g);
        Model {
            lm,
            tokenizer,
            dir: file.to_path_buf(),
            cancel: CancelToken::new(),
            last_metrics: None,
            id: NEXT_MODEL_ID.fetch_add(1, Ordering::Relaxed),
            chat_templates: TemplateCache::default(),
            embedded_templates: (!templates.templates.is_empty()).then_some(templates),
            adapter: None,
            group: opts.group.clone().filter(|g| g.size() > 1),
        }
        .with_adapter_from(opts)
    }

    /// The group the model is sharded over; `None` when it runs whole in this process.
    pub fn group(&self) -> Option<&crate::mlx::distributed::Group> {
        self.group.as_ref()
    }

    /// The sampler settings every rank of a sharded model uses: random sampling without a
    /// seed gets one agreed by every rank (each rank samples from the same logits, so with
    /// the same key each draws the same token, and they stay in step).
    pub(crate) fn shared_sampler(&self, sampler: &crate::engine::SamplerParams) -> Result<crate::engine::SamplerParams> {
        let mut s = sampler.clone();
        if let Some(g) = &self.group {
            if s.temperature > 0.0 && s.seed.is_none() {
                s.seed = Some(g.agree_seed()?);
            }
        }
        Ok(s)
    }

    /// A failure of a sharded model's call, said with the rank it happened on (a lost peer
    /// shows as MLX's "connection to a peer was lost").
    pub(crate) fn on_rank(&self, e: Error) -> Error {
        match &self.group {
            Some(g) => crate::mlx::distributed::distributed_error(&format!("rank {} of {}", g.rank(), g.size()), e),
            None => e,
        }
    }

    pub fn info(&self) -> &ModelInfo {
        self.lm.info()
    }

    /// The model folder, or for a GGUF model the file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn language_model(&self) -> &dyn LanguageModel {
        self.lm.as_ref()
    }

    pub fn language_model_mut(&mut self) -> &mut dyn LanguageModel {
        self.lm.as_mut()
    }

    /// The LoRA adapter on the model, with the configuration it was made with.
    pub fn adapter(&self) -> Option<&crate::train::Adapter> {
        self.adapter.as_ref()
    }

    pub(crate) fn set_adapter(&mut self, adapter: Option<crate::train::Adapter>) {
        self.adapter = adapter;
    }

    /// Loads `opts.adapter_path` onto a freshly loaded model.
    fn with_adapter_from(mut self, opts: &LoadOptions) -> Result<Model> {
        if let Some(dir) = &opts.adapter_path {
            self.load_adapter(dir)?;
        }
        Ok(self)
    }

    /// A handle that cancels the generation in progress (from any thread); the call
    /// returns with `FinishReason::Cancelled` before its next token. A cancel made while
    /// no generation runs is forgotten when the next one starts.
    pub fn canceller(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Metrics of the most recent call.
    pub fn last_metrics(&self) -> Option<&Metrics> {
        self.last_metrics.as_ref()
    }

    pub(crate) fn set_last_metrics(&mut self, metrics: Metrics) {
        self.last_metrics = Some(metrics);
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Generates from a text prompt, encoded as mlx-lm encodes it (BOS added unless the
    /// text starts with it). `on_text` receives each piece of text; returning `false`
    /// stops generation.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_text: impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<Generation> {
        self.begin_call();
        let ids = self.tokenizer.encode_prompt(prompt)?;
        let mut caches = self.fresh_caches(params)?;
        Ok(self.generate_on_caches(&mut caches, &ids, 0, params, &[], on_text)?.0)
    }

    /// Generates from prompt token ids.
    pub fn generate_ids(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_text: impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<Generation> {
        self.begin_call();
        let mut caches = self.fresh_caches(params)?;
        Ok(self.generate_on_caches(&mut caches, prompt, 0, params, &[], on_text)?.0)
    }

    /// Starts a call that may be cancelled: forgets any cancel made while no call ran.
    /// Every public entry point calls it first, before encoding or rendering its prompt,
    /// so a cancel that arrives during that work is kept and stops the call.
    pub(crate) fn begin_call(&self) {
        self.cancel.reset();
    }

    /// Empty caches for a generation with `params`: quantizing ones when
    /// `params.kv_quantization` asks for them.
    pub(crate) fn fresh_caches(&self, params: &GenerateParams) -> Result<Vec<KvCache>> {
        let mut caches = self.lm.new_caches();
        if let Some(q) = params.kv_quantization {
            crate::nn::quantized_kv_cache::quantize_caches(&mut caches, q)?;
        }
        Ok(caches)
    }

    /// Generates from `prompt` on `caches`, which already hold its first `cached` tokens.
    /// `end_of_turn` ids end generation as the EOS ids do. Returns the generation and
    /// every sampled id, a final stop token included: with the prompt, the caches now hold
    /// a prefix of `prompt + sampled` (the loop may have computed the last token's
    /// position or not).
    pub(crate) fn generate_on_caches(
        &mut self,
        caches: &mut [KvCache],
        prompt: &[u32],
        cached: usize,
        params: &GenerateParams,
        end_of_turn: &[u32],
        mut on_text: impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<(Generation, Vec<u32>)> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(Error::invalid("the prompt has no tokens"));
        }
        if cached >= prompt.len() {
            return Err(Error::invalid(format!(
                "{cached} of {} prompt tokens are cached; at least one must be computed",
                prompt.len()
            )));
        }
        let max_tokens = match params.context_length {
            Some(ctx) if prompt.len() >= ctx => {
                return Err(Error::invalid(format!(
                    "the prompt has {} tokens; the context length is {ctx}",
                    prompt.len()
                )))
            }
            Some(ctx) => params.max_tokens.min(ctx - prompt.len()),
            None => params.max_tokens,
        };
        let mut out = TextStream::new(&self.tokenizer, params, end_of_turn);
        let mut sampled = Vec::new();
        let sampler = self.shared_sampler(&params.sampler)?;
        // The ranks of a sharded model must stop at the same token: one that stopped alone
        // would leave the others waiting in their next all-sum for a peer that is alive but
        // no longer computing. So a stop (the callback's, or a cancel) is put to a vote after
        // every token, and only the vote ends the loop; the loop's own cancel check, which
        // one rank could pass while another did not, is left out.
        let group = self.group.clone();
        let cancel = &self.cancel;
        let (metrics, end) = generate_tokens_after(
            self.lm.as_ref(),
            caches,
            &prompt[..cached],
            &prompt[cached..],
            max_tokens,
            &sampler,
            params.prefill_step_size,
            if group.is_some() { None } else { Some(cancel) },
            &mut |tok| {
                sampled.push(tok.token);
                let go = out.push(tok, &mut on_text)?;
                match &group {
                    Some(g) => g.all_continue(go && !cancel.is_cancelled()),
                    None => Ok(go),
                }
            },
        )
        .map_err(|e| self.on_rank(e))?;
        // A sharded model's cancel ends the loop through the vote (see above).
        let cancelled = end == LoopEnd::Cancelled || (self.group.is_some() && self.cancel.is_cancelled());
        let finish_reason = out.end(cancelled, &mut on_text)?;
        self.last_metrics = Some(metrics.clone());
        let generation =
            Generation { prompt_tokens: prompt.to_vec(), tokens: out.tokens, text: out.text, finish_reason, metrics };
        Ok((generation, sampled))
    }
}

/// Detokenizes a token stream and applies stop tokens and stop strings, handing text to
/// the caller as soon as it is final. One per sequence: single and batched generation
/// share it, so a batch row stops exactly where the same prompt generated alone does.
pub(crate) struct TextStream<'t> {
    /// The tokenizer that decodes the ids; `None` when the text arrives decoded (from the
    /// `mlx_lm` backend's worker, which also decides where EOS stops).
    decoder: Option<(&'t Tokenizer, crate::tokenizer::Detokenizer)>,
    /// Decoded text the sender still had when the sequence ended (a remote decoder's
    /// final flush).
    tail: String,
    stop_tokens: Vec<u32>,
    /// Ids that end generation like EOS does (a chat template's end-of-turn token), so
    /// `ignore_eos` ignores them too.
    end_of_turn: Vec<u32>,
    ignore_eos: bool,
    stop_strings: Vec<String>,
    /// Text decoded but not yet handed out (it may be the start of a stop string).
    held: String,
    pub(crate) text: String,
    pub(crate) tokens: Vec<u32>,
    finish: Option<FinishReason>,
}

impl<'t> TextStream<'t> {
    pub(crate) fn new(tokenizer: &'t Tokenizer, params: &GenerateParams, end_of_turn: &[u32]) -> Self {
        TextStream {
            decoder: Some((tokenizer, tokenizer.detokenizer(false))),
            tail: String::new(),
            stop_tokens: params.stop_tokens.clone(),
            end_of_turn: end_of_turn.to_vec(),
            ignore_eos: params.ignore_eos,
            stop_strings: params.stop_strings.clone(),
            held: String::new(),
            text: String::new(),
            tokens: Vec::new(),
            finish: None,
        }
    }

    /// Takes one sampled token; returns whether generation goes on.
    pub(crate) fn push(&mut self, tok: &super::SampledToken, on_text: &mut impl FnMut(&TokenEvent<'_>) -> bool) -> Result<bool> {
        let id = tok.token;
        let ends_sequence = self.decoder.as_ref().is_some_and(|(t, _)| t.is_eos(id)) || self.end_of_turn.contains(&id);
        if self.stop_tokens.contains(&id) || (!self.ignore_eos && ends_sequence) {
            return self.stop(on_text);
        }
        let piece = match &mut self.decoder {
            Some((_, detok)) => detok.push(id)?,
            None => String::new(),
        };
        self.accept(id, &piece, tok.logprob, &tok.top_logprobs, on_text)
    }

    /// A text stream for ids decoded elsewhere: `push_decoded` gives it each id with its
    /// text, and the sender's stop decision.
    pub(crate) fn decoded(params: &GenerateParams) -> TextStream<'static> {
        TextStream {
            decoder: None,
            tail: String::new(),
            stop_tokens: vec![],
            end_of_turn: vec![],
            ignore_eos: params.ignore_eos,
            stop_strings: params.stop_strings.clone(),
            held: String::new(),
            text: String::new(),
            tokens: Vec::new(),
            finish: None,
        }
    }

    /// One id with its decoded text; `stops`: the sender ended the sequence with this id
    /// (EOS or a stop token, whose text is not emitted). Returns whether generation goes on.
    pub(crate) fn push_decoded(
        &mut self,
        id: u32,
        text: &str,
        stops: bool,
        logprob: Option<f32>,
        on_text: &mut impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<bool> {
        if stops {
            return self.stop(on_text);
        }
        self.accept(id, text, logprob, &[], on_text)
    }

    /// Whether the sequence has ended (a stop token or string, or the callback).
    pub(crate) fn finished(&self) -> bool {
        self.finish.is_some()
    }

    /// Text the remote decoder flushed at the end of the sequence.
    pub(crate) fn set_tail(&mut self, tail: &str) {
        self.tail.push_str(tail);
    }

    /// A stop token ended the sequence.
    fn stop(&mut self, on_text: &mut impl FnMut(&TokenEvent<'_>) -> bool) -> Result<bool> {
        self.finish = Some(FinishReason::Stop);
        // Text held for a possible stop string is real text: hand it out.
        self.flush(on_text)?;
        Ok(false)
    }

    /// Takes a generated id and its text through the stop strings to the caller.
    fn accept(
        &mut self,
        id: u32,
        piece: &str,
        logprob: Option<f32>,
        top_logprobs: &[(u32, f32)],
        on_text: &mut impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<bool> {
        self.tokens.push(id);
        self.held.push_str(piece);
        let (emit, stop) = self.split_held();
        let event = TokenEvent { token: Some(id), text: &emit, logprob, top_logprobs };
        self.text.push_str(&emit);
        let go_on = on_text(&event);
        if stop {
            self.finish = Some(FinishReason::StopString);
            return Ok(false);
        }
        if !go_on {
            self.finish = Some(FinishReason::Callback);
        }
        Ok(go_on)
    }

    /// Why the sequence ended, once the token loop stopped (`cancelled`: by the cancel
    /// token; otherwise the stream stopped it, or the token budget ran out). When the loop
    /// rather than the stream ended it, text still held is handed out.
    pub(crate) fn end(&mut self, cancelled: bool, on_text: &mut impl FnMut(&TokenEvent<'_>) -> bool) -> Result<FinishReason> {
        let reason = match self.finish {
            Some(reason) => reason,
            None if cancelled => FinishReason::Cancelled,
            None => FinishReason::Length,
        };
        if matches!(reason, FinishReason::Length | FinishReason::Cancelled) {
            self.flush(on_text)?;
        }
        Ok(reason)
    }

    /// Takes from `held` the text that is final. Returns it, and whether a stop string
    /// was found (the text then ends before it and the rest is dropped).
    fn split_held(&mut self) -> (String, bool) {
        if self.stop_strings.is_empty() {
            return (std::mem::take(&mut self.held), false);
        }
        // A stop string may start in text already handed out only if it was held; so it
        // is enough to search the held text.
        if let Some(pos) = self.stop_strings.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let emit = self.held[..pos].to_string();
            self.held.clear();
            return (emit, true);
        }
        // Hold back the longest tail that could still grow into a stop string.
        let keep = self
            .stop_strings
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        (emit, false)
    }

    /// Hands out everything still held, including the detokenizer's tail.
    fn flush(&mut self, on_text: &mut impl FnMut(&TokenEvent<'_>) -> bool) -> Result<()> {
        let tail = match &mut self.decoder {
            Some((_, detok)) => detok.flush()?,
            None => std::mem::take(&mut self.tail),
        };
        self.held.push_str(&tail);
        if !self.held.is_empty() {
            let rest = std::mem::take(&mut self.held);
            self.text.push_str(&rest);
            on_text(&TokenEvent { token: None, text: &rest, logprob: None, top_logprobs: &[] });
        }
        Ok(())
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`,
/// respecting character boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = (stop.len() - 1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::longest_suffix_prefix;

    #[test]
    fn suffix_prefix_overlap() {
        assert_eq!(longest_suffix_prefix("hello wo", "world"), 2);
        assert_eq!(longest_suffix_prefix("hello", "world"), 0);
        assert_eq!(longest_suffix_prefix("ab", "abc"), 2);
        assert_eq!(longest_suffix_prefix("xé", "éa"), 2);
        assert_eq!(longest_suffix_prefix("", "x"), 0);
    }
}
