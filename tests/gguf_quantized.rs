//! SmolLM2-135M-Instruct's Q4_1 GGUF (Q8_0 embedding) kept quantized: greedy tokens equal
//! mlx-lm's on the same weights as MLX's own GGUF reader packs them, `convert
//! --keep-quantized` writes exactly that packing, and the weight memory of each form.
//! References: scripts/gguf_quant_refs.py.
mod common;

use std::path::PathBuf;

use common::reference::check_against_mlx_lm_with;
use mlxrun::engine::convert::convert_gguf_with;
use mlxrun::mlx::quant::{QuantMode, QuantParams};
use mlxrun::mlx::{io, memory, Dtype};
use mlxrun::models::{load, LoadOptions};
use serde_json::Value;

/// MLX's memory counters are process-wide: the tests of this file run one at a time so the
/// memory measurement sees only its own arrays.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn gguf() -> PathBuf {
    common::deps_file("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn keep(dtype: Dtype) -> LoadOptions {
    LoadOptions { dtype: Some(dtype), keep_quantized: Some(true), ..LoadOptions::default() }
}

/// Dequantized at load (on the CPU, f32 GGUF loads keep Q4_0/Q4_1/Q8_0 packed by default).
fn unpack(dtype: Dtype) -> LoadOptions {
    LoadOptions { dtype: Some(dtype), keep_quantized: Some(false), ..LoadOptions::default() }
}

#[test]
fn gguf_kept_quantized_matches_mlx_lm() {
    let _serial = serial();
    let refs = common::deps_file("refs/gguf-quant/smollm2-q.safetensors");
    check_against_mlx_lm_with("smollm2 Q4_1 kept quantized", &refs, &gguf(), &keep, &|_| true, 2);
    let m = load(&gguf(), &keep(Dtype::F32)).unwrap();
    let q = m.info().quantization.clone().expect("quantized");
    assert_eq!(q.params, QuantParams { group_size: 32, bits: 4, mode: QuantMode::Affine });
    // 30 layers × 7 matrices at 4 bits, and the tied 8-bit embedding.
    assert_eq!((q.quantized_layers, q.dense_layers, q.kept), (30 * 7 + 1, 0, true));
}

#[test]
fn convert_keep_quantized_writes_mlx_packing() {
    let _serial = serial();
    let out = std::env::temp_dir().join(format!("mlxrun-gguf-q-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    convert_gguf_with(&gguf(), &out, Dtype::F32, true, |_, _| {}).unwrap();
    let want_dir = common::deps_file("refs/gguf-quant/smollm2-q");
    let ours = io::load_safetensors(out.join("model.safetensors")).unwrap().tensors;
    let theirs = io::load_safetensors(want_dir.join("model.safetensors")).unwrap().tensors;
    let mut a: Vec<&String> = ours.keys().collect();
    let mut b: Vec<&String> = theirs.keys().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "tensor names");
    for (name, t) in &theirs {
        let o = &ours[name];
        // Scales and biases: float16 in MLX's reader, float32 (exactly) in a float32 conversion.
        let t = if t.dtype() == Dtype::F16 { t.astype(Dtype::F32).unwrap() } else { t.try_clone().unwrap() };
        common::assert_close(name, o, &t, 0.0, 0.0);
    }
    let cfg = |d: &std::path::Path| -> Value { serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap() };
    assert_eq!(cfg(&out)["quantization"], cfg(&want_dir)["quantization"]);
    assert_eq!(cfg(&out)["quantization_config"], cfg(&want_dir)["quantization"]);

    // The engine reads its own output as it reads the GGUF file.
    let m = load(&out, &keep(Dtype::F32)).unwrap();
    assert_eq!(m.info().quantization.as_ref().unwrap().params.bits, 4);
    std::fs::remove_dir_all(&out).unwrap();
}

/// MLX's active memory after loading SmolLM2 as float32 and bfloat16 (dequantized at load)
/// and kept quantized (Q4_1 → 4-bit, Q8_0 embedding → 8-bit, group 32, f32 scales/biases).
#[test]
fn weight_memory_of_smollm2_by_format() {
    let _serial = serial();
    let mut sizes = Vec::new();
    for (label, opts) in [
        ("float32 (dequantized)", unpack(Dtype::F32)),
        ("bfloat16 (dequantized)", unpack(Dtype::Bf16)),
        ("kept quantized, bf16 scales", keep(Dtype::Bf16)),
        ("kept quantized, f32 scales", keep(Dtype::F32)),
    ] {
        memory::clear_cache();
        let before = memory::active_memory();
        let m = load(&gguf(), &opts).unwrap();
        memory::clear_cache();
        let bytes = memory::active_memory() - before;
        println!("SmolLM2-135M weights, {label}: {:.1} MiB", bytes as f64 / (1 << 20) as f64);
        sizes.push(bytes);
        drop(m);
    }
    assert!(sizes[1] * 2 <= sizes[0] + 4096, "bf16 is half of f32: {sizes:?}");
    // 5 bits per weight (4 + a bf16 scale and bias per 32) and 9 for the 8-bit embedding,
    // which holds a fifth of the parameters: about 0.37 of bf16.
    let ratio = sizes[2] as f64 / sizes[1] as f64;
    assert!((0.33..0.40).contains(&ratio), "kept quantized / bf16 = {ratio}: {sizes:?}");
}
