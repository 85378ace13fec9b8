//! SmolLM2-135M-Instruct (Q4_1/Q8_0 GGUF, fetched by scripts/fetch_models.sh) against the
//! references scripts/gguf_refs.py computed without the engine's code:
//! - mlx-lm's greedy tokens and logits on an HF folder the script made from the same file
//!   with llama.cpp's `gguf` library (dequantized weights, q/k rows un-permuted as
//!   transformers does) and transformers' GGUF tokenizer. The engine loads the GGUF file
//!   directly; both then compute in float32 on the same dequantized weights, so tokens must
//!   be identical and logits within the float32 tolerance of tests/generate_reference.rs.
//! - `mlxrun convert` must write that same folder's weights, to the bit.
//! - The tokenizer built from the file's metadata must encode and decode the tokenizer
//!   corpus as transformers' tokenizer built from the same metadata does, with SmolLM2's
//!   own pre-tokenizer (see scripts/gguf_refs.py: transformers drops the numeral split the
//!   file's `tokenizer.ggml.pre` = `smollm` asks for).
//! - Asked "What is the capital of France?", the chat answers Paris (library and CLI).
mod common;

use std::path::PathBuf;
use std::process::Command;

use mlxrun::engine::convert::convert_gguf;
use mlxrun::mlx::{io, Dtype};
use mlxrun::models::gguf::GgufFile;
use mlxrun::tokenizer::Tokenizer;
use mlxrun::{ChatOptions, GenerateParams, LoadOptions, Message, Model};
use serde_json::Value;

fn gguf() -> PathBuf {
    common::deps_file("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn greedy_generation_matches_mlx_lm_on_the_dequantized_folder() {
    // Unpacked at load, as the reference's folder is (kept packed, the default on the CPU,
    // gguf_quantized.rs checks it against mlx-lm on the packed folder).
    let unpacked = |dtype| LoadOptions { dtype: Some(dtype), keep_quantized: Some(false), ..LoadOptions::default() };
    let refs = common::deps_file("refs/gguf/smollm2-hf.safetensors");
    common::reference::check_against_mlx_lm_with("smollm2", &refs, &gguf(), &unpacked, &|_| true, 10);
}

#[test]
fn convert_writes_the_reference_weights_bit_for_bit() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smollm2-converted");
    let mut calls = 0;
    let done = convert_gguf(&gguf(), &out, Dtype::F32, |_, _| calls += 1).unwrap();
    assert_eq!(done.tensors, 272);
    assert_eq!(calls, 272);
    let ours = io::load_safetensors(out.join("model.safetensors")).unwrap();
    let theirs = io::load_safetensors(common::deps_file("refs/gguf/smollm2-hf/model.safetensors")).unwrap();
    assert_eq!(ours.tensors.keys().collect::<Vec<_>>(), theirs.tensors.keys().collect::<Vec<_>>());
    for (name, t) in &theirs.tensors {
        let o = &ours.tensors[name];
        assert_eq!(o.shape(), t.shape(), "{name}");
        let (a, b) = (o.to_vec::<f32>().unwrap(), t.to_vec::<f32>().unwrap());
        let differ = a.iter().zip(&b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert_eq!(differ, 0, "{name}: {differ} values differ");
    }
    // The configuration states what the reference's states.
    let read = |p: PathBuf| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (c, r) = (read(out.join("config.json")), read(common::deps_file("refs/gguf/smollm2-hf/config.json")));
    for key in ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "max_position_embeddings"] {
        assert_eq!(c[key], r[key], "config {key}");
    }
    for key in ["rms_norm_eps", "rope_theta"] {
        assert!((c[key].as_f64().unwrap() - r[key].as_f64().unwrap()).abs() < 1e-12, "config {key}");
    }
    // The converted folder loads as a model folder and greets like the file.
    let tok = Tokenizer::load(&out).unwrap();
    let from_file = Tokenizer::from_gguf(&GgufFile::open(gguf()).unwrap()).unwrap();
    let text = "Hello, world! 12345 <|im_start|>user";
    assert_eq!(tok.encode(text, true).unwrap(), from_file.encode(text, true).unwrap());
    assert_eq!(tok.eos_token_ids(), from_file.eos_token_ids());
}

#[test]
fn tokenizer_from_metadata_matches_transformers() {
    let tok = Tokenizer::from_gguf(&GgufFile::open(gguf()).unwrap()).unwrap();
    let refs: Value =
        serde_json::from_str(&std::fs::read_to_string(common::deps_file("refs/gguf/smollm2_tokenizer.json")).unwrap()).unwrap();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() > 20);
    let ids = |v: &Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    let mut differ = 0;
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let ours = tok.encode(text, false).unwrap();
        assert_eq!(ours, ids(&c["ids"]), "encode {text:?}");
        // transformers' GGUF tokenizer ignores the file's `smollm` pre-tokenizer (numerals
        // one by one); that matters only for numerals other than ASCII digits.
        if ours != ids(&c["ids_transformers"]) {
            assert!(text.chars().any(|ch| ch.is_numeric() && !ch.is_ascii_digit()), "{text:?}");
            differ += 1;
        }
        assert_eq!(tok.encode(text, true).unwrap(), ids(&c["ids_special"]), "encode with special tokens {text:?}");
        assert_eq!(tok.decode(&ids(&c["ids"]), false).unwrap(), c["decoded"].as_str().unwrap(), "decode {text:?}");
        assert_eq!(tok.decode(&ids(&c["ids"]), true).unwrap(), c["decoded_skip_special"].as_str().unwrap(), "decode {text:?}");
    }
    assert!(differ <= 2, "{differ} texts tokenized otherwise than by transformers");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.eos_token_ids(), &[2]);
    assert!(!tok.adds_bos());
}

#[test]
fn chat_prompt_renders_and_encodes_as_transformers_does() {
    // The reference's "chat" case is transformers' rendering of a conversation with the
    // template from the file's metadata, encoded by transformers' tokenizer.
    let refs = io::load_safetensors(common::deps_file("refs/gguf/smollm2-hf.safetensors")).unwrap();
    let cases: Value = serde_json::from_str(&refs.metadata["cases"]).unwrap();
    let case = cases.as_array().unwrap().iter().find(|c| c["prompt_name"] == "chat").unwrap();
    let want: Vec<u32> = case["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let mut model = Model::load(gguf(), &LoadOptions::default()).unwrap();
    let text = model
        .render_chat(&[Message::user("Write a haiku about the sea. 海について俳句を書いて。")], &ChatOptions::default())
        .unwrap();
    assert_eq!(text, case["prompt"].as_str().unwrap());
    assert_eq!(model.tokenizer().encode_prompt(&text).unwrap(), want);
}

#[test]
fn chat_answers_paris() {
    let mut model = Model::load(gguf(), &LoadOptions::default()).unwrap();
    let params = GenerateParams { max_tokens: 32, ..Default::default() };
    let gen = model
        .chat(&[Message::user("What is the capital of France?")], &ChatOptions::default(), &params, |_| true)
        .unwrap();
    assert!(gen.text.contains("Paris"), "reply: {:?}", gen.text);
    assert_eq!(gen.finish_reason, mlxrun::engine::FinishReason::Stop, "reply: {:?}", gen.text);
}

#[test]
fn cli_chat_answers_paris() {
    let out = Command::new(env!("CARGO_BIN_EXE_mlxrun"))
        .args(["chat", "--model"])
        .arg(gguf())
        .args(["--message", "What is the capital of France?", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["reply"].as_str().unwrap().contains("Paris"), "{v}");
    assert_eq!(v["finish_reason"], "stop");

    let out = Command::new(env!("CARGO_BIN_EXE_mlxrun")).args(["info", "--json", "--model"]).arg(gguf()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model_type"], "llama");
    assert_eq!(v["num_layers"], 30);
    assert_eq!(v["gguf"]["tensor_types"]["Q4_1"], 210);
}
