//! Greedy generation without log-probabilities takes the argmax of the logits and only
//! computes mlx-lm's log-softmax when an earlier entry lies within rounding of the
//! maximum. When that exact token differs, the step already queued after it was fed the
//! wrong token: it is dropped and its cache position written again. These tests force
//! such near ties on every other position and check that the tokens equal the exact
//! path's (the same sampler asked for log-probabilities, which always takes mlx-lm's
//! route), for a plain cache, a sliding window past its size and a quantized cache.
mod common;

use std::cell::Cell;

use mlxrun::engine::generate::generate_tokens;
use mlxrun::engine::SamplerParams;
use mlxrun::mlx::{where_, Array, Dtype};
use mlxrun::models::{load, LanguageModel, LayerLinears, LoadOptions, ModelInfo};
use mlxrun::nn::quantized_kv_cache::quantize_caches;
use mlxrun::nn::{KvCache, KvQuantization};

/// A fixture whose logits are scaled down to about 1e-3 and, at every even cache offset,
/// have entry 0 set a hair below the maximum. After subtracting the log-sum-exp (about
/// ln(vocab) ≈ 12, whose float32 spacing is ~1e-6) the two round together, so mlx-lm's
/// argmax picks token 0 while the logits' own argmax picks the real maximum.
struct NearTie {
    inner: Box<dyn LanguageModel>,
    offset: Cell<i32>,
}

impl LanguageModel for NearTie {
    fn forward_hidden(&self, tokens: &Array, caches: &mut [KvCache]) -> mlxrun::Result<Array> {
        let h = self.inner.forward_hidden(tokens, caches)?;
        self.offset.set(caches[0].offset());
        Ok(h)
    }
    fn logits(&self, hidden: &Array) -> mlxrun::Result<Array> {
        let l = self.inner.logits(hidden)?.mul_scalar(1e-3)?;
        if self.offset.get() % 2 != 0 {
            return Ok(l);
        }
        let vocab = l.dim(-1)?;
        let max = l.max(Some(&[-1]), true)?;
        let first = Array::arange(0.0, vocab as f64, 1.0, Dtype::I32)?.equal(&Array::scalar(0i32)?)?;
        where_(&first, &max.add_scalar(-1e-9)?, &l)
    }
    fn new_caches(&self) -> Vec<KvCache> {
        self.inner.new_caches()
    }
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }
    fn layer_linears(&mut self) -> Vec<LayerLinears<'_>> {
        self.inner.layer_linears()
    }
    fn set_grad_checkpoint(&mut self, on: bool) {
        self.inner.set_grad_checkpoint(on)
    }
}

fn near_tie(fixture: &str) -> NearTie {
    let inner = load(&common::deps_file(&format!("fixtures/{fixture}")), &LoadOptions::with_dtype(Some(Dtype::F32))).unwrap();
    NearTie { inner, offset: Cell::new(0) }
}

fn run(model: &NearTie, kv: Option<KvQuantization>, logprobs: bool) -> Vec<u32> {
    let mut caches = model.new_caches();
    if let Some(q) = kv {
        quantize_caches(&mut caches, q).unwrap();
    }
    let prompt: Vec<u32> = (0..21).map(|i| 100 + 37 * i).collect();
    let params = SamplerParams { logprobs, ..SamplerParams::default() };
    let mut got = Vec::new();
    generate_tokens(model, &mut caches, &prompt, 40, &params, 2048, None, &mut |t| {
        got.push(t.token);
        Ok(true)
    })
    .unwrap();
    got
}

fn check(fixture: &str, kv: Option<KvQuantization>) {
    let model = near_tie(fixture);
    let exact = run(&model, kv, true);
    let zeros = exact.iter().filter(|&&t| t == 0).count();
    // The perturbation must matter, or this would not test the correction at all.
    assert!(zeros >= 5, "{fixture}: the near ties chose token 0 only {zeros} times in {exact:?}");
    assert!(zeros < exact.len(), "{fixture}: every token was 0, so the caches' contents went untested");
    assert_eq!(run(&model, kv, false), exact, "{fixture} {kv:?}: the greedy shortcut against mlx-lm's route");
}

#[test]
fn near_ties_take_mlx_lms_token_with_a_plain_cache() {
    check("llama3", None);
    check("qwen3", None);
}

#[test]
fn near_ties_take_mlx_lms_token_past_a_full_sliding_window() {
    // The fixture's sliding layers hold 16 positions; the run reaches 60.
    check("gemma3", None);
}

#[test]
fn near_ties_take_mlx_lms_token_with_a_quantized_cache() {
    check("qwen3", Some(KvQuantization { bits: 8, group_size: 32, start: 0 }));
}
