//! The quantized KV cache against mlx-lm's `generate_step(..., kv_bits=, kv_group_size=,
//! quantized_kv_start=)` (scripts/kv_quant_refs.py): identical greedy tokens and top-1
//! log-probabilities within 1e-4, with the conversion after the prompt, inside a chunked
//! prefill and before the first step; and the settings and models it refuses.
mod common;

use mlxrun::engine::generate::generate_tokens;
use mlxrun::engine::{GenerateParams, Model, SamplerParams};
use mlxrun::mlx::Dtype;
use mlxrun::models::{load, LoadOptions};
use mlxrun::nn::quantized_kv_cache::quantize_caches;
use mlxrun::nn::{KvCache, KvQuantization};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let p = common::deps_file("refs/kv-quant/qwen3.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn setting(c: &Value) -> KvQuantization {
    let i = |k: &str| c[k].as_i64().unwrap() as i32;
    KvQuantization { bits: i("kv_bits"), group_size: i("kv_group_size"), start: i("quantized_kv_start") }
}

#[test]
fn quantized_kv_cache_matches_mlx_lm() {
    let model = load(&common::deps_file("fixtures/qwen3"), &LoadOptions::with_dtype(Some(Dtype::F32))).unwrap();
    let cases = cases();
    assert!(cases.len() >= 4);
    for c in &cases {
        let q = setting(c);
        let what = format!("{q:?} {} step {}", c["prompt_name"], c["prefill_step_size"]);
        let mut caches = model.new_caches();
        quantize_caches(&mut caches, q).unwrap();
        let want = ids(&c["generated_ids"]);
        let tops: Vec<f64> = c["step_logprobs_top"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let params = SamplerParams { logprobs: true, ..SamplerParams::default() };
        let (mut got, mut lps) = (Vec::new(), Vec::new());
        generate_tokens(
            model.as_ref(),
            &mut caches,
            &ids(&c["prompt_ids"]),
            want.len(),
            &params,
            c["prefill_step_size"].as_u64().unwrap() as usize,
            None,
            &mut |t| {
                got.push(t.token);
                lps.push(t.logprob.unwrap());
                Ok(true)
            },
        )
        .unwrap();
        assert_eq!(got, want, "{what}: tokens");
        for (i, (a, b)) in lps.iter().zip(&tops).enumerate() {
            assert!((*a as f64 - b).abs() < 1e-4, "{what}: step {i} log-prob {a} vs mlx-lm {b}");
        }
        assert!(caches.iter().all(|c| matches!(c, KvCache::Quantized(_))), "{what}");

        // The same run with a full-precision cache gives other numbers: the quantized
        // path was taken.
        let mut dense = model.new_caches();
        let mut dense_lps = Vec::new();
        generate_tokens(model.as_ref(), &mut dense, &ids(&c["prompt_ids"]), want.len(), &params, 2048, None, &mut |t| {
            dense_lps.push(t.logprob.unwrap());
            Ok(true)
        })
        .unwrap();
        let moved = lps.iter().zip(&dense_lps).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(moved > 1e-4, "{what}: the quantized cache changed nothing ({moved})");
    }
}

#[test]
fn generate_params_select_the_quantized_cache() {
    let mut m = Model::load(common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let c = cases().into_iter().find(|c| c["prompt_name"] == "english" && c["quantized_kv_start"] == 0).unwrap();
    let english = "The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the Moon; its crew returned on July 24.";
    let params = GenerateParams {
        max_tokens: 32,
        ignore_eos: true,
        kv_quantization: Some(setting(&c)),
        ..GenerateParams::default()
    };
    let g = m.generate(english, &params, |_| true).unwrap();
    assert_eq!(g.prompt_tokens, ids(&c["prompt_ids"]));
    assert_eq!(g.tokens, ids(&c["generated_ids"]));
}

#[test]
fn refused_settings_and_models() {
    let bad = KvQuantization { bits: 7, group_size: 32, start: 0 };
    let e = GenerateParams { kv_quantization: Some(bad), ..GenerateParams::default() }.validate().unwrap_err().to_string();
    assert!(e.contains("7 bits") && e.contains("KV cache quantization"), "{e}");
    // Gemma 3's sliding-window layers keep rotating caches, which mlx-lm cannot quantize.
    let gemma = load(&common::deps_file("fixtures/gemma3"), &LoadOptions::default()).unwrap();
    let mut caches = gemma.new_caches();
    let e = quantize_caches(&mut caches, KvQuantization::new(8)).unwrap_err().to_string();
    assert!(e.contains("layer 0") && e.contains("sliding-window"), "{e}");
    // Chats take the setting too (here: refused for Gemma 3 rather than ignored).
    let mut chat_model = Model::load(common::deps_file("fixtures/gemma3"), &LoadOptions::default()).unwrap();
    let params = GenerateParams { max_tokens: 2, kv_quantization: Some(KvQuantization::new(8)), ..GenerateParams::default() };
    let e = chat_model
        .chat(&[mlxrun::Message::user("Hi")], &mlxrun::ChatOptions::default(), &params, |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sliding-window"), "{e}");
    // A group size larger than the head dimension is MLX's error, not a crash.
    let m = load(&common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let mut caches = m.new_caches();
    quantize_caches(&mut caches, KvQuantization { bits: 8, group_size: 64, start: 0 }).unwrap();
    let r = generate_tokens(m.as_ref(), &mut caches, &[1, 2, 3], 2, &SamplerParams::default(), 2048, None, &mut |_| Ok(true));
    assert!(r.is_err(), "group size 64 over head_dim 32 must fail");
}
