//! The request bodies of `/v1/chat/completions` and `/v1/completions` as OpenAI defines
//! them, and their checks. Fields OpenAI knows but this server ignores are accepted
//! (clients send them); a field OpenAI does not know is rejected, as OpenAI does.
use serde::Deserialize;
use serde_json::Value;

use super::errors::ApiError;
use crate::chat::Message;
use crate::engine::SamplerParams;

/// `stop`: one string or a list of up to 4.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The settings both endpoints share.
#[derive(Deserialize, Debug, Default)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub repetition_penalty: Option<f32>,
}

#[derive(Deserialize, Debug)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    // Tools, response formats and the like are OpenAI fields this server does not
    // implement: named here so that the error says so rather than "unknown field".
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub response_format: Option<Value>,
    pub parallel_tool_calls: Option<Value>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Deserialize, Debug)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<MessageContent>,
    #[allow(dead_code)]
    pub name: Option<String>,
}

/// A message's content: a string, or a list of parts of which only text is understood.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    pub prompt: Value,
    pub logprobs: Option<i64>,
    pub echo: Option<bool>,
    pub suffix: Option<Value>,
    pub best_of: Option<i64>,
    #[serde(flatten)]
    pub common: Common,
}

/// What a request asks the batcher for, once checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_tokens: Option<usize>,
    pub sampler: SamplerParams,
    pub stop: Vec<String>,
    /// Log-probabilities asked for: the chosen token's, and this many alternatives.
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
}

/// OpenAI's most alternatives per token (`top_logprobs`, and `logprobs` of a text completion).
const MAX_TOP_LOGPROBS: i64 = 20;

/// Top-level fields both endpoints know: `Common`'s, and those OpenAI accepts that change
/// nothing here (user, penalties, logit_bias, metadata, store, service_tier).
const COMMON_FIELDS: &[&str] = &[
    "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "n",
    "stream", "stream_options", "repetition_penalty", "user", "presence_penalty", "frequency_penalty", "logit_bias",
    "metadata", "store", "service_tier",
];
pub const CHAT_FIELDS: &[&str] =
    &["messages", "logprobs", "top_logprobs", "tools", "tool_choice", "response_format", "parallel_tool_calls"];
pub const COMPLETION_FIELDS: &[&str] = &["prompt", "logprobs", "echo", "suffix", "best_of"];

/// Parses a JSON body into `T`, naming what is wrong when it does not fit. A top-level
/// field outside `COMMON_FIELDS` and `fields` is refused, with OpenAI's message. (Checked
/// here rather than by serde, whose `deny_unknown_fields` does not combine with `flatten`.)
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8], fields: &[&str]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    if let Some(name) = object.keys().find(|k| !COMMON_FIELDS.contains(&k.as_str()) && !fields.contains(&k.as_str())) {
        return Err(ApiError::param(name, format!("Unrecognized request argument supplied: {name}")));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("invalid request: {e}")))
}

fn unsupported(field: &str, present: bool) -> Result<(), ApiError> {
    if present {
        return Err(ApiError::param(field, format!("`{field}` is not supported by this server")));
    }
    Ok(())
}

impl Common {
    /// Checks the shared fields; `logprobs`: whether the request asked for them, and how
    /// many alternatives per token.
    pub fn settings(&self, logprobs: Option<usize>) -> Result<Settings, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::param("n", format!("n must be 1 (got {n}): one choice per request")));
            }
        }
        let max = self.max_completion_tokens.or(self.max_tokens);
        if let Some(m) = max {
            if m < 1 {
                return Err(ApiError::param("max_tokens", format!("max_tokens must be at least 1 (got {m})")));
            }
        }
        let temperature = self.temperature.unwrap_or(0.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::param("temperature", format!("temperature must be between 0 and 2 (got {temperature})")));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::param("top_p", format!("top_p must be in (0, 1] (got {top_p})")));
        }
        let top_k = self.top_k.unwrap_or(0);
        if top_k < 0 {
            return Err(ApiError::param("top_k", format!("top_k must be 0 (off) or more (got {top_k})")));
        }
        let min_p = self.min_p.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&min_p) {
            return Err(ApiError::param("min_p", format!("min_p must be between 0 and 1 (got {min_p})")));
        }
        let seed = match self.seed {
            Some(s) if s < 0 => return Err(ApiError::param("seed", format!("seed must not be negative (got {s})"))),
            s => s.map(|s| s as u64),
        };
        let stop = match &self.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(ApiError::param("stop", "stop takes up to 4 non-empty strings"));
        }
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        if repetition_penalty <= 0.0 {
            return Err(ApiError::param("repetition_penalty", "repetition_penalty must be positive"));
        }
        let sampler = SamplerParams {
            temperature,
            top_p,
            top_k,
            min_p,
            seed,
            repetition_penalty,
            logprobs: logprobs.is_some(),
            top_logprobs: logprobs.unwrap_or(0),
            ..SamplerParams::default()
        };
        sampler.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
        if self.stream_options.is_some() && !self.stream {
            return Err(ApiError::param("stream_options", "stream_options is only allowed when stream is true"));
        }
        Ok(Settings {
            max_tokens: max.map(|m| m as usize),
            sampler,
            stop,
            logprobs,
            stream: self.stream,
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
        })
    }
}

impl ChatRequest {
    /// The conversation and the settings.
    pub fn check(&self) -> Result<(Vec<Message>, Settings), ApiError> {
        unsupported("tools", self.tools.as_ref().is_some_and(|t| !t.is_null()))?;
        unsupported("tool_choice", self.tool_choice.as_ref().is_some_and(|t| !t.is_null()))?;
        unsupported("parallel_tool_calls", self.parallel_tool_calls.as_ref().is_some_and(|t| !t.is_null()))?;
        let text_format = self.response_format.as_ref().map_or(true, |f| f.is_null() || f.get("type") == Some(&Value::from("text")));
        unsupported("response_format", !text_format)?;
        let logprobs = self.logprobs.unwrap_or(false);
        let top = top_logprobs("top_logprobs", self.top_logprobs)?;
        if top > 0 && !logprobs {
            return Err(ApiError::param("top_logprobs", "logprobs must be set to true if top_logprobs is used"));
        }
        if self.messages.is_empty() {
            return Err(ApiError::param("messages", "messages must hold at least one message"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "developer" => "system",
                r @ ("system" | "user" | "assistant" | "tool") => r,
                r => return Err(ApiError::param(&format!("messages[{i}].role"), format!("messages[{i}] has an unknown role `{r}`"))),
            };
            let text = match &m.content {
                None => String::new(),
                Some(MessageContent::Text(t)) => t.clone(),
                Some(MessageContent::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            (kind, _) => {
                                return Err(ApiError::param(
                                    &format!("messages[{i}].content"),
                                    format!("messages[{i}]: only text content parts are supported (got {})", kind.unwrap_or("a part without a type")),
                                ))
                            }
                        }
                    }
                    text
                }
            };
            messages.push(Message::new(role, text));
        }
        Ok((messages, self.common.settings(logprobs.then_some(top))?))
    }
}

impl CompletionRequest {
    /// The prompt text and the settings.
    pub fn check(&self) -> Result<(String, Settings), ApiError> {
        unsupported("suffix", self.suffix.as_ref().is_some_and(|s| !s.is_null()))?;
        unsupported("echo", self.echo == Some(true))?;
        if self.best_of.is_some_and(|b| b != 1) {
            return Err(ApiError::param("best_of", "best_of must be 1"));
        }
        let prompt = match &self.prompt {
            Value::String(s) => s.clone(),
            Value::Array(a) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or_default().to_string(),
            _ => return Err(ApiError::param("prompt", "prompt must be a string (or a list of exactly one string)")),
        };
        if prompt.is_empty() {
            return Err(ApiError::param("prompt", "prompt must not be empty"));
        }
        // As OpenAI: any `logprobs` (0 included) reports the chosen tokens' log-probabilities,
        // with that many alternatives each.
        let logprobs = self.logprobs.map(|n| top_logprobs("logprobs", Some(n))).transpose()?;
        Ok((prompt, self.common.settings(logprobs)?))
    }
}

/// A count of alternatives per token, checked against OpenAI's limit.
fn top_logprobs(field: &str, n: Option<i64>) -> Result<usize, ApiError> {
    match n {
        None => Ok(0),
        Some(n) if (0..=MAX_TOP_LOGPROBS).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::param(field, format!("{field} must be between 0 and {MAX_TOP_LOGPROBS} (got {n})"))),
    }
}
