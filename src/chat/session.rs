//! Chat sessions: a conversation with the KV cache of what the model has read of it, so
//! that a turn computes only the tokens that are new.
//!
//! Each turn renders the whole conversation with the chat template and encodes it, as
//! `Model::chat` does; the cache is then cut back to the longest common prefix of those
//! ids and the ids it holds, and only the rest is computed. Comparing ids rather than
//! messages is what keeps this exact: the template may render an earlier reply otherwise
//! than the model wrote it (Qwen3 drops the `<think>` part of earlier replies, every
//! template closes a turn its own way, a text re-encoded may split into other tokens), and
//! an edited message changes the ids from its first changed token on. Whatever differs is
//! computed again, so a turn gives what `Model::chat` over the same conversation gives.
use super::{ChatOptions, Message};
use crate::engine::{GenerateParams, Generation, Model, TokenEvent};
use crate::error::{Error, Result};
use crate::nn::KvCache;

/// A conversation with one model and the caches of what it has read of it.
///
/// The session does not hold the model: each call takes it, so that one model can serve
/// many sessions; a session refuses a model other than the one it was created for.
pub struct ChatSession {
    model_id: u64,
    options: ChatOptions,
    messages: Vec<Message>,
    /// One cache per layer, made on the first turn; `None` after a reset or an error.
    caches: Option<Vec<KvCache>>,
    /// The ids whose positions the caches hold, in order.
    cached: Vec<u32>,
}

impl ChatSession {
    /// A new, empty session. The chat template `options` names is loaded now, so a model
    /// without a usable template fails here rather than on the first message.
    pub fn new(model: &mut Model, options: ChatOptions) -> Result<ChatSession> {
        model.loaded_template(options.template.as_deref())?;
        Ok(ChatSession { model_id: model.id(), options, messages: Vec::new(), caches: None, cached: Vec::new() })
    }

    /// The conversation so far, replies included.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The conversation, to edit: change, insert or remove messages freely. The next turn
    /// reuses the cache up to the first token the edit changed and recomputes the rest.
    pub fn messages_mut(&mut self) -> &mut Vec<Message> {
        &mut self.messages
    }

    pub fn options(&self) -> &ChatOptions {
        &self.options
    }

    /// The rendering options; a change (another template variable, say) applies from the
    /// next turn, and the cache is reused as far as the new rendering agrees with it.
    pub fn options_mut(&mut self) -> &mut ChatOptions {
        &mut self.options
    }

    /// The token ids whose keys and values the cache holds.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// Adds `message` (usually the user's) and generates the reply, which is added to the
    /// conversation. On an error the conversation is left as it was.
    pub fn send(
        &mut self,
        model: &mut Model,
        message: Message,
        params: &GenerateParams,
        on_text: impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<Generation> {
        self.messages.push(message);
        let result = self.reply(model, params, on_text);
        if result.is_err() {
            self.messages.pop();
        }
        result
    }

    /// Generates the assistant's reply to the conversation as it stands and adds it (its
    /// text, as streamed) as an assistant message — also when generation stopped early
    /// (length, callback, cancel; `Generation::finish_reason` says which), since the
    /// caller saw that text. Stops as `Model::chat` does. `metrics.cached_prompt_tokens`
    /// tells how many prompt tokens came from the cache.
    pub fn reply(
        &mut self,
        model: &mut Model,
        params: &GenerateParams,
        on_text: impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<Generation> {
        if model.id() != self.model_id {
            return Err(Error::invalid("this chat session belongs to another model instance"));
        }
        model.begin_call();
        params.validate()?;
        let (ids, template) = model.chat_prompt(&self.messages, &self.options)?;
        let reused = self.reuse_prefix(&ids);
        // A KV cache quantization setting applies when the session's caches are created.
        let caches = match &mut self.caches {
            Some(c) => c,
            empty => empty.insert(model.fresh_caches(params)?),
        };
        match model.generate_on_caches(caches, &ids, reused, params, &template.end_of_turn, on_text) {
            Ok((generation, sampled)) => {
                // The caches hold a prefix of the prompt and the sampled ids (the position
                // of the last sampled id may or may not have been computed).
                let held = caches.first().map_or(0, |c| c.offset().max(0) as usize);
                let mut tokens = ids;
                tokens.extend(sampled);
                if held <= tokens.len() {
                    tokens.truncate(held);
                    self.cached = tokens;
                } else {
                    self.clear_cache();
                }
                self.messages.push(Message::assistant(generation.text.clone()));
                Ok(generation)
            }
            Err(e) => {
                // What the caches hold after a failed step is unknown: start over next time.
                self.clear_cache();
                Err(e)
            }
        }
    }

    /// Forgets the conversation and the cache.
    pub fn reset(&mut self) {
        self.messages.clear();
        self.clear_cache();
    }

    /// Frees the cache but keeps the conversation; the next turn computes it all again.
    pub fn clear_cache(&mut self) {
        self.caches = None;
        self.cached.clear();
    }

    /// Cuts the caches back to the longest prefix they share with `ids` and returns its
    /// length: the prompt tokens that need no computing.
    fn reuse_prefix(&mut self, ids: &[u32]) -> usize {
        let Some(caches) = self.caches.as_mut() else {
            self.cached.clear();
            return 0;
        };
        // At least one prompt token must be computed: the last one's logits give the
        // first token of the reply. So a prompt that is all in the cache gives one back.
        let common = self.cached.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let keep = common.min(ids.len().saturating_sub(1));
        let drop = self.cached.len() - keep;
        if drop > 0 && !trim_caches(caches, drop) {
            // A cache that cannot forget positions is rebuilt: the whole prompt is computed.
            self.clear_cache();
            return 0;
        }
        self.cached.truncate(keep);
        keep
    }
}

/// Drops the last `n` positions of every layer's cache. False, with nothing dropped, when
/// some cache cannot (a sliding-window cache that has already evicted positions: cut
/// back, it would lack the older ones); the caller then rebuilds them.
fn trim_caches(caches: &mut [KvCache], n: usize) -> bool {
    let Ok(n) = i32::try_from(n) else { return false };
    if !caches.iter().all(|c| c.can_trim(n)) {
        return false;
    }
    caches.iter_mut().all(|c| c.trim(n) == n)
}
