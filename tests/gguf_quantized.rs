//! SmolLM2-135M-Instruct's Q4_1 GGUF (Q8_0 embedding) kept quantized: greedy tokens equal
//! mlx-lm's on the same weights as MLX's own GGUF reader packs them, `convert
//! --keep-quantized` writes exactly that packing, and the weight memory of each form.
//! References: scripts/gguf_quant_refs.py. And small files mixing Q4_K, Q5_0, Q5_1, Q5_K,
//! Q8_0 and f32 matrices written here: the matrices kept packed unpack to exactly the
//! dequantized load's values.
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::gguf_writer::{self, Kv};
use common::reference::check_against_mlx_lm_with;
use mlxrun::engine::convert::convert_gguf_with;
use mlxrun::engine::generate::forward_logits;
use mlxrun::mlx::quant::{QuantMode, QuantParams, Quantized};
use mlxrun::mlx::{io, memory, Array, Dtype};
use mlxrun::models::gguf::{self, GgufFile};
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

/// The matrices of a one-layer llama (hidden 256, one k-quant super-block per row): GGUF
/// name, HF prefix, rows, columns. q and k are the ones whose rows llama.cpp permutes.
const MATRICES: [(&str, &str, u64, u64); 8] = [
    ("token_embd", "model.embed_tokens", 4, 256),
    ("blk.0.attn_q", "model.layers.0.self_attn.q_proj", 256, 256),
    ("blk.0.attn_k", "model.layers.0.self_attn.k_proj", 128, 256),
    ("blk.0.attn_v", "model.layers.0.self_attn.v_proj", 128, 256),
    ("blk.0.attn_output", "model.layers.0.self_attn.o_proj", 256, 256),
    ("blk.0.ffn_gate", "model.layers.0.mlp.gate_proj", 512, 256),
    ("blk.0.ffn_up", "model.layers.0.mlp.up_proj", 512, 256),
    ("blk.0.ffn_down", "model.layers.0.mlp.down_proj", 256, 512),
];

const F32: u32 = 0;
const Q5_0: u32 = 6;
const Q5_1: u32 = 7;
const Q8_0: u32 = 8;
const Q4_K: u32 = 12;
const Q5_K: u32 = 13;

/// That llama with its matrices of the GGML types `types` (in `MATRICES`' order), mixed as
/// llama.cpp's `_K_M` files mix them, written as `file`.
fn mixed_llama(file: &str, types: [u32; 8]) -> PathBuf {
    let (mut kvs, _) = gguf_writer::tiny_llama("llama");
    for (k, v) in kvs.iter_mut() {
        match *k {
            "llama.embedding_length" => *v = Kv::U32(256),
            "llama.feed_forward_length" => *v = Kv::U32(512),
            _ => {}
        }
    }
    let mut tensors: Vec<_> = ["output_norm", "blk.0.attn_norm", "blk.0.ffn_norm"]
        .map(|n| gguf_writer::f32_tensor(&format!("{n}.weight"), 1, 256, 1.0))
        .into();
    for (seed, ((name, _, rows, cols), ty)) in MATRICES.iter().zip(types).enumerate() {
        tensors.push(gguf_writer::random_tensor(&format!("{name}.weight"), ty, *rows, *cols, seed as u64 + 1));
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(file);
    std::fs::write(&p, gguf_writer::write(&kvs, &tensors)).unwrap();
    p
}

fn affine32(bits: i32) -> QuantParams {
    QuantParams { group_size: 32, bits, mode: QuantMode::Affine }
}

/// The llama `mixed_llama(file, types)` kept packed: every packed matrix unpacks, in MLX's
/// `dequantize`, to the dequantized load's values bit for bit, with its scales in float32
/// for the K-quants and float16 for the others; the `quantization` config has
/// `default_bits` and the per-layer entries `layers` (HF prefix, `None` for dense); the model
/// computes the same logits either way (to summation order).
fn check_kept_packed_unpacks_exactly(file: &str, types: [u32; 8], default_bits: i32, layers: &[(&str, Option<i32>)]) {
    let path = mixed_llama(file, types);
    let f = GgufFile::open(&path).unwrap();
    let arch = gguf::arch::read(&f).unwrap();
    let (packed, cfg) = gguf::read_tensors(&f, &arch, true, &mut |_, _| {}).unwrap();
    let (dense, none) = gguf::read_tensors(&f, &arch, false, &mut |_, _| {}).unwrap();
    assert!(none.is_none());
    let cfg = cfg.unwrap();
    assert_eq!(cfg.default, affine32(default_bits));
    let got_layers: Vec<(&str, Option<QuantParams>)> = cfg.layers.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let want_layers: Vec<(&str, Option<QuantParams>)> = layers.iter().map(|(k, b)| (*k, b.map(affine32))).collect();
    assert_eq!(got_layers, want_layers);

    let packed: BTreeMap<String, Array> = packed.into_iter().collect();
    let dense: BTreeMap<String, Array> = dense.into_iter().collect();
    let mut checked = Vec::new();
    for ((_, prefix, _, _), ty) in MATRICES.iter().zip(types).filter(|(_, ty)| *ty != F32) {
        let p = cfg.for_layer(prefix).unwrap();
        let part = |k: &str| packed[&format!("{prefix}.{k}")].try_clone().unwrap();
        let want_dtype = if matches!(ty, Q4_K | Q5_K) { Dtype::F32 } else { Dtype::F16 };
        assert_eq!(part("scales").dtype(), want_dtype, "{prefix}: scales");
        // In float32, as a model computing in float32 holds them (MLX unpacks in the scales'
        // dtype).
        let f32_part = |k: &str| part(k).astype(Dtype::F32).unwrap();
        let q = Quantized { weight: part("weight"), scales: f32_part("scales"), biases: Some(f32_part("biases")), group_size: 32, bits: p.bits, mode: p.mode };
        let got = q.dequantize(Some(Dtype::F32)).unwrap();
        let want = &dense[&format!("{prefix}.weight")];
        assert_eq!(got.shape(), want.shape(), "{prefix}");
        let (got, want) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
        let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{prefix}: {differ} of {} values differ", want.len());
        checked.push(prefix.to_string());
    }
    let packed_prefixes: Vec<&str> = packed.keys().filter_map(|k| k.strip_suffix(".scales")).collect();
    assert_eq!(packed_prefixes.len(), checked.len(), "packed matrices: {packed_prefixes:?}");

    let opts = |keep| LoadOptions { dtype: Some(Dtype::F32), keep_quantized: Some(keep), ..LoadOptions::default() };
    let (kept, unpacked) = (load(&path, &opts(true)).unwrap(), load(&path, &opts(false)).unwrap());
    let q = kept.info().quantization.clone().unwrap();
    let n_dense = layers.iter().filter(|(_, b)| b.is_none()).count();
    assert_eq!((q.params, q.quantized_layers, q.dense_layers, q.kept), (affine32(default_bits), checked.len() as i32, n_dense as i32, true));
    let tokens = [1, 2, 3, 1, 0, 2];
    let (a, b) = (forward_logits(kept.as_ref(), &tokens).unwrap(), forward_logits(unpacked.as_ref(), &tokens).unwrap());
    common::assert_close("logits, packed vs dequantized", &a, &b, 1e-4, 1e-4);
}

/// Q4_K (the embedding, q, k and the MLP) kept packed as 4-bit with float32 scales d·sc and
/// biases −dmin·m, Q8_0 (v) as 8-bit with float16 scales, o left dense (f32).
#[test]
fn q4_k_kept_packed_unpacks_exactly() {
    let _serial = serial();
    let types = [Q4_K, Q4_K, Q4_K, Q8_0, F32, Q4_K, Q4_K, Q4_K];
    let layers = [("model.layers.0.self_attn.o_proj", None), ("model.layers.0.self_attn.v_proj", Some(8))];
    check_kept_packed_unpacks_exactly("q4_k_mixed.gguf", types, 4, &layers);
}

/// The 5-bit types kept packed as 8-bit: Q5_0 (q, gate; scale d, bias −16d) and Q5_1 (k,
/// up; d and m) with float16 scales, Q5_K (the embedding, v, down; d·sc and −dmin·m) with
/// float32 ones; o is Q4_K, 4-bit.
#[test]
fn q5_kept_packed_unpacks_exactly() {
    let _serial = serial();
    let types = [Q5_K, Q5_0, Q5_1, Q5_K, Q4_K, Q5_0, Q5_1, Q5_K];
    check_kept_packed_unpacks_exactly("q5_mixed.gguf", types, 8, &[("model.layers.0.self_attn.o_proj", Some(4))]);
}
