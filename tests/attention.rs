//! `Model::inspect_attention` against mlx-lm: the post-RoPE keys and queries of every layer
//! after a prompt's prefill, as scripts/attention_refs.py recorded them from mlx-lm 0.32.2
//! on the gemma3 fixture (sliding-window and global layers; a prompt longer than the
//! window, in one chunk and in chunks of 8) and the qwen3 fixture, all in float32 on the
//! CPU.
mod common;

use mlxrun::engine::GenerateParams;
use mlxrun::mlx::{io, Array, Dtype};
use mlxrun::{LoadOptions, Model};
use serde_json::Value;

/// Float32 with the same ops in the same order as the reference: agreement at rounding
/// level. Measured here: exact (0) for every layer of both fixtures.
const ATOL: f32 = 1e-5;

fn load(fixture: &str) -> Model {
    let dir = common::deps_file(&format!("fixtures/{fixture}"));
    Model::load(dir, &LoadOptions::with_dtype(Some(Dtype::F32))).unwrap()
}

/// Largest |got - want| over one head's flat values.
fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// Checks every case recorded for `fixture`; returns the layers compared, by whether they
/// are sliding.
fn check_fixture(fixture: &str) -> (usize, usize) {
    let refs = io::load_safetensors(common::deps_file(&format!("refs/attention/{fixture}.safetensors"))).unwrap();
    let cases: Value = serde_json::from_str(&refs.metadata["cases"]).unwrap();
    let mut model = load(fixture);
    let info = model.info().clone();
    let (mut sliding_checked, mut global_checked) = (0, 0);
    for case in cases.as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let t = |s: &str| -> Array { refs.tensors[&format!("{id}/{s}")].try_clone().unwrap() };
        let params = GenerateParams {
            prefill_step_size: case["prefill_step_size"].as_u64().unwrap() as usize,
            ..GenerateParams::default()
        };
        let snap = model.inspect_attention(case["prompt"].as_str().unwrap(), &params).unwrap();
        let ids: Vec<u32> = t("prompt_ids").to_vec::<i32>().unwrap().into_iter().map(|v| v as u32).collect();
        assert_eq!(snap.prompt_tokens, ids, "{fixture} {id}: prompt ids");
        assert_eq!(
            (snap.num_layers, snap.num_heads, snap.num_query_heads, snap.seq_len, snap.head_dim),
            (info.num_layers as usize, info.num_kv_heads as usize, info.num_heads as usize, ids.len(), info.head_dim as usize),
            "{fixture} {id}: dimensions"
        );
        assert_eq!(snap.architecture, info.model_type);
        let window = case["sliding_window"].as_u64();
        if let Some(w) = window {
            assert!(ids.len() as u64 > w, "{fixture} {id}: the prompt must be longer than the window {w}");
        }
        let sliding: Vec<u64> = case["sliding_layers"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let mut worst = 0.0f32;
        for layer in 0..snap.num_layers {
            let keys = t(&format!("layer{layer}/keys"));
            let queries = t(&format!("layer{layer}/queries"));
            assert_eq!(keys.shape(), [snap.num_heads as i32, snap.seq_len as i32, snap.head_dim as i32]);
            assert_eq!(queries.shape(), [snap.num_query_heads as i32, snap.seq_len as i32, snap.head_dim as i32]);
            let (k, q) = (keys.to_vec::<f32>().unwrap(), queries.to_vec::<f32>().unwrap());
            let per = snap.seq_len * snap.head_dim;
            for h in 0..snap.num_heads {
                let d = max_diff(snap.key(layer, h).unwrap(), &k[h * per..(h + 1) * per]);
                assert!(d <= ATOL, "{fixture} {id} layer {layer} kv head {h}: keys differ by {d}");
                worst = worst.max(d);
            }
            for h in 0..snap.num_query_heads {
                let d = max_diff(snap.query(layer, h).unwrap(), &q[h * per..(h + 1) * per]);
                assert!(d <= ATOL, "{fixture} {id} layer {layer} head {h}: queries differ by {d}");
                worst = worst.max(d);
            }
            if sliding.contains(&(layer as u64)) {
                sliding_checked += 1;
            } else {
                global_checked += 1;
            }
        }
        // The keys are real data, not zeros that would match anything within tolerance.
        assert!(snap.key(snap.num_layers - 1, 0).unwrap().iter().any(|v| v.abs() > 1e-2));
        eprintln!("{fixture} {id}: {} layers, {} positions, max |diff| {worst:e}", snap.num_layers, snap.seq_len);
    }
    (sliding_checked, global_checked)
}

#[test]
fn gemma3_sliding_and_global_layers_match_mlx_lm() {
    let (sliding, global) = check_fixture("gemma3");
    assert!(sliding > 0 && global > 0, "{sliding} sliding and {global} global layers compared");
}

#[test]
fn qwen3_matches_mlx_lm() {
    let (_, global) = check_fixture("qwen3");
    assert!(global > 0);
}

#[test]
fn inspection_leaves_generation_unchanged() {
    let mut model = load("qwen3");
    let params = GenerateParams { max_tokens: 8, ignore_eos: true, ..GenerateParams::default() };
    let before = model.generate("The quick brown fox", &params, |_| true).unwrap();
    let metrics = model.last_metrics().cloned();
    let snap = model.inspect_attention("The quick brown fox", &params).unwrap();
    assert_eq!(snap.seq_len, before.prompt_tokens.len());
    assert_eq!(model.last_metrics().cloned(), metrics, "inspection must not replace the last call's metrics");
    let after = model.generate("The quick brown fox", &params, |_| true).unwrap();
    assert_eq!(before.tokens, after.tokens);
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let mut model = load("gemma3");
    let err = |r: mlxrun::Result<mlxrun::engine::AttentionSnapshot>| r.unwrap_err().to_string();
    assert!(err(model.inspect_attention("", &GenerateParams::default())).contains("prompt is empty"));
    let short = GenerateParams { context_length: Some(4), ..GenerateParams::default() };
    assert!(err(model.inspect_attention("a prompt of more than four tokens, surely", &short)).contains("context length is 4"));
    let zero = GenerateParams { prefill_step_size: 0, ..GenerateParams::default() };
    assert!(err(model.inspect_attention("Hello", &zero)).contains("prefill_step_size"));
    assert!(err(model.inspect_attention_ids(&[u32::MAX], &GenerateParams::default())).contains("outside the vocabulary"));
    // A cancel made before the call is forgotten when it starts (as for generation).
    model.canceller().cancel();
    assert!(model.inspect_attention("Hello there", &GenerateParams::default()).is_ok());
}
