//! Safetensors files crafted byte by byte: every violation of the format is refused by the
//! `safetensors` crate's validation before MLX reads the file, with an `Error::Weights`
//! naming the file (and the tensor, expected and found); a model loaded before keeps
//! working. And files the project writes through the crate read back bit-exactly in MLX
//! and in the reference's Python (`safetensors` and `mlx`).
mod common;

use std::path::Path;
use std::process::Command;

use common::bad_model::{assert_has, copy_fixture, load_err, raw_safetensors, write_weights};
use half::{bf16, f16};
use mlxrun::engine::generate::forward_logits;
use mlxrun::mlx::io::{self, MAX_HEADER_LEN};
use mlxrun::mlx::quant::{self, QuantMode};
use mlxrun::mlx::{Array, Dtype};
use mlxrun::models::{load, LoadOptions};
use mlxrun::{discover, DiscoverOptions};

const EMBED: &str = "model.embed_tokens.weight";
const NORM: &str = "model.norm.weight";
const HEAD: &str = "lm_head.weight";

/// Runs `failures` between two forward passes of a good model loaded first: the failures
/// must leave it giving the same logits.
fn with_good_model(failures: impl FnOnce()) {
    let good = load(&common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let before = forward_logits(good.as_ref(), &[1, 2, 3]).unwrap().to_vec::<f32>().unwrap();
    failures();
    let after = forward_logits(good.as_ref(), &[1, 2, 3]).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(before, after, "the model loaded first still gives the same logits");
}

/// The error loading a copy of the qwen3 fixture whose model.safetensors is `bytes`; it must
/// be a weights error naming the file and each of `needles`.
fn refused_bytes(tag: &str, bytes: &[u8], needles: &[&str]) -> String {
    let d = copy_fixture("qwen3", tag);
    std::fs::write(d.join("model.safetensors"), bytes).unwrap();
    refused_dir(&d, needles)
}

fn refused(tag: &str, header: &str, data_len: usize, needles: &[&str]) -> String {
    let d = copy_fixture("qwen3", tag);
    write_weights(&d, header, data_len);
    refused_dir(&d, needles)
}

fn refused_dir(d: &Path, needles: &[&str]) -> String {
    let msg = load_err(d);
    eprintln!("{msg}");
    assert!(msg.starts_with("weights: "), "expected a weights error, got {msg:?}");
    assert_has(&msg, &[&d.join("model.safetensors").display().to_string()]);
    assert_has(&msg, needles);
    msg
}

fn f32_tensor(dtype: &str, shape: &str, start: usize, end: usize) -> String {
    format!(r#"{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{start},{end}]}}"#)
}

#[test]
fn overlapping_data_offsets_are_refused_naming_the_tensors() {
    with_good_model(|| {
        // Three tensors that all point at the same 16 bytes: MLX's own loader accepts this
        // (each range lies inside the file and has the right size) and a model would run on it.
        let t = f32_tensor("F32", "[4]", 0, 16);
        let header = format!(r#"{{"{EMBED}":{t},"{NORM}":{t},"{HEAD}":{t}}}"#);
        let msg = refused("overlap", &header, 16, &["overlaps", "[0, 16]", "invalid offset for tensor"]);
        let named = [EMBED, NORM, HEAD].iter().filter(|n| msg.contains(*n)).count();
        assert!(named >= 2, "the message names the overlapping tensor and the one it overlaps: {msg}");

        // Partly overlapping ranges too.
        let header = format!(r#"{{"{EMBED}":{},"{NORM}":{}}}"#, f32_tensor("F32", "[4]", 0, 16), f32_tensor("F32", "[4]", 8, 24));
        refused("overlap-part", &header, 24, &[NORM, "[8, 24]", "overlaps", EMBED, "[0, 16]"]);

        // Discovery reads headers only and reports the same problem for that model.
        let d = copy_fixture("qwen3", "overlap-discover");
        let t = f32_tensor("F32", "[4]", 0, 16);
        write_weights(&d, &format!(r#"{{"{EMBED}":{t},"{NORM}":{t}}}"#), 16);
        let found = discover(&d, &DiscoverOptions::default()).unwrap();
        let err = found.iter().find_map(|m| m.error.clone()).expect("discovery lists the model as broken");
        assert_has(&err, &["model.safetensors", "overlaps"]);
    });
}

#[test]
fn out_of_bounds_offsets_are_refused() {
    with_good_model(|| {
        // The last tensor ends past the data the file holds.
        let header = format!(r#"{{"{EMBED}":{},"{NORM}":{}}}"#, f32_tensor("F32", "[4]", 0, 16), f32_tensor("F32", "[4]", 16, 32));
        refused("oob", &header, 20, &[NORM, "ends at data byte 32", "only 20 data bytes", "truncated"]);
        // Offsets beyond any plausible file (and beyond what usize arithmetic survives).
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("F32", "[4]", 18446744073709551600, 18446744073709551615));
        refused("oob-huge", &header, 16, &[EMBED, "starts at data byte 18446744073709551600, not 0"]);
    });
}

#[test]
fn gaps_and_uncovered_data_are_refused() {
    with_good_model(|| {
        let header = format!(r#"{{"{EMBED}":{},"{NORM}":{}}}"#, f32_tensor("F32", "[4]", 0, 16), f32_tensor("F32", "[4]", 20, 36));
        refused("gap", &header, 36, &["gap of 4 bytes", EMBED, "ends at data byte 16", NORM, "starts at 20"]);
        // The first tensor does not start at data byte 0.
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("F32", "[4]", 4, 20));
        refused("gap-start", &header, 20, &[EMBED, "starts at data byte 4, not 0"]);
        // Bytes after the last tensor that belong to no tensor.
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("F32", "[4]", 0, 16));
        refused("trailing", &header, 24, &["24 data bytes", "cover only 16", "8 trailing bytes"]);
    });
}

#[test]
fn dtype_and_shape_that_do_not_match_the_byte_count_are_refused() {
    with_good_model(|| {
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("F32", "[2, 4]", 0, 16));
        refused("size", &header, 16, &[EMBED, "F32 [2, 4]", "needs 32 bytes", "[0, 16] span 16"]);
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("BF16", "[4]", 0, 16));
        refused("size-bf16", &header, 16, &[EMBED, "BF16 [4]", "needs 8 bytes"]);
        // A shape whose byte count overflows.
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("F32", "[4294967296, 4294967296]", 0, 16));
        refused("size-overflow", &header, 16, &[EMBED, "overflows"]);
    });
}

#[test]
fn unknown_and_unloadable_dtypes_are_refused() {
    with_good_model(|| {
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("Q7", "[4]", 0, 16));
        refused("dtype", &header, 16, &[EMBED, "unknown dtype \"Q7\""]);
        // A dtype the format knows but MLX's loader does not read.
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("F64", "[2]", 0, 16));
        refused("dtype-f64", &header, 16, &[EMBED, "dtype F64", "MLX's loader does not read"]);
        // A tensor entry missing a field, and metadata that is not strings.
        refused("noshape", &format!(r#"{{"{EMBED}":{{"dtype":"F32","data_offsets":[0,16]}}}}"#), 16, &[EMBED, "missing field `shape`"]);
        refused("meta", r#"{"__metadata__":{"format":1}}"#, 0, &["__metadata__", "strings"]);
    });
}

#[test]
fn header_lengths_past_the_bound_or_the_file_are_refused() {
    with_good_model(|| {
        // 2^62: refused from the 8 bytes alone, before anything is allocated.
        let b = raw_safetensors(b"{}", Some(1 << 62), &[]);
        refused_bytes("len-2-62", &b, &["header claims 4611686018427387904 bytes", "over the limit"]);
        let b = raw_safetensors(b"{}", Some(u64::MAX), &[]);
        refused_bytes("len-max", &b, &["header claims 18446744073709551615 bytes"]);
        // Just over the bound, in a (sparse) file big enough to hold it: the bound, not the
        // file's size, refuses it.
        let d = copy_fixture("qwen3", "len-bound");
        let p = d.join("model.safetensors");
        std::fs::write(&p, raw_safetensors(b"{}", Some(MAX_HEADER_LEN + 1), &[])).unwrap();
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(MAX_HEADER_LEN + 64).unwrap();
        refused_dir(&d, &[&format!("header claims {} bytes", MAX_HEADER_LEN + 1), &format!("limit of {MAX_HEADER_LEN}")]);
        // Zero.
        refused_bytes("len-zero", &raw_safetensors(b"", Some(0), &[]), &["header length is 0"]);
    });
}

#[test]
fn truncated_files_are_refused() {
    with_good_model(|| {
        // Cut inside the header.
        let header = format!(r#"{{"{EMBED}":{}}}"#, f32_tensor("F32", "[4]", 0, 16));
        let full = raw_safetensors(header.as_bytes(), None, &[0; 16]);
        refused_bytes("cut-header", &full[..20], &["header claims", "truncated"]);
        // Cut inside the data.
        refused_bytes("cut-data", &full[..full.len() - 5], &[EMBED, "only 11 data bytes", "truncated"]);
        // Shorter than the length field.
        refused_bytes("cut-len", &full[..5], &["only 5 bytes", "too short"]);
    });
}

#[test]
fn headers_that_are_not_a_utf8_json_object_are_refused() {
    with_good_model(|| {
        refused("notjson", r#"{"model.embed_tokens.weight": {"dtype": "F32""#, 0, &["header", "not valid JSON"]);
        refused("array", "[1, 2, 3]", 0, &["header is not a JSON object but an array"]);
        refused("string", r#""model""#, 0, &["header is not a JSON object but a string"]);
        let b = raw_safetensors(b"{\"model.\xff\":{}}", None, &[]);
        refused_bytes("utf8", &b, &["header is not UTF-8", "header offset 8"]);
    });
}

/// Bit patterns that a conversion through another type would change: NaN payloads, signed
/// zeros, infinities, subnormals.
fn tricky_bits_32() -> Vec<u32> {
    vec![0x7fc0_0001, 0xffbf_ffff, 0x8000_0000, 0x7f80_0000, 0x0000_0001, 0x3f80_0000, 0xdead_beef, u32::MAX]
}
fn tricky_bits_16() -> Vec<u16> {
    vec![0x7e01, 0xfdff, 0x8000, 0x7c00, 0x0001, 0x3c00, 0x7f81, 0xffff]
}

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

#[test]
fn files_we_write_read_back_bit_exactly_in_mlx_and_the_reference() {
    let dir = common::Scratch::new("st-roundtrip");
    let path = dir.join("weights.safetensors");
    let b32 = tricky_bits_32();
    let b16 = tricky_bits_16();
    let f32s: Vec<f32> = b32.iter().map(|&b| f32::from_bits(b)).collect();
    let bf16s: Vec<bf16> = b16.iter().map(|&b| bf16::from_bits(b)).collect();
    let f16s: Vec<f16> = b16.iter().map(|&b| f16::from_bits(b)).collect();
    let w = Array::from_slice(&(0..64 * 64).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect::<Vec<_>>(), &[64, 64]).unwrap();
    let q = quant::quantize(&w.astype(Dtype::Bf16).unwrap(), 64, 4, QuantMode::Affine).unwrap();
    let qb = q.biases.clone().unwrap();
    let tensors: Vec<(&str, Array)> = vec![
        ("f32", Array::from_slice(&f32s, &[2, 4]).unwrap()),
        ("bf16", Array::from_slice(&bf16s, &[8]).unwrap()),
        ("f16", Array::from_slice(&f16s, &[4, 2]).unwrap()),
        ("u32", Array::from_slice(&b32, &[8]).unwrap()),
        // A transpose: written in its logical (row-major) order.
        ("f32_t", Array::from_slice(&f32s, &[2, 4]).unwrap().transpose(&[]).unwrap()),
        ("q.weight", q.weight.clone()),
        ("q.scales", q.scales.clone()),
        ("q.biases", qb.clone()),
        ("empty", Array::zeros(&[0, 3], Dtype::F32).unwrap()),
    ];
    let refs: Vec<(&str, &Array)> = tensors.iter().map(|(n, a)| (*n, a)).collect();
    io::save_safetensors(&path, &refs, &[("format", "mlx")]).unwrap();

    // What each tensor's bytes must be, computed from the values given.
    let t_bits: Vec<u32> = [0, 4, 1, 5, 2, 6, 3, 7].iter().map(|&i| b32[i]).collect();
    let mut want: Vec<(&str, &str, Vec<i32>, Vec<u8>)> = vec![
        ("f32", "F32", vec![2, 4], le_bytes(&b32, u32::to_le_bytes)),
        ("bf16", "BF16", vec![8], le_bytes(&b16, u16::to_le_bytes)),
        ("f16", "F16", vec![4, 2], le_bytes(&b16, u16::to_le_bytes)),
        ("u32", "U32", vec![8], le_bytes(&b32, u32::to_le_bytes)),
        ("f32_t", "F32", vec![4, 2], le_bytes(&t_bits, u32::to_le_bytes)),
        ("empty", "F32", vec![0, 3], vec![]),
    ];
    let qw = q.weight.to_vec::<u32>().unwrap();
    let qs: Vec<u16> = q.scales.to_vec::<bf16>().unwrap().iter().map(|x| x.to_bits()).collect();
    let qbb: Vec<u16> = qb.to_vec::<bf16>().unwrap().iter().map(|x| x.to_bits()).collect();
    want.push(("q.weight", "U32", q.weight.shape(), le_bytes(&qw, u32::to_le_bytes)));
    want.push(("q.scales", "BF16", q.scales.shape(), le_bytes(&qs, u16::to_le_bytes)));
    want.push(("q.biases", "BF16", qb.shape(), le_bytes(&qbb, u16::to_le_bytes)));

    // The file is valid by the crate's rules and MLX reads every bit back.
    let header = io::read_header(&path).unwrap();
    assert_eq!(header.metadata.get("format").map(String::as_str), Some("mlx"));
    let back = io::load_safetensors(&path).unwrap();
    assert_eq!(back.metadata.get("format").map(String::as_str), Some("mlx"));
    assert_eq!(back.tensors.len(), want.len());
    for (name, st_dtype, shape, bytes) in &want {
        let a = &back.tensors[*name];
        assert_eq!(&a.shape(), shape, "{name}: shape");
        let h = header.tensors.iter().find(|t| t.name == *name).unwrap();
        assert_eq!(h.dtype, *st_dtype, "{name}: dtype in the header");
        a.eval().unwrap();
        assert_eq!(a.bytes().unwrap(), bytes.as_slice(), "{name}: bytes read back by MLX");
    }
    let f32_back: Vec<u32> = back.tensors["f32"].to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect();
    assert_eq!(f32_back, b32, "f32 NaN payloads and signed zeros survive");

    // The file gets the permissions of any file created here, not a temporary file's 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = dir.join("plain");
        std::fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain), "permissions of the written file");
    }

    // The reference's Python reads the same bytes through Hugging Face's `safetensors` and
    // through `mlx.core.load`.
    let script = r#"
import json, sys
import mlx.core as mx, numpy as np, safetensors
p = sys.argv[1]
st = {n: [t["dtype"], list(t["shape"]), bytes(t["data"]).hex()] for n, t in safetensors.deserialize(open(p, "rb").read())}
arrs, meta = mx.load(p, return_metadata=True)
ml = {n: [str(a.dtype), list(a.shape), bytes(np.array(a.reshape(-1).view(mx.uint8))).hex()] for n, a in arrs.items()}
print(json.dumps({"safetensors": st, "mlx": ml, "metadata": meta}))
"#;
    let out = Command::new(common::deps_file("venv/bin/python")).arg("-c").arg(script).arg(&path).output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["metadata"], serde_json::json!({"format": "mlx"}));
    let mlx_names = |d: &str| match d {
        "F32" => "mlx.core.float32",
        "BF16" => "mlx.core.bfloat16",
        "F16" => "mlx.core.float16",
        "U32" => "mlx.core.uint32",
        other => panic!("{other}"),
    };
    for (name, st_dtype, shape, bytes) in &want {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let shape = serde_json::json!(shape);
        assert_eq!(v["safetensors"][name], serde_json::json!([st_dtype, shape, hex]), "{name}: Python safetensors");
        assert_eq!(v["mlx"][name], serde_json::json!([mlx_names(st_dtype), shape, hex]), "{name}: mlx.core.load");
    }
}

#[test]
fn writing_refuses_what_mlx_could_not_read_back() {
    let dir = common::Scratch::new("st-write-errors");
    let a = Array::zeros(&[2], Dtype::F32).unwrap();
    let e = io::save_safetensors(dir.join("dup.safetensors"), &[("a", &a), ("a", &a)], &[]).unwrap_err().to_string();
    assert_has(&e, &["dup.safetensors", "tensor a is given twice"]);
    let d = Array::zeros(&[2], Dtype::F64).unwrap();
    let e = io::save_safetensors(dir.join("f64.safetensors"), &[("d", &d)], &[]).unwrap_err().to_string();
    assert_has(&e, &["f64.safetensors", "tensor d is float64"]);
    assert!(!dir.join("dup.safetensors").exists() && !dir.join("f64.safetensors").exists());
}
