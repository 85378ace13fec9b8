//! Quantized models: checkpoints made by mlx-lm's own converter (4-bit group 64, 8-bit
//! group 32 and the mixed 3/6-bit recipe with per-layer entries) for every family, kept
//! packed or unpacked at load, quantize-at-load against the converter, ModelInfo, the
//! weight memory each form takes, and the errors corrupt quantized checkpoints give.
//! References: scripts/quant_refs.py.
mod common;

use std::path::PathBuf;

use common::bad_model::{assert_has, copy_model, edit_config, edit_tensor, load_err};
use common::reference::check_against_mlx_lm_with;
use mlxrun::mlx::quant::{QuantMode, QuantParams};
use mlxrun::mlx::{memory, Array, Dtype};
use mlxrun::engine::generate::forward_logits;
use mlxrun::models::{load, LanguageModel, LoadOptions};
use serde_json::Value;

/// MLX's memory counters are process-wide: the tests of this file run one at a time so the
/// memory measurement sees only its own arrays.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The converted folders and how they were made: name → (fixture, recipe).
fn recipes() -> Vec<(String, String, String)> {
    let p = common::deps_file("refs/quant/recipes.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let mut out: Vec<_> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, r)| (k.clone(), r["fixture"].as_str().unwrap().to_string(), r["recipe"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    assert!(out.len() >= 12, "four families × three recipes expected, found {}", out.len());
    out
}

fn refs(name: &str) -> PathBuf {
    common::deps_file(&format!("refs/quant/{name}.safetensors"))
}

fn folder(name: &str) -> PathBuf {
    common::deps_file(&format!("fixtures-quant/{name}"))
}

fn keep(dtype: Dtype) -> LoadOptions {
    LoadOptions { dtype: Some(dtype), keep_quantized: Some(true), ..LoadOptions::default() }
}

fn float32(case: &Value) -> bool {
    case["dtype_mode"] == "float32"
}

/// Packed weights and quantized matmuls in float32 (scales and biases cast, as mlx-lm's
/// `set_dtype` casts them): the same kernels mlx-lm runs, so the same tokens.
#[test]
fn converter_checkpoints_kept_quantized_match_mlx_lm() {
    for (name, _, _) in recipes() {
        check_against_mlx_lm_with(&name, &refs(&name), &folder(&name), &keep, &float32, 5);
    }
}

/// In the checkpoint's own half-precision dtype, as mlx-lm runs a quantized model by
/// default. MLX's CPU quantized matmul in float16/bfloat16 is slow (seconds per token with
/// these 150k–260k vocabularies), so one short prompt per half-precision family.
#[test]
fn converter_checkpoints_in_their_own_dtype_match_mlx_lm() {
    let native_hello = |c: &Value| c["dtype_mode"] == "native" && c["prompt_name"] == "hello";
    for name in ["qwen2-q4g64", "gemma3-q4g64"] {
        check_against_mlx_lm_with(name, &refs(name), &folder(name), &keep, &native_hello, 1);
    }
}

/// The CPU default: packed weights unpacked into float32 at load, dense matmuls. Same tokens
/// as mlx-lm's float32 run of the quantized model.
#[test]
fn converter_checkpoints_unpacked_at_load_match_mlx_lm() {
    let _serial = serial();
    let cpu_default = |dtype: Dtype| LoadOptions::with_dtype(Some(dtype));
    for (name, _, _) in recipes() {
        check_against_mlx_lm_with(&name, &refs(&name), &folder(&name), &cpu_default, &float32, 5);
    }
}

/// Quantizing a bf16/f16/f32 fixture at load picks the layers mlx-lm's converter picks and
/// quantizes from the same dtype (config.json's torch_dtype), so it gives the converter's
/// model: the same tokens.
#[test]
fn quantize_at_load_equals_the_converter() {
    let _serial = serial();
    for (name, fixture, recipe) in recipes() {
        let (bits, group) = match recipe.as_str() {
            "q4g64" => (4, 64),
            "q8g32" => (8, 32),
            _ => continue, // the mixed recipe is the converter's own predicate
        };
        let params = QuantParams { group_size: group, bits, mode: QuantMode::Affine };
        let opts = |dtype: Dtype| LoadOptions { quantize: Some(params), ..keep(dtype) };
        let dense = common::deps_file(&format!("fixtures/{fixture}"));
        check_against_mlx_lm_with(&format!("{name} (quantized at load)"), &refs(&name), &dense, &opts, &float32, 5);
    }
}

#[test]
fn model_info_reports_quantization() {
    let _serial = serial();
    let m = load(&folder("qwen2-q4g64"), &keep(Dtype::F32)).unwrap();
    let q = m.info().quantization.clone().expect("quantized");
    assert_eq!(q.params, QuantParams { group_size: 64, bits: 4, mode: QuantMode::Affine });
    // Per layer q, k, v, o, gate, up (down_proj's 160 inputs are not a multiple of 64),
    // plus the embedding and the untied head.
    assert_eq!((q.quantized_layers, q.dense_layers, q.kept), (2 * 6 + 2, 2, true));
    assert_eq!(m.info().dtype, Dtype::F32);

    // The mixed recipe: per-layer entries for every layer; the info gives the top-level
    // setting the converter wrote.
    let dir = folder("gemma3-mixed36");
    let m = load(&dir, &LoadOptions::default()).unwrap();
    let q = m.info().quantization.clone().expect("quantized");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let top = &cfg["quantization"];
    assert_eq!((q.params.bits as i64, q.params.group_size as i64), (top["bits"].as_i64().unwrap(), top["group_size"].as_i64().unwrap()));
    assert!(!q.kept, "unpacked at load on the CPU by default");
    assert!(m.info().tied_embeddings);

    let m = load(&common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    assert_eq!(m.info().quantization, None);
}

/// MLX's active memory after loading the llama3 fixture (its weights only: the loader's
/// one-token forward pass leaves no arrays behind) as float32, bfloat16 and 4-bit.
#[test]
fn weight_memory_by_format() {
    let _serial = serial();
    let dir = common::deps_file("fixtures/llama3");
    let q4 = QuantParams { group_size: 64, bits: 4, mode: QuantMode::Affine };
    let mut sizes = Vec::new();
    for (label, opts) in [
        ("float32", LoadOptions::with_dtype(Some(Dtype::F32))),
        ("bfloat16", LoadOptions::with_dtype(Some(Dtype::Bf16))),
        ("4-bit (group 64, bf16 scales)", LoadOptions { quantize: Some(q4), ..keep(Dtype::Bf16) }),
    ] {
        memory::clear_cache();
        let before = memory::active_memory();
        let m = load(&dir, &opts).unwrap();
        memory::clear_cache();
        let bytes = memory::active_memory() - before;
        println!("llama3 fixture weights, {label}: {:.2} MiB", bytes as f64 / (1 << 20) as f64);
        sizes.push(bytes);
        drop(m);
    }
    // 4.5 bits per weight (4 + 32/64 for the bf16 scale and bias of each group of 64).
    assert!(sizes[1] * 2 <= sizes[0] + 4096 && sizes[1] > sizes[0] * 45 / 100, "bf16 is half of f32: {sizes:?}");
    let ratio = sizes[2] as f64 / sizes[1] as f64;
    assert!((0.27..0.30).contains(&ratio), "4-bit/bf16 = {ratio} (4.5/16 = 0.281 expected)");
}

#[test]
fn corrupt_quantized_checkpoints_name_the_tensor_or_field() {
    let _serial = serial();
    let src = "fixtures-quant/llama3-q4g64";
    let layer = "model.layers.0.self_attn.q_proj";
    // Each copy is removed when it goes out of scope.
    let copy = |tag: &str| copy_model(src, tag);

    // Scales missing while the weight is packed and the config says quantized.
    let d = copy("q-noscales");
    edit_tensor(&d, &format!("{layer}.scales"), None);
    assert_has(&load_err(&d), &[&format!("{layer}.scales is missing"), "uint32", "affine 4-bit, group size 64"]);

    // A packed weight of the wrong shape.
    let d = copy("q-shape");
    edit_tensor(&d, &format!("{layer}.weight"), Some(Array::zeros(&[64, 4], Dtype::U32).unwrap()));
    assert_has(&load_err(&d), &[&format!("{layer}.weight has packed shape [64, 4], expected [64, 8]")]);

    // Bits in the config that do not match the packing.
    let d = copy("q-bits");
    edit_config(&d, |c| c["quantization"]["bits"] = 8.into());
    assert_has(&load_err(&d), &["model.embed_tokens.weight has packed shape [128256, 8], expected [128256, 16]", "holds 4 bits per value", "affine 8-bit"]);

    // Scales of the wrong shape (a group size the config does not say).
    let d = copy("q-group");
    edit_config(&d, |c| c["quantization"]["group_size"] = 32.into());
    assert_has(&load_err(&d), &["model.embed_tokens.scales has shape [128256, 1], expected [128256, 2]"]);

    // An unknown mode, and a layer the config marks dense although it is packed.
    let d = copy("q-mode");
    edit_config(&d, |c| c["quantization"]["mode"] = "q9".into());
    assert_has(&load_err(&d), &["\"quantization.mode\"", "\"q9\"", "affine, mxfp4, mxfp8, nvfp4"]);
    let d = copy("q-false");
    edit_config(&d, |c| c["quantization"][layer] = false.into());
    assert_has(&load_err(&d), &[&format!("{layer}.scales"), "is false"]);

    // Scales without any quantization entry; biases missing in the affine mode.
    let d = copy("q-noentry");
    edit_config(&d, |c| {
        c.as_object_mut().unwrap().remove("quantization");
        c.as_object_mut().unwrap().remove("quantization_config");
    });
    assert_has(&load_err(&d), &["model.embed_tokens.scales", "no \"quantization\" entry"]);
    let d = copy("q-nobiases");
    edit_tensor(&d, &format!("{layer}.biases"), None);
    assert_has(&load_err(&d), &[&format!("{layer}.biases is missing")]);

    // Bits MLX cannot pack, in the config and in the load options.
    let d = copy("q-bits7");
    edit_config(&d, |c| c["quantization"]["bits"] = 7.into());
    assert_has(&load_err(&d), &["\"quantization.bits\"", "affine 7-bit"]);
    let e = QuantParams::parse("affine", Some(48), Some(4)).unwrap_err().to_string();
    assert_has(&e, &["group size 48"]);
    let e = QuantParams::parse("int4", None, None).unwrap_err().to_string();
    assert_has(&e, &["\"int4\""]);
}

/// The floating-point modes, which MLX's CPU backend runs: quantized at load, the packed
/// model (quantized matmuls) and the same weights unpacked at load (dense matmuls) agree.
#[test]
fn floating_point_modes_quantize_at_load() {
    let _serial = serial();
    let dir = common::deps_file("fixtures/qwen3");
    let dense = load(&dir, &LoadOptions::with_dtype(Some(Dtype::F32))).unwrap();
    let logits = |m: &dyn LanguageModel| forward_logits(m, &[1, 2, 3, 4]).unwrap().to_vec::<f32>().unwrap();
    let want = logits(dense.as_ref());
    for mode in ["mxfp4", "mxfp8", "nvfp4"] {
        let p = QuantParams::parse(mode, None, None).unwrap();
        let m = load(&dir, &LoadOptions { quantize: Some(p), ..keep(Dtype::F32) }).unwrap();
        assert_eq!(m.info().quantization.as_ref().unwrap().params, p);
        let unpacked = load(&dir, &LoadOptions { quantize: Some(p), ..LoadOptions::with_dtype(Some(Dtype::F32)) }).unwrap();
        assert!(!unpacked.info().quantization.as_ref().unwrap().kept);
        let (got, got_unpacked) = (logits(m.as_ref()), logits(unpacked.as_ref()));
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        let packed_vs_unpacked = max_diff(&got, &got_unpacked);
        assert!(packed_vs_unpacked < 1e-3, "{mode}: packed and unpacked differ by {packed_vs_unpacked}");
        assert!(max_diff(&got, &want) > 1e-2, "{mode}: quantization should move the logits");
    }
}
