//! Batched inference against the single-prompt path, on every family's fixture.
//!
//! - Classify: each prompt's token equals the greedy token of that prompt generated
//!   alone, and its last-position logits agree with a full forward pass of the prompt
//!   alone within `LOGIT_TOL`.
//! - BatchGenerate: each row's greedy tokens equal the prompt generated alone, with rows
//!   leaving at different steps (the callback stops row i after its own budget) and
//!   waiting prompts joining mid-run (the batch holds fewer rows than there are prompts).
//!   A batched matmul may round differently from a single-row one; where the single run's
//!   top-2 log-probability margin falls below `TIE_MARGIN` the two may legitimately pick
//!   different tokens, so rows are compared up to the first such near-tie.
//! - Rows with their own sampler settings (greedy, seeded sampling with filters, a
//!   repetition penalty, log-probabilities with top lists of different lengths) share one
//!   continuously batched run; each row's tokens, log-probabilities and top lists equal
//!   its prompt generated alone with the same settings.
mod common;

use mlxrun::engine::generate::forward_logits;
use mlxrun::engine::batch::{RowFeed, RowRequest};
use mlxrun::engine::{BatchParams, FinishReason, GenerateParams, Generation, Model, SamplerParams, TokenEvent};
use mlxrun::LoadOptions;

/// Largest |Δ| allowed between batched and single logits (f32 compute on this CPU: the
/// same ops, summed in another order over padded keys and batched rows; measured up to
/// 1.7e-5 on these fixtures).
const LOGIT_TOL: f32 = 1e-4;
/// Top-2 margins below this are near-ties that rounding may flip.
const TIE_MARGIN: f32 = 1e-3;

const PROMPTS: &[&str] = &[
    "Hello",
    "The capital of France is",
    "Once upon a time, in a land far away, there lived a small dragon who loved to read books about the sea.",
    "1 2 3 4 5 6",
    "Why is the sky blue? Explain it to a child.",
];

fn load(name: &str) -> Model {
    load_with(name, &LoadOptions::default())
}

fn load_with(name: &str, options: &LoadOptions) -> Model {
    Model::load(common::deps_file(&format!("fixtures/{name}")), options).unwrap()
}

/// The single path's greedy tokens for `prompt`, with the top-2 margin at each step.
fn single(model: &mut Model, prompt: &str, params: &GenerateParams) -> (Vec<u32>, Vec<f32>) {
    let mut p = params.clone();
    p.sampler.logprobs = true;
    p.sampler.top_logprobs = 2;
    let mut margins = Vec::new();
    let g = model
        .generate(prompt, &p, |ev| {
            if let (Some(_), [a, b]) = (ev.token, ev.top_logprobs) {
                margins.push(a.1 - b.1);
            }
            true
        })
        .unwrap();
    (g.tokens, margins)
}

/// Compares `got` with `want` up to the first near-tie of the single run.
fn same_until_tie(what: &str, got: &[u32], want: &[u32], margins: &[f32]) {
    let n = margins.iter().position(|&m| m < TIE_MARGIN).unwrap_or(usize::MAX);
    let (g, w) = (&got[..got.len().min(n)], &want[..want.len().min(n)]);
    assert_eq!(g, w, "{what}: batched tokens differ from the prompt generated alone (compared up to step {n})");
}

fn check_classify(name: &str) {
    let mut model = load(name);
    let params = GenerateParams { max_tokens: 1, ..GenerateParams::default() };
    // A small prefill chunk makes the long prompt take several chunks.
    let params = GenerateParams { prefill_step_size: 8, sampler: SamplerParams { logprobs: true, ..SamplerParams::default() }, ..params };
    let batch = BatchParams { return_logits: true, max_batch_size: 3, ..BatchParams::default() };
    let out = model.classify(PROMPTS, &params, &batch).unwrap();
    assert_eq!(out.len(), PROMPTS.len());
    let vocab = model.info().vocab_size as usize;
    for (i, (prompt, r)) in PROMPTS.iter().zip(&out).enumerate() {
        let c = r.as_ref().unwrap();
        let ids = model.tokenizer().encode_prompt(prompt).unwrap();
        assert_eq!(c.prompt_tokens, ids, "{name} prompt {i}: ids");
        let (want, margins) = single(&mut model, prompt, &params);
        same_until_tie(&format!("{name} classify {i}"), &[c.token], &want, &margins);
        let full = forward_logits(model.language_model(), &ids).unwrap();
        let n = ids.len() as i32;
        let last = full.slice_axis(0, n - 1, n).unwrap().to_vec::<f32>().unwrap();
        let got = c.logits.as_ref().unwrap();
        assert_eq!(got.len(), vocab);
        let diff = got.iter().zip(&last).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff <= LOGIT_TOL, "{name} prompt {i}: logits differ by {diff} (tolerance {LOGIT_TOL})");
        let lp = c.logprob.unwrap();
        assert!(lp.is_finite() && lp <= 0.0, "{name} prompt {i}: logprob {lp}");
    }
}

fn check_batch_generate(name: &str) {
    check_batch_generate_on(name, PROMPTS);
}

/// `check_batch_generate` over `prompts`; returns the batch's metrics.
fn check_batch_generate_on(name: &str, prompts: &[&str]) -> mlxrun::engine::Metrics {
    check_batch_generate_with(name, prompts, &LoadOptions::default())
}

fn check_batch_generate_with(name: &str, prompts: &[&str], options: &LoadOptions) -> mlxrun::engine::Metrics {
    let mut model = load_with(name, options);
    let params = GenerateParams { max_tokens: 12, ignore_eos: true, prefill_step_size: 8, ..GenerateParams::default() };
    // Row i stops itself after `budget(i)` tokens, so rows leave at different steps.
    let budget = |i: usize| 4 + 3 * i;
    let batch = BatchParams { max_batch_size: 2, ..BatchParams::default() };
    let mut seen = vec![0usize; prompts.len()];
    let out = model
        .batch_generate(prompts, &params, &batch, |i, ev| {
            if ev.token.is_some() {
                seen[i] += 1;
            }
            seen[i] < budget(i)
        })
        .unwrap();
    let metrics = model.last_metrics().cloned().unwrap();
    for (i, (prompt, r)) in prompts.iter().zip(&out).enumerate() {
        let g = r.as_ref().unwrap();
        let (want, margins) = single(&mut model, prompt, &params);
        let n = budget(i).min(params.max_tokens);
        let expect_reason = if budget(i) <= params.max_tokens { FinishReason::Callback } else { FinishReason::Length };
        assert_eq!(g.finish_reason, expect_reason, "{name} row {i}");
        assert_eq!(g.tokens.len(), n, "{name} row {i}: token count");
        same_until_tie(&format!("{name} batch row {i}"), &g.tokens, &want[..n], &margins);
        let text = model.tokenizer().decode(&g.tokens, false).unwrap();
        assert_eq!(g.text, text, "{name} row {i}: text");
    }
    metrics
}

/// Prompts that share a long beginning (a system prompt, say): rows joining later start
/// from the kept keys of an earlier prompt instead of prefilling that part, and still
/// generate what each prompt generates alone.
fn check_shared_prefix(name: &str) {
    const SHARED: &str = "You are a careful assistant who answers in one short sentence. The question follows. ";
    let prompts: Vec<String> = PROMPTS.iter().map(|p| format!("{SHARED}{p}")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let cached = check_batch_generate_on(name, &prompts).cached_prompt_tokens;
    assert!(cached >= 10, "{name}: {cached} prompt tokens came from the kept prefix");
}

#[test]
fn shared_prefix_qwen3() {
    check_shared_prefix("qwen3");
}
#[test]
fn shared_prefix_llama3() {
    check_shared_prefix("llama3");
}
#[test]
fn shared_prefix_gemma3_sliding_window_prefills_it_all() {
    // Sliding-window caches are not seeded: the tokens still equal each prompt alone.
    check_batch_generate_on("gemma3", &[&"The same start of every prompt here. ".repeat(3), &"The same start of every prompt here. ".repeat(4)]);
}

#[test]
fn classify_llama3() {
    check_classify("llama3");
}
#[test]
fn classify_qwen3() {
    check_classify("qwen3");
}
#[test]
fn classify_qwen2() {
    check_classify("qwen2");
}
#[test]
fn classify_gemma3_sliding_window() {
    check_classify("gemma3");
}
#[test]
fn classify_gemma3_multimodal() {
    check_classify("gemma3-mm");
}
#[test]
fn batch_generate_llama3() {
    check_batch_generate("llama3");
}
#[test]
fn batch_generate_qwen3() {
    check_batch_generate("qwen3");
}
#[test]
fn batch_generate_qwen2() {
    check_batch_generate("qwen2");
}
/// Stacked projections (a GPU's default) with several rows: one position per row is split
/// into heads from the stack's output, strided across rows, and must still decode what each
/// prompt decodes alone (qwen3 also normalises its q and k heads).
#[test]
fn batch_generate_stacked_projections() {
    let stacked = LoadOptions { stack_projections: Some(true), ..LoadOptions::default() };
    for name in ["qwen3", "llama3", "gemma3"] {
        check_batch_generate_with(name, PROMPTS, &stacked);
    }
}

#[test]
fn batch_generate_gemma3_sliding_window() {
    check_batch_generate("gemma3");
}
#[test]
fn batch_generate_gemma3_multimodal() {
    check_batch_generate("gemma3-mm");
}

#[test]
fn per_prompt_errors_leave_the_others_alone() {
    let mut model = load("qwen3");
    let prompts = ["Hello there", "", "Good morning"];
    let batch = BatchParams { context_length: Some(64), ..BatchParams::default() };
    let long = "word ".repeat(200);
    let mut all: Vec<&str> = prompts.to_vec();
    all.push(&long);
    let params = GenerateParams { max_tokens: 3, ..GenerateParams::default() };
    let c = model.classify(&all, &params, &batch).unwrap();
    assert!(c[0].is_ok() && c[2].is_ok());
    let e = c[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("prompt 1") && e.contains("no tokens"), "{e}");
    let e = c[3].as_ref().unwrap_err().to_string();
    assert!(e.contains("prompt 3") && e.contains("context length is 64"), "{e}");
    let g = model.batch_generate(&all, &params, &batch, |_, _| true).unwrap();
    assert!(g[0].is_ok() && g[2].is_ok() && g[1].is_err() && g[3].is_err());
    assert_eq!(g[0].as_ref().unwrap().tokens.len(), 3);
}

#[test]
fn cancel_stops_every_row() {
    let mut model = load("llama3");
    let cancel = model.canceller();
    let params = GenerateParams { max_tokens: 50, ignore_eos: true, ..GenerateParams::default() };
    let batch = BatchParams { max_batch_size: 2, ..BatchParams::default() };
    let mut n = 0;
    let out = model
        .batch_generate(PROMPTS, &params, &batch, |_, ev| {
            n += ev.token.is_some() as usize;
            if n == 5 {
                cancel.cancel();
            }
            true
        })
        .unwrap();
    for r in out {
        let g = r.unwrap();
        assert_eq!(g.finish_reason, FinishReason::Cancelled);
        assert!(g.tokens.len() < 50);
    }
}

/// One generated token: its id, log-probability and top list.
type Step = (u32, Option<f32>, Vec<(u32, f32)>);

/// A feed of fixed rows that records every row's steps.
struct Recorder {
    waiting: Vec<RowRequest>,
    steps: Vec<Vec<Step>>,
    done: Vec<Option<Generation>>,
}

impl RowFeed for Recorder {
    fn poll(&mut self, _running: usize, room: usize) -> Option<Vec<RowRequest>> {
        if self.waiting.is_empty() {
            return None;
        }
        // One row at a time: rows join a batch that is already decoding.
        Some(self.waiting.drain(..room.min(1)).collect())
    }
    fn drain(&mut self) -> Vec<RowRequest> {
        self.waiting.drain(..).collect()
    }
    fn on_text(&mut self, id: usize, ev: &TokenEvent<'_>) -> bool {
        if let Some(t) = ev.token {
            self.steps[id].push((t, ev.logprob, ev.top_logprobs.to_vec()));
        }
        true
    }
    fn on_done(&mut self, id: usize, result: mlxrun::Result<Generation>) {
        self.done[id] = Some(result.unwrap());
    }
}

/// Largest |Δ| allowed between a batched row's log-probabilities and the single run's
/// (the logits' tolerance: a log-softmax of values that agree within it).
const LOGPROB_TOL: f32 = 1e-4;

#[test]
fn rows_with_their_own_samplers_share_a_batch() {
    let mut model = load("qwen3");
    let warm = |temperature: f32, seed: u64| SamplerParams { temperature, seed: Some(seed), ..SamplerParams::default() };
    let samplers = [
        SamplerParams::greedy(),
        SamplerParams { top_p: 0.9, ..warm(0.8, 7) },
        SamplerParams { logprobs: true, top_logprobs: 3, ..SamplerParams::greedy() },
        SamplerParams { top_k: 20, logprobs: true, top_logprobs: 2, ..warm(1.0, 11) },
        // The same seed as row 1 on another prompt: each row has its own generator.
        SamplerParams { min_p: 0.05, ..warm(0.7, 7) },
        SamplerParams { repetition_penalty: 1.3, logprobs: true, top_logprobs: 5, ..SamplerParams::greedy() },
    ];
    let base = GenerateParams { max_tokens: 10, ignore_eos: true, prefill_step_size: 8, ..GenerateParams::default() };
    let rows: Vec<(Vec<u32>, GenerateParams)> = samplers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let prompt = model.tokenizer().encode_prompt(PROMPTS[i % PROMPTS.len()]).unwrap();
            (prompt, GenerateParams { sampler: s.clone(), ..base.clone() })
        })
        .collect();
    let mut feed = Recorder {
        waiting: rows
            .iter()
            .enumerate()
            .map(|(id, (prompt, params))| RowRequest { id, prompt: prompt.clone(), params: params.clone(), end_of_turn: vec![] })
            .collect(),
        steps: vec![vec![]; rows.len()],
        done: (0..rows.len()).map(|_| None).collect(),
    };
    // At most 4 rows, fed one per poll: every row after the first joins a batch that is
    // already decoding, and the last two join as the first ones leave.
    model.batch_stream(8, 4, &mut feed).unwrap();

    for (i, (prompt, params)) in rows.iter().enumerate() {
        let mut alone: Vec<Step> = Vec::new();
        let g = model
            .generate_ids(prompt, params, |ev| {
                if let Some(t) = ev.token {
                    alone.push((t, ev.logprob, ev.top_logprobs.to_vec()));
                }
                true
            })
            .unwrap();
        let got = &feed.steps[i];
        let batched = feed.done[i].as_ref().unwrap();
        assert_eq!(batched.tokens, g.tokens, "row {i} ({:?}): tokens differ from the prompt generated alone", params.sampler);
        assert_eq!(got.len(), alone.len(), "row {i}");
        for (step, (b, a)) in got.iter().zip(&alone).enumerate() {
            let what = format!("row {i} step {step}");
            assert_eq!(b.1.is_some(), params.sampler.logprobs, "{what}: logprob present");
            if let (Some(x), Some(y)) = (b.1, a.1) {
                assert!((x - y).abs() <= LOGPROB_TOL, "{what}: logprob {x} vs {y} alone");
            }
            assert_eq!(b.2.len(), params.sampler.top_logprobs, "{what}: top list length");
            for (k, (x, y)) in b.2.iter().zip(&a.2).enumerate() {
                assert!((x.1 - y.1).abs() <= LOGPROB_TOL, "{what} top {k}: {x:?} vs {y:?} alone");
            }
        }
    }
}
