//! The GGUF reader on files written by llama.cpp's own Python library (`gguf`) and on files
//! broken on purpose.
//!
//! scripts/gguf_refs.py wrote `synthetic.gguf` with gguf's GGUFWriter (metadata of every
//! value type, a 64-byte alignment, a tensor of every supported type) and recorded what
//! gguf's reader and dequantizer make of it; the engine must read the same values, to the
//! bit. Broken files are made here by cutting or patching that file or by a small writer.
mod common;

use std::path::{Path, PathBuf};

use common::gguf_writer::{self, Kv, Tensor};
use mlxrun::mlx::io;
use mlxrun::models::gguf::{GgmlType, GgufFile};
use mlxrun::models::{load, LoadOptions};
use mlxrun::{Error, Model};
use serde_json::Value as Json;

fn synthetic() -> PathBuf {
    common::deps_file("refs/gguf/synthetic.gguf")
}

/// A scratch file of `bytes` under the target folder, named after the test.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn message(e: Error) -> String {
    e.to_string()
}

#[test]
fn metadata_of_every_value_type_reads_as_written() {
    let f = GgufFile::open(synthetic()).unwrap();
    let want: Json = serde_json::from_str(&std::fs::read_to_string(common::deps_file("refs/gguf/synthetic.json")).unwrap()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_start % 64, 0);
    let meta = want["metadata"].as_object().unwrap();
    for (key, tv) in meta {
        let v = f.get(key).unwrap_or_else(|| panic!("metadata {key} missing"));
        assert_eq!(v.type_name(), tv[0].as_str().unwrap().to_lowercase(), "type of {key}");
        assert_eq!(v.to_json(), tv[1], "value of {key}");
    }
    assert_eq!(f.architecture().unwrap(), "llama");
}

#[test]
fn every_supported_tensor_type_dequantizes_as_llama_cpp_does() {
    let f = GgufFile::open(synthetic()).unwrap();
    let want = io::load_safetensors(common::deps_file("refs/gguf/synthetic.safetensors")).unwrap();
    let mut types = Vec::new();
    for (name, arr) in &want.tensors {
        let t = f.tensor(name).unwrap_or_else(|| panic!("tensor {name} missing"));
        let shape: Vec<u64> = arr.shape().iter().map(|&d| d as u64).collect();
        assert_eq!(t.shape(), shape, "shape of {name}");
        let got = f.read_f32(t).unwrap();
        let exp = arr.to_vec::<f32>().unwrap();
        assert_eq!(got.len(), exp.len(), "{name}");
        for (i, (g, e)) in got.iter().zip(&exp).enumerate() {
            assert_eq!(g.to_bits(), e.to_bits(), "{name} ({}) element {i}: ours {g}, gguf {e}", t.ty.name());
        }
        types.push(t.ty);
    }
    for ty in GgmlType::SUPPORTED {
        assert!(types.contains(ty), "no {} tensor in the synthetic file", ty.name());
    }
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    let bytes = std::fs::read(synthetic()).unwrap();
    let f = GgufFile::open(synthetic()).unwrap();
    // The writer pads the file after the last tensor; cutting one byte of that tensor's data
    // must be caught too.
    let end = f.tensors.iter().map(|t| f.data_start + t.offset + t.size).max().unwrap() as usize;
    assert!(end <= bytes.len());
    for cut in [0, 3, 10, 30, 200, 600, f.data_start as usize - 5, f.data_start as usize + 100, end - 1] {
        let p = scratch(&format!("truncated-{cut}.gguf"), &bytes[..cut]);
        let e = message(GgufFile::open(&p).unwrap_err());
        assert!(e.contains(&p.display().to_string()), "cut at {cut}: {e}");
        assert!(e.contains("truncated") || e.contains("too short"), "cut at {cut}: {e}");
        if cut > f.data_start as usize {
            // The error names a tensor whose bytes the cut removed.
            let cut_off: Vec<&str> = f
                .tensors
                .iter()
                .filter(|t| f.data_start + t.offset + t.size > cut as u64)
                .map(|t| t.name.as_str())
                .collect();
            assert!(cut_off.iter().any(|n| e.contains(&format!("tensor {n} "))), "cut at {cut}: {e}");
        }
    }
}

#[test]
fn corrupted_headers_are_errors() {
    let bytes = std::fs::read(synthetic()).unwrap();
    let patch = |at: usize, with: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    let cases = [
        ("magic", patch(0, b"GGML"), "not a GGUF file"),
        ("version", patch(4, &99u32.to_le_bytes()), "version 99"),
        ("big-endian", patch(4, &3u32.to_be_bytes()), "big-endian"),
        ("tensor-count", patch(8, &u64::MAX.to_le_bytes()), "truncated or corrupted"),
        ("kv-count", patch(16, &(1u64 << 40).to_le_bytes()), "truncated or corrupted"),
        ("key-length", patch(24, &(1u64 << 50).to_le_bytes()), "string"),
    ];
    for (name, b, want) in cases {
        let p = scratch(&format!("corrupt-{name}.gguf"), &b);
        let e = message(GgufFile::open(&p).unwrap_err());
        assert!(e.contains(want) && e.contains(&p.display().to_string()), "{name}: {e}");
    }
}

#[test]
fn unknown_and_unsupported_tensor_types_are_named() {
    // An id llama.cpp does not define: refused when the table is read.
    let t = Tensor { name: "blk.0.weird.weight".into(), dims: vec![32], ty: 99, data: vec![0; 64] };
    let p = scratch("unknown-type.gguf", &gguf_writer::write(&[("general.architecture", Kv::Str("llama".into()))], &[t]));
    let e = message(GgufFile::open(&p).unwrap_err());
    assert!(e.contains("blk.0.weird.weight") && e.contains("type id 99"), "{e}");

    // A type llama.cpp defines but the engine does not read (written by gguf's writer).
    let p = common::deps_file("refs/gguf/unsupported_type.gguf");
    let f = GgufFile::open(&p).unwrap();
    let e = message(f.read_f32(&f.tensors[0]).unwrap_err());
    assert!(e.contains("blk.0.attn_q.weight") && e.contains("IQ4_NL") && e.contains("not supported"), "{e}");

    // ... and the same inside a model: loading fails naming the tensor and the type.
    let (kvs, mut tensors) = gguf_writer::tiny_llama("llama");
    tensors[3].ty = 20; // IQ4_NL: 18 bytes per 32 values
    tensors[3].data = vec![0; 8 * 8 / 32 * 18];
    let p = scratch("tiny-iq4.gguf", &gguf_writer::write(&kvs, &tensors));
    let e = message(load(&p, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("blk.0.attn_q.weight") && e.contains("IQ4_NL"), "{e}");
}

#[test]
fn overlapping_or_misplaced_tensor_data_is_refused() {
    let (kvs, tensors) = gguf_writer::tiny_llama("llama");
    let mut bytes = gguf_writer::write(&kvs, &tensors);
    // The second tensor's offset field: find its name in the table and skip the dims/type.
    let name = b"output_norm.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let offset_at = at + 4 + 8 + 4; // n_dims, one dim, type
    bytes[offset_at..offset_at + 8].copy_from_slice(&0u64.to_le_bytes());
    let p = scratch("overlap.gguf", &bytes);
    let e = message(GgufFile::open(&p).unwrap_err());
    assert!(e.contains("overlap") && e.contains("output_norm.weight"), "{e}");
    bytes[offset_at..offset_at + 8].copy_from_slice(&7u64.to_le_bytes());
    let p = scratch("misaligned.gguf", &bytes);
    let e = message(GgufFile::open(&p).unwrap_err());
    assert!(e.contains("output_norm.weight") && e.contains("alignment"), "{e}");
}

#[test]
fn unsupported_architecture_is_named() {
    let (kvs, tensors) = gguf_writer::tiny_llama("mamba");
    let p = scratch("mamba.gguf", &gguf_writer::write(&kvs, &tensors));
    let e = message(load(&p, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("\"mamba\"") && e.contains("not supported") && e.contains("mamba.gguf"), "{e}");
    let e = message(Model::load(&p, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("\"mamba\""), "{e}");
}

#[test]
fn missing_metadata_and_unknown_tensors_are_named() {
    let (mut kvs, tensors) = gguf_writer::tiny_llama("llama");
    kvs.retain(|(k, _)| *k != "llama.embedding_length");
    let p = scratch("no-hidden.gguf", &gguf_writer::write(&kvs, &tensors));
    let e = message(load(&p, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("llama.embedding_length") && e.contains("missing"), "{e}");

    let (kvs, mut tensors) = gguf_writer::tiny_llama("llama");
    tensors.push(gguf_writer::f32_tensor("blk.0.mystery.weight", 1, 8, 0.0));
    let p = scratch("extra.gguf", &gguf_writer::write(&kvs, &tensors));
    let e = message(load(&p, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("blk.0.mystery.weight"), "{e}");

    let (kvs, mut tensors) = gguf_writer::tiny_llama("llama");
    tensors.retain(|t| t.name != "blk.0.ffn_up.weight");
    let p = scratch("missing-tensor.gguf", &gguf_writer::write(&kvs, &tensors));
    let e = message(load(&p, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("up_proj") && e.contains("missing-tensor.gguf"), "{e}");
}

#[test]
fn a_tiny_model_loads_with_its_tokenizer_and_generates() {
    let (kvs, tensors) = gguf_writer::tiny_llama("llama");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-tiny-folder");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny.gguf"), gguf_writer::write(&kvs, &tensors)).unwrap();
    // A folder holding one GGUF file loads as that file.
    let mut model = Model::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(model.info().model_type, "llama");
    assert_eq!(model.info().vocab_size, 4);
    assert!(model.info().tied_embeddings);
    let tok = model.tokenizer();
    assert_eq!(tok.encode("ab", false).unwrap(), vec![3]);
    assert_eq!(tok.encode("aab<|endoftext|>", false).unwrap(), vec![1, 3, 0]);
    assert_eq!(tok.decode(&[1, 3, 0], true).unwrap(), "aab");
    assert_eq!(tok.eos_token_ids(), &[0]);
    let params = mlxrun::GenerateParams { max_tokens: 3, ignore_eos: true, ..Default::default() };
    let gen = model.generate("ab", &params, |_| true).unwrap();
    assert_eq!(gen.tokens.len(), 3);
    // No chat template in this file: the error says where it looked.
    let e = message(model.chat_template(None).unwrap_err());
    assert!(e.contains("gguf-tiny-folder"), "{e}");
}

/// The random-weight fixtures of three families, written by scripts/gguf_refs.py as
/// llama.cpp's converter writes models (its names, metadata keys and, for llama, permuted
/// q/k rows), compute the same logits from the GGUF file as from the HF folder: the
/// configuration, the name mapping and the un-permutation are right for each.
#[test]
fn fixture_families_give_the_same_logits_from_gguf_as_from_their_folder() {
    use mlxrun::engine::generate::forward_logits;
    let ids = [1u32, 17, 2024, 5, 99, 300, 4000, 12, 7, 64];
    for name in ["llama-linear", "qwen2", "qwen3"] {
        let opts = LoadOptions::with_dtype(Some(mlxrun::mlx::Dtype::F32));
        let folder = load(&common::deps_file(&format!("fixtures/{name}")), &opts).unwrap();
        let file = load(&common::deps_file(&format!("refs/gguf/fixture-{name}.gguf")), &opts).unwrap();
        assert_eq!(folder.info(), file.info(), "{name}");
        let a = forward_logits(folder.as_ref(), &ids).unwrap().to_vec::<f32>().unwrap();
        let b = forward_logits(file.as_ref(), &ids).unwrap().to_vec::<f32>().unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst == 0.0, "{name}: logits differ by up to {worst}");
    }
}

/// Llama 3.1-style files carry per-frequency rotary factors (`rope_freqs.weight`).
/// scripts/gguf_rope_refs.py wrote the llama3 fixture as llama.cpp's converter does, with
/// the factors it computes from the fixture's `llama3` rope_scaling. Loaded directly, the
/// file must generate what mlx-lm generated on the fixture folder; `mlxrun convert` must
/// write that folder back (the `llama3` scaling the factors come from, the same weights),
/// so mlx-lm on the converted folder is mlx-lm on the fixture.
#[test]
fn rope_freqs_factors_are_used_and_convert_back_to_llama3_scaling() {
    let file = common::deps_file("refs/gguf/fixture-llama3-rope-freqs.gguf");
    common::reference::check_against_mlx_lm("llama3 rope_freqs", &common::deps_file("refs/generate/llama3.safetensors"), &file);

    // The fixture's GGUF carries no vocabulary: its tokenizer files go beside a link to it.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("llama3-rope-freqs");
    std::fs::create_dir_all(&dir).unwrap();
    let linked = dir.join("model.gguf");
    let _ = std::fs::remove_file(&linked);
    std::os::unix::fs::symlink(&file, &linked).unwrap();
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(common::deps_file(&format!("fixtures/llama3/{name}")), dir.join(name)).unwrap();
    }
    let out = dir.join("converted");
    mlxrun::engine::convert::convert_gguf(&linked, &out, mlxrun::mlx::Dtype::F32, |_, _| {}).unwrap();
    let read = |p: PathBuf| -> Json { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (ours, fixture) = (read(out.join("config.json")), read(common::deps_file("fixtures/llama3/config.json")));
    let (a, b) = (&ours["rope_scaling"], &fixture["rope_scaling"]);
    assert_eq!(a["rope_type"], "llama3", "{a}");
    for key in ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"] {
        assert_eq!(a[key].as_f64(), b[key].as_f64(), "rope_scaling {key}: {a} vs {b}");
    }
    assert_eq!(ours["rope_theta"].as_f64(), fixture["rope_theta"].as_f64());
    let converted = io::load_safetensors(out.join("model.safetensors")).unwrap();
    let mut original = std::collections::BTreeMap::new();
    for f in std::fs::read_dir(common::deps_file("fixtures/llama3")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "safetensors") {
            original.extend(io::load_safetensors(&p).unwrap().tensors);
        }
    }
    assert_eq!(converted.tensors.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>());
    for (name, t) in &original {
        let (x, y) = (converted.tensors[name].to_vec::<f32>().unwrap(), t.astype(mlxrun::mlx::Dtype::F32).unwrap().to_vec::<f32>().unwrap());
        assert!(x == y, "{name} differs");
    }
}

/// Factors that are no Llama 3 scaling still load (the engine uses them as they are), but
/// cannot be written as an HF config; a factor tensor of the wrong size is refused.
#[test]
fn odd_rope_freqs_factors_load_but_do_not_convert() {
    let (kvs, mut tensors) = gguf_writer::tiny_llama("llama");
    // Heads of 4 dimensions: 2 rotary pairs.
    tensors.push(gguf_writer::f32_tensor("rope_freqs.weight", 1, 2, 0.5));
    let p = scratch("odd-rope-freqs.gguf", &gguf_writer::write(&kvs, &tensors));
    let model = load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(model.info().model_type, "llama");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("odd-rope-freqs-converted");
    let e = message(mlxrun::engine::convert::convert_gguf(&p, &out, mlxrun::mlx::Dtype::F32, |_, _| {}).unwrap_err());
    assert!(e.contains("rope_freqs.weight") && e.contains("llama3") && e.contains("odd-rope-freqs.gguf"), "{e}");

    let (kvs, mut tensors) = gguf_writer::tiny_llama("llama");
    tensors.push(gguf_writer::f32_tensor("rope_freqs.weight", 1, 3, 1.0));
    let p = scratch("bad-rope-freqs.gguf", &gguf_writer::write(&kvs, &tensors));
    let e = message(load(&p, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("rope_freqs.weight") && e.contains("[2]") && e.contains("bad-rope-freqs.gguf"), "{e}");
}

/// A SentencePiece vocabulary in GGUF metadata (scores, token types, byte tokens, a space
/// prefix, no merges; scripts/gguf_llama_refs.py) encodes and decodes the tokenizer corpus
/// as transformers' tokenizer built from the same metadata does.
#[test]
fn sentencepiece_vocabulary_from_metadata_matches_transformers() {
    use mlxrun::tokenizer::Tokenizer;
    let tok = Tokenizer::from_gguf(&GgufFile::open(common::deps_file("refs/gguf/spm_tokenizer.gguf")).unwrap()).unwrap();
    let refs: Json =
        serde_json::from_str(&std::fs::read_to_string(common::deps_file("refs/gguf/spm_tokenizer.json")).unwrap()).unwrap();
    let ids = |v: &Json| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    let mut failures = Vec::new();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() > 40);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let with_bos = ids(&c["ids_special"]);
        let got = [
            (format!("{:?}", tok.encode(text, true).unwrap()), format!("{with_bos:?}")),
            (format!("{:?}", tok.encode(text, false).unwrap()), format!("{:?}", ids(&c["ids_plain"]))),
            (tok.decode(&with_bos, false).unwrap(), c["decode_keep"].as_str().unwrap().to_string()),
            (tok.decode(&with_bos, true).unwrap(), c["decode_skip"].as_str().unwrap().to_string()),
        ];
        for (what, (ours, theirs)) in ["encode with BOS", "encode", "decode", "decode skipping special"].iter().zip(got) {
            if ours != theirs {
                failures.push(format!("{what} {text:?}:\n  ours         {ours}\n  transformers {theirs}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} differ:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(tok.bos_token_id(), Some(1));
    assert_eq!(tok.eos_token_ids(), &[2]);
}

/// Vocabularies the engine cannot rebuild are errors naming the file and the key.
#[test]
fn unsupported_or_incomplete_vocabularies_are_named() {
    let with = |name: &str, model: &str, drop: &[&str]| {
        let (mut kvs, tensors) = gguf_writer::tiny_llama("llama");
        kvs.retain(|(k, _)| *k != "tokenizer.ggml.model" && !drop.contains(k));
        kvs.push(("tokenizer.ggml.model", Kv::Str(model.into())));
        let p = scratch(name, &gguf_writer::write(&kvs, &tensors));
        let e = message(Model::load(&p, &LoadOptions::default()).err().unwrap());
        assert!(e.contains(name), "{e}");
        e
    };
    let e = with("t5-vocab.gguf", "t5", &[]);
    assert!(e.contains("tokenizer.ggml.model \"t5\"") && e.contains("not supported"), "{e}");
    // A SentencePiece vocabulary needs its scores (the merges are recovered from them).
    let e = with("spm-no-scores.gguf", "llama", &[]);
    assert!(e.contains("tokenizer.ggml.scores") && e.contains("missing"), "{e}");
    let e = with("bpe-no-merges.gguf", "gpt2", &["tokenizer.ggml.merges"]);
    assert!(e.contains("tokenizer.ggml.merges") && e.contains("missing"), "{e}");
}
