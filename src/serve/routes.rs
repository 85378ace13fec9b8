//! The HTTP endpoints: `/v1/chat/completions`, `/v1/completions`, `/v1/models`,
//! `/health`, and the checks in front of them (API key, body size, busy).
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::batcher::{Event, Job};
use super::errors::ApiError;
use super::openai_types::{parse, ChatRequest, CompletionRequest, Settings, CHAT_FIELDS, COMPLETION_FIELDS};
use super::AppState;
use crate::engine::{FinishReason, GenerateParams};

/// A request counted against `--max-concurrent` + `--max-queue` while it lives.
struct Permit(Arc<AppState>);

impl Permit {
    fn take(state: &Arc<AppState>) -> Result<Permit, ApiError> {
        let limit = state.limits.max_requests;
        if state.in_flight.fetch_add(1, Ordering::SeqCst) >= limit {
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::busy(limit));
        }
        Ok(Permit(state.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else { return Ok(()) };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

fn body_bytes(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(state.limits.max_body),
        _ => ApiError::invalid(format!("could not read the request body: {e}")),
    })
}

fn check_model(state: &AppState, name: Option<&str>) -> Result<(), ApiError> {
    match name {
        // OpenAI requires the field; clients of a one-model server often send anything
        // empty. Absent or empty means the served model.
        None | Some("") => Ok(()),
        Some(n) if n == state.model_id || n == state.model_path => Ok(()),
        Some(n) => Err(ApiError::unknown_model(n, &state.model_id)),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        _ => "stop",
    }
}

/// Liveness, with the load: requests running or waiting, rows in the running batch, and
/// the most rows a batch has held.
pub async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "requests": state.in_flight.load(Ordering::SeqCst),
        "batch_rows": state.stats.running.load(Ordering::Relaxed),
        "peak_batch_rows": state.stats.peak.load(Ordering::Relaxed),
        "disconnected": state.stats.disconnected.load(Ordering::Relaxed),
    }))
}

pub async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    Json(json!({"object": "list", "data": [
        {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "mlxrun"}
    ]}))
    .into_response()
}

pub async fn fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::wrong_method(method.as_str(), uri.path())
}

/// What the two endpoints differ in.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

pub async fn chat(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let prepared = (|| {
        authorize(&state, &headers)?;
        let req: ChatRequest = parse(&body_bytes(&state, body)?, CHAT_FIELDS)?;
        check_model(&state, req.common.model.as_deref())?;
        let (messages, settings) = req.check()?;
        let template = state.template.as_ref().map_err(|e| ApiError::invalid(format!("this model has no usable chat template: {e}")))?;
        let text = template.template.render(&messages, &crate::chat::ChatOptions::default()).map_err(|e| ApiError::invalid(e.to_string()))?;
        let prompt = state.tokenizer.encode_prompt(&text).map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok::<_, ApiError>((prompt, template.end_of_turn.clone(), settings))
    })();
    match prepared {
        Ok((prompt, eot, settings)) => respond(state, Kind::Chat, prompt, eot, settings, 0).await,
        Err(e) => e.into_response(),
    }
}

pub async fn completions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let prepared = (|| {
        authorize(&state, &headers)?;
        let req: CompletionRequest = parse(&body_bytes(&state, body)?, COMPLETION_FIELDS)?;
        check_model(&state, req.common.model.as_deref())?;
        let (text, settings) = req.check()?;
        let prompt = state.tokenizer.encode_prompt(&text).map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok::<_, ApiError>((prompt, text.chars().count(), settings))
    })();
    match prepared {
        Ok((prompt, chars, settings)) => respond(state, Kind::Completion, prompt, vec![], settings, chars).await,
        Err(e) => e.into_response(),
    }
}

/// Checks the prompt against the context, queues the job and answers, streamed or whole.
/// `prompt_chars`: the length of a text completion's prompt in characters, where its
/// tokens' `text_offset`s start.
async fn respond(state: Arc<AppState>, kind: Kind, prompt: Vec<u32>, end_of_turn: Vec<u32>, settings: Settings, prompt_chars: usize) -> Response {
    let ctx = state.limits.context_length;
    if prompt.len() + 1 > ctx {
        return ApiError::context_exceeded(format!(
            "this model's maximum context length is {ctx} tokens; the prompt has {} tokens (and at least one must be generated)",
            prompt.len()
        ))
        .into_response();
    }
    let permit = match Permit::take(&state) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // max_tokens: asked for or the server's default, capped by what the context leaves.
    let room = ctx - prompt.len();
    let max_tokens = settings.max_tokens.unwrap_or(state.limits.default_max_tokens).min(room);
    let params = GenerateParams {
        max_tokens,
        sampler: settings.sampler.clone(),
        stop_strings: settings.stop.clone(),
        context_length: Some(ctx),
        ..GenerateParams::default()
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let sent = state.jobs.lock().ok().and_then(|j| j.as_ref().map(|j| j.send(Job { prompt, end_of_turn, params, events: tx })));
    if !matches!(sent, Some(Ok(()))) {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    let reply = Reply::new(&state, kind, settings.clone(), prompt_chars);
    if settings.stream {
        stream(reply, rx, permit).into_response()
    } else {
        whole(reply, rx).await
    }
}

/// The response being built for one request.
struct Reply {
    state: Arc<AppState>,
    kind: Kind,
    settings: Settings,
    id: String,
    created: u64,
    /// Characters of prompt and text so far: the next token's `text_offset`.
    offset: usize,
}

/// One generated token's log-probability and its most likely alternatives.
struct TokenLogprob {
    token: u32,
    logprob: f32,
    top: Vec<(u32, f32)>,
    /// Where the token's text starts in prompt + completion, in characters.
    offset: usize,
}

impl Reply {
    fn new(state: &Arc<AppState>, kind: Kind, settings: Settings, prompt_chars: usize) -> Reply {
        let n = state.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        Reply { state: state.clone(), kind, settings, id: format!("{prefix}-{:x}{n:06}", now()), created: now(), offset: prompt_chars }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    /// A token's text, as the tokenizer decodes it alone.
    fn token_text(&self, token: u32) -> String {
        self.state.tokenizer.decode(&[token], false).unwrap_or_default()
    }

    /// Takes one piece of text with the token that made it: the token's log-probability
    /// entry when the request asked for them (the final flush has no token, so none).
    fn take_text(&mut self, text: &str, token: Option<u32>, logprob: Option<f32>, top: Vec<(u32, f32)>) -> Option<TokenLogprob> {
        let offset = self.offset;
        self.offset += text.chars().count();
        self.settings.logprobs?;
        Some(TokenLogprob { token: token?, logprob: logprob?, top, offset })
    }

    /// The `logprobs` object of a choice, in the endpoint's format: chat's `content` list,
    /// or the text completion's parallel lists.
    fn logprobs(&self, entries: &[TokenLogprob]) -> Value {
        match self.kind {
            Kind::Chat => {
                let item = |t: u32, lp: f32| {
                    let text = self.token_text(t);
                    json!({"token": text, "logprob": lp, "bytes": text.as_bytes()})
                };
                let content: Vec<Value> = entries
                    .iter()
                    .map(|e| {
                        let mut v = item(e.token, e.logprob);
                        v["top_logprobs"] = e.top.iter().map(|&(t, lp)| item(t, lp)).collect();
                        v
                    })
                    .collect();
                json!({"content": content, "refusal": null})
            }
            Kind::Completion => {
                let top: Vec<Value> = entries
                    .iter()
                    .map(|e| Value::Object(e.top.iter().map(|&(t, lp)| (self.token_text(t), json!(lp))).collect()))
                    .collect();
                json!({
                    "tokens": entries.iter().map(|e| self.token_text(e.token)).collect::<Vec<_>>(),
                    "token_logprobs": entries.iter().map(|e| e.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
                })
            }
        }
    }

    fn envelope(&self, chunk: bool, choice: Value, usage: Option<Value>) -> Value {
        let mut v = json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.state.model_id,
            "choices": [choice]});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    fn choice(&self, text: &str, logprobs: Option<Value>, finish: Option<&str>, chunk: bool, first: bool) -> Value {
        match self.kind {
            Kind::Chat => {
                let body = if chunk {
                    let mut d = json!({"content": text});
                    if first {
                        d["role"] = json!("assistant");
                    }
                    ("delta", d)
                } else {
                    ("message", json!({"role": "assistant", "content": text}))
                };
                let mut c = json!({"index": 0, "logprobs": logprobs, "finish_reason": finish});
                c[body.0] = body.1;
                c
            }
            Kind::Completion => json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}),
        }
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Collects the whole generation. A client that goes away drops this future, and with it
/// the receiver: its row stops at the next token.
async fn whole(mut reply: Reply, mut rx: mpsc::UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    let mut entries: Vec<TokenLogprob> = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text { text: t, token, logprob, top } => {
                entries.extend(reply.take_text(&t, token, logprob, top));
                text.push_str(&t);
            }
            Event::Done { finish, prompt_tokens, completion_tokens } => {
                let lp = reply.settings.logprobs.map(|_| reply.logprobs(&entries));
                let choice = reply.choice(&text, lp, Some(finish_name(finish)), false, false);
                return Json(reply.envelope(false, choice, Some(usage(prompt_tokens, completion_tokens)))).into_response();
            }
            Event::Failed(m) => return ApiError::internal(m).into_response(),
        }
    }
    ApiError::internal("the generation ended without a result").into_response()
}

/// Streams server-sent events: a chunk per piece of text, a last chunk with the finish
/// reason (and usage when `stream_options.include_usage`), then `data: [DONE]`. A task
/// forwards the batcher's events; when the client goes, its send fails, it drops the
/// receiver, and the row stops.
fn stream(mut reply: Reply, mut rx: mpsc::UnboundedReceiver<Event>, permit: Permit) -> impl IntoResponse {
    let (out, sse) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let _permit = permit;
        let mut first = true;
        let send = |v: Value| SseEvent::default().data(v.to_string());
        while let Some(event) = rx.recv().await {
            let msg = match event {
                Event::Text { text, token, logprob, top } => {
                    let entry = reply.take_text(&text, token, logprob, top);
                    if text.is_empty() && entry.is_none() {
                        // Nothing to say yet; still check that the client is there.
                        if out.is_closed() {
                            return;
                        }
                        continue;
                    }
                    let lp = entry.map(|e| reply.logprobs(&[e]));
                    let v = reply.envelope(true, reply.choice(&text, lp, None, true, first), None);
                    first = false;
                    vec![send(v)]
                }
                Event::Done { finish, prompt_tokens, completion_tokens } => {
                    let mut v = reply.envelope(true, reply.choice("", None, Some(finish_name(finish)), true, first), None);
                    let mut msgs = vec![];
                    if reply.settings.include_usage {
                        v["usage"] = Value::Null;
                        msgs.push(send(v));
                        let mut u = reply.envelope(true, Value::Null, Some(usage(prompt_tokens, completion_tokens)));
                        u["choices"] = json!([]);
                        msgs.push(send(u));
                    } else {
                        msgs.push(send(v));
                    }
                    msgs.push(SseEvent::default().data("[DONE]"));
                    msgs
                }
                Event::Failed(m) => vec![send(ApiError::internal(m).body())],
            };
            for m in msg {
                if out.send(Ok(m)).await.is_err() {
                    return;
                }
            }
        }
    });
    Sse::new(ReceiverStream::new(sse)).keep_alive(KeepAlive::default())
}
