//! SmolLM2-135M-Instruct's Q4_1 GGUF (Q8_0 embedding) kept quantized: greedy tokens equal
//! mlx-lm's on the same weights as MLX's own GGUF reader packs them, `convert
//! --keep-quantized` writes exactly that packing, and the weight memory of each form.
//! References: scripts/gguf_quant_refs.py. And a small Q4_K-mixed file written here: its
//! Q4_K matrices kept packed unpack to exactly the dequantized load's values.
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

/// A one-layer llama (hidden 256, one k-quant super-block per row) mixing types as llama.cpp's
/// `_K_M` files do: Q4_K matrices (the embedding, q and k — whose rows llama.cpp permutes —
/// and the MLP), a Q8_0 one (v) and an f32 one (o).
fn q4_k_mixed_llama() -> PathBuf {
    let (mut kvs, _) = gguf_writer::tiny_llama("llama");
    for (k, v) in kvs.iter_mut() {
        match *k {
            "llama.embedding_length" => *v = Kv::U32(256),
            "llama.feed_forward_length" => *v = Kv::U32(512),
            _ => {}
        }
    }
    let (f32_, q8_0, q4_k) = (0, 8, 12);
    let t = gguf_writer::random_tensor;
    let tensors = vec![
        t("token_embd.weight", q4_k, 4, 256, 1),
        gguf_writer::f32_tensor("output_norm.weight", 1, 256, 1.0),
        gguf_writer::f32_tensor("blk.0.attn_norm.weight", 1, 256, 1.0),
        t("blk.0.attn_q.weight", q4_k, 256, 256, 2),
        t("blk.0.attn_k.weight", q4_k, 128, 256, 3),
        t("blk.0.attn_v.weight", q8_0, 128, 256, 4),
        t("blk.0.attn_output.weight", f32_, 256, 256, 5),
        gguf_writer::f32_tensor("blk.0.ffn_norm.weight", 1, 256, 1.0),
        t("blk.0.ffn_gate.weight", q4_k, 512, 256, 6),
        t("blk.0.ffn_up.weight", q4_k, 512, 256, 7),
        t("blk.0.ffn_down.weight", q4_k, 256, 512, 8),
    ];
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("q4_k_mixed.gguf");
    std::fs::write(&p, gguf_writer::write(&kvs, &tensors)).unwrap();
    p
}

/// Q4_K kept packed (4-bit, group 32, float32 scales d·sc and biases −dmin·m) unpacks, in
/// MLX's `dequantize`, to the dequantized load's values bit for bit, Q8_0 (8-bit, float16
/// scales) too; the `quantization` config marks the Q8_0 matrix 8-bit and the f32 one dense;
/// the model computes the same logits either way (to summation order).
#[test]
fn q4_k_kept_packed_unpacks_exactly() {
    let _serial = serial();
    let path = q4_k_mixed_llama();
    let f = GgufFile::open(&path).unwrap();
    let arch = gguf::arch::read(&f).unwrap();
    let (packed, cfg) = gguf::read_tensors(&f, &arch, true, &mut |_, _| {}).unwrap();
    let (dense, none) = gguf::read_tensors(&f, &arch, false, &mut |_, _| {}).unwrap();
    assert!(none.is_none());
    let cfg = cfg.unwrap();
    let params = |bits| QuantParams { group_size: 32, bits, mode: QuantMode::Affine };
    assert_eq!(cfg.default, params(4));
    let layers: Vec<(&str, Option<QuantParams>)> = cfg.layers.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(layers, [("model.layers.0.self_attn.o_proj", None), ("model.layers.0.self_attn.v_proj", Some(params(8)))]);

    let packed: BTreeMap<String, Array> = packed.into_iter().collect();
    let dense: BTreeMap<String, Array> = dense.into_iter().collect();
    let mut checked = Vec::new();
    for prefix in packed.keys().filter_map(|k| k.strip_suffix(".scales")) {
        let p = cfg.for_layer(prefix).unwrap();
        let part = |k: &str| packed[&format!("{prefix}.{k}")].try_clone().unwrap();
        let want_dtype = if p.bits == 4 { Dtype::F32 } else { Dtype::F16 };
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
    assert_eq!(checked.len(), 7, "packed matrices: {checked:?}");

    let opts = |keep| LoadOptions { dtype: Some(Dtype::F32), keep_quantized: Some(keep), ..LoadOptions::default() };
    let (kept, unpacked) = (load(&path, &opts(true)).unwrap(), load(&path, &opts(false)).unwrap());
    let q = kept.info().quantization.clone().unwrap();
    assert_eq!((q.params, q.quantized_layers, q.dense_layers, q.kept), (params(4), 7, 1, true));
    let tokens = [1, 2, 3, 1, 0, 2];
    let (a, b) = (forward_logits(kept.as_ref(), &tokens).unwrap(), forward_logits(unpacked.as_ref(), &tokens).unwrap());
    common::assert_close("logits, packed vs dequantized", &a, &b, 1e-4, 1e-4);
}
