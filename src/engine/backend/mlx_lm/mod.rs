//! The `mlx_lm` backend: a model loaded and run by mlx-lm in a Python worker process,
//! for architectures the engine does not have natively yet. One worker per model; the
//! protocol (line-delimited JSON) is in `server.py` and docs/backends.md.
//!
//! Text comes decoded by mlx-lm's own streaming detokenizer and the worker decides where
//! EOS and stop tokens end a sequence; stop strings, callbacks and cancellation are
//! applied here, through the same `TextStream` as native generation, so both backends
//! stop in the same places and return the same types.
mod probe;
mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::chat::{ChatOptions, Message};
use crate::engine::batch::{BatchParams, Classification};
use crate::engine::generate::{CancelToken, GenerateParams};
use crate::engine::metrics::Metrics;
use crate::engine::model::{FinishReason, Generation, TextStream, TokenEvent};
use crate::error::{Error, Result};
use crate::mlx::quant::{QuantMode, QuantParams};
use crate::mlx::Dtype;
use crate::models::quantization::QuantInfo;
use crate::models::{LoadOptions, ModelInfo};

pub use probe::{probe, Probe};
use process::{Next, Worker};

/// The worker's source, run with `python -c`.
const SERVER: &str = include_str!("server.py");

/// How often a waiting call looks at its cancel token.
const POLL: Duration = Duration::from_millis(25);

/// Where the `mlx_lm` backend finds Python and how long it waits for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlxLmOptions {
    /// The Python executable. `None`: `venv`'s, else `$MLXRUN_PYTHON`, else the active
    /// `$VIRTUAL_ENV`'s, else `python3` on the PATH.
    pub python: Option<PathBuf>,
    /// A virtualenv whose `bin/python` to run.
    pub venv: Option<PathBuf>,
    /// Longest time a model may take to load.
    pub load_timeout: Duration,
    /// Longest silence of the worker during a call (between two tokens, say) before it is
    /// declared hung, killed, and the call fails.
    pub reply_timeout: Duration,
    /// Largest protocol message accepted from the worker; a longer line is a protocol
    /// error (a classify with logits sends a vocabulary of floats per prompt).
    pub max_message_bytes: usize,
}

impl Default for MlxLmOptions {
    fn default() -> Self {
        MlxLmOptions {
            python: None,
            venv: None,
            load_timeout: Duration::from_secs(600),
            reply_timeout: Duration::from_secs(120),
            max_message_bytes: 64 << 20,
        }
    }
}

impl MlxLmOptions {
    /// The Python executable these options choose.
    pub fn python_path(&self) -> PathBuf {
        if let Some(p) = &self.python {
            return p.clone();
        }
        if let Some(v) = &self.venv {
            return v.join("bin").join("python");
        }
        if let Some(p) = std::env::var_os("MLXRUN_PYTHON").filter(|p| !p.is_empty()) {
            return p.into();
        }
        if let Some(v) = std::env::var_os("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
            return Path::new(&v).join("bin").join("python");
        }
        PathBuf::from("python3")
    }
}

/// A model served by an mlx-lm worker process.
pub struct MlxLmModel {
    worker: Worker,
    opts: MlxLmOptions,
    path: PathBuf,
    info: ModelInfo,
    probe: Probe,
    next_id: u64,
    cancel: CancelToken,
    last_metrics: Option<Metrics>,
}

/// What a streamed message asks of the call loop.
enum Flow {
    Continue,
    /// Stop the worker's generation (a stop string, the caller's callback): a cancel is
    /// sent and the rest of the stream is read and dropped.
    Stop,
}

impl MlxLmModel {
    /// Starts a worker and loads `path` (an HF-layout folder mlx-lm reads) in it. The
    /// compute dtype follows the native rule: `opts.dtype`, else float32 when the
    /// worker's MLX runs on the CPU, else the checkpoint's own.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions, backend: &MlxLmOptions) -> Result<MlxLmModel> {
        let path = path.as_ref();
        if crate::models::gguf::find_model_file(path)?.is_some() {
            return Err(Error::Unsupported(format!(
                "mlx_lm backend: {} is a GGUF model, which mlx-lm does not load (the native backend does)",
                path.display()
            )));
        }
        if opts.quantize.is_some() {
            return Err(Error::Unsupported(
                "mlx_lm backend: quantizing at load (convert the folder with mlx_lm.convert -q instead)".into(),
            ));
        }
        if !path.is_dir() {
            return Err(Error::Config(format!("{} is not a folder", path.display())));
        }
        let path = path.canonicalize().map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let python = backend.python_path();
        let mut worker = Worker::spawn(&python, SERVER, &[], backend.max_message_bytes)?;
        let start = Instant::now();
        let ready = loop {
            match worker.next(POLL, start, backend.load_timeout, "start-up")? {
                Next::Message(v) => break v,
                Next::Idle => {}
            }
        };
        let probe = Probe::from_ready(&python, &ready)?;
        probe.check()?;
        let dtype = opts.dtype.or_else(|| probe.on_cpu().then_some(Dtype::F32));
        let mut m = MlxLmModel {
            worker,
            opts: backend.clone(),
            path: path.clone(),
            info: empty_info(),
            probe,
            next_id: 0,
            cancel: CancelToken::new(),
            last_metrics: None,
        };
        let mut req = json!({"op": "load", "path": path});
        if let Some(d) = dtype {
            req["dtype"] = json!(d.name());
        }
        if let Some(a) = &opts.adapter_path {
            req["adapter_path"] = json!(a);
        }
        let timeout = backend.load_timeout;
        let loaded = m.call(req, "load", timeout, |_| Ok(Flow::Continue))?;
        m.info = parse_info(&loaded)?;
        Ok(m)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model folder.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Versions and the Python the worker runs.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.worker.pid()
    }

    pub fn canceller(&self) -> CancelToken {
        self.cancel.clone()
    }

    pub fn last_metrics(&self) -> Option<&Metrics> {
        self.last_metrics.as_ref()
    }

    /// Ids of `text` (with the tokenizer's special tokens when `add_special_tokens`).
    pub fn encode(&mut self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let r = self.call(json!({"op": "tokenize", "text": text, "add_special_tokens": add_special_tokens}), "tokenize", self.opts.reply_timeout, |_| Ok(Flow::Continue))?;
        ids(&r["ids"], "ids")
    }

    /// Text of `ids`.
    pub fn decode(&mut self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let r = self.call(json!({"op": "detokenize", "ids": ids, "skip_special_tokens": skip_special_tokens}), "detokenize", self.opts.reply_timeout, |_| Ok(Flow::Continue))?;
        string(&r["text"], "text")
    }

    /// The prompt text the model's chat template (rendered by the tokenizer mlx-lm loads)
    /// makes of `messages`.
    pub fn render_chat(&mut self, messages: &[Message], options: &ChatOptions) -> Result<String> {
        let mut req = chat_request(messages, options);
        req["op"] = json!("render_chat");
        let r = self.call(req, "render_chat", self.opts.reply_timeout, |_| Ok(Flow::Continue))?;
        string(&r["text"], "text")
    }

    /// Generates from a text prompt, encoded as mlx-lm encodes one.
    pub fn generate(&mut self, prompt: &str, params: &GenerateParams, on_text: impl FnMut(&TokenEvent<'_>) -> bool) -> Result<Generation> {
        self.stream(json!({"op": "generate", "prompt": prompt}), params, on_text)
    }

    /// Generates from prompt ids.
    pub fn generate_ids(&mut self, prompt: &[u32], params: &GenerateParams, on_text: impl FnMut(&TokenEvent<'_>) -> bool) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::invalid("the prompt has no tokens"));
        }
        self.stream(json!({"op": "generate", "tokens": prompt}), params, on_text)
    }

    /// The assistant's reply to `messages`: the template's text, encoded by mlx-lm's
    /// rule, stopping at EOS and at the template's end-of-turn token (as native chat).
    pub fn chat(
        &mut self,
        messages: &[Message],
        options: &ChatOptions,
        params: &GenerateParams,
        on_text: impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<Generation> {
        let mut req = chat_request(messages, options);
        req["op"] = json!("chat");
        self.stream(req, params, on_text)
    }

    fn stream(&mut self, mut req: Value, params: &GenerateParams, mut on_text: impl FnMut(&TokenEvent<'_>) -> bool) -> Result<Generation> {
        params.validate()?;
        self.cancel.reset();
        req["params"] = params_json(params);
        let mut out = TextStream::decoded(params);
        // The id of a stop token the worker ended the sequence with; its tail text comes
        // with "done", so the stop is applied there.
        let mut stopped: Option<u32> = None;
        let mut failed: Option<Error> = None;
        let timeout = self.opts.reply_timeout;
        let done = self.call(req, "generate", timeout, |msg| {
            if msg["type"] != "token" || failed.is_some() || out_finished(&out, stopped) {
                return Ok(Flow::Continue);
            }
            let id = id(&msg["token"], "token")?;
            if msg["stop"] == json!(true) {
                stopped = Some(id);
                return Ok(Flow::Continue);
            }
            let text = msg["text"].as_str().unwrap_or("");
            let logprob = msg["logprob"].as_f64().map(|l| l as f32);
            match out.push_decoded(id, text, false, logprob, &mut on_text) {
                Ok(true) => Ok(Flow::Continue),
                Ok(false) => Ok(Flow::Stop),
                Err(e) => {
                    failed = Some(e);
                    Ok(Flow::Stop)
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        out.set_tail(done["tail"].as_str().unwrap_or(""));
        let finish = match stopped {
            Some(id) if !out_finished(&out, None) => {
                out.push_decoded(id, "", true, None, &mut on_text)?;
                FinishReason::Stop
            }
            _ => out.end(done["finish_reason"] == "cancelled" || self.cancel.is_cancelled(), &mut on_text)?,
        };
        let metrics = parse_metrics(&done["metrics"]);
        self.last_metrics = Some(metrics.clone());
        Ok(Generation {
            prompt_tokens: ids(&done["prompt_tokens"], "prompt_tokens")?,
            tokens: std::mem::take(&mut out.tokens),
            text: std::mem::take(&mut out.text),
            finish_reason: finish,
            metrics,
        })
    }

    /// The next token after each prompt. One result per prompt, in order; a prompt that
    /// cannot run fails alone.
    pub fn classify(&mut self, prompts: &[&str], params: &GenerateParams, batch: &BatchParams) -> Result<Vec<Result<Classification>>> {
        self.classify_json(json!(prompts), prompts.len(), params, batch)
    }

    /// `classify` for prompts given as ids.
    pub fn classify_ids(&mut self, prompts: &[Vec<u32>], params: &GenerateParams, batch: &BatchParams) -> Result<Vec<Result<Classification>>> {
        self.classify_json(json!(prompts), prompts.len(), params, batch)
    }

    fn classify_json(&mut self, prompts: Value, n: usize, params: &GenerateParams, batch: &BatchParams) -> Result<Vec<Result<Classification>>> {
        params.validate()?;
        self.cancel.reset();
        let mut p = params_json(params);
        p["context_length"] = json!(batch.context_length);
        let req = json!({"op": "classify", "prompts": prompts, "params": p, "return_logits": batch.return_logits});
        let mut results: Vec<Option<Result<Classification>>> = (0..n).map(|_| None).collect();
        let done = self.call(req, "classify", self.opts.reply_timeout, |msg| {
            if msg["type"] != "row" {
                return Ok(Flow::Continue);
            }
            let row = row_index(msg, n)?;
            results[row] = Some(match msg["error"].as_str() {
                Some(e) => Err(error_of(msg["kind"].as_str().unwrap_or(""), e)),
                None => Ok(Classification {
                    prompt_tokens: ids(&msg["prompt_tokens"], "prompt_tokens")?,
                    token: id(&msg["token"], "token")?,
                    logprob: msg["logprob"].as_f64().map(|l| l as f32),
                    logits: match msg["logits"].as_array() {
                        Some(a) => Some(a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN) as f32).collect()),
                        None => None,
                    },
                }),
            });
            Ok(Flow::Continue)
        })?;
        self.last_metrics = Some(parse_metrics(&done["metrics"]));
        Ok(results.into_iter().map(|r| r.unwrap_or(Err(Error::Cancelled))).collect())
    }

    /// Generates a continuation of every prompt with mlx-lm's continuous batching.
    /// `on_text` gets `(prompt index, event)`; returning false stops that row only.
    pub fn batch_generate(
        &mut self,
        prompts: &[&str],
        params: &GenerateParams,
        batch: &BatchParams,
        on_text: impl FnMut(usize, &TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Result<Generation>>> {
        self.batch_json(json!(prompts), prompts.len(), params, batch, on_text)
    }

    /// `batch_generate` for prompts given as ids.
    pub fn batch_generate_ids(
        &mut self,
        prompts: &[Vec<u32>],
        params: &GenerateParams,
        batch: &BatchParams,
        on_text: impl FnMut(usize, &TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Result<Generation>>> {
        self.batch_json(json!(prompts), prompts.len(), params, batch, on_text)
    }

    fn batch_json(
        &mut self,
        prompts: Value,
        n: usize,
        params: &GenerateParams,
        batch: &BatchParams,
        mut on_text: impl FnMut(usize, &TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Result<Generation>>> {
        params.validate()?;
        self.cancel.reset();
        let mut p = params_json(params);
        p["context_length"] = json!(batch.context_length);
        let req = json!({"op": "batch_generate", "prompts": prompts, "params": p, "max_batch_size": batch.max_batch_size});
        let mut rows: Vec<TextStream<'static>> = (0..n).map(|_| TextStream::decoded(params)).collect();
        let mut stopped: Vec<Option<u32>> = vec![None; n];
        let mut results: Vec<Option<Result<Generation>>> = (0..n).map(|_| None).collect();
        let cancel = self.cancel.clone();
        let done = self.call(req, "batch_generate", self.opts.reply_timeout, |msg| {
            let row = row_index(msg, n)?;
            let out = &mut rows[row];
            let mut emit = |ev: &TokenEvent<'_>| on_text(row, ev);
            match msg["type"].as_str() {
                Some("token") if results[row].is_none() && out_finished(out, stopped[row]) => {}
                Some("token") if results[row].is_none() => {
                    let id = id(&msg["token"], "token")?;
                    if msg["stop"] == json!(true) {
                        stopped[row] = Some(id);
                    } else {
                        let logprob = msg["logprob"].as_f64().map(|l| l as f32);
                        out.push_decoded(id, msg["text"].as_str().unwrap_or(""), false, logprob, &mut emit)?;
                    }
                }
                Some("row_done") if results[row].is_none() => {
                    results[row] = Some(match msg["error"].as_str() {
                        Some(e) => Err(error_of(msg["kind"].as_str().unwrap_or(""), e)),
                        None => {
                            out.set_tail(msg["tail"].as_str().unwrap_or(""));
                            let finish = match stopped[row] {
                                Some(id) if !out_finished(out, None) => {
                                    out.push_decoded(id, "", true, None, &mut emit)?;
                                    FinishReason::Stop
                                }
                                _ => out.end(cancel.is_cancelled(), &mut emit)?,
                            };
                            Ok(Generation {
                                prompt_tokens: ids(&msg["prompt_tokens"], "prompt_tokens")?,
                                tokens: std::mem::take(&mut out.tokens),
                                text: std::mem::take(&mut out.text),
                                finish_reason: finish,
                                metrics: Metrics::default(),
                            })
                        }
                    });
                }
                _ => {}
            }
            Ok(Flow::Continue)
        })?;
        let metrics = parse_metrics(&done["metrics"]);
        self.last_metrics = Some(metrics.clone());
        Ok(results
            .into_iter()
            .map(|r| {
                let mut r = r.unwrap_or(Err(Error::Cancelled));
                if let Ok(g) = &mut r {
                    g.metrics = Metrics { prompt_tokens: g.prompt_tokens.len(), generated_tokens: g.tokens.len(), ..metrics.clone() };
                }
                r
            })
            .collect())
    }

    /// Sends `req` and reads the replies until its final one (returned), handing every
    /// streamed message to `on_msg`. A cancel (the model's token, or `on_msg` asking to
    /// stop) is sent to the worker once, and the stream is read to its end so the worker
    /// is ready for the next call.
    fn call(&mut self, mut req: Value, doing: &str, timeout: Duration, mut on_msg: impl FnMut(&Value) -> Result<Flow>) -> Result<Value> {
        self.next_id += 1;
        let rid = self.next_id;
        req["id"] = json!(rid);
        self.worker.send(&req)?;
        let mut since = Instant::now();
        let mut cancel_sent = false;
        let mut stopping = false;
        loop {
            if !cancel_sent && self.cancel.is_cancelled() {
                self.worker.send(&json!({"op": "cancel", "id": rid}))?;
                cancel_sent = true;
            }
            let msg = match self.worker.next(POLL, since, timeout, doing)? {
                Next::Idle => continue,
                Next::Message(m) => m,
            };
            since = Instant::now();
            if msg["id"] != json!(rid) {
                // A reply to no request of ours (an unparsable-request notice): the
                // worker misunderstood us, which is a bug on one side or the other.
                if msg["type"] == "error" {
                    return Err(Error::Backend(format!("mlx_lm: {}", msg["message"].as_str().unwrap_or("protocol error"))));
                }
                continue;
            }
            match msg["type"].as_str() {
                Some("error") => {
                    return Err(error_of(msg["kind"].as_str().unwrap_or(""), msg["message"].as_str().unwrap_or("unknown error")))
                }
                Some("token" | "row" | "row_done") => {
                    if !stopping {
                        if let Flow::Stop = on_msg(&msg)? {
                            stopping = true;
                        }
                    } else if msg["type"] == "row_done" || msg["type"] == "row" {
                        // Rows still finish (their results are wanted), tokens are dropped.
                        on_msg(&msg)?;
                    }
                    if stopping && !cancel_sent {
                        self.worker.send(&json!({"op": "cancel", "id": rid}))?;
                        cancel_sent = true;
                    }
                }
                Some(_) => return Ok(msg),
                None => return Err(Error::Backend(format!("mlx_lm: a reply without a type during {doing}: {msg}"))),
            }
        }
    }
}

impl Drop for MlxLmModel {
    fn drop(&mut self) {
        self.worker.shutdown(Duration::from_secs(2));
    }
}

/// Whether a stream already ended (a stop string, the callback, or a stop token taken).
fn out_finished(out: &TextStream<'_>, stopped: Option<u32>) -> bool {
    out.finished() || stopped.is_some()
}

fn chat_request(messages: &[Message], options: &ChatOptions) -> Value {
    let messages: Vec<Value> = messages.iter().map(Message::to_json).collect();
    json!({
        "messages": messages,
        "add_generation_prompt": options.add_generation_prompt,
        "template": options.template,
        "template_kwargs": Value::Object(options.template_kwargs.clone()),
    })
}

fn params_json(p: &GenerateParams) -> Value {
    let s = &p.sampler;
    json!({
        "max_tokens": p.max_tokens,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "repetition_penalty": s.repetition_penalty,
        "repetition_context_size": s.repetition_context_size,
        "seed": s.seed,
        "logprobs": s.logprobs,
        "stop_tokens": p.stop_tokens,
        "ignore_eos": p.ignore_eos,
        "prefill_step_size": p.prefill_step_size,
        "kv_bits": p.kv_quantization.map(|q| q.bits),
        "kv_group_size": p.kv_quantization.map(|q| q.group_size),
        "quantized_kv_start": p.kv_quantization.map(|q| q.start),
        "context_length": p.context_length,
    })
}

/// The error a worker's `{"kind", "message"}` reports.
fn error_of(kind: &str, message: &str) -> Error {
    let m = message.to_string();
    match kind {
        "invalid" => Error::InvalidArgument(m),
        "config" => Error::Config(m),
        "io" => Error::Io(m),
        "tokenizer" => Error::Tokenizer(m),
        "template" => Error::Template(m),
        "mlx" => Error::Mlx(m),
        _ => Error::Backend(format!("mlx_lm: {m}")),
    }
}

fn row_index(msg: &Value, n: usize) -> Result<usize> {
    match msg["row"].as_u64() {
        Some(r) if (r as usize) < n => Ok(r as usize),
        _ => Err(Error::Backend(format!("mlx_lm: a reply names row {} of {n}", msg["row"]))),
    }
}

fn id(v: &Value, what: &str) -> Result<u32> {
    v.as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .ok_or_else(|| Error::Backend(format!("mlx_lm: {what} is not a token id: {v}")))
}

fn ids(v: &Value, what: &str) -> Result<Vec<u32>> {
    v.as_array()
        .ok_or_else(|| Error::Backend(format!("mlx_lm: {what} is not a list of token ids")))?
        .iter()
        .map(|t| id(t, what))
        .collect()
}

fn string(v: &Value, what: &str) -> Result<String> {
    v.as_str().map(str::to_owned).ok_or_else(|| Error::Backend(format!("mlx_lm: {what} is not a string")))
}

fn secs(v: &Value) -> Duration {
    Duration::from_secs_f64(v.as_f64().unwrap_or(0.0).max(0.0))
}

fn parse_metrics(m: &Value) -> Metrics {
    let n = |k: &str| m[k].as_u64().unwrap_or(0) as usize;
    Metrics {
        prompt_tokens: n("prompt_tokens"),
        generated_tokens: n("generated_tokens"),
        prefill: secs(&m["prefill_s"]),
        decode: secs(&m["decode_s"]),
        peak_memory: n("peak_memory"),
        active_memory: n("active_memory"),
        ..Metrics::default()
    }
}

fn empty_info() -> ModelInfo {
    ModelInfo {
        model_type: String::new(),
        vocab_size: 0,
        hidden_size: 0,
        num_layers: 0,
        num_heads: 0,
        num_kv_heads: 0,
        head_dim: 0,
        max_position_embeddings: None,
        tied_embeddings: false,
        dtype: Dtype::F32,
        quantization: None,
    }
}

fn parse_info(v: &Value) -> Result<ModelInfo> {
    let int = |k: &str| v[k].as_i64().unwrap_or(0) as i32;
    let dtype_name = v["dtype"].as_str().unwrap_or("float32");
    let dtype = Dtype::from_name(dtype_name)
        .ok_or_else(|| Error::Backend(format!("mlx_lm: the model's dtype {dtype_name:?} is not one MLX names")))?;
    let quantization = match &v["quantization"] {
        Value::Object(q) => Some(quant_info(q)?),
        _ => None,
    };
    Ok(ModelInfo {
        model_type: v["model_type"].as_str().unwrap_or("").to_string(),
        vocab_size: int("vocab_size"),
        hidden_size: int("hidden_size"),
        num_layers: int("num_layers"),
        num_heads: int("num_heads"),
        num_kv_heads: int("num_kv_heads"),
        head_dim: int("head_dim"),
        max_position_embeddings: v["max_position_embeddings"].as_i64().map(|x| x as i32),
        tied_embeddings: v["tied_embeddings"].as_bool().unwrap_or(false),
        dtype,
        quantization,
    })
}

fn quant_info(q: &Map<String, Value>) -> Result<QuantInfo> {
    let mode_name = q.get("mode").and_then(Value::as_str).unwrap_or("affine");
    let mode = QuantMode::from_name(mode_name)
        .ok_or_else(|| Error::Backend(format!("mlx_lm: quantization mode {mode_name:?} is unknown")))?;
    Ok(QuantInfo {
        params: QuantParams {
            group_size: q.get("group_size").and_then(Value::as_i64).unwrap_or(64) as i32,
            bits: q.get("bits").and_then(Value::as_i64).unwrap_or(4) as i32,
            mode,
        },
        // mlx-lm keeps every quantized matrix packed; it does not say how many there are.
        quantized_layers: 0,
        dense_layers: 0,
        kept: true,
    })
}
