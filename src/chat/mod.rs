//! Chat: conversations rendered by the model's own chat template, generation that stops
//! at the end of the model's turn, and sessions that keep their KV cache between turns.
//!
//! - [`ChatTemplate`] loads and renders a model folder's Jinja template exactly as
//!   transformers' `apply_chat_template(..., tokenize=False)` does.
//! - [`Model::chat`] renders a conversation, encodes it (BOS is not added again when the
//!   template wrote it) and generates the assistant's reply.
//! - [`ChatSession`] holds a conversation and the caches of what the model has already
//!   read of it, so each turn computes only what is new.
mod pyjson;
mod session;
mod template;

use std::sync::Arc;

use serde_json::{Map, Value as Json};

pub use session::ChatSession;
pub use template::{ChatTemplate, DEFAULT_TEMPLATE};

use crate::engine::{GenerateParams, Generation, Model, TokenEvent};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// What a message says. Only text today; images and other parts will be further variants,
/// which is why the enum is non-exhaustive.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Content {
    Text(String),
}

impl Content {
    /// The text, when the content is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Content::Text(s) => Some(s),
        }
    }

    /// How the template sees it: a string (as HF messages carry text).
    pub(crate) fn to_json(&self) -> Json {
        match self {
            Content::Text(s) => Json::String(s.clone()),
        }
    }
}

impl From<String> for Content {
    fn from(s: String) -> Content {
        Content::Text(s)
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Content {
        Content::Text(s.to_string())
    }
}

/// One message of a conversation. The role is whatever the template understands
/// (`system`, `user`, `assistant`, `tool`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<Content>) -> Message {
        Message { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<Content>) -> Message {
        Message::new("system", content)
    }
    pub fn user(content: impl Into<Content>) -> Message {
        Message::new("user", content)
    }
    pub fn assistant(content: impl Into<Content>) -> Message {
        Message::new("assistant", content)
    }

    /// The message as templates see it: `{"role": ..., "content": ...}`.
    pub(crate) fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("role".into(), Json::String(self.role.clone()));
        m.insert("content".into(), self.content.to_json());
        Json::Object(m)
    }
}

/// How a conversation is rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatOptions {
    /// End the prompt with the header of a new assistant turn (true for generating a
    /// reply).
    pub add_generation_prompt: bool,
    /// Which of the model's templates to use (such as "tool_use"); `None` for the default.
    pub template: Option<String>,
    /// Extra template variables, any JSON value (Qwen3's `enable_thinking: false`,
    /// `tools`, ...). They override the special-token variables; `messages` and
    /// `add_generation_prompt` are refused.
    pub template_kwargs: Map<String, Json>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions { add_generation_prompt: true, template: None, template_kwargs: Map::new() }
    }
}

impl ChatOptions {
    /// Sets one template variable.
    pub fn with_kwarg(mut self, name: impl Into<String>, value: impl Into<Json>) -> ChatOptions {
        self.template_kwargs.insert(name.into(), value.into());
        self
    }
}

/// A template ready for chat with one model's tokenizer.
pub(crate) struct LoadedTemplate {
    pub(crate) template: Arc<ChatTemplate>,
    /// Ids that end the assistant's turn besides the tokenizer's EOS ids.
    pub(crate) end_of_turn: Vec<u32>,
}

/// The templates a `Model` has loaded, by requested name ("" for the default).
#[derive(Default)]
pub(crate) struct TemplateCache {
    loaded: Vec<(String, Arc<LoadedTemplate>)>,
}

impl Model {
    /// The chat template `name` (`None`: the default), read from the model folder and
    /// compiled on first use. Errors name the files looked at, the template's line and
    /// problem, or the names the folder has.
    pub fn chat_template(&mut self, name: Option<&str>) -> Result<Arc<ChatTemplate>> {
        Ok(self.loaded_template(name)?.template.clone())
    }

    /// Uses `source` as this model's default chat template, in place of the folder's (or
    /// for a model that has none). It is rendered with the special tokens of the folder's
    /// tokenizer_config.json.
    pub fn set_chat_template(&mut self, source: impl Into<String>) -> Result<()> {
        let template = match &self.embedded_templates {
            Some(e) => ChatTemplate::from_source(source, e.variables.clone())?,
            None => ChatTemplate::from_source_in(self.template_dir(), source)?,
        };
        self.install_template(String::new(), template);
        Ok(())
    }

    pub(crate) fn loaded_template(&mut self, name: Option<&str>) -> Result<Arc<LoadedTemplate>> {
        let key = name.filter(|n| *n != DEFAULT_TEMPLATE).unwrap_or("");
        if let Some((_, t)) = self.chat_templates.loaded.iter().find(|(k, _)| k == key) {
            return Ok(t.clone());
        }
        let template = match &self.embedded_templates {
            Some(e) => ChatTemplate::from_embedded(e, name)?,
            None => ChatTemplate::load(self.template_dir(), name)?,
        };
        Ok(self.install_template(key.to_string(), template))
    }

    /// The folder chat templates are read from: the model folder, or a GGUF file's folder.
    fn template_dir(&self) -> &std::path::Path {
        let dir = self.dir();
        if dir.is_file() {
            dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."))
        } else {
            dir
        }
    }

    fn install_template(&mut self, key: String, template: ChatTemplate) -> Arc<LoadedTemplate> {
        let end_of_turn = end_of_turn_tokens(&template, self.tokenizer());
        let loaded = Arc::new(LoadedTemplate { template: Arc::new(template), end_of_turn });
        self.chat_templates.loaded.retain(|(k, _)| *k != key);
        self.chat_templates.loaded.push((key, loaded.clone()));
        loaded
    }

    /// The ids that end the assistant's turn in `chat` and in chat sessions: the
    /// tokenizer's EOS ids, then the template's end-of-turn token when it is not one of
    /// them.
    pub fn chat_stop_tokens(&mut self, options: &ChatOptions) -> Result<Vec<u32>> {
        let template = self.loaded_template(options.template.as_deref())?;
        let mut ids = self.tokenizer().eos_token_ids().to_vec();
        ids.extend(template.end_of_turn.iter().filter(|id| !ids.contains(id)).collect::<Vec<_>>());
        Ok(ids)
    }

    /// The prompt text the chat template makes of `messages`.
    pub fn render_chat(&mut self, messages: &[Message], options: &ChatOptions) -> Result<String> {
        self.loaded_template(options.template.as_deref())?.template.render(messages, options)
    }

    /// Renders `messages` with the chat template, encodes the text, and returns the ids
    /// with the template it used.
    pub(crate) fn chat_prompt(
        &mut self,
        messages: &[Message],
        options: &ChatOptions,
    ) -> Result<(Vec<u32>, Arc<LoadedTemplate>)> {
        let template = self.loaded_template(options.template.as_deref())?;
        let text = template.template.render(messages, options)?;
        // mlx-lm's rule: special tokens are added unless the text starts with BOS, so a
        // template that writes BOS itself does not get a second one.
        let ids = self.tokenizer().encode_prompt(&text)?;
        if ids.is_empty() {
            return Err(Error::Template(format!(
                "the chat template ({}) rendered the conversation as no tokens",
                template.template.origin()
            )));
        }
        Ok((ids, template))
    }

    /// Generates the assistant's reply to `messages`, streamed to `on_text` as `generate`
    /// streams text.
    ///
    /// Generation stops at the tokenizer's EOS ids and also at the template's own
    /// end-of-turn token: the special token the template writes right after an assistant
    /// message (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`), found by rendering a short
    /// exchange. A checkpoint whose generation_config.json lists only `<|endoftext|>` as
    /// EOS would otherwise run past the end of its turn and start writing the user's next
    /// message. That token counts as EOS: it is not part of the text, the finish reason is
    /// `Stop`, and `ignore_eos` ignores it as it ignores EOS.
    pub fn chat(
        &mut self,
        messages: &[Message],
        options: &ChatOptions,
        params: &GenerateParams,
        on_text: impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<Generation> {
        self.begin_call();
        params.validate()?;
        let (ids, template) = self.chat_prompt(messages, options)?;
        let mut caches = self.fresh_caches(params)?;
        Ok(self.generate_on_caches(&mut caches, &ids, 0, params, &template.end_of_turn, on_text)?.0)
    }
}

/// The special token a template writes right after an assistant's message, if the first
/// thing after it (past whitespace) is one. Found by rendering a user message and a reply;
/// a template that refuses that exchange has none (EOS alone then ends the turn).
fn end_of_turn_tokens(template: &ChatTemplate, tokenizer: &Tokenizer) -> Vec<u32> {
    const REPLY: &str = "Reply to find the end of the turn.";
    let messages = [Message::user("Hello."), Message::assistant(REPLY)];
    let options = ChatOptions { add_generation_prompt: false, ..ChatOptions::default() };
    let Ok(text) = template.render(&messages, &options) else { return vec![] };
    let Some(pos) = text.rfind(REPLY) else { return vec![] };
    let Ok(ids) = tokenizer.encode(&text[pos + REPLY.len()..], false) else { return vec![] };
    for id in ids {
        if tokenizer.is_special(id) {
            return if Some(id) == tokenizer.bos_token_id() { vec![] } else { vec![id] };
        }
        match tokenizer.decode(&[id], false) {
            Ok(t) if t.trim().is_empty() => continue,
            _ => break,
        }
    }
    vec![]
}
