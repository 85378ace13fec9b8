//! `mlxrun serve` as users reach it: a real server process on a free localhost port,
//! driven by the official `openai` Python client and by `curl`. Greedy text must equal
//! `mlxrun chat` on the same messages; concurrent requests must share a batch; a client
//! that goes away must stop its row; every bad request gets OpenAI's error shape and
//! status, and the server keeps serving; SIGTERM ends running requests and exits.
//! Log-probabilities and top alternatives, in both endpoints' shapes, streamed and not,
//! must equal the engine's for the same prompt; requests with different sampler settings
//! share the batch, greedy ones keep their text and seeded ones repeat theirs alone.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlxrun::{ChatOptions, GenerateParams, LoadOptions, Message, Model, SamplerParams};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mlxrun");
const KEY: &str = "test-key";

struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `mlxrun serve` on the qwen3 fixture on port 0 and reads the port it printed.
    fn start(extra: &[&str]) -> Server {
        let model = common::deps_file("fixtures/qwen3");
        let mut child = Command::new(BIN)
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0", "--context-length", "4096"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line.split("http://127.0.0.1:").nth(1).and_then(|r| r.split(' ').next()) {
                    let _ = tx.send(port.parse::<u16>().unwrap());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        Server { child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `curl` a JSON body to `path` with `headers`: (status, body).
    fn post(&self, path: &str, body: &str, headers: &[&str]) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-N", "-w", "\n%{http_code}", "-H", "content-type: application/json", "--data-binary", "@-"]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let mut child = cmd.arg(self.url(path)).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    }

    fn authed(&self, path: &str, body: &Value) -> (u16, String) {
        self.post(path, &body.to_string(), &[&format!("Authorization: Bearer {KEY}")])
    }

    fn health(&self) -> Value {
        let out = Command::new("curl").args(["-sS", &self.url("/health")]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits (generously) until `/health`'s `field` satisfies `ok`.
    fn wait_health(&self, field: &str, ok: impl Fn(u64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let h = self.health();
            if ok(h[field].as_u64().unwrap()) {
                return;
            }
            assert!(Instant::now() < deadline, "/health never got the expected {field}: {h}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python(server: &Server, args: &[&str]) -> Value {
    let py = common::deps_file("venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/serve_client.py");
    let out = Command::new(py).arg(script).arg(server.url("/v1")).arg(KEY).args(args).output().unwrap();
    assert!(out.status.success(), "client failed: {}\nserver log:\n{}", String::from_utf8_lossy(&out.stderr), server.log.lock().unwrap());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `mlxrun chat`'s greedy reply to one user message.
fn chat_reply(message: &str, max_tokens: usize) -> String {
    let model = common::deps_file("fixtures/qwen3");
    let out = Command::new(BIN)
        .args(["chat", "--model", model.to_str().unwrap(), "--message", message, "--temp", "0", "--json", "--quiet"])
        .args(["--max-tokens", &max_tokens.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["reply"].as_str().unwrap().to_string()
}

fn chat_body(message: &str, max_tokens: usize) -> Value {
    serde_json::json!({"model": "qwen3", "messages": [{"role": "user", "content": message}], "max_tokens": max_tokens, "temperature": 0})
}

/// The content deltas of a chat stream, joined; panics unless it ends with `[DONE]`.
fn sse_text(body: &str) -> (String, Vec<Value>) {
    let data: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let text = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    (text, chunks)
}

#[test]
fn openai_client_and_curl_get_the_text_of_mlxrun_chat() {
    let server = Server::start(&["--api-key", KEY]);
    let message = "Hello there, who are you?";
    let want = chat_reply(message, 16);
    assert!(!want.is_empty());

    let got = python(&server, &["basic", message, "16"]);
    assert_eq!(got["models"], serde_json::json!(["qwen3"]));
    assert_eq!(got["chat"], want.as_str(), "{got}");
    assert_eq!(got["stream"], want.as_str(), "{got}");
    assert_eq!(got["chat_logprobs"], 16);
    let usage = &got["chat_usage"];
    assert_eq!(usage["completion_tokens"], 16);
    assert_eq!(usage["total_tokens"], usage["prompt_tokens"].as_u64().unwrap() + 16);
    assert_eq!(got["stream_usage"], *usage);
    assert_eq!((got["chat_finish"].as_str(), got["stream_finish"].as_str()), (Some("length"), Some("length")));
    assert_eq!(got["completion"], got["completion_stream"]);
    assert!(!got["completion"].as_str().unwrap().is_empty());

    let (code, body) = server.authed("/v1/chat/completions", &chat_body(message, 16));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
    let mut streamed = chat_body(message, 16);
    streamed["stream"] = true.into();
    let (code, body) = server.authed("/v1/chat/completions", &streamed);
    assert_eq!(code, 200, "{body}");
    let (text, chunks) = sse_text(&body);
    assert_eq!(text, want);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");

    // One access log line per request.
    assert!(server.log.lock().unwrap().contains("\"POST /v1/chat/completions\" 200"), "{}", server.log.lock().unwrap());
}

#[test]
fn concurrent_requests_share_one_batch_and_a_gone_client_stops_its_row() {
    let server = Server::start(&["--api-key", KEY, "--max-concurrent", "8"]);
    let texts = python(&server, &["concurrent", "4", "48"]);
    // The same requests one at a time give the same text: rows in a batch do not disturb
    // each other.
    for (i, text) in texts.as_array().unwrap().iter().enumerate() {
        let (code, body) = server.authed("/v1/chat/completions", &chat_body(&format!("Request number {i}: say something."), 48));
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], *text, "request {i}");
    }
    assert!(server.health()["peak_batch_rows"].as_u64().unwrap() >= 2, "{}", server.health());

    // A stream closed after two chunks: its row stops (counted as disconnected) long
    // before the 4000 tokens it asked for, and the server serves on.
    assert_eq!(python(&server, &["disconnect", "4000"]), 2);
    server.wait_health("disconnected", |n| n == 1);
    server.wait_health("requests", |n| n == 0);
    assert_eq!(server.authed("/v1/chat/completions", &chat_body("Still there?", 4)).0, 200);
}

#[test]
fn bad_requests_get_openai_errors_limits_hold_and_sigterm_ends_the_server() {
    let mut server = Server::start(&["--api-key", KEY, "--max-concurrent", "1", "--max-queue", "0", "--shutdown-timeout", "1"]);
    let chat = "/v1/chat/completions";
    let ok = chat_body("Hi", 4);
    let error = |(code, body): (u16, String), want_code: u16, needle: &str| {
        assert_eq!(code, want_code, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("not OpenAI's error shape: {body}"));
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        v
    };
    error(server.post(chat, &ok.to_string(), &[]), 401, "API key");
    error(server.post(chat, &ok.to_string(), &["Authorization: Bearer wrong"]), 401, "API key");
    error(server.post(chat, "{\"messages\": [", &[&format!("Authorization: Bearer {KEY}")]), 400, "not valid JSON");
    let with = |field: &str, value: Value| {
        let mut b = ok.clone();
        b[field] = value;
        server.authed(chat, &b)
    };
    let v = error(with("foo", 1.into()), 400, "Unrecognized request argument supplied: foo");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(error(with("temperature", 5.into()), 400, "temperature")["error"]["param"], "temperature");
    error(with("n", 2.into()), 400, "n must be 1");
    error(with("max_tokens", 0.into()), 400, "max_tokens");
    error(with("messages", serde_json::json!([{"role": "robot", "content": "x"}])), 400, "unknown role");
    let v = error(server.authed(chat, &chat_body(&"word ".repeat(5000), 4)), 400, "maximum context length is 4096");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    let v = error(with("model", "gpt-4".into()), 404, "gpt-4");
    assert_eq!(v["error"]["code"], "model_not_found");
    error(server.authed(chat, &chat_body(&"x".repeat(1100 << 10), 4)), 413, "larger than");
    error(server.authed("/v1/nothing", &ok), 404, "no such endpoint");
    error(server.authed("/v1/models", &ok), 405, "does not take POST");
    // max_tokens beyond the context is cut to what fits, not refused.
    let (code, body) = server.authed("/v1/completions", &serde_json::json!({"prompt": "word ".repeat(4080), "max_tokens": 1_000_000}));
    assert_eq!(code, 200, "{body}");
    let usage = &serde_json::from_str::<Value>(&body).unwrap()["usage"];
    assert!(usage["total_tokens"].as_u64().unwrap() <= 4096, "{usage}");

    // One running request fills --max-concurrent 1 --max-queue 0: the next gets 429.
    let mut long = chat_body("Talk for a long time.", 4000);
    long["stream"] = true.into();
    let running = Command::new("curl")
        .args(["-sS", "-N", "-H", &format!("Authorization: Bearer {KEY}"), "-d", &long.to_string(), &server.url(chat)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_health("requests", |n| n == 1);
    let v = error(server.authed(chat, &ok), 429, "busy");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // SIGTERM: no new requests; the running one is cancelled after --shutdown-timeout and
    // its stream still ends properly; the server exits cleanly.
    assert!(Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap().success());
    let out = running.wait_with_output().unwrap();
    let (text, chunks) = sse_text(&String::from_utf8_lossy(&out.stdout));
    assert!(!text.is_empty());
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}: {}", server.log.lock().unwrap());
    assert!(server.log.lock().unwrap().contains("shutting down"));
}

/// Largest |Δ| allowed between the server's log-probabilities and the engine's for the
/// same prompt run alone: the batch computes the same ops over padded rows, which round
/// differently (the logits agree within 1e-4, tests/batch.rs).
const LOGPROB_TOL: f64 = 1e-4;

/// One reference token: its text, log-probability and alternatives.
type RefStep = (String, f64, Vec<(String, f64)>);

/// The engine's greedy tokens with `top` alternatives each, run alone in this process:
/// `chat` renders `message` as the server's chat endpoint does, else it is a text prompt.
fn engine_logprobs(model: &mut Model, message: &str, chat: bool, max_tokens: usize, top: usize) -> Vec<RefStep> {
    let sampler = SamplerParams { logprobs: true, top_logprobs: top, ..SamplerParams::greedy() };
    let params = GenerateParams { max_tokens, sampler, ..GenerateParams::default() };
    let mut steps = Vec::new();
    let tokenizer = model.tokenizer().clone();
    let text = |t: u32| tokenizer.decode(&[t], false).unwrap();
    let on_text = |ev: &mlxrun::engine::TokenEvent<'_>| {
        if let (Some(t), Some(lp)) = (ev.token, ev.logprob) {
            steps.push((text(t), lp as f64, ev.top_logprobs.iter().map(|&(t, lp)| (text(t), lp as f64)).collect()));
        }
        true
    };
    if chat {
        model.chat(&[Message::user(message)], &ChatOptions::default(), &params, on_text).unwrap();
    } else {
        model.generate(message, &params, on_text).unwrap();
    }
    steps
}

/// Checks the client's `[[token, logprob, [[token, logprob], ...]], ...]` against the
/// engine's: the same tokens, log-probabilities within `LOGPROB_TOL`, the chosen (greedy)
/// token's log-probability equal to the first alternative's, and the alternatives' values
/// within the tolerance, their tokens among the engine's. `merged`: alternatives that
/// decode to the same text share one entry (the text completion's `{token: logprob}`).
fn check_logprobs(what: &str, got: &Value, want: &[RefStep], top: usize, merged: bool) {
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: token count");
    for (i, (g, (token, lp, alts))) in got.iter().zip(want).enumerate() {
        let what = format!("{what} token {i}");
        assert_eq!(g[0].as_str().unwrap(), token, "{what}");
        let glp = g[1].as_f64().unwrap();
        assert!((glp - lp).abs() <= LOGPROB_TOL, "{what}: logprob {glp} vs the engine's {lp}");
        let galts = g[2].as_array().unwrap();
        if merged {
            assert!(!galts.is_empty() && galts.len() <= top, "{what}: {} alternatives", galts.len());
        } else {
            assert_eq!(galts.len(), top, "{what}: alternatives");
        }
        assert_eq!(galts[0][1].as_f64().unwrap(), glp, "{what}: greedy token's logprob is not the first alternative's");
        for (k, a) in galts.iter().enumerate() {
            let (t, v) = (a[0].as_str().unwrap(), a[1].as_f64().unwrap());
            assert!(alts.iter().any(|(wt, wv)| wt == t && (wv - v).abs() <= LOGPROB_TOL), "{what} alternative {k}: {a} not among {alts:?}");
            if !merged {
                assert!((alts[k].1 - v).abs() <= LOGPROB_TOL, "{what} alternative {k}: {v} vs the engine's {}", alts[k].1);
            }
        }
    }
}

#[test]
fn logprobs_and_top_logprobs_equal_the_engine_s() {
    let server = Server::start(&["--api-key", KEY]);
    let (message, max_tokens, top) = ("Hello there, who are you?", 8, 5);
    let got = python(&server, &["logprobs", message, &max_tokens.to_string(), &top.to_string()]);
    let mut model = Model::load(common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let chat = engine_logprobs(&mut model, message, true, max_tokens, top);
    let text = engine_logprobs(&mut model, message, false, max_tokens, top);
    check_logprobs("chat", &got["chat"], &chat, top, false);
    check_logprobs("chat stream", &got["chat_stream"], &chat, top, false);
    check_logprobs("completion", &got["completion"], &text, top, true);
    check_logprobs("completion stream", &got["completion_stream"], &text, top, true);
    // text_offset: where each token's text starts in prompt + completion, in characters.
    let offsets: Vec<u64> = got["completion_offsets"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(offsets[0], message.chars().count() as u64);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    let completion_chars = got["completion_text"].as_str().unwrap().chars().count() as u64;
    assert!(*offsets.last().unwrap() <= offsets[0] + completion_chars, "{offsets:?}");

    // OpenAI's limits: 0..=20 alternatives, and chat's need logprobs on.
    let mut body = chat_body("Hi", 2);
    body["top_logprobs"] = 21.into();
    body["logprobs"] = true.into();
    let (code, reply) = server.authed("/v1/chat/completions", &body);
    assert_eq!(code, 400, "{reply}");
    body["top_logprobs"] = 2.into();
    body["logprobs"] = false.into();
    let (code, reply) = server.authed("/v1/chat/completions", &body);
    assert_eq!(code, 400, "{reply}");
    let (code, reply) = server.authed("/v1/completions", &serde_json::json!({"prompt": "Hi", "max_tokens": 2, "logprobs": 21}));
    assert_eq!(code, 400, "{reply}");
}

#[test]
fn requests_with_different_sampler_settings_share_the_batch() {
    let server = Server::start(&["--api-key", KEY, "--max-concurrent", "8"]);
    let got = python(&server, &["mixed", "24"]);
    let together = got["together"].as_array().unwrap();
    // Greedy rows beside sampled ones keep the text they have alone.
    for i in [0, 2, 5] {
        assert_eq!(together[i].as_str().unwrap(), chat_reply(&format!("Request number {i}: say something."), 24), "request {i}");
    }
    // A seeded row draws from its own generator: alone, it writes the same text.
    for (i, alone) in got["seeded_alone"].as_object().unwrap() {
        assert_eq!(together[i.parse::<usize>().unwrap()], *alone, "seeded request {i}");
    }
    assert!(server.health()["peak_batch_rows"].as_u64().unwrap() >= 2, "{}", server.health());
}
